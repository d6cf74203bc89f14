//! PCI passthrough under QEMU (q35, TCG's SVM with nested paging), each test booting one
//! layout on one topology with `exit=partitions` and checking the `@nv` report.

mod common;

use common::Boot;

/// Asserts that `partition` was refused with a reason containing `needle`.
fn refused_for(boot: &Boot, partition: &str, needle: &str) {
    let refused = boot.refused(partition);
    let reason = refused["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(needle),
        "partition {partition:?}: refused for {reason:?}, expected {needle:?}\n{}",
        boot.context
    );
}

/// What the machine cannot give is refused with its reason; the partition without devices
/// runs to its end (issue 18, test f).
#[test]
fn a_missing_function_a_bridge_and_an_unisolated_device_are_refused() {
    let boot = Boot::run("pci-refusals", "vt-d-nvme-on-node-1");
    refused_for(
        &boot,
        "missing",
        "pci 0000:00:1f.7: no PCI function answers at that address",
    );
    refused_for(
        &boot,
        "bridge",
        "pci 0000:40:00.0: it is a PCI-to-PCI bridge, not an endpoint",
    );
    refused_for(
        &boot,
        "lpc",
        "pci 0000:00:1f.0: it is a host, ISA or other platform bridge (class 06)",
    );
    boot.check_guest_finished("runner");
    boot.check_ledgers();

    let boot = Boot::run("pci-refusals", "two-nodes");
    refused_for(
        &boot,
        "unisolated",
        "pci 0000:00:1f.2: no DMA remapping unit (VT-d or AMD-Vi) covers it",
    );
    refused_for(&boot, "bridge", "no PCI function answers");
    boot.check_guest_finished("runner");
}
