//! Every table of several guest layouts goes through ACPICA's own disassembler,
//! `iasl -d` (installed from Debian `acpica-tools` when missing): no errors, no
//! warnings, no checksum or length complaints, and the SRAT (ACPI 6.5 §5.2.16), SLIT
//! (§5.2.17) and MADT (§5.2.12) it decodes say what the description asked for.

mod common;

use common::*;
use numavisor_acpi_tables::{generate, sdt, GuestPlatform, RSDP_SIGNATURE};

/// What iasl writes when something is wrong with a table: "Incorrect checksum",
/// "ACPI subtable terminates early", "**** Invalid ...", "Warning", "Error".
const COMPLAINTS: [&str; 6] = [
    "incorrect",
    "invalid",
    "error",
    "warning",
    "terminates",
    "****",
];

fn check_layout(name: &str, platform: &GuestPlatform) {
    let tables = generate(platform).unwrap();
    let dir = scratch(name);
    let mut dsl = std::collections::HashMap::new();
    for table in tables.tables() {
        let signature = String::from_utf8_lossy(&table.signature).to_string();
        if table.signature == RSDP_SIGNATURE {
            // iasl 20200925 cannot read a binary RSDP ("Binary file does not contain a
            // valid ACPI table": it takes "PTR " at offset 4 for the length), so the RSDP
            // is checked here; the tables it points at are checked by iasl below.
            assert!(sdt::sums_to_zero(&table.bytes[..20]) && sdt::sums_to_zero(&table.bytes));
            assert_eq!(table.bytes[15], 2, "RSDP revision");
            continue;
        }
        let out = disassemble(&dir, &signature.to_lowercase(), &table.bytes);
        for text in [&out.console, &out.dsl] {
            let lower = text.to_lowercase();
            for complaint in COMPLAINTS {
                assert!(
                    !lower.contains(complaint),
                    "{name}: iasl -d {signature}: {complaint:?} in\n{text}"
                );
            }
        }
        assert!(
            out.console
                .contains(&format!("Acpi Data Table [{signature}] decoded"))
                || signature == "DSDT"
        );
        if signature == "DSDT" {
            assert!(
                out.console.contains("Disassembly completed"),
                "{}",
                out.console
            );
        } else {
            let header = &records(&out.dsl)[0];
            let length_name = if signature == "FACS" {
                "Length"
            } else {
                "Table Length"
            };
            assert_eq!(
                hex(header, length_name),
                table.bytes.len() as u64,
                "{name} {signature}"
            );
        }
        dsl.insert(signature, out.dsl);
    }

    // The SRAT and the SLIT, decoded, are what was asked for.
    let view = numa_view(&dsl["SRAT"], dsl.get("SLIT").map(String::as_str));
    assert_eq!(view, asked_view(platform), "{name}");

    // The MADT lists every vCPU with its UID and APIC ID, the I/O APIC and the overrides.
    let madt = records(&dsl["APIC"]);
    assert_eq!(
        hex(&madt[0], "Local Apic Address"),
        u64::from(platform.devices.local_apic_base)
    );
    let mut cpus = Vec::new();
    let mut overrides = Vec::new();
    for record in &madt[1..] {
        match kind(record) {
            0 => cpus.push((hex(record, "Processor ID"), hex(record, "Local Apic ID"))),
            9 => cpus.push((
                hex(record, "Processor UID"),
                hex(record, "Processor x2Apic ID"),
            )),
            1 => assert_eq!(
                hex(record, "Address"),
                u64::from(platform.devices.io_apic.address)
            ),
            2 => overrides.push((
                hex(record, "Source"),
                hex(record, "Interrupt"),
                hex(record, "Flags (decoded below)"),
            )),
            4 | 0xA => assert_eq!(hex(record, "Interrupt Input LINT"), 1),
            other => panic!("{name}: unexpected MADT entry {other}"),
        }
    }
    cpus.sort_unstable();
    let asked: Vec<(u64, u64)> = platform
        .vcpus
        .iter()
        .enumerate()
        .map(|(uid, v)| (uid as u64, u64::from(v.apic_id)))
        .collect();
    assert_eq!(cpus, asked, "{name}");
    let mut expected = vec![(0, 2, 0), (9, 9, 0xD)];
    for (_, virtio) in platform.devices.virtio_mmio_devices() {
        if virtio.gsi < 16 {
            expected.push((u64::from(virtio.gsi), u64::from(virtio.gsi), 0xD));
        }
    }
    assert_eq!(overrides, expected, "{name}");
}

#[test]
fn one_node_one_vcpu_decodes_cleanly() {
    check_layout("one-node", &one_node_one_vcpu());
}

#[test]
fn two_nodes_four_vcpus_decode_cleanly() {
    check_layout("two-nodes", &two_nodes_four_vcpus());
}

#[test]
fn four_nodes_with_asymmetric_distances_and_hmat_decode_cleanly() {
    let platform = four_nodes_asymmetric();
    check_layout("four-nodes", &platform);
    // The HMAT's first latency row, decoded, is node 0's figures in nanoseconds.
    let dsl = std::fs::read_to_string(scratch_path("four-nodes", "hmat.dsl")).unwrap();
    let hmat = records(&dsl);
    let latency = hmat
        .iter()
        .skip(1)
        .find(|r| kind(r) == 1 && hex(r, "Data Type") == 0)
        .unwrap();
    assert_eq!(hex(latency, "Entry Base Unit"), 1000); // picoseconds
    let entries: Vec<u64> = latency
        .iter()
        .filter(|(n, _)| n == "Entry")
        .map(|(_, v)| u64::from_str_radix(v, 16).unwrap())
        .collect();
    assert_eq!(&entries[..4], &[80, 120, 200, 210]);
}

#[test]
fn x2apic_id_300_decodes_cleanly() {
    check_layout("x2apic-300", &x2apic_300());
}

#[test]
fn virtio_balloon_decodes_as_qemu_describes_virtio_mmio() {
    let mut platform = two_nodes_four_vcpus();
    platform.devices = numavisor_acpi_tables::Devices::pc_with_virtio_balloon();
    check_layout("virtio", &platform);
    let dsl = std::fs::read_to_string(scratch_path("virtio", "dsdt.dsl")).unwrap();
    let device = dsl
        .split("Device (VR00)")
        .nth(1)
        .expect("no Device (VR00)")
        .split("Device (")
        .next()
        .unwrap();
    let squeezed: String = device.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        r#"Name (_HID, "LNRO0005")"#,
        "Name (_UID, Zero)",
        "Name (_CCA, One)",
        "Memory32Fixed (ReadWrite, 0xFEB00000, // Address Base 0x00000200, // Address Length )",
        "Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive, ,, ) { 0x00000005, }",
    ] {
        assert!(squeezed.contains(needle), "{needle:?} not in\n{device}");
    }
}

#[test]
fn nine_virtio_devices_decode_up_to_gsi_23() {
    // The balloon (slot 0), four NICs (1..=4) and four virtio-mem devices
    // (VIRTIO_MEM_FIRST_SLOT..=8): slot 8 takes GSI 23, the I/O APIC's last input.
    let mut platform = two_nodes_four_vcpus();
    for slot in 0..numavisor_acpi_tables::MAX_VIRTIO_MMIO {
        platform.devices.virtio_mmio[slot] = Some(numavisor_acpi_tables::VirtioMmio::at_slot(slot));
    }
    check_layout("virtio-nine", &platform);
    let dsl = std::fs::read_to_string(scratch_path("virtio-nine", "dsdt.dsl")).unwrap();
    for slot in 0..numavisor_acpi_tables::MAX_VIRTIO_MMIO {
        let device = dsl
            .split(&format!("Device (VR{slot:02})"))
            .nth(1)
            .unwrap_or_else(|| panic!("no Device (VR{slot:02}) in\n{dsl}"))
            .split("Device (")
            .next()
            .unwrap();
        let squeezed: String = device.split_whitespace().collect::<Vec<_>>().join(" ");
        let gsi = if slot == 0 { 5 } else { 16 + slot - 1 };
        let base = 0xFEB0_0000 + 0x200 * slot;
        for needle in [
            format!("Memory32Fixed (ReadWrite, {base:#010X}, // Address Base").replace("0X", "0x"),
            format!("Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive, ,, ) {{ {gsi:#010X}, }}")
                .replace("0X", "0x"),
        ] {
            assert!(squeezed.contains(&needle), "{needle:?} not in\n{device}");
        }
    }
    assert!(dsl.contains("0x00000017"), "GSI 23 missing");
    // And the disassembled DSDT compiles back without a complaint.
    let output = std::process::Command::new(iasl())
        .arg("dsdt.dsl")
        .current_dir(scratch_path("virtio-nine", ""))
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && console.contains("0 Errors, 0 Warnings"),
        "iasl dsdt.dsl:\n{console}"
    );
}

#[test]
fn pci_host_bridge_decodes_with_its_mcfg() {
    let mut platform = two_nodes_four_vcpus();
    platform.devices.pci_host = Some(numavisor_acpi_tables::PciHostBridge {
        ecam_base: 0xE000_0000,
        last_bus: 0,
        window_base: 0xC000_0000,
        window_length: 0x2000_0000,
        node: Some(1),
    });
    check_layout("pci-host", &platform);
    let dsl = std::fs::read_to_string(scratch_path("pci-host", "dsdt.dsl")).unwrap();
    let squeezed: String = dsl.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        r#"Name (_HID, EisaId ("PNP0A08")"#,
        r#"Name (_CID, EisaId ("PNP0A03")"#,
        r#"Name (_HID, EisaId ("PNP0C02")"#,
        "Name (_PXM, One)",
        "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0x0000, // Granularity 0x0000, // Range Minimum 0x0000, // Range Maximum",
        "DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0x00000000, // Granularity 0xC0000000, // Range Minimum 0xDFFFFFFF, // Range Maximum",
        "Memory32Fixed (ReadOnly, 0xE0000000, // Address Base 0x00100000, // Address Length",
    ] {
        assert!(squeezed.contains(needle), "{needle:?} not in\n{dsl}");
    }
    let mcfg = std::fs::read_to_string(scratch_path("pci-host", "mcfg.dsl")).unwrap();
    let squeezed: String = mcfg.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "Base Address : 00000000E0000000",
        "Segment Group Number : 0000",
        "Start Bus Number : 00",
        "End Bus Number : 00",
    ] {
        assert!(squeezed.contains(needle), "{needle:?} not in\n{mcfg}");
    }
}
