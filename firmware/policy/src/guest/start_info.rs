//! A guest's boot data the PVH way (Xen `start_info.h`): `hvm_start_info` version 1, its
//! memory map, and where numavisor puts them and the ACPI tables in guest-physical memory.
//!
//! Low guest memory, fixed for every partition:
//! `0x7000` start_info, `0x7100` memory map, `0x7800` command line (≤ 2 KiB), `0x80000` to
//! `0xA0000` the ACPI tables, `0xA0000` to `0x100000` reserved (the PC's legacy hole, kept so
//! guests written for PCs find nothing surprising), RAM elsewhere.

use alloc::vec::Vec;

use crate::bootinfo::pvh::{MEMMAP_ENTRY_BYTES, START_INFO_BYTES, START_INFO_MAGIC};

/// Where `hvm_start_info` goes.
pub const START_INFO_GPA: u64 = 0x7000;
/// Where the memory map goes.
pub const MEMMAP_GPA: u64 = 0x7100;
/// Where the command line goes, and its room.
pub const CMDLINE_GPA: u64 = 0x7800;
pub const CMDLINE_BYTES: usize = 0x800;
/// The ACPI tables' window.
pub const ACPI_GPA: u64 = 0x8_0000;
pub const ACPI_BYTES: u64 = 0x2_0000;
/// The legacy hole, reserved.
pub const LEGACY_HOLE: (u64, u64) = (0xA_0000, 0x10_0000);
/// Smallest guest RAM this layout works with.
pub const MINIMUM_RAM: u64 = 2 << 20;

/// E820 types used in the guest map.
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;
pub const E820_ACPI: u32 = 3;

/// `hvm_start_info` (version 1) for a guest with `memmap_entries` map entries.
pub fn start_info(memmap_entries: u32, rsdp_gpa: u64) -> [u8; START_INFO_BYTES] {
    let mut b = [0u8; START_INFO_BYTES];
    b[0..4].copy_from_slice(&START_INFO_MAGIC.to_le_bytes());
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    b[24..32].copy_from_slice(&CMDLINE_GPA.to_le_bytes());
    b[32..40].copy_from_slice(&rsdp_gpa.to_le_bytes());
    b[40..48].copy_from_slice(&MEMMAP_GPA.to_le_bytes());
    b[48..52].copy_from_slice(&memmap_entries.to_le_bytes());
    b
}

/// The guest's memory map for RAM `ranges` (guest-physical `(start, len)`, sorted): RAM,
/// with the ACPI window and the legacy hole carved out. Returns `(base, size, type)` entries.
pub fn memory_map(ranges: &[(u64, u64)]) -> Vec<(u64, u64, u32)> {
    let holes = [
        (ACPI_GPA, ACPI_GPA + ACPI_BYTES, E820_ACPI),
        (LEGACY_HOLE.0, LEGACY_HOLE.1, E820_RESERVED),
    ];
    let mut map = Vec::new();
    for &(start, len) in ranges {
        let mut pieces = alloc::vec![(start, start + len)];
        for &(hole_start, hole_end, _) in &holes {
            pieces = pieces
                .into_iter()
                .flat_map(|(s, e)| {
                    let mut out = Vec::new();
                    if hole_end <= s || hole_start >= e {
                        out.push((s, e));
                    } else {
                        if s < hole_start {
                            out.push((s, hole_start));
                        }
                        if hole_end < e {
                            out.push((hole_end, e));
                        }
                    }
                    out
                })
                .collect();
        }
        map.extend(pieces.into_iter().map(|(s, e)| (s, e - s, E820_RAM)));
    }
    for &(hole_start, hole_end, kind) in &holes {
        map.push((hole_start, hole_end - hole_start, kind));
    }
    map.sort_unstable();
    map
}

/// Encodes map entries as `hvm_memmap_table_entry` records.
pub fn encode_memory_map(map: &[(u64, u64, u32)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(map.len() * MEMMAP_ENTRY_BYTES);
    for &(base, size, kind) in map {
        bytes.extend_from_slice(&base.to_le_bytes());
        bytes.extend_from_slice(&size.to_le_bytes());
        bytes.extend_from_slice(&kind.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootinfo::pvh::{parse_memory_map, StartInfo};
    use crate::bootinfo::MemoryKind;

    #[test]
    fn start_info_round_trips_through_our_own_pvh_reader() {
        let info = StartInfo::parse(&start_info(5, ACPI_GPA)).unwrap();
        assert_eq!(info.rsdp_paddr, ACPI_GPA);
        assert_eq!(info.memmap_paddr, MEMMAP_GPA);
        assert_eq!(info.memmap_entries, 5);
        assert_eq!(info.cmdline_paddr, CMDLINE_GPA);
    }

    #[test]
    fn memory_map_carves_acpi_and_the_legacy_hole() {
        let map = memory_map(&[(0, 64 << 20), (64 << 20, 64 << 20)]);
        assert_eq!(
            map,
            [
                (0, ACPI_GPA, E820_RAM),
                (ACPI_GPA, ACPI_BYTES, E820_ACPI),
                (LEGACY_HOLE.0, LEGACY_HOLE.1 - LEGACY_HOLE.0, E820_RESERVED),
                (0x10_0000, (64 << 20) - 0x10_0000, E820_RAM),
                (64 << 20, 64 << 20, E820_RAM),
            ]
        );
        let decoded = parse_memory_map(&encode_memory_map(&map));
        assert_eq!(decoded[1].kind, MemoryKind::AcpiReclaimable);
        assert_eq!(decoded[4].size, 64 << 20);
    }
}
