//! Host tests for boot-module table overrides ([`super::overrides`]).

use alloc::string::ToString;
use alloc::vec::Vec;

use super::testkit::*;
use super::*;

/// Where the tests put modules (away from the testkit's tables).
const MODULE_BASE: u64 = 0x80_0000;

fn module_srat() -> Vec<u8> {
    srat(
        3,
        &[
            cpu_affinity(0, 0, 1),
            cpu_affinity(1, 1, 1),
            memory_affinity(0, 0, 1 << 29, 1),
            memory_affinity(1, 1 << 29, 1 << 29, 1),
        ],
    )
}

fn module_slit() -> Vec<u8> {
    slit(2, &[10, 21, 21, 10])
}

/// Discovery on `firmware` tables with `modules` placed one per 64 KiB from [`MODULE_BASE`].
fn run(firmware: Vec<Vec<u8>>, modules: &[Vec<u8>]) -> AcpiFindings {
    let (mut image, rsdp) = Machine::new(firmware).image();
    let mut candidates = Vec::new();
    for (index, bytes) in modules.iter().enumerate() {
        let address = MODULE_BASE + 0x1_0000 * index as u64;
        image.insert(address, bytes.clone());
        candidates.push(OverrideCandidate {
            address,
            length: bytes.len() as u64,
        });
    }
    discover_with_overrides(&image, rsdp, &candidates)
}

fn messages(f: &AcpiFindings) -> Vec<alloc::string::String> {
    f.problems.iter().map(|p| p.to_string()).collect()
}

fn signatures(f: &AcpiFindings) -> Vec<[u8; 4]> {
    f.tables.iter().map(|t| t.signature).collect()
}

#[test]
fn modules_add_tables_the_firmware_lacks() {
    // Bochs's BIOS: a MADT, no SRAT, no SLIT.
    let f = run(
        vec![madt(&[lapic(0, 0, 1), lapic(1, 1, 1)])],
        &[module_srat(), module_slit()],
    );
    assert!(f.problems.is_empty(), "{:?}", messages(&f));
    assert_eq!(signatures(&f), [*b"APIC", *b"SRAT", *b"SLIT"]);
    assert_eq!(
        f.overrides,
        [
            TableOverride {
                signature: *b"SRAT",
                module: MODULE_BASE,
                replaced: None
            },
            TableOverride {
                signature: *b"SLIT",
                module: MODULE_BASE + 0x1_0000,
                replaced: None
            },
        ]
    );
    assert_eq!(f.srat.as_ref().unwrap().memory.len(), 2);
    assert_eq!(f.slit.as_ref().unwrap().distance(0, 1), Some(21));
}

#[test]
fn a_module_replaces_the_firmware_table_in_its_place() {
    let firmware_srat = srat(
        3,
        &[cpu_affinity(0, 0, 1), memory_affinity(0, 0, 1 << 30, 1)],
    );
    let f = run(
        vec![
            firmware_srat.clone(),
            madt(&[lapic(0, 0, 1)]),
            firmware_srat,
        ],
        &[module_srat()],
    );
    assert!(f.problems.is_empty(), "{:?}", messages(&f));
    // The override takes the first SRAT's place; the second firmware SRAT goes too.
    assert_eq!(signatures(&f), [*b"SRAT", *b"APIC"]);
    assert_eq!(f.tables[0].address, MODULE_BASE);
    assert_eq!(
        f.overrides,
        [TableOverride {
            signature: *b"SRAT",
            module: MODULE_BASE,
            replaced: Some(Machine::table_address(0))
        }]
    );
    assert_eq!(f.srat.as_ref().unwrap().cpus.len(), 2);
}

#[test]
fn other_modules_are_left_alone() {
    let f = run(
        vec![madt(&[lapic(0, 0, 1)])],
        &[
            b"\x7fELF not a table".to_vec(),
            Vec::new(),
            table(b"FACP", 1, &[0; 8]),
        ],
    );
    assert!(f.problems.is_empty(), "{:?}", messages(&f));
    assert!(f.overrides.is_empty());
    assert_eq!(signatures(&f), [*b"APIC"]);
}

#[test]
fn bad_modules_are_problems_and_the_firmware_table_stays() {
    let firmware_srat = srat(
        3,
        &[cpu_affinity(0, 0, 1), memory_affinity(0, 0, 1 << 30, 1)],
    );
    let mut bad_checksum = module_srat();
    bad_checksum[9] ^= 0x55;
    let mut truncated = module_slit();
    truncated.truncate(40);
    let short = b"SRATxx".to_vec();
    let f = run(
        vec![firmware_srat, madt(&[lapic(0, 0, 1)])],
        &[bad_checksum, truncated, short, module_srat(), module_srat()],
    );
    let messages = messages(&f);
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert!(messages[0].contains("SRAT") && messages[0].contains("checksum"));
    assert!(messages[1].contains("SLIT") && messages[1].contains("exceeds the module's 40 bytes"));
    assert!(messages[2].contains("shorter than a table header"));
    assert!(messages[3].contains("already overrides it"));
    assert!(messages
        .iter()
        .all(|m| m.contains("not used as an override")));
    // The fourth module (the first good one) replaced the firmware SRAT.
    assert_eq!(f.overrides.len(), 1);
    assert_eq!(f.overrides[0].module, MODULE_BASE + 0x3_0000);
    assert!(f.slit.is_none());
}

#[test]
fn overrides_apply_even_without_usable_firmware_tables() {
    let image = MemoryImage::new().with(MODULE_BASE, module_srat());
    let f = discover_with_overrides(
        &image,
        0xE_0000,
        &[OverrideCandidate {
            address: MODULE_BASE,
            length: module_srat().len() as u64,
        }],
    );
    assert!(matches!(f.problems[..], [AcpiProblem::Rsdp { .. }]));
    assert_eq!(f.overrides.len(), 1);
    assert!(f.srat.is_some());
}

#[test]
fn modules_outside_readable_memory_are_skipped() {
    let (image, rsdp) = Machine::new(vec![madt(&[lapic(0, 0, 1)])]).image();
    let f = discover_with_overrides(
        &image,
        rsdp,
        &[OverrideCandidate {
            address: u64::MAX - 2,
            length: u64::MAX,
        }],
    );
    assert!(f.problems.is_empty() && f.overrides.is_empty());
}
