//! `mode=hostile probe=nmi-blocking`: the NMI rules of the architecture, seen from inside an
//! NMI handler (Intel SDM vol. 3A §6.7.1, AMD APM vol. 2 §8.2.2). The guest sends itself NMIs
//! through its local APIC (xAPIC ICR, delivery mode NMI, its own APIC ID).
//!
//! - Self NMI: the handler's first run sends one more NMI and lingers (local APIC reads, each
//!   a VM exit, where a hypervisor that ignores NMI blocking would deliver it). The second
//!   NMI must not run inside the first handler, and must run right after its IRET: before
//!   the code that sent the first NMI goes on.
//! - Burst: the handler's first run sends ten NMIs back to back and lingers. They merge into
//!   one pending NMI: exactly two handler runs in all.
//!
//! Prints `{"event":"nmi_blocking","self_runs_in_handler":1,"self_runs_after_iret":2,
//! "self_runs":2,"burst_runs":2,"nested":0}` and `hostile_done`, exit 0; any other count
//! exits 1 after the event. (An interrupt shadow is a single instruction boundary, which
//! one vCPU cannot make an NMI arrive at from inside: the host tests cover that rule.)

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::console::{exit, report};

/// The NMI vector.
const NMI_VECTOR: usize = 2;
/// ICR low word: delivery mode NMI (0b100), level assert.
const ICR_NMI: u32 = 0x4400;
/// NMIs of the burst.
const BURST: u64 = 10;
/// Local APIC reads a handler run lingers for: each a VM exit, a chance for the hypervisor
/// to deliver an NMI it should hold back.
const LINGER_EXITS: u64 = 20;
/// Local APIC reads after a case's NMIs, for any late (wrong) delivery to show.
const SETTLE_EXITS: u64 = 200;

/// What the first handler run of a case does.
const CASE_SELF: u64 = 1;
const CASE_BURST: u64 = 2;

static CASE: AtomicU64 = AtomicU64::new(0);
static RUNS: AtomicU64 = AtomicU64::new(0);
/// Runs entered while another was inside the handler.
static NESTED: AtomicU64 = AtomicU64::new(0);
static INSIDE: AtomicBool = AtomicBool::new(false);
/// RUNS as the self-NMI case's first run saw it just before its IRET.
static RUNS_AT_FIRST_IRET: AtomicU64 = AtomicU64::new(0);
static OWN_ID: AtomicU64 = AtomicU64::new(0);

global_asm!(
    r#"
    .pushsection .text.nmi, "ax"
    .global nmi_probe_stub
nmi_probe_stub:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    push rbp
    mov rbp, rsp
    and rsp, -16
    call {handler}
    mov rsp, rbp
    pop rbp
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq
    .popsection
"#,
    handler = sym on_nmi,
);

unsafe extern "C" {
    fn nmi_probe_stub();
}

/// One NMI handler run: counted, nesting noticed, the case's NMIs sent by the first run.
extern "C" fn on_nmi() {
    if INSIDE.swap(true, Ordering::SeqCst) {
        NESTED.fetch_add(1, Ordering::SeqCst);
    }
    let run = RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    if run == 1 {
        let sends = match CASE.load(Ordering::SeqCst) {
            CASE_SELF => 1,
            CASE_BURST => BURST,
            _ => 0,
        };
        for _ in 0..sends {
            send_self_nmi();
        }
        linger(LINGER_EXITS);
        RUNS_AT_FIRST_IRET.store(RUNS.load(Ordering::SeqCst), Ordering::SeqCst);
    }
    INSIDE.store(false, Ordering::SeqCst);
}

fn send_self_nmi() {
    crate::smp::send_ipi(OWN_ID.load(Ordering::SeqCst) as u32, ICR_NMI);
}

/// `exits` local APIC reads, each a VM exit.
fn linger(exits: u64) {
    for _ in 0..exits {
        core::hint::black_box(crate::smp::own_apic_id());
    }
}

/// Runs case `case`: resets the counts, sends the first NMI, returns the runs counted right
/// after that send and once things settled.
fn run_case(case: u64) -> (u64, u64) {
    RUNS.store(0, Ordering::SeqCst);
    RUNS_AT_FIRST_IRET.store(0, Ordering::SeqCst);
    CASE.store(case, Ordering::SeqCst);
    send_self_nmi();
    let right_after = RUNS.load(Ordering::SeqCst);
    linger(SETTLE_EXITS);
    (right_after, RUNS.load(Ordering::SeqCst))
}

/// The probe (see the module note).
pub fn run() -> ! {
    OWN_ID.store(crate::smp::own_apic_id().into(), Ordering::SeqCst);
    crate::exceptions::set_gate(NMI_VECTOR, nmi_probe_stub as *const () as u64);
    let (self_after_iret, self_runs) = run_case(CASE_SELF);
    let self_in_handler = RUNS_AT_FIRST_IRET.load(Ordering::SeqCst);
    let (_, burst_runs) = run_case(CASE_BURST);
    let nested = NESTED.load(Ordering::SeqCst);
    report!(
        "{{\"event\":\"nmi_blocking\",\"self_runs_in_handler\":{self_in_handler},\"self_runs_after_iret\":{self_after_iret},\"self_runs\":{self_runs},\"burst_runs\":{burst_runs},\"nested\":{nested}}}"
    );
    let good = self_in_handler == 1
        && self_after_iret == 2
        && self_runs == 2
        && burst_runs == 2
        && nested == 0;
    if !good {
        exit(1)
    }
    report!("{{\"event\":\"hostile_done\",\"probe\":\"nmi-blocking\",\"count\":1}}");
    exit(0)
}
