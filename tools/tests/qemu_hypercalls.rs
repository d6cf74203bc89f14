//! QEMU test of the hypercall interface (`docs/hypercalls.md`, `layouts/hypercalls.toml`):
//! discovery through CPUID, the calls a parent may make on its child, the same calls denied
//! to a partition that is not the parent, and the statuses of malformed calls.

mod common;

use common::Boot;
use serde_json::Value;

fn calls(boot: &Boot, name: &str) -> Value {
    boot.guest(name, "hypercalls")
}

#[test]
fn a_parent_reads_its_child_and_a_stranger_is_denied() {
    let boot = Boot::run("hypercalls", "two-nodes");
    let boss = calls(&boot, "boss");
    let context = &boot.context;
    assert_eq!(boss["signature"], "numavisor", "{boss}\n{context}");
    assert_eq!(boss["max_leaf"], 0x4000_0001, "{boss}");
    assert_eq!(boss["version"], 1, "{boss}");
    assert_eq!(boss["features"], 0b110_0110, "{boss}");
    assert_eq!(boss["max_code"], 6, "{boss}");
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
    assert!((1..16).contains(&balance), "{boss}");
    assert_eq!(boss["self_balance"][0], "success", "{boss}");
    // 16 MiB of guest RAM on vnode 0.
    assert_eq!(
        boss["memory"],
        serde_json::json!(["success", 4096]),
        "{boss}"
    );
    // Deposits are not carried out by this image yet (CPUID says so), malformed calls get
    // their status.
    assert_eq!(boss["deposit"], "invalid-hypercall-code", "{boss}");
    assert_eq!(boss["unaligned"], "invalid-alignment", "{boss}");
    assert_eq!(boss["bad_code"], "invalid-hypercall-code", "{boss}");
    assert_eq!(boss["bad_id"], "invalid-partition-id", "{boss}");

    let stranger = calls(&boot, "stranger");
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
    // Nothing a guest asked stopped anyone but the spinner's own time limit.
    assert_eq!(boot.stopped("worker")["reason"], "time-limit", "{context}");
    for name in ["boss", "stranger"] {
        assert_eq!(boot.stopped(name)["reason"], "exit", "{name}\n{context}");
    }
}
