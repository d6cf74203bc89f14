//! QEMU test of zero-on-map (`docs/dynamic-memory.md`, `layouts/scrub.toml`): a guest that
//! drives its own virtio balloon gets back only zeroed pages, after a neighbour on its node
//! has left its pages to free memory full of a pattern.

mod common;

use common::{cases, Boot};

#[test]
fn a_deflated_page_reads_zero_even_after_a_neighbour_filled_the_node() {
    cases::deflated_pages_are_zeroed(&Boot::run("scrub", "two-nodes"), 10_000);
}
