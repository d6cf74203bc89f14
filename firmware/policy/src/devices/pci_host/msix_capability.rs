//! The MSI-X capability as the guest sees it (PCI Local Bus 3.0 §6.8.2, PCIe Base 6.0
//! §7.7.2): Table Size and the table's and PBA's BAR and offset read through (they are
//! read-only and fixed by the device); MSI-X Enable and Function Mask are kept here and
//! forwarded to the device, so the physical table, which the hypervisor programs, is live
//! exactly when the guest's is.

use super::physical::FunctionConfig;

/// Message control bits (§6.8.2.3).
const ENABLE: u16 = 1 << 15;
const FUNCTION_MASK: u16 = 1 << 14;
const TABLE_SIZE: u16 = 0x7FF;

/// Where a structure lives: a BAR (BIR, bits 2:0) and the offset into it (bits 31:3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixLocation {
    /// BAR Indicator Register: which BAR register, 0..=5 (6 and 7 are reserved).
    pub bir: u8,
    /// Bytes from the BAR's base (QWORD aligned).
    pub offset: u32,
}

impl MsixLocation {
    fn from_register(value: u32) -> MsixLocation {
        MsixLocation {
            bir: (value & 7) as u8,
            offset: value & !7,
        }
    }
}

/// The guest's MSI-X capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixCapability {
    offset: u8,
    /// Table Size as the register holds it (entries less one).
    size_field: u16,
    table_register: u32,
    pba_register: u32,
    enabled: bool,
    function_mask: bool,
}

impl MsixCapability {
    /// The capability at `offset` of `config`, read only (the caller then disables the
    /// device's MSI-X with [`MsixCapability::forward`], so both start disabled).
    pub fn new(config: &mut dyn FunctionConfig, offset: u8) -> MsixCapability {
        let at = u16::from(offset);
        let head = config.read32(at);
        MsixCapability {
            offset,
            size_field: (head >> 16) as u16 & TABLE_SIZE,
            table_register: config.read32(at + 4),
            pba_register: config.read32(at + 8),
            enabled: false,
            function_mask: false,
        }
    }

    /// Entries in the table, 1..=2048.
    pub fn entries(&self) -> u16 {
        self.size_field + 1
    }

    /// Where the table lives.
    pub fn table(&self) -> MsixLocation {
        MsixLocation::from_register(self.table_register)
    }

    /// Where the Pending Bit Array lives.
    pub fn pba(&self) -> MsixLocation {
        MsixLocation::from_register(self.pba_register)
    }

    /// Whether the guest enabled MSI-X and left the function unmasked: its table's unmasked
    /// entries are live.
    pub fn live(&self) -> bool {
        self.enabled && !self.function_mask
    }

    /// The guest's read of the dword `relative` bytes into the structure (the header byte
    /// pair of dword 0 is the caller's).
    pub fn read(&self, relative: u16) -> u32 {
        match relative {
            0 => {
                let mut control = self.size_field;
                if self.enabled {
                    control |= ENABLE;
                }
                if self.function_mask {
                    control |= FUNCTION_MASK;
                }
                u32::from(control) << 16
            }
            4 => self.table_register,
            8 => self.pba_register,
            _ => 0,
        }
    }

    /// The guest's write of the dword `relative` bytes into the structure; Enable and
    /// Function Mask reach the device when they change. Whether they changed.
    pub fn write(&mut self, config: &mut dyn FunctionConfig, relative: u16, value: u32) -> bool {
        if relative != 0 {
            return false;
        }
        let control = (value >> 16) as u16;
        let (enabled, function_mask) = (control & ENABLE != 0, control & FUNCTION_MASK != 0);
        if (enabled, function_mask) == (self.enabled, self.function_mask) {
            return false;
        }
        self.enabled = enabled;
        self.function_mask = function_mask;
        self.forward(config);
        true
    }

    /// Writes the guest's Enable and Function Mask to the device's message control, the
    /// rest of the dword as the device holds it.
    pub fn forward(&self, config: &mut dyn FunctionConfig) {
        let at = u16::from(self.offset);
        let head = config.read32(at);
        let mut control = (head >> 16) as u16 & !(ENABLE | FUNCTION_MASK);
        if self.enabled {
            control |= ENABLE;
        }
        if self.function_mask {
            control |= FUNCTION_MASK;
        }
        let value = head & 0xFFFF | u32::from(control) << 16;
        if value != head {
            config.write32(at, value);
        }
    }
}
