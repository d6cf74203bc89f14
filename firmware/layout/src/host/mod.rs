//! The host side of layouts (feature `host`): read a layout file, check it into a
//! [`CheckedLayout`], emit it as Rust. The stages follow Hubris's `app.toml` handling: TOML into
//! a raw form that refuses unknown keys ([`parse`]), the raw form checked into the validated
//! form with every error collected ([`check`]), the validated form written as static tables
//! ([`emit`]).

mod check;
mod emit;
mod error;
mod files;
mod names;
mod network;
mod parse;
mod size;
mod toml_value;

use std::path::{Path, PathBuf};

pub use emit::{emit_rust, generate_for_build};
pub use error::{LayoutError, LayoutErrors, NetworkLabel, PartitionLabel};

use numavisor_policy::memory::PAGE_SIZE;
use numavisor_policy::partition::cost;

use crate::{BlockSize, ConsoleMode, ExitAction, ImageKind, NicSpec, VnodeSpec};
use error::Report;

/// The environment variable naming the layout the firmware build embeds (a path, relative
/// paths taken from the workspace root); unset: `layouts/default.toml`.
pub const LAYOUT_ENV: &str = "NUMAVISOR_LAYOUT";
/// The environment variable naming the directory guest images are looked up in by name;
/// unset: `<target dir>/guests`.
pub const GUEST_DIR_ENV: &str = "NUMAVISOR_GUEST_DIR";
/// The environment variable naming the directory of the Linux guest material (`vmlinuz`,
/// `initramfs.cpio`); unset: `<target dir>/linux`.
pub const LINUX_DIR_ENV: &str = "NUMAVISOR_LINUX_DIR";
/// `image = "linux"`: the Linux kernel `<linux dir>/vmlinuz`.
pub const LINUX_IMAGE_NAME: &str = "linux";
/// `initrd = "linux-initramfs"`: the initramfs `<linux dir>/initramfs.cpio`.
pub const LINUX_INITRD_NAME: &str = "linux-initramfs";

/// A layout that passed every check: an owned mirror of [`Layout`](crate::Layout), with the
/// guest images as absolute paths instead of bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedLayout {
    /// The file's stem (`default` for `layouts/default.toml`).
    pub name: String,
    /// The layout file, as the caller named it.
    pub source: PathBuf,
    /// The partitions, in file order.
    pub partitions: Vec<CheckedPartition>,
    /// The networks, in file order; a NIC's `network` is an index here.
    pub networks: Vec<CheckedNetwork>,
    /// The hypervisor's command line where the boot path gives none (printable ASCII).
    pub boot_options: String,
    /// Things that are allowed but worth saying (a pool check deferred to boot).
    pub warnings: Vec<String>,
}

/// One checked partition; see [`PartitionSpec`](crate::PartitionSpec) for the fields' meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedPartition {
    /// Unique, `[a-z0-9-]`, at most 32 bytes.
    pub name: String,
    /// At least one group; explicit APIC IDs unique across the layout.
    pub vcpus: Vec<CheckedVcpuGroup>,
    /// One entry per vnode, in vnode order.
    pub memory: Vec<VnodeSpec>,
    /// Bytes deposited into the pool at creation.
    pub pool_bytes: u64,
    /// The largest SLAT leaf.
    pub max_page: BlockSize,
    /// The guest image: an absolute, UTF-8 path to an existing file.
    pub image: PathBuf,
    /// What the image is: a bzImage that passed the boot-protocol checks, else a PVH ELF.
    pub image_kind: ImageKind,
    /// The initrd of a bzImage: an absolute, UTF-8 path to an existing file.
    pub initrd: Option<PathBuf>,
    /// The guest's command line.
    pub command_line: String,
    /// What a guest fault does.
    pub on_fault: ExitAction,
    /// What a guest shutdown does.
    pub on_shutdown: ExitAction,
    /// When the pool is checked against what the partition needs.
    pub pool_check: PoolCheck,
    /// How long the guest may run before it is stopped (`time-limit`), if bounded.
    pub time_limit_ms: Option<u64>,
    /// How many restarts `"restart"` actions may make.
    pub restart_limit: u32,
    /// The partition that may deposit into and withdraw from this one's pool through
    /// hypercalls (`docs/hypercalls.md`): another partition of the layout, no cycles.
    pub parent: Option<String>,
    /// `dynamic = true`: Dynamic Memory between each vnode's `min` and `max`.
    pub dynamic: bool,
    /// How its console lines reach the host console.
    pub console: ConsoleMode,
    /// Its network cards, in file order: each on a network of the layout (an index into
    /// [`CheckedLayout::networks`]) that it joins once, each MAC unicast and unique in the
    /// layout, the defaults ([`default_mac`](crate::default_mac)) filled in.
    pub nics: Vec<NicSpec>,
    /// The host PCI functions it owns, in file order, none owned by another partition
    /// (whether they exist is checked at boot).
    pub pci: Vec<numavisor_policy::pci::PciAddress>,
}

/// One checked network; see [`NetworkSpec`](crate::NetworkSpec).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedNetwork {
    /// Unique among networks, `[a-z0-9-]`, at most 32 bytes; at least two partitions join it.
    pub name: String,
}

impl CheckedPartition {
    /// The vCPU count over all groups.
    pub fn vcpu_count(&self) -> u64 {
        self.vcpus
            .iter()
            .map(|group| match group {
                CheckedVcpuGroup::OnNode { count, .. } => u64::from(*count),
                CheckedVcpuGroup::ApicIds { ids, .. } => ids.len() as u64,
            })
            .sum()
    }

    /// Each vnode's guest-physical ranges `(gpa, len)`, as the hypervisor will place them.
    pub fn guest_physical_ranges(&self) -> Vec<Vec<(u64, u64)>> {
        cost::guest_physical_ranges(&self.vnode_sizes())
    }

    /// Each vnode's hot-add region `(gpa, len)`, `None` where it does not grow (see
    /// [`hot_add_regions`](numavisor_policy::partition::cost::hot_add_regions)).
    pub fn hot_add_regions(&self) -> Vec<Option<(u64, u64)>> {
        cost::hot_add_regions(&self.vnode_sizes(), &self.growths())
    }

    /// The smallest pool this partition can be built with (the policy cost model, best case),
    /// the tables its hot-add regions need included.
    pub fn minimum_pool_bytes(&self) -> u64 {
        cost::minimum_pool_bytes_for_vnodes(
            &self.vnode_sizes(),
            &self.growths(),
            self.max_page,
            self.vcpu_count(),
        )
        .saturating_add(self.dma_table_pages().saturating_mul(PAGE_SIZE))
    }

    /// Pages of DMA remapping tables in [`minimum_pool_bytes`](Self::minimum_pool_bytes): a
    /// partition with `pci` functions has a second set of tables, mapping its RAM (and what
    /// hot-add plugs) for their DMA, as large as its SLAT's (`docs/pci.md`).
    pub fn dma_table_pages(&self) -> u64 {
        match self.pci.is_empty() {
            true => 0,
            false => self
                .slat_table_pages()
                .saturating_add(self.hot_add_table_pages()),
        }
    }

    /// Pages of SLAT tables for its RAM in [`minimum_pool_bytes`](Self::minimum_pool_bytes)
    /// (drawn at build).
    pub fn slat_table_pages(&self) -> u64 {
        let ranges = cost::all_guest_physical_ranges(&self.vnode_sizes());
        cost::slat_table_pages(&ranges, self.max_page)
    }

    /// Pages of SLAT tables for its hot-add regions in
    /// [`minimum_pool_bytes`](Self::minimum_pool_bytes) (drawn when memory is plugged).
    pub fn hot_add_table_pages(&self) -> u64 {
        let ranges = cost::all_guest_physical_ranges(&self.vnode_sizes());
        cost::hot_add_table_pages(&ranges, &self.hot_add_regions(), self.max_page)
    }

    fn vnode_sizes(&self) -> Vec<u64> {
        self.memory.iter().map(|vnode| vnode.size).collect()
    }

    fn growths(&self) -> Vec<u64> {
        self.memory.iter().map(VnodeSpec::growth).collect()
    }
}

/// The owned form of [`VcpuGroup`](crate::VcpuGroup).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckedVcpuGroup {
    /// `count` CPUs of host node `node`.
    OnNode {
        /// Host node index.
        node: u32,
        /// At least 1.
        count: u32,
        /// An existing vnode, or `None` for the default.
        vnode: Option<u32>,
    },
    /// These host CPUs by APIC ID.
    ApicIds {
        /// At least one, none shared with another group or partition.
        ids: Vec<u32>,
        /// An existing vnode, or `None` for the default.
        vnode: Option<u32>,
    },
}

/// When a partition's pool is compared with what building it costs
/// ([`minimum_pool_bytes`](numavisor_policy::partition::cost::minimum_pool_bytes)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolCheck {
    /// At build time, and again (by construction) at boot: the default.
    Build,
    /// Only at boot, where a short pool stops the partition with "insufficient memory".
    /// For testing that refusal; the build prints a warning.
    Boot,
}

/// Where [`load_with`] looks for guest images and initrds named without a `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// `image = "NAME"` is the file `<guest_dir>/NAME.elf`, `initrd = "NAME"` the file
    /// `<guest_dir>/NAME.cpio`.
    pub guest_dir: PathBuf,
    /// `image = "linux"` is `<linux_dir>/vmlinuz`, `initrd = "linux-initramfs"`
    /// `<linux_dir>/initramfs.cpio` (what `cargo xtask build` fetches and builds).
    pub linux_dir: PathBuf,
}

impl LoadOptions {
    /// `$NUMAVISOR_GUEST_DIR` if set, else `<target dir>/guests`; `$NUMAVISOR_LINUX_DIR`
    /// if set, else `<target dir>/linux`.
    pub fn from_env() -> Self {
        LoadOptions {
            guest_dir: default_guest_dir(),
            linux_dir: default_linux_dir(),
        }
    }
}

/// The workspace root (this crate sits at `firmware/layout/`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    match manifest_dir.parent().and_then(Path::parent) {
        Some(root) => root.to_path_buf(),
        None => manifest_dir.join("../.."),
    }
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the workspace root unless
/// absolute) if set, else `<workspace>/target` — where `cargo xtask` puts guests and Linux.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// `$NUMAVISOR_GUEST_DIR` if set, else `<target dir>/guests`.
pub fn default_guest_dir() -> PathBuf {
    match std::env::var_os(GUEST_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => target_dir().join("guests"),
    }
}

/// `$NUMAVISOR_LINUX_DIR` if set, else `<target dir>/linux`.
pub fn default_linux_dir() -> PathBuf {
    match std::env::var_os(LINUX_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => target_dir().join("linux"),
    }
}

/// The layout the firmware build embeds: `$NUMAVISOR_LAYOUT` (relative to the workspace root
/// unless absolute) if set, else `<workspace>/layouts/default.toml`.
pub fn layout_path_from_env() -> PathBuf {
    match std::env::var_os(LAYOUT_ENV) {
        Some(path) => workspace_root().join(path),
        None => workspace_root().join("layouts/default.toml"),
    }
}

/// Reads and checks the layout at `path`, finding guest images as [`LoadOptions::from_env`]
/// says. Returns every error found, not only the first.
pub fn load(path: &Path) -> Result<CheckedLayout, LayoutErrors> {
    load_with(path, &LoadOptions::from_env())
}

/// [`load`] with explicit options.
pub fn load_with(path: &Path, options: &LoadOptions) -> Result<CheckedLayout, LayoutErrors> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            let mut report = Report::new(path.display().to_string());
            report.layout(format!("cannot read the layout: {error}"));
            return Err(report.into_errors());
        }
    };
    load_str(&text, path, options)
}

/// Checks the layout `text` as [`load_with`] checks the file `path` holding it, without
/// reading `path`: it only names the layout (its stem is [`CheckedLayout::name`], errors cite
/// it) and places it (images and initrds given as paths are taken from its directory). For
/// callers that already hold the text, such as the fuzzer, which would otherwise write each
/// input to a file.
pub fn load_str(
    text: &str,
    path: &Path,
    options: &LoadOptions,
) -> Result<CheckedLayout, LayoutErrors> {
    let mut report = Report::new(path.display().to_string());
    let layout_dir = path.parent().unwrap_or(Path::new("."));
    let document = parse::parse_document(text, &mut report);
    let boot_options = document.boot_options;
    let checked = check::check(
        document.partitions,
        document.networks,
        layout_dir,
        options,
        &mut report,
    );
    if !report.is_empty() {
        return Err(report.into_errors());
    }
    let name = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("layout")
        .to_string();
    Ok(CheckedLayout {
        name,
        source: path.to_path_buf(),
        partitions: checked.partitions,
        networks: checked.networks,
        boot_options,
        warnings: checked.warnings,
    })
}
