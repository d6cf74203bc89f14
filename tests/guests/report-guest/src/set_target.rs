//! `mode=set-target target=ID vnode=V bytes=N`: a parent that sets its child's memory target
//! (hypercall 7, `docs/hypercalls.md`) and watches the child reach it. It sets vnode `V` of
//! partition `target` to hold `N` bytes (above the vnode's `size`, virtio-mem plugs the rest),
//! then reads the vnode's memory (hypercall 6) until it holds the target, and prints one
//! `set_target` event: the call's status and the target it set, the most the vnode held and
//! how many reads that took. Exits 0 when the target was reached; 1 when a call is refused or
//! the child stopped first.

use numavisor_policy::hypercall::abi::{Status, ALL_NODES};

use crate::console::{exit, report, Json};
use crate::hypercalls::{call, status};

const GET_MEMORY_INFO: u64 = 6;
const SET_MEMORY_TARGET: u64 = 7;
const PAGE: u64 = 4096;

/// The loop (see the module note).
pub fn run(target: Option<u64>, vnode: Option<u64>, bytes: Option<u64>) -> ! {
    let (Some(target), Some(vnode), Some(bytes)) = (target, vnode, bytes) else {
        finish("target=, vnode= and bytes= are needed", 0, 0, 0, 0, 1)
    };
    let (code, set, _) = call(SET_MEMORY_TARGET, target, vnode, bytes);
    if Status::from_code(code) != Some(Status::Success) {
        finish("set memory target was refused", code, set, 0, 0, 1);
    }
    let mut held = 0;
    let mut reads: u64 = 0;
    loop {
        let (code, mapped, _) = call(GET_MEMORY_INFO, target, vnode, ALL_NODES);
        if Status::from_code(code) != Some(Status::Success) {
            finish(
                "the child's memory could not be read",
                code,
                set,
                held,
                reads,
                1,
            );
        }
        reads += 1;
        held = held.max(mapped * PAGE);
        if held >= set {
            finish("", code, set, held, reads, 0);
        }
        core::hint::spin_loop();
    }
}

fn finish(error: &str, code: u64, set: u64, held: u64, reads: u64, status_code: u32) -> ! {
    let error = if error.is_empty() {
        alloc::string::String::new()
    } else {
        alloc::format!(",\"error\":{}", Json(error))
    };
    report!(
        "{{\"event\":\"set_target\",\"status\":{},\"set\":{set},\"held\":{held},\"reads\":{reads}{error}}}",
        Json(status(code))
    );
    exit(status_code)
}
