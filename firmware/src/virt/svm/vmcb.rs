//! The VMCB (AMD APM vol. 2 appendix B): a 4 KiB page, control area at 0, state save area at
//! 0x400. Only the fields numavisor uses are named here.

/// Control-area and save-area offsets (APM vol. 2 tables B-1 and B-2).
mod offset {
    pub const INTERCEPT_CR: usize = 0x00;
    pub const INTERCEPT_EXCEPTIONS: usize = 0x08;
    pub const INTERCEPT_MISC1: usize = 0x0C;
    pub const INTERCEPT_MISC2: usize = 0x10;
    pub const IOPM_BASE: usize = 0x40;
    pub const MSRPM_BASE: usize = 0x48;
    pub const ASID: usize = 0x58;
    pub const TLB_CONTROL: usize = 0x5C;
    pub const V_INTR: usize = 0x60;
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
    pub const CPUID: u32 = 1 << 18;
    pub const INVD: u32 = 1 << 22;
    pub const HLT: u32 = 1 << 24;
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
    pub const MONITOR: u32 = 1 << 10;
    pub const MWAIT: u32 = 1 << 11;
}

/// EFER.SVME: must stay set in the guest's EFER for VMRUN to accept the state.
pub const EFER_SVME: u64 = 1 << 12;

/// A segment register in the save area: selector, attributes (packed descriptor bits
/// 8..15 and 20..23), limit, base.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub selector: u16,
    pub attributes: u16,
    pub limit: u32,
    pub base: u64,
}

impl Segment {
    /// Flat 32-bit code, as PVH starts a guest.
    pub const CODE32: Segment = Segment {
        selector: 0x10,
        attributes: 0xC9B,
        limit: 0xFFFF_FFFF,
        base: 0,
    };
    /// Flat 32-bit data.
    pub const DATA32: Segment = Segment {
        selector: 0x18,
        attributes: 0xC93,
        limit: 0xFFFF_FFFF,
        base: 0,
    };
    /// A busy 32-bit TSS, so the guest's TR is valid until it loads its own.
    pub const TSS32: Segment = Segment {
        selector: 0x20,
        attributes: 0x8B,
        limit: 0x67,
        base: 0,
    };
    /// An LDT selector of 0 marked unusable.
    pub const NULL: Segment = Segment {
        selector: 0,
        attributes: 0,
        limit: 0,
        base: 0,
    };
}

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
        self.write(INTERCEPT_EXCEPTIONS, 0u32);
        let m1 = misc1::CPUID
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
            | misc2::MWAIT;
        self.write(INTERCEPT_MISC2, m2);
        self.write(IOPM_BASE, iopm);
        self.write(MSRPM_BASE, msrpm);
        self.write(ASID, asid);
        self.write(TLB_CONTROL, 1u8); // flush this ASID on the first VMRUN
        self.write(V_INTR, 1u64 << 24); // V_INTR_MASKING: host IF governs physical interrupts
        self.write(NP_ENABLE, 1u64);
        self.write(N_CR3, nested_cr3);
        self.write(CLEAN_BITS, 0u32);
        self.write(EVENT_INJECTION, 0u64);
    }

    /// Guest state for a PVH entry: 32-bit protected mode, paging off, flat segments.
    pub fn set_pvh_entry(&mut self, rip: u64) {
        use offset::*;
        self.set_segment(CS, Segment::CODE32);
        for data in [ES, SS, DS, FS, GS] {
            self.set_segment(data, Segment::DATA32);
        }
        self.set_segment(TR, Segment::TSS32);
        self.set_segment(LDTR, Segment::NULL);
        self.set_segment(
            GDTR,
            Segment {
                selector: 0,
                attributes: 0,
                limit: 0xFFFF,
                base: 0,
            },
        );
        self.set_segment(
            IDTR,
            Segment {
                selector: 0,
                attributes: 0,
                limit: 0,
                base: 0,
            },
        );
        self.write(CPL, 0u8);
        self.write(EFER, EFER_SVME);
        self.write(CR0, 0x11u64); // PE | ET
        self.write(CR3, 0u64);
        self.write(CR4, 0u64);
        self.write(CR2, 0u64);
        self.write(DR6, 0xFFFF_0FF0u64);
        self.write(DR7, 0x400u64);
        self.write(RFLAGS, 0x2u64);
        self.write(RIP, rip);
        self.write(RSP, 0u64);
        self.write(RAX, 0u64);
        self.write(G_PAT, 0x0007_0406_0007_0406u64);
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
}
