//! The MSI messages a guest programs into a passed-through function (MSI capability or MSI-X
//! table entry), decoded as the local APICs would take them (Intel SDM vol. 3A §11.11.1
//! address, §11.11.2 data), and the routes the hypervisor must follow when one changes.
//!
//! A guest's message is never written to the device: the hypervisor translates a
//! [`GuestMsi`] into a host message of its own (its vector, its CPU), so the decode refuses
//! what the hypervisor will not emulate instead of passing it through.

use core::fmt;

/// The window every MSI address must fall in (SDM §11.11.1: bits 31:20 are 0FEH).
const INTERRUPT_WINDOW: core::ops::RangeInclusive<u64> = 0xFEE0_0000..=0xFEEF_FFFF;

/// An MSI message as written: address and data, not yet checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsiMessage {
    /// The 64-bit message address (the upper dword is 0 for a 32-bit capability).
    pub address: u64,
    /// The message data (the low 16 bits are the SDM's data register; the rest must be 0).
    pub data: u32,
}

/// Which local APICs a message's destination field names (SDM §11.11.1, bit 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestinationMode {
    /// The destination is an APIC ID.
    Physical,
    /// The destination is a logical APIC ID (matched against LDR/DFR).
    Logical,
}

/// How the message is delivered (SDM §11.11.2, bits 10:8): the two a device may use to
/// interrupt a guest's driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiDelivery {
    /// 000b: to every destination processor.
    Fixed,
    /// 001b: to the lowest-priority processor among the destinations.
    LowestPriority,
}

/// The message's trigger mode (SDM §11.11.2, bit 15; bit 14 is the level for level mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge-triggered: what devices send.
    Edge,
    /// Level-triggered, with the asserted (bit 14 set) or deasserted level.
    Level { asserted: bool },
}

/// A checked guest MSI: which vCPU(s), which vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestMsi {
    /// Destination APIC ID, physical or logical by `mode` (address bits 19:12).
    pub destination: u8,
    /// Physical or logical destination (address bit 2).
    pub mode: DestinationMode,
    /// Redirection hint (address bit 3): with logical mode, lowest-priority among the
    /// destinations.
    pub redirection_hint: bool,
    /// The vector, 16..=255 (data bits 7:0).
    pub vector: u8,
    /// Delivery mode (data bits 10:8).
    pub delivery: MsiDelivery,
    /// Trigger mode and level (data bits 15 and 14).
    pub trigger: Trigger,
}

/// Why a guest's message is not one the hypervisor delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestMsiError {
    /// The address is not in 0xFEE0_0000..=0xFEEF_FFFF, so it is no interrupt message at all
    /// (a DMA write the device would make to guest memory).
    AddressOutsideInterruptWindow(u64),
    /// Vectors 0–15 are reserved for exceptions (SDM §11.5.2 calls them illegal).
    ReservedVector(u8),
    /// SMI, NMI, INIT, ExtINT or a reserved mode: not for a device to send a guest.
    DeliveryMode(u8),
    /// Data bits 31:16 are reserved (the extended message data only a PCIe 6 capability with
    /// extended data enabled may carry).
    ReservedDataBits(u32),
}

impl fmt::Display for GuestMsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestMsiError::AddressOutsideInterruptWindow(address) => write!(
                f,
                "MSI address {address:#x} is outside the interrupt window 0xfee00000..0xfeefffff"
            ),
            GuestMsiError::ReservedVector(vector) => {
                write!(f, "MSI vector {vector} is reserved (vectors start at 16)")
            }
            GuestMsiError::DeliveryMode(mode) => write!(
                f,
                "MSI delivery mode {mode:#05b} is not fixed (000) or lowest priority (001)"
            ),
            GuestMsiError::ReservedDataBits(data) => {
                write!(f, "MSI data {data:#x} sets reserved bits 31:16")
            }
        }
    }
}

impl GuestMsi {
    /// The message `message` decoded, or why the hypervisor will not deliver it.
    pub fn decode(message: MsiMessage) -> Result<GuestMsi, GuestMsiError> {
        let address = message.address;
        if !INTERRUPT_WINDOW.contains(&address) {
            return Err(GuestMsiError::AddressOutsideInterruptWindow(address));
        }
        let data = message.data;
        if data >> 16 != 0 {
            return Err(GuestMsiError::ReservedDataBits(data));
        }
        let vector = data as u8;
        if vector < 16 {
            return Err(GuestMsiError::ReservedVector(vector));
        }
        let delivery = match data >> 8 & 0b111 {
            0b000 => MsiDelivery::Fixed,
            0b001 => MsiDelivery::LowestPriority,
            other => return Err(GuestMsiError::DeliveryMode(other as u8)),
        };
        let trigger = if data & 1 << 15 == 0 {
            Trigger::Edge
        } else {
            Trigger::Level {
                asserted: data & 1 << 14 != 0,
            }
        };
        Ok(GuestMsi {
            destination: (address >> 12) as u8,
            mode: if address & 1 << 2 == 0 {
                DestinationMode::Physical
            } else {
                DestinationMode::Logical
            },
            redirection_hint: address & 1 << 3 != 0,
            vector,
            delivery,
            trigger,
        })
    }
}

/// Which of a function's interrupt messages a route is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum InterruptSource {
    /// The MSI capability's one message (the model offers a single vector).
    Msi,
    /// MSI-X table entry `n`.
    MsixEntry(u16),
}

/// A function's message as it now stands: where the hypervisor must deliver the physical
/// interrupt behind `source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageRoute {
    /// The message.
    pub source: InterruptSource,
    /// The guest interrupt to deliver; `None` when nothing is to be delivered: MSI or MSI-X
    /// disabled, the vector or the function masked, or a message [`GuestMsi::decode`]
    /// refuses (the hypervisor then keeps the physical message masked).
    pub target: Option<GuestMsi>,
}

/// A route of a function on the virtual bus: the hypervisor reprograms the physical message
/// of `source` (`PassthroughFunction::program_msi`/`program_msix`) to reach `target`, or masks
/// it when `target` is `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptRoute {
    /// The function's guest device number on bus 0 (1..=31).
    pub device: u8,
    /// The message and its target.
    pub route: MessageRoute,
}

/// A message the hypervisor writes to the physical function, in the host's terms (its own
/// vector and APIC, or an interrupt-remapping handle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostMessage {
    /// Message address.
    pub address: u64,
    /// Message data (low 16 bits for MSI).
    pub data: u32,
}
