//! AMD SVM (AMD APM vol. 2 chapter 15): detection, per-CPU enablement, the VMCB and VMRUN.

pub mod backend;
pub mod run;
pub mod vcpu;
pub mod vmcb;

use numavisor_policy::memory::HostPage;
use raw_cpuid::CpuId;
use x86_64::registers::model_specific::Msr;

const EFER: u32 = 0xC000_0080;
const EFER_SVME: u64 = 1 << 12;
/// VM_HSAVE_PA: where VMRUN saves the host state (APM vol. 2 §15.30.4).
const VM_HSAVE_PA: u32 = 0xC001_0117;
const VM_CR: u32 = 0xC001_0114;
const VM_CR_SVMDIS: u64 = 1 << 4;

/// What the CPU's SVM offers (CPUID Fn8000_0001 ECX[2], Fn8000_000A).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SvmCapabilities {
    pub nested_paging: bool,
    /// The CPU saves the next RIP on intercepts (else we decode lengths ourselves).
    pub next_rip_save: bool,
    pub asids: u32,
    pub gib_pages: bool,
}

/// Why SVM cannot be used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvmUnavailable {
    NoSvm,
    DisabledByFirmware,
    NoNestedPaging,
}

impl core::fmt::Display for SvmUnavailable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SvmUnavailable::NoSvm => {
                "the CPU has no AMD SVM (QEMU: -cpu qemu64,+svm,+npt or -cpu max on an AMD model)"
            }
            SvmUnavailable::DisabledByFirmware => "SVM is disabled by firmware (VM_CR.SVMDIS)",
            SvmUnavailable::NoNestedPaging => "the CPU's SVM lacks nested paging (NPT)",
        })
    }
}

/// Checks that SVM with nested paging is usable.
pub fn detect() -> Result<SvmCapabilities, SvmUnavailable> {
    let cpuid = CpuId::new();
    let has_svm = cpuid
        .get_extended_processor_and_feature_identifiers()
        .is_some_and(|f| f.has_svm());
    if !has_svm {
        return Err(SvmUnavailable::NoSvm);
    }
    // SAFETY: VM_CR exists on every CPU that reports SVM; reading it has no side effects.
    if unsafe { Msr::new(VM_CR).read() } & VM_CR_SVMDIS != 0 {
        return Err(SvmUnavailable::DisabledByFirmware);
    }
    let svm = cpuid.get_svm_info().ok_or(SvmUnavailable::NoSvm)?;
    if !svm.has_nested_paging() {
        return Err(SvmUnavailable::NoNestedPaging);
    }
    let gib_pages = cpuid
        .get_extended_processor_and_feature_identifiers()
        .is_some_and(|f| f.has_1gib_pages());
    Ok(SvmCapabilities {
        nested_paging: true,
        next_rip_save: svm.has_nrip(),
        asids: svm.supported_asids(),
        gib_pages,
    })
}

/// Turns SVM on for the calling CPU with `host_save_area` (a 4 KiB page of its own).
pub fn enable_on_this_cpu(host_save_area: HostPage) {
    // SAFETY: detect() found SVM usable; EFER.SVME and VM_HSAVE_PA are its architected
    // controls, and the save area is a page this CPU owns (handed to the CPU for good).
    unsafe {
        let mut efer = Msr::new(EFER);
        efer.write(efer.read() | EFER_SVME);
        Msr::new(VM_HSAVE_PA).write(host_save_area.into_address());
    }
    crate::virt::xstate::enable_for_host();
}
