//! Why an allocation, a reservation or a free was refused. Every error names what was asked
//! for and, where it helps, what the node had; a refused request changes nothing.

use core::fmt;

use super::block::{BlockSize, Bytes};

/// Why [`allocate_on`](super::FrameAllocator::allocate_on) or
/// [`allocate_near`](super::FrameAllocator::allocate_near) failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The node index is not below the node count.
    NoSuchNode { node: usize, node_count: usize },
    /// The node has no free, aligned block of the size asked for.
    OutOfMemory {
        node: usize,
        size: BlockSize,
        free_bytes: u64,
        free_ranges: usize,
    },
    /// None of the nodes tried (the home node and the ones after it in the order) had one.
    OutOfMemoryNear {
        home: usize,
        nodes_tried: usize,
        size: BlockSize,
        free_bytes: u64,
        free_ranges: usize,
    },
    /// `allocate_near` was given no node to try.
    EmptyOrder { size: BlockSize },
    /// No node in the order had `pages` contiguous free 4 KiB pages.
    NoContiguousRun { home: usize, pages: u64 },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AllocError::NoSuchNode { node, node_count } => {
                write!(f, "there is no node {node} (this machine has {node_count})")
            }
            AllocError::OutOfMemory {
                node,
                size,
                free_bytes,
                free_ranges,
            } => write!(
                f,
                "node {node} has no free {size} block (free: {} in {free_ranges} {})",
                Bytes(free_bytes),
                ranges(free_ranges)
            ),
            AllocError::OutOfMemoryNear {
                home,
                nodes_tried,
                size,
                free_bytes,
                free_ranges,
            } => {
                write!(
                    f,
                    "no free {size} block on node {home} or the {} other node(s) allowed as \
                     fallback (free on those: {} in {free_ranges} {})",
                    nodes_tried.saturating_sub(1),
                    Bytes(free_bytes),
                    ranges(free_ranges)
                )
            }
            AllocError::EmptyOrder { size } => {
                write!(f, "asked for a {size} block with no node to take it from")
            }
            AllocError::NoContiguousRun { home, pages } => write!(
                f,
                "no node from node {home} outward has {pages} contiguous free 4 KiB pages"
            ),
        }
    }
}

/// Why [`free`](super::FrameAllocator::free) or
/// [`free_reserved`](super::FrameAllocator::free_reserved) refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// No block starts at `addr` (never allocated, already freed, or inside another block).
    NotAllocated { addr: u64, size: BlockSize },
    /// A block starts at `addr`, but of another size.
    WrongSize {
        addr: u64,
        size: BlockSize,
        /// Bytes of the block there (a carved piece need not be a block size).
        allocated: u64,
    },
    /// Part of `[start, end)` is free already (only reachable if the books were corrupted).
    OverlapsFree { start: u64, end: u64 },
    /// No reservation of exactly `[start, end)` (rounded out to pages) exists.
    NotReserved { start: u64, end: u64 },
    /// The live blocks in `[start, end)` do not cover it exactly (a gap, or a block reaching
    /// past either end): it is not one owner's memory.
    NotTiled { start: u64, end: u64 },
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FreeError::NotAllocated { addr, size } => {
                write!(
                    f,
                    "cannot free the {size} block at {addr:#x}: it is not allocated"
                )
            }
            FreeError::WrongSize {
                addr,
                size,
                allocated,
            } => write!(
                f,
                "cannot free a {size} block at {addr:#x}: the block there is {}",
                super::Bytes(allocated)
            ),
            FreeError::OverlapsFree { start, end } => {
                write!(
                    f,
                    "cannot free [{start:#x}, {end:#x}): part of it is free already"
                )
            }
            FreeError::NotReserved { start, end } => {
                write!(
                    f,
                    "cannot free [{start:#x}, {end:#x}): no reservation of that exact range"
                )
            }
            FreeError::NotTiled { start, end } => write!(
                f,
                "cannot free [{start:#x}, {end:#x}): the blocks allocated there do not cover it exactly"
            ),
        }
    }
}

/// Why [`reserve`](super::FrameAllocator::reserve) refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReserveError {
    /// `start` is above `end`.
    InvalidRange { start: u64, end: u64 },
    /// The managed part `[start, end)` on `node` is not all free (allocated or reserved).
    NotFree { start: u64, end: u64, node: usize },
}

impl fmt::Display for ReserveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ReserveError::InvalidRange { start, end } => {
                write!(
                    f,
                    "cannot reserve [{start:#x}, {end:#x}): it ends before it starts"
                )
            }
            ReserveError::NotFree { start, end, node } => write!(
                f,
                "cannot reserve [{start:#x}, {end:#x}) on node {node}: part of it is in use"
            ),
        }
    }
}

fn ranges(count: usize) -> &'static str {
    if count == 1 {
        "range"
    } else {
        "ranges"
    }
}
