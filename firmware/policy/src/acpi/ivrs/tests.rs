//! Host tests for the IVRS parser (AMD IOMMU 48882 3.x §5.2) on synthetic tables.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::acpi::testkit::*;
use crate::acpi::EntryFault;

fn parsed(table: &[u8]) -> (Ivrs, Vec<AcpiProblem>) {
    let mut problems = Vec::new();
    let ivrs = parse(table, &mut problems);
    (ivrs, problems)
}

/// Every problem's message: one console line naming the table.
fn messages(problems: &[AcpiProblem]) -> Vec<String> {
    let m: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    for line in &m {
        assert!(!line.contains('\n') && line.starts_with("IVRS"), "{line}");
    }
    m
}

fn faults(problems: &[AcpiProblem]) -> Vec<(usize, IvrsFault)> {
    problems
        .iter()
        .map(|p| match *p {
            AcpiProblem::Ivrs { index, fault, .. } => (index, fault),
            _ => panic!("{p:?}"),
        })
        .collect()
}

/// IVinfo as QEMU writes it: EFRSup, GVA size 2 (48 bits), 40 physical and 48 virtual bits.
const QEMU_INFO: u32 = 1 | (2 << 5) | (40 << 8) | (48 << 15);

/// QEMU 7.2 `-device amd-iommu` on q35: the IOMMU at 00:05.0 (0x28), base 0xFED80000, one
/// "all devices" entry and the I/O APIC as a special device; listed in an 0x10 and an 0x11
/// block.
fn qemu() -> Vec<u8> {
    let entries = [ivhd4(1, 0, 0), ivhd_special(0, 0xA0, 1, 0xD7)];
    ivrs(
        QEMU_INFO,
        &[
            ivhd(0x10, 0xD1, 0x28, 0xFED8_0000, 0, &entries),
            ivhd(0x11, 0x30, 0x28, 0xFED8_0000, 0, &entries),
        ],
    )
}

#[test]
fn qemu_amd_iommu() {
    let (v, problems) = parsed(&qemu());
    assert!(problems.is_empty(), "{:?}", messages(&problems));
    assert!(v.efr_supported() && !v.dma_remap_support() && !v.ht_ats_reserved());
    assert_eq!(
        (
            v.guest_virtual_size(),
            v.physical_address_bits(),
            v.virtual_address_bits()
        ),
        (2, 40, 48)
    );
    // The 0x11 block wins; the 0x10 one is listed as skipped.
    assert_eq!(v.units.len(), 1);
    let u = &v.units[0];
    assert_eq!(
        (
            u.kind,
            u.flags,
            u.iommu_device_id,
            u.capability_offset,
            u.base,
            u.efr
        ),
        (0x11, 0x30, 0x28, 0x40, 0xFED8_0000, Some(0x5a))
    );
    assert_eq!(
        u.ranges,
        vec![IvhdRange {
            first: 0,
            last: 0xFFFF,
            settings: 0,
            alias: None,
            extended: 0
        }]
    );
    assert_eq!(
        u.specials,
        vec![IvhdSpecial {
            variety: SpecialVariety::IoApic,
            handle: 0,
            device_id: 0xA0,
            settings: 0xD7
        }]
    );
    assert_eq!(
        v.skipped,
        vec![SkippedBlock {
            kind: 0x10,
            offset: 48
        }]
    );
    assert_eq!(v.unit_for(0, 0x0100), Some((0, None)));
    assert_eq!(v.unit_for(1, 0x0100), None);

    // An 0x10 block alone is kept, without an EFR.
    let only = ivrs(
        QEMU_INFO,
        &[ivhd(0x10, 0xD1, 0x28, 0xFED8_0000, 0, &[ivhd4(1, 0, 0)])],
    );
    let (v, problems) = parsed(&only);
    assert!(problems.is_empty());
    assert_eq!((v.units[0].kind, v.units[0].efr), (0x10, None));
}

/// A two-IOMMU EPYC-like table: each IOMMU as 0x11 and 0x40 blocks, with selects, ranges,
/// an alias range, extended entries, I/O APIC and HPET specials, an ACPI HID device and
/// IVMDs.
fn epyc() -> Vec<u8> {
    let first = |with_hid: bool| {
        let mut e = vec![
            ivhd4(3, 0x0000, 0),
            ivhd4(4, 0x00FF, 0),
            ivhd4(0, 0, 0),
            ivhd4(2, 0x0100, 0x40),
            ivhd_alias(0x43, 0x0200, 0, 0x0118),
            ivhd4(4, 0x02FF, 0),
            ivhd8(0x46, 0x0300, 0, 0x8000_0000u32.to_le_bytes()),
            ivhd_special(0x21, 0x00A0, 1, 0xD7),
            ivhd_special(0, 0x00A0, 2, 0),
        ];
        if with_hid {
            e.push(ivhd_acpi(0x00A5, b"AMDI0020", b"\0\0\0\0\0\0\0\0", b"ID00"));
        }
        e
    };
    let second = [
        ivhd8(0x47, 0x4000, 0, 1u32.to_le_bytes()),
        ivhd4(4, 0x7FFF, 0),
        ivhd_special(0x22, 0x4001, 1, 0xD7),
    ];
    ivrs(
        QEMU_INFO | 2,
        &[
            ivhd(0x11, 0xB0, 0x0002, 0xF370_0000, 0, &first(false)),
            ivhd(0x40, 0xB0, 0x0002, 0xF370_0000, 0, &first(true)),
            ivhd(0x11, 0xB0, 0x4002, 0xF570_0000, 0, &second),
            ivhd(0x40, 0xB0, 0x4002, 0xF570_0000, 0, &second),
            ivmd(0x21, 0x7, 0x0100, 0, 0xA000_0000, 0x10_0000),
            ivmd(0x22, 0x1, 0x4000, 0x40FF, 0xB000_0000, 0x1000),
            ivmd(0x20, 0x8, 0, 0, 0xFD00_0000, 0x100_0000),
        ],
    )
}

#[test]
fn epyc_like() {
    let (v, problems) = parsed(&epyc());
    assert!(problems.is_empty(), "{:?}", messages(&problems));
    assert!(v.dma_remap_support());
    assert_eq!(v.units.len(), 2);
    assert!(v.units.iter().all(|u| u.kind == 0x40));
    assert_eq!(
        v.skipped.iter().map(|s| s.kind).collect::<Vec<_>>(),
        vec![0x11, 0x11]
    );
    let u = &v.units[0];
    let ranges: Vec<(u16, u16, u8, Option<u16>, u32)> = u
        .ranges
        .iter()
        .map(|r| (r.first, r.last, r.settings, r.alias, r.extended))
        .collect();
    assert_eq!(
        ranges,
        vec![
            (0, 0xFF, 0, None, 0),
            (0x100, 0x100, 0x40, None, 0),
            (0x200, 0x2FF, 0, Some(0x118), 0),
            (0x300, 0x300, 0, None, 0x8000_0000),
        ]
    );
    assert_eq!(u.specials.len(), 2);
    assert_eq!(u.specials[1].variety, SpecialVariety::Hpet);
    assert_eq!(
        u.acpi_devices,
        vec![IvhdAcpiDevice {
            device_id: 0xA5,
            settings: 0,
            hid: *b"AMDI0020",
            cid: [0; 8],
            uid_format: 2,
            uid: b"ID00".to_vec()
        }]
    );
    assert_eq!(v.units[1].ranges[0].extended, 1);

    assert_eq!(v.unit_for(0, 0x0010), Some((0, None)));
    assert_eq!(v.unit_for(0, 0x0210), Some((0, Some(0x118))));
    assert_eq!(v.unit_for(0, 0x0101), None);
    assert_eq!(v.unit_for(0, 0x5000), Some((1, None)));

    assert_eq!(v.memory.len(), 3);
    let m = &v.memory[0];
    assert!(m.unity() && m.readable() && m.writable() && !m.exclusion());
    assert_eq!(
        (m.first, m.last, m.base, m.limit),
        (0x100, 0x100, 0xA000_0000, 0xA00F_FFFF)
    );
    let kinds = |id| -> Vec<u8> { v.memory_for(0, id).iter().map(|m| m.kind).collect() };
    assert_eq!(kinds(0x0100), vec![0x21, 0x20]);
    assert_eq!(kinds(0x4010), vec![0x22, 0x20]);
    assert_eq!(kinds(0x4100), vec![0x20]);
    assert!(v.memory_for(1, 0x0100).is_empty());
}

#[test]
fn range_problems() {
    let entries = [
        // A start closed by nothing before the next start.
        ivhd4(3, 0x0010, 0),
        ivhd4(3, 0x0020, 0),
        ivhd4(4, 0x002F, 0),
        // An end without a start.
        ivhd4(4, 0x0030, 0),
        // An end below its start.
        ivhd4(3, 0x0050, 0),
        ivhd4(4, 0x0040, 0),
        // A start at the end of the block.
        ivhd_alias(0x43, 0x0060, 0, 0x0001),
    ];
    let (v, problems) = parsed(&ivrs(0, &[ivhd(0x10, 0, 2, 0x1000, 0, &entries)]));
    let m = messages(&problems);
    let e = 48 + 24;
    assert_eq!(
        faults(&problems),
        vec![
            (0, IvrsFault::RangeWithoutEnd { at: e }),
            (0, IvrsFault::EndWithoutStart { at: e + 12 }),
            (
                0,
                IvrsFault::RangeInverted {
                    at: e + 20,
                    first: 0x50,
                    last: 0x40
                }
            ),
            (0, IvrsFault::RangeWithoutEnd { at: e + 24 }),
        ]
    );
    assert!(
        m[0].contains("block 0 (type 0x10) at offset 0x30"),
        "{}",
        m[0]
    );
    assert!(m[0].contains("range dropped"), "{}", m[0]);
    let ranges: Vec<(u16, u16)> = v.units[0]
        .ranges
        .iter()
        .map(|r| (r.first, r.last))
        .collect();
    assert_eq!(ranges, vec![(0x20, 0x2F)]);
    assert_eq!(v.unit_for(0, 0x0010), None);
    assert_eq!(v.unit_for(0, 0x0060), None);
}

#[test]
fn entry_walk_problems() {
    // An unknown variable-length type ends the entry walk; later entries are lost.
    let (v, problems) = parsed(&ivrs(
        0,
        &[ivhd(
            0x40,
            0,
            2,
            0x1000,
            0,
            &[ivhd4(2, 1, 0), ivhd4(0x80, 0, 0), ivhd4(2, 2, 0)],
        )],
    ));
    messages(&problems);
    assert_eq!(
        faults(&problems),
        vec![(
            0,
            IvrsFault::UnknownEntry {
                at: 48 + 44,
                entry_type: 0x80
            }
        )]
    );
    assert_eq!(v.units[0].ranges.len(), 1);

    // Unknown fixed-size types are skipped by size; an entry cut off by the block end.
    let mut hid = ivhd_acpi(5, b"AMDI0040", &[0; 8], b"0");
    hid.pop();
    let (v, problems) = parsed(&ivrs(
        0,
        &[ivhd(
            0x40,
            0,
            2,
            0x1000,
            0,
            &[
                ivhd4(7, 9, 0),
                ivhd8(0x50, 9, 0, [0; 4]),
                ivhd4(2, 3, 0),
                hid,
            ],
        )],
    ));
    messages(&problems);
    assert_eq!(
        faults(&problems),
        vec![(
            0,
            IvrsFault::EntryPastEnd {
                at: 48 + 56,
                entry_type: 0xF0,
                length: 23,
                room: 22
            }
        )]
    );
    assert_eq!(v.units[0].ranges.len(), 1);
    assert!(v.units[0].acpi_devices.is_empty());
}

#[test]
fn block_framing_problems() {
    let good = ivhd(0x10, 0, 2, 0x1000, 0, &[ivhd4(1, 0, 0)]);
    for (bad, fault) in [
        (vec![0x10, 0, 0, 0], EntryFault::BadLength { length: 0 }),
        (
            vec![
                0x11, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            EntryFault::ShorterThanType {
                length: 24,
                minimum: 40,
            },
        ),
        (
            vec![0x20, 0, 0xFF, 0],
            EntryFault::PastEnd {
                length: 255,
                table_end: 48 + 28 + 4 + 28,
            },
        ),
    ] {
        let (v, problems) = parsed(&ivrs(0, &[good.clone(), bad, good.clone()]));
        let m = messages(&problems);
        assert_eq!(v.units.len(), 1, "{m:?}");
        assert!(
            matches!(problems[..], [AcpiProblem::Entry { index: 1, fault: f, .. }] if f == fault),
            "{problems:?}"
        );
    }
    // Unknown block types are skipped; a second block of one type for one IOMMU is a problem.
    let (v, problems) = parsed(&ivrs(
        0,
        &[good.clone(), vec![0x30, 0, 8, 0, 1, 2, 3, 4], good],
    ));
    assert_eq!(
        faults(&problems),
        vec![(2, IvrsFault::DuplicateBlock { first: 0 })]
    );
    messages(&problems);
    assert_eq!(v.units.len(), 1);
    assert_eq!(
        v.skipped,
        vec![SkippedBlock {
            kind: 0x30,
            offset: 48 + 28
        }]
    );
    let (v, problems) = parsed(&ivrs(0, &[])[..47]);
    assert_eq!(v, Ivrs::default());
    assert!(matches!(
        problems[..],
        [AcpiProblem::FixedPartShort { minimum: 48, .. }]
    ));
}

#[test]
fn memory_problems() {
    let (v, problems) = parsed(&ivrs(
        0,
        &[
            ivmd(0x21, 1, 5, 0, 0x1000_0800, 0x1000),
            ivmd(0x21, 1, 5, 0, 0x2000_0000, 0),
            ivmd(0x21, 1, 5, 0, 0xFFFF_FFFF_FFFF_0000, 0x2_0000),
            ivmd(0x22, 1, 0x30, 0x10, 0x3000_0000, 0x1000),
        ],
    ));
    let m = messages(&problems);
    assert_eq!(
        faults(&problems),
        vec![
            (
                0,
                IvrsFault::MemoryUnaligned {
                    start: 0x1000_0800,
                    length: 0x1000
                }
            ),
            (1, IvrsFault::MemoryEmpty { start: 0x2000_0000 }),
            (
                2,
                IvrsFault::MemoryWraps {
                    start: 0xFFFF_FFFF_FFFF_0000,
                    length: 0x2_0000
                }
            ),
            (
                3,
                IvrsFault::DeviceRangeInverted {
                    first: 0x30,
                    last: 0x10
                }
            ),
        ],
        "{m:?}"
    );
    let blocks: Vec<(u16, u16, u64, u64)> = v
        .memory
        .iter()
        .map(|m| (m.first, m.last, m.base, m.limit))
        .collect();
    assert_eq!(
        blocks,
        vec![
            (5, 5, 0x1000_0000, 0x1000_1FFF),
            (5, 5, 0xFFFF_FFFF_FFFF_0000, u64::MAX),
            (0x10, 0x30, 0x3000_0000, 0x3000_0FFF),
        ]
    );
}

/// Device entry types: the 4-byte ones, and every 8-byte one decoded.
fn entry_type() -> impl Strategy<Value = u8> {
    prop_oneof![
        0u8..5,
        Just(0x42),
        Just(0x43),
        Just(0x46),
        Just(0x47),
        Just(0x48)
    ]
}

/// What the parser promises whatever the bytes.
fn check(v: &Ivrs) {
    let mut iommus: Vec<(u16, u64)> = v.units.iter().map(|u| (u.segment, u.base)).collect();
    iommus.sort_unstable();
    assert!(
        iommus.windows(2).all(|w| w[0] != w[1]),
        "one unit per IOMMU"
    );
    for u in &v.units {
        assert!(matches!(u.kind, 0x10 | 0x11 | 0x40));
        assert_eq!(u.efr.is_some(), u.kind != 0x10);
        assert!(u.ranges.iter().all(|r| r.first <= r.last));
    }
    for m in &v.memory {
        assert!(m.first <= m.last && m.base <= m.limit);
        assert!(m.base & 0xFFF == 0 && m.limit & 0xFFF == 0xFFF);
    }
}

/// The brute force `unit_for` must agree with: paint a 64 Ki lookup table range by range, in
/// table order, as Linux fills its rlookup and alias tables.
fn painted(v: &Ivrs, segment: u16) -> Vec<Option<(usize, Option<u16>)>> {
    let mut table = vec![None; 0x1_0000];
    for (i, u) in v
        .units
        .iter()
        .enumerate()
        .filter(|(_, u)| u.segment == segment)
    {
        for r in &u.ranges {
            for id in r.first..=r.last {
                table[usize::from(id)] = Some((i, r.alias));
            }
        }
    }
    table
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random bytes after an IVRS header never panic, and every problem is one line.
    #[test]
    fn random_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..400)) {
        let (v, problems) = parsed(&table(b"IVRS", 2, &body));
        messages(&problems);
        check(&v);
    }

    /// Random well-framed blocks of random entries never panic, and `unit_for` agrees with
    /// painting the parsed ranges.
    #[test]
    fn random_entries_agree_with_painting(
        blocks in prop::collection::vec(
            (
                prop_oneof![Just(0x10u8), Just(0x11), Just(0x40)],
                0u16..2,
                0u64..3,
                prop::collection::vec(
                    (entry_type(), any::<u16>(), any::<u16>()),
                    0..12,
                ),
            ),
            0..5,
        ),
        probes in prop::collection::vec(any::<u16>(), 16),
    ) {
        let built: Vec<Vec<u8>> = blocks
            .iter()
            .map(|(kind, segment, base, entries)| {
                let entries: Vec<Vec<u8>> = entries
                    .iter()
                    .map(|&(t, id, other)| match t {
                        0..5 => ivhd4(t, id, 0),
                        _ => ivhd_alias(t, id, 0, other),
                    })
                    .collect();
                ivhd(*kind, 0, 2, 0x1000 * (base + 1), *segment, &entries)
            })
            .collect();
        let (v, problems) = parsed(&ivrs(0, &built));
        messages(&problems);
        check(&v);
        // Random IDs, and the edges of every range.
        let mut probes = probes;
        for r in v.units.iter().flat_map(|u| &u.ranges) {
            probes.extend([r.first, r.last, r.first.wrapping_sub(1), r.last.wrapping_add(1)]);
        }
        for segment in 0..2 {
            let paint = painted(&v, segment);
            for &id in &probes {
                prop_assert_eq!(v.unit_for(segment, id), paint[usize::from(id)]);
            }
        }
    }

    /// The EPYC-like and QEMU tables with bytes overwritten or cut short.
    #[test]
    fn mutated_tables_never_panic(
        which in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        probes in prop::collection::vec(any::<u16>(), 8),
    ) {
        let mut t = if which { epyc() } else { qemu() };
        for (at, value) in edits {
            // The signature stays, so that every message names the IVRS.
            let i = 4 + at.index(t.len() - 4);
            t[i] = value;
        }
        t.truncate(36 + cut.index(t.len() - 35));
        let (v, problems) = parsed(&t);
        messages(&problems);
        check(&v);
        for segment in 0..2 {
            let paint = painted(&v, segment);
            for &id in &probes {
                prop_assert_eq!(v.unit_for(segment, id), paint[usize::from(id)]);
            }
        }
    }
}
