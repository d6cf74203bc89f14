//! The guest's PCI host bridge: bus 0 with a host bridge function at device 0 and the
//! partition's passed-through functions at devices 1, 2, … (function 0 each), reached by
//! ECAM (PCIe Base 6.0 §7.2.2) and by configuration mechanism #1 (PCI Local Bus 3.0
//! §3.2.2.3.2).
//!
//! Windows: [`ECAM`] (1 MiB: bus 0 only, 32 devices × 8 functions × 4 KiB; the offset is
//! device << 15 | function << 12 | register), [`CONFIG_ADDRESS`] (0xCF8) and [`CONFIG_DATA`]
//! (0xCFC–0xCFF). CONFIG_ADDRESS behaves exactly as in [`super::super::pci_absent`]: only a
//! dword access at its offset 0 is the register. Mechanism #1 reaches registers 0–0xFF of
//! bus 0, with the enable bit set; anything else reads all ones.
//!
//! Access rules, the same through both paths:
//! - 1, 2 and 4 bytes inside one dword are served, on the byte lanes of their offset (a
//!   PCIe configuration request carries one dword with byte enables, §2.2.7).
//! - An access that crosses a dword reads all ones and its write is dropped: one request
//!   cannot carry it.
//! - An 8-byte ECAM read at an 8-byte aligned offset is split into two dword reads (the low
//!   dword first); an 8-byte write is dropped, since a configuration write is one dword and
//!   splitting it could apply half of a change. Other sizes read all ones, writes dropped.
//! - Absent devices and functions read all ones and ignore writes (a master abort).

use alloc::vec::Vec;

use super::error::PassthroughError;
use super::function::{FunctionChange, PassthroughFunction};
use super::mapping::BarMapping;
use super::message::InterruptRoute;
use crate::devices::device::{Device, Effect, Register};
use crate::devices::pci_absent::ADDRESS_WRITABLE;

/// The ECAM window of bus 0.
pub const ECAM: u8 = 0;
/// CONFIG_ADDRESS (0xCF8, 4 bytes).
pub const CONFIG_ADDRESS: u8 = 1;
/// CONFIG_DATA (0xCFC, 4 bytes).
pub const CONFIG_DATA: u8 = 2;
/// Bytes of the ECAM window: one bus.
pub const ECAM_SIZE: u64 = 1 << 20;
/// Device numbers on a bus (PCI 3.0 §3.2.2.3.2), the first taken by the host bridge.
const DEVICES: usize = 32;

/// The host bridge function's identity: Red Hat's "QEMU PCIe host bridge" (1b36:0008),
/// which Linux binds nothing to and treats as a plain host bridge; class 06/00/00.
const HOST_BRIDGE_ID: u32 = 0x0008_1B36;
const HOST_BRIDGE_CLASS_REVISION: u32 = 0x0600_0000;

/// A function's BAR mappings, as they now stand (the payload of [`Effect::PciMappings`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciMappings {
    /// The function's guest device number on bus 0 (1..=31).
    pub device: u8,
    /// Every piece mapped or trapped now; what was there before and is not listed goes.
    pub mappings: Vec<BarMapping>,
}

/// The guest's PCI host bridge and bus 0.
pub struct VirtualHostBridge {
    /// CONFIG_ADDRESS as the guest wrote it (reserved bits 0).
    address: u32,
    /// Guest device `n` is `functions[n - 1]`.
    functions: Vec<PassthroughFunction>,
}

/// What answers at a device and function number.
enum Slot {
    HostBridge,
    Function(usize),
    Absent,
}

impl VirtualHostBridge {
    /// The bus with `functions` at devices 1, 2, … in order; no functions is an empty bus
    /// with only the host bridge.
    pub fn new(functions: Vec<PassthroughFunction>) -> Result<VirtualHostBridge, PassthroughError> {
        if functions.len() >= DEVICES {
            return Err(PassthroughError::TooManyFunctions(functions.len()));
        }
        Ok(VirtualHostBridge {
            address: 0,
            functions,
        })
    }

    /// The function at guest device `device`.
    pub fn function(&self, device: u8) -> Option<&PassthroughFunction> {
        self.functions.get(usize::from(device).checked_sub(1)?)
    }

    /// The function at guest device `device`, for the hypervisor to program its messages.
    pub fn function_mut(&mut self, device: u8) -> Option<&mut PassthroughFunction> {
        self.functions.get_mut(usize::from(device).checked_sub(1)?)
    }

    /// Every function's mappings now (for the firmware after a reset or a restore).
    pub fn mappings(&self) -> Vec<PciMappings> {
        (1u8..)
            .zip(&self.functions)
            .map(|(device, f)| PciMappings {
                device,
                mappings: f.mappings(),
            })
            .collect()
    }

    /// A guest read of `size` bytes at `guest_physical`, if a function's trapped MSI-X
    /// window holds it (an MMIO exit outside every registered window lands here).
    pub fn trapped_read(&mut self, guest_physical: u64, size: u8) -> Option<u64> {
        self.functions
            .iter_mut()
            .find_map(|f| f.trapped_read(guest_physical, size))
    }

    /// A guest write to a trapped MSI-X window: `None` if no function's window holds
    /// `guest_physical`, else the effect ([`Effect::PciInterrupts`] when a route changed).
    pub fn trapped_write(&mut self, guest_physical: u64, size: u8, value: u64) -> Option<Effect> {
        (1u8..).zip(&mut self.functions).find_map(|(device, f)| {
            let routes = f.trapped_write(guest_physical, size, value)?;
            Some(routes_effect(device, routes))
        })
    }

    fn slot(&self, device: u8, function: u8) -> Slot {
        match (device, function) {
            (0, 0) => Slot::HostBridge,
            (1.., 0) if usize::from(device) <= self.functions.len() => {
                Slot::Function(usize::from(device) - 1)
            }
            _ => Slot::Absent,
        }
    }

    fn read_dword(&mut self, device: u8, function: u8, register: u16) -> u32 {
        match self.slot(device, function) {
            Slot::HostBridge => match register {
                0x00 => HOST_BRIDGE_ID,
                0x08 => HOST_BRIDGE_CLASS_REVISION,
                _ => 0,
            },
            Slot::Function(n) => self.functions[n].read(register),
            Slot::Absent => u32::MAX,
        }
    }

    /// A read of `size` bytes at byte `register` of a function (see the module note).
    fn read_config(&mut self, device: u8, function: u8, register: u16, size: u8) -> u64 {
        let Some(lane) = lane(register, size) else {
            return all_ones(size);
        };
        let dword = self.read_dword(device, function, register & !3);
        u64::from(dword >> (8 * lane)) & all_ones(size)
    }

    /// A write of `size` bytes at byte `register` of a function (see the module note).
    fn write_config(
        &mut self,
        device: u8,
        function: u8,
        register: u16,
        size: u8,
        value: u64,
    ) -> Effect {
        let (Some(lane), Slot::Function(n)) = (lane(register, size), self.slot(device, function))
        else {
            return Effect::None;
        };
        let byte_enables = ((1u8 << size) - 1) << lane;
        let value = (value as u32) << (8 * lane);
        match self.functions[n].write(register & !3, value, byte_enables) {
            FunctionChange::None => Effect::None,
            FunctionChange::Mappings(mappings) => {
                Effect::PciMappings(PciMappings { device, mappings })
            }
            FunctionChange::Routes(routes) => routes_effect(device, routes),
        }
    }

    /// Device, function and register of an ECAM offset, if it is inside the window.
    fn ecam(offset: u64) -> Option<(u8, u8, u16)> {
        (offset < ECAM_SIZE).then_some((
            (offset >> 15) as u8 & 31,
            (offset >> 12) as u8 & 7,
            offset as u16 & 0xFFF,
        ))
    }

    /// Device, function and register CONFIG_DATA's byte `lane` reaches, if CONFIG_ADDRESS
    /// is enabled and names bus 0.
    fn mechanism_one(&self, lane: u64) -> Option<(u8, u8, u16)> {
        let address = self.address;
        if address >> 31 == 0 || address >> 16 & 0xFF != 0 || lane >= 4 {
            return None;
        }
        Some((
            (address >> 11) as u8 & 31,
            (address >> 8) as u8 & 7,
            (address & 0xFC) as u16 + lane as u16,
        ))
    }
}

/// The byte lane an access of `size` at byte `register` starts on, if it is 1, 2 or 4 bytes
/// inside one dword.
fn lane(register: u16, size: u8) -> Option<u16> {
    let lane = register & 3;
    (matches!(size, 1 | 2 | 4) && lane + u16::from(size) <= 4).then_some(lane)
}

/// All ones of an access of `size` bytes (32 bits for sizes the bus does not define).
fn all_ones(size: u8) -> u64 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        8 => u64::MAX,
        _ => 0xFFFF_FFFF,
    }
}

fn routes_effect(device: u8, routes: Vec<super::message::MessageRoute>) -> Effect {
    if routes.is_empty() {
        return Effect::None;
    }
    Effect::PciInterrupts(
        routes
            .into_iter()
            .map(|route| InterruptRoute { device, route })
            .collect(),
    )
}

impl Device for VirtualHostBridge {
    fn read(&mut self, at: Register, _now: u64) -> u64 {
        match (at.window, at.offset, at.size) {
            (ECAM, offset, 8) => match Self::ecam(offset) {
                Some((device, function, register)) if offset.is_multiple_of(8) => {
                    let low = self.read_config(device, function, register, 4);
                    let high = self.read_config(device, function, register + 4, 4);
                    low | high << 32
                }
                _ => u64::MAX,
            },
            (ECAM, offset, size) => match Self::ecam(offset) {
                Some((device, function, register)) => {
                    self.read_config(device, function, register, size)
                }
                None => all_ones(size),
            },
            (CONFIG_ADDRESS, 0, 4) => u64::from(self.address),
            (CONFIG_DATA, lane, size) => match self.mechanism_one(lane) {
                Some((device, function, register)) => {
                    self.read_config(device, function, register, size)
                }
                None => all_ones(size),
            },
            (_, _, size) => all_ones(size),
        }
    }

    fn write(&mut self, at: Register, value: u64, _now: u64) -> Effect {
        match (at.window, at.offset, at.size) {
            (ECAM, _, 8) => Effect::None,
            (ECAM, offset, size) => match Self::ecam(offset) {
                Some((device, function, register)) => {
                    self.write_config(device, function, register, size, value)
                }
                None => Effect::None,
            },
            (CONFIG_ADDRESS, 0, 4) => {
                self.address = value as u32 & ADDRESS_WRITABLE;
                Effect::None
            }
            (CONFIG_DATA, lane, size) => match self.mechanism_one(lane) {
                Some((device, function, register)) => {
                    self.write_config(device, function, register, size, value)
                }
                None => Effect::None,
            },
            _ => Effect::None,
        }
    }
}
