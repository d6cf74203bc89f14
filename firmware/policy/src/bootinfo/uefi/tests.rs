//! The handoff as the UEFI application writes it from an OVMF-like map, and malformed ones:
//! each gets its typed error, never a panic.

use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::memory_type::*;
use super::*;

/// OVMF's stride (48 bytes: the 40-byte descriptor plus padding).
const STRIDE: usize = 48;

/// Part of the map OVMF 2022.11 gives QEMU q35 with 2 GiB (read from a real boot).
fn ovmf_like() -> Vec<u8> {
    [
        (BOOT_SERVICES_CODE, 0x0, 1, 0xF),
        (CONVENTIONAL, 0x1000, 0x86, 0xF),
        (BOOT_SERVICES_DATA, 0x87000, 1, 0xF),
        (CONVENTIONAL, 0x100000, 0x700, 0xF),
        (ACPI_NVS, 0x800000, 8, 0xF),
        (CONVENTIONAL, 0x808000, 3, 0xF),
        (ACPI_NVS, 0x810000, 0xF0, 0xF),
        (BOOT_SERVICES_DATA, 0x900000, 0xC00, 0xF),
        (CONVENTIONAL, 0x1500000, 0x7A66D, 0xF),
        (LOADER_CODE, 0x7E3F_7000, 0xC, 0xF),
        (LOADER_DATA, 0x7E40_D000, 2, 0xF),
        (
            RUNTIME_SERVICES_DATA,
            0x7F8E_E000,
            0x100,
            0x8000_0000_0000_000F,
        ),
        (ACPI_RECLAIM, 0x7FB7_E000, 8, 0xF),
        (RESERVED, 0xE000_0000, 0x10000, 0x1),
        (MMIO, 0xFFC0_0000, 0x400, 0x8000_0000_0000_0001),
        (CONVENTIONAL, 0x1_0000_0000, 0x40000, 0xF),
    ]
    .iter()
    .flat_map(|&(t, start, pages, attribute)| encode_descriptor(t, start, pages, attribute, STRIDE))
    .collect()
}

fn ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

fn block(map: &[u8], options: &[u8], rsdp: u64) -> Vec<u8> {
    let handoff = Handoff {
        rsdp,
        memory_map: map,
        descriptor_bytes: STRIDE as u32,
        descriptor_version: 1,
        load_options: options,
    };
    let mut out = vec![0xA5; handoff.encoded_len()];
    assert_eq!(handoff.encode(&mut out), Some(out.len()));
    out
}

#[test]
fn an_ovmf_map_translates_type_by_type() {
    let bytes = block(
        &ovmf_like(),
        &ucs2("log=debug exit=partitions"),
        0x7FB7_E014,
    );
    let info = parse(&bytes, 0x7E40_D000).expect("valid handoff");
    assert_eq!(info.protocol, BootProtocol::Uefi);
    assert_eq!(info.rsdp, Some(RsdpSource::At(0x7FB7_E014)));
    assert_eq!(info.command_line, "log=debug exit=partitions");
    assert!(info.modules.is_empty());
    let kinds: Vec<(u64, MemoryKind)> = info.memory_map.iter().map(|r| (r.base, r.kind)).collect();
    assert_eq!(
        kinds,
        [
            (0x0, MemoryKind::Usable),
            (0x1000, MemoryKind::Usable),
            (0x87000, MemoryKind::Usable),
            (0x100000, MemoryKind::Usable),
            (0x800000, MemoryKind::AcpiNvs),
            (0x808000, MemoryKind::Usable),
            (0x810000, MemoryKind::AcpiNvs),
            (0x900000, MemoryKind::Usable),
            (0x1500000, MemoryKind::Usable),
            (0x7E3F_7000, MemoryKind::Usable),
            (0x7E40_D000, MemoryKind::Usable),
            (0x7F8E_E000, MemoryKind::Reserved),
            (0x7FB7_E000, MemoryKind::AcpiReclaimable),
            (0xE000_0000, MemoryKind::Reserved),
            (0xFFC0_0000, MemoryKind::Reserved),
            (0x1_0000_0000, MemoryKind::Usable),
        ]
    );
    assert_eq!(info.memory_map[8].size, 0x7A66D * 4096);
    // Fragments merge into the usable RAM the memory manager sees; the NVS holes stay out.
    let usable = info.usable_ram();
    assert_eq!(usable[0], (0x0, 0x88000));
    assert!(usable.contains(&(0x100000, 0x800000)));
    assert!(usable.contains(&(0x900000, 0x7BB6_D000)));
    assert!(usable.contains(&(0x1_0000_0000, 0x1_4000_0000)));
}

#[test]
fn every_memory_type_has_its_kind() {
    for t in [
        LOADER_CODE,
        LOADER_DATA,
        BOOT_SERVICES_CODE,
        BOOT_SERVICES_DATA,
        CONVENTIONAL,
    ] {
        assert_eq!(memory_kind(t, 0xF), MemoryKind::Usable, "type {t}");
        assert_eq!(
            memory_kind(t, 0xF | ATTRIBUTE_SPECIFIC_PURPOSE),
            MemoryKind::Reserved
        );
    }
    for t in [
        RESERVED,
        RUNTIME_SERVICES_CODE,
        RUNTIME_SERVICES_DATA,
        MMIO,
        MMIO_PORT_SPACE,
        PAL_CODE,
        PERSISTENT,
        UNACCEPTED,
        0x7000_0000,
        0x8000_0001,
    ] {
        assert_eq!(memory_kind(t, 0xF), MemoryKind::Reserved, "type {t:#x}");
    }
    assert_eq!(memory_kind(UNUSABLE, 0xF), MemoryKind::Unusable);
    assert_eq!(memory_kind(ACPI_RECLAIM, 0xF), MemoryKind::AcpiReclaimable);
    assert_eq!(memory_kind(ACPI_NVS, 0xF), MemoryKind::AcpiNvs);
}

#[test]
fn load_options_read_as_the_shell_and_firmware_pass_them() {
    assert_eq!(command_line(&ucs2("")), "");
    assert_eq!(command_line(&[]), "");
    assert_eq!(
        command_line(&ucs2("  exit=partitions  ")),
        "exit=partitions"
    );
    // The UEFI shell passes the program name first.
    assert_eq!(
        command_line(&ucs2("fs0:\\EFI\\numavisor.EFI log=debug")),
        "log=debug"
    );
    assert_eq!(command_line(&ucs2("numavisor.efi")), "");
    // Text ends at the first NUL; an odd trailing byte is not a code unit.
    let mut options = ucs2("a=1");
    options.extend(ucs2("hidden"));
    options.push(0x41);
    assert_eq!(command_line(&options), "a=1");
    // A lone surrogate is not text.
    let bad: Vec<u8> = [0x61u16, 0xD800, 0x62]
        .iter()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    assert_eq!(command_line(&bad), "a\u{FFFD}b");
}

#[test]
fn no_rsdp_is_none() {
    let info = parse(&block(&ovmf_like(), &[], 0), 0x1000).unwrap();
    assert_eq!(info.rsdp, None);
    assert_eq!(info.command_line, "");
}

fn with_u32(mut bytes: Vec<u8>, at: usize, value: u32) -> Vec<u8> {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    bytes
}

fn with_u64(mut bytes: Vec<u8>, at: usize, value: u64) -> Vec<u8> {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    bytes
}

#[test]
fn malformed_headers_get_their_errors() {
    let good = block(&ovmf_like(), &ucs2("x"), 0);
    let len = good.len() as u64;
    let mut unsigned = good.clone();
    unsigned[0] = b'X';
    assert_eq!(
        parse(&unsigned, 0x9000),
        Err(UefiError::BadSignature { address: 0x9000 })
    );
    assert_eq!(
        parse(&good[..10], 0x9000),
        Err(UefiError::BadSignature { address: 0x9000 })
    );
    assert_eq!(
        parse(&with_u32(good.clone(), 8, 2), 0),
        Err(UefiError::UnknownVersion { version: 2 })
    );
    assert_eq!(
        parse(&with_u32(good.clone(), 12, 32), 0),
        Err(UefiError::BadHeaderSize { bytes: 32 })
    );
    assert_eq!(
        parse(&with_u64(good.clone(), 16, 8), 0),
        Err(UefiError::BadTotalSize { bytes: 8 })
    );
    assert_eq!(
        parse(&with_u64(good.clone(), 16, MAX_HANDOFF_BYTES + 1), 0),
        Err(UefiError::BadTotalSize {
            bytes: MAX_HANDOFF_BYTES + 1
        })
    );
    // A block shorter than it says (the caller copied what the header claimed; it must match).
    assert_eq!(
        parse(&good[..good.len() - 2], 0),
        Err(UefiError::BadTotalSize { bytes: len })
    );
    assert_eq!(total_size(&good, 0), Ok(len));
}

#[test]
fn parts_outside_the_block_are_refused() {
    let good = block(&ovmf_like(), &ucs2("x"), 0);
    for (at, value, what) in [
        (40, u32::MAX, "memory map"),
        (40, 8, "memory map"),
        (44, u32::MAX, "memory map"),
        (48, good.len() as u32, "load options"),
        (52, u32::MAX - 60, "load options"),
    ] {
        let bytes = with_u32(good.clone(), at, value);
        assert_eq!(
            parse(&bytes, 0),
            Err(UefiError::OutOfBlock { what }),
            "field at {at}"
        );
    }
}

#[test]
fn malformed_maps_get_their_errors() {
    let map = ovmf_like();
    let good = block(&map, &[], 0);
    assert_eq!(
        parse(&with_u32(good.clone(), 32, 36), 0),
        Err(UefiError::BadDescriptorSize { bytes: 36 })
    );
    assert_eq!(
        parse(&with_u32(good.clone(), 32, 44), 0),
        Err(UefiError::BadDescriptorSize { bytes: 44 })
    );
    assert_eq!(
        parse(&with_u32(good.clone(), 36, 0), 0),
        Err(UefiError::BadDescriptorVersion { version: 0 })
    );
    // A 40-byte stride over a map of 48-byte descriptors: not whole descriptors.
    assert_eq!(
        parse(&with_u32(good.clone(), 32, 40), 0),
        Err(UefiError::PartialDescriptor {
            map_bytes: map.len() as u32,
            descriptor_bytes: 40
        })
    );
    let misaligned = encode_descriptor(CONVENTIONAL, 0x1234, 4, 0xF, STRIDE);
    assert_eq!(
        parse(&block(&[map.as_slice(), &misaligned].concat(), &[], 0), 0),
        Err(UefiError::MisalignedDescriptor {
            index: 16,
            start: 0x1234
        })
    );
    let wraps = encode_descriptor(CONVENTIONAL, 0xFFFF_FFFF_FFFF_0000, 0x100, 0xF, STRIDE);
    assert_eq!(
        parse(&block(&wraps, &[], 0), 0),
        Err(UefiError::DescriptorWraps {
            index: 0,
            start: 0xFFFF_FFFF_FFFF_0000,
            pages: 0x100
        })
    );
    let huge = encode_descriptor(CONVENTIONAL, 0, u64::MAX / 2, 0xF, STRIDE);
    assert!(matches!(
        parse(&block(&huge, &[], 0), 0),
        Err(UefiError::DescriptorWraps { .. })
    ));
    let reserved_only = encode_descriptor(RESERVED, 0, 16, 0, STRIDE);
    assert_eq!(
        parse(&block(&reserved_only, &[], 0), 0),
        Err(UefiError::NoUsableMemory)
    );
    assert_eq!(
        parse(&block(&[], &[], 0), 0),
        Err(UefiError::NoUsableMemory)
    );
}

#[test]
fn empty_descriptors_are_dropped() {
    let map = [
        encode_descriptor(CONVENTIONAL, 0x1000, 0, 0xF, STRIDE),
        encode_descriptor(CONVENTIONAL, 0x2000, 1, 0xF, STRIDE),
    ]
    .concat();
    let info = parse(&block(&map, &[], 0), 0).unwrap();
    assert_eq!(info.memory_map.len(), 1);
}

#[test]
fn encode_refuses_a_short_buffer() {
    let map = ovmf_like();
    let handoff = Handoff {
        rsdp: 0,
        memory_map: &map,
        descriptor_bytes: STRIDE as u32,
        descriptor_version: 1,
        load_options: &[],
    };
    let mut out = vec![0; handoff.encoded_len() - 1];
    assert_eq!(handoff.encode(&mut out), None);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes, 0x1000);
        let _ = total_size(&bytes, 0x1000);
        let _ = command_line(&bytes);
    }

    #[test]
    fn arbitrary_maps_in_a_valid_block_never_panic(
        map in proptest::collection::vec(any::<u8>(), 0..480),
        stride in 0u32..128,
        options in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let handoff = Handoff { rsdp: 0, memory_map: &map, descriptor_bytes: stride, descriptor_version: 1, load_options: &options };
        let mut out = vec![0; handoff.encoded_len()];
        handoff.encode(&mut out).unwrap();
        let _ = parse(&out, 0);
    }

    #[test]
    fn descriptors_round_trip(
        ranges in proptest::collection::vec((0u32..16, 0u64..(1 << 40), 1u64..(1 << 20), any::<u64>()), 1..40)
    ) {
        let map: Vec<u8> = ranges
            .iter()
            .flat_map(|&(t, page, pages, attribute)| encode_descriptor(t, page * 4096, pages, attribute, STRIDE))
            .collect();
        let bytes = block(&map, &[], 0);
        match parse(&bytes, 0) {
            Ok(info) => {
                prop_assert_eq!(info.memory_map.len(), ranges.len());
                for (region, &(t, page, pages, attribute)) in info.memory_map.iter().zip(&ranges) {
                    prop_assert_eq!(region.base, page * 4096);
                    prop_assert_eq!(region.size, pages * 4096);
                    prop_assert_eq!(region.kind, memory_kind(t, attribute));
                }
            }
            Err(e) => prop_assert_eq!(e, UefiError::NoUsableMemory),
        }
    }
}
