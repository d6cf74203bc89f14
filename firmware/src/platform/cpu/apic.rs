//! The host's local APIC, in xAPIC (MMIO) or x2APIC (MSR) mode: AP start-up, kicks between
//! CPUs, and the one-shot timer that bounds how long a guest keeps a CPU.
//!
//! Intel SDM vol. 3A §11.4 (xAPIC registers), §11.5.4 (APIC timer), §11.6.1 (ICR), §11.12
//! (x2APIC MSRs).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use raw_cpuid::CpuId;
use x86_64::registers::model_specific::Msr;

const IA32_APIC_BASE: u32 = 0x1B;
const APIC_BASE_X2APIC_ENABLE: u64 = 1 << 10;
const APIC_BASE_GLOBAL_ENABLE: u64 = 1 << 11;
const X2APIC_ICR: u32 = 0x830;
const X2APIC_EOI: u32 = 0x80B;
const X2APIC_SVR: u32 = 0x80F;
const XAPIC_EOI: u64 = 0xB0;
const XAPIC_SVR: u64 = 0xF0;
/// Spurious-interrupt vector register: APIC software-enabled, spurious vector 0xFF.
const SVR_ENABLED: u32 = 0x1FF;
const XAPIC_ICR_LOW: u64 = 0x300;
const XAPIC_ICR_HIGH: u64 = 0x310;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;

/// The host vector that wakes or kicks a CPU: the wake-up IPI, a kick from another CPU, and
/// this CPU's own APIC timer all use it; its handler only acknowledges it (see `idt`).
pub const WAKE_VECTOR: u8 = 0xF0;

/// ICR command: INIT, level assert.
pub const ICR_INIT_ASSERT: u32 = 0x0000_4500;
/// ICR command: INIT, level de-assert (needed only by pre-Pentium 4 parts; harmless after).
pub const ICR_INIT_DEASSERT: u32 = 0x0000_8500;
/// ICR command: start-up IPI; the low byte is the page number of the trampoline.
pub const ICR_STARTUP: u32 = 0x0000_4600;

/// Timer registers (xAPIC offset; the x2APIC MSR is 0x800 + offset / 16).
const LVT_TIMER: u64 = 0x320;
const TIMER_INITIAL_COUNT: u64 = 0x380;
const TIMER_CURRENT_COUNT: u64 = 0x390;
const TIMER_DIVIDE: u64 = 0x3E0;
/// Divide configuration "divide by 1".
const DIVIDE_BY_1: u32 = 0b1011;
const LVT_MASKED: u32 = 1 << 16;

/// Host APIC timer ticks per 2^20 TSC ticks, measured once by [`calibrate_timer`].
static TIMER_PER_TSC_2_20: AtomicU64 = AtomicU64::new(1 << 20);

static X2APIC: AtomicBool = AtomicBool::new(false);
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0xFEE0_0000);

/// Whether the CPU supports x2APIC mode.
pub fn x2apic_supported() -> bool {
    CpuId::new()
        .get_feature_info()
        .is_some_and(|f| f.has_x2apic())
}

/// Brings this CPU's local APIC up in the mode chosen for the machine (all CPUs call it).
pub fn enable(x2apic: bool) {
    let mut msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; setting the enable bits (x2APIC only
    // when supported, checked by the caller) is the architected way to turn the APIC on.
    unsafe {
        let mut value = msr.read() | APIC_BASE_GLOBAL_ENABLE;
        if x2apic {
            value |= APIC_BASE_X2APIC_ENABLE;
        }
        msr.write(value);
        XAPIC_BASE.store(value & 0x000F_FFFF_FFFF_F000, Ordering::Relaxed);
    }
    X2APIC.store(x2apic, Ordering::Relaxed);
    // Software-enable the APIC so fixed IPIs (the wake-up vector) are accepted.
    if x2apic {
        // SAFETY: x2APIC mode was just enabled; SVR is an architected x2APIC MSR.
        unsafe { Msr::new(X2APIC_SVR).write(SVR_ENABLED as u64) };
    } else {
        let base = XAPIC_BASE.load(Ordering::Relaxed);
        // SAFETY: the xAPIC page is identity mapped (uncached); SVR is its architected register.
        unsafe { ((base + XAPIC_SVR) as *mut u32).write_volatile(SVR_ENABLED) };
    }
}

/// Acknowledges the interrupt being handled (called from the wake-up stub).
pub extern "C" fn end_of_interrupt() {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is on; writing 0 to EOI acknowledges the current interrupt.
        unsafe { Msr::new(X2APIC_EOI).write(0) };
    } else {
        let base = XAPIC_BASE.load(Ordering::Relaxed);
        // SAFETY: as in `enable`; writing 0 to EOI acknowledges the current interrupt.
        unsafe { ((base + XAPIC_EOI) as *mut u32).write_volatile(0) };
    }
}

/// Wakes the CPU with `apic_id` from its HLT loop.
pub fn wake(apic_id: u32) {
    send_ipi(apic_id, 0x4000 | WAKE_VECTOR as u32);
}

/// Whether x2APIC mode is already on (a firmware may leave it so).
pub fn x2apic_enabled() -> bool {
    // SAFETY: reading IA32_APIC_BASE has no side effects.
    unsafe { Msr::new(IA32_APIC_BASE).read() & APIC_BASE_X2APIC_ENABLE != 0 }
}

/// This CPU's APIC ID, from CPUID (leaf 0xB's 32-bit x2APIC ID where present).
pub fn current_apic_id() -> u32 {
    let cpuid = CpuId::new();
    if let Some(mut levels) = cpuid.get_extended_topology_info() {
        if let Some(level) = levels.next() {
            return level.x2apic_id();
        }
    }
    cpuid
        .get_feature_info()
        .map(|f| f.initial_local_apic_id() as u32)
        .unwrap_or(0)
}

/// Sends an inter-processor interrupt `command` to the CPU with `apic_id`.
pub fn send_ipi(apic_id: u32, command: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is enabled on this CPU; the ICR MSR takes destination << 32.
        unsafe { Msr::new(X2APIC_ICR).write(((apic_id as u64) << 32) | command as u64) };
        return;
    }
    let base = XAPIC_BASE.load(Ordering::Relaxed);
    // SAFETY: the xAPIC page is identity mapped (below 4 GiB, uncached in our map) and these
    // are its architected ICR registers; xAPIC destinations are 8 bits.
    unsafe {
        let high = (base + XAPIC_ICR_HIGH) as *mut u32;
        let low = (base + XAPIC_ICR_LOW) as *mut u32;
        high.write_volatile((apic_id & 0xFF) << 24);
        low.write_volatile(command);
        for _ in 0..1_000_000 {
            if low.read_volatile() & ICR_DELIVERY_PENDING == 0 {
                break;
            }
            core::hint::spin_loop();
        }
    }
}

/// Masks every line of both 8259 PICs: firmware (SeaBIOS) leaves the PIT's IRQ0 running,
/// and the PIC's default vectors (8..15) would land on exception handlers once a CPU enables
/// interrupts to wait for its wake-up IPI.
pub fn mask_legacy_pic() {
    // SAFETY: 0x21 and 0xA1 are the 8259 interrupt-mask registers; masking every line has
    // no effect beyond stopping legacy interrupts, which nothing in numavisor uses.
    unsafe {
        x86_64::instructions::port::Port::<u8>::new(0x21).write(0xFF);
        x86_64::instructions::port::Port::<u8>::new(0xA1).write(0xFF);
    }
}

fn write_register(offset: u64, value: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is on; 0x800 + offset/16 is the architected MSR of the register.
        unsafe { Msr::new(0x800 + (offset >> 4) as u32).write(value as u64) };
    } else {
        let base = XAPIC_BASE.load(Ordering::Relaxed);
        // SAFETY: the xAPIC page is identity mapped (uncached); offset is an architected register.
        unsafe { ((base + offset) as *mut u32).write_volatile(value) };
    }
}

fn read_register(offset: u64) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: as in write_register; reading these timer registers has no side effects.
        unsafe { Msr::new(0x800 + (offset >> 4) as u32).read() as u32 }
    } else {
        let base = XAPIC_BASE.load(Ordering::Relaxed);
        // SAFETY: as in write_register.
        unsafe { ((base + offset) as *const u32).read_volatile() }
    }
}

/// Measures the host APIC timer's rate against the (calibrated) TSC, on the boot CPU; every
/// CPU's APIC timer runs from the same bus clock.
pub fn calibrate_timer() {
    write_register(TIMER_DIVIDE, DIVIDE_BY_1);
    write_register(LVT_TIMER, LVT_MASKED | WAKE_VECTOR as u32);
    write_register(TIMER_INITIAL_COUNT, u32::MAX);
    let start = super::tsc::now();
    super::tsc::delay_micros(2_000);
    let counted = u32::MAX - read_register(TIMER_CURRENT_COUNT);
    let elapsed = super::tsc::now().wrapping_sub(start).max(1);
    write_register(TIMER_INITIAL_COUNT, 0);
    let ratio = ((counted as u128) << 20) / elapsed as u128;
    TIMER_PER_TSC_2_20.store((ratio as u64).max(1), Ordering::Relaxed);
}

/// Arms this CPU's APIC timer to interrupt (vector WAKE_VECTOR, one-shot) at host TSC
/// `deadline` or within a few timer ticks if that has passed.
pub fn arm_timer_at(deadline: u64) {
    let ticks = deadline.saturating_sub(super::tsc::now());
    let count = (ticks as u128 * TIMER_PER_TSC_2_20.load(Ordering::Relaxed) as u128) >> 20;
    let count = count.clamp(1, u32::MAX as u128) as u32;
    write_register(TIMER_DIVIDE, DIVIDE_BY_1);
    write_register(LVT_TIMER, WAKE_VECTOR as u32);
    write_register(TIMER_INITIAL_COUNT, count);
}

/// Stops this CPU's APIC timer.
pub fn disarm_timer() {
    write_register(TIMER_INITIAL_COUNT, 0);
}
