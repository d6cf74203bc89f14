//! Decoding the interrupt command register into an IPI for the caller to deliver (Intel SDM
//! vol. 3A §11.6.1, Figure 11-12; x2APIC form §11.12.9).

/// How an IPI is delivered (ICR bits 8–10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiDelivery {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    /// INIT, except the de-assert form below.
    Init,
    /// INIT with level = 0 and trigger = level: the legacy "INIT level de-assert" that only
    /// resynchronised arbitration IDs (Linux still sends it after INIT, in both modes). The
    /// caller ignores it.
    InitDeassert,
    /// Start-up IPI; the vector is the trampoline page number.
    Startup,
    /// Encodings 3 and 7.
    Reserved,
}

/// The destination shorthand (ICR bits 18–19).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shorthand {
    /// Use `destination` and `logical`.
    None,
    SelfOnly,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// An IPI the guest sent by writing the ICR (or the x2APIC SELF IPI register).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipi {
    pub vector: u8,
    pub delivery: IpiDelivery,
    pub shorthand: Shorthand,
    /// Destination mode: logical (true) or physical.
    pub logical: bool,
    /// xAPIC: the 8-bit destination field (ICR bits 56–63); x2APIC: the 32-bit one.
    pub destination: u32,
    /// Level bit (14): assert.
    pub level: bool,
    /// Trigger mode bit (15): level-triggered.
    pub trigger_level: bool,
}

/// ICR low bits the guest can write: vector, delivery mode, destination mode, level, trigger
/// mode, shorthand. Delivery status (12) is read-only and always reads idle.
pub(super) const ICR_LOW_MASK: u32 = 0x000C_CFFF;
/// xAPIC ICR high: only the destination field.
pub(super) const ICR_HIGH_XAPIC_MASK: u32 = 0xFF00_0000;

/// The IPI that writing `low` sends, given the destination already decoded from the high half.
pub(super) fn decode(low: u32, destination: u32) -> Ipi {
    let level = low & (1 << 14) != 0;
    let trigger_level = low & (1 << 15) != 0;
    let delivery = match (low >> 8) & 7 {
        0 => IpiDelivery::Fixed,
        1 => IpiDelivery::LowestPriority,
        2 => IpiDelivery::Smi,
        4 => IpiDelivery::Nmi,
        5 if !level && trigger_level => IpiDelivery::InitDeassert,
        5 => IpiDelivery::Init,
        6 => IpiDelivery::Startup,
        _ => IpiDelivery::Reserved,
    };
    let shorthand = match (low >> 18) & 3 {
        0 => Shorthand::None,
        1 => Shorthand::SelfOnly,
        2 => Shorthand::AllIncludingSelf,
        _ => Shorthand::AllExcludingSelf,
    };
    Ipi {
        vector: low as u8,
        delivery,
        shorthand,
        logical: low & (1 << 11) != 0,
        destination,
        level,
        trigger_level,
    }
}

/// The IPI a write to the x2APIC SELF IPI register sends: fixed, edge, to this APIC.
pub(super) fn self_ipi(vector: u8) -> Ipi {
    Ipi {
        vector,
        delivery: IpiDelivery::Fixed,
        shorthand: Shorthand::SelfOnly,
        logical: false,
        destination: 0,
        level: true,
        trigger_level: false,
    }
}

/// Whether the IPI carries a vector that must be 16 or above (fixed and lowest priority).
pub(super) fn needs_legal_vector(ipi: &Ipi) -> bool {
    matches!(
        ipi.delivery,
        IpiDelivery::Fixed | IpiDelivery::LowestPriority
    )
}
