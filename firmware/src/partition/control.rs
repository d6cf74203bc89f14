//! What the vCPUs of one partition share across CPUs: each vCPU's local APIC and start-up
//! signals, and the stop/restart handshake.
//!
//! The handshake itself is `numavisor_policy::partition::stop_handshake`: a stop is carried
//! out by the vCPU that claims it once every other vCPU of the partition has parked.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};

use numavisor_policy::devices::lapic::LocalApic;
use numavisor_policy::partition::cpu_ops::CpuOps;
pub use numavisor_policy::partition::stop_handshake::AfterStop;
use numavisor_policy::partition::stop_handshake::StopHandshake;
use numavisor_policy::vmm::exit::StopRequest;
use numavisor_policy::vmm::nmi::MAX_PENDING as NMIS_HELD;
use spin::Mutex;

use super::Partition;
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
    /// NMIs that arrived and the vCPU has not taken yet, at most as many as `vmm::nmi` keeps
    /// pending ([`NMIS_HELD`]).
    nmi: AtomicU8,
}

impl VcpuSlot {
    pub fn new(lapic: LocalApic, host_apic_id: u32) -> VcpuSlot {
        VcpuSlot {
            lapic: Mutex::new(lapic),
            host_apic_id,
            init: AtomicBool::new(false),
            sipi: AtomicU32::new(0),
            nmi: AtomicU8::new(0),
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
        let _ = self
            .nmi
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some((n + 1).min(NMIS_HELD))
            });
    }
    pub fn take_init(&self) -> bool {
        self.init.swap(false, Ordering::SeqCst)
    }
    pub fn take_startup(&self) -> Option<u8> {
        let value = self.sipi.swap(0, Ordering::SeqCst);
        (value != 0).then_some(value as u8)
    }
    /// The NMIs that arrived since the last call (`vmm::nmi` decides how many stay pending).
    pub fn take_nmis(&self) -> u8 {
        self.nmi.swap(0, Ordering::SeqCst)
    }
    /// Whether a signal waits that should end a halted vCPU's idle wait.
    pub fn signalled(&self) -> bool {
        self.start_signalled() || self.nmi.load(Ordering::SeqCst) != 0
    }
    /// Whether INIT or a start-up IPI waits: what ends a wait for SIPI. An NMI does not; it
    /// stays pending until the vCPU runs (the wait-for-SIPI state holds NMIs).
    pub fn start_signalled(&self) -> bool {
        self.init.load(Ordering::SeqCst) || self.sipi.load(Ordering::SeqCst) != 0
    }
    /// Forgets signals (at a restart).
    pub fn clear_signals(&self) {
        self.init.store(false, Ordering::SeqCst);
        self.sipi.store(0, Ordering::SeqCst);
        self.nmi.store(0, Ordering::SeqCst);
    }
}

/// The partition-wide stop handshake ([`StopHandshake`], host-tested with threads), and the
/// operator's requests for it.
#[derive(Default)]
pub struct Control {
    handshake: StopHandshake,
    /// A stop or restart asked for on the monitor shell, for the first vCPU that looks.
    operator: Mutex<Option<StopRequest>>,
}

impl Control {
    pub fn epoch(&self) -> u32 {
        self.handshake.epoch()
    }
    pub fn stop_requested(&self) -> bool {
        self.handshake.stop_requested()
    }
    /// Whether the partition ended for good: the one answer to "is it alive".
    pub fn ended(&self) -> bool {
        self.handshake.ended()
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
        self.handshake.begin_stop()
    }

    /// Waits (interrupts on, halted between checks) until `others` vCPUs of `partition` have
    /// parked.
    pub fn wait_parked(&self, partition: &Partition, others: usize) {
        self.handshake
            .wait_parked(others, &PartitionCpus(partition), |parked| {
                log::warn!(
                    "partition \"{}\": stop: {parked} of {others} vCPU(s) parked so far",
                    partition.name()
                )
            });
    }

    /// The partition will not run again (its stopping vCPU decided so): it reads as ended
    /// while its memory is given back.
    pub fn end(&self) {
        self.handshake.end();
    }

    /// Ends the stop: parked vCPUs restart or leave.
    pub fn finish_stop(&self, restarted: bool) {
        self.handshake.finish_stop(restarted);
    }

    /// Parks the calling vCPU of `partition` (seen at `epoch`) until the stop is over.
    pub fn park(&self, partition: &Partition, epoch: u32) -> AfterStop {
        self.handshake.park(epoch, &PartitionCpus(partition))
    }
}

/// The CPUs running a partition's vCPUs, as the protocols wait with them: a kick is a wake
/// IPI, a pause a HLT of at most a millisecond.
pub struct PartitionCpus<'a>(pub &'a Partition);

impl CpuOps for PartitionCpus<'_> {
    fn kick(&self, vcpu: usize) {
        if let Some(slot) = self.0.vcpus.get(vcpu) {
            slot.kick();
        }
    }
    fn pause(&self) {
        halt_a_while();
    }
}

/// Sleeps until the next interrupt or at most a millisecond (the host timer).
pub fn halt_a_while() {
    let deadline = crate::platform::cpu::tsc::deadline_after_micros(1_000);
    apic::arm_timer_at(deadline);
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
}
