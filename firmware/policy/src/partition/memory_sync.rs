//! Keeping every vCPU of a partition in step with its guest RAM when pages leave it after
//! build (a deposit into a child's pool, a balloon inflation), so that no CPU reaches a page
//! after it has left the partition.
//!
//! The protocol, in the terms of [`MemoryGenerations`]:
//! - The vCPU that changes the RAM does so under the lock that guards it (the partition's
//!   state lock in the firmware): it edits the SLAT and the RAM, then calls [`bump`], which
//!   moves the partition's memory generation.
//! - Each other vCPU, at its checkpoints (before every guest entry, after every exit),
//!   calls [`renew`]: if the generation moved it takes a new copy of the RAM and its CPU
//!   drops its cached SLAT translations before it next enters the guest, and its slot records
//!   the generation. Where it uses no guest memory until its next `renew` (an idle wait, a
//!   wait for a lock), it calls [`acknowledge`] instead. A vCPU that runs no epoch (not
//!   started, parked, stopping) is [`AWAY`]: it holds no copy.
//! - The changing vCPU calls [`wait_caught_up`]: it kicks the others and waits until each
//!   has recorded the new generation or is away. Only then may the pages be reused (given to
//!   a pool or to free memory).
//!
//! Every wait of a vCPU inside the hypervisor acknowledges while it waits
//! ([`wait_caught_up`] itself and [`wait_for`]), so two vCPUs that move pages at the same
//! time each see the other catch up: neither waits for ever. The threaded host tests
//! (`tests/concurrency.rs`) run these interleavings.
//!
//! [`bump`]: MemoryGenerations::bump
//! [`renew`]: MemoryGenerations::renew
//! [`acknowledge`]: MemoryGenerations::acknowledge
//! [`wait_caught_up`]: MemoryGenerations::wait_caught_up
//! [`wait_for`]: MemoryGenerations::wait_for

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::cpu_ops::CpuOps;

/// A slot's generation while its vCPU runs no epoch: it holds no copy of the RAM, and takes a
/// fresh one when its next epoch starts.
pub const AWAY: u64 = u64::MAX;

/// A partition's memory generation and, per vCPU, the generation it has caught up with.
#[derive(Debug)]
pub struct MemoryGenerations {
    generation: AtomicU64,
    seen: Vec<AtomicU64>,
}

/// One vCPU's view: which generation its copy of the RAM belongs to.
#[derive(Debug)]
pub struct MemoryView {
    vcpu: usize,
    seen: u64,
}

impl MemoryGenerations {
    /// A partition of `vcpus` vCPUs, all away, at generation 0.
    pub fn new(vcpus: usize) -> MemoryGenerations {
        MemoryGenerations {
            generation: AtomicU64::new(0),
            seen: (0..vcpus).map(|_| AtomicU64::new(AWAY)).collect(),
        }
    }

    /// The current generation.
    pub fn current(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// What vCPU `vcpu` has caught up with ([`AWAY`] while it runs no epoch).
    fn seen_by(&self, vcpu: usize) -> u64 {
        self.seen
            .get(vcpu)
            .map_or(AWAY, |s| s.load(Ordering::SeqCst))
    }

    fn record(&self, vcpu: usize, generation: u64) {
        if let Some(slot) = self.seen.get(vcpu) {
            slot.store(generation, Ordering::SeqCst);
        }
    }

    /// An epoch of vCPU `vcpu` starts: `take` reads its copy of the RAM (under the lock that
    /// guards the RAM). The copy is at least as new as the generation recorded, because the
    /// generation is read first and moves only after the RAM changed.
    pub fn start<R>(&self, vcpu: usize, take: impl FnOnce() -> R) -> (MemoryView, R) {
        let seen = self.current();
        let ram = take();
        self.record(vcpu, seen);
        (MemoryView { vcpu, seen }, ram)
    }

    /// A checkpoint: if the generation moved since `view`'s copy, the new copy (read by
    /// `take` under the RAM's lock), recorded as caught up. The caller then drops its CPU's
    /// cached SLAT translations before it next enters the guest.
    #[inline(always)]
    pub fn renew<R>(&self, view: &mut MemoryView, take: impl FnOnce() -> R) -> Option<R> {
        let now = self.current();
        if now == view.seen {
            return None;
        }
        self.renew_from(view, now, take)
    }

    /// The rare half of [`MemoryGenerations::renew`]: the generation moved to `now`.
    #[cold]
    #[inline(never)]
    fn renew_from<R>(
        &self,
        view: &mut MemoryView,
        now: u64,
        take: impl FnOnce() -> R,
    ) -> Option<R> {
        let ram = take();
        view.seen = now;
        self.record(view.vcpu, now);
        Some(ram)
    }

    /// A checkpoint where vCPU `vcpu` uses no guest memory until its next [`renew`]: it may
    /// say it has caught up without renewing yet.
    ///
    /// [`renew`]: MemoryGenerations::renew
    pub fn acknowledge(&self, vcpu: usize) {
        self.record(vcpu, self.current());
    }

    /// vCPU `vcpu`'s epoch ends: it holds no copy any more.
    pub fn leave(&self, vcpu: usize) {
        self.record(vcpu, AWAY);
    }

    /// Called under the RAM's lock, after the RAM and the SLAT changed: the generation the
    /// other vCPUs must reach before the pages that left may be reused.
    pub fn bump(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Kicks every vCPU but `caller` and waits, without holding any lock, until each has
    /// caught up with `generation` or is away. The caller acknowledges while it waits (it
    /// uses no guest memory until its next renew), so a vCPU waiting for it meanwhile is not
    /// held up.
    pub fn wait_caught_up(&self, caller: usize, generation: u64, cpu: &impl CpuOps) {
        for vcpu in (0..self.seen.len()).filter(|&v| v != caller) {
            loop {
                let seen = self.seen_by(vcpu);
                if seen == AWAY || seen >= generation {
                    break;
                }
                self.acknowledge(caller);
                cpu.kick(vcpu);
                cpu.pause();
            }
        }
    }

    /// Waits for `attempt` to succeed (a lock another CPU may hold across its own wait), with
    /// vCPU `vcpu` acknowledging memory changes meanwhile.
    pub fn wait_for<T>(
        &self,
        vcpu: usize,
        cpu: &impl CpuOps,
        mut attempt: impl FnMut() -> Option<T>,
    ) -> T {
        loop {
            if let Some(value) = attempt() {
                return value;
            }
            self.acknowledge(vcpu);
            cpu.pause();
        }
    }
}
