//! The test guest's raw accessors: MSRs and 4-byte device registers, in the plain forms the
//! hypervisor's intercepts and MMIO decoder take (`rdmsr`/`wrmsr`, an aligned `mov`).
//!
//! They are safe functions because this guest owns its whole virtual machine: a refused MSR
//! or a bad register raises an exception, which the handlers report (and end the guest);
//! nothing in guest memory is touched.

use core::arch::asm;

/// The local APIC's MMIO page (SDM vol. 3A Table 11-1).
pub const XAPIC: u64 = 0xFEE0_0000;

/// RDMSR of `msr`.
pub fn rdmsr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: RDMSR only writes EDX:EAX; a refused MSR is a #GP the handlers report.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack))
    };
    (u64::from(high) << 32) | u64::from(low)
}

/// WRMSR of `value` to `msr`.
pub fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the callers write only MSRs of the guest's own CPU state that this guest does
    // not otherwise rely on; a refused write is a #GP the handlers report.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
            options(nostack))
    };
}

/// A 4-byte load from the device register at `address` (identity mapped).
pub fn mmio_read(address: u64) -> u32 {
    let value: u32;
    // SAFETY: an aligned 4-byte load from a device page of the identity map (local APIC or
    // I/O APIC); the hypervisor emulates it, no memory is touched.
    unsafe {
        asm!("mov {0:e}, dword ptr [{1}]", out(reg) value, in(reg) address,
            options(nostack, preserves_flags, readonly))
    };
    value
}

/// A 4-byte store of `value` to the device register at `address` (identity mapped).
pub fn mmio_write(address: u64, value: u32) {
    // SAFETY: as for `mmio_read`, a 4-byte store.
    unsafe {
        asm!("mov dword ptr [{0}], {1:e}", in(reg) address, in(reg) value,
            options(nostack, preserves_flags))
    };
}
