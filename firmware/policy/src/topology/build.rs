//! Building the [`Topology`] from SRAT, SLIT, MADT and the boot memory map (ACPI 6.5 §5.2.16,
//! §5.2.17, §5.2.12).
//!
//! Rules, each with its fallback:
//! - Domains are the proximity domains enabled SRAT CPU, x2APIC, memory and generic-initiator
//!   entries name, numbered densely in ascending order. No SRAT, or one with no enabled
//!   entries: a single domain (pxm 0) holding every present MADT CPU and all usable RAM.
//! - CPUs: each SRAT CPU entry places its APIC ID; the first entry for an ID wins. With a
//!   MADT of revision 5 or later (ACPI 6.3+, which has the Online Capable flag), a CPU it lists
//!   as neither enabled nor online-capable is an empty socket and is left out quietly; in older
//!   MADTs a disabled CPU with an enabled SRAT entry is how firmware (QEMU's `maxcpus`, Linux's
//!   "disabled CPUs") announces a hot-pluggable CPU, so it stays in its domain; one the MADT does not list at all is left out with a problem; a
//!   present MADT CPU the SRAT does not place goes to node 0 with a problem.
//! - Memory: SRAT ranges in table order; where ranges of different domains overlap, the one
//!   listed first keeps the overlap. A domain's usable RAM is its SRAT ranges ∩ the boot
//!   map's usable RAM, shrunk inward to 4 KiB pages. Usable RAM no SRAT range covers goes to
//!   node 0 with a problem (Linux, in practice, treats such memory as node 0 as well).
//! - Distances: the SLIT by proximity domain number when it is valid and covers every
//!   domain, else 10 local / 20 remote.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use super::PAGE_SIZE;
use super::{
    DistanceSource, ProximityDomain, SratRange, Topology, TopologyProblem, TopologySource,
};
use crate::acpi::{AcpiFindings, Madt, Slit, Srat, LOCAL_DISTANCE, REMOTE_DISTANCE};

impl Topology {
    /// The topology ACPI describes, given the boot map's usable RAM as `[start, end)` ranges.
    pub fn build(
        findings: &AcpiFindings,
        usable_ram: &[(u64, u64)],
    ) -> (Topology, Vec<TopologyProblem>) {
        let mut problems = Vec::new();
        let present: Vec<u32> = match &findings.madt {
            Some(madt) => madt.present_apic_ids(),
            None => {
                problems.push(TopologyProblem::NoMadt);
                Vec::new()
            }
        };
        let srat = match &findings.srat {
            Some(srat) if !srat.is_empty() => srat,
            Some(_) => {
                problems.push(TopologyProblem::SratEmpty);
                return (Topology::single_domain(&present, usable_ram), problems);
            }
            None => return (Topology::single_domain(&present, usable_ram), problems),
        };

        let mut pxms: Vec<u32> = srat.cpus.iter().map(|c| c.pxm).collect();
        pxms.extend(srat.memory.iter().map(|m| m.pxm));
        pxms.extend(srat.generic_initiators.iter().copied());
        pxms.sort_unstable();
        pxms.dedup();
        let mut domains: Vec<ProximityDomain> = pxms
            .iter()
            .enumerate()
            .map(|(node, &pxm)| ProximityDomain {
                node,
                pxm,
                apic_ids: Vec::new(),
                memory: Vec::new(),
                usable: Vec::new(),
            })
            .collect();
        let node_of = |pxm: u32| pxms.binary_search(&pxm).unwrap_or(0);

        place_cpus(
            srat,
            findings.madt.as_ref(),
            &present,
            &mut domains,
            &node_of,
            &mut problems,
        );
        let claimed = place_memory(srat, &mut domains, &node_of, &mut problems);
        place_usable(usable_ram, &claimed, &mut domains, &mut problems);
        let (distances, distance_source) = distances(findings.slit.as_ref(), &pxms, &mut problems);
        let topology = Topology {
            source: TopologySource::Srat,
            distance_source,
            domains,
            distances,
        };
        (topology, problems)
    }
}

/// Put each CPU in its domain (see the module rules).
fn place_cpus(
    srat: &Srat,
    madt: Option<&Madt>,
    present: &[u32],
    domains: &mut [ProximityDomain],
    node_of: &dyn Fn(u32) -> usize,
    problems: &mut Vec<TopologyProblem>,
) {
    // APIC ID → whether the MADT says it is present (any listing that is present counts).
    let mut listed: BTreeMap<u32, bool> = BTreeMap::new();
    for p in madt.map(|m| m.processors.as_slice()).unwrap_or(&[]) {
        *listed.entry(p.apic_id).or_insert(false) |= p.present();
    }
    let mut placed: BTreeMap<u32, u32> = BTreeMap::new();
    for cpu in &srat.cpus {
        if let Some(&first_pxm) = placed.get(&cpu.apic_id) {
            let (apic_id, other_pxm) = (cpu.apic_id, cpu.pxm);
            problems.push(TopologyProblem::DuplicateApicId {
                apic_id,
                first_pxm,
                other_pxm,
            });
            continue;
        }
        placed.insert(cpu.apic_id, cpu.pxm);
        if madt.is_some() {
            match listed.get(&cpu.apic_id) {
                None => {
                    let (apic_id, pxm) = (cpu.apic_id, cpu.pxm);
                    problems.push(TopologyProblem::CpuNotInMadt { apic_id, pxm });
                    continue;
                }
                // An empty socket, where the MADT can tell one from a hot-pluggable CPU.
                Some(false) if madt.is_some_and(|m| m.revision >= 5) => continue,
                Some(_) => {}
            }
        }
        if let Some(d) = domains.get_mut(node_of(cpu.pxm)) {
            d.apic_ids.push(cpu.apic_id);
        }
    }
    let mut missing: BTreeSet<u32> = BTreeSet::new();
    for &apic_id in present {
        if !placed.contains_key(&apic_id) && missing.insert(apic_id) {
            problems.push(TopologyProblem::CpuNotInSrat { apic_id });
            if let Some(d) = domains.first_mut() {
                d.apic_ids.push(apic_id);
            }
        }
    }
    for d in domains.iter_mut() {
        d.apic_ids.sort_unstable();
        d.apic_ids.dedup();
    }
}

/// Assign SRAT ranges to domains, first listed wins on overlap. Returns the claimed ranges:
/// base → (end, pxm), disjoint.
fn place_memory(
    srat: &Srat,
    domains: &mut [ProximityDomain],
    node_of: &dyn Fn(u32) -> usize,
    problems: &mut Vec<TopologyProblem>,
) -> BTreeMap<u64, (u64, u32)> {
    let mut claimed: BTreeMap<u64, (u64, u32)> = BTreeMap::new();
    for m in &srat.memory {
        let (start, end) = (m.base, m.end());
        let owners = overlapping(&claimed, start, end);
        for &(base, end, kept_pxm) in &owners {
            if kept_pxm != m.pxm {
                let dropped_pxm = m.pxm;
                let (base, end) = (base.max(start), end.min(m.end()));
                problems.push(TopologyProblem::OverlappingRanges {
                    base,
                    end,
                    kept_pxm,
                    dropped_pxm,
                });
            }
        }
        for (base, end) in gaps(start, end, &owners) {
            claimed.insert(base, (end, m.pxm));
            if let Some(d) = domains.get_mut(node_of(m.pxm)) {
                d.memory.push(SratRange {
                    base,
                    size: end - base,
                    hot_pluggable: m.hot_pluggable,
                    non_volatile: m.non_volatile,
                });
            }
        }
    }
    for d in domains.iter_mut() {
        d.memory.sort_unstable_by_key(|r| r.base);
    }
    claimed
}

/// The claimed ranges `(base, end, pxm)` that overlap `[start, end)`, ascending.
fn overlapping(claimed: &BTreeMap<u64, (u64, u32)>, start: u64, end: u64) -> Vec<(u64, u64, u32)> {
    // Claimed ranges are disjoint, so their ends ascend with their bases: walk down from the
    // last base below `end` until a range ends at or before `start`.
    let mut hits: Vec<(u64, u64, u32)> = claimed
        .range(..end)
        .rev()
        .take_while(|(_, &(e, _))| e > start)
        .map(|(&b, &(e, pxm))| (b, e, pxm))
        .collect();
    hits.reverse();
    hits
}

/// The parts of `[start, end)` outside the ascending, disjoint `holes`.
fn gaps(start: u64, end: u64, holes: &[(u64, u64, u32)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut cursor = start;
    for &(b, e, _) in holes {
        if b > cursor {
            out.push((cursor, b.min(end)));
        }
        cursor = cursor.max(e);
    }
    if cursor < end {
        out.push((cursor, end));
    }
    out
}

/// Fill each domain's usable RAM; RAM no SRAT range covers goes to node 0.
fn place_usable(
    usable_ram: &[(u64, u64)],
    claimed: &BTreeMap<u64, (u64, u32)>,
    domains: &mut [ProximityDomain],
    problems: &mut Vec<TopologyProblem>,
) {
    let mut ram: Vec<(u64, u64)> = usable_ram.iter().copied().filter(|(s, e)| s < e).collect();
    ram.sort_unstable();
    let mut pieces: Vec<Vec<(u64, u64)>> = alloc::vec![Vec::new(); domains.len()];
    for &(start, end) in &ram {
        let owners = overlapping(claimed, start, end);
        for &(b, e, pxm) in &owners {
            if let Ok(node) = domains.binary_search_by_key(&pxm, |d| d.pxm) {
                pieces[node].push((b.max(start), e.min(end)));
            }
        }
        for (base, end) in gaps(start, end, &owners) {
            problems.push(TopologyProblem::RamNotInSrat { base, end });
            if let Some(first) = pieces.first_mut() {
                first.push((base, end));
            }
        }
    }
    for (d, p) in domains.iter_mut().zip(pieces) {
        d.usable = page_align_all(&p);
    }
}

/// Sort, shrink each range inward to 4 KiB pages, drop empty ones, merge touching ones.
pub(super) fn page_align_all(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut aligned: Vec<(u64, u64)> = ranges
        .iter()
        .filter_map(|&(s, e)| {
            let start = s.checked_next_multiple_of(PAGE_SIZE)?;
            let end = e - e % PAGE_SIZE;
            (start < end).then_some((start, end))
        })
        .collect();
    aligned.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(aligned.len());
    for (s, e) in aligned {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// The n×n matrix by dense node, from the SLIT if it covers every domain.
fn distances(
    slit: Option<&Slit>,
    pxms: &[u32],
    problems: &mut Vec<TopologyProblem>,
) -> (Vec<u8>, DistanceSource) {
    let default = || {
        let n = pxms.len();
        let cells = (0..n).flat_map(|i| (0..n).map(move |j| (i, j)));
        cells
            .map(|(i, j)| {
                if i == j {
                    LOCAL_DISTANCE
                } else {
                    REMOTE_DISTANCE
                }
            })
            .collect()
    };
    let Some(slit) = slit else {
        return (default(), DistanceSource::Default);
    };
    if let Some(&pxm) = pxms.iter().find(|&&p| slit.distance(p, p).is_none()) {
        let localities = slit.localities;
        problems.push(TopologyProblem::SlitMissesDomain { pxm, localities });
        return (default(), DistanceSource::Default);
    }
    let matrix = pxms
        .iter()
        .flat_map(|&from| pxms.iter().map(move |&to| (from, to)))
        .map(|(from, to)| slit.distance(from, to).unwrap_or(REMOTE_DISTANCE))
        .collect();
    (matrix, DistanceSource::Slit)
}
