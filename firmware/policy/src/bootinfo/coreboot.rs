//! Reads coreboot tables (coreboot's `src/commonlib/include/commonlib/coreboot_tables.h`)
//! into a [`BootInfo`].
//!
//! coreboot's `selfboot` calls an ELF payload as a cdecl function in 32-bit flat protected
//! mode with one stack argument: the address of the table header ("LBIO"). coreboot also
//! leaves a small table at 0x500 whose only record, `LB_TAG_FORWARD`, points at the real
//! one; a payload given no pointer scans for "LBIO" every 16 bytes over 0x0–0xFFF and
//! 0xF0000–0xF0FFF, as libpayload does. Header: signature, header bytes, header checksum,
//! table bytes, table checksum, record count (6 × 4 bytes); both checksums are IP checksums
//! (RFC 1071 over little-endian 16-bit words). Records are `{tag, size}` followed by their
//! data; `size` counts the whole record.
//!
//! Everything read is untrusted: sizes are bounded, checksums checked, forwards followed at
//! most [`MAX_FORWARDS`] times and never to a table already seen.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::{BootInfo, BootProtocol, MemoryKind, MemoryRegion, RsdpSource};

/// The header's signature.
pub const SIGNATURE: [u8; 4] = *b"LBIO";
/// Bytes of the header.
pub const HEADER_BYTES: usize = 24;
/// The longest table read (coreboot's are a few KiB).
pub const MAX_TABLE_BYTES: u32 = 64 * 1024;
/// Forward records followed before giving up.
pub const MAX_FORWARDS: usize = 4;

/// Record tags numavisor reads.
pub mod tag {
    pub const MEMORY: u32 = 0x01;
    pub const SERIAL: u32 = 0x0F;
    pub const FORWARD: u32 = 0x11;
    pub const ACPI_RSDP: u32 = 0x43;
}

/// `LB_TAG_MEMORY` range types.
pub mod memory_type {
    pub const RAM: u32 = 1;
    pub const RESERVED: u32 = 2;
    pub const ACPI: u32 = 3;
    pub const NVS: u32 = 4;
    pub const UNUSABLE: u32 = 5;
    pub const TABLE: u32 = 16;
}

/// Where the payload looks for a header when it was given none (libpayload's ranges).
pub const SCAN_RANGES: [(u64, u64); 2] = [(0x0, 0x1000), (0xF0000, 0xF1000)];

/// Physical memory as the parser reads it: `len` bytes at `address`, or `None` where there is
/// nothing to read (outside memory, or past what the reader allows).
pub trait TableMemory {
    fn read(&self, address: u64, len: usize) -> Option<Vec<u8>>;
}

/// Why the coreboot tables cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorebootError {
    /// No header at the address given, nor in the scanned ranges.
    NotFound,
    /// A header whose signature is not "LBIO".
    BadSignature {
        address: u64,
    },
    /// A header whose header-bytes field is not 24.
    BadHeaderSize {
        address: u64,
        bytes: u32,
    },
    HeaderChecksum {
        address: u64,
    },
    /// The records do not fit in the table bytes, or the table is larger than we read.
    TableTooLarge {
        address: u64,
        bytes: u32,
    },
    TableChecksum {
        address: u64,
    },
    /// The table could not be read at all.
    Unreadable {
        address: u64,
    },
    /// A record whose size is smaller than its own header or runs past the table.
    BadRecord {
        address: u64,
        tag: u32,
        size: u32,
    },
    /// Forward records chained too far, or back to a table already seen.
    ForwardLoop {
        address: u64,
    },
    /// No `LB_TAG_MEMORY` record: nothing says where RAM is.
    NoMemoryMap,
}

impl fmt::Display for CorebootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CorebootError::*;
        match self {
            NotFound => write!(f, "no coreboot table (\"LBIO\") at the entry's pointer, at 0x0-0xfff or 0xf0000-0xf0fff"),
            BadSignature { address } => write!(f, "coreboot table at {address:#x}: no \"LBIO\" signature"),
            BadHeaderSize { address, bytes } => write!(f, "coreboot table at {address:#x}: header of {bytes} bytes (24 expected)"),
            HeaderChecksum { address } => write!(f, "coreboot table at {address:#x}: bad header checksum"),
            TableTooLarge { address, bytes } => write!(f, "coreboot table at {address:#x}: {bytes} bytes of records (at most {MAX_TABLE_BYTES} read)"),
            TableChecksum { address } => write!(f, "coreboot table at {address:#x}: bad table checksum"),
            Unreadable { address } => write!(f, "coreboot table at {address:#x} cannot be read"),
            BadRecord { address, tag, size } => write!(f, "coreboot table at {address:#x}: record tag {tag:#x} of size {size} does not fit"),
            ForwardLoop { address } => write!(f, "coreboot table at {address:#x}: forward records loop or chain too far"),
            NoMemoryMap => write!(f, "the coreboot table has no memory map (LB_TAG_MEMORY)"),
        }
    }
}

/// The 16-bit one's-complement checksum coreboot computes (`compute_ip_checksum`): zero over
/// a header whose checksum field is filled in.
pub fn ip_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        sum += if i & 1 == 1 {
            (b as u32) << 8
        } else {
            b as u32
        };
        if sum > 0xFFFF {
            sum = (sum + (sum >> 16)) & 0xFFFF;
        }
    }
    !(sum as u16)
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(offset..offset + 4)?.try_into().ok()?,
    ))
}

/// `lb_uint64`: two 32-bit halves, low first (4-byte aligned in the tables).
fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u32_at(bytes, offset)? as u64 | (u32_at(bytes, offset + 4)? as u64) << 32)
}

/// One record: its tag and its data (after the 8-byte record header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub tag: u32,
    pub data: Vec<u8>,
}

/// A checked table: where it was and its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub address: u64,
    pub records: Vec<Record>,
}

/// Whether a header looks like coreboot's at `address` (signature only).
fn has_signature(memory: &impl TableMemory, address: u64) -> bool {
    memory
        .read(address, 4)
        .is_some_and(|b| b.as_slice() == SIGNATURE)
}

/// Reads and checks the table whose header is at `address`.
pub fn read_table(memory: &impl TableMemory, address: u64) -> Result<Table, CorebootError> {
    let header = memory
        .read(address, HEADER_BYTES)
        .ok_or(CorebootError::Unreadable { address })?;
    if header[0..4] != SIGNATURE {
        return Err(CorebootError::BadSignature { address });
    }
    let header_bytes = u32_at(&header, 4).unwrap_or(0);
    if header_bytes as usize != HEADER_BYTES {
        return Err(CorebootError::BadHeaderSize {
            address,
            bytes: header_bytes,
        });
    }
    if ip_checksum(&header) != 0 {
        return Err(CorebootError::HeaderChecksum { address });
    }
    let table_bytes = u32_at(&header, 12).unwrap_or(0);
    let table_checksum = u32_at(&header, 16).unwrap_or(0);
    let entries = u32_at(&header, 20).unwrap_or(0);
    if table_bytes > MAX_TABLE_BYTES {
        return Err(CorebootError::TableTooLarge {
            address,
            bytes: table_bytes,
        });
    }
    let body = memory
        .read(address + HEADER_BYTES as u64, table_bytes as usize)
        .ok_or(CorebootError::Unreadable { address })?;
    if ip_checksum(&body) as u32 != table_checksum {
        return Err(CorebootError::TableChecksum { address });
    }
    let mut records = Vec::new();
    let mut offset = 0usize;
    while offset < body.len() && records.len() < entries as usize {
        let (Some(tag), Some(size)) = (u32_at(&body, offset), u32_at(&body, offset + 4)) else {
            return Err(CorebootError::BadRecord {
                address,
                tag: 0,
                size: 0,
            });
        };
        let end = offset.checked_add(size as usize);
        match end {
            Some(end) if size >= 8 && end <= body.len() => {
                records.push(Record {
                    tag,
                    data: body[offset + 8..end].to_vec(),
                });
                offset = end;
            }
            _ => return Err(CorebootError::BadRecord { address, tag, size }),
        }
    }
    Ok(Table { address, records })
}

/// Finds the table coreboot handed over: from `pointer` (the entry's argument; 0 if none) or
/// the scanned ranges, following forward records.
pub fn find_table(memory: &impl TableMemory, pointer: u64) -> Result<Table, CorebootError> {
    let start = if pointer != 0 && has_signature(memory, pointer) {
        pointer
    } else {
        SCAN_RANGES
            .iter()
            .flat_map(|&(from, to)| (from..to).step_by(16))
            .find(|&address| has_signature(memory, address) && read_table(memory, address).is_ok())
            .ok_or(CorebootError::NotFound)?
    };
    let mut seen = Vec::new();
    let mut address = start;
    loop {
        if seen.contains(&address) || seen.len() > MAX_FORWARDS {
            return Err(CorebootError::ForwardLoop { address });
        }
        seen.push(address);
        let table = read_table(memory, address)?;
        let forward = table
            .records
            .iter()
            .find(|r| r.tag == tag::FORWARD)
            .and_then(|r| u64_at(&r.data, 0));
        match forward {
            Some(next) => address = next,
            None => return Ok(table),
        }
    }
}

/// A record as coreboot writes one: `{tag, size}` (size counting the whole record) and
/// `data`. With [`encode_table`], what the coreboot test loader and the tests lay out.
pub fn encode_record(tag: u32, data: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(8 + data.len());
    record.extend_from_slice(&tag.to_le_bytes());
    record.extend_from_slice(&(8 + data.len() as u32).to_le_bytes());
    record.extend_from_slice(data);
    record
}

/// One 20-byte `LB_TAG_MEMORY` range as coreboot writes it: 64-bit start and size as
/// low/high halves (4-byte aligned), then the type.
pub fn encode_memory_range(start: u64, size: u64, kind: u32) -> [u8; 20] {
    let mut range = [0u8; 20];
    let fields = [
        start as u32,
        (start >> 32) as u32,
        size as u32,
        (size >> 32) as u32,
        kind,
    ];
    for (slot, field) in range.chunks_exact_mut(4).zip(fields) {
        slot.copy_from_slice(&field.to_le_bytes());
    }
    range
}

/// A table as coreboot writes one: the header, with both IP checksums, then `records`
/// (each from [`encode_record`]).
pub fn encode_table(records: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = records.concat();
    let mut table = Vec::with_capacity(HEADER_BYTES + body.len());
    table.extend_from_slice(&SIGNATURE);
    for field in [
        HEADER_BYTES as u32,
        0,
        body.len() as u32,
        ip_checksum(&body) as u32,
        records.len() as u32,
    ] {
        table.extend_from_slice(&field.to_le_bytes());
    }
    let sum = ip_checksum(&table) as u32;
    table[8..12].copy_from_slice(&sum.to_le_bytes());
    table.extend_from_slice(&body);
    table
}

/// The memory map of `LB_TAG_MEMORY` records (20-byte ranges: start, size, type).
fn memory_map(table: &Table) -> Vec<MemoryRegion> {
    table
        .records
        .iter()
        .filter(|r| r.tag == tag::MEMORY)
        .flat_map(|r| r.data.chunks_exact(20))
        .filter_map(|range| {
            let (base, size, kind) = (u64_at(range, 0)?, u64_at(range, 8)?, u32_at(range, 16)?);
            let kind = match kind {
                memory_type::RAM => MemoryKind::Usable,
                memory_type::ACPI => MemoryKind::AcpiReclaimable,
                memory_type::NVS => MemoryKind::AcpiNvs,
                memory_type::UNUSABLE => MemoryKind::Unusable,
                // coreboot's own tables (TABLE) stay: we may be reading them.
                _ => MemoryKind::Reserved,
            };
            Some(MemoryRegion { base, size, kind })
        })
        .collect()
}

/// Translates the table coreboot handed over (see [`find_table`]). ELF payloads get no
/// command line from coreboot: the default options apply (empty command line).
pub fn boot_info(memory: &impl TableMemory, pointer: u64) -> Result<BootInfo, CorebootError> {
    let table = find_table(memory, pointer)?;
    let memory_map = memory_map(&table);
    if memory_map.is_empty() {
        return Err(CorebootError::NoMemoryMap);
    }
    let rsdp = table
        .records
        .iter()
        .find(|r| r.tag == tag::ACPI_RSDP)
        .and_then(|r| u64_at(&r.data, 0))
        .filter(|&a| a != 0)
        .map(RsdpSource::At);
    Ok(BootInfo {
        protocol: BootProtocol::Coreboot,
        memory_map,
        rsdp,
        command_line: String::new(),
        modules: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
