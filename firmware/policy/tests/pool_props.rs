//! Property tests of partition pools (`numavisor_policy::partition::pool`, DESIGN.md "Memory
//! model": Pools): several pools on several nodes share one frame allocator and go through
//! random deposits, withdrawals, give-backs and releases. After every step: no page is in two
//! pools, every pool's `balance + withdrawn = deposited`, its pages are on its node, the
//! ledger's `pools` column holds exactly the deposits of the pools on that node (withdraw and
//! give-back never touch it), refused operations change nothing, and releasing everything
//! restores the ledger the allocator started with.

use std::collections::BTreeSet;

use numavisor_policy::memory::{FrameAllocator, PAGE_SIZE};
use numavisor_policy::partition::pool::{PartitionPool, PoolError};
use proptest::prelude::*;
use proptest::sample::Index;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

#[derive(Clone, Debug)]
enum Op {
    Deposit {
        pool: Index,
        pages: u64,
    },
    Withdraw {
        pool: Index,
    },
    WithdrawMany {
        pool: Index,
        pages: usize,
    },
    /// Gives a withdrawn page of pool `from` back to pool `to` (refused unless they match).
    GiveBack {
        from: Index,
        to: Index,
        pick: Index,
    },
    /// Gives back an address no pool withdrew.
    GiveBackStranger {
        pool: Index,
        page: u64,
    },
    /// Releases the pool and starts a fresh, empty one for the same partition and node.
    Release {
        pool: Index,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<Index>(), 0..24u64).prop_map(|(pool, pages)| Op::Deposit { pool, pages }),
        any::<Index>().prop_map(|pool| Op::Withdraw { pool }),
        (any::<Index>(), 0..12usize).prop_map(|(pool, pages)| Op::WithdrawMany { pool, pages }),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(from, to, pick)| Op::GiveBack { from, to, pick }),
        (any::<Index>(), 0..(1u64 << 32)).prop_map(|(pool, page)| Op::GiveBackStranger {
            pool,
            page: page & !(PAGE_SIZE - 1)
        }),
        any::<Index>().prop_map(|pool| Op::Release { pool }),
    ]
}

/// A pool with the pages the test knows it withdrew and its deposits so far.
struct Tracked {
    pool: PartitionPool,
    withdrawn: Vec<u64>,
    deposited: u64,
}

/// Small nodes (a few dozen pages, split in pieces) so deposits run out now and then.
fn frames(nodes: usize) -> FrameAllocator {
    let layout: Vec<Vec<(u64, u64)>> = (0..nodes as u64)
        .map(|n| {
            let base = n * 64 * MIB;
            vec![(base, base + 48 * KIB), (base + MIB, base + MIB + 80 * KIB)]
        })
        .collect();
    FrameAllocator::new(&layout)
}

fn check(pools: &[Tracked], frames: &FrameAllocator) {
    let mut seen = BTreeSet::new();
    let mut per_node = vec![0u64; frames.node_count()];
    for t in pools {
        let p = &t.pool;
        assert_eq!(p.deposited_bytes(), t.deposited, "{}", p.partition());
        assert_eq!(
            p.balance_bytes() + p.withdrawn_pages() as u64 * PAGE_SIZE,
            p.deposited_bytes()
        );
        assert_eq!(p.withdrawn_pages(), t.withdrawn.len());
        for &page in &t.withdrawn {
            assert!(p.owns(page));
            assert!(seen.insert(page), "page {page:#x} withdrawn twice");
            assert_eq!(frames.node_of(page), Some(p.node()));
        }
        per_node[p.node()] += p.deposited_bytes();
    }
    for ledger in frames.ledger() {
        assert!(ledger.is_balanced(), "{ledger}");
        assert_eq!(ledger.pools, per_node[ledger.node], "{ledger}");
    }
    // No page is owned by two pools: probe every page of every node.
    for node in 0..frames.node_count() {
        for (start, end) in frames.usable_ranges(node).collect::<Vec<_>>() {
            for page in (start..end).step_by(PAGE_SIZE as usize) {
                let owners = pools.iter().filter(|t| t.pool.owns(page)).count();
                assert!(owners <= 1, "page {page:#x} in {owners} pools");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pools_keep_their_books(
        nodes in 1..4usize,
        homes in prop::collection::vec(any::<Index>(), 1..5),
        ops in prop::collection::vec(op(), 0..60),
    ) {
        let mut frames = frames(nodes);
        let start = frames.ledger();
        let mut pools: Vec<Tracked> = homes
            .iter()
            .enumerate()
            .map(|(i, home)| Tracked {
                pool: PartitionPool::new(&format!("p{i}"), home.index(nodes)),
                withdrawn: Vec::new(),
                deposited: 0,
            })
            .collect();
        let count = pools.len();

        for op in ops {
            let ledger = frames.ledger();
            match op {
                Op::Deposit { pool, pages } => {
                    let t = &mut pools[pool.index(count)];
                    let before = t.pool.balance_bytes();
                    match t.pool.deposit(&mut frames, pages * PAGE_SIZE) {
                        Ok(()) => t.deposited += pages * PAGE_SIZE,
                        Err(PoolError::Deposit { node, .. }) => {
                            prop_assert_eq!(node, t.pool.node());
                            prop_assert_eq!(t.pool.balance_bytes(), before);
                            prop_assert_eq!(frames.ledger(), ledger);
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
                Op::Withdraw { pool } => {
                    let t = &mut pools[pool.index(count)];
                    let balance = t.pool.balance_bytes();
                    match t.pool.withdraw() {
                        Ok(page) => t.withdrawn.push(page),
                        Err(PoolError::InsufficientMemory { needed_pages, balance_pages, .. }) => {
                            prop_assert_eq!((needed_pages, balance_pages, balance), (1, 0, 0));
                        }
                        Err(other) => panic!("{other}"),
                    }
                    prop_assert_eq!(frames.ledger(), ledger);
                }
                Op::WithdrawMany { pool, pages } => {
                    let t = &mut pools[pool.index(count)];
                    let balance = t.pool.balance_pages();
                    match t.pool.withdraw_many(pages) {
                        Ok(got) => {
                            prop_assert_eq!(got.len(), pages);
                            t.withdrawn.extend(got);
                        }
                        Err(PoolError::InsufficientMemory { needed_pages, balance_pages, .. }) => {
                            prop_assert!(pages > balance);
                            prop_assert_eq!((needed_pages, balance_pages), (pages, balance));
                            prop_assert_eq!(t.pool.balance_pages(), balance);
                        }
                        Err(other) => panic!("{other}"),
                    }
                    prop_assert_eq!(frames.ledger(), ledger);
                }
                Op::GiveBack { from, to, pick } => {
                    let (from, to) = (from.index(count), to.index(count));
                    if pools[from].withdrawn.is_empty() {
                        continue;
                    }
                    let i = pick.index(pools[from].withdrawn.len());
                    let page = pools[from].withdrawn[i];
                    let result = pools[to].pool.give_back(page);
                    if from == to {
                        prop_assert!(result.is_ok());
                        pools[from].withdrawn.swap_remove(i);
                    } else {
                        let is_refused = matches!(result, Err(PoolError::NotFromThisPool { .. }));
                        prop_assert!(is_refused);
                        prop_assert!(!pools[to].pool.owns(page));
                    }
                    prop_assert_eq!(frames.ledger(), ledger);
                }
                Op::GiveBackStranger { pool, page } => {
                    if pools.iter().any(|t| t.withdrawn.contains(&page)) {
                        continue;
                    }
                    let t = &mut pools[pool.index(count)];
                    let balance = t.pool.balance_bytes();
                    let is_refused = matches!(
                        t.pool.give_back(page),
                        Err(PoolError::NotFromThisPool { .. })
                    );
                    prop_assert!(is_refused);
                    prop_assert_eq!(t.pool.balance_bytes(), balance);
                    prop_assert_eq!(frames.ledger(), ledger);
                }
                Op::Release { pool } => {
                    let t = &mut pools[pool.index(count)];
                    let fresh = PartitionPool::new(t.pool.partition(), t.pool.node());
                    let old = std::mem::replace(&mut t.pool, fresh);
                    let node = old.node();
                    let bytes = old.deposited_bytes();
                    old.release(&mut frames).unwrap();
                    t.withdrawn.clear();
                    t.deposited = 0;
                    let mut expected = ledger.clone();
                    expected[node].pools -= bytes;
                    expected[node].free += bytes;
                    prop_assert_eq!(frames.ledger(), expected);
                }
            }
            check(&pools, &frames);
        }

        for t in pools {
            t.pool.release(&mut frames).unwrap();
        }
        prop_assert_eq!(frames.ledger(), start);
    }
}
