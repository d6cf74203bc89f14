//! VM entry and exit (Intel SDM vol. 3C ch. 26–27). The VMCS switches RIP, RSP, RFLAGS, the
//! control registers, segment state, EFER, PAT and the SYSENTER MSRs; the general registers
//! but RSP are swapped here by hand. HOST_RSP is written just before each entry (the stack
//! of this call), HOST_RIP once per VMCS ([`exit_point`]). An exit lands at
//! `vmx_exit_point` with RFLAGS = 2 (interrupts off) and the stack as it was at entry, whose
//! top holds the registers block.
//! CR2 and the debug registers other than DR7 are not switched by VMX: CR2 is swapped by
//! the caller; the hypervisor never uses DR0–DR6.

use core::arch::global_asm;

use numavisor_policy::vmm::guest_regs::GuestRegisters;
use numavisor_policy::vmx::fields::HOST_RSP;

global_asm!(
    r#"
    .pushsection .text.vmx_run, "ax"
    .global vmx_run_guest
vmx_run_guest:
    /* rdi = &mut GuestRegisters (repr(C): rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8..r15;
       RSP lives in the VMCS), rsi = 0 for VMLAUNCH, else VMRESUME.
       Returns 0 after an exit, 1 for VMfailInvalid, 2 for VMfailValid. */
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    push rdi                    /* the registers block, for after the exit */
    mov rax, {host_rsp}
    vmwrite rax, rsp
    mov rax, rdi
    test rsi, rsi               /* ZF: launch; MOVs below keep the flags */
    mov rbx, [rax + 8]
    mov rcx, [rax + 16]
    mov rdx, [rax + 24]
    mov rsi, [rax + 32]
    mov rdi, [rax + 40]
    mov rbp, [rax + 48]
    mov r8,  [rax + 64]
    mov r9,  [rax + 72]
    mov r10, [rax + 80]
    mov r11, [rax + 88]
    mov r12, [rax + 96]
    mov r13, [rax + 104]
    mov r14, [rax + 112]
    mov r15, [rax + 120]
    mov rax, [rax]
    jnz 2f
    vmlaunch
    jmp 3f
2:
    vmresume
3:
    /* the entry failed: no guest ran; CF or ZF say how */
    mov eax, 1
    jc 4f
    mov eax, 2
4:
    pop rdi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret

    .global vmx_exit_point
vmx_exit_point:
    push rax                    /* guest rax; the registers block is above it */
    mov rax, [rsp + 8]
    mov [rax + 8], rbx
    mov [rax + 16], rcx
    mov [rax + 24], rdx
    mov [rax + 32], rsi
    mov [rax + 40], rdi
    mov [rax + 48], rbp
    mov [rax + 64], r8
    mov [rax + 72], r9
    mov [rax + 80], r10
    mov [rax + 88], r11
    mov [rax + 96], r12
    mov [rax + 104], r13
    mov [rax + 112], r14
    mov [rax + 120], r15
    pop rbx
    mov [rax], rbx
    pop rdi
    xor eax, eax
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
    .popsection
"#,
    host_rsp = const HOST_RSP,
);

unsafe extern "C" {
    fn vmx_run_guest(registers: *mut GuestRegisters, resume: u64) -> u64;
    fn vmx_exit_point();
}

/// Where VM exits land: the VMCS's HOST_RIP.
pub fn exit_point() -> u64 {
    vmx_exit_point as *const () as u64
}

/// How a VM entry ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// The guest ran until a VM exit.
    Exited,
    /// VMLAUNCH/VMRESUME failed before the guest ran (`valid`: the VM-instruction error
    /// field says why).
    Failed { valid: bool },
}

/// Enters the guest of the current VMCS (VMRESUME if `launched`) until its next exit.
///
/// # Safety
/// VMX must be on for this CPU with the vCPU's VMCS current, its host-state fields set for
/// this CPU (HOST_RIP = [`exit_point`]), its guest state and EPT built by this hypervisor for
/// one partition, and interrupts off.
pub unsafe fn run(registers: &mut GuestRegisters, launched: bool) -> Entry {
    // SAFETY: per this function's contract; the asm saves and restores every callee-saved
    // register and leaves the stack as it found it on both paths.
    match unsafe { vmx_run_guest(registers, launched as u64) } {
        0 => Entry::Exited,
        code => Entry::Failed { valid: code == 2 },
    }
}
