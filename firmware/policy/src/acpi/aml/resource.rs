//! The bus number range in a `_CRS` resource template (ACPI 6.5 §6.4): the first Word, DWord
//! or QWord Address Space Descriptor (§6.4.3.5.1–3) whose resource type is 2 (bus number
//! range).

use crate::acpi::bytes::{u16_at, u8_at};

/// Address space descriptors' resource type for a bus number range (§6.4.3.5, byte 3).
const BUS_NUMBER_RANGE: u8 = 2;

/// `(min, max)` of the first bus-number Address Space Descriptor in `template`, if any. The
/// walk stops at the End Tag (small item 0x0F, §6.4.2.9), at a descriptor that runs past the
/// buffer, or at the buffer's end; each turn moves forward at least one byte. `steps`
/// counts the turns.
pub(super) fn bus_range(template: &[u8], steps: &mut usize) -> Option<(u8, u8)> {
    let mut at = 0usize;
    while let Some(tag) = u8_at(template, at) {
        *steps += 1;
        if tag & 0x80 == 0 {
            // Small item (§6.4.2): bits 6–3 the type, bits 2–0 the length after the tag.
            if (tag >> 3) & 0x0F == 0x0F {
                return None;
            }
            at = at.checked_add(1 + usize::from(tag & 0x07))?;
            continue;
        }
        // Large item (§6.4.3): the tag, a 16-bit length, then that many bytes.
        let length = usize::from(u16_at(template, at + 1)?);
        let body_start = at.checked_add(3)?;
        let body_end = body_start.checked_add(length)?;
        let body = template.get(body_start..body_end)?;
        let width = match tag {
            0x88 => 2, // Word Address Space Descriptor (§6.4.3.5.3)
            0x87 => 4, // DWord (§6.4.3.5.2)
            0x8A => 8, // QWord (§6.4.3.5.1)
            _ => 0,
        };
        // Body: resource type, general flags, type-specific flags, then granularity,
        // minimum, maximum, translation offset and length, each `width` bytes.
        if width != 0 && body.first() == Some(&BUS_NUMBER_RANGE) {
            let min = uint(body, 3 + width, width);
            let max = uint(body, 3 + 2 * width, width);
            if let (Some(min), Some(max)) = (min, max) {
                // Bus numbers are 8-bit; a wider value or an inverted range is nonsense,
                // and the descriptor is passed over rather than truncated.
                if let (Ok(min), Ok(max)) = (u8::try_from(min), u8::try_from(max)) {
                    if min <= max {
                        return Some((min, max));
                    }
                }
            }
        }
        at = body_end;
    }
    None
}

/// The little-endian unsigned integer of `width` ≤ 8 bytes at `offset`.
fn uint(bytes: &[u8], offset: usize, width: usize) -> Option<u64> {
    let b = bytes.get(offset..offset.checked_add(width)?)?;
    Some(b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
}
