//! Which of a function's BARs the SLAT maps into the guest now, and the trapped MSI-X
//! window among them.
//!
//! A BAR is mapped while the guest has memory decoding on (its command register, PCI 3.0
//! §6.2.2) and has placed the BAR ([`MemoryBar::placed`]: not 0, not a size probe, inside
//! 52 bits). The BAR holding the MSI-X table is split into up to three pieces: the page(s)
//! of the table are trapped, the rest mapped directly.
//!
//! Every step is reported: a 64-bit BAR moved with decoding on passes through an address
//! with the new low and the old high dword (Linux turns decoding off while it moves a BAR).
//! The model does not know the guest's memory map: a guest may place a BAR over its own RAM
//! or another device, and the firmware must refuse such a mapping (leave it unmapped).

use alloc::vec::Vec;

use super::bars::MemoryBar;
use super::function::{PassthroughFunction, MEMORY_SPACE};
use super::message::MessageRoute;

/// How a piece of a BAR reaches the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingAccess {
    /// Mapped by the SLAT onto the host's BAR: the guest reaches the device directly.
    Direct,
    /// Not mapped: the guest's accesses exit and go to
    /// [`PassthroughFunction::trapped_read`]/[`PassthroughFunction::trapped_write`] (the
    /// MSI-X table's page(s)).
    Trapped,
}

/// A piece of a BAR in the guest-physical space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarMapping {
    /// The BAR register (the lower of a 64-bit pair).
    pub bar: u8,
    /// Where the guest sees the piece (page aligned).
    pub guest_physical: u64,
    /// The host-physical address behind it (page aligned).
    pub host_physical: u64,
    /// Bytes (whole pages).
    pub size: u64,
    pub access: MappingAccess,
}

impl PassthroughFunction {
    /// The pieces of BARs mapped into the guest now, by BAR and address.
    pub fn mappings(&self) -> Vec<BarMapping> {
        let mut pieces = Vec::new();
        if self.command & MEMORY_SPACE == 0 {
            return pieces;
        }
        for bar in self.bars.bars().iter().filter(|bar| bar.placed()) {
            let piece = |start: u64, end: u64, access| BarMapping {
                bar: bar.index,
                guest_physical: bar.guest + start,
                host_physical: bar.host + start,
                size: end - start,
                access,
            };
            match self.table.as_ref().filter(|t| t.bar() == bar.index) {
                Some(table) => {
                    let window = table.window();
                    if window.start > 0 {
                        pieces.push(piece(0, window.start, MappingAccess::Direct));
                    }
                    pieces.push(piece(window.start, window.end, MappingAccess::Trapped));
                    if window.end < bar.size {
                        pieces.push(piece(window.end, bar.size, MappingAccess::Direct));
                    }
                }
                None => pieces.push(piece(0, bar.size, MappingAccess::Direct)),
            }
        }
        pieces
    }

    /// The BAR holding the MSI-X table and the trapped window's offset from its base, if the
    /// guest's `guest_physical` falls in the window now.
    fn trapped_offset(&self, guest_physical: u64) -> Option<u64> {
        let table = self.table.as_ref()?;
        let bar: &MemoryBar = self.bars.bar(table.bar())?;
        if self.command & MEMORY_SPACE == 0 || !bar.placed() {
            return None;
        }
        let offset = guest_physical.checked_sub(bar.guest)?;
        table.window().contains(&offset).then_some(offset)
    }

    /// A guest read of `size` bytes at `guest_physical`, if that is in this function's
    /// trapped MSI-X window (see `msix_table` for what each byte of it reads).
    pub fn trapped_read(&mut self, guest_physical: u64, size: u8) -> Option<u64> {
        let offset = self.trapped_offset(guest_physical)?;
        Some(self.table.as_mut()?.read(offset, size))
    }

    /// A guest write of `size` bytes of `value` at `guest_physical`, if that is in this
    /// function's trapped MSI-X window: the routes it changed (often none).
    pub fn trapped_write(
        &mut self,
        guest_physical: u64,
        size: u8,
        value: u64,
    ) -> Option<Vec<MessageRoute>> {
        let offset = self.trapped_offset(guest_physical)?;
        let table = self.table.as_mut()?;
        // Routes are compared, not entries: filling in a masked entry changes no route.
        let Some(entry) = table.entry_at(offset, size) else {
            table.write(offset, size, value);
            return Some(Vec::new());
        };
        let before = self.msix_route(entry);
        self.table.as_mut()?.write(offset, size, value);
        let after = self.msix_route(entry);
        Some(if after != before {
            Vec::from([after])
        } else {
            Vec::new()
        })
    }
}
