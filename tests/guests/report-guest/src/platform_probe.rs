//! `mode=hostile probe=virtual-platform`: the virtual CPU and local APIC against the
//! architecture, where a peer's suite (kvm-unit-tests) found them wanting. Each check prints
//! one event with what the guest saw; the test holds them to the AMD APM and Intel SDM:
//! - `pmu_msrs` (AMD only): the legacy counters 0xC001_0000–7 exist, read 0, take writes;
//! - `tsc_aux`: RDTSCP's ECX, RDPID and RDMSR all return the TSC_AUX this vCPU wrote, across
//!   exits (the physical CPU's value is not the guest's);
//! - `cr8_tpr`: `MOV CR8` and the xAPIC TPR register are one state, both ways;
//! - `task_priority`: in x2APIC mode a self-IPI of class 4 waits while CR8 is 5 (through an
//!   exit) and arrives as soon as CR8 drops to 0 (no other exit); the xAPIC page reads all
//!   ones in x2APIC mode;
//! - `apic_disabled`: with IA32_APIC_BASE.EN clear, CPUID.1:EDX.APIC reads 0 and the xAPIC
//!   page reads all ones and drops writes; re-enabled, both come back;
//! - `ioapic_id`: the I/O APIC ID register keeps four bits (82093AA).
//!
//! The test guest runs in long mode at CPL 0 with the identity map covering the APIC pages.

use core::arch::asm;
use core::sync::atomic::Ordering;

use crate::console::report;
use crate::exceptions::{TIMER_TICKS, TIMER_VECTOR};
use crate::hw::{mmio_read, mmio_write, rdmsr, wrmsr, XAPIC};

const XAPIC_VERSION: u64 = 0x030;
const XAPIC_TPR: u64 = 0x080;
const IOAPIC: u64 = 0xFEC0_0000;

const IA32_APIC_BASE: u32 = 0x1B;
const TSC_AUX: u32 = 0xC000_0103;
const X2APIC_TPR: u32 = 0x808;
const X2APIC_SVR: u32 = 0x80F;
const X2APIC_SELF_IPI: u32 = 0x83F;
const APIC_BASE_BSP: u64 = 1 << 8;
const APIC_BASE_EXTD: u64 = 1 << 10;
const APIC_BASE_EN: u64 = 1 << 11;

/// Runs every check, then returns for `hostile_done`.
pub fn run() {
    legacy_performance_counters();
    tsc_aux();
    cr8_and_tpr();
    task_priority_gates_delivery();
    disabled_apic();
    ioapic_id();
}

fn read_cr8() -> u64 {
    let value: u64;
    // SAFETY: reading CR8 at CPL 0 has no side effect.
    unsafe { asm!("mov {}, cr8", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

fn write_cr8(class: u64) {
    // SAFETY: CR8 takes a class 0..15; it only changes which interrupts are held back.
    unsafe { asm!("mov cr8, {}", in(reg) class, options(nomem, nostack, preserves_flags)) };
}

/// A few exits (CPUID), so what the guest reads afterwards has been through the hypervisor.
fn exits() {
    for _ in 0..8 {
        core::hint::black_box(core::arch::x86_64::__cpuid(0));
    }
}

fn amd() -> bool {
    core::arch::x86_64::__cpuid(0).ebx == u32::from_le_bytes(*b"Auth")
}

fn legacy_performance_counters() {
    if !amd() {
        report!("{{\"event\":\"pmu_msrs\",\"vendor\":\"intel\"}}");
        return;
    }
    let mut values = [u64::MAX; 8];
    for (i, value) in values.iter_mut().enumerate() {
        let msr = 0xC001_0000 + i as u32;
        wrmsr(msr, 0);
        *value = rdmsr(msr);
    }
    let [a, b, c, d, e, f, g, h] = values;
    report!(
        "{{\"event\":\"pmu_msrs\",\"vendor\":\"amd\",\"values\":[{a},{b},{c},{d},{e},{f},{g},{h}]}}"
    );
}

fn tsc_aux() {
    // Linux's layout: node << 12 | CPU.
    const WRITTEN: u64 = (1 << 12) | 5;
    let rdtscp = core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 27) != 0;
    let rdpid = core::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 22) != 0;
    wrmsr(TSC_AUX, WRITTEN);
    exits();
    let through_rdtscp = rdtscp.then(|| {
        let aux: u32;
        // SAFETY: CPUID says RDTSCP exists; it writes EDX:EAX and ECX only.
        unsafe {
            asm!("rdtscp", out("eax") _, out("edx") _, out("ecx") aux, options(nomem, nostack))
        };
        aux
    });
    let through_rdpid = rdpid.then(|| {
        let aux: u64;
        // SAFETY: CPUID says RDPID exists (`F3 0F C7 /7`, RDPID RAX); it writes RAX only.
        unsafe { asm!(".byte 0xf3, 0x0f, 0xc7, 0xf8", out("rax") aux, options(nomem, nostack)) };
        aux as u32
    });
    let through_rdmsr = rdmsr(TSC_AUX);
    let show = |v: Option<u32>| match v {
        Some(v) => alloc::format!("{v}"),
        None => "null".into(),
    };
    report!(
        "{{\"event\":\"tsc_aux\",\"written\":{WRITTEN},\"rdtscp\":{},\"rdpid\":{},\"rdmsr\":{through_rdmsr}}}",
        show(through_rdtscp),
        show(through_rdpid)
    );
}

fn cr8_and_tpr() {
    write_cr8(0xF);
    exits();
    let tpr_after_cr8 = mmio_read(XAPIC + XAPIC_TPR);
    mmio_write(XAPIC + XAPIC_TPR, 0x30);
    exits();
    let cr8_after_tpr = read_cr8();
    write_cr8(0);
    let tpr_after_zero = mmio_read(XAPIC + XAPIC_TPR);
    report!(
        "{{\"event\":\"cr8_tpr\",\"tpr_after_cr8\":{tpr_after_cr8},\"cr8_after_tpr\":{cr8_after_tpr},\"tpr_after_zero\":{tpr_after_zero}}}"
    );
}

/// Opens an interrupt window of a few instructions with an exit (CPUID) inside it, then
/// returns the timer vector's count.
fn window() -> u64 {
    // SAFETY: interrupts on for a CPUID and two NOPs; the only vector sent is the timer
    // stub's, which counts, sends EOI and returns.
    unsafe {
        asm!("sti", "nop", "push rbx", "cpuid", "pop rbx", "nop", "nop", "cli",
            inout("eax") 0u32 => _, out("ecx") _, out("edx") _)
    };
    TIMER_TICKS.load(Ordering::SeqCst)
}

/// The same window without an instruction that exits: what arrives here arrives because the
/// hypervisor already had its chance (the CR8 write itself must exit where it matters).
fn window_without_exit() -> u64 {
    // SAFETY: interrupts on for four NOPs; as for `window`.
    unsafe {
        asm!(
            "sti",
            "nop",
            "nop",
            "nop",
            "nop",
            "cli",
            options(nomem, nostack)
        )
    };
    TIMER_TICKS.load(Ordering::SeqCst)
}

fn task_priority_gates_delivery() {
    let base = rdmsr(IA32_APIC_BASE);
    wrmsr(IA32_APIC_BASE, base | APIC_BASE_EN | APIC_BASE_EXTD);
    wrmsr(X2APIC_SVR, 0x1FF);
    let page_in_x2apic_mode = mmio_read(XAPIC + XAPIC_VERSION);
    write_cr8(5);
    let tpr = rdmsr(X2APIC_TPR);
    let before = TIMER_TICKS.load(Ordering::SeqCst);
    wrmsr(X2APIC_SELF_IPI, TIMER_VECTOR as u64);
    let held = window() - before;
    write_cr8(0);
    let delivered = window_without_exit() - before;
    report!(
        "{{\"event\":\"task_priority\",\"tpr\":{tpr},\"held\":{held},\"delivered\":{delivered},\"xapic_page\":{page_in_x2apic_mode}}}"
    );
}

fn disabled_apic() {
    let apic_bit = || core::arch::x86_64::__cpuid(1).edx & (1 << 9) != 0;
    let bsp = rdmsr(IA32_APIC_BASE) & APIC_BASE_BSP;
    // x2APIC → disabled is the architected way out of x2APIC mode.
    wrmsr(IA32_APIC_BASE, XAPIC | bsp);
    let cpuid_disabled = apic_bit();
    let version_disabled = mmio_read(XAPIC + XAPIC_VERSION);
    mmio_write(XAPIC + XAPIC_TPR, 0x70);
    let tpr_disabled = mmio_read(XAPIC + XAPIC_TPR);
    wrmsr(IA32_APIC_BASE, XAPIC | bsp | APIC_BASE_EN);
    let cpuid_enabled = apic_bit();
    let version_enabled = mmio_read(XAPIC + XAPIC_VERSION);
    let tpr_enabled = mmio_read(XAPIC + XAPIC_TPR);
    report!(
        "{{\"event\":\"apic_disabled\",\"cpuid_apic\":{cpuid_disabled},\"version\":{version_disabled},\"tpr\":{tpr_disabled},\"cpuid_apic_enabled\":{cpuid_enabled},\"version_enabled\":{version_enabled},\"tpr_enabled\":{tpr_enabled}}}"
    );
}

fn ioapic_id() {
    let ioregsel = IOAPIC;
    let iowin = IOAPIC + 0x10;
    mmio_write(ioregsel, 0);
    let before = mmio_read(iowin);
    mmio_write(iowin, 0xFF00_0000);
    let written = mmio_read(iowin);
    mmio_write(iowin, before);
    report!("{{\"event\":\"ioapic_id\",\"before\":{before},\"after_all_ones\":{written}}}");
}
