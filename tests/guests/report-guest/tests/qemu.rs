//! Boots the test guest under plain QEMU (no hypervisor) as a PVH kernel with a two-node vNUMA
//! layout and checks its reports: the layout the `-numa` options configure, a clean RAM test, the
//! probe and exception paths, and the exit statuses (isa-debug-exit: code = status * 2 + 1).
//!
//! The guest is built with `$CARGO build` into its own target directory (the outer `cargo test`
//! may hold the workspace's build lock), or taken from `NUMAVISOR_TEST_GUEST` if set. QEMU is
//! required: a missing `qemu-system-x86_64` fails the test (install `qemu-system-x86`).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;
const NODE_BYTES: u64 = 128 * MIB;
/// The PC legacy hole 0xA0000..0x100000, which no SRAT range covers.
const LEGACY_HOLE_BYTES: u64 = 384 * 1024;

fn guest() -> &'static PathBuf {
    static GUEST: OnceLock<PathBuf> = OnceLock::new();
    GUEST.get_or_init(|| {
        if let Some(path) = std::env::var_os("NUMAVISOR_TEST_GUEST") {
            return PathBuf::from(path);
        }
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..");
        let target_dir = workspace.join("target/test-guest");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // Run from the workspace root so `.cargo/config.toml` (static relocation model) applies.
        let status = Command::new(cargo)
            .current_dir(&workspace)
            .args(["build", "--release", "-p", "numavisor-test-guest"])
            .args(["--target", "x86_64-unknown-none", "--target-dir"])
            .arg(&target_dir)
            .status()
            .expect("run cargo to build the test guest");
        assert!(status.success(), "building the test guest failed: {status}");
        target_dir.join("x86_64-unknown-none/release/test-guest")
    })
}

/// What one QEMU run printed and how it ended.
struct Run {
    code: Option<i32>,
    output: String,
    reports: Vec<Value>,
}

impl Run {
    fn fail(&self, why: &str) -> ! {
        let lines: Vec<&str> = self.output.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        panic!(
            "{why}\nexit code: {:?}\n--- output tail ---\n{tail}",
            self.code
        );
    }

    /// The one report with this `event`.
    fn event(&self, name: &str) -> &Value {
        let mut found = self.reports.iter().filter(|r| r["event"] == name);
        match (found.next(), found.next()) {
            (Some(report), None) => report,
            _ => self.fail(&format!("expected exactly one {name:?} report")),
        }
    }

    fn check(&self, ok: bool, why: &str) {
        if !ok {
            self.fail(why);
        }
    }
}

fn run_qemu(append: &str) -> Run {
    let numa = [
        "-object",
        "memory-backend-ram,id=m0,size=128M",
        "-object",
        "memory-backend-ram,id=m1,size=128M",
        "-numa",
        "node,nodeid=0,cpus=0,memdev=m0",
        "-numa",
        "node,nodeid=1,cpus=1,memdev=m1",
        "-numa",
        "dist,src=0,dst=1,val=21",
    ];
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "256M", "-smp", "2",
        ])
        .args(numa)
        .arg("-kernel")
        .arg(guest())
        .args(["-append", append])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-x86_64 (install the qemu-system-x86 package)");
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = r.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = pipe(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = pipe(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + TIMEOUT;
    let (code, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("wait for QEMU") {
            break (status.code(), false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = stdout.join().expect("stdout reader");
    output.push_str(&stderr.join().expect("stderr reader"));
    let mut reports = Vec::new();
    let mut run = Run {
        code,
        output,
        reports: Vec::new(),
    };
    for line in run.output.lines().filter_map(|l| l.strip_prefix("guest: ")) {
        match serde_json::from_str(line) {
            Ok(report) => reports.push(report),
            Err(e) => run.fail(&format!("report is not JSON ({e}): {line}")),
        }
    }
    run.reports = reports;
    if timed_out {
        run.fail(&format!("QEMU did not exit within {TIMEOUT:?}"));
    }
    run
}

#[test]
fn report_mode_sees_the_configured_vnuma_layout() {
    let run = run_qemu("mode=report");
    run.check(
        run.event("start")["cmdline"] == "mode=report",
        "wrong cmdline",
    );
    let ranges = run.event("memmap")["ranges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ram: u64 = ranges
        .iter()
        .filter(|r| r["type"] == 1)
        .filter_map(|r| r["size"].as_u64())
        .sum();
    run.check(
        ram > 250 * MIB && ram <= 256 * MIB,
        "memmap RAM is not about 256 MiB",
    );

    let acpi = run.event("acpi");
    run.check(acpi.get("error").is_none(), "ACPI error");
    let cpus = json!([{"apic_id": 0, "vnode": 0}, {"apic_id": 1, "vnode": 1}]);
    run.check(acpi["cpus"] == cpus, "CPUs are not one per vnode");
    run.check(
        acpi["distances"] == json!([[10, 21], [21, 10]]),
        "wrong SLIT distances",
    );
    for vnode in 0..2u64 {
        let window = vnode * NODE_BYTES..(vnode + 1) * NODE_BYTES;
        let mut total = 0;
        for range in acpi["memory"].as_array().into_iter().flatten() {
            if range["vnode"] != vnode {
                continue;
            }
            let (base, size) = (range["base"].as_u64(), range["size"].as_u64());
            let (Some(base), Some(size)) = (base, size) else {
                run.fail("memory range without base or size");
            };
            let inside = window.contains(&base) && base + size <= window.end;
            run.check(
                inside,
                &format!("vnode {vnode} range {range} outside {window:?}"),
            );
            total += size;
        }
        let expected = NODE_BYTES - if vnode == 0 { LEGACY_HOLE_BYTES } else { 0 };
        run.check(
            total == expected,
            &format!("vnode {vnode} has {total} bytes"),
        );
    }

    let ram_test = run.event("ram_test");
    run.check(ram_test["errors"] == 0, "RAM test errors");
    run.check(ram_test["first_error"].is_null(), "RAM test first_error");
    let tested = ram_test["bytes"].as_u64().unwrap_or(0);
    run.check(tested > 250 * MIB, "RAM test covered too little");
    run.check(run.event("done")["status"] == 0, "done status is not 0");
    run.check(run.code == Some(1), "QEMU exit code is not 1 (status 0)");
}

#[test]
fn probe_mode_reads_above_ram() {
    let run = run_qemu("mode=probe");
    let address = 256 * MIB + 1024 * MIB;
    run.check(
        run.event("probe")["address"] == address,
        "default probe address",
    );
    // Plain QEMU lets the read of unbacked memory return (it reads 0 here); numavisor must not.
    run.check(
        run.event("probe_returned")["value"].is_u64(),
        "no probe_returned value",
    );
    run.check(run.code == Some(5), "QEMU exit code is not 5 (status 2)");
}

#[test]
fn exceptions_are_reported() {
    let run = run_qemu("mode=exception");
    let exception = run.event("exception");
    run.check(exception["vector"] == 6, "ud2 is not reported as #UD");
    run.check(
        exception["rip"].as_u64().is_some_and(|rip| rip >= MIB),
        "RIP not in the image",
    );
    run.check(run.code == Some(7), "QEMU exit code is not 7 (status 3)");
}
