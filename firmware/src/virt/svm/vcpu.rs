//! [`Vcpu`] for AMD SVM: a VMCB plus the registers VMRUN does not swap.

use numavisor_policy::vmexit::{decode_svm, svm_code, VmExit};
use numavisor_policy::vmm::entry_state::ArchState;
use numavisor_policy::vmm::guest_regs::GuestRegisters;
use numavisor_policy::vmm::guest_walk::PagingState;
use numavisor_policy::vmm::mmio_decode::CpuMode;
use numavisor_policy::vmm::vcpu::{EntryState, Event, NmiExit, Vcpu};

use super::run;
use super::vmcb::{event_type, Vmcb, EFER_SVME};
use crate::virt::host_state;

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS.TF: a #DB trap after the next instruction.
const RFLAGS_TF: u64 = 1 << 8;
/// DR6.BS: the #DB came from a single step.
const DR6_BS: u64 = 1 << 14;

/// A single step the hypervisor armed ([`NmiExit::Step`]): the guest's own TF and DR6, which
/// it gets back after the step.
#[derive(Clone, Copy, Debug)]
struct Step {
    guest_tf: bool,
    dr6: u64,
}

/// One SVM vCPU.
pub struct SvmVcpu {
    vmcb: Vmcb,
    registers: GuestRegisters,
    next_rip_save: bool,
    /// The single step of the run about to start, if one was armed.
    step: Option<Step>,
    /// The host's VMSAVE page on the CPU this vCPU runs on.
    host_state: u64,
    /// The task-priority class last loaded into V_TPR: a different V_TPR after a run is a
    /// guest write of CR8.
    loaded_tpr: u8,
    /// The external interrupt offered for the run about to start ([`Vmcb::offer_interrupt`]).
    offered: Option<u8>,
    /// An interrupt the last run did not deliver (see [`Vcpu::take_untaken_interrupt`]).
    untaken: Option<u8>,
}

impl SvmVcpu {
    /// A vCPU on the VMCB `vmcb` (its controls set up by the partition builder), run on the
    /// CPU whose host VMSAVE page is `host_state`.
    pub fn new(vmcb: Vmcb, next_rip_save: bool, host_state: u64) -> SvmVcpu {
        SvmVcpu {
            vmcb,
            registers: GuestRegisters::default(),
            next_rip_save,
            step: None,
            host_state,
            loaded_tpr: 0,
            offered: None,
            untaken: None,
        }
    }
}

impl SvmVcpu {
    /// Drops the guest's translations through the nested page tables before its next run
    /// on this CPU (TLB_CONTROL = 1: this ASID), after pages were unmapped from them.
    pub fn flush_guest_translations(&mut self) {
        self.vmcb.set_tlb_flush();
    }

    /// One VMRUN: the raw (EXITCODE, EXITINFO1, EXITINFO2) of the exit that ended it.
    #[inline(always)]
    fn run_once(&mut self) -> (u64, u64, u64) {
        self.vmcb.set_rax(self.registers.rax);
        self.vmcb.set_rsp(self.registers.rsp);
        let before = host_state::snapshot_if_checked(&host_state::SVM_SWITCHED);
        // SAFETY: the VMCB and its nested page tables were built for this partition by the
        // partition builder; SVM is on for this CPU; interrupts are off on the run path.
        unsafe { run::run(self.vmcb.address(), &mut self.registers, self.host_state) };
        host_state::check(&host_state::SVM_SWITCHED, before);
        self.registers.rax = self.vmcb.rax();
        self.registers.rsp = self.vmcb.rsp();
        self.vmcb.clear_tlb_flush();
        // An injected event was delivered unless EXITINTINFO says otherwise (below).
        self.vmcb.clear_event();
        if let Some(vector) = self.offered.take() {
            // An offer the guest did not take ends with the run (the processor clears V_IRQ
            // as the guest takes it): the local APIC gets it back.
            if self.vmcb.virtual_interrupt_pending() {
                self.untaken = Some(vector);
            }
            self.vmcb.clear_virtual_interrupt();
        }
        let interrupted = self.vmcb.exit_interrupt_info();
        if interrupted & (1 << 31) != 0 {
            // An event was being delivered when the exit came (EXITINTINFO has EVENTINJ's
            // format, APM vol. 2 §15.7.2). An external interrupt goes back to the local APIC,
            // to be offered again; anything else is delivered again. (QEMU's TCG reports an
            // interrupt it was delivering as an exception with its vector, above 31, where no
            // exception is.)
            let (kind, vector) = ((interrupted >> 8) & 7, interrupted as u8);
            let external =
                kind == event_type::INTERRUPT || (kind == event_type::EXCEPTION && vector >= 32);
            if external {
                self.untaken = Some(vector);
            } else {
                self.vmcb.requeue_event(interrupted);
            }
        }
        self.vmcb.exit_info()
    }

    /// After a single-stepped run: the guest's own TF comes back, and the step's #DB (exit
    /// `code`) becomes [`VmExit::NmiWindow`] with the guest's DR6 restored, so the guest
    /// never sees either. A #DB the guest's own TF asked for is the guest's, and so is every
    /// other exit. (An IRET that pops TF = 1 while stepped loses it; KVM shares the flaw.)
    fn end_step(&mut self, step: Step, code: u64) -> Option<VmExit> {
        if !step.guest_tf {
            self.vmcb.set_rflags(self.vmcb.rflags() & !RFLAGS_TF);
        }
        let debug = svm_code::EXCEPTION_BASE + 1;
        if code == debug && !step.guest_tf && self.vmcb.dr6() & DR6_BS != 0 {
            self.vmcb.set_dr6(step.dr6);
            return Some(VmExit::NmiWindow);
        }
        None
    }
}

impl Vcpu for SvmVcpu {
    #[inline(always)]
    fn run(&mut self) -> VmExit {
        let (code, info1, info2) = self.run_once();
        if let Some(step) = self.step.take() {
            if let Some(exit) = self.end_step(step, code) {
                return exit;
            }
        }
        decode_svm(code, info1, info2)
    }

    fn registers(&mut self) -> &mut GuestRegisters {
        &mut self.registers
    }
    fn rip(&self) -> u64 {
        self.vmcb.rip()
    }
    fn set_rip(&mut self, rip: u64) {
        self.vmcb.set_rip(rip);
        // Moving past an instruction ends the interrupt shadow it may have been in.
        self.vmcb.clear_interrupt_shadow();
    }
    fn efer(&self) -> u64 {
        self.vmcb.efer() & !EFER_SVME
    }
    fn set_efer(&mut self, efer: u64) {
        self.vmcb.set_efer(efer);
    }
    fn pat(&self) -> u64 {
        self.vmcb.pat()
    }
    fn set_pat(&mut self, pat: u64) {
        self.vmcb.set_pat(pat);
    }

    fn paging(&self) -> PagingState {
        PagingState {
            cr0: self.vmcb.cr0(),
            cr3: self.vmcb.cr3(),
            cr4: self.vmcb.cr4(),
            efer: self.vmcb.efer(),
        }
    }

    fn cpu_mode(&self) -> CpuMode {
        let cs = self.vmcb.cs();
        let long = cs.attributes & (1 << 9) != 0; // L (attribute bit 9 = descriptor bit 53)
        let default32 = cs.attributes & (1 << 10) != 0; // D/B
        if self.vmcb.cr0() & 1 == 0 {
            CpuMode::Real
        } else if self.vmcb.efer() & (1 << 10) != 0 && long {
            CpuMode::Long64
        } else if default32 {
            CpuMode::Protected32
        } else {
            CpuMode::Protected16
        }
    }

    fn code_base(&self) -> u64 {
        self.vmcb.cs().base
    }

    fn cpl(&self) -> u8 {
        self.vmcb.cpl()
    }

    fn interrupts_enabled(&self) -> bool {
        self.vmcb.rflags() & RFLAGS_IF != 0
    }

    fn interruptible(&self) -> bool {
        self.interrupts_enabled() && !self.vmcb.interrupt_shadow()
    }

    fn interrupt_shadow(&self) -> bool {
        self.vmcb.interrupt_shadow()
    }

    /// SVM keeps no NMI blocking for an injected NMI: the hypervisor tracks it.
    fn cpu_nmi_blocking(&self) -> Option<bool> {
        None
    }

    fn set_nmi_exit(&mut self, exit: NmiExit) {
        self.vmcb.set_iret_intercept(exit == NmiExit::Iret);
        if exit == NmiExit::Step && self.step.is_none() {
            // The #DB intercept is always on (`Vmcb::set_controls`): the trap after the next
            // instruction exits instead of reaching the guest.
            let rflags = self.vmcb.rflags();
            self.step = Some(Step {
                guest_tf: rflags & RFLAGS_TF != 0,
                dr6: self.vmcb.dr6(),
            });
            self.vmcb.set_rflags(rflags | RFLAGS_TF);
        }
    }

    fn next_rip(&self) -> Option<u64> {
        self.next_rip_save.then(|| self.vmcb.next_rip())
    }

    fn interrupted_event(&self) -> Option<u8> {
        let info = self.vmcb.exit_interrupt_info();
        (info & (1 << 31) != 0).then_some(info as u8)
    }

    fn event_queued(&self) -> bool {
        self.vmcb.event_queued() || self.offered.is_some()
    }

    fn inject(&mut self, event: Event) {
        match event {
            // Offered as a virtual interrupt, not injected with EVENTINJ: QEMU's TCG delivers
            // an injected interrupt inside VMRUN but leaves it as the CPU's pending exception,
            // which it delivers a second time, whatever RFLAGS.IF says, when another CPU's
            // exclusive work (an atomic step, a code flush) next stops this one; Linux then
            // runs its interrupt entry with the user's GS (issue 17's open defect).
            Event::Interrupt(vector) => {
                self.vmcb.offer_interrupt(vector);
                self.offered = Some(vector);
            }
            Event::Nmi => self.vmcb.inject_event(2, event_type::NMI, None),
            Event::Exception { vector, error_code } => {
                self.vmcb
                    .inject_event(vector, event_type::EXCEPTION, error_code)
            }
        }
    }

    fn set_interrupt_window(&mut self, wanted: bool) {
        // An offered interrupt is taken as soon as the guest can take one: the exit that a
        // window would give is not needed, and asking for one would replace the offer.
        if self.offered.is_none() {
            self.vmcb.set_interrupt_window(wanted);
        }
    }

    fn take_untaken_interrupt(&mut self) -> Option<u8> {
        self.untaken.take()
    }

    fn set_tsc_offset(&mut self, offset: u64) {
        self.vmcb.set_tsc_offset(offset);
    }

    fn set_tsc_aux(&mut self, value: u32) {
        crate::virt::tsc_aux::load(value);
    }

    fn take_task_priority_write(&mut self) -> Option<u8> {
        let class = self.vmcb.v_tpr();
        (class != self.loaded_tpr).then(|| {
            self.loaded_tpr = class;
            class
        })
    }

    fn load_task_priority(&mut self, class: u8) {
        if class != self.loaded_tpr {
            self.vmcb.set_v_tpr(class);
            self.loaded_tpr = class;
        }
    }

    fn exit_on_task_priority_write(&mut self, wanted: bool) {
        self.vmcb.set_cr8_write_intercept(wanted);
    }

    fn xsetbv(&mut self, index: u32, value: u64) -> bool {
        crate::virt::xstate::guest_xsetbv(index, value, self.vmcb.cpl()).is_ok()
    }

    fn enter(&mut self, state: EntryState) {
        self.registers = GuestRegisters::default();
        self.vmcb.clear_event();
        self.vmcb.set_interrupt_window(false);
        self.offered = None;
        self.untaken = None;
        self.vmcb.set_v_tpr(0);
        self.loaded_tpr = 0;
        self.vmcb.set_iret_intercept(false);
        self.step = None;
        let arch = ArchState::of(state);
        self.vmcb.set_state(&arch);
        crate::virt::xstate::reset_for_start();
        self.registers.rbx = arch.rbx;
        self.registers.rdx = arch.rdx;
        self.registers.rsi = arch.rsi;
    }
}
