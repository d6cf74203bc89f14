//! The System Locality Information Table (ACPI 6.5 §5.2.17).
//!
//! A u64 count N at offset 36, then an N×N byte matrix: entry (i, j) at 44 + i·N + j is the
//! relative distance from locality (proximity domain) i to j. 10 means local and must sit on
//! the diagonal; off-diagonal values are above 10; 255 means unreachable and is kept. The
//! matrix may be asymmetric. A SLIT that breaks these rules is rejected as a whole.

use alloc::vec::Vec;

use super::bytes::u64_at;
use super::problem::{AcpiProblem, SlitFault};
use super::sdt::SDT_HEADER_LENGTH;

/// Offset of the matrix.
const MATRIX_OFFSET: usize = SDT_HEADER_LENGTH + 8;
/// The distance from a locality to itself.
pub const LOCAL_DISTANCE: u8 = 10;
/// The fallback distance between two different localities when there is no usable SLIT.
pub const REMOTE_DISTANCE: u8 = 20;
/// "No path between these localities."
pub const UNREACHABLE: u8 = 255;

/// A validated SLIT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slit {
    /// N, the number of localities (proximity domains 0..N).
    pub localities: usize,
    /// N² distances, row-major: `distances[i * N + j]` is from i to j.
    pub distances: Vec<u8>,
}

impl Slit {
    /// The distance from proximity domain `from` to `to`, if both are below N.
    pub fn distance(&self, from: u32, to: u32) -> Option<u8> {
        let (from, to) = (usize::try_from(from).ok()?, usize::try_from(to).ok()?);
        if from >= self.localities || to >= self.localities {
            return None;
        }
        self.distances
            .get(from.checked_mul(self.localities)?.checked_add(to)?)
            .copied()
    }
}

/// Decode and validate a checksummed SLIT.
pub(crate) fn parse(table: &[u8]) -> Result<Slit, AcpiProblem> {
    let fail = |fault| Err(AcpiProblem::Slit(fault));
    let Some(count) = u64_at(table, SDT_HEADER_LENGTH) else {
        return fail(SlitFault::NoCount);
    };
    if count == 0 {
        return fail(SlitFault::NoLocalities);
    }
    let available = table.len().saturating_sub(MATRIX_OFFSET);
    let needed = count.checked_mul(count);
    let fits = needed
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n <= available);
    let (Some(cells), Ok(n)) = (fits, usize::try_from(count)) else {
        return fail(SlitFault::TooShort {
            localities: count,
            needed,
            available,
        });
    };
    let Some(matrix) = table.get(MATRIX_OFFSET..MATRIX_OFFSET + cells) else {
        return fail(SlitFault::TooShort {
            localities: count,
            needed,
            available,
        });
    };
    for (cell, &value) in matrix.iter().enumerate() {
        let (from, to) = (cell / n, cell % n);
        if from == to && value != LOCAL_DISTANCE {
            return fail(SlitFault::BadDiagonal {
                locality: from,
                value,
            });
        }
        if from != to && value <= LOCAL_DISTANCE {
            return fail(SlitFault::BadDistance { from, to, value });
        }
    }
    Ok(Slit {
        localities: n,
        distances: matrix.to_vec(),
    })
}
