//! Which vCPU's CPU zeroes which part of a partition's RAM before its first start.
//!
//! A partition's memory is cleared by the CPUs it is pinned to, in parallel and NUMA-local.
//! The RAM on each host node is cut into equal shares, in 2 MiB steps, one for each vCPU
//! whose CPU sits on that node (so one large block is shared too); RAM on a node where the
//! partition has no vCPU (memory-only vnodes) goes, a block at a time, to the vCPU with the
//! fewest bytes so far. Every byte is zeroed exactly once.

use alloc::vec;
use alloc::vec::Vec;

use super::placement::{GuestBlock, VcpuPlan};

/// The granule shares are cut in (the large SLAT page below 1 GiB, so cuts stay aligned).
pub const STEP: u64 = 2 << 20;

/// A piece of guest RAM to zero: `len` bytes from `offset` into block `block`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub block: usize,
    pub offset: u64,
    pub len: u64,
}

/// For each vCPU (by index into `vcpus`), the spans it zeroes.
pub fn shares(blocks: &[GuestBlock], vcpus: &[VcpuPlan]) -> Vec<Vec<Span>> {
    let mut shares = vec![Vec::new(); vcpus.len()];
    if vcpus.is_empty() {
        return shares;
    }
    let mut load = vec![0u64; vcpus.len()];
    let mut nodes: Vec<usize> = blocks.iter().map(|b| b.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    for node in nodes {
        let local: Vec<usize> = (0..vcpus.len())
            .filter(|&v| vcpus[v].node == node)
            .collect();
        let on_node = blocks.iter().enumerate().filter(|(_, b)| b.node == node);
        if local.is_empty() {
            for (index, block) in on_node {
                let v = (0..vcpus.len())
                    .min_by_key(|&v| (load[v], v))
                    .expect("there is a vCPU");
                shares[v].push(Span {
                    block: index,
                    offset: 0,
                    len: block.size.bytes(),
                });
                load[v] += block.size.bytes();
            }
            continue;
        }
        let total: u64 = on_node.clone().map(|(_, b)| b.size.bytes()).sum();
        let quota = total.div_ceil(local.len() as u64).next_multiple_of(STEP);
        let (mut taker, mut taken) = (0, 0u64);
        for (index, block) in on_node {
            let size = block.size.bytes();
            let mut offset = 0;
            while offset < size {
                // The last vCPU on the node takes whatever is left.
                let room = if taker + 1 == local.len() {
                    u64::MAX
                } else {
                    quota - taken
                };
                if room == 0 {
                    taker += 1;
                    taken = 0;
                    continue;
                }
                let len = (size - offset).min(room);
                let v = local[taker];
                shares[v].push(Span {
                    block: index,
                    offset,
                    len,
                });
                load[v] += len;
                taken += len;
                offset += len;
            }
        }
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::BlockSize;
    use proptest::prelude::*;

    fn block(gpa: u64, size: BlockSize, node: usize) -> GuestBlock {
        GuestBlock {
            gpa,
            spa: gpa + (node as u64) * (1 << 40),
            size,
            vnode: node,
            node,
        }
    }

    fn vcpu(vcpu: usize, node: usize) -> VcpuPlan {
        VcpuPlan {
            vcpu,
            apic_id: vcpu as u32,
            node,
            vnode: node,
        }
    }

    fn whole(block: usize, size: BlockSize) -> Span {
        Span {
            block,
            offset: 0,
            len: size.bytes(),
        }
    }

    #[test]
    fn blocks_go_to_a_vcpu_on_their_node() {
        let blocks = [
            block(0, BlockSize::Size1G, 0),
            block(1 << 30, BlockSize::Size1G, 1),
            block(2 << 30, BlockSize::Size2M, 1),
        ];
        let vcpus = [vcpu(0, 0), vcpu(1, 1)];
        assert_eq!(
            shares(&blocks, &vcpus),
            [
                vec![whole(0, BlockSize::Size1G)],
                vec![whole(1, BlockSize::Size1G), whole(2, BlockSize::Size2M)]
            ]
        );
    }

    #[test]
    fn vcpus_on_one_node_share_even_one_block() {
        let blocks = [block(0, BlockSize::Size1G, 0)];
        let vcpus = [vcpu(0, 0), vcpu(1, 0), vcpu(2, 0), vcpu(3, 0)];
        let got = shares(&blocks, &vcpus);
        for (v, share) in got.iter().enumerate() {
            assert_eq!(
                share,
                &[Span {
                    block: 0,
                    offset: v as u64 * (256 << 20),
                    len: 256 << 20
                }]
            );
        }
    }

    #[test]
    fn a_node_without_vcpus_goes_to_the_least_loaded() {
        let blocks = [
            block(0, BlockSize::Size1G, 0),
            block(1 << 30, BlockSize::Size2M, 2),
        ];
        let vcpus = [vcpu(0, 0), vcpu(1, 1)];
        assert_eq!(
            shares(&blocks, &vcpus),
            [
                vec![whole(0, BlockSize::Size1G)],
                vec![whole(1, BlockSize::Size2M)]
            ]
        );
        assert_eq!(shares(&blocks, &[]), Vec::<Vec<Span>>::new());
    }

    proptest! {
        #[test]
        fn every_byte_is_zeroed_once_locally_and_evenly(
            nodes in proptest::collection::vec((0usize..4, 0usize..3), 0..24),
            vcpu_nodes in proptest::collection::vec(0usize..4, 1..6),
        ) {
            let sizes = [BlockSize::Size4K, BlockSize::Size2M, BlockSize::Size1G];
            let blocks: Vec<GuestBlock> = nodes
                .iter()
                .enumerate()
                .map(|(i, &(node, size))| block((i as u64) << 30, sizes[size], node))
                .collect();
            let vcpus: Vec<VcpuPlan> = vcpu_nodes.iter().enumerate().map(|(i, &n)| vcpu(i, n)).collect();
            let got = shares(&blocks, &vcpus);
            prop_assert_eq!(got.len(), vcpus.len());
            let mut spans: Vec<Span> = Vec::new();
            for (v, share) in got.iter().enumerate() {
                for span in share {
                    prop_assert!(span.len > 0);
                    if vcpus.iter().any(|p| p.node == blocks[span.block].node) {
                        prop_assert_eq!(vcpus[v].node, blocks[span.block].node);
                    }
                    spans.push(*span);
                }
            }
            // The spans tile every block exactly.
            spans.sort_by_key(|s| (s.block, s.offset));
            let mut next = vec![0u64; blocks.len()];
            for s in &spans {
                prop_assert_eq!(s.offset, next[s.block]);
                next[s.block] += s.len;
            }
            for (b, block) in blocks.iter().enumerate() {
                prop_assert_eq!(next[b], block.size.bytes());
            }
            // No vCPU gets more than its node's even share, rounded up to a step.
            for node in 0..4 {
                let local: Vec<usize> = (0..vcpus.len()).filter(|&v| vcpus[v].node == node).collect();
                let on_node: u64 = blocks.iter().filter(|b| b.node == node).map(|b| b.size.bytes()).sum();
                if local.is_empty() {
                    continue;
                }
                let quota = on_node.div_ceil(local.len() as u64).next_multiple_of(STEP);
                for &v in &local {
                    let local_bytes: u64 = got[v].iter().filter(|s| blocks[s.block].node == node).map(|s| s.len).sum();
                    prop_assert!(local_bytes <= quota, "vCPU {} zeroes {} of node {}, quota {}", v, local_bytes, node, quota);
                }
            }
        }
    }
}
