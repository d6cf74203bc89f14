//! Multiboot2 boot information from untrusted bytes: `bootinfo::multiboot2::parse` must
//! return, never panic; the first 8 bytes of the input are the structure's address (so
//! misaligned addresses and RSDP-copy addresses near 2^64 are reached too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use numavisor_policy::bootinfo::multiboot2;

fuzz_target!(|bytes: &[u8]| {
    let (address, structure) = match bytes.split_first_chunk::<8>() {
        Some((address, rest)) => (u64::from_le_bytes(*address) & !0x7 & 0xffff_ffff, rest),
        None => (0, bytes),
    };
    if let Ok(info) = multiboot2::parse(structure, address) {
        assert!(info.modules.iter().all(|m| m.start <= m.end));
    }
    let _ = multiboot2::parse(structure, address | 4);
});
