//! Ring 3 for one hostile probe (`mode=hostile probe=alignment-check`): alignment checking
//! (#AC) exists only at CPL 3 with CR0.AM and RFLAGS.AC set (Intel SDM vol. 3A §6.15, #AC).
//! This sets up a TSS (RSP0: where the CPU switches stacks when the #AC comes back to ring 0),
//! lets ring 3 use the identity map (U bit), and `iretq`s into a misaligned load. The
//! exception handlers report the #AC and end the guest.

use core::arch::{asm, global_asm};

use crate::entry::page_tables;

const USER_DATA: u64 = 0x18 | 3;
const USER_CODE: u64 = 0x20 | 3;
const TSS_SELECTOR: u16 = 0x28;
/// Page-table entry bit: user-mode access allowed.
const USER: u64 = 1 << 2;
const PRESENT: u64 = 1;

#[repr(C, align(16))]
struct Stack([u8; 16384]);

/// Where ring 0 runs when an exception comes from ring 3 (TSS.RSP0).
static mut KERNEL_STACK: Stack = Stack([0; 16384]);
/// Ring 3's stack.
static mut USER_STACK: Stack = Stack([0; 16384]);

/// The 64-bit TSS (104 bytes): only RSP0 matters here.
#[repr(C, packed)]
struct Tss {
    reserved0: u32,
    rsp0: u64,
    rest: [u8; 92],
}

static mut TSS: Tss = Tss {
    reserved0: 0,
    rsp0: 0,
    rest: [0; 92],
};

unsafe extern "C" {
    static mut GUEST_GDT: [u64; 7];
    fn user_misaligned_load() -> !;
}

global_asm!(
    r#"
    .pushsection .text.user, "ax"
    .global user_misaligned_load
user_misaligned_load:
    mov eax, [rsp + 1]          /* 4 bytes at an odd address: #AC at CPL 3 with AC set */
    ud2                         /* only if no #AC came */
    .popsection
"#
);

/// Enters ring 3 with alignment checking on and makes a misaligned access; never returns
/// (the #AC handler exits the guest).
pub fn alignment_check_in_ring3() -> ! {
    // SAFETY: single-threaded; the TSS, stacks, GDT slot 0x28 and the page tables are this
    // guest's own, used by nothing else at this point.
    unsafe {
        let tss = core::ptr::addr_of_mut!(TSS);
        (*tss).rsp0 = core::ptr::addr_of!(KERNEL_STACK) as u64 + 16384;
        let base = tss as u64;
        let limit = (core::mem::size_of::<Tss>() - 1) as u64;
        let gdt = &mut *core::ptr::addr_of_mut!(GUEST_GDT);
        // An available 64-bit TSS descriptor (type 9, present), base split over 16 bytes.
        gdt[5] = (limit & 0xFFFF)
            | ((base & 0xFF_FFFF) << 16)
            | (0x89 << 40)
            | (((base >> 24) & 0xFF) << 56);
        gdt[6] = base >> 32;
        asm!("ltr {0:x}", in(reg) TSS_SELECTOR, options(nostack));

        // Ring 3 may use the identity map: the U bit at every level.
        let tables = page_tables();
        for entry in tables.pml4.iter_mut().chain(tables.pdpt.iter_mut()) {
            if *entry & PRESENT != 0 {
                *entry |= USER;
            }
        }
        for pd in tables.pd.iter_mut() {
            for entry in pd.iter_mut().filter(|e| **e & PRESENT != 0) {
                *entry |= USER;
            }
        }
        asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack));
        // CR0.AM: alignment checking allowed.
        asm!("mov {0}, cr0", "bts {0}, 18", "mov cr0, {0}", out(reg) _, options(nostack));

        let user_stack = core::ptr::addr_of!(USER_STACK) as u64 + 16384 - 64;
        let rflags: u64 = (1 << 18) | (1 << 1); // AC, and the always-one bit; IF off
        asm!(
            "push {ss}",
            "push {rsp3}",
            "push {rflags}",
            "push {cs}",
            "push {rip}",
            "iretq",
            ss = in(reg) USER_DATA,
            rsp3 = in(reg) user_stack,
            rflags = in(reg) rflags,
            cs = in(reg) USER_CODE,
            rip = in(reg) user_misaligned_load as *const () as u64,
            options(noreturn)
        )
    }
}
