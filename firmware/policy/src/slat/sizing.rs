//! Which leaves a range is mapped with, and how many table pages that takes, for the 4-level
//! walk shared by NPT and EPT (AMD APM vol. 2 §15.25.5, Intel SDM vol. 3C §29.3.2): a PML4
//! page (the root), one PDPT page per 512 GiB region touched, one PD page per 1 GiB region
//! holding a leaf smaller than 1 GiB, one PT page per 2 MiB region holding 4 KiB leaves.

use alloc::vec::Vec;

use crate::memory::{BlockSize, PAGE_SIZE};

/// The guest-physical address space a 4-level walk covers: 48 bits.
pub const GPA_LIMIT: u64 = 1 << 48;
/// The host-physical address space an entry can name: 52 bits (bits 51:12).
pub const SPA_LIMIT: u64 = 1 << 52;

/// Bit position of the lowest GPA bit that indexes the table at `level` (1 = PT ... 4 = PML4);
/// also the log2 of the bytes one of its entries maps.
pub(crate) const fn entry_shift(level: u32) -> u32 {
    12 + 9 * (level - 1)
}

/// The level whose entries are leaves of `size`: PT (1), PD (2), PDPT (3).
pub(crate) const fn leaf_level(size: BlockSize) -> u32 {
    match size {
        BlockSize::Size4K => 1,
        BlockSize::Size2M => 2,
        BlockSize::Size1G => 3,
    }
}

/// The page sizes up to `largest`, largest first.
fn sizes_up_to(largest: BlockSize) -> impl Iterator<Item = BlockSize> {
    BlockSize::ALL
        .into_iter()
        .rev()
        .filter(move |&s| s <= largest)
}

/// Splits the page-aligned `[start, end)` (end ≤ [`GPA_LIMIT`]) into runs of equal leaves,
/// lowest first: at every address, the largest size ≤ `largest` that the address is aligned
/// to and that still fits before `end`. At most five runs (4K, 2M, 1G, 2M, 4K).
pub(crate) fn leaf_runs(start: u64, end: u64, largest: BlockSize) -> Vec<(u64, u64, BlockSize)> {
    let sizes: Vec<BlockSize> = sizes_up_to(largest).collect();
    let mut runs = Vec::new();
    split(start, end, &sizes, &mut runs);
    runs
}

/// The largest run of `sizes[0]` leaves is the aligned middle of `[start, end)`; the edges
/// left over are split with the smaller sizes.
fn split(start: u64, end: u64, sizes: &[BlockSize], runs: &mut Vec<(u64, u64, BlockSize)>) {
    let Some((&size, smaller)) = sizes.split_first() else {
        return;
    };
    if start >= end {
        return;
    }
    let bytes = size.bytes();
    // end ≤ 2^48, so rounding up cannot overflow.
    let low = start.next_multiple_of(bytes);
    let high = end - end % bytes;
    if low < high {
        split(start, low, smaller, runs);
        runs.push((low, high, size));
        split(high, end, smaller, runs);
    } else {
        split(start, end, smaller, runs);
    }
}

/// The SLAT table pages (root included) a [`SlatBuilder`](super::SlatBuilder) with
/// `max_page = page` uses to map `ranges` (`(gpa, len)`, not overlapping, any order), one
/// `map` call per range, when each range's SPA is aligned like its GPA.
///
/// Exact for such input; for pool sizing it is the **lower bound**. Host memory aligned worse
/// than the GPA forces smaller leaves and more tables; the **upper bound**, whatever the SPA
/// alignment, is `table_pages_needed(ranges, BlockSize::Size4K)`. Ranges are rounded out to
/// whole pages and cut at [`GPA_LIMIT`] (the builder refuses what lies beyond). The root counts
/// even with nothing mapped, so no ranges give 1 (`partition::cost::slat_table_pages` says 0
/// there: it counts for a partition that has memory).
pub fn table_pages_needed(ranges: &[(u64, u64)], page: BlockSize) -> u64 {
    let ranges: Vec<(u64, u64, BlockSize)> =
        ranges.iter().map(|&(gpa, len)| (gpa, len, page)).collect();
    table_pages_needed_per_range(&ranges)
}

/// [`table_pages_needed`] with a largest leaf of its own for each range (`(gpa, len, page)`,
/// not overlapping, any order), all mapped by one builder: a table page that two ranges both
/// need (the root, a PDPT, a PD or PT at a seam) counts once. For a partition whose RAM is
/// mapped with 1 GiB leaves and whose hot-add regions with 2 MiB leaves.
pub fn table_pages_needed_per_range(ranges: &[(u64, u64, BlockSize)]) -> u64 {
    // Per level, the inclusive index intervals of the regions that need a table page.
    let mut pdpts = Vec::new();
    let mut pds = Vec::new();
    let mut pts = Vec::new();
    for &(gpa, len, page) in ranges {
        let start = (gpa - gpa % PAGE_SIZE).min(GPA_LIMIT);
        let end = gpa
            .saturating_add(len)
            .min(GPA_LIMIT)
            .next_multiple_of(PAGE_SIZE);
        for (low, high, size) in leaf_runs(start, end, page) {
            let span = |shift: u32| (low >> shift, (high - 1) >> shift);
            pdpts.push(span(entry_shift(4)));
            if size <= BlockSize::Size2M {
                pds.push(span(entry_shift(3)));
            }
            if size == BlockSize::Size4K {
                pts.push(span(entry_shift(2)));
            }
        }
    }
    1 + distinct(pdpts) + distinct(pds) + distinct(pts)
}

/// How many integers the inclusive intervals cover together.
fn distinct(mut intervals: Vec<(u64, u64)>) -> u64 {
    intervals.sort_unstable();
    let mut count = 0;
    let mut covered_to: Option<u64> = None; // highest index counted so far
    for (low, high) in intervals {
        let low = covered_to.map_or(low, |c| low.max(c.saturating_add(1)));
        if low <= high {
            count += high - low + 1;
            covered_to = Some(high);
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use BlockSize::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn runs_are_largest_aligned_leaves() {
        assert_eq!(
            leaf_runs(MIB, 3 * GIB + 3 * MIB, Size1G),
            vec![
                (MIB, 2 * MIB, Size4K),
                (2 * MIB, GIB, Size2M),
                (GIB, 3 * GIB, Size1G),
                (3 * GIB, 3 * GIB + 2 * MIB, Size2M),
                (3 * GIB + 2 * MIB, 3 * GIB + 3 * MIB, Size4K),
            ]
        );
        assert_eq!(leaf_runs(0, 3 * GIB, Size2M), vec![(0, 3 * GIB, Size2M)]);
        assert_eq!(leaf_runs(0, MIB, Size1G), vec![(0, MIB, Size4K)]);
        assert_eq!(leaf_runs(5, 5, Size1G), vec![]);
    }

    #[test]
    fn table_counts() {
        // 3 GiB at 1 GiB with 1 GiB leaves: PML4 + PDPT.
        assert_eq!(table_pages_needed(&[(GIB, 3 * GIB)], Size1G), 2);
        // With 2 MiB leaves: + one PD per GiB.
        assert_eq!(table_pages_needed(&[(GIB, 3 * GIB)], Size2M), 5);
        // With 4 KiB leaves: + 512 PTs per GiB.
        assert_eq!(table_pages_needed(&[(GIB, 3 * GIB)], Size4K), 5 + 3 * 512);
        assert_eq!(table_pages_needed(&[], Size1G), 1);
        // Two ranges sharing a PT count it once; the 4 KiB page at 512 GiB needs its own
        // PDPT, PD and PT.
        let shared = [(0, MIB), (MIB, MIB), (512 * GIB, 4096)];
        assert_eq!(table_pages_needed(&shared, Size2M), 4 + 3);
        // 1 TiB with 1 GiB leaves: PML4 + 2 PDPTs.
        assert_eq!(table_pages_needed(&[(0, 1 << 40)], Size1G), 3);
        // Cut at 2^48 rather than overflow.
        assert_eq!(table_pages_needed(&[(u64::MAX - 10, 100)], Size1G), 1);
    }

    #[test]
    fn distinct_merges_overlaps() {
        assert_eq!(distinct(vec![(0, 0), (0, 0), (1, 3), (2, 5), (7, 7)]), 7);
        assert_eq!(distinct(vec![(0, u64::MAX >> 40)]), (u64::MAX >> 40) + 1);
    }
}
