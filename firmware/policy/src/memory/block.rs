//! The vocabulary of the frame allocator: block sizes, usage tags, page alignment, and how a
//! byte count is written for a person.
//!
//! The three block sizes are the x86-64 page sizes (AMD APM vol. 2 §5.3, Intel SDM vol. 3A
//! §4.5): a SLAT entry can map each of them, so a block is always naturally aligned to its size.

use core::fmt;

/// The smallest unit the allocator manages: one 4 KiB page.
pub const PAGE_SIZE: u64 = 4096;

/// The size of a block handed out by the allocator; every block is aligned to its own size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockSize {
    /// 4 KiB, one small page.
    Size4K,
    /// 2 MiB, one large page.
    Size2M,
    /// 1 GiB, one huge page.
    Size1G,
}

impl BlockSize {
    /// All sizes, smallest first.
    pub const ALL: [BlockSize; 3] = [BlockSize::Size4K, BlockSize::Size2M, BlockSize::Size1G];

    /// The block's size (and alignment) in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            BlockSize::Size4K => 4 << 10,
            BlockSize::Size2M => 2 << 20,
            BlockSize::Size1G => 1 << 30,
        }
    }
}

impl fmt::Display for BlockSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockSize::Size4K => "4 KiB",
            BlockSize::Size2M => "2 MiB",
            BlockSize::Size1G => "1 GiB",
        })
    }
}

/// What taken memory is used for: one column of the [`NodeLedger`](super::NodeLedger) each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Usage {
    /// The hypervisor's own memory (image, stacks, heap, boot data it keeps).
    Hypervisor,
    /// RAM mapped into a guest's physical address space.
    Guest,
    /// Pages deposited into a partition's pool (SLAT tables, vCPU state).
    Pool,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Usage::Hypervisor => "hypervisor",
            Usage::Guest => "guest",
            Usage::Pool => "pool",
        })
    }
}

/// `value` rounded up to a multiple of `align` (a power of two), or `None` past `u64::MAX`.
pub(crate) fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// `value` rounded down to a multiple of `align` (a power of two).
pub(crate) const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// A byte count written for a person: "12 MiB", "3 KiB", "1.5 GiB", "100 bytes".
///
/// Exact multiples print without a fraction; others print one decimal, rounded down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        let n = self.0;
        for (unit, name) in UNITS {
            if n >= unit {
                let whole = n / unit;
                let tenths = (n % unit) * 10 / unit;
                return if n.is_multiple_of(unit) {
                    write!(f, "{whole} {name}")
                } else {
                    write!(f, "{whole}.{tenths} {name}")
                };
            }
        }
        write!(f, "{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn sizes_and_names() {
        assert_eq!(BlockSize::Size4K.bytes(), 4096);
        assert_eq!(BlockSize::Size2M.bytes(), 2 * 1024 * 1024);
        assert_eq!(BlockSize::Size1G.bytes(), 1024 * 1024 * 1024);
        assert_eq!(BlockSize::Size1G.to_string(), "1 GiB");
        assert_eq!(Usage::Pool.to_string(), "pool");
    }

    #[test]
    fn bytes_are_written_for_people() {
        assert_eq!(Bytes(0).to_string(), "0 bytes");
        assert_eq!(Bytes(100).to_string(), "100 bytes");
        assert_eq!(Bytes(12 << 20).to_string(), "12 MiB");
        assert_eq!(Bytes(3 << 29).to_string(), "1.5 GiB");
        assert_eq!(Bytes((12 << 20) + 4096).to_string(), "12.0 MiB");
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_up(1, PAGE_SIZE), Some(PAGE_SIZE));
        assert_eq!(align_up(PAGE_SIZE, PAGE_SIZE), Some(PAGE_SIZE));
        assert_eq!(align_up(u64::MAX, PAGE_SIZE), None);
        assert_eq!(align_down(PAGE_SIZE + 1, PAGE_SIZE), PAGE_SIZE);
    }
}
