//! What every system description table shares: the 36-byte header and its checksum
//! (ACPI 6.5 §5.2.6, System Description Table Header), and our OEM identity.
//!
//! Tables whose body we write ourselves start from rust-vmm's generic [`Sdt`] container,
//! which keeps the header's length and checksum right as structures are appended.

use acpi_tables::{sdt::Sdt, Aml};
use alloc::vec::Vec;

/// OEM ID in every table header and in the RSDP.
pub const OEM_ID: [u8; 6] = *b"NUMAVS";
/// OEM table ID in every table header.
pub const OEM_TABLE_ID: [u8; 8] = *b"NVGUEST ";
/// OEM revision in every table header.
pub const OEM_REVISION: u32 = 1;
/// Length of the standard table header.
pub const HEADER_LEN: usize = 36;

/// A table of `signature` and `revision` whose fixed part is `fixed_len` bytes (header
/// included), zero-filled, with length and checksum set.
pub(crate) fn new_table(signature: [u8; 4], fixed_len: u32, revision: u8) -> Sdt {
    Sdt::new(
        signature,
        fixed_len,
        revision,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    )
}

/// The bytes an AML-serialisable object (a rust-vmm table or structure) produces.
pub(crate) fn bytes_of(object: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    object.to_aml_bytes(&mut bytes);
    bytes
}

/// The value that makes `bytes` sum to zero modulo 256 when stored in one of them that
/// currently holds zero.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |sum, b| sum.wrapping_add(*b))
        .wrapping_neg()
}

/// True when `bytes` sum to zero modulo 256, as every ACPI table and the RSDP must.
pub fn sums_to_zero(bytes: &[u8]) -> bool {
    checksum(bytes) == 0
}

/// Reads a little-endian u16 at `offset`, if there are enough bytes (for tests and tools).
pub fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    let raw = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_le_bytes([raw[0], raw[1]]))
}

/// Reads a little-endian u32 at `offset`, if there are enough bytes.
pub fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let raw = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
}

/// Reads a little-endian u64 at `offset`, if there are enough bytes.
pub fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let low = read_u32(bytes, offset)?;
    let high = read_u32(bytes, offset.checked_add(4)?)?;
    Some(u64::from(low) | (u64::from(high) << 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_table_has_header_fields_and_checksum() {
        let table = new_table(*b"TEST", 40, 3);
        let bytes = table.as_slice();
        assert_eq!(&bytes[0..4], b"TEST");
        assert_eq!(read_u32(bytes, 4), Some(40));
        assert_eq!(bytes[8], 3);
        assert_eq!(&bytes[10..16], &OEM_ID);
        assert_eq!(&bytes[16..24], &OEM_TABLE_ID);
        assert!(sums_to_zero(bytes));
    }

    #[test]
    fn readers_refuse_short_input() {
        assert_eq!(read_u16(&[1], 0), None);
        assert_eq!(read_u32(&[1, 2, 3, 4], 1), None);
        assert_eq!(read_u64(&[1, 0, 0, 0, 2, 0, 0, 0], 0), Some(0x2_0000_0001));
        assert_eq!(read_u32(&[0; 4], usize::MAX), None);
    }
}
