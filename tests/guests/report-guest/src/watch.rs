//! `mode=watch target=ID|self [until=N]`: a neighbour that keeps calling the hypervisor while
//! others move pages, to show it is not held up by them (`probe=concurrent-moves`). Each
//! round it reads partition `target`'s balance (hypercall 5, which takes the hypervisor's
//! pool bank) and its vnode 0 memory (hypercall 6, its state lock). It ends when `target` has
//! stopped (invalid-partition-id), or when `until=N` pages of `target`'s pool came from its
//! parent; then it prints one `watch` event (rounds made, and in how many of them pages were
//! away: deposited into the target's pool, or given up by the target's balloon or its
//! deposits) and exits 0. Any other status prints the event with it and exits 1.

use numavisor_policy::hypercall::abi::{Status, ALL_NODES, PARTITION_SELF};

use crate::console::{exit, report, Json};
use crate::hypercalls::{call, status};

const GET_BALANCE: u64 = 5;
const GET_MEMORY_INFO: u64 = 6;

/// The loop (see the module note); `target` is a partition ID or `self`.
pub fn run(target: Option<&str>, until: Option<u64>) -> ! {
    let id = match target {
        Some("self") => PARTITION_SELF,
        Some(text) => match crate::start::parse_number(text) {
            Some(id) => id,
            None => fail("target= is neither a number nor self", u64::MAX),
        },
        None => fail("target= is missing", u64::MAX),
    };
    let mut rounds: u64 = 0;
    let mut moving: u64 = 0;
    let ended = loop {
        let (code, _, from_parent) = call(GET_BALANCE, id, ALL_NODES, 0);
        match Status::from_code(code) {
            Some(Status::Success) => {}
            Some(Status::InvalidPartitionId) if id != PARTITION_SELF => break "stopped",
            _ => fail("get balance was refused", code),
        }
        let (code, _, given_up) = call(GET_MEMORY_INFO, id, 0, ALL_NODES);
        match Status::from_code(code) {
            Some(Status::Success) => {}
            Some(Status::InvalidPartitionId) if id != PARTITION_SELF => break "stopped",
            _ => fail("get memory info was refused", code),
        }
        rounds += 1;
        if from_parent != 0 || given_up != 0 {
            moving += 1;
        }
        if until == Some(from_parent) {
            break "until";
        }
    };
    report!("{{\"event\":\"watch\",\"target\":{id},\"rounds\":{rounds},\"moving\":{moving},\"ended\":\"{ended}\"}}");
    exit(0)
}

fn fail(message: &str, code: u64) -> ! {
    report!(
        "{{\"event\":\"watch\",\"error\":{},\"status\":{}}}",
        Json(message),
        Json(status(code))
    );
    exit(1)
}
