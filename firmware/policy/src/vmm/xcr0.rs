//! XSETBV's rules for XCR0 (Intel SDM vol. 1 §13.3, vol. 2 XSETBV): what a guest may enable
//! in the one extended control register, given the state components the CPU supports
//! (CPUID.(EAX=0DH,ECX=0):EDX:EAX). A VMX guest's XSETBV always exits; the backend executes
//! it only after this check, so no write can fault in the host.

/// x87 (bit 0, always set), SSE (1), AVX (2), MPX BNDREGS/BNDCSR (3, 4), AVX-512 opmask,
/// ZMM_Hi256, Hi16_ZMM (5..7) (SDM vol. 1 §13.3 and XSETBV's #GP conditions).
const X87: u64 = 1 << 0;
const SSE: u64 = 1 << 1;
const AVX: u64 = 1 << 2;
const MPX: u64 = (1 << 3) | (1 << 4);
const AVX512: u64 = (1 << 5) | (1 << 6) | (1 << 7);
/// PKRU (bit 9) has no pairing rule.
const PKRU: u64 = 1 << 9;
/// AMX TILECFG and TILEDATA (bits 17, 18): both or none.
const AMX: u64 = (1 << 17) | (1 << 18);
/// The components whose rules are checked here; XSETBV of any other bit is refused, so no
/// rule this module does not know can make the host's XSETBV fault.
const KNOWN: u64 = X87 | SSE | AVX | MPX | AVX512 | PKRU | AMX;

/// Whether `XSETBV` with ECX = `index` and EDX:EAX = `value` is valid on a CPU whose
/// supported user state components are `supported` (else the guest gets #GP).
pub fn valid_xsetbv(index: u32, value: u64, supported: u64) -> bool {
    index == 0
        && value & X87 != 0
        && value & !supported == 0
        && value & !KNOWN == 0
        && (value & AVX == 0 || value & SSE != 0)
        && (value & MPX == 0 || value & MPX == MPX)
        && (value & AVX512 == 0 || (value & AVX512 == AVX512 && value & AVX != 0))
        && (value & AMX == 0 || value & AMX == AMX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u64 = 0x6_03FF;

    #[test]
    fn the_architectural_rules_hold() {
        assert!(valid_xsetbv(0, X87 | SSE | AVX, ALL));
        assert!(valid_xsetbv(0, X87, ALL));
        assert!(!valid_xsetbv(1, X87, ALL), "only XCR0 exists");
        assert!(!valid_xsetbv(0, SSE, ALL), "x87 must stay on");
        assert!(!valid_xsetbv(0, X87 | AVX, ALL), "AVX needs SSE");
        assert!(
            !valid_xsetbv(0, X87 | SSE | AVX, X87 | SSE),
            "unsupported component"
        );
        assert!(!valid_xsetbv(0, X87 | (1 << 3), ALL), "MPX is both or none");
        assert!(
            !valid_xsetbv(0, X87 | SSE | (1 << 5), ALL),
            "AVX-512 is all or none"
        );
        assert!(
            !valid_xsetbv(0, X87 | SSE | AVX512, ALL),
            "AVX-512 needs AVX"
        );
        assert!(valid_xsetbv(0, X87 | SSE | AVX | AVX512, ALL));
        assert!(
            !valid_xsetbv(0, X87 | SSE | AVX | (1 << 18), ALL),
            "AMX is both or none"
        );
        assert!(valid_xsetbv(0, X87 | SSE | AVX | AMX | PKRU, ALL));
        assert!(
            !valid_xsetbv(0, X87 | (1 << 8), u64::MAX),
            "unknown rules are refused"
        );
    }
}
