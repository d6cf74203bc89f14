//! Keeping every vCPU of a partition in step with its guest RAM when pages leave it after
//! build (a deposit into a child's pool, a balloon inflation).
//!
//! The vCPU that changes the RAM does so under the partition's state lock: it edits the SLAT
//! and the [`GuestRam`], then moves `Partition::memory_generation`. Each other vCPU, at its
//! checkpoints (before every guest entry, after every exit, in every idle wait), sees the
//! generation move, renews its copy of the RAM, flushes its CPU's cached translations of the
//! SLAT before it next enters the guest, and records the generation in its slot. The changing
//! vCPU kicks the others and hands the pages on (to a pool, to free memory) only once every
//! one of them has caught up or runs no epoch: so no CPU reaches a page, through a stale TLB
//! entry or the hypervisor's own copy of the RAM, after it has left the partition.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use numavisor_policy::partition::guest_ram::GuestRam;

use super::control::halt_a_while;
use super::{Partition, PartitionState};

/// A slot's `memory_seen` while its vCPU runs no epoch (not started, stopping, parked): it
/// holds no copy of the RAM, and renews it when its next epoch starts.
pub const AWAY: u64 = u64::MAX;

/// One vCPU's view of the partition's memory generation.
pub struct MemorySync {
    seen: u64,
}

impl MemorySync {
    /// At the start of an epoch, under the state lock the caller holds: the RAM copy to use
    /// and the generation it belongs to, recorded in the vCPU's slot.
    pub fn start(
        partition: &Partition,
        index: usize,
        state: &PartitionState,
    ) -> (Self, Arc<GuestRam>) {
        let seen = partition.memory_generation.load(Ordering::SeqCst);
        partition.vcpus[index]
            .memory_seen
            .store(seen, Ordering::SeqCst);
        (MemorySync { seen }, state.ram.clone())
    }

    /// A checkpoint where the vCPU can take a new RAM copy: the copy, if the generation
    /// moved (the caller flushes its CPU's SLAT translations before the next entry).
    pub fn renew(&mut self, partition: &Partition, index: usize) -> Option<Arc<GuestRam>> {
        if partition.memory_generation.load(Ordering::SeqCst) == self.seen {
            return None;
        }
        let state = partition.state.lock();
        self.seen = partition.memory_generation.load(Ordering::SeqCst);
        let ram = state.ram.clone();
        drop(state);
        partition.vcpus[index]
            .memory_seen
            .store(self.seen, Ordering::SeqCst);
        Some(ram)
    }

    /// A checkpoint where the vCPU uses no guest memory until its next [`renew`]: it may say
    /// it has caught up without renewing yet.
    ///
    /// [`renew`]: MemorySync::renew
    pub fn acknowledge(partition: &Partition, index: usize) {
        let now = partition.memory_generation.load(Ordering::SeqCst);
        partition.vcpus[index]
            .memory_seen
            .store(now, Ordering::SeqCst);
    }

    /// The epoch ends: the vCPU holds no copy any more.
    pub fn leave(partition: &Partition, index: usize) {
        partition.vcpus[index]
            .memory_seen
            .store(AWAY, Ordering::SeqCst);
    }
}

/// Called with the state lock held, after the RAM and the SLAT changed: the generation the
/// other vCPUs must reach.
pub fn bump(partition: &Partition, _state: &mut PartitionState) -> u64 {
    partition.memory_generation.fetch_add(1, Ordering::SeqCst) + 1
}

/// Kicks every vCPU of `partition` but `caller` and waits, without the state lock, until
/// each has caught up with `generation` or runs no epoch.
pub fn wait_caught_up(partition: &Partition, caller: usize, generation: u64) {
    for (index, slot) in partition.vcpus.iter().enumerate() {
        if index == caller {
            continue;
        }
        loop {
            let seen = slot.memory_seen.load(Ordering::SeqCst);
            if seen == AWAY || seen >= generation {
                break;
            }
            slot.kick();
            halt_a_while();
        }
    }
}
