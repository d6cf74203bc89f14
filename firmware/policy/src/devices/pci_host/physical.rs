//! How the models reach the real function: its configuration space (one function's slice of
//! the host's ECAM, PCI Express Base 6.0 §7.2.2) and the memory its BARs decode (for the
//! MSI-X table's page, PCI Express Base 6.0 §7.7.2).
//!
//! Both are object-safe traits, so the firmware hands in `Box<dyn …>` over its ECAM and
//! device-memory mappings, and the host tests hand in fakes that log every write.

use crate::pci::{ConfigSpace, PciAddress};

/// The 4 KiB configuration space of one physical function, a dword at a time.
pub trait FunctionConfig: Send {
    /// The dword at `offset` (a multiple of 4, below 4096).
    fn read32(&mut self, offset: u16) -> u32;
    /// Writes the dword at `offset` (a multiple of 4, below 4096).
    fn write32(&mut self, offset: u16, value: u32);
}

/// One function of a [`ConfigSpace`] (the enumeration's access to every function) as a
/// [`FunctionConfig`], so the same ECAM access serves the walk and the passthrough model.
pub struct OneFunction<C> {
    /// Configuration space of every function.
    pub config: C,
    /// The function this handle reaches.
    pub address: PciAddress,
}

impl<C: ConfigSpace + Send> FunctionConfig for OneFunction<C> {
    fn read32(&mut self, offset: u16) -> u32 {
        self.config.read32(self.address, offset)
    }

    fn write32(&mut self, offset: u16, value: u32) {
        self.config.write32(self.address, offset, value)
    }
}

/// The device memory a function's BARs decode, at host-physical addresses.
///
/// The model passes only addresses inside one of the function's memory BARs (an access of
/// `size` bytes, 1, 2, 4 or 8, wholly inside it); an implementation may check that again.
pub trait BarMemory: Send {
    /// Reads `size` bytes at `host_physical`.
    fn read(&mut self, host_physical: u64, size: u8) -> u64;
    /// Writes the low `size` bytes of `value` at `host_physical`.
    fn write(&mut self, host_physical: u64, size: u8, value: u64);
}
