//! The DMA Remapping Reporting table, "DMAR" (Intel VT-d specification rev 4.1 §8).
//!
//! After the 36-byte header come the host address width, flags and 10 reserved bytes (§8.1),
//! then remapping structures with a u16 type and a u16 length (§8.2): DRHD (0, §8.3), RMRR
//! (1, §8.4), ATSR (2, §8.5), RHSA (3, §8.6) and ANDD (4, §8.7) are decoded; SATC (5, §8.8),
//! SIDP (6) and types this parser does not know are skipped by their length and listed in
//! [`Dmar::skipped`] (the spec tells software to skip reserved types, so they are no problem).
//!
//! A structure's framing (type and length) is checked by the `sdt` walker: a bad length ends the
//! walk. Inside a structure, the device scopes (§8.3.1) are checked one by one; at the first
//! damaged scope the rest of that structure's scopes are dropped, and then what is safest
//! depends on what the structure grants or restricts:
//! - a DRHD is dropped: the devices it would cover count as covered by no unit, so nothing
//!   trusts an isolation we cannot describe (the same for a DRHD whose register base is not
//!   page aligned);
//! - an RMRR restricts (that memory must stay mapped for its devices), so it is kept with the
//!   scopes before the damage and `damaged: true`;
//! - an ATSR grants ATS, so it is dropped.
//!
//! Two INCLUDE_PCI_ALL units for one segment leave it ambiguous which one catches the
//! segment's unlisted devices, so neither keeps the flag: those devices are covered by no unit.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use super::bytes::{u16_at, u32_at, u64_at, u8_at};
use super::problem::{AcpiProblem, DmarFault, ScopeDamage, ScopeFallback};
use super::sdt::{Structure, StructureHeader, Structures, SDT_HEADER_LENGTH};

/// Bytes before the first remapping structure: header, width, flags, 10 reserved (§8.1).
pub const DMAR_FIXED_LENGTH: usize = SDT_HEADER_LENGTH + 12;

/// The offset bits inside a 4 KiB page.
const PAGE_MASK: u64 = 0xFFF;

/// The decoded DMAR.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dmar {
    /// Maximum DMA physical addressability, in bits (the table's field + 1, at most 64).
    pub host_address_width: u8,
    /// Flags bit 0, INTR_REMAP: the platform supports interrupt remapping.
    pub interrupt_remapping: bool,
    /// Flags bit 1, X2APIC_OPT_OUT: firmware asks the OS not to enable x2APIC mode.
    pub x2apic_opt_out: bool,
    /// Flags bit 2, DMA_CTRL_PLATFORM_OPT_IN: firmware set up DMA protection worth keeping.
    pub dma_control_opt_in: bool,
    /// DRHDs in table order, without the ones dropped for damage.
    pub units: Vec<Drhd>,
    /// RMRRs in table order.
    pub reserved_memory: Vec<Rmrr>,
    /// ATSRs in table order, without the ones dropped for damage.
    pub ats: Vec<Atsr>,
    /// RHSAs in table order.
    pub affinities: Vec<Rhsa>,
    /// ANDDs in table order.
    pub namespace_devices: Vec<Andd>,
    /// Structures passed over by their length: SATC, SIDP and unknown types.
    pub skipped: Vec<SkippedStructure>,
}

/// A DMA remapping hardware unit definition (type 0, §8.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drhd {
    pub segment: u16,
    /// Physical address of the unit's register set (4 KiB aligned).
    pub register_base: u64,
    /// Size of the register set in 4 KiB pages: 2^N for the size field's bits 3:0.
    pub register_pages: u32,
    /// Flags bit 0, INCLUDE_PCI_ALL: the unit covers every PCI function of its segment that
    /// no other unit's scopes name.
    pub include_all: bool,
    pub scopes: Vec<DeviceScope>,
}

/// A reserved memory region some devices DMA to (type 1, §8.4): it must stay identity mapped
/// for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rmrr {
    pub segment: u16,
    /// First byte (4 KiB aligned; widened if the table's was not).
    pub base: u64,
    /// Last byte, inclusive (limit + 1 4 KiB aligned; widened if the table's was not).
    pub limit: u64,
    pub scopes: Vec<DeviceScope>,
    /// A scope was damaged (only the scopes before it are here) or base > limit: the
    /// region's reach is not fully known.
    pub damaged: bool,
}

/// Root ports that support Address Translation Services (type 2, §8.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Atsr {
    pub segment: u16,
    /// Flags bit 0, ALL_PORTS: every root port of the segment supports ATS.
    pub all_ports: bool,
    pub scopes: Vec<DeviceScope>,
}

/// The proximity domain of a remapping unit (type 3, §8.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rhsa {
    /// The register base of the DRHD it describes.
    pub register_base: u64,
    pub proximity_domain: u32,
}

/// An ACPI namespace device (type 4, §8.7), named by device scopes of type 5 whose
/// enumeration ID is its device number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Andd {
    pub device_number: u8,
    /// The fully qualified ACPI object name (such as `\_SB.PCI0.I2C0`), without its NUL.
    pub name: Vec<u8>,
}

/// A remapping structure passed over by its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkippedStructure {
    pub kind: u16,
    /// Its offset in the table.
    pub offset: usize,
}

/// What a device scope names (§8.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeKind {
    /// 1: one PCI endpoint function.
    PciEndpoint,
    /// 2: a PCI-PCI bridge and every function below it.
    PciBridge,
    /// 3: an I/O APIC; the enumeration ID is its APIC ID.
    IoApic,
    /// 4: an MSI-capable HPET; the enumeration ID is its HPET number.
    Hpet,
    /// 5: an ACPI namespace device; the enumeration ID is its ANDD device number.
    AcpiNamespace,
    /// Any other value.
    Other(u8),
}

impl ScopeKind {
    fn from_raw(raw: u8) -> ScopeKind {
        match raw {
            1 => ScopeKind::PciEndpoint,
            2 => ScopeKind::PciBridge,
            3 => ScopeKind::IoApic,
            4 => ScopeKind::Hpet,
            5 => ScopeKind::AcpiNamespace,
            other => ScopeKind::Other(other),
        }
    }
}

/// One device scope entry (§8.3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceScope {
    pub kind: ScopeKind,
    pub enumeration_id: u8,
    /// The bus the path's first step is on.
    pub start_bus: u8,
    /// The hierarchical path from `start_bus` down to the device.
    pub path: Vec<PciPathStep>,
}

/// One step of a device scope's path: a function on the current bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciPathStep {
    pub device: u8,
    pub function: u8,
}

impl PciPathStep {
    /// Whether it can name a PCI function at all (device < 32, function < 8).
    fn is_function(self) -> bool {
        self.device < 32 && self.function < 8
    }
}

impl DeviceScope {
    /// The (bus, device, function) the path leads to (§8.3.2): the first step is on
    /// `start_bus`, and each further step is on the secondary bus of the bridge the step
    /// before it named, as `secondary_bus_of(bus, device, function)` reports it. `None` if a
    /// bridge on the way is missing, the path is empty, or a step names no PCI function.
    pub fn resolve(
        &self,
        secondary_bus_of: impl Fn(u8, u8, u8) -> Option<u8>,
    ) -> Option<(u8, u8, u8)> {
        let (last, bridges) = self.path.split_last()?;
        let mut bus = self.start_bus;
        for step in bridges {
            if !step.is_function() {
                return None;
            }
            bus = secondary_bus_of(bus, step.device, step.function)?;
        }
        last.is_function()
            .then_some((bus, last.device, last.function))
    }

    /// Whether this PCI scope names `target`: an endpoint scope that resolves to it, or a
    /// bridge scope that resolves to it or whose secondary..=subordinate buses hold its bus.
    /// I/O APIC, HPET and namespace scopes name no PCI function.
    fn names(
        &self,
        target: (u8, u8, u8),
        secondary_bus_of: &impl Fn(u8, u8, u8) -> Option<u8>,
        subordinate_range_of: &impl Fn(u8, u8, u8) -> Option<(u8, u8)>,
    ) -> bool {
        let bridge = match self.kind {
            ScopeKind::PciEndpoint => false,
            ScopeKind::PciBridge => true,
            _ => return false,
        };
        let Some(found) = self.resolve(secondary_bus_of) else {
            return false;
        };
        found == target
            || bridge
                && subordinate_range_of(found.0, found.1, found.2)
                    .is_some_and(|(first, last)| (first..=last).contains(&target.0))
    }
}

impl Dmar {
    /// The index in [`Dmar::units`] of the unit that translates DMA from PCI function
    /// `bus:device.function` of `segment` (§8.3.2): the first unit in table order with a scope
    /// that names it (an endpoint scope resolving to it, or a bridge scope whose bus range
    /// holds it), else the segment's INCLUDE_PCI_ALL unit, else `None` (covered by no unit).
    /// `secondary_bus_of` and `subordinate_range_of` describe the bridges as enumerated.
    pub fn unit_for(
        &self,
        segment: u16,
        bus: u8,
        device: u8,
        function: u8,
        secondary_bus_of: impl Fn(u8, u8, u8) -> Option<u8>,
        subordinate_range_of: impl Fn(u8, u8, u8) -> Option<(u8, u8)>,
    ) -> Option<usize> {
        let target = (bus, device, function);
        self.units
            .iter()
            .position(|u| {
                u.segment == segment
                    && u.scopes
                        .iter()
                        .any(|s| s.names(target, &secondary_bus_of, &subordinate_range_of))
            })
            .or_else(|| {
                self.units
                    .iter()
                    .position(|u| u.segment == segment && u.include_all)
            })
    }

    /// The RMRRs that name PCI function `bus:device.function` of `segment`, resolved as
    /// [`Dmar::unit_for`] does (a bridge scope names everything below the bridge).
    pub fn reserved_for(
        &self,
        segment: u16,
        bus: u8,
        device: u8,
        function: u8,
        secondary_bus_of: impl Fn(u8, u8, u8) -> Option<u8>,
        subordinate_range_of: impl Fn(u8, u8, u8) -> Option<(u8, u8)>,
    ) -> Vec<&Rmrr> {
        let target = (bus, device, function);
        self.reserved_memory
            .iter()
            .filter(|r| {
                r.segment == segment
                    && r.scopes
                        .iter()
                        .any(|s| s.names(target, &secondary_bus_of, &subordinate_range_of))
            })
            .collect()
    }

    /// The proximity domain an RHSA gives the unit at `unit` in [`Dmar::units`].
    pub fn proximity_domain(&self, unit: usize) -> Option<u32> {
        let base = self.units.get(unit)?.register_base;
        self.affinities
            .iter()
            .find(|a| a.register_base == base)
            .map(|a| a.proximity_domain)
    }
}

/// Decode a DMAR: `table` is the whole table, header included. Never fails: what is wrong
/// goes to `problems`, with the fallback the module documentation describes.
pub fn parse(table: &[u8], problems: &mut Vec<AcpiProblem>) -> Dmar {
    let mut dmar = Dmar::default();
    if table.len() < DMAR_FIXED_LENGTH {
        problems.push(AcpiProblem::FixedPartShort {
            table: *b"DMAR",
            length: table.len(),
            minimum: DMAR_FIXED_LENGTH,
        });
        return dmar;
    }
    let width = u16::from(u8_at(table, SDT_HEADER_LENGTH).unwrap_or(0)) + 1;
    if width > 64 {
        problems.push(AcpiProblem::DmarAddressWidth { width });
    }
    dmar.host_address_width = width.min(64) as u8;
    let flags = u8_at(table, SDT_HEADER_LENGTH + 1).unwrap_or(0);
    dmar.interrupt_remapping = flags & 1 != 0;
    dmar.x2apic_opt_out = flags & 2 != 0;
    dmar.dma_control_opt_in = flags & 4 != 0;

    // Where each kept unit's structure was (index, offset), for naming include-all clashes.
    let mut unit_at = Vec::new();
    let mut walk = Structures::new(table, DMAR_FIXED_LENGTH, StructureHeader::Dmar, problems);
    while let Some(s) = walk.next() {
        let b = s.bytes;
        let fault = |fault| problem(&s, fault);
        let scope_problem = |at, damage, fallback| {
            fault(DmarFault::Scope {
                at,
                damage,
                fallback,
            })
        };
        match s.kind {
            0 if walk.fits(&s, 16) => {
                let flags = u8_at(b, 4).unwrap_or(0);
                let register_base = u64_at(b, 8).unwrap_or(0);
                let (scopes, damage) = scopes(&s, 16);
                if let Some((at, damage)) = damage {
                    walk.table_problem(scope_problem(at, damage, ScopeFallback::UnitDropped));
                    continue;
                }
                if register_base & PAGE_MASK != 0 {
                    let base = register_base;
                    walk.table_problem(fault(DmarFault::RegisterBaseUnaligned { base }));
                    continue;
                }
                dmar.units.push(Drhd {
                    segment: u16_at(b, 6).unwrap_or(0),
                    register_base,
                    // Bits 7:4 are reserved; 2^15 pages still fit in a u32.
                    register_pages: 1 << (u8_at(b, 5).unwrap_or(0) & 0xF),
                    include_all: flags & 1 != 0,
                    scopes,
                });
                unit_at.push((s.index, s.offset));
            }
            1 if walk.fits(&s, 24) => {
                let (mut base, mut limit) = (u64_at(b, 8).unwrap_or(0), u64_at(b, 16).unwrap_or(0));
                let (scopes, damage) = scopes(&s, 24);
                let mut damaged = false;
                if let Some((at, damage)) = damage {
                    walk.table_problem(scope_problem(at, damage, ScopeFallback::RegionKept));
                    damaged = true;
                }
                if base > limit {
                    walk.table_problem(fault(DmarFault::RegionInverted { base, limit }));
                    damaged = true;
                } else if base & PAGE_MASK != 0 || limit & PAGE_MASK != PAGE_MASK {
                    // Widening only adds pages to what stays mapped: the safe direction.
                    walk.table_problem(fault(DmarFault::RegionUnaligned { base, limit }));
                    base &= !PAGE_MASK;
                    limit |= PAGE_MASK;
                }
                dmar.reserved_memory.push(Rmrr {
                    segment: u16_at(b, 6).unwrap_or(0),
                    base,
                    limit,
                    scopes,
                    damaged,
                });
            }
            2 if walk.fits(&s, 8) => {
                let (scopes, damage) = scopes(&s, 8);
                if let Some((at, damage)) = damage {
                    walk.table_problem(scope_problem(at, damage, ScopeFallback::AtsDropped));
                    continue;
                }
                dmar.ats.push(Atsr {
                    segment: u16_at(b, 6).unwrap_or(0),
                    all_ports: u8_at(b, 4).unwrap_or(0) & 1 != 0,
                    scopes,
                });
            }
            3 if walk.fits(&s, 20) => dmar.affinities.push(Rhsa {
                register_base: u64_at(b, 8).unwrap_or(0),
                proximity_domain: u32_at(b, 16).unwrap_or(0),
            }),
            4 if walk.fits(&s, 8) => {
                let text = b.get(8..).unwrap_or(&[]);
                let name = match text.iter().position(|&c| c == 0) {
                    Some(end) => text.get(..end).unwrap_or(&[]),
                    None => {
                        walk.table_problem(fault(DmarFault::NameUnterminated));
                        text
                    }
                };
                dmar.namespace_devices.push(Andd {
                    device_number: u8_at(b, 7).unwrap_or(0),
                    name: name.to_vec(),
                });
            }
            0..=4 => {} // shorter than its type: `fits` recorded it and ended the walk
            kind => dmar.skipped.push(SkippedStructure {
                kind,
                offset: s.offset,
            }),
        }
    }
    single_include_all(&mut dmar.units, &unit_at, problems);
    dmar
}

/// A problem about structure `s`.
fn problem(s: &Structure<'_>, fault: DmarFault) -> AcpiProblem {
    AcpiProblem::Dmar {
        index: s.index,
        entry_type: s.kind,
        offset: s.offset,
        fault,
    }
}

/// Clear INCLUDE_PCI_ALL on every unit of a segment that has more than one (§8.3: at most one
/// per segment), reporting each after the first. `at[i]` is unit i's structure index and
/// offset.
fn single_include_all(units: &mut [Drhd], at: &[(usize, usize)], problems: &mut Vec<AcpiProblem>) {
    // Maps, not scans, so this stays n log n however many units a hostile table lists.
    let mut first: BTreeMap<u16, usize> = BTreeMap::new();
    let mut ambiguous = BTreeSet::new();
    for (i, unit) in units.iter().enumerate().filter(|(_, u)| u.include_all) {
        match first.get(&unit.segment) {
            None => {
                first.insert(unit.segment, i);
            }
            Some(&f) => {
                ambiguous.insert(unit.segment);
                let (index, offset) = at.get(i).copied().unwrap_or_default();
                problems.push(AcpiProblem::Dmar {
                    index,
                    entry_type: 0,
                    offset,
                    fault: DmarFault::DuplicateIncludeAll {
                        segment: unit.segment,
                        first: at.get(f).map_or(0, |&(index, _)| index),
                    },
                });
            }
        }
    }
    for unit in units.iter_mut() {
        if ambiguous.contains(&unit.segment) {
            unit.include_all = false;
        }
    }
}

/// Decode the device scopes of structure `s` from byte `start` on (§8.3.1). Stops at the
/// first damaged scope and returns its table offset and damage with the scopes before it.
fn scopes(s: &Structure<'_>, start: usize) -> (Vec<DeviceScope>, Option<(usize, ScopeDamage)>) {
    let b = s.bytes;
    let mut out = Vec::new();
    let mut at = start;
    while let Some(room) = b.len().checked_sub(at).filter(|&r| r > 0) {
        let here = s.offset.saturating_add(at);
        let Some(length) = u8_at(b, at + 1) else {
            return (out, Some((here, ScopeDamage::Truncated { room })));
        };
        let damage = if length < 6 {
            Some(ScopeDamage::TooShort { length })
        } else if usize::from(length) > room {
            Some(ScopeDamage::PastStructure { length, room })
        } else if length % 2 != 0 {
            Some(ScopeDamage::OddPath { length })
        } else {
            None
        };
        let bytes = b.get(at..at + usize::from(length));
        let (None, Some(bytes)) = (damage, bytes) else {
            let damage = damage.unwrap_or(ScopeDamage::PastStructure { length, room });
            return (out, Some((here, damage)));
        };
        let path = bytes
            .get(6..)
            .unwrap_or(&[])
            .chunks_exact(2)
            .filter_map(|pair| {
                Some(PciPathStep {
                    device: *pair.first()?,
                    function: *pair.get(1)?,
                })
            })
            .collect();
        out.push(DeviceScope {
            kind: ScopeKind::from_raw(u8_at(bytes, 0).unwrap_or(0)),
            enumeration_id: u8_at(bytes, 4).unwrap_or(0),
            start_bus: u8_at(bytes, 5).unwrap_or(0),
            path,
        });
        // length ≥ 6: the loop advances.
        at += usize::from(length);
    }
    (out, None)
}

#[cfg(test)]
mod tests;
