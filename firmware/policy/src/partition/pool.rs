//! Partition memory pools, managed like a bank account (DESIGN.md, "Memory model": Pools; the
//! Hyper-V TLFS "Partition memory pool" semantics of `HvDepositMemory` / `HvWithdrawMemory`).
//!
//! The hypervisor deposits host pages of the partition's home node into its pool when it
//! creates the partition; everything it then allocates on the partition's behalf (SLAT tables,
//! VMCB/VMCS, vCPU state, I/O and MSR permission bitmaps) is withdrawn from that pool, one
//! 4 KiB page at a time. When the balance is too low the operation fails with
//! [`PoolError::InsufficientMemory`]; a pool never takes memory from anywhere else.
//!
//! # How pages are taken from the frame allocator
//!
//! A deposit takes **single 4 KiB blocks** (`allocate_on(node, Size4K, Usage::Pool)`), and
//! [`release`](PartitionPool::release) frees each one the same way. The frame allocator's best
//! fit serves 4 KiB blocks from small leftover ranges first, so pools do not break up the
//! 2 MiB / 1 GiB blocks guest RAM wants, and a deposit never fails merely because free memory
//! is fragmented. Pool pages count in the ledger's `pools` column from deposit to release;
//! withdrawing and giving back move pages inside the pool and leave the ledger alone.
//!
//! Invariants (checked by `tests/pool_props.rs`): `balance + withdrawn = deposited`; a page is
//! in at most one pool (the frame allocator hands each block out once); pages never move
//! between pools; a refused operation changes nothing.

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::memory::{AllocError, BlockSize, Bytes, FrameAllocator, FreeError, Usage, PAGE_SIZE};
use crate::slat::TablePages;

/// One partition's pool of host pages on its home node.
#[derive(Clone, Debug)]
pub struct PartitionPool {
    /// The partition's name, as the layout spells it (for error messages).
    partition: String,
    /// The node every page of the pool comes from.
    node: usize,
    /// The balance: deposited pages not withdrawn. Lowest pages are withdrawn first.
    balance: BTreeSet<u64>,
    /// Pages withdrawn and not given back.
    withdrawn: BTreeSet<u64>,
}

impl PartitionPool {
    /// An empty pool for `partition`, to be filled from `node`.
    pub fn new(partition: &str, node: usize) -> Self {
        PartitionPool {
            partition: String::from(partition),
            node,
            balance: BTreeSet::new(),
            withdrawn: BTreeSet::new(),
        }
    }

    /// Takes `bytes` (a multiple of 4 KiB) from `frames`, on the pool's node only, as 4 KiB
    /// pages counted under [`Usage::Pool`], and adds them to the balance.
    ///
    /// All or nothing: if the node runs out part-way, the pages taken so far are freed again
    /// and the pool and the frame allocator are as before.
    pub fn deposit(&mut self, frames: &mut FrameAllocator, bytes: u64) -> Result<(), PoolError> {
        if !bytes.is_multiple_of(PAGE_SIZE) {
            return Err(PoolError::UnalignedDeposit {
                partition: self.partition.clone(),
                bytes,
            });
        }
        let pages = bytes / PAGE_SIZE;
        let mut taken = Vec::new();
        for _ in 0..pages {
            match frames.allocate_on(self.node, BlockSize::Size4K, Usage::Pool) {
                Ok(page) => taken.push(page),
                Err(source) => {
                    for &page in &taken {
                        // Just handed out by the same allocator, so the free is accepted; an
                        // error here would mean its books are corrupt, and there is nothing
                        // better to do with the page than to keep going.
                        let _ = frames.free(page, BlockSize::Size4K);
                    }
                    return Err(PoolError::Deposit {
                        partition: self.partition.clone(),
                        node: self.node,
                        bytes,
                        source,
                    });
                }
            }
        }
        self.balance.extend(taken);
        Ok(())
    }

    /// Withdraws one 4 KiB page (the lowest in the balance).
    pub fn withdraw(&mut self) -> Result<u64, PoolError> {
        let page = self
            .balance
            .pop_first()
            .ok_or_else(|| self.insufficient(1))?;
        self.withdrawn.insert(page);
        Ok(page)
    }

    /// Withdraws `pages` 4 KiB pages, lowest first. All or nothing: with too small a balance
    /// nothing is withdrawn.
    pub fn withdraw_many(&mut self, pages: usize) -> Result<Vec<u64>, PoolError> {
        if pages > self.balance.len() {
            return Err(self.insufficient(pages));
        }
        let taken: Vec<u64> = self.balance.iter().copied().take(pages).collect();
        for page in &taken {
            self.balance.remove(page);
            self.withdrawn.insert(*page);
        }
        Ok(taken)
    }

    /// Returns a withdrawn page to the balance. A page this pool did not hand out (or that is
    /// in the balance already) is refused and nothing changes.
    pub fn give_back(&mut self, page: u64) -> Result<(), PoolError> {
        if !self.withdrawn.remove(&page) {
            return Err(PoolError::NotFromThisPool {
                partition: self.partition.clone(),
                page,
            });
        }
        self.balance.insert(page);
        Ok(())
    }

    /// The balance in bytes: deposited and not withdrawn.
    pub fn balance_bytes(&self) -> u64 {
        self.balance.len() as u64 * PAGE_SIZE
    }

    /// The balance in 4 KiB pages.
    pub fn balance_pages(&self) -> usize {
        self.balance.len()
    }

    /// Everything deposited and not yet released, in bytes (`balance + withdrawn`).
    pub fn deposited_bytes(&self) -> u64 {
        (self.balance.len() + self.withdrawn.len()) as u64 * PAGE_SIZE
    }

    /// How many pages are withdrawn (in use on the partition's behalf).
    pub fn withdrawn_pages(&self) -> usize {
        self.withdrawn.len()
    }

    /// The node the pool's pages come from.
    pub fn node(&self) -> usize {
        self.node
    }

    /// The partition's name.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// Whether `page` (a page address) belongs to this pool, withdrawn or not.
    pub fn owns(&self, page: u64) -> bool {
        self.balance.contains(&page) || self.withdrawn.contains(&page)
    }

    /// The partition is destroyed: every page, in the balance or withdrawn, goes back to
    /// `frames`. Callers stop using withdrawn pages (unload the SLAT root, the VMCB) first.
    ///
    /// Every page is freed even if one is refused (which only corrupt books can cause); the
    /// first refusal is reported.
    pub fn release(self, frames: &mut FrameAllocator) -> Result<(), PoolError> {
        let mut first_error = None;
        for page in self.balance.iter().chain(&self.withdrawn) {
            if let Err(source) = frames.free(*page, BlockSize::Size4K) {
                first_error.get_or_insert(PoolError::Release {
                    partition: self.partition.clone(),
                    page: *page,
                    source,
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn insufficient(&self, needed_pages: usize) -> PoolError {
        PoolError::InsufficientMemory {
            partition: self.partition.clone(),
            needed_pages,
            balance_pages: self.balance.len(),
        }
    }
}

/// The SLAT builder draws its table pages from the partition's pool, lowest first, and
/// reports a short pool with the pool's own figures (partition, pages needed, balance).
impl TablePages for PartitionPool {
    fn partition(&self) -> &str {
        &self.partition
    }

    fn pages_left(&self) -> usize {
        self.balance.len()
    }

    fn withdraw_page(&mut self) -> Option<u64> {
        self.withdraw().ok()
    }
}

/// Why a pool operation was refused. A refused operation changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The balance is below what the operation needs (Hyper-V's
    /// `HV_STATUS_INSUFFICIENT_MEMORY`).
    InsufficientMemory {
        partition: String,
        needed_pages: usize,
        balance_pages: usize,
    },
    /// The node could not supply the deposit.
    Deposit {
        partition: String,
        node: usize,
        bytes: u64,
        source: AllocError,
    },
    /// A deposit of a byte count that is not a whole number of 4 KiB pages.
    UnalignedDeposit { partition: String, bytes: u64 },
    /// The balance is large enough, but holds no run of `pages` contiguous pages (for
    /// [`withdraw_contiguous`](PartitionPool::withdraw_contiguous)).
    NoContiguousRun {
        partition: String,
        pages: usize,
        balance_pages: usize,
    },
    /// `give_back` of a page this pool did not hand out.
    NotFromThisPool { partition: String, page: u64 },
    /// The frame allocator refused a page on release (its books are corrupt).
    Release {
        partition: String,
        page: u64,
        source: FreeError,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::InsufficientMemory {
                partition,
                needed_pages,
                balance_pages,
            } => write!(
                f,
                "partition \"{partition}\": insufficient memory in its pool: needs {} {}, \
                 balance {} {} (deposit more with `pool` in the layout)",
                needed_pages,
                pages(*needed_pages),
                balance_pages,
                pages(*balance_pages)
            ),
            PoolError::Deposit {
                partition,
                node,
                bytes,
                source,
            } => write!(
                f,
                "partition \"{partition}\": cannot deposit {} into its pool from node {node}: \
                 {source}",
                Bytes(*bytes)
            ),
            PoolError::UnalignedDeposit { partition, bytes } => write!(
                f,
                "partition \"{partition}\": a pool deposit of {bytes} bytes is not a whole \
                 number of 4 KiB pages"
            ),
            PoolError::NoContiguousRun {
                partition,
                pages,
                balance_pages,
            } => write!(
                f,
                "partition \"{partition}\": its pool holds {balance_pages} pages but no \
                 {pages} contiguous ones (deposit more with `pool` in the layout)"
            ),
            PoolError::NotFromThisPool { partition, page } => write!(
                f,
                "partition \"{partition}\": page {page:#x} was not withdrawn from its pool"
            ),
            PoolError::Release {
                partition,
                page,
                source,
            } => write!(
                f,
                "partition \"{partition}\": releasing pool page {page:#x} failed: {source}"
            ),
        }
    }
}

fn pages(count: usize) -> &'static str {
    if count == 1 {
        "page"
    } else {
        "pages"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn two_nodes() -> FrameAllocator {
        FrameAllocator::new(&[
            vec![(0x10_0000, 0x20_0000)],
            vec![(0x4000_0000, 0x4001_0000)],
        ])
    }

    #[test]
    fn deposit_withdraw_give_back_release() {
        let mut frames = two_nodes();
        let before = frames.ledger();
        let mut pool = PartitionPool::new("a", 1);
        pool.deposit(&mut frames, 4 * PAGE_SIZE).unwrap();
        assert_eq!(frames.ledger()[1].pools, 4 * PAGE_SIZE);
        assert_eq!(pool.balance_bytes(), 4 * PAGE_SIZE);
        let page = pool.withdraw().unwrap();
        assert_eq!(frames.node_of(page), Some(1));
        assert!(pool.owns(page));
        let more = pool.withdraw_many(2).unwrap();
        assert_eq!(more.len(), 2);
        assert_eq!((pool.balance_pages(), pool.withdrawn_pages()), (1, 3));
        assert_eq!(pool.deposited_bytes(), 4 * PAGE_SIZE);
        pool.give_back(page).unwrap();
        assert_eq!(
            pool.give_back(page),
            Err(PoolError::NotFromThisPool {
                partition: "a".to_string(),
                page
            })
        );
        assert_eq!(frames.ledger()[1].pools, 4 * PAGE_SIZE);
        pool.release(&mut frames).unwrap();
        assert_eq!(frames.ledger(), before);
    }

    #[test]
    fn insufficient_memory_names_partition_need_and_balance() {
        let mut frames = two_nodes();
        let mut pool = PartitionPool::new("a", 0);
        pool.deposit(&mut frames, PAGE_SIZE).unwrap();
        let err = pool.withdraw_many(3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "partition \"a\": insufficient memory in its pool: needs 3 pages, balance 1 page \
             (deposit more with `pool` in the layout)"
        );
        assert_eq!(pool.balance_pages(), 1);
        pool.withdraw().unwrap();
        assert!(matches!(
            pool.withdraw(),
            Err(PoolError::InsufficientMemory {
                needed_pages: 1,
                balance_pages: 0,
                ..
            })
        ));
    }

    #[test]
    fn deposits_are_all_or_nothing_and_stay_on_the_node() {
        let mut frames = two_nodes();
        let before = frames.ledger();
        let mut pool = PartitionPool::new("b", 1);
        // Node 1 has 64 KiB = 16 pages; node 0 has plenty but must not be touched.
        let err = pool.deposit(&mut frames, 17 * PAGE_SIZE).unwrap_err();
        assert!(matches!(err, PoolError::Deposit { node: 1, .. }));
        assert!(err
            .to_string()
            .starts_with("partition \"b\": cannot deposit 68 KiB into its pool from node 1: "));
        assert_eq!(frames.ledger(), before);
        assert_eq!(pool.deposited_bytes(), 0);
        assert!(matches!(
            pool.deposit(&mut frames, 100),
            Err(PoolError::UnalignedDeposit { bytes: 100, .. })
        ));
        let mut nowhere = PartitionPool::new("c", 7);
        assert!(matches!(
            nowhere.deposit(&mut frames, PAGE_SIZE),
            Err(PoolError::Deposit {
                source: AllocError::NoSuchNode { node: 7, .. },
                ..
            })
        ));
        assert_eq!(frames.ledger(), before);
    }
}

impl PartitionPool {
    /// Withdraws `pages` physically contiguous 4 KiB pages (the lowest such run), for
    /// structures the hardware reads as one block (SVM's I/O and MSR permission maps). All or
    /// nothing: with no such run in the balance, nothing is withdrawn.
    pub fn withdraw_contiguous(&mut self, pages: usize) -> Result<u64, PoolError> {
        let mut run_start = None;
        let mut run_length = 0;
        let mut previous = None;
        for &page in &self.balance {
            if previous.is_some_and(|p: u64| p + PAGE_SIZE == page) {
                run_length += 1;
            } else {
                run_start = Some(page);
                run_length = 1;
            }
            previous = Some(page);
            if run_length == pages {
                break;
            }
        }
        let start = match run_start {
            Some(start) if run_length == pages && pages > 0 => start,
            _ if pages > 0 && pages <= self.balance.len() => {
                return Err(PoolError::NoContiguousRun {
                    partition: self.partition.clone(),
                    pages,
                    balance_pages: self.balance.len(),
                })
            }
            _ => return Err(self.insufficient(pages)),
        };
        for i in 0..pages as u64 {
            let page = start + i * PAGE_SIZE;
            self.balance.remove(&page);
            self.withdrawn.insert(page);
        }
        Ok(start)
    }
}

#[cfg(test)]
mod contiguous_tests {
    use super::*;

    #[test]
    fn contiguous_runs_or_nothing() {
        let mut frames = FrameAllocator::new(&[alloc::vec![(0, 0x10_000)]]);
        let mut pool = PartitionPool::new("a", 0);
        pool.deposit(&mut frames, 0x8000).unwrap();
        let first = pool.withdraw().unwrap();
        let run = pool.withdraw_contiguous(3).unwrap();
        assert_eq!(pool.withdrawn_pages(), 4);
        assert!(run != first);
        assert!(pool.withdraw_contiguous(9).is_err());
        // Four pages left, but not four in a row.
        pool.give_back(first).unwrap();
        assert_eq!(
            pool.withdraw_contiguous(5).unwrap_err().to_string(),
            "partition \"a\": its pool holds 5 pages but no 5 contiguous ones (deposit more \
             with `pool` in the layout)"
        );
        pool.withdraw_many(1).unwrap();
        assert_eq!(
            pool.withdrawn_pages(),
            4,
            "a refused withdrawal takes nothing"
        );
        assert!(pool.withdraw_contiguous(0).is_err());
    }
}
