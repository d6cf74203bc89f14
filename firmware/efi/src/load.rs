//! Placing the embedded image at its physical addresses while boot services are up.
//!
//! The image is linked at a fixed address (`layout.ld`). Its whole range is allocated with
//! `AllocatePages(AllocateAddress)`, which succeeds only where the firmware's map says the
//! memory is free: what the firmware keeps there is never overwritten, and when the range is
//! taken the user learns by what.

use core::fmt;

use numavisor_policy::bootinfo::uefi::PAGE_BYTES;
use numavisor_policy::guest::elf::{self, ImageError};
use uefi::boot::{self, AllocateType, MemoryType};

use crate::pages::Pages;
use uefi::mem::memory_map::MemoryMap;

/// Why the image cannot be placed.
#[derive(Debug)]
pub enum LoadError {
    /// The embedded image is not a loadable ELF (a build problem).
    Image(ImageError),
    /// The image's range is not free memory on this firmware.
    RangeTaken {
        start: u64,
        end: u64,
        /// The first range in the way and the firmware's type for it, if the map says.
        taken_by: Option<(u64, u64, MemoryType)>,
        status: uefi::Status,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Image(e) => write!(f, "the embedded image: {e}"),
            LoadError::RangeTaken {
                start,
                end,
                taken_by,
                status,
            } => {
                write!(
                    f,
                    "the image is linked at [{start:#x}, {end:#x}) but the firmware does not give out that memory ({status:?})"
                )?;
                match taken_by {
                    Some((from, to, kind)) => write!(f, ": [{from:#x}, {to:#x}) is {kind:?}"),
                    None => f.write_str(": it runs past the RAM the firmware describes"),
                }
            }
        }
    }
}

/// The image's entry and the physical range it now occupies (freed again if dropped before
/// the application leaves boot services).
pub struct Placed {
    pub entry: u64,
    pub start: u64,
    pub end: u64,
    pub pages: Pages,
}

/// Copies the PT_LOAD segments of `image` to their physical addresses, zeroing what lies past
/// each segment's file bytes.
pub fn place(image: &[u8]) -> Result<Placed, LoadError> {
    let parsed = elf::parse(image).map_err(LoadError::Image)?;
    let start = parsed.segments.iter().map(|s| s.gpa).min().unwrap_or(0) & !(PAGE_BYTES - 1);
    let end = parsed
        .segments
        .iter()
        .map(|s| s.gpa + s.memory_size)
        .max()
        .unwrap_or(0)
        .next_multiple_of(PAGE_BYTES);
    let pages = ((end - start) / PAGE_BYTES) as usize;
    let pages = Pages::allocate(AllocateType::Address(start), MemoryType::LOADER_DATA, pages)
        .map_err(|e| LoadError::RangeTaken {
            start,
            end,
            taken_by: first_taken(start, end),
            status: e.status(),
        })?;
    for segment in &parsed.segments {
        let bytes = &image[segment.offset..segment.offset + segment.file_size];
        let zeroed = segment.memory_size as usize - segment.file_size;
        // SAFETY: [gpa, gpa + memory_size) lies in the pages just allocated for the image
        // (identity mapped while boot services run); `bytes` is the image's own data.
        unsafe {
            let to = segment.gpa as *mut u8;
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), to, bytes.len());
            core::ptr::write_bytes(to.add(bytes.len()), 0, zeroed);
        }
    }
    Ok(Placed {
        entry: parsed.elf_entry,
        start,
        end,
        pages,
    })
}

/// The first range of the firmware's map inside `[start, end)` that is not free now.
fn first_taken(start: u64, end: u64) -> Option<(u64, u64, MemoryType)> {
    let map = boot::memory_map(MemoryType::LOADER_DATA).ok()?;
    map.entries()
        .filter(|d| d.ty != MemoryType::CONVENTIONAL)
        .map(|d| (d.phys_start, d.phys_start + d.page_count * PAGE_BYTES, d.ty))
        .filter(|&(from, to, _)| from < end && to > start)
        .min_by_key(|&(from, _, _)| from)
}
