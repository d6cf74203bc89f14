//! What a guest is started with: its image (an ELF with a PVH note, or a Linux bzImage and its
//! boot plan), its `hvm_start_info` and its memory map — pure functions the partition builder
//! calls, tested on the host.

pub mod bzimage;
pub mod elf;
pub mod start_info;
