//! Why a SLAT mapping was refused (AMD APM vol. 2 §15.25, Intel SDM vol. 3C §29.3). A refused
//! `map` has changed nothing.

use core::fmt;

use crate::memory::BlockSize;

use super::{OutOfTablePages, Permissions};

/// Why [`SlatBuilder::new`](super::SlatBuilder::new) or
/// [`SlatBuilder::map`](super::SlatBuilder::map) failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlatError {
    /// The partition's pool cannot supply the table pages (it names the partition, the pages
    /// needed and the balance).
    Pool(OutOfTablePages),
    /// GPA, SPA or length is not a multiple of 4 KiB.
    Unaligned { gpa: u64, spa: u64, len: u64 },
    /// `[gpa, gpa + len)` reaches past the 48-bit guest-physical space of a 4-level walk.
    AddressTooLarge { gpa: u64, len: u64 },
    /// `[spa, spa + len)` reaches past the 52-bit host-physical space an entry can name.
    HostAddressTooLarge { spa: u64, len: u64 },
    /// The leaf of `size` at `gpa` would overlap a mapping made earlier.
    AlreadyMapped { gpa: u64, size: BlockSize },
    /// The 4 KiB page at `gpa` is not mapped (or was listed twice), so it cannot be unmapped.
    NotMapped { gpa: u64 },
    /// A range to unmap whole cuts through the leaf of `size` at `gpa` (unmapping it whole
    /// would take more than the range; splitting it is not what a whole unmap does).
    LeafStraddles { gpa: u64, size: BlockSize },
    /// The format cannot grant exactly these permissions (NPT needs read; EPT refuses write
    /// without read, and "no access" is no mapping at all).
    Permissions {
        format: &'static str,
        perms: Permissions,
    },
}

impl From<OutOfTablePages> for SlatError {
    fn from(error: OutOfTablePages) -> Self {
        SlatError::Pool(error)
    }
}

impl fmt::Display for SlatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlatError::Pool(error) => write!(f, "cannot build the SLAT tables: {error}"),
            SlatError::Unaligned { gpa, spa, len } => write!(
                f,
                "cannot map {len:#x} bytes from guest-physical {gpa:#x} to host-physical \
                 {spa:#x}: all three must be multiples of 4 KiB"
            ),
            SlatError::AddressTooLarge { gpa, len } => write!(
                f,
                "cannot map {len:#x} bytes at guest-physical {gpa:#x}: past the 256 TiB \
                 (48-bit) guest-physical space"
            ),
            SlatError::HostAddressTooLarge { spa, len } => write!(
                f,
                "cannot map {len:#x} bytes of host-physical memory at {spa:#x}: past the 52-bit \
                 physical address limit"
            ),
            SlatError::AlreadyMapped { gpa, size } => write!(
                f,
                "cannot map the {size} page at guest-physical {gpa:#x}: it overlaps an earlier \
                 mapping"
            ),
            SlatError::NotMapped { gpa } => write!(
                f,
                "cannot unmap the page at guest-physical {gpa:#x}: it is not mapped"
            ),
            SlatError::LeafStraddles { gpa, size } => write!(
                f,
                "cannot unmap a range whole: the {size} leaf at guest-physical {gpa:#x} reaches \
                 past its edge"
            ),
            SlatError::Permissions { format, perms } => write!(
                f,
                "{format} cannot grant exactly {perms} access (NPT always grants read; EPT \
                 refuses write without read)"
            ),
        }
    }
}
