//! The one GDT every CPU uses (Intel SDM vol. 3A §3.4.5, AMD APM vol. 2 §4.8).
//!
//! Selectors: 0x08 64-bit code, 0x10 flat data, 0x18 32-bit code (AP start-up only).
//! Flat segments only: long mode ignores bases and limits, and the AP trampoline needs a 32-bit
//! code segment on its way to long mode. The table and its pointer live in `.data` as
//! assembler directives so the 32-bit entry code can `lgdt` them before Rust runs.

use core::arch::global_asm;

/// Selector of the 64-bit code segment.
pub const KERNEL_CODE64: u16 = 0x08;

global_asm!(
    r#"
    .pushsection .data.gdt, "aw"
    .p2align 4
BOOT_GDT:
    .quad 0
    .quad 0x00AF9A000000FFFF    /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00CF92000000FFFF    /* 0x10: flat data */
    .quad 0x00CF9A000000FFFF    /* 0x18: 32-bit code (AP trampoline) */
BOOT_GDT_END:
    .p2align 4
    .global BOOT_GDT_POINTER
BOOT_GDT_POINTER:
    .word BOOT_GDT_END - BOOT_GDT - 1
    .quad BOOT_GDT
    .popsection
"#
);

unsafe extern "C" {
    static BOOT_GDT_POINTER: [u8; 10];
}

/// Physical address of the 10-byte GDT pointer (limit, base), for the AP trampoline.
pub fn gdt_pointer_address() -> u64 {
    core::ptr::addr_of!(BOOT_GDT_POINTER) as u64
}
