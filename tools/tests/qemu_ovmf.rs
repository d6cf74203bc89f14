//! The image through numavisor's UEFI application under Debian's OVMF: OVMF gives revision 2
//! XSDT tables (QEMU's, with `-numa`'s SRAT) and a fragmented EFI memory map, yet the report
//! must match every topology file of the matrix as it does under PVH, and the partitions
//! must still run on their nodes.

#[macro_use]
mod common;

use common::{cases, check_ready_report, efi_for, Boot};
use tools::{qemu, topology};

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
    let (report, lines, context) = check_ready_report(
        &args,
        name,
        " under OVMF",
        topology.timeout_seconds.max(120),
    );
    assert!(
        lines.iter().any(|l| l.contains("booted by Uefi;")),
        "not booted through the UEFI application\n{context}"
    );
    let acpi = report
        .event("acpi")
        .unwrap_or_else(|| panic!("no acpi event\n{context}"));
    assert_eq!(acpi["root"], "xsdt", "OVMF publishes an XSDT\n{context}");
}

topology_matrix! {
    topology_matches, every_topology_file_runs_under_ovmf_too, "qemu_ovmf.rs";
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
    intel_iommu_and_an_nvme_on_node_1_under_ovmf => "vt-d-nvme-on-node-1",
    intel_iommu_and_an_empty_expander_on_node_1_under_ovmf => "vt-d-expander-on-node-1",
    amd_iommu_and_an_nvme_on_node_1_under_ovmf => "amd-vi",
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
