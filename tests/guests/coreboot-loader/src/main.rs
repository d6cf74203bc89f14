//! A test loader that boots an ELF payload the way coreboot's `selfboot` does, for CI (no
//! coreboot build is needed, or allowed, here).
//!
//! QEMU starts it by PVH (`-kernel coreboot-loader.elf -initrd numavisor.elf`). It lays out
//! coreboot tables as coreboot does (coreboot's `src/arch/x86/tables.c` and
//! `src/commonlib/include/commonlib/coreboot_tables.h`): the real table — `LB_TAG_MEMORY`
//! from QEMU's e820 map with the tables' own pages as `LB_MEM_TABLE`, `LB_TAG_SERIAL` (COM1),
//! `LB_TAG_ACPI_RSDP` from QEMU's RSDP — and at 0x500 a table whose only record,
//! `LB_TAG_FORWARD`, points at it. Then it copies the payload's PT_LOAD segments to their
//! physical addresses, leaves long mode for 32-bit flat protected mode with paging off, and
//! calls the ELF entry as a cdecl function with the address of the forward table as its one
//! stack argument (`selfboot`, coreboot's `src/arch/x86/boot.c`).
//!
//! Built for the host this is an empty program, so the workspace's `cargo test`/`clippy` work.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod enter_payload;
// The report guest's PVH entry to long mode (it calls `start::guest_main`).
#[cfg(target_os = "none")]
#[path = "../../report-guest/src/entry.rs"]
#[allow(dead_code)] // its page-table accessor serves the report guest's paging
mod entry;
#[cfg(target_os = "none")]
#[path = "../../report-guest/src/heap.rs"]
mod heap;
#[cfg(target_os = "none")]
mod start;
#[cfg(target_os = "none")]
mod tables;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("coreboot-loader is a PVH kernel: build it with --target x86_64-unknown-none");
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    start::fail_with(format_args!("panic: {info}"))
}
