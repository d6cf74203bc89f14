//! The pool side of the memory hypercalls, as a pure state machine (DESIGN.md, "Memory
//! model": Pools; TLFS §5 `HvDepositMemory` / `HvWithdrawMemory`): who may act on whose pool,
//! which pages a call moves, and what every partition holds afterwards.
//!
//! A parent deposits pages of its own guest RAM into a child's pool: the pages leave the
//! parent's GPA space (the GPAs become *slots*, remembered with the host node and vnode of the
//! page that was there) and join the child's pool. A withdrawal names slots of the parent;
//! each is refilled with a page of the child's pool that this parent deposited, on the
//! slot's host node, so a vnode keeps its node. Pages never move between two pools, and a page
//! in a pool is in no GPA space.
//!
//! Every call is two steps, so the hardware edge can do its part in between: `plan_*` checks
//! the call against the state and a [`GuestSpace`] (nothing changes; a refusal is a
//! [`Status`]), the edge changes the SLAT (unmap and flush, or map) and then `commit`s the
//! plan. The edge holds the lock over the bank for the three steps.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use super::abi::{page_gpa, NodeFilter, PartitionId, Status};

/// What backs one of a partition's guest pages (its host page, host node and vnode).
pub use crate::partition::guest_ram::PageBacking as Backing;

/// A partition's guest RAM as the bank needs to see it: what a 4 KiB GPA page is backed by,
/// if it is mapped RAM (not a slot, not a device, not outside RAM).
pub trait GuestSpace {
    fn backing(&self, partition: usize, gpa: u64) -> Option<Backing>;
}

/// One page a plan moves: the parent's GPA and the host page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageMove {
    pub gpa: u64,
    pub spa: u64,
    pub node: usize,
    pub vnode: usize,
}

/// A checked deposit: `parent`'s pages at `moves` go into `child`'s pool.
#[derive(Debug, PartialEq, Eq)]
pub struct DepositPlan {
    parent: usize,
    child: usize,
    moves: Vec<PageMove>,
}

/// A checked withdrawal: pages of `child`'s pool go back to `parent` at the slots of `moves`.
#[derive(Debug, PartialEq, Eq)]
pub struct WithdrawPlan {
    parent: usize,
    child: usize,
    moves: Vec<PageMove>,
}

macro_rules! plan_accessors {
    ($plan:ty) => {
        impl $plan {
            /// The parent's layout index.
            pub fn parent(&self) -> usize {
                self.parent
            }
            /// The child's layout index.
            pub fn child(&self) -> usize {
                self.child
            }
            /// The pages, in the order the guest listed their GPAs.
            pub fn moves(&self) -> &[PageMove] {
                &self.moves
            }
        }
    };
}
plan_accessors!(DepositPlan);
plan_accessors!(WithdrawPlan);

/// A slot: a GPA page the partition gave up by a deposit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    node: usize,
    vnode: usize,
}

/// One partition's part of the bank.
#[derive(Clone, Debug, Default)]
struct Account {
    parent: Option<usize>,
    /// Its GPA pages given up by deposits, not refilled yet.
    slots: BTreeMap<u64, Slot>,
    /// Pages its parent deposited into its pool, still in the pool: host page to node.
    deposited: BTreeMap<u64, usize>,
    /// Whether it still exists (a stopped partition takes no calls and no deposits).
    live: bool,
}

/// The accounts of every partition of the layout, by layout index.
#[derive(Clone, Debug, Default)]
pub struct Bank {
    accounts: Vec<Account>,
}

impl Bank {
    /// A bank for partitions with these parents (by layout index; the layout checker
    /// guarantees no self-parent and no cycle). A parent index out of range reads as none.
    pub fn new(parents: &[Option<usize>]) -> Bank {
        let count = parents.len();
        Bank {
            accounts: parents
                .iter()
                .map(|parent| Account {
                    parent: parent.filter(|&p| p < count),
                    live: true,
                    ..Account::default()
                })
                .collect(),
        }
    }

    /// How many partitions the bank knows.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether it knows none.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// The parent of partition `index`, if any.
    pub fn parent_of(&self, index: usize) -> Option<usize> {
        self.accounts.get(index)?.parent
    }

    /// The target of a call that changes `target`'s pool: `caller` must be its parent.
    pub fn authorize_parent(&self, caller: usize, target: PartitionId) -> Result<usize, Status> {
        let index = self.existing(caller, target)?;
        match self.accounts.get(caller) {
            Some(account) if account.live && self.accounts[index].parent == Some(caller) => {
                Ok(index)
            }
            _ => Err(Status::AccessDenied),
        }
    }

    /// The target of a call that reads `target`'s memory: the caller itself or its parent.
    pub fn authorize_read(&self, caller: usize, target: PartitionId) -> Result<usize, Status> {
        let index = self.existing(caller, target)?;
        if index == caller || self.accounts[index].parent == Some(caller) {
            Ok(index)
        } else {
            Err(Status::AccessDenied)
        }
    }

    fn existing(&self, caller: usize, target: PartitionId) -> Result<usize, Status> {
        let index = target.resolve(caller);
        match self.accounts.get(index) {
            Some(account) if account.live => Ok(index),
            _ => Err(Status::InvalidPartitionId),
        }
    }

    /// Checks a deposit by `caller` into `target`'s pool of the pages at `gpas` (as the guest
    /// listed them). Refused: a target that is not the caller's child, a GPA not 4 KiB
    /// aligned, listed twice, or not mapped RAM of the caller.
    pub fn plan_deposit(
        &self,
        caller: usize,
        target: PartitionId,
        gpas: &[u64],
        space: &impl GuestSpace,
    ) -> Result<DepositPlan, Status> {
        let child = self.authorize_parent(caller, target)?;
        let mut seen = BTreeSet::new();
        let mut moves = Vec::with_capacity(gpas.len());
        for &raw in gpas {
            let gpa = page_gpa(raw)?;
            if !seen.insert(gpa) {
                return Err(Status::InvalidParameter);
            }
            let backing = space.backing(caller, gpa).ok_or(Status::InvalidParameter)?;
            moves.push(PageMove {
                gpa,
                spa: backing.spa,
                node: backing.node,
                vnode: backing.vnode,
            });
        }
        if moves.is_empty() {
            return Err(Status::InvalidParameter);
        }
        Ok(DepositPlan {
            parent: caller,
            child,
            moves,
        })
    }

    /// Records a deposit whose pages the edge has unmapped from the parent. The edge lets go
    /// of the bank while the parent's other vCPUs catch up, so the child may have stopped
    /// meanwhile: its pool then takes nothing, and the pages are returned (host page, node)
    /// for the edge to free. The parent's slots are recorded either way, so a restart of the
    /// parent refills them.
    pub fn commit_deposit(&mut self, plan: DepositPlan) -> Vec<(u64, usize)> {
        let child_live = self.accounts[plan.child].live;
        let mut orphans = Vec::new();
        for m in &plan.moves {
            self.accounts[plan.parent].slots.insert(
                m.gpa,
                Slot {
                    node: m.node,
                    vnode: m.vnode,
                },
            );
            if child_live {
                self.accounts[plan.child].deposited.insert(m.spa, m.node);
            } else {
                orphans.push((m.spa, m.node));
            }
        }
        orphans
    }

    /// Checks a withdrawal by `caller` from `target`'s pool into the slots at `gpas`. Each
    /// slot takes a page the caller deposited into that pool, on the slot's host node (the
    /// lowest such page). Refused: not the caller's child, a GPA not aligned, listed twice or
    /// not a slot of the caller (invalid parameter), or too few deposited pages on a slot's
    /// node (insufficient memory).
    pub fn plan_withdraw(
        &self,
        caller: usize,
        target: PartitionId,
        gpas: &[u64],
    ) -> Result<WithdrawPlan, Status> {
        let child = self.authorize_parent(caller, target)?;
        let parent = &self.accounts[caller];
        let pool = &self.accounts[child].deposited;
        let mut seen = BTreeSet::new();
        let mut taken = BTreeSet::new();
        let mut moves = Vec::with_capacity(gpas.len());
        for &raw in gpas {
            let gpa = page_gpa(raw)?;
            if !seen.insert(gpa) {
                return Err(Status::InvalidParameter);
            }
            let slot = parent.slots.get(&gpa).ok_or(Status::InvalidParameter)?;
            moves.push((gpa, *slot));
        }
        let mut planned = Vec::with_capacity(moves.len());
        for (gpa, slot) in moves {
            let spa = pool
                .iter()
                .find(|&(spa, &node)| node == slot.node && !taken.contains(spa))
                .map(|(&spa, _)| spa)
                .ok_or(Status::InsufficientMemory)?;
            taken.insert(spa);
            planned.push(PageMove {
                gpa,
                spa,
                node: slot.node,
                vnode: slot.vnode,
            });
        }
        if planned.is_empty() {
            return Err(Status::InvalidParameter);
        }
        Ok(WithdrawPlan {
            parent: caller,
            child,
            moves: planned,
        })
    }

    /// Records a withdrawal whose pages the edge has mapped into the parent.
    pub fn commit_withdraw(&mut self, plan: WithdrawPlan) {
        for m in &plan.moves {
            self.accounts[plan.parent].slots.remove(&m.gpa);
            self.accounts[plan.child].deposited.remove(&m.spa);
        }
    }

    /// Partition `parent` restarts and wants its whole RAM back: every slot of it is
    /// refilled, where a running child's pool still holds a page it deposited on the slot's
    /// node, with that page (the lowest first). Returns those moves (child, page) and the
    /// slots left (GPA, node, vnode), whose pages went to free memory when their child
    /// stopped; the parent has no slots afterwards either way.
    pub fn reclaim(&mut self, parent: usize) -> (Vec<(usize, PageMove)>, Vec<PageMove>) {
        let Some(account) = self.accounts.get_mut(parent) else {
            return (Vec::new(), Vec::new());
        };
        let slots = core::mem::take(&mut account.slots);
        let mut moved = Vec::new();
        let mut left = Vec::new();
        for (gpa, slot) in slots {
            let found = self.accounts.iter().enumerate().find_map(|(child, a)| {
                (a.live && a.parent == Some(parent))
                    .then(|| a.deposited.iter().find(|&(_, &n)| n == slot.node))
                    .flatten()
                    .map(|(&spa, _)| (child, spa))
            });
            let page = |spa| PageMove {
                gpa,
                spa,
                node: slot.node,
                vnode: slot.vnode,
            };
            match found {
                Some((child, spa)) => {
                    self.accounts[child].deposited.remove(&spa);
                    moved.push((child, page(spa)));
                }
                None => left.push(page(0)),
            }
        }
        (moved, left)
    }

    /// Pages `index`'s parent deposited into its pool and may withdraw, on `node`.
    pub fn deposited_pages(&self, index: usize, node: NodeFilter) -> u64 {
        self.accounts.get(index).map_or(0, |a| {
            a.deposited.values().filter(|&&n| node.accepts(n)).count() as u64
        })
    }

    /// `index`'s slots in `vnode` (GPA pages it gave up by deposits), on `node`.
    pub fn slots_in(&self, index: usize, vnode: usize, node: NodeFilter) -> u64 {
        self.accounts.get(index).map_or(0, |a| {
            a.slots
                .values()
                .filter(|s| s.vnode == vnode && node.accepts(s.node))
                .count() as u64
        })
    }

    /// Whether `gpa` is a slot of partition `index` (a page it gave up by a deposit).
    pub fn is_slot(&self, index: usize, gpa: u64) -> bool {
        self.accounts
            .get(index)
            .is_some_and(|a| a.slots.contains_key(&(gpa & !0xFFF)))
    }

    /// Partition `index` stopped for good: it takes no more calls, and the pages deposited
    /// into its pool are returned (host page, node) for the edge to free with the rest of
    /// its pool. Its slots stay empty: the pages it deposited belong to its children's pools.
    pub fn close(&mut self, index: usize) -> Vec<(u64, usize)> {
        let Some(account) = self.accounts.get_mut(index) else {
            return Vec::new();
        };
        account.live = false;
        account.slots.clear();
        core::mem::take(&mut account.deposited)
            .into_iter()
            .collect()
    }

    /// Every page deposited by a parent into a pool, with the pool's index (for tests and
    /// the ledger).
    pub fn pool_pages(&self) -> impl Iterator<Item = (usize, u64, usize)> + '_ {
        self.accounts
            .iter()
            .enumerate()
            .flat_map(|(i, a)| a.deposited.iter().map(move |(&spa, &node)| (i, spa, node)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Partition p's RAM: GPA 0..16 pages, backed by SPA (p + 1) << 20, node p % 2.
    struct Flat(BTreeSet<(usize, u64)>);

    impl GuestSpace for Flat {
        fn backing(&self, partition: usize, gpa: u64) -> Option<Backing> {
            (gpa < 16 * 4096 && !self.0.contains(&(partition, gpa))).then(|| Backing {
                spa: ((partition as u64 + 1) << 20) + gpa,
                node: partition % 2,
                vnode: 0,
            })
        }
    }

    fn bank() -> Bank {
        // 0 is the parent of 1 and 2; 3 stands alone.
        Bank::new(&[None, Some(0), Some(0), None])
    }

    #[test]
    fn only_the_parent_may_move_pages() {
        let bank = bank();
        let space = Flat(BTreeSet::new());
        let child = PartitionId::Index(1);
        assert!(bank.plan_deposit(0, child, &[0x1000], &space).is_ok());
        for caller in [1, 2, 3] {
            assert_eq!(
                bank.plan_deposit(caller, child, &[0x1000], &space),
                Err(Status::AccessDenied)
            );
            assert_eq!(
                bank.plan_withdraw(caller, child, &[0x1000]),
                Err(Status::AccessDenied)
            );
        }
        assert_eq!(
            bank.plan_deposit(0, PartitionId::Caller, &[0x1000], &space),
            Err(Status::AccessDenied)
        );
        assert_eq!(
            bank.plan_deposit(0, PartitionId::Index(9), &[0x1000], &space),
            Err(Status::InvalidPartitionId)
        );
        assert_eq!(bank.authorize_read(1, PartitionId::Caller), Ok(1));
        assert_eq!(bank.authorize_read(0, child), Ok(1));
        assert_eq!(bank.authorize_read(2, child), Err(Status::AccessDenied));
    }

    #[test]
    fn a_deposit_committed_after_its_child_stopped_gives_its_pages_back() {
        let mut bank = bank();
        let space = Flat(BTreeSet::new());
        let plan = bank
            .plan_deposit(0, PartitionId::Index(2), &[0x2000, 0x3000], &space)
            .unwrap();
        // The child stops while the parent's vCPUs catch up (the bank is not held then).
        assert!(bank.close(2).is_empty());
        let orphans = bank.commit_deposit(plan);
        assert_eq!(
            orphans,
            vec![((1 << 20) + 0x2000, 0), ((1 << 20) + 0x3000, 0)]
        );
        assert_eq!(bank.deposited_pages(2, NodeFilter::All), 0);
        // The parent's GPAs are slots still: a restart of it refills them.
        assert_eq!(bank.slots_in(0, 0, NodeFilter::All), 2);
    }

    #[test]
    fn deposit_then_withdraw_round_trips_on_the_node() {
        let mut bank = bank();
        let mut space = Flat(BTreeSet::new());
        let child = PartitionId::Index(2);
        assert_eq!(
            bank.plan_deposit(0, child, &[0x1001], &space),
            Err(Status::InvalidAlignment)
        );
        assert_eq!(
            bank.plan_deposit(0, child, &[0x1000, 0x1000], &space),
            Err(Status::InvalidParameter)
        );
        assert_eq!(
            bank.plan_deposit(0, child, &[16 * 4096], &space),
            Err(Status::InvalidParameter)
        );
        let plan = bank
            .plan_deposit(0, child, &[0x2000, 0x3000], &space)
            .unwrap();
        assert_eq!(plan.moves()[0].spa, (1 << 20) + 0x2000);
        for m in plan.moves() {
            space.0.insert((0, m.gpa));
        }
        bank.commit_deposit(plan);
        assert_eq!(bank.deposited_pages(2, NodeFilter::All), 2);
        assert_eq!(bank.deposited_pages(2, NodeFilter::Node(1)), 0);
        assert_eq!(bank.slots_in(0, 0, NodeFilter::Node(0)), 2);
        assert!(bank.is_slot(0, 0x2abc));
        // A deposited page's GPA can be deposited no more.
        assert_eq!(
            bank.plan_deposit(0, child, &[0x2000], &space),
            Err(Status::InvalidParameter)
        );
        // Withdrawal only into slots, and only as many as were deposited.
        assert_eq!(
            bank.plan_withdraw(0, child, &[0x4000]),
            Err(Status::InvalidParameter)
        );
        assert_eq!(
            bank.plan_withdraw(0, PartitionId::Index(1), &[0x2000]),
            Err(Status::InsufficientMemory)
        );
        let plan = bank.plan_withdraw(0, child, &[0x3000]).unwrap();
        assert_eq!(plan.moves()[0].spa, (1 << 20) + 0x2000, "lowest page first");
        bank.commit_withdraw(plan);
        assert_eq!(bank.deposited_pages(2, NodeFilter::All), 1);
        assert!(!bank.is_slot(0, 0x3000) && bank.is_slot(0, 0x2000));
        // A restarting parent takes back what its children's pools still hold.
        let mut copy = bank.clone();
        let (moved, left) = copy.reclaim(0);
        assert_eq!(moved.len(), 1);
        assert_eq!((moved[0].0, moved[0].1.gpa), (2, 0x2000));
        assert!(left.is_empty() && !copy.is_slot(0, 0x2000));
        assert_eq!(copy.deposited_pages(2, NodeFilter::All), 0);
        // A stopped child hands its deposited pages back and takes no calls.
        assert_eq!(bank.close(2), alloc::vec![((1 << 20) + 0x3000, 0)]);
        assert_eq!(
            bank.plan_withdraw(0, child, &[0x2000]),
            Err(Status::InvalidPartitionId)
        );
    }
}
