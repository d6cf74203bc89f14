//! What a partition costs in pool pages, and where its memory sits in guest-physical space.
//!
//! One model shared by the build-time layout check (`numavisor-layout`) and the hypervisor: a
//! layout is accepted only if each partition's pool holds at least [`minimum_pool_bytes`], and
//! the hypervisor draws exactly these pages from that pool when it builds the partition
//! (DESIGN.md, "Memory model": Pools). The SLAT count follows the 4-level x86-64 walk (AMD APM
//! vol. 2 §15.25.5 for NPT, Intel SDM vol. 3C §29.3.2 for EPT): one PML4 page, one PDPT page per
//! 512 GiB region touched, one PD page per 1 GiB region not mapped by a 1 GiB leaf, one PT page
//! per 2 MiB region not mapped by a larger leaf.
//!
//! The count is the *best case*: it assumes each range's host-physical backing is aligned like
//! its guest-physical addresses (the frame allocator hands out naturally aligned blocks, so this
//! holds when a node has aligned free memory). Backing that forces smaller leaves costs more
//! pages, and the hypervisor then refuses the partition with "insufficient memory" at boot.
//!
//! Hot-add (virtio-mem, `docs/layout.md`, "Dynamic Memory bounds"): a dynamic vnode whose
//! `memory_max` exceeds its `size` grows by `memory_max − size` into a hot-add region of its
//! own ([`hot_add_regions`]), above the partition's RAM and above 4 GiB. The minimum pool
//! ([`minimum_pool_bytes_for_vnodes`]) also covers the SLAT table pages of every hot-add
//! region ([`hot_add_table_pages`]), but the hypervisor does *not* draw those at build: it
//! maps plugged memory after boot, [`HOT_ADD_PLUG_BLOCK`] at a time, and takes the tables
//! from the pool then. The pool must only be big enough that plugging the whole region never
//! fails for want of tables. "Exactly these pages at build" holds for the rest.

use alloc::vec::Vec;

use crate::memory::{BlockSize, PAGE_SIZE};
use crate::slat;

/// Pages of VMCB (SVM) or VMCS (VMX) per vCPU.
pub const VMCB_PAGES_PER_VCPU: u64 = 1;
/// Pages of the I/O permission bitmap, one per partition (the SVM IOPM is 12 KiB; VMX needs
/// two 4 KiB bitmaps, which fit in the same budget).
pub const IO_BITMAP_PAGES: u64 = 3;
/// Pages of the MSR permission bitmap, one per partition (the SVM MSRPM is 8 KiB; the VMX MSR
/// bitmap is 4 KiB).
pub const MSR_BITMAP_PAGES: u64 = 2;

/// Start of the guest-physical MMIO hole (3 GiB): the I/O APIC (0xFEC0_0000) and local APIC
/// (0xFEE0_0000) live above it, and no guest RAM is placed in it.
pub const MMIO_HOLE_START: u64 = 3 << 30;
/// End (exclusive) of the guest-physical MMIO hole (4 GiB).
pub const MMIO_HOLE_END: u64 = 4 << 30;
/// The guest-physical address space a 4-level SLAT can map: 48 bits (256 TiB).
pub const GUEST_PHYSICAL_LIMIT: u64 = 1 << 48;

/// The unit a vnode grows by with hot-add (virtio-mem): 128 MiB, Linux's x86-64 memory block
/// (`memory_block_size_bytes()` on a machine below 64 GiB; `/sys/devices/system/memory/`).
/// Linux onlines memory a whole block at a time, so its virtio_mem driver can use all of a
/// region aligned to and a multiple of this; a vnode's growth (`memory_max − size`) must be a
/// multiple of it, and every hot-add region starts on it.
pub const HOT_ADD_BLOCK: u64 = 128 << 20;
/// The virtio-mem device block (VIRTIO 1.2 §5.15, `block_size`): 2 MiB, the unit the guest
/// plugs and unplugs. The SLAT maps plugged memory with 2 MiB leaves (4 KiB where the
/// partition's `max_page` is 4K), so a hot-add region costs at most one PD page per 1 GiB
/// region it touches.
pub const HOT_ADD_PLUG_BLOCK: u64 = 2 << 20;

/// The 4-level SLAT table pages needed to map `ranges` (`(gpa, len)` pairs that do not
/// overlap, in any order), each range mapped with leaves as large as `page` wherever its
/// guest-physical addresses are aligned to them: the SLAT builder's own count
/// ([`slat::table_pages_needed`]), except that a partition without memory needs none.
pub fn slat_table_pages(ranges: &[(u64, u64)], page: BlockSize) -> u64 {
    if ranges.iter().all(|&(_, len)| len == 0) {
        return 0;
    }
    slat::table_pages_needed(ranges, page)
}

/// The smallest pool, in bytes, that lets the hypervisor build a partition whose memory is
/// `ranges` (as for [`slat_table_pages`]) with `vcpus` vCPUs: SLAT tables, one VMCB/VMCS per
/// vCPU, and the I/O and MSR permission bitmaps. Saturates instead of overflowing.
pub fn minimum_pool_bytes(ranges: &[(u64, u64)], page: BlockSize, vcpus: u64) -> u64 {
    slat_table_pages(ranges, page)
        .saturating_add(vcpus.saturating_mul(VMCB_PAGES_PER_VCPU))
        .saturating_add(IO_BITMAP_PAGES + MSR_BITMAP_PAGES)
        .saturating_mul(PAGE_SIZE)
}

/// The table pages a balloon may need to split the SLAT leaves of a vnode of `size` bytes
/// that it shrinks to as little as `min` (`SlatBuilder::unmap_pages`): one page table per
/// 2 MiB region and one page directory per 1 GiB region it takes pages from, at most one
/// each per page it takes. The hypervisor deposits them into a dynamic partition's pool at
/// build, besides the layout's `pool`, so inflating never fails for want of tables.
pub fn balloon_split_pages(size: u64, min: u64) -> u64 {
    let pages = size.saturating_sub(min) / PAGE_SIZE;
    let regions = |bytes: u64| size.div_ceil(bytes).min(pages);
    regions(BlockSize::Size2M.bytes()) + regions(BlockSize::Size1G.bytes())
}

/// The page tables a vnode growing by `growth` bytes needs if every 2 MiB block hot-add plugs
/// is backed in 4 KiB pieces (the node's free memory in pieces, with no free 2 MiB block): one
/// per block. The hypervisor deposits them into a dynamic partition's pool at build, beside
/// the layout's `pool` and the balloon's split tables, so that a plug never waits for want of
/// them (0.2 % of the growth).
pub fn hot_add_piece_pages(growth: u64) -> u64 {
    growth.div_ceil(BlockSize::Size2M.bytes())
}

/// The guest-physical layout of a partition whose vNUMA nodes have `vnode_sizes` bytes: the
/// vnodes back to back from GPA 0 in order, skipping the MMIO hole
/// [[`MMIO_HOLE_START`], [`MMIO_HOLE_END`]). Returns each vnode's ranges `(gpa, len)`: one, or
/// two when the vnode straddles the hole, none for a size of 0.
///
/// Sizes are expected to be validated (4 KiB multiples, a total far below
/// [`GUEST_PHYSICAL_LIMIT`]); addresses saturate rather than wrap if they are not.
pub fn guest_physical_ranges(vnode_sizes: &[u64]) -> Vec<Vec<(u64, u64)>> {
    let mut next = 0u64;
    let mut layout = Vec::with_capacity(vnode_sizes.len());
    for &size in vnode_sizes {
        let mut ranges = Vec::new();
        let mut left = size;
        while left > 0 {
            if (MMIO_HOLE_START..MMIO_HOLE_END).contains(&next) {
                next = MMIO_HOLE_END;
            }
            // Below the hole a range stops at its start; above it, nothing stops it.
            let room = if next < MMIO_HOLE_START {
                MMIO_HOLE_START - next
            } else {
                u64::MAX - next
            };
            let len = left.min(room);
            if len == 0 {
                break; // Saturated at the top of the address space.
            }
            ranges.push((next, len));
            next += len;
            left -= len;
        }
        layout.push(ranges);
    }
    layout
}

/// All ranges of [`guest_physical_ranges`] in one list, in address order.
pub fn all_guest_physical_ranges(vnode_sizes: &[u64]) -> Vec<(u64, u64)> {
    guest_physical_ranges(vnode_sizes)
        .into_iter()
        .flatten()
        .collect()
}

/// Where each vnode's hot-add region lies: vnode `k` (of `vnode_sizes`, placed by
/// [`guest_physical_ranges`]) grows by `growths[k]` bytes (`memory_max − size`; a missing
/// entry is 0) into `Some((gpa, growths[k]))`, or `None` when it does not grow.
///
/// The regions lie above all of the partition's RAM and never below [`MMIO_HOLE_END`] (4 GiB,
/// so neither RAM nor the MMIO hole moves when a vnode grows): the first starts at the end of
/// RAM or at 4 GiB, whichever is higher, rounded up to [`HOT_ADD_BLOCK`]; each next one starts
/// where the one before ends, in vnode order. Growths are expected to be validated (multiples
/// of [`HOT_ADD_BLOCK`], so every region stays aligned); addresses saturate at `u64::MAX`
/// rather than wrap, which puts them beyond [`GUEST_PHYSICAL_LIMIT`].
pub fn hot_add_regions(vnode_sizes: &[u64], growths: &[u64]) -> Vec<Option<(u64, u64)>> {
    let ram_end = all_guest_physical_ranges(vnode_sizes)
        .iter()
        .map(|&(gpa, len)| gpa.saturating_add(len))
        .max()
        .unwrap_or(0);
    let mut next = ram_end
        .max(MMIO_HOLE_END)
        .checked_next_multiple_of(HOT_ADD_BLOCK)
        .unwrap_or(u64::MAX);
    (0..vnode_sizes.len())
        .map(|k| match growths.get(k).copied().unwrap_or(0) {
            0 => None,
            growth => {
                let region = (next, growth);
                next = next.saturating_add(growth);
                Some(region)
            }
        })
        .collect()
}

/// The largest SLAT leaf plugged hot-add memory is mapped with: [`HOT_ADD_PLUG_BLOCK`]'s
/// 2 MiB, or `page` if that is smaller.
pub fn hot_add_page(page: BlockSize) -> BlockSize {
    page.min(BlockSize::Size2M)
}

/// The SLAT table pages that mapping all of the hot-add `regions` (as [`hot_add_regions`]
/// gives them) adds to those of the partition's RAM `ram` (mapped with leaves up to `page`):
/// the regions mapped with leaves up to [`hot_add_page`]`(page)`, less the tables they share
/// with the RAM (the root, a PDPT, the PD of a 1 GiB region that RAM leaves partly used).
/// 0 when nothing grows. An upper bound for any part of the regions plugged in any order, so
/// enough for the pool; the hypervisor draws them when it plugs, not at build.
pub fn hot_add_table_pages(
    ram: &[(u64, u64)],
    regions: &[Option<(u64, u64)>],
    page: BlockSize,
) -> u64 {
    let hot_add: Vec<(u64, u64, BlockSize)> = regions
        .iter()
        .flatten()
        .filter(|&&(_, len)| len > 0)
        .map(|&(gpa, len)| (gpa, len, hot_add_page(page)))
        .collect();
    if hot_add.is_empty() {
        return 0;
    }
    let mut all: Vec<(u64, u64, BlockSize)> = ram
        .iter()
        .filter(|&&(_, len)| len > 0)
        .map(|&(gpa, len)| (gpa, len, page))
        .collect();
    all.extend(hot_add);
    slat::table_pages_needed_per_range(&all).saturating_sub(slat_table_pages(ram, page))
}

/// The smallest pool for a partition described the way a layout describes it: vnode sizes,
/// each vnode's growth by hot-add (`memory_max − size`, or 0; `&[]` for none), the largest
/// SLAT page, and the vCPU count: [`minimum_pool_bytes`] of its RAM, plus the
/// [`hot_add_table_pages`] of its hot-add regions, which the hypervisor draws only when it
/// plugs memory. What both the build-time check and the hypervisor use.
pub fn minimum_pool_bytes_for_vnodes(
    vnode_sizes: &[u64],
    growths: &[u64],
    page: BlockSize,
    vcpus: u64,
) -> u64 {
    let ram = all_guest_physical_ranges(vnode_sizes);
    let regions = hot_add_regions(vnode_sizes, growths);
    minimum_pool_bytes(&ram, page, vcpus)
        .saturating_add(hot_add_table_pages(&ram, &regions, page).saturating_mul(PAGE_SIZE))
}

#[cfg(test)]
mod tests {
    #[test]
    fn growth_in_pieces_takes_one_table_per_2_mib_block() {
        const MIB: u64 = 1 << 20;
        assert_eq!(hot_add_piece_pages(0), 0);
        assert_eq!(hot_add_piece_pages(512 * MIB), 256);
        assert_eq!(hot_add_piece_pages(2 * MIB + 4096), 2);
    }

    #[test]
    fn a_balloon_splits_at_most_one_table_per_region_and_per_page() {
        const MIB: u64 = 1 << 20;
        assert_eq!(balloon_split_pages(256 * MIB, 64 * MIB), 128 + 1);
        assert_eq!(balloon_split_pages(4 << 30, 0), 2048 + 4);
        assert_eq!(balloon_split_pages(256 * MIB, 256 * MIB), 0);
        assert_eq!(balloon_split_pages(256 * MIB, 256 * MIB - 4096), 2);
    }

    use super::*;
    use alloc::vec;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn one_gib_at_zero() {
        let r = [(0, GIB)];
        assert_eq!(slat_table_pages(&r, BlockSize::Size1G), 2); // PML4 + PDPT
        assert_eq!(slat_table_pages(&r, BlockSize::Size2M), 3); // + one PD
        assert_eq!(slat_table_pages(&r, BlockSize::Size4K), 3 + 512); // + 512 PTs
    }

    #[test]
    fn nothing_mapped_needs_no_tables() {
        assert_eq!(slat_table_pages(&[], BlockSize::Size2M), 0);
        assert_eq!(slat_table_pages(&[(0, 0)], BlockSize::Size4K), 0);
        // Only the bitmaps and the VMCB are left.
        assert_eq!(minimum_pool_bytes(&[], BlockSize::Size2M, 1), 6 * 4096);
    }

    #[test]
    fn small_ranges() {
        // 64 MiB at 0 with 2 MiB leaves: PML4, PDPT, PD; 4 KiB leaves: + 32 PTs.
        assert_eq!(slat_table_pages(&[(0, 64 * MIB)], BlockSize::Size2M), 3);
        assert_eq!(slat_table_pages(&[(0, 64 * MIB)], BlockSize::Size4K), 35);
        // 1G allowed but the range is smaller than 1 GiB: same as 2M.
        assert_eq!(slat_table_pages(&[(0, 64 * MIB)], BlockSize::Size1G), 3);
        // One 4 KiB page: one table per level.
        assert_eq!(slat_table_pages(&[(0, 4096)], BlockSize::Size1G), 4);
    }

    #[test]
    fn unaligned_edges_need_page_tables() {
        // [1 MiB, 5 MiB): partial 2 MiB regions 0 and 2, region 1 is a 2 MiB leaf.
        assert_eq!(
            slat_table_pages(&[(MIB, 4 * MIB)], BlockSize::Size2M),
            3 + 2
        );
        // [1 MiB, 1.5 MiB): inside one region, one PT.
        assert_eq!(
            slat_table_pages(&[(MIB, MIB / 2)], BlockSize::Size2M),
            3 + 1
        );
        // [0, 3 GiB + 2 MiB) with 1G leaves: 3 GiB leaves, then one PD for the tail.
        assert_eq!(
            slat_table_pages(&[(0, 3 * GIB + 2 * MIB)], BlockSize::Size1G),
            3
        );
    }

    #[test]
    fn shared_tables_count_once() {
        // Two vnodes meeting mid-2 MiB: the PT at the seam is shared, [2 MiB, 4 MiB) is a leaf.
        let r = [(0, MIB), (MIB, 3 * MIB)];
        assert_eq!(slat_table_pages(&r, BlockSize::Size2M), 3 + 1);
        // Order does not matter.
        let swapped = [(MIB, 3 * MIB), (0, MIB)];
        assert_eq!(slat_table_pages(&swapped, BlockSize::Size2M), 4);
        // Two 1 GiB vnodes with 1G leaves share the PDPT.
        assert_eq!(
            slat_table_pages(&[(0, GIB), (GIB, GIB)], BlockSize::Size1G),
            2
        );
    }

    #[test]
    fn large_ranges_span_pml4_entries() {
        // 1 TiB from 0 with 1G leaves: PML4 + 2 PDPTs.
        assert_eq!(slat_table_pages(&[(0, 1 << 40)], BlockSize::Size1G), 3);
        // With 2M leaves: + 1024 PDs.
        assert_eq!(
            slat_table_pages(&[(0, 1 << 40)], BlockSize::Size2M),
            3 + 1024
        );
    }

    #[test]
    fn pool_minimum_adds_vcpus_and_bitmaps() {
        let r = [(0, 64 * MIB)];
        let pages = 3 + 2 * VMCB_PAGES_PER_VCPU + IO_BITMAP_PAGES + MSR_BITMAP_PAGES;
        assert_eq!(minimum_pool_bytes(&r, BlockSize::Size2M, 2), pages * 4096);
        assert_eq!(
            minimum_pool_bytes(&[(0, u64::MAX)], BlockSize::Size4K, u64::MAX),
            u64::MAX
        );
    }

    #[test]
    fn guest_layout_skips_the_hole() {
        assert_eq!(
            guest_physical_ranges(&[64 * MIB, 64 * MIB]),
            vec![vec![(0, 64 * MIB)], vec![(64 * MIB, 64 * MIB)]]
        );
        // 2 GiB + 2 GiB: the second straddles the hole.
        assert_eq!(
            guest_physical_ranges(&[2 * GIB, 2 * GIB]),
            vec![vec![(0, 2 * GIB)], vec![(2 * GIB, GIB), (4 * GIB, GIB)]]
        );
        // Exactly 3 GiB, then the next vnode starts at 4 GiB.
        assert_eq!(
            guest_physical_ranges(&[3 * GIB, 0, MIB]),
            vec![vec![(0, 3 * GIB)], vec![], vec![(4 * GIB, MIB)]]
        );
        assert_eq!(
            all_guest_physical_ranges(&[4 * GIB]),
            vec![(0, 3 * GIB), (4 * GIB, GIB)]
        );
    }

    #[test]
    fn partition_minimum_through_the_layout() {
        // 4 GiB in one vnode with 1G leaves: PML4 + PDPT (the hole leaves 1 GiB gaps).
        assert_eq!(
            minimum_pool_bytes_for_vnodes(&[4 * GIB], &[], BlockSize::Size1G, 1),
            (2 + 1 + 5) * 4096
        );
        // The default layout's partition: 64 MiB, 2M leaves, 1 vCPU = 9 pages.
        assert_eq!(
            minimum_pool_bytes_for_vnodes(&[64 * MIB], &[0], BlockSize::Size2M, 1),
            9 * 4096
        );
    }

    #[test]
    fn hot_add_regions_start_above_ram_and_4_gib_back_to_back() {
        // RAM below 4 GiB: the first region starts at 4 GiB.
        assert_eq!(
            hot_add_regions(&[192 * MIB, 192 * MIB], &[0, 512 * MIB]),
            vec![None, Some((4 * GIB, 512 * MIB))]
        );
        // Back to back, in vnode order, a vnode that does not grow taking no room.
        assert_eq!(
            hot_add_regions(&[64 * MIB; 3], &[128 * MIB, 0, 256 * MIB]),
            vec![
                Some((4 * GIB, 128 * MIB)),
                None,
                Some((4 * GIB + 128 * MIB, 256 * MIB))
            ]
        );
        // RAM past the hole: after its end, rounded up to the hot-add block.
        assert_eq!(
            hot_add_regions(&[4 * GIB], &[128 * MIB]),
            vec![Some((5 * GIB, 128 * MIB))]
        );
        assert_eq!(
            hot_add_regions(&[4 * GIB + MIB], &[128 * MIB]),
            vec![Some((5 * GIB + HOT_ADD_BLOCK, 128 * MIB))]
        );
        // Missing growths are 0; no vnodes, no regions.
        assert_eq!(
            hot_add_regions(&[64 * MIB, 64 * MIB], &[]),
            vec![None, None]
        );
        assert_eq!(hot_add_regions(&[], &[]), vec![]);
    }

    #[test]
    fn hot_add_regions_saturate() {
        let regions = hot_add_regions(&[u64::MAX, 0], &[HOT_ADD_BLOCK, HOT_ADD_BLOCK]);
        assert_eq!(
            regions,
            vec![
                Some((u64::MAX, HOT_ADD_BLOCK)),
                Some((u64::MAX, HOT_ADD_BLOCK))
            ]
        );
        let regions = hot_add_regions(&[64 * MIB, 64 * MIB], &[u64::MAX, HOT_ADD_BLOCK]);
        assert_eq!(regions[1], Some((u64::MAX, HOT_ADD_BLOCK)));
    }

    #[test]
    fn hot_add_blocks_nest() {
        assert!(HOT_ADD_BLOCK.is_multiple_of(HOT_ADD_PLUG_BLOCK));
        assert!(HOT_ADD_PLUG_BLOCK.is_multiple_of(PAGE_SIZE));
        assert!(MMIO_HOLE_END.is_multiple_of(HOT_ADD_BLOCK));
        assert_eq!(hot_add_page(BlockSize::Size1G), BlockSize::Size2M);
        assert_eq!(hot_add_page(BlockSize::Size2M), BlockSize::Size2M);
        assert_eq!(hot_add_page(BlockSize::Size4K), BlockSize::Size4K);
    }

    /// The hot-add tables of `sizes` growing by `growths`.
    fn hot_add_tables(sizes: &[u64], growths: &[u64], page: BlockSize) -> u64 {
        let ram = all_guest_physical_ranges(sizes);
        hot_add_table_pages(&ram, &hot_add_regions(sizes, growths), page)
    }

    #[test]
    fn hot_add_tables_count_what_the_ram_does_not_already_have() {
        use BlockSize::*;
        // Nothing grows: nothing more.
        assert_eq!(hot_add_tables(&[64 * MIB], &[0], Size2M), 0);
        assert_eq!(hot_add_tables(&[64 * MIB], &[], Size4K), 0);
        // 512 MiB at 4 GiB with 2 MiB leaves: the RAM's root and PDPT, one PD of its own.
        assert_eq!(
            hot_add_tables(&[192 * MIB, 192 * MIB], &[0, 512 * MIB], Size2M),
            1
        );
        // 2 GiB from 4 GiB: two 1 GiB regions, two PDs.
        assert_eq!(hot_add_tables(&[64 * MIB], &[2 * GIB], Size2M), 2);
        // 1 GiB leaves allowed, but plugged memory is mapped with 2 MiB leaves: still a PD,
        // even for a whole aligned GiB.
        assert_eq!(hot_add_tables(&[4 * GIB], &[GIB], Size1G), 1);
        // The RAM's tail [5 GiB, 5 GiB + 128 MiB) already has the PD of 1 GiB region 5: a
        // region after it within that GiB needs nothing more, one past it a PD.
        assert_eq!(
            hot_add_tables(&[4 * GIB + 128 * MIB], &[256 * MIB], Size1G),
            0
        );
        assert_eq!(hot_add_tables(&[4 * GIB + 128 * MIB], &[GIB], Size1G), 1);
        // 4 KiB leaves: the PD and a PT per 2 MiB.
        assert_eq!(hot_add_tables(&[64 * MIB], &[128 * MIB], Size4K), 1 + 64);
        // Past 512 GiB: a PDPT of its own too.
        assert_eq!(
            hot_add_table_pages(&[(0, 64 * MIB)], &[Some((512 * GIB, 128 * MIB))], Size2M),
            2
        );
    }

    #[test]
    fn hot_add_tables_are_an_upper_bound_for_any_part_plugged() {
        // Mapping only some plug blocks never needs more than the whole region's tables.
        let ram = all_guest_physical_ranges(&[192 * MIB]);
        let region = (4 * GIB + 768 * MIB, 512 * MIB); // crosses into 1 GiB region 5
        let whole = hot_add_table_pages(&ram, &[Some(region)], BlockSize::Size2M);
        assert_eq!(whole, 2);
        for block in (region.0..region.0 + region.1).step_by(HOT_ADD_PLUG_BLOCK as usize * 16) {
            let part = hot_add_table_pages(
                &ram,
                &[Some((block, HOT_ADD_PLUG_BLOCK))],
                BlockSize::Size2M,
            );
            assert!(part <= whole);
        }
    }

    #[test]
    fn partition_minimum_covers_hot_add_tables() {
        // layouts/hot-add.toml: 2 × 192 MiB, vnode 1 grows by 512 MiB, 2M leaves, 2 vCPUs:
        // 3 SLAT pages for the RAM + 1 for the hot-add region + 2 VMCBs + 5 bitmap pages.
        assert_eq!(
            minimum_pool_bytes_for_vnodes(
                &[192 * MIB, 192 * MIB],
                &[0, 512 * MIB],
                BlockSize::Size2M,
                2
            ),
            11 * 4096
        );
        // Without growth, as before.
        assert_eq!(
            minimum_pool_bytes_for_vnodes(&[192 * MIB, 192 * MIB], &[], BlockSize::Size2M, 2),
            10 * 4096
        );
        assert_eq!(
            minimum_pool_bytes_for_vnodes(&[u64::MAX], &[u64::MAX], BlockSize::Size4K, u64::MAX),
            u64::MAX
        );
        // Growth beyond the address space adds no tables (the SLAT cannot map it) and does
        // not overflow.
        assert_eq!(
            minimum_pool_bytes_for_vnodes(&[64 * MIB], &[u64::MAX], BlockSize::Size2M, 1),
            minimum_pool_bytes_for_vnodes(&[64 * MIB], &[], BlockSize::Size2M, 1)
                + 4096
                    * slat::table_pages_needed(
                        &[(4 * GIB, GUEST_PHYSICAL_LIMIT - 4 * GIB)],
                        BlockSize::Size2M
                    )
                - 4096 * 2
        );
    }
}
