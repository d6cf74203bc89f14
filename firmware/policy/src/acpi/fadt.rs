//! The Fixed ACPI Description Table, FACP (ACPI 6.5 §5.2.9), read only for where the DSDT is.

use super::bytes::{u32_at, u64_at};

/// Offset of the 32-bit DSDT address.
const DSDT: usize = 40;
/// Offset of the 64-bit X_DSDT address (ACPI 2.0 and later; the table must reach past it).
const X_DSDT: usize = 140;

/// The DSDT's address in the FADT `table` (header included): X_DSDT where the table is long
/// enough to hold it and it is nonzero (ACPI 6.5 §5.2.9: X_DSDT wins), else DSDT; `None` if
/// both are zero or missing.
pub fn dsdt_address(table: &[u8]) -> Option<u64> {
    u64_at(table, X_DSDT)
        .filter(|&a| a != 0)
        .or_else(|| u32_at(table, DSDT).map(u64::from).filter(|&a| a != 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn x_dsdt_wins_and_dsdt_is_the_fallback() {
        let mut fadt = vec![0u8; 244];
        fadt[DSDT..DSDT + 4].copy_from_slice(&0x7FE0_0000u32.to_le_bytes());
        assert_eq!(dsdt_address(&fadt), Some(0x7FE0_0000));
        fadt[X_DSDT..X_DSDT + 8].copy_from_slice(&0x1_7FE0_0000u64.to_le_bytes());
        assert_eq!(dsdt_address(&fadt), Some(0x1_7FE0_0000));
        // An ACPI 1.0 FADT (116 bytes) has no X_DSDT.
        assert_eq!(dsdt_address(&fadt[..116]), Some(0x7FE0_0000));
        assert_eq!(dsdt_address(&[0u8; 116]), None);
        assert_eq!(dsdt_address(&[]), None);
    }
}
