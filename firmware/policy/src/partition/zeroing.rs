//! Which vCPU's CPU zeroes which block of a partition's RAM before its first start.
//!
//! A partition's memory is cleared by the CPUs it is pinned to, in parallel and NUMA-local:
//! each block goes to a vCPU whose CPU sits on the block's host node (the one with the fewest
//! bytes so far, so several vCPUs on a node share its blocks); a block on a node where the
//! partition has no vCPU (memory-only vnodes) goes to the least loaded vCPU of all. Every
//! block is zeroed exactly once.

use alloc::vec;
use alloc::vec::Vec;

use super::placement::{GuestBlock, VcpuPlan};

/// For each vCPU (by index into `vcpus`), the indexes into `blocks` it zeroes.
pub fn shares(blocks: &[GuestBlock], vcpus: &[VcpuPlan]) -> Vec<Vec<usize>> {
    let mut shares = vec![Vec::new(); vcpus.len()];
    if vcpus.is_empty() {
        return shares;
    }
    let mut bytes = vec![0u64; vcpus.len()];
    // Largest blocks first, so the greedy choice balances the bytes.
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by_key(|&b| core::cmp::Reverse(blocks[b].size.bytes()));
    for b in order {
        let block = &blocks[b];
        let least =
            |candidates: &mut dyn Iterator<Item = usize>| candidates.min_by_key(|&v| (bytes[v], v));
        let on_node = least(&mut (0..vcpus.len()).filter(|&v| vcpus[v].node == block.node));
        let chosen = on_node
            .or_else(|| least(&mut (0..vcpus.len())))
            .expect("there is a vCPU");
        shares[chosen].push(b);
        bytes[chosen] += block.size.bytes();
    }
    for share in &mut shares {
        share.sort_unstable();
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

    #[test]
    fn blocks_go_to_a_vcpu_on_their_node() {
        let blocks = [
            block(0, BlockSize::Size1G, 0),
            block(1 << 30, BlockSize::Size1G, 1),
            block(2 << 30, BlockSize::Size2M, 1),
        ];
        let vcpus = [vcpu(0, 0), vcpu(1, 1)];
        assert_eq!(shares(&blocks, &vcpus), [vec![0], vec![1, 2]]);
    }

    #[test]
    fn vcpus_on_one_node_share_its_blocks() {
        let blocks: Vec<GuestBlock> = (0..4)
            .map(|i| block(i << 30, BlockSize::Size1G, 0))
            .collect();
        let vcpus = [vcpu(0, 0), vcpu(1, 0)];
        let got = shares(&blocks, &vcpus);
        assert_eq!(got[0].len(), 2);
        assert_eq!(got[1].len(), 2);
    }

    #[test]
    fn a_node_without_vcpus_goes_to_the_least_loaded() {
        let blocks = [
            block(0, BlockSize::Size1G, 0),
            block(1 << 30, BlockSize::Size2M, 2),
        ];
        let vcpus = [vcpu(0, 0), vcpu(1, 1)];
        assert_eq!(shares(&blocks, &vcpus), [vec![0], vec![1]]);
        assert_eq!(shares(&blocks, &[]), Vec::<Vec<usize>>::new());
    }

    proptest! {
        #[test]
        fn every_block_is_zeroed_once_and_locally_when_it_can_be(
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
            let mut seen = vec![0; blocks.len()];
            for (v, share) in got.iter().enumerate() {
                for &b in share {
                    seen[b] += 1;
                    let local_exists = vcpus.iter().any(|p| p.node == blocks[b].node);
                    if local_exists {
                        prop_assert_eq!(vcpus[v].node, blocks[b].node);
                    }
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1));
        }
    }
}
