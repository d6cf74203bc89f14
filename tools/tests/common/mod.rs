//! What the QEMU partition tests share: building an image per layout, one bounded boot with
//! the serial log's tail in every failure message, and readers for the report and for what
//! the guests printed.
#![allow(dead_code)] // each test binary uses a different part

pub mod cases;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tools::{bochs, bochs_machine, image, packages, paths, qemu, report::Report, topology};

/// Image builds change one output file, so they take turns (or come prebuilt from
/// `NUMAVISOR_IMAGES`, as `cargo xtask test` does).
static BUILD: Mutex<()> = Mutex::new(());

pub fn image_for(layout: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("NUMAVISOR_IMAGES").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(format!("numavisor-{layout}.elf"));
    }
    let _turn = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    packages::ensure(&[packages::QEMU]).expect("QEMU is needed");
    image::build_with_layout(&paths::layouts_dir().join(format!("{layout}.toml")))
        .expect("building the image")
}

/// numavisor's UEFI application around the image of `layout` (built from that image, in
/// turns like image builds).
pub fn efi_for(layout: &str) -> PathBuf {
    let elf = image_for(layout);
    let _turn = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    packages::ensure(&[packages::OVMF]).expect("OVMF is needed");
    image::build_efi(&elf).expect("building the UEFI application")
}

/// Runs `args`, a QEMU command with `exit=ready` on topology `name` (`how`: the boot path,
/// for messages), bounded by `timeout` seconds; checks that it reached `ready` and that the
/// whole report matches the topology file. Returns the report, the serial lines and a failure
/// context.
pub fn check_ready_report(
    args: &[String],
    name: &str,
    how: &str,
    timeout: u64,
) -> (Report, Vec<String>, String) {
    let result = qemu::run(args, Duration::from_secs(timeout), false).expect("starting QEMU");
    let context = format!(
        "topology {name}{how}\ncommand: {}\n--- last 40 lines of the serial log ---\n{}",
        qemu::shell_line(args),
        result.tail(40)
    );
    assert!(!result.timed_out, "no exit within {timeout} s\n{context}");
    assert_eq!(
        result.status,
        Some(qemu::EXIT_READY),
        "QEMU exit status (33 = ready, 35 = fatal)\n{context}"
    );
    let report =
        Report::from_lines(&result.lines).unwrap_or_else(|e| panic!("bad report: {e}\n{context}"));
    let expectation = topology::load(name).expect("topology file").expect;
    let problems = tools::expect::check(&report, &expectation);
    assert!(
        problems.is_empty(),
        "report does not match {name}.toml:\n  {}\n{context}",
        problems.join("\n  ")
    );
    (report, result.lines, context)
}

/// One test per topology file, each running `$check(file)`, and `$guard`, which fails when a
/// file in tests/topologies has no test here (`$suite` names this test file in its message).
#[allow(unused_macros)] // like the rest of this module, only some test binaries use it
macro_rules! topology_matrix {
    ($check:ident, $guard:ident, $suite:literal; $($test:ident => $file:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                $check($file);
            }
        )*

        #[test]
        fn $guard() {
            let listed = [$($file),*];
            for name in tools::topology::all_names().expect("reading tests/topologies") {
                assert!(listed.contains(&name.as_str()), "tests/topologies/{name}.toml has no test in {}", $suite);
            }
        }
    };
}

/// One boot: the report, the guests' own lines by partition, and a failure context.
pub struct Boot {
    pub report: Report,
    pub context: String,
}

/// Every boot's deepest AP stack (`all_stopped`'s `ap_stack`: its stacks have no guard page)
/// stays below half of the stack, so that paths the tests do not take have room too.
fn stacks_have_room(report: &Report, context: &str) {
    let Some(stack) = report.event("all_stopped").map(|e| &e["ap_stack"]) else {
        return;
    };
    if stack.is_null() {
        return;
    }
    let (peak, bytes) = (
        cases::number(stack, "peak_bytes"),
        cases::number(stack, "bytes"),
    );
    assert!(
        peak * 2 <= bytes,
        "an AP's stack reached {peak} of its {bytes} bytes\n{context}"
    );
}

impl Boot {
    pub fn run(layout: &str, topology_name: &str) -> Boot {
        Boot::run_with(layout, topology_name, 120, |_| qemu::Reply::Continue)
    }

    /// Boots `layout` on `topology_name` with `exit=partitions`, bounded by `timeout`
    /// seconds (or the topology's own, if longer); `on_line` may type into the console.
    pub fn run_with(
        layout: &str,
        topology_name: &str,
        timeout: u64,
        on_line: impl FnMut(&str) -> qemu::Reply,
    ) -> Boot {
        Boot::run_with_qemu_args(layout, topology_name, timeout, vec![], "", on_line)
    }

    /// [`Boot::run_with`] with extra QEMU arguments (a QMP socket, say) and extra words for
    /// numavisor's command line.
    pub fn run_with_qemu_args(
        layout: &str,
        topology_name: &str,
        timeout: u64,
        extra_qemu_args: Vec<String>,
        extra_append: &str,
        on_line: impl FnMut(&str) -> qemu::Reply,
    ) -> Boot {
        let topology = topology::load(topology_name).expect("topology file");
        let options = qemu::RunOptions {
            exit: Some("partitions"),
            extra_qemu_args,
            extra_append: extra_append.to_string(),
        };
        let args = qemu::command(&image_for(layout), &topology, &options);
        let timeout = topology.timeout_seconds.max(timeout);
        Boot::run_qemu(
            &args,
            timeout,
            &format!("layout {layout} on topology {topology_name}"),
            None,
            on_line,
        )
    }

    /// Boots `args` (a QEMU command ending in `exit=partitions`) bounded by `timeout`
    /// seconds; `booted_by` is the boot protocol the log must name (`numavisor … booted by
    /// NAME`), if the test is about one.
    fn run_qemu(
        args: &[String],
        timeout: u64,
        description: &str,
        booted_by: Option<&str>,
        on_line: impl FnMut(&str) -> qemu::Reply,
    ) -> Boot {
        let result = qemu::run_interactive(args, Duration::from_secs(timeout), on_line)
            .expect("starting QEMU");
        let context = format!(
            "{description}\ncommand: {}\n--- last 60 lines of the serial log ---\n{}",
            qemu::shell_line(args),
            result.tail(60)
        );
        assert!(!result.timed_out, "no exit within {timeout} s\n{context}");
        assert_eq!(
            result.status,
            Some(qemu::EXIT_READY),
            "QEMU exit status (33 = all partitions ended, 35 = a hypervisor fault, 0 = the \
             machine reset or powered off: with -no-reboot a triple fault ends QEMU so)\n{context}"
        );
        if let Some(protocol) = booted_by {
            let line = format!("booted by {protocol};");
            assert!(
                result.lines.iter().any(|l| l.contains(&line)),
                "the log does not say \"{line}\"\n{context}"
            );
        }
        let report = Report::from_lines(&result.lines)
            .unwrap_or_else(|e| panic!("bad report: {e}\n{context}"));
        stacks_have_room(&report, &context);
        Boot { report, context }
    }

    /// Boots `layout` on `topology_name` through numavisor's UEFI application under OVMF
    /// (OVMF's `-kernel` loader starts it; the command line arrives as its load options),
    /// with `exit=partitions`.
    pub fn run_ovmf(layout: &str, topology_name: &str) -> Boot {
        let topology = topology::load(topology_name).expect("topology file");
        let efi = efi_for(layout);
        let options = qemu::RunOptions {
            exit: Some("partitions"),
            extra_qemu_args: vec![],
            extra_append: String::new(),
        };
        let args = qemu::ovmf_command(&efi, &topology, &options);
        let description = format!("layout {layout} on topology {topology_name} under OVMF");
        Boot::run_qemu(
            &args,
            topology.timeout_seconds.max(120),
            &description,
            Some("Uefi"),
            |_| qemu::Reply::Continue,
        )
    }

    /// Boots `layout` under Bochs (CPU model `cpu`; GRUB, multiboot2, the topology's
    /// override tables) with `exit=partitions`, bounded by `timeout` seconds.
    pub fn run_bochs(layout: &str, topology_name: &str, cpu: &str, timeout: u64) -> Boot {
        Boot::run_bochs_with(layout, topology_name, cpu, timeout, "")
    }

    /// [`Boot::run_bochs`] with `options` added to numavisor's command line.
    pub fn run_bochs_with(
        layout: &str,
        topology_name: &str,
        cpu: &str,
        timeout: u64,
        options: &str,
    ) -> Boot {
        packages::ensure(&packages::BOCHS).expect("Bochs and GRUB are needed");
        let image = image_for(layout);
        let machine = bochs_machine::load(topology_name).expect("Bochs machine");
        let run = bochs::BochsRun {
            dir: bochs::run_dir(&format!("{layout}-on-{topology_name}"), cpu),
            image: &image,
            machine: &machine,
            cpu,
            command_line: bochs::command_line(format!("exit=partitions {options}").trim()),
        };
        let prepared = bochs::prepare(&run).expect("building the ISO");
        let started = std::time::Instant::now();
        let timeout = Duration::from_secs(timeout);
        let result = bochs::run(&prepared, timeout, false).expect("starting Bochs");
        let seconds = started.elapsed().as_secs_f64();
        eprintln!("bochs: layout {layout} on {topology_name} ({cpu}): {seconds:.1} s");
        let context = format!(
            "layout {layout} on topology {topology_name} under Bochs ({cpu}), {seconds:.1} s\ncommand: {}\n--- last 60 lines of the serial log ---\n{}\n--- last 15 lines of Bochs's log ---\n{}",
            bochs::command(&prepared).join(" "),
            result.tail(60),
            bochs::log_tail(&prepared, 15)
        );
        assert!(!result.timed_out, "no exit within {timeout:?}\n{context}");
        assert_eq!(
            result.status,
            Some(bochs::EXIT_READY),
            "Bochs exit status (0 = all partitions ended, 1 = failure)\n{context}"
        );
        let report = Report::from_lines(&result.lines)
            .unwrap_or_else(|e| panic!("bad report: {e}\n{context}"));
        Boot { report, context }
    }

    /// Boots `layout` as a coreboot ELF payload under QEMU: the test loader builds coreboot
    /// tables from QEMU's e820 map and RSDP and calls the image as `selfboot` does. coreboot
    /// has no command line, so the image is built from a copy of the layout whose
    /// `boot_options` say `exit=partitions`.
    pub fn run_coreboot(layout: &str, topology_name: &str) -> Boot {
        let topology = topology::load(topology_name).expect("topology file");
        let (loader, image) = {
            let _turn = BUILD.lock().unwrap_or_else(|e| e.into_inner());
            packages::ensure(&[packages::QEMU]).expect("QEMU is needed");
            let derived = image::layout_with_boot_options(
                &paths::layouts_dir().join(format!("{layout}.toml")),
                "exit=partitions",
            )
            .expect("the layout with boot_options");
            let image = image::build_with_layout(&derived).expect("building the image");
            let loader = image::build_coreboot_loader().expect("building the loader");
            (loader, image)
        };
        let options = qemu::RunOptions {
            exit: Some("partitions"),
            extra_qemu_args: vec![],
            extra_append: String::new(),
        };
        let args = qemu::coreboot_test_command(&loader, &image, &topology, &options);
        let description =
            format!("layout {layout} on topology {topology_name} as a coreboot payload");
        Boot::run_qemu(
            &args,
            topology.timeout_seconds.max(120),
            &description,
            Some("Coreboot"),
            |_| qemu::Reply::Continue,
        )
    }

    pub fn events(&self, name: &str) -> Vec<&Value> {
        self.report
            .events
            .iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    pub fn partition(&self, name: &str) -> &Value {
        self.events("partition")
            .into_iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no partition event for {name}\n{}", self.context))
    }

    /// The JSON object partition `name`'s test guest printed with `event`.
    pub fn guest(&self, name: &str, event: &str) -> Value {
        self.guest_line(name, "guest: ", event)
    }

    /// The JSON object partition `name`'s Linux guest (its `/init`) printed with `event`.
    pub fn linux(&self, name: &str, event: &str) -> Value {
        self.guest_line(name, "@guest ", event)
    }

    /// Every console line of partition `name`, in order.
    pub fn console_lines(&self, name: &str) -> Vec<&str> {
        self.events("console")
            .into_iter()
            .filter(|c| c["partition"] == name)
            .filter_map(|c| c["line"].as_str())
            .collect()
    }

    /// The first JSON object after `prefix` on partition `name`'s console with `event`. Text
    /// after the object is left alone: a Linux guest's kernel may print a message between an
    /// `/init` line and its newline on the same serial console (seen in CI: a network line
    /// followed by `[   46.48] IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready`).
    pub fn guest_line(&self, name: &str, prefix: &str, event: &str) -> Value {
        self.guest_lines(name, prefix, event)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("guest {name} printed no {event} line\n{}", self.context))
    }

    /// Every JSON object partition `name`'s test guest printed with `event`, in order.
    pub fn guest_events(&self, name: &str, event: &str) -> Vec<Value> {
        self.guest_lines(name, "guest: ", event)
    }

    /// Every JSON object partition `name` printed after `prefix` with `event`, in order (read
    /// as [`guest_line`](Self::guest_line) reads one).
    fn guest_lines(&self, name: &str, prefix: &str, event: &str) -> Vec<Value> {
        self.events("console")
            .into_iter()
            .filter(|c| c["partition"] == name)
            .filter_map(|c| c["line"].as_str()?.strip_prefix(prefix).map(String::from))
            .filter_map(|json| {
                serde_json::Deserializer::from_str(&json)
                    .into_iter::<Value>()
                    .next()?
                    .ok()
            })
            .filter(|v| v["event"] == event)
            .collect()
    }

    /// Partition `name`'s VM exits of `kind` in its last `exit_counts` event.
    pub fn exit_count(&self, name: &str, kind: &str) -> Option<u64> {
        self.events("exit_counts")
            .into_iter()
            .rfind(|e| e["partition"] == name)
            .and_then(|e| e["exits"][kind].as_u64())
    }

    pub fn stopped(&self, name: &str) -> &Value {
        self.events("partition_stopped")
            .into_iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("partition {name} never stopped\n{}", self.context))
    }

    pub fn refused(&self, name: &str) -> &Value {
        self.events("partition_refused")
            .into_iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("partition {name} was not refused\n{}", self.context))
    }

    /// Every ledger adds up; the last one (after every stop) holds no guest memory or pools.
    pub fn check_ledgers(&self) {
        let ledgers = self.events("ledger");
        assert!(
            ledgers.len() >= 2,
            "expected ledgers before and after the stops\n{}",
            self.context
        );
        for ledger in &ledgers {
            for row in ledger["nodes"].as_array().expect("nodes") {
                let f = |k: &str| row[k].as_u64().expect("ledger number");
                assert_eq!(
                    f("free") + f("hypervisor") + f("guest") + f("pools"),
                    f("usable"),
                    "{row}\n{}",
                    self.context
                );
            }
        }
        for row in ledgers.last().unwrap()["nodes"].as_array().unwrap() {
            assert_eq!(
                (row["guest"].as_u64(), row["pools"].as_u64()),
                (Some(0), Some(0)),
                "after every stop: {row}\n{}",
                self.context
            );
        }
    }

    /// Each `spa` range of the partition lies inside the SRAT ranges of the node it names.
    pub fn check_spa_inside_domains(&self, name: &str) {
        let topology = self.report.event("topology").expect("topology event");
        for vnode in self.partition(name)["memory"].as_array().expect("memory") {
            let node = vnode["node"].as_u64().unwrap() as usize;
            let ranges = topology["nodes"][node]["memory"]
                .as_array()
                .expect("node memory")
                .clone();
            let mut total = 0;
            for spa in vnode["spa"].as_array().unwrap() {
                let (base, size) = (spa[0].as_u64().unwrap(), spa[1].as_u64().unwrap());
                total += size;
                let inside = ranges.iter().any(|r| {
                    let (b, s) = (r["base"].as_u64().unwrap(), r["size"].as_u64().unwrap());
                    b <= base && base + size <= b + s
                });
                assert!(inside, "{name}: spa [{base:#x}, +{size:#x}) is not inside node {node}'s SRAT ranges\n{}", self.context);
            }
            assert_eq!(
                Some(total),
                vnode["size"].as_u64(),
                "{name}: spa ranges do not add up to the vnode\n{}",
                self.context
            );
        }
    }

    /// The guest ran to the end: all its RAM verified, exit status 0.
    pub fn check_guest_finished(&self, name: &str) {
        let ram = self.guest(name, "ram_test");
        assert_eq!(ram["errors"], 0, "{name}: {ram}\n{}", self.context);
        assert!(ram["bytes"].as_u64().unwrap_or(0) > 0, "{name}: {ram}");
        assert_eq!(self.guest(name, "done")["status"], 0, "{}", self.context);
        let stopped = self.stopped(name);
        assert_eq!(stopped["reason"], "exit", "{stopped}\n{}", self.context);
    }
}

/// Runs `boot`; if it panics because the run never ended ("no exit within"), panics again
/// with `hang` first, then the original message (its serial tail shows where the guests
/// were). A guest that loops for ever is stopped by its time limit; only a vCPU stuck inside
/// the hypervisor keeps the run from ending.
pub fn run_or_explain_hang(boot: impl FnOnce() -> Boot, hang: &str) -> Boot {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(boot)) {
        Ok(boot) => boot,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            if message.starts_with("no exit within") {
                panic!("{hang}\n{message}");
            }
            std::panic::resume_unwind(payload)
        }
    }
}
