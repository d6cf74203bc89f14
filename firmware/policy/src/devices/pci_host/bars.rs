//! The guest's shadow of a function's base address registers (PCI Local Bus 3.0 §6.2.5.1):
//! memory BARs, 32- or 64-bit, sized by writing all ones; the guest places them anywhere
//! and the SLAT maps the guest address onto the host's BAR, which never moves.
//!
//! I/O BARs are not passed through (they read 0 and ignore writes), nor are memory BARs
//! smaller than a page: the SLAT maps whole pages, and a page holding a small BAR may hold
//! another function's registers (creation refuses them).

use alloc::vec::Vec;

use super::error::PassthroughError;
use crate::pci::{Bar, BarKind};

/// A page, the SLAT's granule.
pub const PAGE: u64 = 0x1000;
/// The guest-physical address space the model lets a BAR reach: 52 bits (the architectural
/// maximum of a 4-level or 5-level SLAT).
const GUEST_PHYSICAL_LIMIT: u64 = 1 << 52;
/// BAR type bits (§6.2.5.1): 64-bit memory (bits 2:1 = 10b) and prefetchable (bit 3).
const TYPE_64: u32 = 0b100;
const PREFETCHABLE: u32 = 0b1000;

/// One passed-through memory BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBar {
    /// Its BAR register (the lower of a 64-bit pair), 0..=5.
    pub index: u8,
    /// A 64-bit BAR (two registers).
    pub wide: bool,
    /// Prefetchable, as the host BAR says.
    pub prefetchable: bool,
    /// Where the host firmware placed it.
    pub host: u64,
    /// Bytes it decodes: a power of two, at least a page.
    pub size: u64,
    /// Where the guest placed it (only the bits the size lets it write).
    pub guest: u64,
}

impl MemoryBar {
    /// Writable address bits of the low register.
    fn low_mask(&self) -> u32 {
        !(self.size - 1) as u32 & !0xF
    }

    /// Writable address bits of the high register (64-bit BARs only).
    fn high_mask(&self) -> u32 {
        if self.wide {
            (!(self.size - 1) >> 32) as u32
        } else {
            0
        }
    }

    /// Whether the guest left a size probe in it: every writable bit of a register set.
    /// Such an address is never mapped (it is what PCI 3.0 §6.2.5.1 sizing leaves until the
    /// original is written back).
    pub fn probing(&self) -> bool {
        let (low, high) = (self.low_mask(), self.high_mask());
        (low != 0 && self.guest as u32 & low == low)
            || (high != 0 && (self.guest >> 32) as u32 & high == high)
    }

    /// Whether the guest address may be mapped: programmed (not 0, not a probe) and wholly
    /// inside the 52-bit guest-physical space.
    pub fn placed(&self) -> bool {
        self.guest != 0
            && !self.probing()
            && self
                .guest
                .checked_add(self.size)
                .is_some_and(|end| end <= GUEST_PHYSICAL_LIMIT)
    }
}

/// What each of the six BAR registers is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Not passed through: reads 0.
    Absent,
    /// The (low) register of memory BAR `n` of the list.
    Low(usize),
    /// The high register of 64-bit memory BAR `n`.
    High(usize),
}

/// The six BAR registers of a type 0 header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualBars {
    slots: [Slot; 6],
    bars: Vec<MemoryBar>,
}

impl VirtualBars {
    /// The memory BARs of `host` (as enumeration sized them), at guest address 0; I/O BARs
    /// are left out.
    pub fn new(host: &[Bar]) -> Result<VirtualBars, PassthroughError> {
        let mut slots = [Slot::Absent; 6];
        let mut bars = Vec::new();
        for bar in host {
            let wide = match bar.kind {
                BarKind::Io => continue,
                BarKind::Memory32 | BarKind::MemoryBelow1M => false,
                BarKind::Memory64 => true,
            };
            let index = usize::from(bar.index);
            let last = index + usize::from(wide);
            if last >= slots.len() || slots[index] != Slot::Absent || slots[last] != Slot::Absent {
                return Err(PassthroughError::BarIndex { bar: bar.index });
            }
            let shape = PassthroughError::BarShape {
                bar: bar.index,
                base: bar.base,
                size: bar.size,
            };
            if !bar.size.is_power_of_two() || bar.base & (bar.size - 1) != 0 {
                return Err(shape);
            }
            if !wide && bar.size > 1 << 31 {
                return Err(shape);
            }
            if bar.size < PAGE {
                return Err(PassthroughError::BarTooSmall {
                    bar: bar.index,
                    size: bar.size,
                });
            }
            slots[index] = Slot::Low(bars.len());
            if wide {
                slots[last] = Slot::High(bars.len());
            }
            bars.push(MemoryBar {
                index: bar.index,
                wide,
                prefetchable: bar.prefetchable,
                host: bar.base,
                size: bar.size,
                guest: 0,
            });
        }
        Ok(VirtualBars { slots, bars })
    }

    /// The passed-through memory BARs.
    pub fn bars(&self) -> &[MemoryBar] {
        &self.bars
    }

    /// The memory BAR whose (low) register is `index`.
    pub fn bar(&self, index: u8) -> Option<&MemoryBar> {
        match self.slots.get(usize::from(index))? {
            Slot::Low(n) => self.bars.get(*n),
            _ => None,
        }
    }

    /// The guest's read of BAR register `register` (0..=5).
    pub fn read(&self, register: usize) -> u32 {
        match self.slots.get(register) {
            Some(Slot::Low(n)) => {
                let bar = &self.bars[*n];
                let mut value = bar.guest as u32 & bar.low_mask();
                if bar.wide {
                    value |= TYPE_64;
                }
                if bar.prefetchable {
                    value |= PREFETCHABLE;
                }
                value
            }
            Some(Slot::High(n)) => {
                let bar = &self.bars[*n];
                (bar.guest >> 32) as u32 & bar.high_mask()
            }
            Some(Slot::Absent) | None => 0,
        }
    }

    /// The guest's write of `value` to BAR register `register`: only the address bits its
    /// size leaves writable are kept.
    pub fn write(&mut self, register: usize, value: u32) {
        match self.slots.get(register) {
            Some(Slot::Low(n)) => {
                let bar = &mut self.bars[*n];
                let mask = u64::from(bar.low_mask());
                bar.guest = bar.guest & !mask | u64::from(value) & mask;
            }
            Some(Slot::High(n)) => {
                let bar = &mut self.bars[*n];
                let mask = u64::from(bar.high_mask()) << 32;
                bar.guest = bar.guest & !mask | u64::from(value) << 32 & mask;
            }
            Some(Slot::Absent) | None => {}
        }
    }
}
