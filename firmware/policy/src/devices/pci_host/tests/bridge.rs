//! The virtual host bridge: ECAM and mechanism #1 addressing, byte lanes, absent slots.

use super::fake::*;
use crate::devices::device::{Device, Effect, Register};
use crate::devices::pci_host::*;

fn ecam(device: u64, function: u64, register: u64) -> u64 {
    device << 15 | function << 12 | register
}

fn read(bridge: &mut VirtualHostBridge, window: u8, offset: u64, size: u8) -> u64 {
    bridge.read(Register::new(window, offset, size), 0)
}

fn write(bridge: &mut VirtualHostBridge, window: u8, offset: u64, size: u8, value: u64) -> Effect {
    bridge.write(Register::new(window, offset, size), value, 0)
}

fn bus() -> (VirtualHostBridge, Shared) {
    let (f, shared) = nvme();
    (VirtualHostBridge::new(vec![f]).unwrap(), shared)
}

#[test]
fn ecam_addressing_and_absent_slots() {
    let (mut b, _) = bus();
    assert_eq!(read(&mut b, ECAM, ecam(0, 0, 0), 4), 0x0008_1B36);
    assert_eq!(read(&mut b, ECAM, ecam(0, 0, 8), 4), 0x0600_0000);
    assert_eq!(
        read(&mut b, ECAM, ecam(0, 0, 0xE), 1),
        0,
        "host bridge header type 0"
    );
    assert_eq!(read(&mut b, ECAM, ecam(1, 0, 0), 4), 0x0953_8086);
    assert_eq!(
        read(&mut b, ECAM, ecam(1, 0, 2), 2),
        0x0953,
        "device ID lane"
    );
    assert_eq!(
        read(&mut b, ECAM, ecam(1, 0, 0xB), 1),
        0x01,
        "base class lane"
    );
    assert_eq!(
        read(&mut b, ECAM, ecam(1, 0, 1), 2),
        0x5380,
        "bytes 1-2 of a dword"
    );
    for (device, function) in [(2, 0), (31, 0), (1, 1), (0, 7)] {
        assert_eq!(
            read(&mut b, ECAM, ecam(device, function, 0), 4),
            0xFFFF_FFFF
        );
        assert_eq!(read(&mut b, ECAM, ecam(device, function, 0), 2), 0xFFFF);
        assert_eq!(read(&mut b, ECAM, ecam(device, function, 0), 1), 0xFF);
        assert_eq!(
            write(&mut b, ECAM, ecam(device, function, 4), 4, 6),
            Effect::None
        );
    }
    assert_eq!(
        read(&mut b, ECAM, ecam(1, 0, 0x100), 4),
        0,
        "no extended capabilities"
    );
    // Crossing a dword; sizes the bus does not define.
    assert_eq!(read(&mut b, ECAM, ecam(1, 0, 3), 2), 0xFFFF);
    assert_eq!(read(&mut b, ECAM, ecam(1, 0, 2), 4), 0xFFFF_FFFF);
    assert_eq!(read(&mut b, ECAM, ecam(1, 0, 0), 3), 0xFFFF_FFFF);
    // Eight bytes: reads split, writes dropped.
    assert_eq!(read(&mut b, ECAM, ecam(1, 0, 8), 8), 0x0108_0201);
    assert_eq!(read(&mut b, ECAM, ecam(1, 0, 4), 8), u64::MAX);
    assert_eq!(
        write(&mut b, ECAM, ecam(1, 0, 0x10), 8, 0xC000_0000),
        Effect::None
    );
    assert_eq!(read(&mut b, ECAM, ecam(1, 0, 0x10), 4), 0b100);
    assert_eq!(read(&mut b, ECAM, ECAM_SIZE, 4), 0xFFFF_FFFF);
}

#[test]
fn ecam_writes_reach_the_function_and_come_back_as_effects() {
    let (mut b, _) = bus();
    write(&mut b, ECAM, ecam(1, 0, 0x10), 4, 0xC000_0000);
    let Effect::PciMappings(mappings) = write(&mut b, ECAM, ecam(1, 0, 4), 2, 0x0006) else {
        panic!("decode on maps BAR 0");
    };
    assert_eq!(mappings.device, 1);
    assert_eq!(mappings.mappings.len(), 3);
    assert_eq!(b.mappings(), [mappings]);
    // Byte lane writes: the interrupt line.
    write(&mut b, ECAM, ecam(1, 0, 0x3C), 1, 0x0B);
    assert_eq!(read(&mut b, ECAM, ecam(1, 0, 0x3C), 4), 0x0B);
    // MSI through the bridge.
    write(&mut b, ECAM, ecam(1, 0, u64::from(MSI) + 4), 4, 0xFEE0_0000);
    write(&mut b, ECAM, ecam(1, 0, u64::from(MSI) + 0xC), 2, 0x0030);
    let Effect::PciInterrupts(routes) = write(&mut b, ECAM, ecam(1, 0, u64::from(MSI) + 2), 2, 1)
    else {
        panic!("enabling MSI routes it");
    };
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].device, 1);
    assert_eq!(routes[0].route.source, InterruptSource::Msi);
    assert_eq!(routes[0].route.target.map(|m| m.vector), Some(0x30));
    // The trapped table through the bridge.
    let table = 0xC000_0000 + TABLE;
    assert_eq!(b.trapped_read(table + 12, 4), Some(1));
    assert_eq!(b.trapped_write(table, 4, 0xFEE0_0000), Some(Effect::None));
    assert_eq!(b.trapped_read(0xC000_0000, 4), None, "directly mapped");
    assert!(b.function_mut(1).is_some() && b.function(0).is_none() && b.function(2).is_none());
}

fn cf8(device: u32, function: u32, register: u32) -> u64 {
    u64::from(0x8000_0000 | device << 11 | function << 8 | register)
}

#[test]
fn mechanism_one_addressing_and_lanes() {
    let (mut b, _) = bus();
    write(&mut b, CONFIG_ADDRESS, 0, 4, cf8(1, 0, 0));
    assert_eq!(read(&mut b, CONFIG_ADDRESS, 0, 4), cf8(1, 0, 0));
    assert_eq!(read(&mut b, CONFIG_DATA, 0, 4), 0x0953_8086);
    assert_eq!(read(&mut b, CONFIG_DATA, 2, 2), 0x0953);
    assert_eq!(read(&mut b, CONFIG_DATA, 1, 1), 0x80);
    assert_eq!(
        read(&mut b, CONFIG_DATA, 3, 2),
        0xFFFF,
        "past the data port"
    );
    write(&mut b, CONFIG_ADDRESS, 0, 4, cf8(1, 0, 0x3C));
    write(&mut b, CONFIG_DATA, 0, 1, 0x0A);
    assert_eq!(read(&mut b, CONFIG_DATA, 0, 4), 0x0A);
    // The low two bits of the register are not CONFIG_ADDRESS's: byte lanes are the port's.
    write(&mut b, CONFIG_ADDRESS, 0, 4, cf8(1, 0, 0x0B));
    assert_eq!(read(&mut b, CONFIG_ADDRESS, 0, 4), cf8(1, 0, 0x08));
    assert_eq!(read(&mut b, CONFIG_DATA, 3, 1), 0x01);
    // Host bridge; other buses, disabled cycles, absent devices.
    write(&mut b, CONFIG_ADDRESS, 0, 4, cf8(0, 0, 0));
    assert_eq!(read(&mut b, CONFIG_DATA, 0, 4), 0x0008_1B36);
    write(&mut b, CONFIG_ADDRESS, 0, 4, cf8(1, 0, 0) | 1 << 16);
    assert_eq!(read(&mut b, CONFIG_DATA, 0, 4), 0xFFFF_FFFF);
    write(&mut b, CONFIG_ADDRESS, 0, 4, cf8(1, 0, 0) & 0x7FFF_FFFF);
    assert_eq!(read(&mut b, CONFIG_DATA, 0, 4), 0xFFFF_FFFF);
    write(&mut b, CONFIG_ADDRESS, 0, 4, cf8(5, 0, 0));
    assert_eq!(read(&mut b, CONFIG_DATA, 0, 2), 0xFFFF);
}

#[test]
fn config_address_behaves_as_without_devices() {
    let (mut b, _) = bus();
    assert_eq!(read(&mut b, CONFIG_ADDRESS, 0, 4), 0);
    write(&mut b, CONFIG_ADDRESS, 0, 4, 0xFFFF_FFFF);
    assert_eq!(
        read(&mut b, CONFIG_ADDRESS, 0, 4),
        0x80FF_FFFC,
        "reserved bits read 0"
    );
    write(&mut b, CONFIG_ADDRESS, 0, 2, 0);
    write(&mut b, CONFIG_ADDRESS, 3, 1, 0);
    assert_eq!(
        read(&mut b, CONFIG_ADDRESS, 0, 4),
        0x80FF_FFFC,
        "narrow writes ignored"
    );
    assert_eq!(read(&mut b, CONFIG_ADDRESS, 0, 2), 0xFFFF);
    assert_eq!(read(&mut b, CONFIG_ADDRESS, 0, 1), 0xFF);
    // Linux's probe: 0x8000_0000 reads back.
    write(&mut b, CONFIG_ADDRESS, 0, 4, 0x8000_0000);
    assert_eq!(read(&mut b, CONFIG_ADDRESS, 0, 4), 0x8000_0000);
}

#[test]
fn an_empty_bus_has_only_the_host_bridge() {
    let mut b = VirtualHostBridge::new(Vec::new()).unwrap();
    assert_eq!(read(&mut b, ECAM, 0, 4), 0x0008_1B36);
    for device in 1..32 {
        assert_eq!(read(&mut b, ECAM, ecam(device, 0, 0), 4), 0xFFFF_FFFF);
    }
    assert!(b.mappings().is_empty());
    assert_eq!(b.trapped_read(0xC000_2000, 4), None);
}

#[test]
fn thirty_one_functions_at_most() {
    let functions: Vec<_> = (0..32).map(|_| nvme().0).collect();
    assert_eq!(
        VirtualHostBridge::new(functions)
            .err()
            .map(|e| e.to_string()),
        Some(PassthroughError::TooManyFunctions(32).to_string())
    );
}
