//! VMCS field encodings (Intel SDM vol. 3C §24.11.2 and appendix B). An encoding packs the
//! access type (bit 0: full or high half of a 64-bit field), an index (bits 1..9), the field
//! type (bits 10..11: control, read-only data, guest state, host state) and the width (bits
//! 13..14: 16-bit, 64-bit, 32-bit, natural width). The constants are built from those parts,
//! and the tests check them against the appendix's numbers.

/// Width of a field (encoding bits 13..14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    Bits16 = 0,
    Bits64 = 1,
    Bits32 = 2,
    Natural = 3,
}

/// Type of a field (encoding bits 10..11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Control = 0,
    ExitInformation = 1,
    Guest = 2,
    Host = 3,
}

/// The encoding of the field with `width`, `kind` and `index` (full access).
pub const fn encode(width: Width, kind: Kind, index: u32) -> u32 {
    ((width as u32) << 13) | ((kind as u32) << 10) | (index << 1)
}

/// The width an encoding names.
pub const fn width_of(encoding: u32) -> Width {
    match (encoding >> 13) & 3 {
        0 => Width::Bits16,
        1 => Width::Bits64,
        2 => Width::Bits32,
        _ => Width::Natural,
    }
}

use Kind::{Control, ExitInformation as Exit, Guest, Host};
use Width::{Bits16 as W16, Bits32 as W32, Bits64 as W64, Natural as WN};

pub const VPID: u32 = encode(W16, Control, 0);

/// Guest selectors, in the order ES, CS, SS, DS, FS, GS, LDTR, TR (indices 0..7); their
/// limits, access rights and bases follow the same order.
pub const GUEST_ES_SELECTOR: u32 = encode(W16, Guest, 0);
pub const GUEST_ES_LIMIT: u32 = encode(W32, Guest, 0);
pub const GUEST_ES_ACCESS_RIGHTS: u32 = encode(W32, Guest, 10);
pub const GUEST_ES_BASE: u32 = encode(WN, Guest, 3);

/// A guest segment register's four fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFields {
    pub selector: u32,
    pub limit: u32,
    pub access_rights: u32,
    pub base: u32,
}

/// The guest segment registers, in encoding order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestSegment {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
    Ldtr = 6,
    Tr = 7,
}

impl GuestSegment {
    pub const ALL: [GuestSegment; 8] = [
        GuestSegment::Es,
        GuestSegment::Cs,
        GuestSegment::Ss,
        GuestSegment::Ds,
        GuestSegment::Fs,
        GuestSegment::Gs,
        GuestSegment::Ldtr,
        GuestSegment::Tr,
    ];

    /// The fields of this segment register (each 2 encodings apart from the previous one's).
    pub const fn fields(self) -> SegmentFields {
        let i = self as u32;
        SegmentFields {
            selector: GUEST_ES_SELECTOR + 2 * i,
            limit: GUEST_ES_LIMIT + 2 * i,
            access_rights: GUEST_ES_ACCESS_RIGHTS + 2 * i,
            base: GUEST_ES_BASE + 2 * i,
        }
    }
}

/// Host selectors ES, CS, SS, DS, FS, GS, TR.
pub const HOST_ES_SELECTOR: u32 = encode(W16, Host, 0);
pub const HOST_CS_SELECTOR: u32 = encode(W16, Host, 1);
pub const HOST_SS_SELECTOR: u32 = encode(W16, Host, 2);
pub const HOST_DS_SELECTOR: u32 = encode(W16, Host, 3);
pub const HOST_FS_SELECTOR: u32 = encode(W16, Host, 4);
pub const HOST_GS_SELECTOR: u32 = encode(W16, Host, 5);
pub const HOST_TR_SELECTOR: u32 = encode(W16, Host, 6);

pub const IO_BITMAP_A: u32 = encode(W64, Control, 0);
pub const IO_BITMAP_B: u32 = encode(W64, Control, 1);
pub const MSR_BITMAP: u32 = encode(W64, Control, 2);
pub const TSC_OFFSET: u32 = encode(W64, Control, 8);
pub const EPT_POINTER: u32 = encode(W64, Control, 13);
pub const GUEST_PHYSICAL_ADDRESS: u32 = encode(W64, Exit, 0);
pub const VMCS_LINK_POINTER: u32 = encode(W64, Guest, 0);
pub const GUEST_DEBUGCTL: u32 = encode(W64, Guest, 1);
pub const GUEST_PAT: u32 = encode(W64, Guest, 2);
pub const GUEST_EFER: u32 = encode(W64, Guest, 3);
pub const HOST_PAT: u32 = encode(W64, Host, 0);
pub const HOST_EFER: u32 = encode(W64, Host, 1);

pub const PIN_BASED_CONTROLS: u32 = encode(W32, Control, 0);
pub const PRIMARY_PROCESSOR_CONTROLS: u32 = encode(W32, Control, 1);
pub const EXCEPTION_BITMAP: u32 = encode(W32, Control, 2);
pub const CR3_TARGET_COUNT: u32 = encode(W32, Control, 5);
pub const EXIT_CONTROLS: u32 = encode(W32, Control, 6);
pub const EXIT_MSR_STORE_COUNT: u32 = encode(W32, Control, 7);
pub const EXIT_MSR_LOAD_COUNT: u32 = encode(W32, Control, 8);
pub const ENTRY_CONTROLS: u32 = encode(W32, Control, 9);
pub const ENTRY_MSR_LOAD_COUNT: u32 = encode(W32, Control, 10);
pub const ENTRY_INTERRUPTION_INFO: u32 = encode(W32, Control, 11);
pub const ENTRY_EXCEPTION_ERROR_CODE: u32 = encode(W32, Control, 12);
pub const ENTRY_INSTRUCTION_LENGTH: u32 = encode(W32, Control, 13);
pub const SECONDARY_PROCESSOR_CONTROLS: u32 = encode(W32, Control, 15);

pub const VM_INSTRUCTION_ERROR: u32 = encode(W32, Exit, 0);
pub const EXIT_REASON: u32 = encode(W32, Exit, 1);
pub const EXIT_INTERRUPTION_INFO: u32 = encode(W32, Exit, 2);
pub const EXIT_INTERRUPTION_ERROR_CODE: u32 = encode(W32, Exit, 3);
pub const IDT_VECTORING_INFO: u32 = encode(W32, Exit, 4);
pub const IDT_VECTORING_ERROR_CODE: u32 = encode(W32, Exit, 5);
pub const EXIT_INSTRUCTION_LENGTH: u32 = encode(W32, Exit, 6);

pub const GUEST_GDTR_LIMIT: u32 = encode(W32, Guest, 8);
pub const GUEST_IDTR_LIMIT: u32 = encode(W32, Guest, 9);
pub const GUEST_INTERRUPTIBILITY: u32 = encode(W32, Guest, 18);
pub const GUEST_ACTIVITY_STATE: u32 = encode(W32, Guest, 19);
pub const GUEST_SYSENTER_CS: u32 = encode(W32, Guest, 21);
pub const GUEST_PREEMPTION_TIMER: u32 = encode(W32, Guest, 23);
pub const HOST_SYSENTER_CS: u32 = encode(W32, Host, 0);

pub const CR0_GUEST_HOST_MASK: u32 = encode(WN, Control, 0);
pub const CR4_GUEST_HOST_MASK: u32 = encode(WN, Control, 1);
pub const CR0_READ_SHADOW: u32 = encode(WN, Control, 2);
pub const CR4_READ_SHADOW: u32 = encode(WN, Control, 3);
pub const EXIT_QUALIFICATION: u32 = encode(WN, Exit, 0);
pub const GUEST_CR0: u32 = encode(WN, Guest, 0);
pub const GUEST_CR3: u32 = encode(WN, Guest, 1);
pub const GUEST_CR4: u32 = encode(WN, Guest, 2);
pub const GUEST_GDTR_BASE: u32 = encode(WN, Guest, 11);
pub const GUEST_IDTR_BASE: u32 = encode(WN, Guest, 12);
pub const GUEST_DR7: u32 = encode(WN, Guest, 13);
pub const GUEST_RSP: u32 = encode(WN, Guest, 14);
pub const GUEST_RIP: u32 = encode(WN, Guest, 15);
pub const GUEST_RFLAGS: u32 = encode(WN, Guest, 16);
pub const GUEST_PENDING_DEBUG_EXCEPTIONS: u32 = encode(WN, Guest, 17);
pub const GUEST_SYSENTER_ESP: u32 = encode(WN, Guest, 18);
pub const GUEST_SYSENTER_EIP: u32 = encode(WN, Guest, 19);
pub const HOST_CR0: u32 = encode(WN, Host, 0);
pub const HOST_CR3: u32 = encode(WN, Host, 1);
pub const HOST_CR4: u32 = encode(WN, Host, 2);
pub const HOST_FS_BASE: u32 = encode(WN, Host, 3);
pub const HOST_GS_BASE: u32 = encode(WN, Host, 4);
pub const HOST_TR_BASE: u32 = encode(WN, Host, 5);
pub const HOST_GDTR_BASE: u32 = encode(WN, Host, 6);
pub const HOST_IDTR_BASE: u32 = encode(WN, Host, 7);
pub const HOST_SYSENTER_ESP: u32 = encode(WN, Host, 8);
pub const HOST_SYSENTER_EIP: u32 = encode(WN, Host, 9);
pub const HOST_RSP: u32 = encode(WN, Host, 10);
pub const HOST_RIP: u32 = encode(WN, Host, 11);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_sdm_appendix() {
        let expected = [
            (VPID, 0x0000),
            (GUEST_ES_SELECTOR, 0x0800),
            (GuestSegment::Tr.fields().selector, 0x080E),
            (HOST_CS_SELECTOR, 0x0C02),
            (HOST_TR_SELECTOR, 0x0C0C),
            (IO_BITMAP_A, 0x2000),
            (IO_BITMAP_B, 0x2002),
            (MSR_BITMAP, 0x2004),
            (TSC_OFFSET, 0x2010),
            (EPT_POINTER, 0x201A),
            (GUEST_PHYSICAL_ADDRESS, 0x2400),
            (VMCS_LINK_POINTER, 0x2800),
            (GUEST_EFER, 0x2806),
            (HOST_EFER, 0x2C02),
            (PIN_BASED_CONTROLS, 0x4000),
            (PRIMARY_PROCESSOR_CONTROLS, 0x4002),
            (EXCEPTION_BITMAP, 0x4004),
            (EXIT_CONTROLS, 0x400C),
            (ENTRY_CONTROLS, 0x4012),
            (ENTRY_INTERRUPTION_INFO, 0x4016),
            (ENTRY_INSTRUCTION_LENGTH, 0x401A),
            (SECONDARY_PROCESSOR_CONTROLS, 0x401E),
            (VM_INSTRUCTION_ERROR, 0x4400),
            (EXIT_REASON, 0x4402),
            (IDT_VECTORING_INFO, 0x4408),
            (EXIT_INSTRUCTION_LENGTH, 0x440C),
            (GuestSegment::Cs.fields().limit, 0x4802),
            (GUEST_GDTR_LIMIT, 0x4810),
            (GuestSegment::Es.fields().access_rights, 0x4814),
            (GuestSegment::Tr.fields().access_rights, 0x4822),
            (GUEST_INTERRUPTIBILITY, 0x4824),
            (GUEST_ACTIVITY_STATE, 0x4826),
            (GUEST_SYSENTER_CS, 0x482A),
            (GUEST_PREEMPTION_TIMER, 0x482E),
            (HOST_SYSENTER_CS, 0x4C00),
            (CR0_GUEST_HOST_MASK, 0x6000),
            (CR4_READ_SHADOW, 0x6006),
            (EXIT_QUALIFICATION, 0x6400),
            (GUEST_CR0, 0x6800),
            (GUEST_CR4, 0x6804),
            (GuestSegment::Es.fields().base, 0x6806),
            (GuestSegment::Tr.fields().base, 0x6814),
            (GUEST_GDTR_BASE, 0x6816),
            (GUEST_DR7, 0x681A),
            (GUEST_RSP, 0x681C),
            (GUEST_RIP, 0x681E),
            (GUEST_RFLAGS, 0x6820),
            (GUEST_SYSENTER_EIP, 0x6826),
            (HOST_CR0, 0x6C00),
            (HOST_IDTR_BASE, 0x6C0E),
            (HOST_RSP, 0x6C14),
            (HOST_RIP, 0x6C16),
        ];
        for (field, sdm) in expected {
            assert_eq!(field, sdm, "encoding {field:#06x} should be {sdm:#06x}");
        }
    }

    #[test]
    fn widths_decode_back() {
        assert_eq!(width_of(GUEST_RIP), Width::Natural);
        assert_eq!(width_of(GUEST_EFER), Width::Bits64);
        assert_eq!(width_of(EXIT_REASON), Width::Bits32);
        assert_eq!(width_of(VPID), Width::Bits16);
    }
}
