//! `cargo xtask …` (alias for `cargo run -p tools -- …`): build, run, test and benchmark
//! numavisor.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod bench_balloon;
mod bench_linux;
mod bench_network;
mod bench_pci;
mod guest_acpi;
mod layout_cmd;

use tools::{expect, image, packages, paths, qemu, report::Report, topology, workspace_root};

#[derive(Parser)]
#[command(name = "tools", about = "Build, run, test and benchmark numavisor")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Build the image (with a layout embedded) and print its path and size.
    Build {
        /// The layout: NAME (layouts/NAME.toml) or a path to a layout file; default
        /// $NUMAVISOR_LAYOUT, else `default`.
        #[arg(long)]
        layout: Option<String>,
        /// Also build the UEFI application around the image (`numavisor-LAYOUT.efi`).
        #[arg(long)]
        efi: bool,
    },
    /// Boot the image in QEMU (PVH) or Bochs (GRUB, multiboot2) on a named topology
    /// (tests/topologies/NAME.toml).
    Run {
        /// `qemu` (PVH, AMD SVM under TCG) or `bochs` (a GRUB ISO booting the image by
        /// multiboot2, the topology's SRAT/SLIT/HMAT handed over as override modules).
        #[arg(long, default_value = "qemu")]
        emulator: Emulator,
        /// Bochs CPU model (`corei7_haswell_4770`: Intel VMX + EPT; `ryzen`: AMD SVM + NPT).
        #[arg(long, default_value = tools::bochs::DEFAULT_CPU)]
        cpu: String,
        #[arg(long, default_value = "two-nodes")]
        topology: String,
        /// The partition layout to embed: NAME (layouts/NAME.toml) or a path to a layout
        /// file; default $NUMAVISOR_LAYOUT, else `default`.
        #[arg(long)]
        layout: Option<String>,
        /// Keep the machine up after `ready` instead of exiting QEMU.
        #[arg(long)]
        stay: bool,
        /// Extra words for the image's command line (e.g. "log=debug").
        #[arg(long, default_value = "")]
        append: String,
        /// QEMU only: `pvh` (`-kernel`); `ovmf` (the UEFI application under Debian's OVMF,
        /// the command line as its load options); or `coreboot-test` (the image as a coreboot
        /// ELF payload, started by the test loader from coreboot tables; the command line goes
        /// into the layout's `boot_options`, as coreboot passes none).
        #[arg(long, default_value = "pvh")]
        firmware: Firmware,
    },
    /// Run every gate: fmt, clippy, host tests, the QEMU topology matrix.
    Test,
    /// Check a partition layout file and show what it asks for.
    CheckLayout(layout_cmd::CheckLayoutArgs),
    /// Write a described partition's ACPI tables to files (inspect with `iasl -d`).
    GuestAcpi(guest_acpi::GuestAcpiArgs),
    /// Count instructions from entry to `ready` under `-icount shift=0`.
    Bench {
        #[arg(long, value_delimiter = ',', default_value = "two-nodes,eight-nodes")]
        topologies: Vec<String>,
        /// Only Dynamic Memory's figures (the balloon), not the whole bench.
        #[arg(long)]
        balloon_only: bool,
        /// Only the network's figures (docs/network.md, "Figures"), not the whole bench;
        /// `$NUMAVISOR_BENCH_MIB` sets the transfer size (default 64).
        #[arg(long, conflicts_with = "balloon_only")]
        network_only: bool,
        /// Only PCI passthrough's figures (docs/pci.md, "Figures"), not the whole bench.
        #[arg(long, conflicts_with_all = ["balloon_only", "network_only"])]
        pci_only: bool,
        /// Only the exit path's figures: instructions per io-loop, CPUID and xAPIC EOI exit
        /// (SVM under `-icount`, VMX under Bochs), the io-loop's stages, and the local APIC
        /// timer round trip.
        #[arg(long, conflicts_with_all = ["balloon_only", "network_only", "pci_only"])]
        exits_only: bool,
        /// Only Linux's figures: boot to `/init` against plain QEMU, and VM exits per second
        /// while booting and idle.
        #[arg(long, conflicts_with_all = ["balloon_only", "network_only", "pci_only", "exits_only"])]
        linux_only: bool,
    },
}

/// How `run` boots the image under QEMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Firmware {
    Pvh,
    Ovmf,
    CorebootTest,
}

/// Which emulator `run` boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Emulator {
    Qemu,
    Bochs,
}

/// Errors reach the user as their message and its causes, one per line, and nothing else:
/// an anyhow error returned from `main` would print a backtrace under them whenever
/// `RUST_BACKTRACE` is set, as it is for many Rust users.
fn main() -> std::process::ExitCode {
    match run_command() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_command() -> Result<()> {
    match Cli::parse().command {
        Commands::Build { layout, efi } => {
            let path = image::build_with_layout(&image::resolve_layout(layout.as_deref())?)?;
            let mut built = vec![path.clone()];
            if efi {
                built.push(image::build_efi(&path)?);
            }
            for path in built {
                let size = std::fs::metadata(&path)?.len();
                println!("{} ({size} bytes)", path.display());
            }
            Ok(())
        }
        Commands::Run {
            emulator: Emulator::Bochs,
            cpu,
            topology,
            layout,
            stay,
            append,
            ..
        } => run_bochs(&topology, &cpu, layout.as_deref(), stay, &append),
        Commands::Run {
            emulator: Emulator::Qemu,
            topology,
            layout,
            stay,
            append,
            firmware,
            ..
        } => run(&topology, layout.as_deref(), stay, &append, firmware),
        Commands::Test => test(),
        Commands::Bench {
            balloon_only: true, ..
        } => bench_balloon::run(),
        Commands::Bench {
            network_only: true, ..
        } => {
            packages::ensure(&[packages::QEMU])?;
            bench_network::run()
        }
        Commands::Bench { pci_only: true, .. } => {
            packages::ensure(&[packages::QEMU])?;
            bench_pci::run()
        }
        Commands::Bench {
            exits_only: true, ..
        } => {
            packages::ensure(&[packages::QEMU])?;
            exit_path()
        }
        Commands::Bench {
            linux_only: true, ..
        } => {
            packages::ensure(&[packages::QEMU])?;
            bench_linux::run()
        }
        Commands::Bench { topologies, .. } => bench(&topologies),
        Commands::GuestAcpi(args) => guest_acpi::run(args),
        Commands::CheckLayout(args) => layout_cmd::run(args),
    }
}

fn run(
    name: &str,
    layout: Option<&str>,
    stay: bool,
    append: &str,
    firmware: Firmware,
) -> Result<()> {
    packages::ensure(&[packages::QEMU])?;
    if firmware == Firmware::Ovmf {
        packages::ensure(&[packages::OVMF])?;
    }
    let mut layout_file = image::resolve_layout(layout)?;
    if firmware == Firmware::CorebootTest {
        let exit = if stay { "" } else { "exit=partitions" };
        layout_file = image::layout_with_boot_options(&layout_file, &format!("{exit} {append}"))?;
    }
    let image = image::build_with_layout(&layout_file)?;
    let layout = layout_file.display().to_string();
    let topology = topology::load(name)?;
    let options = qemu::RunOptions {
        exit: (!stay).then_some("partitions"),
        extra_qemu_args: vec![],
        extra_append: append.to_string(),
    };
    let args = match firmware {
        Firmware::Pvh => qemu::command(&image, &topology, &options),
        Firmware::Ovmf => qemu::ovmf_command(&image::build_efi(&image)?, &topology, &options),
        Firmware::CorebootTest => qemu::coreboot_test_command(
            &image::build_coreboot_loader()?,
            &image,
            &topology,
            &options,
        ),
    };
    println!("$ {}", qemu::shell_line(&args));
    if stay {
        return stay_at_the_console(&args);
    }
    let timeout = Duration::from_secs(topology.timeout_seconds.max(120));
    let result = qemu::run(&args, timeout, true)?;
    let report = Report::from_lines(&result.lines).map_err(anyhow::Error::msg)?;
    let problems = expect::check(&report, &topology.expect);
    if result.status != Some(qemu::EXIT_READY) || !problems.is_empty() {
        bail!(
            "run on {name} ended with status {status:?}{}; report problems: {problems:#?}",
            if result.timed_out { " (timed out)" } else { "" },
            status = result.status
        );
    }
    println!("\nnumavisor on topology {name} (the report matches {name}.toml), layout {layout}:");
    for event in &report.events {
        match event["event"].as_str() {
            Some("partition") => println!(
                "  partition {}: {} vCPU(s) on node(s) {}, {} MiB, SLAT {} KiB, pool {} KiB on node {}",
                event["name"],
                event["vcpus"].as_array().map_or(0, Vec::len),
                event["vcpus"].as_array().into_iter().flatten().map(|v| v["node"].to_string()).collect::<Vec<_>>().join(","),
                event["memory"].as_array().into_iter().flatten().filter_map(|m| m["size"].as_u64()).sum::<u64>() >> 20,
                event["slat"]["table_bytes"].as_u64().unwrap_or(0) / 1024,
                event["pool"]["deposited"].as_u64().unwrap_or(0) / 1024,
                event["pool"]["node"],
            ),
            Some("network") => {
                for network in event["networks"].as_array().into_iter().flatten() {
                    let members: Vec<String> = network["members"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|m| format!("{} eth{} {} on node(s) {}", m["partition"], m["nic"], m["mac"], m["nodes"]))
                        .collect();
                    println!("  network {}: {}", network["name"], members.join("; "));
                }
            }
            Some("console") => {
                // What a Linux guest's /init reported about itself (`@guest {...}` lines).
                let seen = event["line"]
                    .as_str()
                    .and_then(|l| l.strip_prefix("@guest "))
                    .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok());
                let Some(seen) = seen else { continue };
                match seen["event"].as_str() {
                    Some("linux") => println!(
                        "  partition {} sees: nproc {}, {} node(s), distances {}, MemTotal {} KiB",
                        event["partition"], seen["nproc"], seen["nodes"], seen["distances"], seen["memtotal_kb"]
                    ),
                    Some("ping") => println!(
                        "  partition {} pinged {}: {} of {} answered, average round trip {} ms",
                        event["partition"], seen["peer"], seen["received"], seen["transmitted"], seen["rtt_avg_ms"]
                    ),
                    _ => {}
                }
            }
            Some("partition_refused") => println!("  partition {} refused: {}", event["name"], event["reason"]),
            Some("partition_stopped") => {
                println!("  partition {} stopped: {} ({})", event["name"], event["reason"], event["detail"])
            }
            _ => {}
        }
    }
    Ok(())
}

/// `run --emulator bochs`: the GRUB ISO with the topology's override tables, one bounded run,
/// the report checked against what those tables describe.
/// `run --stay`: QEMU with the terminal as the serial console. Typing reaches the partitions
/// (Ctrl-A 1..9 switches between them); the terminal shows the human view and the `@nv`
/// report lines go to a file ([`tools::console_view`]).
fn stay_at_the_console(args: &[String]) -> Result<()> {
    use std::io::{Read, Write};
    let report_path = paths::target_dir().join("run-report.jsonl");
    let mut report_file = std::fs::File::create(&report_path)
        .with_context(|| format!("creating {}", report_path.display()))?;
    println!(
        "(console input goes to partition 1; Ctrl-A then 1..9 switches, Ctrl-C ends QEMU; the JSON report goes to {})",
        report_path.display()
    );
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", args[0]))?;
    let mut output = child.stdout.take().context("QEMU's output")?;
    let mut view = tools::console_view::ConsoleView::default();
    let mut buffer = [0u8; 4096];
    let stdout = std::io::stdout();
    loop {
        let read = output.read(&mut buffer).context("reading QEMU's output")?;
        if read == 0 {
            break;
        }
        let (mut terminal, mut report) = (Vec::new(), Vec::new());
        view.feed(&buffer[..read], &mut terminal, &mut report);
        let mut out = stdout.lock();
        out.write_all(&terminal)?;
        out.flush()?;
        report_file.write_all(&report)?;
    }
    let status = child.wait().context("waiting for QEMU")?;
    println!(
        "QEMU ended with {status}; the JSON report is in {}",
        report_path.display()
    );
    Ok(())
}

fn run_bochs(name: &str, cpu: &str, layout: Option<&str>, stay: bool, append: &str) -> Result<()> {
    packages::ensure(&tools::packages::BOCHS)?;
    let image = image::build_with_layout(&image::resolve_layout(layout)?)?;
    let machine = tools::bochs_machine::load(name)?;
    let exit = if stay { "" } else { "exit=partitions" };
    let run = tools::bochs::BochsRun {
        dir: tools::bochs::run_dir(name, cpu),
        image: &image,
        machine: &machine,
        cpu,
        command_line: tools::bochs::command_line(&format!("{append} {exit}")),
    };
    let prepared = tools::bochs::prepare(&run)?;
    println!(
        "$ {}   # {} CPU(s), {} MiB, modules {}",
        qemu::shell_line(&tools::bochs::command(&prepared)),
        machine.cpus,
        machine.megs,
        machine.overridden().join(",")
    );
    let timeout = Duration::from_secs(if stay { 24 * 3600 } else { 300 });
    let started = std::time::Instant::now();
    let result = tools::bochs::run(&prepared, timeout, true)?;
    let seconds = started.elapsed().as_secs_f64();
    let report = Report::from_lines(&result.lines).map_err(anyhow::Error::msg)?;
    let problems = expect::check(&report, &machine.expectation());
    if result.status != Some(tools::bochs::EXIT_READY) || !problems.is_empty() {
        bail!(
            "Bochs run on {name} ended with status {status:?}{} after {seconds:.1} s; report problems: {problems:#?}
--- Bochs log tail ---
{}",
            if result.timed_out { " (timed out)" } else { "" },
            tools::bochs::log_tail(&prepared, 20),
            status = result.status
        );
    }
    println!(
        "
numavisor under Bochs ({cpu}) on topology {name}: booted by GRUB (multiboot2) in {seconds:.1} s; tables overridden: {}; the report matches the override tables",
        report
            .event("acpi")
            .map(|a| a["overridden"].to_string())
            .unwrap_or_default()
    );
    for event in report
        .events
        .iter()
        .filter(|e| e["event"] == "partition_refused")
    {
        println!("  partition {} refused: {}", event["name"], event["reason"]);
    }
    Ok(())
}

fn cargo(args: &[&str]) -> Result<()> {
    cargo_with_env(args, &[])
}

fn cargo_with_env(args: &[&str], env: &[(&str, &std::path::Path)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("$ cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

fn test() -> Result<()> {
    packages::ensure(&[packages::QEMU, packages::IASL, packages::OVMF])?;
    packages::ensure(&packages::BOCHS)?;
    packages::ensure_toolchain(image::TARGET, &["rustfmt", "clippy"])?;
    packages::ensure_toolchain(image::EFI_TARGET, &[])?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "-q",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // The image embeds guest images and the default layout's Linux material: build and
    // fetch them before clippy compiles the image.
    image::build_guests()?;
    tools::linux::prepare_linux_guest().context("preparing the Linux guest material")?;
    let guests = paths::guest_dir();
    let linux_dir = tools::linux::linux_dir();
    for package in [
        "numavisor-firmware",
        "numavisor-test-guest",
        "numavisor-coreboot-loader",
        "numavisor-linux-getcpu",
    ] {
        cargo_with_env(
            &[
                "clippy",
                "-q",
                "-p",
                package,
                "--release",
                "--target",
                image::TARGET,
                "--",
                "-D",
                "warnings",
            ],
            &[
                ("NUMAVISOR_GUEST_DIR", &guests),
                ("NUMAVISOR_LINUX_DIR", &linux_dir),
            ],
        )?;
    }
    // One image per layout the partition tests boot, then the default one last.
    let mut layouts: Vec<_> = std::fs::read_dir(paths::layouts_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    layouts.sort();
    for (layout, built) in layouts.iter().zip(image::build_with_layouts(&layouts)?) {
        println!("image for {}: {}", layout.display(), built.display());
    }
    let image = image::build()?;
    println!(
        "image: {} ({} bytes)",
        image.display(),
        std::fs::metadata(&image)?.len()
    );
    // The UEFI application embeds an image; clippy checks it around the default one.
    cargo_with_env(
        &[
            "clippy",
            "-q",
            "-p",
            "numavisor-efi",
            "--release",
            "--target",
            image::EFI_TARGET,
            "--",
            "-D",
            "warnings",
        ],
        &[("NUMAVISOR_ELF", &image.canonicalize()?)],
    )?;
    let images = paths::images_dir();
    // The QEMU tests boot the images just built rather than building them again.
    cargo_with_env(
        &["test", "-q", "--workspace"],
        &[("NUMAVISOR_IMAGE", &image), ("NUMAVISOR_IMAGES", &images)],
    )?;
    println!("all gates passed");
    Ok(())
}

fn bench(names: &[String]) -> Result<()> {
    packages::ensure(&[packages::QEMU])?;
    // The size of numavisor itself: the image of the test-guest layout, less that guest.
    let image = image::build_with_layout(&paths::layouts_dir().join("test-guests.toml"))?;
    let image_bytes = std::fs::metadata(&image)?.len();
    let guest_bytes = std::fs::metadata(paths::guest_dir().join("test-guest.elf"))?.len();
    println!(
        "image {image_bytes} bytes: {} of numavisor, {guest_bytes} of the embedded test guest (both partitions share it)",
        image_bytes.saturating_sub(guest_bytes)
    );
    println!(
        "{:<14} {:>14} {:>14} {:>14} {:>14} {:>14}",
        "topology",
        "entry→ready",
        "acpi+topology",
        "memory setup",
        "cpu start-up",
        "of which waits"
    );
    for name in names {
        let report = boot_report(&image, name, Some("ready"), true)?;
        let timing = report.event("timing").context("no timing event")?;
        let field = |k: &str| timing[k].as_u64().unwrap_or(0);
        println!(
            "{:<14} {:>14} {:>14} {:>14} {:>14} {:>14}",
            name,
            field("entry_to_ready"),
            field("acpi_and_topology"),
            field("memory_setup"),
            field("cpu_startup"),
            field("waiting")
        );
    }
    println!("(instructions: under -icount shift=0 one TSC tick is one guest instruction, summed over CPUs)\n");

    // Partitions: ready → first guest instruction of four 1 GiB partitions (instructions).
    let four = image::build_with_layout(&paths::layouts_dir().join("bench-four.toml"))?;
    let report = boot_report(&four, "four-nodes-8g", Some("partitions"), true)?;
    println!(
        "{:<10} {:>22} {:>10} {:>8} {:>8} {:>8} {:>12} {:>12}",
        "partition", "ready→first entry", "SLAT", "4K", "2M", "1G", "pool", "pool used"
    );
    for p in report.events.iter().filter(|e| e["event"] == "partition") {
        let name = p["name"].as_str().unwrap_or("?");
        let first = report
            .event("partition_timing")
            .and_then(|t| {
                t["partitions"]
                    .as_array()?
                    .iter()
                    .find(|x| x["name"] == name)
                    .cloned()
            })
            .and_then(|x| x["ready_to_first_entry"].as_u64())
            .unwrap_or(0);
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        println!(
            "{:<10} {:>22} {:>8}Ki {:>8} {:>8} {:>8} {:>10}Ki {:>10}Ki",
            name,
            first,
            n(&p["slat"]["table_bytes"]) / 1024,
            n(&p["slat"]["pages_4k"]),
            n(&p["slat"]["pages_2m"]),
            n(&p["slat"]["pages_1g"]),
            n(&p["pool"]["deposited"]) / 1024,
            (n(&p["pool"]["deposited"]) - n(&p["pool"]["balance"])) / 1024,
        );
    }
    println!("(four partitions of 1 GiB on four-nodes-8g; `pool used` = SLAT + VMCB + I/O and MSR bitmaps)\n");
    parallel_preparation(&four)?;

    // VM exits per second for a guest looping on port reads (plain TCG, wall-clock TSC).
    let looper = image::build_with_layout(&paths::layouts_dir().join("io-loop.toml"))?;
    let report = boot_report(&looper, "two-nodes", Some("partitions"), false)?;
    let hz = report
        .event("timing")
        .and_then(|t| t["tsc_hz"].as_u64())
        .unwrap_or(1)
        .max(1);
    if let Some(t) = report
        .event("partition_timing")
        .and_then(|t| t["partitions"].get(0).cloned())
    {
        let exits = t["exits"].as_u64().unwrap_or(0);
        let seconds = t["run_ticks"].as_u64().unwrap_or(0) as f64 / hz as f64;
        println!(
            "io-loop: {exits} VM exits in {seconds:.3} s = {:.0} exits/s (TCG, this machine)",
            exits as f64 / seconds.max(1e-9)
        );
    }
    println!();
    exit_path()?;
    hot_add_moves()?;
    bench_balloon::run()?;
    bench_linux::run()?;
    bench_network::run()?;
    bench_pci::run()
}

/// The exit path's figures (issue #19's targets): the io-loop, CPUID and xAPIC EOI round
/// trips on both backends, the io-loop's stages, and the local APIC timer round trip.
fn exit_path() -> Result<()> {
    let looper = image::build_with_layout(&paths::layouts_dir().join("io-loop.toml"))?;
    io_round_trips(&looper)?;
    cpuid_round_trips()?;
    eoi_round_trips()?;
    bench_linux::timer_round_trip()
}

/// The hypervisor's instructions per 2 MiB block virtio-mem plugs (zeroing it included) and
/// unplugs (`layouts/hot-add-probe.toml`: the prober's own driver plugs two blocks and unplugs
/// them one by one), from the `hot_add` events' ticks under `-icount shift=0`, and the SLAT
/// leaves the plugged blocks took.
fn hot_add_moves() -> Result<()> {
    let image = image::build_with_layout(&paths::layouts_dir().join("hot-add-probe.toml"))?;
    let options = qemu::RunOptions {
        exit: Some("partitions"),
        extra_qemu_args: vec!["-icount".into(), "shift=0".into()],
        extra_append: String::new(),
    };
    let report = report_with(&image, "two-nodes", &options)?;
    let moves: Vec<&serde_json::Value> = report
        .events
        .iter()
        .filter(|e| e["event"] == "hot_add")
        .collect();
    for kind in ["plug", "unplug"] {
        let (ticks, bytes) = moves
            .iter()
            .filter(|e| e["kind"] == kind)
            .map(|e| {
                (
                    e["ticks"].as_u64().unwrap_or(0),
                    e["bytes"].as_u64().unwrap_or(0),
                )
            })
            .fold((0, 0), |(t, b), (ticks, bytes)| (t + ticks, b + bytes));
        let blocks = (bytes >> 21).max(1);
        println!(
            "hot-add {kind}: {} instructions per 2 MiB block ({blocks} blocks; SVM, -icount)",
            ticks / blocks
        );
    }
    if let Some(last_plug) = moves.iter().rfind(|e| e["kind"] == "plug") {
        println!(
            "hot-add: the prober's whole SLAT after the plug: {} 2 MiB leaves, {} KiB of tables\n",
            last_plug["slat_leaves_2m"],
            last_plug["slat_table_bytes"].as_u64().unwrap_or(0) / 1024
        );
    }
    Ok(())
}

/// Wall-clock time from `ready` to the last partition's first instruction: four 1 GiB
/// partitions (each zeroed and loaded by its own CPU, in parallel) against one alone. Under
/// `-icount` QEMU runs every vCPU on one host thread, so parallel work cannot show there;
/// this runs multi-threaded TCG (one host thread per vCPU), where it can, up to the number of
/// host cores. Median of three boots each.
fn parallel_preparation(four: &std::path::Path) -> Result<()> {
    let one = image::build_with_layout(&paths::layouts_dir().join("bench-one.toml"))?;
    let last_first_entry_ms = |image: &std::path::Path| -> Result<f64> {
        let mut runs = Vec::new();
        for _ in 0..3 {
            let report = boot_report(image, "four-nodes-8g", Some("partitions"), false)?;
            let hz = report
                .event("timing")
                .and_then(|t| t["tsc_hz"].as_u64())
                .unwrap_or(1)
                .max(1);
            let last = report
                .event("partition_timing")
                .and_then(|t| t["partitions"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|p| p["ready_to_first_entry"].as_u64())
                .max()
                .context("no partition_timing event")?;
            runs.push(last as f64 * 1e3 / hz as f64);
        }
        runs.sort_by(f64::total_cmp);
        Ok(runs[1])
    };
    let alone = last_first_entry_ms(&one)?;
    let together = last_first_entry_ms(four)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "ready → first instruction, wall clock (multi-threaded TCG, {cores} host cores): one 1 GiB partition alone {alone:.0} ms; the last of four {together:.0} ms = {:.2}× (four vCPUs share {cores} host cores)\n",
        together / alone.max(1e-9)
    );
    Ok(())
}

/// Instructions per I/O exit round trip (guest IN → exit → handler → entry): SVM under QEMU's
/// `-icount shift=0` (one TSC tick is one guest instruction) and VMX under Bochs (its TSC
/// ticks once per instruction of each CPU at the bochsrc's `ips`), from the io-loop
/// partition's run ticks over its exits.
fn io_round_trips(looper: &std::path::Path) -> Result<()> {
    round_trips("io-loop", looper)?;
    // Where they go: the vCPU loop's stages (`profile=exits`; the marks cost a few
    // instructions each).
    let options = qemu::RunOptions {
        exit: Some("partitions"),
        extra_qemu_args: vec!["-icount".into(), "shift=0".into()],
        extra_append: "profile=exits".into(),
    };
    let svm = report_with(looper, "two-nodes", &options)?;
    let vmx = bochs_report(looper, "two-nodes", "profile=exits")?;
    for (backend, report) in [("SVM", &svm), ("VMX", &vmx)] {
        let profile = report
            .event("exit_profile")
            .with_context(|| format!("{backend}: no exit_profile event"))?;
        let passes = profile["passes"].as_u64().unwrap_or(0).max(1);
        let stages: Vec<String> = profile["ticks"]
            .as_object()
            .map(|t| {
                t.iter()
                    .map(|(stage, ticks)| {
                        format!("{stage} {}", ticks.as_u64().unwrap_or(0) / passes)
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "io-loop per exit by stage ({backend}, profiled): {}",
            stages.join(", ")
        );
        // Every heap allocation during the passes, on any CPU (the others wait): must be 0.
        let allocations = profile["allocations"]
            .as_u64()
            .with_context(|| format!("{backend}: exit_profile has no allocations"))?;
        println!(
            "io-loop heap allocations per exit ({backend}, profiled): {} ({allocations} in {passes} passes; target 0)",
            allocations as f64 / passes as f64
        );
    }
    println!();
    Ok(())
}

/// Instructions per CPUID exit (`layouts/cpuid-loop.toml`) on SVM under `-icount shift=0` and
/// on VMX under Bochs.
fn cpuid_round_trips() -> Result<()> {
    let looper = image::build_with_layout(&paths::layouts_dir().join("cpuid-loop.toml"))?;
    round_trips("CPUID", &looper)?;
    println!();
    Ok(())
}

/// Instructions per xAPIC EOI write (`layouts/eoi-loop.toml`), an MMIO exit whose instruction
/// is fetched and decoded, on SVM under `-icount shift=0` and on VMX under Bochs.
fn eoi_round_trips() -> Result<()> {
    let looper = image::build_with_layout(&paths::layouts_dir().join("eoi-loop.toml"))?;
    round_trips("xAPIC EOI (MMIO)", &looper)?;
    println!();
    Ok(())
}

/// Prints the instructions per exit of the one-partition loop guest `looper` (`what` names
/// its exits) on SVM under `-icount shift=0` and on VMX under Bochs.
fn round_trips(what: &str, looper: &std::path::Path) -> Result<()> {
    let svm = boot_report(looper, "two-nodes", Some("partitions"), true)?;
    let vmx = bochs_report(looper, "two-nodes", "")?;
    for (backend, report) in [("SVM, QEMU -icount", &svm), ("VMX, Bochs", &vmx)] {
        let t = report
            .event("partition_timing")
            .and_then(|t| t["partitions"].get(0).cloned())
            .with_context(|| format!("{backend}: no partition_timing event"))?;
        let exits = t["exits"].as_u64().unwrap_or(0).max(1);
        let ticks = t["run_ticks"].as_u64().unwrap_or(0);
        println!(
            "{what} round trip ({backend}): {} instructions per exit ({exits} exits)",
            ticks / exits
        );
    }
    Ok(())
}

/// Boots `image` under Bochs on topology `name` with `exit=partitions` and `options`; its
/// report.
fn bochs_report(image: &std::path::Path, name: &str, options: &str) -> Result<Report> {
    packages::ensure(&tools::packages::BOCHS)?;
    let machine = tools::bochs_machine::load(name)?;
    let run = tools::bochs::BochsRun {
        dir: tools::bochs::run_dir(&format!("bench-{name}"), tools::bochs::DEFAULT_CPU),
        image,
        machine: &machine,
        cpu: tools::bochs::DEFAULT_CPU,
        command_line: tools::bochs::command_line(&format!("exit=partitions {options}")),
    };
    let prepared = tools::bochs::prepare(&run)?;
    let result = tools::bochs::run(&prepared, Duration::from_secs(600), false)?;
    if result.status != Some(tools::bochs::EXIT_READY) {
        bail!(
            "{name} under Bochs ended with {:?}; log tail:\n{}",
            result.status,
            result.tail(30)
        );
    }
    Report::from_lines(&result.lines).map_err(anyhow::Error::msg)
}

/// Boots `image` on topology `name` and returns its report (`icount`: `-icount shift=0`).
fn boot_report(
    image: &std::path::Path,
    name: &str,
    exit: Option<&'static str>,
    icount: bool,
) -> Result<Report> {
    let options = qemu::RunOptions {
        exit,
        extra_qemu_args: if icount {
            vec!["-icount".into(), "shift=0".into()]
        } else {
            vec![]
        },
        extra_append: String::new(),
    };
    report_with(image, name, &options)
}

/// Boots `image` on topology `name` with `options` and returns its report.
fn report_with(image: &std::path::Path, name: &str, options: &qemu::RunOptions) -> Result<Report> {
    let topology = topology::load(name)?;
    let args = qemu::command(image, &topology, options);
    let result = qemu::run(&args, Duration::from_secs(600), false)?;
    if result.status != Some(qemu::EXIT_READY) {
        bail!(
            "{name}: QEMU ended with {:?}; log tail:\n{}",
            result.status,
            result.tail(30)
        );
    }
    Report::from_lines(&result.lines).map_err(anyhow::Error::msg)
}
