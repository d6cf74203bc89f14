//! Whether a partition may own the host functions its layout names (`pci`), checked at boot
//! against the machine: the layout can only say which addresses it wants; what is at them,
//! and whether their DMA can be isolated, is the machine's to say.
//!
//! A function is given to a partition only if every one of these holds (issue 18, docs/pci.md):
//! - it exists, and is an endpoint (never a bridge, a host bridge or the platform's own
//!   ISA/LPC bridge);
//! - a DMA remapping unit covers it: without one its DMA reaches all memory, so there is no
//!   passthrough at all (never DMA without isolation);
//! - that unit remaps interrupts: a device's write into the interrupt address range is a
//!   message to a CPU, and without remapping it could name any CPU, vector and delivery mode
//!   (INIT, NMI, SMI) — another partition's or the hypervisor's (as VFIO refuses such a
//!   device unless told `allow_unsafe_interrupts`);
//! - the firmware reserved no memory for its DMA (VT-d RMRR, AMD-Vi IVMD): such a device keeps
//!   doing DMA the firmware set up, into memory the partition does not own;
//! - each memory BAR is page-aligned and page-sized at least, and no page of it holds any
//!   other function's BAR: the guest reaches a BAR through whole SLAT pages;
//! - no requester-ID alias ties it to a function of another partition: where a conventional
//!   PCI bridge stands between it and the root, its DMA carries the bridge's ID, which the
//!   remapping unit cannot tell apart from its neighbours' behind that bridge.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use super::{BarKind, HeaderKind, PciAddress, PciInventory};
use crate::memory::PAGE_SIZE;

/// One function a layout gives a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassthroughRequest {
    /// The partition, by its index in the layout.
    pub partition: usize,
    /// The function's host address (`pci[n].host`).
    pub host: PciAddress,
}

/// Why a function cannot be given to its partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassthroughRefusal {
    /// No function answers at the address.
    Missing,
    /// The function is not an endpoint (what it is instead).
    NotEndpoint(&'static str),
    /// The machine has no DMA remapping unit covering it (no DMAR/IVRS, or none of their
    /// units lists it).
    NoRemappingUnit,
    /// Its remapping unit (register base) cannot remap interrupts.
    NoInterruptRemapping { unit: u64 },
    /// The firmware reserved memory for its DMA, `[base, end)`.
    ReservedMemory(u64, u64),
    /// A memory BAR smaller than a page or not aligned to one.
    BarNotPageAligned {
        /// BAR number.
        bar: u8,
        base: u64,
        size: u64,
    },
    /// A page of one of its BARs also holds a BAR of `other`.
    BarSharesPage {
        /// BAR number.
        bar: u8,
        other: PciAddress,
    },
    /// Its DMA may carry the requester ID of `alias` (a bridge), as may the DMA of `other`,
    /// which another partition owns.
    AliasShared { alias: u16, other: PciAddress },
}

impl fmt::Display for PassthroughRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassthroughRefusal::Missing => f.write_str("no PCI function answers at that address"),
            PassthroughRefusal::NotEndpoint(what) => {
                write!(f, "it is {what}, not an endpoint a partition can own")
            }
            PassthroughRefusal::NoRemappingUnit => f.write_str(
                "no DMA remapping unit (VT-d or AMD-Vi) covers it, so its DMA could reach any \
                 memory; passthrough needs an IOMMU",
            ),
            PassthroughRefusal::NoInterruptRemapping { unit } => write!(
                f,
                "its remapping unit at {unit:#x} cannot remap interrupts (the DMAR's \
                 INTR_REMAP flag is clear, or the IVRS lists no I/O APIC behind it), so a \
                 message the device sent could interrupt any CPU"
            ),
            PassthroughRefusal::ReservedMemory(base, end) => write!(
                f,
                "the firmware reserved memory {base:#x}..{end:#x} for its DMA (RMRR/IVMD), \
                 which the partition does not own"
            ),
            PassthroughRefusal::BarNotPageAligned { bar, base, size } => write!(
                f,
                "BAR {bar} ({size:#x} bytes at {base:#x}) is not page-aligned and page-sized, \
                 so a guest page mapping it would reach beyond it"
            ),
            PassthroughRefusal::BarSharesPage { bar, other } => {
                write!(f, "BAR {bar} shares a page with a BAR of {other}")
            }
            PassthroughRefusal::AliasShared { alias, other } => write!(
                f,
                "its DMA may carry requester ID {:02x}:{:02x}.{:x} of a PCI bridge, as may \
                 {other}'s, which another partition owns",
                alias >> 8,
                alias >> 3 & 0x1F,
                alias & 7
            ),
        }
    }
}

/// Checks every request; the result is in request order: the function's index in
/// `inventory.devices`, or why it is refused. A refusal concerns its partition only.
pub fn check_requests(
    inventory: &PciInventory,
    requests: &[PassthroughRequest],
) -> Vec<Result<usize, PassthroughRefusal>> {
    let bridges = bridges_by_secondary_bus(inventory);
    let aliases: Vec<Option<u16>> = requests
        .iter()
        .map(|r| requester_alias(&bridges, r.host))
        .collect();
    requests
        .iter()
        .enumerate()
        .map(|(i, request)| {
            let index = check_one(inventory, request.host)?;
            if let Some(alias) = aliases[i] {
                let clash = requests.iter().zip(&aliases).find(|(other, other_alias)| {
                    other.partition != request.partition && **other_alias == Some(alias)
                });
                if let Some((other, _)) = clash {
                    return Err(PassthroughRefusal::AliasShared {
                        alias,
                        other: other.host,
                    });
                }
            }
            Ok(index)
        })
        .collect()
}

/// The checks that concern the function alone and the machine.
fn check_one(inventory: &PciInventory, host: PciAddress) -> Result<usize, PassthroughRefusal> {
    let (index, device) = inventory
        .devices
        .iter()
        .enumerate()
        .find(|(_, d)| d.function.address == host)
        .ok_or(PassthroughRefusal::Missing)?;
    let function = &device.function;
    if !function.is_endpoint() {
        return Err(PassthroughRefusal::NotEndpoint(match function.header {
            HeaderKind::Endpoint => "a host, ISA or other platform bridge (class 06)",
            HeaderKind::Bridge { .. } => "a PCI-to-PCI bridge",
            HeaderKind::CardBus => "a CardBus bridge",
            HeaderKind::Other(_) => "a function with an undefined header type",
        }));
    }
    let unit = inventory
        .unit_of(index)
        .ok_or(PassthroughRefusal::NoRemappingUnit)?;
    if !unit.interrupt_remapping {
        return Err(PassthroughRefusal::NoInterruptRemapping { unit: unit.base });
    }
    if let Some(&(base, end)) = device.reserved_memory.first() {
        return Err(PassthroughRefusal::ReservedMemory(base, end));
    }
    for bar in function.bars.iter().filter(|b| b.kind != BarKind::Io) {
        if bar.size < PAGE_SIZE || bar.base % PAGE_SIZE != 0 {
            return Err(PassthroughRefusal::BarNotPageAligned {
                bar: bar.index,
                base: bar.base,
                size: bar.size,
            });
        }
        let (first, last) = pages_of(bar.base, bar.size);
        let other = inventory
            .devices
            .iter()
            .filter(|d| d.function.address != host)
            .find(|d| {
                d.function.bars.iter().any(|b| {
                    let (other_first, other_last) = pages_of(b.base, b.size);
                    b.kind != BarKind::Io
                        && b.size != 0
                        && other_first <= last
                        && first <= other_last
                })
            });
        if let Some(other) = other {
            return Err(PassthroughRefusal::BarSharesPage {
                bar: bar.index,
                other: other.function.address,
            });
        }
    }
    Ok(index)
}

/// The first and last page numbers `[base, base + size)` touches.
fn pages_of(base: u64, size: u64) -> (u64, u64) {
    let last = base.saturating_add(size.max(1) - 1);
    (base / PAGE_SIZE, last / PAGE_SIZE)
}

/// The requester ID other than its own that the function's DMA may carry: that of the
/// conventional-PCI bridge nearest the root on its path (PCIe to PCI/PCI-X bridges take
/// ownership of the transactions they forward, PCIe Base 6.0 §2.2.6.2 and the PCIe to
/// PCI/PCI-X Bridge spec §2.3), as Linux's `pci_for_each_dma_alias` finds it.
fn requester_alias(
    bridges: &BTreeMap<(u16, u8), &super::PciFunction>,
    host: PciAddress,
) -> Option<u16> {
    let mut bus = host.bus;
    let mut alias = None;
    // At most 256 steps: each goes one bus nearer the root, and a loop of bridges in a broken
    // configuration must not hang the boot.
    for _ in 0..256 {
        let Some(bridge) = bridges.get(&(host.segment, bus)) else {
            break;
        };
        match bridge.capabilities.express_type {
            // A PCIe-to-PCI bridge: the forwarded DMA carries (secondary bus, 0.0).
            Some(7) => alias = Some(u16::from(bus) << 8),
            // A conventional PCI-to-PCI bridge: its own ID.
            None => alias = Some(bridge.address.requester_id()),
            Some(_) => {}
        }
        if bridge.address.bus == bus {
            break;
        }
        bus = bridge.address.bus;
    }
    alias
}

/// The machine's bridges by the (segment, bus) they lead to.
fn bridges_by_secondary_bus(inventory: &PciInventory) -> BTreeMap<(u16, u8), &super::PciFunction> {
    inventory
        .devices
        .iter()
        .filter_map(|d| match d.function.header {
            HeaderKind::Bridge { secondary, .. } => {
                Some(((d.function.address.segment, secondary), &d.function))
            }
            _ => None,
        })
        .collect()
}

/// The guest vnode a device on host node `device_node` belongs to: the vnode backed by that
/// node, else the vnode whose host node is nearest to it by `distance` (first in vnode order
/// on a tie). `vnode_nodes[v]` is vnode `v`'s host node. `None` if the partition has no vnode
/// or the device's node is unknown.
pub fn vnode_for_device(
    device_node: Option<usize>,
    vnode_nodes: &[usize],
    distance: impl Fn(usize, usize) -> u8,
) -> Option<usize> {
    let node = device_node?;
    vnode_nodes.iter().position(|&n| n == node).or_else(|| {
        vnode_nodes
            .iter()
            .enumerate()
            .min_by_key(|&(v, &n)| (distance(node, n), v))
            .map(|(v, _)| v)
    })
}

/// Where a device is far from its partition: none of the partition's vnodes is on the
/// device's node. The nearest partition node and its SLIT distance from the device's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FarDevice {
    /// The device's node.
    pub device_node: usize,
    /// The partition's node nearest to it.
    pub nearest: usize,
    /// Their SLIT distance.
    pub distance: u8,
}

/// Whether a device on `device_node` is far from a partition on `vnode_nodes`.
pub fn far_device(
    device_node: Option<usize>,
    vnode_nodes: &[usize],
    distance: impl Fn(usize, usize) -> u8,
) -> Option<FarDevice> {
    let node = device_node?;
    if vnode_nodes.contains(&node) {
        return None;
    }
    let vnode = vnode_for_device(Some(node), vnode_nodes, &distance)?;
    let nearest = vnode_nodes[vnode];
    Some(FarDevice {
        device_node: node,
        nearest,
        distance: distance(node, nearest),
    })
}
