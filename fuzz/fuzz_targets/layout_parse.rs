//! A layout file from untrusted text: `load_str` (TOML → raw form → checked form, as
//! `load_with` does for a file) and, when it passes, `emit_rust`.
//!
//! The text is checked as `layout.toml` in a per-process directory (never written there: that
//! cost a file write and read per input) that holds what layouts name:
//! `guests/test-guest.elf` (a stand-in, taken as a PVH ELF), `linux/vmlinuz` (a minimal bzImage
//! header that passes `bzimage::parse`) and `linux/initramfs.cpio`.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use numavisor_layout::{emit_rust, load_str, LoadOptions};

struct Scratch {
    /// Where the layout would be: it names it and places paths it gives.
    layout: PathBuf,
    options: LoadOptions,
}

/// A bzImage header: boot flag, "HdrS", protocol 2.15, 64-bit entry, one setup sector, a
/// 512-byte kernel and a 4 MiB `init_size`.
fn tiny_bzimage() -> Vec<u8> {
    let mut image = vec![0u8; 1024];
    image[0x1F1] = 1; // setup_sects
    image[0x1FE..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
    image[0x201] = 0x6A; // header ends at 0x26C
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
    image[0x211] = 1; // loadflags: LOADED_HIGH
    image[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes()); // kernel_alignment
    image[0x234] = 1; // relocatable
    image[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // xloadflags: XLF_KERNEL_64
    image[0x238..0x23C].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
    image[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes()); // pref_address
    image[0x260..0x264].copy_from_slice(&0x40_0000u32.to_le_bytes()); // init_size
    image
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let base =
            std::env::temp_dir().join(format!("numavisor-fuzz-layout-{}", std::process::id()));
        let guest_dir = base.join("guests");
        let linux_dir = base.join("linux");
        for dir in [&guest_dir, &linux_dir] {
            std::fs::create_dir_all(dir).expect("create the scratch directory");
        }
        std::fs::write(guest_dir.join("test-guest.elf"), b"\x7fELF stand-in").expect("write guest");
        std::fs::write(linux_dir.join("vmlinuz"), tiny_bzimage()).expect("write vmlinuz");
        std::fs::write(linux_dir.join("initramfs.cpio"), b"070701").expect("write initramfs");
        Scratch {
            layout: base.join("layout.toml"),
            options: LoadOptions {
                guest_dir,
                linux_dir,
            },
        }
    })
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let scratch = scratch();
    if let Ok(layout) = load_str(text, &scratch.layout, &scratch.options) {
        let _ = emit_rust(&layout);
        for partition in &layout.partitions {
            let _ = partition.minimum_pool_bytes();
            let _ = partition.slat_table_pages();
        }
    }
});
