//! The host's PCI functions (PCI Local Bus 3.0 §6, PCI Express Base 6.0 §7): finding every
//! function through the segments' ECAM windows, reading what a passthrough decision needs
//! (IDs, class, header type, BARs and their sizes, MSI/MSI-X, the PCIe port type), and
//! placing each function under its host bridge, its NUMA node and its remapping unit.
//!
//! Configuration space is reached through [`ConfigSpace`], so the walk runs over a fake
//! machine in host tests and over the ECAM windows in the image.

mod address;
mod enumerate;
pub mod guest_bus;
pub mod inventory;
pub mod passthrough;
#[cfg(test)]
mod passthrough_tests;
mod placement;
mod remapping;
#[cfg(test)]
mod tests;

pub use address::{PciAddress, PciAddressError};
pub use enumerate::{enumerate, Bar, BarKind, Capabilities, HeaderKind, PciFunction};
pub use inventory::{
    HostBridgeInfo, PciDevice, PciInventory, RemappingKind, RemappingMap, RemappingUnit,
};
pub use placement::{attribute_roots, HostBridgeRoot};
pub use remapping::Remapping;

/// 32-bit access to the configuration space of functions.
pub trait ConfigSpace {
    /// The dword at `offset` (4-byte aligned, below 4096) of `function`; all ones where no
    /// function answers.
    fn read32(&mut self, function: PciAddress, offset: u16) -> u32;
    /// Writes the dword at `offset` of `function`; ignored where no function answers.
    fn write32(&mut self, function: PciAddress, offset: u16, value: u32);
}

/// Configuration-space register offsets (type 0 and type 1 headers).
pub mod register {
    pub const ID: u16 = 0x00;
    pub const COMMAND_STATUS: u16 = 0x04;
    pub const CLASS_REVISION: u16 = 0x08;
    pub const HEADER_TYPE_DWORD: u16 = 0x0C;
    pub const BAR0: u16 = 0x10;
    /// Primary, secondary and subordinate bus numbers of a type 1 header.
    pub const BUS_NUMBERS: u16 = 0x18;
    pub const CAPABILITIES_POINTER: u16 = 0x34;
    /// Command register bits: I/O space and memory space decoding.
    pub const DECODE_IO: u32 = 1 << 0;
    pub const DECODE_MEMORY: u32 = 1 << 1;
    /// Status register bit (in the upper half of the dword): a capability list exists.
    pub const STATUS_CAPABILITIES: u32 = 1 << (16 + 4);
}
