//! The host's IDT: 32 exception vectors that all report and stop, the NMI (counted), the
//! wake-up vector, and the vectors of passed-through devices' messages (noted for the vCPU
//! loop, `partition::msi_routes`).
//!
//! Intel SDM vol. 3A §6.14 (64-bit IDT gates), §6.15 (which vectors push an error code).
//! A fault in the hypervisor is a bug: the handler prints the vector, its name, the error code,
//! CR2 and every general register, emits a `fatal` report line, and ends the run with the
//! failure status ([`crate::platform::debug_exit`]) — never a silent triple-fault reboot. The
//! double fault has a stack of its own (IST1, [`super::gdt::load_task`]): it is what a fault
//! with a broken stack pointer becomes.

use core::arch::{asm, global_asm};

use super::apic;
use super::gdt::{DOUBLE_FAULT_IST, KERNEL_CODE64};

global_asm!(
    r#"
    .pushsection .text.exceptions, "ax"
    .code64
    .altmacro
    .macro exception_stub vec
    .p2align 4
exception_stub_\vec:
    .if (\vec == 8) || (\vec == 10) || (\vec == 11) || (\vec == 12) || (\vec == 13) || (\vec == 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
    .else
    push 0
    .endif
    push \vec
    jmp exception_common
    .endm

    .set i, 0
    .rept 32
    exception_stub %i
    .set i, i + 1
    .endr

exception_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    and rsp, -16
    call {handler}
4:
    cli
    hlt
    jmp 4b

    /* an NMI (vector 2): counted, not fatal; whoever runs next reports it (a guest's
       run ends with #VMEXIT(NMI) and the host takes it here after STGI) */
    .global nmi_stub
    .p2align 4
nmi_stub:
    lock inc qword ptr [rip + {nmis}]
    iretq

    /* the wake-up IPI (vector WAKE_VECTOR): acknowledge and return to the HLT loop */
    .global wake_interrupt_stub
    .p2align 4
wake_interrupt_stub:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    call {eoi}
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

    /* a passed-through device's message (vectors DEVICE_VECTORS): noted and acknowledged;
       the vCPU loop delivers it to its guest (`partition::passthrough`) */
    .macro device_stub vec
    .p2align 4
device_stub_\vec:
    push rdi
    mov edi, \vec
    jmp device_common
    .endm

    .set i, {first_device}
    .rept {device_count}
    device_stub %i
    .set i, i + 1
    .endr

device_common:
    push rax
    push rcx
    push rdx
    push rsi
    push r8
    push r9
    push r10
    push r11
    call {device}
    pop r11
    pop r10
    pop r9
    pop r8
    pop rsi
    pop rdx
    pop rcx
    pop rax
    pop rdi
    iretq

    .macro stub_address vec
    .quad exception_stub_\vec
    .endm
    .macro device_address vec
    .quad device_stub_\vec
    .endm
    .pushsection .rodata.exception_stubs, "a"
    .p2align 3
    .global EXCEPTION_STUBS
EXCEPTION_STUBS:
    .set i, 0
    .rept 32
    stub_address %i
    .set i, i + 1
    .endr
    .global DEVICE_STUBS
DEVICE_STUBS:
    .set i, {first_device}
    .rept {device_count}
    device_address %i
    .set i, i + 1
    .endr
    .popsection
    .noaltmacro
    .popsection
"#,
    handler = sym crate::platform::fatal::exception,
    eoi = sym apic::end_of_interrupt,
    nmis = sym HOST_NMIS,
    device = sym device_interrupt,
    first_device = const FIRST_DEVICE_VECTOR,
    device_count = const DEVICE_VECTOR_COUNT,
);

unsafe extern "C" {
    static EXCEPTION_STUBS: [u64; 32];
    static DEVICE_STUBS: [u64; DEVICE_VECTOR_COUNT];
    fn wake_interrupt_stub();
    fn nmi_stub();
}

/// The first of the vectors the hypervisor gives passed-through devices' messages.
pub const FIRST_DEVICE_VECTOR: usize = 0x40;
/// How many: 0x40..=0xDF, below the wake-up vector (0xF0) and above the exceptions.
pub const DEVICE_VECTOR_COUNT: usize = 0xA0;

/// Device vectors taken and not yet delivered, one bit per vector (any CPU).
static DEVICE_PENDING: [core::sync::atomic::AtomicU64; 4] =
    [const { core::sync::atomic::AtomicU64::new(0) }; 4];

/// A device message arrived: noted for the vCPU loop, acknowledged. Interrupt context: no
/// lock, no allocation.
extern "C" fn device_interrupt(vector: u64) {
    let vector = (vector & 0xFF) as usize;
    DEVICE_PENDING[vector / 64].fetch_or(1 << (vector % 64), core::sync::atomic::Ordering::AcqRel);
    apic::end_of_interrupt();
}

/// Takes the device vectors that match `wanted` (a bit per vector) from the pending set.
pub fn take_device_vectors(wanted: &[u64; 4]) -> [u64; 4] {
    let mut taken = [0; 4];
    for (word, (pending, &mask)) in taken.iter_mut().zip(DEVICE_PENDING.iter().zip(wanted)) {
        if pending.load(core::sync::atomic::Ordering::Relaxed) & mask != 0 {
            *word = pending.fetch_and(!mask, core::sync::atomic::Ordering::AcqRel) & mask;
        }
    }
    taken
}

/// The NMI vector.
const NMI_VECTOR: usize = 2;
/// The double-fault vector.
const DOUBLE_FAULT_VECTOR: usize = 8;

/// NMIs the host has taken (any CPU). An NMI is the platform's (a watchdog, an operator's
/// button): it must not end the hypervisor, and there is no guest to hand it to.
static HOST_NMIS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// NMIs taken so far.
pub fn host_nmis() -> u64 {
    HOST_NMIS.load(core::sync::atomic::Ordering::Relaxed)
}

/// One 16-byte interrupt gate.
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const ABSENT: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn interrupt(handler: u64) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: KERNEL_CODE64,
            ist: 0,
            attributes: 0x8E, // present, DPL 0, 64-bit interrupt gate
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: spin::Once<Idt> = spin::Once::new();

#[repr(C, packed)]
struct IdtPointer {
    limit: u16,
    base: u64,
}

/// Builds the IDT once and loads it on the calling CPU (every CPU calls this).
pub fn load() {
    let idt = IDT.call_once(|| {
        let mut gates = [Gate::ABSENT; 256];
        // SAFETY: EXCEPTION_STUBS is a read-only table of 32 addresses emitted above.
        let stubs = unsafe { &*core::ptr::addr_of!(EXCEPTION_STUBS) };
        for (gate, &stub) in gates.iter_mut().zip(stubs.iter()) {
            *gate = Gate::interrupt(stub);
        }
        // A double fault runs on its own stack: the one that faulted may be the cause.
        gates[DOUBLE_FAULT_VECTOR].ist = DOUBLE_FAULT_IST;
        gates[NMI_VECTOR] = Gate::interrupt(nmi_stub as *const () as u64);
        gates[apic::WAKE_VECTOR as usize] =
            Gate::interrupt(wake_interrupt_stub as *const () as u64);
        // SAFETY: DEVICE_STUBS is a read-only table of DEVICE_VECTOR_COUNT addresses above.
        let devices = unsafe { &*core::ptr::addr_of!(DEVICE_STUBS) };
        for (gate, &stub) in gates[FIRST_DEVICE_VECTOR..].iter_mut().zip(devices.iter()) {
            *gate = Gate::interrupt(stub);
        }
        Idt(gates)
    });
    let pointer = IdtPointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: idt as *const Idt as u64,
    };
    // SAFETY: the IDT is a 'static table of valid gates pointing at the stubs above.
    unsafe { asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags)) };
}
