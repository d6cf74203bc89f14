//! Intel VMX with EPT (Intel SDM vol. 3C chapters 23–29): detection from CPUID and the
//! capability MSRs, per-CPU VMXON, the VMCS and VM entry.

pub mod backend;
mod instructions;
pub mod run;
pub mod vcpu;

use numavisor_policy::memory::HostPage;
use numavisor_policy::vmx::capabilities::{
    msr, EptUnusable, EptVpidCapabilities, FeatureControl, FixedBits, VmxBasic, VmxMisc,
};
use numavisor_policy::vmx::controls::{primary, ControlCapabilities, Controls, MissingControls};
use raw_cpuid::CpuId;
use spin::Once;
use x86_64::registers::model_specific::Msr;

/// What this CPU's VMX offers, read once at boot ([`detect`]).
#[derive(Clone, Copy, Debug)]
pub struct VmxCapabilities {
    pub basic: VmxBasic,
    pub controls: Controls,
    pub ept: EptVpidCapabilities,
    pub misc: VmxMisc,
    pub cr0: FixedBits,
    pub cr4: FixedBits,
}

/// Why VMX cannot be used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmxUnavailable {
    NoVmx,
    DisabledByFirmware,
    /// The VMCS needs more than a page, or must sit below 4 GiB (neither on 64-bit CPUs).
    UnsupportedRegions,
    Controls(MissingControls),
    Ept(EptUnusable),
}

impl core::fmt::Display for VmxUnavailable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VmxUnavailable::NoVmx => f.write_str(
                "the CPU has no Intel VMX (Bochs: cpu: model=corei7_haswell_4770 or later)",
            ),
            VmxUnavailable::DisabledByFirmware => {
                f.write_str("VMX is disabled by firmware (IA32_FEATURE_CONTROL locked)")
            }
            VmxUnavailable::UnsupportedRegions => {
                f.write_str("the CPU's VMCS regions are larger than 4 KiB or 32-bit only")
            }
            VmxUnavailable::Controls(missing) => write!(f, "{missing}"),
            VmxUnavailable::Ept(why) => write!(f, "{why}"),
        }
    }
}

static CAPABILITIES: Once<VmxCapabilities> = Once::new();

fn read_msr(number: u32) -> u64 {
    // SAFETY: only called for the VMX capability MSRs, which exist on every CPU reporting
    // VMX (SDM appendix A), after CPUID said so; reading them has no side effects.
    unsafe { Msr::new(number).read() }
}

/// Checks that VMX with EPT and unrestricted guest is usable, and remembers what it offers.
pub fn detect() -> Result<VmxCapabilities, VmxUnavailable> {
    if let Some(caps) = CAPABILITIES.get() {
        return Ok(*caps);
    }
    let cpuid = CpuId::new();
    if !cpuid.get_feature_info().is_some_and(|f| f.has_vmx()) {
        return Err(VmxUnavailable::NoVmx);
    }
    if FeatureControl::of(read_msr(msr::FEATURE_CONTROL)) == FeatureControl::DisabledByFirmware {
        return Err(VmxUnavailable::DisabledByFirmware);
    }
    let basic = VmxBasic::of(read_msr(msr::VMX_BASIC));
    if basic.region_bytes > 4096 || basic.addresses_32bit {
        return Err(VmxUnavailable::UnsupportedRegions);
    }
    let (pin, proc, exit, entry) = if basic.true_controls {
        (
            msr::VMX_TRUE_PINBASED_CTLS,
            msr::VMX_TRUE_PROCBASED_CTLS,
            msr::VMX_TRUE_EXIT_CTLS,
            msr::VMX_TRUE_ENTRY_CTLS,
        )
    } else {
        (
            msr::VMX_PINBASED_CTLS,
            msr::VMX_PROCBASED_CTLS,
            msr::VMX_EXIT_CTLS,
            msr::VMX_ENTRY_CTLS,
        )
    };
    let primary_caps = read_msr(proc);
    let has_secondary = (primary_caps >> 32) as u32 & primary::SECONDARY_CONTROLS != 0;
    let control_caps = ControlCapabilities {
        pin: read_msr(pin),
        primary: primary_caps,
        exit: read_msr(exit),
        entry: read_msr(entry),
        secondary: if has_secondary {
            read_msr(msr::VMX_PROCBASED_CTLS2)
        } else {
            0
        },
    };
    let controls = Controls::compute(&control_caps).map_err(VmxUnavailable::Controls)?;
    let ept = EptVpidCapabilities::of(read_msr(msr::VMX_EPT_VPID_CAP));
    ept.check().map_err(VmxUnavailable::Ept)?;
    let caps = VmxCapabilities {
        basic,
        controls,
        ept,
        misc: VmxMisc::of(read_msr(msr::VMX_MISC)),
        cr0: FixedBits {
            fixed0: read_msr(msr::VMX_CR0_FIXED0),
            fixed1: read_msr(msr::VMX_CR0_FIXED1),
        }
        .unrestricted_cr0(),
        cr4: FixedBits {
            fixed0: read_msr(msr::VMX_CR4_FIXED0),
            fixed1: read_msr(msr::VMX_CR4_FIXED1),
        },
    };
    Ok(*CAPABILITIES.call_once(|| caps))
}

/// The capabilities [`detect`] found (VMX was selected, so it ran).
pub fn capabilities() -> &'static VmxCapabilities {
    CAPABILITIES
        .get()
        .expect("VMX selected after detect() succeeded")
}

const CR4_VMXE: u64 = 1 << 13;

/// Turns VMX operation on for the calling CPU with `region` (a 4 KiB page of its own) as its
/// VMXON region: IA32_FEATURE_CONTROL set and locked if the firmware left it open, CR0 and
/// CR4 given the bits VMX operation fixes (and CR4.OSXSAVE, so the host can execute a
/// guest's checked XSETBV: `virt::xstate`), then VMXON.
pub fn enable_on_this_cpu(region: HostPage) -> bool {
    let caps = capabilities();
    let mut feature_control = Msr::new(msr::FEATURE_CONTROL);
    // SAFETY: IA32_FEATURE_CONTROL exists on VMX CPUs; detect() rejected a locked-off one,
    // and an unlocked one is set as the SDM says (§23.7) before VMXON.
    unsafe {
        if let FeatureControl::Unlocked { write } = FeatureControl::of(feature_control.read()) {
            feature_control.write(write);
        }
    }
    let region = region.into_address();
    // SAFETY: the region is a page this CPU owns (a HostPage handed over for good), identity
    // mapped; the revision id goes in its first 4 bytes as VMXON requires (SDM §24.11.5).
    unsafe {
        core::ptr::write_bytes(region as *mut u8, 0, 4096);
        (region as *mut u32).write_volatile(caps.basic.revision);
    }
    // SAFETY: setting the bits VMX operation requires in CR0 (NE) and CR4 (VMXE) changes no
    // mapping.
    unsafe {
        let cr0: u64;
        core::arch::asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
        core::arch::asm!("mov cr0, {}", in(reg) caps.cr0.apply(cr0), options(nostack));
        let mut cr4: u64;
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        cr4 = caps.cr4.apply(cr4 | CR4_VMXE);
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack));
    }
    crate::virt::xstate::enable_for_host();
    // SAFETY: the preconditions of VMXON were just established for this CPU.
    unsafe { instructions::vmxon(region) }.is_ok()
}
