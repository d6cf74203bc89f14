//! The UEFI handoff: what numavisor's UEFI application (`firmware/efi`) hands the image after
//! `ExitBootServices`, and its translation into a [`BootInfo`].
//!
//! The application reads the ACPI RSDP from the system table's configuration table, its load
//! options (UCS-2) and the final UEFI memory map, then enters the image's ELF entry in 32-bit
//! flat protected mode with paging off, EAX = [`ENTRY_MAGIC`] and EBX = the address of one
//! handoff block below 4 GiB. The block is a [`HEADER_BYTES`]-byte header followed by the raw
//! memory map (the firmware's descriptors, as `GetMemoryMap` returned them) and the raw load
//! options; both sides use this module, so the format has one definition.
//!
//! Memory types (UEFI 2.10 §7.2, table 7.10, "Memory Type Usage after ExitBootServices()"):
//! loader and boot-services code and data and conventional memory are free once boot services
//! are gone; runtime-services code and data, ACPI NVS, MMIO and reserved memory stay the
//! firmware's; ACPI reclaim memory holds tables. Memory with the specific-purpose attribute
//! (`EFI_MEMORY_SP`) is set aside for particular uses and never taken as general RAM.
//!
//! The handoff comes from our own application, but the map inside it comes from the firmware:
//! every field is bounded and checked, nothing can make the parser panic.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::{BootInfo, BootProtocol, MemoryKind, MemoryRegion, RsdpSource};

/// EAX at the ELF entry when the UEFI application enters the image ("NVEF").
pub const ENTRY_MAGIC: u32 = u32::from_le_bytes(*b"NVEF");
/// The first eight bytes of the handoff block.
pub const SIGNATURE: [u8; 8] = *b"NVEFIHO\0";
/// The format described here.
pub const VERSION: u32 = 1;
/// Bytes of the header.
pub const HEADER_BYTES: usize = 64;
/// The largest handoff block read (a map of 64 Ki descriptors of 48 bytes, and load options).
pub const MAX_HANDOFF_BYTES: u64 = 4 << 20;
/// Bytes of the UEFI 2.x memory descriptor; firmware may report a larger stride.
pub const DESCRIPTOR_BYTES: u32 = 40;
/// `EFI_MEMORY_SP`: specific-purpose memory.
pub const ATTRIBUTE_SPECIFIC_PURPOSE: u64 = 1 << 18;
/// UEFI pages are 4 KiB whatever the CPU's page size.
pub const PAGE_BYTES: u64 = 4096;

/// `EFI_MEMORY_TYPE` values (UEFI 2.10 §7.2).
pub mod memory_type {
    pub const RESERVED: u32 = 0;
    pub const LOADER_CODE: u32 = 1;
    pub const LOADER_DATA: u32 = 2;
    pub const BOOT_SERVICES_CODE: u32 = 3;
    pub const BOOT_SERVICES_DATA: u32 = 4;
    pub const RUNTIME_SERVICES_CODE: u32 = 5;
    pub const RUNTIME_SERVICES_DATA: u32 = 6;
    pub const CONVENTIONAL: u32 = 7;
    pub const UNUSABLE: u32 = 8;
    pub const ACPI_RECLAIM: u32 = 9;
    pub const ACPI_NVS: u32 = 10;
    pub const MMIO: u32 = 11;
    pub const MMIO_PORT_SPACE: u32 = 12;
    pub const PAL_CODE: u32 = 13;
    pub const PERSISTENT: u32 = 14;
    pub const UNACCEPTED: u32 = 15;
}

/// What a UEFI memory range is to the hypervisor after `ExitBootServices`.
pub fn memory_kind(memory_type: u32, attribute: u64) -> MemoryKind {
    use memory_type::*;
    match memory_type {
        _ if attribute & ATTRIBUTE_SPECIFIC_PURPOSE != 0 => MemoryKind::Reserved,
        LOADER_CODE | LOADER_DATA | BOOT_SERVICES_CODE | BOOT_SERVICES_DATA | CONVENTIONAL => {
            MemoryKind::Usable
        }
        ACPI_RECLAIM => MemoryKind::AcpiReclaimable,
        ACPI_NVS => MemoryKind::AcpiNvs,
        UNUSABLE => MemoryKind::Unusable,
        // Runtime services, MMIO, PAL code, persistent memory, memory that must be accepted
        // first (we do not), and OEM or OS-defined types: never ours.
        _ => MemoryKind::Reserved,
    }
}

/// The header's fields (all little-endian, at the offsets [`Handoff::encode`] writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    total_bytes: u64,
    rsdp: u64,
    descriptor_bytes: u32,
    descriptor_version: u32,
    map: (u32, u32),
    load_options: (u32, u32),
}

/// Why the handoff cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UefiError {
    /// No handoff block at the address given (outside low memory, or not our signature).
    BadSignature { address: u64 },
    /// A block of a format version this image does not read.
    UnknownVersion { version: u32 },
    /// The header's size field is not [`HEADER_BYTES`].
    BadHeaderSize { bytes: u32 },
    /// The block's total size is smaller than its header or above [`MAX_HANDOFF_BYTES`].
    BadTotalSize { bytes: u64 },
    /// The memory map or the load options lie outside the block.
    OutOfBlock { what: &'static str },
    /// A descriptor stride smaller than the UEFI descriptor or not a multiple of 8.
    BadDescriptorSize { bytes: u32 },
    /// A descriptor version before 1.
    BadDescriptorVersion { version: u32 },
    /// A map whose length is not a whole number of descriptors.
    PartialDescriptor {
        map_bytes: u32,
        descriptor_bytes: u32,
    },
    /// A descriptor whose start is not 4 KiB-aligned.
    MisalignedDescriptor { index: usize, start: u64 },
    /// A descriptor whose end lies past 2^64.
    DescriptorWraps {
        index: usize,
        start: u64,
        pages: u64,
    },
    /// A map with no usable memory at all.
    NoUsableMemory,
}

impl fmt::Display for UefiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UefiError::BadSignature { address } => {
                write!(f, "UEFI handoff at {address:#x}: no handoff signature")
            }
            UefiError::UnknownVersion { version } => write!(
                f,
                "UEFI handoff version {version}: this image reads version {VERSION} (the UEFI application and the image must come from one build)"
            ),
            UefiError::BadHeaderSize { bytes } => {
                write!(f, "UEFI handoff header of {bytes} bytes, expected {HEADER_BYTES}")
            }
            UefiError::BadTotalSize { bytes } => write!(
                f,
                "UEFI handoff of {bytes} bytes: at least {HEADER_BYTES} and at most {MAX_HANDOFF_BYTES} are read"
            ),
            UefiError::OutOfBlock { what } => {
                write!(f, "UEFI handoff: the {what} lie outside the handoff block")
            }
            UefiError::BadDescriptorSize { bytes } => write!(
                f,
                "UEFI memory map: descriptor size {bytes} (at least {DESCRIPTOR_BYTES}, a multiple of 8)"
            ),
            UefiError::BadDescriptorVersion { version } => {
                write!(f, "UEFI memory map: descriptor version {version} (at least 1)")
            }
            UefiError::PartialDescriptor {
                map_bytes,
                descriptor_bytes,
            } => write!(
                f,
                "UEFI memory map of {map_bytes} bytes is not a whole number of {descriptor_bytes}-byte descriptors"
            ),
            UefiError::MisalignedDescriptor { index, start } => write!(
                f,
                "UEFI memory map: descriptor {index} starts at {start:#x}, not on a 4 KiB page"
            ),
            UefiError::DescriptorWraps {
                index,
                start,
                pages,
            } => write!(
                f,
                "UEFI memory map: descriptor {index} ({pages} pages from {start:#x}) runs past the top of the address space"
            ),
            UefiError::NoUsableMemory => f.write_str("UEFI memory map has no usable memory"),
        }
    }
}

/// What the UEFI application hands over, before encoding: the RSDP's address (0: the firmware
/// published none), the raw memory map with its descriptor stride and version, and the raw
/// load options.
#[derive(Clone, Copy, Debug)]
pub struct Handoff<'a> {
    pub rsdp: u64,
    pub memory_map: &'a [u8],
    pub descriptor_bytes: u32,
    pub descriptor_version: u32,
    pub load_options: &'a [u8],
}

impl Handoff<'_> {
    /// Bytes of the encoded block.
    pub fn encoded_len(&self) -> usize {
        HEADER_BYTES + self.memory_map.len().next_multiple_of(8) + self.load_options.len()
    }

    /// Writes the block into `out`; `None` if `out` is shorter than [`Self::encoded_len`] or
    /// a part does not fit the header's 32-bit fields.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let total = self.encoded_len();
        let map_at = HEADER_BYTES;
        let options_at = map_at + self.memory_map.len().next_multiple_of(8);
        let out = out.get_mut(..total)?;
        let field = |n: usize| u32::try_from(n).ok();
        let words: [(usize, &[u8]); 11] = [
            (0, &SIGNATURE),
            (8, &VERSION.to_le_bytes()),
            (12, &(HEADER_BYTES as u32).to_le_bytes()),
            (16, &(total as u64).to_le_bytes()),
            (24, &self.rsdp.to_le_bytes()),
            (32, &self.descriptor_bytes.to_le_bytes()),
            (36, &self.descriptor_version.to_le_bytes()),
            (40, &field(map_at)?.to_le_bytes()),
            (44, &field(self.memory_map.len())?.to_le_bytes()),
            (48, &field(options_at)?.to_le_bytes()),
            (52, &field(self.load_options.len())?.to_le_bytes()),
        ];
        out.fill(0);
        for (at, bytes) in words {
            out[at..at + bytes.len()].copy_from_slice(bytes);
        }
        out[map_at..map_at + self.memory_map.len()].copy_from_slice(self.memory_map);
        out[options_at..].copy_from_slice(self.load_options);
        Some(total)
    }
}

/// One memory descriptor as firmware writes it, padded to `stride` bytes (for tests, fuzz
/// seeds and loaders of our own).
pub fn encode_descriptor(
    memory_type: u32,
    start: u64,
    pages: u64,
    attribute: u64,
    stride: usize,
) -> Vec<u8> {
    let mut bytes = alloc::vec![0u8; stride.max(DESCRIPTOR_BYTES as usize)];
    bytes[0..4].copy_from_slice(&memory_type.to_le_bytes());
    bytes[8..16].copy_from_slice(&start.to_le_bytes());
    bytes[24..32].copy_from_slice(&pages.to_le_bytes());
    bytes[32..40].copy_from_slice(&attribute.to_le_bytes());
    bytes
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("four bytes"))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("eight bytes"))
}

/// The handoff block's total size, from its header (the first [`HEADER_BYTES`] at `address`),
/// so the caller knows how much to copy before [`parse`].
pub fn total_size(header: &[u8], address: u64) -> Result<u64, UefiError> {
    Ok(read_header(header, address)?.total_bytes)
}

fn read_header(bytes: &[u8], address: u64) -> Result<Header, UefiError> {
    if bytes.len() < HEADER_BYTES || bytes[..8] != SIGNATURE {
        return Err(UefiError::BadSignature { address });
    }
    let version = u32_at(bytes, 8);
    if version != VERSION {
        return Err(UefiError::UnknownVersion { version });
    }
    let header_bytes = u32_at(bytes, 12);
    if header_bytes as usize != HEADER_BYTES {
        return Err(UefiError::BadHeaderSize {
            bytes: header_bytes,
        });
    }
    let total_bytes = u64_at(bytes, 16);
    if total_bytes < HEADER_BYTES as u64 || total_bytes > MAX_HANDOFF_BYTES {
        return Err(UefiError::BadTotalSize { bytes: total_bytes });
    }
    Ok(Header {
        total_bytes,
        rsdp: u64_at(bytes, 24),
        descriptor_bytes: u32_at(bytes, 32),
        descriptor_version: u32_at(bytes, 36),
        map: (u32_at(bytes, 40), u32_at(bytes, 44)),
        load_options: (u32_at(bytes, 48), u32_at(bytes, 52)),
    })
}

/// The part `(offset, length)` of `block`, or which part fell outside.
fn part<'a>(
    block: &'a [u8],
    (at, len): (u32, u32),
    what: &'static str,
) -> Result<&'a [u8], UefiError> {
    let (at, len) = (at as usize, len as usize);
    at.checked_add(len)
        .filter(|&end| at >= HEADER_BYTES && end <= block.len())
        .map(|end| &block[at..end])
        .ok_or(UefiError::OutOfBlock { what })
}

/// Translates the handoff block `block` (copied from `address`) into a [`BootInfo`].
pub fn parse(block: &[u8], address: u64) -> Result<BootInfo, UefiError> {
    let header = read_header(block, address)?;
    if block.len() as u64 != header.total_bytes {
        return Err(UefiError::BadTotalSize {
            bytes: header.total_bytes,
        });
    }
    let map = part(block, header.map, "memory map")?;
    let options = part(block, header.load_options, "load options")?;
    let memory_map = read_memory_map(map, header.descriptor_bytes, header.descriptor_version)?;
    if !memory_map.iter().any(|r| r.kind == MemoryKind::Usable) {
        return Err(UefiError::NoUsableMemory);
    }
    Ok(BootInfo {
        protocol: BootProtocol::Uefi,
        memory_map,
        rsdp: (header.rsdp != 0).then_some(RsdpSource::At(header.rsdp)),
        command_line: command_line(options),
        modules: Vec::new(),
    })
}

/// The memory map's descriptors as regions, in the firmware's order (the consumers sort).
fn read_memory_map(map: &[u8], stride: u32, version: u32) -> Result<Vec<MemoryRegion>, UefiError> {
    if stride < DESCRIPTOR_BYTES || !stride.is_multiple_of(8) {
        return Err(UefiError::BadDescriptorSize { bytes: stride });
    }
    if version < 1 {
        return Err(UefiError::BadDescriptorVersion { version });
    }
    if !map.len().is_multiple_of(stride as usize) {
        return Err(UefiError::PartialDescriptor {
            map_bytes: map.len() as u32,
            descriptor_bytes: stride,
        });
    }
    let mut regions = Vec::with_capacity(map.len() / stride as usize);
    for (index, descriptor) in map.chunks_exact(stride as usize).enumerate() {
        // EFI_MEMORY_DESCRIPTOR: Type (u32), padding, PhysicalStart, VirtualStart,
        // NumberOfPages, Attribute (u64 each).
        let memory_type = u32_at(descriptor, 0);
        let start = u64_at(descriptor, 8);
        let pages = u64_at(descriptor, 24);
        let attribute = u64_at(descriptor, 32);
        if !start.is_multiple_of(PAGE_BYTES) {
            return Err(UefiError::MisalignedDescriptor { index, start });
        }
        let size = pages
            .checked_mul(PAGE_BYTES)
            .filter(|size| start.checked_add(*size).is_some())
            .ok_or(UefiError::DescriptorWraps {
                index,
                start,
                pages,
            })?;
        if size > 0 {
            regions.push(MemoryRegion {
                base: start,
                size,
                kind: memory_kind(memory_type, attribute),
            });
        }
    }
    Ok(regions)
}

/// The command line from the load options: UCS-2 text up to the first NUL (ill-formed code
/// units become U+FFFD). The UEFI shell passes the whole command line, program name first;
/// a first word naming an `.efi` file is dropped, so the rest reads as under every other
/// boot path.
pub fn command_line(load_options: &[u8]) -> String {
    let units = load_options
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .take_while(|&unit| unit != 0);
    let text: String = char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    let text = text.trim();
    let first = text.split_whitespace().next().unwrap_or("");
    let rest = if first.to_ascii_lowercase().ends_with(".efi") {
        &text[first.len()..]
    } else {
        text
    };
    rest.trim().into()
}

#[cfg(test)]
mod tests;
