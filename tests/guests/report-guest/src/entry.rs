//! The PVH entry point: from 32-bit protected mode to Rust in long mode (a copy of the
//! hypervisor's `pvh_entry.rs` and `gdt.rs`, trimmed to one CPU).
//!
//! Xen's PVH boot ABI (xen/include/public/arch-x86/hvm/start_info.h): the loader finds
//! `XEN_ELFNOTE_PHYS32_ENTRY` (note type 18) and jumps there in 32-bit protected mode, paging
//! off, flat segments, EBX = physical address of `hvm_start_info`. We take our own stack, zero
//! `.bss`, identity-map the first 4 GiB with 2 MiB pages, enter long mode and call
//! [`crate::start::guest_main`]; [`crate::paging`] maps the rest of the memory map later.

use core::arch::global_asm;

/// Size of the guest's one stack.
const STACK_BYTES: usize = 64 * 1024;

/// Page directories in the pool: 4 for the first 4 GiB, the rest for RAM above it (one per
/// GiB with 2 MiB pages), so 64 GiB of guest-physical space without 1 GiB pages.
pub const PD_POOL: usize = 64;

/// PML4, one PDPT (512 GiB) and the page-directory pool.
#[repr(C, align(4096))]
pub struct PageTables {
    pub pml4: [u64; 512],
    pub pdpt: [u64; 512],
    pub pd: [[u64; 512]; PD_POOL],
}

#[unsafe(no_mangle)]
#[unsafe(link_section = ".bss.page_tables")]
static mut GUEST_PAGE_TABLES: PageTables = PageTables {
    pml4: [0; 512],
    pdpt: [0; 512],
    pd: [[0; 512]; PD_POOL],
};

#[repr(C, align(16))]
struct Stack([u8; STACK_BYTES]);

#[unsafe(no_mangle)]
static mut GUEST_STACK: Stack = Stack([0; STACK_BYTES]);

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// The guest image in guest-physical memory, `.bss` (page tables, heap, stack) included.
pub fn image_range() -> (u64, u64) {
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    )
}

/// The live page tables.
///
/// # Safety
/// No other reference to them may be alive (the guest is single-threaded; only
/// [`crate::paging`] calls this).
pub unsafe fn page_tables() -> &'static mut PageTables {
    // SAFETY: per this function's contract there is no other reference.
    unsafe { &mut *core::ptr::addr_of_mut!(GUEST_PAGE_TABLES) }
}

global_asm!(
    r#"
    .pushsection .note.Xen, "a", @note
    .p2align 2
    .long 4                 /* namesz: "Xen\0" */
    .long 8                 /* descsz: QEMU reads a quad for ELF64 */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .quad pvh_start32
    .p2align 2
    .popsection

    .pushsection .data.gdt, "aw"
    .p2align 4
    .global GUEST_GDT
GUEST_GDT:
    .quad 0
    .quad 0x00AF9A000000FFFF    /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF    /* 0x10: flat data */
    .quad 0x00CFF2000000FFFF    /* 0x18: user data (DPL 3), for mode=hostile probe=alignment-check */
    .quad 0x00AFFA000000FFFF    /* 0x20: user 64-bit code (DPL 3) */
    .quad 0, 0                  /* 0x28: the TSS, filled in by user_mode.rs */
GUEST_GDT_END:
    .p2align 4
GUEST_GDT_POINTER:
    .word GUEST_GDT_END - GUEST_GDT - 1
    .quad GUEST_GDT
    .popsection

    .pushsection .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov esi, ebx                        /* keep hvm_start_info */
    mov esp, offset GUEST_STACK + {stack_bytes}   /* the loader's ESP is undefined */

    /* zero .bss (page tables, heap, stack: nothing is on the stack yet) */
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    shr ecx, 2
    xor eax, eax
    rep stosd

    /* PML4[0] -> PDPT, PDPT[0..4] -> PD[0..4], PD entries: 2 MiB, present, writable */
    mov edi, offset GUEST_PAGE_TABLES
    lea eax, [edi + 4096 + 3]
    mov dword ptr [edi], eax
    lea eax, [edi + 8192 + 3]
    mov dword ptr [edi + 4096], eax
    add eax, 4096
    mov dword ptr [edi + 4096 + 8], eax
    add eax, 4096
    mov dword ptr [edi + 4096 + 16], eax
    add eax, 4096
    mov dword ptr [edi + 4096 + 24], eax
    lea edi, [edi + 8192]
    mov eax, 0x83                       /* present | writable | page size */
    mov ecx, 2048
2:
    mov dword ptr [edi], eax
    add eax, 0x200000
    add edi, 8
    dec ecx
    jnz 2b

    /* long mode: PAE, CR3, EFER.LME, paging */
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, offset GUEST_PAGE_TABLES
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000001
    mov cr0, eax

    lgdt [GUEST_GDT_POINTER]
    /* far return to 0x08:pvh_start64 (spelled out: LLVM's assembler would encode the
       immediate pushes with 16-bit relocations in this .code32 block) */
    .byte 0x6A, 0x08                    /* push imm8 0x08 */
    .byte 0x68                          /* push imm32 */
    .long pvh_start64
    retf

    .code64
pvh_start64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, offset GUEST_STACK + {stack_bytes}
    xor ebp, ebp
    mov edi, esi                        /* first argument: hvm_start_info */
    call {guest_main}
3:
    cli
    hlt
    jmp 3b
    .popsection
"#,
    stack_bytes = const STACK_BYTES,
    guest_main = sym crate::start::guest_main,
);
