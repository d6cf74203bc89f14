//! The firmware's side of deposits and withdrawals (`docs/hypercalls.md`): the pool bank of
//! every partition, and carrying its plans out on the SLAT, the guest RAM, the frame
//! allocator's books and the other vCPUs' TLBs.
//!
//! Lock order: the bank, then a partition's state, then the frame allocator. No lock is held
//! across a catch-up wait (`memory_sync::wait_caught_up`), and every wait here acknowledges
//! memory changes for the waiting vCPU, so two vCPUs of one partition moving pages at once
//! cannot wait on each other, and one partition's moves never hold up another's calls.

use alloc::sync::Arc;
use alloc::vec::Vec;

use numavisor_policy::hypercall::abi::{PartitionId, Status};
use numavisor_policy::hypercall::bank::{Backing, Bank, GuestSpace, PageMove};
use numavisor_policy::iommu::amd_vi::AmdViPageTable;
use numavisor_policy::iommu::vtd::VtdSecondLevel;
use numavisor_policy::memory::BlockSize;
use numavisor_policy::memory::{HostPage, Usage};
use numavisor_policy::partition::cpu_ops::CpuOps;
use numavisor_policy::partition::guest_ram::GuestRam;
use numavisor_policy::partition::placement::GuestBlock;
use numavisor_policy::partition::pool::PartitionPool;
use numavisor_policy::pci::RemappingKind;
use numavisor_policy::report::events::{self, PoolMove};
use numavisor_policy::slat::{
    Ept, Npt, Permissions, SlatBuilder, SlatError, SlatFormat, SlatStats,
};
use numavisor_policy::vmm::exit::OwedPage;
use spin::MutexGuard;

use super::guest_memory::{IdentityTables, IncomingPage, ZeroedMove};
use super::memory_sync;
use super::{Hypervisor, Partition, PartitionState};
use crate::platform::console::report;
use crate::virt::{Active, Arch};

/// Opens the bank for the partitions built (their layout parents, by index).
pub fn open_bank(hv: &Hypervisor, built: &[&'static Partition]) {
    let parents: Vec<Option<usize>> = built
        .iter()
        .map(|p| {
            p.spec
                .parent
                .and_then(|name| built.iter().position(|other| other.name() == name))
        })
        .collect();
    *hv.bank.lock() = Bank::new(&parents);
}

/// The bank, for a vCPU of `partition` (index `vcpu`): acknowledges memory changes of its
/// own partition while it waits.
fn lock_bank(partition: &Partition, vcpu: usize) -> MutexGuard<'static, Bank> {
    let bank = &partition.hv.bank;
    partition
        .memory
        .wait_for(vcpu, &SpinCpus, || bank.try_lock())
}

/// Waiting for the bank spins: it is held only for bookkeeping, never across a wait.
struct SpinCpus;

impl CpuOps for SpinCpus {
    fn kick(&self, _vcpu: usize) {}
    fn pause(&self) {
        core::hint::spin_loop();
    }
}

/// A partition's guest RAM as the bank sees it.
struct RamSpace<'a>(&'a GuestRam);

impl GuestSpace for RamSpace<'_> {
    fn backing(&self, _partition: usize, gpa: u64) -> Option<Backing> {
        self.0.backing(gpa)
    }
}

/// Pages deposited into `index`'s pool by its parent, on `node` (`None`: all).
pub fn deposited_pages(
    hv: &Hypervisor,
    index: usize,
    node: numavisor_policy::hypercall::abi::NodeFilter,
) -> u64 {
    hv.bank.lock().deposited_pages(index, node)
}

/// Carries out a deposit by vCPU `vcpu` of `caller` into `target`'s pool of the pages at
/// `gpas`: the status and the pages moved.
pub fn deposit(
    caller: &Partition,
    vcpu: usize,
    target: PartitionId,
    gpas: &[u64],
) -> (Status, u64) {
    let guard = lock_bank(caller, vcpu);
    let mut state = caller.state.lock();
    let plan = match guard.plan_deposit(caller.index, target, gpas, &RamSpace(&state.ram)) {
        Ok(plan) => plan,
        Err(status) => return (status, 0),
    };
    // Carving splits the frame allocator's record of a block; it moves nothing, so a later
    // refusal leaves nothing to undo.
    {
        let mut frames = caller.hv.frames.lock();
        if let Some(e) = plan.moves().iter().find_map(|m| frames.carve(m.spa).err()) {
            log::error!("partition \"{}\": deposit: {e}", caller.name());
            return (Status::InsufficientMemory, 0);
        }
    }
    let pages: Vec<u64> = plan.moves().iter().map(|m| m.gpa).collect();
    if let Err(e) = unmap(caller, &mut state, &pages) {
        return (slat_status(caller, e), 0);
    }
    let ram = Arc::make_mut(&mut state.ram);
    for &gpa in &pages {
        ram.unmap_page(gpa);
    }
    let generation = memory_sync::bump(caller, &mut state);
    drop(state);
    drop(guard);
    // No CPU may reach the pages through the parent once they are in the child's pool. The
    // bank is let go meanwhile: the pages are out of the parent's RAM (no other deposit can
    // name them) and in no pool yet (no withdrawal can take them).
    memory_sync::wait_caught_up(caller, vcpu, generation);
    let hv = caller.hv;
    retag(hv, plan.moves(), Usage::Pool);
    let child = plan.child();
    let moved = plan.moves().len() as u64;
    report_move(hv, PoolMove::Deposit, caller.index, child, plan.moves());
    let orphans = lock_bank(caller, vcpu).commit_deposit(plan);
    // The child stopped while the parent caught up: its pool is gone, the pages are free.
    free_host_pages(
        hv,
        orphans.iter().map(|&(spa, _)| spa),
        "returning deposited page",
    );
    hv.emit_ledger();
    (Status::Success, moved)
}

/// Carries out a withdrawal by vCPU `vcpu` of `caller` from `target`'s pool into its slots
/// at `gpas`: the status and the pages moved.
pub fn withdraw(
    caller: &Partition,
    vcpu: usize,
    target: PartitionId,
    gpas: &[u64],
) -> (Status, u64) {
    let mut bank = lock_bank(caller, vcpu);
    let plan = match bank.plan_withdraw(caller.index, target, gpas) {
        Ok(plan) => plan,
        Err(status) => return (status, 0),
    };
    // SAFETY: each planned page is one this parent deposited into the child's pool and the
    // pool still holds unused (the bank's books); the bank, held, gives it to this move
    // alone, and it is in no guest's address space.
    let incoming = plan
        .moves()
        .iter()
        .map(|m| unsafe { IncomingPage::from_pool(m.spa) }.zeroed(m.gpa, m.node, m.vnode))
        .collect::<Vec<_>>();
    let mut state = caller.state.lock();
    if let Err(e) = map(caller, &mut state, &incoming) {
        return (slat_status(caller, e), 0);
    }
    let generation = memory_sync::bump(caller, &mut state);
    drop(state);
    // The pages are the parent's RAM now: the bank forgets them before it is let go.
    let (child, moves) = (plan.child(), plan.moves().to_vec());
    bank.commit_withdraw(plan);
    drop(bank);
    memory_sync::wait_caught_up(caller, vcpu, generation);
    let hv = caller.hv;
    retag(hv, &moves, Usage::Guest);
    report_move(hv, PoolMove::Withdraw, caller.index, child, &moves);
    hv.emit_ledger();
    (Status::Success, moves.len() as u64)
}

/// A partition about to restart gets its whole RAM back: its slots are refilled from what
/// its children's pools still hold of its deposits, and the rest from free memory of each
/// slot's node. Called with every vCPU of it parked and its state locked; false if free
/// memory could not refill every slot (the restart is then refused).
pub fn reclaim(partition: &Partition, state: &mut PartitionState) -> bool {
    let hv = partition.hv;
    let (moved, left) = hv.bank.lock().reclaim(partition.index);
    if moved.is_empty() && left.is_empty() {
        return true;
    }
    let from_pools: Vec<PageMove> = moved.iter().map(|&(_, m)| m).collect();
    retag(hv, &from_pools, Usage::Guest);
    // SAFETY: each page is one this partition deposited into a running child's pool, which
    // the bank has just taken out of that pool's books for this refill; unused, in no guest's
    // address space.
    let mut all: Vec<ZeroedMove> = from_pools
        .iter()
        .map(|m| unsafe { IncomingPage::from_pool(m.spa) }.zeroed(m.gpa, m.node, m.vnode))
        .collect();
    for child in moved
        .iter()
        .map(|&(child, _)| child)
        .collect::<alloc::collections::BTreeSet<_>>()
    {
        let pages: Vec<PageMove> = moved
            .iter()
            .filter(|&&(c, _)| c == child)
            .map(|&(_, m)| m)
            .collect();
        report_move(hv, PoolMove::Reclaim, partition.index, child, &pages);
    }
    let mut complete = true;
    {
        let mut frames = hv.frames.lock();
        for slot in &left {
            match frames.allocate_page_on(slot.node, Usage::Guest) {
                Ok(page) => {
                    all.push(IncomingPage::from_free(page).zeroed(slot.gpa, slot.node, slot.vnode))
                }
                Err(e) => {
                    log::warn!(
                        "partition \"{}\": guest-physical {:#x} cannot be refilled on node {}: {e}",
                        partition.name(),
                        slot.gpa,
                        slot.node
                    );
                    complete = false;
                }
            }
        }
    }
    if let Err(e) = map(partition, state, &all) {
        log::error!("partition \"{}\": refilling its RAM: {e}", partition.name());
        complete = false;
    }
    memory_sync::bump(partition, state);
    complete
}

/// `partition` has stopped for good: the pages its parent deposited into its pool go back
/// to free memory with the rest of it.
pub fn close(partition: &Partition) {
    let pages = partition.hv.bank.lock().close(partition.index);
    let spas = pages.iter().map(|&(spa, _)| spa);
    free_host_pages(partition.hv, spas, "returning deposited page");
}

/// Gives 4 KiB host pages back to the free memory of their nodes; a page the frame
/// allocator does not hold as taken (its books disagree) is logged as `what` and left.
fn free_host_pages(hv: &Hypervisor, spas: impl IntoIterator<Item = u64>, what: &str) {
    let mut frames = hv.frames.lock();
    for spa in spas {
        if let Err(e) = frames.free(spa, numavisor_policy::memory::BlockSize::Size4K) {
            log::error!("{what} {spa:#x}: {e}");
        }
    }
}

/// A change to a partition's SLAT after build.
enum SlatEdit<'a> {
    /// Unmap these 4 KiB pages (splitting leaves with pool pages).
    Unmap(&'a [u64]),
    /// Map each move's host page at its GPA read-write-execute (a hole keeps its split
    /// tables, so this takes no page).
    Map(&'a [ZeroedMove]),
    /// Map each plugged block whole, read-write-execute (tables from the pool).
    MapBlocks(&'a [GuestBlock]),
    /// Unmap each plugged block whole (no table taken or given back).
    UnmapBlocks(&'a [GuestBlock]),
    /// Map a passed-through function's BAR piece `(gpa, spa, bytes)` (tables from the pool).
    MapDevice((u64, u64, u64)),
    /// Unmap BAR pieces `(gpa, bytes)` mapped by `MapDevice`.
    UnmapDevice(&'a [(u64, u64)]),
}

/// Maps a passed-through function's BAR piece `(gpa, spa, bytes)` in the SLAT (it is device
/// memory: not in the RAM). All or nothing.
pub fn map_device(
    partition: &Partition,
    state: &mut PartitionState,
    piece: (u64, u64, u64),
) -> Result<(), SlatError> {
    edit_slat(partition, state, SlatEdit::MapDevice(piece))
}

/// Unmaps BAR pieces `(gpa, bytes)` from the SLAT. The caller bumps the memory generation and
/// waits for every vCPU before the guest can be said to have lost them.
pub fn unmap_device(
    partition: &Partition,
    state: &mut PartitionState,
    pieces: &[(u64, u64)],
) -> Result<(), SlatError> {
    if pieces.is_empty() {
        return Ok(());
    }
    edit_slat(partition, state, SlatEdit::UnmapDevice(pieces))
}

/// Maps blocks virtio-mem plugged (zeroed already, above the RAM built) in the SLAT and adds
/// them to the RAM. All or nothing.
pub fn plug_blocks(
    partition: &Partition,
    state: &mut PartitionState,
    blocks: &[GuestBlock],
) -> Result<(), SlatError> {
    edit_slat(partition, state, SlatEdit::MapBlocks(blocks))?;
    let ram = Arc::make_mut(&mut state.ram);
    for block in blocks {
        ram.plug(*block);
    }
    Ok(())
}

/// Takes plugged blocks out of the SLAT and the RAM. All or nothing. The caller bumps the
/// memory generation and waits for every vCPU before the host blocks are reused.
pub fn unplug_blocks(
    partition: &Partition,
    state: &mut PartitionState,
    blocks: &[GuestBlock],
) -> Result<(), SlatError> {
    edit_slat(partition, state, SlatEdit::UnmapBlocks(blocks))?;
    let ram = Arc::make_mut(&mut state.ram);
    for block in blocks {
        ram.unplug(block.gpa);
    }
    Ok(())
}

/// Unmaps 4 KiB pages from the partition's SLAT.
fn unmap(partition: &Partition, state: &mut PartitionState, gpas: &[u64]) -> Result<(), SlatError> {
    edit_slat(partition, state, SlatEdit::Unmap(gpas))
}

/// Maps each move's host page (zeroed on its way in: [`ZeroedMove`]) at its GPA (a hole of
/// the RAM) read-write-execute, in the SLAT and the RAM. All or nothing.
fn map(
    partition: &Partition,
    state: &mut PartitionState,
    zeroed: &[ZeroedMove],
) -> Result<(), SlatError> {
    edit_slat(partition, state, SlatEdit::Map(zeroed))?;
    let ram = Arc::make_mut(&mut state.ram);
    for m in zeroed.iter().map(ZeroedMove::page_move) {
        ram.map_page(m.gpa, m.spa);
    }
    Ok(())
}

/// Carries out `edit` on the SLAT of the backend's format and, where it changes the RAM, on
/// the partition's DMA remapping tables too, whose units then drop what they cached of the
/// domain (before the caller's memory catch-up, so before any page that left is reused). All
/// or nothing: the DMA tables are edited first and put back if the SLAT's edit is refused.
fn edit_slat(
    partition: &Partition,
    state: &mut PartitionState,
    edit: SlatEdit,
) -> Result<(), SlatError> {
    let slat = OpenTables {
        format: match Active::arch() {
            Arch::Svm => TableFormat::Npt,
            Arch::Vmx => TableFormat::Ept,
        },
        root: state.slat_root,
        max_page: Active::clamp_page(partition.spec.max_page),
        stats: state.slat,
    };
    let dma = state
        .dma
        .filter(|_| edit.changes_ram())
        .map(|dma| OpenTables {
            format: match dma.kind {
                RemappingKind::VtD => TableFormat::Vtd,
                RemappingKind::AmdVi => TableFormat::AmdVi,
            },
            root: dma.root,
            max_page: dma.max_page,
            stats: dma.stats,
        });
    // A partition that has released its pool has no SLAT to change.
    let Some(pool) = state.pool.as_mut() else {
        return Err(SlatError::NotMapped {
            gpa: edit.first_gpa().unwrap_or(0),
        });
    };
    // SAFETY: the builders are opened on this partition's own SLAT and DMA roots and draw new
    // tables from its pool; the caller holds the partition's state lock.
    let mut tables = unsafe { IdentityTables::new() };
    let dma_done = match dma {
        Some(dma) => Some(dma.apply(&mut tables, pool, &edit)?),
        None => None,
    };
    let slat_stats = match slat.apply(&mut tables, pool, &edit) {
        Ok((stats, _)) => stats,
        Err(e) => {
            if let (Some(dma), Some((stats, unmapped))) = (dma, &dma_done) {
                dma.with_stats(*stats)
                    .undo(&mut tables, pool, &edit, unmapped);
            }
            return Err(e);
        }
    };
    state.slat = slat_stats;
    if let (Some(tables), Some((stats, _))) = (state.dma.as_mut(), dma_done) {
        tables.stats = stats;
        partition
            .hv
            .dma
            .lock()
            .invalidate_domain(super::dma_remapping::domain_of(partition.index));
    }
    Ok(())
}

impl SlatEdit<'_> {
    /// Whether the edit changes the guest RAM (which the DMA tables map too), rather than a
    /// device's BARs (which they never map).
    fn changes_ram(&self) -> bool {
        !matches!(self, SlatEdit::MapDevice(_) | SlatEdit::UnmapDevice(_))
    }

    /// The first guest-physical address the edit names, for an error.
    fn first_gpa(&self) -> Option<u64> {
        match self {
            SlatEdit::Unmap(gpas) => gpas.first().copied(),
            SlatEdit::Map(moves) => moves.first().map(|m| m.page_move().gpa),
            SlatEdit::MapBlocks(blocks) | SlatEdit::UnmapBlocks(blocks) => {
                blocks.first().map(|b| b.gpa)
            }
            SlatEdit::MapDevice((gpa, _, _)) => Some(*gpa),
            SlatEdit::UnmapDevice(pieces) => pieces.first().map(|p| p.0),
        }
    }
}

/// The formats a partition's tables come in: its SLAT's (the backend's) and its DMA remapping
/// domain's (the unit's).
#[derive(Clone, Copy, Debug)]
enum TableFormat {
    Npt,
    Ept,
    Vtd,
    AmdVi,
}

/// One set of a partition's tables, about to be edited.
#[derive(Clone, Copy, Debug)]
struct OpenTables {
    format: TableFormat,
    root: u64,
    max_page: BlockSize,
    stats: SlatStats,
}

impl OpenTables {
    /// Carries out `edit` (all or nothing): the tables' figures afterwards, and the
    /// (GPA, host page) of each page an `Unmap` took out, for [`undo`](Self::undo).
    fn apply(
        self,
        tables: &mut IdentityTables,
        pool: &mut PartitionPool,
        edit: &SlatEdit,
    ) -> Result<(SlatStats, Vec<(u64, u64)>), SlatError> {
        match self.format {
            TableFormat::Npt => self.apply_in::<Npt>(tables, pool, edit),
            TableFormat::Ept => self.apply_in::<Ept>(tables, pool, edit),
            TableFormat::Vtd => self.apply_in::<VtdSecondLevel>(tables, pool, edit),
            TableFormat::AmdVi => self.apply_in::<AmdViPageTable>(tables, pool, edit),
        }
    }

    /// These tables with the figures `stats` (after an edit, before it is taken back).
    fn with_stats(self, stats: SlatStats) -> Self {
        OpenTables { stats, ..self }
    }

    /// Takes back an `edit` that [`apply`](Self::apply) carried out (`unmapped`: what it
    /// returned; `self` with the figures it returned). It needs no table page: an unmapped
    /// page's table is still there, and unmapping what was just mapped splits nothing.
    fn undo(
        self,
        tables: &mut IdentityTables,
        pool: &mut PartitionPool,
        edit: &SlatEdit,
        unmapped: &[(u64, u64)],
    ) {
        match self.format {
            TableFormat::Npt => self.undo_in::<Npt>(tables, pool, edit, unmapped),
            TableFormat::Ept => self.undo_in::<Ept>(tables, pool, edit, unmapped),
            TableFormat::Vtd => self.undo_in::<VtdSecondLevel>(tables, pool, edit, unmapped),
            TableFormat::AmdVi => self.undo_in::<AmdViPageTable>(tables, pool, edit, unmapped),
        }
    }

    fn apply_in<F: SlatFormat>(
        self,
        tables: &mut IdentityTables,
        pool: &mut PartitionPool,
        edit: &SlatEdit,
    ) -> Result<(SlatStats, Vec<(u64, u64)>), SlatError> {
        let mut slat = SlatBuilder::<F>::open(self.root, self.max_page, self.stats);
        let rwx = Permissions::READ_WRITE_EXECUTE;
        let mut unmapped = Vec::new();
        match *edit {
            SlatEdit::Unmap(gpas) => {
                let spas = slat.unmap_pages(tables, pool, gpas)?;
                unmapped = gpas.iter().copied().zip(spas).collect();
            }
            SlatEdit::Map(moves) => {
                for (done, m) in moves.iter().map(ZeroedMove::page_move).enumerate() {
                    if let Err(e) = slat.map(tables, pool, m.gpa, m.spa, 4096, rwx) {
                        // What was done goes back as a whole edit does.
                        let done = SlatEdit::Map(&moves[..done]);
                        self.with_stats(slat.stats())
                            .undo_in::<F>(tables, pool, &done, &[]);
                        return Err(e);
                    }
                }
            }
            SlatEdit::MapBlocks(blocks) => {
                for (done, b) in blocks.iter().enumerate() {
                    if let Err(e) = slat.map(tables, pool, b.gpa, b.spa, b.size.bytes(), rwx) {
                        let done = SlatEdit::MapBlocks(&blocks[..done]);
                        self.with_stats(slat.stats())
                            .undo_in::<F>(tables, pool, &done, &[]);
                        return Err(e);
                    }
                }
            }
            SlatEdit::UnmapBlocks(blocks) => {
                // Checked first, so that a refusal changes nothing.
                for b in blocks {
                    let mapped = slat.translate(tables, b.gpa);
                    if mapped.is_none_or(|t| t.spa != b.spa) {
                        return Err(SlatError::NotMapped { gpa: b.gpa });
                    }
                }
                for b in blocks {
                    slat.unmap_range(tables, b.gpa, b.size.bytes())?;
                }
            }
            SlatEdit::MapDevice((gpa, spa, bytes)) => {
                // Executable as RAM is: NPT can deny execution only where the host runs with
                // EFER.NXE, and the guest's own page tables decide what it runs from a BAR.
                slat.map(tables, pool, gpa, spa, bytes, rwx)?;
            }
            SlatEdit::UnmapDevice(pieces) => {
                for &(gpa, bytes) in pieces {
                    slat.unmap_range(tables, gpa, bytes)?;
                }
            }
        }
        Ok((slat.stats(), unmapped))
    }

    fn undo_in<F: SlatFormat>(
        self,
        tables: &mut IdentityTables,
        pool: &mut PartitionPool,
        edit: &SlatEdit,
        unmapped: &[(u64, u64)],
    ) {
        let mut slat = SlatBuilder::<F>::open(self.root, self.max_page, self.stats);
        let rwx = Permissions::READ_WRITE_EXECUTE;
        let undone = match *edit {
            SlatEdit::Unmap(_) => unmapped
                .iter()
                .try_for_each(|&(gpa, spa)| slat.map(tables, pool, gpa, spa, 4096, rwx)),
            SlatEdit::Map(moves) => {
                let gpas: Vec<u64> = moves.iter().map(|m| m.page_move().gpa).collect();
                match gpas.is_empty() {
                    true => Ok(()),
                    false => slat.unmap_pages(tables, pool, &gpas).map(|_| ()),
                }
            }
            SlatEdit::MapBlocks(blocks) => blocks
                .iter()
                .try_for_each(|b| slat.unmap_range(tables, b.gpa, b.size.bytes())),
            SlatEdit::UnmapBlocks(blocks) => blocks
                .iter()
                .try_for_each(|b| slat.map(tables, pool, b.gpa, b.spa, b.size.bytes(), rwx)),
            SlatEdit::MapDevice((gpa, _, bytes)) => slat.unmap_range(tables, gpa, bytes),
            SlatEdit::UnmapDevice(_) => Ok(()),
        };
        if let Err(e) = undone {
            log::error!("taking back a table edit the SLAT refused: {e}");
        }
    }
}

/// The status for a SLAT change that was refused (nothing changed).
fn slat_status(partition: &Partition, error: SlatError) -> Status {
    match error {
        SlatError::Pool(_) => Status::InsufficientMemory,
        other => {
            log::warn!(
                "partition \"{}\": memory move refused: {other}",
                partition.name()
            );
            Status::InvalidParameter
        }
    }
}

/// Counts the moved host pages under `usage` in the ledger.
fn retag(hv: &Hypervisor, moves: &[PageMove], usage: Usage) {
    let mut frames = hv.frames.lock();
    for m in moves {
        if let Err(e) = frames.retag(m.spa, usage) {
            log::error!("page {:#x} moved as {usage}: {e}", m.spa);
        }
    }
}

fn report_move(hv: &Hypervisor, kind: PoolMove, parent: usize, child: usize, moves: &[PageMove]) {
    let all = hv.partitions();
    let name = |i: usize| all.get(i).map_or("?", |p| p.name());
    let pages: Vec<(u64, u64, usize)> = moves.iter().map(|m| (m.gpa, m.spa, m.node)).collect();
    report::emit(&events::pool_move(kind, name(parent), name(child), &pages));
}

/// Why a balloon's request could not be carried out in full.
#[derive(Debug)]
pub enum BalloonError {
    /// The node backing a page to give back has no free page.
    NoMemory { gpa: u64, node: usize },
    /// The SLAT refused the change (a bug: the tables for it were deposited at build).
    Slat(SlatError),
    /// The frame allocator holds no block for a page the partition maps (corrupt books).
    Books(numavisor_policy::memory::FreeError),
}

impl core::fmt::Display for BalloonError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BalloonError::NoMemory { gpa, node } => write!(
                f,
                "host node {node} has no free page to give back guest-physical {gpa:#x}"
            ),
            BalloonError::Slat(e) => write!(f, "{e}"),
            BalloonError::Books(e) => write!(f, "the frame allocator's books disagree: {e}"),
        }
    }
}

/// The balloon of vCPU `vcpu`'s partition took the pages at `gpas` (4 KiB aligned; pages
/// outside RAM, already ballooned or deposited, or listed twice are left out): they leave
/// its SLAT and go back to the free memory of their own host node. Returns what moved.
pub fn inflate(
    partition: &Partition,
    vcpu: usize,
    gpas: &[u64],
) -> Result<Vec<PageMove>, BalloonError> {
    let mut state = partition.state.lock();
    // Owed pages have no host page to give back: they simply return to the balloon.
    for gpa in gpas {
        if state.owed.remove(gpa) {
            state.ballooned.insert(*gpa);
        }
    }
    let mut seen = alloc::collections::BTreeSet::new();
    let moves: Vec<PageMove> = gpas
        .iter()
        .filter(|&&gpa| gpa.is_multiple_of(numavisor_policy::memory::PAGE_SIZE) && seen.insert(gpa))
        .filter_map(|&gpa| {
            let b = state.ram.backing(gpa)?;
            Some(PageMove {
                gpa,
                spa: b.spa,
                node: b.node,
                vnode: b.vnode,
            })
        })
        .collect();
    if moves.is_empty() {
        return Ok(moves);
    }
    {
        let mut frames = partition.hv.frames.lock();
        for m in &moves {
            frames.carve(m.spa).map_err(BalloonError::Books)?;
        }
    }
    let pages: Vec<u64> = moves.iter().map(|m| m.gpa).collect();
    unmap(partition, &mut state, &pages).map_err(BalloonError::Slat)?;
    let ram = Arc::make_mut(&mut state.ram);
    for m in &moves {
        ram.unmap_page(m.gpa);
    }
    state.ballooned.extend(pages.iter().copied());
    let generation = memory_sync::bump(partition, &mut state);
    drop(state);
    // The pages go to free memory only once no CPU can reach them through the partition.
    memory_sync::wait_caught_up(partition, vcpu, generation);
    free_host_pages(partition.hv, moves.iter().map(|m| m.spa), "ballooned page");
    Ok(moves)
}

/// What a deflation gave back.
pub struct Deflated {
    /// The pages backed and mapped again.
    pub moves: Vec<PageMove>,
    /// The pages whose node had no free page left, as (guest-physical, node): they left the
    /// balloon all the same (the guest believes them its own, and has no way to hear
    /// otherwise) and wait, unmapped, for the guest's first touch ([`back_owed`]).
    pub owed: Vec<(u64, usize)>,
    /// How many pages were owed before.
    pub owed_before: usize,
}

/// The balloon of vCPU `vcpu`'s partition gives back the pages at `gpas` (those it holds;
/// others are left out): each is backed again by a free page of the host node backing its
/// vnode and mapped, while the node has free pages; the rest are owed.
pub fn deflate(partition: &Partition, vcpu: usize, gpas: &[u64]) -> Result<Deflated, BalloonError> {
    let mut state = partition.state.lock();
    let mut seen = alloc::collections::BTreeSet::new();
    let wanted: Vec<(u64, usize, usize)> = gpas
        .iter()
        .filter(|&&gpa| state.ballooned.contains(&gpa) && seen.insert(gpa))
        .filter_map(|&gpa| {
            let block = state.ram.block_of(gpa)?;
            Some((gpa, block.node, block.vnode))
        })
        .collect();
    let owed_before = state.owed.len();
    let (pages, owed) = allocate_available(partition.hv, &wanted);
    let zeroed = zero(pages);
    let moves: Vec<PageMove> = zeroed.iter().map(ZeroedMove::page_move).collect();
    if !moves.is_empty() {
        map_or_free(partition, &mut state, &zeroed).map_err(BalloonError::Slat)?;
    }
    for m in &moves {
        state.ballooned.remove(&m.gpa);
    }
    for &(gpa, _) in &owed {
        state.ballooned.remove(&gpa);
        state.owed.insert(gpa);
    }
    let deflated = Deflated {
        moves,
        owed,
        owed_before,
    };
    if !deflated.moves.is_empty() {
        let generation = memory_sync::bump(partition, &mut state);
        drop(state);
        memory_sync::wait_caught_up(partition, vcpu, generation);
    }
    Ok(deflated)
}

/// The guest touched `gpa`: if its page is owed (given back by the balloon while its node had
/// no free page), it is backed now, zeroed, if the node has a free page. vCPUs that cached
/// the page as absent need no flush: a SLAT caches no absent entry.
pub fn back_owed(partition: &Partition, gpa: u64) -> OwedPage {
    let page = gpa & !(numavisor_policy::memory::PAGE_SIZE - 1);
    let mut state = partition.state.lock();
    if !state.owed.contains(&page) {
        return OwedPage::NotOwed;
    }
    let Some(block) = state.ram.block_of(page) else {
        return OwedPage::NotOwed;
    };
    let node = block.node;
    let Ok(zeroed) = take_pages(partition.hv, &[(page, node, block.vnode)]) else {
        return OwedPage::NoMemory { node };
    };
    if let Err(e) = map_or_free(partition, &mut state, &zeroed) {
        log::error!(
            "partition \"{}\": backing its owed page {page:#x}: {e}",
            partition.name()
        );
        return OwedPage::NoMemory { node };
    }
    state.owed.remove(&page);
    memory_sync::bump(partition, &mut state);
    OwedPage::Backed
}

/// A host page taken for a guest page: (page, gpa, node, vnode).
type Taken = (HostPage, u64, usize, usize);

/// A free page of each `(gpa, node, vnode)`'s node while its node has one, with where it
/// goes; and the `(gpa, node)` left without one.
fn allocate_available(
    hv: &Hypervisor,
    wanted: &[(u64, usize, usize)],
) -> (Vec<Taken>, Vec<(u64, usize)>) {
    let mut pages = Vec::with_capacity(wanted.len());
    let mut short = Vec::new();
    let mut frames = hv.frames.lock();
    for &(gpa, node, vnode) in wanted {
        match frames.allocate_page_on(node, Usage::Guest) {
            Ok(page) => pages.push((page, gpa, node, vnode)),
            Err(_) => short.push((gpa, node)),
        }
    }
    (pages, short)
}

/// The pages of [`allocate_available`] as guest memory, zeroed: without the frame
/// allocator's lock, which other CPUs need meanwhile.
fn zero(pages: Vec<Taken>) -> Vec<ZeroedMove> {
    pages
        .into_iter()
        .map(|(page, gpa, node, vnode)| IncomingPage::from_free(page).zeroed(gpa, node, vnode))
        .collect()
}

/// A free page of each `(gpa, node, vnode)`'s node, as guest memory, zeroed. All or nothing:
/// if one is short, those taken go back before any is zeroed.
fn take_pages(
    hv: &Hypervisor,
    wanted: &[(u64, usize, usize)],
) -> Result<Vec<ZeroedMove>, BalloonError> {
    let (pages, short) = allocate_available(hv, wanted);
    if let Some(&(gpa, node)) = short.first() {
        let mut frames = hv.frames.lock();
        for (page, ..) in pages {
            let _ = frames.free_page(page);
        }
        return Err(BalloonError::NoMemory { gpa, node });
    }
    Ok(zero(pages))
}

/// [`map`], giving the zeroed pages back to free memory if the SLAT refuses them.
fn map_or_free(
    partition: &Partition,
    state: &mut PartitionState,
    zeroed: &[ZeroedMove],
) -> Result<(), SlatError> {
    map(partition, state, zeroed).inspect_err(|_| {
        free_host_pages(
            partition.hv,
            zeroed.iter().map(|z| z.page_move().spa),
            "page taken for a failed move",
        )
    })
}

/// Before a restart: the pages its balloon held are backed again (a restarted guest has its
/// whole RAM). False if a node has no free page for one of them.
pub fn refill_ballooned(partition: &Partition, state: &mut PartitionState) -> bool {
    // Owed pages are refilled alike: the restarted guest touches all its RAM.
    let owed = core::mem::take(&mut state.owed);
    state.ballooned.extend(owed);
    while !state.ballooned.is_empty() {
        if !refill_some(partition, state) {
            return false;
        }
    }
    true
}

/// Refills up to 256 ballooned pages (bounded allocations); false if it could not.
fn refill_some(partition: &Partition, state: &mut PartitionState) -> bool {
    let wanted: Vec<(u64, usize, usize)> = state
        .ballooned
        .iter()
        .take(256)
        .filter_map(|&gpa| {
            let block = state.ram.block_of(gpa)?;
            Some((gpa, block.node, block.vnode))
        })
        .collect();
    if wanted.is_empty() {
        // Nothing left that is RAM (cannot happen: only RAM is ballooned).
        state.ballooned.clear();
        return true;
    }
    let zeroed = match take_pages(partition.hv, &wanted) {
        Ok(zeroed) => zeroed,
        Err(e) => {
            log::warn!("partition \"{}\": {e}", partition.name());
            return false;
        }
    };
    if let Err(e) = map_or_free(partition, state, &zeroed) {
        log::error!(
            "partition \"{}\": refilling its balloon: {e}",
            partition.name()
        );
        return false;
    }
    for m in zeroed.iter().map(ZeroedMove::page_move) {
        state.ballooned.remove(&m.gpa);
    }
    memory_sync::bump(partition, state);
    true
}
