//! PCI passthrough at the partition edge: which of the layout's host functions each partition
//! may own on this machine (`numavisor_policy::pci::passthrough` decides), and the warning for
//! a function far from its partition's memory.

use alloc::vec::Vec;

use numavisor_layout::{Layout, PartitionSpec};
use numavisor_policy::pci::passthrough::{
    check_requests, far_device, PassthroughRefusal, PassthroughRequest,
};
use numavisor_policy::pci::{PciAddress, PciInventory, RemappingKind};
use numavisor_policy::report::events;

use crate::platform::console::report;

/// Every `pci` entry of the layout, in file order (partition by partition): the function's
/// index in `inventory.devices`, or why the machine refuses it.
pub fn check_layout(
    inventory: &PciInventory,
    layout: &Layout,
) -> Vec<Result<usize, PassthroughRefusal>> {
    let requests: Vec<PassthroughRequest> = layout
        .partitions
        .iter()
        .enumerate()
        .flat_map(|(partition, spec)| {
            spec.pci.iter().map(move |d| PassthroughRequest {
                partition,
                host: d.host,
            })
        })
        .collect();
    check_requests(inventory, &requests)
}

/// Why a partition cannot have its functions: the first refused one, by address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub host: PciAddress,
    pub reason: RefusalReason,
}

/// A refusal by the machine's checks, or for want of a driver for the function's unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    Machine(PassthroughRefusal),
    NoDriver(RemappingKind),
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.reason {
            RefusalReason::Machine(why) => write!(f, "pci {}: {why}", self.host),
            RefusalReason::NoDriver(kind) => write!(
                f,
                "pci {}: numavisor has no {} driver yet, so it cannot isolate the function's \
                 DMA",
                self.host,
                kind.name()
            ),
        }
    }
}

/// The inventory indices of `spec`'s functions, or why one is refused; `checked` is this
/// partition's slice of [`check_layout`].
pub fn accept(
    inventory: &PciInventory,
    spec: &PartitionSpec,
    checked: &[Result<usize, PassthroughRefusal>],
) -> Result<Vec<usize>, Refused> {
    spec.pci
        .iter()
        .zip(checked)
        .map(|(device, result)| {
            let refused = |reason| Refused {
                host: device.host,
                reason,
            };
            let index = result
                .clone()
                .map_err(|why| refused(RefusalReason::Machine(why)))?;
            // check_requests gives only functions with a unit.
            let unit = inventory.devices[index]
                .unit
                .and_then(|u| inventory.units.get(u));
            match unit {
                Some(unit) if driver_for(unit.kind) => Ok(index),
                Some(unit) => Err(refused(RefusalReason::NoDriver(unit.kind))),
                None => Err(refused(RefusalReason::Machine(
                    PassthroughRefusal::NoRemappingUnit,
                ))),
            }
        })
        .collect()
}

/// Whether the hypervisor drives this kind of remapping unit.
fn driver_for(_kind: RemappingKind) -> bool {
    false
}

/// Reports (`pci_far`) each function of the partition whose node holds none of its memory.
pub fn report_far(
    inventory: &PciInventory,
    spec: &PartitionSpec,
    devices: &[usize],
    vnode_nodes: &[usize],
    distances: &[Vec<u8>],
) {
    let distance = |a: usize, b: usize| {
        distances
            .get(a)
            .and_then(|row| row.get(b))
            .copied()
            .unwrap_or(u8::MAX)
    };
    for &index in devices {
        let device = &inventory.devices[index];
        if let Some(far) = far_device(device.node, vnode_nodes, distance) {
            log::warn!(
                "partition \"{}\": pci {} is on node {}, which holds none of its memory \
                 (nearest: node {}, distance {})",
                spec.name,
                device.function.address,
                far.device_node,
                far.nearest,
                far.distance
            );
            report::emit(&events::pci_far(
                spec.name,
                &device.function.address,
                far.device_node,
                far.nearest,
                far.distance,
            ));
        }
    }
}
