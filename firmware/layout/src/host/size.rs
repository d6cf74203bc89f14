//! Byte sizes as a layout writes them: an integer (bytes) or a string with a K, M or G suffix
//! (powers of 1024), and back.

use super::toml_value::a_type;

/// Reads a size field. Errors say what was found and how to write a size.
pub(crate) fn parse_size(value: &toml::Value) -> Result<u64, String> {
    match value {
        toml::Value::Integer(bytes) => u64::try_from(*bytes)
            .map_err(|_| format!("{bytes} is negative; a size is a byte count like \"64M\"")),
        toml::Value::String(text) => parse_size_text(text),
        other => Err(format!(
            "expected a size, found {}; write bytes as an integer or a string like \"64M\"",
            a_type(other)
        )),
    }
}

fn parse_size_text(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a size; write bytes as an integer or a number with a K, M or G \
             suffix (powers of 1024), like \"64M\""
        )
    };
    let trimmed = text.trim();
    let (digits, shift) = match trimmed.char_indices().last() {
        Some((at, 'K' | 'k')) => (&trimmed[..at], 10),
        Some((at, 'M' | 'm')) => (&trimmed[..at], 20),
        Some((at, 'G' | 'g')) => (&trimmed[..at], 30),
        Some(_) => (trimmed, 0),
        None => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let too_big = || format!("{text:?} is too large to count in bytes");
    let number: u64 = digits.parse().map_err(|_| too_big())?;
    number.checked_mul(1 << shift).ok_or_else(too_big)
}

/// `bytes` as a layout would write it: `"64M"`, `"36K"`, or a plain number when it is not a
/// whole number of KiB.
pub(crate) fn layout_size(bytes: u64) -> String {
    for (shift, suffix) in [(30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes.is_multiple_of(1 << shift) {
            return format!("\"{}{suffix}\"", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// `bytes` for a person: `64 MiB`, `36 KiB`, `3000 bytes` (exact, never rounded).
pub(crate) fn human_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes != 0 && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<u64, String> {
        parse_size(&toml::Value::String(s.into()))
    }

    #[test]
    fn sizes() {
        assert_eq!(text("4K"), Ok(4096));
        assert_eq!(text("64M"), Ok(64 << 20));
        assert_eq!(text(" 1g "), Ok(1 << 30));
        assert_eq!(text("3000"), Ok(3000));
        assert_eq!(parse_size(&toml::Value::Integer(8192)), Ok(8192));
        for bad in ["", "M", "64 MB", "64MiB", "-4K", "1.5G", "0x1000"] {
            assert!(text(bad).unwrap_err().contains("is not a size"), "{bad}");
        }
        assert!(text("99999999999G").unwrap_err().contains("too large"));
        assert!(parse_size(&toml::Value::Integer(-1))
            .unwrap_err()
            .contains("negative"));
        assert!(parse_size(&toml::Value::Boolean(true))
            .unwrap_err()
            .contains("found a boolean;"));
    }

    #[test]
    fn writing_sizes() {
        assert_eq!(layout_size(64 << 20), "\"64M\"");
        assert_eq!(layout_size(36 << 10), "\"36K\"");
        assert_eq!(layout_size(3000), "3000");
        assert_eq!(human_size(2 << 40), "2 TiB");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(0), "0 bytes");
    }
}
