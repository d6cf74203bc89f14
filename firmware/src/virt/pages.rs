//! Pages a partition's pool paid for and a backend owns (permission bitmaps, control
//! blocks): owned handles, made only by withdrawing from the pool, so a page's address cannot
//! be forged from a number and each page has exactly one owner. They go back to free memory
//! with the pool when the partition is released.

use numavisor_policy::partition::pool::{PartitionPool, PoolError};

const PAGE: u64 = 4096;

/// A run of contiguous 4 KiB pages withdrawn from a partition's pool.
#[derive(Debug)]
pub struct PoolPages {
    address: u64,
    pages: u64,
}

impl PoolPages {
    /// Withdraws `pages` contiguous pages from `pool`.
    pub fn withdraw(pool: &mut PartitionPool, pages: u64) -> Result<PoolPages, PoolError> {
        let address = pool.withdraw_contiguous(pages as usize)?;
        Ok(PoolPages { address, pages })
    }

    /// Withdraws `count` single pages (not necessarily contiguous).
    pub fn withdraw_each(
        pool: &mut PartitionPool,
        count: usize,
    ) -> Result<alloc::vec::Vec<PoolPages>, PoolError> {
        Ok(pool
            .withdraw_many(count)?
            .into_iter()
            .map(|address| PoolPages { address, pages: 1 })
            .collect())
    }

    /// The physical (= identity-mapped) address of the first page.
    pub fn address(&self) -> u64 {
        self.address
    }

    /// Sets every byte of the run to `value`.
    pub fn fill(&mut self, value: u8) {
        // SAFETY: the run was withdrawn from a partition's pool for this owner alone: it is
        // identity mapped, in no guest's address space, and nothing else writes it.
        unsafe {
            core::ptr::write_bytes(self.address as *mut u8, value, (self.pages * PAGE) as usize)
        };
    }

    /// Writes `value` at byte `offset` of the run (ignored past its end).
    pub fn write_u32(&mut self, offset: usize, value: u32) {
        if offset + 4 > (self.pages * PAGE) as usize {
            return;
        }
        // SAFETY: as in `fill`; the four bytes lie inside the run (checked above).
        unsafe { ((self.address as usize + offset) as *mut u32).write_volatile(value) }
    }

    /// Clears `count` bits from bit `first` (a bitmap over the run); bits past its end are
    /// left alone.
    pub fn clear_bits(&mut self, first: usize, count: usize) {
        let bits = (self.pages * PAGE * 8) as usize;
        for bit in first..first.saturating_add(count).min(bits) {
            // SAFETY: as in `fill`; `bit / 8` lies inside the run (checked above).
            unsafe {
                let byte = (self.address as *mut u8).add(bit / 8);
                byte.write_volatile(byte.read_volatile() & !(1 << (bit % 8)));
            }
        }
    }
}
