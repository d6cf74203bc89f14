//! Virtualization backends. Each decodes its exits into the policy core's `VmExit`; the
//! partition manager handles them the same way whatever the backend.

pub mod svm;

use numavisor_policy::vmexit::VmExit;

/// One virtual CPU, whatever the backend: enter the guest, get the exit decoded once, read
/// and change the guest state the shared handlers need. SVM implements it today
/// ([`svm::vcpu::SvmVcpu`]); VMX will implement the same.
pub trait Vcpu {
    /// Runs the guest until its next exit.
    fn run(&mut self) -> VmExit;
    /// The general registers the hardware does not keep for us.
    fn registers(&mut self) -> &mut GuestRegisters;
    fn rip(&self) -> u64;
    fn set_rip(&mut self, rip: u64);
    fn rax(&self) -> u64;
    fn set_rax(&mut self, rax: u64);
    /// The guest's view of EFER (without bits the backend needs for itself).
    fn efer(&self) -> u64;
    fn set_efer(&mut self, efer: u64);
    fn pat(&self) -> u64;
    fn set_pat(&mut self, pat: u64);
    /// The RIP after the intercepted instruction, `length` bytes long where the CPU does not
    /// say (QEMU's SVM has no next-RIP save).
    fn rip_after(&self, length: u64) -> u64;
    /// The event (vector) whose delivery the exit interrupted, if any.
    fn interrupted_event(&self) -> Option<u8>;
}

/// The guest's general registers that the hardware does not keep in the VMCB/VMCS
/// (SVM keeps RAX, RSP and RIP there).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestRegisters {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}
