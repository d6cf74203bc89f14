//! A reservation: an exact range taken out of managed memory (the hypervisor image, its heap,
//! boot data), split into one piece per node it touches.

use alloc::vec::Vec;

use super::block::Usage;

/// The part of a reservation that lies in one node's managed memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedPiece {
    /// First byte (page-aligned).
    pub start: u64,
    /// One past the last byte (page-aligned).
    pub end: u64,
    /// The node that owns this part.
    pub node: usize,
}

/// What [`reserve`](super::FrameAllocator::reserve) took: the range asked for, rounded out to
/// whole pages, and the pieces of it that were managed memory. Parts outside managed memory
/// (holes, MMIO) are in no piece and count nowhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Start of the range asked for, rounded down to a page.
    pub start: u64,
    /// End of the range asked for, rounded up to a page.
    pub end: u64,
    /// The ledger column it counts in.
    pub usage: Usage,
    /// The managed parts, lowest first; empty if the range missed managed memory entirely.
    pub pieces: Vec<ReservedPiece>,
}

impl Reservation {
    /// Bytes taken from `node`.
    pub fn bytes_on(&self, node: usize) -> u64 {
        self.pieces
            .iter()
            .filter(|p| p.node == node)
            .map(|p| p.end - p.start)
            .sum()
    }

    /// Bytes taken from all nodes together.
    pub fn total_bytes(&self) -> u64 {
        self.pieces.iter().map(|p| p.end - p.start).sum()
    }

    /// Bytes taken per node, indexed by node, for `node_count` nodes.
    pub fn bytes_per_node(&self, node_count: usize) -> Vec<u64> {
        (0..node_count).map(|node| self.bytes_on(node)).collect()
    }
}
