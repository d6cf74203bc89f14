//! What the integration tests share: the guest layouts they generate tables for, running
//! `iasl -d` (ACPICA's disassembler, Debian `acpica-tools`), and reading the fields it
//! decodes from SRAT, SLIT and MADT (ACPI 6.5 §5.2.16, §5.2.17, §5.2.12).

#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use numavisor_acpi_tables::{
    Devices, DistanceMatrix, GuestPlatform, HmatFigures, MemoryRange, TablePlacement, Vcpu,
    VnumaNode,
};

pub const MIB: u64 = 1 << 20;

pub fn ram(base: u64, length: u64) -> MemoryRange {
    MemoryRange {
        base,
        length,
        hot_pluggable: false,
    }
}

fn platform(vcpus: Vec<Vcpu>, nodes: Vec<VnumaNode>, distances: Option<&[&[u8]]>) -> GuestPlatform {
    GuestPlatform {
        vcpus,
        nodes,
        distances: distances.map(|rows| DistanceMatrix::from_rows(rows).unwrap()),
        hmat: None,
        devices: Devices::pc(),
        placement: TablePlacement {
            base: 0xE_0000,
            size: 0x2_0000,
        },
    }
}

/// 1 node, 1 vCPU, 128 MiB.
pub fn one_node_one_vcpu() -> GuestPlatform {
    platform(
        vec![Vcpu {
            apic_id: 0,
            node: 0,
        }],
        vec![VnumaNode {
            memory: vec![ram(0, 128 * MIB)],
        }],
        None,
    )
}

/// QEMU's `-smp 4 -numa node,nodeid=0,cpus=0-1 -numa node,nodeid=1,cpus=2-3
/// -numa dist,src=0,dst=1,val=21` with 256 MiB per node.
pub fn two_nodes_four_vcpus() -> GuestPlatform {
    platform(
        (0..4)
            .map(|i| Vcpu {
                apic_id: i,
                node: i / 2,
            })
            .collect(),
        vec![
            VnumaNode {
                memory: vec![ram(0, 256 * MIB)],
            },
            VnumaNode {
                memory: vec![ram(256 * MIB, 256 * MIB)],
            },
        ],
        Some(&[&[10, 21], &[21, 10]]),
    )
}

/// 4 nodes with asymmetric distances, two ranges on node 0 (below and above the PCI
/// hole), hot-pluggable memory on node 3, and HMAT figures.
pub fn four_nodes_asymmetric() -> GuestPlatform {
    let mut p = platform(
        (0..8)
            .map(|i| Vcpu {
                apic_id: i,
                node: i % 4,
            })
            .collect(),
        vec![
            VnumaNode {
                memory: vec![ram(0, 2048 * MIB), ram(4096 * MIB, 1024 * MIB)],
            },
            VnumaNode {
                memory: vec![ram(5120 * MIB, 1024 * MIB)],
            },
            VnumaNode {
                memory: vec![ram(6144 * MIB, 1024 * MIB)],
            },
            VnumaNode {
                memory: vec![MemoryRange {
                    base: 7168 * MIB,
                    length: 1024 * MIB,
                    hot_pluggable: true,
                }],
            },
        ],
        Some(&[
            &[10, 16, 32, 33],
            &[17, 10, 31, 34],
            &[32, 30, 10, 16],
            &[33, 35, 15, 10],
        ]),
    );
    p.hmat = Some(HmatFigures {
        latency_ns: vec![vec![80, 120, 200, 210]; 4],
        bandwidth_mb_s: vec![vec![100_000, 60_000, 30_000, 25_000]; 4],
    });
    p
}

/// 2 nodes; the second vCPU has x2APIC ID 300.
pub fn x2apic_300() -> GuestPlatform {
    let mut p = two_nodes_four_vcpus();
    p.vcpus = vec![
        Vcpu {
            apic_id: 0,
            node: 0,
        },
        Vcpu {
            apic_id: 300,
            node: 1,
        },
    ];
    p
}

/// The iasl binary, installed from Debian's `acpica-tools` when missing. Panics (fails
/// the test) with the reason when it cannot be had: never skips.
pub fn iasl() -> &'static str {
    static FOUND: OnceLock<Result<(), String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        if iasl_runs() {
            return Ok(());
        }
        eprintln!("iasl missing: installing acpica-tools with apt-get");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        let apt = |args: &[&str]| {
            let mut command = if root {
                Command::new("apt-get")
            } else {
                Command::new("sudo")
            };
            if !root {
                command.args(["-n", "apt-get"]);
            }
            command
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
        };
        let _ = apt(&["update"]);
        match apt(&["install", "-y", "--no-install-recommends", "acpica-tools"]) {
            Ok(status) if status.success() && iasl_runs() => Ok(()),
            Ok(status) => Err(format!("apt-get install acpica-tools ended with {status}")),
            Err(e) => Err(format!("cannot run apt-get: {e}")),
        }
    });
    if let Err(why) = found {
        panic!("iasl (Debian acpica-tools) is needed and could not be installed: {why}");
    }
    "iasl"
}

fn iasl_runs() -> bool {
    Command::new("iasl")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A scratch directory of the test binary's own.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A file in the scratch directory `name` (not wiped).
pub fn scratch_path(name: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name).join(file)
}

/// What `iasl -d` made of one table: its console output and the .dsl it wrote.
pub struct Disassembly {
    pub console: String,
    pub dsl: String,
}

/// Writes `bytes` to `dir/name.dat` and disassembles it with `iasl -d`.
pub fn disassemble(dir: &Path, name: &str, bytes: &[u8]) -> Disassembly {
    let dat = dir.join(format!("{name}.dat"));
    std::fs::write(&dat, bytes).unwrap();
    let output = Command::new(iasl())
        .arg("-d")
        .arg(&dat)
        .current_dir(dir)
        .output()
        .unwrap();
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "iasl -d {name}: {console}");
    let dsl = std::fs::read_to_string(dir.join(format!("{name}.dsl")))
        .unwrap_or_else(|e| panic!("iasl -d {name} wrote no .dsl ({e}): {console}"));
    Disassembly { console, dsl }
}

/// The fields of a disassembled data table, split at each subtable: record 0 is the
/// header, then one record per "Subtable Type" / "Structure Type". Each field is
/// (name, value), as iasl prints them.
pub fn records(dsl: &str) -> Vec<Vec<(String, String)>> {
    let mut records = vec![Vec::new()];
    for line in dsl.lines() {
        // `[off dec len]  Name : Value`, or a decoded flag bit, `      Name : Value`.
        let rest = match line.strip_prefix('[').and_then(|l| l.split_once(']')) {
            Some((_, rest)) => rest,
            None if line.starts_with("   ") && !line.trim_start().starts_with('*') => line,
            None => continue,
        };
        let Some((name, value)) = rest.split_once(" : ") else {
            continue;
        };
        let name = name.trim().to_string();
        if name == "Subtable Type" || name == "Structure Type" {
            records.push(Vec::new());
        }
        let value = value.trim().to_string();
        records.last_mut().unwrap().push((name, value));
    }
    records
}

/// The value of field `name` in `record`, read as hex (iasl prints numbers in hex).
pub fn hex(record: &[(String, String)], name: &str) -> u64 {
    let (_, value) = record
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no field {name:?} in {record:?}"));
    let word = value.split_whitespace().next().unwrap();
    u64::from_str_radix(word, 16).unwrap_or_else(|e| panic!("{name} = {value:?}: {e}"))
}

/// The numbers of a record's "Subtable Type" (or "Structure Type").
pub fn kind(record: &[(String, String)]) -> u64 {
    let name = &record[0].0;
    hex(record, name)
}

/// What a guest learns from an SRAT and a SLIT: which proximity domain each APIC ID
/// and each enabled memory range is in, and the distances.
#[derive(Debug, PartialEq, Eq)]
pub struct NumaView {
    /// (APIC ID, proximity domain), sorted.
    pub cpus: Vec<(u64, u64)>,
    /// (proximity domain, base, length, hot-pluggable), sorted by base.
    pub memory: Vec<(u64, u64, u64, bool)>,
    /// SLIT rows.
    pub distances: Vec<Vec<u8>>,
}

/// Reads a [`NumaView`] from iasl's disassembly of an SRAT and a SLIT.
pub fn numa_view(srat_dsl: &str, slit_dsl: Option<&str>) -> NumaView {
    let mut cpus = Vec::new();
    let mut memory = Vec::new();
    for record in records(srat_dsl).iter().skip(1) {
        match kind(record) {
            0 => {
                let domain = hex(record, "Proximity Domain Low(8)")
                    | hex(record, "Proximity Domain High(24)") << 8;
                cpus.push((hex(record, "Apic ID"), domain));
            }
            2 => cpus.push((hex(record, "Apic ID"), hex(record, "Proximity Domain"))),
            1 if hex(record, "Enabled") == 1 => memory.push((
                hex(record, "Proximity Domain"),
                hex(record, "Base Address"),
                hex(record, "Address Length"),
                hex(record, "Hot Pluggable") == 1,
            )),
            1 => {} // QEMU's disabled placeholder
            other => panic!("unexpected SRAT subtable type {other}"),
        }
    }
    cpus.sort_unstable();
    memory.sort_unstable_by_key(|m| m.1);
    let distances = slit_dsl.map_or_else(Vec::new, |dsl| {
        dsl.lines()
            .filter_map(|line| line.split_once("Locality ").map(|(_, r)| r))
            .filter_map(|rest| rest.split_once(" : ").map(|(_, v)| v))
            .map(|row| {
                row.split_whitespace()
                    .map(|b| u8::from_str_radix(b, 16).unwrap())
                    .collect()
            })
            .collect()
    });
    NumaView {
        cpus,
        memory,
        distances,
    }
}

/// The [`NumaView`] a description asks for.
pub fn asked_view(platform: &GuestPlatform) -> NumaView {
    let mut cpus: Vec<(u64, u64)> = platform
        .vcpus
        .iter()
        .map(|v| (u64::from(v.apic_id), u64::from(v.node)))
        .collect();
    cpus.sort_unstable();
    let mut memory: Vec<(u64, u64, u64, bool)> = platform
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(node, n)| {
            n.memory
                .iter()
                .map(move |r| (node as u64, r.base, r.length, r.hot_pluggable))
        })
        .collect();
    memory.sort_unstable_by_key(|m| m.1);
    let distances = platform.distances.as_ref().map_or_else(Vec::new, |d| {
        d.entries().chunks(d.order()).map(<[u8]>::to_vec).collect()
    });
    NumaView {
        cpus,
        memory,
        distances,
    }
}
