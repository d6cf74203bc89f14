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

use super::bars::{MemoryBar, VirtualBars};
use super::msix_table::MsixTable;

/// How a piece of a BAR reaches the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingAccess {
    /// Mapped by the SLAT onto the host's BAR: the guest reaches the device directly.
    Direct,
    /// Not mapped: the guest's accesses exit and go to
    /// [`PassthroughFunction::trapped_read`](super::PassthroughFunction::trapped_read) and
    /// `trapped_write` (the MSI-X table's page(s)).
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

/// The pieces of `bars` the guest reaches now: none while memory decoding is off
/// (`decoding`), else every placed BAR, the MSI-X `table`'s window trapped.
pub(super) fn pieces(
    bars: &VirtualBars,
    table: Option<&MsixTable>,
    decoding: bool,
) -> Vec<BarMapping> {
    let mut pieces = Vec::new();
    if !decoding {
        return pieces;
    }
    for bar in bars.bars().iter().filter(|bar| bar.placed()) {
        let piece = |start: u64, end: u64, access| BarMapping {
            bar: bar.index,
            guest_physical: bar.guest + start,
            host_physical: bar.host + start,
            size: end - start,
            access,
        };
        match table.filter(|t| t.bar() == bar.index) {
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

/// The offset of `guest_physical` in the MSI-X `table`'s BAR, if it falls in the trapped
/// window now (decoding on, the BAR placed).
pub(super) fn trapped_offset(
    bars: &VirtualBars,
    table: Option<&MsixTable>,
    decoding: bool,
    guest_physical: u64,
) -> Option<u64> {
    let table = table?;
    let bar: &MemoryBar = bars.bar(table.bar())?;
    if !decoding || !bar.placed() {
        return None;
    }
    let offset = guest_physical.checked_sub(bar.guest)?;
    table.window().contains(&offset).then_some(offset)
}
