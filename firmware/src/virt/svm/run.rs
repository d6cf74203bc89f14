//! VMRUN: the world switch (AMD APM vol. 2 §15.5). The guest's RAX, RSP and RIP live in the
//! VMCB; the other general registers are swapped by hand around VMRUN. VMRUN does not switch
//! FS, GS, TR, LDTR, KernelGSBase and the SYSCALL/SYSENTER MSRs: VMSAVE keeps the host's in a
//! page of this CPU's before VMLOAD gives the guest its own, and after the guest's VMSAVE the
//! host's come back with VMLOAD (APM §15.5.2), so no guest write to them reaches the host.
//! The x87/SSE/AVX state and XCR0 are not switched: the hypervisor is built without floating
//! point or SIMD (`x86_64-unknown-none`) and each CPU runs one vCPU only.

use core::arch::global_asm;

use numavisor_policy::vmm::guest_regs::GuestRegisters;

global_asm!(
    r#"
    .pushsection .text.svm_run, "ax"
    .global svm_run_guest
svm_run_guest:
    /* rdi = VMCB physical address, rsi = &mut GuestRegisters (repr(C): rax, rbx, rcx, rdx,
       rsi, rdi, rbp, rsp, r8..r15; RAX and RSP live in the VMCB and are not touched here),
       rdx = this CPU's host state page */
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    push rdx                    /* the host state page, for after the exit */
    push rsi                    /* the registers block, for after the exit */
    mov rax, rdx
    vmsave rax                  /* the host's FS, GS, TR, LDTR, syscall MSRs */
    mov rax, rdi
    mov rbx, [rsi + 8]
    mov rcx, [rsi + 16]
    mov rdx, [rsi + 24]
    mov rdi, [rsi + 40]
    mov rbp, [rsi + 48]
    mov r8,  [rsi + 64]
    mov r9,  [rsi + 72]
    mov r10, [rsi + 80]
    mov r11, [rsi + 88]
    mov r12, [rsi + 96]
    mov r13, [rsi + 104]
    mov r14, [rsi + 112]
    mov r15, [rsi + 120]
    mov rsi, [rsi + 32]
    /* GIF=0 holds every interrupt off the host; IF=1 at VMRUN lets physical interrupts
       end the guest's run (#VMEXIT(INTR), with V_INTR_MASKING: APM vol. 2 §15.21.1).
       After the exit, IF=0 before STGI, so the interrupt waits for the host's STI. */
    clgi
    sti
    vmload rax
    vmrun rax
    vmsave rax
    mov rax, [rsp + 8]
    vmload rax                  /* the host's own back, before anything can interrupt */
    cli
    stgi
    xchg rsi, [rsp]             /* rsi = registers block; guest rsi on the stack */
    mov [rsi + 8], rbx
    mov [rsi + 16], rcx
    mov [rsi + 24], rdx
    mov [rsi + 40], rdi
    mov [rsi + 48], rbp
    mov [rsi + 64], r8
    mov [rsi + 72], r9
    mov [rsi + 80], r10
    mov [rsi + 88], r11
    mov [rsi + 96], r12
    mov [rsi + 104], r13
    mov [rsi + 112], r14
    mov [rsi + 120], r15
    pop rax
    mov [rsi + 32], rax
    pop rax                     /* the host state page */
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
    .popsection
"#
);

unsafe extern "C" {
    fn svm_run_guest(vmcb: u64, registers: *mut GuestRegisters, host_state: u64);
}

/// Runs the guest described by the VMCB at `vmcb` until its next #VMEXIT.
///
/// # Safety
/// `vmcb` must be the physical (= identity-mapped) address of a VMCB whose guest state and
/// nested page tables were built by this hypervisor for one partition, SVM must be enabled on
/// this CPU with a host save area, `host_state` must be a 4 KiB page of this CPU's own (for
/// VMSAVE/VMLOAD of the host's state), and interrupts must be off.
pub unsafe fn run(vmcb: u64, registers: &mut GuestRegisters, host_state: u64) {
    // SAFETY: per this function's contract; the asm saves and restores every callee-saved
    // register and the host's VMLOAD/VMSAVE state, and leaves the stack as it found it.
    unsafe { svm_run_guest(vmcb, registers, host_state) }
}
