//! Running the image under QEMU: the exact command, a bounded wait for report lines, and the
//! tail of the serial log when something goes wrong.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::topology::TopologyFile;

/// QEMU's isa-debug-exit status after the image writes READY (0x10): `(0x10 << 1) | 1`.
pub const EXIT_READY: i32 = 33;
/// QEMU's isa-debug-exit status after a panic or CPU exception (0x11).
pub const EXIT_FAILURE: i32 = 35;

/// How a run is driven.
pub struct RunOptions {
    /// Add the isa-debug-exit device and `exit=WHEN` (`ready`: after start-up; `partitions`:
    /// once every partition has stopped), so QEMU ends with status 33 then.
    pub exit: Option<&'static str>,
    /// Extra QEMU arguments (e.g. `-icount shift=0`).
    pub extra_qemu_args: Vec<String>,
    /// Extra command-line words for the image.
    pub extra_append: String,
}

/// The QEMU command line for `image` on `topology`.
pub fn command(image: &Path, topology: &TopologyFile, options: &RunOptions) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "qemu-system-x86_64".into(),
        "-machine".into(),
        topology.machine.clone(),
        "-accel".into(),
        "tcg".into(),
        "-cpu".into(),
        topology.cpu.clone(),
        "-m".into(),
        topology.memory.clone(),
        "-smp".into(),
        topology.smp.clone(),
    ];
    args.extend(topology.qemu_args.iter().cloned());
    args.extend(options.extra_qemu_args.iter().cloned());
    let mut append = topology.append.clone();
    if !options.extra_append.is_empty() {
        append = format!("{append} {}", options.extra_append);
    }
    if let Some(when) = options.exit {
        args.extend([
            "-device".into(),
            "isa-debug-exit,iobase=0xf4,iosize=0x04".into(),
        ]);
        append = format!("{append} exit={when}");
    }
    args.extend([
        "-kernel".into(),
        image.display().to_string(),
        "-append".into(),
        append.trim().to_string(),
        "-nodefaults".into(),
        "-display".into(),
        "none".into(),
        "-serial".into(),
        "stdio".into(),
        "-no-reboot".into(),
    ]);
    args
}

/// Debian's OVMF (package `ovmf`, the same path on bookworm and trixie): the firmware code,
/// mapped read-only.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF's variable-store template; runs use it through a snapshot, so they never write it and
/// can run side by side.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The QEMU command line that boots numavisor's UEFI application `efi` under OVMF: OVMF's
/// kernel loader starts the `-kernel` PE image as an EFI application with `-append` as its
/// load options, on the same machine and `-numa` options as [`command`].
pub fn ovmf_command(efi: &Path, topology: &TopologyFile, options: &RunOptions) -> Vec<String> {
    let mut args = command(efi, topology, options);
    let at = args
        .iter()
        .position(|a| a == "-kernel")
        .expect("command() passes -kernel");
    args.splice(
        at..at,
        [
            "-drive".to_string(),
            format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
            "-drive".to_string(),
            format!("if=pflash,format=raw,unit=1,snapshot=on,file={OVMF_VARS}"),
        ],
    );
    args
}

/// The QEMU command line that boots `image` as a coreboot payload through the test `loader`
/// (`image::build_coreboot_loader`): the loader is the PVH kernel, the image its `-initrd`;
/// there is no `-append`, as coreboot has no command line for ELF payloads (the image's
/// layout carries its options).
pub fn coreboot_test_command(
    loader: &Path,
    image: &Path,
    topology: &TopologyFile,
    options: &RunOptions,
) -> Vec<String> {
    let mut args = command(loader, topology, options);
    if let Some(at) = args.iter().position(|a| a == "-append") {
        args[at] = "-initrd".into();
        args[at + 1] = image.display().to_string();
    }
    args
}

/// Quotes a command for copying into a shell.
pub fn shell_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A finished (or stopped) run: every console line and how QEMU ended.
pub struct RunResult {
    pub lines: Vec<String>,
    /// QEMU's exit status, or `None` if we stopped it at the deadline.
    pub status: Option<i32>,
    pub timed_out: bool,
}

impl RunResult {
    /// The last `n` console lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        self.lines[start..].join("\n")
    }
}

/// Runs `args` until QEMU exits or `timeout` passes; `echo` copies each line to stdout
/// (except `console` report events, which repeat the `[partition] line` already shown).
pub fn run(args: &[String], timeout: Duration, echo: bool) -> Result<RunResult> {
    run_interactive(args, timeout, |line| {
        if echo && !line.contains(r#""event":"console""#) {
            println!("{line}");
        }
        Reply::Continue
    })
}

/// What an interactive run's line handler wants next.
pub enum Reply {
    /// Keep reading.
    Continue,
    /// Type these bytes on the serial console (QEMU's stdin), then keep reading.
    Type(Vec<u8>),
}

/// Like [`run`], with QEMU's stdin connected: after each console line `on_line` may type
/// bytes into the serial console. Bounded by `timeout` like `run`.
pub fn run_interactive(
    args: &[String],
    timeout: Duration,
    mut on_line: impl FnMut(&str) -> Reply,
) -> Result<RunResult> {
    use std::io::Write;
    let mut child: Child = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", args[0]))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let (sender, receiver) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let err_sender = sender.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if err_sender.send(format!("qemu: {line}")).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    loop {
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            lines.extend(receiver.try_iter());
            return Ok(RunResult {
                lines,
                status: None,
                timed_out: true,
            });
        }
        match receiver.recv_timeout(deadline - now) {
            Ok(line) => {
                let line = line.trim_end_matches('\r').to_string();
                if let Reply::Type(bytes) = on_line(&line) {
                    // A closed stdin means QEMU is ending; the status says why.
                    let _ = stdin.write_all(&bytes).and_then(|()| stdin.flush());
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().context("waiting for QEMU")?;
                return Ok(RunResult {
                    lines,
                    status: status.code(),
                    timed_out: false,
                });
            }
        }
    }
}
