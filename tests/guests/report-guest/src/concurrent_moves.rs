//! `mode=hostile probe=concurrent-moves child=ID [count=N] [pages=N]`: two vCPUs of one
//! partition move pages at the same time, which once deadlocked the hypervisor's memory
//! catch-up (`numavisor_policy::partition::memory_sync`: each vCPU waited for the other to
//! record the new memory generation, and a waiting vCPU never recorded its own).
//!
//! The partition needs `dynamic = true` (its virtio balloon) and two vCPUs, and must be the
//! `parent` of partition `child`. vCPU 0 starts vCPU 1 ([`crate::smp`]), then inflates and
//! deflates `pages` pages (default 4, at most [`MAX_PAGES`]) through its balloon, `count`
//! times (default 2000); vCPU 1 meanwhile deposits `pages` other pages into `child`'s pool
//! and withdraws them back (hypercalls 3 and 4), `count` times. Every call must succeed with
//! every page. Each loop prints `moves_progress` four times; at the end vCPU 0 checks with
//! hypercall 6 that it holds all its RAM again, prints one `concurrent_moves` event with both
//! counts and statuses, deposits one page into `child` for good (the child's signal to end,
//! `mode=watch ... until=1`) and prints `hostile_done` (count: the moves of both loops), exit
//! 0. Anything refused prints the event with the error and exits 1.

use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};

use numavisor_policy::hypercall::abi::{Status, ALL_NODES, PARTITION_SELF};

use crate::console::{exit, report, Json};
use crate::hypercalls::{call, status};
use crate::start_info::MemRange;
use crate::virtio_balloon::{Balloon, DEFLATE, INFLATE};

/// Most pages either loop moves at a time.
pub const MAX_PAGES: usize = 16;
const PAGE: usize = 4096;
/// Hypercall codes (`docs/hypercalls.md`).
const DEPOSIT: u64 = 3;
const WITHDRAW: u64 = 4;
const GET_MEMORY_INFO: u64 = 6;

#[repr(C, align(4096))]
struct Pages([[u8; PAGE]; MAX_PAGES]);

/// A page of GPAs for hypercalls 3 and 4 (a list may not cross a page).
#[repr(C, align(4096))]
struct List([u64; PAGE / 8]);

#[repr(C, align(4096))]
struct OnePage([u8; PAGE]);

/// vCPU 0's balloon pages, vCPU 1's deposit pages (and its page of GPAs for the calls), the
/// page deposited at the end: only their addresses are used, the hypervisor moves them.
static mut BALLOON_PAGES: Pages = Pages([[0; PAGE]; MAX_PAGES]);
static mut DEPOSIT_PAGES: Pages = Pages([[0; PAGE]; MAX_PAGES]);
static mut DEPOSIT_LIST: List = List([0; PAGE / 8]);
static mut FAREWELL_PAGE: OnePage = OnePage([0; PAGE]);

/// vCPU 1's job, set by vCPU 0 before it starts it.
static CHILD: AtomicU64 = AtomicU64::new(0);
static COUNT: AtomicU64 = AtomicU64::new(0);
static PAGE_COUNT: AtomicU64 = AtomicU64::new(0);
/// vCPU 1's results: rounds done, and for a refused call its code, status and pages moved.
static AP_DONE: AtomicU64 = AtomicU64::new(0);
static AP_FAILED_CALL: AtomicU64 = AtomicU64::new(0);
static AP_FAILED_STATUS: AtomicU64 = AtomicU64::new(0);
static AP_FAILED_PAGES: AtomicU64 = AtomicU64::new(0);
/// Set last by vCPU 1: its results are final.
static AP_FINISHED: AtomicU64 = AtomicU64::new(0);

fn page_gpas(pages: *const Pages, count: usize) -> impl Iterator<Item = u64> {
    (0..count).map(move |i| pages as u64 + (i * PAGE) as u64)
}

/// The probe (see the module note); `option` reads the command line.
pub fn run(map: &[MemRange], rsdp: u64, option: &dyn Fn(&str) -> Option<u64>) -> ! {
    let Some(child) = option("child") else {
        fail("child= names no partition", "");
    };
    let count = option("count").unwrap_or(2000);
    let pages = option("pages").unwrap_or(4).clamp(1, MAX_PAGES as u64) as usize;
    CHILD.store(child, Ordering::SeqCst);
    COUNT.store(count, Ordering::SeqCst);
    PAGE_COUNT.store(pages as u64, Ordering::SeqCst);

    let mut balloon = Balloon::init().unwrap_or_else(|e| fail(e, ""));
    let own = crate::smp::own_apic_id();
    let ids = crate::acpi_report::apic_ids(map, rsdp).unwrap_or_else(|e| fail(e, ""));
    let Some(&other) = ids.iter().find(|&&id| id != own) else {
        fail("the MADT lists no second processor", "");
    };
    if let Err(e) = crate::smp::start_cpu(other, deposit_loop) {
        fail(e, "");
    }

    let gpas: alloc::vec::Vec<u64> = page_gpas(&raw const BALLOON_PAGES, pages).collect();
    let mut balloon_done = 0;
    let mut balloon_error: Option<&str> = None;
    for round in 0..count {
        if let Err(e) = balloon
            .send(INFLATE, &gpas)
            .and_then(|()| balloon.send(DEFLATE, &gpas))
        {
            balloon_error = Some(e);
            break;
        }
        balloon_done = round + 1;
        progress(0, balloon_done, count);
    }
    // vCPU 1 runs on (its guest runs with the partition's time limit, so a lost AP ends there).
    while AP_FINISHED.load(Ordering::SeqCst) == 0 {
        core::hint::spin_loop();
    }
    let ap_done = AP_DONE.load(Ordering::SeqCst);
    let ap_status = match AP_FAILED_CALL.load(Ordering::SeqCst) {
        0 => String::from("\"success\""),
        code => alloc::format!(
            "{{\"call\":{code},\"status\":{},\"pages\":{}}}",
            Json(status(AP_FAILED_STATUS.load(Ordering::SeqCst))),
            AP_FAILED_PAGES.load(Ordering::SeqCst)
        ),
    };
    let (info, _, given_up) = call(GET_MEMORY_INFO, PARTITION_SELF, 0, ALL_NODES);
    let balloon_status = balloon_error.map_or(String::from("\"success\""), |e| {
        alloc::format!("{}", Json(e))
    });
    report!(
        "{{\"event\":\"concurrent_moves\",\"count\":{count},\"pages\":{pages},\"apic_ids\":[{own},{other}],\"balloon\":{{\"done\":{balloon_done},\"status\":{balloon_status}}},\"deposits\":{{\"done\":{ap_done},\"status\":{ap_status}}},\"given_up_after\":[{},{given_up}]}}",
        Json(status(info)),
    );
    let finished = balloon_done == count && ap_done == count;
    if !finished || Status::from_code(info) != Some(Status::Success) || given_up != 0 {
        exit(1)
    }
    // One page deposited for good: the child's signal that the moves are over.
    // SAFETY: vCPU 1 has finished; only this CPU uses the list now.
    let list = unsafe { &mut (*core::ptr::addr_of_mut!(DEPOSIT_LIST)).0 };
    list[0] = &raw const FAREWELL_PAGE as u64;
    let (code, moved, _) = call(DEPOSIT, child, list.as_ptr() as u64, 1);
    if Status::from_code(code) != Some(Status::Success) || moved != 1 {
        fail("the farewell deposit was refused", status(code));
    }
    report!(
        "{{\"event\":\"hostile_done\",\"probe\":\"concurrent-moves\",\"count\":{}}}",
        balloon_done + ap_done
    );
    exit(0)
}

/// vCPU 1: `COUNT` rounds of deposit and withdrawal of `PAGE_COUNT` pages into `CHILD`.
extern "C" fn deposit_loop() -> ! {
    let child = CHILD.load(Ordering::SeqCst);
    let count = COUNT.load(Ordering::SeqCst);
    let pages = PAGE_COUNT.load(Ordering::SeqCst) as usize;
    // SAFETY: only this CPU uses the list until it sets AP_FINISHED.
    let list = unsafe { &mut (*core::ptr::addr_of_mut!(DEPOSIT_LIST)).0 };
    for (slot, gpa) in list
        .iter_mut()
        .zip(page_gpas(&raw const DEPOSIT_PAGES, pages))
    {
        *slot = gpa;
    }
    let at = list.as_ptr() as u64;
    for round in 0..count {
        for code in [DEPOSIT, WITHDRAW] {
            let (result, moved, _) = call(code, child, at, pages as u64);
            if Status::from_code(result) != Some(Status::Success) || moved != pages as u64 {
                AP_FAILED_CALL.store(code, Ordering::SeqCst);
                AP_FAILED_STATUS.store(result, Ordering::SeqCst);
                AP_FAILED_PAGES.store(moved, Ordering::SeqCst);
                finish();
            }
        }
        AP_DONE.store(round + 1, Ordering::SeqCst);
        progress(1, round + 1, count);
    }
    finish()
}

/// vCPU 1 is done: its results are final; it halts for good (interrupts off).
fn finish() -> ! {
    AP_FINISHED.store(1, Ordering::SeqCst);
    loop {
        // SAFETY: halting this CPU for good; vCPU 0 ends the partition.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// `moves_progress` at each quarter of the rounds: the serial log shows how far each loop
/// got if the partition hangs.
fn progress(vcpu: u32, done: u64, count: u64) {
    if done.is_multiple_of((count / 4).max(1)) {
        report!("{{\"event\":\"moves_progress\",\"vcpu\":{vcpu},\"done\":{done}}}");
    }
}

fn fail(message: &str, detail: &str) -> ! {
    report!(
        "{{\"event\":\"concurrent_moves\",\"error\":{},\"detail\":{}}}",
        Json(message),
        Json(detail)
    );
    exit(1)
}
