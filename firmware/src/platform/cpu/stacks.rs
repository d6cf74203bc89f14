//! How deep the application processors' stacks have been: each is painted with a pattern
//! before its CPU starts, and the deepest word no longer holding it is the high-water mark.
//!
//! The identity map uses 2 MiB pages, so a stack has no guard page: an overflow would write
//! silently into whatever lies below it. The mark is reported (`all_stopped`) so that every
//! test boot holds the deepest stack to a margin below its size.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The pattern a painted stack word holds ("nv_stack", little-endian).
const PAINT: u64 = u64::from_le_bytes(*b"nv_stack");
/// The stacks watched (one per AP; the hypervisor starts at most this many).
const MAX_STACKS: usize = 512;

static BASES: [AtomicU64; MAX_STACKS] = [const { AtomicU64::new(0) }; MAX_STACKS];
static BYTES: AtomicU64 = AtomicU64::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Paints the stack at `base` (`bytes` long, identity-mapped, not yet in use) and watches it.
/// Every watched stack has the same size; more than [`MAX_STACKS`] are painted, not watched.
pub fn paint(base: u64, bytes: u64) {
    // SAFETY: the caller reserved `base..base + bytes` for this stack and no CPU runs on it
    // yet; the identity map covers every RAM frame.
    unsafe {
        core::slice::from_raw_parts_mut(base as *mut u64, (bytes / 8) as usize).fill(PAINT);
    }
    BYTES.store(bytes, Ordering::Relaxed);
    let index = COUNT.fetch_add(1, Ordering::Relaxed);
    if let Some(slot) = BASES.get(index) {
        slot.store(base, Ordering::Release);
    }
}

/// Bytes used at the deepest point of the stack at `base`: from the first word that no
/// longer holds the paint up to its top.
fn peak_of(base: u64, bytes: u64) -> u64 {
    let words = bytes / 8;
    let untouched = (0..words)
        .take_while(|&word| {
            // SAFETY: `base..base + bytes` is a stack painted by `paint`, identity-mapped and
            // never freed; reading a word its CPU may be writing is a plain racy read of an
            // aligned u64, which only makes the mark a little stale.
            unsafe { ((base + word * 8) as *const u64).read_volatile() == PAINT }
        })
        .count() as u64;
    (words - untouched) * 8
}

/// The deepest any watched stack has been, and the stacks' size; `None` with no AP.
pub fn peak() -> Option<(u64, u64)> {
    let bytes = BYTES.load(Ordering::Relaxed);
    let count = COUNT.load(Ordering::Relaxed).min(MAX_STACKS);
    let deepest = BASES[..count]
        .iter()
        .map(|base| peak_of(base.load(Ordering::Acquire), bytes))
        .max()?;
    Some((deepest, bytes))
}
