//! A 4 KiB page of host RAM that the hypervisor owns, as an owned handle: only the frame
//! allocator makes one (from a page it took out of free memory), it is neither `Copy` nor
//! `Clone`, and no number turns into one. Code that writes a page's bytes at the hardware
//! edge takes a `&mut HostPage`, so it cannot be pointed at memory someone else owns.
//!
//! A page leaves the handle only on purpose: back to free memory
//! ([`FrameAllocator::free_page`](super::FrameAllocator::free_page)), or handed to books that
//! track it by address from then on ([`HostPage::into_address`]: a guest's RAM map, a CPU's
//! host state).

use super::PAGE_SIZE;

/// One page of host RAM, owned.
#[derive(Debug, PartialEq, Eq)]
pub struct HostPage {
    address: u64,
}

impl HostPage {
    /// Only the frame allocator makes pages.
    pub(super) fn taken(address: u64) -> HostPage {
        debug_assert!(address.is_multiple_of(PAGE_SIZE));
        HostPage { address }
    }

    /// Its host-physical address.
    pub fn address(&self) -> u64 {
        self.address
    }

    /// Ends the handle: the page now belongs to whatever books the caller hands the address
    /// to (it does not go back to free memory by itself).
    pub fn into_address(self) -> u64 {
        self.address
    }
}
