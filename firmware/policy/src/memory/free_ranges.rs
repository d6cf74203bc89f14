//! The free memory of one node, kept as maximal page-aligned `[start, end)` ranges — never one
//! entry per page, so tens of GiB cost a handful of map entries.
//!
//! Two indexes over the same ranges: by start address (to coalesce on free and to find the range
//! that contains an address) and by length (to find the smallest range that still holds an
//! aligned block: best fit). Where a block goes inside its range is [`placement`]'s job.

use alloc::collections::{BTreeMap, BTreeSet};

use super::block::{align_down, align_up, BlockSize};

/// Free ranges of one node. All ranges are page-aligned, non-empty, disjoint and never adjacent
/// (adjacent ones are merged on insertion).
#[derive(Clone, Debug, Default)]
pub(crate) struct FreeRanges {
    /// start → end.
    by_start: BTreeMap<u64, u64>,
    /// (length, start), for best fit.
    by_len: BTreeSet<(u64, u64)>,
    /// Sum of all lengths.
    bytes: u64,
}

impl FreeRanges {
    /// Total free bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How many separate ranges the free memory is in.
    pub(crate) fn range_count(&self) -> usize {
        self.by_start.len()
    }

    /// The ranges, lowest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.by_start.iter().map(|(&s, &e)| (s, e))
    }

    /// Whether `[start, end)` lies entirely inside one free range.
    pub(crate) fn contains(&self, start: u64, end: u64) -> bool {
        self.containing(start, end).is_some()
    }

    /// Adds `[start, end)`, merging it with free neighbours. Returns `false`, and changes
    /// nothing, if any byte of it is already free.
    pub(crate) fn insert(&mut self, start: u64, end: u64) -> bool {
        if start >= end || self.overlaps(start, end) {
            return false;
        }
        let (mut new_start, mut new_end) = (start, end);
        if let Some((&s, &e)) = self.by_start.range(..start).next_back() {
            if e == start {
                self.unlink(s, e);
                new_start = s;
            }
        }
        if let Some(&e) = self.by_start.get(&end) {
            self.unlink(end, e);
            new_end = e;
        }
        self.link(new_start, new_end);
        true
    }

    /// Takes `[start, end)` out of the free memory, splitting its range. Returns `false`, and
    /// changes nothing, unless the whole of it is free.
    pub(crate) fn remove(&mut self, start: u64, end: u64) -> bool {
        let Some((s, e)) = self.containing(start, end).filter(|_| start < end) else {
            return false;
        };
        self.unlink(s, e);
        if s < start {
            self.link(s, start);
        }
        if end < e {
            self.link(end, e);
        }
        true
    }

    /// Takes one block of `size`, best fit: from the smallest range that holds an aligned block
    /// of that size, at the spot [`placement`] picks. `None` if no range holds one.
    pub(crate) fn take(&mut self, size: BlockSize) -> Option<u64> {
        let at = self.best_fit(size)?;
        let removed = self.remove(at, at + size.bytes());
        debug_assert!(removed, "best fit returned a block that is not free");
        Some(at)
    }

    /// Whether some range holds an aligned block of `size`.
    pub(crate) fn has_block(&self, size: BlockSize) -> bool {
        self.best_fit(size).is_some()
    }

    fn best_fit(&self, size: BlockSize) -> Option<u64> {
        let bytes = size.bytes();
        // Ranges of at least 2 * bytes - 4 KiB always hold one, so the scan past ranges that
        // are long enough but misaligned is short.
        self.by_len
            .range((bytes, 0)..)
            .find_map(|&(len, s)| placement(s, s + len, bytes))
    }

    fn containing(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        let (&s, &e) = self.by_start.range(..=start).next_back()?;
        (end <= e).then_some((s, e))
    }

    /// Whether any byte of `[start, end)` is free.
    pub(crate) fn overlaps(&self, start: u64, end: u64) -> bool {
        let before = self.by_start.range(..=start).next_back();
        before.is_some_and(|(_, &e)| e > start) || self.by_start.range(start..end).next().is_some()
    }

    fn link(&mut self, start: u64, end: u64) {
        self.by_start.insert(start, end);
        self.by_len.insert((end - start, start));
        self.bytes += end - start;
    }

    fn unlink(&mut self, start: u64, end: u64) {
        self.by_start.remove(&start);
        self.by_len.remove(&(end - start, start));
        self.bytes -= end - start;
    }
}

/// Where in the free range `[start, end)` a block of `size` bytes (a power of two) goes, or
/// `None` if no aligned block fits.
///
/// Candidates are the lowest and the highest aligned spot. One that leaves no unaligned sliver
/// beside it (it touches the range's edge) is preferred: the range then shrinks instead of
/// splitting in two. If both touch an edge, the block comes off the less aligned edge, so the
/// better aligned edge stays intact for a later large block. If neither does, the smaller
/// sliver is cut off.
pub(crate) fn placement(start: u64, end: u64, size: u64) -> Option<u64> {
    let low = align_up(start, size)?;
    if low.checked_add(size)? > end {
        return None;
    }
    let high = align_down(end, size) - size;
    let low_sliver = low - start;
    let high_sliver = end - (high + size);
    Some(match (low_sliver, high_sliver) {
        (0, 0) if start.trailing_zeros() <= end.trailing_zeros() => low,
        (0, 0) => high,
        (0, _) => low,
        (_, 0) => high,
        (a, b) if a < b => low,
        _ => high,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn ranges(free: &FreeRanges) -> Vec<(u64, u64)> {
        free.iter().collect()
    }

    #[test]
    fn insert_coalesces_with_both_neighbours() {
        let mut free = FreeRanges::default();
        assert!(free.insert(0x1000, 0x2000));
        assert!(free.insert(0x3000, 0x4000));
        assert!(free.insert(0x2000, 0x3000));
        assert_eq!(ranges(&free), [(0x1000, 0x4000)]);
        assert_eq!(free.bytes(), 0x3000);
        assert_eq!(free.by_len.len(), 1);
    }

    #[test]
    fn insert_refuses_overlap_and_changes_nothing() {
        let mut free = FreeRanges::default();
        free.insert(0x2000, 0x4000);
        for (s, e) in [
            (0x1000, 0x3000),
            (0x3000, 0x5000),
            (0x2000, 0x3000),
            (0x1000, 0x5000),
        ] {
            assert!(!free.insert(s, e), "{s:#x}..{e:#x}");
        }
        assert_eq!(ranges(&free), [(0x2000, 0x4000)]);
    }

    #[test]
    fn remove_splits_and_refuses_what_is_not_free() {
        let mut free = FreeRanges::default();
        free.insert(0, 0x10000);
        assert!(free.remove(0x4000, 0x5000));
        assert_eq!(ranges(&free), [(0, 0x4000), (0x5000, 0x10000)]);
        assert!(!free.remove(0x3000, 0x6000));
        assert!(!free.remove(0x4000, 0x5000));
        assert_eq!(free.bytes(), 0xf000);
    }

    #[test]
    fn placement_prefers_edges_and_alignment() {
        // Both edges touch: take from the less aligned one (the end, here).
        assert_eq!(placement(0, 0x3000, 0x1000), Some(0x2000));
        assert_eq!(placement(0x1000, 4 * MIB, 0x1000), Some(0x1000));
        // Only the high end is 2 MiB aligned: no split.
        assert_eq!(placement(0x1000, 4 * MIB, 2 * MIB), Some(2 * MIB));
        // Neither edge aligned: cut off the smaller sliver.
        assert_eq!(placement(MIB, 7 * MIB + 0x1000, 2 * MIB), Some(2 * MIB));
        assert_eq!(
            placement(MIB + 0x1000, 6 * MIB + MIB / 2, 2 * MIB),
            Some(4 * MIB)
        );
        // Long enough, but no aligned block inside.
        assert_eq!(placement(MIB, 4 * MIB - 0x1000, 2 * MIB), None);
        assert_eq!(placement(u64::MAX - 0xfff, u64::MAX, 2 * MIB), None);
    }

    #[test]
    fn take_is_best_fit() {
        let mut free = FreeRanges::default();
        free.insert(0, 8 * MIB);
        free.insert(16 * MIB, 16 * MIB + 0x2000);
        free.insert(32 * MIB, 35 * MIB);
        // 4 KiB comes from the smallest range.
        assert_eq!(free.take(BlockSize::Size4K), Some(16 * MIB + 0x1000));
        // 2 MiB comes from the 3 MiB range, not the 8 MiB one.
        assert_eq!(free.take(BlockSize::Size2M), Some(32 * MIB));
        assert!(free.contains(0, 8 * MIB));
        assert!(!free.has_block(BlockSize::Size1G));
        assert_eq!(free.take(BlockSize::Size1G), None);
    }
}
