//! Reading and clearing a VT-d unit's primary fault log (Intel VT-d spec 4.1 §7.2.1, §10.4.9
//! FSTS, §10.4.14 fault recording registers; reasons from Appendix A).
//!
//! Each fault recording register is 128 bits: the low qword holds the faulting page address
//! (bits 63:12; for an interrupt-remapping fault, the interrupt index in 63:48); the high
//! qword holds SID (79:64), the reason (103:96), T (126: 0 write, 1 read) and F (127: the
//! record is valid). Software clears F by writing 1 to it, which frees the record.

use super::registers::{fault_status, FSTS};
use super::VtdUnit;
use crate::iommu::{DmaFault, FaultLog, FaultReason, SourceId};

/// High qword of a fault record: F (bit 127).
const RECORD_FAULT: u64 = 1 << 63;
/// High qword: T (bit 126), 1 = read.
const RECORD_READ: u64 = 1 << 62;

/// The words for a VT-d fault reason.
pub fn fault_reason_text(code: u8) -> &'static str {
    match code {
        0x1 => "the bus has no root entry (no device on it is assigned)",
        0x2 => "the device has no context entry (it is not assigned)",
        0x3 => "the device's context entry is invalid (translation type or address width)",
        0x4 => "the address is beyond the unit's address width",
        0x5 => "the page is not writable",
        0x6 => "the page is not readable",
        0x7 => "a second-level table entry could not be read",
        0x8 => "the root table could not be read",
        0x9 => "the context table could not be read",
        0xA => "a root entry has reserved bits set",
        0xB => "a context entry has reserved bits set",
        0xC => "a second-level table entry has reserved bits set",
        0xD => "the context entry's translation type blocks the request",
        0xE => "the address falls in the interrupt range",
        0x20 => "the interrupt request has reserved bits set",
        0x21 => "the interrupt index is beyond the remapping table",
        0x22 => "the interrupt's remapping entry is not present",
        0x23 => "the interrupt remapping table could not be read",
        0x24 => "the interrupt's remapping entry has reserved bits set",
        0x25 => "a compatibility-format interrupt was blocked",
        0x26 => "the interrupt came from a device its entry does not name",
        _ => "unknown reason",
    }
}

/// A fault from the two qwords of a recording register.
fn decode(low: u64, high: u64) -> DmaFault {
    let reason = FaultReason::VtD((high >> 32) as u8);
    let address = if reason.is_interrupt() {
        low >> 48
    } else {
        low & !0xfff
    };
    DmaFault {
        source: SourceId::from_requester_id(high as u16),
        address,
        write: high & RECORD_READ == 0,
        reason,
    }
}

impl<R: super::RegisterAccess> VtdUnit<R> {
    /// Takes every recorded fault: from the record FSTS.FRI names, each record with F set, in
    /// order round the log, clearing F as it goes (at most CAP.NFR + 1 records, so a unit that
    /// keeps recording cannot keep this loop going); then clears FSTS.PFO.
    pub fn take_faults(&mut self) -> FaultLog {
        let status = self.regs.read32(FSTS);
        let mut log = FaultLog {
            overflowed: status & fault_status::PFO != 0,
            ..FaultLog::default()
        };
        if status & fault_status::PPF != 0 {
            let records = self.caps.fault_records();
            let first = (status >> fault_status::FRI_SHIFT) & 0xff;
            for step in 0..records {
                let index = (first + step) % records;
                // FRO ≤ 1023 × 16 and index < 256: far below u32::MAX.
                let offset = self.caps.fault_recording_offset() + index * 16;
                let high = self.regs.read64(offset + 8);
                if high & RECORD_FAULT == 0 {
                    break;
                }
                let low = self.regs.read64(offset);
                self.regs.write64(offset + 8, RECORD_FAULT);
                log.faults.push(decode(low, high));
            }
        }
        if log.overflowed {
            self.regs.write32(FSTS, fault_status::PFO);
        }
        log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decode_into_faults() {
        // A read of 0x1234_5678 by 00:03.0, reason 0x6.
        let high = RECORD_FAULT | RECORD_READ | 0x06 << 32 | 0x0018;
        let fault = decode(0x1234_5678, high);
        assert_eq!(
            fault,
            DmaFault {
                source: SourceId {
                    bus: 0,
                    devfn: 0x18
                },
                address: 0x1234_5000,
                write: false,
                reason: FaultReason::VtD(6),
            }
        );
        // An interrupt-remapping fault: the index in 63:48.
        let fault = decode(0x0007_0000_0000_0000, RECORD_FAULT | 0x26 << 32 | 0x0300);
        assert_eq!(fault.address, 7);
        assert!(fault.reason.is_interrupt());
        assert_eq!(fault.source, SourceId { bus: 3, devfn: 0 });
        assert_eq!(
            fault_reason_text(0x2),
            "the device has no context entry (it is not assigned)"
        );
        assert_eq!(fault_reason_text(0xff), "unknown reason");
    }
}
