//! The PCI passthrough figures of `cargo xtask bench` (docs/pci.md, "Figures"): NVMe
//! sequential read throughput in a Linux partition (`layouts/bench-nvme.toml`, O_DIRECT in
//! 1 MiB blocks) against the same kernel, initramfs, command line and disk on plain QEMU
//! with the same Intel IOMMU, alternated; the NVMe interrupts the guest took per MiB; and
//! the DMA remapping tables a partition needs per GiB.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use numavisor_policy::memory::{BlockSize, PAGE_SIZE};
use numavisor_policy::partition::cost;
use tools::{image, linux, paths, qemu, topology};

/// Alternated runs of each side.
const ROUNDS: usize = 3;
/// Linux under TCG reading a disk: a generous bound per run.
const RUN_TIMEOUT: Duration = Duration::from_secs(400);
/// The guest's command line on both sides (the layout's).
const COMMAND_LINE: &str = "console=ttyS0 quiet nv.mib=64 nv.test=nvme-read,nvme-read,poweroff";
/// The topology the partition runs on: the NVMe goes behind its expander's root port.
const TOPOLOGY: &str = "vt-d-expander-on-node-1";

/// Runs every figure and prints it.
pub fn run() -> Result<()> {
    let image_path = image::build_with_layout(&paths::layouts_dir().join("bench-nvme.toml"))?;
    let disk = paths::target_dir().join("tmp/bench-nvme.img");
    std::fs::create_dir_all(disk.parent().context("a directory for the disk")?)?;
    std::fs::File::create(&disk)?.set_len(128 << 20)?;
    let drive = format!("if=none,id=nvm,format=raw,file={}", disk.display());
    let topology = topology::load(TOPOLOGY)?;
    let options = qemu::RunOptions {
        exit: Some("partitions"),
        extra_qemu_args: vec![
            "-drive".into(),
            drive.clone(),
            "-device".into(),
            "nvme,bus=rp1,serial=nv0,drive=nvm".into(),
        ],
        extra_append: String::new(),
    };
    let nv_args = qemu::command(&image_path, &topology, &options);
    let plain_args = linux::plain_qemu_command(
        "q35",
        COMMAND_LINE,
        &[
            "-device".into(),
            "intel-iommu,intremap=on,aw-bits=48,caching-mode=on".into(),
            "-drive".into(),
            drive,
            "-device".into(),
            "nvme,serial=nv0,drive=nvm".into(),
        ],
    );
    let (mut nv, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        nv.push(warm_read(&nv_args)?);
        plain.push(warm_read(&plain_args)?);
    }
    let rate = |reads: &[Value]| -> Vec<f64> {
        reads
            .iter()
            .map(|r| number(r, "mib") * 1000.0 / number(r, "ms").max(1.0))
            .collect()
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let per_mib = |reads: &[Value]| {
        mean(
            &reads
                .iter()
                .map(|r| number(r, "interrupts") / number(r, "mib").max(1.0))
                .collect::<Vec<_>>(),
        )
    };
    let (nv_rate, plain_rate) = (rate(&nv), rate(&plain));
    println!(
        "NVMe sequential read, 64 MiB with O_DIRECT in 1 MiB blocks (Debian cloud kernel, 2 vCPUs, 256 MiB, Intel IOMMU, TCG):"
    );
    println!(
        "  numavisor (passed through): {:.1?} MiB/s (mean {:.1}), {:.1} NVMe interrupts per MiB",
        nv_rate,
        mean(&nv_rate),
        per_mib(&nv)
    );
    println!(
        "  plain QEMU:                 {:.1?} MiB/s (mean {:.1}), {:.1} NVMe interrupts per MiB",
        plain_rate,
        mean(&plain_rate),
        per_mib(&plain)
    );
    println!(
        "  ratio numavisor / plain: {:.2} (target ≥ 0.9)",
        mean(&nv_rate) / mean(&plain_rate)
    );
    for page in [BlockSize::Size2M, BlockSize::Size4K] {
        let pages = cost::slat_table_pages(&[(0, 1 << 30)], page);
        println!(
            "  DMA remapping tables per GiB of partition with {page} leaves: {} KiB (as its SLAT's)",
            pages * PAGE_SIZE / 1024
        );
    }
    println!();
    Ok(())
}

/// The second `nvme_read` line of one run (the first warms the page tables and the queues).
fn warm_read(args: &[String]) -> Result<Value> {
    let result = qemu::run(args, RUN_TIMEOUT, false)?;
    let reads: Vec<Value> = result
        .lines
        .iter()
        .filter_map(|l| l.split_once("@guest ").map(|(_, json)| json))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .filter(|v| v["event"] == "nvme_read")
        .collect();
    match reads.get(1) {
        Some(read) if read["ok"] == true => Ok(read.clone()),
        _ => bail!(
            "no second successful nvme_read line; log tail:\n{}",
            result.tail(30)
        ),
    }
}

fn number(value: &Value, key: &str) -> f64 {
    value[key].as_f64().unwrap_or(0.0)
}
