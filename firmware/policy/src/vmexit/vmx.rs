//! The VMX exit decoder (Intel SDM vol. 3C ch. 27 and appendix C): the exit reason, the exit
//! qualification (table 27-5 for I/O, 27-3 for control-register accesses, 27-7 for EPT
//! violations) and the VM-exit interruption information (§24.9.2) into the shared
//! [`VmExit`], and the layout of the VMX MSR bitmap (§24.6.9).

use super::{GuestInstruction, IoAccess, VmExit};

/// Basic exit reasons (SDM vol. 3C appendix C).
pub mod reason {
    pub const EXCEPTION_OR_NMI: u32 = 0;
    pub const EXTERNAL_INTERRUPT: u32 = 1;
    pub const TRIPLE_FAULT: u32 = 2;
    pub const INTERRUPT_WINDOW: u32 = 7;
    pub const NMI_WINDOW: u32 = 8;
    pub const CPUID: u32 = 10;
    pub const GETSEC: u32 = 11;
    pub const HLT: u32 = 12;
    pub const INVD: u32 = 13;
    pub const RDPMC: u32 = 15;
    pub const VMCALL: u32 = 18;
    /// VMCLEAR, VMLAUNCH, VMPTRLD, VMPTRST, VMREAD, VMRESUME, VMWRITE, VMXOFF, VMXON.
    pub const VMCLEAR: u32 = 19;
    pub const VMXON: u32 = 27;
    pub const CR_ACCESS: u32 = 28;
    pub const IO: u32 = 30;
    pub const RDMSR: u32 = 31;
    pub const WRMSR: u32 = 32;
    pub const ENTRY_INVALID_GUEST_STATE: u32 = 33;
    pub const ENTRY_MSR_LOADING: u32 = 34;
    pub const MWAIT: u32 = 36;
    pub const MONITOR: u32 = 39;
    pub const ENTRY_MACHINE_CHECK: u32 = 41;
    pub const EPT_VIOLATION: u32 = 48;
    pub const EPT_MISCONFIGURATION: u32 = 49;
    pub const INVEPT: u32 = 50;
    pub const INVVPID: u32 = 53;
    pub const WBINVD: u32 = 54;
    pub const XSETBV: u32 = 55;
    pub const PREEMPTION_TIMER: u32 = 52;
    pub const VMFUNC: u32 = 59;
    pub const ENCLS: u32 = 60;
}

/// Bit 31 of the exit reason: the VM entry failed (SDM vol. 3C §24.9.1).
pub const ENTRY_FAILURE: u32 = 1 << 31;

/// What the VMCS's exit-information fields say about one exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmxExitInfo {
    /// The exit reason field (basic reason in bits 0..15, entry failure in bit 31).
    pub reason: u32,
    pub qualification: u64,
    pub guest_physical: u64,
    /// VM-exit interruption information (exception and NMI exits).
    pub interruption_info: u32,
    pub interruption_error: u32,
    pub instruction_length: u32,
    pub rip: u64,
}

/// Interruption types of the interruption-information fields (SDM vol. 3C §24.8.3, §24.9.2).
pub mod interruption {
    pub const EXTERNAL: u32 = 0;
    pub const NMI: u32 = 2;
    pub const HARDWARE_EXCEPTION: u32 = 3;
    pub const PRIVILEGED_SOFTWARE_EXCEPTION: u32 = 5;
    pub const VALID: u32 = 1 << 31;
    pub const ERROR_CODE_VALID: u32 = 1 << 11;

    /// The type in bits 8..10.
    pub fn kind(info: u32) -> u32 {
        (info >> 8) & 7
    }
}

/// Decodes an exit the backend did not handle itself (control-register accesses are VMX-only
/// and stay in the backend, except CR8, which reaches the local APIC).
pub fn decode_vmx(exit: &VmxExitInfo) -> VmExit {
    use reason::*;
    let q = exit.qualification;
    let unexpected = VmExit::Unexpected {
        code: exit.reason as u64,
        info1: q,
        info2: exit.guest_physical,
    };
    if exit.reason & ENTRY_FAILURE != 0 {
        return VmExit::InvalidState;
    }
    match exit.reason & 0xFFFF {
        EXCEPTION_OR_NMI => {
            let info = exit.interruption_info;
            if info & interruption::VALID == 0 {
                return unexpected;
            }
            match interruption::kind(info) {
                interruption::NMI => VmExit::PhysicalNmi,
                // ICEBP (INT1) raises #DB as a privileged software exception.
                interruption::PRIVILEGED_SOFTWARE_EXCEPTION if info as u8 == 1 => {
                    VmExit::Instruction(GuestInstruction::Icebp)
                }
                interruption::HARDWARE_EXCEPTION => VmExit::Exception {
                    vector: info as u8,
                    error_code: (info & interruption::ERROR_CODE_VALID != 0)
                        .then_some(exit.interruption_error),
                },
                _ => unexpected,
            }
        }
        // The VMX-preemption timer is the host's timer too: the run's slice has ended.
        EXTERNAL_INTERRUPT | PREEMPTION_TIMER => VmExit::PhysicalInterrupt,
        TRIPLE_FAULT => VmExit::TripleFault,
        INTERRUPT_WINDOW => VmExit::InterruptWindow,
        NMI_WINDOW => VmExit::NmiWindow,
        CPUID => VmExit::Cpuid,
        HLT => VmExit::Hlt,
        INVD | WBINVD => VmExit::Instruction(GuestInstruction::CacheFlush),
        RDPMC => VmExit::Instruction(GuestInstruction::Rdpmc),
        MONITOR | MWAIT => VmExit::Instruction(GuestInstruction::MonitorMwait),
        XSETBV => VmExit::Instruction(GuestInstruction::Xsetbv),
        VMCALL => VmExit::Vmmcall,
        VMCLEAR..=VMXON | INVEPT | INVVPID | VMFUNC | GETSEC | ENCLS => {
            VmExit::Instruction(GuestInstruction::Vmx)
        }
        CR_ACCESS if q & 0xF == 8 && (q >> 4) & 3 <= 1 => VmExit::Cr8 {
            write: (q >> 4) & 3 == 0,
            register: ((q >> 8) & 0xF) as u8,
        },
        IO => VmExit::Io(IoAccess {
            port: (q >> 16) as u16,
            size: (q & 7) as u8 + 1,
            write: q & (1 << 3) == 0,
            string: q & (1 << 4) != 0,
            rep: q & (1 << 5) != 0,
            next_rip: exit.rip.wrapping_add(exit.instruction_length as u64),
        }),
        RDMSR => VmExit::Msr { write: false },
        WRMSR => VmExit::Msr { write: true },
        ENTRY_INVALID_GUEST_STATE | ENTRY_MSR_LOADING | EPT_MISCONFIGURATION => {
            VmExit::InvalidState
        }
        ENTRY_MACHINE_CHECK => VmExit::Exception {
            vector: 18,
            error_code: None,
        },
        // Qualification bit 7: a guest-linear address was being translated; bit 8 clear with
        // it: the access was to a paging-structure entry (SDM vol. 3C table 28-7).
        EPT_VIOLATION => VmExit::NestedPageFault {
            gpa: exit.guest_physical,
            error_code: q,
            walk: q & (1 << 7) != 0 && q & (1 << 8) == 0,
        },
        _ => unexpected,
    }
}

/// The MSRs the guest may access directly on VMX: SYSENTER_CS/ESP/EIP and FS/GS base (the
/// VMCS switches them at every entry and exit), and the SYSCALL MSRs and KernelGSbase, which
/// the backend gives the guest while its vCPU holds the CPU (the hypervisor never executes
/// SYSCALL or SWAPGS) and gives back to the host when the vCPU leaves it.
pub const VMX_PASSTHROUGH_MSRS: [u32; 10] = [
    0x174,
    0x175,
    0x176,
    0xC000_0081,
    0xC000_0082,
    0xC000_0083,
    0xC000_0084,
    0xC000_0100,
    0xC000_0101,
    0xC000_0102,
];

/// The bits of the 4 KiB VMX MSR bitmap that make RDMSR and WRMSR of `msr` exit, as
/// (read bit, write bit), or `None` for MSRs outside its two ranges (those always exit).
/// SDM vol. 3C §24.6.9: read-low at byte 0, read-high (0xC000_0000..) at 1024, write-low at
/// 2048, write-high at 3072; one bit per MSR.
pub fn vmx_msr_bitmap_bits(msr: u32) -> Option<(usize, usize)> {
    let (read_byte, index) = match msr {
        0..=0x1FFF => (0, msr),
        0xC000_0000..=0xC000_1FFF => (1024, msr - 0xC000_0000),
        _ => return None,
    };
    let read = read_byte * 8 + index as usize;
    Some((read, read + 2048 * 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(reason: u32, qualification: u64) -> VmxExitInfo {
        VmxExitInfo {
            reason,
            qualification,
            rip: 0x1000,
            instruction_length: 1,
            ..VmxExitInfo::default()
        }
    }

    #[test]
    fn decodes_io_from_the_qualification() {
        // OUT dx, al to 0x3f8: size 0 (1 byte), direction 0 (out), port in 16..31.
        assert_eq!(
            decode_vmx(&exit(reason::IO, 0x3F8 << 16)),
            VmExit::Io(IoAccess {
                port: 0x3F8,
                size: 1,
                write: true,
                string: false,
                rep: false,
                next_rip: 0x1001,
            })
        );
        // REP INSD from 0x60: size 3 (4 bytes), in, string, rep.
        let io = decode_vmx(&exit(reason::IO, (0x60 << 16) | 3 | 8 | 16 | 32));
        assert!(matches!(
            io,
            VmExit::Io(IoAccess {
                port: 0x60,
                size: 4,
                write: false,
                string: true,
                rep: true,
                ..
            })
        ));
    }

    #[test]
    fn decodes_exceptions_nmis_and_interrupts() {
        let mut e = exit(reason::EXCEPTION_OR_NMI, 0);
        e.interruption_info = interruption::VALID | (3 << 8) | 17 | interruption::ERROR_CODE_VALID;
        assert_eq!(
            decode_vmx(&e),
            VmExit::Exception {
                vector: 17,
                error_code: Some(0)
            }
        );
        e.interruption_info = interruption::VALID | (3 << 8) | 1;
        assert_eq!(
            decode_vmx(&e),
            VmExit::Exception {
                vector: 1,
                error_code: None
            }
        );
        e.interruption_info = interruption::VALID | (5 << 8) | 1;
        assert_eq!(decode_vmx(&e), VmExit::Instruction(GuestInstruction::Icebp));
        e.interruption_info = interruption::VALID | (2 << 8) | 2;
        assert_eq!(decode_vmx(&e), VmExit::PhysicalNmi);
        e.interruption_info = 0;
        assert!(matches!(decode_vmx(&e), VmExit::Unexpected { .. }));
        assert_eq!(
            decode_vmx(&exit(reason::EXTERNAL_INTERRUPT, 0)),
            VmExit::PhysicalInterrupt
        );
        assert_eq!(decode_vmx(&exit(reason::NMI_WINDOW, 0)), VmExit::NmiWindow);
    }

    #[test]
    fn entry_failures_and_misconfigurations_are_invalid_state() {
        for r in [
            ENTRY_FAILURE | reason::ENTRY_INVALID_GUEST_STATE,
            ENTRY_FAILURE | reason::ENTRY_MSR_LOADING,
            reason::EPT_MISCONFIGURATION,
        ] {
            assert_eq!(decode_vmx(&exit(r, 0)), VmExit::InvalidState);
        }
    }

    #[test]
    fn ept_violations_carry_the_guest_physical_address() {
        let mut e = exit(reason::EPT_VIOLATION, 0b010);
        e.guest_physical = 0xFEE0_0030;
        assert_eq!(
            decode_vmx(&e),
            VmExit::NestedPageFault {
                gpa: 0xFEE0_0030,
                error_code: 0b010,
                walk: false,
            }
        );
        // Bit 7 (linear address valid) without bit 8: a paging-structure access.
        e.qualification = (1 << 7) | 0b001;
        assert_eq!(
            decode_vmx(&e),
            VmExit::NestedPageFault {
                gpa: 0xFEE0_0030,
                error_code: (1 << 7) | 0b001,
                walk: true,
            }
        );
        e.qualification = (1 << 8) | (1 << 7) | 0b001;
        assert!(matches!(
            decode_vmx(&e),
            VmExit::NestedPageFault { walk: false, .. }
        ));
    }

    #[test]
    fn vmx_instructions_are_refused_and_cr8_reaches_the_apic() {
        for r in reason::VMCLEAR..=reason::VMXON {
            assert_eq!(
                decode_vmx(&exit(r, 0)),
                VmExit::Instruction(GuestInstruction::Vmx)
            );
        }
        assert_eq!(decode_vmx(&exit(reason::VMCALL, 0)), VmExit::Vmmcall);
        // MOV CR8, RCX: CR 8, access type 0 (to CR), register 1.
        assert_eq!(
            decode_vmx(&exit(reason::CR_ACCESS, 8 | (1 << 8))),
            VmExit::Cr8 {
                write: true,
                register: 1
            }
        );
        // MOV RAX, CR8: access type 1.
        assert_eq!(
            decode_vmx(&exit(reason::CR_ACCESS, 8 | (1 << 4))),
            VmExit::Cr8 {
                write: false,
                register: 0
            }
        );
        assert!(matches!(
            decode_vmx(&exit(reason::CR_ACCESS, 0)),
            VmExit::Unexpected { .. }
        ));
    }

    #[test]
    fn msr_bitmap_bits_follow_the_four_quarters() {
        assert_eq!(vmx_msr_bitmap_bits(0), Some((0, 2048 * 8)));
        assert_eq!(vmx_msr_bitmap_bits(0x174), Some((0x174, 2048 * 8 + 0x174)));
        assert_eq!(
            vmx_msr_bitmap_bits(0xC000_0082),
            Some((1024 * 8 + 0x82, 3072 * 8 + 0x82))
        );
        assert_eq!(vmx_msr_bitmap_bits(0x2000), None);
        assert_eq!(vmx_msr_bitmap_bits(0xC001_0000), None);
        for msr in VMX_PASSTHROUGH_MSRS {
            let (read, write) = vmx_msr_bitmap_bits(msr).unwrap();
            assert!(read < 2048 * 8 && write < 4096 * 8);
        }
    }
}
