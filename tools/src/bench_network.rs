//! The network's figures for `cargo xtask bench` (docs/network.md, "Figures"): two Linux
//! partitions on two host nodes joined by numavisor's switch (layouts/linux-network.toml on
//! `two-nodes`) against the same two guests as two plain QEMU processes joined by
//! `-netdev socket`, and what the hypervisor spends on the way.
//!
//! - TCP throughput partition → partition (busybox `nc`, MiB/s by the sender's clock) and the
//!   ping round trip, numavisor and plain alternated, [`ROUNDS`] each;
//! - VM exits per MiB moved, by kind, both partitions together (`exit-stats` snapshots
//!   around the transfer);
//! - the hypervisor's instructions per frame sent (`send_ticks / tx_frames` of the sender's
//!   card under `-icount shift=0`).
//!
//! The transfer size is `nv.mib` of the layout: [`DEFAULT_MIB`], or `$NUMAVISOR_BENCH_MIB`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use tools::{image, linux, paths, qemu, report::Report, topology};

/// numavisor and plain transfers each, alternated.
const ROUNDS: usize = 3;
/// MiB moved per transfer unless `$NUMAVISOR_BENCH_MIB` says otherwise.
const DEFAULT_MIB: u64 = 64;
/// MiB moved under `-icount shift=0` (at most): one emulator thread runs every vCPU there.
const ICOUNT_MIB: u64 = 4;
/// `exit-stats=MS` of the numavisor runs: an `exit_counts` snapshot this often.
const EXIT_STATS_MS: u64 = 500;
const MIB: f64 = (1u64 << 20) as f64;
/// The layout of both sides: alpha pings beta, then sends `nv.mib` MiB to it.
const LAYOUT: &str = "linux-network.toml";

/// What one transfer gave: the sender's figures and, under numavisor, its report.
struct Transfer {
    mib_per_s: f64,
    /// alpha's average ping round trip to beta.
    rtt_ms: f64,
    /// The console stamp (µs since the hypervisor's entry) of alpha's `sent` line, and the
    /// transfer's length by the guest's clock; numavisor only.
    sent_us: u64,
    ms: u64,
    bytes: u64,
}

pub fn run() -> Result<()> {
    let mib = transfer_mib()?;
    let image = image::build_with_layout(&layout_with_mib(mib)?)?;
    let topology = topology::load("two-nodes")?;
    let options = qemu::RunOptions {
        exit: Some("partitions"),
        extra_qemu_args: vec![],
        extra_append: format!("exit-stats={EXIT_STATS_MS}"),
    };
    let nv_args = qemu::command(&image, &topology, &options);
    let timeout = Duration::from_secs(240 + 12 * mib);
    let (mut nv, mut plain, mut exits) = (Vec::new(), Vec::new(), Vec::new());
    let mut plain_guests: Option<[PlainGuest; 2]> = None;
    println!("Network, alpha → beta, {mib} MiB with busybox nc (2 vCPUs and 256 MiB each, TCG):");
    for round in 1..=ROUNDS {
        let report = numavisor_run(&nv_args, timeout, &format!("numavisor-{round}"))?;
        let transfer = transfer_of(|name| guest_lines_of_report(&report, name), Some(&report))?;
        let window = exits_over(&report, &transfer)?;
        println!(
            "  round {round}: numavisor {:>6.2} MiB/s, ping {:>6.2} ms, {:>6.0} exits/MiB",
            transfer.mib_per_s,
            transfer.rtt_ms,
            window.per_mib()
        );
        nv.push(transfer);
        exits.push(window);
        let guests = match &plain_guests {
            Some(g) => g,
            None => plain_guests.insert(plain_guests_from(&report)?),
        };
        let transfer = plain_run(guests, timeout, round)?;
        println!(
            "  round {round}: plain     {:>6.2} MiB/s, ping {:>6.2} ms",
            transfer.mib_per_s, transfer.rtt_ms
        );
        plain.push(transfer);
    }
    let rate = |v: &[Transfer]| median(v.iter().map(|t| t.mib_per_s).collect());
    let rtt = |v: &[Transfer]| median(v.iter().map(|t| t.rtt_ms).collect());
    println!(
        "  median: numavisor {:.2} MiB/s, ping {:.2} ms; plain QEMU (two processes, -netdev socket) {:.2} MiB/s, ping {:.2} ms",
        rate(&nv),
        rtt(&nv),
        rate(&plain),
        rtt(&plain)
    );
    println!(
        "  ratio numavisor / plain: throughput {:.2} (target ≥ 1), ping {:.2} (target ≤ 1)",
        rate(&nv) / rate(&plain).max(1e-9),
        rtt(&nv) / rtt(&plain).max(1e-9)
    );
    print_exits(&exits);
    send_cost(mib.min(ICOUNT_MIB), &topology)?;
    println!("  (each run's console: {})", log_dir().display());
    println!();
    Ok(())
}

/// `$NUMAVISOR_BENCH_MIB`, or [`DEFAULT_MIB`].
fn transfer_mib() -> Result<u64> {
    match std::env::var("NUMAVISOR_BENCH_MIB") {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("NUMAVISOR_BENCH_MIB={text:?}: expected a whole number of MiB, at least 1"),
        },
        Err(_) => Ok(DEFAULT_MIB),
    }
}

/// A copy of [`LAYOUT`] under the target directory whose sender moves `mib` MiB (its
/// `nv.mib=` word replaced); the image built from it is named after it.
fn layout_with_mib(mib: u64) -> Result<PathBuf> {
    let original = paths::layouts_dir().join(LAYOUT);
    let text = std::fs::read_to_string(&original)
        .with_context(|| format!("reading layout {}", original.display()))?;
    let derived = with_mib(&text, mib).with_context(|| format!("{}", original.display()))?;
    let dir = paths::target_dir().join("layouts");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("linux-network-{mib}mib.toml"));
    std::fs::write(
        &path,
        format!(
            "# {} with nv.mib={mib}, written by `cargo xtask bench`\n{derived}",
            original.display()
        ),
    )?;
    Ok(path)
}

/// `text` with its one `nv.mib=N` word made `nv.mib=mib`.
fn with_mib(text: &str, mib: u64) -> Result<String> {
    const WORD: &str = "nv.mib=";
    if text.matches(WORD).count() != 1 {
        bail!("expected exactly one {WORD} word (the sender's command line)");
    }
    let at = text.find(WORD).expect("counted above") + WORD.len();
    let digits = text[at..].chars().take_while(char::is_ascii_digit).count();
    Ok(format!("{}{mib}{}", &text[..at], &text[at + digits..]))
}

/// One numavisor run to the end (`exit=partitions`); its report.
fn numavisor_run(args: &[String], timeout: Duration, log: &str) -> Result<Report> {
    let result = qemu::run(args, timeout, false)?;
    keep_log(log, &result.lines)?;
    if result.status != Some(qemu::EXIT_READY) {
        bail!(
            "numavisor: QEMU ended with {:?} (timed out: {}); log tail:\n{}",
            result.status,
            result.timed_out,
            result.tail(30)
        );
    }
    Report::from_lines(&result.lines).map_err(anyhow::Error::msg)
}

/// Keeps a run's console in [`log_dir`] as `NAME.log`, for reading after the bench.
fn keep_log(name: &str, lines: &[String]) -> Result<()> {
    let dir = log_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.log"));
    std::fs::write(&path, lines.join("\n") + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Where the runs' consoles are kept: `target/bench-network/`.
fn log_dir() -> PathBuf {
    paths::target_dir().join("bench-network")
}

/// Partition `name`'s console lines (numavisor), with the hypervisor's time stamp (µs).
fn guest_lines_of_report(report: &Report, name: &str) -> Vec<(String, Option<u64>)> {
    report
        .events
        .iter()
        .filter(|e| e["event"] == "console" && e["partition"] == name)
        .filter_map(|e| Some((e["line"].as_str()?.to_string(), e["us"].as_u64())))
        .collect()
}

/// The first `@guest {"event":EVENT,...}` object among `lines`, with its stamp.
fn guest_event(lines: &[(String, Option<u64>)], event: &str) -> Option<(Value, Option<u64>)> {
    lines.iter().find_map(|(line, us)| {
        let json = &line[line.find("@guest {")? + "@guest ".len()..];
        let value: Value = serde_json::from_str(json).ok()?;
        (value["event"] == event).then_some((value, *us))
    })
}

/// The transfer as alpha and beta told it: checked (alpha's nc ended well, beta's sha256 is
/// alpha's), with alpha's rate and ping round trip.
fn transfer_of(
    lines: impl Fn(&str) -> Vec<(String, Option<u64>)>,
    report: Option<&Report>,
) -> Result<Transfer> {
    let (alpha, beta) = (lines("alpha"), lines("beta"));
    let tail = |l: &[(String, Option<u64>)]| {
        let start = l.len().saturating_sub(20);
        l[start..]
            .iter()
            .map(|(line, _)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let context = || {
        format!(
            "alpha's last lines:\n{}\nbeta's:\n{}",
            tail(&alpha),
            tail(&beta)
        )
    };
    let (sent, sent_us) = guest_event(&alpha, "sent")
        .with_context(|| format!("alpha sent nothing; {}", context()))?;
    let (received, _) = guest_event(&beta, "received")
        .with_context(|| format!("beta received nothing; {}", context()))?;
    let (ping, _) = guest_event(&alpha, "ping")
        .with_context(|| format!("alpha did not ping; {}", context()))?;
    if sent["ok"] != true
        || sent["sha256"] != received["sha256"]
        || sent["bytes"] != received["bytes"]
    {
        bail!("the transfer failed: alpha {sent}, beta {received}");
    }
    let ms = sent["ms"].as_u64().context("sent: no ms")?;
    let bytes = sent["bytes"].as_u64().context("sent: no bytes")?;
    Ok(Transfer {
        mib_per_s: bytes as f64 / MIB / (ms.max(1) as f64 / 1e3),
        rtt_ms: ping["rtt_avg_ms"].as_f64().context("ping: no rtt_avg_ms")?,
        sent_us: if report.is_some() {
            sent_us.context("alpha's sent line has no time stamp")?
        } else {
            0
        },
        ms,
        bytes,
    })
}

/// Both partitions' VM exits over one transfer, by kind.
struct ExitWindow {
    by_kind: Vec<(String, u64)>,
    bytes: u64,
    /// The span of the snapshots taken (µs), against the transfer's own.
    span_us: u64,
    transfer_us: u64,
}

impl ExitWindow {
    fn total(&self) -> u64 {
        self.by_kind.iter().map(|(_, n)| n).sum()
    }
    fn per_mib(&self) -> f64 {
        self.total() as f64 / (self.bytes as f64 / MIB)
    }
}

/// The exits of alpha and beta between the last `exit_counts` snapshot before the transfer
/// began (alpha's `sent` line's stamp less its `ms`) and the first after it ended (the
/// stamp): the whole transfer and at most one snapshot interval on either side.
fn exits_over(report: &Report, transfer: &Transfer) -> Result<ExitWindow> {
    let end = transfer.sent_us;
    let start = end.saturating_sub(transfer.ms * 1000);
    let mut by_kind: Vec<(String, u64)> = Vec::new();
    let mut span_us = 0;
    for name in ["alpha", "beta"] {
        let snapshots: Vec<&Value> = report
            .events
            .iter()
            .filter(|e| e["event"] == "exit_counts" && e["partition"] == name)
            .collect();
        let us = |e: &Value| e["us"].as_u64().unwrap_or(0);
        let before = snapshots
            .iter()
            .rev()
            .find(|e| us(e) <= start)
            .with_context(|| format!("{name}: no exit_counts before the transfer"))?;
        let after = snapshots
            .iter()
            .find(|e| us(e) >= end)
            .with_context(|| format!("{name}: no exit_counts after the transfer"))?;
        span_us = span_us.max(us(after) - us(before));
        for (kind, n) in after["exits"].as_object().context("exits")? {
            let d = n.as_u64().unwrap_or(0) - before["exits"][kind].as_u64().unwrap_or(0);
            match by_kind.iter_mut().find(|(k, _)| k == kind) {
                Some((_, total)) => *total += d,
                None => by_kind.push((kind.clone(), d)),
            }
        }
    }
    Ok(ExitWindow {
        by_kind,
        bytes: transfer.bytes,
        span_us,
        transfer_us: end - start,
    })
}

/// Exits per MiB of every numavisor run, and by kind over all of them.
fn print_exits(windows: &[ExitWindow]) {
    let bytes: u64 = windows.iter().map(|w| w.bytes).sum();
    let mib = bytes as f64 / MIB;
    let total: u64 = windows.iter().map(ExitWindow::total).sum();
    let per_run: Vec<String> = windows
        .iter()
        .map(|w| format!("{:.0}", w.per_mib()))
        .collect();
    println!(
        "VM exits per MiB moved under numavisor, alpha and beta together: {:.0} over {} runs ({}; target < 64)",
        total as f64 / mib,
        windows.len(),
        per_run.join(", ")
    );
    let kinds: Vec<String> = windows
        .first()
        .map(|w| w.by_kind.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let by_kind: Vec<String> = kinds
        .iter()
        .map(|kind| {
            let n: u64 = windows
                .iter()
                .flat_map(|w| w.by_kind.iter().filter(|(k, _)| k == kind))
                .map(|(_, n)| n)
                .sum();
            format!("{kind} {:.0}", n as f64 / mib)
        })
        .collect();
    let (span, transfer): (u64, u64) = windows
        .iter()
        .fold((0, 0), |(s, t), w| (s + w.span_us, t + w.transfer_us));
    println!(
        "  by kind, per MiB: {} (snapshots every {EXIT_STATS_MS} ms around each transfer: {:.1} s of snapshots for {:.1} s of transfer)",
        by_kind.join(", "),
        span as f64 / 1e6,
        transfer as f64 / 1e6
    );
}

/// One plain guest: its command line as the partition's (with numavisor's added words) and
/// its card's MAC.
struct PlainGuest {
    name: String,
    command_line: String,
    mac: String,
}

/// alpha and beta as plain QEMU guests: their layout command lines, the words numavisor
/// added (`tsc_early_khz`: plain TCG cannot measure the TSC either) and their cards' MACs,
/// from a numavisor run's report.
fn plain_guests_from(report: &Report) -> Result<[PlainGuest; 2]> {
    let layout: toml::Value =
        toml::from_str(&std::fs::read_to_string(paths::layouts_dir().join(LAYOUT))?)?;
    let guest = |name: &str| -> Result<PlainGuest> {
        let command_line = layout["partition"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"].as_str() == Some(name)))
            .and_then(|p| p["command_line"].as_str())
            .with_context(|| format!("{LAYOUT}: no command line for {name}"))?;
        let added = report
            .events
            .iter()
            .find(|e| e["event"] == "partition" && e["name"] == name)
            .and_then(|e| e["added_options"].as_str())
            .with_context(|| format!("no partition event for {name}"))?;
        let mac = report
            .event("network")
            .and_then(|e| e["networks"][0]["members"].as_array())
            .and_then(|m| m.iter().find(|m| m["partition"] == name))
            .and_then(|m| m["mac"].as_str())
            .with_context(|| format!("no network member {name}"))?;
        Ok(PlainGuest {
            name: name.into(),
            command_line: format!("{command_line} {added}"),
            mac: mac.into(),
        })
    };
    Ok([guest("alpha")?, guest("beta")?])
}

/// The two guests on plain QEMU, beta listening for alpha's `-netdev socket`; the transfer.
fn plain_run(guests: &[PlainGuest; 2], timeout: Duration, round: usize) -> Result<Transfer> {
    let [alpha, beta] = guests;
    let port = free_port()?;
    let beta_args = plain_qemu(beta, &format!("listen=127.0.0.1:{port}"));
    let beta_thread = std::thread::spawn(move || qemu::run(&beta_args, timeout, false));
    wait_for_listener(port, &beta_thread)?;
    let alpha_result = qemu::run(
        &plain_qemu(alpha, &format!("connect=127.0.0.1:{port}")),
        timeout,
        false,
    );
    let beta_result = beta_thread
        .join()
        .map_err(|_| anyhow::anyhow!("beta's QEMU thread panicked"))??;
    let alpha_result = alpha_result?;
    keep_log(&format!("plain-{round}-alpha"), &alpha_result.lines)?;
    keep_log(&format!("plain-{round}-beta"), &beta_result.lines)?;
    let lines = |name: &str| {
        let result = if name == alpha.name {
            &alpha_result
        } else {
            &beta_result
        };
        result
            .lines
            .iter()
            .map(|l| (l.clone(), None))
            .collect::<Vec<_>>()
    };
    transfer_of(lines, None)
}

/// A port on the loopback interface that nothing holds now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something listens on `port` of 127.0.0.1 (`/proc/net/tcp`; connecting would
/// take QEMU's one peer), or `beta` ended.
fn wait_for_listener<T>(port: u16, beta: &std::thread::JoinHandle<T>) -> Result<()> {
    let wanted = format!("0100007F:{port:04X}");
    for _ in 0..600 {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let listening = table.lines().skip(1).any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A")
        });
        if listening {
            return Ok(());
        }
        if beta.is_finished() {
            bail!("beta's QEMU ended before it listened on port {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("beta's QEMU did not listen on port {port} within 60 s")
}

/// `guest` on plain QEMU: `-M microvm` (its ACPI tables describe virtio-mmio devices, so the
/// guest's `virtio_mmio` and `virtio_net` bind as under numavisor), 2 vCPUs, 256 MiB, a
/// virtio-net card on a `-netdev socket` (`socket`: `listen=…` or `connect=…`).
fn plain_qemu(guest: &PlainGuest, socket: &str) -> Vec<String> {
    linux::plain_qemu_command(
        "microvm",
        &guest.command_line,
        &[
            "-netdev".into(),
            format!("socket,id=n0,{socket}"),
            "-device".into(),
            format!("virtio-net-device,netdev=n0,mac={}", guest.mac),
        ],
    )
}

/// The hypervisor's instructions per frame alpha sent: its card's `send_ticks / tx_frames`
/// at its last `nic_counts`, on a run of `mib` MiB under `-icount shift=0`.
fn send_cost(mib: u64, topology: &topology::TopologyFile) -> Result<()> {
    let image = image::build_with_layout(&layout_with_mib(mib)?)?;
    let options = qemu::RunOptions {
        exit: Some("partitions"),
        extra_qemu_args: vec!["-icount".into(), "shift=0".into()],
        extra_append: String::new(),
    };
    let args = qemu::command(&image, topology, &options);
    let report = numavisor_run(
        &args,
        Duration::from_secs(600 + 60 * mib),
        "numavisor-icount",
    )?;
    transfer_of(|name| guest_lines_of_report(&report, name), Some(&report))?;
    let card = report
        .events
        .iter()
        .rev()
        .find(|e| e["event"] == "nic_counts" && e["partition"] == "alpha")
        .map(|e| e["nics"][0].clone())
        .context("no nic_counts for alpha")?;
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let frames = n(&card["counters"]["tx_frames"]).max(1);
    println!(
        "hypervisor per frame alpha sent ({mib} MiB, -icount shift=0): {} instructions (target < 2,000 plus the copy), {} bytes a frame on average ({frames} frames)",
        n(&card["send_ticks"]) / frames,
        n(&card["counters"]["tx_bytes"]) / frames
    );
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transfer_size_is_replaced() {
        let text = "command_line = \"a nv.mib=64 nv.test=send\"\n";
        assert_eq!(
            with_mib(text, 4).unwrap(),
            "command_line = \"a nv.mib=4 nv.test=send\"\n"
        );
        assert!(with_mib("no word", 4).is_err());
        assert!(with_mib("nv.mib=1 nv.mib=2", 4).is_err());
    }

    #[test]
    fn guest_events_are_found_by_name() {
        let lines = vec![
            ("[    1.0] boot".to_string(), None),
            (
                r#"@guest {"event":"ping","rtt_avg_ms":1.5}"#.to_string(),
                Some(7),
            ),
        ];
        let (ping, us) = guest_event(&lines, "ping").unwrap();
        assert_eq!(ping["rtt_avg_ms"], 1.5);
        assert_eq!(us, Some(7));
        assert!(guest_event(&lines, "sent").is_none());
    }
}
