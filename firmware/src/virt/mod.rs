//! Virtualization backends. Each decodes its exits into the policy core's `VmExit`; the
//! partition manager handles them the same way whatever the backend.

pub mod svm;

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
