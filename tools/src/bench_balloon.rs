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
use tools::image;

const MIB: f64 = (1u64 << 20) as f64;

pub fn run() -> Result<()> {
    let image = image::build_with_layout(&image::layouts_dir().join("bench-balloon.toml"))?;
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
    let first = report.events.iter().position(|e| {
        e["event"] == "balloon" && e["partition"] == "busy" && e["kind"] == "deflate"
    });
    if let Some(first) = first {
        // Memory moving towards the busy partition: from its first deflation to its largest
        // size, in the report's own order (no timestamps on balloon events: use the console's).
        let sizes: Vec<u64> = report.events[first..]
            .iter()
            .filter(|e| e["event"] == "balloon" && e["partition"] == "busy")
            .filter_map(|e| e["size"].as_u64())
            .collect();
        let low = sizes.first().copied().unwrap_or(0);
        let high = sizes.iter().copied().max().unwrap_or(0);
        println!(
            "busy partition grew from {:.0} MiB to {:.0} MiB under load",
            low as f64 / MIB,
            high as f64 / MIB
        );
    }
    let timing = report
        .event("partition_timing")
        .and_then(|t| t["partitions"].as_array().cloned())
        .unwrap_or_default();
    let rate = |name: &str| {
        timing.iter().find(|p| p["name"] == name).map(|p| {
            let exits = p["exits"].as_u64().unwrap_or(0) as f64;
            let seconds = p["run_ticks"].as_u64().unwrap_or(0) as f64 / hz;
            exits / seconds.max(1e-9)
        })
    };
    if let (Some(idle), Some(still)) = (rate("idle"), rate("still")) {
        println!(
            "idle guest: {idle:.0} VM exits/s with Dynamic Memory, {still:.0} without: the balloon costs {:.0} exits/s (statistics every 500 ms, and its own inflation)",
            idle - still
        );
    }
    println!();
    Ok(())
}
