//! MSI and MSI-X: the virtual capabilities, the trapped table and the routes.

use super::fake::*;
use crate::devices::pci_host::*;

const ALL: u8 = 0b1111;
const GUEST_BAR0: u64 = 0xC000_0000;

fn edge(destination: u8, vector: u8) -> Option<GuestMsi> {
    Some(GuestMsi {
        destination,
        mode: DestinationMode::Physical,
        redirection_hint: false,
        vector,
        delivery: MsiDelivery::Fixed,
        trigger: Trigger::Edge,
    })
}

#[test]
fn msi_is_virtual_with_one_vector() {
    let (mut f, shared) = nvme();
    // 64-bit and per-vector masking as the device has them; Multiple Message Capable 0.
    assert_eq!(f.read(MSI) >> 16, 0x0180);
    f.write(MSI, 0x0070 << 16, 0b1100);
    assert_eq!(f.read(MSI) >> 16, 0x0180, "multiple message enable stays 0");
    assert_eq!(f.write(MSI + 4, 0xFEE0_2000, ALL), FunctionChange::None);
    f.write(MSI + 8, 0, ALL);
    f.write(MSI + 0xC, 0xFFFF_0041, ALL);
    assert_eq!(f.read(MSI + 0xC), 0x41, "16 bits of data");
    let on = f.write(MSI, 1 << 16, 0b0100);
    let route = |target| {
        FunctionChange::Routes(vec![MessageRoute {
            source: InterruptSource::Msi,
            target,
        }])
    };
    assert_eq!(on, route(edge(2, 0x41)));
    assert_eq!(f.read(MSI) >> 16, 0x0181);
    // Masking and unmasking the one vector.
    assert_eq!(f.write(MSI + 0x10, u32::MAX, ALL), route(None));
    assert_eq!(f.read(MSI + 0x10), 1);
    assert_eq!(f.write(MSI + 0x10, 0, ALL), route(edge(2, 0x41)));
    assert_eq!(f.read(MSI + 0x14), 0, "pending reads 0");
    // A message outside the interrupt window is no route.
    assert_eq!(f.write(MSI + 4, 0x1000, ALL), route(None));
    assert_eq!(
        f.routes()[0],
        MessageRoute {
            source: InterruptSource::Msi,
            target: None
        }
    );
    assert!(
        shared.borrow().config_log.is_empty(),
        "the guest never reaches MSI"
    );
    // The hypervisor programs the device.
    f.program_msi(Some(HostMessage {
        address: 0xFEE0_1000,
        data: 0x0055,
    }))
    .unwrap();
    let d = shared.borrow();
    assert_eq!(d.dword(MSI + 4), 0xFEE0_1000);
    assert_eq!(d.dword(MSI + 0xC), 0x55);
    assert_eq!(d.dword(MSI + 0x10), 0, "vector unmasked");
    assert_eq!(d.dword(MSI) >> 16 & 0x71, 1, "enabled, one vector");
    assert_eq!(
        d.config_log.first().map(|w| w.1 >> 16 & 1),
        Some(0),
        "disabled first"
    );
    drop(d);
    assert_eq!(
        f.program_msi(Some(HostMessage {
            address: 0xFEE0_0000,
            data: 0x1_0000
        })),
        Err(ProgramError::DataTooWide(0x1_0000))
    );
    f.program_msi(None).unwrap();
    assert_eq!(shared.borrow().dword(MSI) >> 16 & 1, 0);
}

/// The NVMe model with BAR 0 at [`GUEST_BAR0`], memory decoding on.
fn placed() -> (PassthroughFunction, Shared) {
    let (mut f, shared) = nvme();
    f.write(0x10, GUEST_BAR0 as u32, ALL);
    f.write(0x04, 0x0006, ALL);
    shared.borrow_mut().config_log.clear();
    (f, shared)
}

fn entry(n: u64, register: u64) -> u64 {
    GUEST_BAR0 + TABLE + 16 * n + register
}

#[test]
fn msix_capability_reads_through_and_forwards_enable() {
    let (mut f, shared) = placed();
    assert_eq!(f.read(MSIX) >> 16, u32::from(ENTRIES - 1));
    assert_eq!(f.read(MSIX + 4), TABLE as u32);
    assert_eq!(f.read(MSIX + 8), 0x3000);
    f.write(MSIX + 4, 0, ALL);
    assert_eq!(f.read(MSIX + 4), TABLE as u32, "read-only");
    assert_eq!(f.write(MSIX, 0xC000 << 16, 0b1100), FunctionChange::None);
    assert_eq!(f.read(MSIX) >> 16, 0xC000 | u32::from(ENTRIES - 1));
    assert_eq!(
        shared.borrow().dword(MSIX) >> 30,
        0b11,
        "enable and mask forwarded"
    );
    f.write(MSIX, 0x8000 << 16, 0b1100);
    assert_eq!(shared.borrow().dword(MSIX) >> 30, 0b10);
    assert_eq!(shared.borrow().config_log.len(), 2);
}

#[test]
fn msix_table_is_virtual_and_routes_follow_it() {
    let (mut f, shared) = placed();
    // Every entry starts masked.
    assert_eq!(f.trapped_read(entry(7, 12), 4), Some(1));
    // Entry 3: address, data, unmask, before MSI-X is enabled: no route yet.
    assert_eq!(f.trapped_write(entry(3, 0), 8, 0xFEE0_5000), Some(vec![]));
    assert_eq!(f.trapped_write(entry(3, 8), 4, 0x0000_0062), Some(vec![]));
    assert_eq!(f.trapped_write(entry(3, 12), 4, 0), Some(vec![]));
    assert_eq!(
        f.msix_entry(3),
        Some(MsixEntry {
            message: MsiMessage {
                address: 0xFEE0_5000,
                data: 0x62
            },
            masked: false
        })
    );
    assert_eq!(f.trapped_read(entry(3, 8), 8), Some(0x62));
    assert_eq!(f.trapped_read(entry(3, 0), 8), Some(0xFEE0_5000));
    let route = MessageRoute {
        source: InterruptSource::MsixEntry(3),
        target: edge(5, 0x62),
    };
    assert_eq!(
        f.write(MSIX, 0x8000 << 16, 0b1100),
        FunctionChange::Routes(vec![route]),
        "only the unmasked entry goes live"
    );
    // Function mask, then a changed entry while live.
    assert!(
        matches!(f.write(MSIX, 0xC000 << 16, 0b1100), FunctionChange::Routes(r) if r.len() == 1 && r[0].target.is_none())
    );
    f.write(MSIX, 0x8000 << 16, 0b1100);
    let masked = MessageRoute {
        target: None,
        ..route
    };
    assert_eq!(f.trapped_write(entry(3, 12), 4, 1), Some(vec![masked]));
    assert_eq!(
        f.trapped_write(entry(3, 12), 4, 1),
        Some(vec![]),
        "no change, no route"
    );
    assert_eq!(f.routes().len(), 1 + usize::from(ENTRIES));
    // None of it reached the device's table.
    assert!(shared.borrow().memory_log.is_empty());
    // The hypervisor programs entry 3.
    f.program_msix(
        3,
        Some(HostMessage {
            address: 0xFEE0_0000,
            data: 0x4021,
        }),
    )
    .unwrap();
    let d = shared.borrow();
    assert_eq!(d.memory_dword(TABLE + 48), 0xFEE0_0000);
    assert_eq!(d.memory_dword(TABLE + 56), 0x4021);
    assert_eq!(d.memory_dword(TABLE + 60) & 1, 0, "unmasked");
    assert_eq!(
        d.memory_log.first().map(|w| w.2 & 1),
        Some(1),
        "masked first"
    );
    drop(d);
    assert_eq!(
        f.program_msix(ENTRIES, None),
        Err(ProgramError::NoSuchEntry(ENTRIES))
    );
}

#[test]
fn programming_msix_turns_decoding_on_for_the_writes() {
    let (mut f, shared) = nvme();
    f.program_msix(
        0,
        Some(HostMessage {
            address: 0xFEE0_0000,
            data: 0x30,
        }),
    )
    .unwrap();
    let d = shared.borrow();
    assert!(d.memory_log.iter().all(|&(.., decoding)| decoding));
    assert_eq!(d.dword(0x04) & 2, 0, "and off again");
}

#[test]
fn trapped_window_edges() {
    let (mut f, shared) = placed();
    // Misaligned or narrow accesses to the table read all ones and are dropped.
    assert_eq!(f.trapped_read(entry(0, 2), 4), Some(0xFFFF_FFFF));
    assert_eq!(f.trapped_read(entry(0, 4), 8), Some(u64::MAX));
    assert_eq!(f.trapped_read(entry(0, 0), 2), Some(0xFFFF));
    assert_eq!(f.trapped_write(entry(0, 12), 1, 0), Some(vec![]));
    assert_eq!(f.trapped_read(entry(0, 12), 4), Some(1));
    // Straddling the table's end.
    let end = GUEST_BAR0 + TABLE + 16 * u64::from(ENTRIES);
    assert_eq!(f.trapped_read(end - 4, 8), Some(u64::MAX));
    f.trapped_write(end - 4, 8, 0);
    assert!(shared.borrow().memory_log.is_empty());
    // Past the table in the same page: the device's own registers.
    shared.borrow_mut().memory[0x2800] = 0x5A;
    assert_eq!(f.trapped_read(GUEST_BAR0 + 0x2800, 1), Some(0x5A));
    f.trapped_write(GUEST_BAR0 + 0x2804, 4, 0x1234);
    assert_eq!(shared.borrow().memory_dword(0x2804), 0x1234);
    // Straddling the window's end, and outside it.
    assert_eq!(f.trapped_read(GUEST_BAR0 + 0x2FFC, 8), Some(u64::MAX));
    assert_eq!(f.trapped_read(GUEST_BAR0 + 0x3000, 4), None);
    assert_eq!(f.trapped_read(GUEST_BAR0 + 0x1FFC, 4), None);
    // Decoding off: no window.
    f.write(0x04, 0, ALL);
    assert_eq!(f.trapped_read(entry(0, 0), 4), None);
}

#[test]
fn a_pba_in_the_window_reads_through_and_ignores_writes() {
    let (mut f, shared) = passthrough(FakeDevice::nvme(0x2800));
    f.write(0x10, GUEST_BAR0 as u32, ALL);
    f.write(0x04, 0x0002, ALL);
    shared.borrow_mut().memory[0x2800] = 0x81;
    assert_eq!(f.trapped_read(GUEST_BAR0 + 0x2800, 8), Some(0x81));
    f.trapped_write(GUEST_BAR0 + 0x2800, 8, 0);
    assert!(shared.borrow().memory_log.is_empty());
    // The PBA is 16 bytes (65 bits): past it, the device again.
    f.trapped_write(GUEST_BAR0 + 0x2810, 4, 7);
    assert_eq!(shared.borrow().memory_log.len(), 1);
}
