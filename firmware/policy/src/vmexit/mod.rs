//! VM exits, decoded once into [`VmExit`] by the backend, handled by shared code.
//!
//! The SVM decoder follows AMD APM vol. 2 §15.6 (#VMEXIT), §15.10.2 (IOIO EXITINFO1),
//! §15.25.6 (nested page fault EXITINFO1/2) and appendix C (exit codes); the VMX decoder
//! ([`vmx`]) produces the same enum.

pub mod vmx;

/// Why a vCPU left the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// `IN`/`OUT` (and their string forms) to `port`; `next_rip` is the instruction after.
    Io(IoAccess),
    /// `CPUID`: leaf in RAX, subleaf in RCX; 2 bytes long.
    Cpuid,
    /// `RDMSR` / `WRMSR`: MSR in RCX; 2 bytes long.
    Msr { write: bool },
    /// `HLT`: 1 byte long.
    Hlt,
    /// A physical interrupt arrived while the guest ran (the host timer, a kick from another
    /// CPU): the host takes it; nothing for the guest.
    PhysicalInterrupt,
    /// A physical NMI arrived while the guest ran.
    PhysicalNmi,
    /// The guest can take an interrupt now (the window the backend was asked to open).
    InterruptWindow,
    /// The guest can take an NMI now, or has at least moved one instruction on (the exit
    /// [`crate::vmm::vcpu::NmiExit`] armed: VMX's NMI window, SVM's single step).
    NmiWindow,
    /// The guest is about to execute IRET (SVM's IRET intercept, taken before the IRET
    /// runs: APM vol. 2 §15.9): the end of its NMI handler is near.
    Iret,
    /// The guest triple-faulted (SVM's "shutdown" intercept).
    TripleFault,
    /// `VMMCALL`: a hypercall; 3 bytes long.
    Vmmcall,
    /// An access to a guest-physical address the SLAT does not allow; `walk`: the access was
    /// the CPU reading the guest's own page tables (SVM EXITINFO1 bit 33; VMX qualification
    /// bit 7 set, bit 8 clear), not the instruction's.
    NestedPageFault {
        gpa: u64,
        error_code: u64,
        walk: bool,
    },
    /// VMRUN refused the guest state (exit code -1).
    InvalidState,
    /// An instruction the guest may not use (nested virtualization and the like).
    Forbidden { code: u64 },
    /// A guest exception the hypervisor intercepts (#DB, #AC: their delivery can lock a CPU
    /// in microcode, CVE-2015-5307 / CVE-2015-8104), to be reflected into the guest.
    Exception { vector: u8, error_code: Option<u32> },
    /// An instruction intercepted because it touches what the guest does not own.
    Instruction(GuestInstruction),
    /// `MOV` to or from CR8 (the task priority) with general register number `register`: every
    /// access on VMX; on SVM, which keeps CR8 in V_TPR, a write intercepted while an interrupt
    /// waits for the task priority to drop, where the CPU decoded it (decode assists).
    Cr8 { write: bool, register: u8 },
    /// `MOV CR8, r` intercepted on SVM without decode assists (QEMU's TCG): the handler
    /// decodes the instruction at RIP itself.
    MovToCr8,
    /// Anything else, with the raw exit information.
    Unexpected { code: u64, info1: u64, info2: u64 },
}

/// What an exit was, for counting: one word per kind, as the `exit_counts` report event
/// names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    Io,
    Mmio,
    Cpuid,
    Msr,
    Hlt,
    Interrupt,
    InterruptWindow,
    /// A guest exception the hypervisor intercepts and reflects (#DB, #AC, #MC).
    Exception,
    Other,
}

impl ExitKind {
    /// Every kind, in report order.
    pub const ALL: [ExitKind; 9] = [
        ExitKind::Io,
        ExitKind::Mmio,
        ExitKind::Cpuid,
        ExitKind::Msr,
        ExitKind::Hlt,
        ExitKind::Interrupt,
        ExitKind::InterruptWindow,
        ExitKind::Exception,
        ExitKind::Other,
    ];

    /// The kind's word in the report.
    pub fn name(self) -> &'static str {
        match self {
            ExitKind::Io => "io",
            ExitKind::Mmio => "mmio",
            ExitKind::Cpuid => "cpuid",
            ExitKind::Msr => "msr",
            ExitKind::Hlt => "hlt",
            ExitKind::Interrupt => "interrupt",
            ExitKind::InterruptWindow => "window",
            ExitKind::Exception => "exception",
            ExitKind::Other => "other",
        }
    }

    /// Its index in [`ExitKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl VmExit {
    /// The kind this exit counts as (a nested page fault counts as MMIO: outside the
    /// emulated devices it ends the partition anyway).
    pub fn kind(&self) -> ExitKind {
        match self {
            VmExit::Io(_) => ExitKind::Io,
            VmExit::NestedPageFault { .. } => ExitKind::Mmio,
            VmExit::Cpuid => ExitKind::Cpuid,
            VmExit::Msr { .. } => ExitKind::Msr,
            VmExit::Hlt => ExitKind::Hlt,
            VmExit::PhysicalInterrupt | VmExit::PhysicalNmi => ExitKind::Interrupt,
            VmExit::InterruptWindow | VmExit::NmiWindow => ExitKind::InterruptWindow,
            VmExit::Exception { .. } => ExitKind::Exception,
            _ => ExitKind::Other,
        }
    }
}

/// The instructions intercepted for isolation, each with the hypervisor's answer in
/// `vmm::exit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestInstruction {
    /// WBINVD or INVD: would flush caches shared with other partitions.
    CacheFlush,
    /// RDPMC: the host's performance counters.
    Rdpmc,
    /// RDPRU: the host's APERF/MPERF.
    Rdpru,
    /// INVLPGA: an SVM instruction (nested virtualization is not offered).
    Invlpga,
    /// MONITOR / MWAIT (not offered in CPUID).
    MonitorMwait,
    /// ICEBP (INT1, `F1`): raises #DB.
    Icebp,
    /// A VMX instruction (VMXON, VMCLEAR, INVEPT ...), GETSEC or ENCLS: none is offered.
    Vmx,
    /// XSETBV: XCR0 is checked before the backend sets it (`Vcpu::xsetbv`).
    Xsetbv,
}

/// One port access as the exit reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    pub port: u16,
    /// Operand size in bytes: 1, 2 or 4.
    pub size: u8,
    /// `OUT` (true) or `IN` (false).
    pub write: bool,
    /// `INS`/`OUTS`.
    pub string: bool,
    /// With a `REP` prefix.
    pub rep: bool,
    pub next_rip: u64,
}

/// SVM exit codes (APM vol. 2 appendix C).
pub mod svm_code {
    /// A write of CR8 (WRITE_CR0 + 8).
    pub const WRITE_CR8: u64 = 0x18;
    pub const INTR: u64 = 0x60;
    pub const NMI: u64 = 0x61;
    pub const VINTR: u64 = 0x64;
    pub const IRET: u64 = 0x74;
    pub const CPUID: u64 = 0x72;
    pub const HLT: u64 = 0x78;
    pub const IOIO: u64 = 0x7B;
    pub const MSR: u64 = 0x7C;
    pub const SHUTDOWN: u64 = 0x7F;
    pub const VMRUN: u64 = 0x80;
    pub const VMMCALL: u64 = 0x81;
    pub const VMLOAD: u64 = 0x82;
    pub const VMSAVE: u64 = 0x83;
    pub const STGI: u64 = 0x84;
    pub const CLGI: u64 = 0x85;
    pub const SKINIT: u64 = 0x86;
    pub const EXCEPTION_BASE: u64 = 0x40;
    pub const RDPMC: u64 = 0x6F;
    pub const INVD: u64 = 0x76;
    pub const INVLPGA: u64 = 0x7A;
    pub const ICEBP: u64 = 0x88;
    pub const WBINVD: u64 = 0x89;
    pub const MONITOR: u64 = 0x8A;
    pub const MWAIT: u64 = 0x8B;
    pub const RDPRU: u64 = 0x8E;
    pub const XSETBV: u64 = 0x8D;
    pub const NPF: u64 = 0x400;
    /// VMEXIT_INVALID; emulators may report only its low 32 bits.
    pub const INVALID: u64 = u64::MAX;
}

/// Decodes an SVM exit from the VMCB's EXITCODE, EXITINFO1 and EXITINFO2.
#[inline(always)]
pub fn decode_svm(code: u64, info1: u64, info2: u64) -> VmExit {
    use svm_code::*;
    match code {
        CPUID => VmExit::Cpuid,
        HLT => VmExit::Hlt,
        INTR => VmExit::PhysicalInterrupt,
        NMI => VmExit::PhysicalNmi,
        VINTR => VmExit::InterruptWindow,
        IRET => VmExit::Iret,
        IOIO => VmExit::Io(IoAccess {
            port: (info1 >> 16) as u16,
            // SZ8 (bit 4), SZ16 (5), SZ32 (6): the first set wins, none means 4, by table.
            size: [4, 1, 2, 1, 4, 1, 2, 1][(info1 >> 4 & 7) as usize],
            write: info1 & 1 == 0,
            string: info1 & (1 << 2) != 0,
            rep: info1 & (1 << 3) != 0,
            next_rip: info2,
        }),
        MSR => VmExit::Msr {
            write: info1 & 1 != 0,
        },
        SHUTDOWN => VmExit::TripleFault,
        VMMCALL => VmExit::Vmmcall,
        NPF => VmExit::NestedPageFault {
            gpa: info2,
            error_code: info1,
            walk: info1 & (1 << 33) != 0,
        },
        // EXITINFO1 bit 63: decode assists filled in the general register (bits 3:0).
        WRITE_CR8 if info1 & (1 << 63) != 0 => VmExit::Cr8 {
            write: true,
            register: (info1 & 0xF) as u8,
        },
        WRITE_CR8 => VmExit::MovToCr8,
        VMRUN | VMLOAD | VMSAVE | STGI | CLGI | SKINIT => VmExit::Forbidden { code },
        c @ EXCEPTION_BASE..=0x5F => {
            let vector = (c - EXCEPTION_BASE) as u8;
            // Vectors that push an error code (SDM vol. 3A table 6-1): EXITINFO1 holds it.
            let has_code = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30);
            VmExit::Exception {
                vector,
                error_code: has_code.then_some(info1 as u32),
            }
        }
        WBINVD | INVD => VmExit::Instruction(GuestInstruction::CacheFlush),
        RDPMC => VmExit::Instruction(GuestInstruction::Rdpmc),
        RDPRU => VmExit::Instruction(GuestInstruction::Rdpru),
        INVLPGA => VmExit::Instruction(GuestInstruction::Invlpga),
        MONITOR | MWAIT => VmExit::Instruction(GuestInstruction::MonitorMwait),
        ICEBP => VmExit::Instruction(GuestInstruction::Icebp),
        XSETBV => VmExit::Instruction(GuestInstruction::Xsetbv),
        c if c == INVALID || c == 0xFFFF_FFFF => VmExit::InvalidState,
        code => VmExit::Unexpected { code, info1, info2 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_index_their_table() {
        for (i, kind) in ExitKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
        assert_eq!(decode_svm(svm_code::HLT, 0, 0).kind(), ExitKind::Hlt);
        assert_eq!(decode_svm(svm_code::NPF, 0, 0).kind().name(), "mmio");
        assert_eq!(decode_svm(0x99, 0, 0).kind(), ExitKind::Other);
    }

    #[test]
    fn io_sizes_decode_from_the_first_size_bit_set() {
        let size = |bits: u64| match decode_svm(svm_code::IOIO, 0x80 << 16 | bits << 4, 0) {
            VmExit::Io(access) => access.size,
            other => panic!("{other:?}"),
        };
        assert_eq!([size(0b001), size(0b010), size(0b100)], [1, 2, 4]);
        // What an emulator should never give: several bits (the lowest wins) or none (4).
        assert_eq!(
            [size(0b011), size(0b110), size(0b111), size(0)],
            [1, 2, 1, 4]
        );
    }

    #[test]
    fn decodes_cr8_writes_with_and_without_decode_assists() {
        assert_eq!(
            decode_svm(svm_code::WRITE_CR8, (1 << 63) | 9, 0),
            VmExit::Cr8 {
                write: true,
                register: 9
            }
        );
        assert_eq!(decode_svm(svm_code::WRITE_CR8, 0, 0), VmExit::MovToCr8);
    }

    #[test]
    fn decodes_io_exits() {
        // OUT dx, al to 0x3f8: port in 31:16, SZ8 (bit 4), TYPE=0 (out).
        let exit = decode_svm(svm_code::IOIO, (0x3f8 << 16) | (1 << 4), 0x1234);
        assert_eq!(
            exit,
            VmExit::Io(IoAccess {
                port: 0x3f8,
                size: 1,
                write: true,
                string: false,
                rep: false,
                next_rip: 0x1234
            })
        );
        // IN eax, dx from 0xf4 with REP INS: TYPE=1, STR, REP, SZ32.
        let exit = decode_svm(
            svm_code::IOIO,
            (0xf4 << 16) | (1 << 6) | (1 << 3) | (1 << 2) | 1,
            9,
        );
        assert_eq!(
            exit,
            VmExit::Io(IoAccess {
                port: 0xf4,
                size: 4,
                write: false,
                string: true,
                rep: true,
                next_rip: 9
            })
        );
    }

    #[test]
    fn decodes_the_rest() {
        assert_eq!(
            decode_svm(svm_code::NPF, 0b101, 0x4000_0000),
            VmExit::NestedPageFault {
                gpa: 0x4000_0000,
                error_code: 0b101,
                walk: false,
            }
        );
        // EXITINFO1 bit 33: the fault came from the walk of the guest's page tables.
        assert_eq!(
            decode_svm(svm_code::NPF, (1 << 33) | 0b101, 0xFEE0_0000),
            VmExit::NestedPageFault {
                gpa: 0xFEE0_0000,
                error_code: (1 << 33) | 0b101,
                walk: true,
            }
        );
        assert_eq!(decode_svm(svm_code::MSR, 1, 0), VmExit::Msr { write: true });
        assert_eq!(decode_svm(0x60, 0, 0), VmExit::PhysicalInterrupt);
        assert_eq!(
            decode_svm(0x40 + 17, 0, 0),
            VmExit::Exception {
                vector: 17,
                error_code: Some(0)
            }
        );
        assert_eq!(
            decode_svm(0x41, 5, 0),
            VmExit::Exception {
                vector: 1,
                error_code: None
            }
        );
        assert_eq!(
            decode_svm(0x89, 0, 0),
            VmExit::Instruction(GuestInstruction::CacheFlush)
        );
        assert_eq!(
            decode_svm(0x8E, 0, 0),
            VmExit::Instruction(GuestInstruction::Rdpru)
        );
        assert_eq!(decode_svm(0x64, 0, 0), VmExit::InterruptWindow);
        assert_eq!(decode_svm(0x74, 0, 0), VmExit::Iret);
        assert_eq!(decode_svm(0xFFFF_FFFF, 0, 0), VmExit::InvalidState);
        assert_eq!(decode_svm(u64::MAX, 0, 0), VmExit::InvalidState);
        assert_eq!(
            decode_svm(svm_code::VMRUN, 0, 0),
            VmExit::Forbidden {
                code: svm_code::VMRUN
            }
        );
        assert_eq!(
            decode_svm(0x65, 1, 2),
            VmExit::Unexpected {
                code: 0x65,
                info1: 1,
                info2: 2
            }
        );
    }
}

/// The MSRs whose state the VMCB holds (loaded and saved by VMLOAD/VMSAVE around every run):
/// SYSENTER_CS/ESP/EIP, STAR, LSTAR, CSTAR, SFMASK, FS.base, GS.base, KernelGSbase. Guests
/// may use them directly; intercepting them would need emulation for no isolation gain.
pub const SVM_PASSTHROUGH_MSRS: [u32; 10] = [
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

/// The bit of SVM's MSR permission map that intercepts reads of `msr` (the next bit
/// intercepts writes), or `None` for MSRs outside the map's three ranges (always
/// intercepted). APM vol. 2 §15.11: 2 bits per MSR; ranges at byte 0 (0..0x1FFF), 0x800
/// (0xC000_0000..) and 0x1000 (0xC001_0000..).
pub fn svm_msr_permission_bit(msr: u32) -> Option<usize> {
    let (base_byte, first) = match msr {
        0..=0x1FFF => (0, 0),
        0xC000_0000..=0xC000_1FFF => (0x800, 0xC000_0000),
        0xC001_0000..=0xC001_1FFF => (0x1000, 0xC001_0000),
        _ => return None,
    };
    Some(base_byte * 8 + (msr - first) as usize * 2)
}

#[cfg(test)]
mod msr_map_tests {
    use super::*;

    #[test]
    fn permission_bits_follow_the_apm_layout() {
        assert_eq!(svm_msr_permission_bit(0), Some(0));
        assert_eq!(svm_msr_permission_bit(0x174), Some(0x174 * 2));
        assert_eq!(svm_msr_permission_bit(0xC000_0080), Some(0x800 * 8 + 0x100));
        assert_eq!(
            svm_msr_permission_bit(0xC001_0117),
            Some(0x1000 * 8 + 0x117 * 2)
        );
        assert_eq!(svm_msr_permission_bit(0x4000_0000), None);
        assert!(SVM_PASSTHROUGH_MSRS
            .iter()
            .all(|&m| svm_msr_permission_bit(m).is_some_and(|b| b / 8 < 0x1800)));
    }
}
