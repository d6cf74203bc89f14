//! What the CPU's VMX offers beyond the control words (Intel SDM vol. 3C appendix A):
//! IA32_VMX_BASIC (A.1), IA32_VMX_MISC (A.6), the CR0/CR4 fixed bits (A.7, A.8) and
//! IA32_VMX_EPT_VPID_CAP (A.10), checked against what numavisor's EPT needs.

use core::fmt;

use crate::memory::BlockSize;

/// Capability MSR numbers (SDM vol. 4 table 2-2).
pub mod msr {
    pub const FEATURE_CONTROL: u32 = 0x3A;
    pub const VMX_BASIC: u32 = 0x480;
    pub const VMX_PINBASED_CTLS: u32 = 0x481;
    pub const VMX_PROCBASED_CTLS: u32 = 0x482;
    pub const VMX_EXIT_CTLS: u32 = 0x483;
    pub const VMX_ENTRY_CTLS: u32 = 0x484;
    pub const VMX_MISC: u32 = 0x485;
    pub const VMX_CR0_FIXED0: u32 = 0x486;
    pub const VMX_CR0_FIXED1: u32 = 0x487;
    pub const VMX_CR4_FIXED0: u32 = 0x488;
    pub const VMX_CR4_FIXED1: u32 = 0x489;
    pub const VMX_PROCBASED_CTLS2: u32 = 0x48B;
    pub const VMX_EPT_VPID_CAP: u32 = 0x48C;
    pub const VMX_TRUE_PINBASED_CTLS: u32 = 0x48D;
    pub const VMX_TRUE_PROCBASED_CTLS: u32 = 0x48E;
    pub const VMX_TRUE_EXIT_CTLS: u32 = 0x48F;
    pub const VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
}

/// IA32_FEATURE_CONTROL bits (SDM vol. 3C §23.7).
pub mod feature_control {
    pub const LOCK: u64 = 1 << 0;
    pub const VMX_OUTSIDE_SMX: u64 = 1 << 2;
}

/// What IA32_FEATURE_CONTROL lets software do with VMX outside SMX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureControl {
    /// Locked with VMX outside SMX allowed: VMXON works.
    Enabled,
    /// Unlocked: software may set the enable bit and lock it (the value to write).
    Unlocked { write: u64 },
    /// Locked with VMX off: only the firmware's set-up can change that.
    DisabledByFirmware,
}

impl FeatureControl {
    pub fn of(value: u64) -> FeatureControl {
        if value & feature_control::LOCK == 0 {
            FeatureControl::Unlocked {
                write: value | feature_control::LOCK | feature_control::VMX_OUTSIDE_SMX,
            }
        } else if value & feature_control::VMX_OUTSIDE_SMX != 0 {
            FeatureControl::Enabled
        } else {
            FeatureControl::DisabledByFirmware
        }
    }
}

/// IA32_VMX_BASIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmxBasic {
    /// The VMCS revision identifier VMXON and VMPTRLD check (bits 0..30).
    pub revision: u32,
    /// Bytes of a VMXON region or VMCS (bits 32..44; at most 4096).
    pub region_bytes: u32,
    /// Bit 48: VMXON, VMCS and bitmap addresses are limited to 32 bits.
    pub addresses_32bit: bool,
    /// Bits 50..53: 6 (write-back) is the memory type the VMCS must be accessed with.
    pub memory_type: u8,
    /// Bit 55: the TRUE_* capability MSRs exist.
    pub true_controls: bool,
}

impl VmxBasic {
    pub fn of(value: u64) -> VmxBasic {
        VmxBasic {
            revision: value as u32 & 0x7FFF_FFFF,
            region_bytes: ((value >> 32) & 0x1FFF) as u32,
            addresses_32bit: value & (1 << 48) != 0,
            memory_type: ((value >> 50) & 0xF) as u8,
            true_controls: value & (1 << 55) != 0,
        }
    }
}

/// IA32_VMX_MISC, the fields numavisor looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmxMisc {
    /// Bits 0..4: the VMX-preemption timer counts down once every 2^rate TSC ticks.
    pub preemption_timer_rate: u8,
    /// Bit 5: VM exits store EFER.LMA into the "IA-32e mode guest" entry control (else the
    /// backend copies it itself after every exit).
    pub exit_stores_lma: bool,
}

impl VmxMisc {
    pub fn of(value: u64) -> VmxMisc {
        VmxMisc {
            preemption_timer_rate: (value & 0x1F) as u8,
            exit_stores_lma: value & (1 << 5) != 0,
        }
    }
}

/// The CR0 or CR4 bits VMX operation fixes (SDM appendix A.7/A.8): bits set in `fixed0`
/// must be 1, bits clear in `fixed1` must be 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedBits {
    pub fixed0: u64,
    pub fixed1: u64,
}

/// CR0.PE and CR0.PG: an unrestricted guest may clear them (SDM §26.3.1.1).
const CR0_PE_PG: u64 = (1 << 0) | (1 << 31);

impl FixedBits {
    /// The bits the guest cannot choose: forced to 1 or to 0. They are host-owned in the
    /// guest/host mask, and the guest reads its own values of them from the read shadow.
    pub fn host_owned(&self) -> u64 {
        (self.fixed0 | !self.fixed1) & 0xFFFF_FFFF
    }

    /// The value the CPU runs with when the guest wants `guest`.
    pub fn apply(&self, guest: u64) -> u64 {
        (guest | self.fixed0) & (self.fixed1 | !0xFFFF_FFFF)
    }

    /// Whether the guest asks for a bit VMX operation forbids (outside the low 32 bits,
    /// reserved bits are the guest's #GP, checked by the caller).
    pub fn forbids(&self, guest: u64) -> bool {
        guest & !self.fixed1 & 0xFFFF_FFFF != 0
    }

    /// The CR0 rules for an unrestricted guest: PE and PG are the guest's.
    pub fn unrestricted_cr0(self) -> FixedBits {
        FixedBits {
            fixed0: self.fixed0 & !CR0_PE_PG,
            fixed1: self.fixed1 | CR0_PE_PG,
        }
    }
}

/// IA32_VMX_EPT_VPID_CAP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EptVpidCapabilities {
    pub walk_length_4: bool,
    pub write_back: bool,
    pub pages_2m: bool,
    pub pages_1g: bool,
    pub invept: bool,
    pub invept_single_context: bool,
    pub invept_all_contexts: bool,
    pub invvpid: bool,
    pub invvpid_single_context: bool,
    pub invvpid_all_contexts: bool,
}

/// Why the CPU's EPT cannot hold numavisor's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EptUnusable {
    NoFourLevelWalk,
    NoWriteBack,
    NoInvept,
}

impl fmt::Display for EptUnusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EptUnusable::NoFourLevelWalk => "the CPU's EPT has no 4-level page walk",
            EptUnusable::NoWriteBack => "the CPU's EPT cannot map memory write-back",
            EptUnusable::NoInvept => "the CPU has no INVEPT (single-context or all-context)",
        })
    }
}

impl EptVpidCapabilities {
    pub fn of(value: u64) -> EptVpidCapabilities {
        let bit = |n: u32| value & (1 << n) != 0;
        EptVpidCapabilities {
            walk_length_4: bit(6),
            write_back: bit(14),
            pages_2m: bit(16),
            pages_1g: bit(17),
            invept: bit(20),
            invept_single_context: bit(25),
            invept_all_contexts: bit(26),
            invvpid: bit(32),
            invvpid_single_context: bit(41),
            invvpid_all_contexts: bit(42),
        }
    }

    /// Checks what the SLAT builder's EPT format assumes: a 4-level walk, write-back leaves
    /// and an INVEPT to drop a partition's cached translations at its (re)start.
    pub fn check(&self) -> Result<(), EptUnusable> {
        if !self.walk_length_4 {
            Err(EptUnusable::NoFourLevelWalk)
        } else if !self.write_back {
            Err(EptUnusable::NoWriteBack)
        } else if !self.invept || !(self.invept_single_context || self.invept_all_contexts) {
            Err(EptUnusable::NoInvept)
        } else {
            Ok(())
        }
    }

    /// The largest EPT leaf the CPU maps when the layout allows `wanted`.
    pub fn clamp_page(&self, wanted: BlockSize) -> BlockSize {
        match wanted {
            BlockSize::Size1G if self.pages_1g => BlockSize::Size1G,
            BlockSize::Size1G | BlockSize::Size2M if self.pages_2m => BlockSize::Size2M,
            _ => BlockSize::Size4K,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_control_lock_rules() {
        assert_eq!(FeatureControl::of(0b101), FeatureControl::Enabled);
        assert_eq!(
            FeatureControl::of(0b001),
            FeatureControl::DisabledByFirmware
        );
        assert_eq!(
            FeatureControl::of(0),
            FeatureControl::Unlocked { write: 0b101 }
        );
    }

    #[test]
    fn misc_fields() {
        let m = VmxMisc::of(0x20 | 5);
        assert_eq!(m.preemption_timer_rate, 5);
        assert!(m.exit_stores_lma);
    }

    #[test]
    fn basic_fields() {
        // Revision 0x12, 4 KiB regions, write-back, TRUE controls.
        let b = VmxBasic::of(0x12 | (0x1000 << 32) | (6 << 50) | (1 << 55));
        assert_eq!(b.revision, 0x12);
        assert_eq!(b.region_bytes, 4096);
        assert_eq!(b.memory_type, 6);
        assert!(b.true_controls && !b.addresses_32bit);
    }

    #[test]
    fn fixed_bits_of_an_unrestricted_guest() {
        // CR0: PE, NE, PG must be 1 (the usual FIXED0 0x80000021), nothing forced to 0.
        let cr0 = FixedBits {
            fixed0: 0x8000_0021,
            fixed1: 0xFFFF_FFFF,
        }
        .unrestricted_cr0();
        assert_eq!(cr0.host_owned(), 0x20);
        assert_eq!(cr0.apply(0x6000_0010), 0x6000_0030);
        // CR4: VMXE must be 1; bits above what the CPU supports must be 0.
        let cr4 = FixedBits {
            fixed0: 0x2000,
            fixed1: 0x0037_27FF,
        };
        assert_eq!(cr4.apply(0x20), 0x2020);
        assert!(cr4.forbids(1 << 23));
        assert!(!cr4.forbids(0x20));
        assert_ne!(cr4.host_owned() & 0x2000, 0);
    }

    #[test]
    fn ept_capabilities_are_checked_and_clamp_leaves() {
        let full = EptVpidCapabilities::of(
            (1 << 6) | (1 << 14) | (1 << 16) | (1 << 17) | (1 << 20) | (1 << 25) | (1 << 32),
        );
        assert_eq!(full.check(), Ok(()));
        assert_eq!(full.clamp_page(BlockSize::Size1G), BlockSize::Size1G);
        let no_1g =
            EptVpidCapabilities::of((1 << 6) | (1 << 14) | (1 << 16) | (1 << 20) | (1 << 26));
        assert_eq!(no_1g.clamp_page(BlockSize::Size1G), BlockSize::Size2M);
        assert_eq!(no_1g.clamp_page(BlockSize::Size4K), BlockSize::Size4K);
        assert_eq!(
            EptVpidCapabilities::of(1 << 14).check(),
            Err(EptUnusable::NoFourLevelWalk)
        );
        assert_eq!(
            EptVpidCapabilities::of((1 << 6) | (1 << 14)).check(),
            Err(EptUnusable::NoInvept)
        );
    }
}
