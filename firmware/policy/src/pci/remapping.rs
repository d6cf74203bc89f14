//! Which DMA remapping unit serves each function, and what memory the firmware reserved for
//! its DMA: the DMAR's device scopes (Intel VT-d 4.1 §8.3) or the IVRS's device entries (AMD
//! IOMMU 48882 §5.2), resolved against the bridges the enumeration found.

use alloc::vec::Vec;

use super::{HeaderKind, PciFunction, RemappingKind, RemappingMap, RemappingUnit};
use crate::acpi::dmar::Dmar;
use crate::acpi::ivrs::Ivrs;

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

/// The bridges of one segment, as a DMAR scope walk asks about them.
struct SegmentBridges<'a> {
    functions: &'a [PciFunction],
    segment: u16,
}

impl SegmentBridges<'_> {
    fn secondary(&self, bus: u8, device: u8, function: u8) -> Option<u8> {
        self.range(bus, device, function)
            .map(|(secondary, _)| secondary)
    }

    fn range(&self, bus: u8, device: u8, function: u8) -> Option<(u8, u8)> {
        bridge_buses(self.functions, self.segment, (bus, device, function))
    }
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
                })
                .collect(),
        }
    }

    fn unit_for(&self, function: &PciFunction, functions: &[PciFunction]) -> Option<usize> {
        let a = function.address;
        match self {
            Remapping::VtD { dmar, .. } => {
                let bridges = SegmentBridges {
                    functions,
                    segment: a.segment,
                };
                dmar.unit_for(
                    a.segment,
                    a.bus,
                    a.device,
                    a.function,
                    |b, d, f| bridges.secondary(b, d, f),
                    |b, d, f| bridges.range(b, d, f),
                )
            }
            Remapping::AmdVi(ivrs) => ivrs
                .unit_for(a.segment, a.requester_id())
                .map(|(unit, _)| unit),
        }
    }

    fn reserved_for(&self, function: &PciFunction, functions: &[PciFunction]) -> Vec<(u64, u64)> {
        let a = function.address;
        match self {
            Remapping::VtD { dmar, .. } => {
                let bridges = SegmentBridges {
                    functions,
                    segment: a.segment,
                };
                dmar.reserved_for(
                    a.segment,
                    a.bus,
                    a.device,
                    a.function,
                    |b, d, f| bridges.secondary(b, d, f),
                    |b, d, f| bridges.range(b, d, f),
                )
                .into_iter()
                .map(|r| (r.base, r.limit.saturating_add(1)))
                .collect()
            }
            Remapping::AmdVi(ivrs) => ivrs
                .memory_for(a.segment, a.requester_id())
                .into_iter()
                .map(|m| (m.base, m.limit.saturating_add(1)))
                .collect(),
        }
    }
}
