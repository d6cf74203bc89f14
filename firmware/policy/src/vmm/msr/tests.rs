//! Tests for the MSR policy, one per rule.

use super::*;

const GP: MsrFault = MsrFault::GeneralProtection;

fn value(state: &MsrState, msr: u32) -> Result<u64, MsrFault> {
    match state.read(msr)? {
        MsrRead::Value(value) => Ok(value),
        other => panic!("{msr:#x}: {other:?}"),
    }
}

#[test]
fn delegated_msrs() {
    for vendor in [Vendor::Amd, Vendor::Intel] {
        let mut state = MsrState::new(vendor);
        assert_eq!(state.read(IA32_TSC), Ok(MsrRead::Tsc));
        assert_eq!(state.write(IA32_TSC, 42), Ok(MsrAction::SetTsc(42)));
        assert_eq!(state.read(EFER), Ok(MsrRead::Efer));
        for apic in [IA32_APIC_BASE, IA32_TSC_DEADLINE, 0x800, 0x830, 0x8FF] {
            assert_eq!(state.read(apic), Ok(MsrRead::Apic));
            assert_eq!(state.write(apic, 1), Ok(MsrAction::Apic));
        }
    }
}

#[test]
fn efer_rules() {
    let mut amd = MsrState::new(Vendor::Amd);
    let linux = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
    assert_eq!(amd.write(EFER, linux), Ok(MsrAction::SetEfer(linux)));
    assert_eq!(
        amd.write(EFER, EFER_FFXSR | EFER_TCE),
        Ok(MsrAction::SetEfer(0xC000))
    );
    assert_eq!(
        amd.write(EFER, 1 << 12),
        Err(GP),
        "SVME: no nested virtualisation"
    );
    assert_eq!(amd.write(EFER, 1 << 13), Err(GP), "LMSLE");
    assert_eq!(amd.write(EFER, 1 << 1), Err(GP), "reserved");
    assert_eq!(amd.write(EFER, 1 << 63), Err(GP), "reserved");
    let mut intel = MsrState::new(Vendor::Intel);
    assert_eq!(intel.write(EFER, EFER_FFXSR), Err(GP), "FFXSR is AMD-only");
    // LMA follows the processor, not the write.
    assert_eq!(
        efer_update(Vendor::Amd, EFER_LME | EFER_LMA, EFER_LME, true),
        Ok(0x500)
    );
    assert_eq!(
        efer_update(Vendor::Amd, 0, EFER_LME | EFER_LMA, false),
        Ok(EFER_LME)
    );
    // LME may change only with paging off.
    assert_eq!(efer_update(Vendor::Amd, 0, EFER_LME, false), Ok(EFER_LME));
    assert_eq!(efer_update(Vendor::Amd, 0, EFER_LME, true), Err(GP));
    assert_eq!(
        efer_update(Vendor::Amd, 0, EFER_NXE | EFER_SCE, true),
        Ok(0x801)
    );
    assert_eq!(efer_update(Vendor::Intel, 0, 1 << 12, false), Err(GP));
}

#[test]
fn pat_rules() {
    let mut state = MsrState::new(Vendor::Amd);
    assert_eq!(value(&state, IA32_PAT), Ok(PAT_RESET));
    // Linux's PAT: WB, WC, UC-, UC, WB, WP, UC-, WT.
    let linux = 0x0407_0500_0007_0106;
    assert_eq!(state.write(IA32_PAT, linux), Ok(MsrAction::LoadPat(linux)));
    assert_eq!(value(&state, IA32_PAT), Ok(linux));
    assert_eq!(state.pat(), linux);
    for bad_type in [2u64, 3, 8, 0xFF] {
        assert_eq!(
            state.write(IA32_PAT, bad_type << 40),
            Err(GP),
            "type {bad_type}"
        );
    }
    assert_eq!(
        value(&state, IA32_PAT),
        Ok(linux),
        "a refused write changes nothing"
    );
}

#[test]
fn mtrr_rules() {
    let mut state = MsrState::new(Vendor::Amd);
    assert_eq!(value(&state, IA32_MTRRCAP), Ok(0x508));
    assert_eq!(state.write(IA32_MTRRCAP, 0), Err(GP), "read-only");
    assert_eq!(value(&state, IA32_MTRR_DEF_TYPE), Ok(0xC06));
    assert_eq!(state.write(IA32_MTRR_DEF_TYPE, 0x800), Ok(MsrAction::Done));
    assert_eq!(value(&state, IA32_MTRR_DEF_TYPE), Ok(0x800));
    assert_eq!(
        state.write(IA32_MTRR_DEF_TYPE, 0x802),
        Err(GP),
        "type 2 is reserved"
    );
    assert_eq!(
        state.write(IA32_MTRR_DEF_TYPE, 0x1C06),
        Err(GP),
        "reserved bit 12"
    );
    assert_eq!(
        state.write(IA32_MTRR_DEF_TYPE, 0xD06),
        Err(GP),
        "reserved bit 8"
    );
    // Variable ranges: a 2 GiB UC hole at 2 GiB.
    assert_eq!(state.write(0x200, 0x8000_0000), Ok(MsrAction::Done));
    assert_eq!(state.write(0x201, 0xF_8000_0800), Ok(MsrAction::Done));
    assert_eq!(value(&state, 0x200), Ok(0x8000_0000));
    assert_eq!(value(&state, 0x201), Ok(0xF_8000_0800));
    assert_eq!(value(&state, 0x20F), Ok(0));
    assert_eq!(
        state.write(0x20E, 0x8000_0007),
        Err(GP),
        "type 7 is PAT-only"
    );
    assert_eq!(
        state.write(0x20E, 0x8000_0100),
        Err(GP),
        "base reserved bits"
    );
    assert_eq!(
        state.write(0x20F, 0x8000_0001),
        Err(GP),
        "mask reserved bits"
    );
    assert_eq!(
        state.write(0x20F, 1 << 60),
        Err(GP),
        "beyond 52 address bits"
    );
    assert_eq!(state.read(0x210), Err(GP), "only 8 pairs");
    // Fixed ranges.
    for msr in FIXED_MTRRS {
        assert_eq!(state.write(msr, 0x0606_0606_0505_0000), Ok(MsrAction::Done));
        assert_eq!(value(&state, msr), Ok(0x0606_0606_0505_0000));
        assert_eq!(state.write(msr, 0x0700), Err(GP));
    }
    assert_eq!(state.read(0x251), Err(GP));
}

#[test]
fn vendor_specific_msrs() {
    let mut amd = MsrState::new(Vendor::Amd);
    let mut intel = MsrState::new(Vendor::Intel);
    assert_eq!(amd.read(IA32_MISC_ENABLE), Err(GP));
    assert_eq!(amd.write(IA32_MISC_ENABLE, 1), Err(GP));
    assert_eq!(value(&intel, IA32_MISC_ENABLE), Ok(MISC_ENABLE_VALUE));
    // kvm-unit-tests' msr test writes this and reads it back; BTS/PEBS unavailable stay set.
    assert_eq!(
        intel.write(IA32_MISC_ENABLE, 0x4_00c5_1809),
        Ok(MsrAction::Done)
    );
    assert_eq!(value(&intel, IA32_MISC_ENABLE), Ok(0x4_00c5_1809));
    assert_eq!(intel.write(IA32_MISC_ENABLE, 1 << 34), Ok(MsrAction::Done));
    assert_eq!(value(&intel, IA32_MISC_ENABLE), Ok((1 << 34) | 0x1800));
    assert_eq!(amd.read(IA32_PLATFORM_ID), Err(GP));
    assert_eq!(value(&intel, IA32_PLATFORM_ID), Ok(0));
    assert_eq!(amd.read(IA32_FEATURE_CONTROL), Err(GP));
    assert_eq!(
        value(&intel, IA32_FEATURE_CONTROL),
        Ok(1),
        "locked, VMX off"
    );
    assert_eq!(intel.write(IA32_FEATURE_CONTROL, 5), Err(GP));
    for state in [&mut amd, &mut intel] {
        assert_eq!(value(state, IA32_BIOS_SIGN_ID), Ok(0));
        assert_eq!(state.write(IA32_BIOS_SIGN_ID, 0), Ok(MsrAction::Done));
    }
    // AMD configuration MSRs do not exist on Intel.
    for msr in [
        AMD_HWCR,
        AMD_SYSCFG,
        AMD_NB_CFG,
        AMD_DE_CFG,
        AMD_LS_CFG,
        AMD_TSEG_ADDR,
    ] {
        assert_eq!(intel.read(msr), Err(GP), "{msr:#x}");
    }
    assert_eq!(intel.read(AMD_OSVW_ID_LENGTH), Err(GP));
}

#[test]
fn amd_configuration_msrs() {
    let mut state = MsrState::new(Vendor::Amd);
    assert_eq!(value(&state, AMD_HWCR), Ok(1 << 24), "TscFreqSel");
    assert_eq!(
        state.write(AMD_HWCR, (1 << 24) | (1 << 30)),
        Ok(MsrAction::Done)
    );
    assert_eq!(value(&state, AMD_HWCR), Ok((1 << 24) | (1 << 30)));
    assert_eq!(value(&state, AMD_SYSCFG), Ok(0));
    assert_eq!(state.write(AMD_SYSCFG, 1 << 23), Ok(MsrAction::Done));
    assert_eq!(value(&state, AMD_SYSCFG), Ok(0), "no SME");
    assert_eq!(state.write(AMD_NB_CFG, 1 << 46), Ok(MsrAction::Done));
    assert_eq!(value(&state, AMD_NB_CFG), Ok(1 << 46));
    assert_eq!(value(&state, AMD_DE_CFG), Ok(2), "LFENCE serialising");
    assert_eq!(state.write(AMD_DE_CFG, 0x202), Ok(MsrAction::Done));
    assert_eq!(value(&state, AMD_DE_CFG), Ok(2));
    assert_eq!(state.write(AMD_LS_CFG, 1 << 54), Ok(MsrAction::Done));
    assert_eq!(value(&state, AMD_LS_CFG), Ok(1 << 54));
    assert_eq!(value(&state, AMD_TSEG_ADDR), Ok(0));
    assert_eq!(value(&state, AMD_OSVW_ID_LENGTH), Ok(0));
    assert_eq!(value(&state, AMD_OSVW_STATUS), Ok(0));
}

#[test]
fn amd_legacy_performance_counters_read_zero_and_ignore_writes() {
    let mut amd = MsrState::new(Vendor::Amd);
    for msr in AMD_PERF_LEGACY_FIRST..=AMD_PERF_LEGACY_LAST {
        assert_eq!(value(&amd, msr), Ok(0), "{msr:#x}");
        assert_eq!(amd.write(msr, 0), Ok(MsrAction::Done), "{msr:#x}");
        assert_eq!(amd.write(msr, 0x0043_0076), Ok(MsrAction::Done), "{msr:#x}");
        assert_eq!(value(&amd, msr), Ok(0), "{msr:#x}: nothing counts");
    }
    // Intel has no such MSRs; the next AMD ones (SYSCFG aside) are not these.
    let mut intel = MsrState::new(Vendor::Intel);
    for msr in [AMD_PERF_LEGACY_FIRST, AMD_PERF_LEGACY_LAST] {
        assert_eq!(intel.read(msr), Err(GP), "{msr:#x}");
        assert_eq!(intel.write(msr, 0), Err(GP), "{msr:#x}");
    }
    assert_eq!(amd.read(AMD_PERF_LEGACY_LAST + 1), Err(GP));
}

#[test]
fn tsc_aux_and_machine_check() {
    let mut state = MsrState::new(Vendor::Amd);
    assert_eq!(state.tsc_aux(), 0, "reset value");
    assert_eq!(state.write(TSC_AUX, 3), Ok(MsrAction::LoadTscAux(3)));
    assert_eq!(value(&state, TSC_AUX), Ok(3));
    assert_eq!(state.tsc_aux(), 3);
    assert_eq!(
        state.write(TSC_AUX, 1 << 32),
        Err(GP),
        "upper half reserved"
    );
    assert_eq!(value(&state, IA32_MCG_CAP), Ok(0), "no banks");
    assert_eq!(state.write(IA32_MCG_CAP, 0), Err(GP), "read-only");
    assert_eq!(value(&state, IA32_MCG_STATUS), Ok(0));
    assert_eq!(state.write(IA32_MCG_STATUS, 0), Ok(MsrAction::Done));
    assert_eq!(state.write(IA32_MCG_STATUS, 4), Err(GP));
}

#[test]
fn unknown_and_hidden_msrs_fault() {
    for vendor in [Vendor::Amd, Vendor::Intel, Vendor::Other] {
        let mut state = MsrState::new(vendor);
        let hidden = [
            IA32_SPEC_CTRL,
            IA32_PRED_CMD,
            IA32_ARCH_CAPABILITIES,
            0xC1,        // IA32_PMC0
            0x186,       // IA32_PERFEVTSEL0
            0x38F,       // IA32_PERF_GLOBAL_CTRL
            0xC001_0200, // F15h PERF_CTL0
            0xC001_0114, // VM_CR
            0xC000_0104, // TSC_RATIO
            0x17B,       // MCG_CTL (MCG_CAP.MCG_CTL_P clear)
            0xFFFF_FFFF,
        ];
        for msr in hidden {
            assert_eq!(state.read(msr), Err(GP), "{msr:#x}");
            assert_eq!(state.write(msr, 0), Err(GP), "{msr:#x}");
        }
    }
}

#[test]
fn random_accesses_never_panic() {
    use proptest::prelude::*;
    proptest!(|(msr in prop_oneof![0u32..0x1000, 0xC000_0000u32..0xC000_0200,
                                   0xC001_0000u32..0xC001_1100, any::<u32>()],
                value in any::<u64>(), amd in any::<bool>())| {
        let vendor = if amd { Vendor::Amd } else { Vendor::Intel };
        let mut state = MsrState::new(vendor);
        let before = state.read(msr);
        match state.write(msr, value) {
            Err(_) => prop_assert_eq!(state.read(msr), before, "refused writes change nothing"),
            Ok(_) => { let _ = state.read(msr); }
        }
        let _ = efer_update(vendor, value, value.rotate_left(3), amd);
    });
}
