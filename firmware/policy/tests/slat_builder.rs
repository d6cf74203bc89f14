//! The SLAT builder on the host: exact mappings, maximal page sizes, table pages drawn from
//! the pool and counted, refusal when the pool runs dry.

use numavisor_policy::memory::{BlockSize, FrameAllocator, PAGE_SIZE};
use numavisor_policy::partition::pool::PartitionPool;
use numavisor_policy::slat::{
    table_pages_needed, Ept, HeapTableMemory, Npt, Permissions, SlatBuilder, SlatError, SlatFormat,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const RWX: Permissions = Permissions::READ_WRITE_EXECUTE;

fn pool(pages: u64) -> (FrameAllocator, PartitionPool) {
    let mut frames = FrameAllocator::new(&[vec![(0, 64 * MIB)]]);
    let mut pool = PartitionPool::new("t", 0);
    pool.deposit(&mut frames, pages * PAGE_SIZE).unwrap();
    (frames, pool)
}

fn build<F: SlatFormat>(
    max: BlockSize,
    maps: &[(u64, u64, u64)],
) -> (SlatBuilder<F>, HeapTableMemory, PartitionPool) {
    let (_frames, mut pool) = pool(4096);
    let mut memory = HeapTableMemory::new();
    let mut slat = SlatBuilder::<F>::new(&mut memory, &mut pool, max).unwrap();
    for &(gpa, spa, len) in maps {
        slat.map(&mut memory, &mut pool, gpa, spa, len, RWX)
            .unwrap();
    }
    (slat, memory, pool)
}

#[test]
fn one_aligned_gigabyte_is_one_1g_leaf_in_two_table_pages() {
    let (slat, memory, pool) = build::<Npt>(BlockSize::Size1G, &[(0, 5 * GIB, GIB)]);
    let stats = slat.stats();
    assert_eq!((stats.pages_4k, stats.pages_2m, stats.pages_1g), (0, 0, 1));
    assert_eq!(stats.table_bytes, 2 * PAGE_SIZE, "PML4 + PDPT");
    assert_eq!(pool.withdrawn_pages() as u64 * PAGE_SIZE, stats.table_bytes);
    assert_eq!(table_pages_needed(&[(0, GIB)], BlockSize::Size1G), 2);
    let t = slat.translate(&memory, 0x1234_5678).unwrap();
    assert_eq!((t.spa, t.size), (5 * GIB + 0x1234_5678, BlockSize::Size1G));
}

#[test]
fn page_sizes_follow_alignment_and_the_limit() {
    // 2 MiB-aligned SPA for a 1 GiB-aligned GPA: 2 MiB leaves only.
    let (slat, _, _) = build::<Npt>(BlockSize::Size1G, &[(0, 5 * GIB + 2 * MIB, GIB)]);
    assert_eq!((slat.stats().pages_2m, slat.stats().pages_1g), (512, 0));
    // The limit wins over alignment.
    let (slat, _, _) = build::<Ept>(BlockSize::Size2M, &[(0, 0, GIB)]);
    assert_eq!(
        (slat.stats().pages_2m, slat.stats().table_bytes),
        (512, 3 * PAGE_SIZE)
    );
    // Unaligned head and tail: 4 KiB, then 2 MiB, then 4 KiB.
    let (slat, memory, _) = build::<Npt>(
        BlockSize::Size2M,
        &[(2 * MIB - 8192, 4 * MIB - 8192, 4 * MIB)],
    );
    let s = slat.stats();
    assert_eq!((s.pages_4k, s.pages_2m), (2 + 510, 1));
    for offset in (0..4 * MIB).step_by(4096) {
        let t = slat.translate(&memory, 2 * MIB - 8192 + offset).unwrap();
        assert_eq!(t.spa, 4 * MIB - 8192 + offset);
        assert_eq!(t.perms, RWX);
    }
    assert!(slat.translate(&memory, 64 * MIB).is_none());
}

#[test]
fn overlaps_and_a_dry_pool_are_refused_without_changes() {
    let (_frames, mut small) = pool(2);
    let mut memory = HeapTableMemory::new();
    let mut slat = SlatBuilder::<Npt>::new(&mut memory, &mut small, BlockSize::Size2M).unwrap();
    let err = slat
        .map(&mut memory, &mut small, 0, 0, 4 * MIB, RWX)
        .unwrap_err();
    assert!(matches!(err, SlatError::Pool(_)), "{err}");
    assert_eq!(slat.stats().table_bytes, PAGE_SIZE);
    let (mut slat, mut memory, mut pool) = build::<Npt>(BlockSize::Size2M, &[(0, 0, 4 * MIB)]);
    let before = slat.stats();
    assert!(slat
        .map(&mut memory, &mut pool, 2 * MIB, 8 * MIB, 4 * MIB, RWX)
        .is_err());
    assert_eq!(slat.stats(), before);
}

#[test]
fn table_bytes_per_gib() {
    for (limit, expected_pages) in [
        (BlockSize::Size4K, 2 + 1 + 512),
        (BlockSize::Size2M, 3),
        (BlockSize::Size1G, 2),
    ] {
        let (slat, _, _) = build::<Npt>(limit, &[(0, 0, GIB)]);
        assert_eq!(
            slat.stats().table_bytes,
            expected_pages * PAGE_SIZE,
            "{limit:?}"
        );
        println!(
            "{limit:?}: {} KiB of tables per GiB",
            slat.stats().table_bytes / 1024
        );
    }
}
