//! Which host bridge each function hangs under (and so its NUMA node, ACPI 6.5 §6.2.14: a
//! device takes its `_PXM` from its host bridge).
//!
//! From each host bridge's root bus, buses are followed through the bridges' secondary bus
//! numbers as the firmware configured them. A function no walk reaches (a bridge left
//! unconfigured) falls back to the host bridge whose `_CRS` bus range holds its bus.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use super::{HeaderKind, PciFunction};

/// A host bridge as placement needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostBridgeRoot {
    pub segment: u16,
    /// Its root bus (`_BBN`).
    pub bus: u8,
    /// The buses its `_CRS` says it decodes, where known.
    pub bus_range: Option<(u8, u8)>,
}

/// For each function, the index in `roots` of the host bridge it hangs under, if any.
pub fn attribute_roots(functions: &[PciFunction], roots: &[HostBridgeRoot]) -> Vec<Option<usize>> {
    let mut owner = alloc::vec![None; functions.len()];
    for (root_index, root) in roots.iter().enumerate() {
        // Each bus is visited once per walk, so a bridge pointing back up cannot loop.
        let mut seen = BTreeSet::new();
        let mut pending = alloc::vec![root.bus];
        while let Some(bus) = pending.pop() {
            if !seen.insert(bus) {
                continue;
            }
            for (i, function) in functions.iter().enumerate() {
                let at = function.address;
                if at.segment != root.segment || at.bus != bus || owner[i].is_some() {
                    continue;
                }
                owner[i] = Some(root_index);
                if let HeaderKind::Bridge { secondary, .. } = function.header {
                    if secondary > bus {
                        pending.push(secondary);
                    }
                }
            }
        }
    }
    for (i, function) in functions.iter().enumerate() {
        if owner[i].is_none() {
            let at = function.address;
            owner[i] = roots.iter().position(|r| {
                r.segment == at.segment
                    && r.bus_range
                        .is_some_and(|(low, high)| (low..=high).contains(&at.bus))
            });
        }
    }
    owner
}
