//! The hypervisor heap: a fixed arena inside the image (`.noinit`), managed by `talc`.
//!
//! The heap holds the policy core's data (topology, allocator metadata, page tables above
//! 4 GiB); it is part of the image range and so accounted as hypervisor-reserved.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, Ordering};

use talc::{ClaimOnOom, Span, Talc, Talck};

/// Heap size: generous for topology and allocator metadata on large machines.
pub const HEAP_BYTES: usize = 2 * 1024 * 1024;

#[repr(C, align(4096))]
struct Arena([u8; HEAP_BYTES]);

#[unsafe(link_section = ".noinit.heap")]
static mut ARENA: Arena = Arena([0; HEAP_BYTES]);

// SAFETY: the arena is a static used by nothing but this allocator.
static ALLOCATOR: Talck<spin::Mutex<()>, ClaimOnOom> = Talc::new(unsafe {
    ClaimOnOom::new(Span::from_array(
        core::ptr::addr_of_mut!(ARENA).cast::<[u8; HEAP_BYTES]>(),
    ))
})
.lock();

/// Allocations (and reallocations) since start, on every CPU: the exit profile
/// (`profile=exits`) counts those made during VM exit passes, which should be none.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The heap as Rust's global allocator: `talc`, counting what it is asked for.
struct CountingHeap;

#[global_allocator]
static HEAP: CountingHeap = CountingHeap;

// SAFETY: every call is forwarded unchanged to `talc`'s allocator, which upholds the
// contract; the counter changes nothing about the memory handed out.
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `GlobalAlloc::alloc`'s, passed on.
        unsafe { ALLOCATOR.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { ALLOCATOR.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout`, as the caller promises.
        unsafe { ALLOCATOR.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, with `new_size` as `GlobalAlloc::realloc` requires.
        unsafe { ALLOCATOR.realloc(ptr, layout, new_size) }
    }
}

/// Allocations and reallocations the heap has served since start, on every CPU.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Adds `[start, start + len)` to the heap: memory the frame allocator handed out for the
/// hypervisor (Dynamic Memory's bookkeeping grows with the pages its balloons move). False
/// if the allocator refused it.
///
/// # Safety
///
/// The range must be identity mapped, writable, and used by nothing else, now or later.
pub unsafe fn grow(start: u64, len: u64) -> bool {
    let span = Span::from_base_size(start as *mut u8, len as usize);
    // SAFETY: the caller hands over the range for good.
    unsafe { ALLOCATOR.lock().claim(span) }.is_ok()
}
