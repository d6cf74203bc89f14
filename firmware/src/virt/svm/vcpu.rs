//! [`Vcpu`] for AMD SVM: a VMCB plus the registers VMRUN does not swap.

use numavisor_policy::vmexit::{decode_svm, VmExit};

use super::run;
use super::vmcb::{Vmcb, EFER_SVME};
use crate::virt::{GuestRegisters, Vcpu};

/// One SVM vCPU.
pub struct SvmVcpu {
    vmcb: Vmcb,
    registers: GuestRegisters,
    next_rip_save: bool,
}

impl SvmVcpu {
    /// A vCPU on the VMCB `vmcb` (set up by the partition builder) with `registers`.
    pub fn new(vmcb: Vmcb, registers: GuestRegisters, next_rip_save: bool) -> SvmVcpu {
        SvmVcpu {
            vmcb,
            registers,
            next_rip_save,
        }
    }

    /// Replaces the registers (a restarted guest starts from its boot values).
    pub fn reset_registers(&mut self, registers: GuestRegisters) {
        self.registers = registers;
    }
}

impl Vcpu for SvmVcpu {
    fn run(&mut self) -> VmExit {
        // SAFETY: the VMCB and its nested page tables were built for this partition by the
        // partition builder; SVM is on for this CPU; interrupts are off on the run path.
        unsafe { run::run(self.vmcb.address(), &mut self.registers) };
        self.vmcb.clear_tlb_flush();
        let (code, info1, info2) = self.vmcb.exit_info();
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
    }
    fn rax(&self) -> u64 {
        self.vmcb.rax()
    }
    fn set_rax(&mut self, rax: u64) {
        self.vmcb.set_rax(rax);
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

    fn rip_after(&self, length: u64) -> u64 {
        if self.next_rip_save {
            self.vmcb.next_rip()
        } else {
            self.vmcb.rip() + length
        }
    }

    fn interrupted_event(&self) -> Option<u8> {
        let info = self.vmcb.exit_interrupt_info();
        (info & (1 << 31) != 0).then_some(info as u8)
    }
}
