//! Reading the PVH `hvm_start_info` (Xen `arch-x86/hvm/start_info.h`): magic, command line,
//! RSDP address and the memory map (version 1: 24-byte entries of addr, size, type). The
//! header is checked by the hypervisor's own reader (`numavisor_policy::bootinfo::pvh`); the
//! map is kept with its raw types, which the guest reports as they are.
//!
//! Everything here is loader-supplied: addresses are checked to lie below 4 GiB (what the
//! entry code maps) before they are read, and the entry count is capped.

use alloc::string::String;
use alloc::vec::Vec;

use numavisor_policy::bootinfo::pvh::{self, MEMMAP_ENTRY_BYTES, START_INFO_BYTES};

const MAX_CMDLINE_BYTES: u64 = 4096;
/// The entry code maps the first 4 GiB; boot structures must lie there.
const MAPPED_AT_ENTRY: u64 = 1 << 32;

/// Memory-map type of usable RAM.
pub const RAM: u32 = 1;

/// One memory-map entry.
#[derive(Clone, Copy, Debug)]
pub struct MemRange {
    pub base: u64,
    pub size: u64,
    pub kind: u32,
}

impl MemRange {
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

/// What the loader told us.
pub struct StartInfo {
    pub cmdline: Option<String>,
    pub rsdp: u64,
    pub memmap: Vec<MemRange>,
    /// Guest-physical ranges the boot structures occupy (start_info, cmdline, memory map).
    pub occupied: Vec<(u64, u64)>,
}

fn read_u32(addr: u64) -> u32 {
    // SAFETY: callers pass addresses inside [`checked`] ranges: non-null, below 4 GiB, identity
    // mapped; an unaligned read of plain bytes.
    unsafe { core::ptr::read_unaligned(addr as *const u32) }
}

fn read_u64(addr: u64) -> u64 {
    u64::from(read_u32(addr)) | (u64::from(read_u32(addr + 4)) << 32)
}

/// `[addr, addr + len)` if it is non-null and mapped.
fn checked(addr: u64, len: u64) -> Result<(u64, u64), &'static str> {
    match addr.checked_add(len) {
        Some(end) if addr != 0 && end <= MAPPED_AT_ENTRY => Ok((addr, end)),
        _ => Err("boot structure outside the first 4 GiB or at address 0"),
    }
}

/// Parse the start_info at `addr` (EBX at entry).
pub fn parse(addr: u32) -> Result<StartInfo, &'static str> {
    let (addr, end) = checked(u64::from(addr), START_INFO_BYTES as u64)?;
    // SAFETY: `checked` bounds the range: non-null, below 4 GiB, identity mapped.
    let header = unsafe { core::slice::from_raw_parts(addr as *const u8, START_INFO_BYTES) };
    let header = pvh::StartInfo::parse(header).map_err(|e| match e {
        pvh::PvhError::BadMagic { .. } => "hvm_start_info magic is not 0x336ec578",
        pvh::PvhError::NoMemoryMap { .. } => "hvm_start_info has no memory map (version 0?)",
        pvh::PvhError::TooManyEntries { .. } => "memory map has more than 1024 entries",
        pvh::PvhError::Truncated { .. } => "hvm_start_info is truncated",
        pvh::PvhError::TooManyModules { .. } => "hvm_start_info has more than 64 modules",
        pvh::PvhError::ModuleWraps { .. } => "a module runs past the top of the address space",
    })?;
    let mut occupied = Vec::from([(addr, end)]);

    let cmdline_paddr = header.cmdline_paddr;
    let cmdline = if cmdline_paddr == 0 {
        None
    } else {
        let (start, _) = checked(cmdline_paddr, 1)?;
        let mut bytes = Vec::new();
        let mut at = start;
        while at < MAPPED_AT_ENTRY && at - start < MAX_CMDLINE_BYTES {
            // SAFETY: `at` is non-null and below 4 GiB (identity mapped).
            let byte = unsafe { core::ptr::read(at as *const u8) };
            if byte == 0 {
                break;
            }
            bytes.push(byte);
            at += 1;
        }
        occupied.push((start, at + 1));
        Some(String::from_utf8_lossy(&bytes).into_owned())
    };

    let rsdp = header.rsdp_paddr;
    let (map_start, map_end) = checked(header.memmap_paddr, header.memmap_bytes() as u64)?;
    occupied.push((map_start, map_end));
    let memmap = (map_start..map_end)
        .step_by(MEMMAP_ENTRY_BYTES)
        .map(|e| MemRange {
            base: read_u64(e),
            size: read_u64(e + 8),
            kind: read_u32(e + 16),
        })
        .collect();
    Ok(StartInfo {
        cmdline,
        rsdp,
        memmap,
        occupied,
    })
}
