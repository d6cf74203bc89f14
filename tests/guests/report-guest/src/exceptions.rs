//! CPU exceptions (vectors 0–31, Intel SDM vol. 3A §6.14): every one prints
//! `{"event":"exception","vector":N,"rip":N}` and exits with status 3. Vector
//! [`TIMER_VECTOR`] is the local APIC timer of `mode=timer-loop`: it counts and sends EOI.
//!
//! The stubs find RIP in the interrupt frame: at `[rsp]`, or at `[rsp + 8]` for the vectors
//! that push an error code (bit set in 0x6022_7D00: 8, 10–14, 17, 21, 29, 30).

use core::arch::{asm, global_asm};

use crate::console::{exit, report};

/// Exit status after an exception.
pub const EXCEPTION_STATUS: u32 = 3;
const VECTORS: usize = 32;
/// The local APIC timer's vector in `mode=timer-loop`.
pub const TIMER_VECTOR: usize = 0x40;
/// Gates in the IDT: the exceptions and the timer.
const GATES: usize = TIMER_VECTOR + 1;
const CODE64_SELECTOR: u64 = 0x08;
/// Present, DPL 0, 64-bit interrupt gate.
const INTERRUPT_GATE: u64 = 0x8E;

global_asm!(
    r#"
    .pushsection .text.exceptions, "ax"
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
exception_stub_\vector:
    .if (0x60227D00 >> \vector) & 1
    mov rsi, [rsp + 8]
    .else
    mov rsi, [rsp]
    .endif
    mov edi, \vector
    and rsp, -16
    call {handler}
    .endr

    /* The local APIC timer (x2APIC mode): count the tick, EOI, return. */
    .global timer_interrupt_stub
timer_interrupt_stub:
    push rax
    push rcx
    push rdx
    lock inc qword ptr [rip + {ticks}]
    mov ecx, 0x80B
    xor eax, eax
    xor edx, edx
    wrmsr
    pop rdx
    pop rcx
    pop rax
    iretq
    .popsection

    .pushsection .rodata.exception_stubs, "a"
    .p2align 3
EXCEPTION_STUBS:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\vector
    .endr
    .popsection
"#,
    handler = sym exception,
    ticks = sym TIMER_TICKS,
);

/// Timer interrupts taken so far (`mode=timer-loop`).
pub static TIMER_TICKS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

unsafe extern "C" {
    static EXCEPTION_STUBS: [u64; VECTORS];
    fn timer_interrupt_stub();
}

#[repr(C, align(16))]
struct Idt([u64; 2 * GATES]);

static mut IDT: Idt = Idt([0; 2 * GATES]);

extern "C" fn exception(vector: u64, rip: u64) -> ! {
    report!("{{\"event\":\"exception\",\"vector\":{vector},\"rip\":{rip}}}");
    exit(EXCEPTION_STATUS)
}

/// Build the IDT and load it.
pub fn install() {
    // SAFETY: single-threaded, before any exception can use it; the stubs table is plain data
    // the assembler filled with addresses.
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) };
    // SAFETY: EXCEPTION_STUBS is immutable data defined above.
    let stubs = unsafe { &*core::ptr::addr_of!(EXCEPTION_STUBS) };
    let timer = timer_interrupt_stub as *const () as u64;
    let handlers = stubs
        .iter()
        .copied()
        .map(Some)
        .chain((VECTORS..GATES).map(|v| (v == TIMER_VECTOR).then_some(timer)));
    for (gate, handler) in idt.0.chunks_exact_mut(2).zip(handlers) {
        let Some(handler) = handler else { continue };
        gate[0] = (handler & 0xFFFF)
            | (CODE64_SELECTOR << 16)
            | (INTERRUPT_GATE << 40)
            | (((handler >> 16) & 0xFFFF) << 48);
        gate[1] = handler >> 32;
    }
    let pointer = IdtPointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: idt.0.as_ptr() as u64,
    };
    // SAFETY: the IDT is static and its gates point at the stubs above.
    unsafe { asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack)) };
}

/// Points gate `vector` (one of the exceptions) at `handler` instead of its reporting stub.
pub fn set_gate(vector: usize, handler: u64) {
    // SAFETY: the IDT is static; one 16-byte gate is rewritten by the only CPU using it,
    // which takes no exception on that vector meanwhile (the caller's to ensure).
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) };
    let gate = &mut idt.0[2 * vector..2 * vector + 2];
    gate[0] = (handler & 0xFFFF)
        | (CODE64_SELECTOR << 16)
        | (INTERRUPT_GATE << 40)
        | (((handler >> 16) & 0xFFFF) << 48);
    gate[1] = handler >> 32;
}

#[repr(C, packed)]
struct IdtPointer {
    limit: u16,
    base: u64,
}
