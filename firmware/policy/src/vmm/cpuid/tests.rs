//! Tests for the CPUID policy against tables of an AMD EPYC-like and an Intel Xeon-like host.

use super::*;
use alloc::collections::BTreeMap;
use alloc::vec;

/// A host CPU as a table; absent leaves read zero.
struct FakeHost(BTreeMap<(u32, u32), [u32; 4]>);

impl HostCpuid for FakeHost {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        self.0
            .get(&(leaf, subleaf))
            .or_else(|| self.0.get(&(leaf, 0)))
            .copied()
            .unwrap_or([0; 4])
    }
}

fn epyc() -> FakeHost {
    FakeHost(BTreeMap::from([
        // "AuthenticAMD": EBX "Auth", EDX "enti", ECX "cAMD".
        ((0, 0), [0x10, 0x6874_7541, 0x444D_4163, 0x6974_6E65]),
        // Family 19h; APIC ID 0x2A, 128 logical, CLFLUSH 8 qwords; MONITOR, OSXSAVE, x2APIC off.
        ((1, 0), [0x00A0_0F11, 0x2A80_0800, 0x7ED8_320B, 0x178B_FBFF]),
        ((6, 0), [0x4, 0, 0x1, 0]),
        ((7, 0), [0, 0x219C_97A9, 0x0040_068C, 0x1000_0010]),
        ((0xD, 0), [0x207, 0x340, 0x988, 0]),
        ((0xD, 1), [0xF, 0x340, 0x1800, 0]),
        (
            (0x8000_0000, 0),
            [0x8000_0028, 0x6874_7541, 0x444D_4163, 0x6974_6E65],
        ),
        // SVM (bit 2), TOPOEXT (22), PerfCtrExtCore (23) set.
        (
            (0x8000_0001, 0),
            [0x00A0_0F11, 0x4000_0000, 0x75C2_37FF, 0x2FD3_FBFF],
        ),
        ((0x8000_0002, 0), chunks(b"AMD EPYC 7763 64")),
        (
            (0x8000_0006, 0),
            [0x4800_2200, 0x6800_4200, 0x0200_6140, 0x0100_9140],
        ),
        ((0x8000_0007, 0), [0, 0x3B, 0, 0x6799]),
        (
            (0x8000_0008, 0),
            [0x0000_3030, 0x111E_F657, 0x0000_707F, 0x0001_0007],
        ),
        ((0x8000_000A, 0), [1, 0x8000, 0, 0x1EBF_BCFF]),
        ((0x8000_001E, 0), [0x2A, 0x115, 0x0, 0]),
    ]))
}

fn xeon() -> FakeHost {
    FakeHost(BTreeMap::from([
        // "GenuineIntel": EBX "Genu", EDX "ineI", ECX "ntel".
        ((0, 0), [0x1F, 0x756E_6547, 0x6C65_746E, 0x4965_6E69]),
        // VMX (5), MONITOR (3), PDCM (15) set; EDX with DS, ACPI, TM, PBE.
        ((1, 0), [0x0005_06F2, 0x0510_0800, 0x7FFA_FBFF, 0xBFEB_FBFF]),
        ((4, 0), [0x1C00_4121, 0x01C0_003F, 0x3F, 0]),
        ((4, 1), [0x1C00_4122, 0x01C0_003F, 0x3F, 0]),
        ((4, 2), [0x1C00_4143, 0x03C0_003F, 0x3FF, 0]),
        ((4, 3), [0x1C03_C163, 0x03C0_003F, 0x6FFF, 6]),
        ((4, 4), [0, 0, 0, 0]),
        ((6, 0), [0x77, 2, 9, 0]),
        ((7, 0), [0, 0xD19F_FFFB, 0x0040_0F4E, 0xBC00_0400]),
        ((0xB, 0), [1, 2, 0x100, 5]),
        ((0xB, 1), [5, 32, 0x201, 5]),
        ((0x8000_0000, 0), [0x8000_0008, 0, 0, 0]),
        ((0x8000_0001, 0), [0, 0, 0x121, 0x2C10_0800]),
        ((0x8000_0002, 0), chunks(b"Intel(R) Xeon(R)")),
        ((0x8000_0008, 0), [0x0000_302E, 0, 0, 0]),
    ]))
}

fn chunks(bytes: &[u8; 16]) -> [u32; 4] {
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    [word(0), word(4), word(8), word(12)]
}

fn policy(vcpu_index: u32, vnode_of_vcpu: &[u32]) -> CpuidPolicy {
    CpuidPolicy {
        vcpu_index,
        tsc_hz: 2_450_000_123,
        vnode_of_vcpu: vnode_of_vcpu.to_vec(),
    }
}

#[test]
fn vendor_detection() {
    assert_eq!(vendor(&epyc()), Vendor::Amd);
    assert_eq!(vendor(&xeon()), Vendor::Intel);
    assert_eq!(vendor(&FakeHost(BTreeMap::new())), Vendor::Other);
}

#[test]
fn leaf_limits() {
    let one = policy(0, &[0]);
    for host in [epyc(), xeon()] {
        assert_eq!(emulate(&host, &one, 0, 0)[0], host.cpuid(0, 0)[0].min(0x16));
        assert_eq!(emulate(&host, &one, 0, 0)[1..], host.cpuid(0, 0)[1..]);
        assert_eq!(emulate(&host, &one, 0x8000_0000, 0)[0], 0x8000_0008);
        // Above the maximum: zeros.
        assert_eq!(emulate(&host, &one, 0x17, 0), [0; 4]);
        assert_eq!(emulate(&host, &one, 0x1F, 0), [0; 4]);
        assert_eq!(emulate(&host, &one, 0x8000_000A, 0), [0; 4], "no SVM info");
        assert_eq!(emulate(&host, &one, 0x8000_001E, 0), [0; 4]);
        assert_eq!(emulate(&host, &one, 0xFFFF_FFFF, 0), [0; 4]);
    }
    // The AMD host's basic maximum (0x10) is lower than ours: it wins.
    assert_eq!(emulate(&epyc(), &one, 0, 0)[0], 0x10);
    assert_eq!(emulate(&epyc(), &one, 0x15, 0), [0; 4]);
}

#[test]
fn hypervisor_leaves() {
    let one = policy(0, &[0]);
    let [max, ebx, ecx, edx] = emulate(&epyc(), &one, 0x4000_0000, 0);
    assert_eq!(max, 0x4000_0001);
    let mut signature = [0u8; 12];
    signature[..4].copy_from_slice(&ebx.to_le_bytes());
    signature[4..8].copy_from_slice(&ecx.to_le_bytes());
    signature[8..].copy_from_slice(&edx.to_le_bytes());
    assert_eq!(&signature, b"numavisor\0\0\0");
    // Version 1; every call offered (bits 1 to 7); codes up to 7.
    assert_eq!(
        emulate(&epyc(), &one, 0x4000_0001, 0),
        [1, 0b1111_1110, 7, 0]
    );
    for leaf in [0x4000_0002, 0x4000_0010, 0x4000_0100, 0x4FFF_FFFF] {
        assert_eq!(emulate(&xeon(), &one, leaf, 0), [0; 4]);
    }
}

#[test]
fn brand_string_hides_the_host() {
    let one = policy(0, &[0]);
    for host in [epyc(), xeon()] {
        let mut brand = vec![];
        for leaf in 0x8000_0002..=0x8000_0004 {
            for register in emulate(&host, &one, leaf, 0) {
                brand.extend_from_slice(&register.to_le_bytes());
            }
        }
        let mut expected = [0u8; 48];
        expected[..BRAND.len()].copy_from_slice(BRAND.as_bytes());
        assert_eq!(brand, expected);
    }
}

#[test]
fn feature_bits() {
    let one = policy(0, &[0]);
    for host in [epyc(), xeon()] {
        let [eax, _, ecx, edx] = emulate(&host, &one, 1, 0);
        assert_eq!(
            eax,
            host.cpuid(1, 0)[0],
            "family/model/stepping pass through"
        );
        assert_ne!(ecx & bit(31), 0, "hypervisor");
        assert_ne!(ecx & bit(21), 0, "x2APIC");
        assert_ne!(ecx & bit(24), 0, "TSC-deadline");
        for hidden in [3, 5, 15, 27] {
            assert_eq!(ecx & bit(hidden), 0, "leaf 1 ECX bit {hidden}");
        }
        for hidden in [21, 22, 29, 31] {
            assert_eq!(edx & bit(hidden), 0, "leaf 1 EDX bit {hidden}");
        }
        assert_eq!(edx & bit(28), 0, "one vCPU: no HTT");
        // SSE2, APIC, MSR and friends stay.
        assert_eq!(edx & 0x0400_0000, host.cpuid(1, 0)[3] & 0x0400_0000);
        let ext = emulate(&host, &one, 0x8000_0001, 0);
        assert_eq!(ext[2] & bit(2), 0, "no SVM");
        assert_eq!(ext[2] & bit(22), 0, "no TOPOEXT");
        assert_eq!(ext[3], host.cpuid(0x8000_0001, 0)[3], "LM, NX, RDTSCP kept");
        assert_eq!(emulate(&host, &one, 6, 0), [bit(2), 0, 0, 0]);
        let leaf7 = emulate(&host, &one, 7, 0);
        assert_eq!(leaf7[3] & 0xFC00_0000, 0, "no speculation-control MSRs");
        assert_eq!(leaf7[1] & bit(1), 0, "no TSC_ADJUST");
        assert_eq!(
            leaf7[1] & bit(0),
            host.cpuid(7, 0)[1] & bit(0),
            "FSGSBASE kept"
        );
        assert_eq!(emulate(&host, &one, 7, 1), [0; 4]);
    }
    let amd = epyc();
    assert_eq!(emulate(&amd, &one, 0x8000_0007, 0), [0, 0, 0, bit(8)]);
    let ext8 = emulate(&amd, &one, 0x8000_0008, 0);
    assert_eq!(ext8[0], 0x3030, "address sizes from the host");
    assert_eq!(
        ext8[1] & !(bit(0) | bit(2) | bit(9)),
        0,
        "no IBPB/IBRS/SSBD"
    );
    // XSAVE passes through, but XSAVES and supervisor states are hidden.
    assert_eq!(emulate(&amd, &one, 0xD, 0), amd.cpuid(0xD, 0));
    assert_eq!(emulate(&amd, &one, 0xD, 1), [0xF & !bit(3), 0x340, 0, 0]);
}

fn with_cr4(cr4: u64) -> GuestState {
    GuestState {
        cr4,
        apic_enabled: true,
    }
}

#[test]
fn guest_cr4_reflection() {
    let one = policy(0, &[0]);
    let host = xeon();
    let leaf1 = emulate(&host, &one, 1, 0);
    assert_eq!(apply_guest_state(1, 0, leaf1, with_cr4(0))[2] & bit(27), 0);
    assert_ne!(
        apply_guest_state(1, 0, leaf1, with_cr4(1 << 18))[2] & bit(27),
        0
    );
    let leaf7 = emulate(&host, &one, 7, 0);
    assert_eq!(leaf7[2] & bit(4), 0);
    // PKU (bit 3) is advertised by this host, so OSPKE follows CR4.PKE.
    assert_ne!(
        apply_guest_state(7, 0, leaf7, with_cr4(1 << 22))[2] & bit(4),
        0
    );
    assert_eq!(
        apply_guest_state(6, 0, [1, 2, 3, 4], with_cr4(u64::MAX)),
        [1, 2, 3, 4]
    );
}

/// CPUID.1:EDX.APIC is IA32_APIC_BASE.EN (SDM vol. 3A §11.4.3); nothing else moves with it.
#[test]
fn the_apic_bit_follows_the_global_enable() {
    let one = policy(0, &[0]);
    let leaf1 = emulate(&xeon(), &one, 1, 0);
    assert_ne!(leaf1[3] & bit(9), 0, "the host's APIC is offered");
    let disabled = GuestState {
        cr4: 0,
        apic_enabled: false,
    };
    let seen = apply_guest_state(1, 0, leaf1, disabled);
    assert_eq!(seen[3], leaf1[3] & !bit(9));
    assert_eq!(seen[..3], leaf1[..3]);
    assert_eq!(apply_guest_state(1, 0, leaf1, with_cr4(0)), leaf1);
    // Other leaves do not carry the bit.
    let ext = emulate(&xeon(), &one, 0x8000_0001, 0);
    assert_eq!(apply_guest_state(0x8000_0001, 0, ext, disabled), ext);
}

#[test]
fn tsc_frequency_leaves() {
    let host = xeon();
    let one = policy(0, &[0]);
    assert_eq!(emulate(&host, &one, 0x15, 0), [1, 1000, 2_450_000, 0]);
    assert_eq!(emulate(&host, &one, 0x16, 0), [2450, 2450, 0, 0]);
    let unknown = CpuidPolicy { tsc_hz: 0, ..one };
    assert_eq!(emulate(&host, &unknown, 0x15, 0), [0; 4]);
    let absurd = CpuidPolicy {
        tsc_hz: u64::MAX,
        ..policy(0, &[0])
    };
    assert_eq!(emulate(&host, &absurd, 0x15, 0), [0; 4]);
    let _ = emulate(&host, &absurd, 0x16, 0);
}

/// Everything a guest derives about vCPU `index` from CPUID: the APIC IDs of leaves 1 and 0xB,
/// the package (from 0xB and, on AMD, 0x8000_0008) and the LLC ID (from leaf 4 on Intel).
fn observed(host: &FakeHost, nodes: &[u32], index: u32) -> (u32, u32, u32) {
    let policy = policy(index, nodes);
    let leaf1_apic = emulate(host, &policy, 1, 0)[1] >> 24;
    let smt = emulate(host, &policy, 0xB, 0);
    let core = emulate(host, &policy, 0xB, 1);
    assert_eq!(smt[0], 0, "SMT shift");
    assert_eq!(smt[1], 1, "one thread per core");
    assert_eq!(smt[2] >> 8 & 0xFF, 1, "SMT level type");
    assert_eq!(core[2] >> 8 & 0xFF, 2, "core level type");
    assert_eq!(emulate(host, &policy, 0xB, 2)[2], 2, "then invalid");
    let x2apic = smt[3];
    assert_eq!(core[3], x2apic);
    assert_eq!(leaf1_apic, x2apic & 0xFF);
    let package = x2apic >> core[0];
    let ext8 = emulate(host, &policy, 0x8000_0008, 0);
    if vendor(host) == Vendor::Amd {
        let core_id_size = (ext8[2] >> 12) & 0xF;
        assert_eq!(x2apic >> core_id_size, package);
    }
    let llc = if vendor(host) == Vendor::Intel {
        let l3 = emulate(host, &policy, 4, 3)[0];
        let sharing = ((l3 >> 14) & 0xFFF) + 1;
        x2apic >> (32 - (sharing - 1).leading_zeros())
    } else {
        // AMD family 19h takes the LLC from 0x8000_001D (absent); family 17h models 0-1Fh
        // take APIC ID >> 3.
        x2apic >> 3
    };
    (x2apic, package, llc)
}

#[test]
fn two_nodes_of_two_vcpus_are_two_packages() {
    let nodes = [0, 0, 1, 1];
    for host in [epyc(), xeon()] {
        let seen: Vec<_> = (0..4).map(|index| observed(&host, &nodes, index)).collect();
        assert_eq!(seen, [(0, 0, 0), (1, 0, 0), (8, 1, 1), (9, 1, 1)]);
        for index in 0..4 {
            let policy = policy(index, &nodes);
            assert_eq!(apic_id_of(&nodes, index), Some(seen[index as usize].0));
            assert_eq!(
                emulate(&host, &policy, 0xB, 1)[1],
                2,
                "two cores per package"
            );
            assert_ne!(emulate(&host, &policy, 1, 0)[3] & bit(28), 0, "HTT");
            assert_eq!(emulate(&host, &policy, 1, 0)[1] >> 16 & 0xFF, 8);
            assert_eq!(emulate(&host, &policy, 0x8000_0008, 0)[2], (3 << 12) | 1);
        }
    }
    // Intel L1/L2 are per core.
    let policy = policy(1, &nodes);
    assert_eq!(emulate(&xeon(), &policy, 4, 0)[0] >> 14 & 0xFFF, 0);
    assert_eq!(emulate(&xeon(), &policy, 4, 2)[0] >> 14 & 0xFFF, 0);
    assert_eq!(emulate(&xeon(), &policy, 4, 4), [0; 4]);
}

#[test]
fn interleaved_and_uneven_nodes() {
    // vCPUs alternate between nodes; node 1 is larger (needs 4 cores -> shift stays 3).
    let nodes = [0, 1, 0, 1, 1, 1];
    let ids: Vec<_> = (0..6).map(|index| apic_id_of(&nodes, index)).collect();
    assert_eq!(
        ids,
        [Some(0), Some(8), Some(1), Some(9), Some(10), Some(11)]
    );
    // Nine vCPUs in one node need four core bits.
    let big = [2; 9];
    let topology = topology_of(&big, 8).unwrap();
    assert_eq!(topology.core_shift, 4);
    assert_eq!(topology.apic_id, (2 << 4) | 8);
    assert_eq!(topology.cores_in_package, 9);
    // Out of range, or an APIC ID that does not fit.
    assert_eq!(apic_id_of(&nodes, 6), None);
    assert_eq!(apic_id_of(&[u32::MAX], 0), None);
    let lost = policy(99, &nodes);
    assert_eq!(emulate(&epyc(), &lost, 0xB, 0)[3], 0);
}

#[test]
fn random_hosts_never_panic() {
    use proptest::prelude::*;
    proptest!(|(values in proptest::collection::vec(any::<u32>(), 64),
                leaf in prop_oneof![0u32..0x20, 0x4000_0000u32..0x4000_0010,
                                    0x8000_0000u32..0x8000_0020, any::<u32>()],
                subleaf in 0u32..8,
                nodes in proptest::collection::vec(any::<u32>(), 0..6),
                index in 0u32..8)| {
        struct RandomHost(Vec<u32>);
        impl HostCpuid for RandomHost {
            fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
                let at = (leaf.wrapping_mul(31).wrapping_add(subleaf) % 16) as usize * 4;
                [self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]]
            }
        }
        let policy = CpuidPolicy { vcpu_index: index, tsc_hz: u64::from(values[0]) << 8, vnode_of_vcpu: nodes };
        let registers = emulate(&RandomHost(values), &policy, leaf, subleaf);
        let _ = apply_guest_state(leaf, subleaf, registers, GuestState { cr4: u64::MAX, apic_enabled: index % 2 == 0 });
    });
}

/// The cache answers a repeated (leaf, subleaf) without asking again, keeps leaves apart by
/// subleaf, and survives collisions by recomputing.
#[test]
fn the_cache_answers_repeats_and_keeps_subleaves_apart() {
    let mut cache = CpuidCache::default();
    let mut asked = 0;
    let mut ask = |cache: &mut CpuidCache, leaf: u32, subleaf: u32| {
        cache.answer(leaf, subleaf, || {
            asked += 1;
            [leaf, subleaf, 0, 0]
        })
    };
    assert_eq!(ask(&mut cache, 1, 0), [1, 0, 0, 0]);
    assert_eq!(ask(&mut cache, 1, 0), [1, 0, 0, 0]);
    assert_eq!(ask(&mut cache, 0xB, 1), [0xB, 1, 0, 0]);
    assert_eq!(ask(&mut cache, 0xB, 0), [0xB, 0, 0, 0]);
    // Every leaf and subleaf through a 16-entry cache: always the right answer.
    for leaf in 0..64 {
        for subleaf in 0..4 {
            assert_eq!(ask(&mut cache, leaf, subleaf), [leaf, subleaf, 0, 0]);
        }
    }
    assert!(asked >= 3 + 64 * 4 - 16);
    // Leaf 0xD is asked every time: its sizes follow the guest's XCR0.
    let size = |cache: &mut CpuidCache, xcr0_size: u32| {
        cache.answer(0xD, 0, || [7, xcr0_size, 0x340, 0])[1]
    };
    assert_eq!(size(&mut cache, 576), 576);
    assert_eq!(
        size(&mut cache, 832),
        832,
        "a cached leaf 0xD would say 576"
    );
}
