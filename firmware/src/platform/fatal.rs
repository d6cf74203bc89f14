//! The end of the line: CPU exceptions and panics in the hypervisor itself.
//!
//! Both print what happened (human lines plus a `fatal` report event), end the run with the
//! failure status when `exit=ready` enabled the exit device, and otherwise halt this CPU.

use core::panic::PanicInfo;

use numavisor_policy::report::json;

use super::console::serial::force_write;
use super::cpu::apic;
use super::cpu::exception::{vector_name, ExceptionFrame};
use super::debug_exit;

fn stop() -> ! {
    debug_exit::exit(debug_exit::FAILURE);
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Called by the exception stubs with the saved registers; never returns.
pub extern "C" fn exception(frame: &ExceptionFrame) -> ! {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    let name = vector_name(frame.vector);
    let apic_id = apic::current_apic_id();
    force_write(format_args!(
        "\nFATAL: CPU exception {} ({name}) on APIC ID {apic_id}, error code {:#x}\n\
         RIP {:#018x} CS {:#x} RFLAGS {:#x} RSP {:#018x} SS {:#x} CR2 {cr2:#018x}\n\
         RAX {:#018x} RBX {:#018x} RCX {:#018x} RDX {:#018x}\n\
         RSI {:#018x} RDI {:#018x} RBP {:#018x} R8  {:#018x}\n\
         R9  {:#018x} R10 {:#018x} R11 {:#018x} R12 {:#018x}\n\
         R13 {:#018x} R14 {:#018x} R15 {:#018x}\n",
        frame.vector,
        frame.error_code,
        frame.rip,
        frame.cs,
        frame.rflags,
        frame.rsp,
        frame.ss,
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx,
        frame.rsi,
        frame.rdi,
        frame.rbp,
        frame.r8,
        frame.r9,
        frame.r10,
        frame.r11,
        frame.r12,
        frame.r13,
        frame.r14,
        frame.r15,
    ));
    let event = json::object(|o| {
        o.u64("v", 1)
            .str("event", "fatal")
            .str("kind", "exception")
            .u64("vector", frame.vector)
            .str("name", name)
            .u64("error_code", frame.error_code)
            .u64("rip", frame.rip)
            .u64("cr2", cr2)
            .u64("apic_id", apic_id as u64);
    });
    force_write(format_args!("@nv {event}\n"));
    stop()
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let location = info
        .location()
        .map(|l| alloc::format!("{}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let message = alloc::format!("{}", info.message());
    force_write(format_args!("\nFATAL: panic at {location}: {message}\n"));
    let event = json::object(|o| {
        o.u64("v", 1)
            .str("event", "fatal")
            .str("kind", "panic")
            .str("message", &message)
            .str("location", &location);
    });
    force_write(format_args!("@nv {event}\n"));
    stop()
}
