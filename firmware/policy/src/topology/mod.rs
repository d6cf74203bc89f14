//! The machine's NUMA proximity domains (ACPI 6.5 §5.2.16 SRAT, §5.2.17 SLIT).
//!
//! [`Topology::build`] turns what ACPI discovery found into dense nodes `0..n` — one per
//! proximity domain an enabled SRAT entry names, in ascending proximity-domain order, so QEMU's
//! `-numa node,nodeid=N` is node N — each with its CPUs, its SRAT memory ranges and the usable
//! RAM inside them, plus an n×n distance matrix. Without an SRAT there is one domain holding
//! everything. Anything inconsistent becomes a [`TopologyProblem`] with a stated fallback.

mod build;
mod problem;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;

pub use problem::TopologyProblem;

use crate::acpi::{LOCAL_DISTANCE, UNREACHABLE};

/// Where the domains came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologySource {
    /// The SRAT's enabled entries.
    Srat,
    /// No usable SRAT: one domain.
    None,
}

/// Where the distances came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistanceSource {
    /// A valid SLIT covering every domain.
    Slit,
    /// 10 local, 20 remote.
    Default,
}

/// An enabled SRAT memory range (ACPI 6.5 §5.2.16.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SratRange {
    pub base: u64,
    pub size: u64,
    pub hot_pluggable: bool,
    pub non_volatile: bool,
}

impl SratRange {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether `addr` lies in the range.
    pub fn contains(&self, addr: u64) -> bool {
        self.base <= addr && addr < self.end()
    }
}

/// One NUMA node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProximityDomain {
    /// Dense index, 0..n, in ascending `pxm` order.
    pub node: usize,
    /// The ACPI proximity domain number.
    pub pxm: u32,
    /// APIC IDs (xAPIC and x2APIC share one ID space) of CPUs in this domain, ascending.
    pub apic_ids: Vec<u32>,
    /// Enabled SRAT ranges assigned to this domain, sorted by base.
    pub memory: Vec<SratRange>,
    /// `[start, end)` RAM the allocator manages here: SRAT ranges ∩ usable RAM, shrunk inward
    /// to 4 KiB pages, sorted. Node 0 also gets usable RAM no SRAT range covers.
    pub usable: Vec<(u64, u64)>,
}

impl ProximityDomain {
    /// Total usable bytes.
    pub fn usable_bytes(&self) -> u64 {
        self.usable.iter().map(|(s, e)| e - s).sum()
    }
}

/// The machine's NUMA layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    pub source: TopologySource,
    pub distance_source: DistanceSource,
    /// Indexed by dense node.
    pub domains: Vec<ProximityDomain>,
    /// n×n, row-major by dense node: `distances[from * n + to]`.
    distances: Vec<u8>,
}

/// Page size the usable ranges are aligned to.
pub const PAGE_SIZE: u64 = 4096;

impl Topology {
    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.domains.len()
    }

    /// Distance from node `from` to node `to`; 255 (unreachable) if either is out of range.
    pub fn distance(&self, from: usize, to: usize) -> u8 {
        let n = self.domains.len();
        if from >= n || to >= n {
            return UNREACHABLE;
        }
        self.distances
            .get(from * n + to)
            .copied()
            .unwrap_or(UNREACHABLE)
    }

    /// The distance matrix, one row per node.
    pub fn distances(&self) -> Vec<Vec<u8>> {
        self.distances
            .chunks(self.domains.len().max(1))
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// The node whose SRAT ranges or usable RAM hold `addr`.
    pub fn domain_of_address(&self, addr: u64) -> Option<usize> {
        let by_srat = self
            .domains
            .iter()
            .find(|d| d.memory.iter().any(|r| r.contains(addr)));
        by_srat
            .or_else(|| {
                self.domains
                    .iter()
                    .find(|d| d.usable.iter().any(|&(s, e)| s <= addr && addr < e))
            })
            .map(|d| d.node)
    }

    /// The node holding the CPU with this APIC ID.
    pub fn domain_of_apic_id(&self, apic_id: u32) -> Option<usize> {
        self.domains
            .iter()
            .find(|d| d.apic_ids.binary_search(&apic_id).is_ok())
            .map(|d| d.node)
    }

    /// Every node ordered for allocation from `from`: `from` itself first, then by distance
    /// ascending, ties by node index, unreachable (255) nodes last. Empty if `from` is not a
    /// node.
    pub fn nearest_first(&self, from: usize) -> Vec<usize> {
        if from >= self.domains.len() {
            return Vec::new();
        }
        let mut order: Vec<usize> = (0..self.domains.len()).collect();
        order.sort_by_key(|&to| {
            let d = self.distance(from, to);
            (to != from, d == UNREACHABLE, d, to)
        });
        order
    }

    /// A single node holding every CPU and all usable RAM: for machines without an SRAT.
    pub fn single_domain(apic_ids: &[u32], usable_ram: &[(u64, u64)]) -> Topology {
        let mut ids = apic_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let domain = ProximityDomain {
            node: 0,
            pxm: 0,
            apic_ids: ids,
            memory: Vec::new(),
            usable: build::page_align_all(usable_ram),
        };
        Topology {
            source: TopologySource::None,
            distance_source: DistanceSource::Default,
            domains: alloc::vec![domain],
            distances: alloc::vec![LOCAL_DISTANCE],
        }
    }
}
