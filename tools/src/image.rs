//! Building the numavisor image: first the guest images a layout names, then the firmware
//! with that layout embedded.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::paths::{guest_dir, images_dir, layouts_dir, partial_beside, target_dir};
use crate::{linux, workspace_root};

/// The bare-metal target the image and guests are built for.
pub const TARGET: &str = "x86_64-unknown-none";

/// The target numavisor's UEFI application is built for.
pub const EFI_TARGET: &str = "x86_64-unknown-uefi";

/// Where `build` leaves the image of the default layout.
pub fn image_path() -> PathBuf {
    target_dir().join(TARGET).join("release").join("numavisor")
}

/// The layout file `arg` names: a path to a file (anything with a `/` or ending in `.toml`),
/// else `layouts/NAME.toml`; without `arg`, `$NUMAVISOR_LAYOUT`, else `layouts/default.toml`.
/// A relative path is taken from the current directory, or else from the workspace root (as
/// the firmware's build script reads `$NUMAVISOR_LAYOUT`).
pub fn resolve_layout(arg: Option<&str>) -> Result<PathBuf> {
    let from_env = std::env::var(numavisor_layout::LAYOUT_ENV)
        .ok()
        .filter(|v| !v.is_empty());
    let path = match arg.or(from_env.as_deref()) {
        Some(given) if given.contains('/') || given.ends_with(".toml") => {
            let path = PathBuf::from(given);
            if path.is_relative() && !path.exists() {
                workspace_root().join(path)
            } else {
                path
            }
        }
        Some(name) => layouts_dir().join(format!("{name}.toml")),
        None => layouts_dir().join("default.toml"),
    };
    if !path.is_file() {
        bail!(
            "no layout file {} (give a name from layouts/ or a path to a layout file)",
            path.display()
        );
    }
    Ok(path)
}

fn cargo(args: &[&str], envs: &[(&str, &Path)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, *v)))
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Builds the guest images (the test guest) and the Linux guest's own programs
/// ([`crate::linux::GUEST_PROGRAMS`], static executables of the same bare-metal target) into
/// [`guest_dir`]; returns the test guest's path.
pub fn build_guests() -> Result<PathBuf> {
    crate::packages::ensure_toolchain(TARGET, &[])?;
    cargo(
        &[
            "build",
            "-q",
            "--release",
            "-p",
            "numavisor-test-guest",
            "-p",
            "numavisor-linux-getcpu",
            "--target",
            TARGET,
        ],
        &[],
    )?;
    let built = target_dir().join(TARGET).join("release");
    let dir = guest_dir();
    std::fs::create_dir_all(&dir)?;
    let copy = |from: &str, to: &str| -> Result<PathBuf> {
        let to = dir.join(to);
        replace_with_copy(&built.join(from), &to)?;
        Ok(to)
    };
    for program in crate::linux::GUEST_PROGRAMS {
        copy(program, program)?;
    }
    copy("test-guest", "test-guest.elf")
}

/// Builds numavisor's UEFI application (`firmware/efi`) around the image `elf` and returns a
/// copy beside it (`numavisor-LAYOUT.efi`). The application embeds the image: one file to put
/// on an EFI system partition or hand to OVMF's `-kernel`.
pub fn build_efi(elf: &Path) -> Result<PathBuf> {
    crate::packages::ensure_toolchain(EFI_TARGET, &[])?;
    let elf = elf
        .canonicalize()
        .with_context(|| format!("image {}", elf.display()))?;
    cargo(
        &[
            "build",
            "-q",
            "--release",
            "-p",
            "numavisor-efi",
            "--target",
            EFI_TARGET,
        ],
        &[("NUMAVISOR_ELF", &elf)],
    )?;
    let built = target_dir()
        .join(EFI_TARGET)
        .join("release")
        .join("numavisor.efi");
    let copy = elf.with_extension("efi");
    replace_with_copy(&built, &copy)?;
    Ok(copy)
}

/// Puts a copy of `from` at `to` in one step: written beside it under a name of its own, then
/// renamed over it. A test's QEMU may be reading `to` (its `-kernel`) while another test of the
/// same binary rebuilds it; copying in place would truncate the file under that reader
/// (QEMU: "fread() failed"), while a reader of the old file keeps it whole across a rename.
fn replace_with_copy(from: &Path, to: &Path) -> Result<()> {
    let partial = partial_beside(to);
    std::fs::copy(from, &partial)
        .with_context(|| format!("copying {} to {}", from.display(), partial.display()))?;
    std::fs::rename(&partial, to)
        .with_context(|| format!("renaming {} to {}", partial.display(), to.display()))
}

/// Builds the coreboot test loader (`tests/guests/coreboot-loader`, a PVH kernel that boots
/// its `-initrd` as coreboot's `selfboot` would) and returns its path.
pub fn build_coreboot_loader() -> Result<PathBuf> {
    crate::packages::ensure_toolchain(TARGET, &[])?;
    cargo(
        &[
            "build",
            "-q",
            "--release",
            "-p",
            "numavisor-coreboot-loader",
            "--target",
            TARGET,
        ],
        &[],
    )?;
    Ok(target_dir()
        .join(TARGET)
        .join("release")
        .join("coreboot-loader"))
}

/// A copy of the layout at `layout` (under the target directory) whose `boot_options` are
/// `options`, for boot paths without a command line (coreboot); the layout itself if it
/// sets `boot_options` already. Guest images named by path stay relative to the original.
pub fn layout_with_boot_options(layout: &Path, options: &str) -> Result<PathBuf> {
    let text = std::fs::read_to_string(layout)
        .with_context(|| format!("reading layout {}", layout.display()))?;
    if text
        .lines()
        .any(|l| l.trim_start().starts_with("boot_options"))
    {
        return Ok(layout.to_path_buf());
    }
    let stem = layout
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("layout");
    let dir = target_dir().join("layouts");
    std::fs::create_dir_all(&dir)?;
    let derived = dir.join(format!("{stem}.toml"));
    std::fs::write(
        &derived,
        format!(
            "# {} with boot_options added by `cargo xtask` (coreboot gives no command line)\nboot_options = {:?}\n{text}",
            layout.display(),
            options.trim()
        ),
    )?;
    Ok(derived)
}

/// Builds the image with the default layout and returns its path.
pub fn build() -> Result<PathBuf> {
    build_with_layout(&layouts_dir().join("default.toml"))
}

/// Builds the image with `layout` embedded; returns a copy named after the layout (so images
/// of several layouts can coexist), or the plain path for the default layout. A layout that
/// names the Linux material ([`linux::layout_uses_linux`]) gets it first: the Debian kernel
/// and busybox fetched (once, cached) and the initramfs rebuilt with
/// [`linux::DEFAULT_INIT`].
pub fn build_with_layout(layout: &Path) -> Result<PathBuf> {
    build_guests()?;
    let layout = layout
        .canonicalize()
        .with_context(|| format!("layout {}", layout.display()))?;
    let text = std::fs::read_to_string(&layout)
        .with_context(|| format!("reading layout {}", layout.display()))?;
    if linux::layout_uses_linux(&text) {
        linux::prepare_linux_guest().context("preparing the Linux guest material")?;
    }
    build_firmware(&layout, &target_dir())
}

/// Builds an image for each of `layouts`, two at a time (the firmware builds on one core,
/// and a layout's image is a build of its own): the guests and the Linux material first,
/// once, then two workers, each with a target folder of its own. Returns the images' paths
/// in the order of `layouts`.
pub fn build_with_layouts(layouts: &[PathBuf]) -> Result<Vec<PathBuf>> {
    build_guests()?;
    linux::prepare_linux_guest().context("preparing the Linux guest material")?;
    let layouts: Vec<PathBuf> = layouts
        .iter()
        .map(|l| {
            l.canonicalize()
                .with_context(|| format!("layout {}", l.display()))
        })
        .collect::<Result<_>>()?;
    let second = target_dir().join("second-builder");
    let halves: [(PathBuf, Vec<(usize, &PathBuf)>); 2] = [
        (
            target_dir(),
            layouts.iter().enumerate().step_by(2).collect(),
        ),
        (
            second,
            layouts.iter().enumerate().skip(1).step_by(2).collect(),
        ),
    ];
    let mut built: Vec<(usize, PathBuf)> = std::thread::scope(|scope| {
        let workers: Vec<_> = halves
            .iter()
            .map(|(target, share)| {
                scope.spawn(move || -> Result<Vec<(usize, PathBuf)>> {
                    share
                        .iter()
                        .map(|&(index, layout)| Ok((index, build_firmware(layout, target)?)))
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| bail!("an image builder panicked"))
            })
            .collect::<Result<Vec<_>>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    built.sort();
    Ok(built.into_iter().map(|(_, path)| path).collect())
}

/// The firmware with `layout` (canonical; its guests and Linux material ready) embedded,
/// built in `target`, copied to `images/numavisor-NAME.elf`.
fn build_firmware(layout: &Path, target: &Path) -> Result<PathBuf> {
    cargo(
        &[
            "build",
            "-q",
            "--release",
            "-p",
            "numavisor-firmware",
            "--target",
            TARGET,
        ],
        &[
            ("NUMAVISOR_LAYOUT", layout),
            ("NUMAVISOR_GUEST_DIR", &guest_dir()),
            ("NUMAVISOR_LINUX_DIR", &linux::linux_dir()),
            ("CARGO_TARGET_DIR", target),
        ],
    )?;
    let name = layout
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("layout");
    let copy = images_dir().join(format!("numavisor-{name}.elf"));
    std::fs::create_dir_all(copy.parent().expect("images dir"))?;
    replace_with_copy(
        &target.join(TARGET).join("release").join("numavisor"),
        &copy,
    )?;
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_named_or_given_by_path() {
        let named = resolve_layout(Some("spanning")).unwrap();
        assert_eq!(named, layouts_dir().join("spanning.toml"));
        // A path relative to the workspace root works from anywhere (the tests run in tools/).
        let by_path = resolve_layout(Some("layouts/spanning.toml")).unwrap();
        assert!(by_path.ends_with("layouts/spanning.toml") && by_path.is_file());
        let absolute = layouts_dir().join("spin.toml");
        assert_eq!(
            resolve_layout(Some(absolute.to_str().unwrap())).unwrap(),
            absolute
        );
        let missing = resolve_layout(Some("no-such-layout")).unwrap_err();
        assert!(
            missing.to_string().contains("no-such-layout.toml"),
            "{missing}"
        );
    }
}
