//! Running the image under Bochs: a GRUB ISO that boots it by multiboot2 with the override
//! tables as modules, a headless bochsrc, and a bounded run that reads the serial file.
//!
//! Bochs facts (Debian's 2.7, see DESIGN.md): no `nogui` display, so `rfb` with
//! `timeout=0`; it starts at its debugger prompt, so `-rc` holds `c` then `quit`; numavisor
//! ends a run with `debug-exit=bochs` (magic breakpoint: status 0 after `ready`; shutdown
//! port 0x8900: status 1 after a failure); `megs` stops at 2048, so `memory: guest=,host=`.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bochs_machine::BochsMachine;
use crate::qemu::RunResult;

/// Bochs's exit status after numavisor's magic breakpoint (the `ready` exit).
pub const EXIT_READY: i32 = 0;
/// Bochs's exit status after its shutdown port (numavisor's failure exit).
pub const EXIT_FAILURE: i32 = 1;
/// The most host memory Bochs 2.7 accepts in `memory: host=` (measured: 2560 exits at once).
const MAX_HOST_MEGS: u64 = 2048;

/// The default CPU model: Intel Haswell, with VMX, EPT, VPID and unrestricted guest.
pub const DEFAULT_CPU: &str = "corei7_haswell_4770";

/// How one Bochs run is set up.
pub struct BochsRun<'a> {
    /// Where the ISO, bochsrc and logs go (created, emptied of old logs).
    pub dir: PathBuf,
    pub image: &'a Path,
    pub machine: &'a BochsMachine,
    /// Bochs CPU model (`corei7_haswell_4770`, `ryzen`, …).
    pub cpu: &'a str,
    /// numavisor's command line (`debug-exit=bochs` is added when it has `exit=`).
    pub command_line: String,
}

/// The grub.cfg that boots the image with the override tables as modules.
pub fn grub_cfg(command_line: &str, machine: &BochsMachine) -> String {
    let mut cfg = String::from("set timeout=0\nset default=0\nmenuentry \"numavisor\" {\n");
    cfg.push_str(&format!("  multiboot2 /boot/numavisor {command_line}\n"));
    for table in &machine.tables {
        cfg.push_str(&format!("  module2 /boot/{0} {0}\n", table.file_name));
    }
    cfg.push_str("  boot\n}\n");
    cfg
}

/// The bochsrc for `machine`, reading the ISO at `iso` and writing the serial port to
/// `serial`.
pub fn bochsrc(machine: &BochsMachine, cpu: &str, iso: &Path, serial: &Path, log: &Path) -> String {
    format!(
        "# Written by `cargo xtask` for numavisor (tools/src/bochs.rs).\n\
         cpu: model={cpu}, count={cpus}, ips=50000000, reset_on_triple_fault=0\n\
         memory: guest={megs}, host={host_megs}\n\
         romimage: file=/usr/share/bochs/BIOS-bochs-latest\n\
         vgaromimage: file=/usr/share/vgabios/vgabios.bin\n\
         ata0-master: type=cdrom, path=\"{iso}\", status=inserted\n\
         boot: cdrom\n\
         display_library: rfb, options=\"timeout=0\"\n\
         com1: enabled=1, mode=file, dev=\"{serial}\"\n\
         magic_break: enabled=1\n\
         clock: sync=none\n\
         log: \"{log}\"\n\
         panic: action=fatal\n\
         error: action=report\n",
        cpus = machine.cpus,
        megs = machine.megs,
        // Bochs refuses to allocate more than 2 GiB of host memory at once (it exits at
        // start); above that, guest RAM is paged in from the host allocation on demand.
        host_megs = machine.megs.min(MAX_HOST_MEGS),
        iso = iso.display(),
        serial = serial.display(),
        log = log.display(),
    )
}

/// Writes the ISO tree and builds the ISO with `grub-mkrescue`; returns the ISO's path.
pub fn build_iso(run: &BochsRun<'_>) -> Result<PathBuf> {
    let tree = run.dir.join("iso");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    let boot = tree.join("boot");
    std::fs::create_dir_all(boot.join("grub"))?;
    std::fs::copy(run.image, boot.join("numavisor"))
        .with_context(|| format!("copying {}", run.image.display()))?;
    for table in &run.machine.tables {
        std::fs::write(boot.join(table.file_name), &table.bytes)?;
    }
    std::fs::write(
        boot.join("grub").join("grub.cfg"),
        grub_cfg(&run.command_line, run.machine),
    )?;
    let iso = run.dir.join("numavisor.iso");
    let output = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(&tree)
        .output()
        .context("running grub-mkrescue")?;
    if !output.status.success() {
        bail!(
            "grub-mkrescue failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(iso)
}

/// Everything written for one run: the bochsrc and the files it names.
pub struct Prepared {
    pub bochsrc: PathBuf,
    pub rc: PathBuf,
    pub serial: PathBuf,
    /// Bochs's own log and its stdout/stderr (the debugger's chatter).
    pub log: PathBuf,
    pub stdout: PathBuf,
}

/// Builds the ISO and writes the bochsrc and `-rc` script for `run`.
pub fn prepare(run: &BochsRun<'_>) -> Result<Prepared> {
    std::fs::create_dir_all(&run.dir)?;
    let iso = build_iso(run)?;
    let prepared = Prepared {
        bochsrc: run.dir.join("bochsrc"),
        rc: run.dir.join("bochs.rc"),
        serial: run.dir.join("serial.log"),
        log: run.dir.join("bochs.log"),
        stdout: run.dir.join("bochs.out"),
    };
    for old in [&prepared.serial, &prepared.log, &prepared.stdout] {
        let _ = std::fs::remove_file(old);
    }
    std::fs::write(
        &prepared.bochsrc,
        bochsrc(run.machine, run.cpu, &iso, &prepared.serial, &prepared.log),
    )?;
    std::fs::write(&prepared.rc, "c\nquit\n")?;
    Ok(prepared)
}

/// The Bochs command line for `prepared`.
pub fn command(prepared: &Prepared) -> Vec<String> {
    vec![
        "bochs".into(),
        "-q".into(),
        "-f".into(),
        prepared.bochsrc.display().to_string(),
        "-rc".into(),
        prepared.rc.display().to_string(),
    ]
}

/// Runs Bochs until it exits or `timeout` passes, reading the serial file as it grows;
/// `echo` prints each console line as it appears (except partition `console` events).
pub fn run(prepared: &Prepared, timeout: Duration, echo: bool) -> Result<RunResult> {
    let args = command(prepared);
    let stdout = std::fs::File::create(&prepared.stdout)?;
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(stdout.try_clone()?)
        .stderr(stdout)
        .spawn()
        .context("starting bochs")?;
    let deadline = Instant::now() + timeout;
    let mut reader = SerialReader::default();
    let mut lines = Vec::new();
    let (status, timed_out) = loop {
        for line in reader.poll(&prepared.serial) {
            if echo && !line.contains(r#""event":"console""#) {
                println!("{line}");
            }
            lines.push(line);
        }
        if let Some(status) = child.try_wait()? {
            break (
                status.code().or_else(|| code_asked_for(prepared, status)),
                false,
            );
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        // Bochs writes the serial port to a file; look for new lines ten times a second.
        std::thread::park_timeout(Duration::from_millis(100));
    };
    lines.extend(reader.poll(&prepared.serial));
    lines.extend(reader.rest());
    Ok(RunResult {
        lines,
        status,
        timed_out,
    })
}

/// The exit code Bochs was asked for, when Bochs itself then died of a signal: Bochs 2.7 now
/// and then crashes while it tears down after `quit_sim`, which its log records with the code
/// (the run's outcome, decided before the crash). `None` if the log has no such line.
fn code_asked_for(prepared: &Prepared, status: std::process::ExitStatus) -> Option<i32> {
    let text = std::fs::read_to_string(&prepared.log).ok()?;
    let code = quit_code(&text)?;
    eprintln!(
        "bochs: {status} after `quit_sim called with exit code {code}`; taking {code} as its status"
    );
    Some(code)
}

/// The code in Bochs's last `quit_sim called with exit code N` log line.
fn quit_code(log: &str) -> Option<i32> {
    log.lines()
        .rev()
        .find_map(|l| l.split("quit_sim called with exit code ").nth(1))
        .and_then(|rest| rest.trim().parse().ok())
}

/// Reads whole lines from a file another process is appending to.
#[derive(Default)]
struct SerialReader {
    offset: u64,
    partial: String,
}

impl SerialReader {
    fn poll(&mut self, path: &Path) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(path) else {
            return vec![];
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return vec![];
        }
        let mut reader = BufReader::new(file);
        let mut lines = Vec::new();
        let mut bytes = Vec::new();
        while let Ok(n) = reader.read_until(b'\n', &mut bytes) {
            if n == 0 {
                break;
            }
            self.offset += n as u64;
            self.partial.push_str(&String::from_utf8_lossy(&bytes));
            bytes.clear();
            if self.partial.ends_with('\n') {
                lines.push(
                    std::mem::take(&mut self.partial)
                        .trim_end_matches(['\n', '\r'])
                        .to_string(),
                );
            }
        }
        lines
    }

    /// An unterminated last line, if any.
    fn rest(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| std::mem::take(&mut self.partial))
    }
}

/// The last `n` lines of Bochs's own log, for failure messages.
pub fn log_tail(prepared: &Prepared, n: usize) -> String {
    let text = std::fs::read_to_string(&prepared.log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// numavisor's command line for a Bochs run: `extra` plus, when it ends the run with
/// `exit=`, the Bochs exit path.
pub fn command_line(extra: &str) -> String {
    let words = extra.trim();
    if words.split_whitespace().any(|w| w.starts_with("exit=")) {
        format!("{words} debug-exit=bochs")
    } else {
        words.to_string()
    }
}

/// Where runs for `name` keep their files (under the target directory).
pub fn run_dir(name: &str, cpu: &str) -> PathBuf {
    crate::paths::target_dir()
        .join("bochs")
        .join(format!("{name}-{cpu}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quit_code_is_read_from_the_last_quit_line() {
        let log = "00380235257i[CMOS  ] Last time is 1796167612\n00380235257i[SIM   ] quit_sim called with exit code 1\n00380235258i[SIM   ] quit_sim called with exit code 0\n";
        assert_eq!(quit_code(log), Some(0));
        assert_eq!(
            quit_code("00380235257i[CPU3  ] | RIP=000000000200e018\n"),
            None
        );
        assert_eq!(quit_code("quit_sim called with exit code x"), None);
    }

    #[test]
    fn grub_cfg_loads_the_image_and_each_table() {
        let machine = crate::bochs_machine::load("two-nodes").unwrap();
        let cfg = grub_cfg("exit=ready debug-exit=bochs", &machine);
        assert!(cfg.contains("set timeout=0"));
        assert!(cfg.contains("multiboot2 /boot/numavisor exit=ready debug-exit=bochs\n"));
        assert!(cfg.contains("module2 /boot/srat.aml srat.aml\n"));
        assert!(cfg.contains("module2 /boot/slit.aml slit.aml\n"));
        let rc = bochsrc(
            &machine,
            DEFAULT_CPU,
            Path::new("/x.iso"),
            Path::new("/s"),
            Path::new("/l"),
        );
        assert!(rc.contains("cpu: model=corei7_haswell_4770, count=4,"));
        assert!(rc.contains("memory: guest=1024, host=1024"));
        assert_eq!(
            command_line("log=info exit=ready"),
            "log=info exit=ready debug-exit=bochs"
        );
        assert_eq!(command_line(""), "");
    }
}
