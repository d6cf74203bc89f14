//! Reading physical memory through the identity map, for the ACPI parser and boot data.

use numavisor_policy::acpi::PhysicalMemory;

/// The identity-mapped physical address space below `top`, to read: holding one is the token
/// for raw reads anywhere below `top`, and only `unsafe` makes one.
pub struct IdentityMapped {
    top: u64,
}

impl IdentityMapped {
    /// Reads of physical memory below `top`.
    ///
    /// # Safety
    ///
    /// The identity map covers every page below `top`, and what the reader is pointed at
    /// (firmware tables, boot data) is not written while it reads.
    pub unsafe fn new(top: u64) -> IdentityMapped {
        IdentityMapped { top }
    }
}

impl PhysicalMemory for IdentityMapped {
    fn read(&self, address: u64, length: usize) -> Option<&[u8]> {
        let end = address.checked_add(length as u64)?;
        if address == 0 || end > self.top {
            return None;
        }
        // SAFETY: [address, end) lies inside the identity map (checked above), which maps
        // every page below `top`; the bytes are firmware tables or boot data nobody writes
        // while we read them.
        Some(unsafe { core::slice::from_raw_parts(address as *const u8, length) })
    }
}
