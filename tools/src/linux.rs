//! The Linux guest material, under `<target>/linux/`: Debian's cloud kernel (`vmlinuz`, a
//! bzImage), the kernel modules it needs for its virtio devices (`modules/`, see
//! [`GUEST_MODULES`]) and a static busybox, fetched with apt, and an initramfs
//! (`initramfs.cpio`, an uncompressed newc archive our own [`cpio`] writer builds) whose
//! `/init` is [`DEFAULT_INIT`].
//! Facts about that kernel are in `/work/shared/DESIGN.md`, "Linux guests".

pub mod cpio;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use numavisor_layout::{LINUX_IMAGE_NAME, LINUX_INITRD_NAME};

use crate::paths::target_dir;
use cpio::CpioWriter;

/// The /init script for busybox sh: reports `@guest {json}` lines and runs the `nv.test=`
/// tests of the kernel command line (see the script's head).
pub const DEFAULT_INIT: &str = include_str!("linux/init.sh");

/// Debian's metapackage for the cloud kernel; it depends on `linux-image-6.1.0-N-cloud-amd64`.
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";
/// The Debian package holding a static `/bin/busybox`.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";

/// The kernel modules the guest loads at start, by name: Debian's cloud kernel (6.1) builds
/// virtio, the virtio-mmio transport, the balloon, the network driver and virtio-mem as modules
/// (`CONFIG_VIRTIO=m`, `CONFIG_VIRTIO_MMIO=m`, `CONFIG_VIRTIO_BALLOON=m`,
/// `CONFIG_VIRTIO_NET=m`, which needs `net_failover` and `failover`, `CONFIG_VIRTIO_MEM=m`),
/// and the virtio PCI transport (`CONFIG_VIRTIO_PCI=m`) for passed-through virtio functions
/// (`docs/pci.md`). Their dependencies are added and the whole set ordered by
/// [`module_load_order`].
pub const GUEST_MODULES: [&str; 5] = [
    "virtio_mmio",
    "virtio_pci",
    "virtio_balloon",
    "virtio_net",
    "virtio_mem",
];

/// The file in the initramfs (and in `<target>/linux/modules/`) naming the modules to load,
/// one a line, dependencies first; `/init` loads `/lib/modules/NAME.ko` for each.
pub const MODULE_ORDER_FILE: &str = "load-order";

/// The directories of the initramfs, parents first.
const INITRAMFS_DIRS: [&str; 12] = [
    "bin",
    "sbin",
    "proc",
    "sys",
    "dev",
    "tmp",
    "usr",
    "usr/bin",
    "usr/sbin",
    "root",
    "lib",
    "lib/modules",
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
    /// `<target>/linux/modules/NAME.ko`, uncompressed, in load order (dependencies first):
    /// [`GUEST_MODULES`] and what they depend on.
    pub modules: Vec<PathBuf>,
}

/// A QEMU command running the Linux guest material alone on `machine` (TCG, `-cpu max`,
/// 2 vCPUs, 256 MiB: a Linux partition's shape) with `command_line`, the serial console on
/// stdio, and `extra` arguments (NUMA nodes, devices): the benchmarks' plain-QEMU side.
pub fn plain_qemu_command(machine: &str, command_line: &str, extra: &[String]) -> Vec<String> {
    let dir = linux_dir();
    let mut args: Vec<String> = [
        "qemu-system-x86_64",
        "-machine",
        machine,
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-m",
        "256M",
        "-smp",
        "2",
        "-kernel",
        &dir.join("vmlinuz").display().to_string(),
        "-initrd",
        &initramfs_path().display().to_string(),
        "-append",
        command_line,
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend_from_slice(extra);
    args
}

/// Where [`fetch_debian_guest`] leaves the kernel modules.
pub fn modules_dir() -> PathBuf {
    linux_dir().join("modules")
}

/// Downloads Debian's cloud kernel, its [`GUEST_MODULES`] and static busybox (skipped when all
/// of them are there: a cache from before the modules is refreshed) and leaves them in
/// [`linux_dir`]. Uses `apt-get download` (no installing); if that fails,
/// runs `apt-get update` (as root, or through sudo) and tries once more.
pub fn fetch_debian_guest() -> Result<LinuxMaterial> {
    // One fetch at a time in this process (tests run in threads); other processes get their
    // own download folder, and files appear under their final names only when complete.
    static FETCHING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = FETCHING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = linux_dir();
    let vmlinuz = dir.join("vmlinuz");
    let busybox = dir.join("busybox");
    if vmlinuz.is_file() && busybox.is_file() {
        if let Some(modules) = cached_modules(&modules_dir()) {
            return Ok(LinuxMaterial {
                vmlinuz,
                busybox,
                modules,
            });
        }
    }
    let mut material = LinuxMaterial {
        vmlinuz,
        busybox,
        modules: Vec::new(),
    };
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
    material.modules = extract_modules(&root, &work, &modules_dir())
        .with_context(|| format!("taking the guest modules from {kernel_package}"))?;
    std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    Ok(material)
}

/// The modules [`fetch_debian_guest`] left in `dir`, in load order, if its
/// [`MODULE_ORDER_FILE`] is there and names every one of [`GUEST_MODULES`], each present.
fn cached_modules(dir: &Path) -> Option<Vec<PathBuf>> {
    let order = std::fs::read_to_string(dir.join(MODULE_ORDER_FILE)).ok()?;
    let names: Vec<&str> = order.lines().filter(|l| !l.is_empty()).collect();
    if !GUEST_MODULES.iter().all(|m| names.contains(m)) {
        return None;
    }
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(format!("{n}.ko"))).collect();
    paths.iter().all(|p| p.is_file()).then_some(paths)
}

/// Copies [`GUEST_MODULES`] and their dependencies from the unpacked kernel package at `root`
/// (`lib/modules/VERSION/kernel/**/NAME.ko`, or `.ko.xz`, decompressed through `work`) to
/// `out/NAME.ko`, writes `out/`[`MODULE_ORDER_FILE`] last, and returns the modules in load
/// order. The package ships no `modules.dep` (depmod makes it on installation), so the
/// dependencies come from each module's own `depends=` field.
fn extract_modules(root: &Path, work: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    let mut found = std::collections::BTreeMap::new();
    find_modules(&root.join("lib/modules"), &mut found)?;
    let mut contents = std::collections::BTreeMap::new();
    let mut load = |name: &str| -> Result<Vec<String>> {
        let path = found
            .get(name)
            .with_context(|| format!("the kernel package has no module {name}"))?;
        let bytes = read_module(path, work)?;
        let depends = modinfo_depends(&bytes);
        contents.insert(name.to_string(), bytes);
        Ok(depends)
    };
    let order = module_load_order(&GUEST_MODULES, &mut load)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut paths = Vec::new();
    for name in &order {
        let path = out.join(format!("{name}.ko"));
        write_replacing(&path, &contents[name])?;
        paths.push(path);
    }
    let list: String = order.iter().map(|n| format!("{n}\n")).collect();
    write_replacing(&out.join(MODULE_ORDER_FILE), list.as_bytes())?;
    Ok(paths)
}

/// Writes `bytes` to `path` through a name of its own beside it, then renamed over it: a
/// half-written file is never taken for a whole one, and two runs writing it at once do not
/// rename each other's.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = crate::paths::partial_beside(path);
    std::fs::write(&partial, bytes).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}

/// Every `NAME.ko` / `NAME.ko.xz` under `dir`, by module name.
fn find_modules(dir: &Path, found: &mut std::collections::BTreeMap<String, PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            find_modules(&path, found)?;
            continue;
        }
        let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(name) = file
            .strip_suffix(".ko")
            .or_else(|| file.strip_suffix(".ko.xz"))
        {
            found.insert(name.to_string(), path.clone());
        }
    }
    Ok(())
}

/// A module's bytes, through `xz -dc` when it is compressed.
fn read_module(path: &Path, work: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "xz") {
        let output = Command::new("xz")
            .arg("-dc")
            .arg(path)
            .current_dir(work)
            .output()
            .context("running xz")?;
        if !output.status.success() {
            bail!(
                "xz -dc {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        return Ok(output.stdout);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The `depends=` field of a module's `.modinfo` section (NUL-separated `key=value` strings):
/// the modules it needs loaded first, comma-separated, possibly none.
pub fn modinfo_depends(module: &[u8]) -> Vec<String> {
    module
        .split(|&b| b == 0)
        .find_map(|field| field.strip_prefix(b"depends="))
        .map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `wanted` and everything they depend on (by `depends_of`, called once a module), ordered so
/// that each module comes after its dependencies; a dependency cycle is an error.
pub fn module_load_order(
    wanted: &[&str],
    depends_of: &mut dyn FnMut(&str) -> Result<Vec<String>>,
) -> Result<Vec<String>> {
    fn visit(
        name: &str,
        depends_of: &mut dyn FnMut(&str) -> Result<Vec<String>>,
        visiting: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if order.iter().any(|n| n == name) {
            return Ok(());
        }
        if visiting.iter().any(|n| n == name) {
            bail!(
                "module dependency cycle: {} -> {name}",
                visiting.join(" -> ")
            );
        }
        visiting.push(name.to_string());
        for dependency in depends_of(name)? {
            visit(&dependency, depends_of, visiting, order)?;
        }
        visiting.pop();
        order.push(name.to_string());
        Ok(())
    }
    let mut order = Vec::new();
    for name in wanted {
        visit(name, depends_of, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// The kernel package in a `Depends` field like `linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)`.
pub fn kernel_package_from_depends(depends: &str) -> Option<String> {
    depends
        .split([',', '|'])
        .filter_map(|alternative| alternative.split_whitespace().next())
        .find(|name| name.starts_with("linux-image-") && *name != KERNEL_METAPACKAGE)
        .map(str::to_string)
}

/// The static programs of our own the initramfs carries in `/bin` (built by
/// [`crate::image::build_guests`] into [`crate::paths::guest_dir`]): `nv-getcpu`
/// (`tests/guests/linux-getcpu`, `nv.test=getcpu`).
pub const GUEST_PROGRAMS: &[&str] = &["nv-getcpu"];

/// Writes an initramfs to `out`: the directories [`INITRAMFS_DIRS`], `/dev/console` (5:1,
/// 0600: the kernel opens it before any devtmpfs), `/bin/busybox` (0755), `/bin/sh` →
/// `busybox`, each of `programs` as `/bin/NAME` (0755), each of `modules` as `/lib/modules/NAME.ko` (0644) with their names, in the
/// order given, in `/lib/modules/`[`MODULE_ORDER_FILE`], and `/init` (0755) holding
/// `init_script`. Uncompressed: the kernel takes a plain newc archive as it takes a gzip one.
pub fn build_initramfs(
    busybox: &Path,
    programs: &[PathBuf],
    modules: &[PathBuf],
    init_script: &str,
    out: &Path,
) -> Result<()> {
    let busybox =
        std::fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let mut archive = CpioWriter::new();
    for dir in INITRAMFS_DIRS {
        archive.directory(dir, 0o755);
    }
    archive.char_device("dev/console", 0o600, 5, 1);
    archive.file("bin/busybox", 0o755, &busybox);
    archive.symlink("bin/sh", "busybox");
    for program in programs {
        let name = program
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no UTF-8 file name", program.display()))?;
        let bytes =
            std::fs::read(program).with_context(|| format!("reading {}", program.display()))?;
        archive.file(&format!("bin/{name}"), 0o755, &bytes);
    }
    let mut order = String::new();
    for module in modules {
        let file = module
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no UTF-8 file name", module.display()))?;
        let name = file
            .strip_suffix(".ko")
            .with_context(|| format!("{} is not a .ko file", module.display()))?;
        let bytes =
            std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
        archive.file(&format!("lib/modules/{file}"), 0o644, &bytes);
        order.push_str(name);
        order.push('\n');
    }
    archive.file(
        &format!("lib/modules/{MODULE_ORDER_FILE}"),
        0o644,
        order.as_bytes(),
    );
    archive.file("init", 0o755, init_script.as_bytes());
    let bytes = archive.finish();
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    write_replacing(out, &bytes)
}

/// [`fetch_debian_guest`], then [`build_initramfs`] with [`GUEST_PROGRAMS`] and
/// [`DEFAULT_INIT`] at [`initramfs_path`] (rebuilt each time: it is quick, and follows the
/// script). The programs must have been built ([`crate::image::build_guests`]).
pub fn prepare_linux_guest() -> Result<LinuxMaterial> {
    let material = fetch_debian_guest()?;
    let programs: Vec<PathBuf> = GUEST_PROGRAMS
        .iter()
        .map(|name| crate::paths::guest_dir().join(name))
        .collect();
    if let Some(missing) = programs.iter().find(|p| !p.is_file()) {
        anyhow::bail!(
            "{} is missing: the guest programs are built with the test guest (image::build_guests)",
            missing.display()
        );
    }
    build_initramfs(
        &material.busybox,
        &programs,
        &material.modules,
        DEFAULT_INIT,
        &initramfs_path(),
    )?;
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
        let modules: Vec<PathBuf> = ["virtio_ring", "virtio_balloon"]
            .iter()
            .map(|name| {
                let path = dir.join(format!("{name}.ko"));
                std::fs::write(&path, format!("\x7fELF {name} module")).unwrap();
                path
            })
            .collect();
        let program = dir.join("nv-getcpu");
        std::fs::write(&program, b"\x7fELF nv-getcpu").unwrap();
        let out = dir.join("out/initramfs.cpio");
        build_initramfs(&busybox, &[program], &modules, DEFAULT_INIT, &out).unwrap();
        let archive = std::fs::read(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let text = String::from_utf8_lossy(&archive);
        // Every name is there, each after a newc header, and the trailer ends it.
        for name in INITRAMFS_DIRS.iter().chain(&[
            "dev/console",
            "bin/busybox",
            "bin/sh",
            "bin/nv-getcpu",
            "init",
            "lib/modules/virtio_ring.ko",
            "lib/modules/virtio_balloon.ko",
            "lib/modules/load-order",
        ]) {
            assert!(text.contains(&format!("{name}\0")), "{name} missing");
        }
        assert!(text.contains("ELF virtio_balloon module"));
        assert!(text.contains("ELF nv-getcpu"));
        assert!(text.contains("virtio_ring\nvirtio_balloon\n"), "load order");
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
            "/lib/modules/load-order",
            "insmod \"/lib/modules/$module.ko\"",
        ] {
            assert!(DEFAULT_INIT.contains(needle), "{needle} missing");
        }
        // Modules load before the first report.
        let insmod = DEFAULT_INIT.find("insmod").unwrap();
        assert!(insmod < DEFAULT_INIT.find(r#"{"event":"init"}"#).unwrap());
    }

    #[test]
    fn default_init_has_the_dynamic_memory_tests() {
        for needle in [
            "memory-idle) test_memory idle ;;",
            "memory-load) test_memory load ;;",
            r#"{\"event\":\"meminfo\",\"mode\":\"$mode\",\"seq\":$seq,"#,
            r#"{\"event\":\"memory_done\""#,
            r#"{\"event\":\"balloon_driver\""#,
            "/sys/bus/virtio/drivers/virtio_balloon",
            "MemAvailable:",
        ] {
            assert!(DEFAULT_INIT.contains(needle), "{needle} missing");
        }
        // The fill is gated on MemAvailable, so that it never runs the guest out of memory.
        assert!(DEFAULT_INIT.contains("chunk=$((available_kb / 1024 - MEMORY_RESERVE_MIB))"));
    }

    #[test]
    fn modinfo_depends_is_read() {
        let module = b"\x7fELF\0\0license=GPL\0depends=virtio,virtio_ring\0vermagic=6.1\0";
        assert_eq!(modinfo_depends(module), ["virtio", "virtio_ring"]);
        assert!(modinfo_depends(b"\0depends=\0name=virtio_ring\0").is_empty());
        assert!(modinfo_depends(b"no modinfo here").is_empty());
    }

    #[test]
    fn modules_load_after_their_dependencies() {
        // As Debian 6.1's modules declare them.
        let mut depends = |name: &str| -> Result<Vec<String>> {
            Ok(match name {
                "virtio" => vec!["virtio_ring".to_string()],
                "virtio_ring" => vec![],
                "virtio_mmio" | "virtio_balloon" | "virtio_mem" => {
                    vec!["virtio".to_string(), "virtio_ring".to_string()]
                }
                "virtio_net" => ["net_failover", "virtio", "virtio_ring"]
                    .map(str::to_string)
                    .to_vec(),
                "net_failover" => vec!["failover".to_string()],
                "failover" => vec![],
                "virtio_pci" => [
                    "virtio_pci_modern_dev",
                    "virtio_pci_legacy_dev",
                    "virtio",
                    "virtio_ring",
                ]
                .map(str::to_string)
                .to_vec(),
                "virtio_pci_modern_dev" | "virtio_pci_legacy_dev" => vec![],
                other => bail!("no module {other}"),
            })
        };
        assert_eq!(
            module_load_order(&GUEST_MODULES, &mut depends).unwrap(),
            [
                "virtio_ring",
                "virtio",
                "virtio_mmio",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio_pci",
                "virtio_balloon",
                "failover",
                "net_failover",
                "virtio_net",
                "virtio_mem"
            ]
        );
        assert!(module_load_order(&["nonesuch"], &mut depends).is_err());
        let mut cycle = |name: &str| -> Result<Vec<String>> {
            Ok(vec![if name == "a" { "b" } else { "a" }.to_string()])
        };
        let error = module_load_order(&["a"], &mut cycle).unwrap_err();
        assert!(error.to_string().contains("cycle"), "{error}");
    }

    #[test]
    fn module_cache_needs_every_guest_module() {
        let dir = std::env::temp_dir().join(format!("nv-modcache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A cache from before the modules: nothing there.
        assert_eq!(cached_modules(&dir), None);
        let names = [
            "virtio_ring",
            "virtio",
            "virtio_mmio",
            "virtio_pci_modern_dev",
            "virtio_pci_legacy_dev",
            "virtio_pci",
            "virtio_balloon",
            "failover",
            "net_failover",
            "virtio_net",
            "virtio_mem",
        ];
        let list: String = names.iter().map(|n| format!("{n}\n")).collect();
        std::fs::write(dir.join(MODULE_ORDER_FILE), &list).unwrap();
        // The list without its files.
        assert_eq!(cached_modules(&dir), None);
        for name in names {
            std::fs::write(dir.join(format!("{name}.ko")), b"ko").unwrap();
        }
        let cached = cached_modules(&dir).unwrap();
        assert_eq!(cached.len(), 11);
        assert!(cached[6].ends_with("virtio_balloon.ko"));
        assert!(cached[9].ends_with("virtio_net.ko"));
        // A list that lacks a guest module is stale.
        std::fs::write(dir.join(MODULE_ORDER_FILE), "virtio_ring\nvirtio\n").unwrap();
        assert_eq!(cached_modules(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
