//! Property tests of Dynamic Memory's policy (`partition::dynamic_memory`): whatever the
//! guests report, every target lies within its member's bounds, in whole pages, at most one
//! step from where it is (a smaller one down, none down while its use rises), and the growth
//! on each node never exceeds that node's free memory; and every target moves toward what
//! its guest wants (its use plus the buffer, or a fixed target), never away from it, and does
//! move when it can (a policy that kept every size as it is fails here).

use numavisor_policy::partition::dynamic_memory::{
    split, targets, Demand, Member, Policy, VnodeRoom,
};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

fn member() -> impl Strategy<Value = Member> {
    (
        0usize..3,
        1u64..2048,
        0u64..1024,
        0u64..2048,
        any::<Option<(u64, u64)>>(),
        any::<Option<u64>>(),
        any::<bool>(),
        0u64..2048,
    )
        .prop_map(|(node, current, min, extra, demand, fixed, rising, size)| {
            let min = min * MIB;
            let max = min + extra * MIB;
            Member {
                node,
                current: (current * MIB).clamp(min, max),
                // What it booted with: anywhere from its minimum (all of its room is hot-add)
                // to past its maximum (none is).
                size: min + size * MIB,
                min,
                max,
                demand: demand.map(|(total, available)| Demand {
                    total: total % (4 << 30),
                    available: available % (4 << 30),
                }),
                fixed: fixed.map(|f| f % (8 << 30)),
                rising,
            }
        })
}

proptest! {
    #[test]
    fn targets_stay_in_bounds_and_growth_within_free_memory(
        members in proptest::collection::vec(member(), 0..8),
        free in proptest::collection::vec(0u64..(2 << 30), 3),
        step in 1u64..256,
        whole_blocks in any::<bool>(),
        headroom in any::<bool>(),
    ) {
        let policy = Policy {
            hot_add_quantum: if whole_blocks { 128 * MIB } else { 0 },
            hot_add_headroom: if headroom { 64 * MIB } else { 0 },
            ..policy(step)
        };
        let t = targets(&members, &free, &policy);
        prop_assert_eq!(t.len(), members.len());
        let mut growth = [0u64; 3];
        for (m, &target) in members.iter().zip(&t) {
            prop_assert!(target >= m.min - m.min % PAGE && target <= m.max, "{m:?} -> {target}");
            prop_assert_eq!(target % PAGE, 0);
            // One step at most, unless it grew to a whole hot-add block above its size (or to
            // its maximum on the way there).
            let whole_block = policy.hot_add_quantum > 0
                && target > m.size
                && ((target - m.size) % policy.hot_add_quantum == 0 || target == m.max);
            prop_assert!(
                target.abs_diff(m.current) <= policy.step + PAGE || whole_block,
                "{m:?} -> {target}"
            );
            if target < m.current {
                prop_assert!(m.current - target <= policy.shrink_step + PAGE, "{m:?} -> {target}");
                prop_assert!(!m.rising || m.fixed.is_some(), "{m:?} shrunk while rising");
            }
            growth[m.node] += target.saturating_sub(m.current);
        }
        for node in 0..3 {
            prop_assert!(growth[node] <= free[node] + PAGE * members.len() as u64, "node {node}");
        }
    }

    #[test]
    fn targets_move_toward_what_the_guest_wants(
        members in proptest::collection::vec(member(), 1..8),
        free in proptest::collection::vec(0u64..(2 << 30), 3),
        step in 1u64..256,
    ) {
        let policy = policy(step);
        let t = targets(&members, &free, &policy);
        // What each member asks to grow by, per node: the policy is short where that is more
        // than the node has free.
        let mut asked = [0u64; 3];
        for m in &members {
            asked[m.node] += wanted(m, &policy).saturating_sub(m.current);
        }
        for (m, &target) in members.iter().zip(&t) {
            let want = wanted(m, &policy);
            if m.demand.is_none() && m.fixed.is_none() {
                prop_assert_eq!(target, page_down(m.current.clamp(m.min, m.max)), "{:?}", m);
                continue;
            }
            if want > m.current {
                // Growing: never past what it wants, never down.
                prop_assert!(target >= page_down(m.current) && target <= want, "{m:?} -> {target}");
                let room = free[m.node] >= asked[m.node];
                if room && want - m.current >= PAGE && policy.step >= PAGE {
                    prop_assert!(target > page_down(m.current), "{m:?} did not grow toward {want}");
                }
            } else {
                // Shrinking (or staying): never up, never below its bare use.
                prop_assert!(target <= m.current, "{m:?} -> {target}");
                let shrinks = !m.rising || m.fixed.is_some();
                let room = free[m.node] >= asked[m.node];
                if shrinks && room && m.current - want >= PAGE && policy.shrink_step >= PAGE {
                    prop_assert!(target < m.current, "{m:?} did not shrink toward {want}");
                    prop_assert!(target >= want, "{m:?} shrank past {want}: {target}");
                }
            }
        }
    }
}

/// The policy with a growth step of `step` MiB and a quarter of it to shrink, growing by
/// hot-add as finely as by the balloon.
fn policy(step: u64) -> Policy {
    Policy {
        buffer_percent: 20,
        step: step * MIB,
        shrink_step: step * MIB / 4,
        hot_add_quantum: 0,
        hot_add_headroom: 0,
    }
}

/// Bytes rounded down to whole pages.
fn page_down(bytes: u64) -> u64 {
    bytes - bytes % PAGE
}

/// What a member should hold (the oracle, from the policy's documentation): a fixed target,
/// else its guest's use plus the buffer, within its bounds and in whole pages; without a
/// report, what it holds.
fn wanted(m: &Member, policy: &Policy) -> u64 {
    let bounded = |bytes: u64| page_down(bytes.clamp(m.min, m.max.max(m.min)));
    match (m.fixed, m.demand) {
        (Some(fixed), _) => bounded(fixed),
        (None, Some(demand)) => {
            let used = demand.used();
            bounded(used.saturating_add(used / 100 * policy.buffer_percent))
        }
        (None, None) => m.current,
    }
}

fn vnode_rooms() -> impl Strategy<Value = Vec<VnodeRoom>> {
    proptest::collection::vec((0u64..1024, 0u64..1024), 0..5).prop_map(|v| {
        v.into_iter()
            .map(|(size, growth)| VnodeRoom {
                size: size * MIB,
                max: (size + growth) * MIB,
            })
            .collect()
    })
}

proptest! {
    /// The balloon covers what is below the RAM built and virtio-mem what is above: together
    /// they hold the target (up to what the vnodes' room and whole blocks allow), each vnode
    /// plugs whole blocks within its room, and nothing is plugged while the target is within
    /// the RAM built.
    #[test]
    fn a_target_splits_into_built_ram_and_whole_plugged_blocks(
        vnodes in vnode_rooms(),
        target in 0u64..(8 << 30),
        block_shift in 12u32..28,
    ) {
        let block = 1u64 << block_shift;
        let s = split(target, &vnodes, block);
        let built: u64 = vnodes.iter().map(|v| v.size).sum();
        prop_assert_eq!(s.plugged.len(), vnodes.len());
        prop_assert_eq!(s.built, target.min(built));
        let rooms: Vec<u64> = vnodes
            .iter()
            .map(|v| (v.max - v.size) - (v.max - v.size) % block)
            .collect();
        for (&plugged, &room) in s.plugged.iter().zip(&rooms) {
            prop_assert_eq!(plugged % block, 0);
            prop_assert!(plugged <= room);
        }
        let plugged: u64 = s.plugged.iter().sum();
        let want = target.saturating_sub(built).min(rooms.iter().sum());
        prop_assert_eq!(plugged, want - want % block, "{:?}", s);
    }
}
