//! The root table and context tables of a VT-d unit in legacy mode (Intel VT-d spec 4.1
//! §9.1 root entry, §9.3 context entry, §3.4.2): the two-level lookup from a request's bus and
//! devfn to the domain and second-level tables that translate it.
//!
//! One 4 KiB root table holds 256 sixteen-byte root entries, one per bus; a present one points
//! at a 4 KiB context table of 256 sixteen-byte context entries, one per devfn. Entry `i` of
//! either is `u64` indices `2i` (low) and `2i + 1` (high) of its page in [`TableMemory`].
//! Context tables are made only for buses that hold an assigned device.
//!
//! A 16-byte entry is written as two 8-byte stores that a unit may observe in between, so the
//! half holding P is written last when making an entry present and first when removing it.
//! Nothing here invalidates the unit's caches: after [`ContextTables::assign`] or
//! [`ContextTables::unassign`], invalidate the context cache and the domain's IOTLB
//! ([`VtdUnit::invalidate_domain`](super::VtdUnit::invalidate_domain)); under caching mode
//! (QEMU's `caching-mode=on`) that is needed for a new entry too.

use alloc::collections::BTreeMap;
use core::fmt;

use crate::iommu::{DomainId, SourceId};
use crate::memory::PAGE_SIZE;
use crate::slat::{OutOfTablePages, TableMemory, TablePages, ADDRESS_MASK};

/// Root and context entries: present (bit 0 of the low half).
const PRESENT: u64 = 1 << 0;
/// Context entry high half: AW (bits 2:0) = 2, a 48-bit 4-level second-level walk.
const AW_FOUR_LEVEL: u64 = 2;
/// Context entry high half: domain ID in bits 23:8.
const DID_SHIFT: u32 = 8;

/// A unit's root table and the context tables under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextTables {
    root: u64,
    /// Bus → its context table page.
    context: BTreeMap<u8, u64>,
    /// How many domain IDs the unit has (CAP.ND), so IDs from 1 to this minus 1 are valid.
    domain_count: u32,
}

/// Why a root or context table operation was refused; a refusal changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextError {
    /// No page for the root table or a bus's context table.
    Pool(OutOfTablePages),
    /// Domain 0 is reserved on caching-mode units (VT-d §6.1) and not used on any; or the ID
    /// is past the unit's CAP.ND count.
    InvalidDomain { domain: DomainId, domain_count: u32 },
    /// The device is already assigned, to this domain with other tables or to another
    /// domain: unassign it first.
    AlreadyAssigned { source: SourceId, domain: DomainId },
    /// The second-level root is not a 4 KiB-aligned address below 2^52.
    BadTableRoot { slpt_root: u64 },
}

impl From<OutOfTablePages> for ContextError {
    fn from(error: OutOfTablePages) -> Self {
        ContextError::Pool(error)
    }
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextError::Pool(error) => write!(f, "cannot build the VT-d context tables: {error}"),
            ContextError::InvalidDomain {
                domain,
                domain_count,
            } => write!(
                f,
                "cannot use VT-d {domain}: the unit's domain IDs are 1 to {} (0 is reserved)",
                domain_count.saturating_sub(1)
            ),
            ContextError::AlreadyAssigned { source, domain } => write!(
                f,
                "cannot assign device {source}: it is already assigned to {domain}; unassign it \
                 first"
            ),
            ContextError::BadTableRoot { slpt_root } => write!(
                f,
                "cannot point a VT-d context entry at {slpt_root:#x}: second-level tables must \
                 be 4 KiB aligned below 2^52"
            ),
        }
    }
}

impl ContextTables {
    /// An empty root table (no bus present), its page withdrawn from `pages` and zeroed.
    /// `domain_count` is [`Capabilities::domain_count`](super::Capabilities::domain_count).
    pub fn new(
        memory: &mut impl TableMemory,
        pages: &mut impl TablePages,
        domain_count: u32,
    ) -> Result<Self, ContextError> {
        let root = pages
            .withdraw_page()
            .ok_or_else(|| OutOfTablePages::of(pages, 1))?;
        memory.zero(root);
        Ok(ContextTables {
            root,
            context: BTreeMap::new(),
            domain_count,
        })
    }

    /// The root table's address, for RTADDR.
    pub fn root_address(&self) -> u64 {
        self.root
    }

    /// Points `source`'s context entry at the 4-level second-level tables `slpt_root`, tagged
    /// with `domain`, translating untranslated requests only (TT = 00, no device IOTLB) and
    /// reporting faults (FPD = 0). A bus's first device takes a context-table page from
    /// `pages`. Assigning a device again to the same domain and tables changes nothing.
    pub fn assign(
        &mut self,
        memory: &mut impl TableMemory,
        pages: &mut impl TablePages,
        source: SourceId,
        domain: DomainId,
        slpt_root: u64,
    ) -> Result<(), ContextError> {
        if domain.0 == 0 || u32::from(domain.0) >= self.domain_count {
            return Err(ContextError::InvalidDomain {
                domain,
                domain_count: self.domain_count,
            });
        }
        if !slpt_root.is_multiple_of(PAGE_SIZE) || slpt_root & !ADDRESS_MASK != 0 {
            return Err(ContextError::BadTableRoot { slpt_root });
        }
        if let Some((assigned, root)) = self.entry(memory, source) {
            if (assigned, root) == (domain, slpt_root) {
                return Ok(());
            }
            return Err(ContextError::AlreadyAssigned {
                source,
                domain: assigned,
            });
        }
        let table = match self.context.get(&source.bus) {
            Some(&table) => table,
            None => {
                let page = pages
                    .withdraw_page()
                    .ok_or_else(|| OutOfTablePages::of(pages, 1))?;
                memory.zero(page);
                memory.write(self.root, 2 * usize::from(source.bus) + 1, 0);
                memory.write(self.root, 2 * usize::from(source.bus), page | PRESENT);
                self.context.insert(source.bus, page);
                page
            }
        };
        let slot = 2 * usize::from(source.devfn);
        let high = u64::from(domain.0) << DID_SHIFT | AW_FOUR_LEVEL;
        memory.write(table, slot + 1, high);
        memory.write(table, slot, slpt_root | PRESENT);
        Ok(())
    }

    /// Clears `source`'s context entry, so the unit blocks its DMA (a "context entry not
    /// present" fault); the domain it had, if any. The bus's context table stays (a later
    /// assignment reuses it).
    pub fn unassign(
        &mut self,
        memory: &mut impl TableMemory,
        source: SourceId,
    ) -> Option<DomainId> {
        let (domain, _) = self.entry(memory, source)?;
        let table = *self.context.get(&source.bus)?;
        let slot = 2 * usize::from(source.devfn);
        memory.write(table, slot, 0);
        memory.write(table, slot + 1, 0);
        Some(domain)
    }

    /// The domain and second-level root `source` is assigned to, read back from the tables.
    pub fn entry(&self, memory: &impl TableMemory, source: SourceId) -> Option<(DomainId, u64)> {
        let table = *self.context.get(&source.bus)?;
        let slot = 2 * usize::from(source.devfn);
        let low = memory.read(table, slot);
        if low & PRESENT == 0 {
            return None;
        }
        let high = memory.read(table, slot + 1);
        let domain = DomainId((high >> DID_SHIFT) as u16);
        Some((domain, low & ADDRESS_MASK))
    }

    /// The context table of `bus`, if one was made.
    pub fn context_table(&self, bus: u8) -> Option<u64> {
        self.context.get(&bus).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    use crate::memory::FrameAllocator;
    use crate::partition::pool::PartitionPool;
    use crate::slat::HeapTableMemory;

    fn setup(pages: u64) -> (FrameAllocator, PartitionPool, HeapTableMemory) {
        let mut frames = FrameAllocator::new(&[vec![(0x100_0000, 0x200_0000)]]);
        let mut pool = PartitionPool::new("iommu", 0);
        pool.deposit(&mut frames, pages * PAGE_SIZE).unwrap();
        (frames, pool, HeapTableMemory::new())
    }

    const NVME: SourceId = SourceId {
        bus: 0x03,
        devfn: 0x08,
    };

    #[test]
    fn assign_writes_root_and_context_entries_as_the_spec_lays_them_out() {
        let (_frames, mut pool, mut memory) = setup(4);
        let mut tables = ContextTables::new(&mut memory, &mut pool, 1 << 16).unwrap();
        let root = tables.root_address();
        tables
            .assign(&mut memory, &mut pool, NVME, DomainId(0x1234), 0x7654_3000)
            .unwrap();
        let context = tables.context_table(3).unwrap();
        // Root entry 3: context-table pointer | P, high half zero.
        assert_eq!(memory.read(root, 6), context | 1);
        assert_eq!(memory.read(root, 7), 0);
        // Context entry 8: SLPTPTR | P (TT = 00, FPD = 0); DID 0x1234 in 23:8, AW = 2.
        assert_eq!(memory.read(context, 16), 0x7654_3001);
        assert_eq!(memory.read(context, 17), 0x12_3402);
        // Nothing else written.
        for index in (0..512).filter(|&i| i != 6) {
            assert_eq!(memory.read(root, index), 0);
        }
        assert_eq!(
            tables.entry(&memory, NVME),
            Some((DomainId(0x1234), 0x7654_3000))
        );
        assert_eq!(memory.page_count(), 2);

        // A second device on the same bus reuses the context table.
        let second = SourceId {
            bus: 3,
            devfn: 0x10,
        };
        tables
            .assign(&mut memory, &mut pool, second, DomainId(2), 0x8000)
            .unwrap();
        assert_eq!(memory.page_count(), 2);
        assert_eq!(pool.balance_pages(), 2);
    }

    #[test]
    fn conflicts_and_bad_arguments_are_refused() {
        let (_frames, mut pool, mut memory) = setup(2);
        let mut tables = ContextTables::new(&mut memory, &mut pool, 256).unwrap();
        let mut assign = |tables: &mut ContextTables, source, domain, root| {
            tables.assign(&mut memory, &mut pool, source, DomainId(domain), root)
        };
        assert_eq!(
            assign(&mut tables, NVME, 0, 0x8000),
            Err(ContextError::InvalidDomain {
                domain: DomainId(0),
                domain_count: 256
            })
        );
        assert!(matches!(
            assign(&mut tables, NVME, 256, 0x8000),
            Err(ContextError::InvalidDomain { .. })
        ));
        assert_eq!(
            assign(&mut tables, NVME, 1, 0x8001),
            Err(ContextError::BadTableRoot { slpt_root: 0x8001 })
        );
        assert!(assign(&mut tables, NVME, 1, 1 << 52).is_err());
        assert_eq!(assign(&mut tables, NVME, 1, 0x8000), Ok(()));
        assert_eq!(assign(&mut tables, NVME, 1, 0x8000), Ok(()));
        let err = assign(&mut tables, NVME, 2, 0x9000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot assign device 03:01.0: it is already assigned to domain 1; unassign it first"
        );
        assert!(assign(&mut tables, NVME, 1, 0x9000).is_err());
        // The pool is empty now: a device on another bus cannot get a context table.
        let other_bus = SourceId { bus: 4, devfn: 0 };
        assert!(matches!(
            assign(&mut tables, other_bus, 1, 0x8000),
            Err(ContextError::Pool(_))
        ));
        assert_eq!(tables.context_table(4), None);
        assert_eq!(tables.entry(&memory, other_bus), None);
    }

    #[test]
    fn unassign_clears_the_entry_and_allows_a_new_domain() {
        let (_frames, mut pool, mut memory) = setup(2);
        let mut tables = ContextTables::new(&mut memory, &mut pool, 256).unwrap();
        tables
            .assign(&mut memory, &mut pool, NVME, DomainId(5), 0x8000)
            .unwrap();
        assert_eq!(tables.unassign(&mut memory, NVME), Some(DomainId(5)));
        assert_eq!(tables.unassign(&mut memory, NVME), None);
        let context = tables.context_table(3).unwrap();
        assert_eq!((memory.read(context, 16), memory.read(context, 17)), (0, 0));
        assert_eq!(tables.entry(&memory, NVME), None);
        tables
            .assign(&mut memory, &mut pool, NVME, DomainId(6), 0x9000)
            .unwrap();
        assert_eq!(tables.entry(&memory, NVME), Some((DomainId(6), 0x9000)));
    }
}
