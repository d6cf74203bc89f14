//! A guest's TSC_AUX (MSR 0xC000_0103), the value RDTSCP returns in ECX and RDPID returns: both
//! read the physical MSR without an exit on SVM and on VMX, so the guest's value is loaded into
//! the CPU its vCPU owns. The hypervisor reads TSC_AUX nowhere, so nothing is restored for it;
//! each (re)start loads the guest's reset value, so nothing of an earlier life survives.

use spin::Once;
use x86_64::registers::model_specific::Msr;

const TSC_AUX: u32 = 0xC000_0103;

/// Whether this CPU has the MSR (it exists with RDTSCP or RDPID; AMD APM vol. 3, RDTSCP).
fn present() -> bool {
    static PRESENT: Once<bool> = Once::new();
    *PRESENT.call_once(|| {
        let cpuid = raw_cpuid::CpuId::new();
        let rdtscp = cpuid
            .get_extended_processor_and_feature_identifiers()
            .is_some_and(|f| f.has_rdtscp());
        let rdpid = cpuid
            .get_extended_feature_info()
            .is_some_and(|f| f.has_rdpid());
        rdtscp || rdpid
    })
}

/// Loads the guest's TSC_AUX into this CPU. Without the MSR the guest is told of neither
/// instruction (CPUID passes the host's bits), so there is nothing to load.
pub fn load(value: u32) {
    if present() {
        // SAFETY: the CPU has TSC_AUX (CPUID above); its upper half is reserved and written
        // 0; the hypervisor does not use the MSR.
        unsafe { Msr::new(TSC_AUX).write(u64::from(value)) };
    }
}
