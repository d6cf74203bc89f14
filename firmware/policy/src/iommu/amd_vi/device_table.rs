//! AMD-Vi device table entries (AMD IOMMU spec 48882 §2.2.2.1): 256 bits per requester ID
//! saying which page tables translate its DMA, in which domain, and where its interrupt
//! remapping table is.

use crate::iommu::DomainId;
use crate::slat::ADDRESS_MASK;

/// A device's interrupt remapping table (§2.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptTable {
    /// The table's address, 128-byte aligned (bits 51:6 are stored).
    pub address: u64,
    /// The table holds 2^`entries_log2` entries (IntTabLen, 0..=11 defined).
    pub entries_log2: u8,
}

/// What a device table entry does with the device's interrupt messages (§2.2.5). There is
/// no "forwarded untranslated" (IV = 0): a device's messages would then reach any CPU with
/// any vector and delivery mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupts {
    /// Target-aborted: IV = 1, IntCtl = 00b.
    Blocked,
    /// Remapped through this table (IV = 1, IntCtl = 10b).
    Remapped(InterruptTable),
}

/// One device table entry: translation through a 4-level page table tagged with `domain`,
/// and what happens to its interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceTableEntry {
    pub domain: DomainId,
    /// The top (level-4) page table.
    pub page_table_root: u64,
    /// Its interrupts: blocked, forwarded untranslated, or remapped through a table.
    pub interrupts: Interrupts,
}

/// Qword 0: V (bit 0), TV (bit 1), Mode (11:9) = 4 levels, IR (61), IW (62).
const VALID: u64 = 1 << 0;
const TRANSLATION_VALID: u64 = 1 << 1;
const MODE_FOUR_LEVELS: u64 = 4 << 9;
const MODE_MASK: u64 = 0b111 << 9;
const READ: u64 = 1 << 61;
const WRITE: u64 = 1 << 62;
/// Qword 2: IV (bit 128), IntTabLen (132:129), IntCtl (189:188) = 10b remapped.
const INTERRUPT_VALID: u64 = 1 << 0;
const INTERRUPT_TABLE_LENGTH_SHIFT: u32 = 1;
const INTERRUPT_REMAPPED: u64 = 0b10 << 60;
/// Interrupt table root pointer: address bits 51:6 in DTE bits 179:134 (qword 2 bits 51:6).
const INTERRUPT_TABLE_MASK: u64 = 0x000f_ffff_ffff_ffc0;

/// The entry that refuses everything: V = 1, TV = 1, Mode = 000b, IR = IW = 0, domain 0,
/// and IV = 1 with IntCtl = 00b.
///
/// Why these bits (§2.2.2.1, "Device Table Entry Format"):
/// - V = 0 (an all-zero entry) is **not** blocking: the IOMMU then neither translates nor
///   checks the device's DMA, which reaches all memory untranslated. A zeroed device table
///   leaves every device unconfined.
/// - V = 1, TV = 1 with Mode 000b means "translation disabled, access controlled by IR and
///   IW": with both 0 every read and write is target-aborted (and logged as an
///   IO_PAGE_FAULT unless SA). This is the entry Linux fills its table with
///   (`init_device_table_dma`: "not allow DMA access"). QEMU 7.2 gives such an entry no
///   permission either (its walk returns the DTE's IR/IW for Mode 0).
/// - IV = 1 with IntCtl 00b and the pass-through bits (NMI, INIT, ExtInt, LINT0/1) clear
///   target-aborts the device's interrupts too; IV = 0 would pass them through unremapped.
pub const BLOCKED_ENTRY: [u64; 4] = [VALID | TRANSLATION_VALID, 0, INTERRUPT_VALID, 0];

impl DeviceTableEntry {
    /// The four qwords of the entry that blocks all of a device's DMA and interrupts
    /// ([`BLOCKED_ENTRY`], where the reasons are).
    pub fn blocked() -> [u64; 4] {
        BLOCKED_ENTRY
    }

    /// Whether qword 0 of an entry lets the device's DMA through a page table (V, TV and a
    /// non-zero Mode): the entry names a domain whose cached translations it may use.
    pub fn translates(qword0: u64) -> bool {
        qword0 & (VALID | TRANSLATION_VALID) == VALID | TRANSLATION_VALID && qword0 & MODE_MASK != 0
    }

    /// The four qwords, lowest first. The page table's permissions come from its entries
    /// (IR and IW are set here so the walk decides).
    pub fn encode(&self) -> [u64; 4] {
        let translation = (self.page_table_root & ADDRESS_MASK)
            | VALID
            | TRANSLATION_VALID
            | MODE_FOUR_LEVELS
            | READ
            | WRITE;
        let interrupts = match self.interrupts {
            Interrupts::Remapped(table) => {
                (table.address & INTERRUPT_TABLE_MASK)
                    | INTERRUPT_VALID
                    | u64::from(table.entries_log2 & 0xf) << INTERRUPT_TABLE_LENGTH_SHIFT
                    | INTERRUPT_REMAPPED
            }
            Interrupts::Blocked => INTERRUPT_VALID,
        };
        [translation, u64::from(self.domain.0), interrupts, 0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dte_is_laid_out_as_the_spec_says() {
        let entry = DeviceTableEntry {
            domain: DomainId(0x42),
            page_table_root: 0x1234_5000,
            interrupts: Interrupts::Remapped(InterruptTable {
                address: 0x9_8000,
                entries_log2: 8,
            }),
        };
        let [q0, q1, q2, q3] = entry.encode();
        assert_eq!(q0, 0x6000_0000_1234_5803);
        assert_eq!(q1, 0x42);
        // IV, IntTabLen 8 at 132:129, root 0x98000 at 179:134, IntCtl 10b at 189:188.
        assert_eq!(q2, 0x2000_0000_0009_8011);
        assert_eq!(q3, 0);
        let blocked = DeviceTableEntry {
            interrupts: Interrupts::Blocked,
            ..entry
        };
        assert_eq!(blocked.encode()[2], 1);
    }

    #[test]
    fn the_blocked_entry_is_valid_with_no_permission() {
        let [q0, q1, q2, q3] = DeviceTableEntry::blocked();
        // V and TV, Mode 0, IR = IW = 0, no root.
        assert_eq!(q0, 0b11);
        assert_eq!(q0 & (READ | WRITE | MODE_MASK | ADDRESS_MASK), 0);
        assert_eq!(q1, 0);
        // IV with IntCtl 00b: interrupts aborted, not passed through.
        assert_eq!(q2, 1);
        assert_eq!(q3, 0);
        assert!(!DeviceTableEntry::translates(q0));
        assert!(!DeviceTableEntry::translates(0));
        let entry = DeviceTableEntry {
            domain: DomainId(1),
            page_table_root: 0x1000,
            interrupts: Interrupts::Blocked,
        };
        assert!(DeviceTableEntry::translates(entry.encode()[0]));
    }
}
