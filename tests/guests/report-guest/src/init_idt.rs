//! `mode=hostile probe=init-idt`: an exception in the real-mode start-up code of a vCPU
//! started by INIT/SIPI must reach the guest's real-mode IVT, as on hardware (after INIT the
//! IDTR has base 0 and limit 0xFFFF: Intel SDM vol. 3A Table 10-1, AMD APM vol. 2 Table 14-1).
//! numavisor once gave such a vCPU the PVH entry's IDT limit of 0, so the first exception
//! (or NMI) there triple-faulted the whole partition.
//!
//! The partition needs two vCPUs. vCPU 0 points the IVT's #UD entry at a handler in the AP
//! trampoline and starts vCPU 1 with `ud2` as its first real-mode instruction
//! ([`crate::smp::start_cpu_through_a_real_mode_fault`]); the handler counts itself and steps
//! over the `ud2`, and the trampoline goes on into long mode, where vCPU 1 runs [`parked`].
//! vCPU 0 then prints `{"event":"init_idt","handler_ran":true,"handler_runs":1,
//! "ap_reached_long_mode":true}` and `hostile_done`, exit 0. Anything else prints the event
//! with an error and exits 1; a triple fault stops the partition before it can print more
//! than `start`, `memmap` (the host's `partition_stopped` event says `triple-fault`).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::console::{exit, report, Json};
use crate::start_info::MemRange;

/// Set by vCPU 1 once it runs its job in long mode.
static AP_RUNNING: AtomicU64 = AtomicU64::new(0);
/// Polls of [`AP_RUNNING`] after the trampoline counted the AP in.
const JOB_POLLS: u64 = 20_000_000;

/// The probe (see the module note).
pub fn run(map: &[MemRange], rsdp: u64) -> ! {
    let own = crate::smp::own_apic_id();
    let ids = match crate::acpi_report::apic_ids(map, rsdp) {
        Ok(ids) => ids,
        Err(message) => fail(message),
    };
    let Some(&other) = ids.iter().find(|&&id| id != own) else {
        fail("the MADT lists no second processor");
    };
    let handler_runs = match crate::smp::start_cpu_through_a_real_mode_fault(other, parked) {
        Ok(runs) => runs,
        Err(message) => fail(message),
    };
    let running = (0..JOB_POLLS).any(|_| {
        core::hint::spin_loop();
        AP_RUNNING.load(Ordering::SeqCst) != 0
    });
    report!(
        "{{\"event\":\"init_idt\",\"handler_ran\":{},\"handler_runs\":{handler_runs},\"ap_reached_long_mode\":{running}}}",
        handler_runs > 0
    );
    if handler_runs != 1 || !running {
        exit(1)
    }
    report!("{{\"event\":\"hostile_done\",\"probe\":\"init-idt\",\"count\":1}}");
    exit(0)
}

/// vCPU 1's job in long mode: say so, then halt for good (interrupts off).
extern "C" fn parked() -> ! {
    AP_RUNNING.store(1, Ordering::SeqCst);
    loop {
        // SAFETY: halting this CPU for good; vCPU 0 ends the partition.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

fn fail(message: &str) -> ! {
    report!("{{\"event\":\"init_idt\",\"error\":{}}}", Json(message));
    exit(1)
}
