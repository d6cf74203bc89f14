//! SLIT, the System Locality Information Table (ACPI 6.5 §5.2.17): the distance matrix
//! between the guest's vNUMA nodes.
//!
//! Written here rather than with rust-vmm's `SLIT`: its `set_distance(a, b, v)` always
//! sets both (a, b) and (b, a), so it cannot express the asymmetric distances real hosts
//! (and our host-derived guest matrices) can have.

use alloc::vec::Vec;

use crate::sdt::{new_table, HEADER_LEN};
use crate::DistanceMatrix;

/// SLIT revision 1 (unchanged since ACPI 3.0).
pub const REVISION: u8 = 1;

/// Builds the SLIT for a checked distance matrix.
pub(crate) fn build(distances: &DistanceMatrix) -> Vec<u8> {
    let mut table = new_table(*b"SLIT", HEADER_LEN as u32 + 8, REVISION);
    // Order <= MAX_NODES, checked.
    table.write_u64(36, distances.order() as u64);
    table.append_slice(distances.entries());
    table.as_slice().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdt::{read_u32, read_u64, sums_to_zero};

    #[test]
    fn asymmetric_four_nodes() {
        let distances = DistanceMatrix::from_rows(&[
            [10u8, 16, 32, 33],
            [17, 10, 31, 34],
            [32, 30, 10, 16],
            [33, 35, 15, 10],
        ])
        .unwrap();
        let slit = build(&distances);
        assert_eq!(&slit[0..4], b"SLIT");
        assert_eq!(slit[8], REVISION);
        assert_eq!(slit.len(), 44 + 16);
        assert_eq!(read_u32(&slit, 4), Some(60));
        assert!(sums_to_zero(&slit));
        assert_eq!(read_u64(&slit, 36), Some(4));
        assert_eq!(&slit[44..48], &[10, 16, 32, 33]);
        assert_eq!(slit[44 + 4], 17); // (1, 0) differs from (0, 1)
    }
}
