//! The root of the tables: RSDP (ACPI 6.5 §5.2.5), XSDT (§5.2.8) and RSDT (§5.2.7).
//!
//! The XSDT comes from rust-vmm's `acpi_tables`. Its `Rsdp` always leaves the RSDT
//! address at 0 (the field is private), and it has no RSDT; both are written here, so a
//! guest that only knows ACPI 1.0 still finds the tables through the RSDP's first 20
//! bytes and the RSDT.

use acpi_tables::xsdt::XSDT;
use alloc::vec::Vec;

use crate::sdt::{bytes_of, checksum, new_table, HEADER_LEN, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// RSDP length (revision 2).
pub const RSDP_LEN: usize = 36;
/// RSDP revision: 2, for ACPI 2.0 and later (it has an XSDT address).
pub const RSDP_REVISION: u8 = 2;
/// RSDT and XSDT revision.
pub const REVISION: u8 = 1;

/// Builds the RSDP pointing at the RSDT and the XSDT.
pub(crate) fn build_rsdp(rsdt: u32, xsdt: u64) -> [u8; RSDP_LEN] {
    let mut rsdp = [0u8; RSDP_LEN];
    rsdp[0..8].copy_from_slice(b"RSD PTR ");
    rsdp[9..15].copy_from_slice(&OEM_ID);
    rsdp[15] = RSDP_REVISION;
    rsdp[16..20].copy_from_slice(&rsdt.to_le_bytes());
    rsdp[20..24].copy_from_slice(&(RSDP_LEN as u32).to_le_bytes());
    rsdp[24..32].copy_from_slice(&xsdt.to_le_bytes());
    // The ACPI 1.0 checksum covers the first 20 bytes, the extended one all 36.
    rsdp[8] = checksum(&rsdp[..20]);
    rsdp[32] = checksum(&rsdp);
    rsdp
}

/// Builds the XSDT listing `tables` (64-bit addresses).
pub(crate) fn build_xsdt(tables: &[u64]) -> Vec<u8> {
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    tables.iter().for_each(|&address| xsdt.add_entry(address));
    bytes_of(&xsdt)
}

/// Builds the RSDT listing `tables` (32-bit addresses).
pub(crate) fn build_rsdt(tables: &[u32]) -> Vec<u8> {
    let mut rsdt = new_table(*b"RSDT", HEADER_LEN as u32, REVISION);
    tables
        .iter()
        .for_each(|address| rsdt.append_slice(&address.to_le_bytes()));
    rsdt.as_slice().to_vec()
}

/// Length of an XSDT with `entries` entries.
pub(crate) fn xsdt_len(entries: usize) -> usize {
    HEADER_LEN + 8 * entries
}

/// Length of an RSDT with `entries` entries.
pub(crate) fn rsdt_len(entries: usize) -> usize {
    HEADER_LEN + 4 * entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdt::{read_u32, read_u64, sums_to_zero};

    #[test]
    fn rsdp_revision_2_with_both_checksums() {
        let rsdp = build_rsdp(0xE_0030, 0xE_0070);
        assert_eq!(&rsdp[0..8], b"RSD PTR ");
        assert_eq!(rsdp[15], 2);
        assert!(sums_to_zero(&rsdp[..20]));
        assert!(sums_to_zero(&rsdp));
        assert_eq!(read_u32(&rsdp, 16), Some(0xE_0030));
        assert_eq!(read_u32(&rsdp, 20), Some(36));
        assert_eq!(read_u64(&rsdp, 24), Some(0xE_0070));
    }

    #[test]
    fn xsdt_and_rsdt_list_the_same_tables() {
        let xsdt = build_xsdt(&[0x1000, 0x2000]);
        let rsdt = build_rsdt(&[0x1000, 0x2000]);
        assert_eq!((xsdt.len(), rsdt.len()), (xsdt_len(2), rsdt_len(2)));
        assert_eq!((&xsdt[0..4], &rsdt[0..4]), (&b"XSDT"[..], &b"RSDT"[..]));
        assert!(sums_to_zero(&xsdt) && sums_to_zero(&rsdt));
        assert_eq!(
            (read_u32(&xsdt, 4), read_u32(&rsdt, 4)),
            (Some(52), Some(44))
        );
        assert_eq!(
            (read_u64(&xsdt, 44), read_u32(&rsdt, 40)),
            (Some(0x2000), Some(0x2000))
        );
        assert_eq!(&xsdt[10..24], &rsdt[10..24]);
    }
}
