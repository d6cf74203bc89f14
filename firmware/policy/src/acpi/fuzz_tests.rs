//! Property tests: discovery and topology building never panic or hang on any bytes, and
//! what they return stays consistent (ACPI 6.5 §5.2 tables, hostile or corrupted).

use alloc::vec::Vec;

use proptest::prelude::*;

use super::testkit::*;
use super::*;
use crate::topology::{Topology, PAGE_SIZE};

/// Build the topology and check what must hold whatever the tables said.
fn check(findings: &AcpiFindings, ram: &[(u64, u64)]) {
    let (t, _problems) = Topology::build(findings, ram);
    let n = t.domains.len();
    assert!(n >= 1);
    let mut all: Vec<(u64, u64)> = Vec::new();
    for (i, d) in t.domains.iter().enumerate() {
        assert_eq!(d.node, i);
        for &(s, e) in &d.usable {
            assert!(s < e && s % PAGE_SIZE == 0 && e % PAGE_SIZE == 0);
            assert!(
                ram.iter().any(|&(rs, re)| rs <= s && e <= re),
                "{s:#x}..{e:#x} not in RAM"
            );
            all.push((s, e));
        }
        assert_eq!(t.distance(i, i), LOCAL_DISTANCE);
        let order = t.nearest_first(i);
        assert_eq!((order.len(), order[0]), (n, i));
    }
    all.sort_unstable();
    assert!(
        all.windows(2).all(|w| w[0].1 <= w[1].0),
        "usable ranges overlap across domains"
    );
    for p in &findings.problems {
        let _ = alloc::format!("{p}");
    }
}

fn ram_strategy() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0u64..1 << 34, 0u64..1 << 32), 0..6).prop_map(|v| {
        let mut r: Vec<(u64, u64)> = v.into_iter().map(|(s, l)| (s, s + l)).collect();
        r.sort_unstable();
        // Disjoint, like BootInfo::usable_ram gives.
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (s, e) in r {
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random structure bytes behind valid headers and checksums.
    #[test]
    fn random_table_bodies_never_panic(
        madt_body in prop::collection::vec(any::<u8>(), 0..200),
        srat_body in prop::collection::vec(any::<u8>(), 0..300),
        slit_body in prop::collection::vec(any::<u8>(), 0..80),
        hmat_body in prop::collection::vec(any::<u8>(), 0..300),
        revision in 0u8..4,
        ram in ram_strategy(),
    ) {
        let tables = alloc::vec![
            table(b"APIC", revision, &madt_body),
            table(b"SRAT", revision, &srat_body),
            table(b"SLIT", revision, &slit_body),
            table(b"HMAT", revision, &hmat_body),
        ];
        let (image, rsdp) = Machine { tables, xsdt: revision % 2 == 1 }.image();
        check(&discover(&image, rsdp), &ram);
    }

    /// Well-formed structures with random field values.
    #[test]
    fn random_structures_never_panic(
        cpus in prop::collection::vec((0u32..6, any::<u32>(), 0u32..4, any::<bool>()), 0..12),
        mems in prop::collection::vec((0u32..6, 0u64..1 << 34, 0u64..1 << 33, 0u32..8), 0..10),
        n in 0u64..8,
        matrix in prop::collection::vec(prop_oneof![Just(10u8), 11u8..=255, any::<u8>()], 0..64),
        ram in ram_strategy(),
    ) {
        let mut srat_entries = Vec::new();
        let mut madt_entries = Vec::new();
        for &(pxm, id, flags, x2) in &cpus {
            if x2 {
                srat_entries.push(x2apic_affinity(pxm, id, flags));
                madt_entries.push(x2apic(id, flags));
            } else {
                srat_entries.push(cpu_affinity(pxm, id as u8, flags));
                madt_entries.push(lapic(id as u8, id as u8, flags));
            }
        }
        for &(pxm, base, len, flags) in &mems {
            srat_entries.push(memory_affinity(pxm, base, len, flags));
        }
        let tables = alloc::vec![madt(&madt_entries), srat(3, &srat_entries), slit(n, &matrix)];
        let (image, rsdp) = Machine::new(tables).image();
        check(&discover(&image, rsdp), &ram);
    }

    /// Captured QEMU tables with bytes overwritten, checksums optionally repaired.
    #[test]
    fn mutated_qemu_tables_never_panic(
        which in 0..QEMU_CAPTURES.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 1..8),
        repair in any::<bool>(),
        ram in ram_strategy(),
    ) {
        let (rsdp, mut chunks) = qemu_chunks(QEMU_CAPTURES[which]);
        for (chunk, at, value) in edits {
            let k = chunk.index(chunks.len());
            let bytes = &mut chunks[k].1;
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if repair {
            for (_, bytes) in chunks.iter_mut().filter(|(_, b)| b.len() >= 36 && &b[..4] != b"RSD ") {
                fix_checksum(bytes);
            }
        }
        let mut image = MemoryImage::new();
        for (address, bytes) in chunks {
            image.insert(address, bytes);
        }
        check(&discover(&image, rsdp), &ram);
    }

    /// Nothing but noise where the RSDP should be, and around it.
    #[test]
    fn random_memory_never_panics(
        noise in prop::collection::vec(any::<u8>(), 0..512),
        valid_rsdp in any::<bool>(),
        root in any::<u32>(),
    ) {
        let mut image = MemoryImage::new();
        if valid_rsdp {
            image.insert(0x1000, rsdp_v2(root, u64::from(root) + 0x40));
        }
        image.insert(u64::from(root), noise.clone());
        image.insert(0x1000, noise);
        check(&discover(&image, 0x1000), &[]);
    }
}
