//! The hypervisor heap: a fixed arena inside the image (`.noinit`), managed by `talc`.
//!
//! The heap holds the policy core's data (topology, allocator metadata, page tables above
//! 4 GiB); it is part of the image range and so accounted as hypervisor-reserved.

use talc::{ClaimOnOom, Span, Talc, Talck};

/// Heap size: generous for topology and allocator metadata on large machines.
pub const HEAP_BYTES: usize = 2 * 1024 * 1024;

#[repr(C, align(4096))]
struct Arena([u8; HEAP_BYTES]);

#[unsafe(link_section = ".noinit.heap")]
static mut ARENA: Arena = Arena([0; HEAP_BYTES]);

#[global_allocator]
// SAFETY: the arena is a static used by nothing but this allocator.
static ALLOCATOR: Talck<spin::Mutex<()>, ClaimOnOom> = Talc::new(unsafe {
    ClaimOnOom::new(Span::from_array(
        core::ptr::addr_of_mut!(ARENA).cast::<[u8; HEAP_BYTES]>(),
    ))
})
.lock();

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
