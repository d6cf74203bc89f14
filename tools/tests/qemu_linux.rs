//! Debian's own Linux kernel (`linux-image-cloud-amd64`) in partitions, under QEMU's SVM:
//! SMP, vNUMA, interrupts, timers, console input, reboot and power-off — judged by what each
//! guest prints from `/proc` and `/sys` (the `@guest {...}` lines of the initramfs' `/init`,
//! `tools/src/linux/init.sh`) and by the boot report.

mod common;

use common::{cases, Boot};
use serde_json::Value;
use tools::qemu::Reply;

/// Linux boots take seconds of TCG each; a bound well above what they take here.
const LINUX_TIMEOUT_S: u64 = 600;

/// One Linux machine at a time: each is four emulated CPUs, and the timing test (d) should
/// not share the host's cores with another boot.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn boot(layout: &str, topology: &str, on_line: impl FnMut(&str) -> Reply) -> Boot {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    Boot::run_with(layout, topology, LINUX_TIMEOUT_S, on_line)
}

#[test]
fn a_two_smp_linux_partitions_on_two_nodes() {
    let boot = boot("linux-pair", "two-nodes", |_| Reply::Continue);
    for (name, node) in [("alpha", 0), ("beta", 1)] {
        let partition = boot.partition(name);
        for vcpu in partition["vcpus"].as_array().unwrap() {
            assert_eq!(vcpu["node"], node, "{name}: {vcpu}\n{}", boot.context);
        }
        cases::linux_guest_view(&boot, name, 2, &[&[10]], 256 << 20);
        let fill = boot.linux(name, "fill");
        assert_eq!(fill["ok"], true, "{name}: {fill}\n{}", boot.context);
        assert!(cases::number(&fill, "bytes") > 96 << 20, "{name}: {fill}");
        cases::powered_off_on_its_nodes(&boot, name);
    }
}

#[test]
fn b_a_linux_partition_spanning_two_nodes_sees_the_host_slit() {
    cases::linux_spanning_sees_the_host_slit(&boot("linux-spanning", "cpu-less-node", |_| {
        Reply::Continue
    }));
}

#[test]
fn b_a_linux_partition_with_a_vcpu_on_each_of_two_nodes_sees_the_asymmetric_slit() {
    let boot = boot("linux-wide", "four-nodes-asymmetric", |_| Reply::Continue);
    cases::linux_guest_view(&boot, "wide", 2, &[&[10, 15], &[16, 10]], 256 << 20);
    cases::linux_getcpu_agrees(&boot, "wide", &[0, 1]);
    // One vCPU per vnode: the guest found a CPU on each node.
    assert!(
        boot.console_lines("wide")
            .iter()
            .any(|l| l.contains("Brought up 2 nodes, 2 CPUs")),
        "{}",
        boot.context
    );
    for (vcpu, node) in [(0, 0), (1, 1)] {
        assert_eq!(
            boot.partition("wide")["vcpus"][vcpu]["node"],
            node,
            "{}",
            boot.context
        );
    }
    cases::powered_off_on_its_nodes(&boot, "wide");
}

/// Types into the shells: a command into alpha (its answer comes back, beta sees nothing),
/// `reboot -f` into alpha (restarted, per `on_shutdown = "restart"`), `poweroff -f` into the
/// restarted alpha, then Ctrl-A 2 and `poweroff -f` into beta.
#[test]
fn c_e_console_input_reboot_and_power_off() {
    let mut step = 0;
    let mut shells = (0, 0);
    let boot = boot("linux-shells", "two-nodes", |line| {
        if line.starts_with("[alpha] @guest {\"event\":\"shell\"}") {
            shells.0 += 1;
        }
        if line.starts_with("[beta] @guest {\"event\":\"shell\"}") {
            shells.1 += 1;
        }
        match step {
            // Both shells up: ask alpha a question only its shell can answer.
            0 if shells == (1, 1) => {
                step = 1;
                Reply::Type(b"echo answer-$((6 * 7))\n".to_vec())
            }
            1 if line == "[alpha] answer-42" => {
                step = 2;
                Reply::Type(b"reboot -f\n".to_vec())
            }
            2 if shells.0 == 2 => {
                step = 3;
                Reply::Type(b"poweroff -f\n".to_vec())
            }
            3 if line.contains(r#""event":"partition_stopped","name":"alpha""#) => {
                step = 4;
                Reply::Type(b"\x012poweroff -f\n".to_vec())
            }
            _ => Reply::Continue,
        }
    });
    assert_eq!(
        step, 4,
        "the dialogue stopped at step {step}\n{}",
        boot.context
    );
    let restarted: Vec<&Value> = boot
        .events("partition_restarted")
        .into_iter()
        .filter(|e| e["name"] == "alpha")
        .collect();
    assert_eq!(restarted.len(), 1, "alpha restarts\n{}", boot.context);
    assert_eq!(restarted[0]["reason"], "reboot", "{}", boot.context);
    assert_eq!(
        boot.stopped("alpha")["reason"],
        "power-off",
        "{}",
        boot.context
    );
    assert_eq!(
        boot.stopped("beta")["reason"],
        "power-off",
        "{}",
        boot.context
    );
    assert!(
        !boot
            .events("partition_restarted")
            .iter()
            .any(|e| e["name"] == "beta"),
        "beta must not restart\n{}",
        boot.context
    );
    // beta's shell never saw what was typed for alpha (a shell echoes its input).
    for line in boot.console_lines("beta") {
        assert!(
            !line.contains("answer-") && !line.contains("reboot -f"),
            "beta received alpha's input: {line}\n{}",
            boot.context
        );
    }
    boot.check_ledgers();
}

#[test]
fn d_sleep_5_takes_5_seconds_of_host_time() {
    let boot = boot("linux-sleep", "two-nodes", |_| Reply::Continue);
    let at = |event: &str| -> u64 {
        boot.events("console")
            .into_iter()
            .find(|c| {
                c["partition"] == "sleeper"
                    && c["line"]
                        .as_str()
                        .is_some_and(|l| l.starts_with(&format!("@guest {{\"event\":\"{event}\"")))
            })
            .and_then(|c| c["us"].as_u64())
            .unwrap_or_else(|| panic!("no {event} line with a time\n{}", boot.context))
    };
    let elapsed = at("sleep") - at("sleep-start");
    assert!(
        (4_750_000..=5_250_000).contains(&elapsed),
        "sleep 5 took {elapsed} µs of host time\n{}",
        boot.context
    );
}
