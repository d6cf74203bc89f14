//! A self-check of the world switch (`selftest=host-state`): host state the hypervisor relies
//! on must read the same after a guest's run as before it, whatever the guest wrote. A
//! difference is a hypervisor bug, logged as such; the checks made and the changes found are
//! counted for the report (`all_stopped`), so a test can tell the check ran.
//!
//! What each backend switches differs: on VMX a VM exit loads FS/GS base, the SYSENTER MSRs,
//! EFER and PAT from the VMCS host-state area (SDM vol. 3C §28.5.1), and the SYSCALL MSRs and
//! KernelGSBase stay the guest's while its vCPU holds the CPU (the hypervisor never uses
//! them; they return when the vCPU leaves). On SVM VMRUN/#VMEXIT restore EFER and the host's
//! PAT stays (nested paging gives the guest G_PAT), and `run.rs` keeps FS/GS base,
//! KernelGSBase, STAR/LSTAR/CSTAR/SFMASK and the SYSENTER MSRs with VMSAVE/VMLOAD (APM vol. 2
//! §15.5.2): all of them are checked there.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use x86_64::registers::model_specific::Msr;

/// The MSRs both backends restore for the host after every run.
pub const SWITCHED: [(u32, &str); 7] = [
    (0xC000_0100, "FS_BASE"),
    (0xC000_0101, "GS_BASE"),
    (0x174, "SYSENTER_CS"),
    (0x175, "SYSENTER_ESP"),
    (0x176, "SYSENTER_EIP"),
    (0xC000_0080, "EFER"),
    (0x277, "PAT"),
];

/// SVM's list: [`SWITCHED`] and what VMLOAD restores besides.
pub const SVM_SWITCHED: [(u32, &str); 12] = [
    SWITCHED[0],
    SWITCHED[1],
    SWITCHED[2],
    SWITCHED[3],
    SWITCHED[4],
    SWITCHED[5],
    SWITCHED[6],
    (0xC000_0102, "KERNEL_GS_BASE"),
    (0xC000_0081, "STAR"),
    (0xC000_0082, "LSTAR"),
    (0xC000_0083, "CSTAR"),
    (0xC000_0084, "SFMASK"),
];

static CHECK: AtomicBool = AtomicBool::new(false);
static CHECKS: AtomicU64 = AtomicU64::new(0);
static CHANGES: AtomicU64 = AtomicU64::new(0);

/// Turns the check on (for the tests of the world switch; it costs MSR reads per exit).
pub fn enable_check() {
    CHECK.store(true, Ordering::Relaxed);
}

/// Checks made and changes found so far, if the check is on.
pub fn counts() -> Option<(u64, u64)> {
    CHECK.load(Ordering::Relaxed).then(|| {
        (
            CHECKS.load(Ordering::Relaxed),
            CHANGES.load(Ordering::Relaxed),
        )
    })
}

/// The MSRs of `checked` now, if the check is on.
pub fn snapshot_if_checked<const N: usize>(checked: &[(u32, &str); N]) -> Option<[u64; N]> {
    if !CHECK.load(Ordering::Relaxed) {
        return None;
    }
    let mut values = [0; N];
    for (value, (msr, _)) in values.iter_mut().zip(checked) {
        // SAFETY: architected MSRs every x86_64 CPU with SVM or VMX has; reading has no effect.
        *value = unsafe { Msr::new(*msr).read() };
    }
    Some(values)
}

/// Compares `checked` with `before` (taken before the guest ran) and reports each MSR that
/// changed.
#[inline(always)]
pub fn check<const N: usize>(checked: &[(u32, &str); N], before: Option<[u64; N]>) {
    // Inline, so that the exit path without the check pays one test, not a call.
    if let Some(before) = before {
        compare(checked, before);
    }
}

#[cold]
#[inline(never)]
fn compare<const N: usize>(checked: &[(u32, &str); N], before: [u64; N]) {
    let Some(after) = snapshot_if_checked(checked) else {
        return;
    };
    CHECKS.fetch_add(1, Ordering::Relaxed);
    for ((old, new), (_, name)) in before.iter().zip(after).zip(checked) {
        if *old != new {
            CHANGES.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "host state: {name} changed across a guest run ({old:#x} -> {new:#x}); the world switch leaks guest state into the host"
            );
        }
    }
}
