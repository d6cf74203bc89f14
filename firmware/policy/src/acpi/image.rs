//! An in-memory [`PhysicalMemory`]: byte chunks placed at physical addresses.
//!
//! The host tests and tools put captured ACPI tables back at the addresses the firmware used
//! (ACPI 6.5 §5.2 tables point at each other by physical address).

use alloc::vec::Vec;

use super::PhysicalMemory;

/// Chunks of bytes at physical addresses. A read must fall inside one chunk.
#[derive(Clone, Debug, Default)]
pub struct MemoryImage {
    chunks: Vec<(u64, Vec<u8>)>,
}

impl MemoryImage {
    /// An image with nothing readable.
    pub fn new() -> MemoryImage {
        MemoryImage::default()
    }

    /// Place `bytes` at `address` (later chunks are searched after earlier ones).
    pub fn insert(&mut self, address: u64, bytes: Vec<u8>) {
        self.chunks.push((address, bytes));
    }

    /// Builder form of [`MemoryImage::insert`].
    pub fn with(mut self, address: u64, bytes: Vec<u8>) -> MemoryImage {
        self.insert(address, bytes);
        self
    }
}

impl PhysicalMemory for MemoryImage {
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.chunks.iter().find_map(|(base, bytes)| {
            let start = usize::try_from(addr.checked_sub(*base)?).ok()?;
            bytes.get(start..start.checked_add(len)?)
        })
    }
}

/// Reads from `top` where it has the bytes, else from `below`: a loader's copy of the RSDP
/// (multiboot2 tags 14 and 15) laid over physical memory, where the tables it points at are.
pub struct Overlay<'a> {
    pub top: &'a dyn PhysicalMemory,
    pub below: &'a dyn PhysicalMemory,
}

impl PhysicalMemory for Overlay<'_> {
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.top
            .read(addr, len)
            .or_else(|| self.below.read(addr, len))
    }
}
