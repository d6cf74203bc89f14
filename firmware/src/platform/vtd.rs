//! A VT-d remapping unit's registers and its invalidation queue, at the hardware edge: the
//! driver itself (`numavisor_policy::iommu::vtd`) is safe code over these two accessors.

use numavisor_policy::iommu::vtd::{QueueMemory, RegisterAccess};

/// Register pages below this address are identity mapped uncacheable (`paging`), as device
/// registers must be; above, the identity map is write-back.
const UNCACHED_BELOW: u64 = 4 << 30;
/// The register page of one unit (VT-d §10.4: the registers a unit implements lie in 4 KiB,
/// the fault recording and IOTLB registers at offsets its capabilities give, inside it on
/// every unit we know).
const REGISTER_BYTES: u64 = 0x1000;

/// One unit's register page, accessed with volatile loads and stores of the register's
/// width; only `unsafe` makes one.
pub struct VtdRegisters {
    base: u64,
}

impl VtdRegisters {
    /// The registers at `base` (a DRHD's register base address), if they lie where the
    /// identity map makes them uncacheable.
    ///
    /// # Safety
    ///
    /// `base` is the register page of a remapping unit the firmware's DMAR lists, which
    /// nothing else drives while this value is used.
    pub unsafe fn new(base: u64) -> Option<VtdRegisters> {
        let end = base.checked_add(REGISTER_BYTES)?;
        (base.is_multiple_of(REGISTER_BYTES) && end <= UNCACHED_BELOW)
            .then_some(VtdRegisters { base })
    }

    /// The address of the register at `offset`, if it is inside the page and aligned to
    /// `width`.
    fn at(&self, offset: u32, width: u64) -> Option<u64> {
        let offset = u64::from(offset);
        (offset.is_multiple_of(width) && offset + width <= REGISTER_BYTES)
            .then_some(self.base + offset)
    }
}

impl RegisterAccess for VtdRegisters {
    fn read32(&mut self, offset: u32) -> u32 {
        match self.at(offset, 4) {
            // SAFETY: an aligned register of the unit's page, identity mapped uncacheable
            // (checked in `new` and `at`).
            Some(address) => unsafe { (address as *const u32).read_volatile() },
            None => u32::MAX,
        }
    }

    fn write32(&mut self, offset: u32, value: u32) {
        if let Some(address) = self.at(offset, 4) {
            // SAFETY: as for `read32`.
            unsafe { (address as *mut u32).write_volatile(value) };
        }
    }

    fn read64(&mut self, offset: u32) -> u64 {
        match self.at(offset, 8) {
            // SAFETY: as for `read32`; 64-bit registers are read in one access (VT-d §10.2).
            Some(address) => unsafe { (address as *const u64).read_volatile() },
            None => u64::MAX,
        }
    }

    fn write64(&mut self, offset: u32, value: u64) {
        if let Some(address) = self.at(offset, 8) {
            // SAFETY: as for `read64`.
            unsafe { (address as *mut u64).write_volatile(value) };
        }
    }
}

/// The invalidation queue's ring and status dword, in hypervisor pages reached through the
/// identity map; only `unsafe` makes one.
pub struct IdentityQueue {
    _token: (),
}

impl IdentityQueue {
    /// Access to the queue pages the driver names.
    ///
    /// # Safety
    ///
    /// Every address the driver passes is inside the ring or the status dword the caller
    /// configured the unit with: hypervisor-owned, identity-mapped pages no one else writes.
    pub unsafe fn new() -> IdentityQueue {
        IdentityQueue { _token: () }
    }
}

impl QueueMemory for IdentityQueue {
    fn write_descriptor(&mut self, address: u64, descriptor: [u64; 2]) {
        // SAFETY: a 16-byte slot of the ring (see `new`).
        unsafe {
            (address as *mut u64).write_volatile(descriptor[0]);
            ((address + 8) as *mut u64).write_volatile(descriptor[1]);
        }
    }

    fn read_status(&self, address: u64) -> u32 {
        // SAFETY: the status dword (see `new`); volatile, since the unit writes it.
        unsafe { (address as *const u32).read_volatile() }
    }

    fn write_status(&mut self, address: u64, value: u32) {
        // SAFETY: as for `read_status`.
        unsafe { (address as *mut u32).write_volatile(value) }
    }
}
