//! The extended processor state (x87, SSE, AVX ... and XCR0, Intel SDM vol. 1 ch. 13) of a
//! guest. The hypervisor itself uses none of it (`x86_64-unknown-none` is soft-float) and
//! each CPU runs one partition's vCPU, so the state stays in the CPU while the vCPU holds it;
//! what both backends add is: XSETBV is intercepted and checked against the architectural
//! rules before the host executes it, and every (re)start gives the guest the power-on state
//! (XCR0 = x87, every component in its initial configuration), so nothing of a partition's
//! earlier life survives a restart.

use numavisor_policy::vmm::xcr0::valid_xsetbv;
use spin::Once;

/// XCR0 bits the CPU supports (CPUID.(EAX=0DH,ECX=0):EDX:EAX), 0 without XSAVE.
static SUPPORTED: Once<u64> = Once::new();

const CR4_OSXSAVE: u64 = 1 << 18;

/// What XCR0 may hold on this CPU.
pub fn supported() -> u64 {
    *SUPPORTED.call_once(|| {
        let cpuid = raw_cpuid::CpuId::new();
        if cpuid.get_feature_info().is_some_and(|f| f.has_xsave()) {
            let leaf = raw_cpuid::native_cpuid::cpuid_count(0xD, 0);
            ((leaf.edx as u64) << 32) | leaf.eax as u64
        } else {
            0
        }
    })
}

/// Lets the host execute XSETBV and XRSTOR for its guests (CR4.OSXSAVE), on CPUs with XSAVE.
pub fn enable_for_host() {
    if supported() == 0 {
        return;
    }
    // SAFETY: CR4.OSXSAVE only enables the XSAVE instructions; the CPU has them (CPUID).
    unsafe {
        let mut cr4: u64;
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        cr4 |= CR4_OSXSAVE;
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack));
    }
}

/// The XSAVE area of the initial state: a legacy region and a header whose XSTATE_BV is 0,
/// so XRSTOR puts every component it is asked for in its initial configuration (SDM vol. 1
/// §13.8.1). MXCSR is its reset value.
#[repr(C, align(64))]
struct InitArea([u8; 576]);

static INIT_AREA: InitArea = InitArea({
    let mut bytes = [0u8; 576];
    bytes[24] = 0x80; // MXCSR = 0x1F80
    bytes[25] = 0x1F;
    bytes
});

/// Gives the guest about to start the power-on extended state: every supported component in
/// its initial configuration, then XCR0 = x87 only.
pub fn reset_for_start() {
    let all = supported();
    if all == 0 {
        return;
    }
    // SAFETY: the host has CR4.OSXSAVE (`enable_for_host`, called when virtualization was
    // turned on for this CPU). XCR0 = all supported components is valid; XRSTOR from a
    // 64-byte aligned area whose header asks for nothing restores the initial state of the
    // components in XCR0 & EDX:EAX; XCR0 = 1 is always valid.
    unsafe {
        core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") all as u32,
            in("edx") (all >> 32) as u32, options(nomem, nostack));
        core::arch::asm!("xrstor [{}]", in(reg) INIT_AREA.0.as_ptr(), in("eax") u32::MAX,
            in("edx") u32::MAX, options(nostack, readonly));
        core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") 1u32, in("edx") 0u32,
            options(nomem, nostack));
    }
}

/// A guest's XSETBV of `value` to XCR`index` at privilege level `cpl`: executed if valid,
/// else `Err` (the guest gets #GP).
pub fn guest_xsetbv(index: u32, value: u64, cpl: u8) -> Result<(), ()> {
    if cpl != 0 || !valid_xsetbv(index, value, supported()) {
        return Err(());
    }
    // SAFETY: the value passed the architectural checks against what this CPU supports, and
    // the host has CR4.OSXSAVE, so XSETBV cannot fault; XCR0 is the guest's while its vCPU
    // holds the CPU.
    unsafe {
        core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") value as u32,
            in("edx") (value >> 32) as u32, options(nomem, nostack));
    }
    Ok(())
}
