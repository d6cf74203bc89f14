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
    .global AP_TRAMPOLINE_GDT_POINTER
    .global AP_TRAMPOLINE_CR3
    .global AP_TRAMPOLINE_STACK
    .global AP_TRAMPOLINE_ENTRY
    .global AP_TRAMPOLINE_CPU_INDEX
    .code16
AP_TRAMPOLINE_START:
    cli
    cld
    xor ebx, ebx
    mov bx, cs
    shl ebx, 4
    mov ax, cs
    mov ds, ax
    .byte 0x66                          /* operand size 32: load a 32-bit GDT base */
    lgdt [AP_TRAMPOLINE_GDT_POINTER - AP_TRAMPOLINE_START]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    .byte 0x66, 0xEA                    /* ljmpl 0x18:pm32 */
AP_TRAMPOLINE_PM32_TARGET:
    .long 0
    .word 0x18

    .code32
ap_trampoline_pm32:
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
    mov eax, [ebx + (AP_TRAMPOLINE_CR3 - AP_TRAMPOLINE_START)]
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100                       /* EFER.LME */
    wrmsr
    mov eax, cr0
    or eax, 0x80000001                  /* PG | PE */
    mov cr0, eax
    lea eax, [ebx + (ap_trampoline_long - AP_TRAMPOLINE_START)]
    push 0x08
    push eax
    retf

    .code64
ap_trampoline_long:
    mov ebx, ebx                        /* upper halves are undefined after the switch */
    mov rsp, [rbx + (AP_TRAMPOLINE_STACK - AP_TRAMPOLINE_START)]
    mov rdi, [rbx + (AP_TRAMPOLINE_CPU_INDEX - AP_TRAMPOLINE_START)]
    mov rax, [rbx + (AP_TRAMPOLINE_ENTRY - AP_TRAMPOLINE_START)]
    xor ebp, ebp
    call rax
5:
    cli
    hlt
    jmp 5b

    .p2align 3
AP_TRAMPOLINE_GDT_POINTER:
    .word 0
    .long 0
    .word 0
AP_TRAMPOLINE_CR3:
    .quad 0
AP_TRAMPOLINE_STACK:
    .quad 0
AP_TRAMPOLINE_ENTRY:
    .quad 0
AP_TRAMPOLINE_CPU_INDEX:
    .quad 0
AP_TRAMPOLINE_END:
    .code64
    .popsection
"#
);

unsafe extern "C" {
    static AP_TRAMPOLINE_START: u8;
    static AP_TRAMPOLINE_END: u8;
    static AP_TRAMPOLINE_PM32_TARGET: u8;
    static AP_TRAMPOLINE_GDT_POINTER: u8;
    static AP_TRAMPOLINE_CR3: u8;
    static AP_TRAMPOLINE_STACK: u8;
    static AP_TRAMPOLINE_ENTRY: u8;
    static AP_TRAMPOLINE_CPU_INDEX: u8;
}

/// Offsets of the patched fields inside the copied blob.
#[derive(Clone, Copy, Debug)]
pub struct TrampolineLayout {
    pub length: usize,
    pub pm32_target: usize,
    pub pm32_code: usize,
    pub gdt_pointer: usize,
    pub cr3: usize,
    pub stack: usize,
    pub entry: usize,
    pub cpu_index: usize,
}

/// The blob's bytes and where its fields are.
pub fn blob() -> (&'static [u8], TrampolineLayout) {
    // SAFETY: the symbols delimit one contiguous read-only blob emitted above; only their
    // addresses are taken and the bytes between them read.
    unsafe {
        let start = core::ptr::addr_of!(AP_TRAMPOLINE_START) as usize;
        let offset = |p: *const u8| p as usize - start;
        let length = offset(core::ptr::addr_of!(AP_TRAMPOLINE_END));
        let pm32_target = offset(core::ptr::addr_of!(AP_TRAMPOLINE_PM32_TARGET));
        let layout = TrampolineLayout {
            length,
            pm32_target,
            // The 32-bit code follows the far jump's 4-byte offset and 2-byte selector.
            pm32_code: pm32_target + 6,
            gdt_pointer: offset(core::ptr::addr_of!(AP_TRAMPOLINE_GDT_POINTER)),
            cr3: offset(core::ptr::addr_of!(AP_TRAMPOLINE_CR3)),
            stack: offset(core::ptr::addr_of!(AP_TRAMPOLINE_STACK)),
            entry: offset(core::ptr::addr_of!(AP_TRAMPOLINE_ENTRY)),
            cpu_index: offset(core::ptr::addr_of!(AP_TRAMPOLINE_CPU_INDEX)),
        };
        (core::slice::from_raw_parts(start as *const u8, length), layout)
    }
}
