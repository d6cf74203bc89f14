//! The files a partition names, found and classified: `image` and `initrd` resolved by name
//! (in the guest or Linux directory) or by path (from the layout's directory) into absolute
//! paths, the image read to tell a Linux bzImage (checked by
//! [`numavisor_policy::guest::bzimage::parse`]) from a PVH ELF, and the fields that depend on
//! that kind (`docs/layout.md`, "Guest images" and "Linux guests").

use std::path::{Path, PathBuf};

use numavisor_policy::guest::bzimage;

use super::error::{PartitionLabel, Report};
use super::{LoadOptions, GUEST_DIR_ENV, LINUX_DIR_ENV, LINUX_IMAGE_NAME, LINUX_INITRD_NAME};
use crate::ImageKind;

/// `image = "linux"`: `<linux dir>/vmlinuz`; `image = "NAME"`: `<guest dir>/NAME.elf`; with a
/// `/`: a path from the layout's directory.
pub(crate) fn resolve_image(
    label: &PartitionLabel,
    image: &str,
    layout_dir: &Path,
    options: &LoadOptions,
    report: &mut Report,
) -> Option<PathBuf> {
    let by_name = if image == LINUX_IMAGE_NAME {
        (
            options.linux_dir.join("vmlinuz"),
            format!(
                "\"{LINUX_IMAGE_NAME}\" is the Linux kernel in {} (set {LINUX_DIR_ENV} to change \
                 it), which `cargo xtask build` fetches; or give a path containing '/'",
                options.linux_dir.display()
            ),
        )
    } else {
        (
            options.guest_dir.join(format!("{image}.elf")),
            format!(
                "guest images are looked up by name in {} (set {GUEST_DIR_ENV} to change it); \
                 build the guest there or give a path containing '/'",
                options.guest_dir.display()
            ),
        )
    };
    let empty = "empty; name a guest image like \"test-guest\", or give a path containing '/'";
    resolve_file(label, "image", image, empty, layout_dir, by_name, report)
}

/// `initrd = "linux-initramfs"`: `<linux dir>/initramfs.cpio`; `initrd = "NAME"`:
/// `<guest dir>/NAME.cpio`; with a `/`: a path from the layout's directory.
pub(crate) fn resolve_initrd(
    label: &PartitionLabel,
    initrd: &str,
    layout_dir: &Path,
    options: &LoadOptions,
    report: &mut Report,
) -> Option<PathBuf> {
    let by_name = if initrd == LINUX_INITRD_NAME {
        (
            options.linux_dir.join("initramfs.cpio"),
            format!(
                "\"{LINUX_INITRD_NAME}\" is the initramfs in {} (set {LINUX_DIR_ENV} to change \
                 it), which `cargo xtask build` builds; or give a path containing '/'",
                options.linux_dir.display()
            ),
        )
    } else {
        (
            options.guest_dir.join(format!("{initrd}.cpio")),
            format!(
                "initrds are looked up by name in {} (set {GUEST_DIR_ENV} to change it); put \
                 it there, use \"{LINUX_INITRD_NAME}\" or give a path containing '/'",
                options.guest_dir.display()
            ),
        )
    };
    let empty = "empty; use \"linux-initramfs\", give a path containing '/', or leave `initrd` out";
    resolve_file(label, "initrd", initrd, empty, layout_dir, by_name, report)
}

/// A file a layout names: `value` with a `/` is a path from `layout_dir`, else `by_name`
/// (its path, and how names are looked up). Returns its absolute, UTF-8 path.
fn resolve_file(
    label: &PartitionLabel,
    field: &str,
    value: &str,
    empty: &str,
    layout_dir: &Path,
    by_name: (PathBuf, String),
    report: &mut Report,
) -> Option<PathBuf> {
    if value.is_empty() {
        report.field(label, field, empty);
        return None;
    }
    let (path, how) = if value.contains('/') {
        (
            layout_dir.join(value),
            "a path containing '/' is taken from the layout file's directory".to_string(),
        )
    } else {
        by_name
    };
    let what = if field == "image" {
        "guest image"
    } else {
        "initrd"
    };
    if !path.is_file() {
        report.field(
            label,
            field,
            format!("no {what} {value:?} at {}; {how}", path.display()),
        );
        return None;
    }
    match std::fs::canonicalize(&path) {
        Ok(absolute) if absolute.to_str().is_some() => Some(absolute),
        Ok(absolute) => {
            report.field(
                label,
                field,
                format!(
                    "the {what} path {} is not UTF-8; move it to a UTF-8 path",
                    absolute.display()
                ),
            );
            None
        }
        Err(error) => {
            report.field(
                label,
                field,
                format!("cannot resolve {}: {error}", path.display()),
            );
            None
        }
    }
}

/// What the image at `path` is: a bzImage (by its boot flag and "HdrS") that must pass the
/// boot-protocol checks, else a PVH ELF (checked by the firmware when it loads it). For a
/// bzImage, also its `cmdline_size`.
pub(crate) fn image_kind(
    label: &PartitionLabel,
    path: &Path,
    report: &mut Report,
) -> Option<(ImageKind, Option<u32>)> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            report.field(
                label,
                "image",
                format!("cannot read {}: {error}", path.display()),
            );
            return None;
        }
    };
    if !bzimage::is_bzimage(&bytes) {
        return Some((ImageKind::PvhElf, None));
    }
    match bzimage::parse(&bytes) {
        Ok(image) => Some((ImageKind::LinuxBzImage, Some(image.cmdline_size))),
        Err(error) => {
            report.field(
                label,
                "image",
                format!(
                    "{} is a Linux bzImage numavisor cannot boot: {error}; use a 64-bit kernel \
                     with boot protocol 2.12 or later",
                    path.display()
                ),
            );
            None
        }
    }
}

/// An initrd only with a bzImage; a command line no longer than the bzImage reads.
pub(crate) fn check_linux_fields(
    label: &PartitionLabel,
    kind: (ImageKind, Option<u32>),
    image: &Path,
    initrd_given: bool,
    command_line: Option<&str>,
    report: &mut Report,
) {
    if kind.0 == ImageKind::PvhElf && initrd_given {
        report.field(
            label,
            "initrd",
            format!(
                "only a Linux bzImage takes an initrd, and the image {} is not one (a PVH ELF); \
                 remove `initrd` or use a bzImage",
                image.display()
            ),
        );
    }
    if let (Some(cmdline_size), Some(command_line)) = (kind.1, command_line) {
        if command_line.len() as u64 > u64::from(cmdline_size) {
            report.field(
                label,
                "command_line",
                format!(
                    "{} bytes long; the kernel {} reads at most {cmdline_size} (its cmdline_size)",
                    command_line.len(),
                    image.display()
                ),
            );
        }
    }
}
