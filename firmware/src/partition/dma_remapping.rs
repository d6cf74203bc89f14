//! DMA remapping at the hypervisor's edge (issue 18): the machine's VT-d and AMD-Vi units,
//! each started the first time a partition gets a function behind it, and the attachment of
//! each passed-through function to its partition's remapping domain (domain ID = partition
//! index + 1: 0 is reserved where a VT-d unit caches not-present entries, and QEMU's AMD-Vi
//! refuses IDs from 256, which the layout's 64 partitions stay below).
//!
//! Until a unit is started, DMA through it is not remapped at all; once it is, every function
//! behind it that no partition owns has no context entry (VT-d) or a blocking device table
//! entry (AMD-Vi), so its DMA faults: the hypervisor uses no device that does DMA, and a
//! function nobody owns must not reach memory.
//!
//! Interrupts are always remapped (a unit that cannot is refused at the boot checks, or here
//! as it starts): every message a passed-through function sends must name an entry the
//! hypervisor wrote for that very function, or the unit refuses it, so a device's write into
//! the interrupt address range cannot reach another partition's CPUs or the hypervisor's.
//! - VT-d: one table per unit, turned on as the unit starts with the invalidation queue it
//!   needs; each entry is source-ID checked.
//! - AMD-Vi: one table per function, named by its device table entry, so only that function
//!   can use its entries.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use numavisor_policy::iommu::amd_vi::{
    self, AmdViError, AmdViUnit, DeviceTableEntry, InterruptEntry as AmdViInterruptEntry,
    InterruptTable, Interrupts, UnitLayout,
};
use numavisor_policy::iommu::vtd::{
    remappable_msi, ApicMode, ContextError, ContextTables, DeliveryMode as RemapDelivery,
    InterruptRemapEntry, QueueConfig, VtdError, VtdUnit,
};
use numavisor_policy::iommu::{DmaFault, DomainId, SourceId};
use numavisor_policy::memory::{BlockSize, FrameAllocator, Usage};
use numavisor_policy::pci::{RemappingKind, RemappingUnit};
use numavisor_policy::slat::TablePages;

use super::guest_memory::IdentityTables;
use crate::platform::iommu::{
    IdentityQueue, UnitRegisters, AMD_VI_REGISTER_BYTES, VTD_REGISTER_BYTES,
};

/// Why a function could not be attached.
#[derive(Debug)]
pub enum AttachError {
    /// The unit's registers lie where the hypervisor cannot map them uncached.
    Unreachable {
        base: u64,
    },
    Unit(VtdError),
    AmdVi(AmdViError),
    Context(ContextError),
    /// No free page for a root, context, device or interrupt remapping table.
    OutOfMemory,
    /// An interrupt-remapping entry that cannot be written.
    InterruptEntry(alloc::string::String),
    /// The VT-d unit at `base` offers no interrupt remapping (or not the queued invalidation
    /// it needs), although the DMAR says the platform does.
    NoInterruptRemapping {
        base: u64,
    },
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::Unreachable { base } => write!(
                f,
                "the remapping unit's registers at {base:#x} lie above 4 GiB, which the \
                 hypervisor does not map uncached"
            ),
            AttachError::Unit(e) => write!(f, "VT-d unit: {e}"),
            AttachError::AmdVi(e) => write!(f, "AMD-Vi unit: {e}"),
            AttachError::Context(e) => write!(f, "VT-d context tables: {e}"),
            AttachError::OutOfMemory => {
                f.write_str("no free page for a DMA or interrupt remapping table")
            }
            AttachError::InterruptEntry(e) => write!(f, "interrupt remapping: {e}"),
            AttachError::NoInterruptRemapping { base } => write!(
                f,
                "the VT-d unit at {base:#x} offers no interrupt remapping with queued \
                 invalidation, so a device's message could interrupt any CPU"
            ),
        }
    }
}

/// The remapping domain of the functions of the partition with index `partition`: the index
/// + 1 (domain 0 is reserved on units that cache not-present entries).
pub fn domain_of(partition: usize) -> DomainId {
    DomainId(u16::try_from(partition + 1).unwrap_or(u16::MAX))
}

/// One started unit.
enum Unit {
    VtD(VtdState),
    AmdVi(AmdViState),
}

/// A started VT-d unit.
struct VtdState {
    driver: VtdUnit<UnitRegisters>,
    tables: ContextTables,
    /// Its interrupt-remapping table's page.
    interrupt_table: u64,
}

/// A started AMD-Vi unit.
struct AmdViState {
    driver: AmdViUnit<UnitRegisters>,
    /// Requester IDs its device table holds.
    entries: u32,
    /// Each attached function's interrupt remapping table (a hypervisor page, kept for the
    /// machine's life like the device table), by requester ID.
    interrupt_tables: BTreeMap<u16, u64>,
}

/// Where a passed-through function's message is to go: a host vector of the CPU with xAPIC
/// ID `apic`, fixed delivery, physical destination, edge-triggered.
#[derive(Clone, Copy, Debug)]
pub struct InterruptTarget {
    pub vector: u8,
    pub apic: u32,
}

/// Pages of an AMD-Vi device table: 2 MiB, an entry for every requester ID (QEMU reads any
/// device's entry without checking the table's size).
const AMD_VI_DEVICE_TABLE_PAGES: u16 = 512;

/// Interrupt-remapping entries per table: 2^8, more than the hypervisor's device vectors
/// (an entry's index is its vector's slot). VT-d: 16-byte entries, one page per unit;
/// AMD-Vi: 4-byte entries, a page per function (1 KiB of it used; 128-byte alignment).
const INTERRUPT_ENTRIES_LOG2: u8 = 8;

/// Every started unit, by register base.
#[derive(Default)]
pub struct DmaRemapping {
    units: BTreeMap<u64, Unit>,
}

/// Hypervisor pages for context tables, taken from free memory as the tables need them and
/// kept for the machine's life (the ledger counts them as the hypervisor's).
struct HypervisorPages<'a> {
    frames: &'a mut FrameAllocator,
    near: Vec<usize>,
}

impl TablePages for HypervisorPages<'_> {
    fn partition(&self) -> &str {
        "the hypervisor"
    }

    fn pages_left(&self) -> usize {
        // At most one page per table the context walk makes; the allocator says when none
        // is left.
        usize::MAX
    }

    fn withdraw_page(&mut self) -> Option<u64> {
        self.frames
            .allocate_page_near(&self.near, Usage::Hypervisor)
            .ok()
            .map(|(page, _)| page.into_address())
    }
}

impl DmaRemapping {
    /// Attaches `source` (a function `unit` remaps) to `domain`, whose second-level tables
    /// start at `root`, starting the unit first if it is not yet; then invalidates the
    /// domain's cached translations (needed even for a new entry where the unit caches
    /// not-present ones).
    pub fn attach(
        &mut self,
        frames: &mut FrameAllocator,
        unit: &RemappingUnit,
        source: SourceId,
        domain: DomainId,
        root: u64,
    ) -> Result<(), AttachError> {
        let mut pages = HypervisorPages {
            frames,
            near: unit.node.into_iter().collect(),
        };
        if pages.near.is_empty() {
            pages.near.push(0);
        }
        // SAFETY: the context tables name only their own pages, taken from free memory for
        // them; the caller holds the remapping lock, so nothing else writes them.
        let mut memory = unsafe { IdentityTables::new() };
        let started = match self.units.entry(unit.base) {
            alloc::collections::btree_map::Entry::Occupied(started) => started.into_mut(),
            alloc::collections::btree_map::Entry::Vacant(slot) => slot.insert(match unit.kind {
                RemappingKind::VtD => Unit::VtD(start(unit, &mut memory, &mut pages)?),
                RemappingKind::AmdVi => Unit::AmdVi(start_amd_vi(unit, &mut memory, &mut pages)?),
            }),
        };
        // SAFETY: the driver names only the memory `start` or `start_amd_vi` gave it (queue
        // ring and status; device table, command buffer and completion qword).
        let mut queue = unsafe { IdentityQueue::new() };
        match started {
            Unit::VtD(vtd) => {
                vtd.tables
                    .assign(&mut memory, &mut pages, source, domain, root)
                    .map_err(AttachError::Context)?;
                vtd.driver
                    .invalidate_all(&mut queue)
                    .map_err(AttachError::Unit)
            }
            Unit::AmdVi(amd) => {
                if u32::from(source.requester_id()) >= amd.entries {
                    return Err(AttachError::AmdVi(AmdViError::DeviceOutsideTable {
                        device: source,
                        entries: amd.entries,
                    }));
                }
                let table = match amd.interrupt_tables.get(&source.requester_id()) {
                    Some(&table) => table,
                    None => pages.withdraw_page().ok_or(AttachError::OutOfMemory)?,
                };
                amd.interrupt_tables.insert(source.requester_id(), table);
                // A new life starts with no entry: a message names none until the guest's
                // driver programs one.
                numavisor_policy::slat::TableMemory::zero(&mut memory, table);
                let entry = DeviceTableEntry {
                    domain,
                    page_table_root: root,
                    interrupts: Interrupts::Remapped(InterruptTable {
                        address: table,
                        entries_log2: INTERRUPT_ENTRIES_LOG2,
                    }),
                };
                amd.driver
                    .set_device(&mut queue, source, &entry)
                    .map_err(AttachError::AmdVi)
            }
        }
    }

    /// Writes interrupt-remapping entry `index` for `source` (a function `unit` remaps,
    /// attached before) to send `target`, invalidates the unit's cached entries, and returns
    /// the (address, data) to program the function's MSI or MSI-X entry with.
    pub fn program_interrupt(
        &mut self,
        unit: &RemappingUnit,
        source: SourceId,
        index: u16,
        target: InterruptTarget,
    ) -> Result<(u32, u32), AttachError> {
        if u32::from(index) >= 1 << INTERRUPT_ENTRIES_LOG2 {
            return Err(AttachError::InterruptEntry(alloc::format!(
                "entry {index} is past the table's {}",
                1u32 << INTERRUPT_ENTRIES_LOG2
            )));
        }
        let entry_error = |e: &dyn fmt::Display| AttachError::InterruptEntry(alloc::format!("{e}"));
        match self.units.get_mut(&unit.base) {
            Some(Unit::VtD(started)) => {
                let words = InterruptRemapEntry {
                    vector: target.vector,
                    destination: target.apic,
                    logical: false,
                    redirection_hint: false,
                    level_triggered: false,
                    delivery: RemapDelivery::Fixed,
                    source,
                }
                .encode(ApicMode::XApic)
                .map_err(|e| entry_error(&e))?;
                started.write_vtd_entry(index, Some(words))?;
                Ok(remappable_msi(index, None))
            }
            Some(Unit::AmdVi(started)) => {
                let word = AmdViInterruptEntry {
                    vector: target.vector,
                    destination: target.apic,
                    logical: false,
                    lowest_priority: false,
                }
                .encode()
                .map_err(|e| entry_error(&e))?;
                started.write_amd_vi_entry(source, index, word)?;
                amd_vi::remapped_msi(index).ok_or_else(|| {
                    AttachError::InterruptEntry(alloc::format!(
                        "entry {index} cannot be named by a fixed message"
                    ))
                })
            }
            None => Err(AttachError::InterruptEntry(alloc::format!(
                "the remapping unit at {:#x} was never started",
                unit.base
            ))),
        }
    }

    /// Clears interrupt-remapping entry `index` of `source` (its function no longer uses
    /// it; the function was reprogrammed or masked first) and invalidates.
    pub fn clear_interrupt(
        &mut self,
        unit: &RemappingUnit,
        source: SourceId,
        index: u16,
    ) -> Result<(), AttachError> {
        if u32::from(index) >= 1 << INTERRUPT_ENTRIES_LOG2 {
            return Ok(());
        }
        match self.units.get_mut(&unit.base) {
            Some(Unit::VtD(started)) => started.write_vtd_entry(index, None),
            Some(Unit::AmdVi(started)) => started.write_amd_vi_entry(source, index, 0),
            None => Ok(()),
        }
    }

    /// Detaches `source` from whatever domain holds it and invalidates: from the return on,
    /// its DMA faults. Called before the partition's memory is released.
    pub fn detach(&mut self, unit: &RemappingUnit, source: SourceId) {
        let Some(started) = self.units.get_mut(&unit.base) else {
            return;
        };
        // SAFETY: as in `attach`.
        let mut queue = unsafe { IdentityQueue::new() };
        let done = match started {
            Unit::VtD(vtd) => {
                // SAFETY: as in `attach`.
                let mut memory = unsafe { IdentityTables::new() };
                vtd.tables.unassign(&mut memory, source);
                vtd.driver
                    .invalidate_all(&mut queue)
                    .map_err(AttachError::Unit)
            }
            Unit::AmdVi(amd) => amd
                .driver
                .block_device(&mut queue, source)
                .map_err(AttachError::AmdVi),
        };
        if let Err(e) = done {
            log::error!("remapping unit {:#x}: detaching {source}: {e}", unit.base);
        }
    }

    /// Makes every started unit drop what it caches of `domain`'s translations: after its
    /// tables changed, before a page that left them is reused. A unit that does not answer
    /// is logged (its caches may still hold the old translations: a hardware fault).
    pub fn invalidate_domain(&mut self, domain: DomainId) {
        // SAFETY: as in `attach`.
        let mut queue = unsafe { IdentityQueue::new() };
        for (base, started) in &mut self.units {
            let done = match started {
                Unit::VtD(vtd) => vtd
                    .driver
                    .invalidate_domain(&mut queue, domain)
                    .map_err(AttachError::Unit),
                Unit::AmdVi(amd) => amd
                    .driver
                    .invalidate_domain(&mut queue, domain)
                    .map_err(AttachError::AmdVi),
            };
            if let Err(e) = done {
                log::error!(
                    "remapping unit {base:#x}: invalidating domain {}: {e}",
                    domain.0
                );
            }
        }
    }

    /// The DMA faults every started unit recorded since the last call, with each unit's
    /// register base; whether one lost faults for want of records.
    pub fn take_faults(&mut self) -> (Vec<(u64, DmaFault)>, bool) {
        let mut faults = Vec::new();
        let mut overflowed = false;
        // SAFETY: as in `attach`.
        let queue = unsafe { IdentityQueue::new() };
        for (&base, unit) in &mut self.units {
            let log = match unit {
                Unit::VtD(vtd) => vtd.driver.take_faults(),
                Unit::AmdVi(amd) => match amd.driver.take_faults(&queue) {
                    Ok(log) => log,
                    Err(e) => {
                        log::error!("AMD-Vi unit {base:#x}: reading its event log: {e}");
                        continue;
                    }
                },
            };
            overflowed |= log.overflowed;
            faults.extend(log.faults.into_iter().map(|f| (base, f)));
        }
        (faults, overflowed)
    }
}

impl VtdState {
    /// Writes (`Some`) or clears entry `index` of the unit's table, then invalidates.
    fn write_vtd_entry(&mut self, index: u16, words: Option<[u64; 2]>) -> Result<(), AttachError> {
        let slot = self.interrupt_table + u64::from(index) * 16;
        // SAFETY: a 16-byte entry of the unit's interrupt-remapping table: a hypervisor page
        // taken for it in `start`, identity mapped, written only under the remapping lock.
        // The high qword goes first and the present bit (low qword) last, so the unit never
        // sees a present entry half written; clearing writes the low qword first.
        unsafe {
            match words {
                Some([low, high]) => {
                    ((slot + 8) as *mut u64).write_volatile(high);
                    (slot as *mut u64).write_volatile(low);
                }
                None => {
                    (slot as *mut u64).write_volatile(0);
                    ((slot + 8) as *mut u64).write_volatile(0);
                }
            }
        }
        // SAFETY: the driver names only the queue ring and status pages `start` gave it.
        let mut queue = unsafe { IdentityQueue::new() };
        self.driver
            .invalidate_interrupt_entries(&mut queue)
            .map_err(AttachError::Unit)
    }
}

impl AmdViState {
    /// Writes entry `index` of `source`'s table (0: RemapEn clear, the entry refuses), then
    /// has the unit reread the table.
    fn write_amd_vi_entry(
        &mut self,
        source: SourceId,
        index: u16,
        word: u32,
    ) -> Result<(), AttachError> {
        let Some(&table) = self.interrupt_tables.get(&source.requester_id()) else {
            return Err(AttachError::InterruptEntry(alloc::format!(
                "{source} has no interrupt remapping table (it was never attached)"
            )));
        };
        // SAFETY: a 4-byte entry, inside the first KiB, of the function's interrupt
        // remapping table: a hypervisor page taken for it in `attach`, identity mapped,
        // written only under the remapping lock. One aligned 32-bit store: the unit never
        // sees half an entry.
        unsafe { ((table + u64::from(index) * 4) as *mut u32).write_volatile(word) };
        // SAFETY: the driver names only the device table, command buffer and completion
        // qword `start_amd_vi` gave it.
        let mut queue = unsafe { IdentityQueue::new() };
        self.driver
            .invalidate_interrupt_table(&mut queue, source)
            .map_err(AttachError::AmdVi)
    }
}

/// Starts `unit`: empty context tables, its root table set, caches invalidated, translation
/// on.
fn start(
    unit: &RemappingUnit,
    memory: &mut IdentityTables,
    pages: &mut HypervisorPages<'_>,
) -> Result<VtdState, AttachError> {
    // SAFETY: `unit.base` is a DRHD register base from the firmware's DMAR, driven by this
    // value alone from now on (the remapping lock serializes every use).
    let registers = unsafe { UnitRegisters::new(unit.base, VTD_REGISTER_BYTES) }
        .ok_or(AttachError::Unreachable { base: unit.base })?;
    let mut driver = VtdUnit::new(registers).map_err(AttachError::Unit)?;
    let tables = ContextTables::new(memory, pages, driver.capabilities().domain_count())
        .map_err(|_| AttachError::OutOfMemory)?;
    let caps = driver.capabilities();
    if !(caps.queued_invalidation() && caps.interrupt_remapping()) {
        return Err(AttachError::NoInterruptRemapping { base: unit.base });
    }
    // The ring (one page: 256 descriptors) and, apart from it, the status dword the unit's
    // wait descriptors write.
    let ring = zeroed_page(memory, pages)?;
    let status = zeroed_page(memory, pages)?;
    driver
        .enable_queued_invalidation(QueueConfig {
            base: ring,
            size_log2: 0,
            status,
        })
        .map_err(AttachError::Unit)?;
    driver
        .set_root_table(tables.root_address())
        .map_err(AttachError::Unit)?;
    // SAFETY: the driver names only the queue ring and status pages given it above.
    let mut queue = unsafe { IdentityQueue::new() };
    driver
        .invalidate_all(&mut queue)
        .map_err(AttachError::Unit)?;
    driver.enable_translation().map_err(AttachError::Unit)?;
    // Every entry not present: a message naming none is refused.
    let interrupt_table = zeroed_page(memory, pages)?;
    driver
        .set_interrupt_remapping_table(interrupt_table, INTERRUPT_ENTRIES_LOG2, ApicMode::XApic)
        .map_err(AttachError::Unit)?;
    driver
        .invalidate_interrupt_entries(&mut queue)
        .map_err(AttachError::Unit)?;
    driver
        .enable_interrupt_remapping()
        .map_err(AttachError::Unit)?;
    log::info!(
        "VT-d unit {:#x}: translation and interrupt remapping on (root table {:#x})",
        unit.base,
        tables.root_address(),
    );
    Ok(VtdState {
        driver,
        tables,
        interrupt_table,
    })
}

/// Starts AMD-Vi `unit`: a device table whose every entry blocks its device (a zero entry
/// would let its DMA through untranslated), a command buffer, an event log and a completion
/// qword, all hypervisor pages; then the unit on.
fn start_amd_vi(
    unit: &RemappingUnit,
    memory: &mut IdentityTables,
    pages: &mut HypervisorPages<'_>,
) -> Result<AmdViState, AttachError> {
    // SAFETY: `unit.base` is an IVHD register base from the firmware's IVRS, driven by this
    // value alone from now on (the remapping lock serializes every use).
    let registers = unsafe { UnitRegisters::new(unit.base, AMD_VI_REGISTER_BYTES) }
        .ok_or(AttachError::Unreachable { base: unit.base })?;
    let mut driver = AmdViUnit::new(registers).map_err(AttachError::AmdVi)?;
    let (device_table, _) = pages
        .frames
        .allocate_near(&pages.near, BlockSize::Size2M, Usage::Hypervisor)
        .map_err(|_| AttachError::OutOfMemory)?;
    let command_buffer = zeroed_page(memory, pages)?;
    let event_log = zeroed_page(memory, pages)?;
    let completion = zeroed_page(memory, pages)?;
    // SAFETY: the driver names only the four regions allocated here for this unit.
    let mut queue = unsafe { IdentityQueue::new() };
    amd_vi::block_all(&mut queue, device_table, AMD_VI_DEVICE_TABLE_PAGES)
        .map_err(AttachError::AmdVi)?;
    let layout = UnitLayout {
        device_table,
        device_table_pages: AMD_VI_DEVICE_TABLE_PAGES,
        command_buffer,
        event_log,
        completion,
    };
    driver
        .start(&mut queue, layout)
        .map_err(AttachError::AmdVi)?;
    log::info!(
        "AMD-Vi unit {:#x}: translation and interrupt remapping on (device table \
         {device_table:#x}, every device blocked but those given to partitions)",
        unit.base
    );
    Ok(AmdViState {
        driver,
        entries: layout.device_entries(),
        interrupt_tables: BTreeMap::new(),
    })
}

/// A hypervisor page for the unit's own use (queue, status, interrupt table), zeroed.
fn zeroed_page(
    memory: &mut IdentityTables,
    pages: &mut HypervisorPages<'_>,
) -> Result<u64, AttachError> {
    let page = pages.withdraw_page().ok_or(AttachError::OutOfMemory)?;
    numavisor_policy::slat::TableMemory::zero(memory, page);
    Ok(page)
}
