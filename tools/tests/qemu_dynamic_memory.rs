//! Dynamic Memory under QEMU's SVM, issue 11's test (b): two `dynamic` Debian Linux
//! partitions on one host node (`layouts/dynamic.toml` on `two-nodes-2g5`, node 1: the only
//! node of an existing topology with two CPUs and room for two 256 MiB partitions). "busy"
//! idles, then fills most of its memory; "idle" only reports. Judged by the boot report's
//! `memory_target`, `balloon` and `ledger` events and by the guests' own `/proc/meminfo`
//! (`nv.test=memory-load` / `memory-idle` in `tools/src/linux/init.sh`): memory moves toward
//! the busy one, every vnode stays within its bounds, both keep running to their power-off,
//! and every page the balloons move lies on the partitions' own host node.
//!
//! Nothing here depends on how fast the policy acts, beyond this: the busy guest idles for
//! 12 s of its minute before it fills (rounds come about every 500 ms), so its balloon has
//! taken memory by then and must give some back as it fills.

mod common;

use common::Boot;
use serde_json::Value;
use tools::qemu::Reply;

/// Two Linux boots under TCG and a minute of guest time: a bound well above what they take.
const LINUX_TIMEOUT_S: u64 = 600;

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
/// The host node both partitions live on, and their vnode's bounds (`layouts/dynamic.toml`).
const NODE: u64 = 1;
const SIZE: u64 = 256 * MIB;
const MEMORY_MIN: u64 = 96 * MIB;
const MEMORY_MAX: u64 = 256 * MIB;
const PARTITIONS: [&str; 2] = ["busy", "idle"];

/// Host-physical ranges `[start, end)`, sorted, disjoint and merged: the pages one partition
/// holds, as the report tells them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// Adds `[start, end)`; an error if any of it is held already.
    fn add(&mut self, start: u64, end: u64) -> Result<(), String> {
        if let Some(&(s, e)) = self.0.iter().find(|&&(s, e)| s < end && start < e) {
            return Err(format!(
                "[{start:#x}, {end:#x}) overlaps [{s:#x}, {e:#x}), held already"
            ));
        }
        self.0.push((start, end));
        self.0.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for &(s, e) in &self.0 {
            match merged.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => merged.push((s, e)),
            }
        }
        self.0 = merged;
        Ok(())
    }

    /// Removes `[start, end)`; an error unless all of it is held.
    fn remove(&mut self, start: u64, end: u64) -> Result<(), String> {
        let index = self
            .0
            .iter()
            .position(|&(s, e)| s <= start && end <= e)
            .ok_or_else(|| format!("[{start:#x}, {end:#x}) is not held"))?;
        let (s, e) = self.0.remove(index);
        if end < e {
            self.0.insert(index, (end, e));
        }
        if s < start {
            self.0.insert(index, (s, start));
        }
        Ok(())
    }

    fn bytes(&self) -> u64 {
        self.0.iter().map(|&(s, e)| e - s).sum()
    }

    fn overlaps(&self, other: &Ranges) -> Option<(u64, u64)> {
        self.0
            .iter()
            .copied()
            .find(|&(s, e)| other.0.iter().any(|&(os, oe)| os < e && s < oe))
    }
}

fn number(value: &Value, key: &str, context: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {value}\n{context}"))
}

/// The `@guest` object a console event carries, with its partition, if it is one.
fn guest_object(event: &Value) -> Option<(&str, Value)> {
    if event["event"] != "console" {
        return None;
    }
    let json = event["line"].as_str()?.strip_prefix("@guest ")?;
    Some((
        event["partition"].as_str()?,
        serde_json::from_str(json).ok()?,
    ))
}

/// One partition's balloon history, folded into runs of one kind:
/// `inflate 160 MiB (256 -> 96 MiB), deflate 120 MiB (96 -> 216 MiB)`.
fn history(balloons: &[&Value], name: &str) -> String {
    let mut runs: Vec<(String, u64, u64, u64)> = Vec::new();
    let mut size = SIZE;
    for event in balloons.iter().filter(|e| e["partition"] == name) {
        let kind = event["kind"].as_str().unwrap_or("?").to_string();
        let bytes = event["bytes"].as_u64().unwrap_or(0);
        let after = event["size"].as_u64().unwrap_or(0);
        match runs.last_mut() {
            Some(run) if run.0 == kind => {
                run.1 += bytes;
                run.3 = after;
            }
            _ => runs.push((kind, bytes, size, after)),
        }
        size = after;
    }
    let runs: Vec<String> = runs
        .iter()
        .map(|(kind, bytes, from, to)| {
            format!(
                "{kind} {:.1} MiB ({:.1} -> {:.1} MiB)",
                *bytes as f64 / MIB as f64,
                *from as f64 / MIB as f64,
                *to as f64 / MIB as f64
            )
        })
        .collect();
    format!(
        "{name}: {}",
        if runs.is_empty() {
            "no balloon events".to_string()
        } else {
            runs.join(", ")
        }
    )
}

#[test]
fn b_memory_moves_toward_the_busy_partition_within_bounds_on_its_own_node() {
    let boot = Boot::run_with("dynamic", "two-nodes-2g5", LINUX_TIMEOUT_S, |_| {
        Reply::Continue
    });
    let events = &boot.report.events;
    let balloons = boot.events("balloon");
    let context = format!(
        "balloon history:\n  {}\n  {}\n{}",
        history(&balloons, "busy"),
        history(&balloons, "idle"),
        boot.context
    );
    let context = context.as_str();

    // --- The partitions as built: on node 1, whole, and each ran to its own power-off. ---
    for name in PARTITIONS {
        let partition = boot.partition(name);
        for vcpu in partition["vcpus"].as_array().expect("vcpus") {
            assert_eq!(vcpu["node"], NODE, "{name}: {vcpu}\n{context}");
        }
        let memory = &partition["memory"];
        assert_eq!(memory.as_array().map(Vec::len), Some(1), "{name}: {memory}");
        assert_eq!(memory[0]["node"], NODE, "{name}: {memory}\n{context}");
        assert_eq!(memory[0]["size"], SIZE, "{name}: {memory}\n{context}");
        assert_eq!(partition["pool"]["node"], NODE, "{name}\n{context}");
        boot.check_spa_inside_domains(name);
        let stopped = boot.stopped(name);
        assert_eq!(
            stopped["reason"], "power-off",
            "{name} did not end by its own power-off: {stopped}\n{context}"
        );
    }
    assert!(
        boot.events("partition_restarted").is_empty(),
        "no partition may restart\n{context}"
    );

    // --- What the guests said: the balloon driver bound, meminfo throughout, no trouble. ---
    for name in PARTITIONS {
        let driver = boot.linux(name, "balloon_driver");
        let bound = driver["devices"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["driver"] == "virtio_balloon"));
        assert!(
            bound,
            "{name}: no virtio device with the virtio_balloon driver: {driver}\n{context}"
        );
        let reports = events
            .iter()
            .filter_map(guest_object)
            .filter(|(p, v)| *p == name && v["event"] == "meminfo")
            .count();
        // About two a second for a minute; a quarter of that still shows a live guest.
        assert!(
            reports >= 25,
            "{name}: {reports} meminfo reports\n{context}"
        );
        // `dd_failures` (fill steps that failed, e.g. when the balloon took pages back on
        // stale statistics between the guest's look at MemAvailable and its write) is not
        // judged: the guest retries, and an out-of-memory kill shows on its console below.
        boot.linux(name, "memory_done");
        for line in boot.console_lines(name) {
            for complaint in [
                "Out of memory",
                "oom-kill",
                "page allocation failure",
                "Call Trace",
                "Kernel panic",
                "BUG:",
            ] {
                assert!(!line.contains(complaint), "{name}: {line}\n{context}");
            }
        }
    }
    let busy_done = boot.linux("busy", "memory_done");
    assert!(
        number(&busy_done, "wanted_mib", context) >= 64
            && number(&busy_done, "filled_mib", context) > 0,
        "busy was to fill most of its memory: {busy_done}\n{context}"
    );

    // --- Targets: the policy's own, within the bounds. ---
    let targets = boot.events("memory_target");
    for target in &targets {
        let name = target["partition"].as_str().unwrap_or("");
        assert!(PARTITIONS.contains(&name), "{target}\n{context}");
        assert_eq!(target["vnode"], 0, "{target}\n{context}");
        assert_eq!(
            target["by"], "policy",
            "nobody else sets targets here: {target}\n{context}"
        );
        let bytes = number(target, "bytes", context);
        assert!(
            bytes.is_multiple_of(PAGE) && (MEMORY_MIN..=MEMORY_MAX).contains(&bytes),
            "target outside [memory_min, memory_max]: {target}\n{context}"
        );
    }

    // --- Every move: from and to node 1 only, pages the partition held (inflate) or nobody
    // held (deflate), sizes that add up and stay within the bounds. ---
    let topology = boot.report.event("topology").expect("topology event");
    let node_ranges: Vec<(u64, u64)> = topology["nodes"][NODE as usize]["memory"]
        .as_array()
        .expect("node memory")
        .iter()
        .map(|r| {
            let base = number(r, "base", context);
            (base, base + number(r, "size", context))
        })
        .collect();
    let mut held: Vec<Ranges> = PARTITIONS
        .iter()
        .map(|name| {
            let mut ranges = Ranges::default();
            for spa in boot.partition(name)["memory"][0]["spa"]
                .as_array()
                .expect("spa")
            {
                let (base, size) = (spa[0].as_u64().unwrap(), spa[1].as_u64().unwrap());
                ranges
                    .add(base, base + size)
                    .unwrap_or_else(|e| panic!("{name}'s own spa: {e}\n{context}"));
            }
            ranges
        })
        .collect();
    // Where each guest said it was done (`memory_done`, just before its power-off): Linux
    // deflates its whole balloon as it shuts down, so the sizes that tell what the policy did
    // are those before that.
    let done_at: Vec<usize> = PARTITIONS
        .iter()
        .map(|name| {
            events
                .iter()
                .position(|e| {
                    guest_object(e).is_some_and(|(p, v)| p == *name && v["event"] == "memory_done")
                })
                .unwrap_or_else(|| panic!("{name} printed no memory_done line\n{context}"))
        })
        .collect();
    let mut sizes = [SIZE; 2];
    let mut sizes_when_done = [SIZE; 2];
    let mut lowest = [SIZE; 2];
    let mut inflates = [0u64; 2];
    // For "memory moved toward busy": the first fill report's place in the report, the
    // deflates after it and the largest size busy held after it.
    let mut fill_began: Option<usize> = None;
    let mut busy_deflates_in_fill = 0u64;
    let mut busy_largest_in_fill = 0u64;
    let mut first_balloon: Option<usize> = None;
    let mut stopped = [false; 2];
    for (index, event) in events.iter().enumerate() {
        // A stopped partition's memory goes back to its node's free memory, for anyone.
        if event["event"] == "partition_stopped" {
            // Neither holds a page the other holds (a page given back and handed on is fine).
            // Checked here, once the guests are done, not after every move: an inflate's event
            // may come after the deflate that reused its pages on another CPU.
            if let Some((s, e)) = held[0].overlaps(&held[1]) {
                panic!("busy and idle both hold [{s:#x}, {e:#x}) when {event}\n{context}");
            }
            if let Some(p) = PARTITIONS.iter().position(|n| event["name"] == *n) {
                held[p] = Ranges::default();
                stopped[p] = true;
            }
        }
        if fill_began.is_none() {
            if let Some(("busy", report)) = guest_object(event) {
                if report["event"] == "meminfo" && report["phase"] == "fill" {
                    fill_began = Some(index);
                }
            }
        }
        if event["event"] != "balloon" {
            continue;
        }
        first_balloon.get_or_insert(index);
        let name = event["partition"].as_str().unwrap_or("");
        let p = PARTITIONS
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| {
                panic!("balloon event for no partition of the layout: {event}\n{context}")
            });
        assert!(
            !stopped[p],
            "a balloon event after {name} stopped: {event}\n{context}"
        );
        assert_eq!(event["vnode"], 0, "{event}\n{context}");
        assert_eq!(
            event["node"], NODE,
            "a page moved to or from another node: {event}\n{context}"
        );
        let pages = number(event, "pages", context);
        let bytes = number(event, "bytes", context);
        assert!(pages > 0 && bytes == pages * PAGE, "{event}\n{context}");
        let mut moved = 0;
        for spa in event["spa"].as_array().expect("spa") {
            let (start, len) = (spa[0].as_u64().unwrap(), spa[1].as_u64().unwrap());
            assert!(
                len > 0 && start.is_multiple_of(PAGE) && len.is_multiple_of(PAGE),
                "{event}\n{context}"
            );
            let end = start + len;
            assert!(
                node_ranges.iter().any(|&(b, e)| b <= start && end <= e),
                "spa [{start:#x}, {end:#x}) is not in node {NODE}'s memory {node_ranges:x?}: {event}\n{context}"
            );
            let change = match event["kind"].as_str() {
                Some("inflate") => held[p].remove(start, end),
                Some("deflate") => held[p].add(start, end),
                _ => panic!("balloon kind is neither inflate nor deflate: {event}\n{context}"),
            };
            change.unwrap_or_else(|e| panic!("{name}: {e}: {event}\n{context}"));
            moved += len;
        }
        assert_eq!(moved, bytes, "spa ranges do not add up: {event}\n{context}");
        let inflate = event["kind"] == "inflate";
        let expected = if inflate {
            sizes[p].checked_sub(bytes)
        } else {
            sizes[p].checked_add(bytes)
        };
        let size = number(event, "size", context);
        assert_eq!(
            Some(size),
            expected,
            "{name} held {} bytes before: {event}\n{context}",
            sizes[p]
        );
        assert!(
            (MEMORY_MIN..=MEMORY_MAX).contains(&size),
            "{name} left its bounds [{MEMORY_MIN}, {MEMORY_MAX}]: {event}\n{context}"
        );
        assert_eq!(held[p].bytes(), size, "{name}: {event}\n{context}");
        sizes[p] = size;
        if index > done_at[p] {
            continue;
        }
        sizes_when_done[p] = size;
        lowest[p] = lowest[p].min(size);
        if inflate {
            inflates[p] += 1;
        }
        if name == "busy" && fill_began.is_some() {
            busy_largest_in_fill = busy_largest_in_fill.max(size);
            if !inflate {
                busy_deflates_in_fill += 1;
            }
        }
    }

    // --- The idle one gave memory back and kept at least its minimum (as it finished). ---
    let idle = 1;
    assert!(
        inflates[idle] > 0,
        "idle's balloon never inflated\n{context}"
    );
    assert!(
        sizes_when_done[idle] < SIZE && sizes_when_done[idle] >= MEMORY_MIN,
        "idle held {} bytes when it finished\n{context}",
        sizes_when_done[idle]
    );
    let idle_last = events
        .iter()
        .filter_map(guest_object)
        .filter(|(p, v)| *p == "idle" && v["event"] == "meminfo")
        .map(|(_, v)| v)
        .next_back()
        .expect("idle's meminfo");
    if let (Some(inflated), Some(deflated)) = (
        idle_last["balloon_inflate"].as_u64(),
        idle_last["balloon_deflate"].as_u64(),
    ) {
        assert!(
            inflated > deflated,
            "idle's own kernel counts no pages in its balloon: {idle_last}\n{context}"
        );
    }

    // --- Memory moved toward the busy one once it filled (before it finished): its balloon
    // gave pages back, or its kernel saw MemTotal rise above the least it had; and it then
    // held more than the idle one. ---
    let fill_began =
        fill_began.unwrap_or_else(|| panic!("busy never reported its fill phase\n{context}"));
    let busy_totals: Vec<(usize, u64)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| guest_object(e).map(|(p, v)| (i, p, v)))
        .filter(|(_, p, v)| *p == "busy" && v["event"] == "meminfo")
        .filter_map(|(i, _, v)| Some((i, v["memtotal_kb"].as_u64()? * 1024)))
        .collect();
    let least_before = busy_totals
        .iter()
        .filter(|(i, _)| *i <= fill_began)
        .map(|&(_, t)| t)
        .min()
        .unwrap_or(0);
    let most_after = busy_totals
        .iter()
        .filter(|(i, _)| *i > fill_began && *i < done_at[0])
        .map(|&(_, t)| t)
        .max()
        .unwrap_or(0);
    let rose = most_after.saturating_sub(least_before);
    assert!(
        busy_deflates_in_fill > 0 || rose >= 16 * MIB,
        "no memory moved toward busy while it filled: no deflate, and its MemTotal rose by {} KiB (least before the fill {} KiB, most after {} KiB); its balloon went as low as {} MiB\n{context}",
        rose / 1024,
        least_before / 1024,
        most_after / 1024,
        lowest[0] / MIB
    );
    let busy_held_most = if busy_largest_in_fill > 0 {
        busy_largest_in_fill
    } else {
        // No move after the fill began: it kept what it had.
        sizes_when_done[0]
    };
    assert!(
        busy_held_most > sizes_when_done[idle],
        "busy held at most {busy_held_most} bytes while filling, idle {} when it finished\n{context}",
        sizes_when_done[idle]
    );

    // --- The accounts: every ledger adds up, node 0 never holds guest memory or a pool,
    // the moves were accounted, and nothing is left held after the stops. ---
    boot.check_ledgers();
    let first_balloon =
        first_balloon.unwrap_or_else(|| panic!("no balloon events at all\n{context}"));
    let mut ledgers_after_moves = 0;
    for (index, ledger) in events.iter().enumerate() {
        if ledger["event"] != "ledger" {
            continue;
        }
        if index > first_balloon {
            ledgers_after_moves += 1;
        }
        for row in ledger["nodes"].as_array().expect("ledger nodes") {
            if row["node"] == NODE {
                let guest = number(row, "guest", context);
                assert!(
                    guest <= 2 * SIZE,
                    "node {NODE} holds more guest memory than both sizes: {row}\n{context}"
                );
            } else {
                assert_eq!(
                    (row["guest"].as_u64(), row["pools"].as_u64()),
                    (Some(0), Some(0)),
                    "no partition has memory off node {NODE}: {row}\n{context}"
                );
            }
        }
    }
    assert!(
        ledgers_after_moves > 0,
        "no ledger after the balloon moves\n{context}"
    );
}

#[test]
fn ranges_follow_pages_in_and_out() {
    let mut ranges = Ranges::default();
    ranges.add(0x1000, 0x3000).unwrap();
    ranges.add(0x3000, 0x5000).unwrap();
    assert_eq!(ranges.0, [(0x1000, 0x5000)]);
    assert!(ranges.add(0x4000, 0x6000).is_err());
    ranges.remove(0x2000, 0x3000).unwrap();
    assert_eq!(ranges.0, [(0x1000, 0x2000), (0x3000, 0x5000)]);
    assert!(ranges.remove(0x1000, 0x4000).is_err(), "a hole in between");
    assert!(ranges.remove(0x6000, 0x7000).is_err());
    assert_eq!(ranges.bytes(), 0x3000);
    ranges.remove(0x1000, 0x2000).unwrap();
    ranges.remove(0x3000, 0x5000).unwrap();
    assert!(ranges.0.is_empty());
    let mut other = Ranges::default();
    other.add(0x8000, 0x9000).unwrap();
    ranges.add(0x7000, 0x8000).unwrap();
    assert_eq!(ranges.overlaps(&other), None);
    ranges.add(0x8800, 0x8900).unwrap();
    assert_eq!(ranges.overlaps(&other), Some((0x8800, 0x8900)));
}
