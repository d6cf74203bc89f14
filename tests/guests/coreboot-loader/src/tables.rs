//! The records of the coreboot tables the loader hands over, written with the policy crate's
//! encoder (`bootinfo::coreboot::encode_table`): a 24-byte "LBIO" header with its two IP
//! checksums, then `{tag, size}` records.

use alloc::vec::Vec;

use numavisor_policy::bootinfo::coreboot::{
    encode_memory_range, encode_record as record, memory_type, tag,
};
use numavisor_policy::bootinfo::{MemoryKind, MemoryRegion};

/// `LB_TAG_SERIAL`'s `LB_SERIAL_TYPE_IO_MAPPED`.
const SERIAL_IO_MAPPED: u32 = 1;

/// A whole table: header and `records`, checksummed.
pub use numavisor_policy::bootinfo::coreboot::encode_table as table;

/// `LB_TAG_FORWARD` to the table at `to`.
pub fn forward(to: u64) -> Vec<u8> {
    record(tag::FORWARD, &to.to_le_bytes())
}

/// `LB_TAG_MEMORY`: 20-byte ranges (64-bit start and size at 4-byte alignment, type).
pub fn memory(map: &[MemoryRegion], tables: &[(u64, u64)]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut push = |base: u64, size: u64, kind: u32| {
        data.extend_from_slice(&encode_memory_range(base, size, kind));
    };
    for region in map {
        let kind = match region.kind {
            MemoryKind::Usable => memory_type::RAM,
            MemoryKind::AcpiReclaimable => memory_type::ACPI,
            MemoryKind::AcpiNvs => memory_type::NVS,
            MemoryKind::Unusable => memory_type::UNUSABLE,
            MemoryKind::Reserved => memory_type::RESERVED,
        };
        // RAM holding a table is split around it, as coreboot reserves its own.
        let mut start = region.base;
        let end = region.end();
        if kind == memory_type::RAM {
            let mut inside: Vec<(u64, u64)> = tables
                .iter()
                .copied()
                .filter(|&(b, s)| b >= start && b + s <= end)
                .collect();
            inside.sort_unstable();
            for (base, size) in inside {
                if base > start {
                    push(start, base - start, memory_type::RAM);
                }
                push(base, size, memory_type::TABLE);
                start = base + size;
            }
        }
        if end > start {
            push(start, end - start, kind);
        }
    }
    record(tag::MEMORY, &data)
}

/// `LB_TAG_SERIAL`: COM1 at 115200 baud (type, base, baud, register width, input clock).
pub fn serial() -> Vec<u8> {
    let mut data = Vec::new();
    for v in [SERIAL_IO_MAPPED, 0x3F8, 115_200, 1, 1_843_200] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    record(tag::SERIAL, &data)
}

/// `LB_TAG_ACPI_RSDP`.
pub fn acpi_rsdp(rsdp: u64) -> Vec<u8> {
    record(tag::ACPI_RSDP, &rsdp.to_le_bytes())
}
