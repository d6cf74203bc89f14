//! Differential test: our ACPI parser against the `acpi` crate (7.0.0-pre1) on well-formed
//! tables captured from QEMU 7.2 (ACPI 6.5 §5.2.12 MADT, §5.2.16 SRAT, §5.2.17 SLIT).
//!
//! The crate reads tables through raw pointers, so this test maps "physical" addresses onto
//! the captured bytes with `unsafe` (test code only; the policy crate itself forbids it).
//! Where the crate is known to be wrong, the test pins that down instead of agreeing with it:
//! - its SRAT entry header declares the length as a u16 (the spec has a u8), so every SRAT
//!   field it decodes is one byte late (QEMU's enabled CPUs read as disabled) and its walk
//!   goes out of step at the first entry whose byte 2 (a proximity domain byte) is nonzero:
//!   the SRAT test pins that down against our decoding instead of comparing affinities;
//! - its `MemoryAffinity::length()` takes the high half from the base address;
//! - its SLIT bound check squares N twice, so for any N ≥ 2 it returns an empty matrix.

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::rc::Rc;

use acpi::sdt::madt::{Madt as OracleMadt, MadtEntry};
use acpi::sdt::slit::Slit as OracleSlit;
use acpi::sdt::srat::{Srat as OracleSrat, SratEntry};
use acpi::{AcpiTables, Handler, PciAddress, PhysicalMapping, RawPhysicalMapping};
use numavisor_policy::acpi::{discover, AcpiFindings, MemoryImage};

/// Captured bytes by physical address; the RSDP is padded to 36 bytes because the crate
/// always maps `size_of::<Rsdp>()`.
#[derive(Clone)]
struct Captured(Rc<BTreeMap<usize, Vec<u8>>>);

impl Captured {
    fn load(name: &str) -> (Captured, MemoryImage, u64) {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
        let listing = std::fs::read_to_string(format!("{dir}/qemu72-{name}.addr")).unwrap();
        let (mut chunks, mut image, mut rsdp) = (BTreeMap::new(), MemoryImage::new(), 0);
        for line in listing.lines() {
            let mut words = line.split_whitespace();
            let (sig, addr) = (words.next().unwrap(), words.next().unwrap());
            let addr = u64::from_str_radix(addr.trim_start_matches("0x"), 16).unwrap();
            let mut bytes = std::fs::read(format!("{dir}/qemu72-{name}-{sig}.bin")).unwrap();
            image.insert(addr, bytes.clone());
            if sig == "RSDP" {
                rsdp = addr;
                bytes.resize(bytes.len().max(36), 0);
            }
            chunks.insert(addr as usize, bytes);
        }
        (Captured(Rc::new(chunks)), image, rsdp)
    }
}

impl Handler for Captured {
    unsafe fn map_physical_region<T>(&self, address: usize, size: usize) -> RawPhysicalMapping<T> {
        let (base, bytes) = self
            .0
            .range(..=address)
            .next_back()
            .expect("mapped below every table");
        let offset = address - base;
        assert!(
            offset + size <= bytes.len(),
            "oracle mapped {size} bytes at {address:#x} past a table"
        );
        // SAFETY: `offset + size` lies inside `bytes` (asserted above); the chunk lives as long
        // as any clone of this handler, and the crate only reads through the pointer.
        let ptr = unsafe { bytes.as_ptr().add(offset) } as *mut T;
        // SAFETY: the mapping describes exactly the `size` bytes checked above, and unmapping
        // is a no-op.
        unsafe { RawPhysicalMapping::new(address, NonNull::new(ptr).unwrap(), size, size) }
    }

    unsafe fn unmap_physical_region<T>(&self, _region: RawPhysicalMapping<T>) {}

    fn read_u8(&self, _: usize) -> u8 {
        unreachable!()
    }
    fn read_u16(&self, _: usize) -> u16 {
        unreachable!()
    }
    fn read_u32(&self, _: usize) -> u32 {
        unreachable!()
    }
    fn read_u64(&self, _: usize) -> u64 {
        unreachable!()
    }
    fn write_u8(&self, _: usize, _: u8) {
        unreachable!()
    }
    fn write_u16(&self, _: usize, _: u16) {
        unreachable!()
    }
    fn write_u32(&self, _: usize, _: u32) {
        unreachable!()
    }
    fn write_u64(&self, _: usize, _: u64) {
        unreachable!()
    }
    fn read_io_u8(&self, _: u16) -> u8 {
        unreachable!()
    }
    fn read_io_u16(&self, _: u16) -> u16 {
        unreachable!()
    }
    fn read_io_u32(&self, _: u16) -> u32 {
        unreachable!()
    }
    fn write_io_u8(&self, _: u16, _: u8) {
        unreachable!()
    }
    fn write_io_u16(&self, _: u16, _: u16) {
        unreachable!()
    }
    fn write_io_u32(&self, _: u16, _: u32) {
        unreachable!()
    }
    fn read_pci_u8(&self, _: PciAddress, _: u16) -> u8 {
        unreachable!()
    }
    fn read_pci_u16(&self, _: PciAddress, _: u16) -> u16 {
        unreachable!()
    }
    fn read_pci_u32(&self, _: PciAddress, _: u16) -> u32 {
        unreachable!()
    }
    fn write_pci_u8(&self, _: PciAddress, _: u16, _: u8) {
        unreachable!()
    }
    fn write_pci_u16(&self, _: PciAddress, _: u16, _: u16) {
        unreachable!()
    }
    fn write_pci_u32(&self, _: PciAddress, _: u16, _: u32) {
        unreachable!()
    }
    fn nanos_since_boot(&self) -> u64 {
        0
    }
    fn stall(&self, _: u64) {}
    fn sleep(&self, _: u64) {}
}

const CAPTURES: [&str; 7] = [
    "q35-nonuma",
    "q35-2node",
    "q35-4node-asym",
    "q35-memoryless",
    "q35-6g-cpuless",
    "q35-hmat",
    "ovmf-q35-2node",
];

fn both(name: &str) -> (AcpiTables<Captured>, AcpiFindings) {
    let (handler, image, rsdp) = Captured::load(name);
    let ours = discover(&image, rsdp);
    assert!(ours.problems.is_empty(), "{name}: {:?}", ours.problems);
    // SAFETY: `rsdp` is the address of a captured RSDP, padded to the 36 bytes it maps.
    let oracle = unsafe { AcpiTables::from_rsdp(handler, rsdp as usize) }.expect("oracle RSDP");
    (oracle, ours)
}

#[test]
fn root_tables_agree() {
    for name in CAPTURES {
        let (oracle, ours) = both(name);
        let theirs: Vec<u64> = oracle.table_entries().map(|a| a as u64).collect();
        let mine: Vec<u64> = ours.tables.iter().map(|t| t.address).collect();
        assert_eq!(theirs, mine, "{name}");
    }
}

#[test]
fn madt_agrees() {
    for name in CAPTURES {
        let (oracle, ours) = both(name);
        let madt: PhysicalMapping<_, OracleMadt> = oracle.find_table().expect("oracle MADT");
        let (mut cpus, mut io_apics, mut overrides) = (Vec::new(), Vec::new(), Vec::new());
        for entry in madt.get().entries() {
            match entry {
                MadtEntry::LocalApic(e) if e.apic_id != 0xFF => {
                    cpus.push((u32::from(e.apic_id), e.flags & 1 != 0));
                }
                MadtEntry::LocalX2Apic(e) if e.x2apic_id != u32::MAX => {
                    cpus.push((e.x2apic_id, e.flags & 1 != 0));
                }
                MadtEntry::IoApic(e) => io_apics.push((e.io_apic_id, e.io_apic_address)),
                MadtEntry::InterruptSourceOverride(e) => {
                    overrides.push((e.irq, e.global_system_interrupt, e.flags));
                }
                _ => {}
            }
        }
        let m = ours.madt.as_ref().unwrap();
        let mine: Vec<(u32, bool)> = m
            .processors
            .iter()
            .map(|p| (p.apic_id, p.enabled))
            .collect();
        assert_eq!(cpus, mine, "{name}");
        let mine: Vec<(u8, u32)> = m.io_apics.iter().map(|i| (i.id, i.address)).collect();
        assert_eq!(io_apics, mine, "{name}");
        let mine: Vec<(u8, u32, u16)> = m
            .overrides
            .iter()
            .map(|o| (o.source, o.gsi, o.flags))
            .collect();
        assert_eq!(overrides, mine, "{name}");
        let address = madt.get().local_apic_address;
        assert_eq!(u64::from(address), m.local_apic_address);
    }
}

#[test]
fn srat_oracle_is_off_by_one_ours_reads_the_spec_layout() {
    let mut compared = 0;
    for name in CAPTURES {
        let (oracle, ours) = both(name);
        let Some(srat) = oracle.find_table::<OracleSrat>() else {
            assert!(ours.srat.is_none(), "{name}");
            continue;
        };
        let s = ours.srat.as_ref().unwrap();
        let mut cpu = 0;
        for entry in srat.get().entries() {
            if let SratEntry::LocalApicAffinity(e) = entry {
                // Past the first entry with a nonzero byte 2 its walk is out of step.
                if s.cpus.get(cpu).is_none_or(|c| c.pxm != 0) {
                    break;
                }
                // With its 3-byte header every field is one byte late: "proximity_domain_low"
                // is really the APIC ID (byte 3), and "flags" starts at byte 5, so QEMU's
                // enabled CPUs all look disabled to it.
                assert_eq!(
                    u32::from(e.proximity_domain_low),
                    s.cpus[cpu].apic_id,
                    "{name}"
                );
                assert_eq!({ e.flags }.bits() & 1, 0, "{name}");
                cpu += 1;
            }
        }
        assert!(cpu >= 1 && cpu <= s.cpus.len(), "{name}");
        compared += cpu;
    }
    assert!(compared >= 6, "{compared}");
}

#[test]
fn slit_oracle_returns_nothing_ours_returns_the_matrix() {
    for name in ["q35-2node", "q35-4node-asym", "ovmf-q35-2node"] {
        let (oracle, ours) = both(name);
        let slit = oracle.find_table::<OracleSlit>().expect("oracle SLIT");
        let n = slit.get().num_proximity_domains as usize;
        assert!(
            slit.get().matrix_raw().is_empty(),
            "the oracle's N⁴ bound check"
        );
        let mine = ours.slit.as_ref().unwrap();
        assert_eq!(mine.localities, n);
        let (handler, _, _) = Captured::load(name);
        let table = ours
            .tables
            .iter()
            .find(|t| &t.signature == b"SLIT")
            .unwrap();
        let raw = &handler.0[&(table.address as usize)][44..44 + n * n];
        assert_eq!(mine.distances, raw, "{name}");
    }
}
