//! When a vCPU may take an NMI: the architecture's rules, the same for every backend (Intel
//! SDM vol. 3A §6.7.1 and §6.8.3, AMD APM vol. 2 §8.2.2 and §8.5).
//!
//! - An NMI handler is not interrupted by another NMI: from the delivery of an NMI until the
//!   next IRET, further NMIs are held back.
//! - At most one NMI waits meanwhile: NMIs that arrive while one is already pending merge
//!   with it, so ten sent at once to a vCPU in its handler give one more handler run. Outside
//!   a handler two may wait: the first is delivered, and the CPU, blocked by then, latches
//!   the second (what KVM does too; kvm-unit-tests' "multiple nmi" sends two at once).
//! - No NMI is delivered in an interrupt shadow (the instruction boundary after STI or
//!   MOV SS/POP SS): the SDM allows the CPU to hold it back there, and Intel's CPUs and KVM
//!   do, so the guest's `sti; hlt` and stack switches see the same on every backend.
//!
//! Where the NMI blocking lives depends on the backend. VMX with "virtual NMIs" keeps it in
//! the guest's interruptibility state (set when an NMI is injected, cleared by IRET, SDM vol.
//! 3C §25.3 and §26.6.1.2) and exits at an NMI window; the rules here then only read it. SVM
//! has no such state for an injected NMI: the hypervisor masks NMIs itself when it injects
//! one and intercepts IRET. That intercept comes *before* the IRET executes (APM vol. 2
//! §15.9), so the handler counts as left only once the guest has moved past the IRET's RIP;
//! with an NMI waiting, the backend single-steps the IRET to get an exit right after it.
//!
//! The vCPU loop calls [`NmiState::inject`] before any other event is queued (an NMI outranks
//! an external interrupt) and [`NmiState::arm_exit`] after, and the exit handler reports the
//! RIP of every exit ([`NmiState::exited_at`]) and the IRET intercept ([`NmiState::iret_at`]).

use super::vcpu::{Event, NmiExit, Vcpu};

/// The guest's NMI handler as the hypervisor tracks it where the CPU does not (SVM).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Mask {
    /// Not in an NMI handler: an NMI may be delivered.
    #[default]
    Open,
    /// An NMI was injected; its handler's IRET has not come yet.
    InHandler,
    /// The handler's IRET at this RIP was intercepted but has not executed yet.
    LeavingAt(u64),
}

/// The most NMIs that wait for a vCPU: outside its handler, one to deliver and one latched
/// behind it.
pub const MAX_PENDING: u8 = 2;

/// One vCPU's NMI state: how many NMIs are pending (at most [`MAX_PENDING`]), and (SVM)
/// whether its handler runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NmiState {
    pending: u8,
    mask: Mask,
}

impl NmiState {
    /// `count` NMIs arrived for the vCPU. NMIs are edges, and the CPU latches at most one
    /// while NMIs are blocked (SDM vol. 3A §6.7.1): in the handler, one pending absorbs the
    /// rest; outside it, the first goes in and one more waits behind it.
    pub fn signal(&mut self, count: u8, cpu: &impl Vcpu) {
        let most = if self.blocked(cpu) { 1 } else { MAX_PENDING };
        self.pending = self
            .pending
            .max(self.pending.saturating_add(count).min(most));
    }

    /// Whether an NMI waits for delivery.
    pub fn pending(&self) -> bool {
        self.pending != 0
    }

    /// Whether the guest is in its NMI handler, as far as the hypervisor tracks it.
    pub fn in_handler(&self) -> bool {
        self.mask != Mask::Open
    }

    /// A fresh start (INIT, start-up IPI, restart): no NMI pending, none being handled.
    pub fn reset(&mut self) {
        *self = NmiState::default();
    }

    /// The guest exited at `rip`. Past the IRET whose intercept came earlier, the guest has
    /// left its NMI handler; at the IRET's own RIP (an exit before the IRET ran) it has not.
    pub fn exited_at(&mut self, rip: u64) {
        if let Mask::LeavingAt(at) = self.mask {
            if at != rip {
                self.mask = Mask::Open;
            }
        }
    }

    /// The IRET intercept (SVM) at `rip`: the IRET is about to run, and ends the handler once
    /// it has. An IRET outside an NMI handler (an interrupt handler's) changes nothing.
    pub fn iret_at(&mut self, rip: u64) {
        if self.mask == Mask::InHandler {
            self.mask = Mask::LeavingAt(rip);
        }
    }

    /// Whether NMIs are blocked for the guest: by the CPU's own blocking where it keeps one
    /// (VMX), else by the handler the hypervisor tracks.
    fn blocked(&self, cpu: &impl Vcpu) -> bool {
        cpu.cpu_nmi_blocking().unwrap_or(self.mask != Mask::Open)
    }

    /// Whether a pending NMI could be delivered now, interrupt shadows aside: a halted vCPU
    /// wakes for it (HLT ends on an NMI whatever RFLAGS.IF says).
    pub fn deliverable(&self, cpu: &impl Vcpu) -> bool {
        self.pending() && !self.blocked(cpu)
    }

    /// Before an entry, first of all events: queues the pending NMI if the guest may take it
    /// now — no event already queued (one re-queued after an interrupted delivery goes
    /// first), NMIs not blocked, no interrupt shadow.
    pub fn inject(&mut self, cpu: &mut impl Vcpu) {
        if !self.pending() || cpu.event_queued() || self.blocked(cpu) || cpu.interrupt_shadow() {
            return;
        }
        cpu.inject(Event::Nmi);
        self.pending -= 1;
        if cpu.cpu_nmi_blocking().is_none() {
            self.mask = Mask::InHandler;
        }
    }

    /// After every event of the entry is queued: the exit the backend arms so that the
    /// handler's end is seen (SVM: the IRET intercept) and a held-back NMI is delivered as
    /// soon as the guest can take it (VMX: the NMI window; SVM: one single-stepped
    /// instruction, past the IRET or the interrupt shadow). SVM never steps with an event
    /// queued: its delivery would push the hypervisor's RFLAGS.TF onto the guest's stack; the
    /// NMI then waits for the next exit.
    pub fn arm_exit(&self, cpu: &mut impl Vcpu) {
        let exit = match (cpu.cpu_nmi_blocking(), self.mask) {
            (None, Mask::InHandler) => NmiExit::Iret,
            _ if !self.pending() => NmiExit::None,
            (Some(_), _) => NmiExit::Window,
            (None, _) if cpu.event_queued() => NmiExit::None,
            (None, _) => NmiExit::Step,
        };
        cpu.set_nmi_exit(exit);
    }
}
