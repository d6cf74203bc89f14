//! Reading a guest image: an ELF64 x86_64 executable with a Xen PVH entry note.
//!
//! ELF64 (System V gABI): header, program headers; PT_LOAD segments are placed at their
//! physical addresses (`p_paddr`), PT_NOTE segments searched for `XEN_ELFNOTE_PHYS32_ENTRY`
//! (type 18, name "Xen"), whose descriptor is the 32-bit entry point. Images come from the
//! layout, but are still checked field by field: a bad image refuses its partition only.

use alloc::vec::Vec;
use core::fmt;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// One segment to copy into guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical load address.
    pub gpa: u64,
    /// Offset and length of the bytes in the file.
    pub offset: usize,
    pub file_size: usize,
    /// Bytes in memory (the rest, past `file_size`, is zero).
    pub memory_size: u64,
}

/// A checked guest image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestImage {
    pub pvh_entry: u32,
    /// The ELF header's entry (`e_entry`); guests start at `pvh_entry`, the UEFI application
    /// enters the hypervisor's image here.
    pub elf_entry: u64,
    pub segments: Vec<Segment>,
}

/// Why an image cannot be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    NotElf64,
    NotX86_64,
    BadProgramHeaders,
    SegmentOutsideFile { index: usize },
    NoPvhNote,
    NoLoadableSegment,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::NotElf64 => f.write_str("guest image is not a little-endian ELF64 file"),
            ImageError::NotX86_64 => f.write_str("guest image is not for x86_64"),
            ImageError::BadProgramHeaders => f.write_str("guest image's program headers lie outside the file"),
            ImageError::SegmentOutsideFile { index } => {
                write!(f, "guest image's segment {index} lies outside the file or is larger in the file than in memory")
            }
            ImageError::NoPvhNote => f.write_str(
                "guest image has no Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): it cannot be booted the PVH way",
            ),
            ImageError::NoLoadableSegment => f.write_str("guest image has no loadable segment"),
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Checks `bytes` and lists what to load and where to start.
pub fn parse(bytes: &[u8]) -> Result<GuestImage, ImageError> {
    if bytes.get(0..4) != Some(b"\x7fELF") || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err(ImageError::NotElf64);
    }
    if u16_at(bytes, 18) != Some(62) {
        return Err(ImageError::NotX86_64);
    }
    let phoff = u64_at(bytes, 32).ok_or(ImageError::NotElf64)? as usize;
    let phentsize = u16_at(bytes, 54).ok_or(ImageError::NotElf64)? as usize;
    let phnum = u16_at(bytes, 56).ok_or(ImageError::NotElf64)? as usize;
    if phentsize < 56
        || phoff
            .checked_add(
                phentsize
                    .checked_mul(phnum)
                    .ok_or(ImageError::BadProgramHeaders)?,
            )
            .is_none_or(|end| end > bytes.len())
    {
        return Err(ImageError::BadProgramHeaders);
    }
    let mut segments = Vec::new();
    let mut pvh_entry = None;
    for index in 0..phnum {
        let ph = &bytes[phoff + index * phentsize..][..phentsize];
        let kind = u32_at(ph, 0).unwrap_or(0);
        let offset = u64_at(ph, 8).unwrap_or(u64::MAX);
        let paddr = u64_at(ph, 24).unwrap_or(0);
        let file_size = u64_at(ph, 32).unwrap_or(u64::MAX);
        let memory_size = u64_at(ph, 40).unwrap_or(0);
        let in_file = offset
            .checked_add(file_size)
            .is_some_and(|end| end <= bytes.len() as u64);
        match kind {
            PT_LOAD => {
                if !in_file || file_size > memory_size || paddr.checked_add(memory_size).is_none() {
                    return Err(ImageError::SegmentOutsideFile { index });
                }
                if memory_size > 0 {
                    segments.push(Segment {
                        gpa: paddr,
                        offset: offset as usize,
                        file_size: file_size as usize,
                        memory_size,
                    });
                }
            }
            PT_NOTE if in_file => {
                let notes = &bytes[offset as usize..(offset + file_size) as usize];
                pvh_entry = pvh_entry.or_else(|| find_pvh_entry(notes));
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(ImageError::NoLoadableSegment);
    }
    let pvh_entry = pvh_entry.ok_or(ImageError::NoPvhNote)?;
    Ok(GuestImage {
        pvh_entry,
        elf_entry: u64_at(bytes, 24).ok_or(ImageError::NotElf64)?,
        segments,
    })
}

/// Walks ELF notes (namesz, descsz, type, name and descriptor each padded to 4 bytes).
fn find_pvh_entry(mut notes: &[u8]) -> Option<u32> {
    while notes.len() >= 12 {
        let namesz = u32_at(notes, 0)? as usize;
        let descsz = u32_at(notes, 4)? as usize;
        let kind = u32_at(notes, 8)?;
        let name_end = 12usize.checked_add(namesz.checked_next_multiple_of(4)?)?;
        let desc_end = name_end.checked_add(descsz.checked_next_multiple_of(4)?)?;
        if desc_end > notes.len() {
            return None;
        }
        let name = &notes[12..12 + namesz];
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && name.starts_with(b"Xen") && descsz >= 4 {
            return u32_at(notes, name_end);
        }
        notes = &notes[desc_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with one PT_LOAD and one PT_NOTE.
    fn image(note_type: u32) -> Vec<u8> {
        let mut b = alloc::vec![0u8; 0x200];
        b[0..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[24..32].copy_from_slice(&0x10_0020u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&2u16.to_le_bytes());
        let load = 64;
        b[load..load + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        b[load + 8..load + 16].copy_from_slice(&0x100u64.to_le_bytes());
        b[load + 24..load + 32].copy_from_slice(&0x10_0000u64.to_le_bytes());
        b[load + 32..load + 40].copy_from_slice(&0x40u64.to_le_bytes());
        b[load + 40..load + 48].copy_from_slice(&0x1000u64.to_le_bytes());
        let note = 120;
        b[note..note + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        b[note + 8..note + 16].copy_from_slice(&0x180u64.to_le_bytes());
        b[note + 32..note + 40].copy_from_slice(&24u64.to_le_bytes());
        let n = 0x180;
        b[n..n + 4].copy_from_slice(&4u32.to_le_bytes());
        b[n + 4..n + 8].copy_from_slice(&8u32.to_le_bytes());
        b[n + 8..n + 12].copy_from_slice(&note_type.to_le_bytes());
        b[n + 12..n + 16].copy_from_slice(b"Xen\0");
        b[n + 16..n + 24].copy_from_slice(&0x10_0040u64.to_le_bytes());
        b
    }

    #[test]
    fn finds_segments_and_the_pvh_entry() {
        let parsed = parse(&image(18)).unwrap();
        assert_eq!(parsed.pvh_entry, 0x10_0040);
        assert_eq!(parsed.elf_entry, 0x10_0020);
        assert_eq!(
            parsed.segments,
            [Segment {
                gpa: 0x10_0000,
                offset: 0x100,
                file_size: 0x40,
                memory_size: 0x1000
            }]
        );
    }

    #[test]
    fn refuses_bad_images() {
        assert_eq!(parse(&image(17)), Err(ImageError::NoPvhNote));
        assert_eq!(parse(b"MZ"), Err(ImageError::NotElf64));
        let mut b = image(18);
        b[64 + 32..64 + 40].copy_from_slice(&0x10_0000u64.to_le_bytes());
        assert_eq!(parse(&b), Err(ImageError::SegmentOutsideFile { index: 0 }));
        let mut b = image(18);
        b[56..58].copy_from_slice(&0xFFFFu16.to_le_bytes());
        assert_eq!(parse(&b), Err(ImageError::BadProgramHeaders));
        for cut in 0..b.len() {
            let _ = parse(&image(18)[..cut]);
        }
    }
}
