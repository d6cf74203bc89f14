//! What can be wrong with the firmware's ACPI tables (ACPI 6.5 §5.2), and what we did about it.
//!
//! Discovery never fails: it records an [`AcpiProblem`] and takes a safe fallback. Each
//! problem's `Display` names the table, where in it, and the fallback, in one line for the
//! console: `SRAT: entry 3 (type 1) at offset 0x60 runs past the table end (0x58); entry
//! ignored`.

use core::fmt;

use super::bytes::Ascii;
use super::RootTableKind;

/// One thing wrong with the tables, with the fallback taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcpiProblem {
    /// The RSDP cannot be used, so no table is: one domain, only the boot CPU.
    Rsdp { address: u64, fault: RsdpFault },
    /// A revision ≥ 2 RSDP whose extended part is bad: the XSDT is not trusted, the RSDT is.
    RsdpExtendedUnusable { address: u64, fault: RsdpFault },
    /// The root table (RSDT or XSDT) cannot be used.
    RootUnusable {
        kind: RootTableKind,
        fallback: RootFallback,
    },
    /// Root entry `index` holds address 0.
    RootEntryNull { kind: RootTableKind, index: usize },
    /// The root table's entry area is not a whole number of entries; the tail is ignored.
    RootTrailingBytes { kind: RootTableKind, count: usize },
    /// A table cannot be used at all.
    TableUnusable {
        signature: [u8; 4],
        address: u64,
        fault: TableFault,
    },
    /// A second table with a signature we parse; the first usable one is kept.
    DuplicateTable {
        signature: [u8; 4],
        address: u64,
        kept: u64,
    },
    /// A structure inside MADT, SRAT, HMAT, DMAR or IVRS is malformed.
    Entry {
        table: [u8; 4],
        index: usize,
        entry_type: u16,
        offset: usize,
        fault: EntryFault,
    },
    /// Bytes after the last whole structure, too few to hold a structure header.
    TrailingBytes {
        table: [u8; 4],
        offset: usize,
        count: usize,
    },
    /// An SRAT memory range whose end does not fit in 64 bits.
    MemoryRangeWraps {
        index: usize,
        base: u64,
        length: u64,
    },
    /// The SLIT is unusable: distances fall back to 10 local / 20 remote.
    Slit(SlitFault),
    /// A boot module starting with an overridable signature is not a usable table: the
    /// firmware's table (if any) is used.
    OverrideRejected {
        /// Physical address of the module.
        module: u64,
        signature: [u8; 4],
        fault: OverrideFault,
    },
    /// An MCFG allocation that cannot be used: its segment's buses in that range are not
    /// enumerated.
    Mcfg {
        index: usize,
        segment: u16,
        base: u64,
        buses: (u8, u8),
        fault: McfgFault,
    },
    /// Part of a definition block's AML could not be read (what was skipped is named); host
    /// bridges declared there are not seen.
    Aml {
        signature: [u8; 4],
        address: u64,
        problem: super::aml::AmlProblem,
    },
    /// A table shorter than the fixed part before its structures (DMAR, IVRS): nothing in it
    /// is used.
    FixedPartShort {
        table: [u8; 4],
        length: usize,
        minimum: usize,
    },
    /// The DMAR's host address width (field + 1) is above 64 bits: taken as 64.
    DmarAddressWidth { width: u16 },
    /// A DMAR remapping structure, framed correctly, is wrong inside (Intel VT-d 4.1 §8).
    Dmar {
        index: usize,
        entry_type: u16,
        offset: usize,
        fault: DmarFault,
    },
    /// An IVRS block, framed correctly, is wrong inside (AMD IOMMU 48882 3.x §5.2).
    Ivrs {
        index: usize,
        block_type: u8,
        offset: usize,
        fault: IvrsFault,
    },
}

/// What was wrong with a device scope (Intel VT-d 4.1 §8.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeDamage {
    /// Fewer than two bytes left in the structure: no room for a type and length.
    Truncated { room: usize },
    /// Length below the 6-byte scope header.
    TooShort { length: u8 },
    /// Length beyond the bytes left in its structure.
    PastStructure { length: u8, room: usize },
    /// The path is not a whole number of (device, function) pairs.
    OddPath { length: u8 },
}

/// What was done with a DMAR structure whose device scopes are damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeFallback {
    /// DRHD: dropped, so the devices it would cover count as covered by no unit.
    UnitDropped,
    /// RMRR: kept with the scopes before the damage, marked damaged.
    RegionKept,
    /// ATSR: dropped, so no root port it lists is taken to support ATS.
    AtsDropped,
}

/// Why a DMAR remapping structure was dropped or changed (Intel VT-d 4.1 §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarFault {
    /// The device scope at table offset `at` is malformed; the scopes after it are dropped.
    Scope {
        at: usize,
        damage: ScopeDamage,
        fallback: ScopeFallback,
    },
    /// A DRHD register base not 4 KiB aligned: the unit is dropped.
    RegisterBaseUnaligned { base: u64 },
    /// An RMRR whose base or limit + 1 is not 4 KiB aligned: widened to whole pages.
    RegionUnaligned { base: u64, limit: u64 },
    /// An RMRR whose base is above its limit: kept, marked damaged.
    RegionInverted { base: u64, limit: u64 },
    /// A second INCLUDE_PCI_ALL DRHD for `segment` (the first is structure `first`): neither
    /// keeps the flag.
    DuplicateIncludeAll { segment: u16, first: usize },
    /// An ANDD object name without its NUL: taken to the end of the structure.
    NameUnterminated,
}

/// Why an IVRS block, device entry or memory definition was dropped or changed (AMD IOMMU
/// 48882 3.x §5.2). `at` is a table offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IvrsFault {
    /// A start-of-range entry that no end-of-range entry closes: the range is dropped.
    RangeWithoutEnd { at: usize },
    /// An end-of-range entry with no start before it: ignored.
    EndWithoutStart { at: usize },
    /// A range whose end device ID is below its start: dropped.
    RangeInverted { at: usize, first: u16, last: u16 },
    /// A variable-length entry type we cannot size: the block's remaining entries are dropped.
    UnknownEntry { at: usize, entry_type: u8 },
    /// An entry running past its block: the block's remaining entries are dropped.
    EntryPastEnd {
        at: usize,
        entry_type: u8,
        length: usize,
        room: usize,
    },
    /// A second IVHD of the same type for one IOMMU (segment and base): ignored, block `first`
    /// is used.
    DuplicateBlock { first: usize },
    /// An IVMD whose start or length is not 4 KiB aligned: widened to whole pages.
    MemoryUnaligned { start: u64, length: u64 },
    /// An IVMD whose block wraps past 2^64: taken to end there.
    MemoryWraps { start: u64, length: u64 },
    /// An IVMD of length 0: ignored.
    MemoryEmpty { start: u64 },
    /// An IVMD device range whose end is below its start: the two are swapped.
    DeviceRangeInverted { first: u16, last: u16 },
}

/// Why an MCFG allocation was left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum McfgFault {
    /// Its end bus is below its start bus.
    BusesBackwards,
    /// Its base is not 1 MiB aligned (each bus has 1 MiB of configuration space).
    Unaligned,
    /// Its configuration space runs past 2^64.
    Wraps,
    /// An earlier allocation of its segment decodes some of its buses.
    Overlaps { start_bus: u8, end_bus: u8 },
}

/// Why a boot module was not used as a table override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverrideFault {
    /// The module is shorter than a table header.
    ShorterThanHeader { module_bytes: u64 },
    /// The table's length field claims more bytes than the module holds.
    LongerThanModule { length: u32, module_bytes: u64 },
    /// The table fails the checks every table must pass.
    Table(TableFault),
    /// An earlier module already overrides this signature.
    Duplicate { kept: u64 },
}

/// Why an RSDP was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsdpFault {
    Unreadable,
    BadSignature,
    BadChecksum,
    /// The revision ≥ 2 length field is below 36 or absurd.
    BadLength(u32),
}

/// What discovery does when a root table is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootFallback {
    /// The XSDT was bad; the RSDT is used instead.
    UseRsdt,
    /// Nothing else to use: no tables.
    NoTables,
}

/// Why a whole table was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFault {
    /// The header (36 bytes) cannot be read.
    HeaderUnreadable,
    /// `length` bytes from the table's address cannot be read.
    Unreadable { length: u32 },
    /// The length field is below the table's fixed header.
    TooShort { length: u32, minimum: usize },
    /// The length field is beyond any sane table (see [`super::MAX_TABLE_LENGTH`]).
    TooLong { length: u32 },
    /// The bytes do not sum to zero.
    BadChecksum,
    /// A root pointer led to a table with another signature.
    WrongSignature { found: [u8; 4] },
}

/// Why a structure inside a table was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryFault {
    /// Its length would take it past the table's end: the walk stops.
    PastEnd { length: u64, table_end: usize },
    /// Its length is smaller than a structure header (0 or 1 for MADT/SRAT): the walk stops.
    BadLength { length: u64 },
    /// Its length is shorter than its type's fixed layout: the walk stops.
    ShorterThanType { length: u64, minimum: usize },
    /// Its counts describe more data than its length holds (HMAT): the structure is ignored.
    ListsOverrun { needed: Option<u64>, length: u64 },
}

/// Why the SLIT was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlitFault {
    /// The table is too short for its 8-byte count.
    NoCount,
    /// Zero localities.
    NoLocalities,
    /// `localities²` bytes (`needed`, `None` when it overflows) do not fit in `available`.
    TooShort {
        localities: u64,
        needed: Option<u64>,
        available: usize,
    },
    /// A diagonal entry other than 10.
    BadDiagonal { locality: usize, value: u8 },
    /// An off-diagonal entry of 10 or less.
    BadDistance { from: usize, to: usize, value: u8 },
}

impl fmt::Display for AcpiProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AcpiProblem::Rsdp { address, fault } => {
                write!(f, "RSDP at {address:#x}: {fault}; no ACPI tables used")
            }
            AcpiProblem::RsdpExtendedUnusable { address, fault } => write!(
                f,
                "RSDP at {address:#x}: extended part: {fault}; XSDT ignored, RSDT used"
            ),
            AcpiProblem::RootUnusable { kind, fallback } => match fallback {
                RootFallback::UseRsdt => write!(f, "{kind} unusable; falling back to the RSDT"),
                RootFallback::NoTables => write!(f, "{kind} unusable; no ACPI tables used"),
            },
            AcpiProblem::RootEntryNull { kind, index } => {
                write!(f, "{kind}: entry {index} is a null address; skipped")
            }
            AcpiProblem::RootTrailingBytes { kind, count } => {
                write!(
                    f,
                    "{kind}: {count} bytes after the last whole entry; ignored"
                )
            }
            AcpiProblem::TableUnusable {
                signature,
                address,
                fault,
            } => {
                write!(
                    f,
                    "{} at {address:#x}: {fault}; table not used",
                    Ascii(&signature)
                )
            }
            AcpiProblem::DuplicateTable {
                signature,
                address,
                kept,
            } => write!(
                f,
                "another {} at {address:#x}; ignored, the one at {kept:#x} is used",
                Ascii(&signature)
            ),
            AcpiProblem::Entry {
                table,
                index,
                entry_type,
                offset,
                fault,
            } => write!(
                f,
                "{}: entry {index} (type {entry_type}) at offset {offset:#x} {fault}",
                Ascii(&table)
            ),
            AcpiProblem::TrailingBytes {
                table,
                offset,
                count,
            } => write!(
                f,
                "{}: {count} stray bytes at offset {offset:#x} after the last entry; ignored",
                Ascii(&table)
            ),
            AcpiProblem::MemoryRangeWraps {
                index,
                base,
                length,
            } => write!(
                f,
                "SRAT: entry {index} memory range at {base:#x} of length {length:#x} \
                 wraps past 2^64; entry ignored"
            ),
            AcpiProblem::Slit(fault) => {
                write!(
                    f,
                    "SLIT: {fault}; distances fall back to 10 local / 20 remote"
                )
            }
            AcpiProblem::OverrideRejected {
                module,
                signature,
                fault,
            } => write!(
                f,
                "boot module at {module:#x} ({}): {fault}; not used as an override",
                Ascii(&signature)
            ),
            AcpiProblem::Mcfg {
                index,
                segment,
                base,
                buses: (start, end),
                fault,
            } => write!(
                f,
                "MCFG allocation {index} (segment {segment}, buses {start:#04x}-{end:#04x}, base {base:#x}): {fault}; those buses are not enumerated"
            ),
            AcpiProblem::Aml {
                signature,
                address,
                ref problem,
            } => write!(f, "{} at {address:#x}: {problem}", Ascii(&signature)),
            AcpiProblem::FixedPartShort {
                table,
                length,
                minimum,
            } => write!(
                f,
                "{}: {length} bytes, shorter than its {minimum}-byte fixed part; table not used",
                Ascii(&table)
            ),
            AcpiProblem::DmarAddressWidth { width } => write!(
                f,
                "DMAR: host address width of {width} bits is above 64; taken as 64"
            ),
            AcpiProblem::Dmar {
                index,
                entry_type,
                offset,
                fault,
            } => write!(
                f,
                "DMAR: structure {index} (type {entry_type}) at offset {offset:#x}: {fault}"
            ),
            AcpiProblem::Ivrs {
                index,
                block_type,
                offset,
                fault,
            } => write!(
                f,
                "IVRS: block {index} (type {block_type:#x}) at offset {offset:#x}: {fault}"
            ),
        }
    }
}

impl fmt::Display for RsdpFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RsdpFault::Unreadable => f.write_str("not readable"),
            RsdpFault::BadSignature => f.write_str("no \"RSD PTR \" signature"),
            RsdpFault::BadChecksum => f.write_str("checksum does not add up to zero"),
            RsdpFault::BadLength(len) => write!(f, "length {len} is not a valid RSDP length"),
        }
    }
}

impl fmt::Display for OverrideFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OverrideFault::ShorterThanHeader { module_bytes } => {
                write!(f, "{module_bytes} bytes, shorter than a table header")
            }
            OverrideFault::LongerThanModule {
                length,
                module_bytes,
            } => write!(
                f,
                "table length {length} exceeds the module's {module_bytes} bytes"
            ),
            OverrideFault::Table(fault) => write!(f, "{fault}"),
            OverrideFault::Duplicate { kept } => {
                write!(f, "the module at {kept:#x} already overrides it")
            }
        }
    }
}

impl fmt::Display for TableFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TableFault::HeaderUnreadable => f.write_str("header not readable"),
            TableFault::Unreadable { length } => write!(f, "{length} bytes not readable"),
            TableFault::TooShort { length, minimum } => {
                write!(
                    f,
                    "length {length} is shorter than its {minimum}-byte header"
                )
            }
            TableFault::TooLong { length } => write!(
                f,
                "length {length:#x} exceeds the {:#x}-byte cap",
                super::MAX_TABLE_LENGTH
            ),
            TableFault::BadChecksum => f.write_str("checksum does not add up to zero"),
            TableFault::WrongSignature { found } => {
                write!(f, "signature is \"{}\"", Ascii(&found))
            }
        }
    }
}

impl fmt::Display for EntryFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EntryFault::PastEnd { length, table_end } => write!(
                f,
                "of length {length} runs past the table end ({table_end:#x}); entry ignored"
            ),
            EntryFault::BadLength { length } => {
                write!(f, "has length {length}; rest of the table ignored")
            }
            EntryFault::ShorterThanType { length, minimum } => write!(
                f,
                "has length {length}, shorter than the {minimum} its type needs; \
                 rest of the table ignored"
            ),
            EntryFault::ListsOverrun {
                needed: Some(needed),
                length,
            } => write!(
                f,
                "needs {needed} bytes for its lists but has length {length}; entry ignored"
            ),
            EntryFault::ListsOverrun {
                needed: None,
                length,
            } => write!(
                f,
                "has list counts that overflow (length {length}); entry ignored"
            ),
        }
    }
}

impl fmt::Display for SlitFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SlitFault::NoCount => f.write_str("too short to hold its locality count"),
            SlitFault::NoLocalities => f.write_str("zero localities"),
            SlitFault::TooShort {
                localities,
                needed: Some(needed),
                available,
            } => write!(
                f,
                "{localities} localities need {needed} matrix bytes, the table has {available}"
            ),
            SlitFault::TooShort {
                localities,
                needed: None,
                ..
            } => {
                write!(f, "{localities} localities is absurd")
            }
            SlitFault::BadDiagonal { locality, value } => {
                write!(f, "distance {locality}->{locality} is {value}, not 10")
            }
            SlitFault::BadDistance { from, to, value } => {
                write!(f, "distance {from}->{to} is {value}, not above 10")
            }
        }
    }
}

impl fmt::Display for ScopeDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ScopeDamage::Truncated { room } => {
                write!(f, "is cut off by its structure's end ({room} byte left)")
            }
            ScopeDamage::TooShort { length } => {
                write!(f, "has length {length}, below the 6-byte scope header")
            }
            ScopeDamage::PastStructure { length, room } => write!(
                f,
                "of length {length} runs past its structure ({room} bytes left)"
            ),
            ScopeDamage::OddPath { length } => {
                write!(
                    f,
                    "has length {length}: its path is not whole (device, function) pairs"
                )
            }
        }
    }
}

impl fmt::Display for ScopeFallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScopeFallback::UnitDropped => {
                "unit ignored: the devices it would cover count as covered by no unit"
            }
            ScopeFallback::RegionKept => {
                "later scopes dropped; region kept with the scopes before, marked damaged"
            }
            ScopeFallback::AtsDropped => {
                "ATS report ignored: no port it lists is taken to support ATS"
            }
        })
    }
}

impl fmt::Display for DmarFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DmarFault::Scope {
                at,
                damage,
                fallback,
            } => write!(f, "device scope at offset {at:#x} {damage}; {fallback}"),
            DmarFault::RegisterBaseUnaligned { base } => write!(
                f,
                "register base {base:#x} is not 4 KiB aligned; unit ignored: \
                 the devices it would cover count as covered by no unit"
            ),
            DmarFault::RegionUnaligned { base, limit } => write!(
                f,
                "reserved region {base:#x}..={limit:#x} is not whole 4 KiB pages; \
                 widened to whole pages"
            ),
            DmarFault::RegionInverted { base, limit } => write!(
                f,
                "reserved region base {base:#x} is above its limit {limit:#x}; \
                 kept, marked damaged"
            ),
            DmarFault::DuplicateIncludeAll { segment, first } => write!(
                f,
                "another INCLUDE_PCI_ALL unit for segment {segment} (structure {first} is one); \
                 neither covers the segment's unlisted devices"
            ),
            DmarFault::NameUnterminated => f.write_str(
                "ACPI object name has no NUL terminator; name taken to the structure end",
            ),
        }
    }
}

impl fmt::Display for IvrsFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IvrsFault::RangeWithoutEnd { at } => write!(
                f,
                "device entry at offset {at:#x} starts a range no end entry closes; range dropped"
            ),
            IvrsFault::EndWithoutStart { at } => write!(
                f,
                "device entry at offset {at:#x} ends a range never started; entry ignored"
            ),
            IvrsFault::RangeInverted { at, first, last } => write!(
                f,
                "range ended at offset {at:#x} runs backwards ({first:#06x} to {last:#06x}); \
                 range dropped"
            ),
            IvrsFault::UnknownEntry { at, entry_type } => write!(
                f,
                "device entry at offset {at:#x} has unknown variable-length type {entry_type}; \
                 rest of the block's entries ignored"
            ),
            IvrsFault::EntryPastEnd {
                at,
                entry_type,
                length,
                room,
            } => write!(
                f,
                "device entry at offset {at:#x} (type {entry_type}) of length {length} runs \
                 past its block ({room} bytes left); rest of the block's entries ignored"
            ),
            IvrsFault::DuplicateBlock { first } => write!(
                f,
                "same IOMMU and type as block {first}; ignored, block {first} used"
            ),
            IvrsFault::MemoryUnaligned { start, length } => write!(
                f,
                "memory block {start:#x} + {length:#x} is not whole 4 KiB pages; \
                 widened to whole pages"
            ),
            IvrsFault::MemoryWraps { start, length } => write!(
                f,
                "memory block {start:#x} + {length:#x} wraps past 2^64; taken to end there"
            ),
            IvrsFault::MemoryEmpty { start } => {
                write!(f, "memory block at {start:#x} has length 0; ignored")
            }
            IvrsFault::DeviceRangeInverted { first, last } => write!(
                f,
                "device range {first:#06x} to {last:#06x} runs backwards; \
                 taken as {last:#06x} to {first:#06x}"
            ),
        }
    }
}

impl fmt::Display for McfgFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            McfgFault::BusesBackwards => f.write_str("its end bus is below its start bus"),
            McfgFault::Unaligned => f.write_str("its base is not 1 MiB aligned"),
            McfgFault::Wraps => f.write_str("its range runs past 2^64"),
            McfgFault::Overlaps { start_bus, end_bus } => write!(
                f,
                "an earlier allocation already decodes buses {start_bus:#04x}-{end_bus:#04x}"
            ),
        }
    }
}
