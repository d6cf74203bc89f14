//! Building the numavisor image.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::workspace_root;

/// The bare-metal target the image is built for.
pub const TARGET: &str = "x86_64-unknown-none";

/// Where `build` leaves the image.
pub fn image_path() -> PathBuf {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target_dir.join(TARGET).join("release").join("numavisor")
}

/// Builds the image (release profile) and returns its path.
pub fn build() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "-q",
            "--release",
            "-p",
            "numavisor-firmware",
            "--target",
            TARGET,
        ])
        .status()
        .context("running cargo build for the image")?;
    if !status.success() {
        bail!("building the image failed");
    }
    Ok(image_path())
}
