//! One passed-through function's configuration space as the guest sees it (PCI Local Bus 3.0
//! §6.1–§6.2 type 0 header, §6.7 capabilities; PCIe Base 6.0 §7.5): built from the physical
//! function at creation, then virtual except where this note says it reaches the device.
//!
//! | register | guest read | guest write |
//! |---|---|---|
//! | IDs, revision, class, subsystem | the device's | dropped |
//! | header type | 0 (single function) | dropped |
//! | command | what the guest wrote of Memory Space, Bus Master, INTx Disable | those three kept; Memory Space and Bus Master forwarded |
//! | status | the device's, Capabilities List per the virtual list, Interrupt Status 0 | dropped |
//! | BARs | the guest's address, the host's size and type bits | kept (`bars`) |
//! | cache line size, interrupt line | what the guest wrote | kept, never forwarded |
//! | expansion ROM, interrupt pin, the rest of the header | 0 | dropped |
//! | capabilities 0x40–0xFF | the kept list (`capabilities`); other bytes 0 | per capability |
//! | extended space 0x100–0xFFF | 0: no extended capabilities (PCIe §7.6.3) | dropped |
//!
//! The device's command register always has I/O Space off (no I/O BAR is passed through)
//! and INTx Disable on (INTx is not offered: the guest gets MSI or MSI-X only).

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::bars::VirtualBars;
use super::capabilities::{CapabilityKind, CapabilityList};
use super::error::PassthroughError;
use super::mapping::{self, BarMapping};
use super::message::MessageRoute;
use super::msi::MsiCapability;
use super::msix_capability::MsixCapability;
use super::msix_table::MsixTable;
use super::physical::{BarMemory, FunctionConfig};
use crate::pci::register::{
    BAR0, CAPABILITIES_POINTER, CLASS_REVISION, COMMAND_STATUS, DECODE_IO, DECODE_MEMORY,
    HEADER_TYPE_DWORD, ID,
};
use crate::pci::Bar;

/// Command register bits (PCI 3.0 §6.2.2) the guest may set.
const MEMORY_SPACE: u16 = DECODE_MEMORY as u16;
pub(super) const BUS_MASTER: u16 = 1 << 2;
pub(super) const INTX_DISABLE: u16 = 1 << 10;
const GUEST_COMMAND: u16 = MEMORY_SPACE | BUS_MASTER | INTX_DISABLE;
/// Status register bits: Interrupt Status (INTx pending) and Capabilities List.
const INTERRUPT_STATUS: u16 = 1 << 3;
const CAPABILITIES_LIST: u16 = 1 << 4;
/// Other header registers.
const BAR5: u16 = 0x24;
const SUBSYSTEM: u16 = 0x2C;
const INTERRUPT: u16 = 0x3C;
const CAPABILITIES: core::ops::Range<u16> = 0x40..0x100;

/// What a guest write changed that the hypervisor must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FunctionChange {
    /// Nothing.
    None,
    /// The BAR mappings in force are now these (all of them: what was mapped before and is
    /// not listed is to be unmapped).
    Mappings(Vec<BarMapping>),
    /// These messages' routes changed.
    Routes(Vec<MessageRoute>),
}

/// The virtual configuration space of one physical function.
pub struct PassthroughFunction {
    pub(super) config: Box<dyn FunctionConfig>,
    id: u32,
    class_revision: u32,
    subsystem: u32,
    /// The guest's command register (only [`GUEST_COMMAND`] bits).
    pub(super) command: u16,
    cache_line_size: u8,
    interrupt_line: u8,
    pub(super) bars: VirtualBars,
    capabilities: CapabilityList,
    pub(super) msi: Option<MsiCapability>,
    pub(super) msix: Option<MsixCapability>,
    pub(super) table: Option<MsixTable>,
}

impl PassthroughFunction {
    /// The function behind `config`, whose memory BARs are `bars` (as enumeration sized
    /// them: [`crate::pci::PciFunction::bars`]) and whose BARs' memory `memory` reaches.
    ///
    /// Everything is read and checked before anything is written; then the device is put
    /// in the state the guest first sees: memory decoding and bus mastering off, I/O
    /// decoding off, INTx disabled, MSI and MSI-X disabled and every MSI-X entry masked.
    pub fn new(
        mut config: Box<dyn FunctionConfig>,
        bars: &[Bar],
        memory: Box<dyn BarMemory>,
    ) -> Result<PassthroughFunction, PassthroughError> {
        let id = config.read32(ID);
        if matches!(id & 0xFFFF, 0 | 0xFFFF) {
            return Err(PassthroughError::Absent);
        }
        let header_type = (config.read32(HEADER_TYPE_DWORD) >> 16) as u8 & 0x7F;
        if header_type != 0 {
            return Err(PassthroughError::NotAnEndpoint { header_type });
        }
        let bars = VirtualBars::new(bars)?;
        let capabilities = CapabilityList::walk(config.as_mut());
        let msi = capabilities
            .find(CapabilityKind::Msi)
            .map(|c| MsiCapability::new(config.as_mut(), c.offset));
        let msix = capabilities
            .find(CapabilityKind::Msix)
            .map(|c| MsixCapability::new(config.as_mut(), c.offset));
        let table = match &msix {
            Some(capability) => {
                let location = capability.table();
                let bar = bars
                    .bar(location.bir)
                    .ok_or(PassthroughError::MsixOutsideBar {
                        bir: location.bir,
                        offset: location.offset,
                    })?;
                Some(MsixTable::new(capability, bar, memory)?)
            }
            None => None,
        };
        let mut function = PassthroughFunction {
            id,
            class_revision: config.read32(CLASS_REVISION),
            subsystem: config.read32(SUBSYSTEM),
            config,
            command: 0,
            cache_line_size: 0,
            interrupt_line: 0,
            bars,
            capabilities,
            msi,
            msix,
            table,
        };
        function.quiesce();
        Ok(function)
    }

    /// Puts the device in the guest's reset state (see [`PassthroughFunction::new`]).
    fn quiesce(&mut self) {
        if let Some(msi) = &self.msi {
            // Disabling cannot fail.
            let _ = msi.program(self.config.as_mut(), None);
        }
        if let Some(msix) = &self.msix {
            msix.forward(self.config.as_mut());
        }
        self.forward_command();
        if let Some(table) = &mut self.table {
            with_memory_decoding(self.config.as_mut(), |_| table.mask_all());
        }
    }

    /// The guest's read of the dword at `offset` (rounded down to a multiple of 4; offsets
    /// past 4 KiB read 0).
    pub fn read(&mut self, offset: u16) -> u32 {
        let offset = offset & !3;
        match offset {
            ID => self.id,
            COMMAND_STATUS => u32::from(self.command) | u32::from(self.status()) << 16,
            CLASS_REVISION => self.class_revision,
            // Cache line size, latency timer 0, header type 0 (single function), BIST 0.
            HEADER_TYPE_DWORD => u32::from(self.cache_line_size),
            BAR0..=BAR5 => self.bars.read(usize::from((offset - BAR0) / 4)),
            SUBSYSTEM => self.subsystem,
            CAPABILITIES_POINTER => u32::from(self.capabilities.first()),
            // Interrupt pin 0: no INTx.
            INTERRUPT => u32::from(self.interrupt_line),
            _ if CAPABILITIES.contains(&offset) => self.read_capability(offset),
            _ => 0,
        }
    }

    /// The status register: the device's, with Capabilities List as the virtual list has it
    /// and Interrupt Status clear (INTx is not offered).
    fn status(&mut self) -> u16 {
        let device = (self.config.read32(COMMAND_STATUS) >> 16) as u16;
        let mut status = device & !(INTERRUPT_STATUS | CAPABILITIES_LIST);
        if !self.capabilities.kept().is_empty() {
            status |= CAPABILITIES_LIST;
        }
        status
    }

    fn read_capability(&mut self, offset: u16) -> u32 {
        let Some((capability, next)) = self.capabilities.holding(offset) else {
            return 0;
        };
        let relative = offset - u16::from(capability.offset);
        let value = match capability.kind {
            CapabilityKind::Msi => self.msi.map_or(0, |msi| msi.read(relative)),
            CapabilityKind::Msix => self.msix.map_or(0, |msix| msix.read(relative)),
            CapabilityKind::Express
            | CapabilityKind::PowerManagement
            | CapabilityKind::VendorSpecific => self.config.read32(offset),
        };
        if relative == 0 {
            // The header: the device's capability ID, the next pointer of the virtual list.
            let id = self.config.read32(offset) & 0xFF;
            value & !0xFFFF | u32::from(next) << 8 | id
        } else {
            value
        }
    }

    /// The guest's write of `value` to the bytes of the dword at `offset` that
    /// `byte_enables` (bit n: byte n) selects; the other bytes keep what the guest reads.
    pub fn write(&mut self, offset: u16, value: u32, byte_enables: u8) -> FunctionChange {
        let offset = offset & !3;
        let mask = (0..4)
            .filter(|byte| byte_enables & 1 << byte != 0)
            .fold(0u32, |mask, byte| mask | 0xFF << (8 * byte));
        if mask == 0 {
            return FunctionChange::None;
        }
        let merged = self.read(offset) & !mask | value & mask;
        let mappings = self.mappings();
        match offset {
            COMMAND_STATUS if mask & 0xFFFF != 0 => {
                self.command = merged as u16 & GUEST_COMMAND;
                self.forward_command();
            }
            HEADER_TYPE_DWORD => self.cache_line_size = merged as u8,
            BAR0..=BAR5 => self.bars.write(usize::from((offset - BAR0) / 4), merged),
            INTERRUPT => self.interrupt_line = merged as u8,
            _ if CAPABILITIES.contains(&offset) => {
                let routes = self.write_capability(offset, merged);
                if !routes.is_empty() {
                    return FunctionChange::Routes(routes);
                }
            }
            _ => {}
        }
        let now = self.mappings();
        if now != mappings {
            FunctionChange::Mappings(now)
        } else {
            FunctionChange::None
        }
    }

    /// A write to a kept capability: the routes it changed. PCI Express and Power
    /// Management writes are dropped, so a guest cannot change the link (ASPM, retraining),
    /// payload and read-request sizes, error reporting, or clear error status, cannot start
    /// a Function Level Reset, and cannot change the power state (D3hot) or arm PME: the
    /// hypervisor owns those for the whole device.
    fn write_capability(&mut self, offset: u16, value: u32) -> Vec<MessageRoute> {
        let Some((capability, _)) = self.capabilities.holding(offset) else {
            return Vec::new();
        };
        let relative = offset - u16::from(capability.offset);
        match capability.kind {
            CapabilityKind::Msi => self.write_msi(relative, value),
            CapabilityKind::Msix => self.write_msix_control(relative, value),
            CapabilityKind::Express
            | CapabilityKind::PowerManagement
            | CapabilityKind::VendorSpecific => Vec::new(),
        }
    }

    /// Writes the device's command register from the guest's: Memory Space and Bus Master
    /// as the guest has them, I/O Space off, INTx Disable on, the other bits (parity and
    /// SERR reporting the host firmware chose) as the device has them. Zeros in the status
    /// half clear nothing (its error bits are write-one-to-clear). Nothing is written when
    /// nothing would change.
    fn forward_command(&mut self) {
        let device = self.config.read32(COMMAND_STATUS) as u16;
        let wanted = device & !(DECODE_IO as u16 | MEMORY_SPACE | BUS_MASTER)
            | INTX_DISABLE
            | self.command & (MEMORY_SPACE | BUS_MASTER);
        if wanted != device {
            self.config.write32(COMMAND_STATUS, u32::from(wanted));
        }
    }
}

/// Runs `f` with the device's memory decoding on (the hypervisor's own access to the
/// MSI-X table, whatever the guest's command register says), then puts the command register
/// back as it was.
pub(super) fn with_memory_decoding<R>(
    config: &mut dyn FunctionConfig,
    f: impl FnOnce(&mut dyn FunctionConfig) -> R,
) -> R {
    let command = config.read32(COMMAND_STATUS) & 0xFFFF;
    let off = command & DECODE_MEMORY == 0;
    if off {
        config.write32(COMMAND_STATUS, command | DECODE_MEMORY);
    }
    let result = f(config);
    if off {
        config.write32(COMMAND_STATUS, command);
    }
    result
}

/// The BARs as the guest reaches them, and the trapped MSI-X window (`mapping`).
impl PassthroughFunction {
    /// The pieces of BARs mapped into the guest now, by BAR and address.
    pub fn mappings(&self) -> Vec<BarMapping> {
        mapping::pieces(&self.bars, self.table.as_ref(), self.decoding())
    }

    fn decoding(&self) -> bool {
        self.command & MEMORY_SPACE != 0
    }

    fn trapped_offset(&self, guest_physical: u64) -> Option<u64> {
        mapping::trapped_offset(
            &self.bars,
            self.table.as_ref(),
            self.decoding(),
            guest_physical,
        )
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
