//! AMD-Vi I/O page-table entries (AMD IOMMU spec 48882 §2.2.3, "I/O Page Tables for Host
//! Translations"): PR (bit 0), Next Level (11:9), address (51:12), IR (61), IW (62).
//!
//! Unlike the CPU formats, an entry says what it points at by level rather than by a page-size
//! bit: a non-leaf carries the level of the table it points to (1 = a table of 4 KiB leaves),
//! a leaf carries Next Level 0, whatever its level (a 2 MiB leaf is Next Level 0 in a level-2
//! table). Permissions combine down the walk, so non-leaf entries grant IR|IW.

use crate::memory::BlockSize;
use crate::slat::{Permissions, SlatFormat, ADDRESS_MASK};

/// The AMD-Vi host-translation page-table format, 4 levels (DTE Mode 4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AmdViPageTable;

const PRESENT: u64 = 1 << 0;
const NEXT_LEVEL_SHIFT: u32 = 9;
const NEXT_LEVEL_MASK: u64 = 0b111 << NEXT_LEVEL_SHIFT;
const READ: u64 = 1 << 61;
const WRITE: u64 = 1 << 62;

impl SlatFormat for AmdViPageTable {
    const NAME: &'static str = "AMD-Vi";

    /// Read, write or both: AMD-Vi can grant write-only; execute is not a DMA permission and
    /// is ignored.
    fn supports(perms: Permissions) -> bool {
        perms.read || perms.write
    }

    fn table_entry(table: u64, level: u32) -> u64 {
        (table & ADDRESS_MASK)
            | PRESENT
            | READ
            | WRITE
            | (u64::from(level) & 0b111) << NEXT_LEVEL_SHIFT
    }

    fn leaf_entry(spa: u64, _size: BlockSize, perms: Permissions) -> u64 {
        let mut entry = (spa & ADDRESS_MASK) | PRESENT;
        if perms.read {
            entry |= READ;
        }
        if perms.write {
            entry |= WRITE;
        }
        entry
    }

    fn is_present(entry: u64) -> bool {
        entry & PRESENT != 0
    }

    /// Next Level 0 is a page at any level; 7 (a page of a non-default size, §2.2.3.2) is not
    /// made here and is read as a table.
    fn is_leaf(entry: u64, level: u32) -> bool {
        level == 1 || (level <= 3 && entry & NEXT_LEVEL_MASK == 0)
    }

    fn leaf_permissions(entry: u64) -> Permissions {
        Permissions {
            read: entry & READ != 0,
            write: entry & WRITE != 0,
            execute: false,
        }
    }

    /// The DTE's Page Table Root Pointer: the address only (Mode 4 is in the DTE).
    fn root_pointer(root: u64) -> u64 {
        root & ADDRESS_MASK
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    use crate::memory::{FrameAllocator, PAGE_SIZE};
    use crate::partition::pool::PartitionPool;
    use crate::slat::{HeapTableMemory, SlatBuilder, TableMemory};
    use BlockSize::*;

    #[test]
    fn entries() {
        // A PDPT pointer from the PML4: Next Level 3, PR, IR, IW.
        assert_eq!(
            AmdViPageTable::table_entry(0x1234_5000, 3),
            0x6000_0000_1234_5601
        );
        assert_eq!(
            AmdViPageTable::table_entry(0x1234_5000, 1),
            0x6000_0000_1234_5201
        );
        let rw = AmdViPageTable::leaf_entry(0x20_0000, Size2M, Permissions::READ_WRITE);
        assert_eq!(rw, 0x6000_0000_0020_0001);
        assert!(AmdViPageTable::is_leaf(rw, 2));
        assert!(!AmdViPageTable::is_leaf(0x6000_0000_1234_5201, 2));
        assert!(!AmdViPageTable::is_leaf(0x6000_0000_0020_0001, 4));
        let write_only = Permissions {
            read: false,
            write: true,
            execute: false,
        };
        assert!(AmdViPageTable::supports(write_only));
        assert!(!AmdViPageTable::supports(Permissions::default()));
        let entry = AmdViPageTable::leaf_entry(0x5000, Size4K, write_only);
        assert_eq!(entry, 0x4000_0000_0000_5001);
        assert_eq!(AmdViPageTable::leaf_permissions(entry), write_only);
        assert!(!AmdViPageTable::is_present(0x6000_0000_0000_5000));
    }

    #[test]
    fn the_builder_maps_and_translates_in_the_amd_vi_format() {
        let mut frames = FrameAllocator::new(&[vec![(0x100_0000, 0x500_0000)]]);
        let mut pool = PartitionPool::new("vm", 0);
        pool.deposit(&mut frames, 16 * PAGE_SIZE).unwrap();
        let mut memory = HeapTableMemory::new();
        let mut slat = SlatBuilder::<AmdViPageTable>::new(&mut memory, &mut pool, Size1G).unwrap();
        let gib = 1 << 30;
        slat.map(
            &mut memory,
            &mut pool,
            gib,
            2 * gib,
            gib,
            Permissions::READ_WRITE,
        )
        .unwrap();
        slat.map(
            &mut memory,
            &mut pool,
            0x40_0000,
            0x80_0000,
            0x20_1000,
            Permissions::READ_WRITE,
        )
        .unwrap();
        let stats = slat.stats();
        assert_eq!((stats.pages_1g, stats.pages_2m, stats.pages_4k), (1, 1, 1));
        let t = slat.translate(&memory, gib + 8).unwrap();
        assert_eq!((t.spa, t.size), (2 * gib + 8, Size1G));
        let t = slat.translate(&memory, 0x60_0010).unwrap();
        assert_eq!((t.spa, t.size), (0xa0_0010, Size4K));
        // The walk: PML4 entry → PDPT (level 3), PDPT entry 0 → PD (level 2), PD entry 3 → PT
        // (level 1); the 1 GiB leaf in PDPT entry 1 has Next Level 0.
        let pml4 = memory.read(slat.root(), 0);
        assert_eq!((pml4 >> 9) & 7, 3);
        let pdpt = pml4 & ADDRESS_MASK;
        assert_eq!((memory.read(pdpt, 0) >> 9) & 7, 2);
        assert_eq!((memory.read(pdpt, 1) >> 9) & 7, 0);
        let pd = memory.read(pdpt, 0) & ADDRESS_MASK;
        assert_eq!((memory.read(pd, 2) >> 9) & 7, 0);
        assert_eq!((memory.read(pd, 3) >> 9) & 7, 1);
    }
}
