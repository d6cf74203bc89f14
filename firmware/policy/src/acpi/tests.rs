//! Host tests for ACPI discovery (ACPI 6.5 §5.2) on synthetic tables.

use alloc::string::ToString;
use alloc::vec::Vec;

use super::testkit::*;
use super::*;

fn run(tables: Vec<Vec<u8>>) -> AcpiFindings {
    let (image, rsdp) = Machine::new(tables).image();
    discover(&image, rsdp)
}

fn messages(f: &AcpiFindings) -> Vec<alloc::string::String> {
    f.problems.iter().map(|p| p.to_string()).collect()
}

fn two_cpu_srat() -> Vec<u8> {
    srat(
        3,
        &[
            cpu_affinity(0, 0, 1),
            cpu_affinity(1, 1, 1),
            memory_affinity(0, 0, 1 << 30, 1),
        ],
    )
}

#[test]
fn rsdp_revision_0_uses_the_rsdt() {
    let f = run(vec![
        madt(&[lapic(0, 0, 1), lapic(1, 1, 1)]),
        two_cpu_srat(),
    ]);
    assert!(f.problems.is_empty(), "{:?}", messages(&f));
    assert_eq!(
        (f.rsdp_revision, f.root, &f.oem_id),
        (0, RootTableKind::Rsdt, b"NVTEST")
    );
    assert_eq!(f.tables.len(), 2);
    assert_eq!(&f.tables[1].signature, b"SRAT");
    assert_eq!(f.madt.unwrap().present_apic_ids(), vec![0, 1]);
    assert_eq!(f.srat.as_ref().unwrap().cpus.len(), 2);
}

#[test]
fn rsdp_revision_2_uses_the_unaligned_xsdt() {
    let machine = Machine {
        tables: vec![madt(&[lapic(0, 0, 1)])],
        xsdt: true,
    };
    let (image, rsdp) = machine.image();
    let f = discover(&image, rsdp);
    assert!(f.problems.is_empty(), "{:?}", messages(&f));
    assert_eq!((f.rsdp_revision, f.root), (2, RootTableKind::Xsdt));
    assert!(f.madt.is_some());
}

#[test]
fn bad_xsdt_falls_back_to_the_rsdt() {
    let machine = Machine {
        tables: vec![madt(&[lapic(0, 0, 1)])],
        xsdt: true,
    };
    let (image, rsdp) = machine.image();
    // Corrupt the XSDT's checksum: rebuild the image with one byte changed.
    let xsdt_address = 0x7FFE_0003 + 0x801;
    let mut bad = image.read(xsdt_address, 36).unwrap().to_vec();
    let len = u32::from_le_bytes(bad[4..8].try_into().unwrap()) as usize;
    bad = image.read(xsdt_address, len).unwrap().to_vec();
    bad[20] ^= 0x55;
    let image = MemoryImage::new()
        .with(xsdt_address, bad)
        .with(0, Vec::new());
    let (rest, _) = machine.image();
    let f = discover(&Layered(&image, &rest), rsdp);
    assert_eq!(f.root, RootTableKind::Rsdt);
    assert!(f.madt.is_some());
    let m = messages(&f);
    assert!(
        m[0].starts_with("XSDT at 0x7ffe0804: checksum does not add up"),
        "{m:?}"
    );
    assert_eq!(m[1], "XSDT unusable; falling back to the RSDT");
}

/// Reads from the first image, then the second.
struct Layered<'a>(&'a MemoryImage, &'a MemoryImage);

impl PhysicalMemory for Layered<'_> {
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.0.read(addr, len).or_else(|| self.1.read(addr, len))
    }
}

#[test]
fn bad_extended_checksum_uses_the_rsdt() {
    let mut r = rsdp_v2(0x1000, 0x2000);
    r[33] ^= 1; // reserved byte: breaks only the extended checksum
    let image = MemoryImage::new()
        .with(0xE0000, r)
        .with(0x1000, table(b"RSDT", 1, &[]))
        .with(0x2000, table(b"XSDT", 1, &[]));
    let f = discover(&image, 0xE0000);
    assert_eq!(f.root, RootTableKind::Rsdt);
    assert_eq!(
        messages(&f),
        ["RSDP at 0xe0000: extended part: checksum does not add up to zero; XSDT ignored, RSDT used"]
    );
}

#[test]
fn bad_rsdp_means_no_tables() {
    let (image, rsdp) = Machine::new(vec![madt(&[lapic(0, 0, 1)])]).image();
    let mut r = image.read(rsdp, 20).unwrap().to_vec();
    r[10] ^= 1;
    let broken = MemoryImage::new().with(rsdp, r.clone());
    let f = discover(&Layered(&broken, &image), rsdp);
    assert!(f.madt.is_none() && f.tables.is_empty());
    assert_eq!(
        messages(&f),
        ["RSDP at 0xf5a00: checksum does not add up to zero; no ACPI tables used"]
    );
    r[0] = b'X';
    let f = discover(&MemoryImage::new().with(rsdp, r), rsdp);
    assert_eq!(
        f.problems,
        [AcpiProblem::Rsdp {
            address: rsdp,
            fault: RsdpFault::BadSignature
        }]
    );
    let f = discover(&MemoryImage::new(), 0x1234);
    assert_eq!(
        f.problems,
        [AcpiProblem::Rsdp {
            address: 0x1234,
            fault: RsdpFault::Unreadable
        }]
    );
}

#[test]
fn bad_table_checksum_drops_that_table_only() {
    let mut s = two_cpu_srat();
    s[50] ^= 0xFF;
    let f = run(vec![madt(&[lapic(0, 0, 1)]), s]);
    assert!(f.srat.is_none() && f.madt.is_some());
    assert!(!f.tables[1].valid && f.tables[0].valid);
    assert_eq!(
        messages(&f),
        ["SRAT at 0x7ffe2000: checksum does not add up to zero; table not used"]
    );
}

#[test]
fn truncated_and_absurd_lengths_are_refused() {
    // The header claims 0x200 bytes; only the 36-byte header is readable.
    let mut s = two_cpu_srat();
    s[4..8].copy_from_slice(&0x200u32.to_le_bytes());
    let header_only = s[..36].to_vec();
    let mut huge = two_cpu_srat();
    huge[4..8].copy_from_slice(&0x4000_0000u32.to_le_bytes());
    let mut short = madt(&[]);
    short[4..8].copy_from_slice(&40u32.to_le_bytes());
    let f = run(vec![header_only, huge, short]);
    assert!(f.srat.is_none() && f.madt.is_none());
    assert_eq!(
        messages(&f),
        [
            "SRAT at 0x7ffe1000: 512 bytes not readable; table not used",
            "SRAT at 0x7ffe2000: length 0x40000000 exceeds the 0x1000000-byte cap; table not used",
            "APIC at 0x7ffe3000: length 40 is shorter than its 44-byte header; table not used",
        ]
    );
}

#[test]
fn entry_running_past_the_end_is_ignored() {
    let mut s = srat(
        3,
        &[
            cpu_affinity(0, 0, 1),
            cpu_affinity(0, 1, 1),
            cpu_affinity(1, 2, 1),
        ],
    );
    // A memory entry header claiming 40 bytes, with only 16 left in the table.
    let mut tail = memory_affinity(1, 0, 1 << 20, 1);
    tail.truncate(16);
    s.extend_from_slice(&tail);
    let len = s.len() as u32;
    s[4..8].copy_from_slice(&len.to_le_bytes());
    fix_checksum(&mut s);
    let f = run(vec![s]);
    assert_eq!(f.srat.as_ref().unwrap().cpus.len(), 3);
    assert_eq!(
        messages(&f),
        [
            "SRAT: entry 3 (type 1) at offset 0x60 of length 40 runs past the table end (0x70); \
          entry ignored"
        ]
    );
}

#[test]
fn zero_length_entry_terminates() {
    let f = run(vec![madt(&[
        lapic(0, 0, 1),
        vec![0, 0, 0, 0, 0, 0, 0, 0],
        lapic(1, 1, 1),
    ])]);
    assert_eq!(f.madt.as_ref().unwrap().processors.len(), 1);
    assert_eq!(
        messages(&f),
        ["APIC: entry 1 (type 0) at offset 0x34 has length 0; rest of the table ignored"]
    );
    let f = run(vec![srat(3, &[vec![7, 1, 0, 0]])]);
    assert_eq!(f.problems.len(), 1);
}

#[test]
fn entry_shorter_than_its_type_stops_the_walk() {
    let mut short = memory_affinity(0, 0, 1 << 20, 1);
    short[1] = 24;
    short.truncate(24);
    let f = run(vec![srat(
        3,
        &[cpu_affinity(0, 0, 1), short, cpu_affinity(0, 1, 1)],
    )]);
    assert_eq!(f.srat.as_ref().unwrap().cpus.len(), 1);
    assert_eq!(
        messages(&f),
        [
            "SRAT: entry 1 (type 1) at offset 0x40 has length 24, shorter than the 40 its type \
          needs; rest of the table ignored"
        ]
    );
}

#[test]
fn stray_trailing_byte_is_noted() {
    let mut m = madt(&[lapic(0, 0, 1)]);
    m.push(0x42);
    let len = m.len() as u32;
    m[4..8].copy_from_slice(&len.to_le_bytes());
    fix_checksum(&mut m);
    let f = run(vec![m]);
    assert_eq!(f.madt.as_ref().unwrap().processors.len(), 1);
    assert_eq!(
        messages(&f),
        ["APIC: 1 stray bytes at offset 0x34 after the last entry; ignored"]
    );
}

#[test]
fn madt_processors_flags_overrides_and_unknown_types() {
    let unknown = vec![0x7F, 6, 1, 2, 3, 4];
    let io_apic = vec![1, 12, 2, 0, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0];
    let iso = vec![2, 10, 0, 0, 2, 0, 0, 0, 0, 0];
    let mut override_ = vec![5, 12, 0, 0];
    override_.extend_from_slice(&0x1_FEE0_0000u64.to_le_bytes());
    let entries = [
        lapic(0, 0, 1),
        lapic(1, 1, 0),      // disabled
        lapic(2, 2, 2),      // online capable
        lapic(3, 0xFF, 1),   // placeholder
        x2apic(300, 1),      // x2APIC ID above 255
        x2apic(u32::MAX, 1), // placeholder
        unknown,
        io_apic,
        iso,
        override_,
    ];
    let m = run(vec![madt(&entries)]).madt.unwrap();
    assert_eq!(m.present_apic_ids(), vec![0, 2, 300]);
    assert_eq!(m.processors.len(), 4);
    assert!(m.processors[3].x2apic && m.processors[2].online_capable);
    assert_eq!(m.local_apic_address, 0x1_FEE0_0000);
    assert_eq!(
        m.io_apics,
        [MadtIoApic {
            id: 2,
            address: 0xFEC0_0000,
            gsi_base: 0
        }]
    );
    assert_eq!(m.overrides[0].gsi, 2);
    assert!(m.pc_at_compatible);
    // Before MADT revision 5 bit 1 is reserved: not online capable.
    let old = run(vec![madt_rev(3, &[lapic(2, 2, 2)])]).madt.unwrap();
    assert!(old.present_apic_ids().is_empty());
}

#[test]
fn srat_revision_decides_pxm_width() {
    let entries = [
        cpu_affinity(0x0102_0304, 7, 1),
        memory_affinity(0x0102_0304, 0, 1 << 20, 1),
    ];
    let old = run(vec![srat(1, &entries)]).srat.unwrap();
    assert_eq!((old.cpus[0].pxm, old.memory[0].pxm), (0x04, 0x04));
    let new = run(vec![srat(3, &entries)]).srat.unwrap();
    assert_eq!(
        (new.cpus[0].pxm, new.memory[0].pxm),
        (0x0102_0304, 0x0102_0304)
    );
}

#[test]
fn srat_keeps_only_enabled_nonempty_entries() {
    let entries = [
        cpu_affinity(0, 0, 0),
        x2apic_affinity(1, 0x1_0000, 1),
        x2apic_affinity(1, 0x1_0001, 0),
        memory_affinity(0, 0, 0, 1), // QEMU's zeroed placeholder, but enabled
        memory_affinity(0, 0, 0, 0),
        memory_affinity(1, 1 << 32, 1 << 30, 0b111),
        memory_affinity(1, u64::MAX - 5, 10, 1),
        generic_initiator(2, 1),
        generic_initiator(3, 0),
        vec![3, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // GICC: skipped
    ];
    let f = run(vec![srat(3, &entries)]);
    let s = f.srat.as_ref().unwrap();
    assert_eq!(
        s.cpus,
        [CpuAffinity {
            apic_id: 0x1_0000,
            pxm: 1,
            x2apic: true,
            clock_domain: 0
        }]
    );
    assert_eq!(
        s.memory,
        [MemoryAffinity {
            base: 1 << 32,
            size: 1 << 30,
            pxm: 1,
            hot_pluggable: true,
            non_volatile: true
        }]
    );
    assert_eq!(s.generic_initiators, [2]);
    assert_eq!(
        messages(&f),
        [
            "SRAT: entry 6 memory range at 0xfffffffffffffffa of length 0xa wraps past 2^64; \
          entry ignored"
        ]
    );
}

#[test]
fn slit_validation() {
    let ok = run(vec![slit(3, &[10, 21, 255, 21, 10, 30, 255, 40, 10])]);
    let s = ok.slit.unwrap();
    assert_eq!(
        (s.distance(0, 2), s.distance(2, 1), s.distance(3, 0)),
        (Some(255), Some(40), None)
    );
    let cases: [(Vec<u8>, &str); 6] = [
        (slit(2, &[10, 20, 20, 11]), "distance 1->1 is 11, not 10"),
        (
            slit(2, &[10, 10, 20, 10]),
            "distance 0->1 is 10, not above 10",
        ),
        (
            slit(3, &[10, 20, 20, 10]),
            "3 localities need 9 matrix bytes, the table has 4",
        ),
        (
            slit(u64::MAX, &[10]),
            "18446744073709551615 localities is absurd",
        ),
        (slit(0, &[]), "zero localities"),
        (table(b"SLIT", 1, &[1, 0]), "APIC"),
    ];
    for (table, want) in cases {
        let f = run(vec![table]);
        assert!(f.slit.is_none());
        let m = messages(&f);
        if want == "APIC" {
            assert_eq!(m, ["SLIT at 0x7ffe1000: length 38 is shorter than its 44-byte header; table not used"]);
        } else {
            assert_eq!(
                m,
                [alloc::format!(
                    "SLIT: {want}; distances fall back to 10 local / 20 remote"
                )]
            );
        }
    }
}

#[test]
fn hmat_decode_and_overrun() {
    let mut proximity = vec![0, 0, 0, 0, 40, 0, 0, 0, 1, 0, 0, 0];
    proximity.extend_from_slice(&0u32.to_le_bytes());
    proximity.extend_from_slice(&1u32.to_le_bytes());
    proximity.resize(40, 0);
    let lat = hmat_locality(0, &[0], &[0, 1], &[5, 10]);
    let mut bad = hmat_locality(3, &[0], &[0, 1], &[200, 100]);
    bad[16..20].copy_from_slice(&3u32.to_le_bytes()); // three targets listed, room for two
    let mut cache = vec![2, 0, 0, 0, 32, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    cache.extend_from_slice(&10240u64.to_le_bytes());
    cache.extend_from_slice(&0x0008_1111u32.to_le_bytes());
    cache.extend_from_slice(&[0; 4]);
    let f = run(vec![hmat(&[proximity, lat, bad, cache])]);
    let h = f.hmat.as_ref().unwrap();
    assert_eq!(h.revision, 2);
    assert_eq!(
        h.memory_proximity,
        [MemoryProximity {
            flags: 1,
            initiator: Some(0),
            memory: Some(1)
        }]
    );
    assert_eq!(h.localities.len(), 1);
    let l = &h.localities[0];
    assert_eq!(
        (l.data_type, l.entry_base_unit, l.entry(0, 1)),
        (HmatDataType::AccessLatency, 1000, Some(10))
    );
    assert_eq!(
        (h.caches[0].memory, h.caches[0].size, h.caches[0].level()),
        (1, 10240, 1)
    );
    assert_eq!(
        messages(&f),
        ["HMAT: entry 2 (type 1) at offset 0x80 needs 54 bytes for its lists but has length 48; \
          entry ignored"]
    );
}

#[test]
fn duplicate_tables_first_usable_wins() {
    let mut broken = two_cpu_srat();
    broken[40] ^= 1;
    let second = srat(3, &[cpu_affinity(5, 5, 1)]);
    let f = run(vec![broken, two_cpu_srat(), second]);
    assert_eq!(f.srat.as_ref().unwrap().cpus.len(), 2);
    assert_eq!(f.problems.len(), 2);
    assert_eq!(
        f.problems[1].to_string(),
        "another SRAT at 0x7ffe3000; ignored, the one at 0x7ffe2000 is used"
    );
}

#[test]
fn null_and_unreadable_root_entries() {
    let body: Vec<u8> = [0u32, 0x5000]
        .iter()
        .flat_map(|a| a.to_le_bytes())
        .collect();
    let image = MemoryImage::new()
        .with(0xE0000, rsdp_v0(0x1000))
        .with(0x1000, table(b"RSDT", 1, &body));
    let f = discover(&image, 0xE0000);
    assert_eq!(
        messages(&f),
        [
            "RSDT: entry 0 is a null address; skipped",
            "???? at 0x5000: header not readable; table not used"
        ]
    );
}

#[test]
fn rsdp_search_in_bios_areas() {
    let mut bios = vec![0u8; 0x2_0000];
    bios[0x1_5A00..0x1_5A00 + 20].copy_from_slice(&rsdp_v0(0x1000));
    let image = MemoryImage::new().with(0xE_0000, bios.clone());
    assert_eq!(find_rsdp_in_bios_areas(&image), Some(0xF_5A00));
    // The EBDA (segment 0x9FC0 at 0x40E) is searched first.
    let mut low = vec![0u8; 0xA_0000];
    low[0x40E..0x410].copy_from_slice(&0x9FC0u16.to_le_bytes());
    low[0x9_FC10..0x9_FC10 + 20].copy_from_slice(&rsdp_v0(0x2000));
    let image = MemoryImage::new().with(0, low).with(0xE_0000, bios);
    assert_eq!(find_rsdp_in_bios_areas(&image), Some(0x9_FC10));
    assert_eq!(find_rsdp_in_bios_areas(&MemoryImage::new()), None);
}
