//! Tests of [`crate::generate`] as a whole: how the tables point at each other
//! (ACPI 6.5 §5.2.5 – §5.2.9), and which descriptions it refuses.

use alloc::vec;

use crate::sdt::{read_u32, read_u64, sums_to_zero};
use crate::test_platforms::{one_node_one_vcpu, two_nodes_four_vcpus, with_x2apic_vcpu};
use crate::*;

#[test]
fn tables_point_at_each_other() {
    let tables = generate(&two_nodes_four_vcpus()).unwrap();
    let signatures: Vec<[u8; 4]> = tables.tables().iter().map(|t| t.signature).collect();
    assert_eq!(
        signatures,
        [
            *b"RSDP", *b"XSDT", *b"RSDT", *b"FACP", *b"FACS", *b"DSDT", *b"APIC", *b"SRAT",
            *b"SLIT"
        ]
    );
    let address = |sig: &[u8; 4]| tables.table(sig).unwrap().address;
    assert_eq!(tables.rsdp_address(), 0xE_0000);
    let rsdp = &tables.table(b"RSDP").unwrap().bytes;
    assert_eq!(read_u32(rsdp, 16), Some(address(b"RSDT") as u32));
    assert_eq!(read_u64(rsdp, 24), Some(address(b"XSDT")));
    let xsdt = &tables.table(b"XSDT").unwrap().bytes;
    let rsdt = &tables.table(b"RSDT").unwrap().bytes;
    for (i, sig) in [b"FACP", b"APIC", b"SRAT", b"SLIT"].into_iter().enumerate() {
        assert_eq!(read_u64(xsdt, 36 + 8 * i), Some(address(sig)));
        assert_eq!(read_u32(rsdt, 36 + 4 * i), Some(address(sig) as u32));
    }
    let fadt = &tables.table(b"FACP").unwrap().bytes;
    assert_eq!(read_u32(fadt, 36), Some(address(b"FACS") as u32));
    assert_eq!(read_u64(fadt, 140), Some(address(b"DSDT")));
    assert_eq!(address(b"FACS") % 64, 0);
}

#[test]
fn every_table_is_checksummed_and_the_image_holds_them() {
    let tables = generate(&with_x2apic_vcpu()).unwrap();
    let image = tables.image();
    assert_eq!(image.len() as u64, tables.len());
    for table in tables.tables() {
        let start = (table.address - tables.rsdp_address()) as usize;
        assert_eq!(&image[start..start + table.bytes.len()], &table.bytes[..]);
        if table.signature == RSDP_SIGNATURE {
            assert!(sums_to_zero(&table.bytes[..20]));
        } else if table.signature != *b"FACS" {
            assert_eq!(read_u32(&table.bytes, 4), Some(table.bytes.len() as u32));
        }
        // The FACS has no checksum.
        if table.signature != *b"FACS" {
            assert!(sums_to_zero(&table.bytes), "{:?}", table.signature);
        }
    }
}

#[test]
fn hmat_only_when_figures_are_given() {
    assert!(generate(&one_node_one_vcpu())
        .unwrap()
        .table(b"HMAT")
        .is_none());
    assert!(generate(&one_node_one_vcpu())
        .unwrap()
        .table(b"SLIT")
        .is_none());
    let mut platform = one_node_one_vcpu();
    platform.hmat = Some(HmatFigures {
        latency_ns: vec![vec![90]],
        bandwidth_mb_s: vec![vec![9000]],
    });
    assert!(generate(&platform).unwrap().table(b"HMAT").is_some());
}

fn refused(change: impl FnOnce(&mut GuestPlatform)) -> AcpiError {
    let mut platform = two_nodes_four_vcpus();
    change(&mut platform);
    generate(&platform).unwrap_err()
}

#[test]
fn bad_descriptions_are_refused_with_what_is_wrong() {
    assert_eq!(refused(|p| p.vcpus.clear()), AcpiError::NoVcpus);
    assert_eq!(
        refused(|p| p.vcpus[3].node = 2),
        AcpiError::VcpuOnMissingNode {
            vcpu: 3,
            node: 2,
            nodes: 2
        }
    );
    assert_eq!(
        refused(|p| p.vcpus[3].apic_id = 1),
        AcpiError::DuplicateApicId {
            first: 1,
            second: 3,
            apic_id: 1
        }
    );
    assert_eq!(
        refused(|p| p.nodes[1].memory[0].base -= 0x1000),
        AcpiError::OverlappingRanges {
            node_a: 0,
            range_a: 0,
            node_b: 1,
            range_b: 0
        }
    );
    assert_eq!(
        refused(|p| p.nodes[0].memory[0].length = 0),
        AcpiError::EmptyRange { node: 0, range: 0 }
    );
    assert_eq!(
        refused(|p| p.nodes[1].memory[0].base = u64::MAX),
        AcpiError::RangeOverflows { node: 1, range: 0 }
    );
    assert_eq!(
        refused(|p| p.distances = Some(DistanceMatrix::from_rows(&[[10u8]]).unwrap())),
        AcpiError::DistanceMatrixSize {
            expected: 2,
            found: 1
        }
    );
    assert_eq!(
        refused(|p| p.placement.size = 512),
        AcpiError::TablesDoNotFit {
            needed: 1160,
            available: 512
        }
    );
    assert_eq!(
        refused(|p| p.placement.base = 0xFFFF_FC00),
        AcpiError::TablesAbove4GiB { end: 0x1_0000_0088 }
    );
    assert_eq!(
        refused(|p| p.placement.base = 0xE_0008),
        AcpiError::MisalignedBase { base: 0xE_0008 }
    );
    assert_eq!(
        refused(|p| p.hmat = Some(HmatFigures {
            latency_ns: vec![],
            bandwidth_mb_s: vec![]
        })),
        AcpiError::HmatMatrixSize {
            which: "latency_ns",
            row: None,
            expected: 2,
            found: 0
        }
    );
    assert_eq!(
        refused(|p| p.devices.uart = Some(Uart16550 {
            port: 0x3F8,
            irq: 16,
            node: None
        })),
        AcpiError::BadUart {
            port: 0x3F8,
            irq: 16
        }
    );
    assert_eq!(
        refused(|p| p.devices.uart = Some(Uart16550 {
            port: 0x3F8,
            irq: 4,
            node: Some(5)
        })),
        AcpiError::DeviceOnMissingNode {
            device: "UART",
            node: 5,
            nodes: 2
        }
    );
    assert_eq!(
        refused(|p| p.devices.io_apic.id = 16),
        AcpiError::BadIoApicId { id: 16 }
    );
    assert_eq!(
        refused(|p| p.devices.pm.sci_irq = 2),
        AcpiError::BadPmBlock {
            port: 0x600,
            sci_irq: 2
        }
    );
    assert_eq!(
        refused(|p| p.vcpus[0].apic_id = u32::MAX),
        AcpiError::ReservedApicId { vcpu: 0 }
    );
    let too_many = refused(|p| {
        p.vcpus = (0..=MAX_VCPUS as u32)
            .map(|apic_id| Vcpu { apic_id, node: 0 })
            .collect()
    });
    assert_eq!(
        too_many,
        AcpiError::TooMany {
            what: "vCPUs",
            count: MAX_VCPUS + 1,
            max: MAX_VCPUS
        }
    );
}

#[test]
fn errors_explain_themselves() {
    let text = alloc::format!(
        "{}",
        AcpiError::VcpuOnMissingNode {
            vcpu: 3,
            node: 2,
            nodes: 2
        }
    );
    assert_eq!(text, "vCPU 3 is on node 2, but there are only 2 nodes");
}

#[test]
fn many_vcpus_fit_and_stay_consistent() {
    let mut platform = two_nodes_four_vcpus();
    platform.vcpus = (0..MAX_VCPUS as u32)
        .map(|i| Vcpu {
            apic_id: i * 2,
            node: i % 2,
        })
        .collect();
    platform.placement.size = 1 << 20;
    let tables = generate(&platform).unwrap();
    assert!(tables
        .tables()
        .iter()
        .filter(|t| t.signature != *b"FACS")
        .all(|t| sums_to_zero(&t.bytes)));
}

#[test]
fn every_virtio_slot_at_its_default_placement_is_valid() {
    let mut platform = two_nodes_four_vcpus();
    for slot in 0..MAX_VIRTIO_MMIO {
        platform.devices.virtio_mmio[slot] = Some(VirtioMmio::at_slot(slot));
    }
    assert_eq!(VirtioMmio::at_slot(0), VirtioMmio::default_placement());
    assert_eq!(VirtioMmio::at_slot(1).gsi, 16);
    assert_eq!(
        VirtioMmio::at_slot(1).base,
        VIRTIO_MMIO_BASE + VIRTIO_MMIO_SIZE
    );
    let tables = generate(&platform).unwrap();
    let dsdt = &tables.table(b"DSDT").unwrap().bytes;
    for slot in 0..MAX_VIRTIO_MMIO {
        let name = format!("VR{slot:02}");
        assert!(dsdt.windows(4).any(|w| w == name.as_bytes()), "{name}");
    }
}

#[test]
fn the_last_virtio_slot_takes_the_io_apics_last_input() {
    // Slot 8, the last virtio-mem device's, is GSI 23: IOAPIC pins 0..=23.
    assert_eq!(MAX_VIRTIO_MMIO, 9);
    assert_eq!(VirtioMmio::at_slot(MAX_VIRTIO_MMIO - 1).gsi, 23);
    assert_eq!(
        VirtioMmio::at_slot(8).gsi,
        VIRTIO_MMIO_PCI_GSI + 8 - 1,
        "slot n >= 1 takes VIRTIO_MMIO_PCI_GSI + n - 1"
    );
    // The virtio-mem slots: 5..=8, after the balloon (0) and the NICs (1..=4).
    assert_eq!(VIRTIO_MEM_FIRST_SLOT, 5);
    assert_eq!(VIRTIO_MEM_FIRST_SLOT + 4, MAX_VIRTIO_MMIO);
    let gsis: alloc::vec::Vec<u32> = (VIRTIO_MEM_FIRST_SLOT..MAX_VIRTIO_MMIO)
        .map(|slot| VirtioMmio::at_slot(slot).gsi)
        .collect();
    assert_eq!(gsis, [20, 21, 22, 23]);
    // Every window below the I/O APIC's page.
    let last = VirtioMmio::at_slot(MAX_VIRTIO_MMIO - 1);
    assert!(u64::from(last.base) + u64::from(last.size) <= 0xFEC0_0000);
    // A device past the last slot would need GSI 24, which no I/O APIC input is.
    let mut platform = two_nodes_four_vcpus();
    platform.devices.virtio_mmio[8] = Some(VirtioMmio {
        gsi: 24,
        ..VirtioMmio::at_slot(8)
    });
    assert!(matches!(
        generate(&platform),
        Err(AcpiError::BadVirtioMmio {
            index: 8,
            gsi: 24,
            ..
        })
    ));
}

#[test]
fn a_full_platform_with_nine_virtio_devices_is_valid() {
    // Balloon, four NICs and four virtio-mem devices; the MADT overrides only slot 0's ISA
    // IRQ 5, the others are above the ISA range.
    let mut platform = two_nodes_four_vcpus();
    for slot in 0..MAX_VIRTIO_MMIO {
        platform.devices.virtio_mmio[slot] = Some(VirtioMmio::at_slot(slot));
    }
    let tables = generate(&platform).unwrap();
    assert!(tables
        .tables()
        .iter()
        .filter(|t| t.signature != *b"FACS")
        .all(|t| sums_to_zero(&t.bytes)));
    let dsdt = &tables.table(b"DSDT").unwrap().bytes;
    assert!(dsdt.windows(4).any(|w| w == b"VR08"));
}

#[test]
fn virtio_mmio_devices_are_checked() {
    let with = |device: VirtioMmio| {
        move |p: &mut GuestPlatform| {
            p.devices = Devices::pc_with_virtio_balloon();
            p.devices.virtio_mmio[1] = Some(device);
        }
    };
    let bad = |base, gsi, reason| AcpiError::BadVirtioMmio {
        index: 1,
        base,
        gsi,
        reason,
    };
    let next = VIRTIO_MMIO_BASE + VIRTIO_MMIO_SIZE;
    let ok = VirtioMmio {
        base: next,
        size: VIRTIO_MMIO_SIZE,
        gsi: 6,
    };
    let mut platform = two_nodes_four_vcpus();
    with(ok)(&mut platform);
    let tables = generate(&platform).unwrap();
    let dsdt = &tables.table(b"DSDT").unwrap().bytes;
    assert!(dsdt.windows(4).any(|w| w == b"VR01"));
    for (device, reason) in [
        (
            VirtioMmio { size: 0x100, ..ok },
            "the window needs 0x200 bytes below 4 GiB",
        ),
        (
            VirtioMmio {
                base: 0xFFFF_FE00,
                size: 0x400,
                ..ok
            },
            "the window needs 0x200 bytes below 4 GiB",
        ),
        (
            VirtioMmio {
                base: next + 0x10,
                ..ok
            },
            "the window is not 0x200-aligned",
        ),
        (
            VirtioMmio {
                base: VIRTIO_MMIO_BASE,
                ..ok
            },
            "the window overlaps the APICs or another virtio-mmio window",
        ),
        (
            VirtioMmio {
                base: 0xFEC0_0800,
                ..ok
            },
            "the window overlaps the APICs or another virtio-mmio window",
        ),
        (
            VirtioMmio { gsi: 24, ..ok },
            "the GSI is not an I/O APIC input (0..23)",
        ),
    ] {
        assert_eq!(
            refused(with(device)),
            bad(device.base, device.gsi, reason),
            "{device:?}"
        );
    }
    for gsi in [0, 2, 4, 5, 8, 9] {
        let device = VirtioMmio { gsi, ..ok };
        assert_eq!(
            refused(with(device)),
            bad(
                next,
                gsi,
                "the GSI is taken by the timer, cascade, COM1, RTC, SCI or another device"
            ),
            "GSI {gsi}"
        );
    }
}

#[test]
fn pci_host_bridges_are_checked() {
    let ok = crate::PciHostBridge {
        ecam_base: 0xE000_0000,
        last_bus: 0,
        window_base: 0xC000_0000,
        window_length: 0x2000_0000,
        node: Some(1),
    };
    let mut platform = two_nodes_four_vcpus();
    platform.devices.pci_host = Some(ok);
    let tables = generate(&platform).unwrap();
    assert!(tables.table(b"MCFG").is_some());
    for (bridge, reason) in [
        (
            crate::PciHostBridge {
                ecam_base: 0xE008_0000,
                ..ok
            },
            "the ECAM window is not 1 MiB aligned",
        ),
        (
            crate::PciHostBridge {
                window_length: 0,
                ..ok
            },
            "the BAR window is empty",
        ),
        (
            crate::PciHostBridge {
                window_base: 0xF000_0000,
                window_length: 0x2000_0000,
                ..ok
            },
            "a window runs past 4 GiB",
        ),
        (
            crate::PciHostBridge {
                ecam_base: 0xC010_0000,
                ..ok
            },
            "the ECAM and BAR windows overlap",
        ),
    ] {
        platform.devices.pci_host = Some(bridge);
        assert_eq!(generate(&platform), Err(AcpiError::BadPciHost { reason }));
    }
    platform.devices.pci_host = Some(crate::PciHostBridge {
        node: Some(2),
        ..ok
    });
    assert!(matches!(
        generate(&platform),
        Err(AcpiError::DeviceOnMissingNode { node: 2, .. })
    ));
}
