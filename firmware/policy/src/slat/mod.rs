//! Second-level address translation: the tables that map a partition's guest-physical space
//! (GPA) onto system-physical memory (SPA), in AMD's nested-page-table format (AMD APM vol. 2
//! §15.25, nested paging) or Intel's EPT format (Intel SDM vol. 3C §29.3). DESIGN.md, "Memory
//! model": SLAT, Pools, Large pages.
//!
//! [`SlatBuilder`] is generic over the [`SlatFormat`] ([`Npt`], [`Ept`]) and writes tables
//! through [`TableMemory`], so it runs on the host in tests. Every table page is withdrawn
//! from the partition's pool, seen here as [`TablePages`] (the partition module's pool
//! implements it, so this module does not depend on it); a pool too small fails the mapping
//! with [`OutOfTablePages`], "insufficient memory", never a panic. 4-level tables only
//! (48-bit GPA).
//!
//! # Table memory per GiB of guest RAM
//!
//! For RAM whose GPA and SPA are aligned to the leaf size (the `tests.rs` test
//! `table_bytes_per_gib` checks these figures against the builder):
//!
//! | largest leaf | 1 GiB of RAM | each further GiB          | 4 GiB at 0 |
//! |--------------|--------------|---------------------------|------------|
//! | 4 KiB        | 2060 KiB     | 2052 KiB (1 PD + 512 PTs) | 8216 KiB   |
//! | 2 MiB        | 12 KiB       | 4 KiB (1 PD)              | 24 KiB     |
//! | 1 GiB        | 8 KiB        | 0 (4 KiB per 512 GiB)     | 8 KiB      |
//!
//! The fixed 8 KiB is the PML4 and one PDPT. With 1 GiB leaves a partition of up to 512 GiB
//! of aligned RAM needs 8 KiB of tables in all; each 1 GiB region that cannot use a 1 GiB
//! leaf adds a 4 KiB PD, and each 2 MiB region that cannot use a 2 MiB leaf a 4 KiB PT.
//! [`table_pages_needed`] gives the exact count for pool sizing.

mod builder;
mod error;
mod format;
mod sizing;
mod table_memory;
mod table_pages;
#[cfg(test)]
mod tests;

use core::fmt;

use crate::memory::BlockSize;

pub use builder::SlatBuilder;
pub use error::SlatError;
pub use format::{Ept, Npt, SlatFormat, ADDRESS_MASK, LARGE_PAGE};
pub use sizing::{table_pages_needed, table_pages_needed_per_range, GPA_LIMIT, SPA_LIMIT};
pub use table_memory::{HeapTableMemory, TableMemory, ENTRIES_PER_TABLE};
pub use table_pages::{OutOfTablePages, TablePages};

/// What a mapping lets the guest do with the memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Permissions {
    /// Loads.
    pub read: bool,
    /// Stores.
    pub write: bool,
    /// Instruction fetches.
    pub execute: bool,
}

impl Permissions {
    /// Ordinary RAM.
    pub const READ_WRITE_EXECUTE: Permissions = Permissions {
        read: true,
        write: true,
        execute: true,
    };
    /// Data that must not run (device memory, a non-executable RAM policy).
    pub const READ_WRITE: Permissions = Permissions {
        read: true,
        write: true,
        execute: false,
    };
    /// Code or firmware the guest must not change.
    pub const READ_EXECUTE: Permissions = Permissions {
        read: true,
        write: false,
        execute: true,
    };
}

impl fmt::Display for Permissions {
    /// "rwx", "r-x", "rw-", ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |on: bool, c: char| if on { c } else { '-' };
        write!(
            f,
            "{}{}{}",
            flag(self.read, 'r'),
            flag(self.write, 'w'),
            flag(self.execute, 'x')
        )
    }
}

/// Where a guest-physical address leads, by [`SlatBuilder::translate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The system-physical address of the byte.
    pub spa: u64,
    /// The size of the leaf that maps it.
    pub size: BlockSize,
    /// What that leaf grants.
    pub perms: Permissions,
}

/// What a builder has written: leaves by size, and table memory (root included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlatStats {
    /// 4 KiB leaves.
    pub pages_4k: u64,
    /// 2 MiB leaves.
    pub pages_2m: u64,
    /// 1 GiB leaves.
    pub pages_1g: u64,
    /// Bytes of table pages, all withdrawn from the partition's pool.
    pub table_bytes: u64,
}

impl SlatStats {
    /// Guest-physical bytes mapped.
    pub fn mapped_bytes(&self) -> u64 {
        self.pages_4k * BlockSize::Size4K.bytes()
            + self.pages_2m * BlockSize::Size2M.bytes()
            + self.pages_1g * BlockSize::Size1G.bytes()
    }
}
