//! Checking a boot report against a topology file's expectations.
//!
//! Besides the values the file states, the checks hold the report to its own arithmetic:
//! every node's usable memory lies inside its SRAT ranges, the memory ledger adds up, and
//! every online CPU sits on the node the topology gives its APIC ID.

use serde_json::Value;

use crate::report::Report;
use crate::topology::{Expectation, ExpectedPci};

fn u64s(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// A topology node's `memory` ranges that pass `keep`, as `[base, size]`.
fn srat_ranges(node: &Value, keep: impl Fn(&Value) -> bool) -> Vec<[u64; 2]> {
    node["memory"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| keep(r))
        .map(|r| {
            [
                r["base"].as_u64().unwrap_or(u64::MAX),
                r["size"].as_u64().unwrap_or(u64::MAX),
            ]
        })
        .collect()
}

/// Every way `report` differs from `expect`; empty when it matches.
pub fn check(report: &Report, expect: &Expectation) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(topology) = report.event("topology") else {
        return vec!["no topology event".into()];
    };
    if topology["source"] != expect.source.as_str() {
        problems.push(format!(
            "topology source {} != expected {:?}",
            topology["source"], expect.source
        ));
    }
    let nodes = topology["nodes"].as_array().cloned().unwrap_or_default();
    if nodes.len() != expect.nodes.len() {
        problems.push(format!(
            "{} nodes reported, {} expected",
            nodes.len(),
            expect.nodes.len()
        ));
    }
    for (index, (node, want)) in nodes.iter().zip(&expect.nodes).enumerate() {
        if node["node"] != index {
            problems.push(format!(
                "node at position {index} has index {}",
                node["node"]
            ));
        }
        if node["pxm"] != want.pxm {
            problems.push(format!(
                "node {index}: pxm {} != expected {}",
                node["pxm"], want.pxm
            ));
        }
        let mut apic_ids = u64s(&node["apic_ids"]);
        apic_ids.sort_unstable();
        let mut want_ids = want.apic_ids.clone();
        want_ids.sort_unstable();
        if apic_ids != want_ids {
            problems.push(format!(
                "node {index}: apic_ids {apic_ids:?} != expected {want_ids:?}"
            ));
        }
        let memory = srat_ranges(node, |_| true);
        if memory != want.memory {
            problems.push(format!(
                "node {index}: memory {memory:x?} != expected {:x?}",
                want.memory
            ));
        }
        let hot = srat_ranges(node, |r| r["hot_pluggable"] == true);
        if hot != want.hot_pluggable {
            problems.push(format!(
                "node {index}: hot-pluggable ranges {hot:x?} != expected {:x?}",
                want.hot_pluggable
            ));
        }
        // Hot-pluggable ranges hold no RAM at boot; the rest should be almost all usable.
        let boot_ram: u64 = srat_ranges(node, |r| r["hot_pluggable"] != true)
            .iter()
            .map(|r| r[1])
            .sum();
        let usable = node["usable_bytes"].as_u64().unwrap_or(u64::MAX);
        if expect.source == "srat" {
            problems.extend(check_usable(&format!("node {index}"), usable, boot_ram));
        }
    }
    if let Some(total) = expect.total_ram {
        let usable: u64 = nodes
            .iter()
            .filter_map(|n| n["usable_bytes"].as_u64())
            .sum();
        problems.extend(check_usable("all nodes", usable, total));
    }
    let distances: Vec<Vec<u64>> = topology["distances"]
        .as_array()
        .map(|rows| rows.iter().map(u64s).collect())
        .unwrap_or_default();
    if distances != expect.distances {
        problems.push(format!(
            "distances {distances:?} != expected {:?}",
            expect.distances
        ));
    }
    problems.extend(check_cpus(report, expect, &nodes));
    problems.extend(check_memory(report, &nodes));
    problems.extend(check_hmat_and_acpi(report, expect));
    problems.extend(check_pci(report, expect));
    if report.event("ready").is_none() {
        problems.push("no ready event".into());
    }
    problems
}

/// Usable RAM must not exceed the RAM described, and may fall short of it only by what
/// firmware keeps (BIOS areas, ACPI tables: well under 8 MiB).
fn check_usable(what: &str, usable: u64, described: u64) -> Vec<String> {
    if usable > described {
        vec![format!(
            "{what}: usable_bytes {usable} exceeds the RAM described ({described})"
        )]
    } else if described - usable > 8 << 20 {
        vec![format!("{what}: usable_bytes {usable} is more than 8 MiB below the RAM described ({described})")]
    } else {
        vec![]
    }
}

fn check_cpus(report: &Report, expect: &Expectation, nodes: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(cpus) = report.event("cpus") else {
        return vec!["no cpus event".into()];
    };
    let online = cpus["online"].as_array().cloned().unwrap_or_default();
    let mut ids: Vec<u64> = online
        .iter()
        .filter_map(|c| c["apic_id"].as_u64())
        .collect();
    ids.sort_unstable();
    let mut want = expect.cpus_online.clone();
    want.sort_unstable();
    if ids != want {
        problems.push(format!("online CPUs {ids:?} != expected {want:?}"));
    }
    if online.iter().filter(|c| c["bsp"] == true).count() != 1 {
        problems.push("not exactly one boot CPU in cpus.online".into());
    }
    if !cpus["failed"].as_array().is_some_and(|f| f.is_empty()) {
        problems.push(format!("CPUs failed to start: {}", cpus["failed"]));
    }
    for cpu in &online {
        let id = cpu["apic_id"].as_u64();
        let home = nodes
            .iter()
            .position(|n| id.is_some_and(|id| u64s(&n["apic_ids"]).contains(&id)));
        if let Some(home) = home {
            if cpu["node"] != home {
                problems.push(format!(
                    "CPU {cpu} reported on node {}, topology says {home}",
                    cpu["node"]
                ));
            }
        }
    }
    problems
}

fn check_memory(report: &Report, nodes: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(memory) = report.event("memory") else {
        return vec!["no memory event".into()];
    };
    let ledger = memory["nodes"].as_array().cloned().unwrap_or_default();
    if ledger.len() != nodes.len() {
        problems.push(format!(
            "memory event has {} nodes, topology {}",
            ledger.len(),
            nodes.len()
        ));
    }
    for (row, node) in ledger.iter().zip(nodes) {
        let field = |k: &str| row[k].as_u64().unwrap_or(u64::MAX);
        let (usable, free, hypervisor) = (field("usable"), field("free"), field("hypervisor"));
        if free.checked_add(hypervisor) != Some(usable) {
            problems.push(format!("ledger does not add up: {row}"));
        }
        if row["usable"] != node["usable_bytes"] {
            problems.push(format!(
                "ledger usable {} != topology usable_bytes {}",
                row["usable"], node["usable_bytes"]
            ));
        }
    }
    let hypervisor_total: u64 = ledger.iter().filter_map(|r| r["hypervisor"].as_u64()).sum();
    if hypervisor_total == 0 {
        problems.push("no memory accounted to the hypervisor (image, stacks, heap)".into());
    }
    problems
}

fn check_hmat_and_acpi(report: &Report, expect: &Expectation) -> Vec<String> {
    let mut problems = Vec::new();
    match (&expect.hmat, report.event("hmat")) {
        (Some(want), Some(hmat)) => {
            let n = hmat["localities"].as_array().map_or(0, Vec::len);
            if n != want.localities {
                problems.push(format!(
                    "hmat has {n} localities, expected {}",
                    want.localities
                ));
            }
        }
        (Some(_), None) => problems.push("expected an hmat event".into()),
        (None, Some(_)) => problems.push("unexpected hmat event".into()),
        (None, None) => {}
    }
    let reported: Vec<String> = report
        .event("acpi")
        .and_then(|a| a["problems"].as_array())
        .map(|p| {
            p.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for want in &expect.acpi_problems {
        if !reported.iter().any(|r| r.contains(want.as_str())) {
            problems.push(format!(
                "expected an ACPI problem containing {want:?}, got {reported:?}"
            ));
        }
    }
    if expect.acpi_problems.is_empty() && !reported.is_empty() {
        problems.push(format!("unexpected ACPI problems: {reported:?}"));
    }
    problems
}

/// The `pci` event against the file's PCI expectations, and against its own arithmetic: a
/// device's node is its host bridge's, indices point inside their lists, and every BAR is a
/// power of two aligned to its size.
fn check_pci(report: &Report, expect: &Expectation) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(pci) = report.event("pci") else {
        return vec!["no pci event".into()];
    };
    let list = |key: &str| pci[key].as_array().cloned().unwrap_or_default();
    let (bridges, units, devices) = (
        list("host_bridges"),
        list("remapping_units"),
        list("devices"),
    );
    let kinds: Vec<&str> = units.iter().filter_map(|u| u["kind"].as_str()).collect();
    if kinds != expect.remapping_units {
        problems.push(format!(
            "remapping units {kinds:?} != expected {:?}",
            expect.remapping_units
        ));
    }
    for device in &devices {
        let at = &device["address"];
        match device["host_bridge"].as_u64() {
            Some(i) => match bridges.get(i as usize) {
                Some(bridge) if bridge["node"] != device["node"] => problems.push(format!(
                    "{at}: node {} but its host bridge's is {}",
                    device["node"], bridge["node"]
                )),
                Some(_) => {}
                None => problems.push(format!("{at}: host bridge {i} is not listed")),
            },
            None if !device["node"].is_null() => {
                problems.push(format!("{at}: a node without a host bridge"))
            }
            None => {}
        }
        if let Some(u) = device["remapping_unit"].as_u64() {
            if u as usize >= units.len() {
                problems.push(format!("{at}: remapping unit {u} is not listed"));
            }
        }
        for bar in device["bars"].as_array().into_iter().flatten() {
            let (base, size) = (bar["base"].as_u64(), bar["size"].as_u64());
            match (base, size) {
                (Some(base), Some(size)) if size.is_power_of_two() && base % size == 0 => {}
                _ => problems.push(format!(
                    "{at}: BAR {bar} is not a power of two aligned to its size"
                )),
            }
        }
    }
    for want in &expect.pci {
        problems.extend(check_pci_device(&devices, &units, want));
    }
    problems
}

fn check_pci_device(devices: &[Value], units: &[Value], want: &ExpectedPci) -> Vec<String> {
    let Some(device) = devices
        .iter()
        .find(|d| d["address"] == want.address.as_str())
    else {
        return vec![format!("PCI function {} not listed", want.address)];
    };
    let mut problems = Vec::new();
    let at = &want.address;
    if device["class"] != want.class.as_str() {
        problems.push(format!(
            "{at}: class {} != expected {}",
            device["class"], want.class
        ));
    }
    if device["node"].as_u64() != want.node {
        problems.push(format!(
            "{at}: node {} != expected {:?}",
            device["node"], want.node
        ));
    }
    let unit_kind = device["remapping_unit"]
        .as_u64()
        .and_then(|u| units.get(u as usize))
        .and_then(|u| u["kind"].as_str());
    if unit_kind != want.remapping.as_deref() {
        problems.push(format!(
            "{at}: remapped by {unit_kind:?} != expected {:?}",
            want.remapping
        ));
    }
    problems
}
