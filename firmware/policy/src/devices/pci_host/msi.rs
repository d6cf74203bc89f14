//! The MSI capability as the guest sees it (PCI Local Bus 3.0 §6.8.1): fully virtual. The
//! guest's enable, address, data and mask are kept here and never reach the device; the
//! hypervisor programs the physical capability with a host message of its own
//! ([`MsiCapability::program`]).
//!
//! One vector is offered: Multiple Message Capable reads 0 and Multiple Message Enable stays
//! 0 whatever is written (§6.8.1.3), so a guest never expects a block of vectors the
//! hypervisor would have to find contiguous room for. The 64-bit address and per-vector
//! masking flags are the physical capability's, since they fix the structure's layout.

use super::error::ProgramError;
use super::message::{GuestMsi, HostMessage, MsiMessage};
use super::physical::FunctionConfig;

/// Message control bits (§6.8.1.3).
const ENABLE: u16 = 1 << 0;
const MULTIPLE_MESSAGE_ENABLE: u16 = 0b111 << 4;
const WIDE: u16 = 1 << 7;
const PER_VECTOR_MASK: u16 = 1 << 8;

/// The guest's MSI capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiCapability {
    /// Offset in configuration space.
    offset: u8,
    /// 64-bit Address Capable.
    wide: bool,
    /// Per-vector Masking Capable.
    per_vector_mask: bool,
    enabled: bool,
    address: u64,
    data: u16,
    /// Mask bit of the one vector.
    masked: bool,
}

/// The registers of the structure, by their offset from its start (which depend on the
/// two flags, §6.8.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MsiRegister {
    Control,
    AddressLow,
    AddressHigh,
    Data,
    Mask,
    Pending,
    None,
}

impl MsiCapability {
    /// The capability at `offset` of `config`, read only (the caller disables the device's
    /// MSI with [`MsiCapability::program`] and `None`, so both start disabled).
    pub fn new(config: &mut dyn FunctionConfig, offset: u8) -> MsiCapability {
        let control = (config.read32(u16::from(offset)) >> 16) as u16;
        MsiCapability {
            offset,
            wide: control & WIDE != 0,
            per_vector_mask: control & PER_VECTOR_MASK != 0,
            enabled: false,
            address: 0,
            data: 0,
            masked: false,
        }
    }

    fn register(&self, relative: u16) -> MsiRegister {
        match (relative, self.wide) {
            (0, _) => MsiRegister::Control,
            (4, _) => MsiRegister::AddressLow,
            (8, true) => MsiRegister::AddressHigh,
            (8, false) | (0xC, true) => MsiRegister::Data,
            (0xC, false) | (0x10, true) if self.per_vector_mask => MsiRegister::Mask,
            (0x10, false) | (0x14, true) if self.per_vector_mask => MsiRegister::Pending,
            _ => MsiRegister::None,
        }
    }

    /// The guest's read of the dword `relative` bytes into the structure (the header byte
    /// pair of dword 0 is the caller's).
    pub fn read(&self, relative: u16) -> u32 {
        match self.register(relative) {
            MsiRegister::Control => {
                let mut control = 0u16;
                if self.enabled {
                    control |= ENABLE;
                }
                if self.wide {
                    control |= WIDE;
                }
                if self.per_vector_mask {
                    control |= PER_VECTOR_MASK;
                }
                u32::from(control) << 16
            }
            MsiRegister::AddressLow => self.address as u32,
            MsiRegister::AddressHigh => (self.address >> 32) as u32,
            MsiRegister::Data => u32::from(self.data),
            MsiRegister::Mask => u32::from(self.masked),
            // The one vector's pending bit is the hypervisor's to track: it reads 0.
            MsiRegister::Pending | MsiRegister::None => 0,
        }
    }

    /// The guest's write of the dword `relative` bytes into the structure (already merged
    /// with what the guest reads, for a narrower write).
    pub fn write(&mut self, relative: u16, value: u32) {
        match self.register(relative) {
            MsiRegister::Control => self.enabled = (value >> 16) as u16 & ENABLE != 0,
            // Bits 1:0 of the address are reserved: the dword alignment of the message.
            MsiRegister::AddressLow => {
                self.address = self.address & !0xFFFF_FFFF | u64::from(value & !3)
            }
            MsiRegister::AddressHigh => {
                self.address = self.address & 0xFFFF_FFFF | u64::from(value) << 32
            }
            MsiRegister::Data => self.data = value as u16,
            MsiRegister::Mask => self.masked = value & 1 != 0,
            MsiRegister::Pending | MsiRegister::None => {}
        }
    }

    /// The guest's message and whether it is to be delivered (enabled, not masked).
    pub fn message(&self) -> (MsiMessage, bool) {
        let message = MsiMessage {
            address: self.address,
            data: u32::from(self.data),
        };
        (message, self.enabled && !self.masked)
    }

    /// Where the guest's message goes now: `None` when disabled, masked or refused.
    pub fn target(&self) -> Option<GuestMsi> {
        let (message, live) = self.message();
        if live {
            GuestMsi::decode(message).ok()
        } else {
            None
        }
    }

    /// Programs the physical capability with `host` and enables it (one vector), or
    /// disables it for `None`. The registers are written with MSI disabled, so the device
    /// never sends a half-written message.
    pub fn program(
        &self,
        config: &mut dyn FunctionConfig,
        host: Option<HostMessage>,
    ) -> Result<(), ProgramError> {
        let at = |relative: u16| u16::from(self.offset) + relative;
        if let Some(message) = host {
            if !self.wide && message.address >> 32 != 0 {
                return Err(ProgramError::AddressTooWide(message.address));
            }
            if message.data >> 16 != 0 {
                return Err(ProgramError::DataTooWide(message.data));
            }
        }
        let head = config.read32(at(0));
        let control = (head >> 16) as u16 & !(ENABLE | MULTIPLE_MESSAGE_ENABLE);
        config.write32(at(0), head & 0xFFFF | u32::from(control) << 16);
        let Some(message) = host else {
            return Ok(());
        };
        config.write32(at(4), message.address as u32);
        let data_at = if self.wide {
            config.write32(at(8), (message.address >> 32) as u32);
            0xC
        } else {
            8
        };
        config.write32(at(data_at), message.data);
        if self.per_vector_mask {
            config.write32(at(data_at + 4), 0);
        }
        config.write32(at(0), head & 0xFFFF | u32::from(control | ENABLE) << 16);
        Ok(())
    }
}
