//! Starting the partition's second vCPU (an application processor, AP) the way a PC OS does:
//! INIT, then two start-up IPIs through the local APIC's interrupt command register (xAPIC
//! MMIO at 0xFEE0_0000, ICR at 0x300/0x310; Intel SDM vol. 3A §8.4.4.1 and §11.6.1). The AP
//! begins in real mode at CS = vector << 8, IP = 0, where a trampoline copied to
//! [`TRAMPOLINE`] takes it through 32-bit protected mode into long mode (SDM vol. 3A §9.8.5)
//! on the BSP's page tables, loads the BSP's GDT and IDT, takes its own stack and calls the
//! job it was given.
//!
//! The trampoline page starts with a short jump over a header the BSP fills in (CR0, CR3, the
//! BSP's GDTR and IDTR, the stack top, the job) and a small GDT of its own: the BSP's has no
//! 32-bit code segment for the step through protected mode. The trampoline counts itself in
//! at [`ARRIVED`] once it is in long mode; the BSP waits for that, bounded.
//!
//! The trampoline runs with interrupts off, touches nothing that can fault before long mode,
//! and loads the BSP's IDT first thing there; it never relies on the IDTR it started with
//! (numavisor's INIT/SIPI entry state once left it at limit 0, where hardware has the
//! real-mode IVT, base 0 and limit 0xFFFF: any exception before the `lidt` was a triple
//! fault). Except on purpose: [`start_cpu_through_a_real_mode_fault`] (`probe=init-idt`,
//! `init_idt.rs`) makes the AP raise #UD in real mode first, which the IVT at 0 sends to a
//! handler in the trampoline page (`ap_real_mode_ud`).

use core::arch::{asm, global_asm};
use core::ptr::{read_volatile, write_volatile};

use crate::console::report;
use crate::hw::XAPIC;

/// Where the trampoline is copied: a page of low RAM nothing else uses (numavisor's fixed
/// low memory is 0x7000–0x7FFF boot data and 0x80000–0x9FFFF ACPI tables,
/// `numavisor_policy::guest::start_info`). The start-up vector is its page number.
const TRAMPOLINE: u64 = 0x8000;
const SIPI_VECTOR: u32 = (TRAMPOLINE >> 12) as u32;

/// Header offsets in the trampoline page (the asm below lays the page out with them).
const GDT: usize = 0x10;
const GDT_POINTER: usize = 0x30;
const CR0: usize = 0x38;
const CR3: usize = 0x40;
const BSP_GDTR: usize = 0x48;
const BSP_IDTR: usize = 0x58;
const STACK_TOP: usize = 0x68;
const JOB: usize = 0x70;
const ARRIVED: usize = 0x78;
/// `probe=init-idt`: non-zero makes the AP execute `ud2` in real mode before anything else
/// (u16); the #UD handler counts its runs at [`HANDLER_RAN`] (u16).
const FAULT_FIRST: usize = 0x7C;
const HANDLER_RAN: usize = 0x7E;
const CODE: usize = 0x80;

/// The real-mode IVT entry of #UD (vector 6): 4 bytes at linear 6 * 4, offset then segment
/// (Intel SDM vol. 3B §20.1.4, AMD APM vol. 2 "Real-Mode Interrupt Control Transfers").
const IVT_UD: u64 = 6 * 4;
/// The real-mode stack of the #UD handler: SS = the trampoline's segment, SP = the top of
/// its page (the blob is far shorter than the page).
const REAL_MODE_STACK_TOP: u16 = 0x1000;

// The local APIC's registers used here (SDM vol. 3A Table 11-1).
const APIC_ID: u64 = 0x20;
const SVR: u64 = 0xF0;
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
/// ICR low values as Linux sends them: INIT (level, assert), INIT de-assert, start-up.
const ICR_INIT: u32 = 0xC500;
const ICR_INIT_DEASSERT: u32 = 0x8500;
const ICR_STARTUP: u32 = 0x0600;
/// SVR: software enable, spurious vector 0xFF.
const SVR_ENABLED: u32 = 0x1FF;

/// Size of the AP's stack.
const AP_STACK_BYTES: usize = 64 * 1024;
/// Polls of [`ARRIVED`] after each start-up IPI before the next one (or giving up).
const ARRIVAL_POLLS: u64 = 20_000_000;

#[repr(C, align(16))]
struct Stack([u8; AP_STACK_BYTES]);

/// The AP's stack (only the AP uses it, from the trampoline on).
static mut AP_STACK: Stack = Stack([0; AP_STACK_BYTES]);

global_asm!(
    r#"
    .pushsection .rodata.ap_trampoline, "a"
    .p2align 4
    .global ap_trampoline_start
    .global ap_trampoline_end
ap_trampoline_start:
    .code16
    .byte 0xEB, {code} - 2              /* jmp short over the header */
    .skip {gdt} - 2
    .quad 0
    .quad 0x00AF9A000000FFFF            /* 0x08: 64-bit code, as in the BSP's GDT */
    .quad 0x00CF92000000FFFF            /* 0x10: flat data, as in the BSP's GDT */
    .quad 0x00CF9A000000FFFF            /* 0x18: flat 32-bit code, for the step through */
    .word 31                            /* GDT pointer: limit, base */
    .long {trampoline} + {gdt}
    .skip {code} - {gdt_pointer} - 6    /* CR0, CR3, GDTR, IDTR, stack, job, arrived */

    /* Real mode, CS = the trampoline's page: no exception may happen here (see the module
       note), unless the BSP asked for one. */
    cli
    cld
    mov ax, cs
    mov ds, ax
    cmp word ptr [{fault_first}], 0
    je 3f
    mov ss, ax                          /* the handler's stack: the top of this page */
    mov sp, {real_mode_stack_top}
    ud2                                 /* #UD through the IVT to ap_real_mode_ud */
3:
    lgdt [{gdt_pointer}]
    mov eax, 0x11                       /* CR0: PE | ET (clears the reset CD and NW) */
    mov cr0, eax
    .byte 0x66, 0xEA                    /* ljmpl 0x18:ap_trampoline_32 */
    .long {trampoline} + (ap_trampoline_32 - ap_trampoline_start)
    .word 0x18

    /* The #UD handler of probe=init-idt, reached through the real-mode IVT (the BSP wrote
       vector 6's entry): count the run, step the saved IP over the 2-byte ud2, return. */
    .global ap_real_mode_ud
ap_real_mode_ud:
    push bp
    mov bp, sp
    add word ptr [bp + 2], 2            /* IP, CS, FLAGS above the saved BP */
    inc word ptr cs:[{handler_ran}]
    pop bp
    iret

    .code32
ap_trampoline_32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov ebx, {trampoline}
    mov eax, cr4
    or eax, 0x20                        /* PAE */
    mov cr4, eax
    mov eax, [ebx + {cr3}]
    mov cr3, eax
    mov ecx, 0xC0000080                 /* EFER.LME */
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, [ebx + {cr0}]              /* the BSP's CR0: PG | PE and the rest */
    mov cr0, eax
    .byte 0xEA                          /* ljmp 0x08:ap_trampoline_64 */
    .long {trampoline} + (ap_trampoline_64 - ap_trampoline_start)
    .word 0x08

    .code64
ap_trampoline_64:
    mov ebx, {trampoline}               /* upper halves are undefined after the switch */
    lidt [rbx + {bsp_idtr}]             /* first: exceptions reach the guest's handlers */
    lgdt [rbx + {bsp_gdtr}]             /* its 0x08 and 0x10 are the descriptors in use */
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, [rbx + {stack_top}]
    lock inc dword ptr [rbx + {arrived}]
    mov rax, [rbx + {job}]
    xor ebp, ebp
    call rax
2:
    cli
    hlt
    jmp 2b
ap_trampoline_end:
    .popsection
"#,
    trampoline = const TRAMPOLINE,
    code = const CODE,
    gdt = const GDT,
    gdt_pointer = const GDT_POINTER,
    cr0 = const CR0,
    cr3 = const CR3,
    bsp_gdtr = const BSP_GDTR,
    bsp_idtr = const BSP_IDTR,
    stack_top = const STACK_TOP,
    job = const JOB,
    arrived = const ARRIVED,
    fault_first = const FAULT_FIRST,
    handler_ran = const HANDLER_RAN,
    real_mode_stack_top = const REAL_MODE_STACK_TOP,
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_real_mode_ud: u8;
}

/// A local APIC register write (a plain 4-byte `mov`: what the hypervisor's decoder takes).
fn apic_write(offset: u64, value: u32) {
    crate::hw::mmio_write(XAPIC + offset, value);
}

fn apic_read(offset: u64) -> u32 {
    crate::hw::mmio_read(XAPIC + offset)
}

/// Sends the IPI of ICR low word `low` to the local APIC with ID `apic_id` (physical
/// destination, no shorthand).
pub fn send_ipi(apic_id: u32, low: u32) {
    apic_write(ICR_HIGH, apic_id << 24);
    apic_write(ICR_LOW, low);
}

/// This CPU's local APIC ID (xAPIC: ID register bits 31:24).
pub fn own_apic_id() -> u32 {
    apic_read(APIC_ID) >> 24
}

/// A 10-byte descriptor-table register image (SGDT/SIDT): limit, then base.
#[repr(C, packed)]
struct TableRegister {
    limit: u16,
    base: u64,
}

fn control_registers() -> (u64, u64) {
    let (cr0, cr3): (u64, u64);
    // SAFETY: reading CR0 and CR3 has no side effects.
    unsafe {
        asm!("mov {}, cr0", "mov {}, cr3", out(reg) cr0, out(reg) cr3, options(nomem, nostack))
    };
    (cr0, cr3)
}

/// Starts the CPU with local APIC ID `apic_id` on `job` (which must never return; it runs on
/// the AP's own stack with interrupts off). Returns once the AP has reached long mode.
pub fn start_cpu(apic_id: u32, job: extern "C" fn() -> !) -> Result<(), &'static str> {
    start_ap(apic_id, job, false).map(|_| ())
}

/// [`start_cpu`], with the AP executing `ud2` in real mode first, right after INIT/SIPI: the
/// #UD must go through the real-mode IVT at 0 (IDTR base 0, limit 0xFFFF after INIT) to the
/// trampoline's handler, whose entry this writes into the IVT. Returns once the AP has
/// reached long mode, with the number of times the handler ran.
pub fn start_cpu_through_a_real_mode_fault(
    apic_id: u32,
    job: extern "C" fn() -> !,
) -> Result<u16, &'static str> {
    let handler = &raw const ap_real_mode_ud as u64 - &raw const ap_trampoline_start as u64;
    let segment = TRAMPOLINE >> 4;
    // SAFETY: the IVT's #UD entry, 4 aligned bytes of guest RAM at linear 0x18 (the memory
    // map's first RAM range starts at 0; the entry code identity maps it, writable). Nothing
    // in this guest uses the real-mode IVT; only the AP reads it, in real mode.
    unsafe { write_volatile(IVT_UD as *mut u32, ((segment << 16) | handler) as u32) };
    start_ap(apic_id, job, true)
}

/// Copies the trampoline, fills its header, sends INIT and start-up IPIs and waits for the
/// AP in long mode; returns how often the real-mode #UD handler ran.
fn start_ap(
    apic_id: u32,
    job: extern "C" fn() -> !,
    fault_first: bool,
) -> Result<u16, &'static str> {
    let start = &raw const ap_trampoline_start as u64;
    let end = &raw const ap_trampoline_end as u64;
    let length = (end - start) as usize;
    // The real-mode #UD handler's frame (IP, CS, FLAGS, BP) lies at the page's top.
    if length > REAL_MODE_STACK_TOP as usize - 8 {
        return Err("the AP trampoline does not fit in one page below its real-mode stack");
    }
    let (cr0, cr3) = control_registers();
    if cr3 >> 32 != 0 {
        return Err("the page tables lie above 4 GiB, out of the trampoline's reach");
    }
    let mut gdtr = TableRegister { limit: 0, base: 0 };
    let mut idtr = TableRegister { limit: 0, base: 0 };
    // SAFETY: SGDT and SIDT store 10 bytes each into the two registers' images.
    unsafe {
        asm!("sgdt [{}]", "sidt [{}]", in(reg) &raw mut gdtr, in(reg) &raw mut idtr,
            options(nostack))
    };
    let stack_top = &raw const AP_STACK as u64 + AP_STACK_BYTES as u64;
    let page = TRAMPOLINE as *mut u8;
    // SAFETY: 1. the trampoline page is guest RAM nothing else uses (see TRAMPOLINE),
    // identity mapped and writable; 2. the blob is `length` ≤ 4096 bytes of this image's
    // read-only data; 3. the header fields lie inside the page at the offsets the blob
    // leaves for them; 4. the AP does not run yet, so nobody reads the page meanwhile.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, page, length);
        write_volatile(page.add(CR0) as *mut u64, cr0);
        write_volatile(page.add(CR3) as *mut u64, cr3);
        core::ptr::copy_nonoverlapping(&raw const gdtr as *const u8, page.add(BSP_GDTR), 10);
        core::ptr::copy_nonoverlapping(&raw const idtr as *const u8, page.add(BSP_IDTR), 10);
        write_volatile(page.add(STACK_TOP) as *mut u64, stack_top);
        write_volatile(page.add(JOB) as *mut u64, job as usize as u64);
        write_volatile(page.add(ARRIVED) as *mut u32, 0);
        write_volatile(page.add(FAULT_FIRST) as *mut u16, fault_first.into());
        write_volatile(page.add(HANDLER_RAN) as *mut u16, 0);
    }
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    let arrived = || {
        // SAFETY: the trampoline's counter, inside the page above; the AP increments it.
        unsafe { read_volatile(page.add(ARRIVED) as *const u32) != 0 }
    };

    apic_write(SVR, SVR_ENABLED);
    let send = |low: u32| {
        apic_write(ICR_HIGH, apic_id << 24);
        apic_write(ICR_LOW, low);
    };
    send(ICR_INIT);
    send(ICR_INIT_DEASSERT);
    for _ in 0..2 {
        send(ICR_STARTUP | SIPI_VECTOR);
        for _ in 0..ARRIVAL_POLLS {
            if arrived() {
                report!("{{\"event\":\"ap_started\",\"apic_id\":{apic_id}}}");
                // SAFETY: the handler's counter, inside the page above; the AP is past it.
                return Ok(unsafe { read_volatile(page.add(HANDLER_RAN) as *const u16) });
            }
            core::hint::spin_loop();
        }
    }
    Err("the AP did not reach long mode after INIT and two start-up IPIs")
}
