//! ACPI table override through a PVH module: QEMU's `-initrd` fills the `hvm_start_info`
//! module list, and an SRAT there replaces the one QEMU builds. The replacement (from the
//! same generator the Bochs runs use) puts each node's memory in one range, closing QEMU's
//! 640 KiB..1 MiB hole, so the report shows which table was used.

use std::time::Duration;

use tools::{bochs_machine, expect, packages, qemu, report::Report, topology};

#[test]
fn a_pvh_module_replaces_qemus_srat() {
    packages::ensure(&[packages::QEMU]).expect("QEMU is needed");
    let machine = bochs_machine::load("two-nodes").expect("override tables");
    let srat = machine
        .tables
        .iter()
        .find(|t| t.signature == "SRAT")
        .unwrap();
    let dir = tools::paths::target_dir().join("pvh-override");
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("srat.aml");
    std::fs::write(&module, &srat.bytes).unwrap();
    let image = match std::env::var_os("NUMAVISOR_IMAGES").filter(|d| !d.is_empty()) {
        Some(dir) => std::path::PathBuf::from(dir).join("numavisor-test-guests.elf"),
        None => {
            tools::image::build_with_layout(&tools::paths::layouts_dir().join("test-guests.toml"))
                .expect("building the image")
        }
    };
    let topology = topology::load("two-nodes").unwrap();
    let options = qemu::RunOptions {
        exit: Some("ready"),
        extra_qemu_args: vec!["-initrd".into(), module.display().to_string()],
        extra_append: String::new(),
    };
    let args = qemu::command(&image, &topology, &options);
    let result = qemu::run(&args, Duration::from_secs(topology.timeout_seconds), false)
        .expect("starting QEMU");
    let context = format!(
        "command: {}\n--- last 40 lines of the serial log ---\n{}",
        qemu::shell_line(&args),
        result.tail(40)
    );
    assert_eq!(result.status, Some(qemu::EXIT_READY), "{context}");
    let report =
        Report::from_lines(&result.lines).unwrap_or_else(|e| panic!("bad report: {e}\n{context}"));
    let acpi = report.event("acpi").expect("acpi event");
    assert_eq!(acpi["overridden"], serde_json::json!(["SRAT"]), "{context}");
    // Replaced, not added: exactly one SRAT is listed, at the module's address.
    let srats: Vec<_> = acpi["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["signature"] == "SRAT")
        .collect();
    assert_eq!(srats.len(), 1, "{context}");
    let problems = expect::check(&report, &machine.expectation());
    assert!(
        problems.is_empty(),
        "report does not match the override SRAT:\n  {}\n{context}",
        problems.join("\n  ")
    );
}
