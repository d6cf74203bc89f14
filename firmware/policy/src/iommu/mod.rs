//! Models of the DMA remapping units (IOMMUs) that keep a partition's devices inside its own
//! memory: Intel VT-d (Intel VT-d spec 4.1, legacy-mode translation and interrupt remapping)
//! and AMD-Vi (AMD IOMMU spec 48882 rev 3.x, formats and command encodings).
//!
//! Everything here is pure logic: table formats, register decodes and the programming
//! sequences. The registers are reached through a small access trait that the firmware
//! implements over the unit's MMIO window (its one `unsafe` edge); host tests implement it
//! with fake units that behave like the hardware (and like QEMU 7.2's `intel-iommu`).

pub mod amd_vi;
pub mod vtd;

use alloc::vec::Vec;
use core::fmt;

use crate::pci::PciAddress;

/// Reads and writes of a remapping unit's registers, by offset in its 4 KiB-aligned MMIO
/// window (16 KiB for AMD-Vi). The firmware implements it with volatile accesses over the
/// unit's register base (the DRHD's or the IVHD's); tests implement it with fake units.
/// 64-bit registers are accessed whole.
pub trait RegisterAccess {
    /// The 32-bit register at `offset`.
    fn read32(&mut self, offset: u32) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write32(&mut self, offset: u32, value: u32);
    /// The 64-bit register at `offset`.
    fn read64(&mut self, offset: u32) -> u64;
    /// Writes the 64-bit register at `offset`.
    fn write64(&mut self, offset: u32, value: u64);
}

/// The faults taken from a unit's log (VT-d fault recording registers, AMD-Vi event log).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultLog {
    /// The recorded faults, oldest first.
    pub faults: Vec<DmaFault>,
    /// Faults were lost because the log was full (VT-d FSTS.PFO, AMD-Vi Status
    /// EventOverflow).
    pub overflowed: bool,
    /// Log entries that are not DMA faults and were skipped (AMD-Vi command errors, hardware
    /// errors, event codes this driver does not know); always 0 on VT-d.
    pub other_events: u32,
}

/// The requester ID a PCI function's DMA and MSIs carry: bus, and device and function packed
/// as `device << 3 | function` (PCIe base spec §2.2.6.2). A remapping unit serves one PCI
/// segment, so the segment is not part of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId {
    pub bus: u8,
    /// `device << 3 | function`.
    pub devfn: u8,
}

impl SourceId {
    /// The 16-bit requester ID, bus in the high byte.
    pub fn requester_id(self) -> u16 {
        u16::from(self.bus) << 8 | u16::from(self.devfn)
    }

    /// The source named by a 16-bit requester ID (as fault records and event logs give it).
    pub fn from_requester_id(id: u16) -> SourceId {
        let [bus, devfn] = id.to_be_bytes();
        SourceId { bus, devfn }
    }
}

impl From<PciAddress> for SourceId {
    fn from(address: PciAddress) -> SourceId {
        SourceId::from_requester_id(address.requester_id())
    }
}

impl fmt::Display for SourceId {
    /// `bb:dd.f`, as `lspci` writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus,
            self.devfn >> 3,
            self.devfn & 7
        )
    }
}

/// A remapping domain: the tag a unit's caches use for one set of translation tables (one
/// partition's DMA view). 16 bits on both VT-d and AMD-Vi.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(pub u16);

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "domain {}", self.0)
    }
}

/// Which unit kind reported a fault, with its own reason code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultReason {
    /// A VT-d fault reason (Intel VT-d spec 4.1 Appendix A, "Non-Recoverable Fault Reason
    /// Encodings"): 0x1–0xE for DMA, 0x20–0x26 for interrupt remapping.
    VtD(u8),
    /// An AMD-Vi event code (AMD IOMMU spec 48882 §2.5, Table "Event Codes").
    AmdVi(u8),
}

/// One blocked DMA (or interrupt) request, as a unit recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaFault {
    /// The requester that issued it.
    pub source: SourceId,
    /// The page address (4 KiB aligned) the request targeted; for an interrupt-remapping fault,
    /// the interrupt index the request carried.
    pub address: u64,
    /// A write (or, for AMD-Vi, a write as the event's RW flag says); else a read.
    pub write: bool,
    /// Why the unit blocked it.
    pub reason: FaultReason,
}

impl FaultReason {
    /// The reason in words, for the boot log.
    pub fn describe(self) -> &'static str {
        match self {
            FaultReason::VtD(code) => vtd::fault_reason_text(code),
            FaultReason::AmdVi(code) => match code {
                0x1 => "illegal device table entry",
                0x2 => "I/O page fault",
                0x3 => "device table hardware error",
                0x4 => "page table hardware error",
                0x5 => "illegal command",
                0x6 => "command hardware error",
                0x7 => "IOTLB invalidation timeout",
                0x8 => "invalid device request",
                _ => "unknown event",
            },
        }
    }

    /// Whether the fault concerns interrupt remapping rather than DMA translation.
    pub fn is_interrupt(self) -> bool {
        matches!(self, FaultReason::VtD(0x20..=0x26))
    }
}

impl fmt::Display for DmaFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = match self.reason {
            FaultReason::VtD(code) | FaultReason::AmdVi(code) => code,
        };
        if self.reason.is_interrupt() {
            return write!(
                f,
                "device {}: interrupt index {:#x} blocked: {} (reason {code:#x})",
                self.source,
                self.address,
                self.reason.describe()
            );
        }
        write!(
            f,
            "device {}: DMA {} at {:#x} blocked: {} (reason {code:#x})",
            self.source,
            if self.write { "write" } else { "read" },
            self.address,
            self.reason.describe()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn source_ids_follow_the_requester_id_layout() {
        let address = PciAddress::new(0, 0x03, 0x1f, 7).unwrap();
        let source = SourceId::from(address);
        assert_eq!(
            source,
            SourceId {
                bus: 3,
                devfn: 0xff
            }
        );
        assert_eq!(source.requester_id(), 0x03ff);
        assert_eq!(
            SourceId::from_requester_id(0x0a10),
            SourceId {
                bus: 0x0a,
                devfn: 0x10
            }
        );
        assert_eq!(source.to_string(), "03:1f.7");
    }

    #[test]
    fn faults_read_as_sentences() {
        let fault = DmaFault {
            source: SourceId {
                bus: 0,
                devfn: 0x18,
            },
            address: 0x1234_5000,
            write: true,
            reason: FaultReason::VtD(0x5),
        };
        assert_eq!(
            fault.to_string(),
            "device 00:03.0: DMA write at 0x12345000 blocked: the page is not writable \
             (reason 0x5)"
        );
        let interrupt = DmaFault {
            address: 7,
            reason: FaultReason::VtD(0x22),
            ..fault
        };
        assert!(interrupt.to_string().contains("interrupt index 0x7"));
        assert_eq!(FaultReason::AmdVi(0x2).describe(), "I/O page fault");
    }
}
