//! Tests: hand-assembled AML, a DSDT captured from QEMU 7.2 (q35 with a pxb-pcie on node 1),
//! a server-like DSDT and SSDT compiled by iasl, and property tests over hostile bytes.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::reader::{NameString, Reader};
use super::*;

/// The DSDT QEMU 7.2 builds for `-machine q35 -device pxb-pcie,bus_nr=0x40,numa_node=1`
/// (`testdata/capture_dsdt.py`), whole, with its header.
const QEMU_PXB_DSDT: &[u8] = include_bytes!("testdata/qemu72-q35-pxb-DSDT.aml");
/// `testdata/server-dsdt.asl` and `server-ssdt.asl`, compiled by iasl 20200925.
const SERVER_DSDT: &[u8] = include_bytes!("testdata/server-dsdt.aml");
const SERVER_SSDT: &[u8] = include_bytes!("testdata/server-ssdt.aml");

/// A table's definition block body.
fn body(table: &[u8]) -> &[u8] {
    &table[36..]
}

// ---- A small AML assembler -------------------------------------------------------------

/// `body` framed by a PkgLength of exactly `width` bytes (§20.2.4).
fn pkg_w(width: usize, body: &[u8]) -> Vec<u8> {
    let total = body.len() + width;
    let mut out = match width {
        1 => {
            assert!(total < 64);
            vec![total as u8]
        }
        2..=4 => {
            assert!(total < 1 << (4 + 8 * (width - 1)));
            let mut v = vec![(((width - 1) as u8) << 6) | (total & 0xF) as u8];
            for i in 0..width - 1 {
                v.push((total >> (4 + 8 * i)) as u8);
            }
            v
        }
        _ => unreachable!(),
    };
    out.extend_from_slice(body);
    out
}

/// `body` framed by the shortest PkgLength that holds it.
fn pkg(body: &[u8]) -> Vec<u8> {
    let width = (1..=4)
        .find(|&w| {
            let total = body.len() + w;
            if w == 1 {
                total < 64
            } else {
                total < 1 << (4 + 8 * (w - 1))
            }
        })
        .unwrap();
    pkg_w(width, body)
}

fn seg(s: &str) -> [u8; 4] {
    let mut out = *b"____";
    out[..s.len()].copy_from_slice(s.as_bytes());
    out
}

/// A NameString from ASL-like text: `\`, `^`s, then dot-separated segs (none: NullName).
fn name(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = text;
    if let Some(r) = rest.strip_prefix('\\') {
        out.push(b'\\');
        rest = r;
    }
    while let Some(r) = rest.strip_prefix('^') {
        out.push(b'^');
        rest = r;
    }
    let segs: Vec<[u8; 4]> = rest.split('.').filter(|s| !s.is_empty()).map(seg).collect();
    match segs.len() {
        0 => out.push(0),
        1 => {}
        2 => out.push(0x2E),
        n => out.extend([0x2F, n as u8]),
    }
    for s in segs {
        out.extend(s);
    }
    out
}

/// The shortest integer encoding (§20.2.3).
fn int(v: u64) -> Vec<u8> {
    match v {
        0 => vec![0x00],
        1 => vec![0x01],
        2..=0xFF => vec![0x0A, v as u8],
        0x100..=0xFFFF => [&[0x0B][..], &(v as u16).to_le_bytes()].concat(),
        0x1_0000..=0xFFFF_FFFF => [&[0x0C][..], &(v as u32).to_le_bytes()].concat(),
        _ => [&[0x0E][..], &v.to_le_bytes()].concat(),
    }
}

fn string(s: &str) -> Vec<u8> {
    [&[0x0D][..], s.as_bytes(), &[0]].concat()
}

fn scope(path: &str, body: &[u8]) -> Vec<u8> {
    [&[0x10][..], &pkg(&[name(path), body.to_vec()].concat())].concat()
}

fn device(path: &str, body: &[u8]) -> Vec<u8> {
    device_w(0, path, body)
}

/// A Device whose PkgLength is `width` bytes (0: shortest).
fn device_w(width: usize, path: &str, body: &[u8]) -> Vec<u8> {
    let inner = [name(path), body.to_vec()].concat();
    let framed = if width == 0 {
        pkg(&inner)
    } else {
        pkg_w(width, &inner)
    };
    [&[0x5B, 0x82][..], &framed].concat()
}

fn name_obj(n: &str, value: &[u8]) -> Vec<u8> {
    [&[0x08][..], &name(n), value].concat()
}

fn method(n: &str, body: &[u8]) -> Vec<u8> {
    [
        &[0x14][..],
        &pkg(&[name(n), vec![0x00], body.to_vec()].concat()),
    ]
    .concat()
}

fn ret(value: &[u8]) -> Vec<u8> {
    [&[0xA4][..], value].concat()
}

fn buffer(bytes: &[u8]) -> Vec<u8> {
    [
        &[0x11][..],
        &pkg(&[int(bytes.len() as u64), bytes.to_vec()].concat()),
    ]
    .concat()
}

fn package(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut inner = vec![elements.len() as u8];
    for e in elements {
        inner.extend(e);
    }
    [&[0x12][..], &pkg(&inner)].concat()
}

/// The compressed EISA ID `EisaId("ABC1234")` stores (the inverse of `eisa_id_string`).
fn eisa(id: &str) -> u64 {
    let b = id.as_bytes();
    let l = |c: u8| u32::from(c - 0x40);
    let h = |c: u8| (c as char).to_digit(16).unwrap();
    let v = (l(b[0]) << 26)
        | (l(b[1]) << 21)
        | (l(b[2]) << 16)
        | (h(b[3]) << 12)
        | (h(b[4]) << 8)
        | (h(b[5]) << 4)
        | h(b[6]);
    u64::from(v.swap_bytes())
}

/// An Address Space Descriptor (§6.4.3.5) of `width` 2, 4 or 8 bytes for a bus range.
fn bus_descriptor(width: usize, min: u64, max: u64) -> Vec<u8> {
    let tag = match width {
        2 => 0x88,
        4 => 0x87,
        _ => 0x8A,
    };
    let field = |v: u64| v.to_le_bytes()[..width].to_vec();
    let body = [
        vec![2, 0x0C, 0],
        field(0),
        field(min),
        field(max),
        field(0),
        field(max - min + 1),
    ]
    .concat();
    [vec![tag], (body.len() as u16).to_le_bytes().to_vec(), body].concat()
}

/// A `ResourceTemplate` buffer: the descriptors and an End Tag.
fn template(descriptors: &[Vec<u8>]) -> Vec<u8> {
    let mut b: Vec<u8> = descriptors.concat();
    b.extend([0x79, 0x00]);
    buffer(&b)
}

/// A host bridge body: `_HID` PNP0A08, `_CID` PNP0A03, then `more`.
fn pcie_host(more: &[u8]) -> Vec<u8> {
    [
        name_obj("_HID", &int(eisa("PNP0A08"))),
        name_obj("_CID", &int(eisa("PNP0A03"))),
        more.to_vec(),
    ]
    .concat()
}

fn run(tables: &[&[u8]]) -> (Vec<HostBridge>, Vec<AmlProblem>) {
    let mut problems = Vec::new();
    let bridges = host_bridges(tables, &mut problems);
    (bridges, problems)
}

fn paths(bridges: &[HostBridge]) -> Vec<&str> {
    bridges.iter().map(|b| b.path.as_str()).collect()
}

// ---- EISA IDs -----------------------------------------------------------------------------

#[test]
fn eisa_ids_decode_like_acpica() {
    assert_eq!(&eisa_id_string(0x030A_D041), b"PNP0A03");
    assert_eq!(&eisa_id_string(0x080A_D041), b"PNP0A08");
    assert_eq!(eisa("PNP0A03"), 0x030A_D041);
    assert_eq!(eisa("PNP0A08"), 0x080A_D041);
    assert_eq!(&eisa_id_string(eisa("PNP0C0F") as u32), b"PNP0C0F");
    assert_eq!(&eisa_id_string(eisa("QEM1234") as u32), b"QEM1234");
}

// ---- PkgLength and NameString ---------------------------------------------------------------

#[test]
fn pkg_length_in_each_width() {
    for width in 1..=4 {
        let body = vec![0xAAu8; 40];
        let aml = pkg_w(width, &body);
        let r = Reader::new(&aml);
        let mut at = 0;
        assert_eq!(
            r.pkg_length(&mut at, aml.len()),
            Ok(aml.len()),
            "width {width}"
        );
        assert_eq!(at, width);
        // One byte short of what it claims: past the end, never a guess.
        let mut at = 0;
        let short = &aml[..aml.len() - 1];
        let r = Reader::new(short);
        assert!(matches!(
            r.pkg_length(&mut at, short.len()),
            Err(reader::Stop { at: 0, .. })
        ));
    }
    // The largest lengths each width holds.
    for (aml, len) in [
        (vec![0x3F], 63usize),
        (vec![0x4F, 0xFF], 0xFFF),
        (vec![0x8F, 0xFF, 0xFF], 0xF_FFFF),
        (vec![0xCF, 0xFF, 0xFF, 0xFF], 0xFFF_FFFF),
    ] {
        let r = Reader::new(&aml);
        assert_eq!(r.pkg_length(&mut 0, usize::MAX), Ok(len));
    }
    // A length smaller than its own encoding.
    let r = Reader::new(&[0x41, 0x00]);
    assert!(r.pkg_length(&mut 0, 2).is_err());
}

#[test]
fn devices_framed_by_each_pkg_length_width() {
    for width in 1..=4 {
        let dev = device_w(width, "PCI0", &pcie_host(&name_obj("_UID", &int(7))));
        let aml = scope("\\_SB", &dev);
        let (b, p) = run(&[&aml]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(paths(&b), ["\\_SB_.PCI0"], "width {width}");
        assert_eq!(b[0].uid, Some(7));
    }
}

fn parse_name(bytes: &[u8]) -> NameString {
    let mut r = Reader::new(bytes);
    let mut at = 0;
    let n = r.name_string(&mut at, bytes.len()).unwrap();
    assert_eq!(at, bytes.len());
    n
}

#[test]
fn name_strings_with_every_prefix() {
    let scope_path = [seg("_SB"), seg("PCI0"), seg("RP01")];
    let resolve = |text: &str| {
        parse_name(&name(text))
            .resolve(&scope_path, MAX_PATH_SEGS)
            .map(|p| {
                p.iter()
                    .map(|s| String::from_utf8(s.to_vec()).unwrap())
                    .collect::<Vec<_>>()
            })
    };
    assert_eq!(resolve("\\_SB.PC40").unwrap(), ["_SB_", "PC40"]);
    assert_eq!(resolve("\\").unwrap(), Vec::<String>::new());
    assert_eq!(resolve("FOO").unwrap(), ["_SB_", "PCI0", "RP01", "FOO_"]);
    assert_eq!(resolve("^FOO").unwrap(), ["_SB_", "PCI0", "FOO_"]);
    assert_eq!(resolve("^^A.B").unwrap(), ["_SB_", "A___", "B___"]);
    assert_eq!(
        resolve("A.B.C.D").unwrap(),
        ["_SB_", "PCI0", "RP01", "A___", "B___", "C___", "D___"]
    );
    assert_eq!(resolve("^^^").unwrap(), Vec::<String>::new());
    assert_eq!(resolve("^^^^X"), None, "above the root");
    // Encodings: DualNamePrefix, MultiNamePrefix, NullName.
    assert_eq!(name("A.B")[0], 0x2E);
    assert_eq!(&name("A.B.C")[..2], &[0x2F, 3]);
    assert_eq!(name("\\"), [b'\\', 0]);
    // A MultiNamePath of zero segs is legal and names the scope itself.
    assert_eq!(parse_name(&[0x2F, 0]).segs.len(), 0);
    // Bad characters and short input are stops, not panics.
    for bad in [
        &b"1ABC"[..],
        b"AB-C",
        b"\\",
        b"^^",
        b"\x2E_SB_PC",
        b"\x2F\x03_SB_",
    ] {
        let mut r = Reader::new(bad);
        assert!(r.name_string(&mut 0, bad.len()).is_err(), "{bad:?}");
    }
}

#[test]
fn names_place_devices_anywhere_in_the_tree() {
    let aml = [
        // Root scope through NullName.
        scope("\\", &scope("_SB", &device("PCI0", &pcie_host(&[])))),
        // A Device declared with a multi-seg path from the root scope.
        device("\\_SB.PCI0.HBX", &pcie_host(&[])),
        // A Device declared through ^ from inside another.
        scope(
            "\\_SB.PCI0",
            &device("^PC40", &pcie_host(&name_obj("_BBN", &int(0x40)))),
        ),
        // Dual and multi name paths.
        scope("_SB.PC40", &name_obj("_UID", &int(0x40))),
        name_obj("\\_SB.PC40._SEG", &int(0)),
        device("\\_SB.PC40.A.B.C", &[]),
    ]
    .concat();
    let (b, p) = run(&[&aml]);
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(
        paths(&b),
        ["\\_SB_.PCI0", "\\_SB_.PC40"],
        "HBX is below PCI0"
    );
    assert_eq!(
        (b[1].uid, b[1].segment, b[1].base_bus),
        (Some(0x40), Some(0), Some(0x40))
    );
}

// ---- Identification and values ---------------------------------------------------------------

#[test]
fn hid_and_cid_forms() {
    let aml = scope(
        "\\_SB",
        &[
            // String IDs.
            device("PCIA", &name_obj("_HID", &string("PNP0A03"))),
            // A _CID package of EISA ID and string.
            device(
                "PCIB",
                &[
                    name_obj("_HID", &string("QEMU0001")),
                    name_obj("_CID", &package(&[string("PNP0A08"), int(eisa("PNP0A03"))])),
                ]
                .concat(),
            ),
            // CXL.
            device("CXL0", &name_obj("_HID", &string("ACPI0016"))),
            // A _HID method returning a constant counts too.
            device("PCIC", &method("_HID", &ret(&int(eisa("PNP0A08"))))),
            // Not host bridges.
            device("LNKA", &name_obj("_HID", &int(eisa("PNP0C0F")))),
            device("ISA_", &name_obj("_ADR", &int(0x1F0000))),
            // A Scope with host bridge names that no Device declares is not a device.
            scope("NODV", &pcie_host(&[])),
        ]
        .concat(),
    );
    let (b, p) = run(&[&aml]);
    assert!(p.is_empty(), "{p:?}");
    let got: Vec<(&str, bool)> = b.iter().map(|b| (b.path.as_str(), b.pci_express)).collect();
    assert_eq!(
        got,
        [
            ("\\_SB_.CXL0", false),
            ("\\_SB_.PCIA", false),
            ("\\_SB_.PCIB", true),
            ("\\_SB_.PCIC", true)
        ]
    );
}

#[test]
fn bus_ranges_from_word_dword_and_qword_descriptors() {
    let io = vec![0x47, 0x01, 0xF8, 0x0C, 0xF8, 0x0C, 0x01, 0x08]; // a small IO descriptor
    let mem = {
        // A DWord memory range (type 0) first: not a bus range.
        let mut d = bus_descriptor(4, 0xA0000, 0xBFFFF);
        d[3] = 0;
        d
    };
    for (width, min, max) in [(2, 0x40, 0x41), (4, 0x80, 0xBF), (8, 0, 0xFF)] {
        let crs = template(&[io.clone(), mem.clone(), bus_descriptor(width, min, max)]);
        let aml = device("\\_SB.PCI0", &pcie_host(&name_obj("_CRS", &crs)));
        let (b, p) = run(&[&aml]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            b[0].bus_range,
            Some((min as u8, max as u8)),
            "width {width}"
        );
    }
    // A _CRS method whose body is Return (constant template) is that constant.
    let crs = method("_CRS", &ret(&template(&[bus_descriptor(2, 0, 0x3F)])));
    let (b, _) = run(&[&device("\\_SB.PCI0", &pcie_host(&crs))]);
    assert_eq!(b[0].bus_range, Some((0, 0x3F)));
    // A bus range beyond 8 bits, a _CRS method, a descriptor cut short: no range.
    for crs in [
        name_obj("_CRS", &template(&[bus_descriptor(4, 0, 0x1FF)])),
        method(
            "_CRS",
            &[ret(&template(&[bus_descriptor(2, 0, 0x3F)])), vec![0xA3]].concat(),
        ),
        name_obj("_CRS", &buffer(&bus_descriptor(2, 0, 0x3F)[..10])),
        name_obj("_CRS", &int(5)),
    ] {
        let aml = device("\\_SB.PCI0", &pcie_host(&crs));
        let (b, p) = run(&[&aml]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(b[0].bus_range, None);
    }
}

#[test]
fn pxm_declared_inherited_computed_or_none() {
    let aml = scope(
        "\\_SB",
        &[
            device("PCI0", &pcie_host(&name_obj("_PXM", &int(2)))),
            device("PCI1", &pcie_host(&method("_PXM", &ret(&int(5))))),
            // If (Local0) { Return (1) } Return (0): more than one Return of a constant.
            device(
                "PCI2",
                &pcie_host(&method(
                    "_PXM",
                    &[
                        vec![0xA0],
                        pkg(&[vec![0x60], ret(&int(1))].concat()),
                        ret(&int(0)),
                    ]
                    .concat(),
                )),
            ),
            device("PCI3", &pcie_host(&[])),
            device(
                "SCK1",
                &[
                    name_obj("_PXM", &int(7)),
                    device("NODE", &device("PCI4", &pcie_host(&[]))),
                ]
                .concat(),
            ),
            device(
                "SCK2",
                &[
                    method("_PXM", &[0x70, 0x01, 0x60]), // Store (1, Local0)
                    device("PCI5", &pcie_host(&[])),
                ]
                .concat(),
            ),
            // The low 32 bits, as Linux takes them.
            device("PCI6", &pcie_host(&name_obj("_PXM", &int(0x1_0000_0003)))),
        ]
        .concat(),
    );
    let (b, p) = run(&[&aml]);
    assert!(p.is_empty(), "{p:?}");
    let got: Vec<(&str, Proximity)> = b
        .iter()
        .map(|b| (b.path.as_str(), b.proximity.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("\\_SB_.PCI0", Proximity::Declared(2)),
            ("\\_SB_.PCI1", Proximity::Declared(5)),
            ("\\_SB_.PCI2", Proximity::Computed),
            ("\\_SB_.PCI3", Proximity::None),
            ("\\_SB_.PCI6", Proximity::Declared(3)),
            (
                "\\_SB_.SCK1.NODE.PCI4",
                Proximity::Inherited {
                    from: "\\_SB_.SCK1".into(),
                    pxm: 7
                }
            ),
            ("\\_SB_.SCK2.PCI5", Proximity::Computed),
        ]
    );
}

#[test]
fn sorted_by_segment_then_base_bus() {
    let host = |n: &str, seg: u64, bbn: u64| {
        device(
            n,
            &pcie_host(&[name_obj("_SEG", &int(seg)), name_obj("_BBN", &int(bbn))].concat()),
        )
    };
    let aml = scope(
        "\\_SB",
        &[
            host("PCIA", 1, 0),
            host("PCIB", 0, 0x80),
            host("PCIC", 0, 0),
        ]
        .concat(),
    );
    let (b, _) = run(&[&aml]);
    assert_eq!(paths(&b), ["\\_SB_.PCIC", "\\_SB_.PCIB", "\\_SB_.PCIA"]);
}

// ---- Problems ------------------------------------------------------------------------------

#[test]
fn an_unknown_opcode_ends_only_its_own_body() {
    let aml = scope(
        "\\_SB",
        &[
            // Store (One, Local0) at object level: not stepped over.
            device(
                "PCI0",
                &[pcie_host(&[0x70, 0x01, 0x60]), name_obj("_PXM", &int(1))].concat(),
            ),
            device("PCI1", &pcie_host(&name_obj("_PXM", &int(2)))),
        ]
        .concat(),
    );
    let (b, p) = run(&[&aml]);
    assert_eq!(p.len(), 1, "{p:?}");
    // The rest of PCI0 (its _PXM) is skipped; PCI1 is read.
    assert_eq!(
        (b[0].proximity.clone(), b[1].proximity.clone()),
        (Proximity::None, Proximity::Declared(2))
    );
    let AmlFault::Unreadable { why, resume } = p[0].what else {
        panic!("{p:?}")
    };
    assert_eq!(why, Unreadable::UnknownOpcode(0x70));
    assert_eq!(aml[p[0].offset], 0x70);
    assert!(resume > p[0].offset && resume < aml.len());
    let line = alloc::format!("{}", p[0]);
    assert!(
        line.starts_with(&alloc::format!(
            "AML offset {:#x}: opcode 0x70",
            p[0].offset
        )),
        "{line}"
    );
    assert!(!line.contains('\n'));

    // A method call at object level stops the body too (arguments unknown).
    let aml = device(
        "\\PCI0",
        &pcie_host(&[name("FOO_"), name_obj("_UID", &int(1))].concat()),
    );
    let (b, p) = run(&[&aml]);
    assert_eq!((b[0].uid, p.len()), (None, 1));
}

#[test]
fn conditionals_and_framed_objects_are_skipped_whole() {
    let aml = scope(
        "\\_SB",
        &[
            // If (One) { Name (_PXM, 1) } Else { Name (_PXM, 2) } at object level.
            [
                vec![0xA0],
                pkg(&[vec![0x01], name_obj("\\_SB.PCI0._PXM", &int(1))].concat()),
            ]
            .concat(),
            [vec![0xA1], pkg(&name_obj("\\_SB.PCI0._PXM", &int(2)))].concat(),
            // Field, PowerResource, ThermalZone with garbage inside.
            [vec![0x5B, 0x81], pkg(&[0xEE; 9])].concat(),
            [vec![0x5B, 0x84], pkg(&[0xEE; 70])].concat(),
            [vec![0x5B, 0x85], pkg(&[0xEE; 5000])].concat(),
            device("PCI0", &pcie_host(&[])),
        ]
        .concat(),
    );
    let (b, p) = run(&[&aml]);
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(b[0].proximity, Proximity::None);
}

#[test]
fn duplicates_keep_the_first() {
    let dsdt = device("\\_SB.PCI0", &pcie_host(&name_obj("_PXM", &int(1))));
    let ssdt = scope("\\_SB.PCI0", &name_obj("_PXM", &int(2)));
    let (b, p) = run(&[&dsdt, &ssdt]);
    assert_eq!(b[0].proximity, Proximity::Declared(1));
    assert_eq!(p.len(), 1);
    assert_eq!(
        (p[0].table, &p[0].what),
        (1, &AmlFault::Duplicate { name: seg("_PXM") })
    );
}

#[test]
fn pkg_lengths_past_their_container_end_the_container() {
    // PCI1's device claims to run past the \_SB scope: the scope stops there, PCI0 is kept.
    let pci0 = device("PCI0", &pcie_host(&[]));
    let mut pci1 = device("PCI1", &pcie_host(&[]));
    pci1[2] = 0x3F; // PkgLength 63, more than the bytes left
    let aml = scope("\\_SB", &[pci0, pci1].concat());
    let (b, p) = run(&[&aml]);
    assert_eq!(paths(&b), ["\\_SB_.PCI0"]);
    assert!(matches!(
        p[..],
        [AmlProblem {
            what: AmlFault::Unreadable {
                why: Unreadable::PkgLengthPastEnd { .. },
                ..
            },
            ..
        }]
    ));
}

#[test]
fn nesting_stops_at_the_depth_bound() {
    let mut aml = device("HOST", &pcie_host(&[]));
    for _ in 0..(MAX_DEPTH + 10) {
        aml = scope("S", &aml);
    }
    let (b, p) = run(&[&aml]);
    assert!(b.is_empty());
    assert!(matches!(
        p[..],
        [AmlProblem {
            what: AmlFault::TooDeep { .. },
            ..
        }]
    ));
    // Deep packages and operands too.
    let mut value = int(1);
    for _ in 0..(MAX_DEPTH + 10) {
        value = package(&[value]);
    }
    let aml = device("\\PCI0", &pcie_host(&name_obj("_UID", &value)));
    let (b, p) = run(&[&aml]);
    assert_eq!(b.len(), 1);
    assert_eq!(p.len(), 1);
}

// ---- Tables from QEMU and iasl --------------------------------------------------------------

#[test]
fn qemu_q35_with_a_pxb_on_node_1() {
    assert_eq!(&QEMU_PXB_DSDT[..4], b"DSDT");
    let (b, p) = run(&[body(QEMU_PXB_DSDT)]);
    assert!(
        p.is_empty(),
        "{:?}",
        p.iter().map(|p| alloc::format!("{p}")).collect::<Vec<_>>()
    );
    assert_eq!(
        b,
        [
            HostBridge {
                path: "\\_SB_.PCI0".into(),
                pci_express: true,
                uid: Some(0),
                segment: None,
                base_bus: None,
                bus_range: Some((0, 0x3F)),
                proximity: Proximity::None,
            },
            HostBridge {
                path: "\\_SB_.PC40".into(),
                pci_express: true,
                uid: Some(0x40),
                segment: None,
                base_bus: Some(0x40),
                bus_range: Some((0x40, 0x41)),
                proximity: Proximity::Declared(1),
            },
        ]
    );
}

#[test]
fn server_dsdt_and_ssdt() {
    assert_eq!(
        (&SERVER_DSDT[..4], &SERVER_SSDT[..4]),
        (&b"DSDT"[..], &b"SSDT"[..])
    );
    let (b, p) = run(&[body(SERVER_DSDT), body(SERVER_SSDT)]);
    assert!(
        p.is_empty(),
        "{:?}",
        p.iter().map(|p| alloc::format!("{p}")).collect::<Vec<_>>()
    );
    let got: Vec<_> = b
        .iter()
        .map(|b| {
            (
                b.path.as_str(),
                b.pci_express,
                b.uid,
                b.segment,
                b.base_bus,
                b.bus_range,
                b.proximity.clone(),
            )
        })
        .collect();
    let inherited = Proximity::Inherited {
        from: "\\_SB_.SCK1".into(),
        pxm: 2,
    };
    assert_eq!(
        got,
        [
            (
                "\\_SB_.PCI0",
                true,
                Some(0),
                Some(0),
                Some(0),
                Some((0, 0x3F)),
                Proximity::Declared(0)
            ),
            (
                "\\_SB_.PCI1",
                true,
                Some(1),
                None,
                Some(0x40),
                Some((0x40, 0x7F)),
                Proximity::Computed
            ),
            (
                "\\_SB_.PCI2",
                true,
                Some(2),
                None,
                Some(0x80),
                Some((0x80, 0xBF)),
                Proximity::Declared(3)
            ),
            (
                "\\_SB_.PCI3",
                true,
                Some(3),
                None,
                Some(0xC0),
                None,
                Proximity::Declared(1)
            ),
            (
                "\\_SB_.SCK1.PC10",
                true,
                Some(0x10),
                Some(1),
                Some(0),
                Some((0, 0xFF)),
                inherited
            ),
        ]
    );
    // Without the SSDT, PCI2 has no proximity and HB2 does not exist.
    let (b, p) = run(&[body(SERVER_DSDT)]);
    assert!(p.is_empty());
    assert_eq!(b[2].proximity, Proximity::None);
}

#[test]
fn work_is_linear_in_the_input() {
    for tables in [
        vec![body(QEMU_PXB_DSDT)],
        vec![body(SERVER_DSDT), body(SERVER_SSDT)],
    ] {
        let len: usize = tables.iter().map(|t| t.len()).sum();
        let (_, steps) = host_bridges_counted(&tables, &mut Vec::new());
        assert!(steps <= 4 * len + 64, "{steps} steps for {len} bytes");
    }
}

// ---- Hostile bytes ---------------------------------------------------------------------------

/// Run on `tables`, check what must hold whatever the bytes, and that the work is bounded.
fn check(tables: &[&[u8]]) {
    let mut problems = Vec::new();
    let (bridges, steps) = host_bridges_counted(tables, &mut problems);
    let len: usize = tables.iter().map(|t| t.len()).sum();
    assert!(steps <= 4 * len + 64, "{steps} steps for {len} bytes");
    for p in &problems {
        let line = alloc::format!("{p}");
        assert!(!line.contains('\n'));
        assert!(p.table < tables.len() && p.offset <= tables[p.table].len());
    }
    for w in bridges.windows(2) {
        assert!(w[0].path != w[1].path);
    }
}

#[test]
fn every_truncation_of_the_qemu_dsdt() {
    let aml = body(QEMU_PXB_DSDT);
    for n in 0..aml.len() {
        check(&[&aml[..n]]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes(tables in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..512), 0..4)) {
        let refs: Vec<&[u8]> = tables.iter().map(|t| t.as_slice()).collect();
        check(&refs);
    }

    #[test]
    fn random_bytes_opening_a_device(tail in prop::collection::vec(any::<u8>(), 0..512)) {
        // A valid Scope/Device frame around random contents reaches the object walk.
        let aml = scope("\\_SB", &device("PCI0", &[pcie_host(&[]), tail].concat()));
        check(&[&aml]);
    }

    #[test]
    fn mutated_tables(
        which in 0usize..3,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut tables: Vec<Vec<u8>> = match which {
            0 => vec![body(QEMU_PXB_DSDT).to_vec()],
            1 => vec![body(SERVER_DSDT).to_vec(), body(SERVER_SSDT).to_vec()],
            _ => vec![body(SERVER_SSDT).to_vec()],
        };
        for (index, value) in edits {
            let t = index.index(tables.len());
            let table = &mut tables[t];
            let at = index.index(table.len());
            table[at] = value;
        }
        let refs: Vec<&[u8]> = tables.iter().map(|t| t.as_slice()).collect();
        check(&refs);
    }
}
