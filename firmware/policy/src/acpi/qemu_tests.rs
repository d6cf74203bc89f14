//! Discovery on ACPI tables captured from QEMU 7.2 (`tests/data/capture.py`), checked against
//! the command line that produced them (ACPI 6.5 §5.2.12, §5.2.16, §5.2.17, §5.2.28).

use alloc::vec::Vec;

use super::testkit::qemu;
use super::*;

fn captured(name: &str) -> AcpiFindings {
    let (image, rsdp) = qemu(name);
    let f = discover(&image, rsdp);
    assert!(f.problems.is_empty(), "{name}: {:?}", f.problems);
    f
}

fn memory(f: &AcpiFindings) -> Vec<(u32, u64, u64)> {
    let srat = f.srat.as_ref().expect("SRAT");
    srat.memory
        .iter()
        .map(|m| (m.pxm, m.base, m.end()))
        .collect()
}

fn cpu_pxms(f: &AcpiFindings) -> Vec<(u32, u32)> {
    let srat = f.srat.as_ref().expect("SRAT");
    srat.cpus.iter().map(|c| (c.apic_id, c.pxm)).collect()
}

#[test]
fn no_numa_has_madt_but_no_srat() {
    let f = captured("q35-nonuma");
    assert_eq!(
        (f.rsdp_revision, f.root, &f.oem_id),
        (0, RootTableKind::Rsdt, b"BOCHS ")
    );
    let sigs: Vec<[u8; 4]> = f.tables.iter().map(|t| t.signature).collect();
    assert_eq!(sigs, [*b"FACP", *b"APIC", *b"HPET", *b"MCFG", *b"WAET"]);
    let madt = f.madt.as_ref().unwrap();
    assert_eq!(madt.present_apic_ids(), [0, 1]);
    assert_eq!(madt.local_apic_address, 0xFEE0_0000);
    assert_eq!(madt.io_apics[0].address, 0xFEC0_0000);
    assert!(f.srat.is_none() && f.slit.is_none() && f.hmat.is_none());
}

#[test]
fn two_nodes_seabios_and_ovmf() {
    let f = captured("q35-2node");
    assert_eq!(cpu_pxms(&f), [(0, 0), (1, 0), (2, 1), (3, 1)]);
    assert_eq!(
        memory(&f),
        [
            (0, 0, 0xA_0000),
            (0, 0x10_0000, 0x1000_0000),
            (1, 0x1000_0000, 0x2000_0000)
        ]
    );
    assert_eq!(f.srat.as_ref().unwrap().revision, 1);
    assert_eq!(f.slit.as_ref().unwrap().distances, [10, 21, 21, 10]);

    let f = captured("ovmf-q35-2node");
    assert_eq!((f.rsdp_revision, f.root), (2, RootTableKind::Xsdt));
    assert_eq!(cpu_pxms(&f), [(0, 0), (1, 1)]);
    assert_eq!(f.slit.as_ref().unwrap().distance(1, 0), Some(21));
}

#[test]
fn four_nodes_asymmetric_slit() {
    let f = captured("q35-4node-asym");
    let slit = f.slit.as_ref().unwrap();
    assert_eq!(
        slit.distances,
        [10, 15, 20, 40, 25, 10, 18, 35, 30, 19, 10, 22, 40, 36, 23, 10]
    );
    assert_eq!(
        (slit.distance(0, 1), slit.distance(1, 0)),
        (Some(15), Some(25))
    );
    assert_eq!(cpu_pxms(&f), [(0, 0), (1, 1), (2, 2), (3, 3)]);
}

#[test]
fn memoryless_node_has_cpus_only() {
    let f = captured("q35-memoryless");
    assert_eq!(cpu_pxms(&f), [(0, 0), (1, 0), (2, 1), (3, 1)]);
    assert!(memory(&f).iter().all(|&(pxm, _, _)| pxm == 0));
}

#[test]
fn cpuless_node_above_4g() {
    let f = captured("q35-6g-cpuless");
    assert_eq!(cpu_pxms(&f), [(0, 0), (1, 0)]);
    assert_eq!(
        memory(&f),
        [
            (0, 0, 0xA_0000),
            (0, 0x10_0000, 0x8000_0000),
            (0, 0x1_0000_0000, 0x1_4000_0000),
            (1, 0x1_4000_0000, 0x2_0000_0000),
        ]
    );
}

#[test]
fn hmat_from_qemu() {
    let f = captured("q35-hmat");
    let h = f.hmat.as_ref().unwrap();
    assert_eq!(h.revision, 2);
    assert_eq!(h.memory_proximity.len(), 2);
    assert_eq!(h.memory_proximity[1].initiator, Some(0));
    let [latency, bandwidth] = &h.localities[..] else {
        panic!("two localities")
    };
    assert_eq!(latency.data_type, HmatDataType::AccessLatency);
    // -numa hmat-lb latency is in ns; QEMU picks a 1000 ps base unit.
    assert_eq!(
        (
            latency.entry_base_unit,
            latency.entry(0, 0),
            latency.entry(0, 1)
        ),
        (1000, Some(5), Some(10))
    );
    assert_eq!(bandwidth.data_type, HmatDataType::AccessBandwidth);
    assert_eq!(
        (bandwidth.targets.as_slice(), bandwidth.entries.as_slice()),
        (&[0, 1][..], &[50, 25][..])
    );
    assert_eq!(h.caches.len(), 2);
    assert_eq!(
        (h.caches[1].memory, h.caches[1].size, h.caches[1].level()),
        (1, 10 * 1024, 1)
    );
    assert!(f.slit.is_none());
}

#[test]
fn pci_segments_and_the_dsdt_are_found() {
    for name in ["q35-nonuma", "ovmf-q35-2node", "q35-vtd-pxb", "q35-amdvi"] {
        let f = captured(name);
        let mcfg = f.mcfg.as_ref().expect("MCFG");
        assert_eq!(
            mcfg.windows,
            [EcamWindow {
                base: 0xB000_0000,
                segment: 0,
                start_bus: 0,
                end_bus: 0xFF
            }],
            "{name}"
        );
        // QEMU has no SSDTs here: the DSDT alone, at the address its FADT gives.
        let (_, chunks) = super::testkit::qemu_chunks(name);
        let dsdt = chunks
            .iter()
            .find(|(_, bytes)| bytes.starts_with(b"DSDT"))
            .map(|(address, _)| *address);
        assert_eq!(
            f.definition_blocks,
            dsdt.into_iter().collect::<Vec<_>>(),
            "{name}"
        );
    }
}

#[test]
fn an_expander_bridge_carries_its_numa_node() {
    let f = captured("q35-vtd-pxb");
    let bridges: Vec<(&str, Option<u64>, aml::Proximity)> = f
        .host_bridges
        .iter()
        .map(|b| (b.path.as_str(), b.base_bus, b.proximity.clone()))
        .collect();
    assert_eq!(
        bridges,
        [
            ("\\_SB_.PCI0", None, aml::Proximity::None),
            ("\\_SB_.PC40", Some(0x40), aml::Proximity::Declared(1)),
        ]
    );
    let pc40 = &f.host_bridges[1];
    assert!(pc40.pci_express);
    assert_eq!(pc40.bus_range, Some((0x40, 0x41)));
}
