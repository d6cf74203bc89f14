//! The partition manager: builds every partition of the embedded layout at boot, hands each
//! vCPU to its pinned CPU, routes interrupts between a partition's vCPUs, and contains
//! whatever a guest does to its own partition.

mod build;
mod control;
mod dma_remapping;
mod dynamic;
mod guest_memory;
mod hot_add;
mod hypercalls;
mod hypervisor;
mod input;
mod interrupts;
mod machine;
mod memory_sync;
mod monitor;
mod msi_routes;
mod network;
mod page_moves;
mod passthrough;
mod vcpu_loop;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use log::{info, warn};
use numavisor_layout::{ConsoleMode, ExitAction, Layout, PartitionSpec};
use numavisor_policy::partition::guest_ram::GuestRam;
use numavisor_policy::partition::memory_sync::MemoryGenerations;
use numavisor_policy::partition::placement::VcpuPlan;
use numavisor_policy::partition::pool::PartitionPool;
use numavisor_policy::report::events;
use numavisor_policy::topology::Topology;
use numavisor_policy::vmexit::ExitKind;
use numavisor_policy::vmm::console_output::escape_controls;
use numavisor_policy::vmm::exit::StopKind;
use numavisor_policy::vmm::platform::PlatformDevices;
use numavisor_policy::vmm::vcpu::EntryState;
use spin::Mutex;

use crate::platform::console::report;
use crate::platform::debug_exit;
use crate::virt::ControlPages;

pub use control::VcpuSlot;
pub use hot_add::force_pieces as force_hot_add_pieces;
pub use hypervisor::{Boot, Hypervisor};
pub use input::poll_console_input;
pub use vcpu_loop::{enable_profile, run_assigned_vcpu};

/// Reserves each vCPU's CPU its host pages on its node, once per CPU.
fn reserve_host_pages(hv: &Hypervisor, built: &[&'static Partition]) {
    let per_cpu = crate::virt::Active::host_pages_per_cpu();
    for partition in built {
        let plans: Vec<(u32, usize)> = partition
            .state
            .lock()
            .vcpus
            .iter()
            .map(|plan| (plan.apic_id, plan.node))
            .collect();
        for (apic_id, node) in plans {
            hv.reserve_host_pages(apic_id, per_cpu, || vcpu_loop::host_page(hv, node));
        }
    }
}

/// One partition: its layout entry, what it owns, its devices and its vCPUs' shared state.
pub struct Partition {
    /// The hypervisor's shared state.
    pub hv: &'static Hypervisor,
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
    /// The host PCI functions it owns, as indices in [`Hypervisor::pci`]'s devices, in
    /// `pci` order (guest device `n + 1` is entry `n`).
    pub pci_devices: Vec<usize>,
    /// The host device vectors its functions' messages hold, one bit per vector
    /// (`msi_routes`).
    pub pci_vectors: [AtomicU64; 4],
    /// DMA faults of its functions in this life (`passthrough::poll_faults`).
    pub dma_faults: core::sync::atomic::AtomicU32,
    /// The network cards with frames a transmit exit left behind, one bit a card
    /// (`network::send_backlog`).
    pub nic_backlog: core::sync::atomic::AtomicU8,
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

/// Prints partition `partition`'s exit counts, and its network cards' counters, now.
pub fn emit_exit_counts(partition: &Partition) {
    report::emit(&events::exit_counts(
        partition.name(),
        crate::platform::cpu::tsc::micros_since_entry(),
        &partition.exit_counts.snapshot(),
    ));
    network::emit_counts(partition);
}

/// What a partition owns while it exists.
pub struct PartitionState {
    pub pool: Option<PartitionPool>,
    /// Its guest RAM; vCPUs hold copies, renewed when `Partition::memory` moves.
    pub ram: alloc::sync::Arc<GuestRam>,
    /// The GPAs of its RAM its balloon holds (their pages went back to free memory).
    pub ballooned: alloc::collections::BTreeSet<u64>,
    /// The GPAs of RAM pages its balloon gave back while their node had no free page: not
    /// mapped until the guest first touches them (`page_moves::back_owed`).
    pub owed: alloc::collections::BTreeSet<u64>,
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
    /// Its DMA remapping domain's tables (from the pool), when it owns PCI functions.
    pub dma: Option<DmaTables>,
    /// What the SLAT maps of each passed-through function's BARs, by guest device number:
    /// `(gpa, spa, bytes)` pieces.
    pub pci_mapped: alloc::collections::BTreeMap<u8, Vec<(u64, u64, u64)>>,
}

/// A partition's DMA remapping domain: tables in its remapping unit's format, from its pool,
/// mapping exactly its guest RAM (never its BARs). Every change to the RAM changes them too
/// (`page_moves`), so a device reaches what the partition's CPUs reach.
#[derive(Clone, Copy, Debug)]
pub struct DmaTables {
    /// The tables' root (what the context or device table entries point at).
    pub root: u64,
    /// The unit's format.
    pub kind: numavisor_policy::pci::RemappingKind,
    /// The largest leaf they use (2 MiB at most: every unit takes it).
    pub max_page: numavisor_policy::memory::BlockSize,
    /// Their figures, for reopening the builder.
    pub stats: numavisor_policy::slat::SlatStats,
}

impl Partition {
    /// The partition's name from the layout.
    pub fn name(&self) -> &'static str {
        self.spec.name
    }

    /// Guest RAM as a device's queues see it (the balloon's, virtio-mem's): the partition's
    /// RAM as it is now, not a vCPU's copy, which may predate the pages this very exit moved.
    pub(super) fn current_ram(&self) -> guest_memory::GuestMemory {
        guest_memory::GuestMemory::new(self.state.lock().ram.clone())
    }
}

/// Builds every partition of `layout` that fits this machine; refuses (and reports) the rest.
/// Returns how many were built.
pub fn build_all(
    hv: &'static Hypervisor,
    layout: &'static Layout,
    topology: &Topology,
    online: &[u32],
) -> usize {
    let mut available: alloc::collections::BTreeSet<u32> = online.iter().copied().collect();
    let mut built: Vec<&'static Partition> = Vec::new();
    let mut passthrough = passthrough::check_layout(&hv.pci, layout).into_iter();
    for spec in layout.partitions {
        let index = built.len();
        let devices: Vec<_> = passthrough.by_ref().take(spec.pci.len()).collect();
        let result = build::build(
            hv,
            index,
            spec,
            &devices,
            topology,
            &mut hv.frames.lock(),
            &mut available,
        );
        match result {
            Ok(partition) => {
                let partition: &'static Partition =
                    alloc::boxed::Box::leak(alloc::boxed::Box::new(partition));
                report::emit(&build::report_event(partition, "running"));
                info!(
                    "partition \"{}\": built with {} vCPU(s), running",
                    spec.name,
                    partition.vcpus.len()
                );
                built.push(partition);
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
    reserve_host_pages(hv, &built);
    page_moves::open_bank(hv, &built);
    hv.set_partitions(built);
    hv.set_networks(network::build_networks(layout, hv.partitions()));
    if !layout.networks.is_empty() {
        network::emit_report(hv.networks());
    }
    network::refresh_links(hv.networks());
    for &partition in hv.partitions() {
        dynamic::start(partition);
    }
    dynamic::reserve_heap(hv);
    hv.emit_ledger();
    hv.partitions().len()
}

/// Queues every vCPU of every partition for its pinned CPU and wakes the CPUs: vCPU 0 enters
/// the guest, the others wait for the guest's INIT and start-up IPIs.
pub fn start_all(hv: &Hypervisor, wake: impl Fn(u32)) {
    let mut queued = Vec::new();
    for partition in hv.partitions() {
        for (index, slot) in partition.vcpus.iter().enumerate() {
            queued.push((slot.host_apic_id, partition.index, index));
        }
    }
    hv.assign(&queued);
    for (apic_id, _, _) in queued {
        wake(apic_id);
    }
    if hv.running() == 0 {
        all_stopped(hv);
    }
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
        emit_console(partition, &line);
    }
    emit_exit_counts(partition);
    let mut state = partition.state.lock();
    let limit = partition.spec.restart_limit;
    let mut restart = action == ExitAction::Restart && (state.restarts < limit || by_operator);
    // A restarted guest gets its whole RAM: the pages it deposited come back first. (The
    // bank after the state lock is safe here: only this partition's own vCPUs, all parked,
    // take the bank and then this state.)
    if restart {
        // Its new virtio-mem devices start with nothing plugged.
        hot_add::unplug_all_parked(partition, &mut state);
    }
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
        build::replace_devices(partition);
        build::reset_guest(partition, &mut state);
        drop(state);
        // What the switches learned of it is stale (its new cards get their links with the
        // new devices: `build::reset_devices`).
        network::leave(partition);
        // A restart takes nothing but what refills pages it deposited; the ledger says so.
        partition.hv.emit_ledger();
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
    partition.control.end();
    // Its functions' DMA ends before its memory goes back.
    passthrough::detach_all(partition);
    build::release(&mut state, &mut partition.hv.frames.lock());
    drop(state);
    network::leave(partition);
    network::refresh_links(partition.hv.networks());
    page_moves::close(partition);
    partition.hv.emit_ledger();
    if partition.hv.one_stopped() {
        all_stopped(partition.hv);
    }
    false
}

fn all_stopped(hv: &Hypervisor) {
    let ready = hv.ready_tsc;
    let timings: Vec<events::PartitionTiming> = hv
        .partitions()
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
    if let Some(profile) = vcpu_loop::profile() {
        report::emit(&events::exit_profile(&profile));
    }
    report::emit(&events::all_stopped(events::HostHealth {
        nmis: crate::platform::cpu::idt::host_nmis(),
        host_state: crate::virt::host_state::counts(),
        ap_stack: crate::platform::cpu::stacks::peak(),
    }));
    info!("every partition has stopped");
    if hv.exit_when_all_stopped() {
        debug_exit::exit(debug_exit::READY);
    }
}

/// Prints a guest's console line, human and `@nv`. The human line shows control characters
/// escaped unless the layout says `console = "raw"` (`vmm::console_output`); the report's
/// JSON carries the line as the guest wrote it (its encoding escapes them).
pub fn emit_console(partition: &Partition, line: &str) {
    let name = partition.name();
    let shown = match partition.spec.console {
        ConsoleMode::Escaped => escape_controls(line),
        ConsoleMode::Raw => alloc::borrow::Cow::Borrowed(line),
    };
    crate::platform::console::serial::write_fmt(format_args!("[{name}] {shown}\n"));
    report::emit(&events::console(
        name,
        line,
        crate::platform::cpu::tsc::micros_since_entry(),
    ));
}
