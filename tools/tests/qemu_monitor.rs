//! The monitor shell, typed on the console the way a user does (Ctrl-A m, then commands):
//! each command's answer must show in the report, and stop and restart must change what the
//! partitions do.

mod common;

use common::Boot;
use serde_json::Value;
use tools::qemu::Reply;

/// What the test types, each step once its trigger line has appeared.
const STEPS: [(&str, &str); 4] = [
    // Both guests spin: enter the monitor and look, then stop beta.
    (
        "[beta] guest: {\"event\":\"spinning\"}",
        "\x01mpartitions\rledger\rexits alpha\rreboot alpha\rstop\rstop nobody\r\
         balloon beta 0 8M\rballoon alpha 0 8M\rballoon beta 3 8M\rballoon beta 0 lots\r\
         balloon beta 0 auto\rstop beta\r",
    ),
    // beta is gone for good: it cannot be stopped or restarted again; restart alpha.
    (
        "\"event\":\"partition_stopped\",\"name\":\"beta\"",
        "stop beta\rrestart alpha\r",
    ),
    // alpha came back from its first instruction: stop it, which ends the run.
    ("\"event\":\"partition_restarted\",\"name\":\"alpha\"", ""),
    ("[alpha] guest: {\"event\":\"spinning\"}", "stop alpha\r"),
];

#[test]
fn monitor_commands_typed_on_the_console_change_what_the_report_shows() {
    let mut step = 0;
    let boot = Boot::run_with("monitor", "two-nodes", 240, |line| {
        // The restart's own `spinning` line only counts after the restart event.
        let Some(&(trigger, typed)) = STEPS.get(step) else {
            return Reply::Continue;
        };
        if !line.contains(trigger) {
            return Reply::Continue;
        }
        step += 1;
        if typed.is_empty() {
            Reply::Continue
        } else {
            Reply::Type(typed.as_bytes().to_vec())
        }
    });
    let context = &boot.context;
    let monitor: Vec<&Value> = boot.events("monitor");
    let outcome = |command: &str| {
        monitor
            .iter()
            .find(|e| e["command"] == command)
            .unwrap_or_else(|| panic!("no monitor event for `{command}`\n{context}"))
    };
    let partitions = outcome("partitions");
    assert_eq!(partitions["ok"], true, "{partitions}");
    let rows = partitions["partitions"].as_array().expect("rows");
    for (row, (name, node)) in rows.iter().zip([("alpha", 0), ("beta", 1)]) {
        assert_eq!(row["name"], name, "{row}");
        assert_eq!(row["state"], "running", "{row}");
        assert_eq!(row["vcpu_nodes"], serde_json::json!([node]), "{row}");
        assert_eq!(
            row["memory"],
            serde_json::json!([{"vnode": 0, "node": node, "size": 16u64 << 20, "plugged": 0}]),
            "{row}"
        );
    }
    assert_eq!(outcome("ledger")["ok"], true);
    // beta has Dynamic Memory: the operator's target is reported (a test guest has no
    // balloon driver to act on it), then handed back to the policy.
    assert_eq!(outcome("balloon beta 0 8M")["ok"], true);
    assert_eq!(outcome("balloon beta 0 auto")["ok"], true);
    let targets: Vec<&Value> = boot
        .events("memory_target")
        .into_iter()
        .filter(|t| t["by"] == "operator")
        .collect();
    assert_eq!(targets.len(), 1, "{context}");
    assert_eq!(targets[0]["partition"], "beta");
    assert_eq!(targets[0]["bytes"], 8u64 << 20);
    assert_eq!(outcome("exits alpha")["ok"], true);
    // `ledger` and `exits` print their report events too, while alpha still runs.
    let alpha_exits = boot
        .events("exit_counts")
        .into_iter()
        .filter(|e| e["partition"] == "alpha")
        .count();
    assert!(
        alpha_exits >= 3,
        "exit counts for alpha: at `exits`, the restart and the stop\n{context}"
    );
    for (command, error) in [
        ("reboot alpha", "unknown command \"reboot\""),
        ("stop", "stop needs NAME"),
        ("balloon alpha 0 8M", "has no Dynamic Memory"),
        ("balloon beta 3 8M", "it has 1 vnode(s)"),
        ("balloon beta 0 lots", "SIZE \"lots\" is not understood"),
        (
            "stop nobody",
            "no partition \"nobody\" (partitions: alpha, beta)",
        ),
        // Typed when beta's stop is reported: it is finishing that stop, or has finished.
        ("stop beta", "partition \"beta\" "),
    ] {
        let refused = monitor
            .iter()
            .find(|e| e["command"] == command && e["ok"] == false)
            .unwrap_or_else(|| panic!("`{command}` was not refused\n{context}"));
        assert!(
            refused["error"].as_str().is_some_and(|e| e.contains(error)),
            "`{command}`: {refused}"
        );
    }
    let again = monitor
        .iter()
        .find(|e| e["command"] == "stop beta" && e["ok"] == false)
        .and_then(|e| e["error"].as_str())
        .unwrap_or_default();
    assert!(
        again.contains("has stopped for good") || again.contains("is stopping or restarting"),
        "{again}"
    );
    let stopped = |name: &str| {
        boot.events("partition_stopped")
            .into_iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} did not stop\n{context}"))
            .clone()
    };
    assert_eq!(stopped("beta")["reason"], "operator");
    assert_eq!(stopped("alpha")["reason"], "operator");
    let restarted = boot.events("partition_restarted");
    assert_eq!(restarted.len(), 1, "{context}");
    assert_eq!(restarted[0]["name"], "alpha");
    assert_eq!(restarted[0]["reason"], "restart");
    // The operator's restart does not count against the guest's restart limit.
    assert_eq!(restarted[0]["restarts"], 0);
    assert_eq!(step, STEPS.len(), "not every step was reached\n{context}");
    boot.check_ledgers();
}
