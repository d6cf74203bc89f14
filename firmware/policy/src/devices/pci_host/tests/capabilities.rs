//! The virtual capability list.

use super::fake::*;
use crate::devices::pci_host::*;

/// The guest's list: (offset, ID) in order, following next pointers from 0x34.
fn chain(f: &mut PassthroughFunction) -> Vec<(u16, u8)> {
    let mut list = Vec::new();
    let mut at = f.read(0x34) as u16;
    while at != 0 && list.len() < 64 {
        let head = f.read(at);
        list.push((at, head as u8));
        at = (head >> 8 & 0xFF) as u16;
    }
    list
}

#[test]
fn only_the_kinds_a_driver_needs_are_shown() {
    let (mut f, shared) = nvme();
    assert_eq!(
        chain(&mut f),
        [(PM, 0x01), (MSI, 0x05), (MSIX, 0x11), (EXPRESS, 0x10)]
    );
    assert_eq!(f.read(VENDOR), 0, "the VPD capability is hidden");
    assert_eq!(f.read(VENDOR + 4), 0);
    // PM and PCIe read through (past their headers, and the header's upper half).
    assert_eq!(f.read(PM + 4), 0x0000_0008);
    assert_eq!(f.read(PM) >> 16, 0x0003);
    assert_eq!(f.read(EXPRESS + 8), 0x0000_2810);
    // Writes to them are dropped.
    f.write(EXPRESS + 8, 0x8000, 0b1111);
    f.write(PM + 4, 0x3, 0b1111);
    assert!(shared.borrow().config_log.is_empty());
    assert_eq!(f.read(PM + 4), 0x0000_0008);
}

#[test]
fn vendor_specific_capabilities_read_through_and_ignore_writes() {
    let mut device = FakeDevice::nvme(0x3000);
    // Two vendor-specific capabilities (as virtio's modern transport has), 16 bytes each.
    device.dwords[usize::from(VENDOR / 4)] = 0x0010_0009 | 0x90 << 8;
    device.dwords[0x90 / 4] = 0x0010_0009 | u32::from(MSIX) << 8;
    device.dwords[0x94 / 4] = 0x1234_5678;
    let (mut f, shared) = passthrough(device);
    assert_eq!(
        chain(&mut f),
        [
            (PM, 0x01),
            (MSI, 0x05),
            (VENDOR, 0x09),
            (0x90, 0x09),
            (MSIX, 0x11),
            (EXPRESS, 0x10)
        ]
    );
    assert_eq!(f.read(0x94), 0x1234_5678);
    f.write(0x94, 0, 0b1111);
    assert!(shared.borrow().config_log.is_empty());
    // A vendor capability shorter than its own header is hidden.
    let mut device = FakeDevice::nvme(0x3000);
    device.dwords[usize::from(VENDOR / 4)] = 0x0002_0009 | u32::from(MSIX) << 8;
    let (mut f, _) = passthrough(device);
    assert!(!chain(&mut f).contains(&(VENDOR, 0x09)));
}

#[test]
fn a_loop_in_the_physical_list_ends_the_walk() {
    let mut device = FakeDevice::nvme(0x3000);
    // PCIe points back at PM: PM, MSI, vendor, MSI-X, PCIe, PM, …
    device.dwords[usize::from(EXPRESS / 4)] |= u32::from(PM) << 8;
    let (mut f, _) = passthrough(device);
    assert_eq!(
        chain(&mut f),
        [(PM, 0x01), (MSI, 0x05), (MSIX, 0x11), (EXPRESS, 0x10)]
    );
}

#[test]
fn bad_pointers_end_the_list_and_low_bits_are_masked() {
    let mut device = FakeDevice::nvme(0x3000);
    // MSI's next pointer is 0x73 (the vendor capability, reserved bits set); the vendor
    // capability points into the header.
    device.dwords[usize::from(MSI / 4)] = device.dwords[usize::from(MSI / 4)] & !0xFF00 | 0x7300;
    device.dwords[usize::from(VENDOR / 4)] =
        device.dwords[usize::from(VENDOR / 4)] & !0xFF00 | 0x3C00;
    let (mut f, _) = passthrough(device);
    assert_eq!(chain(&mut f), [(PM, 0x01), (MSI, 0x05)]);
}

#[test]
fn no_list_without_the_status_bit() {
    let mut device = FakeDevice::nvme(0x3000);
    device.dwords[1] &= !(1 << 20);
    let (mut f, _) = passthrough(device);
    assert_eq!(f.read(0x34), 0);
    assert_eq!(f.read(0x04) >> 16 & 0x10, 0);
    assert_eq!(f.read(MSI), 0);
    assert_eq!(f.routes(), []);
}

#[test]
fn a_capability_running_past_the_header_is_hidden() {
    let mut device = FakeDevice::nvme(0x3000);
    // A PCIe capability at 0xF0 would need 0x3C bytes.
    device.dwords[usize::from(EXPRESS / 4)] = 0;
    device.dwords[usize::from(MSIX / 4)] = device.dwords[usize::from(MSIX / 4)] & !0xFF00 | 0xF000;
    device.dwords[0xF0 / 4] = 0x0002_0010;
    let (mut f, _) = passthrough(device);
    assert_eq!(chain(&mut f), [(PM, 0x01), (MSI, 0x05), (MSIX, 0x11)]);
    assert_eq!(f.read(0xF0), 0);
}
