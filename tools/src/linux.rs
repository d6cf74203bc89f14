//! The Linux guest material, under `<target>/linux/`: Debian's cloud kernel (`vmlinuz`, a
//! bzImage) and a static busybox, fetched with apt, and an initramfs (`initramfs.cpio`, an
//! uncompressed newc archive our own [`cpio`] writer builds) whose `/init` is [`DEFAULT_INIT`].
//! Facts about that kernel are in `/work/shared/DESIGN.md`, "Linux guests".

pub mod cpio;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use numavisor_layout::{LINUX_IMAGE_NAME, LINUX_INITRD_NAME};

use crate::image::target_dir;
use cpio::CpioWriter;

/// The /init script for busybox sh: reports `@guest {json}` lines and runs the `nv.test=`
/// tests of the kernel command line (see the script's head).
pub const DEFAULT_INIT: &str = include_str!("linux/init.sh");

/// Debian's metapackage for the cloud kernel; it depends on `linux-image-6.1.0-N-cloud-amd64`.
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";
/// The Debian package holding a static `/bin/busybox`.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";

/// The directories of the initramfs, parents first.
const INITRAMFS_DIRS: [&str; 10] = [
    "bin", "sbin", "proc", "sys", "dev", "tmp", "usr", "usr/bin", "usr/sbin", "root",
];

/// Where the Linux material lives: `<target>/linux`.
pub fn linux_dir() -> PathBuf {
    target_dir().join("linux")
}

/// The initramfs layouts name as `initrd = "linux-initramfs"`.
pub fn initramfs_path() -> PathBuf {
    linux_dir().join("initramfs.cpio")
}

/// What [`fetch_debian_guest`] leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxMaterial {
    /// `<target>/linux/vmlinuz`, from the kernel package's `/boot/vmlinuz-*`.
    pub vmlinuz: PathBuf,
    /// `<target>/linux/busybox`, from `busybox-static`'s `/bin/busybox`.
    pub busybox: PathBuf,
}

/// Downloads Debian's cloud kernel and static busybox (skipped when both files are there)
/// and leaves them in [`linux_dir`]. Uses `apt-get download` (no installing); if that fails,
/// runs `apt-get update` (as root, or through sudo) and tries once more.
pub fn fetch_debian_guest() -> Result<LinuxMaterial> {
    // One fetch at a time in this process (tests run in threads); other processes get their
    // own download folder, and files appear under their final names only when complete.
    static FETCHING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = FETCHING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = linux_dir();
    let material = LinuxMaterial {
        vmlinuz: dir.join("vmlinuz"),
        busybox: dir.join("busybox"),
    };
    if material.vmlinuz.is_file() && material.busybox.is_file() {
        return Ok(material);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let work = target_dir().join(format!("linux-download-{}", std::process::id()));
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    eprintln!("downloading the Linux guest material ({KERNEL_METAPACKAGE}, {BUSYBOX_PACKAGE})");
    apt_download(&work, &[KERNEL_METAPACKAGE, BUSYBOX_PACKAGE])?;
    let metapackage = deb_named(&work, KERNEL_METAPACKAGE)?;
    let depends = dpkg_deb(&["-f", path_str(&metapackage)?, "Depends"])?;
    let kernel_package = kernel_package_from_depends(&depends).with_context(|| {
        format!("{KERNEL_METAPACKAGE} depends on no linux-image package: {depends:?}")
    })?;
    apt_download(&work, &[&kernel_package])?;
    let root = work.join("root");
    for package in [kernel_package.as_str(), BUSYBOX_PACKAGE] {
        let deb = deb_named(&work, package)?;
        dpkg_deb(&["-x", path_str(&deb)?, path_str(&root)?])?;
    }
    let boot = root.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .with_context(|| format!("reading {}", boot.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .with_context(|| format!("{kernel_package} holds no /boot/vmlinuz-*"))?;
    install(&vmlinuz, &material.vmlinuz, 0o644)?;
    install(&root.join("bin/busybox"), &material.busybox, 0o755)?;
    std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    Ok(material)
}

/// The kernel package in a `Depends` field like `linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)`.
pub fn kernel_package_from_depends(depends: &str) -> Option<String> {
    depends
        .split([',', '|'])
        .filter_map(|alternative| alternative.split_whitespace().next())
        .find(|name| name.starts_with("linux-image-") && *name != KERNEL_METAPACKAGE)
        .map(str::to_string)
}

/// Writes an initramfs to `out`: the directories [`INITRAMFS_DIRS`], `/dev/console` (5:1,
/// 0600: the kernel opens it before any devtmpfs), `/bin/busybox` (0755), `/bin/sh` →
/// `busybox`, and `/init` (0755) holding `init_script`. Uncompressed: the kernel takes a
/// plain newc archive as it takes a gzip one.
pub fn build_initramfs(busybox: &Path, init_script: &str, out: &Path) -> Result<()> {
    let busybox =
        std::fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let mut archive = CpioWriter::new();
    for dir in INITRAMFS_DIRS {
        archive.directory(dir, 0o755);
    }
    archive.char_device("dev/console", 0o600, 5, 1);
    archive.file("bin/busybox", 0o755, &busybox);
    archive.symlink("bin/sh", "busybox");
    archive.file("init", 0o755, init_script.as_bytes());
    let bytes = archive.finish();
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    // Through a temporary name, so that a half-written archive is never taken for one.
    let partial = out.with_extension("cpio.partial");
    std::fs::write(&partial, bytes).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// [`fetch_debian_guest`], then [`build_initramfs`] with [`DEFAULT_INIT`] at
/// [`initramfs_path`] (rebuilt each time: it is quick, and follows the script).
pub fn prepare_linux_guest() -> Result<LinuxMaterial> {
    let material = fetch_debian_guest()?;
    build_initramfs(&material.busybox, DEFAULT_INIT, &initramfs_path())?;
    Ok(material)
}

/// Whether a layout (its TOML text) names the Linux material: a partition with
/// `image = "linux"` or `initrd = "linux-initramfs"`, or a path ending in `linux/vmlinuz` or
/// `linux/initramfs.cpio` (like `../target/linux/vmlinuz`). Unreadable TOML: `false` (the
/// layout check reports it).
pub fn layout_uses_linux(layout: &str) -> bool {
    let Ok(table) = layout.parse::<toml::Table>() else {
        return false;
    };
    let Some(toml::Value::Array(partitions)) = table.get("partition") else {
        return false;
    };
    let names = |key: &str, name: &str, file: &str| {
        partitions.iter().any(|partition| {
            partition
                .get(key)
                .and_then(toml::Value::as_str)
                .is_some_and(|value| value == name || value.ends_with(&format!("linux/{file}")))
        })
    };
    names("image", LINUX_IMAGE_NAME, "vmlinuz")
        || names("initrd", LINUX_INITRD_NAME, "initramfs.cpio")
}

/// `apt-get download PACKAGES` in `dir`; on failure `apt-get update` and once more.
fn apt_download(dir: &Path, packages: &[&str]) -> Result<()> {
    let download = || {
        Command::new("apt-get")
            .current_dir(dir)
            .arg("download")
            .arg("-q")
            .args(packages)
            .status()
            .context("running apt-get download")
    };
    if download()?.success() {
        return Ok(());
    }
    eprintln!("apt-get download failed; running apt-get update and trying again");
    let sudo = if crate::packages::is_root() {
        ""
    } else {
        "sudo "
    };
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{sudo}apt-get update -qq"))
        .status()
        .context("running apt-get update")?;
    if !status.success() {
        bail!("apt-get update failed");
    }
    if !download()?.success() {
        bail!("apt-get download {} failed", packages.join(" "));
    }
    Ok(())
}

/// The `.deb` of `package` in `dir` (apt names them `PACKAGE_VERSION_ARCH.deb`).
fn deb_named(dir: &Path, package: &str) -> Result<PathBuf> {
    let prefix = format!("{package}_");
    std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .with_context(|| {
            format!(
                "apt-get download left no {prefix}*.deb in {}",
                dir.display()
            )
        })
}

fn dpkg_deb(args: &[&str]) -> Result<String> {
    let output = Command::new("dpkg-deb")
        .args(args)
        .output()
        .context("running dpkg-deb")?;
    if !output.status.success() {
        bail!(
            "dpkg-deb {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Copies `from` to `to` with `mode`, through a temporary name (the cache check looks only
/// at whether `to` exists).
fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let partial = to.with_extension(format!("partial-{}", std::process::id()));
    std::fs::copy(from, &partial)
        .with_context(|| format!("copying {} to {}", from.display(), partial.display()))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&partial, to).with_context(|| format!("writing {}", to.display()))?;
    Ok(())
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not a UTF-8 path", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_naming_linux_are_recognised() {
        let partition = |fields: &str| format!("[[partition]]\nname = \"a\"\n{fields}\n");
        assert!(layout_uses_linux(&partition("image = \"linux\"")));
        assert!(layout_uses_linux(&partition(
            "image = \"k/bzImage\"\ninitrd = \"linux-initramfs\""
        )));
        assert!(layout_uses_linux(&partition(
            "image = \"../target/linux/vmlinuz\""
        )));
        assert!(!layout_uses_linux(&partition("image = \"test-guest\"")));
        assert!(!layout_uses_linux("not toml ["));
        let read = |name: &str| {
            std::fs::read_to_string(crate::workspace_root().join("layouts").join(name)).unwrap()
        };
        assert!(layout_uses_linux(&read("default.toml")));
        assert!(!layout_uses_linux(&read("test-guests.toml")));
    }

    #[test]
    fn kernel_package_is_found_in_depends() {
        assert_eq!(
            kernel_package_from_depends("linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)")
                .as_deref(),
            Some("linux-image-6.1.0-57-cloud-amd64")
        );
        assert_eq!(
            kernel_package_from_depends("foo, linux-image-6.1.0-9-cloud-amd64-unsigned | bar")
                .as_deref(),
            Some("linux-image-6.1.0-9-cloud-amd64-unsigned")
        );
        assert_eq!(kernel_package_from_depends("libc6 (>= 2.34)"), None);
    }

    #[test]
    fn initramfs_holds_the_tree() {
        let dir = std::env::temp_dir().join(format!("nv-initramfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let busybox = dir.join("busybox");
        std::fs::write(&busybox, b"\x7fELF busybox").unwrap();
        let out = dir.join("out/initramfs.cpio");
        build_initramfs(&busybox, DEFAULT_INIT, &out).unwrap();
        let archive = std::fs::read(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let text = String::from_utf8_lossy(&archive);
        // Every name is there, each after a newc header, and the trailer ends it.
        for name in INITRAMFS_DIRS
            .iter()
            .chain(&["dev/console", "bin/busybox", "bin/sh", "init"])
        {
            assert!(text.contains(&format!("{name}\0")), "{name} missing");
        }
        assert!(archive.starts_with(cpio::NEWC_MAGIC));
        assert!(text.contains(DEFAULT_INIT));
        assert!(text.contains("TRAILER!!!\0"));
        assert_eq!(archive.len() % 4, 0);
    }

    #[test]
    fn default_init_reports_and_ends_in_a_shell() {
        assert!(DEFAULT_INIT.starts_with("#!/bin/sh\n"));
        for needle in [
            "@guest ",
            r#"{"event":"init"}"#,
            r#"\"event\":\"linux\""#,
            "nv.test=",
            "poweroff -f",
            "reboot -f",
            "exec setsid cttyhack sh",
        ] {
            assert!(DEFAULT_INIT.contains(needle), "{needle} missing");
        }
    }
}
