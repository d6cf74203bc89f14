//! Unit tests of the SLAT builder: leaf sizes, table counts, both formats, refusals.

use alloc::string::ToString;
use alloc::vec;

use super::*;
use crate::memory::{FrameAllocator, PAGE_SIZE};
use crate::partition::pool::PartitionPool;
use BlockSize::*;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const RWX: Permissions = Permissions::READ_WRITE_EXECUTE;

/// A pool of `pages` pages on a 64 MiB node, and empty table memory.
fn setup(pages: u64) -> (FrameAllocator, PartitionPool, HeapTableMemory) {
    let mut frames = FrameAllocator::new(&[vec![(0x100_0000, 0x500_0000)]]);
    let mut pool = PartitionPool::new("vm", 0);
    pool.deposit(&mut frames, pages * PAGE_SIZE).unwrap();
    (frames, pool, HeapTableMemory::new())
}

#[test]
fn three_gib_with_1g_leaves_takes_two_tables() {
    let (_frames, mut pool, mut memory) = setup(8);
    let mut slat = SlatBuilder::<Npt>::new(&mut memory, &mut pool, Size1G).unwrap();
    slat.map(&mut memory, &mut pool, GIB, 5 * GIB, 3 * GIB, RWX)
        .unwrap();
    let stats = slat.stats();
    assert_eq!((stats.pages_1g, stats.pages_2m, stats.pages_4k), (3, 0, 0));
    assert_eq!(stats.table_bytes, 2 * PAGE_SIZE); // PML4 + PDPT
    assert_eq!(pool.balance_bytes(), 8 * PAGE_SIZE - stats.table_bytes);
    assert_eq!(memory.page_count(), 2);
    for gpa in [GIB, 2 * GIB - 1, 2 * GIB, 4 * GIB - 8] {
        let t = slat.translate(&memory, gpa).unwrap();
        assert_eq!((t.spa, t.size, t.perms), (gpa + 4 * GIB, Size1G, RWX));
    }
    assert_eq!(slat.translate(&memory, GIB - 1), None);
    assert_eq!(slat.translate(&memory, 4 * GIB), None);
    assert_eq!(table_pages_needed(&[(GIB, 3 * GIB)], Size1G), 2);
}

/// The figures in the module documentation, from the builder itself.
#[test]
fn table_bytes_per_gib() {
    let expect = [
        (Size4K, 2060 * KIB, 8216 * KIB),
        (Size2M, 12 * KIB, 24 * KIB),
    ];
    let expect = expect.into_iter().chain([(Size1G, 8 * KIB, 8 * KIB)]);
    for (max, one_gib, four_gib) in expect {
        for (ram, bytes) in [(GIB, one_gib), (4 * GIB, four_gib)] {
            let (_frames, mut pool, mut memory) = setup(4096);
            let mut slat = SlatBuilder::<Ept>::new(&mut memory, &mut pool, max).unwrap();
            slat.map(&mut memory, &mut pool, 0, 8 * GIB, ram, RWX)
                .unwrap();
            let table_bytes = slat.stats().table_bytes;
            std::println!(
                "SLAT tables for {} GiB with {max} leaves: {} KiB ({} KiB per GiB)",
                ram / GIB,
                table_bytes / KIB,
                table_bytes / KIB / (ram / GIB)
            );
            assert_eq!(table_bytes, bytes, "{max}, {ram:#x}");
            assert_eq!(slat.stats().mapped_bytes(), ram);
            assert_eq!(
                table_pages_needed(&[(0, ram)], max) * PAGE_SIZE,
                table_bytes
            );
        }
    }
}

#[test]
fn leaves_follow_the_common_alignment_of_gpa_and_spa() {
    let (_frames, mut pool, mut memory) = setup(64);
    let mut slat = SlatBuilder::<Npt>::new(&mut memory, &mut pool, Size1G).unwrap();
    // GPA 1 GiB-aligned, SPA only 2 MiB-aligned: 2 MiB leaves.
    slat.map(&mut memory, &mut pool, GIB, 2 * MIB, GIB, RWX)
        .unwrap();
    assert_eq!(slat.stats().pages_2m, 512);
    // SPA 4 KiB-aligned only: 4 KiB leaves.
    slat.map(&mut memory, &mut pool, 4 * GIB, 0x3000, 4 * MIB, RWX)
        .unwrap();
    assert_eq!(slat.stats().pages_4k, 1024);
    let t = slat.translate(&memory, 4 * GIB + 0x1234).unwrap();
    assert_eq!((t.spa, t.size), (0x4234, Size4K));
    // PML4, PDPT, PD for the first GiB; PD + 2 PTs for the second range.
    assert_eq!(slat.stats().table_bytes, 6 * PAGE_SIZE);
    // max_page caps the leaves even when 1 GiB would fit.
    let mut capped = SlatBuilder::<Npt>::new(&mut memory, &mut pool, Size2M).unwrap();
    capped.map(&mut memory, &mut pool, 0, 0, GIB, RWX).unwrap();
    assert_eq!(capped.stats().pages_2m, 512);
}

#[test]
fn a_small_pool_fails_with_insufficient_memory_and_changes_nothing() {
    let (_frames, mut pool, mut memory) = setup(3);
    let mut slat = SlatBuilder::<Npt>::new(&mut memory, &mut pool, Size2M).unwrap();
    // [0, 4 MiB + 4 KiB) needs PDPT, PD and a PT: 3 pages, 2 left.
    let err = slat
        .map(&mut memory, &mut pool, 0, 0, 4 * MIB + PAGE_SIZE, RWX)
        .unwrap_err();
    assert_eq!(
        err,
        SlatError::Pool(OutOfTablePages {
            partition: "vm".to_string(),
            needed_pages: 3,
            balance_pages: 2
        })
    );
    assert_eq!(
        err.to_string(),
        "cannot build the SLAT tables: partition \"vm\": insufficient memory in its pool: \
         needs 3 pages, balance 2 pages (deposit more with `pool` in the layout)"
    );
    assert_eq!(pool.balance_pages(), 2);
    assert_eq!(slat.stats().table_bytes, PAGE_SIZE);
    assert_eq!(slat.translate(&memory, 0), None);
    // Without the odd page it fits.
    slat.map(&mut memory, &mut pool, 0, 0, 4 * MIB, RWX)
        .unwrap();
    assert_eq!(pool.balance_pages(), 0);
    // No root page at all.
    let mut empty = PartitionPool::new("empty", 0);
    assert!(matches!(
        SlatBuilder::<Ept>::new(&mut memory, &mut empty, Size1G),
        Err(SlatError::Pool(OutOfTablePages { .. }))
    ));
}

#[test]
fn overlapping_mappings_are_refused_whole() {
    let (_frames, mut pool, mut memory) = setup(16);
    let mut slat = SlatBuilder::<Ept>::new(&mut memory, &mut pool, Size1G).unwrap();
    slat.map(&mut memory, &mut pool, 2 * MIB, 0, 2 * MIB, RWX)
        .unwrap();
    slat.map(&mut memory, &mut pool, 8 * MIB, 0, PAGE_SIZE, RWX)
        .unwrap();
    let (stats, balance) = (slat.stats(), pool.balance_pages());
    // Inside the 2 MiB leaf.
    assert_eq!(
        slat.map(&mut memory, &mut pool, 3 * MIB, 0, PAGE_SIZE, RWX),
        Err(SlatError::AlreadyMapped {
            gpa: 3 * MIB,
            size: Size4K
        })
    );
    // A 1 GiB leaf over both, and a range whose tail overlaps: nothing of the head is written.
    assert!(slat.map(&mut memory, &mut pool, 0, 0, GIB, RWX).is_err());
    let err = slat
        .map(&mut memory, &mut pool, 6 * MIB, 0, 4 * MIB, RWX)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot map the 2 MiB page at guest-physical 0x800000: it overlaps an earlier mapping"
    );
    assert_eq!(slat.translate(&memory, 6 * MIB), None);
    assert_eq!((slat.stats(), pool.balance_pages()), (stats, balance));
}

#[test]
fn bad_arguments_are_refused() {
    let (_frames, mut pool, mut memory) = setup(8);
    let mut slat = SlatBuilder::<Npt>::new(&mut memory, &mut pool, Size1G).unwrap();
    let mut map = |gpa, spa, len, perms| slat.map(&mut memory, &mut pool, gpa, spa, len, perms);
    assert!(matches!(
        map(0x800, 0, PAGE_SIZE, RWX),
        Err(SlatError::Unaligned { .. })
    ));
    assert!(matches!(
        map(0, 0, 100, RWX),
        Err(SlatError::Unaligned { .. })
    ));
    assert!(matches!(
        map(GPA_LIMIT - PAGE_SIZE, 0, 2 * PAGE_SIZE, RWX),
        Err(SlatError::AddressTooLarge { .. })
    ));
    assert!(matches!(
        map(u64::MAX - 0xfff, 0, PAGE_SIZE, RWX),
        Err(SlatError::AddressTooLarge { .. })
    ));
    assert!(matches!(
        map(0, SPA_LIMIT, PAGE_SIZE, RWX),
        Err(SlatError::HostAddressTooLarge { .. })
    ));
    let execute_only = Permissions {
        read: false,
        write: false,
        execute: true,
    };
    assert_eq!(
        map(0, 0, PAGE_SIZE, execute_only).unwrap_err().to_string(),
        "NPT cannot grant exactly --x access (NPT always grants read; EPT refuses write \
         without read)"
    );
    assert_eq!(map(0, 0, 0, RWX), Ok(()));
    assert_eq!(map(GPA_LIMIT - PAGE_SIZE, 0, PAGE_SIZE, RWX), Ok(()));
    assert_eq!(slat.stats().pages_4k, 1);
}

/// Every table entry above a leaf grants everything; in NPT every entry has P, R/W and U/S.
#[test]
fn table_entries_in_both_formats() {
    fn check<F: SlatFormat>(low_bits: u64, root_pointer_bits: u64) {
        let (_frames, mut pool, mut memory) = setup(8);
        let mut slat = SlatBuilder::<F>::new(&mut memory, &mut pool, Size1G).unwrap();
        let perms = Permissions::READ_EXECUTE;
        slat.map(&mut memory, &mut pool, GIB, 0x4000_0000, PAGE_SIZE, perms)
            .unwrap();
        assert_eq!(slat.root_pointer(), slat.root() | root_pointer_bits);
        let mut table = slat.root();
        for level in (2..=4).rev() {
            let shift = 12 + 9 * (level - 1);
            let entry = memory.read(table, ((GIB >> shift) % 512) as usize);
            assert_eq!(entry & !ADDRESS_MASK, low_bits, "{} level {level}", F::NAME);
            table = entry & ADDRESS_MASK;
        }
        let t = slat.translate(&memory, GIB + 8).unwrap();
        assert_eq!((t.spa, t.size, t.perms), (0x4000_0008, Size4K, perms));
    }
    check::<Npt>(0b111, 0);
    check::<Ept>(0b111, 0x1e);
}

#[test]
fn unmapping_a_page_splits_the_leaves_above_it_and_only_it_stops_mapping() {
    for max in [Size1G, Size2M, Size4K] {
        let (_frames, mut pool, mut memory) = setup(4096);
        let mut slat = SlatBuilder::<Ept>::new(&mut memory, &mut pool, max).unwrap();
        slat.map(&mut memory, &mut pool, 0, 4 * GIB, 2 * GIB, RWX)
            .unwrap();
        let before = slat.stats();
        let (a, b) = (GIB + 6 * MIB + 12 * KIB, GIB + 6 * MIB + 16 * KIB);
        let balance = pool.balance_pages();
        let spas = slat.unmap_pages(&mut memory, &mut pool, &[a, b]).unwrap();
        assert_eq!(spas, vec![a + 4 * GIB, b + 4 * GIB]);
        let tables = match max {
            Size1G => 2, // the 1 GiB leaf into 2 MiB ones, one of those into 4 KiB ones
            Size2M => 1,
            Size4K => 0,
        };
        assert_eq!(balance - pool.balance_pages(), tables, "{max}");
        let after = slat.stats();
        assert_eq!(
            after.table_bytes,
            before.table_bytes + tables as u64 * PAGE_SIZE
        );
        assert_eq!(
            after.mapped_bytes(),
            before.mapped_bytes() - 2 * PAGE_SIZE,
            "{max}"
        );
        for gpa in [a, b + 100] {
            assert_eq!(slat.translate(&memory, gpa), None, "{max}");
        }
        // Every neighbour keeps its host page and permissions.
        for gpa in [0, a - 1, b + 4 * KIB, GIB, GIB + 2 * MIB, 2 * GIB - 8] {
            let t = slat.translate(&memory, gpa).unwrap();
            assert_eq!((t.spa, t.perms), (gpa + 4 * GIB, RWX), "{max} {gpa:#x}");
        }
        // Unmapped pages can be mapped again, at another host page, with no new table.
        let balance = pool.balance_pages();
        slat.map(&mut memory, &mut pool, a, 0x30_0000, PAGE_SIZE, RWX)
            .unwrap();
        assert_eq!(pool.balance_pages(), balance);
        assert_eq!(slat.translate(&memory, a + 8).unwrap().spa, 0x30_0008);
        // A reopened builder carries on from the same tables and figures.
        let mut reopened = SlatBuilder::<Ept>::open(slat.root(), max, slat.stats());
        assert_eq!(
            reopened.unmap_pages(&mut memory, &mut pool, &[a]).unwrap(),
            vec![0x30_0000]
        );
    }
}

#[test]
fn a_range_unmapped_whole_clears_its_leaves_and_maps_again_without_tables() {
    for max in [Size1G, Size2M, Size4K] {
        let (_frames, mut pool, mut memory) = setup(64);
        let mut slat = SlatBuilder::<Npt>::new(&mut memory, &mut pool, max).unwrap();
        // Two blocks of 2 MiB above 4 GiB, like plugged memory.
        let region = 4 * GIB;
        for (i, spa) in [(0, 0x4000_0000), (1, 0x5000_0000)] {
            slat.map(
                &mut memory,
                &mut pool,
                region + i * 2 * MIB,
                spa,
                2 * MIB,
                RWX,
            )
            .unwrap();
        }
        let mapped = slat.stats();
        let tables = memory.page_count();
        slat.unmap_range(&mut memory, region, 2 * MIB).unwrap();
        assert_eq!(slat.translate(&memory, region + 8), None, "{max}");
        assert_eq!(
            slat.translate(&memory, region + 2 * MIB).unwrap().spa,
            0x5000_0000
        );
        assert_eq!(slat.stats().mapped_bytes(), mapped.mapped_bytes() - 2 * MIB);
        // Mapped again elsewhere: the tables left in place serve it.
        let balance = pool.balance_pages();
        slat.map(&mut memory, &mut pool, region, 0x6000_0000, 2 * MIB, RWX)
            .unwrap();
        assert_eq!(pool.balance_pages(), balance, "{max}");
        assert_eq!(memory.page_count(), tables);
        assert_eq!(slat.stats(), mapped);
    }
}

/// A 2 MiB block mapped where an unmap of 4 KiB leaves left an empty page table (memory
/// plugged in 4 KiB pieces, then unplugged) takes 512 leaves of 4 KiB in that table rather
/// than being refused, and needs no table page; a table that still maps a page is an
/// overlap as before; the same for a 1 GiB map over an emptied page directory.
#[test]
fn a_large_leaf_over_an_emptied_table_is_mapped_in_the_next_size_down() {
    let (_frames, mut pool, mut memory) = setup(64);
    let mut slat = SlatBuilder::<Npt>::new(&mut memory, &mut pool, Size1G).unwrap();
    let region = 4 * GIB;
    // Two 4 KiB pieces, then both unmapped whole: their page table stays, empty.
    for (i, spa) in [(0, 0x4000_0000), (1, 0x4000_3000)] {
        slat.map(
            &mut memory,
            &mut pool,
            region + i * PAGE_SIZE,
            spa,
            PAGE_SIZE,
            RWX,
        )
        .unwrap();
    }
    slat.unmap_range(&mut memory, region, 2 * PAGE_SIZE)
        .unwrap();
    let (balance, tables) = (pool.balance_pages(), memory.page_count());
    slat.map(&mut memory, &mut pool, region, 0x6000_0000, 2 * MIB, RWX)
        .unwrap();
    assert_eq!(
        (pool.balance_pages(), memory.page_count()),
        (balance, tables)
    );
    assert_eq!(slat.stats().pages_4k, 512);
    assert_eq!(slat.stats().pages_2m, 0);
    for offset in [0, PAGE_SIZE, 2 * MIB - 8] {
        let t = slat.translate(&memory, region + offset).unwrap();
        assert_eq!((t.spa, t.size), (0x6000_0000 + offset, Size4K));
    }
    // Unmapped whole and mapped again: the same.
    slat.unmap_range(&mut memory, region, 2 * MIB).unwrap();
    slat.map(&mut memory, &mut pool, region, 0x7000_0000, 2 * MIB, RWX)
        .unwrap();
    assert_eq!(
        slat.translate(&memory, region + 8).unwrap().spa,
        0x7000_0000 + 8
    );
    // A table that still maps a page: the 2 MiB map over it overlaps.
    slat.unmap_range(&mut memory, region + PAGE_SIZE, 2 * MIB - PAGE_SIZE)
        .unwrap();
    assert_eq!(
        slat.map(&mut memory, &mut pool, region, 0x6000_0000, 2 * MIB, RWX),
        Err(SlatError::AlreadyMapped {
            gpa: region,
            size: Size2M
        })
    );
    // The next 2 MiB region never held a table: a 2 MiB leaf.
    slat.map(
        &mut memory,
        &mut pool,
        region + 2 * MIB,
        0x6000_0000,
        2 * MIB,
        RWX,
    )
    .unwrap();
    assert_eq!(
        slat.translate(&memory, region + 2 * MIB).unwrap().size,
        Size2M
    );
    // 1 GiB over a page directory whose 2 MiB leaves were all unmapped: 512 leaves of 2 MiB.
    let gib = 8 * GIB;
    slat.map(&mut memory, &mut pool, gib, 2 * GIB, 2 * MIB, RWX)
        .unwrap();
    slat.unmap_range(&mut memory, gib, 2 * MIB).unwrap();
    let balance = pool.balance_pages();
    slat.map(&mut memory, &mut pool, gib, 3 * GIB, GIB, RWX)
        .unwrap();
    assert_eq!(pool.balance_pages(), balance);
    let t = slat.translate(&memory, gib + GIB - 8).unwrap();
    assert_eq!((t.spa, t.size), (4 * GIB - 8, Size2M));
}

#[test]
fn a_refused_whole_unmap_changes_nothing() {
    let (_frames, mut pool, mut memory) = setup(8);
    let mut slat = SlatBuilder::<Ept>::new(&mut memory, &mut pool, Size2M).unwrap();
    slat.map(&mut memory, &mut pool, 0, GIB, 4 * MIB, RWX)
        .unwrap();
    let stats = slat.stats();
    for (gpa, len, error) in [
        (
            0x1000,
            0x1800,
            SlatError::Unaligned {
                gpa: 0x1000,
                spa: 0,
                len: 0x1800,
            },
        ),
        (
            MIB,
            2 * MIB,
            SlatError::LeafStraddles {
                gpa: 0,
                size: Size2M,
            },
        ),
        (2 * MIB, 4 * MIB, SlatError::NotMapped { gpa: 4 * MIB }),
        (
            !0xFFF_u64,
            PAGE_SIZE,
            SlatError::AddressTooLarge {
                gpa: !0xFFF_u64,
                len: PAGE_SIZE,
            },
        ),
    ] {
        assert_eq!(slat.unmap_range(&mut memory, gpa, len), Err(error));
    }
    assert_eq!(slat.stats(), stats);
    assert_eq!(slat.translate(&memory, 3 * MIB).unwrap().spa, GIB + 3 * MIB);
}

#[test]
fn a_refused_unmap_changes_nothing() {
    let (_frames, mut pool, mut memory) = setup(3);
    let mut slat = SlatBuilder::<Npt>::new(&mut memory, &mut pool, Size1G).unwrap();
    slat.map(&mut memory, &mut pool, 0, GIB, 2 * GIB, RWX)
        .unwrap();
    let stats = slat.stats();
    let pages = memory.page_count();
    for (gpas, error) in [
        (
            vec![0x1000, 0x1001],
            SlatError::Unaligned {
                gpa: 0x1001,
                spa: 0,
                len: PAGE_SIZE,
            },
        ),
        (vec![0x1000, 0x1000], SlatError::NotMapped { gpa: 0x1000 }),
        (vec![0x1000, 2 * GIB], SlatError::NotMapped { gpa: 2 * GIB }),
        (vec![!0xFFF_u64], SlatError::NotMapped { gpa: !0xFFF_u64 }),
    ] {
        assert_eq!(slat.unmap_pages(&mut memory, &mut pool, &gpas), Err(error));
    }
    // Two 1 GiB leaves to split take four tables; the pool has one page left.
    let refused = slat.unmap_pages(&mut memory, &mut pool, &[0x1000, GIB]);
    assert!(matches!(
        refused,
        Err(SlatError::Pool(OutOfTablePages { .. }))
    ));
    assert_eq!((slat.stats(), memory.page_count()), (stats, pages));
    assert_eq!(slat.translate(&memory, 0x1000).unwrap().spa, GIB + 0x1000);
}
