//! The architectural state of each [`EntryState`], once for every backend: segment registers,
//! control registers, EFER, RFLAGS and the general registers the entry protocol sets. SVM
//! copies it into the VMCB save area, VMX into the VMCS guest-state area (converting the
//! segment attributes with [`Segment::vmx_access_rights`]).
//!
//! Sources: the PVH boot ABI (32-bit protected mode, paging off, flat segments, EBX =
//! start_info); Linux's `Documentation/arch/x86/boot.rst` (64-bit boot protocol: long mode,
//! identity-mapped page tables, `__BOOT_CS` 0x10 and `__BOOT_DS` 0x18, RSI = boot_params);
//! Intel SDM vol. 3A §9.1.1 table 9-1 and AMD APM vol. 2 §14.1.3 (state after INIT), and
//! SDM §9.4.4 / APM §15.29 (a start-up IPI begins real mode at CS = vector << 8).

use super::vcpu::EntryState;

/// A segment register's hidden state. `attributes` is the descriptor's access byte (bits
/// 0..7: type, S, DPL, P) and flags nibble (bits 8..11: AVL, L, D/B, G) packed in 12 bits,
/// which is SVM's VMCB format; a segment with P clear is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub attributes: u16,
    pub limit: u32,
    pub base: u64,
}

/// The "segment unusable" bit of VMX access rights (SDM vol. 3C §24.4.1, table 24-2).
pub const VMX_SEGMENT_UNUSABLE: u32 = 1 << 16;

impl Segment {
    /// The attributes in VMX's access-rights format (SDM vol. 3C table 24-2): the access byte
    /// in bits 0..7, the flags in bits 12..15, bit 16 for a segment that is not present.
    pub fn vmx_access_rights(&self) -> u32 {
        if self.attributes & 0x80 == 0 {
            return VMX_SEGMENT_UNUSABLE;
        }
        let access = (self.attributes & 0xFF) as u32;
        let flags = ((self.attributes >> 8) & 0xF) as u32;
        access | (flags << 12)
    }

    /// A descriptor table register (GDTR, IDTR): only base and limit count.
    pub const fn table(base: u64, limit: u32) -> Segment {
        Segment {
            selector: 0,
            attributes: 0,
            limit,
            base,
        }
    }
}

/// Flat 32-bit code, as PVH starts a guest (selector 0x10 of the start_info GDT).
const CODE32: Segment = Segment {
    selector: 0x10,
    attributes: 0xC9B,
    limit: 0xFFFF_FFFF,
    base: 0,
};
/// Flat 64-bit code (L = 1, D = 0), Linux's `__BOOT_CS`.
const CODE64: Segment = Segment {
    selector: 0x10,
    attributes: 0xA9B,
    limit: 0xFFFF_FFFF,
    base: 0,
};
/// Flat 32-bit writable data.
const DATA32: Segment = Segment {
    selector: 0x18,
    attributes: 0xC93,
    limit: 0xFFFF_FFFF,
    base: 0,
};
/// A busy 32/64-bit TSS, so TR is valid until the guest loads its own.
const TSS: Segment = Segment {
    selector: 0x20,
    attributes: 0x8B,
    limit: 0x67,
    base: 0,
};
/// No LDT.
const NO_LDT: Segment = Segment {
    selector: 0,
    attributes: 0,
    limit: 0,
    base: 0,
};

/// CR0 bits named here.
pub mod cr0 {
    pub const PE: u64 = 1 << 0;
    pub const ET: u64 = 1 << 4;
    pub const NE: u64 = 1 << 5;
    pub const NW: u64 = 1 << 29;
    pub const CD: u64 = 1 << 30;
    pub const PG: u64 = 1 << 31;
}

/// CR4.PAE.
pub const CR4_PAE: u64 = 1 << 5;
/// EFER.LME and EFER.LMA.
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
/// The power-on PAT (SDM vol. 3A §11.12.4): WB, WT, UC-, UC, twice.
pub const RESET_PAT: u64 = 0x0007_0406_0007_0406;
/// EDX after INIT: the processor signature (family 6).
pub const INIT_EDX: u64 = 0x0060_0F00;

/// Everything an entry state sets; the rest of the guest state is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchState {
    pub cs: Segment,
    /// ES, SS, DS, FS, GS: the entry protocols load them alike.
    pub data: Segment,
    pub tr: Segment,
    pub ldtr: Segment,
    pub gdtr: Segment,
    pub idtr: Segment,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    /// EFER as the guest sees it (no backend bits such as SVME).
    pub efer: u64,
    pub rflags: u64,
    pub rip: u64,
    pub dr6: u64,
    pub dr7: u64,
    pub pat: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rsi: u64,
}

impl ArchState {
    /// The state `entry` describes.
    pub fn of(entry: EntryState) -> ArchState {
        let pvh = ArchState {
            cs: CODE32,
            data: DATA32,
            tr: TSS,
            ldtr: NO_LDT,
            gdtr: Segment::table(0, 0xFFFF),
            idtr: Segment::table(0, 0),
            cr0: cr0::PE | cr0::ET,
            cr3: 0,
            cr4: 0,
            efer: 0,
            rflags: 0x2,
            rip: 0,
            dr6: 0xFFFF_0FF0,
            dr7: 0x400,
            pat: RESET_PAT,
            rbx: 0,
            rdx: 0,
            rsi: 0,
        };
        match entry {
            EntryState::Pvh32 { rip, rbx } => ArchState { rip, rbx, ..pvh },
            EntryState::Linux64 {
                rip,
                rsi,
                cr3,
                gdt_base,
                gdt_limit,
            } => ArchState {
                cs: CODE64,
                gdtr: Segment::table(gdt_base, gdt_limit as u32),
                cr0: cr0::PG | cr0::NE | cr0::ET | cr0::PE,
                cr3,
                cr4: CR4_PAE,
                efer: EFER_LME | EFER_LMA,
                rip,
                rsi,
                ..pvh
            },
            EntryState::Startup { vector } => {
                let real = |selector: u16, attributes: u16| Segment {
                    selector,
                    attributes,
                    limit: 0xFFFF,
                    base: (selector as u64) << 4,
                };
                ArchState {
                    cs: real((vector as u16) << 8, 0x9B),
                    data: real(0, 0x93),
                    // After INIT: a 16-bit busy TSS and an LDT, both at 0 with limit 0xFFFF.
                    tr: Segment {
                        attributes: 0x8B,
                        ..real(0, 0)
                    },
                    ldtr: Segment {
                        attributes: 0x82,
                        ..real(0, 0)
                    },
                    // The real-mode IVT at 0 (SDM vol. 3A Table 10-1, AMD APM vol. 2 Table
                    // 14-1: IDTR and GDTR base 0, limit 0xFFFF), not the PVH template's empty
                    // IDT: an exception or NMI in the start-up code must reach the guest's
                    // handlers, not triple-fault the partition.
                    gdtr: Segment::table(0, 0xFFFF),
                    idtr: Segment::table(0, 0xFFFF),
                    cr0: cr0::CD | cr0::NW | cr0::ET,
                    rip: 0,
                    rdx: INIT_EDX,
                    ..pvh
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_rights_move_the_flags_and_mark_absent_segments() {
        assert_eq!(CODE64.vmx_access_rights(), 0xA09B);
        assert_eq!(CODE32.vmx_access_rights(), 0xC09B);
        assert_eq!(DATA32.vmx_access_rights(), 0xC093);
        assert_eq!(TSS.vmx_access_rights(), 0x8B);
        assert_eq!(NO_LDT.vmx_access_rights(), VMX_SEGMENT_UNUSABLE);
    }

    #[test]
    fn pvh_starts_flat_protected_mode_without_paging() {
        let s = ArchState::of(EntryState::Pvh32 {
            rip: 0x10_0000,
            rbx: 0x6000,
        });
        assert_eq!((s.rip, s.rbx), (0x10_0000, 0x6000));
        assert_eq!(s.cr0 & (cr0::PE | cr0::PG), cr0::PE);
        assert_eq!(s.efer, 0);
        assert_eq!(s.cs.limit, 0xFFFF_FFFF);
    }

    #[test]
    fn linux64_is_long_mode_on_the_boot_tables() {
        let s = ArchState::of(EntryState::Linux64 {
            rip: 0x20_0200,
            rsi: 0x7000,
            cr3: 0x9000,
            gdt_base: 0x8000,
            gdt_limit: 0x27,
        });
        assert_eq!(s.efer, EFER_LME | EFER_LMA);
        assert_eq!(s.cr0 & cr0::PG, cr0::PG);
        assert_eq!(s.cr4 & CR4_PAE, CR4_PAE);
        assert_eq!(
            (s.cr3, s.rsi, s.gdtr.base, s.gdtr.limit),
            (0x9000, 0x7000, 0x8000, 0x27)
        );
        // L set, D clear: a 64-bit code segment (VM entry checks CS.D = 0 when CS.L = 1).
        assert_eq!(s.cs.vmx_access_rights() & 0x6000, 0x2000);
    }

    #[test]
    fn startup_is_real_mode_at_the_vector() {
        let s = ArchState::of(EntryState::Startup { vector: 0x9A });
        assert_eq!((s.cs.selector, s.cs.base, s.rip), (0x9A00, 0x9_A000, 0));
        assert_eq!(s.cr0 & cr0::PE, 0);
        assert_eq!(s.rdx, INIT_EDX);
        assert_eq!(s.tr.vmx_access_rights(), 0x8B);
        assert_eq!(s.ldtr.vmx_access_rights(), 0x82);
        // The rest of the INIT state of the SDM's Table 10-1 and the APM's Table 14-1.
        assert_eq!((s.idtr.base, s.idtr.limit), (0, 0xFFFF));
        assert_eq!((s.gdtr.base, s.gdtr.limit), (0, 0xFFFF));
        assert_eq!((s.data.selector, s.data.base, s.data.limit), (0, 0, 0xFFFF));
        assert_eq!((s.cr3, s.cr4, s.efer), (0, 0, 0));
        assert_eq!((s.rflags, s.dr6, s.dr7), (0x2, 0xFFFF_0FF0, 0x400));
        assert_eq!((s.rbx, s.rsi), (0, 0));
    }
}
