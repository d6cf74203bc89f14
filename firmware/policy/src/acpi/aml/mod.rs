//! PCI host bridges and their NUMA proximity, read statically from the AML of the DSDT and
//! SSDTs (ACPI 6.5 §20, the AML grammar; §6.2.14 `_PXM`; §6.5.5 `_BBN`; §6.5.6 `_SEG`).
//!
//! Why our own reader: the `acpi` crate's AML interpreter builds only on nightly, and the
//! workspace pins stable 1.95. We also need far less than an interpreter — which Devices are
//! host bridges and what a few of their named objects hold — and a reader this narrow can keep
//! the promise the rest of [`crate::acpi`] keeps for firmware bytes: never panic, never hang.
//! Every read is bounds-checked against the enclosing object's PkgLength; nesting stops at
//! [`MAX_DEPTH`]; every loop moves forward; the work done is linear in the input.
//!
//! What it reads: the TermList of each table (§20.2.5.1), entering `Scope` and `Device`
//! bodies and merging them by absolute path across tables (so `Scope(\_SB.PC40)` in an SSDT
//! extends the DSDT's device). `Name` and `Method` declarations of `_HID`, `_CID`, `_UID`,
//! `_SEG`, `_BBN`, `_PXM` and `_CRS` are recorded. No method is executed: a method whose body
//! is exactly `Return (constant)` counts as that constant; any other is *computed*, which we
//! report as such rather than guess. The other declarations are stepped over: by their
//! PkgLength (Field, IndexField, BankField, Processor, PowerResource, ThermalZone, and `If`,
//! `Else`, `While` at object level — whatever a conditional declares is not seen), or
//! operand by operand (OperationRegion, Mutex, Event, External, Alias, the CreateField
//! family, DataRegion). An opcode outside that set — a method call or a Type 1/2 opcode run at
//! load time — ends the reading of the Scope or Device body holding it (its PkgLength says
//! where that ends) with an [`AmlProblem`], and the walk goes on after it: we never guess a
//! length.
//!
//! `testdata/` holds what the tests read: the DSDT QEMU 7.2 builds for q35 with a pxb-pcie
//! bound to node 1 (`capture_dsdt.py`), and a server-like DSDT and SSDT compiled by iasl from
//! the `.asl` beside them.
//!
//! Offsets in problems count from the start of the AML passed in, i.e. of the definition
//! block body after the table's 36-byte header.

mod namespace;
mod reader;
mod resource;
#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use namespace::{Namespace, Node, Walker};
use reader::{Data, Seg};

use super::bytes::Ascii;

/// Scope, Device, package and operand nesting beyond this is not followed: the object is
/// skipped by its PkgLength (real tables nest a handful of levels).
pub const MAX_DEPTH: usize = 64;

/// Absolute paths longer than this many NameSegs are treated as malformed.
pub const MAX_PATH_SEGS: usize = 128;

/// A PCI host bridge the tables declare: a Device whose `_HID` or `_CID` is PNP0A03 (PCI),
/// PNP0A08 (PCI Express) or ACPI0016 (CXL), with no such Device above it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostBridge {
    /// Its absolute namespace path, NameSegs as stored (padded with `_`): `\_SB_.PC40`.
    pub path: String,
    /// PNP0A08 is among its `_HID` and `_CID`.
    pub pci_express: bool,
    /// `_UID` when it is an integer constant.
    pub uid: Option<u64>,
    /// `_SEG` when it is an integer constant (absent means segment 0, §6.5.6).
    pub segment: Option<u64>,
    /// `_BBN` when it is an integer constant.
    pub base_bus: Option<u64>,
    /// The bus number range in `_CRS`'s first bus-number Address Space Descriptor
    /// (§6.4.3.5), when `_CRS` is a `Name` with a buffer (or a method that only returns a
    /// constant one).
    pub bus_range: Option<(u8, u8)>,
    pub proximity: Proximity,
}

/// Where a host bridge's proximity domain comes from (§6.2.14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proximity {
    /// Its own `_PXM` constant.
    Declared(u32),
    /// No `_PXM` of its own: the nearest ancestor's constant one, at path `from`.
    Inherited { from: String, pxm: u32 },
    /// Its `_PXM` (or, lacking one, its nearest ancestor's) is a method we do not evaluate.
    Computed,
    /// Neither it nor any ancestor has a `_PXM`.
    None,
}

/// Something in the AML the reader could not use, and what it skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmlProblem {
    /// Index of the table in the slice passed to [`host_bridges`] (0: the DSDT).
    pub table: usize,
    /// Offset in that table's AML (after its 36-byte header).
    pub offset: usize,
    pub what: AmlFault,
}

/// What was wrong, and where reading went on (`resume`, an offset in the same table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmlFault {
    /// Bytes the reader cannot step over: the rest of the enclosing body (or of the object,
    /// when its PkgLength had been read) up to `resume` is skipped.
    Unreadable { why: Unreadable, resume: usize },
    /// Nested deeper than [`MAX_DEPTH`]: skipped up to `resume`.
    TooDeep { resume: usize },
    /// A name whose `^` prefixes climb above the root, or whose path exceeds
    /// [`MAX_PATH_SEGS`]: the object (up to `resume`) is skipped.
    BadPath { resume: usize },
    /// A second definition of an object we keep (`_PXM`, `_HID`, …) at the same path; the
    /// first is kept.
    Duplicate { name: [u8; 4] },
}

/// Why bytes could not be stepped over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// An opcode this reader does not step over (`0x5Bxx` for extended ones; a name's first
    /// byte for a method call at object level).
    UnknownOpcode(u16),
    /// The object runs past the end of the one enclosing it.
    Truncated,
    /// A PkgLength shorter than its own encoding (§20.2.4).
    BadPkgLength,
    /// A PkgLength reaching `end`, past the enclosing object's `limit`.
    PkgLengthPastEnd { end: usize, limit: usize },
    /// A NameSeg with a character outside `A-Z`, `0-9`, `_` (or a leading digit).
    BadNameSeg([u8; 4]),
}

impl fmt::Display for AmlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The table is named by whoever holds the problem (`AcpiProblem::Aml`).
        write!(f, "AML offset {:#x}: ", self.offset)?;
        match &self.what {
            AmlFault::Unreadable { why, resume } => {
                write!(f, "{why}; skipped up to offset {resume:#x}")
            }
            AmlFault::TooDeep { resume } => write!(
                f,
                "nested deeper than {MAX_DEPTH} levels; skipped up to offset {resume:#x}"
            ),
            AmlFault::BadPath { resume } => write!(
                f,
                "name climbs above the root or is too long; object skipped up to offset \
                 {resume:#x}"
            ),
            AmlFault::Duplicate { name } => write!(
                f,
                "{} defined again; the first definition is kept",
                Ascii(name)
            ),
        }
    }
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Unreadable::UnknownOpcode(op) => write!(f, "opcode {op:#x} not read"),
            Unreadable::Truncated => f.write_str("object runs past its container"),
            Unreadable::BadPkgLength => f.write_str("PkgLength shorter than its encoding"),
            Unreadable::PkgLengthPastEnd { end, limit } => write!(
                f,
                "PkgLength ends at {end:#x}, past its container's end {limit:#x}"
            ),
            Unreadable::BadNameSeg(seg) => write!(f, "bad NameSeg \"{}\"", Ascii(&seg)),
        }
    }
}

/// The seven characters of a compressed EISA ID (§6.1.5 `_HID`): the integer `EisaId()`
/// stores, read as little-endian bytes, is big-endian: three 5-bit letters (`'@' + n`) and
/// four hex digits. As ACPICA's `AcpiExEisaIdToString`: PNP0A03 ↔ 0x030AD041.
pub fn eisa_id_string(id: u32) -> [u8; 7] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let v = id.swap_bytes();
    let letter = |shift: u32| 0x40 + ((v >> shift) & 0x1F) as u8;
    let hex = |shift: u32| HEX[((v >> shift) & 0xF) as usize];
    [
        letter(26),
        letter(21),
        letter(16),
        hex(12),
        hex(8),
        hex(4),
        hex(0),
    ]
}

/// The PCI host bridges the tables declare, sorted by segment then base bus (absent `_SEG`
/// counts as 0; absent `_BBN` as the `_CRS` bus range's start, else 0) then path.
///
/// `tables`: the AML of the DSDT then each SSDT, in the order the OS loads them, each without
/// its 36-byte header. Whatever cannot be read becomes an [`AmlProblem`] in `problems`.
pub fn host_bridges(tables: &[&[u8]], problems: &mut Vec<AmlProblem>) -> Vec<HostBridge> {
    host_bridges_counted(tables, problems).0
}

/// [`host_bridges`], and the steps the reader took (the tests bound them by the input size).
fn host_bridges_counted(
    tables: &[&[u8]],
    problems: &mut Vec<AmlProblem>,
) -> (Vec<HostBridge>, usize) {
    let mut walker = Walker::new(problems);
    for (index, aml) in tables.iter().enumerate() {
        walker.table(index, aml);
    }
    let mut steps = walker.steps;
    let nodes = walker.nodes;
    let mut bridges = Vec::new();
    for (path, node) in &nodes {
        steps += 1;
        if !node.device || !is_host_bridge(node) {
            continue;
        }
        // A host bridge below another is not a root (a PCI-to-PCI bridge should have _ADR,
        // not a host bridge _HID, but firmware varies).
        let nested = (1..path.len()).any(|n| {
            nodes
                .get(&path[..n])
                .is_some_and(|up| up.device && is_host_bridge(up))
        });
        if nested {
            continue;
        }
        let crs = match &node.crs {
            Some(Data::Buffer(b)) => resource::bus_range(b, &mut steps),
            _ => None,
        };
        bridges.push(HostBridge {
            path: path_string(path),
            pci_express: ids(node).any(|id| id.is(b"PNP0A08")),
            uid: integer(&node.uid),
            segment: integer(&node.seg),
            base_bus: integer(&node.bbn),
            bus_range: crs,
            proximity: proximity(&nodes, path),
        });
    }
    bridges.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    (bridges, steps)
}

fn sort_key(b: &HostBridge) -> (u64, u64, &str) {
    let bus = b
        .base_bus
        .or(b.bus_range.map(|(min, _)| u64::from(min)))
        .unwrap_or(0);
    (b.segment.unwrap_or(0), bus, &b.path)
}

fn integer(value: &Option<Data<'_>>) -> Option<u64> {
    match value {
        Some(Data::Integer(v)) => Some(*v),
        _ => None,
    }
}

/// One ID as bytes: an EISA ID integer decoded, a string as it is.
#[derive(Clone, Copy)]
enum Id<'a> {
    Eisa([u8; 7]),
    Str(&'a [u8]),
}

impl Id<'_> {
    fn is(&self, name: &[u8]) -> bool {
        match self {
            Id::Eisa(e) => e.as_slice() == name,
            Id::Str(s) => *s == name,
        }
    }
}

fn id_of<'a>(d: &'a Data<'_>) -> Option<Id<'a>> {
    match d {
        Data::Integer(v) => u32::try_from(*v).ok().map(|v| Id::Eisa(eisa_id_string(v))),
        Data::String(s) => Some(Id::Str(s)),
        _ => None,
    }
}

/// The IDs in `_HID` and `_CID` (which may be a package of them, §6.1.2).
fn ids<'a>(node: &'a Node<'_>) -> impl Iterator<Item = Id<'a>> + 'a {
    let hid = node.hid.iter().filter_map(id_of);
    let cid = node.cid.iter().flat_map(|c| match c {
        Data::Package(items) => items.iter().filter_map(id_of).collect::<Vec<_>>(),
        other => id_of(other).into_iter().collect(),
    });
    hid.chain(cid)
}

fn is_host_bridge(node: &Node<'_>) -> bool {
    ids(node).any(|id| id.is(b"PNP0A03") || id.is(b"PNP0A08") || id.is(b"ACPI0016"))
}

/// A `_PXM` value as a domain. Like Linux (`acpi_get_pxm`), only the low 32 bits count.
fn pxm_value(d: &Data<'_>) -> Option<Proximity> {
    match d {
        Data::Integer(v) => Some(Proximity::Declared(*v as u32)),
        Data::Computed => Some(Proximity::Computed),
        // Anything else is not a proximity: as if there were no _PXM.
        _ => None,
    }
}

/// Its own `_PXM`, else the nearest ancestor's (§6.2.14: "the OS uses the _PXM of the
/// closest ancestor"), whatever kind of object that ancestor is.
fn proximity(nodes: &Namespace<'_>, path: &[Seg]) -> Proximity {
    for n in (0..=path.len()).rev() {
        let Some(found) = nodes.get(&path[..n]) else {
            continue;
        };
        match found.pxm.as_ref().and_then(pxm_value) {
            Some(Proximity::Declared(pxm)) if n < path.len() => {
                return Proximity::Inherited {
                    from: path_string(&path[..n]),
                    pxm,
                };
            }
            Some(p) => return p,
            None => {}
        }
    }
    Proximity::None
}

/// `\` then the NameSegs joined by `.`.
fn path_string(path: &[Seg]) -> String {
    let mut s = String::from("\\");
    for (i, seg) in path.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        // NameSegs are checked ASCII (A-Z, 0-9, _) when read.
        s.extend(seg.iter().map(|&c| c as char));
    }
    s
}
