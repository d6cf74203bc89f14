//! The header, the command register, the BARs and the mappings.

use super::fake::*;
use crate::devices::pci_host::*;
use crate::pci::{Bar, BarKind};

const ALL: u8 = 0b1111;

#[test]
fn creation_puts_the_device_in_the_guests_reset_state() {
    let shared = shared(FakeDevice::nvme(0x3000));
    create(&shared, &bars()).unwrap();
    let d = shared.borrow();
    // I/O, memory and bus master off, INTx disabled, parity and SERR kept.
    assert_eq!(d.dword(0x04) & 0xFFFF, 0x0540);
    assert_eq!(d.dword(MSI) >> 16 & 1, 0, "MSI disabled");
    assert_eq!(
        d.dword(MSIX) >> 30,
        0,
        "MSI-X disabled, not function-masked"
    );
    for entry in 0..u64::from(ENTRIES) {
        assert_eq!(
            d.memory_dword(TABLE + 16 * entry + 12) & 1,
            1,
            "entry {entry}"
        );
    }
    assert!(d.memory_log.iter().all(|&(.., decoding)| decoding));
    assert_eq!(d.dword(0x04) & 2, 0, "decoding off again");
}

#[test]
fn header_reads_the_devices_identity_and_hides_the_rest() {
    let (mut f, _) = nvme();
    assert_eq!(f.read(0x00), 0x0953_8086);
    assert_eq!(f.read(0x08), 0x0108_0201);
    assert_eq!(f.read(0x0C), 0, "header type 0: bit 7 cleared");
    assert_eq!(f.read(0x2C), 0x370E_8086);
    assert_eq!(f.read(0x30), 0, "no expansion ROM");
    f.write(0x30, u32::MAX, ALL);
    assert_eq!(f.read(0x30), 0);
    assert_eq!(f.read(0x3C), 0, "no interrupt pin");
    f.write(0x3C, 0xFFFF_FF0A, ALL);
    assert_eq!(f.read(0x3C), 0x0A, "interrupt line is the guest's byte");
    // Status: capabilities list, no INTx pending.
    assert_eq!(f.read(0x04) >> 16, 0x0010);
    for offset in (0x100..0x1000).step_by(4) {
        assert_eq!(f.read(offset), 0, "extended space at {offset:#x}");
    }
}

#[test]
fn command_register_forwards_memory_and_bus_master_only() {
    let (mut f, shared) = nvme();
    f.write(0x04, 0xFFFF_FFFF, ALL);
    assert_eq!(f.read(0x04) & 0xFFFF, 0x0406, "I/O refused, other bits 0");
    let d = shared.borrow().dword(0x04);
    assert_eq!(
        d & 0xFFFF,
        0x0546,
        "memory and bus master on, INTx disabled"
    );
    assert_eq!(d >> 16, 0x0018, "writing zeros clears no status bit");
    f.write(0x04, 0x0002, 0b0011);
    assert_eq!(
        f.read(0x04) & 0xFFFF,
        0x0002,
        "INTx disable reads as written"
    );
    assert_eq!(shared.borrow().dword(0x04) & 0xFFFF, 0x0542, "but stays on");
    // A status-only write leaves the command register.
    f.write(0x04, 0xFFFF_0000, 0b1100);
    assert_eq!(f.read(0x04) & 0xFFFF, 0x0002);
    assert!(shared
        .borrow()
        .config_log
        .iter()
        .all(|&(offset, value, _)| offset == 0x04 && value & 1 == 0 && value >> 16 == 0));
}

#[test]
fn bar_size_probes() {
    let (mut f, shared) = nvme();
    assert_eq!(f.read(0x10), 0b100, "64-bit, at 0 for the guest");
    f.write(0x10, u32::MAX, ALL);
    f.write(0x14, u32::MAX, ALL);
    assert_eq!(f.read(0x10), 0xFFFF_C004);
    assert_eq!(f.read(0x14), u32::MAX);
    f.write(0x20, u32::MAX, ALL);
    assert_eq!(f.read(0x20), 0xFFFF_E008, "32-bit prefetchable 8 KiB");
    // I/O and unimplemented BARs read 0, written or not.
    for offset in [0x18, 0x1C, 0x24] {
        f.write(offset, u32::MAX, ALL);
        assert_eq!(f.read(offset), 0, "BAR at {offset:#x}");
    }
    // A byte write lands in its lane.
    f.write(0x20, 0x0000_1234 << 16, 0b1100);
    assert_eq!(f.read(0x20), 0x1234_E008);
    assert!(
        shared.borrow().config_log.is_empty(),
        "BARs never reach the device"
    );
}

/// Places BAR 0 at `address` (both registers).
fn place(f: &mut PassthroughFunction, address: u64) -> FunctionChange {
    f.write(0x10, address as u32, ALL);
    f.write(0x14, (address >> 32) as u32, ALL)
}

#[test]
fn mappings_need_decoding_and_a_placed_bar() {
    let (mut f, _) = nvme();
    assert_eq!(
        place(&mut f, 0xC000_0000),
        FunctionChange::None,
        "decode off"
    );
    assert!(f.mappings().is_empty());
    let FunctionChange::Mappings(on) = f.write(0x04, 0x2, ALL) else {
        panic!("enabling decode maps BAR 0");
    };
    let piece = |start: u64, end: u64, access| BarMapping {
        bar: 0,
        guest_physical: 0xC000_0000 + start,
        host_physical: BAR0_HOST + start,
        size: end - start,
        access,
    };
    assert_eq!(
        on,
        [
            piece(0, 0x2000, MappingAccess::Direct),
            piece(0x2000, 0x3000, MappingAccess::Trapped),
            piece(0x3000, 0x4000, MappingAccess::Direct),
        ],
        "BAR 4 is at 0: not placed"
    );
    let FunctionChange::Mappings(moved) = f.write(0x20, 0xE000_0000, ALL) else {
        panic!("placing BAR 4 maps it");
    };
    assert_eq!(moved.len(), 4);
    assert_eq!(
        moved[3],
        BarMapping {
            bar: 4,
            guest_physical: 0xE000_0000,
            host_physical: BAR4_HOST,
            size: BAR4_SIZE,
            access: MappingAccess::Direct,
        }
    );
    // The same value again changes nothing.
    assert_eq!(f.write(0x20, 0xE000_0000, ALL), FunctionChange::None);
    // A size probe unmaps; the restore maps again.
    let FunctionChange::Mappings(probing) = f.write(0x20, u32::MAX, ALL) else {
        panic!("a probe unmaps BAR 4");
    };
    assert_eq!(probing.len(), 3);
    assert!(matches!(
        f.write(0x20, 0xE000_0000, ALL),
        FunctionChange::Mappings(m) if m.len() == 4
    ));
    // Past 52 bits is not mapped; nor is a low register with every writable bit set.
    place(&mut f, 0x10_0000_0000_0000);
    assert_eq!(f.mappings().len(), 1, "at 2^52: BAR 4 only");
    place(&mut f, 0xF_FFFF_FFFF_C000);
    assert_eq!(f.mappings().len(), 1, "a probe");
    place(&mut f, 0xF_FFFF_FFF0_0000);
    assert_eq!(f.mappings().len(), 4, "just below 2^52 is fine");
    let FunctionChange::Mappings(off) = f.write(0x04, 0, ALL) else {
        panic!("disabling decode unmaps");
    };
    assert!(off.is_empty());
}

#[test]
fn small_and_malformed_bars_are_refused() {
    let bar = |index, kind, base, size| Bar {
        index,
        kind,
        prefetchable: false,
        base,
        size,
    };
    let fake = || shared(FakeDevice::nvme(0x3000));
    let mut small = bars();
    small.push(bar(5, BarKind::Memory32, 0xFEB1_0800, 0x800));
    assert_eq!(
        create(&fake(), &small).err(),
        Some(PassthroughError::BarTooSmall {
            bar: 5,
            size: 0x800
        })
    );
    let mut misaligned = bars();
    misaligned.push(bar(5, BarKind::Memory32, 0xFEB1_1000, 0x2000));
    assert!(matches!(
        create(&fake(), &misaligned),
        Err(PassthroughError::BarShape { bar: 5, .. })
    ));
    let mut clash = bars();
    clash.push(bar(1, BarKind::Memory32, 0xFEB2_0000, 0x1000));
    assert_eq!(
        create(&fake(), &clash).err(),
        Some(PassthroughError::BarIndex { bar: 1 })
    );
    let mut past = bars();
    past.push(bar(5, BarKind::Memory64, 0xFEB2_0000, 0x1000));
    assert_eq!(
        create(&fake(), &past).err(),
        Some(PassthroughError::BarIndex { bar: 5 })
    );
    // Without BAR 0 the MSI-X table has nowhere to be.
    assert!(matches!(
        create(&fake(), &bars()[1..]),
        Err(PassthroughError::MsixOutsideBar { bir: 0, .. })
    ));
    let absent = fake();
    absent.borrow_mut().dwords[0] = u32::MAX;
    assert_eq!(
        create(&absent, &bars()).err(),
        Some(PassthroughError::Absent)
    );
    let bridge = fake();
    bridge.borrow_mut().dwords[3] = 0x0001_0000;
    assert_eq!(
        create(&bridge, &bars()).err(),
        Some(PassthroughError::NotAnEndpoint { header_type: 1 })
    );
    // Refusals touch nothing.
    let untouched = fake();
    let _ = create(&untouched, &small);
    assert!(untouched.borrow().config_log.is_empty());
    assert!(PassthroughError::BarTooSmall {
        bar: 5,
        size: 0x800
    }
    .to_string()
    .contains("4 KiB"));
}
