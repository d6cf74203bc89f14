//! The one GDT every CPU uses (Intel SDM vol. 3A §3.4.5, AMD APM vol. 2 §4.8).
//!
//! Selectors: 0x08 64-bit code, 0x10 flat data, 0x18 32-bit code (AP start-up only), 0x20 a
//! 64-bit TSS (16 bytes). Each CPU has a TSS of its own, for one reason: its IST1 names the
//! stack the double-fault handler runs on, so a fault with a broken stack pointer is still
//! reported rather than ending in a silent triple-fault reset (SDM vol. 3A §6.14.5). The one
//! descriptor serves every CPU: each loads it with LTR (which caches the base) under a lock
//! before the next rewrites it. VMX restores TR from the VMCS (HOST_TR_BASE: [`tss_address`]),
//! SVM with VMLOAD.
//! Flat segments only: long mode ignores bases and limits, and the AP trampoline needs a 32-bit
//! code segment on its way to long mode. The table and its pointer live in `.data` as
//! assembler directives so the 32-bit entry code can `lgdt` them before Rust runs.

use alloc::collections::BTreeMap;
use core::arch::{asm, global_asm};

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

/// Bytes of a CPU's task area ([`load_task`]): its TSS, then the double-fault stack above it.
pub const TASK_AREA_BYTES: u64 = 16 * 1024;
/// The interrupt stack table slot the double-fault gate names.
pub const DOUBLE_FAULT_IST: u8 = 1;

/// Bytes of a 64-bit TSS (SDM vol. 3A §8.7), and where its fields lie.
const TSS_BYTES: usize = 104;
const TSS_IST1: usize = 36;
const TSS_IO_MAP_BASE: usize = 102;

/// The boot CPU's task area (APs take theirs beside their stacks).
#[repr(C, align(4096))]
struct TaskArea([u8; TASK_AREA_BYTES as usize]);
static mut BSP_TASK_AREA: TaskArea = TaskArea([0; TASK_AREA_BYTES as usize]);

/// Each CPU's TSS, by APIC ID, for a VMCS's HOST_TR_BASE.
static TASKS: spin::Mutex<BTreeMap<u32, u64>> = spin::Mutex::new(BTreeMap::new());

/// The boot CPU's task area.
pub fn bsp_task_area() -> u64 {
    core::ptr::addr_of!(BSP_TASK_AREA) as u64
}

/// Builds the calling CPU's TSS at the start of `area` (IST1: the area's top) and loads TR
/// with it.
///
/// # Safety
/// `area` is [`TASK_AREA_BYTES`] of identity-mapped memory, 16-byte aligned, that belongs to
/// the calling CPU for good.
pub unsafe fn load_task(area: u64) {
    let mut tss = [0u8; TSS_BYTES];
    tss[TSS_IST1..TSS_IST1 + 8].copy_from_slice(&(area + TASK_AREA_BYTES).to_le_bytes());
    // I/O map base past the limit: no I/O permission map.
    tss[TSS_IO_MAP_BASE..].copy_from_slice(&(TSS_BYTES as u16).to_le_bytes());
    // SAFETY: `area` is this CPU's, as the caller promises, and holds at least a TSS.
    unsafe { core::ptr::copy_nonoverlapping(tss.as_ptr(), area as *mut u8, TSS_BYTES) };
    let limit = TSS_BYTES as u64 - 1;
    let low = limit
        | ((area & 0xFF_FFFF) << 16)
        | (0x89 << 40) // present, type 9: available 64-bit TSS
        | (((area >> 24) & 0xFF) << 56);
    let mut tasks = TASKS.lock();
    // SAFETY: the two quads reserved for the TSS descriptor, written only here under the
    // `TASKS` lock; LTR caches the base and marks the descriptor busy, which the next CPU's
    // rewrite clears, so no CPU depends on the descriptor once its LTR is done.
    unsafe {
        let slot = core::ptr::addr_of_mut!(BOOT_GDT_TSS);
        (*slot)[0] = low;
        (*slot)[1] = area >> 32;
        asm!("ltr {0:x}", in(reg) TSS_SELECTOR, options(nostack, preserves_flags));
    }
    tasks.insert(super::apic::current_apic_id(), area);
}

/// The calling CPU's TSS ([`load_task`]), for a VMCS's HOST_TR_BASE.
pub fn tss_address() -> u64 {
    TASKS
        .lock()
        .get(&super::apic::current_apic_id())
        .copied()
        .unwrap_or_else(bsp_task_area)
}

/// Physical address of the 10-byte GDT pointer (limit, base), for the AP trampoline.
pub fn gdt_pointer_address() -> u64 {
    core::ptr::addr_of!(BOOT_GDT_POINTER) as u64
}
