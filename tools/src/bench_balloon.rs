//! Dynamic Memory's figures for `cargo xtask bench` (docs/dynamic-memory.md): two dynamic
//! Linux partitions on one host node, one filling its memory while the other idles, and a
//! third, static one idling on the other node (layouts/bench-balloon.toml).
//!
//! - what the hypervisor spends moving pages: host TSC ticks per MiB, inflating and
//!   deflating (the `ticks` of each `balloon` event: SLAT changes, the other vCPUs' flushes,
//!   the frame allocator), on multi-threaded TCG's wall-clock TSC;
//! - how fast memory moves from the idle partition to the busy one (policy-paced: one 64 MiB
//!   step per statistics round of 500 ms at most);
//! - the VM exits per second an idle guest's balloon costs: the idle dynamic partition's
//!   exit rate against the static twin's.

use anyhow::{Context, Result};
use serde_json::Value;
use tools::{image, paths};

const MIB: f64 = (1u64 << 20) as f64;

pub fn run() -> Result<()> {
    let image = image::build_with_layout(&paths::layouts_dir().join("bench-balloon.toml"))?;
    let report = crate::boot_report(&image, "two-nodes-2g5", Some("partitions"), false)?;
    let hz = report
        .event("timing")
        .and_then(|t| t["tsc_hz"].as_u64())
        .context("no timing event")?
        .max(1) as f64;
    let balloon: Vec<&Value> = report
        .events
        .iter()
        .filter(|e| e["event"] == "balloon")
        .collect();
    for kind in ["inflate", "deflate"] {
        let moves: Vec<&&Value> = balloon.iter().filter(|e| e["kind"] == kind).collect();
        let bytes: u64 = moves.iter().filter_map(|e| e["bytes"].as_u64()).sum();
        let ticks: u64 = moves.iter().filter_map(|e| e["ticks"].as_u64()).sum();
        if bytes == 0 {
            println!("balloon {kind}: nothing moved");
            continue;
        }
        let mib = bytes as f64 / MIB;
        let per_mib_us = ticks as f64 / hz * 1e6 / mib;
        println!(
            "balloon {kind}: {mib:.0} MiB in {} requests; the hypervisor spent {per_mib_us:.0} µs per MiB ({:.0} µs for 256 MiB; TCG wall clock)",
            moves.len(),
            per_mib_us * 256.0
        );
    }
    // Memory moving towards the busy partition under load: its deflations before it stopped
    // (Linux deflates its whole balloon as it powers off: those come after its last report).
    let done = report
        .events
        .iter()
        .find(|e| {
            e["event"] == "console"
                && e["partition"] == "busy"
                && e["line"]
                    .as_str()
                    .is_some_and(|l| l.contains("\"memory_done\""))
        })
        .and_then(|e| e["us"].as_u64())
        .unwrap_or(u64::MAX);
    let busy_deflates: Vec<&&Value> = balloon
        .iter()
        .filter(|e| e["partition"] == "busy" && e["kind"] == "deflate")
        .filter(|e| e["us"].as_u64().is_some_and(|us| us < done))
        .collect();
    let targets = report
        .events
        .iter()
        .filter(|e| e["event"] == "memory_target" && e["partition"] == "busy")
        .count();
    if let (Some(first), Some(last)) = (busy_deflates.first(), busy_deflates.last()) {
        let us = |e: &Value| e["us"].as_u64().unwrap_or(0) as f64;
        let bytes: u64 = busy_deflates
            .iter()
            .filter_map(|e| e["bytes"].as_u64())
            .sum();
        let seconds = (us(last) - us(first)) / 1e6;
        println!(
            "busy partition: {:.0} MiB given back to it by its balloon over {seconds:.1} s ({:.1} MiB/s wall clock, the policy setting {targets} targets at most 64 MiB apart, every 500 ms at most)",
            bytes as f64 / MIB,
            bytes as f64 / MIB / seconds.max(1e-9)
        );
    }
    // What an idle guest's balloon costs: its exits beyond its static twin's, by kind.
    let counts = |name: &str| {
        report
            .events
            .iter()
            .rev()
            .find(|e| e["event"] == "exit_counts" && e["partition"] == name)
            .cloned()
    };
    if let (Some(idle), Some(still)) = (counts("idle"), counts("still")) {
        let seconds = idle["us"].as_u64().unwrap_or(0) as f64 / 1e6;
        let mut extra = Vec::new();
        let mut total = 0i64;
        if let Some(kinds) = idle["exits"].as_object() {
            for (kind, n) in kinds {
                let d = n.as_i64().unwrap_or(0) - still["exits"][kind].as_i64().unwrap_or(0);
                total += d;
                if d != 0 {
                    extra.push(format!("{kind} {:+.1}", d as f64 / seconds.max(1e-9)));
                }
            }
        }
        println!(
            "idle dynamic guest against its static twin: {:+.1} VM exits/s over {seconds:.0} s ({}); this includes its own shrinking and its power-off deflation",
            total as f64 / seconds.max(1e-9),
            extra.join(", ")
        );
    }
    println!();
    Ok(())
}
