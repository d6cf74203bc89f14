//! Property tests of the memory hypercalls' pool bank (`numavisor_policy::hypercall::bank`,
//! DESIGN.md "Memory model": Pools; issue 11 §1): a small tree of partitions, each with its
//! own guest RAM on one or two host nodes, goes through random deposits, withdrawals and
//! stops, with hostile arguments mixed in (unaligned, duplicate, unmapped and foreign GPAs,
//! unknown and self IDs, callers that are not the parent). A model of the hardware edge
//! applies each committed plan (unmap for a deposit, map for a withdrawal), and a restart's
//! reclaim (the children's pools first, free memory for the rest). After every step:
//!
//! - a page in a pool is in no GPA space;
//! - a page is in at most one pool, and in at most one GPA space at one GPA;
//! - no page moves from one pool to another directly;
//! - the ledger is exact: per node, mapped + pooled + freed pages = the pages it started with;
//! - a refused call changes nothing, and only a parent's calls are accepted.

use std::collections::{BTreeMap, BTreeSet};

use numavisor_policy::hypercall::abi::{NodeFilter, PartitionId, Status};
use numavisor_policy::hypercall::bank::{Backing, Bank, GuestSpace};
use proptest::prelude::*;
use proptest::sample::Index;

const PAGE: u64 = 4096;
/// Guest pages per partition (GPA 0 .. PAGES * 4 KiB), half on each of its two vnodes.
const PAGES: u64 = 32;

/// The edge's model: every partition's GPA space, page by page.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Spaces(Vec<BTreeMap<u64, Backing>>);

impl GuestSpace for Spaces {
    fn backing(&self, partition: usize, gpa: u64) -> Option<Backing> {
        self.0.get(partition)?.get(&gpa).copied()
    }
}

/// A GPA a guest might name: one of its pages, one that may be unaligned, or far outside.
#[derive(Clone, Debug)]
enum Gpa {
    Page(u64),
    Unaligned(u64),
    Outside(u64),
}

impl Gpa {
    fn value(&self) -> u64 {
        match *self {
            Gpa::Page(p) => p * PAGE,
            Gpa::Unaligned(v) => v,
            Gpa::Outside(v) => PAGES * PAGE + v,
        }
    }
}

fn gpa() -> impl Strategy<Value = Gpa> {
    prop_oneof![
        6 => (0..PAGES).prop_map(Gpa::Page),
        1 => (0..PAGES * PAGE).prop_map(Gpa::Unaligned),
        1 => any::<u64>().prop_map(|v| Gpa::Outside(v % (1 << 50))),
    ]
}

#[derive(Clone, Debug)]
enum Target {
    Index(Index),
    Caller,
    Unknown(u64),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        6 => any::<Index>().prop_map(Target::Index),
        1 => Just(Target::Caller),
        1 => (50..u64::MAX - 1).prop_map(Target::Unknown),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Deposit {
        caller: Index,
        target: Target,
        gpas: Vec<Gpa>,
    },
    Withdraw {
        caller: Index,
        target: Target,
        gpas: Vec<Gpa>,
    },
    /// A well-formed deposit by `child`'s parent of some of its mapped pages.
    ParentDeposit {
        child: Index,
        picks: Vec<Index>,
    },
    /// A well-formed withdrawal by `child`'s parent into some of its holes.
    ParentWithdraw {
        child: Index,
        picks: Vec<Index>,
    },
    Stop {
        partition: Index,
    },
    /// The partition restarts: it takes back what its children's pools hold of its
    /// deposits, and the rest of its slots from free memory of their nodes.
    Restart {
        partition: Index,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let list = || prop::collection::vec(gpa(), 0..6);
    prop_oneof![
        4 => (any::<Index>(), target(), list())
            .prop_map(|(caller, target, gpas)| Op::Deposit { caller, target, gpas }),
        4 => (any::<Index>(), target(), list())
            .prop_map(|(caller, target, gpas)| Op::Withdraw { caller, target, gpas }),
        4 => (any::<Index>(), prop::collection::vec(any::<Index>(), 1..5))
            .prop_map(|(child, picks)| Op::ParentDeposit { child, picks }),
        4 => (any::<Index>(), prop::collection::vec(any::<Index>(), 1..5))
            .prop_map(|(child, picks)| Op::ParentWithdraw { child, picks }),
        1 => any::<Index>().prop_map(|partition| Op::Stop { partition }),
        1 => any::<Index>().prop_map(|partition| Op::Restart { partition }),
    ]
}

fn raw_target(target: &Target, count: usize) -> PartitionId {
    match target {
        Target::Index(i) => PartitionId::Index(i.index(count)),
        Target::Caller => PartitionId::Caller,
        Target::Unknown(v) => PartitionId::decode(*v).unwrap_or(PartitionId::Index(usize::MAX)),
    }
}

/// An operation as the bank sees it.
enum Resolved {
    Deposit {
        caller: usize,
        target: PartitionId,
        gpas: Vec<u64>,
    },
    Withdraw {
        caller: usize,
        target: PartitionId,
        gpas: Vec<u64>,
    },
    Stop(usize),
    Restart(usize),
}

/// Where one host page is: the pools holding it, and the (partition, GPA) pairs mapping it.
type Place = (Vec<usize>, Vec<(usize, u64)>);

/// Every page's place.
fn places(bank: &Bank, spaces: &Spaces) -> BTreeMap<u64, Place> {
    let mut at: BTreeMap<u64, Place> = BTreeMap::new();
    for (pool, spa, _) in bank.pool_pages() {
        at.entry(spa).or_default().0.push(pool);
    }
    for (partition, space) in spaces.0.iter().enumerate() {
        for (&gpa, b) in space {
            at.entry(b.spa).or_default().1.push((partition, gpa));
        }
    }
    at
}

fn ledger(bank: &Bank, spaces: &Spaces, freed: &BTreeMap<u64, usize>, nodes: usize) -> Vec<u64> {
    let mut per_node = vec![0u64; nodes];
    for space in &spaces.0 {
        for b in space.values() {
            per_node[b.node] += 1;
        }
    }
    for (_, _, node) in bank.pool_pages() {
        per_node[node] += 1;
    }
    for &node in freed.values() {
        per_node[node] += 1;
    }
    per_node
}

/// The distinct pages `picks` chooses out of `pages`, in pick order.
fn picked(pages: &[u64], picks: &[Index]) -> Vec<u64> {
    let mut chosen: Vec<u64> = Vec::new();
    if pages.is_empty() {
        return Vec::new();
    }
    for pick in picks {
        let gpa = pages[pick.index(pages.len())];
        if !chosen.contains(&gpa) {
            chosen.push(gpa);
        }
    }
    chosen
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pools_and_gpa_spaces_keep_their_invariants(
        parents in prop::collection::vec(any::<Option<Index>>(), 2..6),
        ops in prop::collection::vec(op(), 0..50),
    ) {
        let count = parents.len();
        // A forest: a parent always has a lower index (no cycles, no self-parent).
        let parents: Vec<Option<usize>> = parents
            .iter()
            .enumerate()
            .map(|(i, p)| p.as_ref().filter(|_| i > 0).map(|p| p.index(i)))
            .collect();
        let nodes = 2;
        let spaces = Spaces(
            (0..count)
                .map(|p| {
                    (0..PAGES)
                        .map(|page| {
                            let vnode = (page >= PAGES / 2) as usize;
                            let spa = ((p as u64 + 1) << 24) + page * PAGE;
                            (page * PAGE, Backing { spa, node: (p + vnode) % nodes, vnode })
                        })
                        .collect()
                })
                .collect(),
        );
        let mut spaces = spaces;
        let mut bank = Bank::new(&parents);
        let mut freed: BTreeMap<u64, usize> = BTreeMap::new();
        let mut stopped = BTreeSet::new();
        let start = ledger(&bank, &spaces, &freed, nodes);
        let mut pool_of: BTreeMap<u64, usize> = BTreeMap::new();
        let (mut deposits, mut withdrawals) = (0u32, 0u32);

        for op in ops {
            let before_spaces = spaces.clone();
            let before_pools: Vec<_> = bank.pool_pages().collect();
            // Every operation as the call a guest makes (or a stop).
            let call = match &op {
                Op::Deposit { caller, target, gpas } => Resolved::Deposit {
                    caller: caller.index(count),
                    target: raw_target(target, count),
                    gpas: gpas.iter().map(Gpa::value).collect(),
                },
                Op::Withdraw { caller, target, gpas } => Resolved::Withdraw {
                    caller: caller.index(count),
                    target: raw_target(target, count),
                    gpas: gpas.iter().map(Gpa::value).collect(),
                },
                Op::ParentDeposit { child, picks } => {
                    let child = child.index(count);
                    let caller = parents[child].unwrap_or(child);
                    let mapped: Vec<u64> = spaces.0[caller].keys().copied().collect();
                    Resolved::Deposit { caller, target: PartitionId::Index(child), gpas: picked(&mapped, picks) }
                }
                Op::ParentWithdraw { child, picks } => {
                    let child = child.index(count);
                    let caller = parents[child].unwrap_or(child);
                    let holes: Vec<u64> = (0..PAGES)
                        .map(|p| p * PAGE)
                        .filter(|gpa| !spaces.0[caller].contains_key(gpa))
                        .collect();
                    Resolved::Withdraw { caller, target: PartitionId::Index(child), gpas: picked(&holes, picks) }
                }
                Op::Stop { partition } => Resolved::Stop(partition.index(count)),
                Op::Restart { partition } => Resolved::Restart(partition.index(count)),
            };
            let refused = match &call {
                Resolved::Deposit { caller, target, gpas } => {
                    let caller = *caller;
                    match bank.plan_deposit(caller, *target, gpas, &spaces) {
                        Ok(plan) => {
                            prop_assert_eq!(bank.parent_of(plan.child()), Some(caller));
                            prop_assert!(!stopped.contains(&caller) && !stopped.contains(&plan.child()));
                            for m in plan.moves() {
                                let b = spaces.0[caller].remove(&m.gpa).expect("planned from a mapped page");
                                prop_assert_eq!((b.spa, b.node, b.vnode), (m.spa, m.node, m.vnode));
                            }
                            bank.commit_deposit(plan);
                            deposits += 1;
                            None
                        }
                        Err(status) => Some(status),
                    }
                }
                Resolved::Withdraw { caller, target, gpas } => {
                    let caller = *caller;
                    match bank.plan_withdraw(caller, *target, gpas) {
                        Ok(plan) => {
                            prop_assert_eq!(bank.parent_of(plan.child()), Some(caller));
                            for m in plan.moves() {
                                prop_assert!(spaces.backing(caller, m.gpa).is_none(), "slot mapped");
                                spaces.0[caller].insert(m.gpa, Backing { spa: m.spa, node: m.node, vnode: m.vnode });
                            }
                            bank.commit_withdraw(plan);
                            withdrawals += 1;
                            None
                        }
                        Err(status) => Some(status),
                    }
                }
                Resolved::Stop(partition) => {
                    let partition = *partition;
                    stopped.insert(partition);
                    // The edge frees the partition's RAM and its pool.
                    for b in std::mem::take(&mut spaces.0[partition]).into_values() {
                        freed.insert(b.spa, b.node);
                    }
                    for (spa, node) in bank.close(partition) {
                        freed.insert(spa, node);
                    }
                    None
                }
                Resolved::Restart(partition) => {
                    let partition = *partition;
                    if !stopped.contains(&partition) {
                        let (moved, left) = bank.reclaim(partition);
                        for (child, m) in &moved {
                            prop_assert_eq!(bank.parent_of(*child), Some(partition));
                            prop_assert!(!stopped.contains(child));
                            prop_assert!(spaces.backing(partition, m.gpa).is_none(), "slot mapped");
                            spaces.0[partition].insert(m.gpa, Backing { spa: m.spa, node: m.node, vnode: m.vnode });
                        }
                        // The rest from free memory of the slot's node (the model's edge).
                        for m in &left {
                            let spa = freed.iter().find(|&(_, &n)| n == m.node).map(|(&spa, _)| spa);
                            if let Some(spa) = spa {
                                freed.remove(&spa);
                                spaces.0[partition].insert(m.gpa, Backing { spa, node: m.node, vnode: m.vnode });
                            }
                        }
                        prop_assert_eq!(
                            (0..PAGES).filter(|p| bank.is_slot(partition, p * PAGE)).count(),
                            0,
                            "a restarted partition has no slots"
                        );
                    }
                    None
                }
            };
            if let Some(status) = refused {
                prop_assert_ne!(status, Status::Success);
                prop_assert_eq!(&spaces, &before_spaces, "a refused call changed a GPA space");
                prop_assert_eq!(bank.pool_pages().collect::<Vec<_>>(), before_pools);
            }
            if let Resolved::Deposit { caller, target: PartitionId::Index(t), .. }
            | Resolved::Withdraw { caller, target: PartitionId::Index(t), .. } = &call
            {
                let (t, caller) = (*t, *caller);
                if t >= count {
                    prop_assert_eq!(refused, Some(Status::InvalidPartitionId));
                    continue;
                }
                if stopped.contains(&t) {
                    prop_assert_eq!(refused, Some(Status::InvalidPartitionId));
                } else if bank.parent_of(t) != Some(caller) || stopped.contains(&caller) {
                    prop_assert_eq!(refused, Some(Status::AccessDenied));
                }
            }

            // Invariants.
            for (spa, (pools, mapped)) in places(&bank, &spaces) {
                prop_assert!(pools.len() <= 1, "page {:#x} in pools {:?}", spa, pools);
                prop_assert!(mapped.len() <= 1, "page {:#x} mapped at {:?}", spa, mapped);
                prop_assert!(pools.is_empty() || mapped.is_empty(), "pool page {:#x} mapped at {:?}", spa, mapped);
                prop_assert!(!freed.contains_key(&spa) || (pools.is_empty() && mapped.is_empty()));
                if let Some(&pool) = pools.first() {
                    if let Some(&was) = pool_of.get(&spa) {
                        prop_assert_eq!(was, pool, "page {:#x} moved between pools", spa);
                    }
                }
            }
            // A page leaves a pool only into a GPA space (withdraw) or back to free memory.
            let now: BTreeMap<u64, usize> = bank.pool_pages().map(|(p, spa, _)| (spa, p)).collect();
            pool_of.retain(|spa, _| now.contains_key(spa));
            pool_of.extend(now);
            prop_assert_eq!(ledger(&bank, &spaces, &freed, nodes), start.clone());
            for p in 0..count {
                let pooled = bank.pool_pages().filter(|&(i, _, _)| i == p).count() as u64;
                prop_assert_eq!(bank.deposited_pages(p, NodeFilter::All), pooled);
            }
        }
        COVERAGE.with(|c| {
            let mut c = c.borrow_mut();
            c.0 += deposits;
            c.1 += withdrawals;
        });
    }
}

thread_local! {
    /// Successful deposits and withdrawals over every case, so the test can fail when the
    /// generator stops reaching the interesting paths.
    static COVERAGE: std::cell::RefCell<(u32, u32)> = const { std::cell::RefCell::new((0, 0)) };
}

#[test]
fn the_generator_reaches_successful_deposits_and_withdrawals() {
    pools_and_gpa_spaces_keep_their_invariants();
    let (deposits, withdrawals) = COVERAGE.with(|c| *c.borrow());
    assert!(
        deposits > 100 && withdrawals > 30,
        "{deposits} deposits, {withdrawals} withdrawals"
    );
}
