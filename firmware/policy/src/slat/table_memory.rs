//! Where SLAT tables live. The builder reads and writes table pages only through
//! [`TableMemory`]: the firmware implements it over identity-mapped physical memory (its one
//! `unsafe` edge), host tests and tools use [`HeapTableMemory`].

use alloc::boxed::Box;
use alloc::collections::BTreeMap;

/// Entries per 4 KiB table page.
pub const ENTRIES_PER_TABLE: usize = 512;

/// Access to 4 KiB table pages by physical address. `index` is always below
/// [`ENTRIES_PER_TABLE`]; `page` is always a page the builder withdrew from a pool.
pub trait TableMemory {
    /// Fills a fresh table page with zeros (every entry not present).
    fn zero(&mut self, page: u64);
    /// Entry `index` of the table at `page`.
    fn read(&self, page: u64, index: usize) -> u64;
    /// Sets entry `index` of the table at `page`.
    fn write(&mut self, page: u64, index: usize, entry: u64);
}

/// Table pages kept in the heap, by address: for host tests and host tools.
///
/// A page never zeroed reads as zeros, and writing to one creates it.
#[derive(Clone, Debug, Default)]
pub struct HeapTableMemory {
    pages: BTreeMap<u64, Box<[u64; ENTRIES_PER_TABLE]>>,
}

impl HeapTableMemory {
    /// No pages yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many distinct pages have been zeroed or written.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// The addresses of those pages, lowest first.
    pub fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.pages.keys().copied()
    }
}

impl TableMemory for HeapTableMemory {
    fn zero(&mut self, page: u64) {
        self.pages.insert(page, Box::new([0; ENTRIES_PER_TABLE]));
    }

    fn read(&self, page: u64, index: usize) -> u64 {
        self.pages.get(&page).map_or(0, |table| table[index])
    }

    fn write(&mut self, page: u64, index: usize, entry: u64) {
        self.pages
            .entry(page)
            .or_insert_with(|| Box::new([0; ENTRIES_PER_TABLE]))[index] = entry;
    }
}
