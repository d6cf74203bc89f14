//! Partition checks shared by the QEMU (SVM) and Bochs (VMX) suites: each takes one boot of
//! its layout and checks the report and what the guests printed, whatever the backend.
#![allow(dead_code)] // each test binary uses a different part

use serde_json::Value;

use super::Boot;

/// `test-guests` on `two-nodes`: each partition on its own node, guests see their vNUMA view.
pub fn two_partitions_on_two_domains(boot: &Boot) {
    for (name, node) in [("alpha", 0), ("beta", 1)] {
        let p = boot.partition(name);
        assert_eq!(p["state"], "running");
        assert_eq!(p["vcpus"][0]["node"], node, "{p}");
        assert_eq!(p["memory"][0]["node"], node, "{p}");
        assert_eq!(p["pool"]["node"], node, "{p}");
        boot.check_spa_inside_domains(name);
        let acpi = boot.guest(name, "acpi");
        assert_eq!(
            acpi["cpus"],
            serde_json::json!([{"apic_id": 0, "vnode": 0}]),
            "{name}: {acpi}"
        );
        assert_eq!(
            acpi["memory"],
            serde_json::json!([{"vnode": 0, "base": 0, "size": 64u64 << 20}]),
            "{name}: {acpi}"
        );
        boot.check_guest_finished(name);
    }
    boot.check_ledgers();
}

/// `spanning` on `cpu-less-node`: one partition over two nodes sees the host distance.
pub fn spanning_partition_sees_the_host_distance(boot: &Boot) {
    let p = boot.partition("wide");
    assert_eq!(p["memory"][0]["node"], 0);
    assert_eq!(p["memory"][1]["node"], 1);
    boot.check_spa_inside_domains("wide");
    let acpi = boot.guest("wide", "acpi");
    assert_eq!(
        acpi["distances"],
        serde_json::json!([[10, 30], [30, 10]]),
        "the host SLIT says 30: {acpi}"
    );
    assert_eq!(acpi["memory"].as_array().map(Vec::len), Some(2), "{acpi}");
    boot.check_guest_finished("wide");
    boot.check_ledgers();
}

/// `isolation` on `two-nodes`: an access outside the partition's memory stops it at the exact address; the other finishes.
pub fn outside_memory_stops_only_its_partition(boot: &Boot) {
    let stopped = boot.stopped("prober");
    assert_eq!(
        stopped["reason"], "outside-memory",
        "{stopped}\n{}",
        boot.context
    );
    let probe = boot.guest("prober", "probe");
    let address = probe["address"].as_u64().expect("probe address");
    assert!(
        stopped["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{address:#x}")),
        "{stopped}"
    );
    assert!(
        !boot
            .events("console")
            .iter()
            .any(|c| c["partition"] == "prober"
                && c["line"].as_str().unwrap_or("").contains("probe_returned")),
        "the probe must never return\n{}",
        boot.context
    );
    boot.check_guest_finished("alpha");
    boot.check_ledgers();
}

/// `hot-add-probe`: the prober's virtio-mem requests got the specification's answers (ACK 0,
/// NACK 1, ERROR 3; states PLUGGED 0, UNPLUGGED 1, MIXED 2), the memory it plugged was zeroed
/// and kept what it wrote, and its read of the memory it unplugged stopped it; alpha ran on.
pub fn virtio_mem_probe_is_answered_then_stopped(boot: &Boot) {
    let context = &boot.context;
    let set = boot.guest("boss", "set_target");
    assert_eq!(
        set["status"], "success",
        "the parent's target: {set}\n{context}"
    );
    let probe = boot.guest("prober", "virtio_mem");
    assert!(probe.get("error").is_none(), "{probe}\n{context}");
    let figures = [
        ("block_size", 2u64 << 20),
        ("node_id", 0),
        ("addr", 4 << 30),
        ("region_size", 128 << 20),
        ("requested", 4 << 20),
        ("plugged", 4 << 20),
        ("plugged_after", 0),
        ("nonzero_words", 0),
    ];
    for (name, value) in figures {
        assert_eq!(probe[name].as_u64(), Some(value), "{name}: {probe}");
    }
    assert_eq!(probe["pattern_kept"], true, "{probe}");
    // [response type, state]; the state only counts for STATE.
    let answers = [
        ("state_before", 0, Some(1)),
        ("plug_unaligned", 3, None),
        ("plug_no_blocks", 3, None),
        ("plug_past_end", 3, None),
        ("plug_too_many", 1, None),
        ("plug", 0, None),
        ("plug_again", 3, None),
        ("state_plugged", 0, Some(0)),
        ("unplug_second", 0, None),
        ("state_mixed", 0, Some(2)),
        ("unplug_all", 0, None),
    ];
    for (name, kind, state) in answers {
        let answer = &probe[name];
        assert_eq!(answer[0].as_u64(), Some(kind), "{name}: {probe}");
        if let Some(state) = state {
            assert_eq!(answer[1].as_u64(), Some(state), "{name}: {probe}");
        }
    }
    let stopped = boot.stopped("prober");
    assert_eq!(stopped["reason"], "outside-memory", "{stopped}\n{context}");
    assert!(
        stopped["detail"]
            .as_str()
            .is_some_and(|d| d.contains("0x100000000")),
        "the stop names the unplugged address: {stopped}"
    );
    assert!(
        !boot
            .console_lines("prober")
            .iter()
            .any(|l| l.contains("virtio_mem_returned")),
        "the read of unplugged memory must never return\n{context}"
    );
    boot.check_guest_finished("alpha");
    boot.check_ledgers();
}

/// `small-pool` on `two-nodes`: a pool too small is refused, the other partition runs.
pub fn small_pool_is_refused(boot: &Boot) {
    let refused = boot.refused("starved");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("insufficient memory"),
        "{refused}\n{}",
        boot.context
    );
    boot.check_guest_finished("alpha");
    boot.check_ledgers();
}

/// `missing-node` on `two-nodes`: a node the machine lacks is refused at boot.
pub fn missing_node_is_refused(boot: &Boot) {
    let refused = boot.refused("ghost");
    assert!(
        refused["reason"].as_str().unwrap().contains("node 7"),
        "{refused}\n{}",
        boot.context
    );
    boot.check_guest_finished("alpha");
    boot.check_ledgers();
}

/// `four-nodes` on `four-nodes-8g`: 2 MiB and 1 GiB SLAT leaf limits give their leaf counts.
pub fn page_limits_give_their_leaf_counts(boot: &Boot) {
    for (name, node) in [("node0", 0), ("node1", 1), ("node2", 2), ("node3", 3)] {
        let p = boot.partition(name);
        assert_eq!(p["memory"][0]["node"], node);
        boot.check_spa_inside_domains(name);
        let slat = &p["slat"];
        let gib_limit = node % 2 == 1; // layouts/four-nodes.toml: 1G on nodes 1 and 3
        let expected = if gib_limit { (0, 0, 1) } else { (0, 512, 0) };
        let got = (
            slat["pages_4k"].as_u64().unwrap(),
            slat["pages_2m"].as_u64().unwrap(),
            slat["pages_1g"].as_u64().unwrap(),
        );
        assert_eq!(
            got,
            expected,
            "{name}: 1 GiB, aligned, limit {}: {slat}\n{}",
            if gib_limit { "1G" } else { "2M" },
            boot.context
        );
        boot.check_guest_finished(name);
    }
    boot.check_ledgers();
}

/// `restart` on `two-nodes`: restart on shutdown until the restart limit.
pub fn restarts_until_the_limit(boot: &Boot) {
    let restarts: Vec<u64> = boot
        .events("partition_restarted")
        .iter()
        .filter(|e| e["name"] == "phoenix")
        .filter_map(|e| e["restarts"].as_u64())
        .collect();
    assert_eq!(restarts, (1..=8).collect::<Vec<_>>(), "{}", boot.context);
    let runs = boot
        .events("console")
        .iter()
        .filter(|c| {
            c["partition"] == "phoenix" && c["line"].as_str().is_some_and(|l| l.contains("io_loop"))
        })
        .count();
    assert_eq!(
        runs, 9,
        "the first run and eight restarts\n{}",
        boot.context
    );
    let stopped = boot.stopped("phoenix");
    assert!(
        stopped["detail"]
            .as_str()
            .unwrap()
            .contains("restart limit"),
        "{stopped}"
    );
    boot.check_ledgers();
}

/// `leaf-limits` on `two-nodes-2g5`: one 1 GiB leaf for "giant", 128 2 MiB leaves for
/// "fine", each backed on its node.
pub fn leaf_limits_give_their_leaf_counts(boot: &Boot) {
    for (name, node, expected) in [("giant", 1, (0, 0, 1)), ("fine", 0, (0, 128, 0))] {
        let p = boot.partition(name);
        assert_eq!(p["memory"][0]["node"], node, "{p}");
        boot.check_spa_inside_domains(name);
        let slat = &p["slat"];
        let got = (
            slat["pages_4k"].as_u64().unwrap_or(u64::MAX),
            slat["pages_2m"].as_u64().unwrap_or(u64::MAX),
            slat["pages_1g"].as_u64().unwrap_or(u64::MAX),
        );
        assert_eq!(got, expected, "{name}: {slat}\n{}", boot.context);
        boot.check_guest_finished(name);
    }
    boot.check_ledgers();
}

pub fn number(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {value}"))
}

/// What a Linux guest says about itself (`@guest {"event":"linux"}` from /proc and /sys)
/// matches its layout entry, and its console shows no complaint about the platform.
pub fn linux_guest_view(boot: &Boot, name: &str, vcpus: u64, distances: &[&[u64]], memory: u64) {
    let seen = boot.linux(name, "linux");
    assert_eq!(
        number(&seen, "nproc"),
        vcpus,
        "{name}: {seen}\n{}",
        boot.context
    );
    assert_eq!(
        number(&seen, "nodes"),
        distances.len() as u64,
        "{name}: {seen}\n{}",
        boot.context
    );
    let rows: Vec<Vec<u64>> = distances.iter().map(|r| r.to_vec()).collect();
    assert_eq!(
        seen["distances"],
        serde_json::json!(rows),
        "{name}: node distances\n{}",
        boot.context
    );
    // What a kernel says when the platform disagrees with itself: an MSR it expected, a
    // CPUID topology that crosses its NUMA nodes, a warning with a backtrace.
    for line in boot.console_lines(name) {
        for complaint in [
            "unchecked MSR access",
            "llc-sibling",
            "Call Trace",
            "Kernel panic",
        ] {
            assert!(
                !line.contains(complaint),
                "{name}: {line}\n{}",
                boot.context
            );
        }
    }
    // MemTotal is RAM less what the kernel keeps for itself: most of the layout's size.
    let total = number(&seen, "memtotal_kb") * 1024;
    assert!(
        total <= memory && total > memory / 10 * 7,
        "{name}: MemTotal {total} bytes for {memory} bytes of guest RAM\n{}",
        boot.context
    );
}

/// Partition `name` powered itself off; its memory lay on its nodes; every ledger adds up.
pub fn powered_off_on_its_nodes(boot: &Boot, name: &str) {
    assert_eq!(
        boot.stopped(name)["reason"],
        "power-off",
        "{}",
        boot.context
    );
    boot.check_spa_inside_domains(name);
    boot.check_ledgers();
}

/// `linux-spanning` on `cpu-less-node`: one Linux partition over two nodes (two vCPUs on the
/// first) reads the host's SLIT distances from its own /sys, and powers off.
pub fn linux_spanning_sees_the_host_slit(boot: &Boot) {
    linux_guest_view(boot, "wide", 2, &[&[10, 30], &[30, 10]], 224 << 20);
    linux_getcpu_agrees(boot, "wide", &[0, 0]);
    powered_off_on_its_nodes(boot, "wide");
}

/// What Linux partition `name`'s `nv-getcpu` saw on each of its CPUs (`nv.test=getcpu`), CPU
/// `i` on vnode `nodes[i]`: the kernel's `getcpu`, `/proc/self/stat`'s CPU and the TSC_AUX
/// Linux wrote for that CPU, read back by RDTSCP (and RDPID where CPUID offers it), all say
/// the same CPU and node. Without each vCPU's own TSC_AUX in its CPU, RDTSCP reads the
/// hypervisor's value on every CPU.
pub fn linux_getcpu_agrees(boot: &Boot, name: &str, nodes: &[u64]) {
    let seen = boot.linux(name, "getcpu");
    let cpus = seen["cpus"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        cpus.len(),
        nodes.len(),
        "{seen}
{}",
        boot.context
    );
    for (cpu, (row, &node)) in cpus.iter().zip(nodes).enumerate() {
        let expected = serde_json::json!([cpu, node]);
        assert_eq!(
            row["cpu"], cpu,
            "{seen}
{}",
            boot.context
        );
        assert_eq!(
            row["getcpu"], expected,
            "getcpu: {seen}
{}",
            boot.context
        );
        assert_eq!(
            row["stat"], cpu,
            "/proc/self/stat: {seen}
{}",
            boot.context
        );
        assert_eq!(
            row["rdtscp"], expected,
            "RDTSCP: {seen}
{}",
            boot.context
        );
        assert!(
            row["rdpid"].is_null() || row["rdpid"] == expected,
            "RDPID: {seen}
{}",
            boot.context
        );
    }
}

/// `spin` on `two-nodes`: a guest spinning with interrupts off keeps no CPU: its `time_limit`
/// stops it, and the other partition finishes.
pub fn spinning_guest_is_stopped_by_its_time_limit(boot: &Boot) {
    assert_eq!(
        boot.guest("spinner", "spinning")["event"],
        "spinning",
        "{}",
        boot.context
    );
    let stopped = boot.stopped("spinner");
    assert_eq!(
        stopped["reason"], "time-limit",
        "{stopped}\n{}",
        boot.context
    );
    boot.check_guest_finished("steady");
    boot.check_ledgers();
}

/// Hostile probes of the intercepts (`layouts/hostile.toml`): each partition's guest reports
/// what it got, and the hypervisor's exit counts show a prefixed CPUID ran once, not twice.
pub fn hostile_probes_get_the_architected_answers(boot: &Boot) {
    for name in ["pmc", "svme", "msr"] {
        let exception = boot.guest(name, "exception");
        assert_eq!(
            exception["vector"], 13,
            "{name}: expected #GP, got {exception}\n{}",
            boot.context
        );
    }
    let done = boot.guest("prefixed", "hostile_done");
    let count = done["count"].as_u64().expect("count");
    let cpuid_exits = boot
        .exit_count("prefixed", "cpuid")
        .unwrap_or_else(|| panic!("no exit_counts for prefixed\n{}", boot.context));
    assert!(
        (count..count + 16).contains(&cpuid_exits),
        "{count} prefixed CPUIDs made {cpuid_exits} CPUID exits (each must run once)\n{}",
        boot.context
    );
    for name in ["prefixed", "pmc", "svme", "msr"] {
        assert_eq!(boot.stopped(name)["reason"], "exit", "{}", boot.context);
    }
    boot.check_ledgers();
}

/// INVLPGA (#UD: no SVM for guests), WBINVD (completes as a no-op), a guest's CPUID and
/// TSC (the partition's own brand, no VMX, the hypervisor bit, APIC ID 0, a TSC near 0), and
/// a single-step #DB that the hypervisor intercepts and reflects.
pub fn more_hostile_probes_and_what_cpuid_tells(boot: &Boot) {
    let exception = boot.guest("invlpga", "exception");
    assert_eq!(exception["vector"], 6, "{exception}\n{}", boot.context);
    assert_eq!(
        boot.guest("flush", "hostile_done")["count"],
        1000,
        "{}",
        boot.context
    );
    // Every WBINVD was intercepted (and skipped), not run on the shared caches.
    let flushes = boot.exit_count("flush", "other");
    assert!(flushes >= Some(1000), "{flushes:?}\n{}", boot.context);
    let seen = boot.guest("cpuid", "cpuid");
    assert_eq!(
        seen["brand"], "numavisor virtual CPU",
        "{seen}\n{}",
        boot.context
    );
    assert_eq!(
        (&seen["hypervisor"], &seen["vmx"]),
        (&1.into(), &0.into()),
        "{seen}"
    );
    assert_eq!(seen["apic_id"], 0, "{seen}");
    let hz = boot
        .report
        .event("timing")
        .and_then(|t| t["tsc_hz"].as_u64())
        .expect("tsc_hz");
    let tsc = seen["tsc"].as_u64().expect("tsc");
    assert!(
        tsc < 5 * hz,
        "the guest TSC ({tsc}) should start near 0, not at the host's\n{}",
        boot.context
    );
    // The single-step #DB reached the guest, through the hypervisor's intercept.
    let debug = boot.guest("step", "exception");
    assert_eq!(debug["vector"], 1, "{debug}\n{}", boot.context);
    let reflected = boot.exit_count("step", "exception");
    assert_eq!(reflected, Some(1), "{}", boot.context);
    for name in ["invlpga", "flush", "cpuid", "step"] {
        assert_eq!(boot.stopped(name)["reason"], "exit", "{}", boot.context);
    }
}

/// `hostile-xcr0` on `two-nodes`: XSETBV works through the intercept, and each of the two
/// lives of the partition starts with XCR0 = x87, not what the life before it set.
pub fn xcr0_is_reset_at_every_start(boot: &Boot) {
    let lives: Vec<Value> = boot
        .console_lines("xsave")
        .iter()
        .filter_map(|line| line.strip_prefix("guest: "))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .filter(|event| event["event"] == "xcr0")
        .collect();
    assert_eq!(lives.len(), 2, "two lives: {lives:?}\n{}", boot.context);
    for life in &lives {
        assert_eq!(life["xsave"], true, "{life}\n{}", boot.context);
        assert_eq!(life["at_start"], 1, "{life}\n{}", boot.context);
        assert_eq!(life["after"], 3, "{life}\n{}", boot.context);
    }
}

/// `hostile-init-idt` on `two-nodes`: "starter"'s second vCPU, started by INIT/SIPI, raises
/// #UD as its first real-mode instruction; the IVT at 0 (IDTR limit 0xFFFF after INIT) takes
/// it to the guest's handler, and the vCPU goes on into long mode. Judged by the guest's
/// `init_idt` event; a partition stopped otherwise than by its own exit says how.
pub fn real_mode_exception_after_init_sipi_reaches_the_ivt(boot: &Boot) {
    let context = &boot.context;
    let stopped = boot.stopped("starter");
    if stopped["reason"] == "triple-fault" {
        panic!(
            "the AP's #UD in real mode, right after INIT/SIPI, triple-faulted the partition: \
             its IDT limit was not the real-mode IVT's 0xFFFF (SDM vol. 3A Table 10-1, APM \
             vol. 2 Table 14-1; `EntryState::Startup`)\n{stopped}\n{context}"
        );
    }
    assert_eq!(
        stopped["reason"], "exit",
        "the partition did not end by its own exit: {stopped}\n{context}"
    );
    let seen = boot.guest("starter", "init_idt");
    eprintln!("init idt: {seen}");
    assert!(
        seen["error"].is_null(),
        "the probe could not run: {seen}\n{context}"
    );
    assert_eq!(
        (&seen["handler_ran"], &seen["handler_runs"]),
        (&true.into(), &1.into()),
        "the real-mode #UD handler did not run exactly once: {seen}\n{context}"
    );
    assert_eq!(
        seen["ap_reached_long_mode"], true,
        "the AP did not run its job in long mode after the handler: {seen}\n{context}"
    );
    boot.guest("starter", "hostile_done");
    boot.check_ledgers();
}

/// `hostile-nmi` on `two-nodes`: the guest's NMI handler sends itself one NMI, later ten
/// (`probe=nmi-blocking`, `nmi.rs` of the test guest). Judged by the guest's own counts: no
/// handler run nested in another, the self-sent NMI not run before the IRET (one run seen
/// there) but right after it (two runs seen by the sender's next instruction), and the ten
/// merged into one pending NMI (two runs).
pub fn nmis_wait_for_the_handlers_iret_and_merge(boot: &Boot) {
    let context = &boot.context;
    let stopped = boot.stopped("nmi");
    let seen = boot.guest("nmi", "nmi_blocking");
    eprintln!("nmi blocking: {seen}");
    assert_eq!(
        seen["nested"], 0,
        "an NMI ran inside the NMI handler, before its IRET: {seen}\n{context}"
    );
    assert_eq!(
        seen["self_runs_in_handler"], 1,
        "the NMI sent from the handler ran before the handler's IRET: {seen}\n{context}"
    );
    assert_eq!(
        seen["self_runs_after_iret"], 2,
        "the NMI held back by the handler did not run right after its IRET: {seen}\n{context}"
    );
    assert_eq!(seen["self_runs"], 2, "{seen}\n{context}");
    assert_eq!(
        seen["burst_runs"], 2,
        "ten NMIs sent to a running handler must give exactly one more run: {seen}\n{context}"
    );
    assert_eq!(stopped["reason"], "exit", "{stopped}\n{context}");
    boot.guest("nmi", "hostile_done");
    boot.check_ledgers();
}

fn hypercalls_of(boot: &Boot, name: &str) -> Value {
    boot.guest(name, "hypercalls")
}

/// `layouts/hypercalls.toml`: discovery, a parent reading its child, a stranger denied,
/// malformed calls answered with their status (docs/hypercalls.md).
pub fn parent_reads_its_child_and_a_stranger_is_denied(boot: &Boot) {
    let boss = hypercalls_of(boot, "boss");
    let context = &boot.context;
    assert_eq!(boss["signature"], "numavisor", "{boss}\n{context}");
    assert_eq!(boss["max_leaf"], 0x4000_0001, "{boss}");
    assert_eq!(boss["version"], 1, "{boss}");
    assert_eq!(boss["features"], 0b1111_1110, "{boss}");
    assert_eq!(boss["max_code"], 7, "{boss}");
    assert_eq!(boss["id"], serde_json::json!(["success", 1]), "{boss}");
    // Three partitions; the worker's parent is the boss.
    assert_eq!(boss["list"], serde_json::json!(["success", 3, 3]), "{boss}");
    assert_eq!(
        boss["entries"],
        serde_json::json!([[1, 0], [2, 1], [3, 0]]),
        "{boss}"
    );
    // The worker's pool: 64 KiB less its SLAT tables and control pages.
    assert_eq!(boss["balance"][0], "success", "{boss}");
    let balance = boss["balance"][1].as_u64().unwrap();
    // (The worker is dynamic: its pool also holds the tables its balloon may split.)
    assert!((1..32).contains(&balance), "{boss}");
    assert_eq!(boss["self_balance"][0], "success", "{boss}");
    // 16 MiB of guest RAM on vnode 0.
    assert_eq!(
        boss["memory"],
        serde_json::json!(["success", 4096]),
        "{boss}"
    );
    // A deposit of one of its pages, then malformed calls, each with its status.
    assert_eq!(boss["deposit"], "success", "{boss}");
    assert_eq!(boss["unaligned"], "invalid-alignment", "{boss}");
    assert_eq!(boss["bad_code"], "invalid-hypercall-code", "{boss}");
    assert_eq!(boss["bad_id"], "invalid-partition-id", "{boss}");

    let stranger = hypercalls_of(boot, "stranger");
    assert_eq!(
        stranger["id"],
        serde_json::json!(["success", 3]),
        "{stranger}"
    );
    assert_eq!(
        stranger["balance"],
        serde_json::json!(["access-denied", 0]),
        "{stranger}"
    );
    assert_eq!(
        stranger["memory"],
        serde_json::json!(["access-denied", 0]),
        "{stranger}"
    );
    assert_eq!(stranger["self_balance"][0], "success", "{stranger}");
    assert_eq!(stranger["deposit"], "access-denied", "{stranger}");

    // Four more pages into the worker's pool: its balance counts the five the boss gave
    // (its own pages besides), the boss's vnode has five pages fewer and five holes; two come
    // back, are RAM again, and a mapped page is no slot to withdraw into.
    let moves = &boss["moves"];
    assert_eq!(
        moves["deposit"],
        serde_json::json!(["success", 4]),
        "{boss}"
    );
    assert_eq!(moves["balance"][0], "success", "{boss}");
    assert_eq!(moves["balance"][1], balance + 5, "{boss}");
    assert_eq!(moves["balance"][2], 5, "{boss}");
    assert_eq!(
        moves["memory"],
        serde_json::json!(["success", 4091, 5]),
        "{boss}"
    );
    assert_eq!(
        moves["withdraw"],
        serde_json::json!(["success", 2]),
        "{boss}"
    );
    assert_eq!(moves["reused"], true, "{boss}");
    assert_eq!(moves["withdraw_mapped"], "invalid-parameter", "{boss}");
    assert_eq!(
        moves["after"],
        serde_json::json!(["success", balance + 3, 3]),
        "{boss}"
    );
    // Its memory target: set within bounds, clamped to its 8 MiB minimum, refused for a vnode
    // it lacks and for a ragged size, then handed back to the policy; each set one reported.
    assert_eq!(
        moves["targets"],
        serde_json::json!([
            ["success", 12 << 20],
            ["success", 8 << 20],
            ["invalid-parameter", 0],
            ["invalid-alignment", 0],
            ["success", 0]
        ]),
        "{boss}"
    );
    let targets: Vec<u64> = boot
        .events("memory_target")
        .iter()
        .filter(|t| t["partition"] == "worker" && t["by"] == "parent")
        .map(|t| t["bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(
        targets,
        [12 << 20, 8 << 20, 12 << 20, 8 << 20],
        "two lives of the boss"
    );
    let denied = &stranger["moves"];
    for call in ["deposit", "withdraw", "balance"] {
        assert_eq!(denied[call][0], "access-denied", "{call}: {stranger}");
    }
    assert_eq!(denied["targets"][0][0], "access-denied", "{stranger}");
    assert_eq!(
        denied["memory"],
        serde_json::json!(["success", 4096, 0]),
        "{stranger}"
    );

    // The report shows every move, each page on the boss's node 0, and the ledger follows.
    let deposits = boot.events("pool_deposit");
    let withdrawals = boot.events("pool_withdraw");
    // Two of each per life of the boss, which restarts once.
    assert_eq!((deposits.len(), withdrawals.len()), (4, 2), "{context}");
    let moved = |e: &serde_json::Value, key: &str| -> Vec<u64> {
        e["moves"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m[key].as_u64().unwrap())
            .collect()
    };
    for event in deposits.iter().chain(&withdrawals) {
        assert_eq!(event["parent"], "boss", "{event}");
        assert_eq!(event["child"], "worker", "{event}");
        assert!(moved(event, "node").iter().all(|&n| n == 0), "{event}");
    }
    assert_eq!(deposits[1]["pages"], 4, "{}", deposits[1]);
    let slots = moved(deposits[1], "gpa");
    assert_eq!(
        moved(withdrawals[0], "gpa"),
        slots[..2].to_vec(),
        "into their old GPAs"
    );
    // The refills are host pages the boss deposited, not new ones.
    let deposited: Vec<u64> = deposits.iter().flat_map(|e| moved(e, "spa")).collect();
    for spa in moved(withdrawals[0], "spa") {
        assert!(deposited.contains(&spa), "{spa:#x} in {deposited:x?}");
    }

    // Touching a page it gave up is a fault of the boss, not of the hypervisor or the
    // worker: the boss restarts, and its three slots are refilled from the worker's pool
    // (what was left there of its deposits) before it runs again.
    let restarted = boot.events("partition_restarted");
    assert_eq!(restarted.len(), 1, "{context}");
    assert_eq!(restarted[0]["reason"], "outside-memory", "{context}");
    let reclaims = boot.events("pool_reclaim");
    assert_eq!(reclaims.len(), 1, "{context}");
    let mut reclaimed = moved(reclaims[0], "gpa");
    reclaimed.sort_unstable();
    let mut expected = vec![moved(deposits[0], "gpa")[0], slots[2], slots[3]];
    expected.sort_unstable();
    assert_eq!(reclaimed, expected, "{}", reclaims[0]);
    // Its second life sees the same as its first: its whole RAM, the worker's pool as before.
    let lives: Vec<Value> = boot
        .console_lines("boss")
        .into_iter()
        .filter_map(|line| serde_json::from_str::<Value>(line.strip_prefix("guest: ")?).ok())
        .filter(|v| v["event"] == "hypercalls")
        .collect();
    assert_eq!(lives.len(), 2, "{context}");
    assert_eq!(lives[1]["moves"], lives[0]["moves"], "{context}");
    let stopped = boot.stopped("boss");
    assert_eq!(stopped["reason"], "outside-memory", "{context}");
    let detail = stopped["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("{:#x}", slots[2])), "{stopped}");
    assert!(detail.contains("restart limit (1) reached"), "{stopped}");
    assert_eq!(boot.stopped("worker")["reason"], "time-limit", "{context}");
    assert_eq!(boot.stopped("stranger")["reason"], "exit", "{context}");
    // Everything is free again at the end: the worker's stop returned what the boss had
    // left in its pool.
    let ledgers = boot.events("ledger");
    for node in ledgers.last().unwrap()["nodes"].as_array().unwrap() {
        assert_eq!(node["guest"], 0, "{node}");
        assert_eq!(node["pools"], 0, "{node}");
    }
}

/// `scrub` on `two-nodes` (zero-on-map): "dirty" filled its RAM with a pattern and stopped
/// before "scavenger" deflated its balloon; every byte of every page the scavenger got back
/// read zero, over thousands of pages, each moved on node 0, some of them dirty's own.
pub fn deflated_pages_are_zeroed(boot: &Boot, min_pages: u64) {
    let context = &boot.context;
    let fill = boot.guest("dirty", "fill");
    assert!(
        number(&fill, "bytes") >= 16 << 20,
        "dirty filled too little: {fill}\n{context}"
    );
    assert_eq!(boot.stopped("dirty")["reason"], "exit", "{context}");
    let scrub = boot.guest("scavenger", "scrub");
    assert!(
        scrub["error"].is_null(),
        "the probe failed: {scrub}\n{context}"
    );

    let events = &boot.report.events;
    let moves: Vec<(usize, &Value)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "balloon" && e["partition"] == "scavenger")
        .collect();
    let deflations = || moves.iter().filter(|(_, e)| e["kind"] == "deflate");
    // Host pages deflated into the scavenger that had been dirty's RAM: the probe really
    // reached the neighbour's memory.
    let dirty_spa: Vec<(u64, u64)> = boot.partition("dirty")["memory"][0]["spa"]
        .as_array()
        .expect("dirty's spa")
        .iter()
        .map(|r| (number_at(r, 0), number_at(r, 1)))
        .collect();
    let swept = deflations()
        .flat_map(|(_, e)| e["spa"].as_array().cloned().unwrap_or_default())
        .flat_map(|r| {
            let start = number_at(&r, 0);
            (start..start + number_at(&r, 1)).step_by(4096)
        })
        .filter(|&spa| dirty_spa.iter().any(|&(s, l)| (s..s + l).contains(&spa)))
        .collect::<std::collections::BTreeSet<u64>>()
        .len();
    eprintln!("scrub: {scrub}; deflated pages that had been dirty's: {swept}");
    assert_eq!(
        scrub["dirty_pages"], 0,
        "pages entered the guest without being zeroed ({swept} of the deflated pages had been dirty's): {scrub}\n{context}"
    );
    let pages = number(&scrub, "pages");
    assert!(
        pages >= min_pages,
        "too few pages checked (fewer than {min_pages}): {scrub}\n{context}"
    );
    assert!(
        swept > 0,
        "no deflated page had been dirty's, so the probe proves nothing about a neighbour's data (the frame allocator's choice changed? adjust layouts/scrub.toml)\n{context}"
    );
    boot.guest("scavenger", "hostile_done");
    assert_eq!(boot.stopped("scavenger")["reason"], "exit", "{context}");

    // In report order: dirty's fill, its stop, then the scavenger's deflations.
    let at = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred);
    let filled = at(&|e| {
        e["event"] == "console"
            && e["partition"] == "dirty"
            && e["line"].as_str().is_some_and(|l| l.contains("\"fill\""))
    });
    let stopped = at(&|e| e["event"] == "partition_stopped" && e["name"] == "dirty");
    let first_deflation = deflations().next().map(|m| m.0);
    assert!(
        filled.is_some() && filled < stopped && stopped < first_deflation,
        "fill at {filled:?}, dirty stopped at {stopped:?}, first deflation at {first_deflation:?}\n{context}"
    );
    let moved = |kind: &str| -> u64 {
        moves
            .iter()
            .filter(|(_, e)| e["kind"] == kind)
            .map(|(_, e)| {
                assert_eq!(e["node"], 0, "{e}\n{context}");
                number(e, "pages")
            })
            .sum()
    };
    assert_eq!(moved("inflate"), pages, "{scrub}\n{context}");
    assert_eq!(moved("deflate"), pages, "{scrub}\n{context}");
    boot.check_ledgers();
}

fn number_at(value: &Value, index: usize) -> u64 {
    value[index]
        .as_u64()
        .unwrap_or_else(|| panic!("no number at [{index}] in {value}"))
}

/// `concurrent-moves` on `two-nodes`: two vCPUs of "movers" move pages at once (balloon on
/// vCPU 0, deposits into "pool" on vCPU 1), `count` rounds each. Judged by the guests' own
/// reports: both loops finished every round with success, movers holds all its RAM again,
/// the watcher (movers' parent, reading it through the same pool bank) and the pool kept
/// calling to the end, and nobody was stopped by its time limit.
pub fn concurrent_moves_finish_and_the_neighbours_go_on(boot: &Boot, count: u64) {
    let context = &boot.context;
    let moves = boot.guest("movers", "concurrent_moves");
    eprintln!("concurrent moves: {moves}");
    assert!(
        moves["error"].is_null(),
        "the probe could not run: {moves}\n{context}"
    );
    assert_eq!(moves["count"], count, "{moves}\n{context}");
    for (what, by) in [
        ("balloon", "vCPU 0's balloon"),
        ("deposits", "vCPU 1's deposits"),
    ] {
        assert_eq!(
            moves[what]["status"], "success",
            "{by} were refused: {moves}\n{context}"
        );
        assert_eq!(
            moves[what]["done"], count,
            "{by} stopped early: {moves}\n{context}"
        );
    }
    assert_eq!(
        moves["given_up_after"],
        serde_json::json!(["success", 0]),
        "movers does not hold all its RAM again: {moves}\n{context}"
    );
    assert_eq!(
        boot.guest("movers", "hostile_done")["count"],
        2 * count,
        "{context}"
    );
    let watcher = boot.guest("watcher", "watch");
    eprintln!("watcher: {watcher}");
    assert_eq!(watcher["ended"], "stopped", "{watcher}\n{context}");
    assert!(
        number(&watcher, "rounds") > 0 && number(&watcher, "moving") > 0,
        "the watcher never saw movers' pages away: {watcher}\n{context}"
    );
    let pool = boot.guest("pool", "watch");
    eprintln!("pool: {pool}");
    assert_eq!(pool["ended"], "until", "{pool}\n{context}");
    for name in ["watcher", "movers", "pool"] {
        let stopped = boot.stopped(name);
        assert_eq!(stopped["reason"], "exit", "{name}: {stopped}\n{context}");
    }
    boot.check_ledgers();
}

// --- Networks (docs/network.md): what the guests and the report say about their cards. ---

/// Partition `name`'s guest configured one interface, `eth0`, with `address` and `mac`, bound
/// to the `virtio_net` driver.
pub fn has_interface(boot: &Boot, name: &str, address: &str, mac: &str) {
    let network = boot.linux(name, "network");
    let interfaces = network["interfaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        interfaces.len(),
        1,
        "{name}: interfaces {network}\n{}",
        boot.context
    );
    let eth0 = &interfaces[0];
    assert_eq!(eth0["name"], "eth0", "{name}: {eth0}\n{}", boot.context);
    assert_eq!(eth0["address"], address, "{name}: {eth0}\n{}", boot.context);
    assert_eq!(eth0["mac"], mac, "{name}: {eth0}\n{}", boot.context);
    assert_eq!(
        eth0["driver"], "virtio_net",
        "{name}: {eth0}\n{}",
        boot.context
    );
}

/// Partition `name` pinged its peer: every echo answered.
pub fn pinged(boot: &Boot, name: &str, peer: &str) -> Value {
    let ping = boot.linux(name, "ping");
    assert_eq!(ping["peer"], peer, "{name}: {ping}\n{}", boot.context);
    let sent = number(&ping, "transmitted");
    assert!(sent >= 5, "{name}: {ping}\n{}", boot.context);
    assert_eq!(
        number(&ping, "received"),
        sent,
        "{name}: lost echoes: {ping}\n{}",
        boot.context
    );
    ping
}

/// The `network` event lists `network` with these members (partition, MAC, nodes).
pub fn network_event(boot: &Boot, network: &str, members: &[(&str, &str, u64)]) {
    let event = boot
        .report
        .event("network")
        .unwrap_or_else(|| panic!("no network event\n{}", boot.context));
    let found = event["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == network)
        .unwrap_or_else(|| panic!("no network {network} in {event}\n{}", boot.context));
    let listed: Vec<(String, String, Value)> = found["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["partition"].as_str().unwrap_or_default().to_string(),
                m["mac"].as_str().unwrap_or_default().to_string(),
                m["nodes"].clone(),
            )
        })
        .collect();
    let wanted: Vec<(String, String, Value)> = members
        .iter()
        .map(|&(p, mac, node)| (p.to_string(), mac.to_string(), serde_json::json!([node])))
        .collect();
    assert_eq!(listed, wanted, "{event}\n{}", boot.context);
}

/// The last `nic_counts` event of partition `name`: its card 0's counters.
pub fn nic_counters(boot: &Boot, name: &str) -> Value {
    let event = boot
        .report
        .events
        .iter()
        .rfind(|e| e["event"] == "nic_counts" && e["partition"] == name)
        .unwrap_or_else(|| panic!("no nic_counts for {name}\n{}", boot.context));
    event["nics"][0]["counters"].clone()
}

/// `linux-network` (QEMU) or `linux-network-vmx` (Bochs): two Linux partitions on two nodes,
/// one network; each pinged the other, then alpha sent `mib` MiB with nc and beta received
/// every byte (the same sha256), and the hypervisor's counts agree.
pub fn linux_pair_moves_data(boot: &Boot, mib: u64, beta_mac: &str) {
    network_event(
        boot,
        "lan",
        &[("alpha", "02:6e:76:00:00:00", 0), ("beta", beta_mac, 1)],
    );
    has_interface(boot, "alpha", "10.0.0.1/24", "02:6e:76:00:00:00");
    has_interface(boot, "beta", "10.0.0.2/24", beta_mac);
    pinged(boot, "alpha", "10.0.0.2");
    pinged(boot, "beta", "10.0.0.1");
    let sent = boot.linux("alpha", "sent");
    let received = boot.linux("beta", "received");
    assert_eq!(sent["ok"], true, "{sent}\n{}", boot.context);
    // `mib` MiB after the transfer's first line, "nv-transfer keep".
    let bytes = (mib << 20) + 17;
    assert_eq!(number(&sent, "bytes"), bytes, "{sent}\n{}", boot.context);
    assert_eq!(
        number(&received, "bytes"),
        bytes,
        "{received}\n{}",
        boot.context
    );
    assert_eq!(
        sent["sha256"], received["sha256"],
        "what beta received is not what alpha sent\n{}",
        boot.context
    );
    // The hypervisor's own counts agree: the bytes left alpha's card and reached beta's, in
    // frames no larger than the MTU allows.
    let alpha = nic_counters(boot, "alpha");
    let beta = nic_counters(boot, "beta");
    assert!(
        number(&alpha, "tx_bytes") >= bytes,
        "alpha {alpha}\n{}",
        boot.context
    );
    assert!(
        number(&beta, "rx_bytes") >= bytes,
        "beta {beta}\n{}",
        boot.context
    );
    assert!(
        number(&beta, "rx_frames") >= bytes / 1514,
        "beta {beta}\n{}",
        boot.context
    );
    for name in ["alpha", "beta"] {
        powered_off_on_its_nodes(boot, name);
    }
}

/// The virtual CPU and local APIC held to the architecture (`layouts/virtual-platform.toml`,
/// the test guest's `platform_probe.rs`), each from what the guest itself read: the legacy AMD
/// counters read 0 (on an AMD vendor), TSC_AUX reaches RDTSCP (and RDPID where CPUID offers
/// it), CR8 and the TPR are one state that holds back a class-4 interrupt at class 5, a
/// disabled or x2APIC-mode APIC has no MMIO page and a disabled one no CPUID bit, and the I/O
/// APIC ID keeps four bits.
pub fn virtual_platform_follows_the_architecture(boot: &Boot, vendor: &str) {
    let context = &boot.context;
    let pmu = boot.guest("platform", "pmu_msrs");
    assert_eq!(pmu["vendor"], vendor, "{pmu}\n{context}");
    if vendor == "amd" {
        assert_eq!(
            pmu["values"],
            serde_json::json!([0, 0, 0, 0, 0, 0, 0, 0]),
            "{context}"
        );
    }
    let aux = boot.guest("platform", "tsc_aux");
    let written = &aux["written"];
    assert_eq!(&aux["rdmsr"], written, "{aux}\n{context}");
    assert_eq!(
        &aux["rdtscp"], written,
        "RDTSCP reads the CPU: {aux}\n{context}"
    );
    assert!(
        aux["rdpid"].is_null() || &aux["rdpid"] == written,
        "RDPID reads the CPU: {aux}\n{context}"
    );
    let cr8 = boot.guest("platform", "cr8_tpr");
    assert_eq!(cr8["tpr_after_cr8"], 0xF0, "MOV CR8, 0xF: {cr8}\n{context}");
    assert_eq!(cr8["cr8_after_tpr"], 3, "TPR 0x30: {cr8}\n{context}");
    assert_eq!(cr8["tpr_after_zero"], 0, "{cr8}\n{context}");
    let priority = boot.guest("platform", "task_priority");
    assert_eq!(priority["tpr"], 0x50, "{priority}\n{context}");
    assert_eq!(
        priority["held"], 0,
        "class 4 under CR8 5: {priority}\n{context}"
    );
    assert_eq!(priority["delivered"], 1, "CR8 0: {priority}\n{context}");
    assert_eq!(
        priority["xapic_page"], 0xFFFF_FFFFu32,
        "{priority}\n{context}"
    );
    let disabled = boot.guest("platform", "apic_disabled");
    assert_eq!(disabled["cpuid_apic"], false, "{disabled}\n{context}");
    assert_eq!(disabled["version"], 0xFFFF_FFFFu32, "{disabled}\n{context}");
    assert_eq!(disabled["tpr"], 0xFFFF_FFFFu32, "{disabled}\n{context}");
    assert_eq!(
        disabled["cpuid_apic_enabled"], true,
        "{disabled}\n{context}"
    );
    assert_eq!(
        disabled["version_enabled"], 0x0005_0014,
        "{disabled}\n{context}"
    );
    assert_eq!(disabled["tpr_enabled"], 0, "{disabled}\n{context}");
    let ioapic = boot.guest("platform", "ioapic_id");
    assert_eq!(ioapic["after_all_ones"], 0x0F00_0000, "{ioapic}\n{context}");
    assert_eq!(
        boot.guest("platform", "hostile_done")["probe"],
        "virtual-platform",
        "{context}"
    );
    assert_eq!(boot.stopped("platform")["reason"], "exit", "{context}");
}

/// Device pages touched other than by one whole register access (`layouts/hostile-mmio.toml`):
/// a page walk through the guest's own page tables into the APIC page, and an 8-byte load
/// across the APIC page's end. Each partition stops with its reason; neither access came back
/// to the guest as a value.
pub fn hostile_mmio_stops_its_partition(boot: &Boot) {
    for (name, reason) in [("walker", "mmio-page-walk"), ("crosser", "mmio-crossing")] {
        let returned: Vec<&str> = boot
            .console_lines(name)
            .into_iter()
            .filter(|l| l.contains("mmio_returned"))
            .collect();
        assert!(
            returned.is_empty(),
            "{name}: the access was emulated: {returned:?}\n{}",
            boot.context
        );
        let stopped = boot.stopped(name);
        assert_eq!(stopped["reason"], reason, "{stopped}\n{}", boot.context);
    }
    boot.check_ledgers();
}

/// `selftest=host-state` ran (`all_stopped`'s `host_state`): at least `runs` guest runs were
/// checked, and no host MSR changed across any of them.
pub fn host_state_was_checked(boot: &Boot, runs: u64) {
    let all = boot
        .report
        .event("all_stopped")
        .unwrap_or_else(|| panic!("no all_stopped\n{}", boot.context));
    let checked = &all["host_state"];
    assert!(
        checked["checks"].as_u64().is_some_and(|n| n >= runs),
        "the self-check must have run after each of the guest's {runs} exits: {all}\n{}",
        boot.context
    );
    assert_eq!(checked["changes"], 0, "{all}\n{}", boot.context);
}
