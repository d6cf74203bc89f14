//! The real Linux guest material: Debian's cloud kernel and busybox, fetched with apt (cached
//! under `<target>/linux/`), the kernel checked by numavisor's bzImage parser, and the
//! initramfs built from that busybox. Needs apt's package lists and the network on a machine
//! without the cache; never skipped.

use numavisor_policy::guest::bzimage;
use tools::linux;

#[test]
fn debian_kernel_is_a_bootable_bzimage() {
    let material = linux::fetch_debian_guest().expect("fetching the Debian guest material");
    let bytes = std::fs::read(&material.vmlinuz).unwrap();
    assert!(bzimage::is_bzimage(&bytes));
    let image =
        bzimage::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", material.vmlinuz.display()));
    assert!(image.version >= 0x020C, "protocol {:#x}", image.version);
    assert_ne!(image.xloadflags & bzimage::XLF_KERNEL_64, 0);
    assert_eq!(image.pref_address, 0x100_0000);
    assert!(image.relocatable);
    assert!(image.takes_rsdp(), "Debian 6.1 speaks protocol 2.15");
    // DESIGN.md: init_size ≈ 52 MiB; a 256 MiB guest takes the kernel at 16 MiB.
    let plan = bzimage::plan(
        &image,
        &[(0, 256 << 20)],
        b"console=ttyS0",
        4 << 20,
        0x8_0000,
        &[],
    )
    .unwrap();
    assert_eq!(plan.kernel_gpa, 0x100_0000);
    assert!(plan.initrd_gpa >= plan.kernel_gpa + image.init_size);
}

#[test]
fn initramfs_from_debian_busybox() {
    let material = linux::fetch_debian_guest().expect("fetching the Debian guest material");
    let busybox = std::fs::read(&material.busybox).unwrap();
    assert!(busybox.starts_with(b"\x7fELF"), "busybox is not an ELF");
    let dir = std::env::temp_dir().join(format!("nv-linux-guest-{}", std::process::id()));
    let out = dir.join("initramfs.cpio");
    linux::build_initramfs(
        &material.busybox,
        &[],
        &material.modules,
        linux::DEFAULT_INIT,
        &out,
    )
    .unwrap();
    let archive = std::fs::read(&out).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(archive.len() > busybox.len());
    assert!(archive
        .windows(busybox.len())
        .any(|w| w == busybox.as_slice()));
}

#[test]
fn debian_guest_modules_are_there_in_load_order() {
    let material = linux::fetch_debian_guest().expect("fetching the Debian guest material");
    let names: Vec<String> = material
        .modules
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for wanted in linux::GUEST_MODULES {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} not in {names:?}"
        );
    }
    let position = |name: &str| names.iter().position(|n| n == name).unwrap();
    // virtio_ring, then virtio, before the transport and the balloon.
    assert!(position("virtio_ring") < position("virtio"));
    assert!(position("virtio") < position("virtio_mmio"));
    assert!(position("virtio") < position("virtio_balloon"));
    // The network driver after its failover helpers.
    assert!(position("failover") < position("net_failover"));
    assert!(position("net_failover") < position("virtio_net"));
    for module in &material.modules {
        let bytes = std::fs::read(module).unwrap();
        assert!(
            bytes.starts_with(b"\x7fELF"),
            "{} is not an ELF",
            module.display()
        );
    }
}
