//! The frame allocator: free memory per proximity domain, blocks of 4 KiB / 2 MiB / 1 GiB
//! handed out "on" a node or "near" it, exact reservations, and the ledger
//! (DESIGN.md, "Memory model": NUMA and Accounting).
//!
//! All bookkeeping lives in the heap as ranges and one record per live block or reservation;
//! the allocator never reads or writes the memory it manages.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::block::{align_down, align_up, BlockSize, Usage, PAGE_SIZE};
use super::error::{AllocError, FreeError, ReserveError};
use super::free_ranges::FreeRanges;
use super::host_page::HostPage;
use super::ledger::NodeLedger;
use super::reservation::{Reservation, ReservedPiece};

/// One node's free memory and its ledger.
#[derive(Clone, Debug)]
struct NodeMemory {
    free: FreeRanges,
    ledger: NodeLedger,
}

/// A block handed out by `allocate_*` and not yet freed.
#[derive(Clone, Copy, Debug)]
struct LiveBlock {
    /// Bytes: a block size, or any page multiple for a piece of a carved block.
    len: u64,
    node: usize,
    usage: Usage,
}

/// Physical memory per NUMA node, kept as ranges (see the module documentation of
/// [`memory`](super) for the allocation strategy).
#[derive(Clone, Debug)]
pub struct FrameAllocator {
    nodes: Vec<NodeMemory>,
    /// Every managed range: start → (end, node). Adjacent ranges of one node are merged.
    managed: BTreeMap<u64, (u64, usize)>,
    /// Live blocks by address.
    blocks: BTreeMap<u64, LiveBlock>,
    /// Live reservations by their page-rounded `(start, end)`.
    reservations: BTreeMap<(u64, u64), Reservation>,
}

impl FrameAllocator {
    /// Takes every node's usable RAM as `[start, end)` ranges, node `i` at index `i`.
    ///
    /// Ranges are trimmed inward to whole pages (those smaller than a page vanish); an empty
    /// list is a memoryless node. Ranges need not be sorted. Overlapping input (a topology
    /// bug) never hands a byte out twice: each byte stays with the first range, in address
    /// order, that claims it. Cost: O(r log r) for r ranges, whatever their size.
    pub fn new<R: AsRef<[(u64, u64)]>>(usable_per_node: &[R]) -> Self {
        let mut all: Vec<(u64, u64, usize)> = Vec::new();
        for (node, ranges) in usable_per_node.iter().enumerate() {
            for &(start, end) in ranges.as_ref() {
                let start = align_up(start, PAGE_SIZE);
                let end = align_down(end, PAGE_SIZE);
                if let Some(start) = start.filter(|&s| s < end) {
                    all.push((start, end, node));
                }
            }
        }
        all.sort_unstable();

        let mut managed = BTreeMap::new();
        let mut covered = 0;
        let mut last: Option<(u64, u64, usize)> = None;
        for (start, end, node) in all {
            let start = start.max(covered);
            if start >= end {
                continue;
            }
            covered = end;
            last = match last {
                Some((s, e, n)) if e == start && n == node => Some((s, end, n)),
                Some((s, e, n)) => {
                    managed.insert(s, (e, n));
                    Some((start, end, node))
                }
                None => Some((start, end, node)),
            };
        }
        if let Some((s, e, n)) = last {
            managed.insert(s, (e, n));
        }

        let mut nodes: Vec<NodeMemory> = (0..usable_per_node.len())
            .map(|node| NodeMemory {
                free: FreeRanges::default(),
                ledger: NodeLedger::new(node, 0),
            })
            .collect();
        for (&start, &(end, node)) in &managed {
            let memory = &mut nodes[node];
            memory.free.insert(start, end);
            memory.ledger.usable += end - start;
            memory.ledger.free += end - start;
        }
        FrameAllocator {
            nodes,
            managed,
            blocks: BTreeMap::new(),
            reservations: BTreeMap::new(),
        }
    }

    /// How many nodes there are (memoryless ones included).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Takes one block of `size` from `node` only.
    pub fn allocate_on(
        &mut self,
        node: usize,
        size: BlockSize,
        usage: Usage,
    ) -> Result<u64, AllocError> {
        let node_count = self.nodes.len();
        let memory = self
            .nodes
            .get_mut(node)
            .ok_or(AllocError::NoSuchNode { node, node_count })?;
        let Some(addr) = memory.free.take(size) else {
            return Err(AllocError::OutOfMemory {
                node,
                size,
                free_bytes: memory.free.bytes(),
                free_ranges: memory.free.range_count(),
            });
        };
        memory.ledger.take(size.bytes(), usage);
        self.blocks.insert(
            addr,
            LiveBlock {
                len: size.bytes(),
                node,
                usage,
            },
        );
        Ok(addr)
    }

    /// Takes one block of `size` from the first node in `order` that has one; `order[0]` is
    /// the home node, the rest the fallbacks, nearest first (the topology's SLIT order).
    /// Returns the address and the node it came from. Repeated nodes are tried once.
    pub fn allocate_near(
        &mut self,
        order: &[usize],
        size: BlockSize,
        usage: Usage,
    ) -> Result<(u64, usize), AllocError> {
        let node_count = self.nodes.len();
        let &home = order.first().ok_or(AllocError::EmptyOrder { size })?;
        if let Some(&node) = order.iter().find(|&&n| n >= node_count) {
            return Err(AllocError::NoSuchNode { node, node_count });
        }
        let (mut nodes_tried, mut free_bytes, mut free_ranges) = (0, 0, 0);
        for (i, &node) in order.iter().enumerate() {
            if order[..i].contains(&node) {
                continue;
            }
            match self.allocate_on(node, size, usage) {
                Ok(addr) => return Ok((addr, node)),
                Err(AllocError::OutOfMemory {
                    free_bytes: b,
                    free_ranges: r,
                    ..
                }) => {
                    nodes_tried += 1;
                    free_bytes += b;
                    free_ranges += r;
                }
                Err(other) => return Err(other),
            }
        }
        Err(AllocError::OutOfMemoryNear {
            home,
            nodes_tried,
            size,
            free_bytes,
            free_ranges,
        })
    }

    /// Takes one 4 KiB page from `node` only, as an owned [`HostPage`].
    pub fn allocate_page_on(&mut self, node: usize, usage: Usage) -> Result<HostPage, AllocError> {
        self.allocate_on(node, BlockSize::Size4K, usage)
            .map(HostPage::taken)
    }

    /// Takes one 4 KiB page from the first node in `order` that has one (as
    /// [`FrameAllocator::allocate_near`]): the page and its node.
    pub fn allocate_page_near(
        &mut self,
        order: &[usize],
        usage: Usage,
    ) -> Result<(HostPage, usize), AllocError> {
        self.allocate_near(order, BlockSize::Size4K, usage)
            .map(|(address, node)| (HostPage::taken(address), node))
    }

    /// Returns a page from [`FrameAllocator::allocate_page_on`] to free memory.
    pub fn free_page(&mut self, page: HostPage) -> Result<(), FreeError> {
        self.free(page.into_address(), BlockSize::Size4K)
    }

    /// Returns a block from `allocate_*`, merging it with free neighbours. Only the exact
    /// block (address and size) is accepted; anything else is refused and changes nothing.
    pub fn free(&mut self, addr: u64, size: BlockSize) -> Result<(), FreeError> {
        let block = *self
            .blocks
            .get(&addr)
            .ok_or(FreeError::NotAllocated { addr, size })?;
        if block.len != size.bytes() {
            return Err(FreeError::WrongSize {
                addr,
                size,
                allocated: block.len,
            });
        }
        self.free_live(addr, block)
    }

    /// Frees the live block (or carved piece) `block` at `addr`.
    fn free_live(&mut self, addr: u64, block: LiveBlock) -> Result<(), FreeError> {
        let memory = &mut self.nodes[block.node];
        if !memory.free.insert(addr, addr + block.len) {
            return Err(FreeError::OverlapsFree {
                start: addr,
                end: addr + block.len,
            });
        }
        memory.ledger.give_back(block.len, block.usage);
        self.blocks.remove(&addr);
        Ok(())
    }

    /// Makes `page` a live 4 KiB block of its own, cutting the live block holding it into at
    /// most three pieces (before, the page, after): the same memory, owner and usage, so the
    /// ledger does not change. Lets a single page of a partition's large block move to a
    /// pool or back to free memory while the rest stays; the pieces are freed by
    /// [`free_range`](Self::free_range). Refused if no live block holds `page`.
    pub fn carve(&mut self, page: u64) -> Result<(), FreeError> {
        let page = page & !(PAGE_SIZE - 1);
        let (addr, block) = self
            .blocks
            .range(..=page)
            .next_back()
            .map(|(&a, &b)| (a, b))
            .filter(|&(a, b)| page < a + b.len)
            .ok_or(FreeError::NotAllocated {
                addr: page,
                size: BlockSize::Size4K,
            })?;
        let end = addr + block.len;
        for (start, stop) in [
            (addr, page),
            (page, page + PAGE_SIZE),
            (page + PAGE_SIZE, end),
        ] {
            if start < stop {
                self.blocks.insert(
                    start,
                    LiveBlock {
                        len: stop - start,
                        ..block
                    },
                );
            }
        }
        Ok(())
    }

    /// Counts the live block at `addr` under `usage` from now on (a guest page deposited
    /// into a pool, or withdrawn back into guest RAM): the ledger moves its bytes from the
    /// old column to the new one. Refused if no live block starts at `addr`.
    pub fn retag(&mut self, addr: u64, usage: Usage) -> Result<(), FreeError> {
        let block = self.blocks.get_mut(&addr).ok_or(FreeError::NotAllocated {
            addr,
            size: BlockSize::Size4K,
        })?;
        let ledger = &mut self.nodes[block.node].ledger;
        ledger.give_back(block.len, block.usage);
        ledger.take(block.len, usage);
        block.usage = usage;
        Ok(())
    }

    /// Frees every live block in `[start, end)`, which they must cover exactly (what a
    /// partition holds of a block it carved). All or nothing.
    pub fn free_range(&mut self, start: u64, end: u64) -> Result<(), FreeError> {
        let mut at = start;
        let pieces: Vec<(u64, LiveBlock)> = self
            .blocks
            .range(start..end)
            .map(|(&addr, &block)| (addr, block))
            .collect();
        for &(addr, block) in &pieces {
            if addr != at {
                return Err(FreeError::NotTiled { start, end });
            }
            at = addr + block.len;
        }
        if at != end || start >= end {
            return Err(FreeError::NotTiled { start, end });
        }
        for (addr, block) in pieces {
            self.free_live(addr, block)?;
        }
        Ok(())
    }

    /// Marks `[start, end)`, rounded out to whole pages, as taken for `usage`, even across
    /// nodes or partly outside managed memory: only the managed parts are taken and counted.
    ///
    /// Every managed part must be free; otherwise nothing changes. A range that misses
    /// managed memory entirely succeeds with no pieces and is not recorded.
    pub fn reserve(
        &mut self,
        start: u64,
        end: u64,
        usage: Usage,
    ) -> Result<Reservation, ReserveError> {
        if start > end {
            return Err(ReserveError::InvalidRange { start, end });
        }
        let (start, end) = if start == end {
            (start, end)
        } else {
            round_out(start, end)
        };
        let pieces = self.managed_pieces(start, end);
        if let Some(p) = pieces
            .iter()
            .find(|p| !self.nodes[p.node].free.contains(p.start, p.end))
        {
            return Err(ReserveError::NotFree {
                start: p.start,
                end: p.end,
                node: p.node,
            });
        }
        let reservation = Reservation {
            start,
            end,
            usage,
            pieces,
        };
        if reservation.pieces.is_empty() {
            return Ok(reservation);
        }
        for p in &reservation.pieces {
            let memory = &mut self.nodes[p.node];
            memory.free.remove(p.start, p.end);
            memory.ledger.take(p.end - p.start, usage);
        }
        self.reservations.insert((start, end), reservation.clone());
        Ok(reservation)
    }

    /// Gives back the reservation made by `reserve(start, end, _)` (same arguments; they are
    /// rounded the same way) and returns what it held.
    pub fn free_reserved(&mut self, start: u64, end: u64) -> Result<Reservation, FreeError> {
        let key = if start < end {
            round_out(start, end)
        } else {
            (start, end)
        };
        let reservation = self
            .reservations
            .get(&key)
            .ok_or(FreeError::NotReserved { start, end })?;
        if let Some(p) = reservation
            .pieces
            .iter()
            .find(|p| self.nodes[p.node].free.overlaps(p.start, p.end))
        {
            return Err(FreeError::OverlapsFree {
                start: p.start,
                end: p.end,
            });
        }
        let Some(reservation) = self.reservations.remove(&key) else {
            return Err(FreeError::NotReserved { start, end });
        };
        for p in &reservation.pieces {
            let memory = &mut self.nodes[p.node];
            memory.free.insert(p.start, p.end);
            memory.ledger.give_back(p.end - p.start, reservation.usage);
        }
        Ok(reservation)
    }

    /// The node whose managed memory holds `addr`, if any.
    pub fn node_of(&self, addr: u64) -> Option<usize> {
        let (_, &(end, node)) = self.managed.range(..=addr).next_back()?;
        (addr < end).then_some(node)
    }

    /// The ledger of every node, node 0 first.
    pub fn ledger(&self) -> Vec<NodeLedger> {
        self.nodes.iter().map(|m| m.ledger).collect()
    }

    /// The largest block size `node` could hand out now; `None` if none (or no such node).
    pub fn largest_free_block(&self, node: usize) -> Option<BlockSize> {
        let free = &self.nodes.get(node)?.free;
        BlockSize::ALL
            .into_iter()
            .rev()
            .find(|&size| free.has_block(size))
    }

    /// `node`'s free ranges, lowest first (none for an unknown node).
    pub fn free_ranges(&self, node: usize) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.nodes.get(node).into_iter().flat_map(|m| m.free.iter())
    }

    /// `node`'s managed ranges (its usable RAM after trimming), lowest first.
    pub fn usable_ranges(&self, node: usize) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.managed
            .iter()
            .filter(move |(_, &(_, n))| n == node)
            .map(|(&s, &(e, _))| (s, e))
    }

    /// The live reservations, lowest first.
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> + '_ {
        self.reservations.values()
    }

    /// The parts of `[start, end)` that are managed memory, one per managed range touched.
    fn managed_pieces(&self, start: u64, end: u64) -> Vec<ReservedPiece> {
        let first = self
            .managed
            .range(..=start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        self.managed
            .range(first..end)
            .map(|(&s, &(e, node))| ReservedPiece {
                start: s.max(start),
                end: e.min(end),
                node,
            })
            .filter(|p| p.start < p.end)
            .collect()
    }
}

/// `[start, end)` (start < end) rounded out to whole pages; the end saturates at the last page.
fn round_out(start: u64, end: u64) -> (u64, u64) {
    let end = align_up(end, PAGE_SIZE).unwrap_or(align_down(u64::MAX, PAGE_SIZE));
    (align_down(start, PAGE_SIZE), end)
}
