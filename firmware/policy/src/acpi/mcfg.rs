//! The PCI Express memory-mapped configuration table, MCFG (PCI Firmware Specification 3.3
//! §4.1.2): where each PCI segment's enhanced configuration space (ECAM) lies.
//!
//! Each 16-byte allocation gives the ECAM base of a segment, which is the address of bus 0
//! even when the decoded range starts at a later bus (as Linux reads it), and the first and
//! last bus decoded. A segment's function `bus:device.function` has its 4 KiB of
//! configuration space at `base + (bus << 20 | device << 15 | function << 12)`.

use alloc::vec::Vec;

use super::bytes::{u16_at, u64_at, u8_at};
use super::problem::{AcpiProblem, McfgFault};
use super::sdt::SDT_HEADER_LENGTH;

/// Bytes before the first allocation: the header and 8 reserved bytes.
pub const MCFG_FIXED_LENGTH: usize = SDT_HEADER_LENGTH + 8;
/// Bytes of one allocation structure.
const ALLOCATION_LENGTH: usize = 16;

/// One segment's ECAM window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamWindow {
    /// The address of bus 0's configuration space (whether or not bus 0 is decoded).
    pub base: u64,
    pub segment: u16,
    pub start_bus: u8,
    pub end_bus: u8,
}

impl EcamWindow {
    /// Whether `bus` is decoded by this window.
    pub fn decodes(&self, bus: u8) -> bool {
        (self.start_bus..=self.end_bus).contains(&bus)
    }

    /// The physical address of the configuration space of `bus:device.function`, or `None`
    /// if the window does not decode that bus or the address does not fit.
    pub fn address_of(&self, bus: u8, device: u8, function: u8) -> Option<u64> {
        if !self.decodes(bus) || device > 31 || function > 7 {
            return None;
        }
        let offset =
            (u64::from(bus) << 20) | (u64::from(device) << 15) | (u64::from(function) << 12);
        self.base.checked_add(offset)
    }

    /// The first byte past the configuration space of the last bus decoded.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add((u64::from(self.end_bus) + 1) << 20)
    }
}

/// Every usable allocation of the MCFG, in table order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mcfg {
    pub windows: Vec<EcamWindow>,
}

impl Mcfg {
    /// The window decoding `bus` of `segment`.
    pub fn window_for(&self, segment: u16, bus: u8) -> Option<&EcamWindow> {
        self.windows
            .iter()
            .find(|w| w.segment == segment && w.decodes(bus))
    }
}

/// Decodes the MCFG `table` (header included). An allocation whose bus range is backwards,
/// whose base is not 1 MiB aligned, whose range runs past 2^64, or whose buses another
/// allocation of its segment already decodes is left out and named in `problems`.
pub fn parse(table: &[u8], problems: &mut Vec<AcpiProblem>) -> Mcfg {
    let mut mcfg = Mcfg::default();
    let area = table.get(MCFG_FIXED_LENGTH..).unwrap_or(&[]);
    let trailing = area.len() % ALLOCATION_LENGTH;
    if trailing != 0 {
        problems.push(AcpiProblem::TrailingBytes {
            table: *b"MCFG",
            offset: table.len() - trailing,
            count: trailing,
        });
    }
    for (index, entry) in area.chunks_exact(ALLOCATION_LENGTH).enumerate() {
        let (Some(base), Some(segment), Some(start_bus), Some(end_bus)) = (
            u64_at(entry, 0),
            u16_at(entry, 8),
            u8_at(entry, 10),
            u8_at(entry, 11),
        ) else {
            continue;
        };
        let window = EcamWindow {
            base,
            segment,
            start_bus,
            end_bus,
        };
        let fault = if end_bus < start_bus {
            Some(McfgFault::BusesBackwards)
        } else if base % (1 << 20) != 0 {
            Some(McfgFault::Unaligned)
        } else if window.end().is_none() {
            Some(McfgFault::Wraps)
        } else {
            mcfg.windows
                .iter()
                .find(|w| w.segment == segment && w.start_bus <= end_bus && start_bus <= w.end_bus)
                .map(|w| McfgFault::Overlaps {
                    start_bus: w.start_bus,
                    end_bus: w.end_bus,
                })
        };
        match fault {
            Some(fault) => problems.push(AcpiProblem::Mcfg {
                index,
                segment,
                base,
                buses: (start_bus, end_bus),
                fault,
            }),
            None => mcfg.windows.push(window),
        }
    }
    mcfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn table(allocations: &[(u64, u16, u8, u8)]) -> Vec<u8> {
        let mut t = vec![0u8; MCFG_FIXED_LENGTH];
        t[..4].copy_from_slice(b"MCFG");
        for &(base, segment, start, end) in allocations {
            t.extend_from_slice(&base.to_le_bytes());
            t.extend_from_slice(&segment.to_le_bytes());
            t.extend_from_slice(&[start, end, 0, 0, 0, 0]);
        }
        let length = t.len() as u32;
        t[4..8].copy_from_slice(&length.to_le_bytes());
        t
    }

    #[test]
    fn qemu_q35_has_one_window_of_256_buses() {
        let mut problems = Vec::new();
        let mcfg = parse(&table(&[(0xB000_0000, 0, 0, 255)]), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let w = mcfg.window_for(0, 0x41).unwrap();
        assert_eq!(
            w.address_of(0x41, 2, 1),
            Some(0xB000_0000 + (0x41 << 20) + (2 << 15) + (1 << 12))
        );
        assert_eq!(w.end(), Some(0xC000_0000));
        assert_eq!(w.address_of(0, 32, 0), None);
        assert_eq!(w.address_of(0, 0, 8), None);
    }

    #[test]
    fn the_base_is_bus_zeros_even_when_decoding_starts_later() {
        let mut problems = Vec::new();
        let mcfg = parse(&table(&[(0xE000_0000, 1, 0x80, 0xFF)]), &mut problems);
        let w = mcfg.window_for(1, 0x80).unwrap();
        assert_eq!(w.address_of(0x80, 0, 0), Some(0xE000_0000 + (0x80 << 20)));
        assert_eq!(w.address_of(0x7F, 0, 0), None);
        assert!(mcfg.window_for(0, 0x80).is_none());
    }

    #[test]
    fn bad_allocations_are_named_and_left_out() {
        let mut problems = Vec::new();
        let mcfg = parse(
            &table(&[
                (0xB000_0000, 0, 0, 0x7F),
                (0xC000_0000, 0, 0x40, 0x9F),
                (0xD000_0000, 1, 9, 8),
                (0xD008_0000, 2, 0, 1),
                (!0xF_FFFF, 3, 0, 255),
                (0xF000_0000, 0, 0x80, 0xFF),
            ]),
            &mut problems,
        );
        assert_eq!(mcfg.windows.len(), 2);
        let faults: Vec<McfgFault> = problems
            .iter()
            .map(|p| match p {
                AcpiProblem::Mcfg { fault, .. } => *fault,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            faults,
            [
                McfgFault::Overlaps {
                    start_bus: 0,
                    end_bus: 0x7F
                },
                McfgFault::BusesBackwards,
                McfgFault::Unaligned,
                McfgFault::Wraps
            ]
        );
        assert!(alloc::format!("{}", problems[0]).contains("MCFG allocation 1"));
    }

    #[test]
    fn trailing_bytes_are_reported() {
        let mut t = table(&[(0xB000_0000, 0, 0, 255)]);
        t.extend_from_slice(&[1, 2, 3]);
        let mut problems = Vec::new();
        let mcfg = parse(&t, &mut problems);
        assert_eq!(mcfg.windows.len(), 1);
        assert!(matches!(
            problems[..],
            [AcpiProblem::TrailingBytes { count: 3, .. }]
        ));
    }
}
