//! Translating multiboot2 boot information into a [`BootInfo`] (Multiboot2 specification 2.0,
//! §3.6 "Boot information format").
//!
//! The boot information starts with `total_size` (u32, the whole structure, this field
//! included) and a reserved u32; then come tags, each 8-byte aligned: `type` (u32), `size`
//! (u32, header included, padding not), payload. A tag of type 0 and size 8 ends the list.
//! We translate the command line (1), modules (3), the basic memory information (4, used only
//! without a memory map), the memory map (6) and the old and new ACPI RSDP copies (14, 15).
//! Other tags are skipped. The bytes come from the loader, so every size is checked: a tag
//! that runs past the structure, a structure without an end tag, or a memory map with a
//! nonsense entry size is a [`Multiboot2Error`], never a panic or a wrap.

use alloc::string::String;
use alloc::vec::Vec;

use super::{BootInfo, BootProtocol, MemoryKind, MemoryRegion, Module, RsdpSource};

/// What a multiboot2 loader leaves in EAX.
pub const BOOTLOADER_MAGIC: u32 = 0x36d7_6289;
/// Largest boot information we accept (GRUB's is a few KiB).
pub const MAX_TOTAL_SIZE: u32 = 1 << 20;
/// Bytes of the fixed part: `total_size` and the reserved word.
pub const FIXED_BYTES: usize = 8;

const TAG_END: u32 = 0;
const TAG_COMMAND_LINE: u32 = 1;
const TAG_MODULE: u32 = 3;
const TAG_BASIC_MEMINFO: u32 = 4;
const TAG_MEMORY_MAP: u32 = 6;
const TAG_ACPI_OLD: u32 = 14;
const TAG_ACPI_NEW: u32 = 15;

/// Bytes of a tag header (`type`, `size`).
const TAG_HEADER: usize = 8;
/// Smallest memory-map entry: base (u64), length (u64), type (u32), reserved (u32).
const MEMORY_MAP_ENTRY_MIN: u32 = 24;

/// Why multiboot2 boot information cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Multiboot2Error {
    /// EAX did not hold [`BOOTLOADER_MAGIC`]: not entered by a multiboot2 loader.
    BadMagic { found: u32 },
    /// The structure's address is not 8-byte aligned, as §3.6.1 requires.
    Misaligned { address: u64 },
    /// Fewer bytes than the fixed part, or than `total_size` claims.
    Truncated { have: usize, need: usize },
    /// `total_size` is below the fixed part plus an end tag, or above [`MAX_TOTAL_SIZE`].
    BadTotalSize { total_size: u32 },
    /// The tag at `offset` claims a size below its header or past the end of the structure.
    BadTagSize {
        offset: usize,
        tag_type: u32,
        size: u32,
    },
    /// A tag we read is too short for its fixed fields.
    TagTooShort {
        offset: usize,
        tag_type: u32,
        size: u32,
        minimum: u32,
    },
    /// The memory map's entry size is below 24 bytes or not a multiple of 8.
    BadMemoryMapEntrySize { entry_size: u32 },
    /// A module whose end lies below its start.
    ModuleEndsBeforeStart { index: usize, start: u32, end: u32 },
    /// The tags ran out without an end tag (type 0, size 8).
    MissingEndTag,
    /// Neither a memory map (tag 6) nor basic memory information (tag 4).
    NoMemoryInformation,
}

impl core::fmt::Display for Multiboot2Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Multiboot2Error::BadMagic { found } => write!(
                f,
                "multiboot2: EAX holds {found:#x}, expected {BOOTLOADER_MAGIC:#x} (not booted by a multiboot2 loader?)"
            ),
            Multiboot2Error::Misaligned { address } => {
                write!(f, "multiboot2: boot information at {address:#x} is not 8-byte aligned")
            }
            Multiboot2Error::Truncated { have, need } => {
                write!(f, "multiboot2: boot information has {have} bytes, needs {need}")
            }
            Multiboot2Error::BadTotalSize { total_size } => write!(
                f,
                "multiboot2: total_size {total_size} is not between 16 and {MAX_TOTAL_SIZE}"
            ),
            Multiboot2Error::BadTagSize {
                offset,
                tag_type,
                size,
            } => write!(
                f,
                "multiboot2: tag {tag_type} at offset {offset:#x} claims {size} bytes, past the structure or below its header"
            ),
            Multiboot2Error::TagTooShort {
                offset,
                tag_type,
                size,
                minimum,
            } => write!(
                f,
                "multiboot2: tag {tag_type} at offset {offset:#x} has {size} bytes, needs {minimum}"
            ),
            Multiboot2Error::BadMemoryMapEntrySize { entry_size } => write!(
                f,
                "multiboot2: memory map entry size {entry_size} (needs at least 24, a multiple of 8)"
            ),
            Multiboot2Error::ModuleEndsBeforeStart { index, start, end } => write!(
                f,
                "multiboot2: module {index} ends at {end:#x}, before its start {start:#x}"
            ),
            Multiboot2Error::MissingEndTag => write!(f, "multiboot2: no end tag"),
            Multiboot2Error::NoMemoryInformation => write!(
                f,
                "multiboot2: neither a memory map nor basic memory information"
            ),
        }
    }
}

/// Checks the value a multiboot2 loader leaves in EAX.
pub fn check_magic(eax: u32) -> Result<(), Multiboot2Error> {
    if eax == BOOTLOADER_MAGIC {
        Ok(())
    } else {
        Err(Multiboot2Error::BadMagic { found: eax })
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let raw = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(raw.try_into().ok()?))
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    let raw = bytes.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_le_bytes(raw.try_into().ok()?))
}

/// `total_size` of the structure whose first bytes are `head` (at least 8 of them), checked
/// against [`MAX_TOTAL_SIZE`]: how many bytes to copy before calling [`parse`].
pub fn total_size(head: &[u8]) -> Result<usize, Multiboot2Error> {
    let total = u32_at(head, 0).ok_or(Multiboot2Error::Truncated {
        have: head.len(),
        need: FIXED_BYTES,
    })?;
    if (total as usize) < FIXED_BYTES + TAG_HEADER || total > MAX_TOTAL_SIZE {
        return Err(Multiboot2Error::BadTotalSize { total_size: total });
    }
    Ok(total as usize)
}

/// One tag: its type, its offset in the structure and its payload (header excluded).
struct Tag<'a> {
    tag_type: u32,
    offset: usize,
    size: u32,
    payload: &'a [u8],
}

impl Tag<'_> {
    fn require(&self, minimum_payload: usize) -> Result<(), Multiboot2Error> {
        if self.payload.len() < minimum_payload {
            return Err(Multiboot2Error::TagTooShort {
                offset: self.offset,
                tag_type: self.tag_type,
                size: self.size,
                minimum: (TAG_HEADER + minimum_payload) as u32,
            });
        }
        Ok(())
    }
}

/// Every tag before the end tag, checked for size; `structure` is exactly `total_size` bytes.
fn tags(structure: &[u8]) -> Result<Vec<Tag<'_>>, Multiboot2Error> {
    let mut found = Vec::new();
    let mut offset = FIXED_BYTES;
    while offset < structure.len() {
        let (Some(tag_type), Some(size)) =
            (u32_at(structure, offset), u32_at(structure, offset + 4))
        else {
            break;
        };
        let end = offset.checked_add(size as usize);
        if (size as usize) < TAG_HEADER || end.is_none_or(|end| end > structure.len()) {
            return Err(Multiboot2Error::BadTagSize {
                offset,
                tag_type,
                size,
            });
        }
        let end = offset + size as usize;
        if tag_type == TAG_END {
            return Ok(found);
        }
        found.push(Tag {
            tag_type,
            offset,
            size,
            payload: &structure[offset + TAG_HEADER..end],
        });
        // Tags start on 8-byte boundaries; `end` is at most 1 MiB, so this cannot wrap.
        offset = (end + 7) & !7;
    }
    Err(Multiboot2Error::MissingEndTag)
}

/// A NUL-terminated string, lossily decoded (the whole slice without a NUL).
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Memory-map entry types (§3.6.8): 1 available, 3 ACPI reclaimable, 4 NVS, 5 bad RAM; any
/// other value is reserved.
fn memory_kind(raw: u32) -> MemoryKind {
    match raw {
        1 => MemoryKind::Usable,
        3 => MemoryKind::AcpiReclaimable,
        4 => MemoryKind::AcpiNvs,
        5 => MemoryKind::Unusable,
        _ => MemoryKind::Reserved,
    }
}

fn parse_memory_map(tag: &Tag<'_>) -> Result<Vec<MemoryRegion>, Multiboot2Error> {
    tag.require(8)?;
    let entry_size = u32_at(tag.payload, 0).unwrap_or(0);
    if entry_size < MEMORY_MAP_ENTRY_MIN || !entry_size.is_multiple_of(8) {
        return Err(Multiboot2Error::BadMemoryMapEntrySize { entry_size });
    }
    Ok(tag.payload[8..]
        .chunks_exact(entry_size as usize)
        .map(|entry| MemoryRegion {
            base: u64_at(entry, 0).unwrap_or(0),
            size: u64_at(entry, 8).unwrap_or(0),
            kind: memory_kind(u32_at(entry, 16).unwrap_or(0)),
        })
        .collect())
}

/// Basic memory information (§3.6.2): `mem_lower` KiB from 0, `mem_upper` KiB from 1 MiB.
fn basic_meminfo(tag: &Tag<'_>) -> Result<Vec<MemoryRegion>, Multiboot2Error> {
    tag.require(8)?;
    let lower = u64::from(u32_at(tag.payload, 0).unwrap_or(0)) * 1024;
    let upper = u64::from(u32_at(tag.payload, 4).unwrap_or(0)) * 1024;
    Ok([(0, lower), (1 << 20, upper)]
        .into_iter()
        .filter(|&(_, size)| size > 0)
        .map(|(base, size)| MemoryRegion {
            base,
            size,
            kind: MemoryKind::Usable,
        })
        .collect())
}

fn parse_module(tag: &Tag<'_>, index: usize) -> Result<Module, Multiboot2Error> {
    tag.require(8)?;
    let start = u32_at(tag.payload, 0).unwrap_or(0);
    let end = u32_at(tag.payload, 4).unwrap_or(0);
    if end < start {
        return Err(Multiboot2Error::ModuleEndsBeforeStart { index, start, end });
    }
    Ok(Module {
        start: start.into(),
        end: end.into(),
        name: c_string(&tag.payload[8..]),
    })
}

/// Translates the boot information `structure` (copied from physical address `address`,
/// exactly [`total_size`] bytes) into a [`BootInfo`].
///
/// The RSDP copy of tag 15 (ACPI 2.0+) is preferred over tag 14's (ACPI 1.0); without either
/// the caller searches the BIOS areas as for any loader that names no RSDP.
pub fn parse(structure: &[u8], address: u64) -> Result<BootInfo, Multiboot2Error> {
    if !address.is_multiple_of(8) {
        return Err(Multiboot2Error::Misaligned { address });
    }
    let total = total_size(structure)?;
    let structure = structure.get(..total).ok_or(Multiboot2Error::Truncated {
        have: structure.len(),
        need: total,
    })?;
    let mut memory_map = None;
    let mut meminfo = None;
    let mut command_line = String::new();
    let mut modules = Vec::new();
    let mut rsdp_old = None;
    let mut rsdp_new = None;
    for tag in tags(structure)? {
        let payload_address = address + (tag.offset + TAG_HEADER) as u64;
        match tag.tag_type {
            TAG_COMMAND_LINE => command_line = c_string(tag.payload),
            TAG_MODULE => modules.push(parse_module(&tag, modules.len())?),
            TAG_BASIC_MEMINFO => meminfo = Some(basic_meminfo(&tag)?),
            TAG_MEMORY_MAP => memory_map = Some(parse_memory_map(&tag)?),
            TAG_ACPI_OLD => rsdp_old = Some((payload_address, tag.payload)),
            TAG_ACPI_NEW => rsdp_new = Some((payload_address, tag.payload)),
            _ => {}
        }
    }
    let memory_map = memory_map
        .or(meminfo)
        .ok_or(Multiboot2Error::NoMemoryInformation)?;
    let rsdp = rsdp_new
        .or(rsdp_old)
        .map(|(address, bytes)| RsdpSource::Copied {
            address,
            bytes: bytes.to_vec(),
        });
    Ok(BootInfo {
        protocol: BootProtocol::Multiboot2,
        memory_map,
        rsdp,
        command_line,
        modules,
    })
}

#[cfg(test)]
mod tests;
