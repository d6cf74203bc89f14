//! Leaving long mode for the payload: coreboot runs its payloads in 32-bit flat protected
//! mode with paging off and calls them as `entry(table)` (cdecl: the argument at `[esp+4]`).
//! From 64-bit code at ring 0 (Intel SDM vol. 3A §9.8.5.4): far return to a 32-bit code
//! segment (compatibility mode), clear CR0.PG (which leaves IA-32e mode), clear EFER.LME and
//! CR4.PAE, then push the argument and a return address and jump.

use core::arch::global_asm;

global_asm!(
    r#"
    .pushsection .data.payload_gdt, "aw"
    .p2align 4
PAYLOAD_GDT:
    .quad 0
    .quad 0x00AF9A000000FFFF    /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF    /* 0x10: flat data */
    .quad 0x00CF9A000000FFFF    /* 0x18: flat 32-bit code */
PAYLOAD_GDT_END:
    .p2align 4
PAYLOAD_GDT_POINTER:
    .word PAYLOAD_GDT_END - PAYLOAD_GDT - 1
    .quad PAYLOAD_GDT
    .popsection

    .pushsection .text.enter_payload, "ax"
    .code64
    .global enter_payload32
enter_payload32:
    /* rdi = entry, rsi = the argument, rdx = top of the stack (all below 4 GiB) */
    cli
    lgdt [rip + PAYLOAD_GDT_POINTER]
    mov rsp, rdx
    push 0x18
    lea rax, [rip + 2f]
    push rax
    retfq
    .code32
2:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov eax, cr0
    and eax, 0x7FFFFFFF                 /* paging off: out of IA-32e mode */
    mov cr0, eax
    mov ecx, 0xC0000080
    rdmsr
    and eax, 0xFFFFFEFF                 /* EFER.LME off */
    wrmsr
    mov eax, cr4
    and eax, 0xFFFFFFDF                 /* CR4.PAE off */
    mov cr4, eax
    xor eax, eax                        /* no multiboot2 magic */
    push esi                            /* cdecl argument: the coreboot table */
    push 0                              /* return address: payloads do not return here */
    jmp edi
    .code64
    .popsection
"#
);

unsafe extern "C" {
    fn enter_payload32(entry: u64, argument: u64, stack_top: u64) -> !;
}

/// Calls the payload at `entry` in 32-bit protected mode with `argument` on a stack ending
/// at `stack_top`.
///
/// # Safety
/// The payload must be loaded at `entry`; `entry`, `argument` and the stack must lie below
/// 4 GiB in identity-mapped memory the payload does not overwrite before it switches stacks.
pub unsafe fn call_payload(entry: u64, argument: u64, stack_top: u64) -> ! {
    // SAFETY: per this function's contract; the asm never returns.
    unsafe { enter_payload32(entry, argument, stack_top) }
}
