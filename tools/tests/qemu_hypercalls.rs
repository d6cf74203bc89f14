//! QEMU test of the hypercall interface (`docs/hypercalls.md`, `layouts/hypercalls.toml`):
//! discovery through CPUID, the calls a parent may make on its child, the same calls denied
//! to a partition that is not the parent, and the statuses of malformed calls.

mod common;

use common::{cases, Boot};

#[test]
fn a_parent_reads_its_child_and_a_stranger_is_denied() {
    cases::parent_reads_its_child_and_a_stranger_is_denied(&Boot::run("hypercalls", "two-nodes"));
}
