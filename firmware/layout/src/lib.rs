//! numavisor's partition layout: the fixed set of partitions one appliance image runs.
//!
//! A layout is written in TOML (`layouts/*.toml`, format in `docs/layout.md`) and never reaches
//! the firmware as TOML. With the `host` feature this crate parses it (unknown keys refused),
//! validates it into a [`CheckedLayout`] whose every error names the file, the partition and the
//! field, and emits Rust source defining `pub static LAYOUT: numavisor_layout::Layout`, which
//! the firmware `include!`s. Without `host` only the runtime tables ([`spec`]) and the limits
//! ([`limits`]) remain, `no_std` and allocation-free, for the firmware.
//!
//! The firmware's build script calls [`generate_for_build`] with the path from
//! [`layout_path_from_env`].
#![cfg_attr(not(any(test, feature = "host")), no_std)]
#![forbid(unsafe_code)]

pub mod limits;
pub mod spec;

#[cfg(feature = "host")]
mod host;

pub use numavisor_policy::memory::BlockSize;
pub use spec::{
    default_mac, ConsoleMode, ExitAction, ImageKind, Layout, NetworkSpec, NicSpec, PartitionSpec,
    PciDeviceSpec, VcpuGroup, VnodeSpec,
};

#[cfg(feature = "host")]
pub use host::{
    default_guest_dir, default_linux_dir, emit_rust, generate_for_build, layout_path_from_env,
    load, load_str, load_with, workspace_root, CheckedLayout, CheckedNetwork, CheckedPartition,
    CheckedVcpuGroup, LayoutError, LayoutErrors, LoadOptions, NetworkLabel, PartitionLabel,
    PoolCheck, GUEST_DIR_ENV, LAYOUT_ENV, LINUX_DIR_ENV, LINUX_IMAGE_NAME, LINUX_INITRD_NAME,
};
