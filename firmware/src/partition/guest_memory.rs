//! Reaching guest memory and SLAT tables through the hypervisor's identity map.
//!
//! Guest RAM is a [`GuestRam`]: host blocks, less the pages given up since and plus their
//! refills; a guest-physical address is turned into a host address only through it, so
//! nothing outside the partition's own pages is touched. Each vCPU holds a shared copy
//! (`Arc`), replaced when the partition's memory changes (`Partition::memory`).

use alloc::sync::Arc;
use core::cell::{Cell, RefCell};

use numavisor_policy::devices::virtio::QueueMemory;
use numavisor_policy::hypercall::bank::PageMove;
use numavisor_policy::memory::HostPage;
use numavisor_policy::partition::guest_ram::GuestRam;
use numavisor_policy::partition::zeroing::Span;
use numavisor_policy::slat::TableMemory;

/// A device's queues reach guest memory through the same checked copies.
impl QueueMemory for GuestMemory {
    fn read(&self, gpa: u64, buffer: &mut [u8]) -> bool {
        GuestMemory::read(self, gpa, buffer)
    }

    fn write(&self, gpa: u64, bytes: &[u8]) -> bool {
        GuestMemory::write(self, gpa, bytes)
    }
}

/// The partition's guest RAM, as one vCPU (or the builder) sees it.
pub struct GuestMemory {
    /// A cell so that the vCPU moving pages can let go of its copy meanwhile (the moves then
    /// edit the partition's RAM in place rather than copying it).
    ram: RefCell<Arc<GuestRam>>,
    /// Writes only check that their bytes fall in guest RAM (a build-time dry run).
    checking: bool,
    /// The block the last translation found (`GuestRam::translate_near`).
    hint: Cell<usize>,
}

impl GuestMemory {
    /// Guest RAM that `write` fills.
    pub fn new(ram: Arc<GuestRam>) -> Self {
        GuestMemory {
            ram: RefCell::new(ram),
            checking: false,
            hint: Cell::new(0),
        }
    }

    /// Guest RAM whose `write` only says whether the bytes would fit: the contents can be
    /// checked when the partition is built and written when its CPUs start it.
    pub fn checking(ram: Arc<GuestRam>) -> Self {
        GuestMemory {
            checking: true,
            ..GuestMemory::new(ram)
        }
    }

    /// Lets go of this view's copy of the RAM (it reaches nothing until [`attach`]): a vCPU
    /// about to move pages, so the partition's RAM is edited in place, not copied.
    ///
    /// [`attach`]: GuestMemory::attach
    pub fn detach(&self) {
        *self.ram.borrow_mut() = Arc::new(GuestRam::default());
    }

    /// Reaches `ram` from now on.
    pub fn attach(&self, ram: Arc<GuestRam>) {
        *self.ram.borrow_mut() = ram;
    }

    /// The host address of `gpa` and how many bytes follow it at contiguous host addresses.
    #[inline(always)]
    fn translate(&self, gpa: u64) -> Option<(u64, u64)> {
        let mut hint = self.hint.get();
        let found = self.ram.borrow().translate_near(gpa, &mut hint);
        self.hint.set(hint);
        found
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
            // SAFETY: [spa, spa + n) is host memory backing this partition's guest RAM, which
            // the identity map covers; the guest may race with it, the hypervisor does not.
            unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), spa as *mut u8, n) };
            gpa += n as u64;
            bytes = &bytes[n..];
        }
        true
    }

    /// Copies guest-physical `gpa..` into `buffer`; false if any byte falls outside guest RAM.
    pub fn read(&self, mut gpa: u64, mut buffer: &mut [u8]) -> bool {
        while !buffer.is_empty() {
            let Some((spa, room)) = self.translate(gpa) else {
                return false;
            };
            let n = (room as usize).min(buffer.len());
            // SAFETY: [spa, spa + n) is host memory backing this partition's guest RAM,
            // identity mapped; a racing guest write only changes the bytes read.
            unsafe { core::ptr::copy_nonoverlapping(spa as *const u8, buffer.as_mut_ptr(), n) };
            gpa += n as u64;
            buffer = &mut buffer[n..];
        }
        true
    }

    /// Zeroes every host page of the RAM (a restarted guest sees no earlier contents).
    pub fn zero_all(&self) {
        if self.checking {
            return;
        }
        for (start, end) in self.ram.borrow().host_ranges() {
            // SAFETY: a host range backing this partition's guest RAM (its blocks less the
            // pages it gave up, plus their refills), identity mapped; no guest runs on it
            // while it is zeroed (the partition is stopped).
            unsafe { core::ptr::write_bytes(start as *mut u8, 0, (end - start) as usize) };
        }
    }

    /// Zeroes `span` of one block (nothing where it does not lie inside that block). Only
    /// before the first start, when no page has moved.
    pub fn zero(&self, span: Span) {
        let ram = self.ram.borrow();
        let Some(block) = ram.blocks().get(span.block).filter(|_| !self.checking) else {
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
        // SAFETY: eight bytes of host memory backing this partition's RAM, identity mapped.
        Some(unsafe { (spa as *const u64).read_unaligned() })
    }
}

/// A host page on its way into a guest's address space, held by this move alone until it is
/// mapped: made from an owned [`HostPage`] taken from free memory, or (`unsafe`, the caller
/// vouching for it) from a page a pool hands back.
///
/// Pages come back to free memory and to pools with their contents: another partition's
/// data, SLAT tables (host addresses), permission bitmaps, control blocks. numavisor zeroes on
/// map rather than on free: the SLAT edit that maps pages after build takes only
/// [`ZeroedMove`]s, and [`IncomingPage::zeroed`] is the only way to make one, so no path that
/// hands a page to a guest (balloon deflation, withdrawal, refills at restart) can skip the
/// zeroing, and memory that was never a guest's (the firmware's leftovers at boot) is covered
/// too. The moving vCPU zeroes, on a CPU of the partition that receives the page.
pub struct IncomingPage {
    spa: u64,
}

/// A move whose page was zeroed on its way in: what the SLAT edit maps.
#[derive(Clone, Copy, Debug)]
pub struct ZeroedMove(PageMove);

impl ZeroedMove {
    /// The move, for the books (GPA, host page, node, vnode).
    pub fn page_move(&self) -> PageMove {
        self.0
    }
}

impl IncomingPage {
    /// A page taken from free memory.
    pub fn from_free(page: HostPage) -> IncomingPage {
        IncomingPage {
            spa: page.into_address(),
        }
    }

    /// A page a pool hands back for this move.
    ///
    /// # Safety
    ///
    /// `spa` is a 4 KiB-aligned page of RAM, identity mapped, that the caller alone holds:
    /// taken out of a pool's balance (unused) for this move, in no guest's address space and
    /// used by nothing else until it is mapped.
    pub unsafe fn from_pool(spa: u64) -> IncomingPage {
        IncomingPage { spa }
    }

    /// Zeroes the page and makes it the move of `gpa` (with its host node and vnode).
    pub fn zeroed(self, gpa: u64, node: usize, vnode: usize) -> ZeroedMove {
        debug_assert!(self.spa.is_multiple_of(4096));
        // SAFETY: an IncomingPage is held by its move alone (an owned HostPage, or a pool
        // page its `from_pool` caller vouched for), and the identity map covers all RAM.
        unsafe { core::ptr::write_bytes(self.spa as *mut u8, 0, 4096) };
        ZeroedMove(PageMove {
            gpa,
            spa: self.spa,
            node,
            vnode,
        })
    }
}

/// SLAT tables live in pool pages, written through the identity map. Holding one is the
/// token for raw writes at any address the SLAT builder names: only `unsafe` makes one.
pub struct IdentityTables {
    _token: (),
}

impl IdentityTables {
    /// The tables of one SLAT being built or edited.
    ///
    /// # Safety
    ///
    /// Every page the builder is given through this value is a table page of the one SLAT it
    /// builds or edits: its root, a page it withdrew for a table from the partition's pool, or
    /// a table it reached from that root. The builder only names such pages (it walks its own
    /// tables and takes new ones from the pool); the caller holds the partition's state lock
    /// (or owns the partition being built), so nothing else writes them meanwhile.
    pub unsafe fn new() -> IdentityTables {
        IdentityTables { _token: () }
    }
}

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

impl numavisor_policy::vmm::guest_walk::GuestPhysical for GuestMemory {
    #[inline]
    fn read_u8(&self, gpa: u64) -> Option<u8> {
        let (spa, _) = self.translate(gpa)?;
        // SAFETY: one byte of host memory backing this partition's RAM, identity mapped; a
        // racing guest write only changes the value read.
        Some(unsafe { (spa as *const u8).read_volatile() })
    }

    // One block lookup per entry rather than eight: page walks read u64s.
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        GuestMemory::read_u64(self, gpa)
    }

    // One lookup per piece of an instruction rather than one per byte.
    fn read_bytes(&self, gpa: u64, buf: &mut [u8]) -> bool {
        GuestMemory::read(self, gpa, buf)
    }
}
