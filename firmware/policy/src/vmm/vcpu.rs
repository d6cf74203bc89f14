//! The one interface every virtualization backend implements for a virtual CPU (SVM with NPT
//! and VMX with EPT): enter the guest and get its exit decoded once, read and change the guest state
//! the shared exit handlers need, inject events, and put the vCPU into one of the entry
//! states a partition starts from.

use super::guest_regs::GuestRegisters;
use super::guest_walk::PagingState;
use super::mmio_decode::CpuMode;
use crate::vmexit::VmExit;

/// An event for the guest to take on its next entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An external interrupt with `vector` (from the virtual local APIC).
    Interrupt(u8),
    /// A non-maskable interrupt.
    Nmi,
    /// An exception, with its error code where the vector has one (#GP: 13, #UD: 6 ...).
    Exception { vector: u8, error_code: Option<u32> },
}

/// The exit a backend arms so that a held-back NMI reaches the guest as soon as the guest
/// can take it (chosen by [`super::nmi::NmiState::arm_exit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NmiExit {
    /// None needed.
    None,
    /// VMX: an [`VmExit::NmiWindow`] once no NMI blocking and no interrupt shadow remain
    /// ("NMI-window exiting", SDM vol. 3C §25.2).
    Window,
    /// SVM: an [`VmExit::Iret`] before the guest's next IRET (the end of its NMI handler).
    Iret,
    /// SVM: an [`VmExit::NmiWindow`] after the guest's next instruction (single-stepped with
    /// RFLAGS.TF, which the guest never sees, nor the #DB it raises).
    Step,
}

/// The architectural exception vectors the shared handlers raise.
pub mod exception {
    pub const DEBUG: u8 = 1;
    pub const INVALID_OPCODE: u8 = 6;
    pub const GENERAL_PROTECTION: u8 = 13;
    pub const MACHINE_CHECK: u8 = 18;
}

/// A state a vCPU starts (or restarts) from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// PVH: 32-bit protected mode, paging off, flat segments, EBX = start_info.
    Pvh32 { rip: u64, rbx: u64 },
    /// Linux's 64-bit boot protocol: long mode with identity-mapped boot page tables at
    /// `cr3`, the boot GDT at `gdt_base` (code 0x10, data 0x18), RSI = zero page.
    Linux64 {
        rip: u64,
        rsi: u64,
        cr3: u64,
        gdt_base: u64,
        gdt_limit: u16,
    },
    /// An application processor after INIT and a start-up IPI: real mode at
    /// `vector << 12`.
    Startup { vector: u8 },
}

/// One virtual CPU, whatever the backend.
pub trait Vcpu {
    /// Runs the guest until its next exit. An event whose delivery the exit interrupted is
    /// queued again by the backend, so the guest never loses it.
    fn run(&mut self) -> VmExit;
    /// The guest's general registers (RAX and RSP included; the backend keeps them in sync
    /// with its control block around `run`).
    fn registers(&mut self) -> &mut GuestRegisters;
    fn rip(&self) -> u64;
    fn set_rip(&mut self, rip: u64);
    /// The guest's view of EFER (without bits the backend needs for itself).
    fn efer(&self) -> u64;
    fn set_efer(&mut self, efer: u64);
    fn pat(&self) -> u64;
    fn set_pat(&mut self, pat: u64);
    /// CR0, CR3, CR4 and EFER: what a walk of the guest's page tables needs.
    fn paging(&self) -> PagingState;
    /// The mode the guest's code runs in (from CR0.PE, EFER.LMA and CS.L/D).
    fn cpu_mode(&self) -> CpuMode;
    /// The guest's current privilege level (SS.DPL; 0 in real mode).
    fn cpl(&self) -> u8;
    /// CS's base: the linear address of RIP is `code_base + rip`.
    fn code_base(&self) -> u64;
    /// RFLAGS.IF: whether an interrupt would wake the guest from HLT.
    fn interrupts_enabled(&self) -> bool;
    /// Whether the guest can take an external interrupt now (RFLAGS.IF set, no interrupt
    /// shadow).
    fn interruptible(&self) -> bool;
    /// Whether the guest is in an interrupt shadow (the boundary after STI or MOV SS): no
    /// interrupt and no NMI may be delivered there.
    fn interrupt_shadow(&self) -> bool;
    /// The CPU's own NMI blocking where it keeps one for the guest (VMX with virtual NMIs:
    /// "blocking by NMI", set by an injected NMI and cleared by IRET); None where the
    /// hypervisor must track it (SVM, [`super::nmi::NmiState`]).
    fn cpu_nmi_blocking(&self) -> Option<bool>;
    /// Arms `exit` for the next run (and disarms the others).
    fn set_nmi_exit(&mut self, exit: NmiExit);
    /// The RIP after the intercepted instruction, where the hardware saved it.
    fn next_rip(&self) -> Option<u64>;
    /// The vector whose delivery the last exit interrupted, if any.
    fn interrupted_event(&self) -> Option<u8>;
    /// Whether an event is queued for the next entry (injected, or re-queued after an
    /// interrupted delivery): no other may be injected until it is taken.
    fn event_queued(&self) -> bool;
    /// Queues `event` for the next entry.
    fn inject(&mut self, event: Event);
    /// An external interrupt that was handed to the guest for the last run but not delivered
    /// (the run ended first, or the exit interrupted its delivery): the caller gives it back
    /// to the local APIC, which offers it again. Backends whose injection always delivers at
    /// entry, and re-deliver an interrupted one themselves, never have one.
    fn take_untaken_interrupt(&mut self) -> Option<u8>;
    /// Asks for an [`VmExit::InterruptWindow`] as soon as the guest can take an interrupt.
    fn set_interrupt_window(&mut self, wanted: bool);
    /// Guest TSC = host TSC + `offset` (wrapping).
    fn set_tsc_offset(&mut self, offset: u64);
    /// The next run must end by host TSC `deadline`. The host's timer interrupt is armed for
    /// it anyway; a backend with a timer of its own (VMX's preemption timer) sets that too, so
    /// the run ends even where an interrupt cannot reach the guest's CPU.
    fn set_run_deadline(&mut self, _deadline: u64) {}
    /// Loads the guest's TSC_AUX into the CPU it runs on: RDTSCP and RDPID read the physical
    /// MSR without an exit, and each vCPU owns its CPU while it runs.
    fn set_tsc_aux(&mut self, value: u32);
    /// The task-priority class (CR8) the guest wrote during its last run, if the backend lets
    /// the guest write CR8 without an exit (SVM's V_TPR) and the guest changed it since
    /// [`Vcpu::load_task_priority`]. `None` where every CR8 access exits (VMX).
    fn take_task_priority_write(&mut self) -> Option<u8> {
        None
    }
    /// Loads the local APIC's task-priority class (TPR bits 7:4) where the guest's CR8 reads
    /// it without an exit (SVM's V_TPR).
    fn load_task_priority(&mut self, _class: u8) {}
    /// Asks for an exit when the guest next writes CR8, where such writes do not exit anyway
    /// (SVM): an interrupt waits for the task priority to drop, and must arrive as soon as
    /// it does.
    fn exit_on_task_priority_write(&mut self, _wanted: bool) {}
    /// XSETBV of `value` to XCR`index` for the guest, if the architectural rules and the CPU
    /// allow it at the guest's privilege level; false: the guest gets #GP.
    fn xsetbv(&mut self, index: u32, value: u64) -> bool;
    /// Resets the vCPU's architectural state to `state` (registers cleared first).
    fn enter(&mut self, state: EntryState);
}
