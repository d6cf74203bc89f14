//! A VT-d remapping unit's registers (Intel VT-d spec 4.1 §10.4): offsets in its MMIO window,
//! the bits the driver uses, and the decode of the capability registers (§10.4.2 CAP,
//! §10.4.3 ECAP).

/// Kept here under its old path: the trait is shared by both unit kinds.
pub use crate::iommu::RegisterAccess;

/// Version (32-bit): major in bits 7:4, minor in 3:0.
pub const VER: u32 = 0x00;
/// Capability (64-bit).
pub const CAP: u32 = 0x08;
/// Extended capability (64-bit).
pub const ECAP: u32 = 0x10;
/// Global command (32-bit, write-only commands).
pub const GCMD: u32 = 0x18;
/// Global status (32-bit).
pub const GSTS: u32 = 0x1C;
/// Root table address (64-bit).
pub const RTADDR: u32 = 0x20;
/// Context command (64-bit).
pub const CCMD: u32 = 0x28;
/// Fault status (32-bit).
pub const FSTS: u32 = 0x34;
/// Fault event control (32-bit).
pub const FECTL: u32 = 0x38;
/// Invalidation queue head (64-bit).
pub const IQH: u32 = 0x80;
/// Invalidation queue tail (64-bit).
pub const IQT: u32 = 0x88;
/// Invalidation queue address (64-bit).
pub const IQA: u32 = 0x90;
/// Invalidation completion status (32-bit).
pub const ICS: u32 = 0x9C;
/// Interrupt remapping table address (64-bit).
pub const IRTA: u32 = 0xB8;

/// Global command bits (GCMD) and their status bits (GSTS), at the same positions.
pub mod global {
    /// Translation enable / status.
    pub const TE: u32 = 1 << 31;
    /// Set root table pointer / its status (one-shot).
    pub const SRTP: u32 = 1 << 30;
    /// Set fault log (one-shot).
    pub const SFL: u32 = 1 << 29;
    /// Advanced fault logging enable.
    pub const EAFL: u32 = 1 << 28;
    /// Write buffer flush (one-shot).
    pub const WBF: u32 = 1 << 27;
    /// Queued invalidation enable.
    pub const QIE: u32 = 1 << 26;
    /// Interrupt remapping enable.
    pub const IRE: u32 = 1 << 25;
    /// Set interrupt remapping table pointer (one-shot).
    pub const SIRTP: u32 = 1 << 24;
    /// Compatibility-format interrupts pass through (blocked when clear).
    pub const CFI: u32 = 1 << 23;
    /// The GSTS bits that report a one-shot command (RTPS, FLS, WBFS, IRTPS): a GCMD write
    /// built from GSTS must not carry them, or it repeats the command (§10.4.4's 0x96FF_FFFF
    /// mask).
    pub const ONE_SHOT: u32 = SRTP | SFL | WBF | SIRTP;
}

/// Context command (CCMD) fields.
pub mod context_command {
    /// Invalidate context cache: set to start, the unit clears it when done.
    pub const ICC: u64 = 1 << 63;
    /// Requested granularity (CIRG, bits 62:61): global.
    pub const GLOBAL: u64 = 1 << 61;
    /// Requested granularity: one domain (DID in bits 15:0).
    pub const DOMAIN: u64 = 2 << 61;
    /// Actual granularity (CAIG, bits 60:59): 0 when the unit did not perform the request.
    pub const ACTUAL_SHIFT: u32 = 59;
}

/// IOTLB invalidate register fields (the register at ECAP.IRO × 16 + 8).
pub mod iotlb_command {
    /// Invalidate IOTLB: set to start, the unit clears it when done.
    pub const IVT: u64 = 1 << 63;
    /// Requested granularity (IIRG, bits 61:60): global.
    pub const GLOBAL: u64 = 1 << 60;
    /// Requested granularity: one domain (DID in bits 47:32).
    pub const DOMAIN: u64 = 2 << 60;
    /// Requested granularity: pages of one domain (address in the IVA register).
    pub const PAGE: u64 = 3 << 60;
    /// Actual granularity (IAIG, bits 58:57): 0 when the unit did not perform the request.
    pub const ACTUAL_SHIFT: u32 = 57;
    /// Drain reads (valid when CAP.DRD).
    pub const DRAIN_READS: u64 = 1 << 49;
    /// Drain writes (valid when CAP.DWD).
    pub const DRAIN_WRITES: u64 = 1 << 48;
    /// Domain ID position.
    pub const DID_SHIFT: u32 = 32;
}

/// Fault status (FSTS) bits.
pub mod fault_status {
    /// Primary fault overflow: a fault was lost because every record was full.
    pub const PFO: u32 = 1 << 0;
    /// Primary pending fault: some fault record has F set (read-only summary).
    pub const PPF: u32 = 1 << 1;
    /// Invalidation queue error: the unit stopped at a descriptor it could not process.
    pub const IQE: u32 = 1 << 4;
    /// Invalidation completion error (device-IOTLB).
    pub const ICE: u32 = 1 << 5;
    /// Invalidation time-out error (device-IOTLB).
    pub const ITE: u32 = 1 << 6;
    /// Fault record index (FRI, bits 15:8): the first record to look at when PPF is set.
    pub const FRI_SHIFT: u32 = 8;
    /// The write-1-to-clear bits.
    pub const CLEAR: u32 = PFO | IQE | ICE | ITE | (1 << 2) | (1 << 3);
}

/// Invalidation completion status (ICS): the wait descriptor with IF completed.
pub const ICS_IWC: u32 = 1 << 0;

/// What a unit can do, from its CAP and ECAP registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The raw VER register.
    pub version: u32,
    /// The raw CAP register.
    pub cap: u64,
    /// The raw ECAP register.
    pub ecap: u64,
}

/// Extracts `width` bits of `value` at `shift`.
fn field(value: u64, shift: u32, width: u32) -> u64 {
    (value >> shift) & ((1 << width) - 1)
}

impl Capabilities {
    /// The decode of `VER`, `CAP` and `ECAP` as read.
    pub fn new(version: u32, cap: u64, ecap: u64) -> Capabilities {
        Capabilities { version, cap, ecap }
    }

    /// (major, minor) version.
    pub fn version(&self) -> (u8, u8) {
        (
            ((self.version >> 4) & 0xf) as u8,
            (self.version & 0xf) as u8,
        )
    }

    /// ND (bits 2:0): the number of domain IDs, 2^(4 + 2·ND); 0x7 is reserved and read as the
    /// largest defined (2^16).
    pub fn domain_count(&self) -> u32 {
        let nd = field(self.cap, 0, 3).min(6) as u32;
        1 << (4 + 2 * nd)
    }

    /// CM (bit 7): caching mode. The unit may cache not-present and faulting entries, so
    /// software must invalidate after making an entry present too, and domain ID 0 is
    /// reserved (§6.1).
    pub fn caching_mode(&self) -> bool {
        self.cap & (1 << 7) != 0
    }

    /// RWBF (bit 4): table writes must be followed by a write-buffer flush.
    pub fn needs_write_buffer_flush(&self) -> bool {
        self.cap & (1 << 4) != 0
    }

    /// SAGAW (bits 12:8): the second-level walks supported; bit 1 = 39-bit 3-level, bit 2 =
    /// 48-bit 4-level, bit 3 = 57-bit 5-level.
    pub fn sagaw(&self) -> u8 {
        field(self.cap, 8, 5) as u8
    }

    /// Whether 4-level, 48-bit second-level tables (the only kind the SLAT builder makes)
    /// are supported.
    pub fn supports_four_level(&self) -> bool {
        self.sagaw() & (1 << 2) != 0
    }

    /// MGAW (bits 21:16) + 1: the widest guest (DMA) address the unit translates, in bits.
    pub fn max_guest_address_width(&self) -> u8 {
        field(self.cap, 16, 6) as u8 + 1
    }

    /// FRO (bits 33:24): fault recording registers start at FRO × 16.
    pub fn fault_recording_offset(&self) -> u32 {
        field(self.cap, 24, 10) as u32 * 16
    }

    /// SLLPS (bits 37:34): bit 0 = 2 MiB leaves, bit 1 = 1 GiB leaves.
    pub fn large_pages(&self) -> u8 {
        field(self.cap, 34, 4) as u8
    }

    /// The largest leaf second-level tables may use on this unit.
    pub fn max_page(&self) -> crate::memory::BlockSize {
        use crate::memory::BlockSize;
        match self.large_pages() {
            l if l & 0b11 == 0b11 => BlockSize::Size1G,
            l if l & 0b01 != 0 => BlockSize::Size2M,
            _ => BlockSize::Size4K,
        }
    }

    /// PSI (bit 39): page-selective IOTLB invalidation.
    pub fn page_selective_invalidation(&self) -> bool {
        self.cap & (1 << 39) != 0
    }

    /// NFR (bits 47:40) + 1: fault recording registers.
    pub fn fault_records(&self) -> u32 {
        field(self.cap, 40, 8) as u32 + 1
    }

    /// MAMV (bits 53:48): the largest address mask for page-selective invalidation.
    pub fn max_address_mask(&self) -> u8 {
        field(self.cap, 48, 6) as u8
    }

    /// DWD (bit 54): IOTLB invalidations may drain writes.
    pub fn drains_writes(&self) -> bool {
        self.cap & (1 << 54) != 0
    }

    /// DRD (bit 55): IOTLB invalidations may drain reads.
    pub fn drains_reads(&self) -> bool {
        self.cap & (1 << 55) != 0
    }

    /// ECAP.QI (bit 1): queued invalidation.
    pub fn queued_invalidation(&self) -> bool {
        self.ecap & (1 << 1) != 0
    }

    /// ECAP.IR (bit 3): interrupt remapping.
    pub fn interrupt_remapping(&self) -> bool {
        self.ecap & (1 << 3) != 0
    }

    /// ECAP.EIM (bit 4): x2APIC (32-bit) interrupt destinations.
    pub fn extended_interrupt_mode(&self) -> bool {
        self.ecap & (1 << 4) != 0
    }

    /// ECAP.IRO (bits 17:8): the IOTLB registers start at IRO × 16 (the IVA register), the
    /// IOTLB invalidate register 8 bytes later.
    pub fn iotlb_offset(&self) -> u32 {
        field(self.ecap, 8, 10) as u32 * 16
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::memory::BlockSize;

    /// CAP as QEMU 7.2 builds it for `intel-iommu,aw-bits=48,caching-mode=on`: FRO 0x22
    /// (records at 0x220), one record, ND 6, MAMV 18, PSI, 2 MiB and 1 GiB leaves, MGAW 47,
    /// read/write draining, SAGAW 39 and 48 bits, CM.
    pub(crate) const QEMU_CAP: u64 = 0x00d2_008c_222f_0686;
    /// ECAP for `intremap=on` under TCG: QI, IR (no EIM), PT, MHMV 15, IRO 0xf (IOTLB
    /// registers at 0xf0).
    pub(crate) const QEMU_ECAP: u64 = 0x00f0_0f4a;

    #[test]
    fn qemu_capabilities_decode() {
        let caps = Capabilities::new(0x10, QEMU_CAP, QEMU_ECAP);
        assert_eq!(caps.version(), (1, 0));
        assert!(caps.caching_mode() && !caps.needs_write_buffer_flush());
        assert_eq!(caps.domain_count(), 1 << 16);
        assert_eq!(caps.sagaw(), 0b110);
        assert!(caps.supports_four_level());
        assert_eq!(caps.max_guest_address_width(), 48);
        assert_eq!(caps.fault_recording_offset(), 0x220);
        assert_eq!(caps.fault_records(), 1);
        assert_eq!(caps.large_pages(), 0b11);
        assert_eq!(caps.max_page(), BlockSize::Size1G);
        assert!(caps.page_selective_invalidation());
        assert_eq!(caps.max_address_mask(), 18);
        assert!(caps.drains_reads() && caps.drains_writes());
        assert!(caps.queued_invalidation() && caps.interrupt_remapping());
        assert!(!caps.extended_interrupt_mode());
        assert_eq!(caps.iotlb_offset(), 0xf0);
    }

    #[test]
    fn every_field_decodes_without_overflow() {
        let caps = Capabilities::new(u32::MAX, u64::MAX, u64::MAX);
        assert_eq!(caps.domain_count(), 1 << 16);
        assert_eq!(caps.fault_recording_offset(), 1023 * 16);
        assert_eq!(caps.fault_records(), 256);
        assert_eq!(caps.iotlb_offset(), 1023 * 16);
        assert_eq!(caps.max_guest_address_width(), 64);
        let none = Capabilities::new(0, 0, 0);
        assert_eq!(none.domain_count(), 16);
        assert_eq!(none.max_page(), BlockSize::Size4K);
        assert!(!none.supports_four_level());
        let two_mib = Capabilities::new(0, 1 << 34, 0);
        assert_eq!(two_mib.max_page(), BlockSize::Size2M);
    }
}
