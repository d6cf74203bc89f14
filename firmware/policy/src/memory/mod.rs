//! Physical memory per proximity domain (DESIGN.md, "Memory model": NUMA, Large pages,
//! Accounting).
//!
//! [`FrameAllocator`] keeps each node's free memory as ranges — never per-page metadata — and
//! hands out naturally aligned blocks of 4 KiB, 2 MiB and 1 GiB ([`BlockSize`]), tagged with a
//! [`Usage`] that picks the [`NodeLedger`] column they count in. It never touches the memory it
//! manages: all bookkeeping is in the heap.
//!
//! # Allocation strategy
//!
//! - **Which node:** `allocate_on` takes only from the node named; `allocate_near` tries the
//!   nodes in the order the caller passes (home first, then by SLIT distance, as the topology
//!   computes it) and reports which node gave the block.
//! - **Which range (best fit):** the smallest free range of the node that holds an aligned
//!   block of the size asked for. Small requests use up small leftover ranges first, so large
//!   ranges stay whole for 2 MiB and 1 GiB blocks.
//! - **Where in the range:** at an edge whenever an aligned spot touches one, so the range
//!   shrinks instead of splitting; if both edges qualify, the less aligned one, keeping the
//!   better aligned edge for a later large block; otherwise the spot that cuts off the smaller
//!   unaligned sliver.
//! - **Freeing** merges the block with adjacent free ranges, so freeing everything gives back
//!   exactly the ranges the allocator started with.
//!
//! Blocks and reservations are recorded exactly (address → size, node, usage), so a free of
//! anything that was not handed out is refused with a typed error and changes nothing.

mod block;
mod error;
mod frame_allocator;
mod free_ranges;
mod host_page;
mod ledger;
mod reservation;
mod runs;
#[cfg(test)]
mod tests;

pub use block::{BlockSize, Bytes, Usage, PAGE_SIZE};
pub use error::{AllocError, FreeError, ReserveError};
pub use frame_allocator::FrameAllocator;
pub use host_page::HostPage;
pub use ledger::NodeLedger;
pub use reservation::{Reservation, ReservedPiece};
