//! Interrupt remapping (Intel VT-d spec 4.1 §5.1, §9.9–§9.10): the remapped-format interrupt
//! table entry (IRTE), the remappable MSI address/data a device is programmed with, and the
//! unit's interrupt-remapping table and enable.
//!
//! Order: write the table's entries, [`VtdUnit::set_interrupt_remapping_table`],
//! [`VtdUnit::invalidate_interrupt_entries`], then [`VtdUnit::enable_interrupt_remapping`].
//! The enable leaves GCMD.CFI clear, so a device still sending a compatibility-format
//! (unremapped) MSI is blocked rather than delivered wherever it points. (QEMU 7.2 delivers
//! compatibility-format interrupts whatever CFI says, and records no interrupt-remapping
//! faults: it only logs them.)

use core::fmt;

use super::registers::{global, IRTA};
use super::{VtdError, VtdUnit};
use crate::iommu::SourceId;
use crate::memory::PAGE_SIZE;
use crate::slat::ADDRESS_MASK;

/// How the local APICs are addressed: 8-bit xAPIC IDs (the destination in IRTE bits 47:40)
/// or 32-bit x2APIC IDs (bits 63:32, needs ECAP.EIM and IRTA.EIME).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicMode {
    XApic,
    X2Apic,
}

/// IRTE delivery modes (bits 7:5), as in the local APIC's ICR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed = 0,
    LowestPriority = 1,
    Smi = 2,
    Nmi = 4,
    Init = 5,
    ExtInt = 7,
}

/// One remapped interrupt: where the interrupt from `source` with this entry's handle goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptRemapEntry {
    /// The vector delivered.
    pub vector: u8,
    /// The destination APIC ID (physical mode) or logical destination.
    pub destination: u32,
    /// Logical destination mode (DM, bit 2); else physical.
    pub logical: bool,
    /// Redirection hint (RH, bit 3): lowest-priority among the destinations.
    pub redirection_hint: bool,
    /// Level-triggered (TM, bit 4); else edge.
    pub level_triggered: bool,
    pub delivery: DeliveryMode,
    /// The only requester allowed to use this entry: SVT = 01, SQ = 00, SID = its requester
    /// ID, so another device that guesses the handle is refused (fault 0x26).
    pub source: SourceId,
}

/// Why an IRTE could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrteError {
    /// An xAPIC destination above 255.
    DestinationTooLarge { destination: u32 },
}

impl fmt::Display for IrteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IrteError::DestinationTooLarge { destination } => write!(
                f,
                "cannot remap an interrupt to APIC ID {destination}: in xAPIC mode the \
                 destination is 8 bits (x2APIC remapping needs ECAP.EIM)"
            ),
        }
    }
}

/// IRTE low qword: present (bit 0).
const IRTE_PRESENT: u64 = 1 << 0;
/// IRTE high qword: SVT = 01 "verify the requester ID against SID and SQ" (bits 83:82).
const SVT_REQUESTER_ID: u64 = 0b01 << 18;

impl InterruptRemapEntry {
    /// The 128-bit entry, `[low, high]`, present, FPD clear (faults are recorded), IM = 0
    /// (remapped, not posted).
    pub fn encode(&self, mode: ApicMode) -> Result<[u64; 2], IrteError> {
        let destination = match mode {
            ApicMode::XApic => {
                let id =
                    u8::try_from(self.destination).map_err(|_| IrteError::DestinationTooLarge {
                        destination: self.destination,
                    })?;
                u64::from(id) << 8
            }
            ApicMode::X2Apic => u64::from(self.destination),
        };
        let mut low = IRTE_PRESENT
            | (self.delivery as u64) << 5
            | u64::from(self.vector) << 16
            | destination << 32;
        for (on, bit) in [
            (self.logical, 1 << 2),
            (self.redirection_hint, 1 << 3),
            (self.level_triggered, 1 << 4),
        ] {
            if on {
                low |= bit;
            }
        }
        // SID 79:64, SQ 81:80 = 00 (all 16 bits compared), SVT 83:82.
        let high = u64::from(self.source.requester_id()) | SVT_REQUESTER_ID;
        Ok([low, high])
    }
}

/// The address and data a device's MSI (or MSI-X entry) is programmed with to use the IRTE at
/// `handle` (§5.1.2.2): address 0xFEE0_0000 with the remappable format (bit 4), the handle's
/// bits 14:0 in 19:5 and bit 15 in 2; with `subhandle`, SHV (bit 3) and the subhandle as data
/// (the entry used is handle + subhandle, for multi-vector MSI).
pub fn remappable_msi(handle: u16, subhandle: Option<u16>) -> (u32, u32) {
    let mut address = 0xFEE0_0000 | 1 << 4 | u32::from(handle & 0x7fff) << 5;
    address |= u32::from(handle >> 15) << 2;
    if subhandle.is_some() {
        address |= 1 << 3;
    }
    (address, u32::from(subhandle.unwrap_or(0)))
}

impl<R: super::RegisterAccess> VtdUnit<R> {
    /// Points the unit at the interrupt remapping table at `table` (4 KiB aligned) of
    /// 2^`entries_log2` entries (1..=16): IRTA, then GCMD.SIRTP, waiting for GSTS.IRTPS.
    pub fn set_interrupt_remapping_table(
        &mut self,
        table: u64,
        entries_log2: u8,
        mode: ApicMode,
    ) -> Result<(), VtdError> {
        if !self.caps.interrupt_remapping() {
            return Err(VtdError::Unsupported {
                feature: "interrupt remapping (ECAP.IR)",
            });
        }
        if mode == ApicMode::X2Apic && !self.caps.extended_interrupt_mode() {
            return Err(VtdError::Unsupported {
                feature: "x2APIC interrupt destinations (ECAP.EIM)",
            });
        }
        if !table.is_multiple_of(PAGE_SIZE) || table & !ADDRESS_MASK != 0 {
            return Err(VtdError::BadAddress {
                what: "interrupt remapping table",
                address: table,
            });
        }
        if !(1..=16).contains(&entries_log2) {
            return Err(VtdError::BadAddress {
                what: "interrupt remapping table size (2 to 65536 entries)",
                address: u64::from(entries_log2),
            });
        }
        // S (bits 3:0): 2^(S + 1) entries; EIME (bit 11): x2APIC destinations.
        let eime = if mode == ApicMode::X2Apic { 1 << 11 } else { 0 };
        self.regs
            .write64(IRTA, table | eime | u64::from(entries_log2 - 1));
        self.command(global::SIRTP, true, global::SIRTP)
    }

    /// Turns interrupt remapping on (GCMD.IRE, waiting for GSTS.IRES) with
    /// compatibility-format interrupts blocked (CFI cleared if it was set). Needs the
    /// invalidation queue enabled, the only way to invalidate the interrupt entry cache.
    pub fn enable_interrupt_remapping(&mut self) -> Result<(), VtdError> {
        if !self.caps.interrupt_remapping() {
            return Err(VtdError::Unsupported {
                feature: "interrupt remapping (ECAP.IR)",
            });
        }
        if self.queue.is_none() {
            return Err(VtdError::Unsupported {
                feature: "the invalidation queue (needed before interrupt remapping)",
            });
        }
        // One GCMD change per write (§10.4.4): clear CFI first, and only if it is set.
        if self.regs.read32(super::registers::GSTS) & global::CFI != 0 {
            self.command(global::CFI, false, global::CFI)?;
        }
        self.command(global::IRE, true, global::IRE)
    }

    /// Turns interrupt remapping off.
    pub fn disable_interrupt_remapping(&mut self) -> Result<(), VtdError> {
        self.command(global::IRE, false, global::IRE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn entry() -> InterruptRemapEntry {
        InterruptRemapEntry {
            vector: 0x41,
            destination: 3,
            logical: false,
            redirection_hint: false,
            level_triggered: false,
            delivery: DeliveryMode::Fixed,
            source: SourceId {
                bus: 0,
                devfn: 0x18,
            },
        }
    }

    #[test]
    fn an_xapic_irte_is_laid_out_as_section_9_10_says() {
        let [low, high] = entry().encode(ApicMode::XApic).unwrap();
        // P, vector 0x41 in 23:16, APIC ID 3 in 47:40.
        assert_eq!(low, 0x0000_0300_0041_0001);
        // SID 0x0018, SQ 00, SVT 01.
        assert_eq!(high, 0x4_0018);
        let lowest = InterruptRemapEntry {
            logical: true,
            redirection_hint: true,
            level_triggered: true,
            delivery: DeliveryMode::LowestPriority,
            ..entry()
        };
        let [low, _] = lowest.encode(ApicMode::XApic).unwrap();
        assert_eq!(low & 0xff, 0b0011_1101);
        // Reserved bits QEMU 7.2 checks: 14:12, 31:24, 127:84; and IM (15) stays 0.
        assert_eq!(low & 0xff00_f000, 0);
        let nmi = InterruptRemapEntry {
            delivery: DeliveryMode::Nmi,
            ..entry()
        };
        assert_eq!((nmi.encode(ApicMode::XApic).unwrap()[0] >> 5) & 7, 4);
    }

    #[test]
    fn destinations_follow_the_apic_mode() {
        let far = InterruptRemapEntry {
            destination: 0x1_0002,
            ..entry()
        };
        let err = far.encode(ApicMode::XApic).unwrap_err();
        assert_eq!(
            err,
            IrteError::DestinationTooLarge {
                destination: 0x1_0002
            }
        );
        assert!(err.to_string().contains("xAPIC mode"));
        let [low, high] = far.encode(ApicMode::X2Apic).unwrap();
        assert_eq!(low >> 32, 0x1_0002);
        assert_eq!(high >> 18, 0b01);
    }

    #[test]
    fn remappable_msi_encoding() {
        assert_eq!(remappable_msi(0, None), (0xFEE0_0010, 0));
        assert_eq!(remappable_msi(5, None), (0xFEE0_00B0, 0));
        // Handle bit 15 goes to address bit 2; SHV to bit 3 with the subhandle as data.
        assert_eq!(remappable_msi(0x8001, Some(3)), (0xFEE0_003C, 3));
        assert_eq!(remappable_msi(0x7fff, None), (0xFEEF_FFF0, 0));
    }
}
