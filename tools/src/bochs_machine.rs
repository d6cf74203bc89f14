//! A topology file's NUMA machine as Bochs can run it: the override ACPI tables and what the
//! boot report must show then.
//!
//! Bochs has one flat RAM range (0..megs), one proximity domain's worth of BIOS tables and no
//! SRAT or SLIT; its CPUs have APIC IDs 0..N-1. So each node of the topology file's
//! expectation gets the span of its QEMU ranges (QEMU's 640 KiB..1 MiB hole closed up), RAM
//! is the end of the highest span, and numavisor learns the layout from an SRAT, SLIT (and
//! HMAT, when the file expects one) handed over as boot modules (ACPI table override), built
//! by the repository's `acpi-tables` crate. The report is held to the topology file's own
//! expectation — its domains' proximity numbers and CPUs, its distances, the CPUs that come
//! online, its HMAT — not to what the generator wrote, so a generator bug cannot hide itself;
//! only the memory ranges (each node's QEMU ranges with the hole closed) and the RAM total are
//! Bochs's own.

use anyhow::{bail, Context, Result};
use numavisor_acpi_tables::{
    generate, Devices, DistanceMatrix, GuestPlatform, HmatFigures, MemoryRange, TablePlacement,
    Vcpu, VnumaNode,
};

use crate::topology::{Expectation, TopologyFile};

/// One override table: the file name it gets on the ISO and its bytes.
pub struct OverrideTable {
    pub signature: &'static str,
    pub file_name: &'static str,
    pub bytes: Vec<u8>,
}

/// The Bochs machine for one topology.
pub struct BochsMachine {
    /// `cpu: count=`.
    pub cpus: u32,
    /// MiB of RAM (`memory: guest=`).
    pub megs: u64,
    /// Each node's APIC IDs and its one memory range `[base, size]` (none: memoryless).
    pub nodes: Vec<(Vec<u64>, Option<[u64; 2]>)>,
    pub distances: Vec<Vec<u64>>,
    /// The tables handed to numavisor as modules, in module order.
    pub tables: Vec<OverrideTable>,
    hmat_localities: Option<usize>,
    /// The topology file's expectation, as written.
    file_expectation: Expectation,
}

impl BochsMachine {
    /// Derives the machine from `topology`'s expectation.
    pub fn from_topology(topology: &TopologyFile) -> Result<BochsMachine> {
        let expect = &topology.expect;
        if expect.source != "srat" {
            bail!("Bochs runs need a topology with an SRAT (this one expects none)");
        }
        if expect.nodes.iter().any(|n| !n.hot_pluggable.is_empty()) {
            bail!("Bochs has no memory hot-plug: topologies with hot-pluggable ranges cannot run");
        }
        let nodes: Vec<(Vec<u64>, Option<[u64; 2]>)> = expect
            .nodes
            .iter()
            .map(|node| {
                let start = node.memory.iter().map(|r| r[0]).min();
                let end = node.memory.iter().map(|r| r[0] + r[1]).max();
                let span = start.zip(end).map(|(s, e)| [s, e - s]);
                (node.apic_ids.clone(), span)
            })
            .collect();
        let top = nodes
            .iter()
            .filter_map(|(_, span)| span.map(|[b, s]| b + s))
            .max()
            .unwrap_or(0);
        if top == 0 || top > 3 << 30 {
            bail!("Bochs's flat RAM must end below 3 GiB (this topology ends at {top:#x})");
        }
        let cpus = nodes
            .iter()
            .flat_map(|(ids, _)| ids.iter().copied())
            .max()
            .map_or(1, |id| id + 1) as u32;
        let mut machine = BochsMachine {
            cpus,
            megs: top.div_ceil(1 << 20),
            nodes,
            distances: expect.distances.clone(),
            tables: Vec::new(),
            hmat_localities: expect.hmat.as_ref().map(|h| h.localities),
            file_expectation: expect.clone(),
        };
        machine.tables = machine.build_tables()?;
        Ok(machine)
    }

    fn platform(&self) -> Result<GuestPlatform> {
        let mut vcpus: Vec<Vcpu> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(node, (ids, _))| {
                ids.iter().map(move |&id| Vcpu {
                    apic_id: id as u32,
                    node: node as u32,
                })
            })
            .collect();
        vcpus.sort_by_key(|v| v.apic_id);
        let rows: Vec<Vec<u8>> = self
            .distances
            .iter()
            .map(|row| row.iter().map(|&d| d.min(255) as u8).collect())
            .collect();
        let distances =
            DistanceMatrix::from_rows(&rows).map_err(|e| anyhow::anyhow!("distances: {e:?}"))?;
        let n = self.nodes.len();
        // Figures shaped by the distances: latency in ns, bandwidth falling with distance.
        let hmat = self.hmat_localities.map(|_| HmatFigures {
            latency_ns: (0..n)
                .map(|i| (0..n).map(|j| self.distances[i][j] as u32).collect())
                .collect(),
            bandwidth_mb_s: (0..n)
                .map(|i| {
                    (0..n)
                        .map(|j| 100_000 / self.distances[i][j].max(1) as u32)
                        .collect()
                })
                .collect(),
        });
        Ok(GuestPlatform {
            vcpus,
            nodes: self
                .nodes
                .iter()
                .map(|(_, span)| VnumaNode {
                    memory: span
                        .iter()
                        .map(|&[base, length]| MemoryRange {
                            base,
                            length,
                            hot_pluggable: false,
                        })
                        .collect(),
                })
                .collect(),
            distances: Some(distances),
            hmat,
            devices: Devices::pc(),
            // Only the SRAT, SLIT and HMAT are used; they are placement-independent.
            placement: TablePlacement {
                base: 0xE_0000,
                size: 0x2_0000,
            },
        })
    }

    fn build_tables(&self) -> Result<Vec<OverrideTable>> {
        let generated = generate(&self.platform()?)
            .map_err(|e| anyhow::anyhow!("generating the override tables: {e:?}"))?;
        let mut tables = Vec::new();
        for (signature, file_name) in [
            ("SRAT", "srat.aml"),
            ("SLIT", "slit.aml"),
            ("HMAT", "hmat.aml"),
        ] {
            let key: [u8; 4] = signature.as_bytes().try_into().expect("4 bytes");
            if let Some(table) = generated.table(&key) {
                tables.push(OverrideTable {
                    signature,
                    file_name,
                    bytes: table.bytes.clone(),
                });
            }
        }
        if !tables.iter().any(|t| t.signature == "SRAT") {
            bail!("the generator made no SRAT");
        }
        Ok(tables)
    }

    /// What the boot report must show on this machine with the override tables: the
    /// topology file's expectation, with each node's memory the one span Bochs gives it and
    /// the machine's RAM. PCI and ACPI problems are QEMU's (Bochs's BIOS has no MCFG), so none
    /// are expected here.
    pub fn expectation(&self) -> Expectation {
        let mut expect = self.file_expectation.clone();
        for (node, (_, span)) in expect.nodes.iter_mut().zip(&self.nodes) {
            node.memory = span.iter().copied().collect();
            node.hot_pluggable = vec![];
        }
        expect.total_ram = Some(self.megs << 20);
        expect.acpi_problems = vec![];
        expect.pci = vec![];
        expect.remapping_units = vec![];
        expect
    }

    /// The signatures of the override tables, in module order.
    pub fn overridden(&self) -> Vec<&'static str> {
        self.tables.iter().map(|t| t.signature).collect()
    }
}

/// Loads topology `name` and derives its Bochs machine.
pub fn load(name: &str) -> Result<BochsMachine> {
    let topology = crate::topology::load(name)?;
    BochsMachine::from_topology(&topology).with_context(|| format!("topology {name} under Bochs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_nodes_split_the_flat_ram() {
        let machine = load("two-nodes").unwrap();
        assert_eq!((machine.cpus, machine.megs), (4, 1024));
        assert_eq!(machine.nodes[0].1, Some([0, 0x2000_0000]));
        assert_eq!(machine.nodes[1].1, Some([0x2000_0000, 0x2000_0000]));
        assert_eq!(machine.overridden(), ["SRAT", "SLIT"]);
        let expect = machine.expectation();
        assert_eq!(expect.nodes[1].memory, [[0x2000_0000, 0x2000_0000]]);
        assert_eq!(expect.total_ram, Some(1 << 30));
        for table in &machine.tables {
            let sum = table.bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
            assert_eq!(sum, 0, "{} checksum", table.signature);
            assert_eq!(&table.bytes[..4], table.signature.as_bytes());
        }
    }

    #[test]
    fn hmat_topologies_get_an_hmat_and_hotplug_ones_are_refused() {
        assert_eq!(load("hmat").unwrap().overridden(), ["SRAT", "SLIT", "HMAT"]);
        assert!(load("hotplug").is_err());
        assert!(load("no-srat").is_err());
    }
}
