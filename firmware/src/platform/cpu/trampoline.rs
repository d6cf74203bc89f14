//! The application processors' start-up code: real mode → protected mode → long mode.
//!
//! A start-up IPI starts an AP in real mode at `vector << 12` (Intel SDM vol. 3A §9.4.4,
//! AMD APM vol. 2 §15.27.8 for the INIT/SIPI sequence). This blob is copied to a free page
//! below 1 MiB; the boot CPU patches the mailbox at its end (GDT pointer, CR3, the stack and
//! the Rust entry) before each SIPI. EBX carries the page's linear address throughout, so the
//! code needs no absolute addresses except the one far jump, which is patched too.

use core::arch::global_asm;

global_asm!(
    r#"
    .pushsection .rodata.ap_trampoline, "a"
    .global AP_TRAMPOLINE_START
    .global AP_TRAMPOLINE_END
    .global AP_TRAMPOLINE_PM32_TARGET
    .global AP_TRAMPOLINE_PM32
    .global AP_TRAMPOLINE_LONG
    .code16
AP_TRAMPOLINE_START:
    jmp 1f
    .p2align 3
    /* mailbox at fixed offsets (see MAILBOX_* below): LLVM's assembler cannot subtract
       labels inside memory operands, so the code addresses these by number */
    .word 0, 0, 0, 0                    /*  8: GDT pointer (limit, 32-bit base), pad */
    .quad 0                             /* 16: CR3 */
    .quad 0                             /* 24: stack top */
    .quad 0                             /* 32: Rust entry */
    .quad 0                             /* 40: CPU index */
    .quad 0                             /* 48: linear address of the 64-bit code */
1:
    cli
    cld
    xor ebx, ebx
    mov bx, cs
    shl ebx, 4
    mov ax, cs
    mov ds, ax
    .byte 0x66                          /* operand size 32: load a 32-bit GDT base */
    lgdt [8]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    .byte 0x66, 0xEA                    /* ljmpl 0x18:pm32 */
AP_TRAMPOLINE_PM32_TARGET:
    .long 0
    .word 0x18

    .code32
AP_TRAMPOLINE_PM32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    lea esp, [ebx + 4096]
    mov eax, cr4
    or eax, 0x20                        /* PAE */
    mov cr4, eax
    mov eax, [ebx + 16]
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100                       /* EFER.LME */
    wrmsr
    mov eax, cr0
    or eax, 0x80000001                  /* PG | PE */
    mov cr0, eax
    mov eax, [ebx + 48]
    push 0x08
    push eax
    retf

    .code64
AP_TRAMPOLINE_LONG:
    mov ebx, ebx                        /* upper halves are undefined after the switch */
    mov rsp, [rbx + 24]
    mov rdi, [rbx + 40]
    mov rax, [rbx + 32]
    xor ebp, ebp
    call rax
2:
    cli
    hlt
    jmp 2b
AP_TRAMPOLINE_END:
    .popsection
"#
);

/// Mailbox offsets inside the blob (fixed by the `.word`/`.quad` lines above).
pub const MAILBOX_GDT_POINTER: usize = 8;
/// CR3 to load (the boot CPU's page tables, below 4 GiB).
pub const MAILBOX_CR3: usize = 16;
/// Top of the AP's stack.
pub const MAILBOX_STACK: usize = 24;
/// Address of the Rust entry, `extern "C" fn(u64) -> !`.
pub const MAILBOX_ENTRY: usize = 32;
/// The AP's index, passed to the entry.
pub const MAILBOX_CPU_INDEX: usize = 40;
/// Linear address of the 64-bit code in the copied page.
pub const MAILBOX_LONG_TARGET: usize = 48;

unsafe extern "C" {
    static AP_TRAMPOLINE_START: u8;
    static AP_TRAMPOLINE_END: u8;
    static AP_TRAMPOLINE_PM32_TARGET: u8;
    static AP_TRAMPOLINE_PM32: u8;
    static AP_TRAMPOLINE_LONG: u8;
}

/// Where the code pieces sit inside the copied blob.
#[derive(Clone, Copy, Debug)]
pub struct TrampolineLayout {
    /// The 32-bit far jump's offset field.
    pub pm32_target: usize,
    /// The 32-bit code.
    pub pm32_code: usize,
    /// The 64-bit code.
    pub long_code: usize,
}

/// The blob's bytes and where its code pieces are.
pub fn blob() -> (&'static [u8], TrampolineLayout) {
    let start = core::ptr::addr_of!(AP_TRAMPOLINE_START) as usize;
    let offset = |p: *const u8| p as usize - start;
    let layout = TrampolineLayout {
        pm32_target: offset(core::ptr::addr_of!(AP_TRAMPOLINE_PM32_TARGET)),
        pm32_code: offset(core::ptr::addr_of!(AP_TRAMPOLINE_PM32)),
        long_code: offset(core::ptr::addr_of!(AP_TRAMPOLINE_LONG)),
    };
    let length = offset(core::ptr::addr_of!(AP_TRAMPOLINE_END));
    // SAFETY: the symbols delimit one contiguous read-only blob emitted above.
    (
        unsafe { core::slice::from_raw_parts(start as *const u8, length) },
        layout,
    )
}
