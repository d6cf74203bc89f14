//! DMA remapping at the hypervisor's edge (issue 18): the machine's VT-d units, each started
//! the first time a partition gets a function behind it, and the attachment of each
//! passed-through function to its partition's remapping domain (domain ID = partition index
//! + 1: 0 is reserved where the unit caches not-present entries).
//!
//! Until a unit is started, DMA through it is not remapped at all; once it is, every function
//! behind it that no partition owns has no context entry, so its DMA faults: the hypervisor
//! uses no device that does DMA, and a function nobody owns must not reach memory.
//!
//! Invalidation is register-based (VT-d §6.5.1), which every unit implements; the queued
//! interface is only needed for interrupt remapping, which is not used yet.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use numavisor_policy::iommu::vtd::{ContextError, ContextTables, VtdError, VtdUnit};
use numavisor_policy::iommu::{DmaFault, DomainId, SourceId};
use numavisor_policy::memory::{FrameAllocator, Usage};
use numavisor_policy::pci::RemappingUnit;
use numavisor_policy::slat::TablePages;

use super::guest_memory::IdentityTables;
use crate::platform::vtd::{IdentityQueue, VtdRegisters};

/// Why a function could not be attached.
#[derive(Debug)]
pub enum AttachError {
    /// The unit's registers lie where the hypervisor cannot map them uncached.
    Unreachable {
        base: u64,
    },
    Unit(VtdError),
    Context(ContextError),
    /// No free page for the root or a context table.
    OutOfMemory,
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::Unreachable { base } => write!(
                f,
                "the VT-d unit's registers at {base:#x} lie above 4 GiB, which the hypervisor \
                 does not map uncached"
            ),
            AttachError::Unit(e) => write!(f, "VT-d unit: {e}"),
            AttachError::Context(e) => write!(f, "VT-d context tables: {e}"),
            AttachError::OutOfMemory => f.write_str("no free page for a VT-d context table"),
        }
    }
}

/// One started unit.
struct Unit {
    driver: VtdUnit<VtdRegisters>,
    tables: ContextTables,
}

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
            alloc::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(start(unit, &mut memory, &mut pages)?)
            }
        };
        started
            .tables
            .assign(&mut memory, &mut pages, source, domain, root)
            .map_err(AttachError::Context)?;
        // SAFETY: the queue is not enabled, so no queue address is ever named.
        let mut queue = unsafe { IdentityQueue::new() };
        started
            .driver
            .invalidate_all(&mut queue)
            .map_err(AttachError::Unit)
    }

    /// Detaches `source` from whatever domain holds it and invalidates: from the return on,
    /// its DMA faults. Called before the partition's memory is released.
    pub fn detach(&mut self, unit: &RemappingUnit, source: SourceId) {
        let Some(started) = self.units.get_mut(&unit.base) else {
            return;
        };
        // SAFETY: as in `attach`.
        let mut memory = unsafe { IdentityTables::new() };
        started.tables.unassign(&mut memory, source);
        // SAFETY: as in `attach`.
        let mut queue = unsafe { IdentityQueue::new() };
        if let Err(e) = started.driver.invalidate_all(&mut queue) {
            log::error!(
                "VT-d unit {:#x}: invalidating after a detach: {e}",
                unit.base
            );
        }
    }

    /// The DMA faults every started unit recorded since the last call, with each unit's
    /// register base; whether one lost faults for want of records.
    pub fn take_faults(&mut self) -> (Vec<(u64, DmaFault)>, bool) {
        let mut faults = Vec::new();
        let mut overflowed = false;
        for (&base, unit) in &mut self.units {
            let log = unit.driver.take_faults();
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
) -> Result<Unit, AttachError> {
    // SAFETY: `unit.base` is a DRHD register base from the firmware's DMAR, driven by this
    // value alone from now on (the remapping lock serializes every use).
    let registers = unsafe { VtdRegisters::new(unit.base) }
        .ok_or(AttachError::Unreachable { base: unit.base })?;
    let mut driver = VtdUnit::new(registers).map_err(AttachError::Unit)?;
    let tables = ContextTables::new(memory, pages, driver.capabilities().domain_count())
        .map_err(|_| AttachError::OutOfMemory)?;
    driver
        .set_root_table(tables.root_address())
        .map_err(AttachError::Unit)?;
    // SAFETY: the queue is not enabled, so no queue address is ever named.
    let mut queue = unsafe { IdentityQueue::new() };
    driver
        .invalidate_all(&mut queue)
        .map_err(AttachError::Unit)?;
    driver.enable_translation().map_err(AttachError::Unit)?;
    log::info!(
        "VT-d unit {:#x}: translation on (root table {:#x})",
        unit.base,
        tables.root_address()
    );
    Ok(Unit { driver, tables })
}
