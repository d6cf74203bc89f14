//! Bounds-checked little-endian field reads over table bytes (ACPI 6.5 §5.2: all fields are
//! little-endian and need not be aligned).
//!
//! Every read returns `None` past the end of the slice instead of panicking, so a parser can
//! never index out of bounds whatever a table claims.

/// The byte at `offset`.
pub(crate) fn u8_at(bytes: &[u8], offset: usize) -> Option<u8> {
    bytes.get(offset).copied()
}

/// The `N` bytes starting at `offset`.
fn array_at<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    let end = offset.checked_add(N)?;
    bytes.get(offset..end)?.try_into().ok()
}

/// The little-endian `u16` at `offset`.
pub(crate) fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    array_at(bytes, offset).map(u16::from_le_bytes)
}

/// The little-endian `u32` at `offset`.
pub(crate) fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    array_at(bytes, offset).map(u32::from_le_bytes)
}

/// The little-endian `u64` at `offset`.
pub(crate) fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    array_at(bytes, offset).map(u64::from_le_bytes)
}

/// The four signature bytes at `offset`, or four spaces if the slice is too short.
pub(crate) fn signature_at(bytes: &[u8], offset: usize) -> [u8; 4] {
    array_at(bytes, offset).unwrap_or(*b"    ")
}

/// Whether the bytes sum to zero modulo 256 (the ACPI checksum rule).
pub(crate) fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)) == 0
}

/// A signature or OEM ID for display: printable ASCII kept, anything else shown as `?`.
pub(crate) struct Ascii<'a>(pub &'a [u8]);

impl core::fmt::Display for Ascii<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        for &b in self.0 {
            f.write_char(if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end() {
        let b = [1, 2, 3, 4, 5];
        assert_eq!(u16_at(&b, 3), Some(0x0504));
        assert_eq!(u16_at(&b, 4), None);
        assert_eq!(u32_at(&b, usize::MAX), None);
        assert_eq!(u64_at(&b, 0), None);
        assert_eq!(u8_at(&b, 5), None);
        assert_eq!(signature_at(&b, 3), *b"    ");
    }

    #[test]
    fn checksum_wraps() {
        assert!(checksum_ok(&[0x80, 0x80]));
        assert!(!checksum_ok(&[1]));
        assert!(checksum_ok(&[]));
    }
}
