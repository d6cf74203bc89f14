//! QEMU test of two vCPUs of one partition moving pages at the same time
//! (`layouts/concurrent-moves.toml`, test guest `mode=hostile probe=concurrent-moves`): a
//! balloon inflate/deflate loop on one vCPU and a deposit/withdraw loop on the other. Before
//! the memory catch-up acknowledged for the waiting vCPU, the two met in the catch-up within
//! a few rounds and waited for each other for ever, inside the hypervisor, where no time
//! limit reaches: the run never ends, and this test fails on its own timeout.

mod common;

use common::{cases, Boot};
use tools::qemu;

/// Rounds each loop makes (the layout's `count=`).
const ROUNDS: u64 = 500;
/// Seconds the boot may take (about 60 s here, the image build included).
const TIMEOUT: u64 = 300;

#[test]
fn two_vcpus_moving_pages_at_once_both_finish_and_the_neighbours_go_on() {
    let boot = common::run_or_explain_hang(
        || {
            Boot::run_with("concurrent-moves", "two-nodes", TIMEOUT, |_| {
                qemu::Reply::Continue
            })
        },
        "movers' two vCPUs never finished moving pages: a vCPU hangs inside the hypervisor \
         (the memory catch-up deadlock: each vCPU waits for the other to acknowledge)",
    );
    cases::concurrent_moves_finish_and_the_neighbours_go_on(&boot, ROUNDS);
}
