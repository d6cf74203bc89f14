//! The VM-execution, VM-exit and VM-entry controls numavisor runs guests with, computed from
//! the capability MSRs (Intel SDM vol. 3C appendix A.3–A.5): each MSR's low half names the
//! bits that must be 1 (allowed-0 settings), its high half the bits that may be 1 (allowed-1
//! settings). A required control the CPU does not allow is a typed error naming it; optional
//! ones are dropped.

use core::fmt;

/// Pin-based controls (SDM table 24-5).
pub mod pin {
    pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
    pub const NMI_EXITING: u32 = 1 << 3;
    /// The guest's NMI blocking lives in its interruptibility state, set by an injected NMI
    /// and cleared by IRET (SDM vol. 3C §25.3, §26.6.1.2).
    pub const VIRTUAL_NMIS: u32 = 1 << 5;
    pub const PREEMPTION_TIMER: u32 = 1 << 6;
}

/// Primary processor-based controls (SDM table 24-6).
pub mod primary {
    pub const INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
    pub const TSC_OFFSETTING: u32 = 1 << 3;
    pub const HLT_EXITING: u32 = 1 << 7;
    pub const MWAIT_EXITING: u32 = 1 << 10;
    pub const RDPMC_EXITING: u32 = 1 << 11;
    pub const CR3_LOAD_EXITING: u32 = 1 << 15;
    pub const CR3_STORE_EXITING: u32 = 1 << 16;
    pub const CR8_LOAD_EXITING: u32 = 1 << 19;
    pub const CR8_STORE_EXITING: u32 = 1 << 20;
    pub const NMI_WINDOW_EXITING: u32 = 1 << 22;
    pub const USE_IO_BITMAPS: u32 = 1 << 25;
    pub const USE_MSR_BITMAPS: u32 = 1 << 28;
    pub const MONITOR_EXITING: u32 = 1 << 29;
    pub const SECONDARY_CONTROLS: u32 = 1 << 31;
}

/// Secondary processor-based controls (SDM table 24-7).
pub mod secondary {
    pub const ENABLE_EPT: u32 = 1 << 1;
    pub const ENABLE_RDTSCP: u32 = 1 << 3;
    pub const ENABLE_VPID: u32 = 1 << 5;
    pub const WBINVD_EXITING: u32 = 1 << 6;
    pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
    pub const ENABLE_INVPCID: u32 = 1 << 12;
    pub const ENABLE_XSAVES: u32 = 1 << 20;
}

/// VM-exit controls (SDM table 24-13).
pub mod exit {
    pub const SAVE_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
    pub const SAVE_PAT: u32 = 1 << 18;
    pub const LOAD_PAT: u32 = 1 << 19;
    pub const SAVE_EFER: u32 = 1 << 20;
    pub const LOAD_EFER: u32 = 1 << 21;
}

/// VM-entry controls (SDM table 24-15).
pub mod entry {
    pub const LOAD_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const IA32E_MODE_GUEST: u32 = 1 << 9;
    pub const LOAD_PAT: u32 = 1 << 14;
    pub const LOAD_EFER: u32 = 1 << 15;
}

/// Which control word a missing bit belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlWord {
    PinBased,
    Primary,
    Secondary,
    Exit,
    Entry,
}

/// A control numavisor needs that the CPU does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingControls {
    pub word: ControlWord,
    pub bits: u32,
}

impl fmt::Display for MissingControls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.word {
            ControlWord::PinBased => "pin-based",
            ControlWord::Primary => "primary processor-based",
            ControlWord::Secondary => "secondary processor-based",
            ControlWord::Exit => "VM-exit",
            ControlWord::Entry => "VM-entry",
        };
        write!(
            f,
            "the CPU's VMX lacks {word} control bits {:#x}",
            self.bits
        )
    }
}

/// The control word for `required | optional` under `capability` (allowed-0 settings in bits
/// 0..31, allowed-1 in 32..63): bits the CPU forces on are set, bits it forbids cleared;
/// a forbidden required bit is an error.
pub fn adjust(
    word: ControlWord,
    capability: u64,
    required: u32,
    optional: u32,
) -> Result<u32, MissingControls> {
    let must_be_one = capability as u32;
    let may_be_one = (capability >> 32) as u32;
    let missing = required & !may_be_one;
    if missing != 0 {
        return Err(MissingControls {
            word,
            bits: missing,
        });
    }
    Ok((required | (optional & may_be_one) | must_be_one) & may_be_one)
}

/// The capability MSRs the controls are computed from (SDM appendix A).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControlCapabilities {
    /// IA32_VMX_(TRUE_)PINBASED_CTLS, PROCBASED_CTLS, EXIT_CTLS, ENTRY_CTLS: the TRUE ones
    /// when IA32_VMX_BASIC bit 55 says they exist (their default-1 bits may be cleared).
    pub pin: u64,
    pub primary: u64,
    pub exit: u64,
    pub entry: u64,
    /// IA32_VMX_PROCBASED_CTLS2 (0 if the primary controls do not allow it).
    pub secondary: u64,
}

/// The controls for running a partition's vCPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Controls {
    pub pin: u32,
    pub primary: u32,
    pub secondary: u32,
    pub exit: u32,
    /// Without [`entry::IA32E_MODE_GUEST`]: the vCPU sets that bit from its guest's EFER.
    pub entry: u32,
}

impl Controls {
    /// What numavisor asks for: physical interrupts and NMIs always end a guest's run (so a
    /// guest can never keep a CPU); virtual NMIs and NMI-window exiting (the guest's NMI
    /// blocking, `vmm::nmi`); I/O and MSR bitmaps; HLT, MWAIT/MONITOR, RDPMC, WBINVD
    /// and CR8 exit; EPT with unrestricted guest (real-mode AP start) required, VPID,
    /// RDTSCP and INVPCID taken where offered (a guest told of RDTSCP or INVPCID by CPUID
    /// would fault without them); EFER and PAT switched at entry and exit.
    pub fn compute(caps: &ControlCapabilities) -> Result<Controls, MissingControls> {
        let pin = adjust(
            ControlWord::PinBased,
            caps.pin,
            pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING | pin::VIRTUAL_NMIS,
            pin::PREEMPTION_TIMER,
        )?;
        let primary_required = primary::TSC_OFFSETTING
            | primary::HLT_EXITING
            | primary::MWAIT_EXITING
            | primary::RDPMC_EXITING
            | primary::CR8_LOAD_EXITING
            | primary::CR8_STORE_EXITING
            | primary::USE_IO_BITMAPS
            | primary::USE_MSR_BITMAPS
            | primary::MONITOR_EXITING
            | primary::NMI_WINDOW_EXITING
            | primary::SECONDARY_CONTROLS;
        let mut primary = adjust(ControlWord::Primary, caps.primary, primary_required, 0)?;
        // EPT makes CR3 the guest's own: CR3 accesses must not exit (allowed-0 settings of
        // the TRUE controls let them be cleared; the old MSR forces them on).
        if (caps.primary as u32) & (primary::CR3_LOAD_EXITING | primary::CR3_STORE_EXITING) != 0 {
            return Err(MissingControls {
                word: ControlWord::Primary,
                bits: primary::CR3_LOAD_EXITING | primary::CR3_STORE_EXITING,
            });
        }
        // The windows are armed per entry, when an event waits (NMI-window exiting is required
        // above only so that the CPU is known to allow it).
        primary &= !(primary::INTERRUPT_WINDOW_EXITING | primary::NMI_WINDOW_EXITING);
        let secondary = adjust(
            ControlWord::Secondary,
            caps.secondary,
            secondary::ENABLE_EPT | secondary::UNRESTRICTED_GUEST | secondary::WBINVD_EXITING,
            secondary::ENABLE_VPID | secondary::ENABLE_RDTSCP | secondary::ENABLE_INVPCID,
        )?;
        let exit = adjust(
            ControlWord::Exit,
            caps.exit,
            exit::HOST_ADDRESS_SPACE_SIZE
                | exit::SAVE_PAT
                | exit::LOAD_PAT
                | exit::SAVE_EFER
                | exit::LOAD_EFER,
            exit::SAVE_DEBUG_CONTROLS,
        )?;
        let entry = adjust(
            ControlWord::Entry,
            caps.entry,
            entry::LOAD_PAT | entry::LOAD_EFER,
            entry::LOAD_DEBUG_CONTROLS,
        )? & !entry::IA32E_MODE_GUEST;
        Ok(Controls {
            pin,
            primary,
            secondary,
            exit,
            entry,
        })
    }

    /// Whether the VMX-preemption timer bounds every run (besides the host timer).
    pub fn preemption_timer(&self) -> bool {
        self.pin & pin::PREEMPTION_TIMER != 0
    }

    /// Whether partitions get VPID-tagged TLB entries.
    pub fn vpid(&self) -> bool {
        self.secondary & secondary::ENABLE_VPID != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Capabilities shaped like a Haswell-class CPU's TRUE MSRs: default-1 bits in the low
    /// halves (CR3 exiting not among them), what is allowed in the high.
    pub(crate) fn haswell() -> ControlCapabilities {
        ControlCapabilities {
            pin: 0x0000_007F_0000_0016,
            primary: 0xFFF9_FFFE_0400_6172,
            exit: 0x01FF_FFFF_0003_6DFB,
            entry: 0x0000_FFFF_0000_11FB,
            secondary: 0x0000_10FF_0000_0000,
        }
    }

    #[test]
    fn adjust_forces_and_forbids_by_the_capability() {
        let cap = (0b0110u64 << 32) | 0b0010; // bit 1 must be 1, bits 1..2 may be 1
        assert_eq!(adjust(ControlWord::Primary, cap, 0b0100, 0), Ok(0b0110));
        assert_eq!(adjust(ControlWord::Primary, cap, 0, 0b1000), Ok(0b0010));
        assert_eq!(
            adjust(ControlWord::Primary, cap, 0b1001, 0),
            Err(MissingControls {
                word: ControlWord::Primary,
                bits: 0b1001
            })
        );
    }

    #[test]
    fn haswell_gets_everything_numavisor_asks() {
        let c = Controls::compute(&haswell()).unwrap();
        assert_ne!(c.pin & pin::EXTERNAL_INTERRUPT_EXITING, 0);
        assert_ne!(c.pin & pin::NMI_EXITING, 0);
        assert_ne!(c.pin & pin::VIRTUAL_NMIS, 0);
        assert_eq!(c.primary & primary::NMI_WINDOW_EXITING, 0);
        assert!(c.preemption_timer());
        assert_eq!(
            c.primary & (primary::CR3_LOAD_EXITING | primary::CR3_STORE_EXITING),
            0
        );
        assert_eq!(c.primary & primary::INTERRUPT_WINDOW_EXITING, 0);
        assert_ne!(c.secondary & secondary::UNRESTRICTED_GUEST, 0);
        assert!(c.vpid());
        assert_eq!(c.entry & entry::IA32E_MODE_GUEST, 0);
        assert_ne!(c.exit & exit::LOAD_EFER, 0);
    }

    #[test]
    fn a_cpu_without_unrestricted_guest_or_ept_is_refused_by_name() {
        let mut caps = haswell();
        caps.secondary &= !((secondary::UNRESTRICTED_GUEST as u64) << 32);
        let err = Controls::compute(&caps).unwrap_err();
        assert_eq!(err.word, ControlWord::Secondary);
        assert_eq!(err.bits, secondary::UNRESTRICTED_GUEST);
        assert!(alloc::format!("{err}").contains("secondary"));
    }

    #[test]
    fn a_cpu_without_virtual_nmis_is_refused() {
        let mut caps = haswell();
        caps.pin &= !((pin::VIRTUAL_NMIS as u64) << 32);
        let err = Controls::compute(&caps).unwrap_err();
        assert_eq!(err.word, ControlWord::PinBased);
        assert_eq!(err.bits, pin::VIRTUAL_NMIS);
    }

    #[test]
    fn cpus_forcing_cr3_exits_are_refused() {
        let mut caps = haswell();
        caps.primary |= primary::CR3_LOAD_EXITING as u64;
        assert!(Controls::compute(&caps).is_err());
    }

    #[test]
    fn vpid_is_optional() {
        let mut caps = haswell();
        caps.secondary &= !((secondary::ENABLE_VPID as u64) << 32);
        let c = Controls::compute(&caps).unwrap();
        assert!(!c.vpid());
    }
}
