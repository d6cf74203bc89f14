//! The VMX instructions (Intel SDM vol. 3C ch. 30), one safe-to-call wrapper each where the
//! caller's contract can be stated. VMX instructions report failure in RFLAGS: CF set is
//! VMfailInvalid (no current VMCS), ZF set is VMfailValid (the VM-instruction error field
//! says why).

use core::arch::asm;

/// A VMX instruction failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmxFailure {
    /// VMfailInvalid: no current VMCS, or a bad region pointer.
    Invalid,
    /// VMfailValid: the current VMCS's VM-instruction error field holds the reason.
    Valid,
}

/// The outcome of a VMX instruction from the CF and ZF it left.
fn outcome(cf: u8, zf: u8) -> Result<(), VmxFailure> {
    if cf != 0 {
        Err(VmxFailure::Invalid)
    } else if zf != 0 {
        Err(VmxFailure::Valid)
    } else {
        Ok(())
    }
}

/// VMXON with the region at physical `region`.
///
/// # Safety
/// CR4.VMXE must be set, CR0/CR4 must satisfy the fixed bits, IA32_FEATURE_CONTROL must
/// allow VMX, and `region` must be a 4 KiB page of this CPU's own holding the revision id.
pub(super) unsafe fn vmxon(region: u64) -> Result<(), VmxFailure> {
    let (cf, zf): (u8, u8);
    // SAFETY: per this function's contract; the operand is a pointer to the address.
    unsafe {
        asm!("vmxon [{0}]", "setc {1}", "setz {2}", in(reg) &region, out(reg_byte) cf,
             out(reg_byte) zf, options(nostack));
    }
    outcome(cf, zf)
}

/// VMCLEAR of the VMCS at physical `vmcs`: writes back whatever the CPU cached of it and
/// marks it clear (not launched, not current).
///
/// # Safety
/// VMX must be on for this CPU and `vmcs` must be a VMCS region with the revision id,
/// owned by the caller.
pub(super) unsafe fn vmclear(vmcs: u64) -> Result<(), VmxFailure> {
    let (cf, zf): (u8, u8);
    // SAFETY: per this function's contract.
    unsafe {
        asm!("vmclear [{0}]", "setc {1}", "setz {2}", in(reg) &vmcs, out(reg_byte) cf,
             out(reg_byte) zf, options(nostack));
    }
    outcome(cf, zf)
}

/// VMPTRLD: makes the VMCS at physical `vmcs` this CPU's current VMCS.
///
/// # Safety
/// As for [`vmclear`]; the VMCS must not be current on another CPU.
pub(super) unsafe fn vmptrld(vmcs: u64) -> Result<(), VmxFailure> {
    let (cf, zf): (u8, u8);
    // SAFETY: per this function's contract.
    unsafe {
        asm!("vmptrld [{0}]", "setc {1}", "setz {2}", in(reg) &vmcs, out(reg_byte) cf,
             out(reg_byte) zf, options(nostack));
    }
    outcome(cf, zf)
}

/// VMREAD of `field` from the current VMCS (0 if there is none or the field does not exist:
/// callers only read fields the SDM defines for every VMX CPU).
pub(super) fn vmread(field: u32) -> u64 {
    let value: u64;
    // SAFETY: VMREAD only reads the current VMCS; with none it fails (CF) without effect.
    // In VMX non-root or with VMX off it would fault, but only the VMX backend calls this,
    // on CPUs it turned VMX on for.
    unsafe {
        asm!("vmread {0}, {1}", out(reg) value, in(reg) field as u64, options(nostack));
    }
    value
}

/// VMWRITE of `value` into `field` of the current VMCS.
pub(super) fn vmwrite(field: u32, value: u64) {
    // SAFETY: VMWRITE changes only the current VMCS, which the calling vCPU owns (the
    // backend loads a vCPU's VMCS on its own CPU before any access); a bad field fails
    // (ZF) without effect.
    unsafe {
        asm!("vmwrite {0}, {1}", in(reg) field as u64, in(reg) value, options(nostack));
    }
}

/// INVEPT / INVVPID types (SDM vol. 3C §30.3).
pub const SINGLE_CONTEXT: u64 = 1;
pub const ALL_CONTEXTS: u64 = 2;

/// INVEPT of `kind` for the EPT pointer `eptp`: drops the guest-physical translations the
/// CPU cached for it.
pub(super) fn invept(kind: u64, eptp: u64) {
    let descriptor: [u64; 2] = [eptp, 0];
    // SAFETY: INVEPT only invalidates TLB entries; the backend calls it on CPUs with VMX on
    // and a kind the CPU reported.
    unsafe {
        asm!("invept {0}, [{1}]", in(reg) kind, in(reg) &descriptor, options(nostack));
    }
}

/// INVVPID of `kind` for `vpid`: drops the linear translations tagged with it.
pub(super) fn invvpid(kind: u64, vpid: u16) {
    let descriptor: [u64; 2] = [vpid as u64, 0];
    // SAFETY: as for `invept`.
    unsafe {
        asm!("invvpid {0}, [{1}]", in(reg) kind, in(reg) &descriptor, options(nostack));
    }
}
