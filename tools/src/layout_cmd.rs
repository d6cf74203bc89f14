//! `cargo xtask check-layout FILE`: checks a partition layout (`docs/layout.md`) exactly as the
//! firmware build does, and prints what it describes: per partition its vCPUs, its vNUMA nodes
//! with their guest-physical ranges, its pool against the minimum the cost model asks for, the
//! guest image, and its NICs (network and MAC). Every error is listed, one per line, naming file, partition and field.
//! `--emit` prints the Rust tables the firmware would embed instead.

use std::path::PathBuf;

use anyhow::{bail, Result};
use numavisor_layout::{
    CheckedNetwork, CheckedPartition, CheckedVcpuGroup, ImageKind, LoadOptions, PoolCheck,
    LINUX_DIR_ENV,
};

use tools::linux;

/// Arguments of `check-layout`.
#[derive(clap::Args, Debug)]
pub struct CheckLayoutArgs {
    /// The layout file (e.g. layouts/default.toml).
    pub file: PathBuf,
    /// Where guest images named without a '/' are found
    /// [default: $NUMAVISOR_GUEST_DIR, else <workspace>/target/guests].
    #[arg(long)]
    pub guest_dir: Option<PathBuf>,
    /// Where `image = "linux"` and `initrd = "linux-initramfs"` are found
    /// [default: $NUMAVISOR_LINUX_DIR, else <target>/linux, where `build` puts them].
    #[arg(long)]
    pub linux_dir: Option<PathBuf>,
    /// Print the generated Rust source instead of the summary.
    #[arg(long)]
    pub emit: bool,
}

/// Checks the layout; prints its summary (or its Rust) and warnings, or fails with every error.
pub fn run(args: CheckLayoutArgs) -> Result<()> {
    let from_env = LoadOptions::from_env();
    let linux_dir = args.linux_dir.unwrap_or_else(|| {
        std::env::var_os(LINUX_DIR_ENV).map_or_else(linux::linux_dir, PathBuf::from)
    });
    let options = LoadOptions {
        guest_dir: args.guest_dir.unwrap_or(from_env.guest_dir),
        linux_dir,
    };
    let layout = match numavisor_layout::load_with(&args.file, &options) {
        Ok(layout) => layout,
        Err(errors) => {
            eprintln!("{errors}");
            bail!(
                "{}: {} error(s); the layout was not accepted",
                args.file.display(),
                errors.0.len()
            );
        }
    };
    if args.emit {
        print!("{}", numavisor_layout::emit_rust(&layout));
    } else {
        println!(
            "{}: layout {:?}, {} partition(s), {} network(s), valid",
            args.file.display(),
            layout.name,
            layout.partitions.len(),
            layout.networks.len()
        );
        for partition in &layout.partitions {
            print_partition(partition, &layout.networks);
        }
    }
    for warning in &layout.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// One partition's summary; `networks` names the networks its NICs join.
fn print_partition(p: &CheckedPartition, networks: &[CheckedNetwork]) {
    println!("partition {:?}", p.name);
    for group in &p.vcpus {
        let (what, vnode) = match group {
            CheckedVcpuGroup::OnNode { node, count, vnode } => {
                (format!("{count} vCPU(s) on host node {node}"), vnode)
            }
            CheckedVcpuGroup::ApicIds { ids, vnode } => {
                (format!("{} vCPU(s) on APIC IDs {ids:?}", ids.len()), vnode)
            }
        };
        match vnode {
            Some(vnode) => println!("  {what}, vnode {vnode}"),
            None => println!("  {what}, vnode by host node"),
        }
    }
    let layout = p
        .guest_physical_ranges()
        .into_iter()
        .zip(p.hot_add_regions());
    for (index, (vnode, (ranges, hot_add))) in p.memory.iter().zip(layout).enumerate() {
        let ranges: Vec<String> = ranges
            .iter()
            .map(|(gpa, len)| format!("[{gpa:#x}, {:#x})", gpa + len))
            .collect();
        let grows = match hot_add {
            Some((gpa, len)) => format!(
                ", grows by {} (hot-add) into [{gpa:#x}, {:#x})",
                size(len),
                gpa + len
            ),
            None => String::new(),
        };
        println!(
            "  vnode {index}: {} on host node {}, GPA {}{grows}",
            size(vnode.size),
            vnode.node,
            ranges.join(" ")
        );
    }
    let minimum = p.minimum_pool_bytes();
    let checked = match p.pool_check {
        PoolCheck::Build => "",
        PoolCheck::Boot => ", checked at boot only",
    };
    let hot_add = match p.hot_add_table_pages() {
        0 => String::new(),
        pages => format!(" + {pages} for hot-add, drawn when memory is plugged"),
    };
    println!(
        "  pool {} (minimum {}{checked}: {} SLAT table pages{hot_add}), SLAT pages up to {}",
        size(p.pool_bytes),
        size(minimum),
        p.slat_table_pages(),
        p.max_page
    );
    let kind = match p.image_kind {
        ImageKind::PvhElf => "PVH ELF",
        ImageKind::LinuxBzImage => "Linux bzImage",
    };
    println!("  image {} ({kind})", p.image.display());
    if let Some(initrd) = &p.initrd {
        println!("  initrd {}", initrd.display());
    }
    println!("  command line {:?}", p.command_line);
    println!(
        "  on fault: {:?}, on shutdown: {:?}",
        p.on_fault, p.on_shutdown
    );
    for (index, nic) in p.nics.iter().enumerate() {
        let network = networks.get(nic.network).map_or("?", |n| n.name.as_str());
        println!(
            "  nic {index}: network {network:?}, MAC {}",
            numavisor_policy::report::events::mac_string(nic.mac)
        );
    }
}

/// `bytes` in MiB when whole, else KiB (layout sizes are 4 KiB multiples).
fn size(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}
