//! The Multiple APIC Description Table, "APIC" (ACPI 6.5 §5.2.12).
//!
//! We keep what the firmware needs to find and start CPUs and route interrupts: the local
//! APIC address (with its type 5 override), processor local APICs (type 0) and x2APICs
//! (type 9), I/O APICs (type 1) and interrupt source overrides (type 2). Other types are
//! skipped by their length. A malformed structure ends the walk; what came before is kept.

use alloc::vec::Vec;

use super::bytes::{u16_at, u32_at, u64_at, u8_at};
use super::problem::AcpiProblem;
use super::sdt::{StructureHeader, Structures, SDT_HEADER_LENGTH};

/// Bytes before the first structure: header, local APIC address, flags.
pub const MADT_FIXED_LENGTH: usize = SDT_HEADER_LENGTH + 8;

/// A processor the MADT lists (type 0 or type 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MadtProcessor {
    /// ACPI processor UID (type 0: one byte; type 9: four).
    pub uid: u32,
    pub apic_id: u32,
    /// Listed as a type 9 (x2APIC) structure.
    pub x2apic: bool,
    /// Flags bit 0: usable now.
    pub enabled: bool,
    /// Flags bit 1 (MADT revision ≥ 5 only): may be enabled later at run time.
    pub online_capable: bool,
}

impl MadtProcessor {
    /// Whether this is a CPU that exists: enabled now or able to come online.
    pub fn present(&self) -> bool {
        self.enabled || self.online_capable
    }
}

/// An I/O APIC (type 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MadtIoApic {
    pub id: u8,
    pub address: u32,
    pub gsi_base: u32,
}

/// An interrupt source override (type 2): ISA IRQ `source` arrives at `gsi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptOverride {
    pub bus: u8,
    pub source: u8,
    pub gsi: u32,
    /// MPS INTI flags: polarity bits 0–1, trigger mode bits 2–3.
    pub flags: u16,
}

/// The decoded MADT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Madt {
    pub revision: u8,
    /// The local APIC's physical address (a type 5 override wins over the 32-bit field).
    pub local_apic_address: u64,
    /// Flags bit 0: dual 8259 PICs present (they must be masked).
    pub pc_at_compatible: bool,
    /// Processors in table order. APIC ID 0xFF (type 0) and 0xFFFFFFFF (type 9) are left
    /// out: they are placeholders, not CPUs.
    pub processors: Vec<MadtProcessor>,
    pub io_apics: Vec<MadtIoApic>,
    pub overrides: Vec<InterruptOverride>,
}

impl Madt {
    /// APIC IDs of present processors (enabled or online-capable), in table order.
    pub fn present_apic_ids(&self) -> Vec<u32> {
        self.processors
            .iter()
            .filter(|p| p.present())
            .map(|p| p.apic_id)
            .collect()
    }
}

/// Decode a checksummed MADT (at least [`MADT_FIXED_LENGTH`] bytes).
pub(crate) fn parse(table: &[u8], problems: &mut Vec<AcpiProblem>) -> Madt {
    let revision = u8_at(table, 8).unwrap_or(0);
    let flags = u32_at(table, SDT_HEADER_LENGTH + 4).unwrap_or(0);
    let mut madt = Madt {
        revision,
        local_apic_address: u64::from(u32_at(table, SDT_HEADER_LENGTH).unwrap_or(0)),
        pc_at_compatible: flags & 1 != 0,
        ..Madt::default()
    };
    let processor = |uid, apic_id, x2apic, flags: u32| MadtProcessor {
        uid,
        apic_id,
        x2apic,
        enabled: flags & 1 != 0,
        // Bit 1 was reserved before MADT revision 5 and may hold junk there.
        online_capable: revision >= 5 && flags & 2 != 0,
    };
    let mut walk = Structures::new(table, MADT_FIXED_LENGTH, StructureHeader::Byte, problems);
    while let Some(s) = walk.next() {
        let b = s.bytes;
        match s.kind {
            0 if walk.fits(&s, 8) => {
                let (uid, apic_id, flags) = (b[2], b[3], u32_at(b, 4).unwrap_or(0));
                if apic_id != 0xFF {
                    let p = processor(u32::from(uid), u32::from(apic_id), false, flags);
                    madt.processors.push(p);
                }
            }
            1 if walk.fits(&s, 12) => madt.io_apics.push(MadtIoApic {
                id: b[2],
                address: u32_at(b, 4).unwrap_or(0),
                gsi_base: u32_at(b, 8).unwrap_or(0),
            }),
            2 if walk.fits(&s, 10) => madt.overrides.push(InterruptOverride {
                bus: b[2],
                source: b[3],
                gsi: u32_at(b, 4).unwrap_or(0),
                flags: u16_at(b, 8).unwrap_or(0),
            }),
            5 if walk.fits(&s, 12) => {
                if let Some(address) = u64_at(b, 4) {
                    madt.local_apic_address = address;
                }
            }
            9 if walk.fits(&s, 16) => {
                let apic_id = u32_at(b, 4).unwrap_or(u32::MAX);
                let (flags, uid) = (u32_at(b, 8).unwrap_or(0), u32_at(b, 12).unwrap_or(0));
                if apic_id != u32::MAX {
                    madt.processors.push(processor(uid, apic_id, true, flags));
                }
            }
            _ => {} // another type, or a short one (the walk has ended)
        }
    }
    madt
}
