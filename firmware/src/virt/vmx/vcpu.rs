//! [`Vcpu`] for Intel VMX: the vCPU's VMCS, current on the CPU its loop runs on, plus the
//! registers VM entry does not load. Exits that only VMX has — control-register writes to
//! host-owned bits — are handled here and the guest resumed; every other exit is
//! decoded into the shared [`VmExit`].
//!
//! The SYSCALL MSRs and KernelGSbase are passed through and not switched per exit: the
//! hypervisor never executes SYSCALL or SWAPGS, so the guest's values stay in the CPU while
//! its vCPU holds it, and the host's come back when the vCPU is dropped (KVM's "user return
//! MSRs" do the same).

use log::error;

use crate::virt::host_state;
use numavisor_policy::vmexit::vmx::{decode_vmx, interruption, reason, VmxExitInfo};
use numavisor_policy::vmexit::VmExit;
use numavisor_policy::vmm::entry_state::{cr0, ArchState, EFER_LMA, EFER_LME};
use numavisor_policy::vmm::guest_regs::GuestRegisters;
use numavisor_policy::vmm::guest_walk::PagingState;
use numavisor_policy::vmm::mmio_decode::CpuMode;
use numavisor_policy::vmm::vcpu::{exception, EntryState, Event, NmiExit, Vcpu};
use numavisor_policy::vmx::controls::{entry, primary};
use numavisor_policy::vmx::fields::*;
use x86_64::registers::model_specific::Msr;

use super::instructions::{self, invept, invvpid, vmread, vmwrite, ALL_CONTEXTS, SINGLE_CONTEXT};
use super::{capabilities, run, VmxCapabilities};
use crate::virt::xstate;

const RFLAGS_IF: u64 = 1 << 9;
/// Interruptibility state: blocking by STI, by MOV SS (SDM vol. 3C table 24-3).
const BLOCKING_STI_MOVSS: u64 = 0b11;
/// Interruptibility state: blocking by NMI (with virtual NMIs, the guest's own).
const BLOCKING_NMI: u64 = 1 << 3;
/// Exit interruption information and EPT-violation qualification bit 12: the exit came
/// during an IRET that had already unblocked NMIs (SDM vol. 3C §27.2.2, §27.2.3).
const NMI_UNBLOCKING_IRET: u64 = 1 << 12;
const CR4_PAE: u64 = 1 << 5;
const CR4_PGE: u64 = 1 << 7;
const CR4_PCIDE: u64 = 1 << 17;
const CR4_VMXE: u64 = 1 << 13;
/// Host selectors: the GDT's 64-bit code and data segments and its TSS.
const HOST_CODE: u64 = 0x08;
const HOST_DATA: u64 = 0x10;

/// KernelGSbase, STAR, LSTAR, CSTAR, SFMASK: the guest's while its vCPU holds the CPU.
const GUEST_HELD_MSRS: [u32; 5] = [
    0xC000_0102,
    0xC000_0081,
    0xC000_0082,
    0xC000_0083,
    0xC000_0084,
];

/// The pages a vCPU's VMCS points at, and its tags.
#[derive(Clone, Copy, Debug)]
pub struct VmcsSetup {
    pub vmcs: u64,
    pub io_bitmap_a: u64,
    pub io_bitmap_b: u64,
    pub msr_bitmap: u64,
    /// 0: no VPID (the CPU has none).
    pub vpid: u16,
    pub eptp: u64,
}

/// One VMX vCPU.
pub struct VmxVcpu {
    setup: VmcsSetup,
    caps: &'static VmxCapabilities,
    registers: GuestRegisters,
    launched: bool,
    guest_cr2: u64,
    primary: u32,
    entry: u32,
    exit: VmxExitInfo,
    /// The IDT-vectoring information of the last exit (an interrupted delivery).
    vectoring: u32,
    queued: bool,
    host_msrs: [u64; GUEST_HELD_MSRS.len()],
    /// Host TSC by which the next run must end (`Vcpu::set_run_deadline`).
    run_deadline: Option<u64>,
}

fn read_cr(number: u8) -> u64 {
    let value: u64;
    // SAFETY: reading a control register has no side effects.
    unsafe {
        match number {
            0 => core::arch::asm!("mov {}, cr0", out(reg) value, options(nomem, nostack)),
            3 => core::arch::asm!("mov {}, cr3", out(reg) value, options(nomem, nostack)),
            _ => core::arch::asm!("mov {}, cr4", out(reg) value, options(nomem, nostack)),
        }
    }
    value
}

/// GDTR and IDTR bases of this CPU.
fn descriptor_table_bases() -> (u64, u64) {
    let mut gdt = [0u8; 10];
    let mut idt = [0u8; 10];
    // SAFETY: SGDT/SIDT store 10 bytes into the buffers given.
    unsafe {
        core::arch::asm!("sgdt [{}]", in(reg) gdt.as_mut_ptr(), options(nostack));
        core::arch::asm!("sidt [{}]", in(reg) idt.as_mut_ptr(), options(nostack));
    }
    let base = |t: [u8; 10]| u64::from_le_bytes(t[2..10].try_into().unwrap_or_default());
    (base(gdt), base(idt))
}

fn read_msr(number: u32) -> u64 {
    // SAFETY: only architectural MSRs every 64-bit VMX CPU has are read here.
    unsafe { Msr::new(number).read() }
}

fn write_msr(number: u32, value: u64) {
    // SAFETY: only the guest-held MSRs (canonical values the guest itself or the host had)
    // are written; the hypervisor does not depend on them.
    unsafe { Msr::new(number).write(value) }
}

impl VmxVcpu {
    /// Loads the VMCS of `setup` on this CPU (VMCLEAR, VMPTRLD) and fills its controls and
    /// host state; the guest state follows with [`Vcpu::enter`]. None if the CPU refuses
    /// the VMCS.
    pub fn new(setup: VmcsSetup) -> Option<VmxVcpu> {
        let caps = capabilities();
        // SAFETY: the VMCS page belongs to this vCPU (its partition's pool), holds the
        // revision id (`Backend::prepare`), and is current on no other CPU: the vCPU's loop
        // runs on this CPU only, and a VMCS is cleared when its vCPU is dropped.
        unsafe {
            instructions::vmclear(setup.vmcs).ok()?;
            instructions::vmptrld(setup.vmcs).ok()?;
        }
        let c = caps.controls;
        vmwrite(PIN_BASED_CONTROLS, c.pin as u64);
        vmwrite(PRIMARY_PROCESSOR_CONTROLS, c.primary as u64);
        vmwrite(SECONDARY_PROCESSOR_CONTROLS, c.secondary as u64);
        vmwrite(EXIT_CONTROLS, c.exit as u64);
        vmwrite(ENTRY_CONTROLS, c.entry as u64);
        // #DB and #AC: their delivery can recurse for ever in microcode (CVE-2015-8104,
        // CVE-2015-5307); #MC: contained to the partition.
        vmwrite(EXCEPTION_BITMAP, (1 << 1) | (1 << 17) | (1 << 18));
        vmwrite(CR3_TARGET_COUNT, 0);
        vmwrite(EXIT_MSR_STORE_COUNT, 0);
        vmwrite(EXIT_MSR_LOAD_COUNT, 0);
        vmwrite(ENTRY_MSR_LOAD_COUNT, 0);
        vmwrite(ENTRY_INTERRUPTION_INFO, 0);
        vmwrite(IO_BITMAP_A, setup.io_bitmap_a);
        vmwrite(IO_BITMAP_B, setup.io_bitmap_b);
        vmwrite(MSR_BITMAP, setup.msr_bitmap);
        vmwrite(EPT_POINTER, setup.eptp);
        if c.vpid() {
            vmwrite(VPID, setup.vpid as u64);
        }
        vmwrite(CR0_GUEST_HOST_MASK, caps.cr0.host_owned());
        vmwrite(CR4_GUEST_HOST_MASK, caps.cr4.host_owned());
        vmwrite(VMCS_LINK_POINTER, u64::MAX);

        let (gdt, idt) = descriptor_table_bases();
        vmwrite(HOST_CR0, read_cr(0));
        vmwrite(HOST_CR3, read_cr(3));
        vmwrite(HOST_CR4, read_cr(4));
        for field in [HOST_ES_SELECTOR, HOST_SS_SELECTOR, HOST_DS_SELECTOR] {
            vmwrite(field, HOST_DATA);
        }
        vmwrite(HOST_CS_SELECTOR, HOST_CODE);
        vmwrite(HOST_FS_SELECTOR, 0);
        vmwrite(HOST_GS_SELECTOR, 0);
        vmwrite(
            HOST_TR_SELECTOR,
            crate::platform::cpu::gdt::TSS_SELECTOR as u64,
        );
        vmwrite(HOST_TR_BASE, crate::platform::cpu::gdt::tss_address());
        vmwrite(HOST_FS_BASE, read_msr(0xC000_0100));
        vmwrite(HOST_GS_BASE, read_msr(0xC000_0101));
        vmwrite(HOST_GDTR_BASE, gdt);
        vmwrite(HOST_IDTR_BASE, idt);
        vmwrite(HOST_SYSENTER_CS, 0);
        vmwrite(HOST_SYSENTER_ESP, 0);
        vmwrite(HOST_SYSENTER_EIP, 0);
        vmwrite(HOST_EFER, read_msr(0xC000_0080));
        vmwrite(HOST_PAT, read_msr(0x277));
        vmwrite(HOST_RIP, run::exit_point());

        // The partition's EPT may have been rebuilt since its tag was last used here.
        flush_ept(caps, setup.eptp);
        let mut host_msrs = [0; GUEST_HELD_MSRS.len()];
        for (saved, &msr) in host_msrs.iter_mut().zip(GUEST_HELD_MSRS.iter()) {
            *saved = read_msr(msr);
        }
        let vcpu = VmxVcpu {
            setup,
            caps,
            registers: GuestRegisters::default(),
            launched: false,
            guest_cr2: 0,
            primary: c.primary,
            entry: c.entry,
            exit: VmxExitInfo::default(),
            vectoring: 0,
            queued: false,
            host_msrs,
            run_deadline: None,
        };
        vcpu.flush_linear_translations();
        Some(vcpu)
    }

    /// Drops what this CPU cached of the partition's EPT and the guest's translations
    /// through it (pages were unmapped from the EPT since this vCPU last ran).
    pub fn flush_guest_translations(&mut self) {
        flush_ept(self.caps, self.setup.eptp);
        self.flush_linear_translations();
    }

    /// Drops the guest's cached linear translations (its paging mode changed by emulation,
    /// or a fresh start on a VPID that ran before).
    fn flush_linear_translations(&self) {
        if self.caps.controls.vpid() && self.caps.ept.invvpid {
            let kind = if self.caps.ept.invvpid_single_context {
                SINGLE_CONTEXT
            } else {
                ALL_CONTEXTS
            };
            invvpid(kind, self.setup.vpid);
        }
    }

    fn set_entry_controls(&mut self, value: u32) {
        if value != self.entry {
            self.entry = value;
            vmwrite(ENTRY_CONTROLS, value as u64);
        }
    }

    /// Keeps the "IA-32e mode guest" entry control equal to EFER.LMA (SDM §26.3.1.1).
    fn sync_ia32e(&mut self, efer: u64) {
        let value = if efer & EFER_LMA != 0 {
            self.entry | entry::IA32E_MODE_GUEST
        } else {
            self.entry & !entry::IA32E_MODE_GUEST
        };
        self.set_entry_controls(value);
    }

    fn read_exit(&mut self) {
        let reason = vmread(EXIT_REASON) as u32;
        let basic = reason & 0xFFFF;
        let has_length = !matches!(
            basic,
            reason::EXCEPTION_OR_NMI
                | reason::EXTERNAL_INTERRUPT
                | reason::TRIPLE_FAULT
                | reason::INTERRUPT_WINDOW
                | reason::EPT_VIOLATION
                | reason::EPT_MISCONFIGURATION
        );
        self.exit = VmxExitInfo {
            reason,
            qualification: vmread(EXIT_QUALIFICATION),
            guest_physical: if basic == reason::EPT_VIOLATION {
                vmread(GUEST_PHYSICAL_ADDRESS)
            } else {
                0
            },
            interruption_info: if basic == reason::EXCEPTION_OR_NMI {
                vmread(EXIT_INTERRUPTION_INFO) as u32
            } else {
                0
            },
            interruption_error: if basic == reason::EXCEPTION_OR_NMI {
                vmread(EXIT_INTERRUPTION_ERROR_CODE) as u32
            } else {
                0
            },
            instruction_length: if has_length {
                vmread(EXIT_INSTRUCTION_LENGTH) as u32
            } else {
                0
            },
            rip: vmread(GUEST_RIP),
        };
        // An event whose delivery the exit interrupted is delivered again on the next entry.
        self.queued = false;
        self.vectoring = vmread(IDT_VECTORING_INFO) as u32;
        if self.vectoring & interruption::VALID != 0 {
            vmwrite(
                ENTRY_INTERRUPTION_INFO,
                (self.vectoring & 0x8000_0FFF) as u64,
            );
            if self.vectoring & interruption::ERROR_CODE_VALID != 0 {
                vmwrite(ENTRY_EXCEPTION_ERROR_CODE, vmread(IDT_VECTORING_ERROR_CODE));
            }
            vmwrite(ENTRY_INSTRUCTION_LENGTH, vmread(EXIT_INSTRUCTION_LENGTH));
            self.queued = true;
            // An NMI delivered again must find NMIs unblocked, or the entry fails (SDM vol.
            // 3C §26.3.1.5); it blocks them again when it is delivered.
            if interruption::kind(self.vectoring) == interruption::NMI {
                self.set_nmi_blocking(false);
            }
        } else {
            self.restore_nmi_blocking(basic);
        }
    }

    /// An exit in the middle of an IRET that had unblocked NMIs (a fault on its stack) left
    /// them unblocked; the IRET runs again, so the handler is not over: block them again,
    /// as the SDM asks of the VMM (vol. 3C §27.2.3). Not after a #DF (§27.2.2).
    fn restore_nmi_blocking(&mut self, basic: u32) {
        let unblocked = match basic {
            reason::EXCEPTION_OR_NMI => {
                let info = self.exit.interruption_info as u64;
                info & NMI_UNBLOCKING_IRET != 0 && info as u8 != 8
            }
            reason::EPT_VIOLATION => self.exit.qualification & NMI_UNBLOCKING_IRET != 0,
            _ => false,
        };
        if unblocked {
            self.set_nmi_blocking(true);
        }
    }

    fn set_nmi_blocking(&mut self, blocked: bool) {
        let state = vmread(GUEST_INTERRUPTIBILITY);
        let new = if blocked {
            state | BLOCKING_NMI
        } else {
            state & !BLOCKING_NMI
        };
        if new != state {
            vmwrite(GUEST_INTERRUPTIBILITY, new);
        }
    }

    fn raise(&mut self, vector: u8, error_code: Option<u32>) {
        self.inject(Event::Exception { vector, error_code });
    }

    fn skip_instruction(&mut self) {
        let next = self
            .exit
            .rip
            .wrapping_add(self.exit.instruction_length as u64);
        self.set_rip(next);
    }

    fn guest_cr0(&self) -> u64 {
        let mask = self.caps.cr0.host_owned();
        (vmread(GUEST_CR0) & !mask) | (vmread(CR0_READ_SHADOW) & mask)
    }

    fn guest_cr4(&self) -> u64 {
        let mask = self.caps.cr4.host_owned();
        (vmread(GUEST_CR4) & !mask) | (vmread(CR4_READ_SHADOW) & mask)
    }

    /// MOV to CR0 (or LMSW) of `value`, which touched a host-owned bit: the checks MOV CR0
    /// makes (SDM vol. 2 MOV, "Protected Mode Exceptions"), then the long-mode transition
    /// the CPU would have made (SDM vol. 3A §9.8.5).
    fn write_cr0(&mut self, value: u64) {
        let efer = vmread(GUEST_EFER);
        let cr4 = self.guest_cr4();
        let old = self.guest_cr0();
        let paging_on = value & cr0::PG != 0 && old & cr0::PG == 0;
        if value >> 32 != 0
            || (value & cr0::PG != 0 && value & cr0::PE == 0)
            || (value & cr0::NW != 0 && value & cr0::CD == 0)
            || (paging_on && efer & EFER_LME != 0 && cr4 & CR4_PAE == 0)
            || self.caps.cr0.forbids(value)
        {
            return self.raise(exception::GENERAL_PROTECTION, Some(0));
        }
        let mut new_efer = efer;
        if paging_on && efer & EFER_LME != 0 {
            new_efer |= EFER_LMA;
        } else if value & cr0::PG == 0 {
            new_efer &= !EFER_LMA;
        }
        if new_efer != efer {
            vmwrite(GUEST_EFER, new_efer);
            self.sync_ia32e(new_efer);
        }
        vmwrite(GUEST_CR0, self.caps.cr0.apply(value));
        vmwrite(CR0_READ_SHADOW, value);
        if (old ^ value) & cr0::PG != 0 {
            self.flush_linear_translations();
        }
        self.skip_instruction();
    }

    /// MOV to CR4 of `value` touching a host-owned bit: VMXE is not offered (CPUID), other
    /// bits the CPU cannot run with are #GP as on a CPU without them.
    fn write_cr4(&mut self, value: u64) {
        if value >> 32 != 0
            || value & CR4_VMXE != 0
            || self.caps.cr4.forbids(value)
            || (value & CR4_PCIDE != 0 && vmread(GUEST_EFER) & EFER_LMA == 0)
        {
            return self.raise(exception::GENERAL_PROTECTION, Some(0));
        }
        let old = self.guest_cr4();
        vmwrite(GUEST_CR4, self.caps.cr4.apply(value));
        vmwrite(CR4_READ_SHADOW, value);
        if (old ^ value) & (CR4_PAE | CR4_PGE | CR4_PCIDE) != 0 {
            self.flush_linear_translations();
        }
        self.skip_instruction();
    }

    /// A control-register exit other than CR8 (SDM vol. 3C table 27-3). True if handled.
    fn handle_control_register(&mut self) -> bool {
        let q = self.exit.qualification;
        let (number, access, register) = (q & 0xF, (q >> 4) & 3, ((q >> 8) & 0xF) as u8);
        let value = if register == 4 {
            vmread(GUEST_RSP)
        } else {
            self.registers.get(register)
        };
        match (access, number) {
            (0, 0) => self.write_cr0(value),
            (0, 4) => self.write_cr4(value),
            // CLTS (TS is host-owned only if the CPU forces it).
            (2, _) => {
                let cr0 = self.guest_cr0() & !(1 << 3);
                self.write_cr0(cr0);
            }
            // LMSW: PE, MP, EM, TS from the source; PE cannot be cleared.
            (3, _) => {
                let source = (q >> 16) & 0xF;
                let old = self.guest_cr0();
                self.write_cr0((old & !0xE) | source | (old & cr0::PE));
            }
            _ => return false,
        }
        true
    }

    /// Loads the VMX-preemption timer so the run ends by its deadline even if the host's
    /// timer interrupt cannot end it (Bochs 2.7 keeps external interrupts masked in a guest
    /// entered with RFLAGS.IF = 0 despite external-interrupt exiting).
    fn arm_preemption_timer(&self) {
        if !self.caps.controls.preemption_timer() {
            return;
        }
        let Some(deadline) = self.run_deadline else {
            return;
        };
        // SAFETY: RDTSC only reads the time-stamp counter.
        let now = unsafe { core::arch::x86_64::_rdtsc() };
        let ticks = deadline.saturating_sub(now) >> self.caps.misc.preemption_timer_rate;
        vmwrite(GUEST_PREEMPTION_TIMER, ticks.min(u32::MAX as u64));
    }

    fn set_cr2(value: u64) {
        // SAFETY: CR2 only holds the last page-fault address; the host takes no page
        // faults while it runs guests, so it is the guest's.
        unsafe { core::arch::asm!("mov cr2, {}", in(reg) value, options(nomem, nostack)) };
    }

    fn cr2() -> u64 {
        let value: u64;
        // SAFETY: reading CR2 has no side effects.
        unsafe { core::arch::asm!("mov {}, cr2", out(reg) value, options(nomem, nostack)) };
        value
    }
}

impl Drop for VmxVcpu {
    /// Gives the CPU back: the host's SYSCALL MSRs return, and the VMCS is written back and
    /// cleared, so its page can be reused and the vCPU started again on any CPU.
    fn drop(&mut self) {
        for (&msr, &value) in GUEST_HELD_MSRS.iter().zip(self.host_msrs.iter()) {
            write_msr(msr, value);
        }
        // SAFETY: the VMCS is this vCPU's and current on this CPU.
        let _ = unsafe { instructions::vmclear(self.setup.vmcs) };
    }
}

impl Vcpu for VmxVcpu {
    #[inline(always)]
    fn run(&mut self) -> VmExit {
        loop {
            self.arm_preemption_timer();
            vmwrite(GUEST_RSP, self.registers.rsp);
            if Self::cr2() != self.guest_cr2 {
                Self::set_cr2(self.guest_cr2);
            }
            let before = host_state::snapshot_if_checked(&host_state::SWITCHED);
            // SAFETY: the VMCS is current on this CPU with host state for it (`new`), its
            // guest state set by `enter`, its EPT built by the partition builder; the vCPU
            // loop runs guests with interrupts off.
            let entry = unsafe { run::run(&mut self.registers, self.launched) };
            host_state::check(&host_state::SWITCHED, before);
            if let run::Entry::Failed { valid } = entry {
                let why = if valid {
                    vmread(VM_INSTRUCTION_ERROR)
                } else {
                    u64::MAX
                };
                error!(
                    "VM entry failed (VM-instruction error {why}) at RIP {:#x}",
                    vmread(GUEST_RIP)
                );
                return VmExit::InvalidState;
            }
            self.launched = true;
            self.guest_cr2 = Self::cr2();
            self.registers.rsp = vmread(GUEST_RSP);
            self.read_exit();
            if !self.caps.misc.exit_stores_lma {
                self.sync_ia32e(vmread(GUEST_EFER));
            }
            let reason = self.exit.reason;
            let cr8 = self.exit.qualification & 0xF == 8;
            if reason == reason::CR_ACCESS && !cr8 && self.handle_control_register() {
                continue;
            }
            let exit = decode_vmx(&self.exit);
            match exit {
                // An NMI that exits is not delivered to the host (SDM §27.1): hand it to
                // the host's own handler, as the CPU would have.
                VmExit::PhysicalNmi => {
                    // SAFETY: vector 2 is the host's NMI handler, which only counts.
                    unsafe { core::arch::asm!("int 2", options(nomem, nostack)) };
                }
                // #DB exits leave DR6 alone and put its bits in the qualification (SDM
                // §27.1): give the guest the DR6 the delivery would have set.
                VmExit::Exception { vector: 1, .. } => {
                    let dr6 = 0xFFFF_0FF0 | (self.exit.qualification & 0x600F);
                    // SAFETY: DR6 is the guest's (the hypervisor uses no debug registers).
                    unsafe {
                        core::arch::asm!("mov dr6, {}", in(reg) dr6, options(nomem, nostack))
                    };
                }
                _ => {}
            }
            return exit;
        }
    }

    fn registers(&mut self) -> &mut GuestRegisters {
        &mut self.registers
    }
    fn rip(&self) -> u64 {
        vmread(GUEST_RIP)
    }
    fn set_rip(&mut self, rip: u64) {
        vmwrite(GUEST_RIP, rip);
        // Moving past an instruction ends the interrupt shadow it may have been in.
        let blocking = vmread(GUEST_INTERRUPTIBILITY);
        if blocking & BLOCKING_STI_MOVSS != 0 {
            vmwrite(GUEST_INTERRUPTIBILITY, blocking & !BLOCKING_STI_MOVSS);
        }
    }
    fn efer(&self) -> u64 {
        vmread(GUEST_EFER)
    }
    fn set_efer(&mut self, efer: u64) {
        vmwrite(GUEST_EFER, efer);
        self.sync_ia32e(efer);
    }
    fn pat(&self) -> u64 {
        vmread(GUEST_PAT)
    }
    fn set_pat(&mut self, pat: u64) {
        vmwrite(GUEST_PAT, pat);
    }

    fn paging(&self) -> PagingState {
        PagingState {
            cr0: self.guest_cr0(),
            cr3: vmread(GUEST_CR3),
            cr4: self.guest_cr4(),
            efer: vmread(GUEST_EFER),
        }
    }

    fn cpu_mode(&self) -> CpuMode {
        let cs = vmread(GuestSegment::Cs.fields().access_rights);
        let long = cs & (1 << 13) != 0;
        let default32 = cs & (1 << 14) != 0;
        if vmread(GUEST_CR0) & cr0::PE == 0 {
            CpuMode::Real
        } else if vmread(GUEST_EFER) & EFER_LMA != 0 && long {
            CpuMode::Long64
        } else if default32 {
            CpuMode::Protected32
        } else {
            CpuMode::Protected16
        }
    }

    fn code_base(&self) -> u64 {
        vmread(GuestSegment::Cs.fields().base)
    }

    /// SS.DPL from the guest's access rights (SDM vol. 3C §28.4.1: the CPL is SS.DPL).
    fn cpl(&self) -> u8 {
        ((vmread(GuestSegment::Ss.fields().access_rights) >> 5) & 3) as u8
    }

    fn interrupts_enabled(&self) -> bool {
        vmread(GUEST_RFLAGS) & RFLAGS_IF != 0
    }

    fn interruptible(&self) -> bool {
        self.interrupts_enabled() && vmread(GUEST_INTERRUPTIBILITY) & BLOCKING_STI_MOVSS == 0
    }

    fn interrupt_shadow(&self) -> bool {
        vmread(GUEST_INTERRUPTIBILITY) & BLOCKING_STI_MOVSS != 0
    }

    /// With virtual NMIs the CPU keeps the guest's NMI blocking: set when an NMI is
    /// injected, cleared by the guest's IRET (SDM vol. 3C §25.3, §26.6.1.2).
    fn cpu_nmi_blocking(&self) -> Option<bool> {
        Some(vmread(GUEST_INTERRUPTIBILITY) & BLOCKING_NMI != 0)
    }

    fn set_nmi_exit(&mut self, exit: NmiExit) {
        let value = if exit == NmiExit::Window {
            self.primary | primary::NMI_WINDOW_EXITING
        } else {
            self.primary & !primary::NMI_WINDOW_EXITING
        };
        if value != self.primary {
            self.primary = value;
            vmwrite(PRIMARY_PROCESSOR_CONTROLS, value as u64);
        }
    }

    fn next_rip(&self) -> Option<u64> {
        (self.exit.instruction_length != 0).then(|| {
            self.exit
                .rip
                .wrapping_add(self.exit.instruction_length as u64)
        })
    }

    fn interrupted_event(&self) -> Option<u8> {
        (self.vectoring & interruption::VALID != 0).then_some(self.vectoring as u8)
    }

    fn event_queued(&self) -> bool {
        self.queued
    }

    fn inject(&mut self, event: Event) {
        let (vector, kind, error_code) = match event {
            Event::Interrupt(vector) => (vector, interruption::EXTERNAL, None),
            Event::Nmi => (2, interruption::NMI, None),
            Event::Exception { vector, error_code } => {
                (vector, interruption::HARDWARE_EXCEPTION, error_code)
            }
        };
        let mut info = interruption::VALID | (kind << 8) | vector as u32;
        if let Some(code) = error_code {
            info |= interruption::ERROR_CODE_VALID;
            vmwrite(ENTRY_EXCEPTION_ERROR_CODE, code as u64);
        }
        vmwrite(ENTRY_INTERRUPTION_INFO, info as u64);
        self.queued = true;
    }

    fn set_interrupt_window(&mut self, wanted: bool) {
        let value = if wanted {
            self.primary | primary::INTERRUPT_WINDOW_EXITING
        } else {
            self.primary & !primary::INTERRUPT_WINDOW_EXITING
        };
        if value != self.primary {
            self.primary = value;
            vmwrite(PRIMARY_PROCESSOR_CONTROLS, value as u64);
        }
    }

    /// VM entry delivers an injected interrupt before the guest's first instruction, and an
    /// interrupted delivery is re-injected from the IDT-vectoring information.
    fn take_untaken_interrupt(&mut self) -> Option<u8> {
        None
    }

    fn set_tsc_offset(&mut self, offset: u64) {
        vmwrite(TSC_OFFSET, offset);
    }

    fn set_run_deadline(&mut self, deadline: u64) {
        self.run_deadline = Some(deadline);
    }

    fn set_tsc_aux(&mut self, value: u32) {
        crate::virt::tsc_aux::load(value);
    }

    fn xsetbv(&mut self, index: u32, value: u64) -> bool {
        xstate::guest_xsetbv(index, value, self.cpl()).is_ok()
    }

    fn enter(&mut self, state: EntryState) {
        let arch = ArchState::of(state);
        self.registers = GuestRegisters {
            rbx: arch.rbx,
            rdx: arch.rdx,
            rsi: arch.rsi,
            ..GuestRegisters::default()
        };
        self.queued = false;
        self.vectoring = 0;
        self.exit = VmxExitInfo::default();
        self.guest_cr2 = 0;
        vmwrite(ENTRY_INTERRUPTION_INFO, 0);
        self.set_interrupt_window(false);
        self.set_nmi_exit(NmiExit::None);
        for segment in GuestSegment::ALL {
            let value = match segment {
                GuestSegment::Cs => arch.cs,
                GuestSegment::Tr => arch.tr,
                GuestSegment::Ldtr => arch.ldtr,
                _ => arch.data,
            };
            let fields = segment.fields();
            vmwrite(fields.selector, value.selector as u64);
            vmwrite(fields.limit, value.limit as u64);
            vmwrite(fields.access_rights, value.vmx_access_rights() as u64);
            vmwrite(fields.base, value.base);
        }
        vmwrite(GUEST_GDTR_BASE, arch.gdtr.base);
        vmwrite(GUEST_GDTR_LIMIT, arch.gdtr.limit as u64);
        vmwrite(GUEST_IDTR_BASE, arch.idtr.base);
        vmwrite(GUEST_IDTR_LIMIT, arch.idtr.limit as u64);
        vmwrite(GUEST_CR0, self.caps.cr0.apply(arch.cr0));
        vmwrite(CR0_READ_SHADOW, arch.cr0);
        vmwrite(GUEST_CR3, arch.cr3);
        vmwrite(GUEST_CR4, self.caps.cr4.apply(arch.cr4));
        vmwrite(CR4_READ_SHADOW, arch.cr4);
        vmwrite(GUEST_EFER, arch.efer);
        self.sync_ia32e(arch.efer);
        vmwrite(GUEST_PAT, arch.pat);
        vmwrite(GUEST_DEBUGCTL, 0);
        vmwrite(GUEST_DR7, arch.dr7);
        vmwrite(GUEST_RFLAGS, arch.rflags);
        vmwrite(GUEST_RIP, arch.rip);
        vmwrite(GUEST_RSP, 0);
        vmwrite(GUEST_INTERRUPTIBILITY, 0);
        vmwrite(GUEST_ACTIVITY_STATE, 0);
        vmwrite(GUEST_PENDING_DEBUG_EXCEPTIONS, 0);
        vmwrite(GUEST_SYSENTER_CS, 0);
        vmwrite(GUEST_SYSENTER_ESP, 0);
        vmwrite(GUEST_SYSENTER_EIP, 0);
        for msr in GUEST_HELD_MSRS {
            write_msr(msr, 0);
        }
        xstate::reset_for_start();
        // DR6 after INIT (the guest's: VMX does not switch it).
        // SAFETY: the hypervisor uses no debug registers.
        unsafe { core::arch::asm!("mov dr6, {}", in(reg) arch.dr6, options(nomem, nostack)) };
        self.flush_linear_translations();
    }
}

/// INVEPT for `eptp` on this CPU: single-context where the CPU offers it, else all contexts.
fn flush_ept(caps: &VmxCapabilities, eptp: u64) {
    let kind = if caps.ept.invept_single_context {
        SINGLE_CONTEXT
    } else {
        ALL_CONTEXTS
    };
    invept(kind, eptp);
}
