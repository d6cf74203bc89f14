//! What the vCPUs of one partition share across CPUs: each vCPU's local APIC and start-up
//! signals, and the stop/restart handshake.
//!
//! A stop is carried out by the vCPU that asked for it, once every other vCPU of the
//! partition has parked: none of them runs guest code while its memory is given back or
//! reloaded. Parking cannot be refused by a guest, because the host timer bounds every
//! guest run and every idle wait re-checks the stop flag.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use numavisor_policy::devices::lapic::LocalApic;
use numavisor_policy::vmm::exit::StopRequest;
use spin::Mutex;

use crate::platform::cpu::apic;

/// One vCPU's state that other CPUs touch.
pub struct VcpuSlot {
    /// Its virtual local APIC.
    pub lapic: Mutex<LocalApic>,
    /// The host CPU it is pinned to.
    pub host_apic_id: u32,
    /// An INIT IPI arrived.
    init: AtomicBool,
    /// A start-up IPI arrived: 0x100 | vector, or 0.
    sipi: AtomicU32,
    /// An NMI arrived.
    nmi: AtomicBool,
    /// The partition's memory generation this vCPU has caught up with, or
    /// [`memory_sync::AWAY`](super::memory_sync::AWAY) while it runs no epoch.
    pub memory_seen: core::sync::atomic::AtomicU64,
}

impl VcpuSlot {
    pub fn new(lapic: LocalApic, host_apic_id: u32) -> VcpuSlot {
        VcpuSlot {
            lapic: Mutex::new(lapic),
            host_apic_id,
            init: AtomicBool::new(false),
            sipi: AtomicU32::new(0),
            nmi: AtomicBool::new(false),
            memory_seen: core::sync::atomic::AtomicU64::new(super::memory_sync::AWAY),
        }
    }

    /// Wakes the CPU running this vCPU (a fixed IPI: it leaves the guest or its HLT).
    pub fn kick(&self) {
        if self.host_apic_id != apic::current_apic_id() {
            apic::send_ipi(self.host_apic_id, 0x4000 | apic::WAKE_VECTOR as u32);
        }
    }

    pub fn signal_init(&self) {
        self.sipi.store(0, Ordering::SeqCst);
        self.init.store(true, Ordering::SeqCst);
    }
    pub fn signal_startup(&self, vector: u8) {
        self.sipi.store(0x100 | vector as u32, Ordering::SeqCst);
    }
    pub fn signal_nmi(&self) {
        self.nmi.store(true, Ordering::SeqCst);
    }
    pub fn take_init(&self) -> bool {
        self.init.swap(false, Ordering::SeqCst)
    }
    pub fn take_startup(&self) -> Option<u8> {
        let value = self.sipi.swap(0, Ordering::SeqCst);
        (value != 0).then_some(value as u8)
    }
    pub fn take_nmi(&self) -> bool {
        self.nmi.swap(false, Ordering::SeqCst)
    }
    /// Whether a signal waits that should end an idle wait.
    pub fn signalled(&self) -> bool {
        self.init.load(Ordering::SeqCst)
            || self.sipi.load(Ordering::SeqCst) != 0
            || self.nmi.load(Ordering::SeqCst)
    }
    /// Forgets signals (at a restart).
    pub fn clear_signals(&self) {
        self.init.store(false, Ordering::SeqCst);
        self.sipi.store(0, Ordering::SeqCst);
        self.nmi.store(false, Ordering::SeqCst);
    }
}

/// The partition-wide stop handshake.
#[derive(Default)]
pub struct Control {
    /// Bumped when a stop finishes (restart or end): parked vCPUs go on.
    epoch: AtomicU32,
    /// A vCPU is stopping the partition; the others must park.
    stopping: AtomicBool,
    /// vCPUs parked for the current stop.
    parked: AtomicUsize,
    /// The partition ended for good.
    ended: AtomicBool,
    /// A stop or restart asked for on the monitor shell, for the first vCPU that looks.
    operator: Mutex<Option<StopRequest>>,
}

/// What a parked vCPU does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterStop {
    /// The partition restarted: start over from the entry state.
    Restarted,
    /// The partition is gone: give the CPU back.
    Ended,
}

impl Control {
    pub fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::SeqCst)
    }
    pub fn stop_requested(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Asks the partition's vCPUs to carry out `request` (from the monitor shell); the first
    /// to look takes it. A later request replaces one not yet taken.
    pub fn ask(&self, request: StopRequest) {
        *self.operator.lock() = Some(request);
    }

    /// The request asked for, if any (taken: one vCPU carries it out).
    pub fn take_asked(&self) -> Option<StopRequest> {
        self.operator.lock().take()
    }

    /// Claims the stop; false if another vCPU already carries one out (then park).
    pub fn begin_stop(&self) -> bool {
        !self.stopping.swap(true, Ordering::SeqCst)
    }

    /// Waits (interrupts on, halted between checks) until `others` vCPUs have parked.
    pub fn wait_parked(&self, others: usize) {
        let mut waited = 0u32;
        while self.parked.load(Ordering::SeqCst) < others {
            halt_a_while();
            waited = waited.saturating_add(1);
            if waited.is_multiple_of(200) {
                log::warn!(
                    "stop: {} of {others} vCPU(s) parked so far",
                    self.parked.load(Ordering::SeqCst)
                );
            }
        }
    }

    /// Ends the stop: parked vCPUs restart or leave.
    pub fn finish_stop(&self, restarted: bool) {
        if !restarted {
            self.ended.store(true, Ordering::SeqCst);
        }
        self.parked.store(0, Ordering::SeqCst);
        self.stopping.store(false, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Parks the calling vCPU (seen at `epoch`) until the stop is over.
    pub fn park(&self, epoch: u32) -> AfterStop {
        self.parked.fetch_add(1, Ordering::SeqCst);
        while self.epoch() == epoch {
            halt_a_while();
        }
        if self.ended() {
            AfterStop::Ended
        } else {
            AfterStop::Restarted
        }
    }
}

/// Sleeps until the next interrupt or at most a millisecond (the host timer).
pub fn halt_a_while() {
    let deadline = crate::platform::cpu::tsc::deadline_after_micros(1_000);
    apic::arm_timer_at(deadline);
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
}
