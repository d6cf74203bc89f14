//! The System Resource Affinity Table (ACPI 6.5 §5.2.16).
//!
//! Maps processors (type 0 local APIC/SAPIC, type 2 x2APIC), memory ranges (type 1) and
//! generic initiators (type 5) to proximity domains. Only ENABLED entries are kept, and
//! zero-length memory ranges are dropped (QEMU emits zeroed placeholders). GICC (3), GIC ITS
//! (4), generic port (6) and unknown types are skipped by length.
//!
//! SRAT revision 1 (ACPI 2.0/3.0) had one-byte proximity domains: type 0 carried only the
//! low byte at offset 2 and the bytes at 9..12 were reserved. Like Linux, for revision ≤ 1 we
//! use only the low byte of type 0 and type 1 domains; revision ≥ 2 uses all 32 bits.

use alloc::vec::Vec;

use super::bytes::{u32_at, u64_at, u8_at};
use super::problem::AcpiProblem;
use super::sdt::{StructureHeader, Structures, SDT_HEADER_LENGTH};

/// Bytes before the first structure: header, reserved u32 (must be 1), reserved u64.
pub const SRAT_FIXED_LENGTH: usize = SDT_HEADER_LENGTH + 12;

/// An enabled processor affinity (type 0 or type 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuAffinity {
    pub apic_id: u32,
    pub pxm: u32,
    /// From a type 2 (x2APIC) structure.
    pub x2apic: bool,
    pub clock_domain: u32,
}

/// An enabled memory affinity (type 1) with a nonzero length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryAffinity {
    pub base: u64,
    pub size: u64,
    pub pxm: u32,
    pub hot_pluggable: bool,
    pub non_volatile: bool,
}

impl MemoryAffinity {
    /// One past the last byte (the parser guarantees it does not wrap).
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

/// The decoded SRAT: enabled entries only, in table order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Srat {
    pub revision: u8,
    pub cpus: Vec<CpuAffinity>,
    pub memory: Vec<MemoryAffinity>,
    /// Proximity domains of enabled generic initiators (type 5).
    pub generic_initiators: Vec<u32>,
}

impl Srat {
    /// Whether any enabled entry names a proximity domain.
    pub fn is_empty(&self) -> bool {
        self.cpus.is_empty() && self.memory.is_empty() && self.generic_initiators.is_empty()
    }
}

/// Decode a checksummed SRAT (at least [`SRAT_FIXED_LENGTH`] bytes).
pub(crate) fn parse(table: &[u8], problems: &mut Vec<AcpiProblem>) -> Srat {
    let revision = u8_at(table, 8).unwrap_or(0);
    let wide_pxm = revision >= 2;
    let mut srat = Srat {
        revision,
        ..Srat::default()
    };
    let mut walk = Structures::new(table, SRAT_FIXED_LENGTH, StructureHeader::Byte, problems);
    while let Some(s) = walk.next() {
        let b = s.bytes;
        let enabled = |at| u32_at(b, at).is_some_and(|f| f & 1 != 0);
        match s.kind {
            0 if walk.fits(&s, 16) && enabled(4) => {
                let high = if wide_pxm {
                    [b[9], b[10], b[11]]
                } else {
                    [0; 3]
                };
                srat.cpus.push(CpuAffinity {
                    apic_id: u32::from(b[3]),
                    pxm: u32::from_le_bytes([b[2], high[0], high[1], high[2]]),
                    x2apic: false,
                    clock_domain: u32_at(b, 12).unwrap_or(0),
                });
            }
            1 if walk.fits(&s, 40) && enabled(28) => {
                let flags = u32_at(b, 28).unwrap_or(0);
                let pxm = u32_at(b, 2).unwrap_or(0);
                let base = u64_at(b, 8).unwrap_or(0);
                let size = u64_at(b, 16).unwrap_or(0);
                if size == 0 {
                    continue;
                }
                if base.checked_add(size).is_none() {
                    let problem = AcpiProblem::MemoryRangeWraps {
                        index: s.index,
                        base,
                        length: size,
                    };
                    walk.table_problem(problem);
                    continue;
                }
                srat.memory.push(MemoryAffinity {
                    base,
                    size,
                    pxm: if wide_pxm { pxm } else { pxm & 0xFF },
                    hot_pluggable: flags & 2 != 0,
                    non_volatile: flags & 4 != 0,
                });
            }
            2 if walk.fits(&s, 24) && enabled(12) => srat.cpus.push(CpuAffinity {
                apic_id: u32_at(b, 8).unwrap_or(0),
                pxm: u32_at(b, 4).unwrap_or(0),
                x2apic: true,
                clock_domain: u32_at(b, 16).unwrap_or(0),
            }),
            5 if walk.fits(&s, 32) && enabled(28) => {
                srat.generic_initiators.push(u32_at(b, 4).unwrap_or(0));
            }
            _ => {} // disabled, skipped type, or short (the walk has ended)
        }
    }
    srat
}
