//! Installing the Debian packages a run needs, when their commands are missing.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// A command we need and the Debian package that provides it.
pub struct Needed {
    pub command: &'static str,
    pub package: &'static str,
}

/// QEMU for x86_64.
pub const QEMU: Needed = Needed {
    command: "qemu-system-x86_64",
    package: "qemu-system-x86",
};
/// ACPICA's compiler/disassembler.
pub const IASL: Needed = Needed {
    command: "iasl",
    package: "acpica-tools",
};

/// Whether `command` is on the PATH.
pub fn have(command: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {command} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Installs the packages for every missing command with apt-get (as root, or through sudo).
pub fn ensure(needed: &[Needed]) -> Result<()> {
    let missing: Vec<&str> = needed
        .iter()
        .filter(|n| !have(n.command))
        .map(|n| n.package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing Debian packages: {}", missing.join(" "));
    let sudo = if is_root() { "" } else { "sudo " };
    let script = format!(
        "{sudo}apt-get update -qq && DEBIAN_FRONTEND=noninteractive {sudo}apt-get install -y -qq --no-install-recommends {}",
        missing.join(" ")
    );
    let status = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!(
            "could not install {} (apt-get failed; install them by hand)",
            missing.join(" ")
        );
    }
    for n in needed {
        if !have(n.command) {
            bail!(
                "{} is still missing after installing {}",
                n.command,
                n.package
            );
        }
    }
    Ok(())
}

/// Whether we run as root (else apt-get goes through sudo).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure the pinned toolchain has the bare-metal target and the gates' components.
///
/// A machine may already have `rust-toolchain.toml`'s toolchain without its `targets` and
/// `components` (rustup adds those only when it installs the toolchain itself), so a first
/// `cargo xtask run` would fail with "can't find crate for `core`". `rustup target add` and
/// `rustup component add` are no-ops when they are present.
pub fn ensure_toolchain(target: &str, components: &[&str]) -> Result<()> {
    if !have("rustup") {
        // A toolchain not managed by rustup: the build says what is missing, if anything.
        return Ok(());
    }
    let installed = Command::new("rustup")
        .current_dir(crate::workspace_root())
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup target list")?;
    let installed = String::from_utf8_lossy(&installed.stdout);
    if !installed.lines().any(|l| l.trim() == target) {
        eprintln!("installing the Rust target {target} for the pinned toolchain");
        rustup(&["target", "add", target])?;
    }
    if !components.is_empty() {
        let listed = Command::new("rustup")
            .current_dir(crate::workspace_root())
            .args(["component", "list", "--installed"])
            .output()
            .context("running rustup component list")?;
        let listed = String::from_utf8_lossy(&listed.stdout);
        let missing: Vec<&str> = components
            .iter()
            .copied()
            .filter(|c| !listed.lines().any(|l| l.starts_with(&format!("{c}-"))))
            .collect();
        if !missing.is_empty() {
            eprintln!("installing Rust components {}", missing.join(" "));
            let mut args = vec!["component", "add"];
            args.extend(missing);
            rustup(&args)?;
        }
    }
    Ok(())
}

fn rustup(args: &[&str]) -> Result<()> {
    let status = Command::new("rustup")
        .current_dir(crate::workspace_root())
        .args(args)
        .status()
        .with_context(|| format!("running rustup {}", args.join(" ")))?;
    if !status.success() {
        bail!("rustup {} failed", args.join(" "));
    }
    Ok(())
}
