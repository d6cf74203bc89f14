//! The guest's MSI-X table (PCI Local Bus 3.0 §6.8.2.6–§6.8.2.9, PCIe Base 6.0 §7.7.2): the
//! page(s) holding the table are left out of the guest's mapping of the BAR and trapped; the
//! rest of the BAR is mapped directly.
//!
//! The trap window is the table rounded out to whole pages, inside its BAR. Within it:
//! - the table itself is virtual: 16-byte entries (message address low and high, data,
//!   vector control with the mask bit 0), read and written as aligned dwords or qwords (the
//!   only accesses §6.8.2 defines; anything else reads all ones and is dropped), the guest's
//!   values kept and never written to the device;
//! - the Pending Bit Array, where it shares the window, reads through to the device and
//!   ignores writes (it is read-only, §6.8.2.10);
//! - any other byte is another register of the device that happens to share the page, and
//!   the access is forwarded to the device as it came.
//!
//! An access that would straddle the table's edge, the PBA's or the window's is refused
//! (reads all ones, writes dropped): forwarding it could touch the physical table.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use super::bars::{MemoryBar, PAGE};
use super::error::PassthroughError;
use super::message::{HostMessage, MsiMessage};
use super::msix_capability::MsixCapability;
use super::physical::BarMemory;

/// Bytes of an entry, and offsets of its dwords (§6.8.2.6).
const ENTRY: u64 = 16;
const ADDRESS_LOW: u64 = 0;
const ADDRESS_HIGH: u64 = 4;
const DATA: u64 = 8;
const VECTOR_CONTROL: u64 = 12;
/// Vector control bit 0 (§6.8.2.9); set at reset.
const MASK: u32 = 1;

/// One entry as the guest wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixEntry {
    /// The message (address bits 1:0 read 0: a message is dword aligned).
    pub message: MsiMessage,
    /// The entry's mask bit.
    pub masked: bool,
}

impl Default for MsixEntry {
    fn default() -> MsixEntry {
        MsixEntry {
            message: MsiMessage::default(),
            masked: true,
        }
    }
}

/// A function's MSI-X table, its trap window and the device memory behind it.
pub struct MsixTable {
    /// The BAR register holding the table.
    bar: u8,
    /// The BAR's host-physical base.
    host_base: u64,
    /// The table, in bytes from the BAR's base.
    table: Range<u64>,
    /// The PBA, where it lies in the trap window.
    pba: Option<Range<u64>>,
    /// The trapped page(s), in bytes from the BAR's base.
    window: Range<u64>,
    entries: Vec<MsixEntry>,
    memory: alloc::boxed::Box<dyn BarMemory>,
}

impl MsixTable {
    /// The table `capability` describes, in `bar` (the BAR its BIR names), if it fits there.
    /// Nothing is written to the device: the caller masks every physical entry
    /// ([`MsixTable::mask_all`]) before MSI-X can be enabled.
    pub fn new(
        capability: &MsixCapability,
        bar: &MemoryBar,
        memory: alloc::boxed::Box<dyn BarMemory>,
    ) -> Result<MsixTable, PassthroughError> {
        let location = capability.table();
        let outside = PassthroughError::MsixOutsideBar {
            bir: location.bir,
            offset: location.offset,
        };
        let start = u64::from(location.offset);
        let end = start
            .checked_add(u64::from(capability.entries()) * ENTRY)
            .filter(|&end| end <= bar.size)
            .ok_or(outside)?;
        // Both ends rounded out to pages; a BAR is at least a page and a power of two, so the
        // window stays inside it.
        let window = start & !(PAGE - 1)..end.div_ceil(PAGE) * PAGE;
        let pba = capability.pba();
        let pba_bytes = u64::from(capability.entries()).div_ceil(64) * 8;
        let pba_start = u64::from(pba.offset);
        let pba = (pba.bir == location.bir)
            .then(|| pba_start..pba_start.saturating_add(pba_bytes))
            .filter(|range| range.start < window.end && window.start < range.end);
        Ok(MsixTable {
            bar: bar.index,
            host_base: bar.host,
            table: start..end,
            pba,
            window,
            entries: vec![MsixEntry::default(); usize::from(capability.entries())],
            memory,
        })
    }

    /// Masks every entry of the device's table, so it sends nothing the hypervisor has not
    /// programmed ([`MsixTable::program`]). The caller keeps memory decoding on for the call.
    pub fn mask_all(&mut self) {
        for entry in 0..self.entries() {
            self.mask_physical(entry);
        }
    }

    /// The BAR register holding the table.
    pub fn bar(&self) -> u8 {
        self.bar
    }

    /// The trapped bytes of the BAR, from its base: the page(s) covering the table.
    pub fn window(&self) -> Range<u64> {
        self.window.clone()
    }

    /// Number of entries (1..=2048: Table Size is 11 bits, §6.8.2.3).
    pub fn entries(&self) -> u16 {
        self.entries.len() as u16
    }

    /// Entry `n` as the guest wrote it.
    pub fn entry(&self, n: u16) -> Option<MsixEntry> {
        self.entries.get(usize::from(n)).copied()
    }

    /// Where an access of `size` bytes at `offset` (from the BAR's base) lands.
    fn classify(&self, offset: u64, size: u8) -> Target {
        let Some(end) = offset.checked_add(u64::from(size)) else {
            return Target::Refused;
        };
        if !matches!(size, 1 | 2 | 4 | 8) || offset < self.window.start || end > self.window.end {
            return Target::Refused;
        }
        let overlaps = |range: &Range<u64>| offset < range.end && range.start < end;
        if overlaps(&self.table) {
            let aligned = matches!(size, 4 | 8) && offset.is_multiple_of(u64::from(size));
            return if aligned && self.table.start <= offset && end <= self.table.end {
                let relative = offset - self.table.start;
                Target::Entry {
                    index: (relative / ENTRY) as usize,
                    register: relative % ENTRY,
                }
            } else {
                Target::Refused
            };
        }
        match &self.pba {
            Some(pba) if overlaps(pba) => {
                if pba.start <= offset && end <= pba.end {
                    Target::Pending
                } else {
                    Target::Refused
                }
            }
            _ => Target::Device,
        }
    }

    /// The entry an access of `size` bytes at `offset` (from the BAR's base) reads or
    /// writes, if it is a well-formed table access.
    pub fn entry_at(&self, offset: u64, size: u8) -> Option<u16> {
        match self.classify(offset, size) {
            Target::Entry { index, .. } => u16::try_from(index).ok(),
            _ => None,
        }
    }

    /// The guest's read of `size` bytes at `offset` from the BAR's base, inside the window.
    pub fn read(&mut self, offset: u64, size: u8) -> u64 {
        let all_ones = match size {
            1 => 0xFF,
            2 => 0xFFFF,
            4 => 0xFFFF_FFFF,
            _ => u64::MAX,
        };
        match self.classify(offset, size) {
            Target::Refused => all_ones,
            Target::Entry { index, register } => {
                let low = self.entry_dword(index, register);
                if size == 8 {
                    u64::from(low) | u64::from(self.entry_dword(index, register + 4)) << 32
                } else {
                    u64::from(low)
                }
            }
            Target::Pending | Target::Device => {
                self.memory.read(self.host_base + offset, size) & all_ones
            }
        }
    }

    /// The guest's write of `size` bytes of `value` at `offset` from the BAR's base.
    pub fn write(&mut self, offset: u64, size: u8, value: u64) {
        match self.classify(offset, size) {
            Target::Refused | Target::Pending => {}
            Target::Device => self.memory.write(self.host_base + offset, size, value),
            Target::Entry { index, register } => {
                self.write_entry_dword(index, register, value as u32);
                if size == 8 {
                    self.write_entry_dword(index, register + 4, (value >> 32) as u32);
                }
            }
        }
    }

    fn entry_dword(&self, index: usize, register: u64) -> u32 {
        let entry = &self.entries[index];
        match register {
            ADDRESS_LOW => entry.message.address as u32,
            ADDRESS_HIGH => (entry.message.address >> 32) as u32,
            DATA => entry.message.data,
            // Bits 31:1 are reserved (or steering tags the model does not offer): read 0.
            _ => u32::from(entry.masked),
        }
    }

    fn write_entry_dword(&mut self, index: usize, register: u64, value: u32) {
        let entry = &mut self.entries[index];
        match register {
            ADDRESS_LOW => {
                entry.message.address = entry.message.address & !0xFFFF_FFFF | u64::from(value & !3)
            }
            ADDRESS_HIGH => {
                entry.message.address = entry.message.address & 0xFFFF_FFFF | u64::from(value) << 32
            }
            DATA => entry.message.data = value,
            _ => entry.masked = value & MASK != 0,
        }
    }

    /// Host-physical address of dword `register` of entry `n`.
    fn physical(&self, n: u16, register: u64) -> u64 {
        self.host_base + self.table.start + u64::from(n) * ENTRY + register
    }

    /// Sets entry `n`'s mask bit in the device, leaving its other control bits.
    fn mask_physical(&mut self, n: u16) {
        let at = self.physical(n, VECTOR_CONTROL);
        let control = self.memory.read(at, 4) as u32;
        self.memory.write(at, 4, u64::from(control | MASK));
    }

    /// Programs the device's entry `n` with `host` and unmasks it, or masks it for `None`.
    /// The entry is masked while it is written (§6.8.2.9: software may change an entry only
    /// while it is masked). The caller keeps memory decoding on for the call.
    pub fn program(&mut self, n: u16, host: Option<HostMessage>) -> bool {
        if usize::from(n) >= self.entries.len() {
            return false;
        }
        self.mask_physical(n);
        if let Some(message) = host {
            let at = |register| self.physical(n, register);
            let (low, high, data) = (at(ADDRESS_LOW), at(ADDRESS_HIGH), at(DATA));
            self.memory.write(low, 4, message.address & 0xFFFF_FFFF);
            self.memory.write(high, 4, message.address >> 32);
            self.memory.write(data, 4, u64::from(message.data));
            let control_at = self.physical(n, VECTOR_CONTROL);
            let control = self.memory.read(control_at, 4) as u32;
            self.memory.write(control_at, 4, u64::from(control & !MASK));
        }
        true
    }
}

/// Where a trapped access lands.
enum Target {
    /// Straddles an edge, or a size the table does not take: all ones, dropped.
    Refused,
    /// Dword `register` (0, 4, 8, 12) of entry `index` (an 8-byte access: it and the next).
    Entry { index: usize, register: u64 },
    /// The PBA: read through, writes dropped.
    Pending,
    /// Another register of the device: forwarded.
    Device,
}
