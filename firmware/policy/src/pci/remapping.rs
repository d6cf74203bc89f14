//! Which DMA remapping unit serves each function, and what memory the firmware reserved for
//! its DMA: the DMAR's device scopes (Intel VT-d 4.1 §8.3) or the IVRS's device entries (AMD
//! IOMMU 48882 §5.2), resolved against the bridges the enumeration found.

use alloc::vec::Vec;

use super::{HeaderKind, PciAddress, PciFunction, RemappingKind, RemappingMap, RemappingUnit};
use crate::acpi::dmar::Dmar;
use crate::acpi::ivrs::{Ivrs, SpecialVariety};

/// The firmware's description of the machine's IOMMUs.
pub enum Remapping<'a, F: Fn(u32) -> Option<usize>> {
    VtD { dmar: &'a Dmar, node_of_pxm: F },
    AmdVi(&'a Ivrs),
}

/// The bridge at `segment:bus:device.function` among `functions`: its secondary and
/// subordinate buses.
fn bridge_buses(
    functions: &[PciFunction],
    segment: u16,
    (bus, device, function): (u8, u8, u8),
) -> Option<(u8, u8)> {
    functions
        .iter()
        .find(|f| {
            let a = f.address;
            (a.segment, a.bus, a.device, a.function) == (segment, bus, device, function)
        })
        .and_then(|f| match f.header {
            HeaderKind::Bridge {
                secondary,
                subordinate,
                ..
            } => Some((secondary, subordinate)),
            _ => None,
        })
}

/// A bridge's secondary bus, as a DMAR scope walk asks for it.
type SecondaryBus<'a> = &'a dyn Fn(u8, u8, u8) -> Option<u8>;
/// A bridge's secondary..=subordinate buses.
type BusRange<'a> = &'a dyn Fn(u8, u8, u8) -> Option<(u8, u8)>;

/// Runs a DMAR query (`Dmar::unit_for`, `Dmar::reserved_for`) for the function at `a`, with
/// the bridges of its segment as `functions` describes them.
fn dmar_query<R>(
    functions: &[PciFunction],
    a: PciAddress,
    query: impl FnOnce(u16, u8, u8, u8, SecondaryBus, BusRange) -> R,
) -> R {
    let range = |b, d, f| bridge_buses(functions, a.segment, (b, d, f));
    let secondary = |b, d, f| range(b, d, f).map(|(s, _)| s);
    query(a.segment, a.bus, a.device, a.function, &secondary, &range)
}

impl<F: Fn(u32) -> Option<usize>> RemappingMap for Remapping<'_, F> {
    fn units(&self) -> Vec<RemappingUnit> {
        match self {
            Remapping::VtD { dmar, node_of_pxm } => dmar
                .units
                .iter()
                .enumerate()
                .map(|(index, unit)| {
                    let pxm = dmar.proximity_domain(index);
                    RemappingUnit {
                        kind: RemappingKind::VtD,
                        base: unit.register_base,
                        segment: unit.segment,
                        pxm,
                        node: pxm.and_then(node_of_pxm),
                        interrupt_remapping: dmar.interrupt_remapping,
                    }
                })
                .collect(),
            Remapping::AmdVi(ivrs) => ivrs
                .units
                .iter()
                .map(|unit| RemappingUnit {
                    kind: RemappingKind::AmdVi,
                    base: unit.base,
                    segment: unit.segment,
                    // The IVRS gives no proximity.
                    pxm: None,
                    node: None,
                    interrupt_remapping: unit
                        .specials
                        .iter()
                        .any(|s| s.variety == SpecialVariety::IoApic),
                })
                .collect(),
        }
    }

    fn unit_for(&self, function: &PciFunction, functions: &[PciFunction]) -> Option<usize> {
        let a = function.address;
        match self {
            Remapping::VtD { dmar, .. } => dmar_query(functions, a, |s, b, d, f, sec, range| {
                dmar.unit_for(s, b, d, f, sec, range)
            }),
            Remapping::AmdVi(ivrs) => ivrs
                .unit_for(a.segment, a.requester_id())
                .map(|(unit, _)| unit),
        }
    }

    fn reserved_for(&self, function: &PciFunction, functions: &[PciFunction]) -> Vec<(u64, u64)> {
        let a = function.address;
        match self {
            Remapping::VtD { dmar, .. } => dmar_query(functions, a, |s, b, d, f, sec, range| {
                dmar.reserved_for(s, b, d, f, sec, range)
                    .into_iter()
                    .map(|r| (r.base, r.limit.saturating_add(1)))
                    .collect()
            }),
            Remapping::AmdVi(ivrs) => ivrs
                .memory_for(a.segment, a.requester_id())
                .into_iter()
                .map(|m| (m.base, m.limit.saturating_add(1)))
                .collect(),
        }
    }
}
