//! Pages allocated from the firmware that go back to it if the application gives up before
//! leaving boot services: a failed start leaves nothing of ours behind.

use core::ptr::NonNull;

use uefi::boot::{self, AllocateType, MemoryType};

/// `count` pages from `start`, owned until [`Pages::keep`] or drop (which frees them).
pub struct Pages {
    start: NonNull<u8>,
    count: usize,
}

impl Pages {
    /// Allocates `count` pages of type `ty` as `how` says.
    pub fn allocate(how: AllocateType, ty: MemoryType, count: usize) -> uefi::Result<Pages> {
        boot::allocate_pages(how, ty, count).map(|start| Pages { start, count })
    }

    /// The first page's physical (identity-mapped) address.
    pub fn address(&self) -> u64 {
        self.start.as_ptr() as u64
    }

    /// Keeps the pages allocated for good (they are the image's, or the handoff's).
    pub fn keep(self) -> u64 {
        let address = self.address();
        core::mem::forget(self);
        address
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: the pages were allocated by `allocate` and nothing refers to them any more
        // (their owner is being dropped on a failed start).
        let _ = unsafe { boot::free_pages(self.start, self.count) };
    }
}
