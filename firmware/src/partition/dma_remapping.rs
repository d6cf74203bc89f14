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
//! AMD-Vi units forward a passed-through function's interrupt messages untranslated (their
//! interrupt remapping is not used yet): the hypervisor writes those messages itself.
//!
//! Where the unit offers it, interrupt remapping is turned on as the unit starts (with the
//! invalidation queue it needs): every message a passed-through function sends must then
//! name an interrupt-remapping entry the hypervisor wrote for that very function (source-ID
//! checked), or the unit refuses it. Invalidation goes through the queue where it is on, by
//! registers otherwise (VT-d §6.5).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use numavisor_policy::iommu::amd_vi::{
    self, AmdViError, AmdViUnit, DeviceTableEntry, Interrupts, UnitLayout,
};
use numavisor_policy::iommu::vtd::{
    ApicMode, ContextError, ContextTables, InterruptRemapEntry, QueueConfig, VtdError, VtdUnit,
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
    /// No free page for the root or a context table.
    OutOfMemory,
    /// An interrupt-remapping entry that cannot be written.
    InterruptEntry(alloc::string::String),
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
            AttachError::OutOfMemory => f.write_str("no free page for a VT-d context table"),
            AttachError::InterruptEntry(e) => write!(f, "interrupt remapping: {e}"),
        }
    }
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
    /// Its interrupt-remapping table's page, where interrupt remapping is on.
    interrupt_table: Option<u64>,
}

/// A started AMD-Vi unit.
struct AmdViState {
    driver: AmdViUnit<UnitRegisters>,
    /// Requester IDs its device table holds.
    entries: u32,
}

/// Pages of an AMD-Vi device table: 2 MiB, an entry for every requester ID (QEMU reads any
/// device's entry without checking the table's size).
const AMD_VI_DEVICE_TABLE_PAGES: u16 = 512;

/// Interrupt-remapping entries per unit: one page of 16-byte entries, 2^8 (more than the
/// hypervisor's device vectors).
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
                let entry = DeviceTableEntry {
                    domain,
                    page_table_root: root,
                    interrupts: Interrupts::Untranslated,
                };
                amd.driver
                    .set_device(&mut queue, source, &entry)
                    .map_err(AttachError::AmdVi)
            }
        }
    }

    /// Writes (or, with `None`, clears) interrupt-remapping entry `index` of `unit` and
    /// invalidates the unit's cached entries. `Ok(false)`: the unit remaps no interrupts (it
    /// is not started, or has no interrupt remapping): the caller sends compatibility-format
    /// messages.
    pub fn program_interrupt(
        &mut self,
        unit: &RemappingUnit,
        index: u16,
        entry: Option<InterruptRemapEntry>,
    ) -> Result<bool, AttachError> {
        let Some(Unit::VtD(started)) = self.units.get_mut(&unit.base) else {
            return Ok(false);
        };
        let Some(table) = started.interrupt_table else {
            return Ok(false);
        };
        if u32::from(index) >= 1 << INTERRUPT_ENTRIES_LOG2 {
            return Err(AttachError::InterruptEntry(alloc::format!(
                "entry {index} is past the table's {}",
                1u32 << INTERRUPT_ENTRIES_LOG2
            )));
        }
        let words = match entry {
            Some(entry) => entry
                .encode(ApicMode::XApic)
                .map_err(|e| AttachError::InterruptEntry(alloc::format!("{e}")))?,
            None => [0, 0],
        };
        let slot = table + u64::from(index) * 16;
        // SAFETY: a 16-byte entry of the unit's interrupt-remapping table: a hypervisor page
        // taken for it in `start`, identity mapped, written only under the remapping lock.
        // The high qword goes first and the present bit (low qword) last, so the unit never
        // sees a present entry half written; clearing writes the low qword first.
        unsafe {
            if entry.is_some() {
                ((slot + 8) as *mut u64).write_volatile(words[1]);
                (slot as *mut u64).write_volatile(words[0]);
            } else {
                (slot as *mut u64).write_volatile(0);
                ((slot + 8) as *mut u64).write_volatile(0);
            }
        }
        // SAFETY: as in `attach`.
        let mut queue = unsafe { IdentityQueue::new() };
        started
            .driver
            .invalidate_interrupt_entries(&mut queue)
            .map_err(AttachError::Unit)?;
        Ok(true)
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
    let remaps_interrupts = caps.queued_invalidation() && caps.interrupt_remapping();
    if remaps_interrupts {
        // The ring (one page: 256 descriptors) and, apart from it, the status dword the
        // unit's wait descriptors write.
        let ring = zeroed_page(memory, pages)?;
        let status = zeroed_page(memory, pages)?;
        driver
            .enable_queued_invalidation(QueueConfig {
                base: ring,
                size_log2: 0,
                status,
            })
            .map_err(AttachError::Unit)?;
    }
    driver
        .set_root_table(tables.root_address())
        .map_err(AttachError::Unit)?;
    // SAFETY: the driver names only the queue ring and status pages given it above.
    let mut queue = unsafe { IdentityQueue::new() };
    driver
        .invalidate_all(&mut queue)
        .map_err(AttachError::Unit)?;
    driver.enable_translation().map_err(AttachError::Unit)?;
    let interrupt_table = match remaps_interrupts {
        true => {
            // Every entry not present: a message naming none is refused.
            let table = zeroed_page(memory, pages)?;
            driver
                .set_interrupt_remapping_table(table, INTERRUPT_ENTRIES_LOG2, ApicMode::XApic)
                .map_err(AttachError::Unit)?;
            driver
                .invalidate_interrupt_entries(&mut queue)
                .map_err(AttachError::Unit)?;
            driver
                .enable_interrupt_remapping()
                .map_err(AttachError::Unit)?;
            Some(table)
        }
        false => {
            log::warn!(
                "VT-d unit {:#x} has no interrupt remapping: passed-through functions send \
                 compatibility-format messages, which it does not check",
                unit.base
            );
            None
        }
    };
    log::info!(
        "VT-d unit {:#x}: translation on (root table {:#x}), interrupt remapping {}",
        unit.base,
        tables.root_address(),
        if interrupt_table.is_some() {
            "on"
        } else {
            "off"
        }
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
        "AMD-Vi unit {:#x}: translation on (device table {device_table:#x}, every device \
         blocked but those given to partitions)",
        unit.base
    );
    Ok(AmdViState {
        driver,
        entries: layout.device_entries(),
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
