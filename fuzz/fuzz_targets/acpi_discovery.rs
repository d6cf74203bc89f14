//! ACPI discovery (RSDP → RSDT/XSDT → MADT, SRAT, SLIT, HMAT) and the topology built from it,
//! over a physical memory made of fuzzed chunks.
//!
//! Input: a list of chunks, each `address: u64 LE, length: u32 LE, bytes[length]` (a short last
//! chunk takes what is left). The RSDP is the first chunk's address; the usable RAM handed to
//! `Topology::build` is `[address, address + length)` of each chunk whose address has bit 0 clear.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numavisor_policy::acpi::{self, MemoryImage};
use numavisor_policy::topology::Topology;

/// Sorted, disjoint ranges, as `BootInfo::usable_ram` gives them to `Topology::build`.
fn disjoint(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

fuzz_target!(|input: &[u8]| {
    let mut image = MemoryImage::new();
    let mut ram = Vec::new();
    let mut rsdp = None;
    let mut rest = input;
    while rest.len() >= 12 {
        let address = u64::from_le_bytes(rest[..8].try_into().unwrap());
        let length = u32::from_le_bytes(rest[8..12].try_into().unwrap()) as usize;
        let bytes = &rest[12..];
        let bytes = &bytes[..length.min(bytes.len())];
        rest = &rest[12 + bytes.len()..];
        rsdp.get_or_insert(address);
        if address & 1 == 0 {
            ram.push((address, address.saturating_add(length as u64)));
        }
        image.insert(address, bytes.to_vec());
    }
    let findings = acpi::discover(&image, rsdp.unwrap_or(0));
    let _ = Topology::build(&findings, &disjoint(ram));
});
