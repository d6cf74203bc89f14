//! The PVH entry point, and the 32-bit path to Rust in long mode that every entry shares.
//!
//! Xen's PVH boot ABI (xen/include/public/arch-x86/hvm/start_info.h, and QEMU's `-kernel`
//! loader): the loader finds `XEN_ELFNOTE_PHYS32_ENTRY` (note type 18) and jumps there in
//! 32-bit protected mode with paging off, flat segments and EBX = physical address of
//! `hvm_start_info`. The multiboot2 entry (`multiboot2_entry.rs`) joins the same path.
//!
//! `boot_start32` expects ESI = the loader's boot information, EBP = which entry ran
//! ([`ENTERED_BY_PVH`], [`ENTERED_BY_MULTIBOOT2`], ...) and EBX = the loader's magic (EAX at a
//! multiboot2 entry). It reads the TSC first (benchmarks count from here), zeroes `.bss`,
//! builds an identity map of the first 4 GiB with 2 MiB pages, sets its own stack and GDT
//! (a multiboot2 loader leaves ESP undefined and GDTR possibly invalid), enters long mode
//! and calls `numavisor_bsp_main(info, entry, magic)` (by symbol name: the boot layer does
//! not import the layers above it).

use core::arch::global_asm;

/// `numavisor_bsp_main`'s second argument after the PVH entry.
pub const ENTERED_BY_PVH: u32 = 1;
/// `numavisor_bsp_main`'s second argument after the multiboot2 entry.
pub const ENTERED_BY_MULTIBOOT2: u32 = 2;
/// `numavisor_bsp_main`'s second argument after coreboot's payload entry.
pub const ENTERED_BY_COREBOOT: u32 = 3;
/// `numavisor_bsp_main`'s second argument after numavisor's UEFI application.
pub const ENTERED_BY_UEFI: u32 = 4;

/// Size of the boot CPU's stack.
pub const BSP_STACK_BYTES: usize = 64 * 1024;

/// Early page tables: PML4, one PDPT and four page directories mapping 0..4 GiB.
#[repr(C, align(4096))]
pub struct BootPageTables {
    pub pml4: [u64; 512],
    pub pdpt: [u64; 512],
    pub pd: [[u64; 512]; 4],
}

/// Written by the entry code before `.bss` is known to be zero, so it lives in `.data`.
#[unsafe(no_mangle)]
#[used]
pub static mut ENTRY_TSC: u64 = 1;

#[unsafe(no_mangle)]
#[unsafe(link_section = ".bss.page_tables")]
static mut BOOT_PAGE_TABLES: BootPageTables = BootPageTables {
    pml4: [0; 512],
    pdpt: [0; 512],
    pd: [[0; 512]; 4],
};

#[repr(C, align(16))]
struct Stack([u8; BSP_STACK_BYTES]);

#[unsafe(no_mangle)]
#[unsafe(link_section = ".noinit.bsp_stack")]
static mut BSP_STACK: Stack = Stack([0; BSP_STACK_BYTES]);

/// Physical address of the boot page tables' PML4 (identity mapped, below 4 GiB).
pub fn boot_pml4_address() -> u64 {
    core::ptr::addr_of!(BOOT_PAGE_TABLES) as u64
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

    .pushsection .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov esi, ebx                        /* keep hvm_start_info */
    mov ebp, {pvh}
    xor ebx, ebx
    jmp boot_start32

    .global boot_start32
boot_start32:
    rdtsc
    mov dword ptr [ENTRY_TSC], eax
    mov dword ptr [ENTRY_TSC + 4], edx

    /* zero .bss (page tables and statics; heap and stacks are .noinit) */
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    shr ecx, 2
    xor eax, eax
    rep stosd

    /* PML4[0] -> PDPT, PDPT[0..4] -> PD[0..4], PD entries: 2 MiB, present, writable */
    mov edi, offset BOOT_PAGE_TABLES
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

    /* long mode: PAE, CR3, EFER.LME (+NXE), paging */
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, offset BOOT_PAGE_TABLES
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000001
    mov cr0, eax

    mov esp, offset BSP_STACK + {stack_bytes}
    lgdt [BOOT_GDT_POINTER]
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
    mov rsp, offset BSP_STACK + {stack_bytes}
    mov edi, esi                        /* first argument: the boot information */
    mov esi, ebp                        /* second: which entry ran */
    mov edx, ebx                        /* third: the loader's magic */
    xor ebp, ebp
    call numavisor_bsp_main             /* start.rs: the boot CPU's main line */
3:
    cli
    hlt
    jmp 3b
    .popsection
"#,
    stack_bytes = const BSP_STACK_BYTES,
    pvh = const ENTERED_BY_PVH,
);

/// The entry code's page tables, for finishing the identity map.
///
/// # Safety
/// Only the boot CPU may call this, once, before any other CPU runs: the result aliases the
/// live page tables.
pub unsafe fn boot_page_tables() -> &'static mut BootPageTables {
    // SAFETY: per this function's contract there is no other reference.
    unsafe { &mut *core::ptr::addr_of_mut!(BOOT_PAGE_TABLES) }
}
