//! The image through numavisor's UEFI application under Debian's OVMF: OVMF gives revision 2
//! XSDT tables (QEMU's, with `-numa`'s SRAT) and a fragmented EFI memory map, yet the report
//! must match every topology file of the matrix as it does under PVH, and the partitions
//! must still run on their nodes.

mod common;

use common::{cases, efi_for, Boot};
use tools::{expect, qemu, report::Report, topology};

/// Boots the default layout's application on `name` up to `ready` and checks the report
/// against the topology file.
fn topology_matches(name: &str) {
    let topology = topology::load(name).expect("topology file");
    let options = qemu::RunOptions {
        exit: Some("ready"),
        extra_qemu_args: vec![],
        extra_append: String::new(),
    };
    let args = qemu::ovmf_command(&efi_for("default"), &topology, &options);
    let timeout = topology.timeout_seconds.max(120);
    let result =
        qemu::run(&args, std::time::Duration::from_secs(timeout), false).expect("starting QEMU");
    let context = format!(
        "topology {name} under OVMF\ncommand: {}\n--- last 40 lines of the serial log ---\n{}",
        qemu::shell_line(&args),
        result.tail(40)
    );
    assert!(!result.timed_out, "no exit within {timeout} s\n{context}");
    assert_eq!(
        result.status,
        Some(qemu::EXIT_READY),
        "QEMU exit status (33 = ready, 35 = fatal)\n{context}"
    );
    assert!(
        result.lines.iter().any(|l| l.contains("booted by Uefi;")),
        "not booted through the UEFI application\n{context}"
    );
    let report =
        Report::from_lines(&result.lines).unwrap_or_else(|e| panic!("bad report: {e}\n{context}"));
    let acpi = report
        .event("acpi")
        .unwrap_or_else(|| panic!("no acpi event\n{context}"));
    assert_eq!(acpi["root"], "xsdt", "OVMF publishes an XSDT\n{context}");
    let problems = expect::check(&report, &topology.expect);
    assert!(
        problems.is_empty(),
        "report does not match {name}.toml:\n  {}\n{context}",
        problems.join("\n  ")
    );
}

macro_rules! topology_tests {
    ($($test:ident => $file:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                topology_matches($file);
            }
        )*

        #[test]
        fn every_topology_file_runs_under_ovmf_too() {
            let listed = [$($file),*];
            for name in topology::all_names().expect("reading tests/topologies") {
                assert!(listed.contains(&name.as_str()), "tests/topologies/{name}.toml has no OVMF test in qemu_ovmf.rs");
            }
        }
    };
}

topology_tests! {
    no_srat_under_ovmf => "no-srat",
    two_symmetric_domains_under_ovmf => "two-nodes",
    two_unequal_domains_below_3g_under_ovmf => "two-nodes-2g5",
    four_domains_asymmetric_slit_under_ovmf => "four-nodes-asymmetric",
    memoryless_domain_under_ovmf => "memoryless-node",
    cpu_less_domain_under_ovmf => "cpu-less-node",
    ram_above_4g_split_across_domains_under_ovmf => "high-memory",
    eight_domains_under_ovmf => "eight-nodes",
    hmat_present_under_ovmf => "hmat",
    hot_pluggable_memory_and_cpus_under_ovmf => "hotplug",
    four_domains_of_2g_under_ovmf => "four-nodes-8g",
}

#[test]
fn a_two_partitions_on_two_domains_under_ovmf() {
    cases::two_partitions_on_two_domains(&Boot::run_ovmf("test-guests", "two-nodes"));
}

#[test]
fn a_two_partitions_on_their_domains_with_ram_above_4g_under_ovmf() {
    cases::two_partitions_on_two_domains(&Boot::run_ovmf("test-guests", "four-nodes-8g"));
}

#[test]
fn c_a_guest_outside_its_memory_is_stopped_and_the_other_finishes_under_ovmf() {
    cases::outside_memory_stops_only_its_partition(&Boot::run_ovmf("isolation", "two-nodes"));
}
