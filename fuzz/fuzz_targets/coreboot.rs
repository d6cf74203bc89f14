//! coreboot tables from untrusted bytes: `bootinfo::coreboot::boot_info` must return, never
//! panic or loop. The input is physical memory at 0x500 (where coreboot leaves its forward
//! table); its first 4 bytes, when they are not "LBIO", are the entry's table pointer, so
//! forwards, scans and pointers into the input, past it and to nothing are all reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numavisor_policy::bootinfo::coreboot::{self, TableMemory};

/// Physical memory holding the input at `BASE` and nothing else.
struct Memory<'a>(&'a [u8]);

const BASE: u64 = 0x500;

impl TableMemory for Memory<'_> {
    fn read(&self, address: u64, len: usize) -> Option<Vec<u8>> {
        let start = usize::try_from(address.checked_sub(BASE)?).ok()?;
        self.0
            .get(start..start.checked_add(len)?)
            .map(<[u8]>::to_vec)
    }
}

fuzz_target!(|bytes: &[u8]| {
    let pointer = match bytes.first_chunk::<4>() {
        Some(head) if head != b"LBIO" => BASE + u32::from_le_bytes(*head) as u64 % 0x2000,
        _ => BASE,
    };
    let memory = Memory(bytes);
    if let Ok(info) = coreboot::boot_info(&memory, pointer) {
        assert!(!info.memory_map.is_empty());
    }
    let _ = coreboot::boot_info(&memory, 0);
});
