//! Reaching guest memory and SLAT tables through the hypervisor's identity map.
//!
//! Guest RAM is a list of host blocks; a guest-physical address is turned into a host
//! address only through that list, so nothing outside the partition's own blocks is touched.

use numavisor_policy::partition::placement::GuestBlock;
use numavisor_policy::partition::zeroing::Span;
use numavisor_policy::slat::TableMemory;

/// The partition's guest RAM as its blocks (sorted by guest-physical address).
pub struct GuestMemory<'a> {
    blocks: &'a [GuestBlock],
    /// Writes only check that their bytes fall in guest RAM (a build-time dry run).
    checking: bool,
}

impl<'a> GuestMemory<'a> {
    /// Guest RAM that `write` fills.
    pub fn new(blocks: &'a [GuestBlock]) -> Self {
        GuestMemory {
            blocks,
            checking: false,
        }
    }

    /// Guest RAM whose `write` only says whether the bytes would fit: the contents can be
    /// checked when the partition is built and written when its CPUs start it.
    pub fn checking(blocks: &'a [GuestBlock]) -> Self {
        GuestMemory {
            blocks,
            checking: true,
        }
    }

    /// The host address of `gpa` and how many bytes follow it in the same block.
    fn translate(&self, gpa: u64) -> Option<(u64, u64)> {
        let index = self
            .blocks
            .partition_point(|b| b.gpa + b.size.bytes() <= gpa);
        let block = self.blocks.get(index)?;
        (block.gpa <= gpa).then(|| {
            (
                block.spa + (gpa - block.gpa),
                block.gpa + block.size.bytes() - gpa,
            )
        })
    }

    /// Copies `bytes` to guest-physical `gpa`; false if any byte falls outside guest RAM.
    pub fn write(&self, mut gpa: u64, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            let Some((spa, room)) = self.translate(gpa) else {
                return false;
            };
            let n = (room as usize).min(bytes.len());
            if self.checking {
                gpa += n as u64;
                bytes = &bytes[n..];
                continue;
            }
            // SAFETY: [spa, spa + n) lies inside one of this partition's guest blocks, which
            // the identity map covers and nobody else uses while the partition is built.
            unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), spa as *mut u8, n) };
            gpa += n as u64;
            bytes = &bytes[n..];
        }
        true
    }

    /// Zeroes every block (a restarted guest sees no earlier contents).
    pub fn zero_all(&self) {
        for (index, block) in self.blocks.iter().enumerate() {
            self.zero(Span {
                block: index,
                offset: 0,
                len: block.size.bytes(),
            });
        }
    }

    /// Zeroes `span` of one block (nothing where it does not lie inside that block).
    pub fn zero(&self, span: Span) {
        let Some(block) = self.blocks.get(span.block).filter(|_| !self.checking) else {
            return;
        };
        if span
            .offset
            .checked_add(span.len)
            .is_none_or(|end| end > block.size.bytes())
        {
            return;
        }
        // SAFETY: the span lies inside one of this partition's blocks of guest RAM (checked
        // above), identity mapped; no guest runs on it while it is zeroed (before its first
        // start, or while it is stopped).
        unsafe {
            core::ptr::write_bytes((block.spa + span.offset) as *mut u8, 0, span.len as usize)
        };
    }

    /// Reads a guest-physical u64, if it lies in guest RAM.
    pub fn read_u64(&self, gpa: u64) -> Option<u64> {
        let (spa, room) = self.translate(gpa)?;
        if room < 8 {
            return None;
        }
        // SAFETY: eight bytes inside one guest block, identity mapped.
        Some(unsafe { (spa as *const u64).read_unaligned() })
    }
}

/// SLAT tables live in pool pages, written through the identity map.
pub struct IdentityTables;

impl TableMemory for IdentityTables {
    fn zero(&mut self, page: u64) {
        // SAFETY: `page` was just withdrawn from the partition's pool for a table: a 4 KiB
        // page of hypervisor-owned memory, identity mapped, in no guest's address space.
        unsafe { core::ptr::write_bytes(page as *mut u8, 0, 4096) };
    }

    fn read(&self, page: u64, index: usize) -> u64 {
        // SAFETY: a table page from the pool; index < 512 is checked by the builder.
        unsafe { ((page as *const u64).add(index & 511)).read_volatile() }
    }

    fn write(&mut self, page: u64, index: usize, entry: u64) {
        // SAFETY: as in `read`.
        unsafe { ((page as *mut u64).add(index & 511)).write_volatile(entry) };
    }
}

impl numavisor_policy::vmm::guest_walk::GuestPhysical for GuestMemory<'_> {
    fn read_u8(&self, gpa: u64) -> Option<u8> {
        let (spa, _) = self.translate(gpa)?;
        // SAFETY: one byte inside one of this partition's guest blocks, identity mapped; a
        // racing guest write only changes the value read.
        Some(unsafe { (spa as *const u8).read_volatile() })
    }

    // One block lookup per entry rather than eight: page walks read u64s.
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        GuestMemory::read_u64(self, gpa)
    }
}
