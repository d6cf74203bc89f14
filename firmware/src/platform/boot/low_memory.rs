//! Copying loader data out of low physical memory (identity mapped below 4 GiB by the entry
//! code) before the memory manager hands that memory out.

use alloc::vec::Vec;

/// The top of what the entry code identity-maps.
const LOW_MEMORY_TOP: u64 = 4 << 30;

/// Copies `len` bytes at physical `address`; empty if the range is null or not below 4 GiB.
pub fn copy_low(address: u64, len: usize) -> Vec<u8> {
    if address == 0 || address.saturating_add(len as u64) > LOW_MEMORY_TOP {
        return Vec::new();
    }
    // SAFETY: the range lies below 4 GiB, which the entry code identity-maps; the loader
    // placed its data there and nothing has reused that memory yet.
    unsafe { core::slice::from_raw_parts(address as *const u8, len) }.to_vec()
}

/// Copies a NUL-terminated string at `address`, reading at most `max` bytes (fewer near the
/// top of low memory); the NUL and anything after it are dropped by the caller's decoder.
pub fn copy_string(address: u64, max: usize) -> Vec<u8> {
    let window = (max as u64).min(LOW_MEMORY_TOP.saturating_sub(address)) as usize;
    copy_low(address, window)
}
