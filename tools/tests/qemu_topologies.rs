//! The QEMU topology matrix: boots the image on every `tests/topologies/*.toml` machine
//! (q35, TCG) and checks the whole `@nv` report against the file's expectations.
//!
//! Each boot is bounded by the file's timeout; a failure prints the problems found and the
//! tail of the serial log.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tools::{expect, image, packages, qemu, report::Report, topology};

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

fn boot_and_check(name: &str) {
    let topology = topology::load(name).expect("topology file");
    let options = qemu::RunOptions {
        exit_after_ready: true,
        extra_qemu_args: vec![],
        extra_append: String::new(),
    };
    let args = qemu::command(&image(), &topology, &options);
    let result = qemu::run(&args, Duration::from_secs(topology.timeout_seconds), false)
        .expect("starting QEMU");
    let context = || {
        format!(
            "topology {name}\ncommand: {}\n--- last 40 lines of the serial log ---\n{}",
            qemu::shell_line(&args),
            result.tail(40)
        )
    };
    if result.timed_out {
        panic!(
            "no exit within {} s\n{}",
            topology.timeout_seconds,
            context()
        );
    }
    assert_eq!(
        result.status,
        Some(qemu::EXIT_READY),
        "QEMU exit status (33 = ready, 35 = fatal)\n{}",
        context()
    );
    let report = Report::from_lines(&result.lines)
        .unwrap_or_else(|e| panic!("bad report: {e}\n{}", context()));
    let problems = expect::check(&report, &topology.expect);
    assert!(
        problems.is_empty(),
        "report does not match {name}.toml:\n  {}\n{}",
        problems.join("\n  "),
        context()
    );
}

macro_rules! topology_tests {
    ($($test:ident => $file:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                boot_and_check($file);
            }
        )*

        #[test]
        fn every_topology_file_has_a_test() {
            let listed = [$($file),*];
            for name in topology::all_names().expect("reading tests/topologies") {
                assert!(listed.contains(&name.as_str()), "tests/topologies/{name}.toml has no test in qemu_topologies.rs");
            }
        }
    };
}

topology_tests! {
    no_srat => "no-srat",
    two_symmetric_domains => "two-nodes",
    four_domains_asymmetric_slit => "four-nodes-asymmetric",
    memoryless_domain => "memoryless-node",
    cpu_less_domain => "cpu-less-node",
    ram_above_4g_split_across_domains => "high-memory",
    eight_domains => "eight-nodes",
    hmat_present => "hmat",
    hot_pluggable_memory_and_cpus => "hotplug",
}
