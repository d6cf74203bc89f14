//! Unit tests of the frame allocator: alignment, node choice, memoryless nodes, exhaustion,
//! coalescing, reservations and refused frees. Property tests live in `tests/memory_props.rs`.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::*;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn free_ranges(fa: &FrameAllocator) -> Vec<Vec<(u64, u64)>> {
    (0..fa.node_count())
        .map(|n| fa.free_ranges(n).collect())
        .collect()
}

fn assert_balanced(fa: &FrameAllocator) {
    for (node, l) in fa.ledger().iter().enumerate() {
        assert!(l.is_balanced(), "{l}");
        assert_eq!(
            l.free,
            fa.free_ranges(node).map(|(s, e)| e - s).sum::<u64>(),
            "{l}"
        );
    }
}

#[test]
fn new_trims_inward_and_merges() {
    let fa = FrameAllocator::new(&[
        vec![
            (0x1234, 0x5678),
            (0x5800, 0x5fff),
            (0x10000, 0x20000),
            (0x20000, 0x30001),
        ],
        vec![],
    ]);
    assert_eq!(fa.node_count(), 2);
    // The sub-page range vanishes; adjacent ranges of one node merge.
    assert_eq!(
        free_ranges(&fa),
        [vec![(0x2000, 0x5000), (0x10000, 0x30000)], vec![]]
    );
    assert_eq!(fa.ledger()[0].usable, 0x3000 + 0x20000);
    assert_eq!(
        fa.ledger()[1],
        NodeLedger {
            node: 1,
            ..Default::default()
        }
    );
    assert_balanced(&fa);
}

#[test]
fn overlapping_input_never_gives_a_byte_twice() {
    let fa = FrameAllocator::new(&[vec![(0, 8 * MIB)], vec![(4 * MIB, 12 * MIB)]]);
    assert_eq!(
        free_ranges(&fa),
        [vec![(0, 8 * MIB)], vec![(8 * MIB, 12 * MIB)]]
    );
}

#[test]
fn blocks_are_aligned_to_their_size() {
    // Unaligned edges, above 4 GiB.
    let (start, end) = (4 * GIB + 0x1234, 7 * GIB + 3 * MIB + 5);
    let mut fa = FrameAllocator::new(&[vec![(start, end)]]);
    for size in [
        BlockSize::Size1G,
        BlockSize::Size2M,
        BlockSize::Size4K,
        BlockSize::Size1G,
    ] {
        let addr = fa.allocate_on(0, size, Usage::Guest).unwrap();
        assert_eq!(addr % size.bytes(), 0, "{size} at {addr:#x}");
        assert!(
            addr >= start && addr + size.bytes() <= end,
            "{size} at {addr:#x}"
        );
    }
    assert_balanced(&fa);
}

#[test]
fn on_stays_on_the_node_and_near_follows_the_order() {
    let mut fa = FrameAllocator::new(&[
        vec![(0, 2 * MIB)],
        vec![(2 * MIB, 4 * MIB)],
        vec![(4 * MIB, 8 * MIB)],
    ]);
    assert_eq!(
        fa.allocate_near(&[0, 2, 1], BlockSize::Size2M, Usage::Guest),
        Ok((0, 0))
    );
    // Node 0 is full: on refuses, near falls back to node 2 before node 1, as told.
    assert!(matches!(
        fa.allocate_on(0, BlockSize::Size2M, Usage::Guest),
        Err(AllocError::OutOfMemory { node: 0, .. })
    ));
    let (addr, node) = fa
        .allocate_near(&[0, 2, 1], BlockSize::Size2M, Usage::Guest)
        .unwrap();
    assert_eq!(node, 2);
    assert_eq!(fa.node_of(addr), Some(2));
    assert_eq!(
        fa.allocate_near(&[1, 0, 2], BlockSize::Size2M, Usage::Pool),
        Ok((2 * MIB, 1))
    );
    assert_eq!(fa.ledger()[1].pools, 2 * MIB);
    assert_balanced(&fa);
}

#[test]
fn near_refuses_unknown_nodes_and_empty_orders() {
    let mut fa = FrameAllocator::new(&[vec![(0, MIB)]]);
    let size = BlockSize::Size4K;
    assert_eq!(
        fa.allocate_near(&[0, 3], size, Usage::Guest),
        Err(AllocError::NoSuchNode {
            node: 3,
            node_count: 1
        })
    );
    assert_eq!(
        fa.allocate_near(&[], size, Usage::Guest),
        Err(AllocError::EmptyOrder { size })
    );
    assert_eq!(
        fa.allocate_on(1, size, Usage::Guest),
        Err(AllocError::NoSuchNode {
            node: 1,
            node_count: 1
        })
    );
    assert_eq!(fa.ledger()[0].free, MIB);
}

#[test]
fn memoryless_node() {
    let mut fa = FrameAllocator::new(&[vec![(0, 4 * MIB)], vec![]]);
    assert_eq!(fa.largest_free_block(1), None);
    assert_eq!(fa.largest_free_block(0), Some(BlockSize::Size2M));
    assert_eq!(
        fa.allocate_on(1, BlockSize::Size4K, Usage::Guest),
        Err(AllocError::OutOfMemory {
            node: 1,
            size: BlockSize::Size4K,
            free_bytes: 0,
            free_ranges: 0
        })
    );
    let (_, node) = fa
        .allocate_near(&[1, 0], BlockSize::Size4K, Usage::Guest)
        .unwrap();
    assert_eq!(node, 0);
    let err = fa
        .allocate_near(&[1, 1], BlockSize::Size1G, Usage::Guest)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no free 1 GiB block on node 1 or the 0 other node(s) allowed as fallback \
         (free on those: 0 bytes in 0 ranges)"
    );
}

#[test]
fn exhaustion_names_the_node() {
    let mut fa = FrameAllocator::new(&[vec![(0, MIB)], vec![(MIB, MIB + 64 * KIB)]]);
    let mut got = Vec::new();
    while let Ok(addr) = fa.allocate_on(1, BlockSize::Size4K, Usage::Hypervisor) {
        got.push(addr);
    }
    assert_eq!(got.len(), 16);
    let err = fa
        .allocate_on(1, BlockSize::Size4K, Usage::Hypervisor)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "node 1 has no free 4 KiB block (free: 0 bytes in 0 ranges)"
    );
    let err = fa
        .allocate_on(0, BlockSize::Size1G, Usage::Guest)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "node 0 has no free 1 GiB block (free: 1 MiB in 1 range)"
    );
    assert_eq!(fa.ledger()[1].hypervisor, 64 * KIB);
    assert_balanced(&fa);
}

#[test]
fn freeing_everything_coalesces_back_to_the_start() {
    let layout = [
        vec![(0x1000, 5 * MIB + 0x3000), (8 * MIB, 3 * GIB)],
        vec![(4 * GIB, 20 * GIB)],
    ];
    let mut fa = FrameAllocator::new(&layout);
    let (initial_free, initial_ledger) = (free_ranges(&fa), fa.ledger());
    let mut live = Vec::new();
    for (i, size) in BlockSize::ALL.iter().cycle().take(40).enumerate() {
        if let Ok((addr, _)) = fa.allocate_near(&[i % 2, 1 - i % 2], *size, Usage::Guest) {
            live.push((addr, *size));
        }
    }
    assert!(live.len() > 30, "only {} blocks", live.len());
    // Free in a scrambled order so merges happen on both sides.
    live.sort_by_key(|&(addr, _)| addr.rotate_left(17));
    for (addr, size) in live {
        fa.free(addr, size).unwrap();
        assert_balanced(&fa);
    }
    assert_eq!(free_ranges(&fa), initial_free);
    assert_eq!(fa.ledger(), initial_ledger);
}

#[test]
fn small_blocks_do_not_break_up_large_ranges() {
    let mut fa = FrameAllocator::new(&[vec![(0, 2 * GIB), (2 * GIB + 4 * MIB, 2 * GIB + 5 * MIB)]]);
    for _ in 0..256 {
        let addr = fa.allocate_on(0, BlockSize::Size4K, Usage::Pool).unwrap();
        assert!(
            addr >= 2 * GIB,
            "4 KiB block at {addr:#x} came from the large range"
        );
    }
    assert_eq!(fa.free_ranges(0).next(), Some((0, 2 * GIB)));
    // 2 MiB blocks come off an edge of the large range without splitting it.
    fa.allocate_on(0, BlockSize::Size2M, Usage::Guest).unwrap();
    assert_eq!(fa.free_ranges(0).count(), 1);
    assert_eq!(fa.largest_free_block(0), Some(BlockSize::Size1G));
}

#[test]
fn reserve_across_a_node_boundary_and_outside_managed_memory() {
    let mut fa = FrameAllocator::new(&[vec![(0, 16 * MIB)], vec![(16 * MIB, 32 * MIB)]]);
    // Starts unaligned in node 0, crosses into node 1, runs on into the hole above 32 MiB.
    let r = fa
        .reserve(15 * MIB + 123, 40 * MIB, Usage::Hypervisor)
        .unwrap();
    assert_eq!((r.start, r.end), (15 * MIB, 40 * MIB));
    assert_eq!(r.bytes_per_node(2), [MIB, 16 * MIB]);
    assert_eq!(r.total_bytes(), 17 * MIB);
    assert_eq!(fa.ledger()[0].hypervisor, MIB);
    assert_eq!(fa.ledger()[1].hypervisor, 16 * MIB);
    assert_eq!(fa.ledger()[1].free, 0);
    assert_balanced(&fa);
    assert_eq!(fa.reservations().count(), 1);

    // Entirely outside managed memory: accepted, counts nowhere, not recorded.
    let outside = fa.reserve(64 * MIB, 65 * MIB, Usage::Hypervisor).unwrap();
    assert!(outside.pieces.is_empty());
    assert_eq!(
        fa.free_reserved(64 * MIB, 65 * MIB),
        Err(FreeError::NotReserved {
            start: 64 * MIB,
            end: 65 * MIB
        })
    );

    // Giving it back takes the same arguments and restores everything.
    assert_eq!(fa.free_reserved(15 * MIB + 123, 40 * MIB), Ok(r));
    assert_eq!(
        free_ranges(&fa),
        [vec![(0, 16 * MIB)], vec![(16 * MIB, 32 * MIB)]]
    );
    assert_eq!(fa.ledger()[0].hypervisor + fa.ledger()[1].hypervisor, 0);
}

#[test]
fn reserve_refuses_memory_in_use() {
    let mut fa = FrameAllocator::new(&[vec![(0, 8 * MIB)]]);
    let block = fa.allocate_on(0, BlockSize::Size2M, Usage::Guest).unwrap();
    let before = (free_ranges(&fa), fa.ledger());
    assert_eq!(
        fa.reserve(block - MIB, block + MIB, Usage::Hypervisor),
        Err(ReserveError::NotFree {
            start: block - MIB,
            end: block + MIB,
            node: 0
        })
    );
    assert_eq!(
        fa.reserve(5, 4, Usage::Hypervisor),
        Err(ReserveError::InvalidRange { start: 5, end: 4 })
    );
    let free = fa.free_ranges(0).next().unwrap();
    fa.reserve(free.0, free.0 + 4096, Usage::Pool).unwrap();
    assert!(
        fa.reserve(free.0, free.0 + 4096, Usage::Pool).is_err(),
        "reserved twice"
    );
    fa.free_reserved(free.0, free.0 + 4096).unwrap();
    assert_eq!((free_ranges(&fa), fa.ledger()), before);
}

#[test]
fn bad_frees_are_refused_and_change_nothing() {
    let mut fa = FrameAllocator::new(&[vec![(0, 64 * MIB)]]);
    let big = fa.allocate_on(0, BlockSize::Size2M, Usage::Guest).unwrap();
    let small = fa.allocate_on(0, BlockSize::Size4K, Usage::Guest).unwrap();
    let free_addr = fa.free_ranges(0).next().unwrap().0;
    let before = (free_ranges(&fa), fa.ledger());
    let s4k = BlockSize::Size4K;
    let cases = [
        (
            big + 4096,
            s4k,
            FreeError::NotAllocated {
                addr: big + 4096,
                size: s4k,
            },
        ),
        (
            free_addr,
            s4k,
            FreeError::NotAllocated {
                addr: free_addr,
                size: s4k,
            },
        ),
        (
            small + 1,
            s4k,
            FreeError::NotAllocated {
                addr: small + 1,
                size: s4k,
            },
        ),
        (
            big,
            s4k,
            FreeError::WrongSize {
                addr: big,
                size: s4k,
                allocated: 2 * MIB,
            },
        ),
    ];
    for (addr, size, want) in cases {
        assert_eq!(fa.free(addr, size), Err(want));
        assert_eq!((free_ranges(&fa), fa.ledger()), before);
    }
    fa.free(small, s4k).unwrap();
    assert_eq!(
        fa.free(small, s4k),
        Err(FreeError::NotAllocated {
            addr: small,
            size: s4k
        })
    );
    assert_eq!(
        FreeError::WrongSize {
            addr: big,
            size: s4k,
            allocated: 2 * MIB
        }
        .to_string(),
        alloc::format!("cannot free a 4 KiB block at {big:#x}: the block there is 2 MiB")
    );
}

#[test]
fn node_of_finds_the_owner() {
    let fa = FrameAllocator::new(&[vec![(0, MIB), (4 * GIB, 5 * GIB)], vec![(MIB, 2 * MIB)]]);
    assert_eq!(fa.node_of(0), Some(0));
    assert_eq!(fa.node_of(MIB - 1), Some(0));
    assert_eq!(fa.node_of(MIB), Some(1));
    assert_eq!(fa.node_of(2 * MIB), None);
    assert_eq!(fa.node_of(4 * GIB + 5), Some(0));
    assert_eq!(
        fa.usable_ranges(0).collect::<Vec<_>>(),
        [(0, MIB), (4 * GIB, 5 * GIB)]
    );
}

#[test]
fn eight_large_nodes_cost_a_few_ranges() {
    let layout: Vec<Vec<(u64, u64)>> = (0..8u64)
        .map(|n| {
            vec![
                (n * 64 * GIB + 0x123, n * 64 * GIB + 32 * GIB),
                (n * 64 * GIB + 33 * GIB, (n + 1) * 64 * GIB),
            ]
        })
        .collect();
    let fa = FrameAllocator::new(&layout);
    for l in fa.ledger() {
        assert_eq!(l.usable, 63 * GIB - 4096);
        assert_eq!(fa.free_ranges(l.node).count(), 2);
    }
}

#[test]
fn a_carved_block_moves_single_pages_and_frees_what_is_left() {
    let mut fa = FrameAllocator::new(&[vec![(0, 2 * GIB)]]);
    let block = fa.allocate_on(0, BlockSize::Size1G, Usage::Guest).unwrap();
    let page = block + 3 * MIB + 8 * KIB;
    fa.carve(page + 5).unwrap();
    // Carving changes no ledger column; the page is now a block of its own.
    assert_eq!(fa.ledger()[0].guest, GIB);
    fa.retag(page, Usage::Pool).unwrap();
    assert_eq!(
        (fa.ledger()[0].guest, fa.ledger()[0].pools),
        (GIB - 4 * KIB, 4 * KIB)
    );
    assert_balanced(&fa);
    // The block's owner frees all but the page: the ranges on either side of it.
    fa.free_range(block, page).unwrap();
    fa.free_range(page + 4 * KIB, block + GIB).unwrap();
    assert_eq!(fa.ledger()[0].guest, 0);
    // A range that a block reaches past, or that has a gap, is refused and changes nothing.
    assert_eq!(
        fa.free_range(page, page + 8 * KIB),
        Err(FreeError::NotTiled {
            start: page,
            end: page + 8 * KIB
        })
    );
    fa.free(page, BlockSize::Size4K).unwrap();
    assert_eq!(fa.ledger()[0].free, 2 * GIB);
    assert_balanced(&fa);
    assert!(fa.carve(page).is_err());
    assert!(fa.retag(page, Usage::Guest).is_err());
}

#[test]
fn host_pages_are_owned_handles_from_and_back_to_free_memory() {
    let mut fa = FrameAllocator::new(&[vec![(0, 2 * MIB)], vec![(4 * MIB, 6 * MIB)]]);
    let page = fa.allocate_page_on(1, Usage::Hypervisor).unwrap();
    assert_eq!(fa.node_of(page.address()), Some(1));
    assert_eq!(fa.ledger()[1].hypervisor, 4 * KIB);
    // Node 0 first, then node 1.
    let (near, node) = fa.allocate_page_near(&[0, 1], Usage::Guest).unwrap();
    assert_eq!(node, 0);
    assert_balanced(&fa);
    fa.free_page(page).unwrap();
    fa.free_page(near).unwrap();
    assert_eq!(
        (fa.ledger()[0].free, fa.ledger()[1].free),
        (2 * MIB, 2 * MIB)
    );
    assert!(fa.allocate_page_on(2, Usage::Guest).is_err());
}
