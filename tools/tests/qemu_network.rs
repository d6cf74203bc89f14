//! The network between partitions, under QEMU's SVM: Debian's own Linux in partitions with
//! virtio-net cards on a switch inside the hypervisor, judged by what the guests print
//! (`@guest` lines of `/init`: their interfaces, ping's counts, the sha256 of what nc moved)
//! and by the boot report (`network`, `nic_counts`).

mod common;

use common::{cases, Boot};
use serde_json::{json, Value};
use tools::qemu::Reply;

/// Linux boots take seconds of TCG each, the transfer more; a bound well above both.
const LINUX_TIMEOUT_S: u64 = 900;

/// One Linux machine at a time: each is four emulated CPUs on a two-core host.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn boot(layout: &str, topology: &str) -> Boot {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    Boot::run_with(layout, topology, LINUX_TIMEOUT_S, |_| Reply::Continue)
}

/// Partition `name`'s guest configured one interface, `eth0`, with `address` and `mac`, bound
/// to the `virtio_net` driver.
fn has_interface(boot: &Boot, name: &str, address: &str, mac: &str) {
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
fn pinged(boot: &Boot, name: &str, peer: &str) -> Value {
    let ping = boot.linux(name, "ping");
    assert_eq!(ping["peer"], peer, "{name}: {ping}\n{}", boot.context);
    let sent = cases::number(&ping, "transmitted");
    assert!(sent >= 5, "{name}: {ping}\n{}", boot.context);
    assert_eq!(
        cases::number(&ping, "received"),
        sent,
        "{name}: lost echoes: {ping}\n{}",
        boot.context
    );
    ping
}

/// The `network` event lists `network` with these members (partition, MAC, nodes).
fn network_event(boot: &Boot, network: &str, members: &[(&str, &str, u64)]) {
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
fn counters(boot: &Boot, name: &str) -> Value {
    let event = boot
        .report
        .events
        .iter()
        .rfind(|e| e["event"] == "nic_counts" && e["partition"] == name)
        .unwrap_or_else(|| panic!("no nic_counts for {name}\n{}", boot.context));
    event["nics"][0]["counters"].clone()
}

#[test]
fn a_two_linux_partitions_on_two_nodes_ping_and_move_64_mib() {
    let boot = boot("linux-network", "two-nodes");
    network_event(
        &boot,
        "lan",
        &[
            ("alpha", "02:6e:76:00:00:00", 0),
            ("beta", "02:00:00:00:be:7a", 1),
        ],
    );
    has_interface(&boot, "alpha", "10.0.0.1/24", "02:6e:76:00:00:00");
    has_interface(&boot, "beta", "10.0.0.2/24", "02:00:00:00:be:7a");
    pinged(&boot, "alpha", "10.0.0.2");
    pinged(&boot, "beta", "10.0.0.1");
    let sent = boot.linux("alpha", "sent");
    let received = boot.linux("beta", "received");
    assert_eq!(sent["ok"], true, "{sent}\n{}", boot.context);
    assert_eq!(
        cases::number(&sent, "bytes"),
        64 << 20,
        "{sent}\n{}",
        boot.context
    );
    assert_eq!(
        cases::number(&received, "bytes"),
        64 << 20,
        "{received}\n{}",
        boot.context
    );
    assert_eq!(
        sent["sha256"], received["sha256"],
        "what beta received is not what alpha sent\n{}",
        boot.context
    );
    // The hypervisor's own counts agree: at least 64 MiB left alpha's card and reached
    // beta's, in frames no larger than the MTU allows.
    let alpha = counters(&boot, "alpha");
    let beta = counters(&boot, "beta");
    assert!(
        cases::number(&alpha, "tx_bytes") >= 64 << 20,
        "alpha {alpha}\n{}",
        boot.context
    );
    assert!(
        cases::number(&beta, "rx_bytes") >= 64 << 20,
        "beta {beta}\n{}",
        boot.context
    );
    assert!(
        cases::number(&beta, "rx_frames") >= (64 << 20) / 1514,
        "beta {beta}\n{}",
        boot.context
    );
    for name in ["alpha", "beta"] {
        cases::powered_off_on_its_nodes(&boot, name);
    }
}

#[test]
fn a_the_default_appliance_pings_across_its_network() {
    let boot = boot("default", "two-nodes");
    network_event(
        &boot,
        "lan",
        &[
            ("alpha", "02:6e:76:00:00:00", 0),
            ("beta", "02:6e:76:00:01:00", 1),
        ],
    );
    has_interface(&boot, "alpha", "10.0.0.1/24", "02:6e:76:00:00:00");
    has_interface(&boot, "beta", "10.0.0.2/24", "02:6e:76:00:01:00");
    pinged(&boot, "alpha", "10.0.0.2");
    pinged(&boot, "beta", "10.0.0.1");
    for name in ["alpha", "beta"] {
        cases::powered_off_on_its_nodes(&boot, name);
    }
}

/// The answer each hostile case of `probe=virtio-net` must observe (`virtio_net_probe.rs`):
/// the case and the members of its `virtio_net` line that say so.
fn probe_answers() -> Vec<(&'static str, Value)> {
    // A bad frame: its chain comes back used, nothing written, the card still running, and
    // the next ARP round trip to alpha works.
    let dropped =
        json!({"returned": true, "used_len": 0, "needs_reset": false, "then_round_trip": true});
    let broken = json!({"needs_reset": true, "used": 0});
    vec![
        (
            "notify-before-driver-ok",
            json!({"used_before_driver_ok": 0}),
        ),
        (
            "queue-size-not-power-of-two",
            json!({"queue_ready": 0, "needs_reset": true}),
        ),
        ("descriptor-loop", broken.clone()),
        ("chain-longer-than-queue", broken.clone()),
        ("avail-index-past-queue", broken),
        ("peer-answers", json!({})),
        ("frame-outside-ram", dropped.clone()),
        ("frame-in-ioapic-window", dropped.clone()),
        ("frame-in-own-card-window", dropped.clone()),
        ("frame-wraps-past-2^64", dropped.clone()),
        ("frame-longer-than-65550", dropped.clone()),
        ("frame-shorter-than-headers", dropped.clone()),
        ("transmit-buffer-device-writable", dropped.clone()),
        ("offload-not-offered", dropped),
        (
            "never-posts-receive-buffers",
            json!({"rx_used": 0, "needs_reset": false, "then_round_trip": true}),
        ),
        (
            "receive-buffer-device-readable",
            json!({"returned": true, "used_len": 0, "untouched": true, "needs_reset": false, "then_round_trip": true}),
        ),
        (
            "flood",
            json!({"returned": 4096, "needs_reset": false, "then_round_trip": true}),
        ),
    ]
}

/// The `virtio_net` line partition `name`'s test guest printed for `case`.
fn probe_case(boot: &Boot, name: &str, case: &str) -> Value {
    boot.events("console")
        .into_iter()
        .filter(|c| c["partition"] == name)
        .filter_map(|c| c["line"].as_str()?.strip_prefix("guest: "))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .find(|v| v["event"] == "virtio_net" && v["case"] == case)
        .unwrap_or_else(|| {
            panic!(
                "{name} printed no virtio_net line for {case}\n{}",
                boot.context
            )
        })
}

#[test]
fn d_hostile_card_probes_get_defined_answers_beside_pinging_linux() {
    let boot = boot("hostile-network", "two-nodes");
    // No hypervisor fault, whatever the probe did.
    let fatal = boot.events("fatal");
    assert!(fatal.is_empty(), "fatal: {fatal:?}\n{}", boot.context);
    for (case, wanted) in probe_answers() {
        let line = probe_case(&boot, "prober", case);
        assert_eq!(line["ok"], true, "{case}: {line}\n{}", boot.context);
        for (key, value) in wanted.as_object().into_iter().flatten() {
            assert_eq!(
                &line[key], value,
                "{case}: {key} in {line}\n{}",
                boot.context
            );
        }
    }
    let done = boot.guest("prober", "hostile_done");
    assert_eq!(done["failed"], 0, "{done}\n{}", boot.context);
    let stopped = boot.stopped("prober");
    assert_eq!(
        (&stopped["reason"], &stopped["detail"]),
        (&json!("exit"), &json!("wrote 0 to the debug-exit port")),
        "{stopped}\n{}",
        boot.context
    );
    // The hypervisor counted each drop by its reason, and carried the flood.
    let prober = counters(&boot, "prober");
    for (counter, at_least) in [
        ("tx_dropped_outside_ram", 4),
        ("tx_dropped_too_large", 1),
        ("tx_dropped_too_short", 1),
        ("tx_dropped_malformed", 2),
        ("rx_dropped_no_buffer", 1),
        ("rx_dropped_bad_buffer", 1),
        ("tx_frames", 4096),
    ] {
        assert!(
            cases::number(&prober, counter) >= at_least,
            "prober: {counter} below {at_least}: {prober}\n{}",
            boot.context
        );
    }
    // Beside it, the Linux pair kept pinging: every echo answered, both powered off.
    for (name, peer) in [("alpha", "10.0.0.2"), ("beta", "10.0.0.1")] {
        let ping = pinged(&boot, name, peer);
        assert!(
            cases::number(&ping, "transmitted") >= 150,
            "{name}: {ping}\n{}",
            boot.context
        );
        cases::powered_off_on_its_nodes(&boot, name);
    }
}
