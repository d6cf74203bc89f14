//! The VMCB (AMD APM vol. 2 appendix B): a 4 KiB page, control area at 0, state save area at
//! 0x400. Only the fields numavisor uses are named here.

use numavisor_policy::vmm::entry_state::{ArchState, Segment};

/// Control-area and save-area offsets (APM vol. 2 tables B-1 and B-2).
mod offset {
    pub const INTERCEPT_CR: usize = 0x00;
    pub const INTERCEPT_EXCEPTIONS: usize = 0x08;
    pub const INTERCEPT_MISC1: usize = 0x0C;
    pub const INTERCEPT_MISC2: usize = 0x10;
    pub const IOPM_BASE: usize = 0x40;
    pub const MSRPM_BASE: usize = 0x48;
    pub const TSC_OFFSET: usize = 0x50;
    pub const ASID: usize = 0x58;
    pub const TLB_CONTROL: usize = 0x5C;
    pub const V_INTR: usize = 0x60;
    pub const V_INTR_VECTOR: usize = 0x64;
    pub const INTERRUPT_SHADOW: usize = 0x68;
    pub const EXIT_CODE: usize = 0x70;
    pub const EXIT_INFO1: usize = 0x78;
    pub const EXIT_INFO2: usize = 0x80;
    pub const EXIT_INT_INFO: usize = 0x88;
    pub const NP_ENABLE: usize = 0x90;
    pub const EVENT_INJECTION: usize = 0xA8;
    pub const N_CR3: usize = 0xB0;
    pub const CLEAN_BITS: usize = 0xC0;
    pub const NEXT_RIP: usize = 0xC8;
    pub const ES: usize = 0x400;
    pub const CS: usize = 0x410;
    pub const SS: usize = 0x420;
    pub const DS: usize = 0x430;
    pub const FS: usize = 0x440;
    pub const GS: usize = 0x450;
    pub const GDTR: usize = 0x460;
    pub const LDTR: usize = 0x470;
    pub const IDTR: usize = 0x480;
    pub const TR: usize = 0x490;
    pub const CPL: usize = 0x4CB;
    pub const EFER: usize = 0x4D0;
    pub const CR4: usize = 0x548;
    pub const CR3: usize = 0x550;
    pub const CR0: usize = 0x558;
    pub const DR7: usize = 0x560;
    pub const DR6: usize = 0x568;
    pub const RFLAGS: usize = 0x570;
    pub const RIP: usize = 0x578;
    pub const RSP: usize = 0x5D8;
    pub const RAX: usize = 0x5F8;
    pub const CR2: usize = 0x640;
    pub const G_PAT: usize = 0x668;
}

/// Intercept bits in the MISC1 word.
pub mod misc1 {
    pub const INTR: u32 = 1 << 0;
    pub const NMI: u32 = 1 << 1;
    pub const VINTR: u32 = 1 << 4;
    pub const RDPMC: u32 = 1 << 15;
    pub const CPUID: u32 = 1 << 18;
    pub const IRET: u32 = 1 << 20;
    pub const INVD: u32 = 1 << 22;
    pub const HLT: u32 = 1 << 24;
    pub const INVLPGA: u32 = 1 << 26;
    pub const IOIO_PROT: u32 = 1 << 27;
    pub const MSR_PROT: u32 = 1 << 28;
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// Intercept bits in the MISC2 word.
pub mod misc2 {
    pub const VMRUN: u32 = 1 << 0;
    pub const VMMCALL: u32 = 1 << 1;
    pub const VMLOAD: u32 = 1 << 2;
    pub const VMSAVE: u32 = 1 << 3;
    pub const STGI: u32 = 1 << 4;
    pub const CLGI: u32 = 1 << 5;
    pub const SKINIT: u32 = 1 << 6;
    pub const ICEBP: u32 = 1 << 8;
    pub const WBINVD: u32 = 1 << 9;
    pub const MONITOR: u32 = 1 << 10;
    pub const MWAIT: u32 = 1 << 11;
    pub const XSETBV: u32 = 1 << 13;
    pub const RDPRU: u32 = 1 << 14;
}

/// V_INTR fields (APM vol. 2 §15.21.1, table B-1 offset 0x60).
mod v_intr {
    /// The guest's CR8 (task-priority class) while V_INTR_MASKING is set.
    pub const V_TPR: u64 = 0xF;
    pub const V_IRQ: u64 = 1 << 8;
    pub const V_INTR_PRIO_SHIFT: u64 = 16;
    pub const V_IGN_TPR: u64 = 1 << 20;
    pub const V_INTR_MASKING: u64 = 1 << 24;
    /// The fields of a virtual interrupt (offered, or asked for as a window).
    pub const VIRTUAL_INTERRUPT: u64 = V_IRQ | V_IGN_TPR | (0xF << V_INTR_PRIO_SHIFT);
}

/// EVENTINJ types (APM vol. 2 §15.20).
pub mod event_type {
    pub const INTERRUPT: u64 = 0;
    pub const NMI: u64 = 2;
    pub const EXCEPTION: u64 = 3;
}

/// EFER.SVME: must stay set in the guest's EFER for VMRUN to accept the state.
pub const EFER_SVME: u64 = 1 << 12;

/// One VMCB page, addressed through the identity map.
pub struct Vmcb {
    address: u64,
}

impl Vmcb {
    /// Wraps the zeroed 4 KiB page at `address`.
    ///
    /// # Safety
    /// `address` must be a 4 KiB page, identity mapped, owned by one vCPU and used for
    /// nothing else while this `Vmcb` lives.
    pub unsafe fn new(address: u64) -> Vmcb {
        Vmcb { address }
    }

    /// The VMCB's physical address, for VMRUN.
    pub fn address(&self) -> u64 {
        self.address
    }

    fn write<T: Copy>(&mut self, offset: usize, value: T) {
        debug_assert!(offset + core::mem::size_of::<T>() <= 4096);
        // SAFETY: the page is ours (see `new`); offsets are the APM's, inside the page.
        unsafe { ((self.address as usize + offset) as *mut T).write_volatile(value) }
    }

    fn read<T: Copy>(&self, offset: usize) -> T {
        debug_assert!(offset + core::mem::size_of::<T>() <= 4096);
        // SAFETY: as in `write`.
        unsafe { ((self.address as usize + offset) as *const T).read_volatile() }
    }

    fn set_segment(&mut self, offset: usize, segment: Segment) {
        self.write(offset, segment.selector);
        self.write(offset + 2, segment.attributes);
        self.write(offset + 4, segment.limit);
        self.write(offset + 8, segment.base);
    }

    /// Sets the intercepts, permission maps, ASID and nested page table root.
    pub fn set_controls(&mut self, iopm: u64, msrpm: u64, asid: u32, nested_cr3: u64) {
        use offset::*;
        self.write(INTERCEPT_CR, 0u32);
        // #DB and #AC: a guest can make their delivery recurse for ever inside the CPU
        // (CVE-2015-8104, CVE-2015-5307); intercepted, they are delivered by the hypervisor.
        // #MC: a machine check during a guest's run is contained to its partition.
        self.write(
            INTERCEPT_EXCEPTIONS,
            (1u32 << 1) | (1u32 << 17) | (1u32 << 18),
        );
        // INTR stays intercepted so a host timer or kick always brings the CPU back (the
        // guest can never keep a CPU with interrupts off); NMIs go to the host.
        let m1 = misc1::INTR
            | misc1::NMI
            | misc1::RDPMC
            | misc1::INVLPGA
            | misc1::CPUID
            | misc1::INVD
            | misc1::HLT
            | misc1::IOIO_PROT
            | misc1::MSR_PROT
            | misc1::SHUTDOWN;
        self.write(INTERCEPT_MISC1, m1);
        let m2 = misc2::VMRUN
            | misc2::VMMCALL
            | misc2::VMLOAD
            | misc2::VMSAVE
            | misc2::STGI
            | misc2::CLGI
            | misc2::SKINIT
            | misc2::MONITOR
            | misc2::XSETBV
            | misc2::MWAIT
            | misc2::ICEBP
            | misc2::WBINVD
            | misc2::RDPRU;
        self.write(INTERCEPT_MISC2, m2);
        self.write(IOPM_BASE, iopm);
        self.write(MSRPM_BASE, msrpm);
        self.write(ASID, asid);
        self.write(TLB_CONTROL, 1u8); // flush this ASID on the first VMRUN
        self.write(V_INTR, v_intr::V_INTR_MASKING); // host IF governs physical interrupts
        self.write(NP_ENABLE, 1u64);
        self.write(N_CR3, nested_cr3);
        self.write(CLEAN_BITS, 0u32);
        self.write(EVENT_INJECTION, 0u64);
    }

    /// Loads the guest state of an entry (`ArchState::of`): segments, control registers,
    /// EFER (with SVME, which VMRUN requires), RFLAGS, RIP and PAT; RSP and RAX start at 0.
    pub fn set_state(&mut self, state: &ArchState) {
        use offset::*;
        self.set_segment(CS, state.cs);
        for data in [ES, SS, DS, FS, GS] {
            self.set_segment(data, state.data);
        }
        self.set_segment(TR, state.tr);
        self.set_segment(LDTR, state.ldtr);
        self.set_segment(GDTR, state.gdtr);
        self.set_segment(IDTR, state.idtr);
        self.write(CPL, 0u8);
        self.write(EFER, state.efer | EFER_SVME);
        self.write(CR0, state.cr0);
        self.write(CR3, state.cr3);
        self.write(CR4, state.cr4);
        self.write(CR2, 0u64);
        self.write(DR6, state.dr6);
        self.write(DR7, state.dr7);
        self.write(RFLAGS, state.rflags);
        self.write(RIP, state.rip);
        self.write(RSP, 0u64);
        self.write(RAX, 0u64);
        self.write(G_PAT, state.pat);
    }

    /// The guest's current privilege level.
    pub fn cpl(&self) -> u8 {
        self.read(offset::CPL)
    }

    /// After an exit: (EXITCODE, EXITINFO1, EXITINFO2).
    pub fn exit_info(&self) -> (u64, u64, u64) {
        (
            self.read(offset::EXIT_CODE),
            self.read(offset::EXIT_INFO1),
            self.read(offset::EXIT_INFO2),
        )
    }

    /// EXITINTINFO: an event that was being delivered when the exit happened.
    pub fn exit_interrupt_info(&self) -> u64 {
        self.read(offset::EXIT_INT_INFO)
    }

    /// The next RIP the CPU saved (only with the NRIPS feature).
    pub fn next_rip(&self) -> u64 {
        self.read(offset::NEXT_RIP)
    }

    /// Flush this ASID's TLB entries on the next VMRUN (the nested page tables lost pages).
    pub fn set_tlb_flush(&mut self) {
        self.write(offset::TLB_CONTROL, 1u8);
    }

    /// No TLB flush on the next VMRUN (after the first run).
    pub fn clear_tlb_flush(&mut self) {
        self.write(offset::TLB_CONTROL, 0u8);
    }

    pub fn rip(&self) -> u64 {
        self.read(offset::RIP)
    }
    pub fn set_rip(&mut self, rip: u64) {
        self.write(offset::RIP, rip);
    }
    pub fn rax(&self) -> u64 {
        self.read(offset::RAX)
    }
    pub fn set_rax(&mut self, rax: u64) {
        self.write(offset::RAX, rax);
    }
    pub fn efer(&self) -> u64 {
        self.read(offset::EFER)
    }
    pub fn set_efer(&mut self, efer: u64) {
        self.write(offset::EFER, efer | EFER_SVME);
    }
    pub fn pat(&self) -> u64 {
        self.read(offset::G_PAT)
    }
    pub fn set_pat(&mut self, pat: u64) {
        self.write(offset::G_PAT, pat);
    }

    /// The guest TSC is the host TSC plus this offset (wrapping).
    pub fn set_tsc_offset(&mut self, offset: u64) {
        self.write(offset::TSC_OFFSET, offset);
    }

    pub fn rflags(&self) -> u64 {
        self.read(offset::RFLAGS)
    }
    pub fn set_rflags(&mut self, rflags: u64) {
        self.write(offset::RFLAGS, rflags);
    }
    pub fn dr6(&self) -> u64 {
        self.read(offset::DR6)
    }
    pub fn set_dr6(&mut self, dr6: u64) {
        self.write(offset::DR6, dr6);
    }

    /// Intercepts the guest's IRET (#VMEXIT(IRET) before it executes: APM vol. 2 §15.9), or
    /// stops doing so.
    pub fn set_iret_intercept(&mut self, wanted: bool) {
        self.set_intercept(offset::INTERCEPT_MISC1, misc1::IRET, wanted);
    }

    /// Sets or clears the intercept `bit` of the 32-bit intercept vector at `at`.
    fn set_intercept(&mut self, at: usize, bit: u32, wanted: bool) {
        let value = self.read::<u32>(at);
        self.write(at, if wanted { value | bit } else { value & !bit });
    }
    pub fn cr0(&self) -> u64 {
        self.read(offset::CR0)
    }
    pub fn cr3(&self) -> u64 {
        self.read(offset::CR3)
    }
    pub fn cr4(&self) -> u64 {
        self.read(offset::CR4)
    }
    pub fn rsp(&self) -> u64 {
        self.read(offset::RSP)
    }
    pub fn set_rsp(&mut self, rsp: u64) {
        self.write(offset::RSP, rsp);
    }

    /// CS as the save area holds it (attributes give the L and D bits).
    pub fn cs(&self) -> Segment {
        self.segment(offset::CS)
    }

    fn segment(&self, offset: usize) -> Segment {
        Segment {
            selector: self.read(offset),
            attributes: self.read(offset + 2),
            limit: self.read(offset + 4),
            base: self.read(offset + 8),
        }
    }

    /// The guest is in an interrupt shadow (after STI or MOV SS): no interrupt now.
    pub fn interrupt_shadow(&self) -> bool {
        self.read::<u64>(offset::INTERRUPT_SHADOW) & 1 != 0
    }

    /// Queues an event for delivery on the next VMRUN (EVENTINJ).
    pub fn inject_event(&mut self, vector: u8, kind: u64, error_code: Option<u32>) {
        let mut value = vector as u64 | (kind << 8) | (1 << 31);
        if let Some(code) = error_code {
            value |= (1 << 11) | ((code as u64) << 32);
        }
        self.write(offset::EVENT_INJECTION, value);
    }

    /// Whether an injected event is still queued (VMRUN clears EVENTINJ.V once delivered).
    pub fn event_queued(&self) -> bool {
        self.read::<u64>(offset::EVENT_INJECTION) & (1 << 31) != 0
    }

    /// Asks for a #VMEXIT(VINTR) as soon as the guest can take an interrupt (a virtual
    /// interrupt is made pending; V_IGN_TPR so the guest's TPR does not hold it back — the
    /// virtual local APIC applies the TPR itself).
    pub fn set_interrupt_window(&mut self, wanted: bool) {
        self.clear_virtual_interrupt();
        if wanted {
            let v = self.read::<u64>(offset::V_INTR);
            self.write(offset::V_INTR, v | v_intr::VIRTUAL_INTERRUPT);
        }
        self.set_intercept(offset::INTERCEPT_MISC1, misc1::VINTR, wanted);
    }

    /// Offers the guest the external interrupt `vector` as a virtual interrupt (V_IRQ with
    /// V_INTR_VECTOR, APM vol. 2 §15.21.4): taken like a hardware interrupt at the first
    /// instruction boundary where RFLAGS.IF = 1 and no interrupt shadow holds it (V_IGN_TPR:
    /// the virtual local APIC has applied the TPR), without an exit. No VINTR intercept.
    pub fn offer_interrupt(&mut self, vector: u8) {
        let v = self.read::<u64>(offset::V_INTR) & !v_intr::VIRTUAL_INTERRUPT;
        let priority = u64::from(vector >> 4) << v_intr::V_INTR_PRIO_SHIFT;
        self.write(
            offset::V_INTR,
            v | v_intr::V_IRQ | v_intr::V_IGN_TPR | priority,
        );
        self.write(offset::V_INTR_VECTOR, u32::from(vector));
        self.set_intercept(offset::INTERCEPT_MISC1, misc1::VINTR, false);
    }

    /// Whether a virtual interrupt (an offer or a window request) is still pending: the guest
    /// has not taken it (the processor clears V_IRQ as it takes one).
    pub fn virtual_interrupt_pending(&self) -> bool {
        self.read::<u64>(offset::V_INTR) & v_intr::V_IRQ != 0
    }

    /// Withdraws a pending virtual interrupt.
    pub fn clear_virtual_interrupt(&mut self) {
        let v = self.read::<u64>(offset::V_INTR);
        self.write(offset::V_INTR, v & !v_intr::VIRTUAL_INTERRUPT);
        self.write(offset::V_INTR_VECTOR, 0u32);
    }

    /// The guest's CR8 (V_TPR): with V_INTR_MASKING set, MOV CR8 reads and writes it without
    /// an exit (APM vol. 2 §15.21.1).
    pub fn v_tpr(&self) -> u8 {
        (self.read::<u64>(offset::V_INTR) & v_intr::V_TPR) as u8
    }

    pub fn set_v_tpr(&mut self, class: u8) {
        let v = self.read::<u64>(offset::V_INTR) & !v_intr::V_TPR;
        self.write(offset::V_INTR, v | (u64::from(class) & v_intr::V_TPR));
    }

    /// Intercepts the guest's writes of CR8 (INTERCEPT_CR bit 24: writes of CR0–15 are bits
    /// 16–31).
    pub fn set_cr8_write_intercept(&mut self, wanted: bool) {
        const WRITE_CR8: u32 = 1 << 24;
        self.set_intercept(offset::INTERCEPT_CR, WRITE_CR8, wanted);
    }

    /// Queues the event of EXITINTINFO `info` again (same format as EVENTINJ).
    pub fn requeue_event(&mut self, info: u64) {
        self.write(offset::EVENT_INJECTION, info);
    }

    /// Drops any queued event (a fresh start).
    pub fn clear_event(&mut self) {
        self.write(offset::EVENT_INJECTION, 0u64);
    }

    /// Ends an interrupt shadow (the shadowed instruction was emulated).
    pub fn clear_interrupt_shadow(&mut self) {
        let value: u64 = self.read(offset::INTERRUPT_SHADOW);
        self.write(offset::INTERRUPT_SHADOW, value & !1);
    }
}
