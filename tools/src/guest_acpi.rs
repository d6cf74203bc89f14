//! `tools guest-acpi DESCRIPTION.toml`: writes the ACPI tables numavisor would give a
//! partition's guest (RSDP, XSDT, RSDT, FADT, FACS, DSDT, MADT, SRAT, SLIT, HMAT; ACPI 6.5
//! §5.2), one `.dat` file per table plus the whole image, for inspection with `iasl -d`.
//!
//! The description is TOML (unknown keys refused); examples live in
//! `acpi-tables/examples/guest-acpi/`. Numbers may be written in hex (`0x3F8`).
//!
//! ```toml
//! output_dir = "target/guest-acpi/two-nodes"   # or --out; relative to the current dir
//! table_base = 0xE0000                         # RSDP address (default 0xE0000)
//! table_size = 0x10000                         # room for the tables (default 64 KiB)
//! vcpus = [{ apic_id = 0, node = 0 }, { apic_id = 1, node = 1 }]
//! host_distances = [[10, 21], [21, 10]]        # host SLIT; or `distances` = guest SLIT
//! [[node]]
//! host_domain = 0                              # host domain backing this node
//! memory = [{ base = 0, size = 0x10000000 }]   # hot_pluggable = true to mark it so
//! [hmat]                                       # optional, nodes x nodes
//! latency_ns = [[80, 130], [130, 80]]
//! bandwidth_mb_s = [[20000, 10000], [10000, 20000]]
//! [devices]                                    # optional; every field defaults to a PC
//! uart = { port = 0x3F8, irq = 4, node = 0 }   # node: written as _PXM
//! io_apic = { id = 0, address = 0xFEC00000 }
//! local_apic_base = 0xFEE00000
//! pm = { port = 0x600, sci_irq = 9, pm_timer = true }
//! legacy_pic = true
//! cmos_rtc = true
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use numavisor_acpi_tables::{
    generate, Devices, DistanceMatrix, GuestPlatform, HmatFigures, IoApic, MemoryRange, PmBlock,
    TablePlacement, Uart16550, Vcpu, VnumaNode, RSDP_SIGNATURE,
};
use serde::Deserialize;

/// Arguments of `tools guest-acpi`.
#[derive(clap::Args, Debug)]
pub struct GuestAcpiArgs {
    /// TOML description of the partition's guest platform.
    pub description: PathBuf,
    /// Directory for the tables (overrides `output_dir` in the description).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Reads the description, generates the tables and writes them to the output directory:
/// `<signature>.dat` per table (`facp.dat`, `apic.dat`, ...; the RSDP as `rsdp.bin`) and
/// `tables.bin`, the image to copy to the RSDP address.
pub fn run(args: GuestAcpiArgs) -> Result<()> {
    let path = &args.description;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let raw: RawDescription =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let out = match (args.out, &raw.output_dir) {
        (Some(out), _) => out,
        (None, Some(dir)) => dir.clone(),
        (None, None) => bail!("{}: no output_dir, and no --out given", path.display()),
    };
    let platform = raw
        .into_platform()
        .with_context(|| format!("in {}", path.display()))?;
    let tables = generate(&platform).with_context(|| format!("in {}", path.display()))?;

    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for table in tables.tables() {
        let name = String::from_utf8_lossy(&table.signature).to_lowercase();
        // iasl 20200925 cannot read a binary RSDP; `.bin` keeps it out of `*.dat`.
        let file = if table.signature == RSDP_SIGNATURE {
            "rsdp.bin".to_string()
        } else {
            format!("{name}.dat")
        };
        write(&out.join(&file), &table.bytes)?;
        println!(
            "{:<4} at {:#010x}, {:>5} bytes: {file}",
            name.to_uppercase(),
            table.address,
            table.bytes.len()
        );
    }
    write(&out.join("tables.bin"), &tables.image())?;
    println!(
        "wrote {} ({} bytes for {:#x}); inspect with: iasl -d {}/*.dat",
        out.display(),
        tables.len(),
        tables.rsdp_address(),
        out.display()
    );
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawDescription {
    output_dir: Option<PathBuf>,
    table_base: Option<u64>,
    table_size: Option<u64>,
    vcpus: Vec<RawVcpu>,
    #[serde(rename = "node")]
    nodes: Vec<RawNode>,
    distances: Option<Vec<Vec<u8>>>,
    host_distances: Option<Vec<Vec<u8>>>,
    hmat: Option<RawHmat>,
    #[serde(default)]
    devices: RawDevices,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawVcpu {
    apic_id: u32,
    node: u32,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawNode {
    host_domain: Option<u32>,
    #[serde(default)]
    memory: Vec<RawRange>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawRange {
    base: u64,
    size: u64,
    #[serde(default)]
    hot_pluggable: bool,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawHmat {
    latency_ns: Vec<Vec<u32>>,
    bandwidth_mb_s: Vec<Vec<u32>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawDevices {
    uart: Option<RawUart>,
    io_apic: Option<RawIoApic>,
    local_apic_base: Option<u32>,
    pm: Option<RawPm>,
    legacy_pic: Option<bool>,
    cmos_rtc: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawUart {
    port: u16,
    irq: u8,
    node: Option<u32>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawIoApic {
    id: u8,
    address: u32,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawPm {
    port: u16,
    sci_irq: u8,
    pm_timer: bool,
}

impl RawDescription {
    /// The library's description; its own checks run in `generate`.
    fn into_platform(self) -> Result<GuestPlatform> {
        let distances = match (self.distances, self.host_distances) {
            (Some(_), Some(_)) => bail!("give `distances` or `host_distances`, not both"),
            (Some(rows), None) => Some(DistanceMatrix::from_rows(&rows).context("distances")?),
            (None, Some(rows)) => {
                let host = DistanceMatrix::from_rows(&rows).context("host_distances")?;
                let mut backing = Vec::with_capacity(self.nodes.len());
                for (index, node) in self.nodes.iter().enumerate() {
                    match node.host_domain {
                        Some(domain) => backing.push(domain),
                        None => {
                            bail!("node {index}: host_distances needs host_domain on every node")
                        }
                    }
                }
                Some(DistanceMatrix::guest_from_host(&host, &backing).context("host_distances")?)
            }
            (None, None) => None,
        };
        let pc = Devices::pc();
        let raw = self.devices;
        let devices = Devices {
            uart: raw
                .uart
                .map(|u| Uart16550 {
                    port: u.port,
                    irq: u.irq,
                    node: u.node,
                })
                .or(pc.uart),
            io_apic: raw.io_apic.map_or(pc.io_apic, |a| IoApic {
                id: a.id,
                address: a.address,
            }),
            local_apic_base: raw.local_apic_base.unwrap_or(pc.local_apic_base),
            pm: raw.pm.map_or(pc.pm, |p| PmBlock {
                port: p.port,
                sci_irq: p.sci_irq,
                pm_timer: p.pm_timer,
            }),
            legacy_pic: raw.legacy_pic.unwrap_or(pc.legacy_pic),
            cmos_rtc: raw.cmos_rtc.unwrap_or(pc.cmos_rtc),
            virtio_mmio: pc.virtio_mmio,
            pci_host: None,
        };
        Ok(GuestPlatform {
            vcpus: self
                .vcpus
                .iter()
                .map(|v| Vcpu {
                    apic_id: v.apic_id,
                    node: v.node,
                })
                .collect(),
            nodes: self
                .nodes
                .into_iter()
                .map(|n| VnumaNode {
                    memory: n
                        .memory
                        .into_iter()
                        .map(|r| MemoryRange {
                            base: r.base,
                            length: r.size,
                            hot_pluggable: r.hot_pluggable,
                        })
                        .collect(),
                })
                .collect(),
            distances,
            hmat: self.hmat.map(|h| HmatFigures {
                latency_ns: h.latency_ns,
                bandwidth_mb_s: h.bandwidth_mb_s,
            }),
            devices,
            placement: TablePlacement {
                base: self.table_base.unwrap_or(0xE_0000),
                size: self.table_size.unwrap_or(0x1_0000),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../acpi-tables/examples/guest-acpi"
    );

    #[test]
    fn every_example_generates() {
        for entry in std::fs::read_dir(EXAMPLES).unwrap() {
            let path = entry.unwrap().path();
            let raw: RawDescription =
                toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let platform = raw.into_platform().unwrap();
            generate(&platform).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }

    #[test]
    fn host_distances_become_guest_distances() {
        let raw: RawDescription = toml::from_str(
            "vcpus = [{ apic_id = 0, node = 0 }, { apic_id = 1, node = 1 }]\n\
             host_distances = [[10, 21, 31], [21, 10, 28], [31, 28, 10]]\n\
             [[node]]\nhost_domain = 2\n[[node]]\nhost_domain = 0\n",
        )
        .unwrap();
        let platform = raw.into_platform().unwrap();
        assert_eq!(platform.distances.unwrap().entries(), &[10, 31, 31, 10]);
    }

    #[test]
    fn unknown_keys_and_bad_layouts_are_refused() {
        let unknown = toml::from_str::<RawDescription>("vcpus = []\nnode = []\nvcpu_count = 2\n");
        assert!(unknown.unwrap_err().to_string().contains("vcpu_count"));
        let raw: RawDescription =
            toml::from_str("vcpus = [{ apic_id = 0, node = 1 }]\n[[node]]\n").unwrap();
        let error = generate(&raw.into_platform().unwrap()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "vCPU 0 is on node 1, but there are only 1 nodes"
        );
    }
}
