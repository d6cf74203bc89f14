//! Property tests of the frame allocator (`numavisor_policy::memory`): random NUMA layouts
//! (1–8 nodes, several ranges each, some above 4 GiB, unaligned edges, memoryless nodes) and
//! random sequences of allocations, frees and reservations, checked against a plain model after
//! every step: the ledger is exact, nothing is handed out twice, every block is aligned and on
//! its node, refused requests change nothing, and freeing everything restores the start.

use std::collections::BTreeMap;

use numavisor_policy::memory::{
    AllocError, BlockSize, FrameAllocator, NodeLedger, ReservedPiece, Usage, PAGE_SIZE,
};
use proptest::prelude::*;
use proptest::sample::Index;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

type Layout = Vec<Vec<(u64, u64)>>;

/// Ranges laid out left to right with random gaps, each given to a random node.
fn layout() -> impl Strategy<Value = Layout> {
    let gap = prop_oneof![Just(0u64), 0..16 * MIB, 0..2 * GIB];
    let len = prop_oneof![0..64 * KIB, 0..16 * MIB, 0..3 * GIB];
    let segments = prop::collection::vec((gap, len, 0..8usize), 0..12);
    (1..=8usize, 0..8 * GIB, segments).prop_map(|(nodes, base, segments)| {
        let mut layout = vec![Vec::new(); nodes];
        let mut at = base;
        for (gap, len, pick) in segments {
            at += gap;
            layout[pick % nodes].push((at, at + len));
            at += len;
        }
        layout
    })
}

#[derive(Clone, Debug)]
enum Op {
    On {
        node: Index,
        size: BlockSize,
        usage: Usage,
    },
    Near {
        order: Vec<Index>,
        size: BlockSize,
        usage: Usage,
    },
    Free {
        pick: Index,
    },
    BadFree {
        pick: Index,
        offset: u64,
        size: BlockSize,
    },
    Reserve {
        at: Index,
        len: u64,
        usage: Usage,
    },
    FreeReserved {
        pick: Index,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        4 => Just(BlockSize::Size4K),
        3 => Just(BlockSize::Size2M),
        1 => Just(BlockSize::Size1G)
    ];
    let usage = prop_oneof![
        Just(Usage::Hypervisor),
        Just(Usage::Guest),
        Just(Usage::Pool)
    ];
    prop_oneof![
        4 => (any::<Index>(), size.clone(), usage.clone())
            .prop_map(|(node, size, usage)| Op::On { node, size, usage }),
        4 => (prop::collection::vec(any::<Index>(), 1..6), size.clone(), usage.clone())
            .prop_map(|(order, size, usage)| Op::Near { order, size, usage }),
        4 => any::<Index>().prop_map(|pick| Op::Free { pick }),
        1 => (any::<Index>(), 0..4 * MIB, size)
            .prop_map(|(pick, offset, size)| Op::BadFree { pick, offset, size }),
        2 => (any::<Index>(), 0..8 * MIB, usage)
            .prop_map(|(at, len, usage)| Op::Reserve { at, len, usage }),
        1 => any::<Index>().prop_map(|pick| Op::FreeReserved { pick }),
    ]
}

/// What the allocator should hold, kept the plain way.
struct Model {
    /// Per node, the managed ranges: the input trimmed to pages, adjacent ones merged.
    managed: Layout,
    /// Everything taken: start → (end, node, usage). Blocks and reservation pieces alike.
    taken: BTreeMap<u64, (u64, usize, Usage)>,
    /// Live blocks: (address, size).
    blocks: Vec<(u64, BlockSize)>,
    /// Live reservations: the arguments they were made with, and their pieces.
    reservations: Vec<(u64, u64, Vec<ReservedPiece>)>,
}

impl Model {
    fn new(layout: &Layout) -> Self {
        let managed = layout
            .iter()
            .map(|ranges| {
                let mut out: Vec<(u64, u64)> = Vec::new();
                for &(s, e) in ranges {
                    let (s, e) = (s.next_multiple_of(PAGE_SIZE), e / PAGE_SIZE * PAGE_SIZE);
                    match out.last_mut() {
                        _ if s >= e => {}
                        Some(last) if last.1 == s => last.1 = e,
                        _ => out.push((s, e)),
                    }
                }
                out
            })
            .collect();
        Model {
            managed,
            taken: BTreeMap::new(),
            blocks: Vec::new(),
            reservations: Vec::new(),
        }
    }

    fn overlaps_taken(&self, start: u64, end: u64) -> bool {
        let before = self.taken.range(..=start).next_back();
        before.is_some_and(|(_, &(e, ..))| e > start)
            || self.taken.range(start..end).next().is_some()
    }

    fn inside_node(&self, node: usize, start: u64, end: u64) -> bool {
        self.managed[node]
            .iter()
            .any(|&(s, e)| s <= start && end <= e)
    }

    fn used(&self, node: usize, usage: Usage) -> u64 {
        self.taken
            .iter()
            .filter(|(_, &(_, n, u))| n == node && u == usage)
            .map(|(s, (e, ..))| e - s)
            .sum()
    }

    /// The managed pieces of `[start, end)` after rounding out to pages, as `reserve` takes them.
    fn pieces(&self, start: u64, end: u64) -> Vec<ReservedPiece> {
        let (start, end) = (
            start / PAGE_SIZE * PAGE_SIZE,
            end.next_multiple_of(PAGE_SIZE),
        );
        let mut pieces: Vec<ReservedPiece> = self
            .managed
            .iter()
            .enumerate()
            .flat_map(|(node, ranges)| {
                ranges.iter().filter_map(move |&(s, e)| {
                    let (s, e) = (s.max(start), e.min(end));
                    (s < e).then_some(ReservedPiece {
                        start: s,
                        end: e,
                        node,
                    })
                })
            })
            .collect();
        pieces.sort_by_key(|p| p.start);
        pieces
    }
}

/// Whether any free range holds an aligned block of `size`.
fn fits(free: &[(u64, u64)], size: BlockSize) -> bool {
    free.iter()
        .any(|&(s, e)| s.next_multiple_of(size.bytes()) + size.bytes() <= e)
}

type Snapshot = (Layout, Vec<NodeLedger>);

fn snapshot(fa: &FrameAllocator) -> Snapshot {
    (
        (0..fa.node_count())
            .map(|n| fa.free_ranges(n).collect())
            .collect(),
        fa.ledger(),
    )
}

/// The checks that hold after every step.
fn check(fa: &FrameAllocator, model: &Model) -> Result<(), TestCaseError> {
    for (node, ledger) in fa.ledger().into_iter().enumerate() {
        let free: Vec<(u64, u64)> = fa.free_ranges(node).collect();
        prop_assert!(ledger.is_balanced(), "{ledger}");
        prop_assert_eq!(ledger.node, node);
        prop_assert_eq!(
            ledger.usable,
            model.managed[node].iter().map(|(s, e)| e - s).sum::<u64>()
        );
        prop_assert_eq!(ledger.free, free.iter().map(|(s, e)| e - s).sum::<u64>());
        prop_assert_eq!(ledger.hypervisor, model.used(node, Usage::Hypervisor));
        prop_assert_eq!(ledger.guest, model.used(node, Usage::Guest));
        prop_assert_eq!(ledger.pools, model.used(node, Usage::Pool));
        for pair in free.windows(2) {
            prop_assert!(
                pair[0].1 < pair[1].0,
                "free ranges {:x?} touch or overlap",
                pair
            );
        }
        for &(s, e) in &free {
            prop_assert!(
                model.inside_node(node, s, e),
                "free {s:#x}..{e:#x} not on node {node}"
            );
            prop_assert!(
                !model.overlaps_taken(s, e),
                "free {s:#x}..{e:#x} is also taken"
            );
        }
    }
    Ok(())
}

/// Records a block the allocator handed out, after checking it.
fn record_block(
    model: &mut Model,
    addr: u64,
    node: usize,
    size: BlockSize,
    usage: Usage,
) -> Result<(), TestCaseError> {
    let end = addr + size.bytes();
    prop_assert_eq!(addr % size.bytes(), 0, "{} block at {:#x}", size, addr);
    prop_assert!(
        model.inside_node(node, addr, end),
        "{size} block at {addr:#x} not on {node}"
    );
    prop_assert!(
        !model.overlaps_taken(addr, end),
        "{size} block at {addr:#x} handed out twice"
    );
    model.taken.insert(addr, (end, node, usage));
    model.blocks.push((addr, size));
    Ok(())
}

fn step(fa: &mut FrameAllocator, model: &mut Model, op: Op) -> Result<(), TestCaseError> {
    let before = snapshot(fa);
    let nodes = fa.node_count();
    match op {
        Op::On { node, size, usage } => {
            let node = node.index(nodes);
            match fa.allocate_on(node, size, usage) {
                Ok(addr) => record_block(model, addr, node, size, usage)?,
                Err(err) => {
                    prop_assert!(!fits(&before.0[node], size), "spurious {err}");
                    let want = AllocError::OutOfMemory {
                        node,
                        size,
                        free_bytes: before.1[node].free,
                        free_ranges: before.0[node].len(),
                    };
                    prop_assert_eq!(err, want);
                    prop_assert_eq!(snapshot(fa), before);
                }
            }
        }
        Op::Near { order, size, usage } => {
            let order: Vec<usize> = order.iter().map(|i| i.index(nodes)).collect();
            let expected = order.iter().copied().find(|&n| fits(&before.0[n], size));
            match fa.allocate_near(&order, size, usage) {
                Ok((addr, node)) => {
                    prop_assert_eq!(Some(node), expected, "order {:?}", order);
                    record_block(model, addr, node, size, usage)?;
                }
                Err(err) => {
                    prop_assert_eq!(expected, None, "spurious {}", err);
                    let is_near =
                        matches!(err, AllocError::OutOfMemoryNear { home, .. } if home == order[0]);
                    prop_assert!(is_near, "{err:?}");
                    prop_assert_eq!(snapshot(fa), before);
                }
            }
        }
        Op::Free { pick } => {
            if !model.blocks.is_empty() {
                let (addr, size) = model.blocks.swap_remove(pick.index(model.blocks.len()));
                prop_assert_eq!(fa.free(addr, size), Ok(()));
                model.taken.remove(&addr);
                // A second free of the same block is refused.
                let after = snapshot(fa);
                prop_assert!(fa.free(addr, size).is_err());
                prop_assert_eq!(snapshot(fa), after);
            }
        }
        Op::BadFree { pick, offset, size } => {
            let (addr, size) = match model.blocks.get(pick.index(model.blocks.len().max(1))) {
                Some(&(addr, real)) if offset % 2 == 0 && real != size => (addr, size),
                Some(&(addr, _)) => (addr + offset / PAGE_SIZE * PAGE_SIZE + PAGE_SIZE, size),
                None => (offset, size),
            };
            if model.blocks.iter().any(|&(a, s)| a == addr && s == size) {
                return Ok(());
            }
            prop_assert!(
                fa.free(addr, size).is_err(),
                "bad free {size} at {addr:#x} accepted"
            );
            prop_assert_eq!(snapshot(fa), before);
        }
        Op::Reserve { at, len, usage } => {
            let lo = model
                .managed
                .iter()
                .flatten()
                .map(|r| r.0)
                .min()
                .unwrap_or(0);
            let hi = model
                .managed
                .iter()
                .flatten()
                .map(|r| r.1)
                .max()
                .unwrap_or(0);
            let span = (hi - lo + 8 * MIB) as usize;
            let start = (lo + at.index(span) as u64).saturating_sub(4 * MIB);
            let (end, pieces) = (start + len, model.pieces(start, start + len));
            let busy = pieces.iter().any(|p| model.overlaps_taken(p.start, p.end));
            match fa.reserve(start, end, usage) {
                Ok(r) => {
                    prop_assert!(!busy, "reserved memory in use");
                    prop_assert_eq!(&r.pieces, &if len == 0 { vec![] } else { pieces });
                    for p in &r.pieces {
                        model.taken.insert(p.start, (p.end, p.node, usage));
                    }
                    if !r.pieces.is_empty() {
                        model.reservations.push((start, end, r.pieces));
                    }
                }
                Err(err) => {
                    prop_assert!(busy, "spurious {err}");
                    prop_assert_eq!(snapshot(fa), before);
                }
            }
        }
        Op::FreeReserved { pick } => {
            if !model.reservations.is_empty() {
                let (start, end, pieces) = model
                    .reservations
                    .swap_remove(pick.index(model.reservations.len()));
                let r = fa
                    .free_reserved(start, end)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&r.pieces, &pieces);
                for p in pieces {
                    model.taken.remove(&p.start);
                }
            }
        }
    }
    check(fa, model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn allocator_matches_the_model(layout in layout(), ops in prop::collection::vec(op(), 1..80)) {
        let mut fa = FrameAllocator::new(&layout);
        let mut model = Model::new(&layout);
        let initial = snapshot(&fa);
        prop_assert_eq!(&initial.0, &model.managed);
        check(&fa, &model)?;
        for op in ops {
            step(&mut fa, &mut model, op)?;
        }
        for (addr, size) in std::mem::take(&mut model.blocks) {
            prop_assert_eq!(fa.free(addr, size), Ok(()));
        }
        for (start, end, _) in std::mem::take(&mut model.reservations) {
            prop_assert!(fa.free_reserved(start, end).is_ok());
        }
        prop_assert_eq!(snapshot(&fa), initial);
    }
}
