//! Starting the application processors: INIT, start-up IPI, start-up IPI (Intel SDM vol. 3A
//! §9.4.4.1; MP spec B.4), one CPU at a time, each on its own stack.
//!
//! Every wait is bounded: a CPU that does not report in before its deadline is sent INIT again
//! (so it cannot wake later on a stack we gave to the next CPU) and reported as failed.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::{apic, gdt, idt, trampoline, tsc};

/// The INIT-to-SIPI delay the MP protocol asks for, on processors that need it.
const LEGACY_INIT_DELAY_MICROS: u64 = 10_000;
/// How long the first SIPI gets before the second is sent.
const FIRST_SIPI_MICROS: u64 = 200;
/// How long a CPU gets to report in after the second SIPI.
const REPORT_IN_MICROS: u64 = 100_000;

/// Nobody has reported in yet.
const NOBODY: u64 = u64::MAX;

static ARRIVED_INDEX: AtomicU64 = AtomicU64::new(NOBODY);
static ARRIVED_APIC_ID: AtomicU32 = AtomicU32::new(0);
static X2APIC_MODE: AtomicU32 = AtomicU32::new(0);
/// The boot CPU's APIC ID: a CPU that reported in wakes it.
static BSP_APIC_ID: AtomicU32 = AtomicU32::new(0);
/// The task area of the AP being started (one at a time: the next starts only once this one
/// reported in, or was sent back to INIT).
static STARTING_TASK_AREA: AtomicU64 = AtomicU64::new(0);

/// Waits until `condition` or `deadline` (host TSC) with the CPU halted between checks: its
/// APIC timer (armed for the deadline) or a reporting AP's wake-up IPI ends each halt. An
/// emulator running every CPU on one thread (QEMU's TCG with `-icount`) lets the AP run only
/// while this CPU halts, where a spin would hold it off for a whole time slice.
fn wait_halted(deadline: u64, mut condition: impl FnMut() -> bool) -> bool {
    let start = tsc::now();
    let mut met = condition();
    while !met && tsc::now() < deadline {
        apic::arm_timer_at(deadline);
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
        met = condition();
    }
    apic::disarm_timer();
    tsc::count_wait(tsc::now().wrapping_sub(start));
    met
}

/// One AP to start: its MADT APIC ID and the top of the stack allocated for it.
#[derive(Clone, Copy, Debug)]
pub struct ApLaunch {
    pub apic_id: u32,
    pub stack_top: u64,
    /// Its task area ([`super::gdt::load_task`]): `TASK_AREA_BYTES` reserved for it.
    pub task_area: u64,
}

/// What happened to one AP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApOutcome {
    /// Reported in, with the APIC ID it read from CPUID.
    Online { reported_apic_id: u32 },
    /// Did not report in within the deadline.
    NoResponse,
}

/// Prepares the trampoline at `page` (a free 4 KiB page below 1 MiB) for this boot.
pub fn install_trampoline(page: u64, cr3: u64, x2apic: bool) {
    let (blob, layout) = trampoline::blob();
    X2APIC_MODE.store(x2apic as u32, Ordering::SeqCst);
    // SAFETY: the caller reserved `page` (identity mapped, below 1 MiB, 4 KiB) for the
    // trampoline and nothing else uses it; the blob is shorter than a page (checked).
    unsafe {
        assert!(
            blob.len() <= 4096 - 64,
            "AP trampoline larger than its page"
        );
        let base = page as *mut u8;
        core::ptr::copy_nonoverlapping(blob.as_ptr(), base, blob.len());
        let put32 =
            |offset: usize, value: u32| (base.add(offset) as *mut u32).write_unaligned(value);
        let put64 =
            |offset: usize, value: u64| (base.add(offset) as *mut u64).write_unaligned(value);
        put32(layout.pm32_target, (page + layout.pm32_code as u64) as u32);
        let gdt_pointer = gdt::gdt_pointer_address() as *const u8;
        core::ptr::copy_nonoverlapping(gdt_pointer, base.add(trampoline::MAILBOX_GDT_POINTER), 6);
        put64(trampoline::MAILBOX_CR3, cr3);
        put64(trampoline::MAILBOX_ENTRY, ap_main as *const () as u64);
        put64(
            trampoline::MAILBOX_LONG_TARGET,
            page + layout.long_code as u64,
        );
    }
}

/// The INIT-to-SIPI delay for this processor: none on Intel family 6, AMD family 0Fh and
/// later, and Hygon family 18h and later, which leave INIT at once (Linux's
/// `smp_quirk_init_udelay`, after Intel SDM vol. 3A §9.4.4.1: the 10 ms wait is for the
/// external APICs of older processors), nor on a virtual CPU (CPUID.1:ECX[31], which every
/// hypervisor sets for its guests: its INIT is emulated, with no APIC bus to settle); 10 ms
/// elsewhere.
fn init_delay_micros() -> u64 {
    let cpuid = raw_cpuid::CpuId::new();
    let vendor = cpuid.get_vendor_info();
    let features = cpuid.get_feature_info();
    let family = features.as_ref().map_or(0, |f| f.family_id());
    if features.is_some_and(|f| f.has_hypervisor()) {
        return 0;
    }
    let modern = match vendor.as_ref().map(|v| v.as_str()) {
        Some("GenuineIntel") => family == 6,
        Some("AuthenticAMD") => family >= 0xF,
        Some("HygonGenuine") => family >= 0x18,
        _ => false,
    };
    if modern {
        0
    } else {
        LEGACY_INIT_DELAY_MICROS
    }
}

/// Starts `aps` one by one through the trampoline at `page`; one outcome per AP.
pub fn start_all(page: u64, aps: &[ApLaunch], mut outcome: impl FnMut(usize, ApOutcome)) {
    let vector = (page >> 12) as u32;
    let init_delay = init_delay_micros();
    BSP_APIC_ID.store(apic::current_apic_id(), Ordering::SeqCst);
    for (index, ap) in aps.iter().enumerate() {
        ARRIVED_INDEX.store(NOBODY, Ordering::SeqCst);
        STARTING_TASK_AREA.store(ap.task_area, Ordering::SeqCst);
        // SAFETY: the trampoline page is ours (see install_trampoline); no AP runs it now
        // because the previous one has reported in or was sent back to INIT.
        unsafe {
            let base = page as *mut u8;
            (base.add(trampoline::MAILBOX_STACK) as *mut u64).write_volatile(ap.stack_top);
            (base.add(trampoline::MAILBOX_CPU_INDEX) as *mut u64).write_volatile(index as u64);
        }
        let arrived = || ARRIVED_INDEX.load(Ordering::SeqCst) == index as u64;
        apic::send_ipi(ap.apic_id, apic::ICR_INIT_ASSERT);
        apic::send_ipi(ap.apic_id, apic::ICR_INIT_DEASSERT);
        tsc::delay_micros(init_delay);
        apic::send_ipi(ap.apic_id, apic::ICR_STARTUP | vector);
        let mut online = wait_halted(tsc::deadline_after_micros(FIRST_SIPI_MICROS), arrived);
        if !online {
            apic::send_ipi(ap.apic_id, apic::ICR_STARTUP | vector);
            online = wait_halted(tsc::deadline_after_micros(REPORT_IN_MICROS), arrived);
        }
        if online {
            let reported_apic_id = ARRIVED_APIC_ID.load(Ordering::SeqCst);
            outcome(index, ApOutcome::Online { reported_apic_id });
        } else {
            // Park it for good so a late start cannot run on the next CPU's stack.
            apic::send_ipi(ap.apic_id, apic::ICR_INIT_ASSERT);
            outcome(index, ApOutcome::NoResponse);
        }
    }
}

/// Where every AP lands in long mode, on its own stack.
extern "C" fn ap_main(index: u64) -> ! {
    idt::load();
    // SAFETY: the task area `start_all` reserved for this AP alone, read before it reports in
    // (the next AP's is stored only after that).
    unsafe { gdt::load_task(STARTING_TASK_AREA.load(Ordering::SeqCst)) };
    apic::enable(X2APIC_MODE.load(Ordering::SeqCst) != 0);
    ARRIVED_APIC_ID.store(apic::current_apic_id(), Ordering::SeqCst);
    ARRIVED_INDEX.store(index, Ordering::SeqCst);
    apic::wake(BSP_APIC_ID.load(Ordering::SeqCst));
    serve_vcpus()
}

/// What a parked CPU runs: given its APIC ID, the work queued for it (a vCPU until its
/// partition stops); false when there is none. The partition manager registers it at
/// start-up, with its context, so this layer never calls up into it.
pub type CpuWork = &'static (dyn Fn(u32) -> bool + Sync);

static WORK: spin::Once<CpuWork> = spin::Once::new();

/// Registers what parked CPUs run (once, before any work is queued).
pub fn register_work(work: CpuWork) {
    WORK.call_once(|| work);
}

/// The parked loop of every CPU once start-up is done: run the work queued for this CPU, or
/// sleep until the wake-up IPI. `sti; hlt` is atomic (STI's one-instruction shadow), so a wake
/// sent between the check and the HLT is not lost.
pub fn serve_vcpus() -> ! {
    let apic_id = apic::current_apic_id();
    loop {
        x86_64::instructions::interrupts::disable();
        if WORK.get().is_some_and(|work| work(apic_id)) {
            continue;
        }
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}
