//! The messages the I/O APIC sends to the local APICs (82093AA datasheet §3.2.4, the
//! redirection entry's fields): apart from the I/O APIC's registers, so that what carries them
//! (`devices::device::Effect`) needs nothing else of it.

/// A redirection entry's delivery mode (bits 8–10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    /// 0b000: deliver to all destination processors.
    Fixed,
    /// 0b001: deliver to the lowest-priority destination processor.
    LowestPriority,
    /// 0b010: system management interrupt.
    Smi,
    /// 0b100: non-maskable interrupt.
    Nmi,
    /// 0b101: INIT.
    Init,
    /// 0b111: external (8259-style) interrupt.
    ExtInt,
    /// 0b011 or 0b110, reserved encodings, passed on as they are.
    Reserved(u8),
}

impl DeliveryMode {
    pub(super) fn from_bits(bits: u8) -> DeliveryMode {
        match bits & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            7 => DeliveryMode::ExtInt,
            other => DeliveryMode::Reserved(other),
        }
    }
}

/// An interrupt message the I/O APIC sends to the local APICs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApicDelivery {
    /// Interrupt vector (bits 0–7).
    pub vector: u8,
    /// Delivery mode (bits 8–10).
    pub delivery_mode: DeliveryMode,
    /// Logical destination mode (bit 11) rather than physical.
    pub logical: bool,
    /// Destination APIC ID or logical set (bits 56–63).
    pub destination: u8,
    /// The pin is level-triggered (the receiver must EOI it back).
    pub level_triggered: bool,
    /// The input pin that caused it.
    pub pin: u8,
}
