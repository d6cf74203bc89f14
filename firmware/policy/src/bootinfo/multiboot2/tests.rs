//! Multiboot2 boot information: what GRUB hands over, and every malformed variant.

use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;

/// Builds boot information tag by tag, padding each to 8 bytes as the specification does.
struct Builder {
    bytes: Vec<u8>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            bytes: alloc::vec![0; 8],
        }
    }

    fn tag(mut self, tag_type: u32, payload: &[u8]) -> Builder {
        self.bytes.extend_from_slice(&tag_type.to_le_bytes());
        self.bytes
            .extend_from_slice(&(8 + payload.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(payload);
        while !self.bytes.len().is_multiple_of(8) {
            self.bytes.push(0);
        }
        self
    }

    fn end(self) -> Vec<u8> {
        let mut bytes = self.tag(0, &[]).bytes;
        let total = bytes.len() as u32;
        bytes[0..4].copy_from_slice(&total.to_le_bytes());
        bytes
    }
}

fn memory_map(entries: &[(u64, u64, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&24u32.to_le_bytes());
    payload.extend_from_slice(&0u32.to_le_bytes());
    for &(base, size, kind) in entries {
        payload.extend_from_slice(&base.to_le_bytes());
        payload.extend_from_slice(&size.to_le_bytes());
        payload.extend_from_slice(&kind.to_le_bytes());
        payload.extend_from_slice(&0u32.to_le_bytes());
    }
    payload
}

fn module(start: u32, end: u32, name: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&start.to_le_bytes());
    payload.extend_from_slice(&end.to_le_bytes());
    payload.extend_from_slice(name.as_bytes());
    payload.push(0);
    payload
}

/// What GRUB 2.06 gives under Bochs, reduced to the tags we read plus two we skip.
fn grub_like() -> Vec<u8> {
    Builder::new()
        .tag(1, b"log=debug exit=ready\0")
        .tag(2, b"GRUB 2.06\0")
        .tag(3, &module(0x20_0000, 0x20_0100, "/boot/srat.aml"))
        .tag(3, &module(0x20_1000, 0x20_1030, "/boot/slit.aml"))
        .tag(4, &[0x7f, 2, 0, 0, 0x00, 0xfc, 0x0f, 0])
        .tag(
            6,
            &memory_map(&[
                (0, 0x9f000, 1),
                (0x9f000, 0x1000, 2),
                (0x10_0000, 0x3fef_0000, 1),
                (0x3fff_0000, 0x10000, 3),
                (0xfffc_0000, 0x40000, 2),
                (0x4000_0000, 0x1000, 4),
                (0x4000_1000, 0x1000, 5),
                (0x4000_2000, 0x1000, 7),
            ]),
        )
        .tag(14, b"RSD PTR \x00BOCHS \x00\x00\x00\x10\x00")
        .end()
}

#[test]
fn translates_what_grub_gives() {
    let info = parse(&grub_like(), 0x1_0000).unwrap();
    assert_eq!(info.protocol, BootProtocol::Multiboot2);
    assert_eq!(info.command_line, "log=debug exit=ready");
    assert_eq!(
        info.modules,
        alloc::vec![
            Module {
                start: 0x20_0000,
                end: 0x20_0100,
                name: "/boot/srat.aml".into()
            },
            Module {
                start: 0x20_1000,
                end: 0x20_1030,
                name: "/boot/slit.aml".into()
            }
        ]
    );
    let kinds: Vec<MemoryKind> = info.memory_map.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            MemoryKind::Usable,
            MemoryKind::Reserved,
            MemoryKind::Usable,
            MemoryKind::AcpiReclaimable,
            MemoryKind::Reserved,
            MemoryKind::AcpiNvs,
            MemoryKind::Unusable,
            MemoryKind::Reserved,
        ]
    );
    assert_eq!(info.memory_map[2].base, 0x10_0000);
    assert_eq!(info.memory_map[2].size, 0x3fef_0000);
    // The RSDP copy sits in tag 14's payload: its address is the payload's.
    match info.rsdp {
        Some(RsdpSource::Copied { address, bytes }) => {
            assert_eq!(bytes.len(), 20);
            assert!(bytes.starts_with(b"RSD PTR "));
            let offset = grub_like()
                .windows(8)
                .position(|w| w == b"RSD PTR ")
                .unwrap();
            assert_eq!(address, 0x1_0000 + offset as u64);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn prefers_the_new_rsdp_and_falls_back_to_basic_meminfo() {
    let bytes = Builder::new()
        .tag(
            15,
            b"new rsdp copy\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        )
        .tag(14, b"old rsdp copy\0\0\0\0\0\0\0")
        .tag(4, &[0x80, 2, 0, 0, 0x00, 0xfc, 0x0f, 0])
        .end();
    let info = parse(&bytes, 0x8000).unwrap();
    match &info.rsdp {
        Some(RsdpSource::Copied { bytes, .. }) => assert!(bytes.starts_with(b"new")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        info.memory_map,
        [
            MemoryRegion {
                base: 0,
                size: 640 << 10,
                kind: MemoryKind::Usable
            },
            MemoryRegion {
                base: 1 << 20,
                size: 0xffc00 << 10,
                kind: MemoryKind::Usable
            },
        ]
    );
    assert!(info.modules.is_empty());
}

#[test]
fn refuses_malformed_structures() {
    let good = grub_like();
    assert_eq!(
        parse(&good, 0x1004),
        Err(Multiboot2Error::Misaligned { address: 0x1004 })
    );
    assert_eq!(
        parse(&good[..4], 0x1000),
        Err(Multiboot2Error::Truncated {
            have: 4,
            need: good.len()
        })
    );
    assert_eq!(
        parse(&good[..good.len() - 8], 0x1000),
        Err(Multiboot2Error::Truncated {
            have: good.len() - 8,
            need: good.len()
        })
    );
    assert_eq!(
        parse(&[0; 3], 0),
        Err(Multiboot2Error::Truncated { have: 3, need: 8 })
    );

    let mut huge = good.clone();
    huge[0..4].copy_from_slice(&(MAX_TOTAL_SIZE + 1).to_le_bytes());
    assert_eq!(
        parse(&huge, 0),
        Err(Multiboot2Error::BadTotalSize {
            total_size: MAX_TOTAL_SIZE + 1
        })
    );

    // No end tag: total_size stops the walk first.
    let mut open = Builder::new().tag(1, b"x\0").bytes;
    let total = open.len() as u32;
    open[0..4].copy_from_slice(&total.to_le_bytes());
    assert_eq!(parse(&open, 0), Err(Multiboot2Error::MissingEndTag));

    // A tag whose size runs past total_size, one below its header, one whose size wraps.
    for size in [0x1000u32, 4, u32::MAX] {
        let mut bad = grub_like();
        bad[12..16].copy_from_slice(&size.to_le_bytes());
        assert_eq!(
            parse(&bad, 0),
            Err(Multiboot2Error::BadTagSize {
                offset: 8,
                tag_type: 1,
                size
            })
        );
    }

    let short_module = Builder::new().tag(3, &[1, 2, 3]).end();
    assert_eq!(
        parse(&short_module, 0),
        Err(Multiboot2Error::TagTooShort {
            offset: 8,
            tag_type: 3,
            size: 11,
            minimum: 16
        })
    );
    let backwards = Builder::new().tag(3, &module(0x2000, 0x1000, "")).end();
    assert_eq!(
        parse(&backwards, 0),
        Err(Multiboot2Error::ModuleEndsBeforeStart {
            index: 0,
            start: 0x2000,
            end: 0x1000
        })
    );
    let mut odd_map = memory_map(&[(0, 0x1000, 1)]);
    odd_map[0..4].copy_from_slice(&20u32.to_le_bytes());
    assert_eq!(
        parse(&Builder::new().tag(6, &odd_map).end(), 0),
        Err(Multiboot2Error::BadMemoryMapEntrySize { entry_size: 20 })
    );
    assert_eq!(
        parse(&Builder::new().tag(1, b"only a command line\0").end(), 0),
        Err(Multiboot2Error::NoMemoryInformation)
    );
}

#[test]
fn larger_memory_map_entries_are_stepped_over() {
    let mut payload = Vec::new();
    payload.extend_from_slice(&32u32.to_le_bytes());
    payload.extend_from_slice(&0u32.to_le_bytes());
    for (base, size) in [(0u64, 0x9f000u64), (0x10_0000, 0x100_0000)] {
        payload.extend_from_slice(&base.to_le_bytes());
        payload.extend_from_slice(&size.to_le_bytes());
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(&[0; 12]);
    }
    let info = parse(&Builder::new().tag(6, &payload).end(), 0).unwrap();
    assert_eq!(info.memory_map.len(), 2);
    assert_eq!(info.memory_map[1].size, 0x100_0000);
}

#[test]
fn magic_is_checked() {
    assert_eq!(check_magic(BOOTLOADER_MAGIC), Ok(()));
    assert_eq!(
        check_magic(0x2bad_b002),
        Err(Multiboot2Error::BadMagic { found: 0x2bad_b002 })
    );
}

proptest! {
    /// Any bytes at all: an answer, never a panic; a success describes only what was there.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(info) = parse(&bytes, 0) {
            prop_assert!(info.modules.iter().all(|m| m.start <= m.end));
            prop_assert!(info.memory_map.len() <= bytes.len() / 24);
        }
    }

    /// Good boot information with one word changed anywhere: still never a panic.
    #[test]
    fn mutated_boot_information_never_panics(
        offset in 0usize..200,
        value in any::<u32>(),
    ) {
        let mut bytes = grub_like();
        let offset = (offset * 4) % (bytes.len() - 4);
        bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        let _ = parse(&bytes, 0x1000);
    }
}
