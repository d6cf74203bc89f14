//! SRAT, the System Resource Affinity Table (ACPI 6.5 §5.2.16): which proximity domain
//! (vNUMA node) each vCPU and each guest-physical memory range belongs to.
//!
//! rust-vmm's `acpi_tables` supplies the Memory Affinity structure (§5.2.16.2). Its `SRAT`
//! container accepts only the structures it knows, and it has no Processor Local
//! APIC/SAPIC Affinity (§5.2.16.1) or Processor Local x2APIC Affinity (§5.2.16.3), so the
//! table is assembled here in rust-vmm's generic `Sdt`, with those two written by hand.

use acpi_tables::srat::MemoryAffinity;
use alloc::vec::Vec;

use crate::madt::MAX_XAPIC_ID;
use crate::sdt::{bytes_of, new_table, HEADER_LEN};
use crate::GuestPlatform;

/// SRAT revision 3 (ACPI 5.0 and later: 32-bit proximity domains everywhere).
pub const REVISION: u8 = 3;
/// Affinity flag: the entry is in use.
const ENABLED: u32 = 1;

/// Builds the SRAT for a checked platform: one processor affinity entry per vCPU (local
/// APIC form for APIC IDs up to 254, x2APIC form above), then one memory affinity entry
/// per memory range, node by node.
pub(crate) fn build(platform: &GuestPlatform) -> Vec<u8> {
    // Fixed part: header, a reserved dword that must be 1, a reserved qword.
    let mut table = new_table(*b"SRAT", HEADER_LEN as u32 + 12, REVISION);
    table.write_u32(36, 1);

    for vcpu in &platform.vcpus {
        match u8::try_from(vcpu.apic_id) {
            Ok(apic_id) if u32::from(apic_id) <= MAX_XAPIC_ID => {
                table.append_slice(&local_apic_affinity(apic_id, vcpu.node))
            }
            _ => table.append_slice(&x2apic_affinity(vcpu.apic_id, vcpu.node)),
        }
    }
    for (node, vnode) in platform.nodes.iter().enumerate() {
        for range in &vnode.memory {
            // `node` < MAX_NODES, checked.
            let mut entry = MemoryAffinity::new(node as u32, range.base, range.length).enabled();
            if range.hot_pluggable {
                entry = entry.hotpluggable();
            }
            table.append_slice(&bytes_of(&entry));
        }
    }
    table.as_slice().to_vec()
}

/// Processor Local APIC/SAPIC Affinity structure (type 0, 16 bytes), §5.2.16.1.
fn local_apic_affinity(apic_id: u8, domain: u32) -> [u8; 16] {
    let [d0, d1, d2, d3] = domain.to_le_bytes();
    let mut entry = [0u8; 16];
    entry[0] = 0;
    entry[1] = 16;
    entry[2] = d0; // proximity domain bits 7:0
    entry[3] = apic_id;
    entry[4..8].copy_from_slice(&ENABLED.to_le_bytes());
    entry[8] = 0; // local SAPIC EID
    entry[9..12].copy_from_slice(&[d1, d2, d3]); // proximity domain bits 31:8
    entry // clock domain 0
}

/// Processor Local x2APIC Affinity structure (type 2, 24 bytes), §5.2.16.3.
fn x2apic_affinity(x2apic_id: u32, domain: u32) -> [u8; 24] {
    let mut entry = [0u8; 24];
    entry[0] = 2;
    entry[1] = 24;
    entry[4..8].copy_from_slice(&domain.to_le_bytes());
    entry[8..12].copy_from_slice(&x2apic_id.to_le_bytes());
    entry[12..16].copy_from_slice(&ENABLED.to_le_bytes());
    entry // clock domain 0, reserved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdt::{read_u32, read_u64, sums_to_zero};
    use crate::test_platforms::{two_nodes_four_vcpus, with_x2apic_vcpu};

    #[test]
    fn vcpus_and_memory_of_two_nodes() {
        let srat = build(&two_nodes_four_vcpus());
        assert_eq!(&srat[0..4], b"SRAT");
        assert_eq!(srat[8], REVISION);
        assert_eq!(srat.len(), 48 + 4 * 16 + 2 * 40);
        assert_eq!(read_u32(&srat, 4), Some(srat.len() as u32));
        assert!(sums_to_zero(&srat));
        assert_eq!(read_u32(&srat, 36), Some(1));
        // vCPU 2 (APIC ID 2) is on node 1.
        assert_eq!(
            &srat[48 + 32..48 + 48],
            &[0, 16, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        // Node 1's memory: 256 MiB at 256 MiB, enabled.
        let mem1 = 48 + 64 + 40;
        assert_eq!((srat[mem1], srat[mem1 + 1]), (1, 40));
        assert_eq!(read_u32(&srat, mem1 + 2), Some(1));
        assert_eq!(read_u64(&srat, mem1 + 8), Some(0x1000_0000));
        assert_eq!(read_u64(&srat, mem1 + 16), Some(0x1000_0000));
        assert_eq!(read_u32(&srat, mem1 + 28), Some(1));
    }

    #[test]
    fn x2apic_affinity_and_hot_pluggable_memory() {
        let mut platform = with_x2apic_vcpu();
        platform.nodes[0].memory[0].hot_pluggable = true;
        let srat = build(&platform);
        assert!(sums_to_zero(&srat));
        let x2 = 48 + 16;
        assert_eq!((srat[x2], srat[x2 + 1]), (2, 24));
        assert_eq!(read_u32(&srat, x2 + 4), Some(1));
        assert_eq!(read_u32(&srat, x2 + 8), Some(300));
        assert_eq!(read_u32(&srat, x2 + 12), Some(1));
        let mem0 = x2 + 24;
        assert_eq!(read_u32(&srat, mem0 + 28), Some(0b11));
    }
}
