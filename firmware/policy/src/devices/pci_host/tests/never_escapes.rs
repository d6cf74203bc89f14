//! Arbitrary guest accesses to the bus: the model never panics, and the guest never writes
//! the device except the command register's Memory Space, Bus Master (and INTx Disable,
//! kept on, and I/O Space, kept off), the MSI-X capability's Enable and Function Mask, and
//! device registers outside the MSI-X table and PBA.

use proptest::prelude::*;

use super::fake::*;
use crate::devices::device::{Device, Register};
use crate::devices::pci_host::*;

const GUEST_BAR0: u64 = 0xC000_0000;

#[derive(Clone, Debug)]
enum Access {
    /// A read or write of any window, any offset, any size.
    Any {
        write: bool,
        window: u8,
        offset: u64,
        size: u8,
        value: u64,
    },
    /// An ECAM access to the host bridge or the NVMe function.
    Ecam {
        write: bool,
        offset: u64,
        size: u8,
        value: u64,
    },
    /// CONFIG_ADDRESS then CONFIG_DATA, on bus 0 or not.
    Mechanism {
        address: u32,
        write: bool,
        lane: u64,
        size: u8,
        value: u64,
    },
    /// A trapped access near BAR 0's MSI-X window.
    Trapped {
        write: bool,
        offset: u64,
        size: u8,
        value: u64,
    },
    /// BAR 0 placed and decoding on, with MSI-X enabled or not.
    Setup { msix: u32 },
}

fn size() -> impl Strategy<Value = u8> {
    prop_oneof![Just(1u8), Just(2), Just(4), Just(8), any::<u8>()]
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u64>(), Just(u64::MAX), Just(0), 0u64..0x1_0000]
}

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![
        (any::<bool>(), 0u8..4, any::<u64>(), size(), value()).prop_map(
            |(write, window, offset, size, value)| Access::Any {
                write,
                window,
                offset,
                size,
                value
            }
        ),
        (any::<bool>(), 0u64..0x1_0000, size(), value()).prop_map(
            |(write, offset, size, value)| Access::Ecam {
                write,
                offset,
                size,
                value
            }
        ),
        (
            any::<u32>(),
            any::<u8>(),
            any::<bool>(),
            0u64..6,
            size(),
            value()
        )
            .prop_map(
                |(raw, register, write, lane, size, value)| Access::Mechanism {
                    // Mostly bus 0, device 0 or 1, any register; else anything.
                    address: if raw % 4 == 0 {
                        raw
                    } else {
                        0x8000_0000 | (raw >> 20 & 1) << 11 | u32::from(register) & 0xFC
                    },
                    write,
                    lane,
                    size,
                    value,
                }
            ),
        (any::<bool>(), 0u64..0x5000, size(), value()).prop_map(|(write, offset, size, value)| {
            Access::Trapped {
                write,
                offset,
                size,
                value,
            }
        }),
        (0u32..4).prop_map(|msix| Access::Setup { msix }),
    ]
}

/// Whether the configuration write `(offset, value, before)` is one the guest may cause.
fn allowed(&(offset, value, before): &(u16, u32, u32)) -> bool {
    match offset {
        0x04 => {
            value >> 16 == 0
                && value & 1 == 0
                && value & 0x400 != 0
                && (value ^ before) & 0xFFFF & !0x6 == 0
        }
        MSIX => (value ^ before) & !0xC000_0000 == 0,
        _ => false,
    }
}

proptest! {
    #[test]
    fn guest_accesses_never_escape(accesses in proptest::collection::vec(access(), 0..120)) {
        let (function, shared) = nvme();
        let physical_table = BAR0_HOST + TABLE..BAR0_HOST + TABLE + 16 * u64::from(ENTRIES);
        let mut bridge = VirtualHostBridge::new(vec![function]).unwrap();
        for access in accesses {
            match access {
                Access::Any { write, window, offset, size, value } => {
                    let at = Register::new(window, offset, size);
                    if write { bridge.write(at, value, 0); } else { bridge.read(at, 0); }
                }
                Access::Ecam { write, offset, size, value } => {
                    let at = Register::new(ECAM, offset, size);
                    if write { bridge.write(at, value, 0); } else { bridge.read(at, 0); }
                }
                Access::Mechanism { address, write, lane, size, value } => {
                    bridge.write(Register::new(CONFIG_ADDRESS, 0, 4), u64::from(address), 0);
                    let at = Register::new(CONFIG_DATA, lane, size);
                    if write { bridge.write(at, value, 0); } else { bridge.read(at, 0); }
                }
                Access::Trapped { write, offset, size, value } => {
                    let at = GUEST_BAR0 + 0x1800 + offset;
                    if write {
                        bridge.trapped_write(at, size, value);
                    } else {
                        bridge.trapped_read(at, size);
                    }
                }
                Access::Setup { msix } => {
                    let ecam = |register: u64| Register::new(ECAM, 1 << 15 | register, 4);
                    bridge.write(ecam(0x10), GUEST_BAR0, 0);
                    bridge.write(ecam(0x14), 0, 0);
                    bridge.write(ecam(0x04), 0x6, 0);
                    bridge.write(ecam(u64::from(MSIX)), u64::from(msix) << 30, 0);
                }
            }
            let device = shared.borrow();
            if let Some(write) = device.config_log.iter().find(|w| !allowed(w)) {
                prop_assert!(false, "configuration write {:x?}", write);
            }
            for &(at, size, _, _) in &device.memory_log {
                let end = at + u64::from(size);
                prop_assert!(end <= physical_table.start || physical_table.end <= at,
                    "table write at {:#x}", at);
            }
        }
    }
}
