//! Host tests for the DMAR parser (Intel VT-d 4.1 §8) on synthetic tables.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::acpi::testkit::*;
use crate::acpi::EntryFault;

fn parsed(table: &[u8]) -> (Dmar, Vec<AcpiProblem>) {
    let mut problems = Vec::new();
    let dmar = parse(table, &mut problems);
    (dmar, problems)
}

/// Every problem's message: one console line naming the table.
fn messages(problems: &[AcpiProblem]) -> Vec<String> {
    let m: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    for line in &m {
        assert!(!line.contains('\n') && line.starts_with("DMAR"), "{line}");
    }
    m
}

/// PCI bridges of the fake machine: (bus, device, function, secondary, subordinate).
/// 00:01.0 root port → 01 switch upstream 01:00.0 → 02 downstream 02:01.0 → 03, endpoint
/// 03:00.0; 00:02.0 root port → bus 04.
const BRIDGES: [(u8, u8, u8, u8, u8); 4] = [
    (0, 1, 0, 1, 3),
    (1, 0, 0, 2, 3),
    (2, 1, 0, 3, 3),
    (0, 2, 0, 4, 4),
];

fn secondary(bus: u8, device: u8, function: u8) -> Option<u8> {
    BRIDGES
        .iter()
        .find(|b| (b.0, b.1, b.2) == (bus, device, function))
        .map(|b| b.3)
}

fn subordinate(bus: u8, device: u8, function: u8) -> Option<(u8, u8)> {
    BRIDGES
        .iter()
        .find(|b| (b.0, b.1, b.2) == (bus, device, function))
        .map(|b| (b.3, b.4))
}

fn unit_for(d: &Dmar, segment: u16, bus: u8, device: u8, function: u8) -> Option<usize> {
    d.unit_for(segment, bus, device, function, secondary, subordinate)
}

/// QEMU 7.2 `-device intel-iommu,intremap=on` on q35: one include-all unit at 0xFED90000
/// whose only scope is the I/O APIC, at QEMU's pseudo bus 0xFF, device 0.
#[test]
fn qemu_q35_intel_iommu() {
    let table = dmar(
        39,
        1,
        &[drhd(1, 0, 0xFED9_0000, &[scope(3, 0, 0xFF, &[(0, 0)])])],
    );
    let (d, problems) = parsed(&table);
    assert!(problems.is_empty(), "{:?}", messages(&problems));
    assert_eq!(d.host_address_width, 39);
    assert!(d.interrupt_remapping && !d.x2apic_opt_out && !d.dma_control_opt_in);
    assert_eq!(
        d.units,
        vec![Drhd {
            segment: 0,
            register_base: 0xFED9_0000,
            register_pages: 1,
            include_all: true,
            scopes: vec![DeviceScope {
                kind: ScopeKind::IoApic,
                enumeration_id: 0,
                start_bus: 0xFF,
                path: vec![PciPathStep {
                    device: 0,
                    function: 0
                }],
            }],
        }]
    );
    // Everything on segment 0 falls to the include-all unit; segment 1 has none.
    assert_eq!(unit_for(&d, 0, 0, 3, 0), Some(0));
    assert_eq!(unit_for(&d, 0, 0xFF, 0, 0), Some(0));
    assert_eq!(unit_for(&d, 1, 0, 3, 0), None);
    assert!(d.reserved_memory.is_empty() && d.skipped.is_empty());
}

/// The same machine with `device-iotlb=on`: an ATSR for all ports; and a client-style DMAR
/// with explicit endpoint scopes (the GPU unit) before the include-all unit, whose I/O APIC
/// and HPET sit at 00:1f.0 behind bus 0xF0 and 0.
#[test]
fn explicit_endpoint_scopes() {
    let table = dmar(
        39,
        5,
        &[
            drhd(0, 0, 0xFED9_0000, &[scope(1, 0, 0, &[(2, 0)])]),
            drhd(
                1,
                0,
                0xFED9_1000,
                &[
                    scope(3, 2, 0xF0, &[(0x1F, 0)]),
                    scope(4, 0, 0, &[(0x1F, 0)]),
                ],
            ),
            atsr(1, 0, &[]),
        ],
    );
    let (d, problems) = parsed(&table);
    assert!(problems.is_empty(), "{:?}", messages(&problems));
    assert!(d.interrupt_remapping && d.dma_control_opt_in);
    assert_eq!(d.units.len(), 2);
    assert_eq!(d.units[1].scopes[0].kind, ScopeKind::IoApic);
    assert_eq!(d.units[1].scopes[0].enumeration_id, 2);
    assert_eq!(d.units[1].scopes[1].kind, ScopeKind::Hpet);
    // 00:02.0 is the GPU's unit; the bus 0 device 2 function 1 is not named by it.
    assert_eq!(unit_for(&d, 0, 0, 2, 0), Some(0));
    assert_eq!(unit_for(&d, 0, 0, 2, 1), Some(1));
    assert_eq!(unit_for(&d, 0, 0, 0x1F, 0), Some(1));
    assert_eq!(
        d.ats,
        vec![Atsr {
            segment: 0,
            all_ports: true,
            scopes: vec![]
        }]
    );
}

/// A two-socket server: explicit units first, an include-all unit last for each segment,
/// an RMRR for the USB controllers, an ATSR, RHSAs, an ANDD, and a SATC (skipped).
fn server() -> Vec<u8> {
    dmar(
        46,
        1,
        &[
            drhd(
                0,
                0,
                0x9D7F_C000,
                &[scope(2, 0, 0, &[(1, 0)]), scope(1, 0, 0, &[(4, 0)])],
            ),
            drhd(
                1,
                0,
                0xAAFF_C000,
                &[
                    scope(3, 8, 0, &[(5, 4)]),
                    scope(4, 0, 0, &[(0x1F, 0)]),
                    scope(5, 1, 0, &[(0x15, 0)]),
                ],
            ),
            drhd(1, 1, 0xC5FF_C000, &[scope(3, 9, 0x80, &[(5, 4)])]),
            rmrr(
                0,
                0x6E2B_8000,
                0x6E2C_7FFF,
                &[scope(1, 0, 0, &[(0x14, 0)]), scope(1, 0, 0, &[(0x1A, 0)])],
            ),
            atsr(
                0,
                0,
                &[scope(2, 0, 0, &[(1, 0)]), scope(2, 0, 0, &[(2, 0)])],
            ),
            rhsa(0x9D7F_C000, 0),
            rhsa(0xAAFF_C000, 0),
            rhsa(0xC5FF_C000, 1),
            andd(1, b"\\_SB.PC00.I2C0"),
            dmar_structure(5, &[1, 0, 0, 0], &[scope(1, 0, 0, &[(0x10, 0)])]),
            dmar_structure(0x99, &[0; 4], &[]),
        ],
    )
}

#[test]
fn server_dmar() {
    let (d, problems) = parsed(&server());
    assert!(problems.is_empty(), "{:?}", messages(&problems));
    assert_eq!(d.host_address_width, 46);
    assert_eq!(d.units.len(), 3);
    assert_eq!(
        d.units.iter().map(|u| u.include_all).collect::<Vec<_>>(),
        vec![false, true, true]
    );
    assert_eq!(d.units[1].scopes[2].kind, ScopeKind::AcpiNamespace);
    assert_eq!(d.reserved_memory.len(), 1);
    let usb = &d.reserved_memory[0];
    assert_eq!(
        (usb.base, usb.limit, usb.damaged),
        (0x6E2B_8000, 0x6E2C_7FFF, false)
    );
    assert_eq!(d.ats.len(), 1);
    assert_eq!(d.ats[0].scopes.len(), 2);
    assert!(!d.ats[0].all_ports);
    assert_eq!(
        (0..4).map(|u| d.proximity_domain(u)).collect::<Vec<_>>(),
        vec![Some(0), Some(0), Some(1), None]
    );
    assert_eq!(
        d.namespace_devices,
        vec![Andd {
            device_number: 1,
            name: b"\\_SB.PC00.I2C0".to_vec()
        }]
    );
    let skipped: Vec<u16> = d.skipped.iter().map(|s| s.kind).collect();
    assert_eq!(skipped, vec![5, 0x99]);

    // Behind the 00:01.0 root port (bridge scope of unit 0), and the port itself.
    assert_eq!(unit_for(&d, 0, 3, 0, 0), Some(0));
    assert_eq!(unit_for(&d, 0, 0, 1, 0), Some(0));
    // 00:04.0 is an endpoint scope of unit 0; 00:14.0 falls to segment 0's include-all.
    assert_eq!(unit_for(&d, 0, 0, 4, 0), Some(0));
    assert_eq!(unit_for(&d, 0, 0, 0x14, 0), Some(1));
    assert_eq!(unit_for(&d, 1, 0x80, 0, 0), Some(2));
    assert_eq!(
        d.reserved_for(0, 0, 0x14, 0, secondary, subordinate),
        vec![usb]
    );
    assert!(d
        .reserved_for(0, 0, 0x14, 1, secondary, subordinate)
        .is_empty());
    assert!(d
        .reserved_for(1, 0, 0x14, 0, secondary, subordinate)
        .is_empty());
}

#[test]
fn resolve_follows_bridges() {
    let deep = DeviceScope {
        kind: ScopeKind::PciEndpoint,
        enumeration_id: 0,
        start_bus: 0,
        path: [(1, 0), (0, 0), (1, 0), (0, 0)]
            .iter()
            .map(|&(device, function)| PciPathStep { device, function })
            .collect(),
    };
    assert_eq!(deep.resolve(secondary), Some((3, 0, 0)));
    // A path through 00:07.0, which is no bridge.
    let lost = DeviceScope {
        path: vec![
            PciPathStep {
                device: 7,
                function: 0,
            },
            PciPathStep {
                device: 0,
                function: 0,
            },
        ],
        ..deep.clone()
    };
    assert_eq!(lost.resolve(secondary), None);
    let empty = DeviceScope {
        path: vec![],
        ..deep.clone()
    };
    assert_eq!(empty.resolve(secondary), None);
    let not_a_function = DeviceScope {
        path: vec![PciPathStep {
            device: 32,
            function: 0,
        }],
        ..deep
    };
    assert_eq!(not_a_function.resolve(secondary), None);
}

#[test]
fn unit_for_with_bridges() {
    let table = dmar(
        39,
        0,
        &[
            // 03:00.0 by its full path from bus 0.
            drhd(
                0,
                0,
                0x1000,
                &[scope(1, 0, 0, &[(1, 0), (0, 0), (1, 0), (0, 0)])],
            ),
            // Everything behind 00:02.0.
            drhd(0, 0, 0x2000, &[scope(2, 0, 0, &[(2, 0)])]),
            // An endpoint behind a bridge that does not exist.
            drhd(0, 0, 0x3000, &[scope(1, 0, 0, &[(7, 0), (0, 0)])]),
            drhd(1, 0, 0x4000, &[]),
        ],
    );
    let (d, problems) = parsed(&table);
    assert!(problems.is_empty(), "{:?}", messages(&problems));
    assert_eq!(unit_for(&d, 0, 3, 0, 0), Some(0));
    assert_eq!(unit_for(&d, 0, 4, 0, 0), Some(1));
    assert_eq!(unit_for(&d, 0, 4, 0x1F, 7), Some(1));
    assert_eq!(unit_for(&d, 0, 0, 2, 0), Some(1));
    // 03:00.1 and the other functions on bus 3 are no one's explicitly: include-all.
    assert_eq!(unit_for(&d, 0, 3, 0, 1), Some(3));
    assert_eq!(unit_for(&d, 0, 1, 0, 0), Some(3));
    // Unit 2's scope resolves to nothing, so it names nothing.
    assert_eq!(unit_for(&d, 0, 0, 7, 0), Some(3));
    assert_eq!(unit_for(&d, 1, 3, 0, 0), None);
}

#[test]
fn structure_framing_problems_end_the_walk() {
    let good = drhd(1, 0, 0xFED9_0000, &[]);
    for (bad, fault) in [
        (vec![0, 0, 0, 0], EntryFault::BadLength { length: 0 }),
        (vec![0, 0, 3, 0], EntryFault::BadLength { length: 3 }),
        (
            vec![0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            EntryFault::ShorterThanType {
                length: 12,
                minimum: 16,
            },
        ),
        (
            vec![1, 0, 200, 0],
            EntryFault::PastEnd {
                length: 200,
                table_end: 36 + 12 + 16 + 4 + 16,
            },
        ),
    ] {
        let table = dmar(39, 0, &[good.clone(), bad, good.clone()]);
        let (d, problems) = parsed(&table);
        messages(&problems);
        assert_eq!(d.units.len(), 1, "{fault:?}");
        assert!(
            matches!(problems[..], [AcpiProblem::Entry { index: 1, fault: f, .. }] if f == fault),
            "{problems:?}"
        );
    }
    // Too short for the fixed part, and a stray byte or two after the last structure.
    let (d, problems) = parsed(&dmar(39, 1, &[])[..40]);
    assert_eq!(d, Dmar::default());
    assert_eq!(
        problems,
        vec![AcpiProblem::FixedPartShort {
            table: *b"DMAR",
            length: 40,
            minimum: 48
        }]
    );
    let (d, problems) = parsed(&dmar(39, 0, &[good, vec![0, 0]]));
    assert_eq!(d.units.len(), 1);
    assert!(matches!(
        problems[..],
        [AcpiProblem::TrailingBytes { count: 2, .. }]
    ));
}

#[test]
fn damaged_scopes() {
    let ok = scope(1, 0, 0, &[(4, 0)]);
    let short = vec![1, 4, 0, 0];
    let odd = vec![1, 7, 0, 0, 0, 0, 4];
    let long = vec![1, 10, 0, 0, 0, 0, 4, 0];
    let cut = vec![1];
    let table = dmar(
        39,
        0,
        &[
            drhd(0, 0, 0x1000, &[ok.clone(), short.clone()]),
            drhd(0, 0, 0x2000, &[cut]),
            rmrr(0, 0x10_0000, 0x10_FFFF, &[ok.clone(), odd, ok.clone()]),
            atsr(0, 0, &[ok.clone(), long]),
            drhd(1, 0, 0x3000, &[ok]),
        ],
    );
    let (d, problems) = parsed(&table);
    let m = messages(&problems);
    assert_eq!(d.units.len(), 1, "{m:?}");
    assert_eq!(d.units[0].register_base, 0x3000);
    assert!(d.ats.is_empty());
    assert_eq!(d.reserved_memory.len(), 1);
    assert!(d.reserved_memory[0].damaged);
    assert_eq!(d.reserved_memory[0].scopes.len(), 1);
    let faults: Vec<(usize, DmarFault)> = problems
        .iter()
        .map(|p| match *p {
            AcpiProblem::Dmar { index, fault, .. } => (index, fault),
            _ => panic!("{p:?}"),
        })
        .collect();
    let first_scope = 48 + 16;
    assert_eq!(
        faults,
        vec![
            (
                0,
                DmarFault::Scope {
                    at: first_scope + 8,
                    damage: ScopeDamage::TooShort { length: 4 },
                    fallback: ScopeFallback::UnitDropped
                }
            ),
            (
                1,
                DmarFault::Scope {
                    at: 48 + 28 + 16,
                    damage: ScopeDamage::Truncated { room: 1 },
                    fallback: ScopeFallback::UnitDropped
                }
            ),
            (
                2,
                DmarFault::Scope {
                    at: 48 + 28 + 17 + 24 + 8,
                    damage: ScopeDamage::OddPath { length: 7 },
                    fallback: ScopeFallback::RegionKept
                }
            ),
            (
                3,
                DmarFault::Scope {
                    at: 48 + 28 + 17 + 47 + 8 + 8,
                    damage: ScopeDamage::PastStructure {
                        length: 10,
                        room: 8
                    },
                    fallback: ScopeFallback::AtsDropped
                }
            ),
        ]
    );
    assert!(
        m[0].contains("structure 0 (type 0) at offset 0x30"),
        "{}",
        m[0]
    );
    assert!(m[0].contains("unit ignored"), "{}", m[0]);
    assert!(m[2].contains("marked damaged"), "{}", m[2]);
}

#[test]
fn region_and_base_checks() {
    let table = dmar(
        39,
        0,
        &[
            drhd(0, 0, 0xFED9_0800, &[]),
            rmrr(0, 0x10_0800, 0x10_1FFE, &[]),
            rmrr(0, 0x20_0000, 0x1F_FFFF, &[]),
            rmrr(0, 0xFFFF_FFFF_FFFF_F000, u64::MAX, &[]),
        ],
    );
    let (d, problems) = parsed(&table);
    let m = messages(&problems);
    assert!(d.units.is_empty());
    let regions: Vec<(u64, u64, bool)> = d
        .reserved_memory
        .iter()
        .map(|r| (r.base, r.limit, r.damaged))
        .collect();
    assert_eq!(
        regions,
        vec![
            (0x10_0000, 0x10_1FFF, false),
            (0x20_0000, 0x1F_FFFF, true),
            (0xFFFF_FFFF_FFFF_F000, u64::MAX, false),
        ]
    );
    assert_eq!(m.len(), 3, "{m:?}");
    assert!(m[0].contains("register base 0xfed90800"), "{}", m[0]);
    assert!(m[1].contains("widened"), "{}", m[1]);
    assert!(m[2].contains("above its limit"), "{}", m[2]);
}

#[test]
fn duplicate_include_all_covers_nothing() {
    let table = dmar(
        39,
        0,
        &[
            drhd(1, 0, 0x1000, &[]),
            drhd(1, 1, 0x2000, &[]),
            drhd(1, 0, 0x3000, &[]),
        ],
    );
    let (d, problems) = parsed(&table);
    let m = messages(&problems);
    assert_eq!(
        problems,
        vec![AcpiProblem::Dmar {
            index: 2,
            entry_type: 0,
            offset: 48 + 32,
            fault: DmarFault::DuplicateIncludeAll {
                segment: 0,
                first: 0
            }
        }]
    );
    assert!(m[0].contains("neither covers"), "{}", m[0]);
    assert_eq!(d.units.len(), 3);
    assert_eq!(unit_for(&d, 0, 0, 3, 0), None);
    assert_eq!(unit_for(&d, 1, 0, 3, 0), Some(1));
}

#[test]
fn header_oddities() {
    let mut table = dmar(39, 0xFF, &[andd(2, b"")]);
    table[36] = 0xFF;
    // An ANDD without its NUL: cut the terminator off.
    let (d, problems) = parsed(&table);
    assert_eq!(d.host_address_width, 64);
    assert!(d.interrupt_remapping && d.x2apic_opt_out && d.dma_control_opt_in);
    assert_eq!(problems, vec![AcpiProblem::DmarAddressWidth { width: 256 }]);
    messages(&problems);

    let mut unterminated = andd(3, b"\\_SB.X");
    unterminated.pop();
    unterminated[2] -= 1;
    let (d, problems) = parsed(&dmar(39, 0, &[unterminated]));
    assert_eq!(d.namespace_devices[0].name, b"\\_SB.X");
    let m = messages(&problems);
    assert!(m[0].contains("no NUL"), "{m:?}");
}

/// The BDFs a unit's PCI scopes name, found by enumerating every function of the fake machine.
fn covered(unit: &Drhd) -> Vec<(u8, u8, u8)> {
    let mut out = Vec::new();
    for s in &unit.scopes {
        let Some(found) = s.resolve(secondary) else {
            continue;
        };
        match s.kind {
            ScopeKind::PciEndpoint => out.push(found),
            ScopeKind::PciBridge => {
                out.push(found);
                if let Some((first, last)) = subordinate(found.0, found.1, found.2) {
                    for bus in first..=last {
                        for dev in 0..32 {
                            for func in 0..8 {
                                out.push((bus, dev, func));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random bytes after a DMAR header never panic, and every problem is one line.
    #[test]
    fn random_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..400)) {
        let (d, problems) = parsed(&table(b"DMAR", 1, &body));
        messages(&problems);
        check(&d);
    }

    /// The server table with bytes overwritten or cut short.
    #[test]
    fn mutated_server_table_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        bdfs in prop::collection::vec((0u16..2, 0u8..6, 0u8..32, 0u8..8), 8),
    ) {
        let mut t = server();
        for (at, value) in edits {
            // The signature stays, so that every message names the DMAR.
            let i = 4 + at.index(t.len() - 4);
            t[i] = value;
        }
        t.truncate(36 + cut.index(t.len() - 35));
        let (d, problems) = parsed(&t);
        messages(&problems);
        check(&d);
        // unit_for agrees with enumerating what each unit covers.
        for (segment, bus, dev, func) in bdfs {
            let target = (bus, dev, func);
            let brute = d
                .units
                .iter()
                .position(|u| u.segment == segment && covered(u).contains(&target))
                .or_else(|| d.units.iter().position(|u| u.segment == segment && u.include_all));
            prop_assert_eq!(unit_for(&d, segment, bus, dev, func), brute);
        }
    }
}

/// What the parser promises whatever the bytes.
fn check(d: &Dmar) {
    // 0 only when the table was too short to hold the field.
    assert!(d.host_address_width <= 64);
    for u in &d.units {
        assert_eq!(u.register_base & 0xFFF, 0);
        assert!(u.register_pages.is_power_of_two() && u.register_pages <= 1 << 15);
        let others = d
            .units
            .iter()
            .filter(|o| o.include_all && o.segment == u.segment)
            .count();
        assert!(others <= 1);
    }
    for r in &d.reserved_memory {
        assert!(
            r.damaged || (r.base & 0xFFF == 0 && r.limit & 0xFFF == 0xFFF && r.base <= r.limit)
        );
    }
}
