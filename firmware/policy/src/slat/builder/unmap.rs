//! Taking single 4 KiB pages out of a SLAT after it was built (a deposit into a child's pool,
//! a balloon inflation): a large leaf holding such a page is split into 512 leaves of the
//! next size down with the same permissions (AMD APM vol. 2 §15.25.5 and Intel SDM vol. 3C
//! §29.3.2 allow mixed leaf sizes at any level), so only the page itself stops being mapped.
//!
//! Like `map`, `unmap_pages` is all or nothing: a first pass checks every page and counts the
//! table pages the splits need, which the pool must hold before anything is written. The
//! caller flushes the partition's TLB tag on every CPU that ran it before the host pages are
//! reused.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use crate::memory::{BlockSize, PAGE_SIZE};
use crate::slat::format::SlatFormat;
use crate::slat::sizing::{leaf_level, GPA_LIMIT};
use crate::slat::table_memory::{TableMemory, ENTRIES_PER_TABLE};
use crate::slat::table_pages::{ensure_pages, TablePages};
use crate::slat::{SlatError, SlatStats};

use super::{index, Entry, SlatBuilder};

impl<F: SlatFormat> SlatBuilder<F> {
    /// The builder of a SLAT built earlier, from its root, its leaf limit and its figures,
    /// to change it while the partition lives.
    pub fn open(root: u64, max_page: BlockSize, stats: SlatStats) -> Self {
        SlatBuilder {
            root,
            max_page,
            stats,
            format: core::marker::PhantomData,
        }
    }

    /// Unmaps the 4 KiB guest pages at `gpas` and returns the host page each was mapped to,
    /// in the same order. Large leaves holding them are split first, with table pages from
    /// `pool`.
    ///
    /// Refused, with nothing changed: a GPA not 4 KiB aligned ([`SlatError::Unaligned`]),
    /// one not mapped or listed twice ([`SlatError::NotMapped`]), or a pool too small for the
    /// splits.
    pub fn unmap_pages(
        &mut self,
        memory: &mut impl TableMemory,
        pool: &mut impl TablePages,
        gpas: &[u64],
    ) -> Result<Vec<u64>, SlatError> {
        let mut seen = BTreeSet::new();
        // The 1 GiB and 2 MiB regions whose leaf must be split, each needing one table.
        let mut splits = BTreeSet::new();
        for &gpa in gpas {
            if !gpa.is_multiple_of(PAGE_SIZE) {
                return Err(SlatError::Unaligned {
                    gpa,
                    spa: 0,
                    len: PAGE_SIZE,
                });
            }
            let translation = (gpa < GPA_LIMIT && seen.insert(gpa))
                .then(|| self.translate(memory, gpa))
                .flatten()
                .ok_or(SlatError::NotMapped { gpa })?;
            if translation.size == BlockSize::Size1G {
                splits.insert((BlockSize::Size1G, gpa & !(BlockSize::Size1G.bytes() - 1)));
            }
            if translation.size != BlockSize::Size4K {
                splits.insert((BlockSize::Size2M, gpa & !(BlockSize::Size2M.bytes() - 1)));
            }
        }
        ensure_pages(pool, splits.len())?;
        let mut spas = Vec::with_capacity(gpas.len());
        for &gpa in gpas {
            spas.push(self.unmap_one(memory, pool, gpa));
        }
        Ok(spas)
    }

    /// Unmaps `[gpa, gpa + len)` whole (memory that leaves the partition in one piece, like a
    /// block virtio-mem unplugs): every leaf inside it is cleared, none is split, and no table
    /// page is taken or given back (an emptied table is reused by the next map there, with
    /// leaves of its own size even where a larger one would fit: `map`).
    ///
    /// Refused, with nothing changed: a range not 4 KiB aligned ([`SlatError::Unaligned`]),
    /// a page in it not mapped ([`SlatError::NotMapped`]), or a leaf that reaches past its
    /// edges ([`SlatError::LeafStraddles`]).
    pub fn unmap_range(
        &mut self,
        memory: &mut impl TableMemory,
        gpa: u64,
        len: u64,
    ) -> Result<(), SlatError> {
        if !gpa.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(SlatError::Unaligned { gpa, spa: 0, len });
        }
        let end = gpa
            .checked_add(len)
            .filter(|&end| end <= GPA_LIMIT)
            .ok_or(SlatError::AddressTooLarge { gpa, len })?;
        let mut leaves = Vec::new();
        let mut at = gpa;
        while at < end {
            let translation = self
                .translate(memory, at)
                .ok_or(SlatError::NotMapped { gpa: at })?;
            let size = translation.size.bytes();
            if !at.is_multiple_of(size) || at + size > end {
                return Err(SlatError::LeafStraddles {
                    gpa: at & !(size - 1),
                    size: translation.size,
                });
            }
            leaves.push((at, translation.size));
            at += size;
        }
        for (at, size) in leaves {
            self.clear_leaf(memory, at, size);
        }
        Ok(())
    }

    /// Clears the leaf of `size` at `gpa`, which a walk just found there.
    fn clear_leaf(&mut self, memory: &mut impl TableMemory, gpa: u64, size: BlockSize) {
        let leaf = leaf_level(size);
        let mut table = self.root;
        for level in (leaf + 1..=4).rev() {
            match Self::decode(memory.read(table, index(gpa, level)), level) {
                Entry::Table(next) => table = next,
                // The walk just found the leaf under these tables.
                _ => return,
            }
        }
        memory.write(table, index(gpa, leaf), 0);
        match size {
            BlockSize::Size4K => self.stats.pages_4k -= 1,
            BlockSize::Size2M => self.stats.pages_2m -= 1,
            BlockSize::Size1G => self.stats.pages_1g -= 1,
        }
    }

    /// Walks to `gpa`'s 4 KiB leaf, splitting the large leaves on the way with pages from
    /// `pool` (which the caller found holds enough), and clears it: the host page it mapped.
    fn unmap_one(
        &mut self,
        memory: &mut impl TableMemory,
        pool: &mut impl TablePages,
        gpa: u64,
    ) -> u64 {
        let mut table = self.root;
        for level in (2..=4).rev() {
            let slot = index(gpa, level);
            let entry = memory.read(table, slot);
            table = match Self::decode(entry, level) {
                Entry::Table(next) => next,
                Entry::Leaf(base, size) => {
                    let Some(page) = pool.withdraw_page() else {
                        // The plan counted every split; reaching here means it did not.
                        return 0;
                    };
                    self.split(memory, page, base, size, entry);
                    memory.write(table, slot, F::table_entry(page, level - 1));
                    page
                }
                // The plan found a leaf here.
                Entry::Empty => return 0,
            };
        }
        let slot = index(gpa, 1);
        let entry = memory.read(table, slot);
        let Entry::Leaf(spa, _) = Self::decode(entry, 1) else {
            return 0;
        };
        memory.write(table, slot, 0);
        self.stats.pages_4k -= 1;
        spa
    }

    /// Fills the table `page` with the 512 leaves of the next size down that map what the
    /// leaf `entry` (at `base`, of `size`) mapped, with its permissions.
    fn split(
        &mut self,
        memory: &mut impl TableMemory,
        page: u64,
        base: u64,
        size: BlockSize,
        entry: u64,
    ) {
        let smaller = match size {
            BlockSize::Size1G => BlockSize::Size2M,
            _ => BlockSize::Size4K,
        };
        let perms = F::leaf_permissions(entry);
        memory.zero(page);
        for i in 0..ENTRIES_PER_TABLE as u64 {
            let leaf = F::leaf_entry(base + i * smaller.bytes(), smaller, perms);
            memory.write(page, i as usize, leaf);
        }
        self.stats.table_bytes += PAGE_SIZE;
        match size {
            BlockSize::Size1G => {
                self.stats.pages_1g -= 1;
                self.stats.pages_2m += ENTRIES_PER_TABLE as u64;
            }
            _ => {
                self.stats.pages_2m -= 1;
                self.stats.pages_4k += ENTRIES_PER_TABLE as u64;
            }
        }
    }
}
