//! CPU exceptions (vectors 0–31, Intel SDM vol. 3A §6.14): every one prints
//! `{"event":"exception","vector":N,"rip":N}` and exits with status 3.
//!
//! The stubs find RIP in the interrupt frame: at `[rsp]`, or at `[rsp + 8]` for the vectors
//! that push an error code (bit set in 0x6022_7D00: 8, 10–14, 17, 21, 29, 30).

use core::arch::{asm, global_asm};

use crate::console::{exit, report};

/// Exit status after an exception.
pub const EXCEPTION_STATUS: u32 = 3;
const VECTORS: usize = 32;
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
);

unsafe extern "C" {
    static EXCEPTION_STUBS: [u64; VECTORS];
}

#[repr(C, align(16))]
struct Idt([u64; 2 * VECTORS]);

static mut IDT: Idt = Idt([0; 2 * VECTORS]);

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
    for (gate, &handler) in idt.0.chunks_exact_mut(2).zip(stubs) {
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

#[repr(C, packed)]
struct IdtPointer {
    limit: u16,
    base: u64,
}
