//! The DMAR parser (`acpi::dmar::parse`, Intel VT-d 4.1 §8) and the lookups over what it
//! returns.
//!
//! Input: the table, header included (`parse` leaves the checksum to discovery). Every problem
//! is formatted, and `unit_for` and `reserved_for` are asked about a few functions of a fake
//! bridge topology: function 0 of devices 0..8 is a bridge to bus `bus + device + 1`, whose
//! subordinate range ends two buses further.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numavisor_policy::acpi::dmar;

fn secondary(bus: u8, device: u8, function: u8) -> Option<u8> {
    (function == 0 && device < 8).then(|| bus.wrapping_add(device).wrapping_add(1))
}

fn subordinate(bus: u8, device: u8, function: u8) -> Option<(u8, u8)> {
    secondary(bus, device, function).map(|s| (s, s.saturating_add(2)))
}

fuzz_target!(|input: &[u8]| {
    let mut problems = Vec::new();
    let d = dmar::parse(input, &mut problems);
    for p in &problems {
        let line = p.to_string();
        assert!(!line.contains('\n'), "{line}");
    }
    for r in &d.reserved_memory {
        assert!(r.damaged || r.base <= r.limit);
    }
    for segment in 0..2 {
        for bus in [0u8, 1, 2, 3, 0x80, 0xFF] {
            for (device, function) in [(0, 0), (1, 0), (2, 1), (0x1F, 0), (0x1F, 7)] {
                if let Some(unit) =
                    d.unit_for(segment, bus, device, function, secondary, subordinate)
                {
                    assert_eq!(d.units[unit].segment, segment);
                }
                let _ = d.reserved_for(segment, bus, device, function, secondary, subordinate);
            }
        }
    }
    for unit in 0..d.units.len() {
        let _ = d.proximity_domain(unit);
    }
});
