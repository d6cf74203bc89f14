//! The CPUID a partition's vCPU sees, built from the host's CPUID and the partition's topology.
//!
//! Leaf layouts follow Intel SDM vol. 2A "CPUID" (tables 3-8 and 3-17) and AMD APM vol. 3
//! appendix E (E.3 standard and E.4 extended functions; E.5 multiprocessor topology). The rules:
//! pass through what the guest can use unchanged (instruction-set features, caches, address
//! widths), hide what this hypervisor does not virtualise (nested virtualisation, MONITOR/MWAIT,
//! thermal and power management, performance monitoring, debug stores, speculation-control
//! MSRs), and describe the partition rather than the host (topology, brand, hypervisor leaves).
//!
//! Topology: one thread per core, and the vCPUs of one vNUMA node form one package, so nothing
//! Linux derives from CPUID (packages, last-level-cache siblings) crosses a node, matching the
//! guest's SRAT (see DESIGN.md, "CPUID topology must agree with SRAT"). APIC IDs are
//! `vnode << core_shift | index within the vnode`; [`apic_id_of`] computes them for the APIC
//! model and the MADT so that all three agree.
//!
//! Leaves the guest sees but we do not list below are zero. Above the maximum leaf we return
//! zeros (AMD's behaviour; Intel would repeat the highest basic leaf, which no guest relies on).

use alloc::vec::Vec;

/// The host CPU's CPUID instruction (or a table standing in for it in tests).
pub trait HostCpuid {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4];
}

/// Whose CPU the host is, from its leaf 0 vendor string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    /// "GenuineIntel".
    Intel,
    /// "AuthenticAMD" or "HygonGenuine" (Hygon follows AMD's MSRs and leaves).
    Amd,
    /// Anything else: treated like AMD where a choice is needed.
    Other,
}

/// The vendor of `host` from leaf 0 EBX ("Genu", "Auth", "Hygo").
pub fn vendor(host: &impl HostCpuid) -> Vendor {
    match host.cpuid(0, 0)[1] {
        0x756E_6547 => Vendor::Intel,
        0x6874_7541 | 0x6F67_7948 => Vendor::Amd,
        _ => Vendor::Other,
    }
}

/// What one vCPU's CPUID answers depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuidPolicy {
    /// This vCPU's index in the partition.
    pub vcpu_index: u32,
    /// The TSC rate the guest sees, in Hz (0: unknown, leaves 0x15/0x16 then read zero).
    pub tsc_hz: u64,
    /// The vNUMA node of each vCPU of the partition, by vCPU index; its length is the vCPU
    /// count. An index beyond it is answered as vCPU 0 of node 0.
    pub vnode_of_vcpu: Vec<u32>,
}

/// The answers one vCPU got, by leaf and subleaf. [`emulate`] is a pure function of the
/// host's CPUID and the vCPU's policy — except leaf 0xD, whose sizes follow the XCR0 the
/// guest set (it stays loaded in the CPU the host asks), which is never kept — and guests
/// repeat the same few leaves, so a repeated CPUID skips it; the bits that follow the guest's
/// own state ([`apply_guest_state`]) are applied to every answer, cached or not.
#[derive(Clone, Debug, Default)]
pub struct CpuidCache {
    entries: [Option<(u32, u32, [u32; 4])>; 16],
}

impl CpuidCache {
    /// The cached answer for (`leaf`, `subleaf`), else `compute`'s, kept. Inline: a hit is a
    /// few instructions of every CPUID exit.
    #[inline(always)]
    pub fn answer(
        &mut self,
        leaf: u32,
        subleaf: u32,
        compute: impl FnOnce() -> [u32; 4],
    ) -> [u32; 4] {
        // XSAVE sizes (EBX of subleaves 0 and 1) change with the guest's XCR0.
        if leaf == 0xD {
            return compute();
        }
        let slot = (leaf ^ (leaf >> 27) ^ subleaf.wrapping_mul(5)) as usize % self.entries.len();
        match self.entries[slot] {
            Some((l, s, answer)) if (l, s) == (leaf, subleaf) => answer,
            _ => {
                let answer = compute();
                self.entries[slot] = Some((leaf, subleaf, answer));
                answer
            }
        }
    }
}

/// The package/core position of one vCPU, as CPUID reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The package: the vCPU's vNUMA node.
    pub package: u32,
    /// The core's index within its package.
    pub core: u32,
    /// vCPUs (cores) in this vCPU's package.
    pub cores_in_package: u32,
    /// APIC ID bits for the core number: enough for the largest node, at least 3 (Linux on AMD
    /// family 17h models 0–1Fh takes the LLC ID as `APIC ID >> 3`, so nodes must differ above
    /// bit 2).
    pub core_shift: u32,
    /// `package << core_shift | core`.
    pub apic_id: u32,
}

/// Minimum core shift; see [`Topology::core_shift`].
const MIN_CORE_SHIFT: u32 = 3;

/// Bits needed to number `count` items (0 for 0 or 1).
fn bits_for(count: u32) -> u32 {
    match count {
        0 | 1 => 0,
        _ => 32 - (count - 1).leading_zeros(),
    }
}

/// The topology of vCPU `vcpu_index` in a partition whose vCPUs lie in `vnode_of_vcpu`, or
/// `None` if the index is out of range or the APIC ID would not fit in 32 bits.
pub fn topology_of(vnode_of_vcpu: &[u32], vcpu_index: u32) -> Option<Topology> {
    let index = usize::try_from(vcpu_index).ok()?;
    let package = *vnode_of_vcpu.get(index)?;
    let count_in = |node: u32, slice: &[u32]| {
        let count = slice.iter().filter(|&&other| other == node).count();
        u32::try_from(count).unwrap_or(u32::MAX)
    };
    let core = count_in(package, &vnode_of_vcpu[..index]);
    let cores_in_package = count_in(package, vnode_of_vcpu);
    let largest = vnode_of_vcpu
        .iter()
        .map(|&node| count_in(node, vnode_of_vcpu))
        .max()
        .unwrap_or(1);
    let core_shift = bits_for(largest).max(MIN_CORE_SHIFT);
    let apic_id = u64::from(package)
        .checked_shl(core_shift)
        .map(|high| high | u64::from(core))?;
    Some(Topology {
        package,
        core,
        cores_in_package,
        core_shift,
        apic_id: u32::try_from(apic_id).ok()?,
    })
}

/// The APIC ID of vCPU `vcpu_index` (see [`topology_of`]).
pub fn apic_id_of(vnode_of_vcpu: &[u32], vcpu_index: u32) -> Option<u32> {
    topology_of(vnode_of_vcpu, vcpu_index).map(|topology| topology.apic_id)
}

impl CpuidPolicy {
    /// This vCPU's topology; vCPU 0 of a one-vCPU node 0 if the policy is inconsistent.
    pub fn topology(&self) -> Topology {
        topology_of(&self.vnode_of_vcpu, self.vcpu_index).unwrap_or(Topology {
            package: 0,
            core: 0,
            cores_in_package: 1,
            core_shift: MIN_CORE_SHIFT,
            apic_id: 0,
        })
    }
}

/// The highest basic leaf offered (TSC/crystal 0x15 and frequency 0x16 included; 0x1F not).
pub const MAX_BASIC_LEAF: u32 = 0x16;
/// The highest extended leaf offered (address sizes; 0x8000_001D/1E are not offered).
pub const MAX_EXTENDED_LEAF: u32 = 0x8000_0008;
/// The hypervisor leaves: 0x4000_0000 signature, 0x4000_0001 the hypercall interface
/// (`docs/hypercalls.md`). The signature is our own, which Linux's hypervisor probes (KVM,
/// Xen, Hyper-V, VMware, ACRN, Jailhouse) do not recognise: they leave the guest alone.
pub const HYPERVISOR_MAX_LEAF: u32 = 0x4000_0001;
/// The vendor signature in leaf 0x4000_0000 EBX, ECX, EDX.
pub const HYPERVISOR_SIGNATURE: &[u8; 12] = b"numavisor\0\0\0";
/// Leaf 0x4000_0001 EAX: the hypercall interface's version.
pub const HYPERCALL_INTERFACE_VERSION: u32 = 1;
/// The brand string of leaves 0x8000_0002–4, zero-padded to 48 bytes.
pub const BRAND: &str = "numavisor virtual CPU";

const fn bit(n: u32) -> u32 {
    1 << n
}

// Leaf 1 ECX bits cleared, each a feature with an MSR, instruction or exit we do not emulate.
const LEAF1_ECX_HIDDEN: u32 = bit(2) // DTES64: 64-bit debug store (no DS area).
    | bit(3) // MONITOR/MWAIT: would halt the physical CPU; guests idle with HLT.
    | bit(4) // DS-CPL: debug store.
    | bit(5) // VMX: no nested virtualisation.
    | bit(6) // SMX: GETSEC.
    | bit(7) // EIST: no frequency control MSRs.
    | bit(8) // TM2: thermal monitor.
    | bit(11) // SDBG: IA32_DEBUG_INTERFACE.
    | bit(15) // PDCM: IA32_PERF_CAPABILITIES.
    | bit(18) // DCA: direct cache access.
    | bit(27); // OSXSAVE: reflects guest CR4.OSXSAVE, see `apply_guest_state`.
const LEAF1_ECX_SET: u32 = bit(21) // x2APIC: the APIC model offers it.
    | bit(24) // TSC-deadline: the APIC model's timer (MSR 0x6E0).
    | bit(31); // Hypervisor present.
               // Leaf 1 EDX bits cleared.
const LEAF1_EDX_HIDDEN: u32 = bit(18) // PSN: processor serial number.
    | bit(21) // DS: debug store.
    | bit(22) // ACPI: thermal monitor and clock control MSRs.
    | bit(28) // HTT: set below from the topology.
    | bit(29) // TM: thermal monitor.
    | bit(31); // PBE: pending break enable.

// Leaf 7 subleaf 0 bits cleared.
const LEAF7_EBX_HIDDEN: u32 = bit(1) // IA32_TSC_ADJUST: not emulated.
    | bit(2) // SGX.
    | bit(12) // RDT monitoring (PQM).
    | bit(14) // MPX: bound-config MSRs.
    | bit(15) // RDT allocation (PQE).
    | bit(25); // Intel processor trace.
const LEAF7_ECX_HIDDEN: u32 = bit(4) // OSPKE: reflects guest CR4.PKE, see `apply_guest_state`.
    | bit(5) // WAITPKG: UMWAIT/TPAUSE with IA32_UMWAIT_CONTROL.
    | bit(7) // CET shadow stacks: CET MSRs.
    | bit(30); // SGX launch control.
const LEAF7_EDX_HIDDEN: u32 = bit(15) // Hybrid: would need leaf 0x1A.
    | bit(18) // PCONFIG.
    | bit(20) // CET IBT.
    | bit(26) // IBRS/IBPB: SPEC_CTRL/PRED_CMD are #GP (see msr.rs).
    | bit(27) // STIBP.
    | bit(28) // L1D_FLUSH MSR.
    | bit(29) // IA32_ARCH_CAPABILITIES: #GP.
    | bit(30) // IA32_CORE_CAPABILITIES.
    | bit(31); // SSBD via SPEC_CTRL.

// Leaf 0x8000_0001 ECX bits cleared.
const EXT1_ECX_HIDDEN: u32 = bit(2) // SVM: no nested virtualisation.
    | bit(3) // ExtApicSpace: the APIC model has no extended registers.
    | bit(9) // OSVW: OSVW_ID_LENGTH reads 0 anyway.
    | bit(10) // IBS.
    | bit(12) // SKINIT.
    | bit(13) // WDT.
    | bit(22) // TOPOEXT: leaves 0x8000_001D/1E are beyond the max extended leaf.
    | bit(23) // PerfCtrExtCore: performance counters are #GP.
    | bit(24) // PerfCtrExtNB.
    | bit(26) // DataBreakpointExtension: DR address-mask MSRs.
    | bit(28) // PerfCtrExtLLC.
    | bit(29); // MONITORX/MWAITX.
               // Leaf 0x8000_0008 EBX bits kept: CLZERO (0), RstrFpErrPtrs (2), WBNOINVD (9). The rest are
               // speculation-control (IBPB, IBRS, STIBP, SSBD, ...) and counter features we do not offer.
const EXT8_EBX_KEPT: u32 = bit(0) | bit(2) | bit(9);

/// The registers `[EAX, EBX, ECX, EDX]` CPUID returns to vCPU `policy.vcpu_index` for `leaf`
/// and `subleaf`. OSXSAVE and OSPKE read clear; pass the result through [`apply_guest_state`].
pub fn emulate(host: &impl HostCpuid, policy: &CpuidPolicy, leaf: u32, subleaf: u32) -> [u32; 4] {
    let topology = policy.topology();
    let host_max_basic = host.cpuid(0, 0)[0];
    let host_max_extended = host.cpuid(0x8000_0000, 0)[0];
    let max_basic = host_max_basic.min(MAX_BASIC_LEAF);
    let max_extended = host_max_extended.min(MAX_EXTENDED_LEAF);
    match leaf {
        0 => {
            let [_, ebx, ecx, edx] = host.cpuid(0, 0);
            [max_basic, ebx, ecx, edx]
        }
        1..=MAX_BASIC_LEAF if leaf <= max_basic => {
            basic_leaf(host, policy, &topology, leaf, subleaf)
        }
        0x4000_0000 => {
            let signature = |at: usize| {
                let mut word = [0u8; 4];
                word.copy_from_slice(&HYPERVISOR_SIGNATURE[at..at + 4]);
                u32::from_le_bytes(word)
            };
            [
                HYPERVISOR_MAX_LEAF,
                signature(0),
                signature(4),
                signature(8),
            ]
        }
        // Interface version, the calls offered (bit `code`), the highest call code.
        0x4000_0001 => [
            HYPERCALL_INTERFACE_VERSION,
            crate::hypercall::abi::offered_feature_bits(),
            crate::hypercall::abi::CallCode::ALL[crate::hypercall::abi::CallCode::ALL.len() - 1]
                as u32,
            0,
        ],
        0x8000_0000 => {
            let [_, ebx, ecx, edx] = host.cpuid(0x8000_0000, 0);
            [max_extended, ebx, ecx, edx]
        }
        0x8000_0001..=MAX_EXTENDED_LEAF if leaf <= max_extended => {
            extended_leaf(host, &topology, leaf)
        }
        _ => [0; 4],
    }
}

/// Leaves 1..=0x16 (already known to be within the maximum).
fn basic_leaf(
    host: &impl HostCpuid,
    policy: &CpuidPolicy,
    topology: &Topology,
    leaf: u32,
    subleaf: u32,
) -> [u32; 4] {
    let [eax, ebx, ecx, edx] = host.cpuid(leaf, subleaf);
    match leaf {
        1 => {
            let logical = 1u32
                .checked_shl(topology.core_shift)
                .unwrap_or(u32::MAX)
                .min(0xFF);
            let ebx = (topology.apic_id << 24) | (logical << 16) | (ebx & 0xFF00);
            let ecx = (ecx & !LEAF1_ECX_HIDDEN) | LEAF1_ECX_SET;
            let htt = if topology.cores_in_package > 1 {
                bit(28)
            } else {
                0
            };
            [eax, ebx, ecx, (edx & !LEAF1_EDX_HIDDEN) | htt]
        }
        // Cache descriptors (Intel): informational only.
        2 => [eax, ebx, ecx, edx],
        4 => [cache_sharing(eax, topology), ebx, ecx, edx],
        // Thermal and power management: only ARAT (the APIC timer keeps running in C-states).
        6 => [bit(2), 0, 0, 0],
        7 if subleaf == 0 => [
            0, // Only subleaf 0.
            ebx & !LEAF7_EBX_HIDDEN,
            ecx & !LEAF7_ECX_HIDDEN,
            edx & !LEAF7_EDX_HIDDEN,
        ],
        0xB => extended_topology(topology, subleaf),
        // XSAVE state components: the guest manages XCR0 itself, but XSAVES needs IA32_XSS,
        // which we do not emulate: hide it and the supervisor components.
        0xD if subleaf == 1 => [eax & !bit(3), ebx, 0, 0],
        0xD => [eax, ebx, ecx, edx],
        // TSC = crystal * EBX / EAX: a 1 kHz-granular "crystal" of tsc_hz / 1000.
        0x15 => match u32::try_from(policy.tsc_hz / 1000) {
            Ok(crystal) if crystal != 0 => [1, 1000, crystal, 0],
            _ => [0; 4],
        },
        // Base and maximum frequency in MHz.
        0x16 => {
            let mhz = u32::try_from(policy.tsc_hz / 1_000_000).unwrap_or(0) & 0xFFFF;
            [mhz, mhz, 0, 0]
        }
        _ => [0; 4],
    }
}

/// Leaves 0x8000_0001..=0x8000_0008 (already known to be within the maximum).
fn extended_leaf(host: &impl HostCpuid, topology: &Topology, leaf: u32) -> [u32; 4] {
    let [eax, ebx, ecx, edx] = host.cpuid(leaf, 0);
    match leaf {
        0x8000_0001 => [eax, ebx, ecx & !EXT1_ECX_HIDDEN, edx],
        0x8000_0002..=0x8000_0004 => brand_leaf(leaf - 0x8000_0002),
        // L1/L2/L3 cache and TLB descriptions: informational.
        0x8000_0005 | 0x8000_0006 => [eax, ebx, ecx, edx],
        // Advanced power management: only the invariant TSC.
        0x8000_0007 => [0, 0, 0, bit(8)],
        0x8000_0008 => {
            let cores = topology.cores_in_package.saturating_sub(1) & 0xFF;
            let ecx = ((topology.core_shift & 0xF) << 12) | cores;
            [eax, ebx & EXT8_EBX_KEPT, ecx, 0]
        }
        _ => [0; 4],
    }
}

/// Sixteen bytes of the brand string as four little-endian registers.
fn brand_leaf(part: u32) -> [u32; 4] {
    let mut registers = [0u32; 4];
    let start = part as usize * 16;
    for (offset, byte) in BRAND.bytes().enumerate() {
        let Some(relative) = offset.checked_sub(start).filter(|&at| at < 16) else {
            continue;
        };
        registers[relative / 4] |= u32::from(byte) << (8 * (relative % 4));
    }
    registers
}

/// Leaf 4 EAX with the sharing counts of our topology: level 1 and 2 caches are private to the
/// one-thread core, level 3 and above are shared by the package (the vNUMA node), so Linux's LLC
/// ID (`APIC ID >> bits for the sharing count`) is the node. Bits 31:26 give the cores per
/// package - 1 as a power of two. A null cache type (bits 4:0 = 0, the end of the list) is kept.
fn cache_sharing(eax: u32, topology: &Topology) -> u32 {
    if eax & 0x1F == 0 {
        return eax;
    }
    let level = (eax >> 5) & 7;
    let per_package = 1u32
        .checked_shl(topology.core_shift)
        .unwrap_or(u32::MAX)
        .saturating_sub(1);
    let sharing = if level >= 3 {
        per_package.min(0xFFF)
    } else {
        0
    };
    (eax & 0x3FFF) | (sharing << 14) | (per_package.min(0x3F) << 26)
}

/// Leaf 0xB: SMT level (one thread, shift 0), core level (the package), then invalid.
fn extended_topology(topology: &Topology, subleaf: u32) -> [u32; 4] {
    let level = subleaf & 0xFF;
    match subleaf {
        0 => [0, 1, level | (1 << 8), topology.apic_id],
        1 => [
            topology.core_shift,
            topology.cores_in_package & 0xFFFF,
            level | (2 << 8),
            topology.apic_id,
        ],
        _ => [0, 0, level, topology.apic_id],
    }
}

/// The guest state some CPUID bits reflect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestState {
    /// The guest's CR4.
    pub cr4: u64,
    /// IA32_APIC_BASE.EN of the asking vCPU's local APIC.
    pub apic_enabled: bool,
}

/// Sets the bits CPUID reflects from the guest's state, as the hardware does natively: leaf 1
/// ECX bit 27 OSXSAVE (CR4 bit 18), leaf 7 subleaf 0 ECX bit 4 OSPKE (CR4 bit 22), and leaf 1
/// EDX bit 9 APIC, clear while the local APIC is globally disabled (SDM vol. 3A §11.4.3).
pub fn apply_guest_state(
    leaf: u32,
    subleaf: u32,
    mut registers: [u32; 4],
    guest: GuestState,
) -> [u32; 4] {
    match (leaf, subleaf) {
        (1, _) => {
            if guest.cr4 & (1 << 18) != 0 {
                registers[2] |= bit(27);
            }
            if !guest.apic_enabled {
                registers[3] &= !bit(9);
            }
        }
        (7, 0) if guest.cr4 & (1 << 22) != 0 && registers[2] & bit(3) != 0 => {
            registers[2] |= bit(4)
        }
        _ => {}
    }
    registers
}

#[cfg(test)]
mod tests;
