//! The firmware's side of the memory-generation protocol
//! ([`numavisor_policy::partition::memory_sync`], which states it and is host-tested with
//! threads): a partition's vCPUs renew their copy of its guest RAM, and flush their CPU's
//! SLAT translations, before a page that left it is reused. Here the RAM is the
//! [`PartitionState`]'s, guarded by the partition's state lock, and the CPUs are the
//! partition's pinned CPUs ([`PartitionCpus`]).

use alloc::sync::Arc;

use numavisor_policy::partition::guest_ram::GuestRam;
use numavisor_policy::partition::memory_sync::MemoryView;

use super::control::PartitionCpus;
use super::{Partition, PartitionState};

/// At the start of an epoch, under the state lock the caller holds: vCPU `index`'s view and
/// the RAM copy it belongs to.
pub fn start(
    partition: &Partition,
    index: usize,
    state: &PartitionState,
) -> (MemoryView, Arc<GuestRam>) {
    partition.memory.start(index, || state.ram.clone())
}

/// A checkpoint: the new RAM copy if the partition's memory changed (the caller flushes its
/// CPU's SLAT translations before the next entry).
#[inline(always)]
pub fn renew(partition: &Partition, view: &mut MemoryView) -> Option<Arc<GuestRam>> {
    partition
        .memory
        .renew(view, || partition.state.lock().ram.clone())
}

/// Called with the state lock held (`_state` proves it), after the RAM and the SLAT changed:
/// the generation the other vCPUs must reach.
pub fn bump(partition: &Partition, _state: &mut PartitionState) -> u64 {
    partition.memory.bump()
}

/// Kicks every vCPU of `partition` but `caller` and waits, holding no lock and acknowledging
/// for `caller` meanwhile, until each has caught up with `generation` or runs no epoch.
pub fn wait_caught_up(partition: &Partition, caller: usize, generation: u64) {
    partition
        .memory
        .wait_caught_up(caller, generation, &PartitionCpus(partition));
}
