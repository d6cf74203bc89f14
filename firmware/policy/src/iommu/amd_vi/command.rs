//! AMD-Vi command-buffer commands and event-log entries (AMD IOMMU spec 48882 §2.4
//! "Commands", §2.5 "Event Logging"): 128-bit records with the opcode or event code in bits
//! 63:60 of the first qword.

use crate::iommu::{DmaFault, DomainId, FaultReason, SourceId};

const OPCODE_SHIFT: u32 = 60;
const COMPLETION_WAIT: u64 = 0x01;
const INVALIDATE_DEVTAB_ENTRY: u64 = 0x02;
const INVALIDATE_IOMMU_PAGES: u64 = 0x03;
const INVALIDATE_INTERRUPT_TABLE: u64 = 0x05;
const INVALIDATE_IOMMU_ALL: u64 = 0x08;

/// COMPLETION_WAIT with a store: once every earlier command has completed, the IOMMU writes
/// `data` to `address` (8-byte aligned; bits 51:3 are stored).
pub fn completion_wait(address: u64, data: u64) -> [u64; 2] {
    let store = 1 << 0;
    [
        (address & 0x000f_ffff_ffff_fff8) | store | COMPLETION_WAIT << OPCODE_SHIFT,
        data,
    ]
}

/// INVALIDATE_DEVTAB_ENTRY: the IOMMU rereads `device`'s device table entry.
pub fn invalidate_device_table_entry(device: SourceId) -> [u64; 2] {
    [
        u64::from(device.requester_id()) | INVALIDATE_DEVTAB_ENTRY << OPCODE_SHIFT,
        0,
    ]
}

/// INVALIDATE_IOMMU_PAGES for every page of `domain`: S = 1 and PDE = 1 with the address
/// 0x7FFF_FFFF_FFFF_F000, the encoding of "all pages, and the page-directory entries".
pub fn invalidate_domain_pages(domain: DomainId) -> [u64; 2] {
    let (size, pde) = (1 << 0, 1 << 1);
    [
        u64::from(domain.0) << 32 | INVALIDATE_IOMMU_PAGES << OPCODE_SHIFT,
        0x7fff_ffff_ffff_f000 | pde | size,
    ]
}

/// INVALIDATE_INTERRUPT_TABLE: the IOMMU drops what it caches of `device`'s interrupt table.
pub fn invalidate_interrupt_table(device: SourceId) -> [u64; 2] {
    [
        u64::from(device.requester_id()) | INVALIDATE_INTERRUPT_TABLE << OPCODE_SHIFT,
        0,
    ]
}

/// INVALIDATE_IOMMU_ALL (needs EFR.IA): every cached translation and interrupt entry.
pub fn invalidate_all() -> [u64; 2] {
    [INVALIDATE_IOMMU_ALL << OPCODE_SHIFT, 0]
}

/// IO_PAGE_FAULT and ILLEGAL_DEV_TABLE_ENTRY flags (first qword bits 48..): RW (bit 53)
/// says the access was a write.
const EVENT_WRITE: u64 = 1 << 53;

/// An event-log entry as a fault: ILLEGAL_DEV_TABLE_ENTRY (0x1) and IO_PAGE_FAULT (0x2), with
/// the device ID (bits 15:0), the address (second qword) and RW; `None` for other events.
pub fn decode_event(entry: [u64; 2]) -> Option<DmaFault> {
    let code = (entry[0] >> OPCODE_SHIFT) as u8;
    if !matches!(code, 0x1 | 0x2) {
        return None;
    }
    Some(DmaFault {
        source: SourceId::from_requester_id(entry[0] as u16),
        address: entry[1] & !0xfff,
        write: entry[0] & EVENT_WRITE != 0,
        reason: FaultReason::AmdVi(code),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_laid_out_as_the_spec_says() {
        assert_eq!(completion_wait(0x1234_5678, 7), [0x1000_0000_1234_5679, 7]);
        let nvme = SourceId { bus: 3, devfn: 8 };
        assert_eq!(
            invalidate_device_table_entry(nvme),
            [0x2000_0000_0000_0308, 0]
        );
        assert_eq!(
            invalidate_domain_pages(DomainId(5)),
            [0x3000_0005_0000_0000, 0x7fff_ffff_ffff_f003]
        );
        assert_eq!(invalidate_interrupt_table(nvme), [0x5000_0000_0000_0308, 0]);
        assert_eq!(invalidate_all(), [0x8000_0000_0000_0000, 0]);
    }

    #[test]
    fn page_faults_decode() {
        // IO_PAGE_FAULT, device 00:03.0, domain 2, a write (RW), page present (PR).
        let event = [
            0x2000_0000_0000_0018 | 1 << 53 | 1 << 52 | 2 << 32,
            0xdead_b123,
        ];
        let fault = decode_event(event).unwrap();
        assert_eq!(
            fault.source,
            SourceId {
                bus: 0,
                devfn: 0x18
            }
        );
        assert_eq!((fault.address, fault.write), (0xdead_b000, true));
        assert_eq!(fault.reason, FaultReason::AmdVi(2));
        assert_eq!(decode_event([0x5000_0000_0000_0000, 0]), None);
        assert!(decode_event([u64::MAX, u64::MAX]).is_none());
    }
}
