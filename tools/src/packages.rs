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

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
