//! Translating the PVH boot ABI into a [`BootInfo`].
//!
//! Layout from Xen's `xen/include/public/arch-x86/hvm/start_info.h`: `hvm_start_info` (magic
//! 0x336ec578, version, flags, module count and list, command line, RSDP, and from version 1
//! the memory map), `hvm_memmap_table_entry` (address, size, type, reserved: 24 bytes) and
//! `hvm_modlist_entry` (address, size, command line, reserved: 32 bytes; QEMU lists the
//! `-initrd` file there).
//! The bytes come from the loader, so every field is checked before use.

use alloc::vec::Vec;

use super::{MemoryKind, MemoryRegion};

/// `hvm_start_info.magic`.
pub const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Bytes of a version-1 `hvm_start_info`.
pub const START_INFO_BYTES: usize = 56;
/// Bytes of one memory-map entry.
pub const MEMMAP_ENTRY_BYTES: usize = 24;
/// Memory-map entries we accept (a real map has tens).
pub const MAX_MEMMAP_ENTRIES: u32 = 1024;
/// Bytes of one module-list entry.
pub const MODLIST_ENTRY_BYTES: usize = 32;
/// Modules we accept.
pub const MAX_MODULES: u32 = 64;

/// The fields of `hvm_start_info` we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartInfo {
    pub version: u32,
    pub cmdline_paddr: u64,
    pub rsdp_paddr: u64,
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
    /// Address of the module list; 0 when there are no modules.
    pub modlist_paddr: u64,
    pub nr_modules: u32,
}

/// One `hvm_modlist_entry`, checked: `start <= end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleEntry {
    pub start: u64,
    pub end: u64,
    /// Physical address of its NUL-terminated command line; 0 if none.
    pub cmdline_paddr: u64,
}

/// Why a PVH start_info cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvhError {
    Truncated {
        have: usize,
    },
    BadMagic {
        found: u32,
    },
    NoMemoryMap {
        version: u32,
    },
    TooManyEntries {
        entries: u32,
    },
    TooManyModules {
        modules: u32,
    },
    /// Module `index`'s address plus size does not fit in 64 bits.
    ModuleWraps {
        index: usize,
        paddr: u64,
        size: u64,
    },
}

impl core::fmt::Display for PvhError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PvhError::Truncated { have } => {
                write!(f, "PVH start_info: {have} bytes, need {START_INFO_BYTES}")
            }
            PvhError::BadMagic { found } => write!(
                f,
                "PVH start_info: magic {found:#x}, expected {START_INFO_MAGIC:#x} (not booted by a PVH loader?)"
            ),
            PvhError::NoMemoryMap { version } => write!(
                f,
                "PVH start_info version {version} carries no memory map (version 1 or later needed)"
            ),
            PvhError::TooManyEntries { entries } => write!(
                f,
                "PVH memory map claims {entries} entries (more than {MAX_MEMMAP_ENTRIES})"
            ),
            PvhError::TooManyModules { modules } => write!(
                f,
                "PVH start_info claims {modules} modules (more than {MAX_MODULES})"
            ),
            PvhError::ModuleWraps { index, paddr, size } => write!(
                f,
                "PVH module {index} at {paddr:#x} of {size:#x} bytes runs past the top of the address space"
            ),
        }
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut raw = [0; 4];
    raw.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(raw)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut raw = [0; 8];
    raw.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(raw)
}

impl StartInfo {
    /// Decodes and checks `hvm_start_info`.
    pub fn parse(bytes: &[u8]) -> Result<StartInfo, PvhError> {
        if bytes.len() < START_INFO_BYTES {
            return Err(PvhError::Truncated { have: bytes.len() });
        }
        let magic = u32_at(bytes, 0);
        if magic != START_INFO_MAGIC {
            return Err(PvhError::BadMagic { found: magic });
        }
        let version = u32_at(bytes, 4);
        let info = StartInfo {
            version,
            cmdline_paddr: u64_at(bytes, 24),
            rsdp_paddr: u64_at(bytes, 32),
            memmap_paddr: if version >= 1 { u64_at(bytes, 40) } else { 0 },
            memmap_entries: if version >= 1 { u32_at(bytes, 48) } else { 0 },
            nr_modules: u32_at(bytes, 12),
            modlist_paddr: u64_at(bytes, 16),
        };
        if info.memmap_paddr == 0 || info.memmap_entries == 0 {
            return Err(PvhError::NoMemoryMap { version });
        }
        if info.memmap_entries > MAX_MEMMAP_ENTRIES {
            return Err(PvhError::TooManyEntries {
                entries: info.memmap_entries,
            });
        }
        if info.nr_modules > MAX_MODULES {
            return Err(PvhError::TooManyModules {
                modules: info.nr_modules,
            });
        }
        Ok(info)
    }

    /// Bytes of the module list this start_info points at (0 without modules).
    pub fn modlist_bytes(&self) -> usize {
        if self.modlist_paddr == 0 {
            0
        } else {
            self.nr_modules as usize * MODLIST_ENTRY_BYTES
        }
    }

    /// Bytes of the memory map table this start_info points at.
    pub fn memmap_bytes(&self) -> usize {
        self.memmap_entries as usize * MEMMAP_ENTRY_BYTES
    }
}

/// Decodes `hvm_memmap_table_entry` records (types as in the E820 map: 1 RAM, 2 reserved,
/// 3 ACPI, 4 NVS, 5 unusable; anything else is treated as reserved).
pub fn parse_memory_map(bytes: &[u8]) -> Vec<MemoryRegion> {
    bytes
        .chunks_exact(MEMMAP_ENTRY_BYTES)
        .map(|entry| MemoryRegion {
            base: u64_at(entry, 0),
            size: u64_at(entry, 8),
            kind: match u32_at(entry, 16) {
                1 => MemoryKind::Usable,
                3 => MemoryKind::AcpiReclaimable,
                4 => MemoryKind::AcpiNvs,
                5 => MemoryKind::Unusable,
                _ => MemoryKind::Reserved,
            },
        })
        .collect()
}

/// Decodes `hvm_modlist_entry` records; a module whose end would wrap is an error.
pub fn parse_module_list(bytes: &[u8]) -> Result<Vec<ModuleEntry>, PvhError> {
    bytes
        .chunks_exact(MODLIST_ENTRY_BYTES)
        .enumerate()
        .map(|(index, entry)| {
            let (paddr, size) = (u64_at(entry, 0), u64_at(entry, 8));
            let end =
                paddr
                    .checked_add(size)
                    .ok_or(PvhError::ModuleWraps { index, paddr, size })?;
            Ok(ModuleEntry {
                start: paddr,
                end,
                cmdline_paddr: u64_at(entry, 16),
            })
        })
        .collect()
}

/// The command line: the bytes up to the first NUL, lossily decoded.
pub fn parse_command_line(bytes: &[u8]) -> alloc::string::String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    alloc::string::String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_info(magic: u32, version: u32, memmap: u64, entries: u32) -> Vec<u8> {
        let mut b = alloc::vec![0u8; START_INFO_BYTES];
        b[0..4].copy_from_slice(&magic.to_le_bytes());
        b[4..8].copy_from_slice(&version.to_le_bytes());
        b[24..32].copy_from_slice(&0x7000u64.to_le_bytes());
        b[32..40].copy_from_slice(&0xf5a40u64.to_le_bytes());
        b[40..48].copy_from_slice(&memmap.to_le_bytes());
        b[48..52].copy_from_slice(&entries.to_le_bytes());
        b
    }

    #[test]
    fn parses_a_version_1_start_info() {
        let info = StartInfo::parse(&start_info(START_INFO_MAGIC, 1, 0x6000, 5)).unwrap();
        assert_eq!(info.cmdline_paddr, 0x7000);
        assert_eq!(info.rsdp_paddr, 0xf5a40);
        assert_eq!(info.memmap_bytes(), 120);
    }

    #[test]
    fn refuses_bad_start_infos() {
        assert_eq!(
            StartInfo::parse(&[0; 10]),
            Err(PvhError::Truncated { have: 10 })
        );
        assert!(matches!(
            StartInfo::parse(&start_info(0x1234, 1, 0x6000, 5)),
            Err(PvhError::BadMagic { found: 0x1234 })
        ));
        assert_eq!(
            StartInfo::parse(&start_info(START_INFO_MAGIC, 0, 0x6000, 5)),
            Err(PvhError::NoMemoryMap { version: 0 })
        );
        assert_eq!(
            StartInfo::parse(&start_info(START_INFO_MAGIC, 1, 0x6000, 100_000)),
            Err(PvhError::TooManyEntries { entries: 100_000 })
        );
    }

    #[test]
    fn decodes_the_module_list() {
        let mut info = start_info(START_INFO_MAGIC, 1, 0x6000, 5);
        info[12..16].copy_from_slice(&2u32.to_le_bytes());
        info[16..24].copy_from_slice(&0x8000u64.to_le_bytes());
        let parsed = StartInfo::parse(&info).unwrap();
        assert_eq!(parsed.modlist_bytes(), 64);
        info[12..16].copy_from_slice(&65u32.to_le_bytes());
        assert_eq!(
            StartInfo::parse(&info),
            Err(PvhError::TooManyModules { modules: 65 })
        );

        let mut list = Vec::new();
        for (paddr, size, cmdline) in [(0x70_0000u64, 0x1234u64, 0x9000u64), (u64::MAX, 2, 0)] {
            list.extend_from_slice(&paddr.to_le_bytes());
            list.extend_from_slice(&size.to_le_bytes());
            list.extend_from_slice(&cmdline.to_le_bytes());
            list.extend_from_slice(&0u64.to_le_bytes());
        }
        assert_eq!(
            parse_module_list(&list[..32]).unwrap(),
            alloc::vec![ModuleEntry {
                start: 0x70_0000,
                end: 0x70_1234,
                cmdline_paddr: 0x9000
            }]
        );
        assert_eq!(
            parse_module_list(&list),
            Err(PvhError::ModuleWraps {
                index: 1,
                paddr: u64::MAX,
                size: 2
            })
        );
    }

    #[test]
    fn decodes_memory_map_types_and_command_line() {
        let mut bytes = Vec::new();
        for (base, size, kind) in [
            (0u64, 0x9fc00u64, 1u32),
            (0xf0000, 0x10000, 2),
            (0x100000, 0x7ee0000, 1),
            (0x7fe0000, 0x20000, 3),
            (0, 0, 9),
        ] {
            bytes.extend_from_slice(&base.to_le_bytes());
            bytes.extend_from_slice(&size.to_le_bytes());
            bytes.extend_from_slice(&kind.to_le_bytes());
            bytes.extend_from_slice(&0u32.to_le_bytes());
        }
        let map = parse_memory_map(&bytes);
        assert_eq!(map.len(), 5);
        assert_eq!(map[2].kind, MemoryKind::Usable);
        assert_eq!(map[3].kind, MemoryKind::AcpiReclaimable);
        assert_eq!(map[4].kind, MemoryKind::Reserved);
        assert_eq!(
            parse_command_line(b"log=debug exit=ready\0junk"),
            "log=debug exit=ready"
        );
    }
}
