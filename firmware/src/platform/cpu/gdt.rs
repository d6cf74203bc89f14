//! The one GDT every CPU uses (Intel SDM vol. 3A §3.4.5, AMD APM vol. 2 §4.8).
//!
//! Selectors: 0x08 64-bit code, 0x10 flat data, 0x18 32-bit code (AP start-up only), 0x20 a
//! 64-bit TSS (16 bytes; VMX needs a host TR selector, SDM vol. 3C §26.2.3; no CPU loads it
//! with LTR, and ring 0 without IST never reads it).
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
    .global BOOT_GDT_TSS
BOOT_GDT_TSS:
    .quad 0, 0                  /* 0x20: the TSS, filled by `install_tss` */
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
    static mut BOOT_GDT_TSS: [u64; 2];
}

/// Selector of the TSS.
pub const TSS_SELECTOR: u16 = 0x20;

/// A 64-bit TSS (SDM vol. 3A §8.7): all zero, no I/O map (its base past the limit).
#[repr(C, align(16))]
struct TaskStateSegment([u8; 104]);

static TSS: TaskStateSegment = TaskStateSegment({
    let mut bytes = [0u8; 104];
    bytes[102] = 104; // I/O map base = limit + 1: no I/O permission map
    bytes
});

/// The TSS's address, for a VMCS's HOST_TR_BASE.
pub fn tss_address() -> u64 {
    core::ptr::addr_of!(TSS) as u64
}

/// Writes the TSS descriptor (available 64-bit TSS, limit 103) into the GDT; once, on the
/// boot CPU, before other CPUs start.
pub fn install_tss() {
    let base = tss_address();
    let limit = 103u64;
    let low = limit
        | ((base & 0xFF_FFFF) << 16)
        | (0x89 << 40) // present, type 9: available 64-bit TSS
        | (((base >> 24) & 0xFF) << 56);
    // SAFETY: the two quads reserved for the TSS descriptor; only the boot CPU writes them,
    // before any other CPU runs, and no CPU has loaded the selector.
    unsafe {
        let slot = core::ptr::addr_of_mut!(BOOT_GDT_TSS);
        (*slot)[0] = low;
        (*slot)[1] = base >> 32;
    }
}

/// Physical address of the 10-byte GDT pointer (limit, base), for the AP trampoline.
pub fn gdt_pointer_address() -> u64 {
    core::ptr::addr_of!(BOOT_GDT_POINTER) as u64
}
