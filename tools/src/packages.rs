//! Installing the Debian packages a run needs, when their commands are missing.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// A command we need (or, written as an absolute path, a file) and the Debian package that
/// provides it.
pub struct Needed {
    pub command: &'static str,
    pub package: &'static str,
}

/// QEMU for x86_64.
pub const QEMU: Needed = Needed {
    command: "qemu-system-x86_64",
    package: "qemu-system-x86",
};
/// Debian's OVMF build (UEFI firmware for QEMU).
pub const OVMF: Needed = Needed {
    command: crate::qemu::OVMF_CODE,
    package: "ovmf",
};
/// ACPICA's compiler/disassembler.
pub const IASL: Needed = Needed {
    command: "iasl",
    package: "acpica-tools",
};

/// What the Bochs runs need: the emulator and its BIOS images, its text display (for
/// interactive runs), and GRUB's BIOS build with the tools `grub-mkrescue` drives.
pub const BOCHS: [Needed; 8] = [
    Needed {
        command: "bochs",
        package: "bochs",
    },
    Needed {
        command: "/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_term_gui.so",
        package: "bochs-term",
    },
    Needed {
        command: "/usr/share/bochs/BIOS-bochs-latest",
        package: "bochsbios",
    },
    Needed {
        command: "/usr/share/vgabios/vgabios.bin",
        package: "vgabios",
    },
    Needed {
        command: "/usr/lib/grub/i386-pc/kernel.img",
        package: "grub-pc-bin",
    },
    Needed {
        command: "grub-mkrescue",
        package: "grub-common",
    },
    Needed {
        command: "xorriso",
        package: "xorriso",
    },
    Needed {
        command: "mformat",
        package: "mtools",
    },
];

/// Whether `command` is on the PATH (an absolute path: whether that file exists).
pub fn have(command: &str) -> bool {
    if command.starts_with('/') {
        return std::path::Path::new(command).exists();
    }
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
    let sudo = if is_root() { "" } else { "sudo " };
    // First what apt would do: it may want to remove or downgrade what the machine has (a
    // newer qemu-utils from backports, say). That is never done silently.
    let simulation = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{sudo}apt-get update -qq >/dev/null 2>&1; apt-get install -s --no-install-recommends {}",
            missing.join(" ")
        ))
        .output()
        .context("running apt-get install -s")?;
    let plan = AptPlan::parse(&String::from_utf8_lossy(&simulation.stdout));
    if !plan.removed.is_empty() && std::env::var_os(ALLOW_REMOVALS_ENV).is_none() {
        let refusal = format!(
            "installing {} would remove {} from this machine; install them yourself, or set {ALLOW_REMOVALS_ENV}=1 to let apt-get do it",
            missing.join(" "),
            plan.removed.join(", ")
        );
        // At a terminal, do as apt does: say what would go and ask. Scripts keep the refusal.
        use std::io::IsTerminal;
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            bail!(refusal);
        }
        eprint!(
            "installing {} would REMOVE these packages: {}\nDo you want to continue? [y/N] ",
            missing.join(" "),
            plan.removed.join(" ")
        );
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .context("reading the answer")?;
        if !agrees(&answer) {
            bail!(refusal);
        }
    }
    eprintln!(
        "installing Debian packages {} (with their dependencies: {})",
        missing.join(" "),
        if plan.installed.is_empty() {
            "see apt-get".to_string()
        } else {
            plan.installed.join(", ")
        }
    );
    let script = format!(
        "DEBIAN_FRONTEND=noninteractive {sudo}apt-get install -y -qq --no-install-recommends {}",
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

/// Whether a typed answer says yes (`y` or `yes`, any case), as apt takes it; anything else,
/// an empty line included, is no.
pub fn agrees(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Set to let `ensure` install even when apt-get would remove packages.
pub const ALLOW_REMOVALS_ENV: &str = "NUMAVISOR_ALLOW_APT_REMOVALS";

/// What `apt-get install -s` says it would do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AptPlan {
    /// `package (version)` for each package it would install or upgrade.
    pub installed: Vec<String>,
    /// Each package it would remove.
    pub removed: Vec<String>,
}

impl AptPlan {
    /// Reads the `Inst` and `Remv` lines of a simulation.
    pub fn parse(simulation: &str) -> AptPlan {
        let mut plan = AptPlan::default();
        for line in simulation.lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("Inst"), Some(package)) => {
                    let version = line
                        .split('(')
                        .nth(1)
                        .and_then(|v| v.split_whitespace().next())
                        .unwrap_or("?");
                    plan.installed.push(format!("{package} ({version})"));
                }
                (Some("Remv"), Some(package)) => plan.removed.push(package.to_string()),
                _ => {}
            }
        }
        plan
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_simulations_are_read() {
        let simulation = "NOTE: This is only a simulation!\n\
Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]\n\
Inst qemu-system-common (1:7.2+dfsg-7+deb12u18+b3 Debian:12.12/stable [amd64])\n\
Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.12/stable [amd64])\n\
Conf qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.12/stable [amd64])\n";
        let plan = AptPlan::parse(simulation);
        assert_eq!(plan.removed, ["qemu-utils"]);
        assert!(agrees("y\n") && agrees(" YES ") && agrees("Yes"));
        assert!(!agrees("\n") && !agrees("n") && !agrees("yep") && !agrees(""));
        assert_eq!(
            plan.installed,
            [
                "qemu-system-common (1:7.2+dfsg-7+deb12u18+b3)",
                "qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3)"
            ]
        );
        assert_eq!(AptPlan::parse(""), AptPlan::default());
    }
}
