//! A self-check of the world switch (`selftest=host-state`): the host state VMRUN does not
//! switch itself — FS/GS base, KernelGSBase, STAR/LSTAR/CSTAR/SFMASK, the SYSENTER MSRs —
//! must read the same after a guest's run as before it, whatever the guest wrote (APM vol. 2
//! §15.5.2; `run.rs` keeps them with VMSAVE/VMLOAD). A difference is a hypervisor bug,
//! reported as such.

use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::registers::model_specific::Msr;

/// The MSRs checked, by name.
const CHECKED: [(u32, &str); 9] = [
    (0xC000_0100, "FS_BASE"),
    (0xC000_0101, "GS_BASE"),
    (0xC000_0102, "KERNEL_GS_BASE"),
    (0xC000_0081, "STAR"),
    (0xC000_0082, "LSTAR"),
    (0xC000_0083, "CSTAR"),
    (0xC000_0084, "SFMASK"),
    (0x175, "SYSENTER_ESP"),
    (0x176, "SYSENTER_EIP"),
];

static CHECK: AtomicBool = AtomicBool::new(false);

/// Turns the check on (for the tests of the world switch; it costs MSR reads per exit).
pub fn enable_check() {
    CHECK.store(true, Ordering::Relaxed);
}

/// The checked MSRs now, if the check is on.
pub fn snapshot_if_checked() -> Option<[u64; CHECKED.len()]> {
    if !CHECK.load(Ordering::Relaxed) {
        return None;
    }
    let mut values = [0; CHECKED.len()];
    for (value, (msr, _)) in values.iter_mut().zip(CHECKED) {
        // SAFETY: architected MSRs every x86_64 CPU with SVM has; reading has no effect.
        *value = unsafe { Msr::new(msr).read() };
    }
    Some(values)
}

/// Compares the MSRs with `before` (taken before the guest ran) and reports each that changed.
pub fn check(before: Option<[u64; CHECKED.len()]>) {
    let (Some(before), Some(after)) = (before, snapshot_if_checked()) else {
        return;
    };
    for ((old, new), (_, name)) in before.iter().zip(after).zip(CHECKED) {
        if *old != new {
            log::error!(
                "host state: {name} changed across a guest run ({old:#x} -> {new:#x}); the world switch leaks guest state into the host"
            );
        }
    }
}
