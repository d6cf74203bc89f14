//! The IVRS parser (`acpi::ivrs::parse`, AMD IOMMU 48882 3.x §5.2) and the lookups over what
//! it returns.
//!
//! Input: the table, header included (`parse` leaves the checksum to discovery). Every problem
//! is formatted; `unit_for` and `memory_for` are asked about the ends of every parsed range and
//! a few fixed IDs, and each answer is checked against the ranges.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numavisor_policy::acpi::ivrs;

fuzz_target!(|input: &[u8]| {
    let mut problems = Vec::new();
    let v = ivrs::parse(input, &mut problems);
    for p in &problems {
        let line = p.to_string();
        assert!(!line.contains('\n'), "{line}");
    }
    let mut ids = vec![0u16, 0x00A0, 0x0100, 0xFFFF];
    for unit in &v.units {
        for r in &unit.ranges {
            assert!(r.first <= r.last);
            ids.extend([r.first, r.last]);
        }
    }
    for m in &v.memory {
        assert!(m.first <= m.last && m.base <= m.limit);
    }
    for segment in 0..2 {
        for &id in &ids {
            if let Some((unit, alias)) = v.unit_for(segment, id) {
                let u = &v.units[unit];
                assert_eq!(u.segment, segment);
                assert!(u
                    .ranges
                    .iter()
                    .any(|r| r.first <= id && id <= r.last && r.alias == alias));
            }
            let _ = v.memory_for(segment, id);
        }
    }
});
