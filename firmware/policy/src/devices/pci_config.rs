//! A partition's PCI configuration space as the platform's buses reach it: mechanism #1 with
//! no devices ([`PciAbsent`]) for a partition without passed-through functions, or the
//! virtual host bridge of those it owns ([`VirtualHostBridge`]).
//!
//! The platform claims the same windows for both, numbered as here: the two mechanism #1
//! port windows, then (with a bridge) its ECAM window and the pages of its functions' BARs
//! that stay trapped (the MSI-X tables), whose offsets are guest-physical addresses.

use alloc::boxed::Box;

use super::device::{Device, Effect, Register};
use super::pci_absent::{self, PciAbsent};
use super::pci_host::{self, VirtualHostBridge};

/// CONFIG_ADDRESS (0xCF8).
pub const CONFIG_ADDRESS: u8 = 0;
/// CONFIG_DATA (0xCFC).
pub const CONFIG_DATA: u8 = 1;
/// The bridge's ECAM window (bus 0).
pub const ECAM: u8 = 2;
/// A trapped BAR page; the offset is the guest-physical address (the window is based at 0).
pub const TRAPPED: u8 = 3;

/// What answers configuration cycles.
pub enum PciConfig {
    /// No PCI devices.
    Absent(PciAbsent),
    /// The partition's passed-through functions behind a virtual host bridge.
    Bridge(Box<VirtualHostBridge>),
}

impl PciConfig {
    /// The bridge, if the partition has one.
    pub fn bridge_mut(&mut self) -> Option<&mut VirtualHostBridge> {
        match self {
            PciConfig::Absent(_) => None,
            PciConfig::Bridge(bridge) => Some(bridge),
        }
    }
}

impl Device for PciConfig {
    fn read(&mut self, at: Register, now: u64) -> u64 {
        match self {
            PciConfig::Absent(absent) => match at.window {
                CONFIG_ADDRESS | CONFIG_DATA => Device::read(absent, at, now),
                _ => u64::MAX,
            },
            PciConfig::Bridge(bridge) => match at.window {
                CONFIG_ADDRESS => bridge.read(with(at, pci_host::CONFIG_ADDRESS), now),
                CONFIG_DATA => bridge.read(with(at, pci_host::CONFIG_DATA), now),
                ECAM => bridge.read(with(at, pci_host::ECAM), now),
                _ => bridge.trapped_read(at.offset, at.size).unwrap_or(u64::MAX),
            },
        }
    }

    fn write(&mut self, at: Register, value: u64, now: u64) -> Effect {
        match self {
            PciConfig::Absent(absent) => match at.window {
                CONFIG_ADDRESS | CONFIG_DATA => Device::write(absent, at, value, now),
                _ => Effect::None,
            },
            PciConfig::Bridge(bridge) => match at.window {
                CONFIG_ADDRESS => bridge.write(with(at, pci_host::CONFIG_ADDRESS), value, now),
                CONFIG_DATA => bridge.write(with(at, pci_host::CONFIG_DATA), value, now),
                ECAM => bridge.write(with(at, pci_host::ECAM), value, now),
                _ => bridge
                    .trapped_write(at.offset, at.size, value)
                    .unwrap_or(Effect::None),
            },
        }
    }
}

/// `at` in the bridge's own window numbering.
fn with(at: Register, window: u8) -> Register {
    Register { window, ..at }
}

// The port windows keep mechanism #1's numbering, whichever model answers.
const _: () = assert!(CONFIG_ADDRESS == pci_absent::CONFIG_ADDRESS);
const _: () = assert!(CONFIG_DATA == pci_absent::CONFIG_DATA);
