//! The address buses devices register on: one for I/O ports, one for MMIO.
//!
//! A device claims a range once, when the partition's platform is put together; a claim that
//! overlaps another is refused then (a build error), so at run time every address belongs to
//! at most one device and a lookup is a search over a sorted list.

use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;

/// One claimed range: `[start, start + length)` belongs to `device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim<D> {
    pub start: u64,
    pub length: u64,
    pub device: D,
}

/// Why a range could not be claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError<D> {
    /// The range is empty or wraps around the address space.
    BadRange { start: u64, length: u64 },
    /// Part of the range already belongs to `owner`.
    Overlap {
        start: u64,
        length: u64,
        device: D,
        owner: D,
    },
}

impl<D: fmt::Debug> fmt::Display for BusError<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::BadRange { start, length } => {
                write!(f, "range {start:#x}+{length:#x} is empty or wraps")
            }
            BusError::Overlap {
                start,
                length,
                device,
                owner,
            } => write!(
                f,
                "{device:?} at {start:#x}+{length:#x} overlaps the range of {owner:?}"
            ),
        }
    }
}

/// An address space of claimed ranges, sorted by start.
#[derive(Clone, Debug)]
pub struct Bus<D> {
    claims: Vec<Claim<D>>,
    /// The position of the claim the last lookup found: a guest's MMIO exits mostly hit the
    /// same window again (its local APIC's EOI register, a driver's doorbell), tried first.
    last: Cell<usize>,
}

impl<D> Default for Bus<D> {
    fn default() -> Self {
        Bus {
            claims: Vec::new(),
            last: Cell::new(0),
        }
    }
}

impl<D: Copy + fmt::Debug> Bus<D> {
    /// An empty bus.
    pub fn new() -> Self {
        Bus::default()
    }

    /// Gives `[start, start + length)` to `device`, unless any of it is taken.
    pub fn claim(&mut self, start: u64, length: u64, device: D) -> Result<(), BusError<D>> {
        let end = start
            .checked_add(length)
            .filter(|_| length > 0)
            .ok_or(BusError::BadRange { start, length })?;
        let index = self.claims.partition_point(|c| c.start < start);
        let before = index.checked_sub(1).map(|i| &self.claims[i]);
        let after = self.claims.get(index);
        for other in before.into_iter().chain(after) {
            let other_end = other.start.saturating_add(other.length);
            if other.start < end && start < other_end {
                return Err(BusError::Overlap {
                    start,
                    length,
                    device,
                    owner: other.device,
                });
            }
        }
        self.claims.insert(
            index,
            Claim {
                start,
                length,
                device,
            },
        );
        Ok(())
    }

    /// The device owning `address` and the offset of `address` in its range.
    pub fn find(&self, address: u64) -> Option<(D, u64)> {
        self.claim_at(address)
            .map(|claim| (claim.device, address - claim.start))
    }

    /// The claim holding `address`.
    pub fn claim_at(&self, address: u64) -> Option<&Claim<D>> {
        if let Some(claim) = self.claims.get(self.last.get()) {
            if address.wrapping_sub(claim.start) < claim.length {
                return Some(claim);
            }
        }
        let index = self.claims.partition_point(|c| c.start <= address);
        let position = index.checked_sub(1)?;
        let claim = self.claims.get(position)?;
        (address - claim.start < claim.length).then(|| {
            self.last.set(position);
            claim
        })
    }

    /// Every claim, in address order.
    pub fn claims(&self) -> &[Claim<D>] {
        &self.claims
    }
}

/// A constant-time index of the claims of a bus whose addresses are 16-bit I/O ports: a port
/// exit costs two table reads instead of a search of the bus. Two levels of 256 ports, with a
/// page only where some claim lies (a PC's ports need a handful), so it stays a few KiB.
#[derive(Clone, Debug)]
pub struct PortIndex {
    /// Per 256 ports: 1 + the position of their page in `pages`, or 0 where none is claimed.
    directory: [u16; 256],
    /// Per port: 1 + the position of its claim on the bus, or 0 where unclaimed.
    pages: Vec<[u32; 256]>,
}

impl PortIndex {
    /// The index of `bus`'s claims below port 0x10000 (a claim past it is indexed as far as
    /// 0xFFFF).
    pub fn new<D>(bus: &Bus<D>) -> PortIndex {
        let mut index = PortIndex {
            directory: [0; 256],
            pages: Vec::new(),
        };
        for (position, claim) in bus.claims.iter().enumerate() {
            let end = claim.start.saturating_add(claim.length).min(0x1_0000);
            // Claims are disjoint, so there are at most 0x10000 below 0x10000: the position
            // fits, and so does the page count (at most 256).
            let entry = position as u32 + 1;
            for port in claim.start..end {
                let page = &mut index.directory[(port >> 8) as usize];
                if *page == 0 {
                    index.pages.push([0; 256]);
                    *page = index.pages.len() as u16;
                }
                index.pages[usize::from(*page) - 1][(port & 0xFF) as usize] = entry;
            }
        }
        index
    }

    /// The position on the bus of the claim holding `port`.
    #[inline]
    pub fn lookup(&self, port: u16) -> Option<usize> {
        let page = self.directory[usize::from(port >> 8)].checked_sub(1)?;
        let entry = self.pages.get(usize::from(page))?[usize::from(port & 0xFF)];
        (entry as usize).checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The index answers every port exactly as a search of the bus does.
        #[test]
        fn the_port_index_agrees_with_the_bus(
            ranges in proptest::collection::vec((0u64..0x1_0100, 1u64..0x300), 0..40),
        ) {
            let mut bus = Bus::new();
            for (n, &(start, length)) in ranges.iter().enumerate() {
                let _ = bus.claim(start, length, n);
            }
            let index = PortIndex::new(&bus);
            for port in 0..=u16::MAX {
                let by_index = index.lookup(port).map(|i| bus.claims()[i].device);
                let by_search = bus.find(u64::from(port)).map(|(device, _)| device);
                prop_assert_eq!(by_index, by_search, "port {:#x}", port);
            }
        }

        /// Lookups in any order, claims added between them (the last-hit position then names
        /// another claim), answer as a scan of the claims does.
        #[test]
        fn lookups_agree_with_a_scan_whatever_came_before(
            ranges in proptest::collection::vec((0u64..0x1000, 1u64..0x100), 0..20),
            addresses in proptest::collection::vec(0u64..0x1100, 1..200),
        ) {
            let mut bus = Bus::new();
            for (n, &address) in addresses.iter().enumerate() {
                if let Some(&(start, length)) = ranges.get(n) {
                    let _ = bus.claim(start, length, n);
                }
                let scan = bus
                    .claims()
                    .iter()
                    .find(|c| c.start <= address && address - c.start < c.length)
                    .map(|c| (c.device, address - c.start));
                prop_assert_eq!(bus.find(address), scan, "address {:#x}", address);
            }
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Dev {
        A,
        B,
        C,
    }

    #[test]
    fn finds_the_owner_and_offset() {
        let mut bus = Bus::new();
        bus.claim(0x3F8, 8, Dev::A).unwrap();
        bus.claim(0x40, 4, Dev::B).unwrap();
        bus.claim(0x48, 1, Dev::C).unwrap();
        assert_eq!(bus.find(0x3F8), Some((Dev::A, 0)));
        assert_eq!(bus.find(0x3FF), Some((Dev::A, 7)));
        assert_eq!(bus.find(0x400), None);
        assert_eq!(bus.find(0x43), Some((Dev::B, 3)));
        assert_eq!(bus.find(0x44), None);
        assert_eq!(bus.find(0x48), Some((Dev::C, 0)));
        assert_eq!(bus.find(0), None);
    }

    #[test]
    fn refuses_overlaps_and_bad_ranges() {
        let mut bus = Bus::new();
        bus.claim(0x60, 1, Dev::A).unwrap();
        bus.claim(0x64, 1, Dev::A).unwrap();
        assert!(matches!(
            bus.claim(0x5F, 2, Dev::B),
            Err(BusError::Overlap { owner: Dev::A, .. })
        ));
        assert!(matches!(
            bus.claim(0x61, 8, Dev::B),
            Err(BusError::Overlap { owner: Dev::A, .. })
        ));
        bus.claim(0x61, 3, Dev::B).unwrap();
        assert_eq!(
            bus.claim(5, 0, Dev::C),
            Err(BusError::BadRange {
                start: 5,
                length: 0
            })
        );
        assert!(matches!(
            bus.claim(u64::MAX, 2, Dev::C),
            Err(BusError::BadRange { .. })
        ));
        bus.claim(u64::MAX - 1, 1, Dev::C).unwrap();
        assert_eq!(bus.find(u64::MAX - 1), Some((Dev::C, 0)));
        assert_eq!(bus.find(u64::MAX), None);
    }
}
