//! Partitions under QEMU (`-cpu max`: TCG's SVM with nested paging), each test booting one
//! layout on one topology with `exit=partitions` and checking the `@nv` report and what the
//! guests themselves printed (`guest: {...}` console lines of the test guest).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tools::{image, packages, qemu, report::Report, topology};

/// Image builds change one output file, so they take turns (or come prebuilt from
/// `NUMAVISOR_IMAGES`, as `cargo xtask test` does).
static BUILD: Mutex<()> = Mutex::new(());

fn image_for(layout: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("NUMAVISOR_IMAGES").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(format!("numavisor-{layout}.elf"));
    }
    let _turn = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    packages::ensure(&[packages::QEMU]).expect("QEMU is needed");
    image::build_with_layout(&image::layouts_dir().join(format!("{layout}.toml")))
        .expect("building the image")
}

/// One boot: the report, the guests' own lines by partition, and a failure context.
struct Boot {
    report: Report,
    context: String,
}

impl Boot {
    fn run(layout: &str, topology_name: &str) -> Boot {
        let topology = topology::load(topology_name).expect("topology file");
        let options = qemu::RunOptions {
            exit: Some("partitions"),
            extra_qemu_args: vec![],
            extra_append: String::new(),
        };
        let args = qemu::command(&image_for(layout), &topology, &options);
        let timeout = topology.timeout_seconds.max(120);
        let result = qemu::run(&args, Duration::from_secs(timeout), false).expect("starting QEMU");
        let context = format!(
            "layout {layout} on topology {topology_name}\ncommand: {}\n--- last 60 lines of the serial log ---\n{}",
            qemu::shell_line(&args),
            result.tail(60)
        );
        assert!(!result.timed_out, "no exit within {timeout} s\n{context}");
        assert_eq!(
            result.status,
            Some(qemu::EXIT_READY),
            "QEMU exit status (33 = all partitions ended)\n{context}"
        );
        let report = Report::from_lines(&result.lines)
            .unwrap_or_else(|e| panic!("bad report: {e}\n{context}"));
        Boot { report, context }
    }

    fn events(&self, name: &str) -> Vec<&Value> {
        self.report
            .events
            .iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    fn partition(&self, name: &str) -> &Value {
        self.events("partition")
            .into_iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no partition event for {name}\n{}", self.context))
    }

    /// The JSON objects partition `name`'s guest printed, by their `event`.
    fn guest(&self, name: &str, event: &str) -> Value {
        self.events("console")
            .into_iter()
            .filter(|c| c["partition"] == name)
            .filter_map(|c| {
                c["line"]
                    .as_str()?
                    .strip_prefix("guest: ")
                    .map(String::from)
            })
            .filter_map(|json| serde_json::from_str::<Value>(&json).ok())
            .find(|v| v["event"] == event)
            .unwrap_or_else(|| panic!("guest {name} printed no {event} line\n{}", self.context))
    }

    fn stopped(&self, name: &str) -> &Value {
        self.events("partition_stopped")
            .into_iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("partition {name} never stopped\n{}", self.context))
    }

    fn refused(&self, name: &str) -> &Value {
        self.events("partition_refused")
            .into_iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("partition {name} was not refused\n{}", self.context))
    }

    /// Every ledger adds up; the last one (after every stop) holds no guest memory or pools.
    fn check_ledgers(&self) {
        let ledgers = self.events("ledger");
        assert!(
            ledgers.len() >= 2,
            "expected ledgers before and after the stops\n{}",
            self.context
        );
        for ledger in &ledgers {
            for row in ledger["nodes"].as_array().expect("nodes") {
                let f = |k: &str| row[k].as_u64().expect("ledger number");
                assert_eq!(
                    f("free") + f("hypervisor") + f("guest") + f("pools"),
                    f("usable"),
                    "{row}\n{}",
                    self.context
                );
            }
        }
        for row in ledgers.last().unwrap()["nodes"].as_array().unwrap() {
            assert_eq!(
                (row["guest"].as_u64(), row["pools"].as_u64()),
                (Some(0), Some(0)),
                "after every stop: {row}\n{}",
                self.context
            );
        }
    }

    /// Each `spa` range of the partition lies inside the SRAT ranges of the node it names.
    fn check_spa_inside_domains(&self, name: &str) {
        let topology = self.report.event("topology").expect("topology event");
        for vnode in self.partition(name)["memory"].as_array().expect("memory") {
            let node = vnode["node"].as_u64().unwrap() as usize;
            let ranges = topology["nodes"][node]["memory"]
                .as_array()
                .expect("node memory")
                .clone();
            let mut total = 0;
            for spa in vnode["spa"].as_array().unwrap() {
                let (base, size) = (spa[0].as_u64().unwrap(), spa[1].as_u64().unwrap());
                total += size;
                let inside = ranges.iter().any(|r| {
                    let (b, s) = (r["base"].as_u64().unwrap(), r["size"].as_u64().unwrap());
                    b <= base && base + size <= b + s
                });
                assert!(inside, "{name}: spa [{base:#x}, +{size:#x}) is not inside node {node}'s SRAT ranges\n{}", self.context);
            }
            assert_eq!(
                Some(total),
                vnode["size"].as_u64(),
                "{name}: spa ranges do not add up to the vnode\n{}",
                self.context
            );
        }
    }

    /// The guest ran to the end: all its RAM verified, exit status 0.
    fn check_guest_finished(&self, name: &str) {
        let ram = self.guest(name, "ram_test");
        assert_eq!(ram["errors"], 0, "{name}: {ram}\n{}", self.context);
        assert!(ram["bytes"].as_u64().unwrap_or(0) > 0, "{name}: {ram}");
        assert_eq!(self.guest(name, "done")["status"], 0, "{}", self.context);
        let stopped = self.stopped(name);
        assert_eq!(stopped["reason"], "exit", "{stopped}\n{}", self.context);
    }
}

#[test]
fn a_two_partitions_on_two_domains() {
    let boot = Boot::run("default", "two-nodes");
    for (name, node) in [("alpha", 0), ("beta", 1)] {
        let p = boot.partition(name);
        assert_eq!(p["state"], "running");
        assert_eq!(p["vcpus"][0]["node"], node, "{p}");
        assert_eq!(p["memory"][0]["node"], node, "{p}");
        assert_eq!(p["pool"]["node"], node, "{p}");
        boot.check_spa_inside_domains(name);
        let acpi = boot.guest(name, "acpi");
        assert_eq!(
            acpi["cpus"],
            serde_json::json!([{"apic_id": 0, "vnode": 0}]),
            "{name}: {acpi}"
        );
        assert_eq!(
            acpi["memory"],
            serde_json::json!([{"vnode": 0, "base": 0, "size": 64u64 << 20}]),
            "{name}: {acpi}"
        );
        boot.check_guest_finished(name);
    }
    boot.check_ledgers();
}

#[test]
fn b_a_partition_spanning_two_domains_sees_the_host_distance() {
    let boot = Boot::run("spanning", "cpu-less-node");
    let p = boot.partition("wide");
    assert_eq!(p["memory"][0]["node"], 0);
    assert_eq!(p["memory"][1]["node"], 1);
    boot.check_spa_inside_domains("wide");
    let acpi = boot.guest("wide", "acpi");
    assert_eq!(
        acpi["distances"],
        serde_json::json!([[10, 30], [30, 10]]),
        "the host SLIT says 30: {acpi}"
    );
    assert_eq!(acpi["memory"].as_array().map(Vec::len), Some(2), "{acpi}");
    boot.check_guest_finished("wide");
    boot.check_ledgers();
}

#[test]
fn c_a_guest_outside_its_memory_is_stopped_and_the_other_finishes() {
    let boot = Boot::run("isolation", "two-nodes");
    let stopped = boot.stopped("prober");
    assert_eq!(
        stopped["reason"], "outside-memory",
        "{stopped}\n{}",
        boot.context
    );
    let probe = boot.guest("prober", "probe");
    let address = probe["address"].as_u64().expect("probe address");
    assert!(
        stopped["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{address:#x}")),
        "{stopped}"
    );
    assert!(
        !boot
            .events("console")
            .iter()
            .any(|c| c["partition"] == "prober"
                && c["line"].as_str().unwrap_or("").contains("probe_returned")),
        "the probe must never return\n{}",
        boot.context
    );
    boot.check_guest_finished("alpha");
    boot.check_ledgers();
}

#[test]
fn d_a_pool_too_small_is_refused_and_the_other_runs() {
    let boot = Boot::run("small-pool", "two-nodes");
    let refused = boot.refused("starved");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("insufficient memory"),
        "{refused}\n{}",
        boot.context
    );
    boot.check_guest_finished("alpha");
    boot.check_ledgers();
}

#[test]
fn e_a_domain_the_machine_lacks_is_refused_at_boot() {
    let boot = Boot::run("missing-node", "two-nodes");
    let refused = boot.refused("ghost");
    assert!(
        refused["reason"].as_str().unwrap().contains("node 7"),
        "{refused}\n{}",
        boot.context
    );
    boot.check_guest_finished("alpha");
    boot.check_ledgers();
}

#[test]
fn f_four_partitions_with_2m_and_1g_page_limits() {
    let boot = Boot::run("four-nodes", "four-nodes-8g");
    for (name, node) in [("node0", 0), ("node1", 1), ("node2", 2), ("node3", 3)] {
        let p = boot.partition(name);
        assert_eq!(p["memory"][0]["node"], node);
        boot.check_spa_inside_domains(name);
        let slat = &p["slat"];
        let gib_limit = node % 2 == 1; // layouts/four-nodes.toml: 1G on nodes 1 and 3
        let expected = if gib_limit { (0, 0, 1) } else { (0, 512, 0) };
        let got = (
            slat["pages_4k"].as_u64().unwrap(),
            slat["pages_2m"].as_u64().unwrap(),
            slat["pages_1g"].as_u64().unwrap(),
        );
        assert_eq!(
            got,
            expected,
            "{name}: 1 GiB, aligned, limit {}: {slat}\n{}",
            if gib_limit { "1G" } else { "2M" },
            boot.context
        );
        boot.check_guest_finished(name);
    }
    boot.check_ledgers();
}

#[test]
fn g_restart_on_shutdown_runs_the_guest_again_until_the_limit() {
    let boot = Boot::run("restart", "two-nodes");
    let restarts: Vec<u64> = boot
        .events("partition_restarted")
        .iter()
        .filter(|e| e["name"] == "phoenix")
        .filter_map(|e| e["restarts"].as_u64())
        .collect();
    assert_eq!(restarts, (1..=8).collect::<Vec<_>>(), "{}", boot.context);
    let runs = boot
        .events("console")
        .iter()
        .filter(|c| {
            c["partition"] == "phoenix" && c["line"].as_str().is_some_and(|l| l.contains("io_loop"))
        })
        .count();
    assert_eq!(
        runs, 9,
        "the first run and eight restarts\n{}",
        boot.context
    );
    let stopped = boot.stopped("phoenix");
    assert!(
        stopped["detail"]
            .as_str()
            .unwrap()
            .contains("restart limit"),
        "{stopped}"
    );
    boot.check_ledgers();
}
