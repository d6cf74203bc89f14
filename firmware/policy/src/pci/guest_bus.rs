//! Where a partition's passed-through functions sit in its guest-physical map: the virtual
//! host bridge's ECAM window and the window their BARs are placed in, both in the MMIO hole
//! below 4 GiB (`partition::cost::MMIO_HOLE_START`..4 GiB), clear of the virtio-mmio windows
//! (0xFEB0_0000), the I/O APIC (0xFEC0_0000) and the local APICs (0xFEE0_0000).
//!
//! The hypervisor assigns every BAR a guest address at build time, as a PC's firmware does,
//! so a guest that keeps the firmware's assignment (Linux does, where it fits the host
//! bridge's `_CRS` window) needs no reprogramming.

use alloc::vec::Vec;
use core::fmt;

use super::{Bar, BarKind, PciFunction};
use crate::memory::PAGE_SIZE;

/// Guest-physical base of the ECAM window of the guest's bus 0 (1 MiB).
pub const GUEST_ECAM_BASE: u32 = 0xE000_0000;
/// The window guest BARs are placed in: 0xC000_0000..0xE000_0000 (512 MiB).
pub const GUEST_BAR_WINDOW_BASE: u32 = 0xC000_0000;
/// Bytes of the BAR window.
pub const GUEST_BAR_WINDOW_LENGTH: u32 = 0x2000_0000;

/// One memory BAR of a passed-through function, placed in the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestBar {
    /// The BAR as the host's firmware left it (host base, size, kind).
    pub host: Bar,
    /// The guest-physical address the hypervisor assigned it.
    pub guest: u64,
}

/// Why a partition's BARs do not fit its guest window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarsDoNotFit {
    /// Index of the function (in the order given) whose BAR found no room.
    pub function: usize,
    /// Its BAR number and size.
    pub bar: u8,
    pub size: u64,
}

impl fmt::Display for BarsDoNotFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BAR {} ({:#x} bytes) does not fit the guest's {} MiB PCI window beside the \
             partition's other BARs",
            self.bar,
            self.size,
            GUEST_BAR_WINDOW_LENGTH >> 20
        )
    }
}

/// Places every memory BAR of `functions` in the guest window, each aligned to its size (as
/// PCI requires of a BAR's address), largest first so alignment wastes nothing. I/O BARs
/// are not passed through. The result holds one list per function, in BAR order.
pub fn place_bars(functions: &[&PciFunction]) -> Result<Vec<Vec<GuestBar>>, BarsDoNotFit> {
    let mut order: Vec<(usize, Bar)> = functions
        .iter()
        .enumerate()
        .flat_map(|(i, f)| {
            f.bars
                .iter()
                .filter(|b| b.kind != BarKind::Io && b.size != 0)
                .map(move |b| (i, *b))
        })
        .collect();
    order.sort_by_key(|&(i, b)| (core::cmp::Reverse(b.size), i, b.index));
    let end = u64::from(GUEST_BAR_WINDOW_BASE) + u64::from(GUEST_BAR_WINDOW_LENGTH);
    let mut next = u64::from(GUEST_BAR_WINDOW_BASE);
    let mut placed: Vec<Vec<GuestBar>> = functions.iter().map(|_| Vec::new()).collect();
    for (function, bar) in order {
        // BAR sizes are powers of two (enumeration sizes them so); a page at least.
        let size = bar.size.max(PAGE_SIZE);
        let refused = BarsDoNotFit {
            function,
            bar: bar.index,
            size: bar.size,
        };
        let base = next.checked_next_multiple_of(size).ok_or(refused)?;
        let after = base
            .checked_add(size)
            .filter(|&a| a <= end)
            .ok_or(refused)?;
        next = after;
        placed[function].push(GuestBar {
            host: bar,
            guest: base,
        });
    }
    for bars in &mut placed {
        bars.sort_by_key(|b| b.host.index);
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{Capabilities, HeaderKind, PciAddress};
    use alloc::vec;

    fn function(bars: Vec<(u8, BarKind, u64)>) -> PciFunction {
        PciFunction {
            address: PciAddress::new(0, 1, 0, 0).unwrap(),
            vendor: 0x1b36,
            device: 0x10,
            class: 0x010802,
            revision: 0,
            header: HeaderKind::Endpoint,
            bars: bars
                .into_iter()
                .map(|(index, kind, size)| Bar {
                    index,
                    kind,
                    prefetchable: false,
                    base: 0xFE00_0000,
                    size,
                })
                .collect(),
            capabilities: Capabilities::default(),
        }
    }

    #[test]
    fn bars_are_aligned_to_their_size_largest_first() {
        let nvme = function(vec![(0, BarKind::Memory64, 0x4000)]);
        let nic = function(vec![
            (1, BarKind::Memory32, 0x1000),
            (2, BarKind::Io, 0x20),
            (4, BarKind::Memory64, 0x10_0000),
        ]);
        let placed = place_bars(&[&nvme, &nic]).unwrap();
        let guest = |f: usize, i: usize| placed[f][i].guest;
        assert_eq!(placed[1].len(), 2, "the I/O BAR is not placed");
        assert_eq!(guest(1, 1), 0xC000_0000); // 1 MiB first.
        assert_eq!(guest(0, 0), 0xC010_0000); // Then 16 KiB.
        assert_eq!(guest(1, 0), 0xC010_4000); // Then 4 KiB.
        assert_eq!(placed[1][0].host.index, 1);
        for bars in &placed {
            for bar in bars {
                assert_eq!(bar.guest % bar.host.size, 0);
            }
        }
    }

    #[test]
    fn a_bar_larger_than_the_window_is_refused() {
        let big = function(vec![(0, BarKind::Memory64, 1 << 30)]);
        assert_eq!(
            place_bars(&[&big]),
            Err(BarsDoNotFit {
                function: 0,
                bar: 0,
                size: 1 << 30
            })
        );
        // Two 256 MiB BARs fill it exactly; a third page does not fit.
        let half = function(vec![
            (0, BarKind::Memory64, 256 << 20),
            (2, BarKind::Memory64, 256 << 20),
            (4, BarKind::Memory32, 0x1000),
        ]);
        assert_eq!(place_bars(&[&half]).unwrap_err().bar, 4);
    }
}
