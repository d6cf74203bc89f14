//! A DMA remapping unit's registers and the memory its driver shares with it (VT-d's
//! invalidation queue; AMD-Vi's device table, command buffer and completion qword), at the
//! hardware edge: the drivers themselves (`numavisor_policy::iommu::{vtd, amd_vi}`) are safe
//! code over these two accessors.

use numavisor_policy::iommu::amd_vi::AmdViMemory;
use numavisor_policy::iommu::vtd::{QueueMemory, RegisterAccess};

/// Register pages below this address are identity mapped uncacheable (`paging`), as device
/// registers must be; above, the identity map is write-back.
const UNCACHED_BELOW: u64 = 4 << 30;
/// A VT-d unit's registers: one page (VT-d §10.4: the fault recording and IOTLB registers at
/// offsets its capabilities give, inside it on every unit we know).
pub const VTD_REGISTER_BYTES: u64 = 0x1000;
/// An AMD-Vi unit's registers: 16 KiB (the ring pointers lie at 0x2000).
pub const AMD_VI_REGISTER_BYTES: u64 = 0x4000;

/// One unit's register window, accessed with volatile loads and stores of the register's
/// width; only `unsafe` makes one.
pub struct UnitRegisters {
    base: u64,
    length: u64,
}

impl UnitRegisters {
    /// The `length` bytes of registers at `base` (a DRHD's or IVHD's register base), if they
    /// lie where the identity map makes them uncacheable.
    ///
    /// # Safety
    ///
    /// `base` is the register window of a remapping unit the firmware's DMAR or IVRS lists,
    /// which nothing else drives while this value is used.
    pub unsafe fn new(base: u64, length: u64) -> Option<UnitRegisters> {
        let end = base.checked_add(length)?;
        (base.is_multiple_of(0x1000) && end <= UNCACHED_BELOW)
            .then_some(UnitRegisters { base, length })
    }

    /// The address of the register at `offset`, if it is inside the window and aligned to
    /// `width`.
    fn at(&self, offset: u32, width: u64) -> Option<u64> {
        let offset = u64::from(offset);
        (offset.is_multiple_of(width) && offset + width <= self.length)
            .then_some(self.base + offset)
    }
}

impl RegisterAccess for UnitRegisters {
    fn read32(&mut self, offset: u32) -> u32 {
        match self.at(offset, 4) {
            // SAFETY: an aligned register of the unit's window, identity mapped uncacheable
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

/// The memory a unit's driver names (VT-d: the invalidation queue's ring and status dword;
/// AMD-Vi: the device table, command buffer, event log and completion qword), hypervisor
/// pages reached through the identity map; only `unsafe` makes one.
pub struct IdentityQueue {
    _token: (),
}

impl IdentityQueue {
    /// Access to the queue pages the driver names.
    ///
    /// # Safety
    ///
    /// Every address the driver passes is inside the memory the caller configured the unit
    /// with: hypervisor-owned, identity-mapped pages no one else writes.
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

impl AmdViMemory for IdentityQueue {
    fn write_command(&mut self, address: u64, command: [u64; 2]) {
        self.write_descriptor(address, command);
    }

    fn write_qword(&mut self, address: u64, value: u64) {
        // SAFETY: a device table entry's qword or the completion qword (see `new`).
        unsafe { (address as *mut u64).write_volatile(value) }
    }

    fn read_qword(&self, address: u64) -> u64 {
        // SAFETY: as for `write_qword`; volatile, since the unit writes the completion qword
        // and the event log.
        unsafe { (address as *const u64).read_volatile() }
    }
}
