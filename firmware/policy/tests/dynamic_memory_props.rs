//! Property tests of Dynamic Memory's policy (`partition::dynamic_memory`): whatever the
//! guests report, every target lies within its member's bounds, in whole pages, at most one
//! step from where it is (a smaller one down, none down while its use rises), and the growth
//! on each node never exceeds that node's free memory.

use numavisor_policy::partition::dynamic_memory::{targets, Demand, Member, Policy};
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
    )
        .prop_map(|(node, current, min, extra, demand, fixed, rising)| {
            let min = min * MIB;
            let max = min + extra * MIB;
            Member {
                node,
                current: (current * MIB).clamp(min, max),
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
    ) {
        let policy = Policy { buffer_percent: 20, step: step * MIB, shrink_step: step * MIB / 4 };
        let t = targets(&members, &free, &policy);
        prop_assert_eq!(t.len(), members.len());
        let mut growth = [0u64; 3];
        for (m, &target) in members.iter().zip(&t) {
            prop_assert!(target >= m.min - m.min % PAGE && target <= m.max, "{m:?} -> {target}");
            prop_assert_eq!(target % PAGE, 0);
            prop_assert!(target.abs_diff(m.current) <= policy.step + PAGE, "{m:?} -> {target}");
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
}
