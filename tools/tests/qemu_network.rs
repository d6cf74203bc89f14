//! The network between partitions, under QEMU's SVM: Debian's own Linux in partitions with
//! virtio-net cards on a switch inside the hypervisor, judged by what the guests print
//! (`@guest` lines of `/init`: their interfaces, ping's counts, the sha256 of what nc moved)
//! and by the boot report (`network`, `nic_counts`).

mod common;

use common::{cases, Boot};
use serde_json::Value;
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
        .rev()
        .find(|e| e["event"] == "nic_counts" && e["partition"] == name)
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
    // 64 MiB after the transfer's first line, "nv-transfer keep".
    let bytes = (64 << 20) + 17;
    assert_eq!(
        cases::number(&sent, "bytes"),
        bytes,
        "{sent}\n{}",
        boot.context
    );
    assert_eq!(
        cases::number(&received, "bytes"),
        bytes,
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

#[test]
fn b_broadcast_reaches_every_other_member_and_nothing_crosses_networks() {
    let boot = boot("linux-network-isolation", "two-nodes");
    network_event(
        &boot,
        "lan",
        &[
            ("alpha", "02:6e:76:00:00:00", 0),
            ("beta", "02:6e:76:00:01:00", 0),
            ("gamma", "02:6e:76:00:02:00", 1),
        ],
    );
    network_event(
        &boot,
        "other",
        &[
            ("gamma", "02:6e:76:00:02:01", 1),
            ("delta", "02:6e:76:00:03:00", 1),
        ],
    );
    pinged(&boot, "alpha", "10.0.0.2");
    // A broadcast from alpha reached both other members of lan: each answered it.
    let broadcast = boot.linux("alpha", "ping-broadcast");
    assert_eq!(
        broadcast["responders"],
        serde_json::json!(["10.0.0.2", "10.0.0.3"]),
        "{broadcast}\n{}",
        boot.context
    );
    // delta, on the other network, saw its link go down when gamma (its only peer) stopped,
    // and its kernel never received a frame; the hypervisor's count agrees.
    let link = boot.linux("delta", "link-down");
    assert_eq!(link["carrier"], 0, "{link}\n{}", boot.context);
    let stats = boot.linux("delta", "net-stats");
    assert_eq!(
        cases::number(&stats, "rx_packets"),
        0,
        "delta received frames from across the switch: {stats}\n{}",
        boot.context
    );
    let delta = counters(&boot, "delta");
    assert_eq!(
        cases::number(&delta, "rx_frames"),
        0,
        "delta {delta}\n{}",
        boot.context
    );
    for name in ["beta", "gamma"] {
        let stats = boot.linux(name, "net-stats");
        assert!(
            cases::number(&stats, "rx_packets") >= 2,
            "{name}: {stats}\n{}",
            boot.context
        );
    }
    for name in ["alpha", "beta", "gamma", "delta"] {
        cases::powered_off_on_its_nodes(&boot, name);
    }
}

#[test]
fn c_a_receiver_restarted_mid_transfer_costs_drops_only_and_the_next_transfer_succeeds() {
    let boot = boot("linux-network-restart", "two-nodes");
    // The first transfer asked beta to reboot once 8 MiB had arrived: it did, and alpha's
    // transfer ended early.
    let rebooting = boot.linux("beta", "rebooting");
    assert!(
        cases::number(&rebooting, "bytes") >= 8 << 20,
        "{rebooting}\n{}",
        boot.context
    );
    let restarted = boot
        .events("partition_restarted")
        .into_iter()
        .filter(|e| e["name"] == "beta")
        .count();
    assert_eq!(restarted, 1, "beta restarts\n{}", boot.context);
    assert!(
        boot.report.event("fatal").is_none(),
        "a hypervisor fault\n{}",
        boot.context
    );
    let sends: Vec<Value> = boot
        .console_lines("alpha")
        .iter()
        .filter_map(|l| l.strip_prefix("@guest "))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .filter(|v| v["event"] == "sent")
        .collect();
    assert_eq!(
        sends.len(),
        2,
        "alpha's transfers: {sends:?}\n{}",
        boot.context
    );
    assert_eq!(sends[0]["kind"], "reboot", "{sends:?}");
    assert_eq!(sends[0]["ok"], false, "{sends:?}\n{}", boot.context);
    // The second, after beta came back, arrived whole.
    let received = boot.linux("beta", "received");
    assert_eq!(sends[1]["kind"], "keep", "{sends:?}");
    assert_eq!(sends[1]["ok"], true, "{sends:?}\n{}", boot.context);
    assert_eq!(
        sends[1]["sha256"], received["sha256"],
        "{sends:?} {received}\n{}",
        boot.context
    );
    assert_eq!(
        cases::number(&received, "bytes"),
        cases::number(&sends[1], "bytes"),
        "{received}\n{}",
        boot.context
    );
    // What alpha sent while beta restarted was lost and sent again: the sender's TCP saw the
    // drops and retransmitted.
    assert!(
        cases::number(&sends[0], "retransmitted") >= 1,
        "{sends:?}\n{}",
        boot.context
    );
    for name in ["alpha", "beta"] {
        cases::powered_off_on_its_nodes(&boot, name);
    }
}
