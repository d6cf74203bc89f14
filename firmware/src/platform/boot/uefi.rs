//! Reads the UEFI application's handoff block into a [`BootInfo`].
//!
//! The block lies in loader memory the memory map itself calls free: it is copied to the heap
//! (its size bounded by the policy parser) and translated from the copy.

use numavisor_policy::bootinfo::uefi::{self, UefiError, HEADER_BYTES};
use numavisor_policy::bootinfo::BootInfo;

use super::low_memory::copy_low;

/// Translates the handoff block at `address`.
pub fn read_boot_info(address: u64) -> Result<BootInfo, UefiError> {
    let total = uefi::total_size(&copy_low(address, HEADER_BYTES), address)?;
    uefi::parse(&copy_low(address, total as usize), address)
}
