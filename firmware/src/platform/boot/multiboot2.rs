//! Reads a multiboot2 loader's boot information into a [`BootInfo`].
//!
//! GRUB puts the structure in low RAM that the memory manager will hand out later: it is
//! copied to the heap (its `total_size` bounded by the policy parser) and translated from the
//! copy. Modules stay where the loader put them; `start.rs` keeps their memory reserved.

use numavisor_policy::bootinfo::multiboot2::{self, Multiboot2Error, FIXED_BYTES};
use numavisor_policy::bootinfo::BootInfo;

use super::low_memory::copy_low;

/// Translates the boot information at `address`; `magic` is what the loader left in EAX.
pub fn read_boot_info(address: u64, magic: u32) -> Result<BootInfo, Multiboot2Error> {
    multiboot2::check_magic(magic)?;
    if !address.is_multiple_of(8) {
        return Err(Multiboot2Error::Misaligned { address });
    }
    let total = multiboot2::total_size(&copy_low(address, FIXED_BYTES))?;
    multiboot2::parse(&copy_low(address, total), address)
}
