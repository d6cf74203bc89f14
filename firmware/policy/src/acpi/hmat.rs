//! The Heterogeneous Memory Attribute Table (ACPI 6.5 §5.2.28).
//!
//! After the 36-byte header and 4 reserved bytes come structures with a u16 type and a u32
//! length: type 0 memory proximity domain attributes, type 1 system locality latency and
//! bandwidth information, type 2 memory side cache information. A type 1 structure whose
//! initiator/target counts describe more than its length holds is ignored on its own (its
//! length is still trusted to find the next structure).

use alloc::vec::Vec;

use super::bytes::{u16_at, u32_at, u64_at, u8_at};
use super::problem::{AcpiProblem, EntryFault};
use super::sdt::{StructureHeader, Structures, SDT_HEADER_LENGTH};

/// Bytes before the first structure.
pub const HMAT_FIXED_LENGTH: usize = SDT_HEADER_LENGTH + 4;

/// Type 0: which initiator a memory domain is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryProximity {
    pub flags: u16,
    /// The attached initiator's domain, when flags bit 0 says it is valid.
    pub initiator: Option<u32>,
    /// The memory's domain (always valid from HMAT revision 2; flags bit 1 before).
    pub memory: Option<u32>,
}

/// What a type 1 structure's entries measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HmatDataType {
    AccessLatency,
    ReadLatency,
    WriteLatency,
    AccessBandwidth,
    ReadBandwidth,
    WriteBandwidth,
    /// A value this parser does not know.
    Other(u8),
}

impl HmatDataType {
    fn from_raw(raw: u8) -> HmatDataType {
        match raw {
            0 => HmatDataType::AccessLatency,
            1 => HmatDataType::ReadLatency,
            2 => HmatDataType::WriteLatency,
            3 => HmatDataType::AccessBandwidth,
            4 => HmatDataType::ReadBandwidth,
            5 => HmatDataType::WriteBandwidth,
            other => HmatDataType::Other(other),
        }
    }

    /// Whether entries are latencies (picoseconds × base unit) rather than bandwidths
    /// (MB/s × base unit).
    pub fn is_latency(self) -> bool {
        matches!(
            self,
            HmatDataType::AccessLatency | HmatDataType::ReadLatency | HmatDataType::WriteLatency
        )
    }
}

/// Type 1: a latency or bandwidth matrix from initiator domains to target domains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HmatLocality {
    /// Flags bits 0–3: 0 memory, 1–3 that level of memory-side cache.
    pub hierarchy: u8,
    pub flags: u8,
    pub data_type: HmatDataType,
    pub min_transfer_size: u8,
    pub initiators: Vec<u32>,
    pub targets: Vec<u32>,
    pub entry_base_unit: u64,
    /// `initiators.len() × targets.len()` raw entries, initiator-major; 0 means "no
    /// information", 0xFFFF "unreachable".
    pub entries: Vec<u16>,
}

impl HmatLocality {
    /// The raw entry from `initiator` domain to `target` domain, if both are listed.
    pub fn entry(&self, initiator: u32, target: u32) -> Option<u16> {
        let i = self.initiators.iter().position(|&p| p == initiator)?;
        let t = self.targets.iter().position(|&p| p == target)?;
        self.entries
            .get(i.checked_mul(self.targets.len())?.checked_add(t)?)
            .copied()
    }
}

/// Type 2: a memory-side cache in front of a memory domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySideCache {
    pub memory: u32,
    pub size: u64,
    /// Raw attributes: bits 0–3 total levels, 4–7 this level, 8–11 associativity,
    /// 12–15 write policy, 16–31 line size.
    pub attributes: u32,
}

impl MemorySideCache {
    /// The cache level this structure describes.
    pub fn level(&self) -> u8 {
        ((self.attributes >> 4) & 0xF) as u8
    }
}

/// The decoded HMAT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hmat {
    pub revision: u8,
    pub memory_proximity: Vec<MemoryProximity>,
    pub localities: Vec<HmatLocality>,
    pub caches: Vec<MemorySideCache>,
}

/// Decode a checksummed HMAT (at least [`HMAT_FIXED_LENGTH`] bytes).
pub(crate) fn parse(table: &[u8], problems: &mut Vec<AcpiProblem>) -> Hmat {
    let revision = u8_at(table, 8).unwrap_or(0);
    let mut hmat = Hmat {
        revision,
        ..Hmat::default()
    };
    let mut walk = Structures::new(table, HMAT_FIXED_LENGTH, StructureHeader::Word, problems);
    while let Some(s) = walk.next() {
        let b = s.bytes;
        match s.kind {
            0 if walk.fits(&s, 40) => {
                let flags = u16_at(b, 8).unwrap_or(0);
                let memory_valid = revision >= 2 || flags & 2 != 0;
                hmat.memory_proximity.push(MemoryProximity {
                    flags,
                    initiator: u32_at(b, 12).filter(|_| flags & 1 != 0),
                    memory: u32_at(b, 16).filter(|_| memory_valid),
                });
            }
            1 if walk.fits(&s, 32) => match locality(b) {
                Ok(l) => hmat.localities.push(l),
                Err(fault) => walk.problem(&s, fault),
            },
            2 if walk.fits(&s, 32) => hmat.caches.push(MemorySideCache {
                memory: u32_at(b, 8).unwrap_or(0),
                size: u64_at(b, 16).unwrap_or(0),
                attributes: u32_at(b, 24).unwrap_or(0),
            }),
            _ => {}
        }
    }
    hmat
}

/// Decode one type 1 structure (at least 32 bytes).
fn locality(b: &[u8]) -> Result<HmatLocality, EntryFault> {
    let flags = u8_at(b, 8).unwrap_or(0);
    let initiators = u64::from(u32_at(b, 12).unwrap_or(0));
    let targets = u64::from(u32_at(b, 16).unwrap_or(0));
    let length = b.len() as u64;
    let cells = initiators.checked_mul(targets);
    let needed = cells
        .and_then(|c| c.checked_mul(2))
        .and_then(|e| e.checked_add(initiators.checked_add(targets)?.checked_mul(4)?))
        .and_then(|lists| lists.checked_add(32));
    if needed.is_none_or(|n| n > length) {
        return Err(EntryFault::ListsOverrun { needed, length });
    }
    // Every count now fits in `length` bytes, so these offsets cannot overflow or run past b.
    let (ni, nt) = (initiators as usize, targets as usize);
    let u32s = |start: usize, n: usize| -> Vec<u32> {
        (0..n).filter_map(|k| u32_at(b, start + 4 * k)).collect()
    };
    let target_list = 32 + 4 * ni;
    let entry_list = target_list + 4 * nt;
    Ok(HmatLocality {
        hierarchy: flags & 0xF,
        flags,
        data_type: HmatDataType::from_raw(u8_at(b, 9).unwrap_or(0)),
        min_transfer_size: u8_at(b, 10).unwrap_or(0),
        initiators: u32s(32, ni),
        targets: u32s(target_list, nt),
        entry_base_unit: u64_at(b, 24).unwrap_or(0),
        entries: (0..ni * nt)
            .filter_map(|k| u16_at(b, entry_list + 2 * k))
            .collect(),
    })
}
