//! The ELF entry point, shared by GRUB's multiboot2 loader, coreboot's `selfboot` and
//! numavisor's own UEFI application.
//!
//! All three jump to the ELF's `e_entry` in 32-bit flat protected mode with paging off. A
//! multiboot2 loader puts its magic 0x36d76289 in EAX (Multiboot2 spec §3.3); the UEFI
//! application puts "NVEF" in EAX and its handoff block's address in EBX
//! (`numavisor_policy::bootinfo::uefi`); coreboot calls the entry as a cdecl function whose
//! one stack argument, `[esp+4]`, is the address of its table header (coreboot's
//! `src/arch/x86/boot.c`; a valid stack is part of that call), and leaves no such magic. So
//! EAX picks the path into the shared path to long mode (`pvh_entry.rs`), with ESI = the
//! loader's information.

use core::arch::global_asm;

use numavisor_policy::bootinfo::uefi::ENTRY_MAGIC as UEFI_ENTRY_MAGIC;

use super::pvh_entry::{ENTERED_BY_COREBOOT, ENTERED_BY_UEFI};

/// EAX at a multiboot2 entry.
const MULTIBOOT2_LOADER_MAGIC: u32 = 0x36D7_6289;

global_asm!(
    r#"
    .pushsection .text.boot, "ax"
    .code32
    .global elf_start32
elf_start32:
    cmp eax, {multiboot2}
    je multiboot2_start32
    cmp eax, {uefi}
    je uefi_start32
    cli
    cld
    mov esi, [esp + 4]                  /* cdecl argument: the coreboot table header */
    xor ebx, ebx
    mov ebp, {entry}
    jmp boot_start32
uefi_start32:
    cli
    cld
    mov esi, ebx                        /* the handoff block */
    xor ebx, ebx
    mov ebp, {uefi_entry}
    jmp boot_start32
    .popsection
"#,
    multiboot2 = const MULTIBOOT2_LOADER_MAGIC,
    uefi = const UEFI_ENTRY_MAGIC,
    entry = const ENTERED_BY_COREBOOT,
    uefi_entry = const ENTERED_BY_UEFI,
);
