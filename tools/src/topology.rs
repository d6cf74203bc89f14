//! Topology files (`tests/topologies/*.toml`): the QEMU options for one NUMA machine and
//! what the boot report must show for it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::workspace_root;

/// One topology file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyFile {
    /// What the topology models, one line.
    pub description: String,
    /// `-machine` value (default `q35`).
    #[serde(default = "default_machine")]
    pub machine: String,
    /// `-cpu` value (default `max`).
    #[serde(default = "default_cpu")]
    pub cpu: String,
    /// `-m` value.
    pub memory: String,
    /// `-smp` value.
    pub smp: String,
    /// The NUMA options, verbatim (`-object`, `-numa` and their values).
    #[serde(default)]
    pub qemu_args: Vec<String>,
    /// Boot through OVMF instead of PVH (not supported yet).
    #[serde(default)]
    pub firmware: Option<String>,
    /// Extra words for the image's command line.
    #[serde(default)]
    pub append: String,
    /// Wall-clock limit for one boot, seconds (default 60).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// What the boot report must show.
    pub expect: Expectation,
}

/// What the `@nv` report of a boot must show.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// `"srat"` or `"none"`.
    pub source: String,
    pub nodes: Vec<ExpectedNode>,
    /// Row-major distance matrix by dense node index.
    pub distances: Vec<Vec<u64>>,
    /// APIC IDs that must come online (the boot CPU included).
    pub cpus_online: Vec<u64>,
    /// Whether an `hmat` event must appear (and, when true, its localities).
    #[serde(default)]
    pub hmat: Option<ExpectedHmat>,
    /// Bytes of RAM the machine has (`-m`): the nodes' usable bytes must add up to nearly this.
    #[serde(default)]
    pub total_ram: Option<u64>,
    /// ACPI problems the log must report (substrings of the `acpi` event's `problems`).
    #[serde(default)]
    pub acpi_problems: Vec<String>,
    /// PCI functions the `pci` event must list as stated (it may list others).
    #[serde(default)]
    pub pci: Vec<ExpectedPci>,
    /// The DMA remapping units' kinds (`"vt-d"`, `"amd-vi"`), in the `pci` event's order.
    #[serde(default)]
    pub remapping_units: Vec<String>,
}

/// One PCI function the report must show.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedPci {
    /// `segment:bus:device.function`, e.g. `"0000:41:00.0"`.
    pub address: String,
    /// Class code, six hex digits (`"010802"`: NVMe).
    pub class: String,
    /// Its node; absent: the report must give none.
    #[serde(default)]
    pub node: Option<u64>,
    /// The kind of the unit remapping its DMA; absent: none may.
    #[serde(default)]
    pub remapping: Option<String>,
}

/// One expected proximity domain.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedNode {
    pub pxm: u64,
    pub apic_ids: Vec<u64>,
    /// Enabled SRAT ranges as `[base, size]`.
    pub memory: Vec<[u64; 2]>,
    /// The subset of `memory` the SRAT marks hot-pluggable.
    #[serde(default)]
    pub hot_pluggable: Vec<[u64; 2]>,
}

/// The HMAT the report must show.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedHmat {
    /// Number of System Locality Latency and Bandwidth structures.
    pub localities: usize,
}

fn default_machine() -> String {
    "q35".into()
}
fn default_cpu() -> String {
    "max".into()
}
fn default_timeout() -> u64 {
    60
}

/// The folder holding the topology files.
pub fn topologies_dir() -> PathBuf {
    workspace_root().join("tests").join("topologies")
}

/// Loads topology `name` (a file name without `.toml`, or a path).
pub fn load(name: &str) -> Result<TopologyFile> {
    let path = if name.ends_with(".toml") {
        PathBuf::from(name)
    } else {
        topologies_dir().join(format!("{name}.toml"))
    };
    load_path(&path)
}

/// Loads the topology file at `path`.
pub fn load_path(path: &Path) -> Result<TopologyFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading topology file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing topology file {}", path.display()))
}

/// Names of every topology file, sorted.
pub fn all_names() -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(topologies_dir())?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".toml"))
                .map(String::from)
        })
        .collect();
    names.sort();
    Ok(names)
}
