//! Dynamic Memory in the firmware (`docs/dynamic-memory.md`): each `dynamic` partition's
//! virtio balloon (`devices::virtio::balloon`, in its platform devices), the pages its queues
//! move (`page_moves::inflate` / `deflate`), its guest's statistics, and the policy
//! (`partition::dynamic_memory`) run over every dynamic partition whenever fresh statistics
//! arrive.
//!
//! Locks: a partition's devices lock is held only to drive the balloon's registers and
//! queues, never while pages move (moving waits for the partition's other vCPUs, which may
//! want the devices); the policy runs under `Hypervisor::rebalancing`, taken with `try_lock` so that
//! concurrent arrivals of statistics run it once.

use alloc::string::String;
use alloc::vec::Vec;

use numavisor_policy::devices::device::DeviceId;
use numavisor_policy::devices::virtio::balloon::{BalloonEvent, BalloonRequest};
use numavisor_policy::hypercall::bank::PageMove;
use numavisor_policy::partition::dynamic_memory::{self, Demand, Member, Policy, VnodeRoom};
use numavisor_policy::report::events::{self, BalloonMove, TargetSetter};
use numavisor_policy::vmm::exit::{StopKind, StopRequest};

use super::hot_add;
use super::interrupts::deliver_ioapic;
use super::page_moves;
use super::{Hypervisor, Partition};
use crate::platform::console::report;
use crate::platform::cpu::tsc;

/// How often vCPU 0 asks its guest for fresh statistics.
const STATS_PERIOD_MICROS: u64 = 500_000;
/// The most pages moved at once outside the driver's own requests (a reset's refill).
const BATCH_PAGES: usize = 256;
/// Growth in a guest's use, between two reports, that counts as rising.
const RISING: u64 = 1 << 20;
/// A policy target this close to the one set last is not worth a balloon round.
const HYSTERESIS: u64 = 2 << 20;

/// One dynamic partition's Dynamic Memory state.
#[derive(Debug, Default)]
pub struct DynamicState {
    /// A whole-partition target (bytes) the operator or the parent fixed; `None`: the
    /// policy's.
    fixed: Option<u64>,
    /// The target last set on the balloon, in bytes.
    target: Option<u64>,
    /// What its guest reported last.
    demand: Option<Demand>,
    /// What it used at its report before, and whether its use has grown since.
    last_used: Option<u64>,
    rising: bool,
    /// Host TSC of the next statistics request.
    next_stats: u64,
    /// Plug requests refused since the last one that succeeded: only the first of a run is
    /// logged, and while there are some the drivers are told to retry (`hot_add::poll`).
    plugs_refused: u64,
    /// Host TSC of the next such retry.
    next_plug_retry: u64,
}

impl DynamicState {
    /// Counts a refused plug; true if it is the first since the last plug that succeeded.
    pub fn plug_refused(&mut self) -> bool {
        self.plugs_refused += 1;
        self.plugs_refused == 1
    }

    /// Whether the drivers refused a plug should be told to retry now (at host TSC `now`);
    /// if so, the next retry is set to `next()`.
    pub fn plug_retry_due(&mut self, now: u64, next: impl FnOnce() -> u64) -> bool {
        if self.plugs_refused == 0 || now < self.next_plug_retry {
            return false;
        }
        self.next_plug_retry = next();
        true
    }

    /// A plug succeeded: how many were refused before it.
    pub fn plug_done(&mut self) -> u64 {
        core::mem::take(&mut self.plugs_refused)
    }
}

/// Heap bytes Dynamic Memory's books may take per 4 KiB page a balloon can hold: the page's
/// entry in the partition's RAM map and balloon set, a copy of those while vCPUs still hold
/// the old map, and a free range of its own in the worst case.
const HEAP_BYTES_PER_PAGE: u64 = 160;

/// Grows the hypervisor heap, once the partitions are built, by what their balloons' books
/// may need (`HEAP_BYTES_PER_PAGE` per page between each vnode's size and its minimum),
/// taken from free memory in 2 MiB blocks and counted as hypervisor memory in the ledger.
pub fn reserve_heap(hv: &Hypervisor) {
    let pages: u64 = hv
        .partitions()
        .iter()
        .filter(|p| p.spec.dynamic)
        .flat_map(|p| p.spec.memory.iter())
        .map(|v| (v.size - v.min) / 4096)
        .sum();
    if pages == 0 {
        return;
    }
    // One contiguous run: the heap then serves allocations as large as the books grow.
    let heap_pages = (pages * HEAP_BYTES_PER_PAGE).div_ceil(4096);
    let mut frames = hv.frames.lock();
    let order: Vec<usize> = (0..frames.node_count()).collect();
    match frames.reserve_run_near(
        &order,
        heap_pages,
        numavisor_policy::memory::Usage::Hypervisor,
    ) {
        // SAFETY: a run just reserved for the hypervisor, identity mapped, and never freed:
        // it is the heap's from now on.
        Ok((start, _)) => unsafe {
            if !crate::platform::heap::grow(start, heap_pages * 4096) {
                log::warn!("Dynamic Memory: the heap refused {start:#x}");
            }
        },
        Err(e) => log::warn!("Dynamic Memory: no memory to grow the heap for its books: {e}"),
    }
}

/// Why a target cannot be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetError {
    /// The partition has no Dynamic Memory (`dynamic = true`).
    NotDynamic,
    /// It has no such vnode.
    NoSuchVnode { vnodes: usize },
}

impl core::fmt::Display for TargetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TargetError::NotDynamic => {
                f.write_str("it has no Dynamic Memory (its layout does not say dynamic = true)")
            }
            TargetError::NoSuchVnode { vnodes } => {
                write!(f, "it has {vnodes} vnode(s), numbered from 0")
            }
        }
    }
}

/// The bytes of RAM the partition was started with (the balloon's zero point).
fn startup_bytes(partition: &Partition) -> u64 {
    partition.spec.memory_bytes()
}

/// The bytes of RAM it holds now.
fn held_bytes(partition: &Partition) -> u64 {
    let state = partition.state.lock();
    (0..partition.spec.memory.len())
        .map(|vnode| state.ram.mapped_bytes(vnode, None))
        .sum()
}

/// A fresh start of `partition` (build or restart): the balloon starts at the layout's
/// `memory_max` where that is below `size`, nothing is plugged, and the policy decides again.
pub fn start(partition: &Partition) {
    if !partition.spec.dynamic {
        return;
    }
    *partition.dynamic.lock() = DynamicState::default();
    let start: u64 = partition
        .spec
        .memory
        .iter()
        .map(|v| v.max.min(v.size))
        .sum();
    if start < startup_bytes(partition) {
        set_target(partition, start, TargetSetter::Policy);
    }
}

/// vCPU 0's look at its partition, each pass of its loop: asks the guest for fresh
/// statistics every [`STATS_PERIOD_MICROS`].
pub fn poll(partition: &Partition) {
    if !partition.spec.dynamic {
        return;
    }
    let now = tsc::now();
    {
        let mut state = partition.dynamic.lock();
        if now < state.next_stats {
            return;
        }
        state.next_stats = tsc::deadline_after_micros(STATS_PERIOD_MICROS);
    }
    let ram = partition.current_ram();
    let delivery = partition.devices.lock().balloon_request_stats(&ram);
    if let Some(delivery) = delivery {
        deliver_ioapic(partition, delivery);
    }
}

/// What the balloon's driver asked of vCPU `vcpu` with its last register write: its queues'
/// work, or (`reset`) every ballooned page back, for the new driver believes all its RAM is
/// its own.
pub fn serve_balloon(partition: &Partition, vcpu: usize, reset: bool) {
    if !reset {
        return serve_queues(partition, vcpu);
    }
    // In bounded batches, like the driver's own.
    loop {
        let batch: Vec<u64> = partition
            .state
            .lock()
            .ballooned
            .iter()
            .take(BATCH_PAGES)
            .copied()
            .collect();
        if batch.is_empty() || !deflate(partition, vcpu, &batch) {
            break;
        }
    }
    partition.dynamic.lock().target = None;
}

/// Takes the balloon's queued requests and carries them out, until none are left.
fn serve_queues(partition: &Partition, vcpu: usize) {
    // Bounded: every pass takes at most the rings' worth of buffers.
    for _ in 0..16 {
        let requests = {
            let ram = partition.current_ram();
            let mut devices = partition.devices.lock();
            let requests = devices
                .balloon
                .as_mut()
                .map(|b| b.process(&ram))
                .unwrap_or_default();
            let delivery = devices.sync_line(DeviceId::VirtioBalloon);
            drop(devices);
            if let Some(delivery) = delivery {
                deliver_ioapic(partition, delivery);
            }
            requests
        };
        if requests.is_empty() {
            return;
        }
        let mut more = false;
        for request in requests {
            let completion = match request {
                BalloonRequest::Inflate { pfns, completion } => {
                    inflate(partition, vcpu, &gpas(&pfns));
                    completion
                }
                BalloonRequest::Deflate { pfns, completion } => {
                    let _ = deflate(partition, vcpu, &gpas(&pfns));
                    completion
                }
                BalloonRequest::Stats(stats) => {
                    if let (Some(total), Some(available)) = (stats.total, stats.available) {
                        let used = held_bytes(partition).saturating_sub(available);
                        let mut state = partition.dynamic.lock();
                        state.demand = Some(Demand { total, available });
                        state.rising = state.last_used.is_some_and(|last| used > last + RISING);
                        state.last_used = Some(used);
                        drop(state);
                        rebalance(partition.hv);
                    }
                    continue;
                }
            };
            let ram = partition.current_ram();
            let mut devices = partition.devices.lock();
            let event = devices
                .balloon
                .as_mut()
                .map_or(BalloonEvent::None, |b| b.complete(completion, &ram));
            more |= event == BalloonEvent::QueueWork;
            let delivery = devices.sync_line(DeviceId::VirtioBalloon);
            drop(devices);
            if let Some(delivery) = delivery {
                deliver_ioapic(partition, delivery);
            }
        }
        if !more {
            return;
        }
    }
}

fn gpas(pfns: &[u32]) -> Vec<u64> {
    pfns.iter().map(|&pfn| u64::from(pfn) << 12).collect()
}

fn inflate(partition: &Partition, vcpu: usize, gpas: &[u64]) {
    let start = tsc::now();
    match page_moves::inflate(partition, vcpu, gpas) {
        Ok(moves) => report_moves(partition, true, &moves, tsc::now() - start),
        Err(e) => log::error!(
            "partition \"{}\": its balloon's inflation failed: {e}",
            partition.name()
        ),
    }
}

/// Deflates `gpas`; false if it could not (the partition is then being stopped).
fn deflate(partition: &Partition, vcpu: usize, gpas: &[u64]) -> bool {
    let start = tsc::now();
    match page_moves::deflate(partition, vcpu, gpas) {
        Ok(deflated) => {
            report_moves(partition, false, &deflated.moves, tsc::now() - start);
            // A guest that resets its balloon as it shuts down never touches them; one line
            // for the first, as such a reset gives back hundreds of batches.
            if let (Some(&(gpa, node)), 0) = (deflated.owed.first(), deflated.owed_before) {
                log::warn!(
                    "partition \"{}\": its balloon gave back {} KiB from guest-physical {gpa:#x} while host node {node} had no free page: each page is backed when the guest first touches it (later such pages are not logged)",
                    partition.name(),
                    deflated.owed.len() * 4
                );
            }
            true
        }
        Err(e) => {
            // The books or the SLAT disagree with the balloon: stop it rather than let it run
            // on memory the hypervisor cannot account for.
            log::error!(
                "partition \"{}\": its balloon cannot give pages back: {e}",
                partition.name()
            );
            partition.control.ask(StopRequest {
                kind: StopKind::Fault,
                reason: "balloon-failed",
                detail: alloc::format!("its balloon deflated, but {e}"),
            });
            for slot in &partition.vcpus {
                slot.kick();
            }
            false
        }
    }
}

/// One `balloon` event per vnode and node of `moves` (with the `ticks` the request took),
/// then the ledger.
fn report_moves(partition: &Partition, inflate: bool, moves: &[PageMove], ticks: u64) {
    if moves.is_empty() {
        return;
    }
    let size = held_bytes(partition);
    let mut groups: Vec<(usize, usize)> = moves.iter().map(|m| (m.vnode, m.node)).collect();
    groups.sort_unstable();
    groups.dedup();
    for (vnode, node) in groups {
        let spas: Vec<u64> = moves
            .iter()
            .filter(|m| (m.vnode, m.node) == (vnode, node))
            .map(|m| m.spa)
            .collect();
        let pages = spas.len() as u64;
        let runs = events::merged_ranges(spas, 4096);
        report::emit(&events::balloon(&BalloonMove {
            partition: partition.name(),
            inflate,
            vnode,
            node,
            pages,
            spa: runs,
            size,
            ticks,
            micros: tsc::micros_since_entry(),
        }));
    }
    partition.hv.emit_ledger();
}

/// What each vnode may hold, for the policy's split between balloon and virtio-mem.
fn rooms(partition: &Partition) -> Vec<VnodeRoom> {
    partition
        .spec
        .memory
        .iter()
        .map(|v| VnodeRoom {
            size: v.size,
            max: v.max,
        })
        .collect()
}

/// Tells `partition` to hold `bytes` from now on: its balloon below the RAM it booted with,
/// its virtio-mem devices above it ([`dynamic_memory::split`]).
fn set_target(partition: &Partition, bytes: u64, by: TargetSetter) {
    let split = dynamic_memory::split(bytes, &rooms(partition), hot_add::BLOCK_BYTES);
    apply(partition, split.built, &split.plugged);
    partition.dynamic.lock().target = Some(bytes);
    report::emit(&events::memory_target(partition.name(), 0, bytes, by));
}

/// Sets the balloon to leave `built` bytes of the RAM booted with, and each growing vnode's
/// virtio-mem device to have `plugged[vnode]` plugged.
fn apply(partition: &Partition, built: u64, plugged: &[u64]) {
    let pages = (startup_bytes(partition).saturating_sub(built) / 4096).min(u64::from(u32::MAX));
    let delivery = {
        let mut devices = partition.devices.lock();
        if let Some(balloon) = devices.balloon.as_mut() {
            balloon.set_target_pages(pages as u32);
        }
        devices.sync_line(DeviceId::VirtioBalloon)
    };
    if let Some(delivery) = delivery {
        deliver_ioapic(partition, delivery);
    }
    for (device, vnode) in hot_add::growing_vnodes(partition.spec)
        .into_iter()
        .enumerate()
    {
        hot_add::set_requested(partition, device, plugged.get(vnode).copied().unwrap_or(0));
    }
}

/// Fixes (or with `None` frees) the memory `vnode` of `partition` should hold: the target
/// set, within the vnode's bounds (0 when handed back to the policy). Above the vnode's
/// `size` its virtio-mem device plugs the rest; below it, with one balloon per partition, the
/// guest chooses which of its pages it gives, and the partition's whole target becomes this
/// vnode's plus what its other vnodes hold now.
pub fn set_fixed(
    partition: &Partition,
    vnode: usize,
    bytes: Option<u64>,
    by: TargetSetter,
) -> Result<u64, TargetError> {
    let spec = partition.spec;
    if !spec.dynamic {
        return Err(TargetError::NotDynamic);
    }
    let Some(bounds) = spec.memory.get(vnode) else {
        return Err(TargetError::NoSuchVnode {
            vnodes: spec.memory.len(),
        });
    };
    let Some(bytes) = bytes else {
        partition.dynamic.lock().fixed = None;
        rebalance(partition.hv);
        return Ok(0);
    };
    let wanted = (bytes.clamp(bounds.min, bounds.max) / 4096) * 4096;
    // Growth comes in whole device blocks.
    let wanted = if wanted > bounds.size {
        wanted - (wanted - bounds.size) % hot_add::BLOCK_BYTES
    } else {
        wanted
    };
    let held: Vec<u64> = {
        let state = partition.state.lock();
        (0..spec.memory.len())
            .map(|v| state.ram.mapped_bytes(v, None))
            .collect()
    };
    let targets: Vec<u64> = held
        .iter()
        .enumerate()
        .map(|(v, &h)| if v == vnode { wanted } else { h })
        .collect();
    let built: u64 = targets
        .iter()
        .zip(spec.memory.iter())
        .map(|(&t, v)| t.min(v.size))
        .sum();
    let plugged: Vec<u64> = targets
        .iter()
        .zip(spec.memory.iter())
        .map(|(&t, v)| t.saturating_sub(v.size))
        .collect();
    let total = targets.iter().sum();
    apply(partition, built, &plugged);
    {
        let mut state = partition.dynamic.lock();
        state.fixed = Some(total);
        state.target = Some(total);
    }
    report::emit(&events::memory_target(partition.name(), vnode, wanted, by));
    Ok(wanted)
}

/// Runs the policy over every running dynamic partition whose RAM is on one host node, and
/// sets the targets that changed.
pub fn rebalance(hv: &Hypervisor) {
    let Some(_running) = hv.rebalancing.try_lock() else {
        return;
    };
    // Each member with what it was promised and does not hold yet.
    let members: Vec<(&'static Partition, Member, u64)> = hv
        .partitions()
        .iter()
        .copied()
        .filter(|p| p.spec.dynamic && !p.control.ended() && one_node(p))
        .map(|p| {
            let state = p.dynamic.lock();
            let member = Member {
                node: p.spec.memory[0].node as usize,
                current: 0,
                size: startup_bytes(p),
                min: p.spec.memory.iter().map(|v| v.min).sum(),
                max: p.spec.memory.iter().map(|v| v.max).sum(),
                demand: state.demand,
                fixed: state.fixed,
                rising: state.rising,
            };
            let target = state.target.unwrap_or(member.size);
            drop(state);
            // Growth above the RAM booted with is plugged by virtio-mem's driver: without one
            // it cannot happen, and holds no memory back.
            let plugging = p.devices.lock().mem.iter().any(|m| m.driver_live());
            let promised = if plugging {
                target
            } else {
                target.min(member.size)
            };
            let held = held_bytes(p);
            // The guest's own total leaves out what its kernel keeps for itself: what it
            // uses is what it holds less what it says is available.
            let demand = member.demand.map(|d| Demand {
                total: held,
                available: d.available.min(held),
            });
            (
                p,
                Member {
                    // A target above what it holds is promised: its balloon may deflate, or
                    // its virtio-mem plug, at any moment, and must find the memory free.
                    current: held.max(promised),
                    demand,
                    ..member
                },
                promised.saturating_sub(held),
            )
        })
        .collect();
    if members.is_empty() {
        return;
    }
    let mut free: Vec<u64> = hv.frames.lock().ledger().iter().map(|l| l.free).collect();
    // What is promised and not yet taken is not free: handing it out again would let one
    // partition's growth take the pages another's deflation then cannot find (they would be
    // owed, and that guest stopped if it touched one before memory came free).
    for (_, member, outstanding) in &members {
        if let Some(node_free) = free.get_mut(member.node) {
            *node_free = node_free.saturating_sub(*outstanding);
        }
    }
    let plain: Vec<Member> = members.iter().map(|(_, m, _)| *m).collect();
    let targets = dynamic_memory::targets(&plain, &free, &Policy::default());
    for ((partition, member, _), target) in members.iter().zip(targets) {
        let last = partition
            .dynamic
            .lock()
            .target
            .unwrap_or(startup_bytes(partition));
        let bound = target == member.min || target == member.max;
        if member.fixed.is_none()
            && last != target
            && (last.abs_diff(target) >= HYSTERESIS || bound)
        {
            set_target(partition, target, TargetSetter::Policy);
        }
    }
}

/// Whether every vnode of the partition is on one host node (the policy balances per node).
fn one_node(partition: &Partition) -> bool {
    let first = partition.spec.memory.first().map(|v| v.node);
    partition.spec.memory.iter().all(|v| Some(v.node) == first)
}

/// The monitor's `balloon NAME VNODE SIZE`: a message for the operator.
pub fn operator_target(
    partition: &Partition,
    vnode: usize,
    bytes: Option<u64>,
) -> Result<String, String> {
    match set_fixed(partition, vnode, bytes, TargetSetter::Operator) {
        Ok(_) if bytes.is_none() => Ok(alloc::format!(
            "partition \"{}\": memory left to Dynamic Memory's policy",
            partition.name()
        )),
        Ok(set) => Ok(alloc::format!(
            "partition \"{}\": vnode {vnode} to hold {} KiB",
            partition.name(),
            set >> 10
        )),
        Err(e) => Err(alloc::format!("partition \"{}\": {e}", partition.name())),
    }
}
