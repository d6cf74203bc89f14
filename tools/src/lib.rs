//! numavisor's host tooling, as a library the `tools` binary and the QEMU tests share:
//! installing what a run needs, building the image, running it under QEMU with a named
//! topology (or under Bochs, booted by GRUB through multiboot2), reading the `@nv` boot report
//! and checking it against the topology's expectations.

pub mod bochs;
pub mod bochs_machine;
pub mod console_view;
pub mod expect;
pub mod image;
pub mod linux;
pub mod packages;
pub mod paths;
pub mod qemu;
pub mod report;
pub mod topology;

use std::path::PathBuf;

/// The workspace root (the tools crate sits one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tools/ has a parent")
        .to_path_buf()
}
