//! A bump allocator for the few `Vec`s ACPI discovery builds; nothing is ever freed. The heap
//! is in `.bss`, so inside the image the RAM test leaves alone.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

const HEAP_BYTES: usize = 512 * 1024;

#[repr(C, align(4096))]
struct Heap {
    bytes: UnsafeCell<[u8; HEAP_BYTES]>,
    used: AtomicUsize,
}

// SAFETY: allocation hands out disjoint ranges, claimed atomically through `used`.
unsafe impl Sync for Heap {}

#[global_allocator]
static HEAP: Heap = Heap {
    bytes: UnsafeCell::new([0; HEAP_BYTES]),
    used: AtomicUsize::new(0),
};

// SAFETY: `alloc` returns aligned, disjoint blocks inside the heap, or null when it is full.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.bytes.get() as usize;
        // The block for a given fill level: (its start address, the new fill level).
        let fit = |used: usize| {
            let start = (base + used).checked_next_multiple_of(layout.align())?;
            let end = start.checked_add(layout.size())?;
            (end <= base + HEAP_BYTES).then_some((start, end - base))
        };
        let update = |used| fit(used).map(|(_, new_used)| new_used);
        match self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, update)
        {
            Ok(used) => fit(used).map_or(core::ptr::null_mut(), |(start, _)| start as *mut u8),
            Err(_) => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}
