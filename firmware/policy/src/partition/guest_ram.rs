//! A partition's guest RAM as the hypervisor reaches it: the blocks it was built with, and
//! the single 4 KiB pages that changed since (given up by a deposit or a balloon inflation,
//! or refilled with another host page by a withdrawal or a deflation).
//!
//! Only changed pages are recorded, so a partition that never moves memory costs nothing,
//! and one that moves a few hundred MiB in 4 KiB pages costs one map entry per page: the
//! blocks themselves are never split here (the SLAT and the frame allocator split theirs).
//!
//! Blocks plugged by virtio-mem (Dynamic Memory's hot-add, above the RAM built) join the
//! blocks while they are plugged. They move whole, never page by page: a balloon or a deposit
//! cannot take a page of them ([`GuestRam::backing`] does not name them), so unplugging a block
//! always finds it as it was plugged.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::memory::PAGE_SIZE;

use super::placement::GuestBlock;

/// What backs one guest page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageBacking {
    /// Its host page.
    pub spa: u64,
    /// The host node of that page.
    pub node: usize,
    /// The vnode the GPA belongs to.
    pub vnode: usize,
}

/// The guest RAM of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestRam {
    /// As built, sorted by GPA, then the plugged blocks, sorted by GPA above them.
    blocks: Vec<GuestBlock>,
    /// How many of `blocks` were built (the rest are plugged).
    built: usize,
    /// Pages that changed since: `None` given up (a hole), `Some(spa)` backed by another
    /// host page than its block's (on the block's node).
    changed: BTreeMap<u64, Option<u64>>,
}

impl GuestRam {
    /// RAM of these blocks (sorted by GPA, not overlapping), nothing changed.
    pub fn new(blocks: Vec<GuestBlock>) -> Self {
        GuestRam {
            built: blocks.len(),
            blocks,
            changed: BTreeMap::new(),
        }
    }

    /// The blocks it was built with, then those plugged since (holes and refills are not
    /// shown here).
    pub fn blocks(&self) -> &[GuestBlock] {
        &self.blocks
    }

    /// The blocks plugged since it was built, by GPA.
    pub fn plugged_blocks(&self) -> &[GuestBlock] {
        &self.blocks[self.built..]
    }

    /// Adds `block` (plugged by virtio-mem): false, with nothing changed, if it is not above
    /// every block built or overlaps a block plugged earlier.
    pub fn plug(&mut self, block: GuestBlock) -> bool {
        let end = block.gpa.checked_add(block.size.bytes());
        let above_built = self.blocks[..self.built]
            .last()
            .is_none_or(|last| last.gpa + last.size.bytes() <= block.gpa);
        let plugged = &self.blocks[self.built..];
        let at = self.built + plugged.partition_point(|b| b.gpa < block.gpa);
        let before_ok = self.blocks[self.built..at]
            .last()
            .is_none_or(|b| b.gpa + b.size.bytes() <= block.gpa);
        let after_ok = self
            .blocks
            .get(at)
            .is_none_or(|b| end.is_some_and(|end| end <= b.gpa));
        if end.is_none() || !above_built || !before_ok || !after_ok {
            return false;
        }
        self.blocks.insert(at, block);
        true
    }

    /// Removes the plugged block that starts at `gpa` and returns it; `None` (nothing
    /// changed) if no plugged block starts there.
    pub fn unplug(&mut self, gpa: u64) -> Option<GuestBlock> {
        // Plugged blocks are kept in GPA order (`plug`): a search, as a block plugged in
        // 4 KiB pieces is 512 of them.
        let plugged = self.plugged_blocks();
        let at = plugged.partition_point(|b| b.gpa < gpa);
        let found = plugged.get(at).is_some_and(|b| b.gpa == gpa);
        found.then(|| self.blocks.remove(self.built + at))
    }

    /// Bytes plugged into `vnode`.
    pub fn plugged_bytes(&self, vnode: usize) -> u64 {
        self.plugged_blocks()
            .iter()
            .filter(|b| b.vnode == vnode)
            .map(|b| b.size.bytes())
            .sum()
    }

    /// Whether `gpa` lies in a plugged block.
    pub fn is_plugged(&self, gpa: u64) -> bool {
        find_block(self.plugged_blocks(), gpa).is_some()
    }

    /// The block (as built) that `gpa` lies in, hole or not.
    pub fn block_of(&self, gpa: u64) -> Option<&GuestBlock> {
        find_block(&self.blocks, gpa)
    }

    /// The host address of `gpa` and how many bytes follow it at contiguous host addresses
    /// in this RAM; `None` outside RAM or in a hole.
    pub fn translate(&self, gpa: u64) -> Option<(u64, u64)> {
        self.translate_in(self.block_of(gpa)?, gpa)
    }

    /// [`translate`](GuestRam::translate), trying the block at position `hint` first and
    /// leaving there the position of the block `gpa` lies in: one vCPU's reads stay in a few
    /// blocks (its code, its page tables), and a search of the blocks costs every page-walk
    /// read of an exit without next-RIP saving or decode assists.
    #[inline(always)]
    pub fn translate_near(&self, gpa: u64, hint: &mut usize) -> Option<(u64, u64)> {
        match self.blocks.get(*hint) {
            Some(b) if b.gpa <= gpa && gpa - b.gpa < b.size.bytes() => self.translate_in(b, gpa),
            _ => self.translate_searching(gpa, hint),
        }
    }

    /// [`translate_near`](GuestRam::translate_near) when the hinted block does not hold
    /// `gpa`: the blocks are searched (out of line, so the hit stays a few instructions).
    #[inline(never)]
    fn translate_searching(&self, gpa: u64, hint: &mut usize) -> Option<(u64, u64)> {
        let index = self
            .blocks
            .partition_point(|b| b.gpa + b.size.bytes() <= gpa);
        let block = self.blocks.get(index).filter(|b| b.gpa <= gpa)?;
        *hint = index;
        self.translate_in(block, gpa)
    }

    /// `translate` of `gpa`, which lies in `block`.
    #[inline(always)]
    fn translate_in(&self, block: &GuestBlock, gpa: u64) -> Option<(u64, u64)> {
        // Untouched RAM (no page moved yet: the common case, and every page walk of an exit
        // asks): the block alone answers, without the two map lookups.
        if self.changed.is_empty() {
            let end = block.gpa + block.size.bytes();
            return Some((block.spa + (gpa - block.gpa), end - gpa));
        }
        self.translate_changed(block, gpa)
    }

    /// `translate_in` once pages have moved: the changed pages' map decides.
    #[inline(never)]
    fn translate_changed(&self, block: &GuestBlock, gpa: u64) -> Option<(u64, u64)> {
        let page = gpa & !(PAGE_SIZE - 1);
        let offset = gpa - page;
        match self.changed.get(&page) {
            Some(None) => None,
            Some(Some(spa)) => Some((spa + offset, PAGE_SIZE - offset)),
            None => {
                let end = block.gpa + block.size.bytes();
                let next_change = self
                    .changed
                    .range(page..end)
                    .next()
                    .map_or(end, |(&at, _)| at);
                Some((block.spa + (gpa - block.gpa), next_change - gpa))
            }
        }
    }

    /// What backs the page at `gpa` (4 KiB aligned) of the RAM built: `None` outside it, in
    /// a hole, or in a plugged block (those move whole, by virtio-mem alone).
    pub fn backing(&self, gpa: u64) -> Option<PageBacking> {
        let block = self.block_of(gpa)?;
        if self.is_plugged(gpa) {
            return None;
        }
        let (spa, _) = self.translate(gpa)?;
        Some(PageBacking {
            spa: spa & !(PAGE_SIZE - 1),
            node: block.node,
            vnode: block.vnode,
        })
    }

    /// Whether `gpa`'s page is a hole: RAM whose page was given up.
    pub fn is_hole(&self, gpa: u64) -> bool {
        self.changed.get(&(gpa & !(PAGE_SIZE - 1))) == Some(&None)
    }

    /// Gives up the page at `gpa` (4 KiB aligned): its backing, or `None` (nothing changed)
    /// if it is outside RAM or a hole already.
    pub fn unmap_page(&mut self, gpa: u64) -> Option<PageBacking> {
        let backing = self
            .backing(gpa)
            .filter(|_| gpa.is_multiple_of(PAGE_SIZE))?;
        self.changed.insert(gpa, None);
        Some(backing)
    }

    /// Backs the hole at `gpa` with host page `spa`; false (nothing changed) if `gpa` is
    /// not a hole.
    pub fn map_page(&mut self, gpa: u64, spa: u64) -> bool {
        let Some(block) = self.block_of(gpa).copied() else {
            return false;
        };
        if !self.is_hole(gpa) || !gpa.is_multiple_of(PAGE_SIZE) {
            return false;
        }
        if block.spa + (gpa - block.gpa) == spa {
            self.changed.remove(&gpa);
        } else {
            self.changed.insert(gpa, Some(spa));
        }
        true
    }

    /// The holes, by GPA.
    pub fn holes(&self) -> impl Iterator<Item = u64> + '_ {
        self.changed
            .iter()
            .filter(|(_, spa)| spa.is_none())
            .map(|(&gpa, _)| gpa)
    }

    /// Bytes of RAM mapped (holes left out, plugged blocks in) in `vnode` on host `node` (any
    /// node: `None`).
    pub fn mapped_bytes(&self, vnode: usize, node: Option<usize>) -> u64 {
        let mut bytes = 0;
        for block in &self.blocks {
            if block.vnode != vnode || node.is_some_and(|n| n != block.node) {
                continue;
            }
            let end = block.gpa + block.size.bytes();
            let holes = self
                .changed
                .range(block.gpa..end)
                .filter(|(_, spa)| spa.is_none())
                .count() as u64;
            bytes += block.size.bytes() - holes * PAGE_SIZE;
        }
        bytes
    }

    /// Holes in `vnode` on host `node` (any node: `None`).
    pub fn holes_in(&self, vnode: usize, node: Option<usize>) -> u64 {
        self.holes()
            .filter(|&gpa| {
                self.block_of(gpa)
                    .is_some_and(|b| b.vnode == vnode && node.is_none_or(|n| n == b.node))
            })
            .count() as u64
    }

    /// Every host range `[start, end)` backing this RAM, block by block in GPA order (not
    /// merged: each is whole pieces of what the frame allocator handed out): what the
    /// partition gives back when it stops, and what a restart zeroes. An iterator, so that a
    /// partition with many moved pages needs no large allocation to be released.
    pub fn host_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.blocks.iter().flat_map(move |block| {
            let end = block.gpa + block.size.bytes();
            let host = move |gpa: u64| block.spa + (gpa - block.gpa);
            let mut at = block.gpa;
            let mut changes = self.changed.range(block.gpa..end);
            let mut pending: Option<(u64, u64)> = None;
            core::iter::from_fn(move || loop {
                if let Some(range) = pending.take() {
                    return Some(range);
                }
                match changes.next() {
                    Some((&page, &spa)) => {
                        let before = (page > at).then(|| (host(at), host(page)));
                        at = page + PAGE_SIZE;
                        pending = spa.map(|spa| (spa, spa + PAGE_SIZE));
                        if before.is_some() {
                            return before;
                        }
                    }
                    None if end > at => {
                        let last = (host(at), host(end));
                        at = end;
                        return Some(last);
                    }
                    None => return None,
                }
            })
        })
    }
}

/// The block of `blocks` (sorted by GPA, disjoint) that `gpa` lies in.
fn find_block(blocks: &[GuestBlock], gpa: u64) -> Option<&GuestBlock> {
    // Every block before `index` ends at or below `gpa`, so the one at `index` ends above it.
    let index = blocks.partition_point(|b| b.gpa + b.size.bytes() <= gpa);
    blocks.get(index).filter(|b| b.gpa <= gpa)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::BlockSize;
    use alloc::vec;
    use proptest::prelude::*;

    proptest! {
        /// With any hint, `translate_near` answers as `translate` and leaves a hint that
        /// finds the same block at once.
        #[test]
        fn translate_near_agrees_with_translate(
            reads in proptest::collection::vec((0u64..10 << 20, 0usize..6), 1..60),
            holes in proptest::collection::vec(0u64..1024, 0..8),
        ) {
            let mut ram = GuestRam::new(vec![
                GuestBlock { gpa: 0, spa: 0x1000_0000, size: BlockSize::Size2M, vnode: 0, node: 0 },
                GuestBlock { gpa: 2 * MIB, spa: 0x8000_0000, size: BlockSize::Size2M, vnode: 0, node: 0 },
                GuestBlock { gpa: 6 * MIB, spa: 0x4000_0000, size: BlockSize::Size2M, vnode: 1, node: 1 },
            ]);
            for page in holes {
                ram.unmap_page(page << 12);
            }
            let mut kept = 0;
            for (gpa, hint) in reads {
                let mut given = hint;
                prop_assert_eq!(ram.translate_near(gpa, &mut given), ram.translate(gpa));
                prop_assert_eq!(ram.translate_near(gpa, &mut kept), ram.translate(gpa));
            }
        }
    }

    const MIB: u64 = 1 << 20;

    /// 4 MiB of RAM: two 2 MiB blocks, the second on node 1 at a distant host address.
    fn ram() -> GuestRam {
        GuestRam::new(vec![
            GuestBlock {
                gpa: 0,
                spa: 0x1000_0000,
                size: BlockSize::Size2M,
                vnode: 0,
                node: 0,
            },
            GuestBlock {
                gpa: 2 * MIB,
                spa: 0x8000_0000,
                size: BlockSize::Size2M,
                vnode: 1,
                node: 1,
            },
        ])
    }

    #[test]
    fn holes_and_refills_change_only_their_page() {
        let mut ram = ram();
        assert_eq!(ram.translate(0x10), Some((0x1000_0010, 2 * MIB - 0x10)));
        assert_eq!(ram.translate(4 * MIB), None);
        let given = ram.unmap_page(0x3000).unwrap();
        assert_eq!((given.spa, given.node, given.vnode), (0x1000_3000, 0, 0));
        assert_eq!(ram.unmap_page(0x3000), None, "a hole twice");
        assert_eq!(ram.unmap_page(0x4001), None, "unaligned");
        assert_eq!(ram.translate(0x3008), None);
        // Bytes before a hole stop at it; after it they run to the block's end.
        assert_eq!(ram.translate(0x1000), Some((0x1000_1000, 0x2000)));
        assert_eq!(ram.translate(0x4000), Some((0x1000_4000, 2 * MIB - 0x4000)));
        assert!(ram.is_hole(0x3fff) && !ram.is_hole(0x4000));
        assert_eq!(ram.mapped_bytes(0, None), 2 * MIB - 0x1000);
        assert_eq!(ram.mapped_bytes(0, Some(1)), 0);
        assert_eq!(ram.holes_in(0, Some(0)), 1);
        // Refilled with another host page: reached there, one page at a time.
        assert!(ram.map_page(0x3000, 0x5000_0000));
        assert!(!ram.map_page(0x3000, 0x5000_0000), "not a hole any more");
        assert!(!ram.map_page(0x9000, 0x5000_0000), "never a hole");
        assert_eq!(ram.translate(0x3010), Some((0x5000_0010, 0xff0)));
        assert_eq!(ram.translate(0x1000), Some((0x1000_1000, 0x2000)));
        assert_eq!(ram.backing(0x3000).map(|b| b.spa), Some(0x5000_0000));
        // Refilled with its own page: as built again.
        ram.unmap_page(0x3000);
        assert!(ram.map_page(0x3000, 0x1000_3000));
        assert_eq!(ram, self::ram());
    }

    fn plugged(gpa: u64, spa: u64) -> GuestBlock {
        GuestBlock {
            gpa,
            spa,
            size: BlockSize::Size2M,
            vnode: 1,
            node: 1,
        }
    }

    #[test]
    fn plugged_blocks_are_ram_until_unplugged_and_never_lend_pages() {
        let mut ram = ram();
        let region = 4096 * MIB;
        assert!(ram.plug(plugged(region + 2 * MIB, 0x9000_0000)));
        assert!(
            ram.plug(plugged(region, 0x9040_0000)),
            "below the first, in order"
        );
        assert!(!ram.plug(plugged(region + MIB, 0x9080_0000)), "overlaps");
        assert!(!ram.plug(plugged(0, 0x9080_0000)), "inside the RAM built");
        assert!(!ram.plug(plugged(u64::MAX - MIB, 0x9080_0000)), "wraps");
        assert_eq!(
            ram.plugged_blocks()
                .iter()
                .map(|b| b.gpa)
                .collect::<Vec<_>>(),
            vec![region, region + 2 * MIB]
        );
        assert_eq!(
            ram.translate(region + 0x10),
            Some((0x9040_0010, 2 * MIB - 0x10))
        );
        assert_eq!(ram.mapped_bytes(1, None), 6 * MIB);
        assert_eq!(ram.plugged_bytes(1), 4 * MIB);
        assert_eq!(ram.plugged_bytes(0), 0);
        assert!(ram.is_plugged(region + 4 * MIB - 1) && !ram.is_plugged(region + 4 * MIB));
        // A balloon or a deposit cannot take a page of them.
        assert_eq!(ram.backing(region), None);
        assert_eq!(ram.unmap_page(region), None);
        assert!(ram.host_ranges().any(|r| r == (0x9000_0000, 0x9020_0000)));
        assert_eq!(ram.unplug(region + MIB), None, "no block starts there");
        assert_eq!(ram.unplug(region), Some(plugged(region, 0x9040_0000)));
        assert_eq!(ram.translate(region), None);
        assert!(ram.unplug(region + 2 * MIB).is_some());
        assert_eq!(ram, self::ram());
    }

    #[test]
    fn host_ranges_leave_out_holes_and_add_refills() {
        let mut ram = ram();
        let ranges = |ram: &GuestRam| ram.host_ranges().collect::<alloc::vec::Vec<_>>();
        assert_eq!(
            ranges(&ram),
            vec![(0x1000_0000, 0x1020_0000), (0x8000_0000, 0x8020_0000)]
        );
        ram.unmap_page(0);
        ram.unmap_page(0x5000);
        ram.unmap_page(2 * MIB + 0x1f_f000);
        ram.map_page(0x5000, 0x1020_0000); // just past the first block's host range
        assert_eq!(
            ranges(&ram),
            vec![
                (0x1000_1000, 0x1000_5000),
                (0x1020_0000, 0x1020_1000),
                (0x1000_6000, 0x1020_0000),
                (0x8000_0000, 0x801f_f000)
            ]
        );
    }
}
