//! The MSR policy: what RDMSR and WRMSR do for the MSRs a vCPU may touch that are neither
//! passed through nor held in the VMCB/VMCS by the backend.
//!
//! The backend handles first the MSRs the hardware keeps in guest state (STAR, LSTAR, CSTAR,
//! SFMASK, FS/GS/KERNEL_GS base, SYSENTER_*, DEBUGCTL) and sends the rest here. The local APIC's
//! MSRs (IA32_APIC_BASE 0x1B, IA32_TSC_DEADLINE 0x6E0, the x2APIC range 0x800–0x8FF) are
//! answered [`MsrRead::Apic`] / [`MsrAction::Apic`]: the APIC model owns them. Everything not
//! listed faults with #GP, which the caller injects; Linux probes optional MSRs with
//! `rdmsr_safe`/`wrmsr_safe` and carries on.
//!
//! MSR numbers and layouts: Intel SDM vol. 4 (MSR tables) and vol. 3A §11.11 (MTRRs), §11.12
//! (PAT); AMD APM vol. 2 appendix A (MSR cross-reference), §7.7 (MTRRs), §7.8 (PAT), and the AMD
//! family 17h/19h PPRs (HWCR, SYSCFG, NB_CFG, DE_CFG, LS_CFG). The set is what Linux 6.1 reads
//! or writes while booting on the CPUID that [`super::cpuid`] presents.

use super::cpuid::Vendor;

/// A refused access: the caller injects #GP(0) and does not advance RIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrFault {
    GeneralProtection,
}

/// What RDMSR returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrRead {
    /// This value.
    Value(u64),
    /// IA32_TSC: the caller computes the guest's TSC (host TSC plus the partition's offset).
    Tsc,
    /// IA32_EFER: the caller's guest state holds it (the CPU updates LMA itself).
    Efer,
    /// An APIC MSR: ask the local APIC model.
    Apic,
}

/// What a WRMSR the policy accepted asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrAction {
    /// Nothing more: the value was stored or deliberately ignored.
    Done,
    /// IA32_TSC: set the guest's TSC offset so that it now reads this.
    SetTsc(u64),
    /// IA32_EFER with valid bits only; finish with [`efer_update`] (LME/LMA rules).
    SetEfer(u64),
    /// IA32_PAT, validated and stored: load it into the guest state (VMCB G_PAT, VMCS PAT).
    LoadPat(u64),
    /// TSC_AUX, validated and stored: load it into the CPU for RDTSCP and RDPID, which read
    /// the physical MSR without an exit.
    LoadTscAux(u32),
    /// An APIC MSR: give the write to the local APIC model.
    Apic,
}

pub const IA32_TSC: u32 = 0x10;
pub const IA32_PLATFORM_ID: u32 = 0x17;
pub const IA32_APIC_BASE: u32 = 0x1B;
pub const IA32_FEATURE_CONTROL: u32 = 0x3A;
pub const IA32_SPEC_CTRL: u32 = 0x48;
pub const IA32_PRED_CMD: u32 = 0x49;
/// IA32_BIOS_SIGN_ID on Intel, MSR_AMD64_PATCH_LEVEL on AMD.
pub const IA32_BIOS_SIGN_ID: u32 = 0x8B;
pub const IA32_MTRRCAP: u32 = 0xFE;
pub const IA32_ARCH_CAPABILITIES: u32 = 0x10A;
pub const IA32_MCG_CAP: u32 = 0x179;
pub const IA32_MCG_STATUS: u32 = 0x17A;
pub const IA32_MISC_ENABLE: u32 = 0x1A0;
pub const IA32_MTRR_PHYSBASE0: u32 = 0x200;
pub const IA32_MTRR_PHYSMASK7: u32 = 0x20F;
pub const IA32_PAT: u32 = 0x277;
pub const IA32_MTRR_DEF_TYPE: u32 = 0x2FF;
pub const IA32_TSC_DEADLINE: u32 = 0x6E0;
pub const EFER: u32 = 0xC000_0080;
pub const TSC_AUX: u32 = 0xC000_0103;
/// The legacy AMD performance counters: PERF_CTL0–3 (0xC001_0000–3), PERF_CTR0–3
/// (0xC001_0004–7). Every AMD64 CPU has them, with no CPUID bit to say so.
pub const AMD_PERF_LEGACY_FIRST: u32 = 0xC001_0000;
pub const AMD_PERF_LEGACY_LAST: u32 = 0xC001_0007;
pub const AMD_SYSCFG: u32 = 0xC001_0010;
pub const AMD_HWCR: u32 = 0xC001_0015;
/// MSR_K8_INT_PENDING_MSG: Linux reads it on family 0Fh/10h parts to detect C1E (erratum 400).
pub const AMD_INT_PENDING_MSG: u32 = 0xC001_0055;
pub const AMD_NB_CFG: u32 = 0xC001_001F;
pub const AMD_TSEG_ADDR: u32 = 0xC001_0112;
pub const AMD_OSVW_ID_LENGTH: u32 = 0xC001_0140;
pub const AMD_OSVW_STATUS: u32 = 0xC001_0141;
pub const AMD_LS_CFG: u32 = 0xC001_1020;
pub const AMD_DE_CFG: u32 = 0xC001_1029;

/// The fixed-range MTRRs, in the order they are stored.
const FIXED_MTRRS: [u32; 11] = [
    0x250, 0x258, 0x259, 0x268, 0x269, 0x26A, 0x26B, 0x26C, 0x26D, 0x26E, 0x26F,
];

/// IA32_MTRRCAP: 8 variable ranges (VCNT), fixed ranges (bit 8), write-combining (bit 10), no
/// SMRR. Read-only.
pub const MTRRCAP_VALUE: u64 = 0x508;
/// IA32_MTRR_DEF_TYPE at reset here: MTRRs enabled (bit 11), fixed ranges enabled (bit 10),
/// default type write-back (6): all RAM is WB until the guest programs ranges.
pub const MTRR_DEF_TYPE_RESET: u64 = 0xC06;
/// The architectural PAT reset value (WB, WT, UC-, UC, repeated).
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;
/// IA32_MISC_ENABLE (Intel) at reset: fast strings (bit 0), BTS unavailable (11), PEBS
/// unavailable (12).
pub const MISC_ENABLE_VALUE: u64 = 0x1801;
/// IA32_MISC_ENABLE bits a write cannot change: BTS and PEBS stay unavailable.
const MISC_ENABLE_FIXED: u64 = (1 << 11) | (1 << 12);
/// HWCR: TscFreqSel (bit 24), so Linux does not warn that the TSC does not count at P0 rate.
pub const HWCR_RESET: u64 = 1 << 24;
/// DE_CFG: LFENCE is dispatch-serialising (bit 1), which Linux relies on for its barriers.
pub const DE_CFG_VALUE: u64 = 1 << 1;

/// Physical-address bits we allow in MTRR base/mask registers (the architectural maximum).
const MTRR_ADDRESS_BITS: u32 = 52;

/// Memory types valid in MTRRs: UC, WC, WT, WP, WB.
fn valid_mtrr_type(memory_type: u8) -> bool {
    matches!(memory_type, 0 | 1 | 4 | 5 | 6)
}

/// Memory types valid in a PAT entry: the MTRR types and UC- (7).
fn valid_pat_type(memory_type: u8) -> bool {
    valid_mtrr_type(memory_type) || memory_type == 7
}

const EFER_SCE: u64 = 1 << 0;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
const EFER_FFXSR: u64 = 1 << 14;
const EFER_TCE: u64 = 1 << 15;

/// EFER bits a guest may set: SCE, LME, LMA (kept by [`efer_update`]), NXE, and on AMD FFXSR
/// and TCE. SVME (12) is refused (no nested virtualisation), LMSLE (13) too (gone from Zen 3 on,
/// unused by Linux), and all other bits are reserved.
fn efer_allowed(vendor: Vendor) -> u64 {
    let common = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
    match vendor {
        Vendor::Intel => common,
        Vendor::Amd | Vendor::Other => common | EFER_FFXSR | EFER_TCE,
    }
}

/// The EFER after a WRMSR of `value` over `current`: LMA is the processor's (the written bit is
/// ignored), and LME may not change while paging is on (#GP, as on hardware).
pub fn efer_update(
    vendor: Vendor,
    current: u64,
    value: u64,
    paging_enabled: bool,
) -> Result<u64, MsrFault> {
    if value & !efer_allowed(vendor) != 0 {
        return Err(MsrFault::GeneralProtection);
    }
    if paging_enabled && (current ^ value) & EFER_LME != 0 {
        return Err(MsrFault::GeneralProtection);
    }
    Ok((value & !EFER_LMA) | (current & EFER_LMA))
}

/// The emulated MSRs of one vCPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsrState {
    vendor: Vendor,
    pat: u64,
    mtrr_def_type: u64,
    /// PHYSBASE0, PHYSMASK0, ..., PHYSMASK7 (0x200–0x20F).
    mtrr_variable: [u64; 16],
    mtrr_fixed: [u64; 11],
    tsc_aux: u64,
    hwcr: u64,
    misc_enable: u64,
    nb_cfg: u64,
    ls_cfg: u64,
}

impl MsrState {
    /// Reset state for a vCPU of a CPU from `vendor` (the host's, as CPUID reports it).
    pub fn new(vendor: Vendor) -> Self {
        MsrState {
            vendor,
            pat: PAT_RESET,
            mtrr_def_type: MTRR_DEF_TYPE_RESET,
            mtrr_variable: [0; 16],
            mtrr_fixed: [0; 11],
            tsc_aux: 0,
            hwcr: HWCR_RESET,
            misc_enable: MISC_ENABLE_VALUE,
            nb_cfg: 0,
            ls_cfg: 0,
        }
    }

    /// The guest PAT, for loading into the VMCB/VMCS at vCPU start.
    pub fn pat(&self) -> u64 {
        self.pat
    }

    /// The guest's TSC_AUX, for loading into the CPU at vCPU start.
    pub fn tsc_aux(&self) -> u32 {
        self.tsc_aux as u32
    }

    fn amd(&self) -> bool {
        self.vendor != Vendor::Intel
    }

    /// RDMSR `msr`.
    pub fn read(&self, msr: u32) -> Result<MsrRead, MsrFault> {
        if let Some(index) = fixed_index(msr) {
            return Ok(MsrRead::Value(self.mtrr_fixed[index]));
        }
        let value = match msr {
            IA32_TSC => return Ok(MsrRead::Tsc),
            EFER => return Ok(MsrRead::Efer),
            IA32_APIC_BASE | IA32_TSC_DEADLINE | 0x800..=0x8FF => return Ok(MsrRead::Apic),
            // Intel only: the platform ID of microcode updates; AMD has no such MSR.
            IA32_PLATFORM_ID if !self.amd() => 0,
            // Intel only: locked, VMX off inside and outside SMX (CPUID hides VMX).
            IA32_FEATURE_CONTROL if !self.amd() => 1,
            // Microcode revision / patch level: none (Linux skips microcode work in a guest).
            IA32_BIOS_SIGN_ID => 0,
            IA32_MTRRCAP => MTRRCAP_VALUE,
            IA32_MTRR_DEF_TYPE => self.mtrr_def_type,
            IA32_MTRR_PHYSBASE0..=IA32_MTRR_PHYSMASK7 => {
                self.mtrr_variable[(msr - IA32_MTRR_PHYSBASE0) as usize]
            }
            IA32_PAT => self.pat,
            // No machine-check banks (CPUID keeps MCE/MCA, so these must exist) and no
            // machine check in progress.
            IA32_MCG_CAP | IA32_MCG_STATUS => 0,
            // Intel only (AMD raises #GP).
            IA32_MISC_ENABLE if !self.amd() => self.misc_enable,
            // Upper half reserved; RDTSCP/RDPID return it.
            TSC_AUX => self.tsc_aux,
            // AMD family 10h+ configuration MSRs Linux reads at boot.
            AMD_HWCR if self.amd() => self.hwcr,
            // No SME, no TOM2: all zero.
            AMD_SYSCFG if self.amd() => 0,
            AMD_NB_CFG if self.amd() => self.nb_cfg,
            AMD_TSEG_ADDR if self.amd() => 0,
            // No C1E (SmiOnCmpHalt/C1eOnCmpHalt clear): HLT is plain HLT here.
            AMD_INT_PENDING_MSG if self.amd() => 0,
            // No OS-visible workarounds to report.
            AMD_OSVW_ID_LENGTH | AMD_OSVW_STATUS if self.amd() => 0,
            AMD_LS_CFG if self.amd() => self.ls_cfg,
            AMD_DE_CFG if self.amd() => DE_CFG_VALUE,
            // No virtual PMU: the legacy counters exist (no CPUID bit can hide them) and read
            // 0, as under other hypervisors without one.
            AMD_PERF_LEGACY_FIRST..=AMD_PERF_LEGACY_LAST if self.amd() => 0,
            // SPEC_CTRL, PRED_CMD, ARCH_CAPABILITIES (CPUID does not advertise them), the
            // other performance counters, and everything else.
            _ => return Err(MsrFault::GeneralProtection),
        };
        Ok(MsrRead::Value(value))
    }

    /// WRMSR `value` to `msr`.
    pub fn write(&mut self, msr: u32, value: u64) -> Result<MsrAction, MsrFault> {
        const GP: Result<MsrAction, MsrFault> = Err(MsrFault::GeneralProtection);
        if let Some(index) = fixed_index(msr) {
            // Eight one-byte memory types, each for a sub-range.
            if !value.to_le_bytes().into_iter().all(valid_mtrr_type) {
                return GP;
            }
            self.mtrr_fixed[index] = value;
            return Ok(MsrAction::Done);
        }
        match msr {
            IA32_TSC => return Ok(MsrAction::SetTsc(value)),
            EFER if value & !efer_allowed(self.vendor) != 0 => return GP,
            EFER => return Ok(MsrAction::SetEfer(value)),
            IA32_APIC_BASE | IA32_TSC_DEADLINE | 0x800..=0x8FF => return Ok(MsrAction::Apic),
            // Intel writes 0 here before CPUID to read the microcode revision: ignored.
            IA32_BIOS_SIGN_ID => {}
            IA32_MTRR_DEF_TYPE => {
                // Type in 7:0, FE bit 10, E bit 11; everything else reserved.
                if value & !0xCFF != 0 || !valid_mtrr_type(value as u8) {
                    return GP;
                }
                self.mtrr_def_type = value;
            }
            IA32_MTRR_PHYSBASE0..=IA32_MTRR_PHYSMASK7 => {
                let index = (msr - IA32_MTRR_PHYSBASE0) as usize;
                let high_reserved = !0u64 << MTRR_ADDRESS_BITS;
                let valid = if index.is_multiple_of(2) {
                    // PHYSBASE: type in 7:0, bits 11:8 reserved.
                    value & (high_reserved | 0xF00) == 0 && valid_mtrr_type(value as u8)
                } else {
                    // PHYSMASK: valid bit 11, bits 10:0 reserved.
                    value & (high_reserved | 0x7FF) == 0
                };
                if !valid {
                    return GP;
                }
                self.mtrr_variable[index] = value;
            }
            IA32_PAT => {
                if !value.to_le_bytes().into_iter().all(valid_pat_type) {
                    return GP;
                }
                self.pat = value;
                return Ok(MsrAction::LoadPat(value));
            }
            // Clearing MCG_STATUS is allowed; setting bits is not.
            IA32_MCG_STATUS if value == 0 => {}
            // Intel: stored so that the guest reads back what it set (fast strings, XD
            // disable, ...), as KVM does; nothing changes in the CPU, and BTS and PEBS stay
            // unavailable.
            IA32_MISC_ENABLE if !self.amd() => {
                self.misc_enable =
                    (value & !MISC_ENABLE_FIXED) | (MISC_ENABLE_VALUE & MISC_ENABLE_FIXED);
            }
            TSC_AUX if value >> 32 != 0 => return GP,
            TSC_AUX => {
                self.tsc_aux = value;
                return Ok(MsrAction::LoadTscAux(value as u32));
            }
            // Stored so that Linux reads back what it set (IRPERF, TscFreqSel, ...); no effect.
            AMD_HWCR if self.amd() => self.hwcr = value,
            // SME enable and friends: not offered; the write is dropped.
            AMD_SYSCFG if self.amd() => {}
            // PCI extended config enable (families 10h–16h): stored, no effect (no PCI).
            AMD_NB_CFG if self.amd() => self.nb_cfg = value,
            // SSBD on families 15h–17h: stored; the host's own mitigation stays in force.
            AMD_LS_CFG if self.amd() => self.ls_cfg = value,
            // LFENCE-serialising is already reported set; the write is dropped.
            AMD_DE_CFG if self.amd() => {}
            // The legacy counters count nothing: writes to their controls and counts are
            // dropped (kvm-unit-tests clears them at start).
            AMD_PERF_LEGACY_FIRST..=AMD_PERF_LEGACY_LAST if self.amd() => {}
            // MCG_CAP and MTRRCAP are read-only; the rest is unknown.
            _ => return GP,
        }
        Ok(MsrAction::Done)
    }
}

/// Index of a fixed-range MTRR in storage.
fn fixed_index(msr: u32) -> Option<usize> {
    FIXED_MTRRS.iter().position(|&fixed| fixed == msr)
}

#[cfg(test)]
mod tests;
