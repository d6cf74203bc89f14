//! The Linux figures of `cargo xtask bench`: boot time in a partition against plain QEMU,
//! VM exits per second by kind while booting and while idle, and instructions per local
//! APIC timer round trip.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use tools::{image, linux, paths, qemu, report::Report, topology};

/// Plain and numavisor boots each, alternated.
const ROUNDS: usize = 3;
/// Linux under TCG: a generous bound per boot.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// The `/init` marker line of `tools/src/linux/init.sh`.
const INIT_MARKER: &str = r#"@guest {"event":"init"}"#;

/// Runs the Linux boot and exit-rate figures and prints them (the timer round trip is in the
/// exit path's section).
pub fn run() -> Result<()> {
    let boot_image = image::build_with_layout(&paths::layouts_dir().join("linux-sleep.toml"))?;
    boot_ratio(&boot_image, "")?;
    let quiet = image::build_with_layout(&paths::layouts_dir().join("linux-quiet.toml"))?;
    boot_ratio(&quiet, " quiet")?;
    exit_rates(&boot_image)
}

/// Seconds from `start` to the first line containing `marker`, on a fresh QEMU.
fn seconds_to(args: &[String], start_marker: Option<&str>, marker: &str) -> Result<f64> {
    let spawned = Instant::now();
    let mut start: Option<Instant> = None;
    let mut seen: Option<Instant> = None;
    let result = qemu::run_interactive(args, BOOT_TIMEOUT, |line| {
        if start.is_none() && start_marker.is_none_or(|m| line.contains(m)) {
            start = Some(if start_marker.is_some() {
                Instant::now()
            } else {
                spawned
            });
        }
        if seen.is_none() && line.contains(marker) {
            seen = Some(Instant::now());
        }
        qemu::Reply::Continue
    })?;
    match (start, seen) {
        (Some(start), Some(seen)) => Ok((seen - start).as_secs_f64()),
        _ => bail!(
            "no {marker:?} within {} s; log tail:\n{}",
            BOOT_TIMEOUT.as_secs(),
            result.tail(30)
        ),
    }
}

/// Partition start → `/init` under numavisor, against QEMU start → `/init` for the same
/// kernel, initramfs, command line and vCPUs on plain TCG, alternated. `extra` is what the
/// layout adds to `console=ttyS0 nv.test=sleep,poweroff` (the plain run gets the same).
fn boot_ratio(image_path: &Path, extra: &str) -> Result<()> {
    let topology = topology::load("two-nodes")?;
    let options = qemu::RunOptions {
        exit: Some("partitions"),
        extra_qemu_args: vec![],
        extra_append: String::new(),
    };
    let nv_args = qemu::command(image_path, &topology, &options);
    // The command line numavisor gives the guest (its own plus `added_options`).
    let added = partition_event(&nv_args)?["added_options"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let plain_args = plain_qemu(&format!(
        "console=ttyS0 nv.test=sleep,poweroff{extra} {added}"
    ));
    let (mut nv, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        nv.push(seconds_to(
            &nv_args,
            Some(r#""event":"partition","name":"sleeper""#),
            INIT_MARKER,
        )?);
        plain.push(seconds_to(&plain_args, None, INIT_MARKER)?);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "Linux boot to /init (2 vCPUs, 256 MiB, Debian cloud kernel + busybox initramfs, TCG; command line \"console=ttyS0{extra}\"):"
    );
    println!(
        "  numavisor, partition start → /init: {:.2?} s (mean {:.2} s)",
        nv,
        mean(&nv)
    );
    println!(
        "  plain QEMU, process start → /init:  {:.2?} s (mean {:.2} s)",
        plain,
        mean(&plain)
    );
    println!(
        "  ratio numavisor / plain: {:.2} (target ≤ 1.15, issue #19)\n",
        mean(&nv) / mean(&plain)
    );
    Ok(())
}

/// The same guest on plain QEMU: one NUMA node with both vCPUs, as the partition sees it.
fn plain_qemu(command_line: &str) -> Vec<String> {
    linux::plain_qemu_command(
        "q35",
        command_line,
        &[
            "-object".into(),
            "memory-backend-ram,id=m0,size=256M".into(),
            "-numa".into(),
            "node,nodeid=0,cpus=0-1,memdev=m0".into(),
        ],
    )
}

fn partition_event(args: &[String]) -> Result<Value> {
    let result = qemu::run(args, BOOT_TIMEOUT, false)?;
    let report = Report::from_lines(&result.lines).map_err(anyhow::Error::msg)?;
    report
        .event("partition")
        .cloned()
        .context("no partition event")
}

/// Exits per second by kind from partition start to `/init`, and during the guest's
/// `sleep 5` (idle: the shell waits, the kernel ticks), from `exit-stats` snapshots.
fn exit_rates(image_path: &Path) -> Result<()> {
    let topology = topology::load("two-nodes")?;
    let options = qemu::RunOptions {
        exit: Some("partitions"),
        extra_qemu_args: vec![],
        extra_append: "exit-stats=250".into(),
    };
    let args = qemu::command(image_path, &topology, &options);
    let result = qemu::run(&args, BOOT_TIMEOUT, false)?;
    let report = Report::from_lines(&result.lines).map_err(anyhow::Error::msg)?;
    let line_time = |prefix: &str| -> Option<u64> {
        report
            .events
            .iter()
            .find(|e| {
                e["event"] == "console" && e["line"].as_str().is_some_and(|l| l.starts_with(prefix))
            })
            .and_then(|e| e["us"].as_u64())
    };
    let init = line_time(INIT_MARKER).context("no /init line")?;
    let first_line = report
        .events
        .iter()
        .find(|e| e["event"] == "console")
        .and_then(|e| e["us"].as_u64())
        .context("no console line")?;
    let sleep_start = line_time(r#"@guest {"event":"sleep-start""#).context("no sleep-start")?;
    let sleep_end = line_time(r#"@guest {"event":"sleep""#).context("no sleep line")?;
    let snapshots: Vec<&Value> = report
        .events
        .iter()
        .filter(|e| e["event"] == "exit_counts")
        .collect();
    // Boot: the first snapshot at or after /init, against zero at the first console line.
    let boot = snapshots
        .iter()
        .find(|s| s["us"].as_u64().unwrap_or(0) >= init)
        .context("no exit_counts after /init")?;
    // Idle: the first and last snapshots inside the sleep.
    let inside: Vec<&&Value> = snapshots
        .iter()
        .filter(|s| {
            let t = s["us"].as_u64().unwrap_or(0);
            t > sleep_start && t < sleep_end
        })
        .collect();
    if inside.len() < 2 {
        bail!("fewer than two exit_counts snapshots inside the guest's sleep");
    }
    let (a, b) = (inside[0], inside[inside.len() - 1]);
    let boot_s = (boot["us"].as_u64().unwrap_or(0) - first_line) as f64 / 1e6;
    let idle_s = (b["us"].as_u64().unwrap_or(0) - a["us"].as_u64().unwrap_or(0)) as f64 / 1e6;
    println!("VM exits per second, 2-vCPU Linux partition (TCG):");
    println!("  {:<10} {:>12} {:>18}", "kind", "boot", "idle, per vCPU");
    let kinds = boot["exits"].as_object().context("exits")?;
    let (mut boot_total, mut idle_total) = (0.0, 0.0);
    for kind in kinds.keys() {
        let n = |s: &Value| s["exits"][kind].as_u64().unwrap_or(0) as f64;
        let boot_rate = n(boot) / boot_s;
        let idle_rate = (n(b) - n(a)) / idle_s / 2.0;
        boot_total += boot_rate;
        idle_total += idle_rate;
        println!("  {kind:<10} {boot_rate:>12.0} {idle_rate:>18.1}");
    }
    println!(
        "  {:<10} {boot_total:>12.0} {idle_total:>18.1}   (boot: first kernel line → /init, {boot_s:.2} s; idle: {idle_s:.2} s of `sleep 5`; target < 100 per idle vCPU, issue #19)\n",
        "all"
    );
    Ok(())
}

/// Instructions per local APIC timer round trip (guest programs a one-shot count, halts,
/// takes the interrupt, EOIs) under `-icount shift=0`, where a TSC tick is an instruction.
pub fn timer_round_trip() -> Result<()> {
    let image_path = image::build_with_layout(&paths::layouts_dir().join("timer-loop.toml"))?;
    let topology = topology::load("two-nodes")?;
    let options = qemu::RunOptions {
        exit: Some("partitions"),
        extra_qemu_args: vec!["-icount".into(), "shift=0".into()],
        extra_append: String::new(),
    };
    let args = qemu::command(&image_path, &topology, &options);
    let result = qemu::run(&args, BOOT_TIMEOUT, false)?;
    let line = result
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("[ticker] guest: "))
        .find(|l| l.contains("timer_loop"))
        .with_context(|| format!("no timer_loop line; log tail:\n{}", result.tail(30)))?;
    let value: Value = serde_json::from_str(line)?;
    println!(
        "local APIC timer round trip (program, fire, inject, EOI; x2APIC, 3 exits): {} instructions, guest and hypervisor together, over {} round trips (-icount shift=0)",
        value["per_round_trip"], value["count"]
    );
    Ok(())
}
