//! The topology matrix under Bochs: the image booted by GRUB through multiboot2 on an Intel
//! CPU model, with each topology's SRAT and SLIT (and HMAT) handed over as boot modules
//! (ACPI table override; Bochs's BIOS has neither). Each boot checks that the `acpi` event
//! lists the overrides and that the report matches the topology file's own expectation: its
//! domains, CPUs, distances and HMAT as the file states them, whatever the table generator
//! wrote. Only the memory ranges are Bochs's: its RAM is one flat range split among the nodes.
//!
//! Each boot is bounded in time, prints how long it took, and puts the serial tail and
//! Bochs's log tail in every failure message. Partitions are not run (`exit=ready`).

mod common;

use std::time::{Duration, Instant};

use tools::{bochs, bochs_machine, expect, packages, report::Report};

/// Wall-clock limit for one Bochs boot (a boot takes a few seconds).
const TIMEOUT: Duration = Duration::from_secs(120);

/// Boots `name` under Bochs on `cpu`; returns the report and a failure context.
fn boot(name: &str, cpu: &str, append: &str) -> (bochs::BochsRun<'static>, Report, String) {
    packages::ensure(&packages::BOCHS).expect("Bochs and GRUB are needed");
    let image: &'static std::path::Path =
        Box::leak(common::image_for("test-guests").into_boxed_path());
    let machine: &'static bochs_machine::BochsMachine =
        Box::leak(Box::new(bochs_machine::load(name).expect("Bochs machine")));
    let run = bochs::BochsRun {
        dir: bochs::run_dir(name, cpu),
        image,
        machine,
        cpu: Box::leak(cpu.to_string().into_boxed_str()),
        command_line: bochs::command_line(&format!("{append} exit=ready")),
    };
    let prepared = bochs::prepare(&run).expect("building the ISO");
    let started = Instant::now();
    let result = bochs::run(&prepared, TIMEOUT, false).expect("starting Bochs");
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("bochs {name} on {cpu}: {seconds:.1} s from start to exit");
    let context = format!(
        "topology {name} under Bochs ({cpu}), {seconds:.1} s\ncommand: {}\n--- last 40 lines of the serial log ---\n{}\n--- last 15 lines of Bochs's log ---\n{}",
        bochs::command(&prepared).join(" "),
        result.tail(40),
        bochs::log_tail(&prepared, 15)
    );
    assert!(!result.timed_out, "no exit within {TIMEOUT:?}\n{context}");
    assert_eq!(
        result.status,
        Some(bochs::EXIT_READY),
        "Bochs exit status (0 = ready, 1 = failure)\n{context}"
    );
    assert!(
        result
            .lines
            .iter()
            .any(|l| l.contains("booted by Multiboot2")),
        "not booted through multiboot2\n{context}"
    );
    let report =
        Report::from_lines(&result.lines).unwrap_or_else(|e| panic!("bad report: {e}\n{context}"));
    (run, report, context)
}

fn boot_and_check(name: &str) {
    let (run, report, context) = boot(name, bochs::DEFAULT_CPU, "");
    let acpi = report
        .event("acpi")
        .unwrap_or_else(|| panic!("no acpi event\n{context}"));
    let overridden: Vec<&str> = acpi["overridden"]
        .as_array()
        .unwrap_or_else(|| panic!("acpi event without \"overridden\"\n{context}"))
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert_eq!(overridden, run.machine.overridden(), "{context}");
    let problems = expect::check(&report, &run.machine.expectation());
    assert!(
        problems.is_empty(),
        "report does not match {name}.toml (memory ranges as Bochs splits its RAM):\n  {}\n{context}",
        problems.join("\n  ")
    );
}

#[test]
fn bochs_two_domains_from_override_tables() {
    boot_and_check("two-nodes");
}

#[test]
fn bochs_four_domains_asymmetric_slit_from_override_tables() {
    boot_and_check("four-nodes-asymmetric");
}

#[test]
fn bochs_hmat_from_override_tables() {
    boot_and_check("hmat");
}
