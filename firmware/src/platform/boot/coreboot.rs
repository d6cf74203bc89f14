//! Reads the coreboot tables the payload entry was handed (or finds them, as libpayload does)
//! into a [`BootInfo`], copying what it needs before the memory manager reuses low memory.

use alloc::vec::Vec;

use numavisor_policy::bootinfo::coreboot::{self, CorebootError, TableMemory};
use numavisor_policy::bootinfo::BootInfo;

use super::low_memory::copy_low;

/// Physical memory below 4 GiB, as the entry code identity-maps it.
struct LowMemory;

impl TableMemory for LowMemory {
    fn read(&self, address: u64, len: usize) -> Option<Vec<u8>> {
        let bytes = copy_low(address, len);
        (bytes.len() == len).then_some(bytes)
    }
}

/// Translates the coreboot table whose header is at `pointer` (0: none given).
pub fn read_boot_info(pointer: u64) -> Result<BootInfo, CorebootError> {
    coreboot::boot_info(&LowMemory, pointer)
}
