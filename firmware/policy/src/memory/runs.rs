//! Contiguous runs of pages and pages inside an address window, for the few hypervisor
//! objects that are neither a single block nor a fixed range: an AP's multi-page stack and the
//! AP start-up page (which must lie below 1 MiB).
//!
//! Both are taken as reservations (freed with `free_reserved`), so the exact-record rules of
//! the allocator apply to them too.

use super::block::PAGE_SIZE;
use super::error::AllocError;
use super::frame_allocator::FrameAllocator;
use super::Usage;

impl FrameAllocator {
    /// Takes `pages` contiguous 4 KiB pages from the first node in `order` with such a run
    /// (best fit: the smallest free range that holds it, at its low end). Returns the run's
    /// start and its node.
    pub fn reserve_run_near(
        &mut self,
        order: &[usize],
        pages: u64,
        usage: Usage,
    ) -> Result<(u64, usize), AllocError> {
        let home = order.first().copied().unwrap_or(0);
        let bytes = pages.checked_mul(PAGE_SIZE).filter(|&b| b > 0);
        let Some(bytes) = bytes else {
            return Err(AllocError::NoContiguousRun { home, pages });
        };
        for &node in order {
            let best = self
                .free_ranges(node)
                .filter(|(start, end)| end - start >= bytes)
                .min_by_key(|(start, end)| (end - start, *start));
            if let Some((start, _)) = best {
                if self.reserve(start, start + bytes, usage).is_ok() {
                    return Ok((start, node));
                }
            }
        }
        Err(AllocError::NoContiguousRun { home, pages })
    }

    /// Takes the highest free 4 KiB page inside `[low, high)` on any node.
    pub fn reserve_page_within(&mut self, low: u64, high: u64, usage: Usage) -> Option<u64> {
        let candidate = (0..self.node_count())
            .flat_map(|node| self.free_ranges(node).collect::<alloc::vec::Vec<_>>())
            .filter_map(|(start, end)| {
                let start = start.max(low);
                let end = end.min(high) & !(PAGE_SIZE - 1);
                (end >= start + PAGE_SIZE).then(|| end - PAGE_SIZE)
            })
            .max()?;
        self.reserve(candidate, candidate + PAGE_SIZE, usage).ok()?;
        Some(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn runs_come_from_the_first_node_that_has_one() {
        let mut frames =
            FrameAllocator::new(&[vec![(0x1000, 0x3000)], vec![(0x10_0000, 0x20_0000)]]);
        let (start, node) = frames
            .reserve_run_near(&[0, 1], 4, Usage::Hypervisor)
            .unwrap();
        assert_eq!((start, node), (0x10_0000, 1));
        let (start, node) = frames
            .reserve_run_near(&[0, 1], 2, Usage::Hypervisor)
            .unwrap();
        assert_eq!((start, node), (0x1000, 0));
        assert_eq!(
            frames.reserve_run_near(&[0], 1, Usage::Hypervisor),
            Err(AllocError::NoContiguousRun { home: 0, pages: 1 })
        );
        assert!(frames.reserve_run_near(&[1], 0, Usage::Hypervisor).is_err());
        assert!(frames.ledger().iter().all(|l| l.is_balanced()));
        assert_eq!(frames.ledger()[1].hypervisor, 4 * PAGE_SIZE);
        assert!(frames.free_reserved(0x10_0000, 0x10_4000).is_ok());
    }

    #[test]
    fn page_within_a_window() {
        let mut frames = FrameAllocator::new(&[vec![(0, 0x9_f000), (0x10_0000, 0x800_0000)]]);
        assert_eq!(
            frames.reserve_page_within(0x1000, 0x10_0000, Usage::Hypervisor),
            Some(0x9_e000)
        );
        assert_eq!(
            frames.reserve_page_within(0x1000, 0x10_0000, Usage::Hypervisor),
            Some(0x9_d000)
        );
        assert_eq!(
            frames.reserve_page_within(0x20_0000, 0x20_0800, Usage::Hypervisor),
            None
        );
        assert_eq!(frames.ledger()[0].hypervisor, 2 * PAGE_SIZE);
    }
}
