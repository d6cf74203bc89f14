//! Where the tools find and keep things: Cargo's target directory and the folders they use
//! under it, and the workspace's layouts folder. Every module that builds or runs something
//! takes its paths from here.

use std::path::{Path, PathBuf};

use crate::workspace_root;

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The folder layouts find guest images in (`image = "NAME"` → `NAME.elf`).
pub fn guest_dir() -> PathBuf {
    target_dir().join("guests")
}

/// Where images of named layouts are kept (`numavisor-LAYOUT.elf`).
pub fn images_dir() -> PathBuf {
    target_dir().join("images")
}

/// The layouts folder.
pub fn layouts_dir() -> PathBuf {
    workspace_root().join("layouts")
}

/// A name beside `to` that no other writer uses (this process's id and a counter), for writing
/// a file there and renaming it over `to`: concurrent runs in one tree (two tests, two
/// `cargo xtask run`s) each rename a whole file of their own, and a reader never sees half
/// of one.
pub fn partial_beside(to: &Path) -> PathBuf {
    static PARTIALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PARTIALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut partial = to.as_os_str().to_owned();
    partial.push(format!(".partial-{}-{n}", std::process::id()));
    PathBuf::from(partial)
}
