//! The hypervisor's shared state: one value, built once at start from what boot found and
//! handed to every CPU (each partition keeps a reference to it), instead of globals.
//!
//! # Lock order
//!
//! Outer first; a CPU never takes an earlier lock while it holds a later one:
//!
//! 1. [`Hypervisor::rebalancing`] (Dynamic Memory's policy pass, taken with `try_lock`);
//! 2. [`Hypervisor::bank`] (deposits and withdrawals; held for bookkeeping only, never across
//!    a wait);
//! 3. a partition's `state` (its RAM, pool, SLAT);
//! 4. a partition's `devices` — never held with a local APIC; no two local APICs at once
//!    (interrupts are collected first, then delivered: `interrupts`); a network's switch is
//!    taken alone, and a frame is copied into a receiver under that receiver's `state` and
//!    `devices` only, never with another partition's lock held (`network`);
//! 5. [`Hypervisor::dma`] (the DMA remapping units), which takes `frames` for context tables;
//! 6. [`Hypervisor::frames`] (free memory), taken last and briefly.
//!
//! The input switch ([`Hypervisor::input`]) is taken with `try_lock` from any CPU's idle or
//! exit path, and takes a partition's `devices` under it. The CPU assignments and the
//! reserved host pages are leaves, except that reserving host pages takes `frames` under them
//! (once, at build). No lock is held across a wait for
//! other vCPUs (`memory_sync`, `control`): every such wait acknowledges memory changes and
//! passes checkpoints, so no vCPU waits on one that waits on it.
//!
//! A partition's liveness has one source of truth: its stop handshake
//! (`Partition::control.ended()`).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use numavisor_policy::hypercall::bank::Bank;
use numavisor_policy::memory::{FrameAllocator, HostPage};
use numavisor_policy::vmm::console_input::InputSwitch;
use numavisor_policy::vmm::monitor::LineEditor;
use spin::{Mutex, Once};

use super::network::Network;
use super::Partition;

/// What boot hands the partition manager.
pub struct Boot {
    /// The machine's free memory after boot.
    pub frames: FrameAllocator,
    /// The host's distance matrix, by dense node.
    pub distances: Vec<Vec<u8>>,
    /// End the run (`exit=partitions`) once every partition has stopped.
    pub exit_when_all_stopped: bool,
    /// The TSC at `ready`.
    pub ready_tsc: u64,
    /// Host TSC ticks between `exit_counts` events (`exit-stats=MS`); 0: only at stops.
    pub exit_stats_period: u64,
    /// The host's PCI functions, their nodes and remapping units.
    pub pci: numavisor_policy::pci::PciInventory,
}

/// The partition manager's shared state.
pub struct Hypervisor {
    /// The machine's free memory, shared by every CPU (partition stops return memory).
    pub frames: Mutex<FrameAllocator>,
    /// The host's distance matrix (by dense node).
    pub distances: Vec<Vec<u8>>,
    /// The partitions that were built, by index (set once, when they all are).
    partitions: Once<Vec<&'static Partition>>,
    /// The layout's networks over the partitions built (set once, with them).
    networks: Once<Vec<Network>>,
    /// Every partition's account: slots, and pages deposited by parents.
    pub bank: Mutex<Bank>,
    /// vCPUs waiting for their CPU: (APIC ID, partition index, vCPU index).
    assignments: Mutex<Vec<(u32, usize, usize)>>,
    /// The host pages each vCPU-running CPU's virtualization needs, by APIC ID, taken from
    /// the CPU's node when the partitions are built: so the ledger printed then already
    /// counts them, and a CPU's start cannot fail for lack of memory later.
    host_pages: Mutex<BTreeMap<u32, Vec<HostPage>>>,
    /// Dynamic Memory's policy pass: one CPU at a time.
    pub rebalancing: Mutex<()>,
    /// The console input switch and the monitor's line editor.
    pub input: Mutex<Option<(InputSwitch, LineEditor)>>,
    /// Partitions still running; `exit=partitions` ends the run when it reaches zero.
    running: AtomicUsize,
    exit_when_all_stopped: bool,
    /// The TSC at `ready`, for the ready-to-first-guest-instruction figure.
    pub ready_tsc: u64,
    /// Host TSC ticks between `exit_counts` events; 0: only at stops.
    pub exit_stats_period: u64,
    /// The host's PCI functions, as found at boot (passthrough checks read it).
    pub pci: numavisor_policy::pci::PciInventory,
    /// The DMA remapping units started for passed-through functions.
    pub dma: Mutex<super::dma_remapping::DmaRemapping>,
}

impl Hypervisor {
    /// The context for the partitions to come; lives as long as the machine runs.
    pub fn new(boot: Boot) -> &'static Hypervisor {
        alloc::boxed::Box::leak(alloc::boxed::Box::new(Hypervisor {
            frames: Mutex::new(boot.frames),
            distances: boot.distances,
            partitions: Once::new(),
            networks: Once::new(),
            bank: Mutex::new(Bank::default()),
            assignments: Mutex::new(Vec::new()),
            host_pages: Mutex::new(BTreeMap::new()),
            rebalancing: Mutex::new(()),
            input: Mutex::new(None),
            running: AtomicUsize::new(0),
            exit_when_all_stopped: boot.exit_when_all_stopped,
            ready_tsc: boot.ready_tsc,
            exit_stats_period: boot.exit_stats_period,
            pci: boot.pci,
            dma: Mutex::new(Default::default()),
        }))
    }

    /// Every partition built, by index (none before they all are).
    pub fn partitions(&self) -> &[&'static Partition] {
        self.partitions.get().map_or(&[], |all| all.as_slice())
    }

    /// Records the partitions built (once) and how many run.
    pub(super) fn set_partitions(&self, built: Vec<&'static Partition>) {
        self.running.store(built.len(), Ordering::SeqCst);
        self.partitions.call_once(|| built);
    }

    /// The layout's networks, by layout index (none before the partitions are built).
    pub fn networks(&self) -> &[Network] {
        self.networks.get().map_or(&[], |all| all.as_slice())
    }

    /// Records the networks (once).
    pub(super) fn set_networks(&self, networks: Vec<Network>) {
        self.networks.call_once(|| networks);
    }

    /// Queues vCPUs for their CPUs.
    pub(super) fn assign(&self, queued: &[(u32, usize, usize)]) {
        self.assignments.lock().extend_from_slice(queued);
    }

    /// The vCPU queued for the CPU with `apic_id`, if any.
    pub fn take_assignment(&self, apic_id: u32) -> Option<(&'static Partition, usize)> {
        let mut queue = self.assignments.lock();
        let position = queue.iter().position(|&(id, _, _)| id == apic_id)?;
        let (_, index, vcpu) = queue.remove(position);
        drop(queue);
        Some((*self.partitions().get(index)?, vcpu))
    }

    /// Reserves the CPU with `apic_id` its host pages, once (`allocate` gives each page).
    pub(super) fn reserve_host_pages(
        &self,
        apic_id: u32,
        per_cpu: usize,
        mut allocate: impl FnMut() -> Option<HostPage>,
    ) {
        self.host_pages
            .lock()
            .entry(apic_id)
            .or_insert_with(|| (0..per_cpu).filter_map(|_| allocate()).collect());
    }

    /// Takes the host pages reserved for the CPU with `apic_id` (none if it has them already).
    pub fn take_host_pages(&self, apic_id: u32) -> Vec<HostPage> {
        self.host_pages.lock().remove(&apic_id).unwrap_or_default()
    }

    /// One partition fewer runs: true when it was the last.
    pub(super) fn one_stopped(&self) -> bool {
        self.running.fetch_sub(1, Ordering::SeqCst) == 1
    }

    /// Prints the ledger of every node's memory (a `ledger` event).
    pub fn emit_ledger(&self) {
        // Printed under the frames lock: two partitions stopping at once on two CPUs must print
        // their ledgers in the order they were taken, or the last line is not the last state
        // (the console's lock is a leaf: nothing takes `frames` under it).
        let frames = self.frames.lock();
        let ledger = frames.ledger();
        crate::platform::console::report::emit(&numavisor_policy::report::events::ledger(&ledger));
        drop(frames);
    }

    /// How many partitions run.
    pub(super) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Whether the run ends once every partition has stopped.
    pub(super) fn exit_when_all_stopped(&self) -> bool {
        self.exit_when_all_stopped
    }
}
