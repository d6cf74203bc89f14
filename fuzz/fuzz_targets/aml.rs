//! The AML reader (`acpi::aml::host_bridges`) over DSDT/SSDT definition block bodies.
//!
//! Input: a list of tables, each `length: u32 LE, bytes[length]` (a short last table takes what
//! is left), passed in order as the DSDT then SSDTs, without their 36-byte headers. Checks that
//! every problem names a table passed in and an offset inside it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numavisor_policy::acpi::aml;

fuzz_target!(|input: &[u8]| {
    let mut tables: Vec<&[u8]> = Vec::new();
    let mut rest = input;
    while rest.len() >= 4 {
        let length = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let bytes = &rest[4..];
        let bytes = &bytes[..length.min(bytes.len())];
        rest = &rest[4 + bytes.len()..];
        tables.push(bytes);
    }
    let mut problems = Vec::new();
    let bridges = aml::host_bridges(&tables, &mut problems);
    for p in &problems {
        assert!(p.table < tables.len() && p.offset <= tables[p.table].len());
        let _ = p.to_string();
    }
    for b in &bridges {
        assert!(b.path.starts_with('\\'));
    }
});
