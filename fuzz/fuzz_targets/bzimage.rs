//! A Linux bzImage from untrusted bytes: `bzimage::parse`, and on success `bzimage::plan`.
//!
//! The plan's inputs come from the image's first 0x60 bytes (the legacy boot sector, which
//! `parse` ignores): RAM is always `[0, 640 KiB)` plus up to three ranges `(u32 LE << 12,
//! u32 LE << 12)` at offsets 8, 16, 24 (how many: byte 0 % 4), the initrd length is the u32 at
//! 32, the RSDP the u32 at 36, the command line bytes 0x28..0x60; the e820 map is the RAM.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numavisor_policy::guest::bzimage;

fn u32_at(bytes: &[u8], offset: usize) -> u64 {
    bytes
        .get(offset..offset + 4)
        .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()).into())
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(image) = bzimage::parse(bytes) else {
        return;
    };
    let _ = image.takes_rsdp();
    let mut ram = vec![(0, 0xA_0000)];
    for i in 0..usize::from(bytes[0] % 4) {
        ram.push((
            u32_at(bytes, 8 + 8 * i) << 12,
            u32_at(bytes, 12 + 8 * i) << 12,
        ));
    }
    let e820: Vec<(u64, u64, u32)> = ram.iter().map(|&(gpa, len)| (gpa, len, 1)).collect();
    let command_line = bytes.get(0x28..0x60).unwrap_or_default();
    let _ = bzimage::plan(
        &image,
        &ram,
        command_line,
        u32_at(bytes, 32),
        u32_at(bytes, 36),
        &e820,
    );
});
