//! The partition manager: builds every partition of the embedded layout at boot, hands each
//! vCPU to its pinned CPU, routes interrupts between a partition's vCPUs, and contains
//! whatever a guest does to its own partition.

mod build;
mod control;
mod dynamic;
mod guest_memory;
mod hypercalls;
mod input;
mod interrupts;
mod machine;
mod memory_sync;
mod monitor;
mod page_moves;
mod vcpu_loop;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use log::{info, warn};
use numavisor_layout::{ExitAction, Layout, PartitionSpec};
use numavisor_policy::memory::FrameAllocator;
use numavisor_policy::partition::guest_ram::GuestRam;
use numavisor_policy::partition::memory_sync::MemoryGenerations;
use numavisor_policy::partition::placement::VcpuPlan;
use numavisor_policy::partition::pool::PartitionPool;
use numavisor_policy::report::events;
use numavisor_policy::topology::Topology;
use numavisor_policy::vmexit::ExitKind;
use numavisor_policy::vmm::exit::StopKind;
use numavisor_policy::vmm::platform::PlatformDevices;
use numavisor_policy::vmm::vcpu::EntryState;
use spin::Mutex;

use crate::platform::console::report;
use crate::platform::debug_exit;
use crate::virt::ControlPages;

pub use build::HOST_DISTANCES;
pub use control::VcpuSlot;
pub use input::poll_console_input;
pub use vcpu_loop::run_assigned_vcpu;

/// The machine's free memory after boot, shared by every CPU (partition stops return memory).
pub static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);

/// The partitions that were built, by index.
static PARTITIONS: Mutex<Vec<&'static Partition>> = Mutex::new(Vec::new());

/// Partitions still running; `exit=partitions` ends the run when it reaches zero.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static EXIT_WHEN_ALL_STOPPED: AtomicUsize = AtomicUsize::new(0);

/// The TSC at `ready`, for the ready-to-first-guest-instruction figure.
pub static READY_TSC: AtomicU64 = AtomicU64::new(0);

/// vCPUs waiting for their CPU: (APIC ID, partition index, vCPU index).
static ASSIGNMENTS: Mutex<Vec<(u32, usize, usize)>> = Mutex::new(Vec::new());

/// The host pages each vCPU-running CPU's virtualization needs (`Backend::enable_this_cpu`),
/// by APIC ID, taken from the CPU's node when the partitions are built: so the ledger printed
/// then already counts them, and a CPU's start cannot fail for lack of memory later.
static HOST_PAGES: Mutex<alloc::collections::BTreeMap<u32, Vec<u64>>> =
    Mutex::new(alloc::collections::BTreeMap::new());

/// Takes the host pages reserved for the CPU with `apic_id` (none if it has them already).
pub fn take_host_pages(apic_id: u32) -> Vec<u64> {
    HOST_PAGES.lock().remove(&apic_id).unwrap_or_default()
}

/// Reserves each vCPU's CPU its host pages on its node, once per CPU.
fn reserve_host_pages() {
    let per_cpu = crate::virt::Active::host_pages_per_cpu();
    let mut reserved = HOST_PAGES.lock();
    for partition in PARTITIONS.lock().iter() {
        let plans: Vec<(u32, usize)> = partition
            .state
            .lock()
            .vcpus
            .iter()
            .map(|plan| (plan.apic_id, plan.node))
            .collect();
        for (apic_id, node) in plans {
            reserved.entry(apic_id).or_insert_with(|| {
                (0..per_cpu)
                    .filter_map(|_| vcpu_loop::host_page(node))
                    .collect()
            });
        }
    }
}

/// One partition: its layout entry, what it owns, its devices and its vCPUs' shared state.
pub struct Partition {
    pub index: usize,
    pub spec: &'static PartitionSpec,
    pub state: Mutex<PartitionState>,
    /// The shared virtual devices (UART, I/O APIC, PIT, RTC, ...).
    pub devices: Mutex<PlatformDevices>,
    /// Per vCPU: local APIC, start-up signals, host CPU.
    pub vcpus: Vec<VcpuSlot>,
    /// Stop and restart coordination between the partition's vCPUs.
    pub control: control::Control,
    /// VM exits by kind, over every vCPU, since the partition was built.
    pub exit_counts: ExitCounters,
    /// How many of its vCPUs' CPUs have zeroed their share of its RAM for the first start.
    pub zeroed_shares: core::sync::atomic::AtomicUsize,
    /// Moves when its guest RAM or SLAT changes after build (pages deposited, withdrawn,
    /// ballooned): each vCPU then renews its copy of the RAM and flushes its CPU's SLAT
    /// translations before it enters the guest again (`memory_sync`).
    pub memory: MemoryGenerations,
    /// Dynamic Memory's state (targets, the guest's last statistics).
    pub dynamic: Mutex<dynamic::DynamicState>,
}

/// VM exits by kind ([`ExitKind`]), counted by every vCPU of a partition.
#[derive(Default)]
pub struct ExitCounters([AtomicU64; ExitKind::ALL.len()]);

impl ExitCounters {
    pub fn count(&self, kind: ExitKind) {
        self.0[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts, named as the report names them.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        ExitKind::ALL
            .iter()
            .map(|k| (k.name(), self.0[k.index()].load(Ordering::Relaxed)))
            .collect()
    }
}

/// Host TSC ticks between `exit_counts` events (`exit-stats=MS`); 0: only at stops.
pub static EXIT_STATS_PERIOD: AtomicU64 = AtomicU64::new(0);

/// Prints partition `partition`'s exit counts now.
pub fn emit_exit_counts(partition: &Partition) {
    report::emit(&events::exit_counts(
        partition.name(),
        crate::platform::cpu::tsc::micros_since_entry(),
        &partition.exit_counts.snapshot(),
    ));
}

/// What a partition owns while it exists.
pub struct PartitionState {
    pub pool: Option<PartitionPool>,
    /// Its guest RAM; vCPUs hold copies, renewed when `Partition::memory` moves.
    pub ram: alloc::sync::Arc<GuestRam>,
    /// The GPAs of its RAM its balloon holds (their pages went back to free memory).
    pub ballooned: alloc::collections::BTreeSet<u64>,
    pub vcpus: Vec<VcpuPlan>,
    /// The backend's control blocks and permission bitmaps, from the pool.
    pub controls: Option<ControlPages>,
    pub slat_root: u64,
    /// The partition's tagged-TLB id (ASID, VPID).
    pub tlb_tag: u32,
    pub restarts: u32,
    pub slat: numavisor_policy::slat::SlatStats,
    /// Where vCPU 0 starts (the others wait for INIT/SIPI).
    pub entry: EntryState,
    /// Guest TSC = host TSC + this: near 0 when the guest starts, the same on every vCPU.
    pub tsc_offset: u64,
    /// TSC just before the first VMRUN of vCPU 0.
    pub first_entry_tsc: Option<u64>,
    /// VM exits handled and the TSC at the last stop (exit-rate figure).
    pub exits: u64,
    pub stop_tsc: u64,
}

impl Partition {
    /// The partition's name from the layout.
    pub fn name(&self) -> &'static str {
        self.spec.name
    }
}

/// Builds every partition of `layout` that fits this machine; refuses (and reports) the rest.
/// Returns how many were built.
pub fn build_all(
    layout: &'static Layout,
    topology: &Topology,
    online: &[u32],
    exit_when_all_stopped: bool,
) -> usize {
    EXIT_WHEN_ALL_STOPPED.store(exit_when_all_stopped as usize, Ordering::SeqCst);
    let mut available: alloc::collections::BTreeSet<u32> = online.iter().copied().collect();
    let mut built = 0;
    for spec in layout.partitions {
        let index = PARTITIONS.lock().len();
        let mut frames_guard = FRAMES.lock();
        let Some(frames) = frames_guard.as_mut() else {
            return built;
        };
        match build::build(index, spec, topology, frames, &mut available) {
            Ok(partition) => {
                let partition: &'static Partition =
                    alloc::boxed::Box::leak(alloc::boxed::Box::new(partition));
                report::emit(&build::report_event(partition, "running"));
                info!(
                    "partition \"{}\": built with {} vCPU(s), running",
                    spec.name,
                    partition.vcpus.len()
                );
                PARTITIONS.lock().push(partition);
                dynamic::start(partition);
                RUNNING.fetch_add(1, Ordering::SeqCst);
                built += 1;
            }
            Err(reason) => {
                warn!("partition \"{}\" refused: {reason}", spec.name);
                report::emit(&events::partition_refused(
                    spec.name,
                    &alloc::format!("{reason}"),
                ));
            }
        }
    }
    reserve_host_pages();
    dynamic::reserve_heap();
    page_moves::open_bank(&PARTITIONS.lock());
    if let Some(frames) = FRAMES.lock().as_ref() {
        report::emit(&events::ledger(&frames.ledger()));
    }
    built
}

/// Queues every vCPU of every partition for its pinned CPU and wakes the CPUs: vCPU 0 enters
/// the guest, the others wait for the guest's INIT and start-up IPIs.
pub fn start_all(wake: impl Fn(u32)) {
    let partitions = PARTITIONS.lock().clone();
    let mut queued = Vec::new();
    for partition in partitions {
        for (index, slot) in partition.vcpus.iter().enumerate() {
            queued.push((slot.host_apic_id, partition.index, index));
        }
    }
    ASSIGNMENTS.lock().extend(queued.iter().copied());
    for (apic_id, _, _) in queued {
        wake(apic_id);
    }
    if RUNNING.load(Ordering::SeqCst) == 0 {
        all_stopped();
    }
}

/// The vCPU queued for the CPU with `apic_id`, if any.
pub fn take_assignment(apic_id: u32) -> Option<(&'static Partition, usize)> {
    let mut queue = ASSIGNMENTS.lock();
    let position = queue.iter().position(|&(id, _, _)| id == apic_id)?;
    let (_, index, vcpu) = queue.remove(position);
    let partition = *PARTITIONS.lock().get(index)?;
    Some((partition, vcpu))
}

/// Every partition built, by index (the console input switch reads it).
pub fn partitions() -> Vec<&'static Partition> {
    PARTITIONS.lock().clone()
}

/// Ends or restarts `partition` after `reason`, once every vCPU of it is parked; returns
/// true if it should run again.
pub fn stop_or_restart(partition: &Partition, kind: StopKind, reason: &str, detail: &str) -> bool {
    let action = match kind {
        StopKind::GuestExit | StopKind::Reboot => partition.spec.on_shutdown,
        StopKind::Fault => partition.spec.on_fault,
        StopKind::PowerOff | StopKind::Operator { restart: false } => ExitAction::Stop,
        StopKind::Operator { restart: true } => ExitAction::Restart,
    };
    let by_operator = matches!(kind, StopKind::Operator { .. });
    if let Some(line) = partition.devices.lock().flush_console() {
        emit_console(partition.name(), &line);
    }
    emit_exit_counts(partition);
    let mut state = partition.state.lock();
    let limit = partition.spec.restart_limit;
    let mut restart = action == ExitAction::Restart && (state.restarts < limit || by_operator);
    // A restarted guest gets its whole RAM: the pages it deposited come back first. (The
    // bank after the state lock is safe here: only this partition's own vCPUs, all parked,
    // take the bank and then this state.)
    let refilled = !restart
        || (page_moves::reclaim(partition, &mut state)
            && page_moves::refill_ballooned(partition, &mut state));
    restart &= refilled;
    if restart {
        // The operator's restarts do not count against the guest's own limit.
        if !by_operator {
            state.restarts += 1;
        }
        warn!(
            "partition \"{}\" {reason} ({detail}); restarting ({})",
            partition.name(),
            if by_operator {
                alloc::string::String::from("asked on the monitor")
            } else {
                alloc::format!("{} of {limit}", state.restarts)
            }
        );
        report::emit(&events::partition_restarted(
            partition.name(),
            state.restarts,
            reason,
        ));
        build::reset_guest(partition, &mut state);
        drop(state);
        // A restart takes nothing but what refills pages it deposited; the ledger says so.
        if let Some(frames) = FRAMES.lock().as_ref() {
            report::emit(&events::ledger(&frames.ledger()));
        }
        return true;
    }
    let detail = if !refilled {
        alloc::format!(
            "{detail}; not restarted: free memory cannot refill the pages it deposited or ballooned"
        )
    } else if action == ExitAction::Restart {
        alloc::format!("{detail}; restart limit ({limit}) reached")
    } else {
        alloc::string::String::from(detail)
    };
    match kind {
        StopKind::Fault => warn!(
            "partition \"{}\" stopped: {reason} ({detail})",
            partition.name()
        ),
        _ => info!(
            "partition \"{}\" stopped: {reason} ({detail})",
            partition.name()
        ),
    }
    report::emit(&events::partition_stopped(
        partition.name(),
        reason,
        &detail,
    ));
    let mut frames_guard = FRAMES.lock();
    if let Some(frames) = frames_guard.as_mut() {
        build::release(&mut state, frames);
    }
    drop(frames_guard);
    drop(state);
    page_moves::close(partition.index);
    if let Some(frames) = FRAMES.lock().as_ref() {
        report::emit(&events::ledger(&frames.ledger()));
    }
    if RUNNING.fetch_sub(1, Ordering::SeqCst) == 1 {
        all_stopped();
    }
    false
}

fn all_stopped() {
    let ready = READY_TSC.load(Ordering::SeqCst);
    let partitions = PARTITIONS.lock().clone();
    let timings: Vec<events::PartitionTiming> = partitions
        .iter()
        .filter_map(|p| {
            let state = p.state.lock();
            let first = state.first_entry_tsc?;
            Some(events::PartitionTiming {
                name: p.name(),
                ready_to_first_entry: first.wrapping_sub(ready),
                exits: state.exits,
                run_ticks: state.stop_tsc.saturating_sub(first),
            })
        })
        .collect();
    report::emit(&events::partition_timing(&timings));
    report::emit(&events::all_stopped());
    info!("every partition has stopped");
    if EXIT_WHEN_ALL_STOPPED.load(Ordering::SeqCst) != 0 {
        debug_exit::exit(debug_exit::READY);
    }
}

/// Prints a guest's console line, human and `@nv`.
pub fn emit_console(name: &str, line: &str) {
    crate::platform::console::serial::write_fmt(format_args!("[{name}] {line}\n"));
    report::emit(&events::console(
        name,
        line,
        crate::platform::cpu::tsc::micros_since_entry(),
    ));
}
