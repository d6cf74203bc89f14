//! The multiboot2 header and entry point (Multiboot2 specification 2.0, §3.1 "OS image
//! format" and §3.3 "I386 machine state").
//!
//! The header must lie 8-byte aligned within the first 32 KiB of the file: the linker script
//! puts `.multiboot2` first in `.text`. It asks for nothing but page-aligned modules; GRUB
//! loads the ELF's PT_LOAD segments at their physical addresses and jumps to the ELF entry
//! (`elf_start32` in `coreboot_entry.rs`, which comes here on the multiboot2 magic) in 32-bit protected mode, paging off, with EAX = 0x36d76289 and
//! EBX = the physical address of the boot information. ESP is undefined and GDTR may be
//! invalid, so nothing here touches the stack; the shared path sets both.

use core::arch::global_asm;

use super::pvh_entry::ENTERED_BY_MULTIBOOT2;

/// `magic` of the multiboot2 header.
const HEADER_MAGIC: u32 = 0xE852_50D6;

global_asm!(
    r#"
    .pushsection .multiboot2, "a"
    .p2align 3
multiboot2_header:
    .long {magic}
    .long 0                             /* architecture: i386 protected mode */
    .long multiboot2_header_end - multiboot2_header
    /* checksum: magic + architecture + length + checksum = 0 (mod 2^32) */
    .long 0x100000000 - {magic} - (multiboot2_header_end - multiboot2_header)
    .p2align 3
    .short 6, 0                         /* module alignment tag: page-aligned modules */
    .long 8
    .p2align 3
    .short 0, 0                         /* end tag */
    .long 8
multiboot2_header_end:
    .popsection

    .pushsection .text.boot, "ax"
    .code32
    .global multiboot2_start32
multiboot2_start32:
    cli
    cld
    mov esi, ebx                        /* the boot information */
    mov ebx, eax                        /* the loader's magic, checked in Rust */
    mov ebp, {entry}
    jmp boot_start32
    .popsection
"#,
    magic = const HEADER_MAGIC,
    entry = const ENTERED_BY_MULTIBOOT2,
);
