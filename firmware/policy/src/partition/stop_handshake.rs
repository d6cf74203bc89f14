//! The stop and restart handshake of one partition's vCPUs.
//!
//! A stop is carried out by the vCPU that claims it ([`StopHandshake::begin_stop`]), once
//! every other vCPU of the partition has parked ([`StopHandshake::wait_parked`]): none of them
//! runs guest code while its memory is given back or reloaded. The others see the claim at
//! their next checkpoint and [`park`](StopHandshake::park) until
//! [`finish_stop`](StopHandshake::finish_stop) moves the epoch on; they then restart, or leave
//! for good. A guest cannot refuse to park: the host timer bounds every guest run, and every
//! wait inside the hypervisor passes checkpoints.
//!
//! The handshake is also the one source of truth for whether a partition still lives
//! ([`StopHandshake::ended`]).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use super::cpu_ops::CpuOps;

/// The partition-wide stop handshake.
#[derive(Debug, Default)]
pub struct StopHandshake {
    /// Moves when a stop finishes (restart or end): parked vCPUs go on.
    epoch: AtomicU32,
    /// A vCPU is stopping the partition; the others must park.
    stopping: AtomicBool,
    /// vCPUs parked for the current stop.
    parked: AtomicUsize,
    /// The partition ended for good.
    ended: AtomicBool,
}

/// What a parked vCPU does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterStop {
    /// The partition restarted: start over from the entry state.
    Restarted,
    /// The partition is gone: give the CPU back.
    Ended,
}

/// Pauses between progress reports of [`StopHandshake::wait_parked`].
pub const PROGRESS_EVERY: u32 = 200;

impl StopHandshake {
    /// The current life of the partition (moves at every finished stop).
    pub fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// A vCPU is stopping the partition: the caller should park.
    pub fn stop_requested(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The partition ended for good.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Claims the stop; false if another vCPU already carries one out (then park).
    pub fn begin_stop(&self) -> bool {
        !self.stopping.swap(true, Ordering::SeqCst)
    }

    /// Waits until `others` vCPUs have parked; `progress` hears how many have, every
    /// [`PROGRESS_EVERY`] pauses.
    pub fn wait_parked(&self, others: usize, cpu: &impl CpuOps, mut progress: impl FnMut(usize)) {
        let mut waited = 0u32;
        loop {
            let parked = self.parked.load(Ordering::SeqCst);
            if parked >= others {
                return;
            }
            cpu.pause();
            waited = waited.wrapping_add(1);
            if waited.is_multiple_of(PROGRESS_EVERY) {
                progress(parked);
            }
        }
    }

    /// The stopping vCPU has decided the partition will not run again: from now on it reads as
    /// ended, while its memory is given back (before [`finish_stop`](Self::finish_stop)).
    pub fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }

    /// Ends the stop: parked vCPUs restart (`restarted`) or leave.
    pub fn finish_stop(&self, restarted: bool) {
        if !restarted {
            self.ended.store(true, Ordering::SeqCst);
        }
        self.parked.store(0, Ordering::SeqCst);
        self.stopping.store(false, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Parks the calling vCPU (which saw the partition at `epoch`) until the stop is over.
    pub fn park(&self, epoch: u32, cpu: &impl CpuOps) -> AfterStop {
        self.parked.fetch_add(1, Ordering::SeqCst);
        while self.epoch() == epoch {
            cpu.pause();
        }
        if self.ended() {
            AfterStop::Ended
        } else {
            AfterStop::Restarted
        }
    }
}
