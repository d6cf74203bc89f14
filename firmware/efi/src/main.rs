//! numavisor as a UEFI application (`numavisor.efi`, for OVMF or any UEFI firmware).
//!
//! The hypervisor is one ELF image for every boot path; this application carries it. With
//! boot services still up it places the image's segments at their physical addresses (pages
//! it allocates there, so nothing of the firmware's is overwritten), finds the ACPI RSDP in
//! the configuration table and reads its load options; then it leaves boot services and
//! enters the image's ELF entry as every other 32-bit loader does, with the handoff block of
//! `numavisor_policy::bootinfo::uefi` (final memory map, RSDP, load options) in EBX.
//!
//! Host builds (the workspace's `cargo test` and `clippy`) compile an empty program: the
//! application exists only for `x86_64-unknown-uefi`.

#![cfg_attr(target_os = "uefi", no_std, no_main)]

#[cfg(target_os = "uefi")]
extern crate alloc;

#[cfg(target_os = "uefi")]
mod app;
#[cfg(target_os = "uefi")]
mod leave;
#[cfg(target_os = "uefi")]
mod load;
#[cfg(target_os = "uefi")]
mod pages;

#[cfg(not(target_os = "uefi"))]
fn main() {}
