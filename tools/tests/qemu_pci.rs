//! PCI passthrough under QEMU (q35, TCG's SVM with nested paging), each test booting one
//! layout on one topology with `exit=partitions` and checking the `@nv` report.

mod common;

use common::Boot;
use serde_json::Value;

/// Asserts that `partition` was refused with a reason containing `needle`.
fn refused_for(boot: &Boot, partition: &str, needle: &str) {
    let refused = boot.refused(partition);
    let reason = refused["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(needle),
        "partition {partition:?}: refused for {reason:?}, expected {needle:?}\n{}",
        boot.context
    );
}

/// What the machine cannot give is refused with its reason; the partition without devices
/// runs to its end (issue 18, test f).
#[test]
fn a_missing_function_a_bridge_and_an_unisolated_device_are_refused() {
    let boot = Boot::run("pci-refusals", "vt-d-nvme-on-node-1");
    refused_for(
        &boot,
        "missing",
        "pci 0000:00:1f.7: no PCI function answers at that address",
    );
    refused_for(
        &boot,
        "bridge",
        "pci 0000:40:00.0: it is a PCI-to-PCI bridge, not an endpoint",
    );
    refused_for(
        &boot,
        "lpc",
        "pci 0000:00:1f.0: it is a host, ISA or other platform bridge (class 06)",
    );
    boot.check_guest_finished("runner");
    boot.check_ledgers();

    let boot = Boot::run("pci-refusals", "two-nodes");
    refused_for(
        &boot,
        "unisolated",
        "pci 0000:00:1f.2: no DMA remapping unit (VT-d or AMD-Vi) covers it",
    );
    refused_for(&boot, "bridge", "no PCI function answers");
    boot.check_guest_finished("runner");
}

/// An NVMe controller behind VT-d, on the node of the partition that owns it: the test
/// guest finds it on its virtual bus, its Identify data comes back into its RAM through the
/// remapping domain, and its DMA to an address outside its RAM is refused and reported
/// (issue 18, tests a and c, with our own guest); the partition restarts once and its
/// device works again (test e); the other partition runs to its end.
#[test]
fn b_a_partition_drives_its_nvme_and_dma_outside_its_ram_faults() {
    let boot = Boot::run("pci-nvme", "vt-d-nvme-on-node-1");
    let functions = boot.guest_events("disk", "pci_function");
    let classes: Vec<&str> = functions
        .iter()
        .map(|f| f["class"].as_str().unwrap())
        .collect();
    assert_eq!(
        classes,
        ["060000", "010802", "060000", "010802"],
        "in each life, the guest's bus holds its host bridge and its NVMe only\n{}",
        boot.context
    );
    let bar = boot.guest("disk", "nvme_bar");
    assert_eq!(bar["address"], 0xC000_0000u64, "{}", boot.context);
    assert_eq!(bar["size"], 16384, "{}", boot.context);
    let identify = boot.guest("disk", "nvme");
    assert_eq!(identify["serial"], "nv0", "{identify}\n{}", boot.context);
    assert_eq!(identify["model"], "QEMU NVMe Ctrl", "{}", boot.context);
    assert_eq!(identify["status"], 0, "{}", boot.context);
    let faults = boot.events("dma_fault");
    assert!(
        faults.iter().any(|f| f["partition"] == "disk"
            && f["device"] == "41:00.0"
            && f["address"] == 0x3000_0000u64
            && f["write"] == true),
        "no dma_fault for the write outside disk's RAM: {faults:?}\n{}",
        boot.context
    );
    let lives: Vec<&str> = boot
        .console_lines("disk")
        .into_iter()
        .filter(|l| l.contains("\"event\":\"nvme\""))
        .collect();
    assert_eq!(
        lives.len(),
        2,
        "Identify in each life: {lives:?}\n{}",
        boot.context
    );
    assert!(
        lives.iter().all(|l| l.contains("\"serial\":\"nv0\"")),
        "{lives:?}"
    );
    assert_eq!(
        boot.events("partition_restarted").len(),
        1,
        "{}",
        boot.context
    );
    let stopped = boot.stopped("disk");
    assert_eq!(stopped["reason"], "exit", "{stopped}\n{}", boot.context);
    assert!(
        stopped["detail"].as_str().unwrap().contains("wrote 0"),
        "{stopped}\n{}",
        boot.context
    );
    boot.check_guest_finished("bystander");
    boot.check_ledgers();
}

/// A partition on node 0 owning a device on node 1 is warned of the distance, and its
/// device works (issue 18, test d).
#[test]
fn c_a_device_far_from_its_partition_is_reported() {
    let boot = Boot::run("pci-far", "vt-d-nvme-on-node-1");
    let far = boot.events("pci_far");
    assert_eq!(far.len(), 1, "{far:?}\n{}", boot.context);
    assert_eq!(far[0]["partition"], "far");
    assert_eq!(far[0]["host"], "0000:41:00.0");
    assert_eq!(far[0]["node"], 1);
    assert_eq!(far[0]["nearest"], 0);
    assert_eq!(far[0]["distance"], 20);
    assert_eq!(
        boot.guest("far", "nvme")["serial"],
        "nv0",
        "{}",
        boot.context
    );
}

/// A page a partition gives away leaves its DMA remapping domain with its RAM, whether it
/// goes into a child's pool (a deposit) or to its balloon (an inflation): its device's DMA
/// there is refused, never written into memory that is no longer the partition's; taken back
/// (a withdrawal, a deflation), the page is the device's to reach once more, at the host page
/// the guest's CPU sees (issue 18: "balloon moves and deposit/withdraw unmap from both").
#[test]
fn i_a_page_given_away_leaves_the_dma_domain_and_comes_back_with_the_ram() {
    let boot = Boot::run("pci-nvme-parent", "vt-d-nvme-on-node-1");
    assert_eq!(
        boot.guest("owner", "nvme")["serial"],
        "nv0",
        "{}",
        boot.context
    );
    let rounds = boot.guest_events("owner", "nvme_round");
    let hows: Vec<&str> = rounds.iter().map(|r| r["how"].as_str().unwrap()).collect();
    assert_eq!(hows, ["deposit", "balloon"], "{rounds:?}\n{}", boot.context);
    let faults = boot.events("dma_fault");
    for round in &rounds {
        assert_eq!(round["given"], "success", "{round}\n{}", boot.context);
        let page = round["address"].as_u64().expect("the page's address");
        assert!(
            faults.iter().any(|f| f["partition"] == "owner"
                && f["device"] == "41:00.0"
                && f["address"].as_u64().is_some_and(|a| a & !0xFFF == page)
                && f["write"] == true),
            "no dma_fault for the Identify into the page given away ({round}): {faults:?}\n{}",
            boot.context
        );
        assert_eq!(round["back"], "success", "{round}\n{}", boot.context);
        assert_eq!(round["status"], 0, "{round}\n{}", boot.context);
        assert_eq!(
            round["serial"], "nv0",
            "the Identify into the page taken back did not reach what the guest reads there: \
             {round}\n{}",
            boot.context
        );
    }
    let stopped = boot.stopped("owner");
    assert_eq!(stopped["reason"], "exit", "{stopped}\n{}", boot.context);
    boot.check_ledgers();
}

fn disk_image(path: &std::path::Path, total: usize) -> String {
    const MIB: usize = 64;
    let mut data = vec![0u8; total];
    for (i, byte) in data[..MIB << 20].iter_mut().enumerate() {
        *byte = ((i * 7 + 13) ^ (i >> 20)) as u8;
    }
    std::fs::write(path, &data).expect("writing the disk image");
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {} '{}' | sha256sum",
            MIB << 20,
            path.display()
        ))
        .output()
        .expect("sha256sum (coreutils)");
    assert!(output.status.success(), "sha256sum failed");
    String::from_utf8_lossy(&output.stdout)[..64].to_string()
}

/// Boots `layout` on `topology` with an NVMe disk (a pattern in its first 64 MiB) plugged in
/// as `device` (QEMU `-device` options without the drive), and checks what Debian's kernel
/// did with it: it read the pattern back and wrote a marker the test finds in the image.
/// Returns the run and the guest's `nvme` line.
fn linux_nvme(layout: &str, topology: &str, device: &str) -> (Boot, Value) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let image = dir.join(format!("{layout}-disk.img"));
    let expected = disk_image(&image, 128 << 20);
    let boot = Boot::run_with_qemu_args(
        layout,
        topology,
        600,
        vec![
            "-drive".into(),
            format!("if=none,id=nvm,format=raw,file={}", image.display()),
            "-device".into(),
            format!("{device},drive=nvm"),
        ],
        "",
        |_| tools::qemu::Reply::Continue,
    );
    let nvme = boot.linux("linux-disk", "nvme");
    assert_eq!(nvme["function"], "0000:00:01.0", "{nvme}\n{}", boot.context);
    assert_eq!(
        nvme["sha256"],
        expected.as_str(),
        "{nvme}\n{}",
        boot.context
    );
    assert_eq!(nvme["marker_written"], true, "{nvme}\n{}", boot.context);
    let stopped = boot.stopped("linux-disk");
    assert_eq!(
        stopped["reason"], "power-off",
        "{stopped}\n{}",
        boot.context
    );
    let disk = std::fs::read(&image).expect("reading the disk image back");
    let marker = b"numavisor-nvme-marker";
    assert_eq!(
        &disk[64 << 20..(64 << 20) + marker.len()],
        marker,
        "the guest's marker is not in the image after the run\n{}",
        boot.context
    );
    assert!(boot.events("dma_fault").is_empty(), "{}", boot.context);
    (boot, nvme)
}

/// Debian's kernel drives a passed-through NVMe disk behind VT-d with its own driver: MSI-X
/// interrupts routed by the hypervisor through interrupt remapping, DMA through the
/// partition's remapping domain; it sees the function on the vnode backed by the device's
/// node (issue 18, tests a and d).
#[test]
fn d_linux_reads_and_writes_its_nvme_disk_on_the_right_vnode() {
    let (boot, nvme) = linux_nvme(
        "linux-nvme",
        "vt-d-expander-on-node-1",
        "nvme,bus=rp1,serial=nv0",
    );
    // The partition's vnode 1 is on host node 1, the expander's.
    assert_eq!(nvme["numa_node"], 1, "{nvme}\n{}", boot.context);
}

/// The same behind an AMD IOMMU, the disk on the root bus (issue 18, test a on AMD-Vi). The
/// root bus's host bridge has no `_PXM`, so the guest's has none either.
#[test]
fn f_linux_reads_and_writes_its_nvme_disk_behind_amd_vi() {
    let (boot, nvme) = linux_nvme(
        "linux-nvme-amd-vi",
        "amd-vi",
        "nvme,bus=pcie.0,addr=0x5,serial=nv1",
    );
    assert_eq!(nvme["numa_node"], -1, "{nvme}\n{}", boot.context);
}

/// Two virtio-net-pci NICs on one QEMU hub, each passed through to its own Linux partition:
/// Debian's virtio_pci and virtio_net drive them, the partitions ping each other and 64 MiB
/// cross with the same sha256 on both sides (issue 18, test b).
#[test]
fn e_two_partitions_talk_over_passed_through_nics() {
    let mut nics = Vec::new();
    for (id, addr) in [("n0", "0x5"), ("n1", "0x6")] {
        nics.push("-netdev".to_string());
        nics.push(format!("hubport,id={id},hubid=0"));
        nics.push("-device".to_string());
        nics.push(format!(
            "virtio-net-pci,netdev={id},bus=pcie.0,addr={addr},disable-legacy=on,iommu_platform=on"
        ));
    }
    let boot = Boot::run_with_qemu_args(
        "linux-nic-pair",
        "vt-d-expander-on-node-1",
        600,
        nics,
        "",
        |_| tools::qemu::Reply::Continue,
    );
    for name in ["left", "right"] {
        let ping = boot.linux(name, "ping");
        assert!(
            ping["received"].as_u64().unwrap_or(0) > 0,
            "{name}: {ping}\n{}",
            boot.context
        );
    }
    let sent = boot.linux("left", "sent");
    let received = boot.linux("right", "received");
    assert_eq!(sent["ok"], true, "{sent}\n{}", boot.context);
    assert_eq!(
        sent["sha256"], received["sha256"],
        "{sent} {received}\n{}",
        boot.context
    );
    assert_eq!(
        received["bytes"], sent["bytes"],
        "{received}\n{}",
        boot.context
    );
    for name in ["left", "right"] {
        assert_eq!(
            boot.stopped(name)["reason"],
            "power-off",
            "{}",
            boot.context
        );
    }
    assert!(boot.events("dma_fault").is_empty(), "{}", boot.context);
}

/// A partition whose device keeps sending DMA outside its RAM is stopped after
/// `DMA_FAULT_LIMIT` refusals, as a faulting guest (its `on_fault`), and the other runs on
/// (issue 18 item 4).
#[test]
fn g_a_partition_whose_device_keeps_faulting_is_stopped() {
    let boot = Boot::run("pci-nvme-faults", "vt-d-nvme-on-node-1");
    let stopped = boot.stopped("faulty");
    assert_eq!(
        stopped["reason"], "dma-faults",
        "{stopped}\n{}",
        boot.context
    );
    let faults = boot
        .events("dma_fault")
        .into_iter()
        .filter(|f| f["partition"] == "faulty")
        .count();
    assert!(faults >= 8, "{faults} dma_fault events\n{}", boot.context);
    boot.check_guest_finished("bystander");
    boot.check_ledgers();
}

/// A device's DMA into the interrupt address range behind AMD-Vi: 4 KiB of Identify data
/// written four times to 0xFEE0_0000 are 4,096 interrupt messages aimed at APIC ID 0 (the
/// bystander's CPU), with vectors below 32 and INIT, NMI and SMI deliveries among them. All
/// are refused: the bystander finishes its port reads, the host takes no NMI, and the
/// forger itself goes on (issue 18 item 5: "a device's DMA write to the interrupt address
/// range can never interrupt another partition's CPUs").
///
/// What refuses them under QEMU 7.2 is the device table's blocking entry for the I/O APIC's
/// requester ID: QEMU gives a device's DMA no requester ID of its own, and takes a message
/// without one for the I/O APIC's (00:14.0). The forger's own interrupt remapping table
/// (which refuses them on hardware) is exercised by test f, whose disk interrupts arrive
/// only through it.
#[test]
fn h_a_device_cannot_forge_interrupts_behind_amd_vi() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let image = dir.join("forgery-disk.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).expect("writing the disk image");
    let boot = Boot::run_with_qemu_args(
        "pci-interrupt-forgery",
        "amd-vi",
        180,
        vec![
            "-drive".into(),
            format!("if=none,id=nvm,format=raw,file={}", image.display()),
            "-device".into(),
            "nvme,bus=pcie.0,addr=0x5,serial=nv1,drive=nvm".into(),
        ],
        "",
        |_| tools::qemu::Reply::Continue,
    );
    let identify = boot.guest("forger", "nvme");
    assert_eq!(identify["status"], 0, "{identify}\n{}", boot.context);
    let forged = boot
        .console_lines("forger")
        .iter()
        .filter(|l| l.contains("\"nvme_outside\""))
        .count();
    assert_eq!(
        forged, 4,
        "four forging Identify commands\n{}",
        boot.context
    );
    let stopped = boot.stopped("forger");
    assert_eq!(stopped["reason"], "exit", "{stopped}\n{}", boot.context);
    let looped = boot.guest("bystander", "io_loop");
    assert_eq!(looped["exits"], 600_000, "{looped}\n{}", boot.context);
    let stopped = boot.stopped("bystander");
    assert_eq!(stopped["reason"], "exit", "{stopped}\n{}", boot.context);
    let all = boot
        .events("all_stopped")
        .first()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        all["host_nmis"], 0,
        "the host took an NMI: {all}\n{}",
        boot.context
    );
}
