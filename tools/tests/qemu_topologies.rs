//! The QEMU topology matrix: boots the image on every `tests/topologies/*.toml` machine
//! (q35, TCG) and checks the whole `@nv` report against the file's expectations.
//!
//! Each boot is bounded by the file's timeout; a failure prints the problems found and the
//! tail of the serial log.

#[macro_use]
mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::check_ready_report;
use tools::{image, packages, qemu, report::Report, topology};

/// Builds the image once per test binary (or uses `NUMAVISOR_IMAGE`).
fn image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            packages::ensure(&[packages::QEMU]).expect("QEMU is needed for the topology matrix");
            match std::env::var_os("NUMAVISOR_IMAGE") {
                Some(path) => PathBuf::from(path),
                None => image::build().expect("building the image"),
            }
        })
        .clone()
}

/// Boots `topology` with extra command-line words; returns the run and a failure context.
fn boot(name: &str, append: &str) -> (qemu::RunResult, String, u64) {
    let topology = topology::load(name).expect("topology file");
    let options = qemu::RunOptions {
        exit: Some("ready"),
        extra_qemu_args: vec![],
        extra_append: append.to_string(),
    };
    let args = qemu::command(&image(), &topology, &options);
    let result = qemu::run(&args, Duration::from_secs(topology.timeout_seconds), false)
        .expect("starting QEMU");
    let context = format!(
        "topology {name}\ncommand: {}\n--- last 40 lines of the serial log ---\n{}",
        qemu::shell_line(&args),
        result.tail(40)
    );
    (result, context, topology.timeout_seconds)
}

/// A fault inside the hypervisor is reported (`fatal`) and ends the run with status 35.
fn fatal_is_reported(selftest: &str, kind: &str, vector: Option<u64>) {
    let (result, context, timeout) = boot("two-nodes", &format!("selftest={selftest}"));
    assert!(
        !result.timed_out,
        "no exit within {timeout} s (a hang?)\n{context}"
    );
    assert_eq!(
        result.status,
        Some(qemu::EXIT_FAILURE),
        "QEMU exit status\n{context}"
    );
    let report =
        Report::from_lines(&result.lines).unwrap_or_else(|e| panic!("bad report: {e}\n{context}"));
    let fatal = report
        .event("fatal")
        .unwrap_or_else(|| panic!("no fatal event\n{context}"));
    assert_eq!(fatal["kind"], kind, "{context}");
    if let Some(vector) = vector {
        assert_eq!(fatal["vector"], vector, "{context}");
        assert!(
            result.lines.iter().any(|l| l.starts_with("RAX ")),
            "no register dump\n{context}"
        );
    } else {
        assert!(
            fatal["location"]
                .as_str()
                .is_some_and(|l| l.contains("start.rs")),
            "{context}"
        );
    }
    assert!(
        report.event("ready").is_none(),
        "ready after a fatal error\n{context}"
    );
}

#[test]
fn panic_is_reported_and_exits_with_failure() {
    fatal_is_reported("panic", "panic", None);
}

#[test]
fn page_fault_is_reported_and_exits_with_failure() {
    fatal_is_reported("page-fault", "exception", Some(14));
}

#[test]
fn divide_error_is_reported_and_exits_with_failure() {
    fatal_is_reported("divide-error", "exception", Some(0));
}

/// A stack pointer gone bad makes the fault's own delivery fail: the double fault runs on a
/// stack of its own and is reported, where it used to be a silent triple-fault reset.
#[test]
fn double_fault_on_a_broken_stack_is_reported_and_exits_with_failure() {
    fatal_is_reported("bad-stack", "exception", Some(8));
}

fn boot_and_check(name: &str) {
    let topology = topology::load(name).expect("topology file");
    let options = qemu::RunOptions {
        exit: Some("ready"),
        extra_qemu_args: vec![],
        extra_append: String::new(),
    };
    let args = qemu::command(&image(), &topology, &options);
    check_ready_report(&args, name, "", topology.timeout_seconds);
}

topology_matrix! {
    boot_and_check, every_topology_file_has_a_test, "qemu_topologies.rs";
    no_srat => "no-srat",
    two_symmetric_domains => "two-nodes",
    two_unequal_domains_below_3g => "two-nodes-2g5",
    four_domains_asymmetric_slit => "four-nodes-asymmetric",
    memoryless_domain => "memoryless-node",
    cpu_less_domain => "cpu-less-node",
    ram_above_4g_split_across_domains => "high-memory",
    eight_domains => "eight-nodes",
    hmat_present => "hmat",
    hot_pluggable_memory_and_cpus => "hotplug",
    four_domains_of_2g => "four-nodes-8g",
    intel_iommu_and_an_nvme_on_node_1 => "vt-d-nvme-on-node-1",
    intel_iommu_and_an_empty_expander_on_node_1 => "vt-d-expander-on-node-1",
    amd_iommu_and_an_nvme_on_node_1 => "amd-vi",
}
