//! Builds one partition's SLAT tables (AMD APM vol. 2 §15.25.5 nested page tables, Intel SDM
//! vol. 3C §29.3.2 EPT translation): maps guest-physical ranges onto host-physical ones with
//! the largest leaves their alignment allows, every table page withdrawn from the partition's
//! pool (any [`TablePages`]).
//!
//! `map` is all or nothing: a first walk checks that nothing in the range is mapped yet and
//! counts the table pages that are missing; the pool must hold that many (else the map fails
//! with "insufficient memory" before anything is written), and only then does a second walk
//! write the entries, withdrawing each table page as it makes it.

use alloc::collections::BTreeSet;
use core::marker::PhantomData;

use crate::memory::{BlockSize, PAGE_SIZE};

use super::format::{SlatFormat, ADDRESS_MASK};
use super::sizing::{entry_shift, leaf_level, leaf_runs, GPA_LIMIT, SPA_LIMIT};
use super::table_memory::{TableMemory, ENTRIES_PER_TABLE};
use super::table_pages::{ensure_pages, withdraw_table_page, TablePages};
use super::{Permissions, SlatError, SlatStats, Translation};

mod unmap;

/// One partition's SLAT, in format `F` ([`Npt`](super::Npt) or [`Ept`](super::Ept)).
#[derive(Debug)]
pub struct SlatBuilder<F: SlatFormat> {
    root: u64,
    max_page: BlockSize,
    stats: SlatStats,
    format: PhantomData<fn() -> F>,
}

/// What one entry holds, decoded.
enum Entry {
    Empty,
    Table(u64),
    Leaf(u64, BlockSize),
}

impl<F: SlatFormat> SlatBuilder<F> {
    /// An empty SLAT: withdraws the root (PML4) page from `pool` and zeroes it. Leaves will be
    /// no larger than `max_page` (the caller clamps it to what the CPU supports: 1 GiB pages
    /// need CPUID `Fn8000_0001_EDX[26]` or `IA32_VMX_EPT_VPID_CAP` bit 17).
    pub fn new(
        memory: &mut impl TableMemory,
        pool: &mut impl TablePages,
        max_page: BlockSize,
    ) -> Result<Self, SlatError> {
        let root = withdraw_table_page(pool)?;
        memory.zero(root);
        Ok(SlatBuilder {
            root,
            max_page,
            stats: SlatStats {
                table_bytes: PAGE_SIZE,
                ..SlatStats::default()
            },
            format: PhantomData,
        })
    }

    /// Maps `[gpa, gpa + len)` to `[spa, spa + len)` with `perms`, using at each address the
    /// largest leaf ≤ `max_page` to which both the GPA and the SPA are aligned and that fits
    /// in what is left of the range (the next size down where an empty table, left by an
    /// unmap, sits in that leaf's place). Missing tables are withdrawn from `pool`.
    ///
    /// Refused, with nothing changed (tables, pool, stats): unaligned or too-large addresses,
    /// permissions the format cannot express, any overlap with an earlier mapping, or a pool
    /// too small for the tables. An empty range maps nothing.
    pub fn map(
        &mut self,
        memory: &mut impl TableMemory,
        pool: &mut impl TablePages,
        gpa: u64,
        spa: u64,
        len: u64,
        perms: Permissions,
    ) -> Result<(), SlatError> {
        if [gpa, spa, len].iter().any(|v| !v.is_multiple_of(PAGE_SIZE)) {
            return Err(SlatError::Unaligned { gpa, spa, len });
        }
        let gpa_end = gpa
            .checked_add(len)
            .filter(|&end| end <= GPA_LIMIT)
            .ok_or(SlatError::AddressTooLarge { gpa, len })?;
        if spa.checked_add(len).is_none_or(|end| end > SPA_LIMIT) {
            return Err(SlatError::HostAddressTooLarge { spa, len });
        }
        if !F::supports(perms) {
            return Err(SlatError::Permissions {
                format: F::NAME,
                perms,
            });
        }
        // GPA and SPA advance together, so both are aligned to a size exactly where the GPA
        // is, provided their low bits agree.
        let largest = BlockSize::ALL
            .into_iter()
            .rev()
            .find(|&s| s <= self.max_page && (gpa ^ spa).is_multiple_of(s.bytes()))
            .unwrap_or(BlockSize::Size4K);
        let runs = leaf_runs(gpa, gpa_end, largest);
        let leaves = || {
            runs.iter().flat_map(|&(low, high, size)| {
                (low..high)
                    .step_by(size.bytes() as usize)
                    .map(move |at| (at, size))
            })
        };

        let mut missing = BTreeSet::new();
        for (at, size) in leaves() {
            let (piece, count) = self.fitted(memory, at, size);
            for i in 0..count {
                self.plan(memory, at + i * piece.bytes(), piece, &mut missing)?;
            }
        }
        ensure_pages(pool, missing.len())?;
        for (at, size) in leaves() {
            let (piece, count) = self.fitted(memory, at, size);
            for i in 0..count {
                let at = at + i * piece.bytes();
                let entry = F::leaf_entry(at - gpa + spa, piece, perms);
                self.install(memory, pool, at, piece, entry)?;
            }
        }
        Ok(())
    }

    /// How the leaf of `size` at `gpa` is mapped: as itself (`(size, 1)`), or, where an
    /// empty table already sits in its place, as the 512 leaves of the next size down inside
    /// that table (`(smaller, 512)`). An unmap of smaller leaves leaves their table behind
    /// (no table page goes back to the pool while the partition runs), and a large leaf
    /// there would need that page given back; the smaller leaves need no new page at all.
    /// A table that still maps anything is an overlap, which `plan` refuses.
    fn fitted(&self, memory: &impl TableMemory, gpa: u64, size: BlockSize) -> (BlockSize, u64) {
        let smaller = match size {
            BlockSize::Size4K => return (size, 1),
            BlockSize::Size2M => BlockSize::Size4K,
            BlockSize::Size1G => BlockSize::Size2M,
        };
        let leaf = leaf_level(size);
        let mut table = self.root;
        for level in (leaf..=4).rev() {
            match Self::decode(memory.read(table, index(gpa, level)), level) {
                Entry::Table(next) if level > leaf => table = next,
                Entry::Table(next) if Self::is_empty(memory, next) => {
                    return (smaller, ENTRIES_PER_TABLE as u64);
                }
                _ => break,
            }
        }
        (size, 1)
    }

    /// Whether the table at `table` maps nothing (every entry not present).
    fn is_empty(memory: &impl TableMemory, table: u64) -> bool {
        (0..ENTRIES_PER_TABLE).all(|slot| !F::is_present(memory.read(table, slot)))
    }

    /// The root (PML4) page's address.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// What the CPU is given for the root: `N_CR3` (NPT) or the EPTP (EPT).
    pub fn root_pointer(&self) -> u64 {
        F::root_pointer(self.root)
    }

    /// The largest leaf this builder uses.
    pub fn max_page(&self) -> BlockSize {
        self.max_page
    }

    /// Leaves written so far and the table memory they took.
    pub fn stats(&self) -> SlatStats {
        self.stats
    }

    /// Walks the tables for `gpa`, as the CPU would: the host-physical address it maps to,
    /// the leaf's size and permissions, or `None` if it is not mapped.
    pub fn translate(&self, memory: &impl TableMemory, gpa: u64) -> Option<Translation> {
        if gpa >= GPA_LIMIT {
            return None;
        }
        let mut table = self.root;
        for level in (1..=4).rev() {
            match Self::decode(memory.read(table, index(gpa, level)), level) {
                Entry::Empty => return None,
                Entry::Table(next) => table = next,
                Entry::Leaf(base, size) => {
                    let entry = memory.read(table, index(gpa, level));
                    return Some(Translation {
                        spa: base + gpa % size.bytes(),
                        size,
                        perms: F::leaf_permissions(entry),
                    });
                }
            }
        }
        None
    }

    /// First walk for the leaf of `size` at `gpa`: refuses an overlap, and adds the tables
    /// that do not exist yet to `missing` as (level, first GPA it covers).
    fn plan(
        &self,
        memory: &impl TableMemory,
        gpa: u64,
        size: BlockSize,
        missing: &mut BTreeSet<(u32, u64)>,
    ) -> Result<(), SlatError> {
        let leaf = leaf_level(size);
        let mut table = Some(self.root);
        for level in (leaf..=4).rev() {
            let Some(current) = table else {
                // The table at `level` is itself missing: so is everything under it.
                let covers = 1u64 << (entry_shift(level) + 9);
                missing.insert((level, gpa - gpa % covers));
                continue;
            };
            match Self::decode(memory.read(current, index(gpa, level)), level) {
                Entry::Empty => table = None,
                Entry::Table(next) if level > leaf => table = Some(next),
                Entry::Table(_) | Entry::Leaf(..) => {
                    return Err(SlatError::AlreadyMapped { gpa, size });
                }
            }
        }
        Ok(())
    }

    /// Second walk: creates the missing tables (with pages from `pool`, which the plan found
    /// holds enough) and writes the leaf `entry`.
    fn install(
        &mut self,
        memory: &mut impl TableMemory,
        pool: &mut impl TablePages,
        gpa: u64,
        size: BlockSize,
        entry: u64,
    ) -> Result<(), SlatError> {
        let leaf = leaf_level(size);
        let mut table = self.root;
        for level in (leaf + 1..=4).rev() {
            let slot = index(gpa, level);
            table = match Self::decode(memory.read(table, slot), level) {
                Entry::Table(next) => next,
                Entry::Empty => {
                    let page = withdraw_table_page(pool)?;
                    memory.zero(page);
                    memory.write(table, slot, F::table_entry(page, level - 1));
                    self.stats.table_bytes += PAGE_SIZE;
                    page
                }
                Entry::Leaf(..) => return Err(SlatError::AlreadyMapped { gpa, size }),
            };
        }
        memory.write(table, index(gpa, leaf), entry);
        match size {
            BlockSize::Size4K => self.stats.pages_4k += 1,
            BlockSize::Size2M => self.stats.pages_2m += 1,
            BlockSize::Size1G => self.stats.pages_1g += 1,
        }
        Ok(())
    }

    /// Decodes an entry of a table at `level` (1 = PT ... 4 = PML4).
    fn decode(entry: u64, level: u32) -> Entry {
        if !F::is_present(entry) {
            return Entry::Empty;
        }
        let size = match level {
            1 => BlockSize::Size4K,
            2 if F::is_leaf(entry, 2) => BlockSize::Size2M,
            3 if F::is_leaf(entry, 3) => BlockSize::Size1G,
            _ => return Entry::Table(entry & ADDRESS_MASK),
        };
        // A large leaf's address is aligned to its size; the bits below are flags (PAT).
        Entry::Leaf(entry & ADDRESS_MASK & !(size.bytes() - 1), size)
    }
}

/// The index of `gpa`'s entry in the table at `level`.
fn index(gpa: u64, level: u32) -> usize {
    (gpa >> entry_shift(level)) as usize % ENTRIES_PER_TABLE
}
