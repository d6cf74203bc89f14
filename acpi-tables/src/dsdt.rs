//! DSDT, the Differentiated System Description Table (ACPI 6.5 §5.2.11.1): the AML
//! namespace of the guest's devices, built with rust-vmm's `acpi_tables::aml`.
//!
//! ```text
//! \_SB.C000 .. Cnnn   processors: _HID "ACPI0007", _UID = MADT UID, _PXM = vNUMA node
//! \_SB.COM1           16550 UART: _HID PNP0501, _UID 1, _CRS { IO, IRQNoFlags }, [_PXM]
//! \_SB.RTC            CMOS RTC, when present: _HID PNP0B00, _CRS { IO 0x70, IRQNoFlags 8 }
//! \_SB.VR00 .. VR03   virtio-mmio, when present: _HID "LNRO0005", _UID = slot, _CCA 1,
//!                     _CRS { Memory32Fixed RW, Interrupt (Level, ActiveHigh, Exclusive) }
//! \_S5                soft-off: SLP_TYP = S5_SLP_TYP (§7.4.2)
//! ```
//! The virtio-mmio devices are written as QEMU writes them (hw/virtio/virtio-acpi.c); Linux's
//! virtio_mmio driver matches "LNRO0005" in its ACPI table and takes the window and the
//! interrupt from `_CRS`, so the guest needs no `virtio_mmio.device=` option.
//! rust-vmm has no IRQ descriptor (§6.4.2.1), only the extended one; ISA devices on a
//! PC use the short form, written here as [`IrqNoFlags`].

use acpi_tables::aml::{
    AddressSpace, AddressSpaceCacheable, Device, EISAName, Interrupt, Memory32Fixed, Name, Package,
    Path, ResourceTemplate, Scope, IO,
};
use acpi_tables::{Aml, AmlSink};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::sdt::{new_table, HEADER_LEN};
use crate::GuestPlatform;

/// DSDT revision 2: AML integers are 64 bits wide.
pub const REVISION: u8 = 2;
/// The SLP_TYP value the DSDT's `\_S5` gives for soft-off: a guest powering off writes
/// `SLP_EN | S5_SLP_TYP << 10` to PM1a_CNT.
pub const S5_SLP_TYP: u8 = 5;

/// IRQ descriptor without the optional flags byte (§6.4.2.1): one ISA IRQ, edge
/// triggered, active high.
pub struct IrqNoFlags(pub u8);

impl Aml for IrqNoFlags {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.byte(0x22); // small item, type IRQ, 2 bytes follow
        sink.word(1u16.checked_shl(u32::from(self.0)).unwrap_or(0));
    }
}

/// Builds the DSDT for a checked platform.
pub(crate) fn build(platform: &GuestPlatform) -> Vec<u8> {
    let mut devices: Vec<Box<dyn Aml>> = Vec::new();
    for (uid, vcpu) in platform.vcpus.iter().enumerate() {
        // uid < MAX_VCPUS = 4096: three hex digits.
        let path = format!("C{uid:03X}");
        let children: Vec<Box<dyn Aml>> = alloc::vec![
            Box::new(Name::new("_HID".into(), &"ACPI0007")),
            Box::new(Name::new("_UID".into(), &(uid as u32))),
            Box::new(Name::new("_PXM".into(), &vcpu.node)),
        ];
        devices.push(Box::new(OwnedDevice(path, children)));
    }
    if let Some(uart) = platform.devices.uart {
        let mut children: Vec<Box<dyn Aml>> = alloc::vec![
            Box::new(Name::new("_HID".into(), &EISAName::new("PNP0501"))),
            Box::new(Name::new("_UID".into(), &1u8)),
            Box::new(crs(IO::new(uart.port, uart.port, 8, 8), uart.irq)),
        ];
        if let Some(node) = uart.node {
            children.push(Box::new(Name::new("_PXM".into(), &node)));
        }
        devices.push(Box::new(OwnedDevice("COM1".into(), children)));
    }
    if platform.devices.cmos_rtc {
        let children: Vec<Box<dyn Aml>> = alloc::vec![
            Box::new(Name::new("_HID".into(), &EISAName::new("PNP0B00"))),
            Box::new(crs(IO::new(0x70, 0x70, 1, 2), 8)),
        ];
        devices.push(Box::new(OwnedDevice("RTC_".into(), children)));
    }
    for (slot, virtio) in platform.devices.virtio_mmio_devices() {
        let window = Memory32Fixed::new(true, virtio.base, virtio.size);
        // Consumer, level triggered, active high, exclusive.
        let interrupt = Interrupt::new(true, false, false, false, virtio.gsi);
        let children: Vec<Box<dyn Aml>> = alloc::vec![
            Box::new(Name::new("_HID".into(), &"LNRO0005")),
            Box::new(Name::new("_UID".into(), &(slot as u32))),
            Box::new(Name::new("_CCA".into(), &1u8)),
            Box::new(Name::new(
                "_CRS".into(),
                &ResourceTemplate::new(alloc::vec![&window as &dyn Aml, &interrupt]),
            )),
        ];
        // slot < MAX_VIRTIO_MMIO: two decimal digits.
        devices.push(Box::new(OwnedDevice(format!("VR{slot:02}"), children)));
    }

    if let Some(bridge) = platform.devices.pci_host {
        devices.extend(pci_host(&bridge));
    }

    let device_refs: Vec<&dyn Aml> = devices.iter().map(|d| d.as_ref()).collect();
    let system_bus = Scope::new("\\_SB_".into(), device_refs);
    let (slp_typ, zero) = (S5_SLP_TYP, 0u8);
    let s5 = Name::new(
        "\\_S5_".into(),
        &Package::new(alloc::vec![&slp_typ, &slp_typ, &zero, &zero]),
    );

    let mut table = new_table(*b"DSDT", HEADER_LEN as u32, REVISION);
    let mut aml = Vec::new();
    system_bus.to_aml_bytes(&mut aml);
    s5.to_aml_bytes(&mut aml);
    table.append_slice(&aml);
    table.as_slice().to_vec()
}

/// The PCI host bridge `PCI0` and the motherboard resource `PCIR` that reserves its ECAM
/// window: Linux uses ECAM only where the window is reserved in E820 or by a PNP0C02
/// device's `_CRS` (`pci_mmcfg_reserved`), and otherwise falls back to ports 0xCF8/0xCFC.
fn pci_host(bridge: &crate::PciHostBridge) -> Vec<Box<dyn Aml>> {
    let buses = AddressSpace::new_bus_number(0u16, u16::from(bridge.last_bus));
    let window_end = bridge.window_base + (bridge.window_length - 1);
    let window = AddressSpace::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        bridge.window_base,
        window_end,
        None,
    );
    let mut host: Vec<Box<dyn Aml>> = alloc::vec![
        Box::new(Name::new("_HID".into(), &EISAName::new("PNP0A08"))),
        Box::new(Name::new("_CID".into(), &EISAName::new("PNP0A03"))),
        Box::new(Name::new("_UID".into(), &0u8)),
        Box::new(Name::new("_SEG".into(), &0u8)),
        Box::new(Name::new("_BBN".into(), &0u8)),
        Box::new(Name::new(
            "_CRS".into(),
            &ResourceTemplate::new(alloc::vec![&buses as &dyn Aml, &window]),
        )),
    ];
    if let Some(node) = bridge.node {
        host.push(Box::new(Name::new("_PXM".into(), &node)));
    }
    let ecam = Memory32Fixed::new(false, bridge.ecam_base, bridge.ecam_length());
    let reserved: Vec<Box<dyn Aml>> = alloc::vec![
        Box::new(Name::new("_HID".into(), &EISAName::new("PNP0C02"))),
        Box::new(Name::new("_UID".into(), &1u8)),
        Box::new(Name::new(
            "_CRS".into(),
            &ResourceTemplate::new(alloc::vec![&ecam as &dyn Aml]),
        )),
    ];
    alloc::vec![
        Box::new(OwnedDevice("PCI0".into(), host)),
        Box::new(OwnedDevice("PCIR".into(), reserved)),
    ]
}

/// `Name(_CRS, ResourceTemplate() { IO(...), IRQNoFlags() { irq } })` for an ISA device.
fn crs(ports: IO, irq: u8) -> Name {
    let irq = IrqNoFlags(irq);
    Name::new(
        "_CRS".into(),
        &ResourceTemplate::new(alloc::vec![&ports as &dyn Aml, &irq]),
    )
}

/// A `Device` that owns its name and children (rust-vmm's borrows its children, which a
/// loop building many devices cannot lend).
struct OwnedDevice(String, Vec<Box<dyn Aml>>);

impl Aml for OwnedDevice {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        let children: Vec<&dyn Aml> = self.1.iter().map(|c| c.as_ref()).collect();
        Device::new(Path::new(&self.0), children).to_aml_bytes(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdt::{read_u32, sums_to_zero};
    use crate::test_platforms::two_nodes_four_vcpus;

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn uart_processors_and_s5() {
        let mut platform = two_nodes_four_vcpus();
        platform.devices.uart = platform
            .devices
            .uart
            .map(|u| crate::Uart16550 { node: Some(1), ..u });
        let dsdt = build(&platform);
        assert_eq!(&dsdt[0..4], b"DSDT");
        assert_eq!(dsdt[8], REVISION);
        assert_eq!(read_u32(&dsdt, 4), Some(dsdt.len() as u32));
        assert!(sums_to_zero(&dsdt));
        // COM1's _CRS: IO(Decode16, 0x3F8, 0x3F8, 8, 8), IRQNoFlags(){4}, EndTag.
        assert!(contains(
            &dsdt,
            &[0x47, 1, 0xF8, 3, 0xF8, 3, 8, 8, 0x22, 0x10, 0, 0x79, 0]
        ));
        // PNP0501 as an EISA ID (0x0105D041).
        assert!(contains(&dsdt, b"_HID\x0c\x41\xd0\x05\x01"));
        for name in [b"C000", b"C003", b"COM1", b"RTC_", b"_S5_"] {
            assert!(
                contains(&dsdt, name),
                "{}",
                core::str::from_utf8(name).unwrap()
            );
        }
        assert!(contains(&dsdt, b"ACPI0007\0"));
    }

    #[test]
    fn virtio_mmio_device() {
        let mut platform = two_nodes_four_vcpus();
        let plain = build(&platform);
        assert!(!contains(&plain, b"LNRO0005"));
        platform.devices = crate::Devices::pc_with_virtio_balloon();
        let dsdt = build(&platform);
        assert!(sums_to_zero(&dsdt));
        assert!(contains(&dsdt, b"VR00"));
        assert!(contains(&dsdt, b"LNRO0005\0"));
        assert!(contains(&dsdt, b"_CCA"));
        // Memory32Fixed(ReadWrite, 0xFEB00000, 0x200), then Interrupt(Consumer, Level,
        // ActiveHigh, Exclusive) {5}, then the end tag.
        assert!(contains(
            &dsdt,
            &[0x86, 9, 0, 1, 0, 0, 0xB0, 0xFE, 0, 2, 0, 0, 0x89, 6, 0, 1, 1, 5, 0, 0, 0, 0x79]
        ));
    }

    #[test]
    fn pci_host_bridge_and_its_ecam_reservation() {
        let mut platform = two_nodes_four_vcpus();
        assert!(!contains(&build(&platform), b"PCI0"));
        platform.devices.pci_host = Some(crate::PciHostBridge {
            ecam_base: 0xE000_0000,
            last_bus: 0,
            window_base: 0xC000_0000,
            window_length: 0x2000_0000,
            node: Some(1),
        });
        let dsdt = build(&platform);
        assert!(sums_to_zero(&dsdt));
        // PNP0A08, PNP0A03 and PNP0C02 as EISA IDs.
        assert!(contains(&dsdt, b"_HID\x0c\x41\xd0\x0a\x08"));
        assert!(contains(&dsdt, b"_CID\x0c\x41\xd0\x0a\x03"));
        assert!(contains(&dsdt, b"_HID\x0c\x41\xd0\x0c\x02"));
        // _PXM 1.
        assert!(contains(&dsdt, b"_PXM\x01"));
        // WordBusNumber 0..=0: descriptor 0x88, length 13, type 2, flags, 0, granularity 0,
        // min 0, max 0, translation 0, length 1.
        assert!(contains(
            &dsdt,
            &[0x88, 13, 0, 2, 0x0C, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
        ));
        // DWordMemory 0xC0000000..=0xDFFFFFFF.
        assert!(contains(
            &dsdt,
            &[0, 0, 0, 0xC0, 0xFF, 0xFF, 0xFF, 0xDF, 0, 0, 0, 0, 0, 0, 0, 0x20]
        ));
        // Memory32Fixed(ReadOnly, 0xE0000000, 1 MiB).
        assert!(contains(
            &dsdt,
            &[0x86, 9, 0, 0, 0, 0, 0, 0xE0, 0, 0, 0x10, 0]
        ));
    }

    #[test]
    fn irq_descriptor_mask() {
        let mut bytes = Vec::new();
        IrqNoFlags(9).to_aml_bytes(&mut bytes);
        assert_eq!(bytes, [0x22, 0x00, 0x02]);
    }
}
