//! Partitions under QEMU (`-cpu max`: TCG's SVM with nested paging), each test booting one
//! layout on one topology with `exit=partitions` and checking the `@nv` report and what the
//! guests themselves printed (`guest: {...}` console lines of the test guest).

mod common;

use common::{cases, Boot};
use serde_json::Value;

#[test]
fn a_two_partitions_on_two_domains() {
    cases::two_partitions_on_two_domains(&Boot::run("test-guests", "two-nodes"));
}

#[test]
fn b_a_partition_spanning_two_domains_sees_the_host_distance() {
    cases::spanning_partition_sees_the_host_distance(&Boot::run("spanning", "cpu-less-node"));
}

#[test]
fn c_a_guest_outside_its_memory_is_stopped_and_the_other_finishes() {
    cases::outside_memory_stops_only_its_partition(&Boot::run("isolation", "two-nodes"));
}

#[test]
fn d_a_pool_too_small_is_refused_and_the_other_runs() {
    cases::small_pool_is_refused(&Boot::run("small-pool", "two-nodes"));
}

#[test]
fn e_a_domain_the_machine_lacks_is_refused_at_boot() {
    cases::missing_node_is_refused(&Boot::run("missing-node", "two-nodes"));
}

#[test]
fn f_four_partitions_with_2m_and_1g_page_limits() {
    cases::page_limits_give_their_leaf_counts(&Boot::run("four-nodes", "four-nodes-8g"));
}

#[test]
fn f2_1g_and_2m_leaves_below_3_gib() {
    cases::leaf_limits_give_their_leaf_counts(&Boot::run("leaf-limits", "two-nodes-2g5"));
}

#[test]
fn g_restart_on_shutdown_runs_the_guest_again_until_the_limit() {
    cases::restarts_until_the_limit(&Boot::run("restart", "two-nodes"));
}

#[test]
fn h_a_guest_spinning_with_interrupts_off_is_stopped_by_its_time_limit() {
    cases::spinning_guest_is_stopped_by_its_time_limit(&Boot::run("spin", "two-nodes"));
}

/// Hostile probes of the intercepts (`layouts/hostile.toml`): each partition's guest reports
/// what it got, and the hypervisor's exit counts show a prefixed CPUID ran once, not twice.
#[test]
fn i_hostile_probes_get_the_architected_answers() {
    cases::hostile_probes_get_the_architected_answers(&Boot::run("hostile", "two-nodes"));
}

/// Sends QMP `command` on a fresh connection to `socket` (after the capabilities handshake)
/// and returns QEMU's answer line.
fn qmp(socket: &std::path::Path, command: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::os::unix::net::UnixStream::connect(socket).expect("QMP socket");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line).expect("QMP greeting");
    for request in ["{\"execute\":\"qmp_capabilities\"}", command] {
        writeln!(writer, "{request}").unwrap();
        line.clear();
        reader.read_line(&mut line).expect("QMP answer");
    }
    line
}

/// An NMI from the platform (QEMU's `inject-nmi`, to every CPU) while a guest spins and
/// another runs: the hypervisor counts it and goes on; nothing stops but by its own rules.
#[test]
fn j_a_host_nmi_while_guests_run_is_survived() {
    let dir = std::env::temp_dir().join(format!("numavisor-nmi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("qmp.sock");
    let args = vec![
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=off", socket.display()),
    ];
    let mut answer = None;
    let boot = Boot::run_with_qemu_args("spin", "two-nodes", 120, args, "", |line| {
        if answer.is_none() && line.contains(r#"[spinner] guest: {"event":"spinning"}"#) {
            answer = Some(qmp(&socket, "{\"execute\":\"inject-nmi\"}"));
        }
        tools::qemu::Reply::Continue
    });
    let _ = std::fs::remove_dir_all(&dir);
    let answer = answer.expect("the spinner started, and the NMI was sent");
    assert!(answer.contains("\"return\""), "QMP inject-nmi: {answer}");
    assert!(boot.events("fatal").is_empty(), "{}", boot.context);
    // inject-nmi reaches every CPU: the hypervisor took (and counted) at least one.
    let all = boot
        .report
        .event("all_stopped")
        .unwrap_or_else(|| panic!("no all_stopped\n{}", boot.context));
    assert!(
        all["host_nmis"].as_u64().is_some_and(|n| n >= 1),
        "the hypervisor's NMI count: {all}\n{}",
        boot.context
    );
    assert_eq!(
        boot.stopped("spinner")["reason"],
        "time-limit",
        "{}",
        boot.context
    );
    boot.check_guest_finished("steady");
    boot.check_ledgers();
}

/// A guest sets the MSRs VMRUN does not switch, then keeps exiting; with
/// `selftest=host-state` the hypervisor compares them around every run: none may change.
#[test]
fn k_guest_msr_writes_do_not_reach_the_host() {
    let mut leaks = Vec::new();
    let boot = Boot::run_with_qemu_args(
        "hostile-state",
        "two-nodes",
        120,
        vec![],
        "selftest=host-state",
        |line| {
            if line.contains("host state:") {
                leaks.push(line.to_string());
            }
            tools::qemu::Reply::Continue
        },
    );
    assert_eq!(
        boot.guest("setter", "hostile_done")["probe"],
        "host-state",
        "{}",
        boot.context
    );
    assert!(leaks.is_empty(), "{leaks:#?}\n{}", boot.context);
    assert_eq!(boot.stopped("setter")["reason"], "exit", "{}", boot.context);
    cases::host_state_was_checked(&boot, 1000);
}

/// INVLPGA (#UD: no SVM for guests), WBINVD (completes as a no-op), a guest's CPUID and
/// TSC (the partition's own brand, no VMX, the hypervisor bit, APIC ID 0, a TSC near 0), and
/// a single-step #DB that the hypervisor intercepts and reflects.
#[test]
fn l_more_hostile_probes_and_what_cpuid_tells() {
    cases::more_hostile_probes_and_what_cpuid_tells(&Boot::run("hostile-more", "two-nodes"));
}

/// The restart soak: 100 restarts of one partition while another runs. Every ledger after a
/// restart is the same (nothing lost, nothing taken), the hypervisor's own memory does not
/// grow with restarts, and after the last stop every byte is back where it was at `ready`.
#[test]
fn m_a_hundred_restarts_lose_nothing() {
    let boot = Boot::run("soak", "two-nodes");
    let restarts = boot
        .events("partition_restarted")
        .into_iter()
        .filter(|e| e["name"] == "phoenix")
        .count();
    assert_eq!(restarts, 100, "{}", boot.context);
    let stopped = boot.stopped("phoenix");
    assert!(
        stopped["detail"]
            .as_str()
            .is_some_and(|d| d.contains("restart limit (100) reached")),
        "{stopped}\n{}",
        boot.context
    );
    // The ledger after each of phoenix's restarts (the spinner on node 1 may stop at its time
    // limit in between, under load): phoenix's node 0 must look the same every time.
    let ledgers: Vec<&Value> = boot.events("ledger");
    let mut after_restarts: Vec<&Value> = Vec::new();
    let mut restarted = false;
    for event in &boot.report.events {
        if event["event"] == "partition_restarted" && event["name"] == "phoenix" {
            restarted = true;
        } else if event["event"] == "ledger" && restarted {
            after_restarts.push(event);
            restarted = false;
        }
    }
    assert_eq!(after_restarts.len(), 100, "{}", boot.context);
    for ledger in &after_restarts {
        assert_eq!(
            ledger["nodes"][0], after_restarts[0]["nodes"][0],
            "a restart changed node 0's ledger\n{}",
            boot.context
        );
    }
    let start = &boot.report.event("memory").expect("memory event")["nodes"];
    let end = &ledgers.last().expect("a final ledger")["nodes"];
    let rows = |v: &Value| v.as_array().cloned().unwrap_or_default();
    for ((at_ready, at_end), during) in rows(start)
        .iter()
        .zip(rows(end))
        .zip(rows(&after_restarts[0]["nodes"]))
    {
        let n = |row: &Value, key: &str| row[key].as_u64().unwrap_or(u64::MAX);
        assert_eq!(
            (n(&at_end, "guest"), n(&at_end, "pools")),
            (0, 0),
            "{at_end}"
        );
        assert_eq!(
            n(&at_end, "free") + n(&at_end, "hypervisor"),
            n(at_ready, "free") + n(at_ready, "hypervisor"),
            "node {}: memory lost between ready and the last stop\n{}",
            at_end["node"],
            boot.context
        );
        // The only hypervisor memory taken after `ready` is each CPU's host pages, once.
        assert_eq!(
            n(&at_end, "hypervisor"),
            n(&during, "hypervisor"),
            "hypervisor memory grew with restarts\n{}",
            boot.context
        );
    }
    assert_eq!(
        boot.stopped("spinner")["reason"],
        "time-limit",
        "{}",
        boot.context
    );
}

#[test]
fn n_xcr0_is_reset_at_every_start() {
    cases::xcr0_is_reset_at_every_start(&Boot::run("hostile-xcr0", "two-nodes"));
}

/// A guest's control characters reach the host console escaped (`layouts/console-controls.toml`,
/// `console` in docs/layout.md): no forged `@nv` line for any reader that splits lines as
/// `splitlines()` or a terminal does, no ESC sequence for the operator's terminal; the report's
/// `console` event keeps the exact text.
#[test]
fn o_guest_control_characters_reach_the_host_console_escaped() {
    let mut shown: Vec<String> = Vec::new();
    let boot = Boot::run_with("console-controls", "two-nodes", 120, |line| {
        shown.push(line.to_string());
        tools::qemu::Reply::Continue
    });
    let context = &boot.context;
    boot.guest("controls", "hostile_done");
    let forged = "@nv {\"v\":1,\"event\":\"forged\"}";
    let line = shown
        .iter()
        .find(|l| l.starts_with("[controls] forged"))
        .unwrap_or_else(|| panic!("no console line of the probe\n{context}"));
    assert_eq!(
        line,
        &format!("[controls] forged^K{forged}^L{forged}^[[2J^[[31mred\\u{{85}}x\\u{{2028}}y^?"),
        "{context}"
    );
    let controls = ['\x0b', '\x0c', '\x1b', '\x7f', '\u{85}', '\u{2028}'];
    if let Some(raw) = shown.iter().find(|l| l.contains(controls)) {
        panic!("a control character reached the host console: {raw:?}\n{context}");
    }
    assert!(
        boot.report.event("forged").is_none(),
        "a guest forged a report event\n{context}"
    );
    let exact = format!("forged\x0b{forged}\x0c{forged}\x1b[2J\x1b[31mred\u{85}x\u{2028}y\x7f");
    assert!(
        boot.console_lines("controls").contains(&exact.as_str()),
        "the report's console event lost the guest's exact text: {:?}\n{context}",
        boot.console_lines("controls")
    );
}

/// An exception in the real-mode start-up code of a vCPU started by INIT/SIPI
/// (`layouts/hostile-init-idt.toml`): the #UD reaches the guest's IVT handler and the vCPU
/// goes on into long mode, rather than a triple fault stopping the partition.
#[test]
fn p_a_real_mode_exception_after_init_sipi_reaches_the_ivt() {
    cases::real_mode_exception_after_init_sipi_reaches_the_ivt(&Boot::run(
        "hostile-init-idt",
        "two-nodes",
    ));
}

/// The virtual CPU and local APIC against the architecture on SVM (`layouts/virtual-platform.toml`):
/// the legacy AMD counters, TSC_AUX, CR8 as the TPR (V_TPR), a disabled APIC, the I/O APIC ID.
#[test]
fn q_the_virtual_platform_follows_the_architecture() {
    cases::virtual_platform_follows_the_architecture(
        &Boot::run("virtual-platform", "two-nodes"),
        "amd",
    );
}

/// A page walk into the local APIC page and a load across its end (`layouts/hostile-mmio.toml`):
/// each stops its partition with the reason instead of being emulated as a register access.
#[test]
fn r_device_pages_touched_by_a_walk_or_across_their_end_stop_the_partition() {
    cases::hostile_mmio_stops_its_partition(&Boot::run("hostile-mmio", "two-nodes"));
}

/// NMI blocking on SVM (`layouts/hostile-nmi.toml`): an NMI the guest sends itself from its
/// NMI handler runs only after the handler's IRET, right after it; ten sent at once merge
/// into one more run (the hypervisor masks NMIs from injection to IRET, which it intercepts).
#[test]
fn s_nmis_wait_for_the_handlers_iret_and_merge() {
    cases::nmis_wait_for_the_handlers_iret_and_merge(&Boot::run("hostile-nmi", "two-nodes"));
}

/// The cost of the common exits, under `-icount shift=0` (a TSC tick is an instruction, so the
/// figures are the same on every run): a port read and a CPUID round trip of the io-loop and
/// cpuid-loop guests, and a local APIC timer round trip of the timer-loop guest (program,
/// HLT, interrupt, EOI), stay within their budgets, so a slower exit path fails here rather
/// than going unnoticed. Measured 314, 395, 965 (the xAPIC EOI write, an MMIO exit) and
/// 3,005 instructions (QEMU's SVM has no next-RIP save: CPUID, MSR and HLT exits
/// read their prefixes from guest memory); the budgets leave about 8 % (issue #19's targets
/// are 250, 250 and 2,500).
#[test]
fn t_the_common_exits_stay_within_their_instruction_budget() {
    let icount = || vec!["-icount".to_string(), "shift=0".to_string()];
    for (layout, budget) in [("io-loop", 340), ("cpuid-loop", 430), ("eoi-loop", 1_040)] {
        let boot = Boot::run_with_qemu_args(layout, "two-nodes", 120, icount(), "", |_| {
            tools::qemu::Reply::Continue
        });
        let timing = boot
            .report
            .event("partition_timing")
            .and_then(|t| t["partitions"].get(0).cloned())
            .unwrap_or_else(|| panic!("{layout}: no partition_timing\n{}", boot.context));
        let exits = timing["exits"].as_u64().unwrap_or(0);
        assert!(exits >= 200_000, "{layout}: {timing}\n{}", boot.context);
        let per_exit = timing["run_ticks"].as_u64().unwrap_or(u64::MAX) / exits;
        assert!(
            per_exit <= budget,
            "{layout}: {per_exit} instructions per exit, over its budget of {budget}\n{}",
            boot.context
        );
    }
    let boot = Boot::run_with_qemu_args("timer-loop", "two-nodes", 120, icount(), "", |_| {
        tools::qemu::Reply::Continue
    });
    let round_trip = boot.guest("ticker", "timer_loop")["per_round_trip"]
        .as_u64()
        .unwrap_or(u64::MAX);
    assert!(
        round_trip <= 3_230,
        "timer-loop: {round_trip} instructions per round trip, over its budget of 3,230\n{}",
        boot.context
    );
}
