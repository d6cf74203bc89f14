//! The `ram_test` report: write, then verify, an address-dependent pattern over the usable RAM
//! (type 1) in the memory map, except the guest image (code, page tables, heap, stack), the
//! boot structures and the legacy VGA/BIOS hole 0xA0000–0xFFFFF (RAM in QEMU's map, but not
//! writable RAM on a PC).
//!
//! Sparse on purpose: every 8-byte word of the first and last 4 KiB of each piece, and one word
//! per 64-byte cache line in between — under QEMU's TCG a full pass over a GiB takes minutes,
//! and one word per line still catches a missing, aliased or read-only page. All writes happen
//! before any verification, so two addresses backed by the same memory show up as errors.
//! Accesses are inline assembly: physical address 0 is RAM here, not a null pointer.

use alloc::vec::Vec;

use crate::console::report;
use crate::start_info::{MemRange, RAM};

const PAGE: u64 = 4096;
const LINE: u64 = 64;
const LEGACY_HOLE: (u64, u64) = (0xA_0000, 0x10_0000);

fn pattern(address: u64) -> u64 {
    (address ^ 0x5A5A_5A5A_5A5A_5A5A).rotate_left(((address >> 3) % 64) as u32)
}

/// Call `visit` with each tested word address of `[start, end)` (both 8-byte aligned).
fn for_each_word(start: u64, end: u64, mut visit: impl FnMut(u64)) {
    let head_end = end.min(start + PAGE);
    let tail_start = end.saturating_sub(PAGE).max(head_end);
    (start..head_end).step_by(8).for_each(&mut visit);
    let mut line = head_end.next_multiple_of(LINE);
    while line + 8 <= tail_start {
        visit(line);
        line += LINE;
    }
    (tail_start..end).step_by(8).for_each(visit);
}

/// The RAM pieces to test: type-1 ranges minus `excluded` (rounded out to pages).
pub(crate) fn pieces(map: &[MemRange], excluded: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut holes: Vec<(u64, u64)> = excluded
        .iter()
        .chain([&LEGACY_HOLE])
        .map(|&(s, e)| (s / PAGE * PAGE, e.next_multiple_of(PAGE)))
        .collect();
    holes.sort_unstable();
    let mut pieces = Vec::new();
    for range in map.iter().filter(|r| r.kind == RAM) {
        let (mut at, end) = (range.base.next_multiple_of(8), range.end() / 8 * 8);
        for &(hole_start, hole_end) in &holes {
            if hole_end <= at || hole_start >= end {
                continue;
            }
            if hole_start > at {
                pieces.push((at, hole_start));
            }
            at = at.max(hole_end);
        }
        if at < end {
            pieces.push((at, end));
        }
    }
    pieces
}

/// Run the test and print the report; `false` on any mismatch.
pub fn report_ram_test(map: &[MemRange], excluded: &[(u64, u64)]) -> bool {
    let pieces = pieces(map, excluded);
    for &(start, end) in &pieces {
        for_each_word(start, end, |address| {
            // SAFETY: `address` is 8-byte aligned, identity mapped, type-1 RAM that neither
            // the guest image nor a boot structure occupies: nothing else uses it.
            unsafe {
                core::arch::asm!("mov [{}], {}", in(reg) address, in(reg) pattern(address),
                    options(nostack, preserves_flags));
            }
        });
    }
    let (mut words, mut errors, mut first_error) = (0u64, 0u64, None);
    for &(start, end) in &pieces {
        for_each_word(start, end, |address| {
            let found: u64;
            // SAFETY: as for the write above.
            unsafe {
                core::arch::asm!("mov {}, [{}]", out(reg) found, in(reg) address,
                    options(nostack, preserves_flags, readonly));
            }
            words += 1;
            if found != pattern(address) {
                errors += 1;
                first_error.get_or_insert((address, pattern(address), found));
            }
        });
    }
    let bytes: u64 = pieces.iter().map(|(start, end)| end - start).sum();
    match first_error {
        None => report!(
            "{{\"event\":\"ram_test\",\"bytes\":{bytes},\"words\":{words},\"errors\":0,\"first_error\":null}}"
        ),
        Some((address, expected, found)) => report!(
            "{{\"event\":\"ram_test\",\"bytes\":{bytes},\"words\":{words},\"errors\":{errors},\"first_error\":{{\"address\":{address},\"expected\":{expected},\"found\":{found}}}}}"
        ),
    }
    errors == 0
}
