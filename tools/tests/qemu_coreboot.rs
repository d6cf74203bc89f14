//! The image as a coreboot ELF payload: QEMU boots the test loader
//! (`tests/guests/coreboot-loader`), which lays out coreboot tables from QEMU's e820 map and
//! RSDP exactly as coreboot does (a forward table at 0x500) and calls the image's ELF entry
//! in 32-bit protected mode with the table pointer on the stack. The report must match the
//! topology file as it does under PVH, and the partitions must run on their nodes.

mod common;

use common::{cases, Boot};
use tools::{expect, topology};

fn check_topology(boot: &Boot, name: &str) {
    let topology = topology::load(name).expect("topology file");
    let problems = expect::check(&boot.report, &topology.expect);
    assert!(
        problems.is_empty(),
        "the report does not match {name}.toml:\n  {}\n{}",
        problems.join("\n  "),
        boot.context
    );
}

#[test]
fn two_nodes_as_a_coreboot_payload() {
    let boot = Boot::run_coreboot("test-guests", "two-nodes");
    check_topology(&boot, "two-nodes");
    cases::two_partitions_on_two_domains(&boot);
}

#[test]
fn four_asymmetric_nodes_as_a_coreboot_payload() {
    let boot = Boot::run_coreboot("test-guests", "four-nodes-asymmetric");
    check_topology(&boot, "four-nodes-asymmetric");
    boot.check_guest_finished("alpha");
    boot.check_guest_finished("beta");
    boot.check_ledgers();
}
