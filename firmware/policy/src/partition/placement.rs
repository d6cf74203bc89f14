//! Placing a partition on the machine: which physical CPUs run its vCPUs and which host
//! pages back its guest RAM, checked against the topology found at boot.
//!
//! The layout names host nodes by the boot report's dense node index; one image therefore
//! fits every machine whose topology has those nodes. What does not fit is refused with a
//! [`PlacementError`] that says why in the layout's terms, and the other partitions still run.

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::memory::{AllocError, BlockSize, Bytes, FrameAllocator, Usage};
use crate::topology::Topology;

/// How the layout asks for vCPUs (one group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuRequest {
    /// `count` CPUs of host `node`, chosen at boot.
    OnNode {
        node: usize,
        count: usize,
        vnode: Option<usize>,
    },
    /// These exact CPUs.
    ApicIds { ids: Vec<u32>, vnode: Option<usize> },
}

/// One vCPU's placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuPlan {
    pub vcpu: usize,
    /// The physical CPU it is pinned to.
    pub apic_id: u32,
    /// That CPU's host node.
    pub node: usize,
    /// The vNUMA node the guest sees it in.
    pub vnode: usize,
}

/// One piece of guest RAM: `[gpa, gpa + size)` backed by `[spa, spa + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestBlock {
    pub gpa: u64,
    pub spa: u64,
    pub size: BlockSize,
    pub vnode: usize,
    pub node: usize,
}

/// Why a partition cannot be placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlacementError {
    NoSuchNode {
        field: String,
        node: usize,
        nodes: usize,
    },
    NoSuchVnode {
        field: String,
        vnode: usize,
        vnodes: usize,
    },
    NotEnoughCpus {
        node: usize,
        wanted: usize,
        available: usize,
    },
    CpuUnavailable {
        apic_id: u32,
    },
    NotEnoughMemory {
        vnode: usize,
        node: usize,
        needed: u64,
        free: u64,
    },
    Memory(AllocError),
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementError::NoSuchNode { field, node, nodes } => write!(
                f,
                "{field} names node {node}, but this machine has {nodes} node(s) (0..{})",
                nodes.saturating_sub(1)
            ),
            PlacementError::NoSuchVnode { field, vnode, vnodes } => {
                write!(f, "{field} names vnode {vnode}, but the partition has {vnodes}")
            }
            PlacementError::NotEnoughCpus { node, wanted, available } => write!(
                f,
                "vcpus: wants {wanted} CPU(s) on node {node}, but only {available} are online and free there"
            ),
            PlacementError::CpuUnavailable { apic_id } => write!(
                f,
                "vcpus: CPU with APIC ID {apic_id} is not online or already runs another vCPU"
            ),
            PlacementError::NotEnoughMemory { vnode, node, needed, free } => write!(
                f,
                "memory[{vnode}]: needs {} on node {node}, which has {} free",
                Bytes(*needed),
                Bytes(*free)
            ),
            PlacementError::Memory(e) => write!(f, "memory: {e}"),
        }
    }
}

/// Picks the physical CPUs for a partition's vCPUs from `available` (online, not yet used),
/// removing the ones it takes. `vnode_nodes[k]` is the host node backing vnode `k`. On error
/// nothing is taken.
pub fn assign_cpus(
    requests: &[CpuRequest],
    vnode_nodes: &[usize],
    topology: &Topology,
    available: &mut BTreeSet<u32>,
) -> Result<Vec<VcpuPlan>, PlacementError> {
    let mut free = available.clone();
    let mut plans = Vec::new();
    for (group, request) in requests.iter().enumerate() {
        let (ids, wanted_vnode) = match request {
            CpuRequest::OnNode { node, count, vnode } => {
                let Some(domain) = topology.domains.get(*node) else {
                    return Err(PlacementError::NoSuchNode {
                        field: alloc::format!("vcpus[{group}].node"),
                        node: *node,
                        nodes: topology.domains.len(),
                    });
                };
                let ids: Vec<u32> = domain
                    .apic_ids
                    .iter()
                    .copied()
                    .filter(|id| free.contains(id))
                    .take(*count)
                    .collect();
                if ids.len() < *count {
                    return Err(PlacementError::NotEnoughCpus {
                        node: *node,
                        wanted: *count,
                        available: ids.len(),
                    });
                }
                (ids, *vnode)
            }
            CpuRequest::ApicIds { ids, vnode } => {
                if let Some(&apic_id) = ids.iter().find(|id| !free.contains(id)) {
                    return Err(PlacementError::CpuUnavailable { apic_id });
                }
                (ids.clone(), *vnode)
            }
        };
        for apic_id in ids {
            free.remove(&apic_id);
            let node = topology.domain_of_apic_id(apic_id).unwrap_or(0);
            let vnode = match wanted_vnode {
                Some(v) if v < vnode_nodes.len() => v,
                Some(v) => {
                    return Err(PlacementError::NoSuchVnode {
                        field: alloc::format!("vcpus[{group}].vnode"),
                        vnode: v,
                        vnodes: vnode_nodes.len(),
                    })
                }
                None => vnode_nodes.iter().position(|&n| n == node).unwrap_or(0),
            };
            plans.push(VcpuPlan {
                vcpu: plans.len(),
                apic_id,
                node,
                vnode,
            });
        }
    }
    *available = free;
    Ok(plans)
}

/// Checks that every vnode's host node exists and has the free memory asked for.
pub fn check_memory(
    vnodes: &[(u64, usize)],
    frames: &FrameAllocator,
) -> Result<(), PlacementError> {
    let mut wanted: Vec<u64> = alloc::vec![0; frames.node_count()];
    for (vnode, &(size, node)) in vnodes.iter().enumerate() {
        let Some(total) = wanted.get_mut(node) else {
            return Err(PlacementError::NoSuchNode {
                field: alloc::format!("memory[{vnode}].node"),
                node,
                nodes: frames.node_count(),
            });
        };
        *total += size;
        let free = frames.ledger()[node].free;
        if *total > free {
            return Err(PlacementError::NotEnoughMemory {
                vnode,
                node,
                needed: size,
                free,
            });
        }
    }
    Ok(())
}

/// Backs `ranges` (guest-physical, 4 KiB aligned) of `vnode` with pages from host `node`,
/// each step taking the largest block no bigger than `max_page` for which the guest address
/// is aligned and the node has one, so the SLAT can map it with the same page size. On error
/// everything taken is given back.
pub fn back_guest_ranges(
    frames: &mut FrameAllocator,
    vnode: usize,
    node: usize,
    ranges: &[(u64, u64)],
    max_page: BlockSize,
) -> Result<Vec<GuestBlock>, PlacementError> {
    let mut blocks = Vec::new();
    for &(start, len) in ranges {
        let end = start + len;
        let mut gpa = start;
        while gpa < end {
            let fits = |size: BlockSize| {
                size <= max_page && gpa % size.bytes() == 0 && end - gpa >= size.bytes()
            };
            let mut taken = None;
            let mut last_error = None;
            for size in BlockSize::ALL.into_iter().rev().filter(|&s| fits(s)) {
                match frames.allocate_on(node, size, Usage::Guest) {
                    Ok(spa) => {
                        taken = Some(GuestBlock {
                            gpa,
                            spa,
                            size,
                            vnode,
                            node,
                        });
                        break;
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            let Some(block) = taken else {
                for b in &blocks {
                    let GuestBlock { spa, size, .. } = *b;
                    // Just allocated above with this exact size: cannot fail.
                    let _ = frames.free(spa, size);
                }
                return Err(match last_error {
                    Some(e) => PlacementError::Memory(e),
                    None => PlacementError::NotEnoughMemory {
                        vnode,
                        node,
                        needed: end - gpa,
                        free: 0,
                    },
                });
            };
            gpa += block.size.bytes();
            blocks.push(block);
        }
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn two_nodes() -> Topology {
        let mut t = Topology::single_domain(&[0, 1], &[(0, GIB)]);
        let mut second = t.domains[0].clone();
        second.node = 1;
        second.pxm = 1;
        second.apic_ids = alloc::vec![2, 3];
        t.domains.push(second);
        t
    }

    #[test]
    fn cpus_by_node_and_by_id() {
        let topology = two_nodes();
        let mut free: BTreeSet<u32> = [0, 1, 2, 3].into();
        let plans = assign_cpus(
            &[CpuRequest::OnNode {
                node: 1,
                count: 2,
                vnode: None,
            }],
            &[0, 1],
            &topology,
            &mut free,
        )
        .unwrap();
        assert_eq!(
            plans
                .iter()
                .map(|p| (p.apic_id, p.vnode))
                .collect::<Vec<_>>(),
            [(2, 1), (3, 1)]
        );
        let err = assign_cpus(
            &[CpuRequest::ApicIds {
                ids: alloc::vec![1, 2],
                vnode: None,
            }],
            &[0],
            &topology,
            &mut free,
        )
        .unwrap_err();
        assert_eq!(err, PlacementError::CpuUnavailable { apic_id: 2 });
        assert_eq!(free, [0, 1].into(), "a refused request takes nothing");
        let err = assign_cpus(
            &[CpuRequest::OnNode {
                node: 7,
                count: 1,
                vnode: None,
            }],
            &[0],
            &topology,
            &mut free,
        )
        .unwrap_err();
        assert!(alloc::format!("{err}").contains("names node 7, but this machine has 2 node(s)"));
        let err = assign_cpus(
            &[CpuRequest::OnNode {
                node: 0,
                count: 3,
                vnode: None,
            }],
            &[0],
            &topology,
            &mut free,
        )
        .unwrap_err();
        assert_eq!(
            err,
            PlacementError::NotEnoughCpus {
                node: 0,
                wanted: 3,
                available: 2
            }
        );
    }

    #[test]
    fn guest_ram_uses_the_largest_aligned_blocks() {
        let mut frames = FrameAllocator::new(&[alloc::vec![(0, 4 * GIB)]]);
        let blocks = back_guest_ranges(
            &mut frames,
            0,
            0,
            &[(0, GIB + 2 * MIB + 8192)],
            BlockSize::Size1G,
        )
        .unwrap();
        let sizes: Vec<BlockSize> = blocks.iter().map(|b| b.size).collect();
        assert_eq!(
            sizes,
            [
                BlockSize::Size1G,
                BlockSize::Size2M,
                BlockSize::Size4K,
                BlockSize::Size4K
            ]
        );
        assert!(blocks
            .iter()
            .all(|b| b.spa % b.size.bytes() == 0 && b.gpa % b.size.bytes() == 0));
        assert_eq!(frames.ledger()[0].guest, GIB + 2 * MIB + 8192);
        let limited =
            back_guest_ranges(&mut frames, 0, 0, &[(0, 4 * MIB)], BlockSize::Size2M).unwrap();
        assert!(limited.iter().all(|b| b.size == BlockSize::Size2M));
    }

    #[test]
    fn running_out_gives_everything_back() {
        let mut frames = FrameAllocator::new(&[alloc::vec![(0, 8 * MIB)]]);
        let before = frames.ledger();
        assert!(back_guest_ranges(&mut frames, 0, 0, &[(0, 16 * MIB)], BlockSize::Size2M).is_err());
        assert_eq!(frames.ledger(), before);
        assert!(check_memory(&[(16 * MIB, 0)], &frames).is_err());
        assert!(check_memory(&[(4 * MIB, 1)], &frames).is_err());
        assert!(check_memory(&[(4 * MIB, 0)], &frames).is_ok());
    }
}
