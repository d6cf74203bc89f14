//! coreboot tables as coreboot lays them out (a forward table at 0x500, the real one high),
//! and malformed ones: each gets its typed error, never a panic or a hang.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use super::{encode_record as record, encode_table as table};

/// Physical memory made of byte runs at addresses.
#[derive(Default)]
struct Memory(BTreeMap<u64, Vec<u8>>);

impl TableMemory for Memory {
    fn read(&self, address: u64, len: usize) -> Option<Vec<u8>> {
        let (&base, bytes) = self.0.range(..=address).next_back()?;
        let start = (address - base) as usize;
        bytes
            .get(start..start.checked_add(len)?)
            .map(<[u8]>::to_vec)
    }
}

fn range(start: u64, size: u64, kind: u32) -> Vec<u8> {
    encode_memory_range(start, size, kind).to_vec()
}

fn forward(to: u64) -> Vec<u8> {
    record(tag::FORWARD, &to.to_le_bytes())
}

/// coreboot's layout on QEMU: RAM with a hole, its tables, ACPI, and the forward at 0x500.
fn coreboot_like() -> Memory {
    let map = [
        range(0, 0xA0000, memory_type::RAM),
        range(0x100000, 0x7FE0_0000, memory_type::RAM),
        range(0x7FF0_0000, 0x10_0000, memory_type::TABLE),
        range(0x1_0000_0000, 0x4000_0000, memory_type::RAM),
    ]
    .concat();
    let real = table(&[
        record(0x1234, b"unknown tags are skipped"),
        record(tag::MEMORY, &map),
        record(tag::ACPI_RSDP, &0xF_5A00u64.to_le_bytes()),
    ]);
    let mut memory = Memory::default();
    memory.0.insert(0x500, table(&[forward(0x7FF0_0000)]));
    memory.0.insert(0x7FF0_0000, real);
    memory
}

#[test]
fn the_forward_at_0x500_leads_to_the_memory_map_and_rsdp() {
    let info = boot_info(&coreboot_like(), 0x500).unwrap();
    assert_eq!(info.protocol, BootProtocol::Coreboot);
    assert_eq!(info.rsdp, Some(RsdpSource::At(0xF_5A00)));
    assert_eq!(
        info.usable_ram(),
        vec![
            (0, 0xA0000),
            (0x100000, 0x7FF0_0000),
            (0x1_0000_0000, 0x1_4000_0000)
        ]
    );
    assert!(info.command_line.is_empty());
    // The real table given directly works the same.
    assert_eq!(
        boot_info(&coreboot_like(), 0x7FF0_0000).unwrap().rsdp,
        info.rsdp
    );
}

#[test]
fn without_a_pointer_the_low_megabyte_is_scanned() {
    let info = boot_info(&coreboot_like(), 0).unwrap();
    assert_eq!(info.rsdp, Some(RsdpSource::At(0xF_5A00)));
    let mut empty = Memory::default();
    empty.0.insert(0, vec![0; 0x1000]);
    assert_eq!(boot_info(&empty, 0), Err(CorebootError::NotFound));
}

#[test]
fn bad_checksums_are_refused() {
    let mut memory = coreboot_like();
    let real = memory.0.get_mut(&0x7FF0_0000).unwrap();
    let last = real.len() - 1;
    real[last] ^= 1;
    assert_eq!(
        boot_info(&memory, 0x7FF0_0000),
        Err(CorebootError::TableChecksum {
            address: 0x7FF0_0000
        })
    );
    let mut memory = coreboot_like();
    memory.0.get_mut(&0x500).unwrap()[12] ^= 1; // table_bytes, under the header checksum
    assert_eq!(
        boot_info(&memory, 0x500),
        Err(CorebootError::HeaderChecksum { address: 0x500 })
    );
}

#[test]
fn truncated_and_undersized_records_are_refused() {
    let mut bad = record(tag::MEMORY, &range(0, 0x1000, 1));
    bad[4..8].copy_from_slice(&4000u32.to_le_bytes()); // runs past the table
    let mut memory = Memory::default();
    memory.0.insert(0x1000, table(&[bad]));
    assert!(matches!(
        boot_info(&memory, 0x1000),
        Err(CorebootError::BadRecord {
            tag: 1,
            size: 4000,
            ..
        })
    ));
    let mut tiny = record(0x99, &[]);
    tiny[4..8].copy_from_slice(&4u32.to_le_bytes()); // smaller than its own header
    memory.0.insert(0x1000, table(&[tiny]));
    assert!(matches!(
        boot_info(&memory, 0x1000),
        Err(CorebootError::BadRecord { size: 4, .. })
    ));
    // A header promising more than memory holds.
    let mut cut = table(&[record(tag::MEMORY, &range(0, 0x1000, 1))]);
    cut.truncate(30);
    memory.0.insert(0x1000, cut);
    assert_eq!(
        boot_info(&memory, 0x1000),
        Err(CorebootError::Unreadable { address: 0x1000 })
    );
}

#[test]
fn forward_loops_end_with_an_error() {
    let mut memory = Memory::default();
    memory.0.insert(0x500, table(&[forward(0x2000)]));
    memory.0.insert(0x2000, table(&[forward(0x500)]));
    assert!(matches!(
        boot_info(&memory, 0x500),
        Err(CorebootError::ForwardLoop { .. })
    ));
    memory.0.insert(0x2000, table(&[forward(0x2000)]));
    assert!(matches!(
        boot_info(&memory, 0x2000),
        Err(CorebootError::ForwardLoop { .. })
    ));
    // A forward to nothing.
    memory.0.insert(0x2000, table(&[forward(0xDEAD_0000)]));
    assert!(matches!(
        boot_info(&memory, 0x2000),
        Err(CorebootError::Unreadable { .. } | CorebootError::BadSignature { .. })
    ));
}

#[test]
fn a_zero_sized_table_has_no_memory_map() {
    let mut memory = Memory::default();
    memory.0.insert(0x1000, table(&[]));
    assert_eq!(boot_info(&memory, 0x1000), Err(CorebootError::NoMemoryMap));
    // An oversized table is refused before it is read.
    let mut huge = table(&[]);
    huge[12..16].copy_from_slice(&(MAX_TABLE_BYTES + 1).to_le_bytes());
    huge[8..12].copy_from_slice(&0u32.to_le_bytes());
    let sum = ip_checksum(&huge[..24]) as u32;
    huge[8..12].copy_from_slice(&sum.to_le_bytes());
    memory.0.insert(0x1000, huge);
    assert!(matches!(
        boot_info(&memory, 0x1000),
        Err(CorebootError::TableTooLarge { .. })
    ));
}

#[test]
fn the_checksum_is_coreboots() {
    // RFC 1071's example words 0x0001 0xf203 0xf4f5 0xf6f7 sum to 0xddf2: checksum 0x220d.
    assert_eq!(
        ip_checksum(&[0x01, 0x00, 0x03, 0xf2, 0xf5, 0xf4, 0xf7, 0xf6]),
        0x220d
    );
    assert_eq!(ip_checksum(&[]), 0xFFFF);
}

proptest! {
    #[test]
    fn any_bytes_give_an_answer(bytes in proptest::collection::vec(any::<u8>(), 0..512), at in 0u64..0x600) {
        let mut memory = Memory::default();
        let mut raw = bytes.clone();
        if raw.len() >= 4 {
            raw[..4].copy_from_slice(&SIGNATURE);
        }
        memory.0.insert(at, raw);
        let _ = boot_info(&memory, at);
        let _ = boot_info(&memory, 0);
    }
}
