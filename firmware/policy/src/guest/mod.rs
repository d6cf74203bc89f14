//! What a guest is started with: its image (ELF with a PVH note), its `hvm_start_info` and its
//! memory map — pure functions the partition builder calls, tested on the host.

pub mod elf;
pub mod start_info;
