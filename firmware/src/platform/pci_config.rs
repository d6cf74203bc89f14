//! The host's PCI configuration space, reached through the ECAM windows the MCFG gives
//! (PCI Express Base 6.0 §7.2.2): each access one aligned 32-bit volatile load or store.

use alloc::vec::Vec;

use log::warn;
use numavisor_policy::acpi::EcamWindow;
use numavisor_policy::pci::{ConfigSpace, PciAddress};

/// Below this address the boot identity map makes every 2 MiB page without RAM uncacheable
/// (`paging::finish_identity_map`); above it, holes are mapped write-back, which is wrong for
/// device registers.
const UNCACHED_BELOW: u64 = 4 << 30;

/// Configuration-space access through the windows that lie where the identity map makes
/// them uncacheable; only `unsafe` makes one.
pub struct Ecam {
    windows: Vec<EcamWindow>,
}

impl Ecam {
    /// Access through those of `windows` that lie wholly below 4 GiB; each other one is named
    /// in a warning and its buses read as empty.
    ///
    /// # Safety
    ///
    /// The windows are the firmware's MCFG allocations: device configuration space that no
    /// one else accesses while this value is used, identity mapped uncacheable below 4 GiB.
    pub unsafe fn new(windows: &[EcamWindow]) -> Ecam {
        let mut usable = Vec::new();
        for window in windows {
            match window.end() {
                Some(end) if end <= UNCACHED_BELOW => usable.push(*window),
                _ => warn!(
                    "PCI: segment {} buses {:#04x}-{:#04x}: its ECAM window at {:#x} lies above 4 GiB, which the hypervisor does not map uncached; not enumerated",
                    window.segment, window.start_bus, window.end_bus, window.base
                ),
            }
        }
        Ecam { windows: usable }
    }

    /// The windows accessed.
    pub fn windows(&self) -> &[EcamWindow] {
        &self.windows
    }

    fn address(&self, function: PciAddress, offset: u16) -> Option<u64> {
        if !offset.is_multiple_of(4) || offset >= 4096 {
            return None;
        }
        let window = self
            .windows
            .iter()
            .find(|w| w.segment == function.segment && w.decodes(function.bus))?;
        window
            .address_of(function.bus, function.device, function.function)
            .map(|base| base + u64::from(offset))
    }
}

impl ConfigSpace for Ecam {
    fn read32(&mut self, function: PciAddress, offset: u16) -> u32 {
        match self.address(function, offset) {
            // SAFETY: an aligned dword inside an ECAM window below 4 GiB (checked in `new`
            // and `address`), identity mapped uncacheable; a configuration read has no side
            // effect an absent function could answer other than all ones.
            Some(address) => unsafe { core::ptr::read_volatile(address as *const u32) },
            None => u32::MAX,
        }
    }

    fn write32(&mut self, function: PciAddress, offset: u16, value: u32) {
        if let Some(address) = self.address(function, offset) {
            // SAFETY: as for `read32`; the writes the enumeration makes (BAR sizing with
            // decoding off, then the originals back) leave the function as it was.
            unsafe { core::ptr::write_volatile(address as *mut u32, value) }
        }
    }
}
