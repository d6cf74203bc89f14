//! Unit tests of the SLAT builder: leaf sizes, table counts, both formats, refusals.

use alloc::string::ToString;
use alloc::vec;

use super::*;
use crate::memory::{FrameAllocator, PAGE_SIZE};
use crate::partition::pool::{PartitionPool, PoolError};
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
        SlatError::Pool(PoolError::InsufficientMemory {
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
        Err(SlatError::Pool(PoolError::InsufficientMemory { .. }))
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
