//! System description table headers and the structure walk inside them (ACPI 6.5 §5.2.6,
//! §5.2.12, §5.2.16, §5.2.28).
//!
//! [`load_table`] accepts a table only if its 36-byte header and all `length` bytes are
//! readable, the length is sane and the checksum adds up. [`Structures`] walks the
//! type/length-prefixed structures that MADT, SRAT, HMAT, DMAR and IVRS hold; every step
//! advances by at least a structure header or stops, so a walk always terminates.

use alloc::vec::Vec;

use super::bytes::{checksum_ok, signature_at, u16_at, u32_at, u8_at};
use super::problem::{AcpiProblem, EntryFault, TableFault};
use super::{PhysicalMemory, MAX_TABLE_LENGTH};

/// Length of the common table header.
pub const SDT_HEADER_LENGTH: usize = 36;

/// The common header of every system description table (ACPI 6.5 §5.2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SdtHeader {
    pub signature: [u8; 4],
    pub length: u32,
    pub revision: u8,
    pub oem_id: [u8; 6],
    pub oem_table_id: [u8; 8],
    pub oem_revision: u32,
}

impl SdtHeader {
    /// Decode the header at the start of `bytes`, if there are 36 bytes.
    pub fn parse(bytes: &[u8]) -> Option<SdtHeader> {
        let header = bytes.get(..SDT_HEADER_LENGTH)?;
        Some(SdtHeader {
            signature: signature_at(header, 0),
            length: u32_at(header, 4)?,
            revision: u8_at(header, 8)?,
            oem_id: header.get(10..16)?.try_into().ok()?,
            oem_table_id: header.get(16..24)?.try_into().ok()?,
            oem_revision: u32_at(header, 24)?,
        })
    }
}

/// Read and verify the table at `address`: readable, `min_length ≤ length ≤ MAX_TABLE_LENGTH`,
/// checksum zero and, if `expected` is given, that signature. On failure the problem says why.
pub(crate) fn load_table(
    mem: &dyn PhysicalMemory,
    address: u64,
    expected: Option<[u8; 4]>,
    min_length: usize,
) -> Result<&[u8], AcpiProblem> {
    let unusable = |signature, fault| AcpiProblem::TableUnusable {
        signature,
        address,
        fault,
    };
    let expected_or = |found: [u8; 4]| expected.unwrap_or(found);
    let Some(header) = mem
        .read(address, SDT_HEADER_LENGTH)
        .and_then(SdtHeader::parse)
    else {
        return Err(unusable(
            expected_or(*b"????"),
            TableFault::HeaderUnreadable,
        ));
    };
    let signature = header.signature;
    if let Some(want) = expected {
        if signature != want {
            return Err(unusable(
                want,
                TableFault::WrongSignature { found: signature },
            ));
        }
    }
    let length = header.length;
    let min = min_length.max(SDT_HEADER_LENGTH);
    if (length as usize) < min {
        return Err(unusable(
            signature,
            TableFault::TooShort {
                length,
                minimum: min,
            },
        ));
    }
    if length as usize > MAX_TABLE_LENGTH {
        return Err(unusable(signature, TableFault::TooLong { length }));
    }
    let Some(bytes) = mem.read(address, length as usize) else {
        return Err(unusable(signature, TableFault::Unreadable { length }));
    };
    // A PhysicalMemory that hands back the wrong length must not make us index past it.
    let Some(bytes) = bytes.get(..length as usize) else {
        return Err(unusable(signature, TableFault::Unreadable { length }));
    };
    if !checksum_ok(bytes) {
        return Err(unusable(signature, TableFault::BadChecksum));
    }
    Ok(bytes)
}

/// How a table's structures begin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StructureHeader {
    /// MADT, SRAT: type u8 at 0, length u8 at 1.
    Byte,
    /// HMAT: type u16 at 0, reserved u16, length u32 at 4.
    Word,
    /// DMAR (Intel VT-d 4.1 §8.2): type u16 at 0, length u16 at 2.
    Dmar,
    /// IVRS (AMD IOMMU 48882 3.x §5.2.2): type u8 at 0, flags u8, length u16 at 2.
    Ivrs,
}

impl StructureHeader {
    fn size(self) -> usize {
        match self {
            StructureHeader::Byte => 2,
            StructureHeader::Word => 8,
            StructureHeader::Dmar | StructureHeader::Ivrs => 4,
        }
    }
}

/// One structure found by [`Structures`]: its position, type and bytes (header included).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Structure<'a> {
    pub index: usize,
    pub kind: u16,
    pub offset: usize,
    pub bytes: &'a [u8],
}

/// Walks the structures of `table` from `start`, recording problems as it meets them.
pub(crate) struct Structures<'a, 'p> {
    table: &'a [u8],
    signature: [u8; 4],
    form: StructureHeader,
    offset: usize,
    index: usize,
    done: bool,
    problems: &'p mut Vec<AcpiProblem>,
}

impl<'a, 'p> Structures<'a, 'p> {
    /// A walk over `table[start..]`.
    pub fn new(
        table: &'a [u8],
        start: usize,
        form: StructureHeader,
        problems: &'p mut Vec<AcpiProblem>,
    ) -> Self {
        Structures {
            table,
            signature: signature_at(table, 0),
            form,
            offset: start,
            index: 0,
            done: false,
            problems,
        }
    }

    /// Whether `s` holds at least `minimum` bytes; if not, record the problem and end the walk
    /// (a structure shorter than its type says its length cannot be trusted to find the next).
    pub fn fits(&mut self, s: &Structure<'_>, minimum: usize) -> bool {
        if s.bytes.len() >= minimum {
            return true;
        }
        let length = s.bytes.len() as u64;
        self.problem(s, EntryFault::ShorterThanType { length, minimum });
        self.done = true;
        false
    }

    /// Record a problem about structure `s` without ending the walk.
    pub fn problem(&mut self, s: &Structure<'_>, fault: EntryFault) {
        self.problems.push(AcpiProblem::Entry {
            table: self.signature,
            index: s.index,
            entry_type: s.kind,
            offset: s.offset,
            fault,
        });
    }

    /// Record a problem about the table as a whole.
    pub fn table_problem(&mut self, problem: AcpiProblem) {
        self.problems.push(problem);
    }
}

impl<'a> Iterator for Structures<'a, '_> {
    type Item = Structure<'a>;

    fn next(&mut self) -> Option<Structure<'a>> {
        if self.done || self.offset >= self.table.len() {
            return None;
        }
        let (offset, table_end) = (self.offset, self.table.len());
        let rest = table_end - offset;
        let header = match self.form {
            StructureHeader::Byte => u8_at(self.table, offset)
                .zip(u8_at(self.table, offset + 1))
                .map(|(t, l)| (u16::from(t), u64::from(l))),
            StructureHeader::Word => u16_at(self.table, offset)
                .zip(u32_at(self.table, offset + 4))
                .map(|(t, l)| (t, u64::from(l))),
            StructureHeader::Dmar => u16_at(self.table, offset)
                .zip(u16_at(self.table, offset + 2))
                .map(|(t, l)| (t, u64::from(l))),
            StructureHeader::Ivrs => u8_at(self.table, offset)
                .zip(u16_at(self.table, offset + 2))
                .map(|(t, l)| (u16::from(t), u64::from(l))),
        };
        let Some((kind, length)) = header else {
            self.done = true;
            self.problems.push(AcpiProblem::TrailingBytes {
                table: self.signature,
                offset,
                count: rest,
            });
            return None;
        };
        let here = Structure {
            index: self.index,
            kind,
            offset,
            bytes: &[],
        };
        if length < self.form.size() as u64 {
            self.done = true;
            self.problem(&here, EntryFault::BadLength { length });
            return None;
        }
        if length > rest as u64 {
            self.done = true;
            self.problem(&here, EntryFault::PastEnd { length, table_end });
            return None;
        }
        // length ≤ rest, so this cannot fail and offset + length ≤ table_end.
        let end = offset + length as usize;
        let bytes = self.table.get(offset..end)?;
        self.offset = end;
        self.index += 1;
        Some(Structure { bytes, ..here })
    }
}
