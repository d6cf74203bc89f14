//! The UEFI handoff block from untrusted bytes (its memory map is the firmware's):
//! `bootinfo::uefi::parse` must return, never panic; a block it accepts has usable memory.
//! The input is the block as copied from memory, its header's sizes and offsets included.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numavisor_policy::bootinfo::{uefi, MemoryKind};

fuzz_target!(|bytes: &[u8]| {
    let _ = uefi::total_size(bytes, 0x1000);
    if let Ok(info) = uefi::parse(bytes, 0x1000) {
        assert!(info.memory_map.iter().any(|r| r.kind == MemoryKind::Usable));
        assert!(info
            .memory_map
            .iter()
            .all(|r| r.size > 0 && r.base.checked_add(r.size).is_some()));
    }
    let _ = uefi::command_line(bytes);
});
