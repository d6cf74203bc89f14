//! Where a SLAT builder's table pages come from: a partition's pool in the hypervisor
//! (`PartitionPool` implements [`TablePages`]), anything that hands out 4 KiB pages in tests.
//! The builder checks that a whole operation's pages are there before it takes any, so a
//! source too small refuses the operation with [`OutOfTablePages`] and nothing changes.

use alloc::string::String;
use core::fmt;

/// A supply of 4 KiB host pages for one partition's SLAT tables.
pub trait TablePages {
    /// The partition the pages belong to, for error messages.
    fn partition(&self) -> &str;

    /// How many pages [`withdraw_page`](TablePages::withdraw_page) can still hand out: that
    /// many calls in a row succeed.
    fn pages_left(&self) -> usize;

    /// Takes one 4 KiB page (its address) out of the supply, or `None` when it is empty.
    fn withdraw_page(&mut self) -> Option<u64>;
}

/// The page source holds fewer pages than an operation needs (Hyper-V's
/// `HV_STATUS_INSUFFICIENT_MEMORY`): it names the partition, the pages needed and the balance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutOfTablePages {
    /// The partition whose pool ran short.
    pub partition: String,
    /// The pages the operation needed.
    pub needed_pages: usize,
    /// The pages the pool held.
    pub balance_pages: usize,
}

impl OutOfTablePages {
    /// The refusal of `needed_pages` from `source`.
    pub fn of(source: &impl TablePages, needed_pages: usize) -> Self {
        OutOfTablePages {
            partition: String::from(source.partition()),
            needed_pages,
            balance_pages: source.pages_left(),
        }
    }
}

impl fmt::Display for OutOfTablePages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pages = |count: usize| if count == 1 { "page" } else { "pages" };
        write!(
            f,
            "partition \"{}\": insufficient memory in its pool: needs {} {}, balance {} {} \
             (deposit more with `pool` in the layout)",
            self.partition,
            self.needed_pages,
            pages(self.needed_pages),
            self.balance_pages,
            pages(self.balance_pages)
        )
    }
}

/// Refuses an operation that needs `count` pages when `source` holds fewer; the builder
/// asks before it writes anything, so a refusal changes nothing.
pub(super) fn ensure_pages(source: &impl TablePages, count: usize) -> Result<(), OutOfTablePages> {
    if source.pages_left() < count {
        return Err(OutOfTablePages::of(source, count));
    }
    Ok(())
}

/// Takes one page from `source`, or says that it has none.
pub(super) fn withdraw_table_page(source: &mut impl TablePages) -> Result<u64, OutOfTablePages> {
    source
        .withdraw_page()
        .ok_or_else(|| OutOfTablePages::of(source, 1))
}
