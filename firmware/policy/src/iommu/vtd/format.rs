//! VT-d second-level paging entries (Intel VT-d spec 4.1 §9.8, "Second-Level Paging
//! Entries"): the tables a remapping unit walks for a device's DMA in legacy mode. They are
//! 4-level walks of 512 eight-byte entries with the address in bits 51:12, like EPT, so the
//! same [`SlatBuilder`](crate::slat::SlatBuilder) writes them.
//!
//! Bits set: R (0), W (1), and PS (7) in a 2 MiB or 1 GiB leaf. Bits left clear on purpose:
//! X (2, execute requests exist only with PASID, which legacy mode has not), EMT/IPAT (6:3,
//! meaningful only with snoop control), SNP (11) and TM (62): QEMU 7.2 treats SNP and TM as
//! reserved (a "reserved field in a second-level entry" fault) unless `snoop-control` or a
//! device IOTLB is on.

use crate::memory::BlockSize;
use crate::slat::{Permissions, SlatFormat, ADDRESS_MASK, LARGE_PAGE};

/// The VT-d second-level format. Leaves need read access (an entry with W and not R is
/// not a meaningful grant, and "no access" is no mapping); execute is not expressed: a DMA
/// remapping unit grants loads and stores only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtdSecondLevel;

const READ: u64 = 1 << 0;
const WRITE: u64 = 1 << 1;

impl SlatFormat for VtdSecondLevel {
    const NAME: &'static str = "VT-d";

    /// Read is needed; execute is accepted and ignored (DMA has no instruction fetches), so a
    /// partition's RAM mapped RWX for its vCPUs maps RW for its devices.
    fn supports(perms: Permissions) -> bool {
        perms.read
    }

    fn table_entry(table: u64, _level: u32) -> u64 {
        (table & ADDRESS_MASK) | READ | WRITE
    }

    fn leaf_entry(spa: u64, size: BlockSize, perms: Permissions) -> u64 {
        let mut entry = (spa & ADDRESS_MASK) | READ;
        if perms.write {
            entry |= WRITE;
        }
        if size != BlockSize::Size4K {
            entry |= LARGE_PAGE;
        }
        entry
    }

    /// The unit treats an entry with neither R nor W as not present (§9.8).
    fn is_present(entry: u64) -> bool {
        entry & (READ | WRITE) != 0
    }

    fn leaf_permissions(entry: u64) -> Permissions {
        Permissions {
            read: entry & READ != 0,
            write: entry & WRITE != 0,
            execute: false,
        }
    }

    /// A context entry's SLPTPTR: the top table's address only (its low bits hold P, FPD and
    /// TT, which [`ContextTables`](super::ContextTables) writes).
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
    use crate::slat::{HeapTableMemory, SlatBuilder, SlatError, TableMemory};
    use BlockSize::*;

    const RW: Permissions = Permissions::READ_WRITE;
    const RWX: Permissions = Permissions::READ_WRITE_EXECUTE;
    const READ_ONLY: Permissions = Permissions {
        read: true,
        write: false,
        execute: false,
    };

    #[test]
    fn entries() {
        assert_eq!(VtdSecondLevel::table_entry(0x1234_5000, 2), 0x1234_5003);
        assert_eq!(
            VtdSecondLevel::leaf_entry(0x4000_0000, Size1G, RWX),
            0x4000_0083
        );
        assert_eq!(VtdSecondLevel::leaf_entry(0x20_0000, Size2M, RW), 0x20_0083);
        let read_only = VtdSecondLevel::leaf_entry(0x5000, Size4K, READ_ONLY);
        assert_eq!(read_only, 0x5001);
        assert_eq!(VtdSecondLevel::leaf_permissions(read_only), READ_ONLY);
        assert_eq!(VtdSecondLevel::leaf_permissions(0x5003), RW);
        // No X, SNP or TM, whatever was asked; no address bits above 51.
        let all = VtdSecondLevel::leaf_entry(u64::MAX, Size4K, RWX);
        assert_eq!(all & (1 << 2 | 1 << 11 | 1 << 62), 0);
        assert_eq!(all, ADDRESS_MASK | 0b11);
        assert!(VtdSecondLevel::supports(RWX) && VtdSecondLevel::supports(READ_ONLY));
        let write_only = Permissions {
            read: false,
            write: true,
            execute: false,
        };
        assert!(!VtdSecondLevel::supports(write_only));
        assert!(!VtdSecondLevel::supports(Permissions::default()));
        assert!(VtdSecondLevel::is_present(0x5002));
        assert!(!VtdSecondLevel::is_present(0x5004 | LARGE_PAGE));
        assert_eq!(VtdSecondLevel::root_pointer(0x7fff), 0x7000);
    }

    #[test]
    fn the_builder_maps_and_translates_in_the_vtd_format() {
        let mut frames = FrameAllocator::new(&[vec![(0x100_0000, 0x500_0000)]]);
        let mut pool = PartitionPool::new("vm", 0);
        pool.deposit(&mut frames, 16 * PAGE_SIZE).unwrap();
        let mut memory = HeapTableMemory::new();
        let mut slat = SlatBuilder::<VtdSecondLevel>::new(&mut memory, &mut pool, Size1G).unwrap();
        // 1 GiB at 1 GiB (one 1 GiB leaf), 2 MiB read-only, and one 4 KiB page.
        let gib = 1 << 30;
        slat.map(&mut memory, &mut pool, gib, 4 * gib, gib, RWX)
            .unwrap();
        slat.map(
            &mut memory,
            &mut pool,
            0x20_0000,
            0x60_0000,
            0x20_0000,
            READ_ONLY,
        )
        .unwrap();
        slat.map(&mut memory, &mut pool, 0x1000, 0x9000, PAGE_SIZE, RW)
            .unwrap();
        let stats = slat.stats();
        assert_eq!((stats.pages_1g, stats.pages_2m, stats.pages_4k), (1, 1, 1));

        let t = slat.translate(&memory, gib + 0x1234).unwrap();
        assert_eq!((t.spa, t.size, t.perms), (4 * gib + 0x1234, Size1G, RW));
        let t = slat.translate(&memory, 0x20_0008).unwrap();
        assert_eq!((t.spa, t.size, t.perms), (0x60_0008, Size2M, READ_ONLY));
        let t = slat.translate(&memory, 0x1ff8).unwrap();
        assert_eq!((t.spa, t.size), (0x9ff8, Size4K));
        assert_eq!(slat.translate(&memory, 0), None);
        assert_eq!(slat.root_pointer(), slat.root());

        // The tables hold only R, W, PS and addresses: every non-leaf is R|W.
        let root_entry = memory.read(slat.root(), 0);
        assert_eq!(root_entry & !ADDRESS_MASK, 0b11);
        for page in memory.pages() {
            for index in 0..512 {
                let entry = memory.read(page, index);
                assert_eq!(entry & !(ADDRESS_MASK | LARGE_PAGE | 0b11), 0, "{entry:#x}");
            }
        }

        let write_only = Permissions {
            read: false,
            write: true,
            execute: false,
        };
        assert!(matches!(
            slat.map(&mut memory, &mut pool, 0x40_0000, 0, PAGE_SIZE, write_only),
            Err(SlatError::Permissions { format: "VT-d", .. })
        ));
    }
}
