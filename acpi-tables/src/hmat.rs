//! HMAT, the Heterogeneous Memory Attribute Table (ACPI 6.5 §5.2.28): access latency and
//! bandwidth from each vNUMA node with vCPUs (initiator) to each node with memory (target).
//!
//! Written here rather than with rust-vmm's `HMAT`, for two reasons found in 0.2.1:
//! it stamps the table revision 1 while laying structures out as revision 2 (ACPI 6.3+);
//! Linux reads revision 1 latencies in different units and revision 1 proximity-domain
//! flags with a different meaning. And `SystemLocality::set_entry_value` indexes entries
//! by `initiator * initiators + target`, wrong whenever initiators and targets differ in
//! number (a memory-only node). Its `MemoryProximityDomain` cannot clear the "initiator
//! valid" flag either, which a memory-only node needs.

use alloc::vec::Vec;

use crate::sdt::{new_table, HEADER_LEN};
use crate::{GuestPlatform, HmatFigures};

/// HMAT revision 2 (ACPI 6.3 and later).
pub const REVISION: u8 = 2;
/// Latencies are encoded in picoseconds times a base unit.
const PS_PER_NS: u64 = 1000;
/// Largest encodable entry (0xFFFF means unreachable, 0 means no figure).
const MAX_ENTRY: u64 = 0xFFFE;
/// System Locality Latency and Bandwidth data types.
const ACCESS_LATENCY: u8 = 0;
const ACCESS_BANDWIDTH: u8 = 3;

/// Builds the HMAT for a checked platform and its figures.
pub(crate) fn build(platform: &GuestPlatform, figures: &HmatFigures) -> Vec<u8> {
    let initiators: Vec<u32> = (0..platform.nodes.len() as u32)
        .filter(|node| platform.vcpus.iter().any(|vcpu| vcpu.node == *node))
        .collect();
    let targets: Vec<u32> = (0..platform.nodes.len() as u32)
        .filter(|node| {
            platform
                .nodes
                .get(*node as usize)
                .is_some_and(|n| !n.memory.is_empty())
        })
        .collect();

    // Fixed part: header and 4 reserved bytes.
    let mut table = new_table(*b"HMAT", HEADER_LEN as u32 + 4, REVISION);
    for &target in &targets {
        let local = initiators.contains(&target).then_some(target);
        table.append_slice(&memory_proximity_domain(local, target));
    }
    let latency = scaled(&figures.latency_ns, &initiators, &targets, PS_PER_NS);
    let bandwidth = scaled(&figures.bandwidth_mb_s, &initiators, &targets, 1);
    table.append_slice(&system_locality(
        ACCESS_LATENCY,
        &initiators,
        &targets,
        latency,
    ));
    table.append_slice(&system_locality(
        ACCESS_BANDWIDTH,
        &initiators,
        &targets,
        bandwidth,
    ));
    table.as_slice().to_vec()
}

/// Memory Proximity Domain Attributes structure (type 0, 40 bytes), §5.2.28.4: the
/// initiator domain attached to memory domain `memory`, if any.
fn memory_proximity_domain(initiator: Option<u32>, memory: u32) -> [u8; 40] {
    let mut entry = [0u8; 40];
    entry[4..8].copy_from_slice(&40u32.to_le_bytes());
    if let Some(initiator) = initiator {
        entry[8] = 1; // initiator proximity domain valid
        entry[12..16].copy_from_slice(&initiator.to_le_bytes());
    }
    entry[16..20].copy_from_slice(&memory.to_le_bytes());
    entry
}

/// Entries of `matrix` for `initiators` × `targets`, each (value × `unit`) expressed in
/// a power-of-ten base unit small enough to keep every entry under 0xFFFF: returns the
/// base unit and the entries (rounded to nearest; 0 stays "no figure").
fn scaled(matrix: &[Vec<u32>], initiators: &[u32], targets: &[u32], unit: u64) -> (u64, Vec<u16>) {
    let value = |i: u32, t: u32| -> u64 {
        let raw = matrix
            .get(i as usize)
            .and_then(|row| row.get(t as usize))
            .copied();
        u64::from(raw.unwrap_or(0)) * unit
    };
    let max = initiators
        .iter()
        .flat_map(|&i| targets.iter().map(move |&t| value(i, t)))
        .max()
        .unwrap_or(0);
    let mut base = unit;
    while max.div_ceil(base) > MAX_ENTRY {
        base *= 10;
    }
    let entries = initiators
        .iter()
        .flat_map(|&i| targets.iter().map(move |&t| value(i, t)))
        .map(|v| {
            if v == 0 {
                0
            } else {
                ((v + base / 2) / base).clamp(1, MAX_ENTRY) as u16
            }
        })
        .collect();
    (base, entries)
}

/// System Locality Latency and Bandwidth Information structure (type 1), §5.2.28.5.
fn system_locality(
    data_type: u8,
    initiators: &[u32],
    targets: &[u32],
    (base, entries): (u64, Vec<u16>),
) -> Vec<u8> {
    let length = 32 + 4 * initiators.len() + 4 * targets.len() + 2 * entries.len();
    let mut entry = Vec::with_capacity(length);
    entry.extend_from_slice(&1u16.to_le_bytes());
    entry.extend_from_slice(&[0, 0]);
    entry.extend_from_slice(&(length as u32).to_le_bytes());
    entry.extend_from_slice(&[0, data_type, 0, 0]); // flags: memory hierarchy; min transfer 0
    entry.extend_from_slice(&(initiators.len() as u32).to_le_bytes());
    entry.extend_from_slice(&(targets.len() as u32).to_le_bytes());
    entry.extend_from_slice(&[0; 4]);
    entry.extend_from_slice(&base.to_le_bytes());
    initiators
        .iter()
        .for_each(|i| entry.extend_from_slice(&i.to_le_bytes()));
    targets
        .iter()
        .for_each(|t| entry.extend_from_slice(&t.to_le_bytes()));
    entries
        .iter()
        .for_each(|e| entry.extend_from_slice(&e.to_le_bytes()));
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdt::{read_u16, read_u32, read_u64, sums_to_zero};
    use crate::test_platforms::two_nodes_four_vcpus;
    use alloc::vec;

    #[test]
    fn two_nodes_latency_and_bandwidth() {
        let mut platform = two_nodes_four_vcpus();
        // Node 1 becomes memory-only: one initiator, two targets.
        platform.vcpus.iter_mut().for_each(|v| v.node = 0);
        let figures = HmatFigures {
            latency_ns: vec![vec![80, 130], vec![0, 0]],
            bandwidth_mb_s: vec![vec![200_000, 100_000], vec![0, 0]],
        };
        let hmat = build(&platform, &figures);
        assert_eq!(&hmat[0..4], b"HMAT");
        assert_eq!(hmat[8], REVISION);
        assert!(sums_to_zero(&hmat));
        let locality_len = 32 + 4 + 8 + 4;
        assert_eq!(hmat.len(), 40 + 2 * 40 + 2 * locality_len);
        // Node 0's memory is local to node 0; node 1's has no attached initiator.
        assert_eq!((hmat[48], read_u32(&hmat, 52)), (1, Some(0)));
        assert_eq!((hmat[88], read_u32(&hmat, 96)), (0, Some(1)));
        let lat = 120;
        assert_eq!(read_u16(&hmat, lat), Some(1));
        assert_eq!(hmat[lat + 9], ACCESS_LATENCY);
        assert_eq!(read_u64(&hmat, lat + 24), Some(1000)); // 1 ns
        assert_eq!(read_u16(&hmat, lat + 44), Some(80));
        assert_eq!(read_u16(&hmat, lat + 46), Some(130));
        let bw = lat + locality_len;
        assert_eq!(hmat[bw + 9], ACCESS_BANDWIDTH);
        assert_eq!(read_u64(&hmat, bw + 24), Some(10)); // 200000 MB/s needs a 10 MB/s unit
        assert_eq!(read_u16(&hmat, bw + 44), Some(20_000));
        assert_eq!(read_u16(&hmat, bw + 46), Some(10_000));
    }
}
