//! Second-level address translation (AMD APM vol. 2 §15.25 nested paging; Intel SDM vol. 3C
//! §29.3 EPT): a format-generic builder that maps guest-physical ranges onto host-physical
//! ones with the largest pages their alignment allows, every table page withdrawn from the
//! partition's pool.

mod builder;
mod error;
mod format;
mod sizing;
mod table_memory;

pub use builder::SlatBuilder;
pub use error::SlatError;
pub use format::{Ept, Npt, SlatFormat, ADDRESS_MASK, LARGE_PAGE};
pub use sizing::{table_pages_needed, GPA_LIMIT, SPA_LIMIT};
pub use table_memory::{HeapTableMemory, TableMemory, ENTRIES_PER_TABLE};

use crate::memory::BlockSize;

/// What a guest may do with a mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Permissions {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl Permissions {
    /// Guest RAM.
    pub const READ_WRITE_EXECUTE: Permissions = Permissions {
        read: true,
        write: true,
        execute: true,
    };
    /// Data that must not run.
    pub const READ_WRITE: Permissions = Permissions {
        read: true,
        write: true,
        execute: false,
    };
    /// Code that must not change.
    pub const READ_EXECUTE: Permissions = Permissions {
        read: true,
        write: false,
        execute: true,
    };
}

/// What a SLAT holds: leaves by size and the bytes of table pages (root included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlatStats {
    pub pages_4k: u64,
    pub pages_2m: u64,
    pub pages_1g: u64,
    pub table_bytes: u64,
}

/// Where one guest-physical address leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub spa: u64,
    /// The size of the leaf that maps it.
    pub size: BlockSize,
    pub perms: Permissions,
}

impl core::fmt::Display for Permissions {
    /// `rwx`-style, with `-` for what is not granted.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
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
