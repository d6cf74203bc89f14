//! bzImage parsing and boot plans, on synthetic images: a 4 KiB setup (7 setup sectors) with a
//! protocol 2.15 header, then a fake 64 KiB kernel; plus mutated and random bytes that must
//! never panic.

use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const KERNEL_LEN: usize = 64 << 10;
const INIT_SIZE: u32 = 4 << 20;

fn put(image: &mut [u8], at: usize, bytes: &[u8]) {
    image[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A valid image: header fields as a Debian 6.1 kernel has them, smaller.
fn synthetic() -> Vec<u8> {
    let mut image = vec![0u8; 4096 + KERNEL_LEN];
    image[0x1F1] = 7; // setup_sects: 7 + the boot sector = 4 KiB.
    put(&mut image, 0x1FE, &0xAA55u16.to_le_bytes());
    put(&mut image, 0x200, &[0xEB, 0x66]); // jmp short: the header ends at 0x268.
    put(&mut image, 0x202, b"HdrS");
    put(&mut image, 0x206, &0x020Fu16.to_le_bytes());
    image[0x211] = LOADED_HIGH | 0x20; // QUIET_FLAG too, which the plan drops.
    put(&mut image, 0x214, &0x10_0000u32.to_le_bytes());
    put(&mut image, 0x22C, &0x7FFF_FFFFu32.to_le_bytes());
    put(&mut image, 0x230, &0x20_0000u32.to_le_bytes());
    image[0x234] = 1;
    put(&mut image, 0x236, &0x7Fu16.to_le_bytes());
    put(&mut image, 0x238, &2047u32.to_le_bytes());
    put(&mut image, 0x258, &0x100_0000u64.to_le_bytes());
    put(&mut image, 0x260, &INIT_SIZE.to_le_bytes());
    put(&mut image, 0x264, &0x190u32.to_le_bytes());
    for (i, byte) in image[4096..].iter_mut().enumerate() {
        *byte = i as u8;
    }
    image
}

fn u16_of(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_of(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_of(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

const E820: [(u64, u64, u32); 3] = [
    (0, 0x9_F000, 1),
    (0x8_0000, 0x1_0000, 3),
    (0x10_0000, 255 * MIB, 1),
];

/// 256 MiB of RAM from 0, in two ranges that touch (merged by the plan).
const RAM: [(u64, u64); 2] = [(0, MIB), (MIB, 255 * MIB)];

#[test]
fn parses_every_header_field() {
    let bytes = synthetic();
    let image = parse(&bytes).unwrap();
    assert!(is_bzimage(&bytes));
    assert_eq!(image.setup.len(), 4096);
    assert_eq!(image.kernel, &bytes[4096..]);
    assert_eq!(image.header, &bytes[0x1F1..0x268]);
    assert_eq!(image.version, 0x020F);
    assert_eq!(image.loadflags, 0x21);
    assert_eq!(image.xloadflags, 0x7F);
    assert_eq!(image.code32_start, 0x10_0000);
    assert_eq!(image.pref_address, 0x100_0000);
    assert_eq!(image.init_size, u64::from(INIT_SIZE));
    assert_eq!(image.kernel_alignment, 0x20_0000);
    assert!(image.relocatable);
    assert_eq!(image.initrd_addr_max, 0x7FFF_FFFF);
    assert_eq!(image.cmdline_size, 2047);
    assert_eq!(image.handover_offset, 0x190);
    assert!(image.takes_rsdp());
}

#[test]
fn setup_sects_zero_means_four() {
    let mut bytes = synthetic();
    bytes[0x1F1] = 0;
    let image = parse(&bytes).unwrap();
    assert_eq!(image.setup.len(), 5 * 512);
    assert_eq!(image.kernel.len(), bytes.len() - 5 * 512);
}

/// A change to the synthetic image.
type Mutation = fn(&mut Vec<u8>);

#[test]
fn header_errors_name_what_is_wrong() {
    let cases: [(Mutation, BzImageError); 8] = [
        (
            |b| b.truncate(0x100),
            BzImageError::Truncated {
                what: "the setup header's magic",
                needed: 0x206,
                len: 0x100,
            },
        ),
        (|b| b[0x1FE] = 0, BzImageError::NoBootFlag),
        (|b| b[0x202] = b'X', BzImageError::NoHdrS),
        (
            |b| put(b, 0x206, &0x020Au16.to_le_bytes()),
            BzImageError::ProtocolTooOld { version: 0x020A },
        ),
        (
            |b| b[0x201] = 0x40,
            BzImageError::HeaderTooShort { end: 0x242 },
        ),
        (|b| b[0x211] = 0x80, BzImageError::NotLoadedHigh),
        (
            |b| put(b, 0x236, &0x7Eu16.to_le_bytes()),
            BzImageError::No64BitEntry,
        ),
        (
            |b| put(b, 0x230, &0x30_0000u32.to_le_bytes()),
            BzImageError::BadKernelAlignment {
                alignment: 0x30_0000,
            },
        ),
    ];
    for (mutate, expected) in cases {
        let mut bytes = synthetic();
        mutate(&mut bytes);
        assert_eq!(parse(&bytes), Err(expected));
    }
    let mut bytes = synthetic();
    bytes.truncate(3000);
    assert_eq!(
        parse(&bytes),
        Err(BzImageError::Truncated {
            what: "the setup sectors",
            needed: 4096,
            len: 3000
        })
    );
    let mut bytes = synthetic();
    bytes.truncate(4096);
    assert_eq!(parse(&bytes), Err(BzImageError::NoKernel));
    let mut bytes = synthetic();
    put(&mut bytes, 0x260, &0x1000u32.to_le_bytes());
    assert_eq!(
        parse(&bytes),
        Err(BzImageError::InitSizeTooSmall {
            init_size: 0x1000,
            kernel_len: KERNEL_LEN
        })
    );
}

#[test]
fn messages_read_as_the_brief_says() {
    let text = |e: BzImageError| alloc::format!("{e}");
    assert_eq!(
        text(BzImageError::NoHdrS),
        "not a bzImage: no HdrS magic at 0x202"
    );
    assert!(text(BzImageError::ProtocolTooOld { version: 0x020A })
        .starts_with("boot protocol 2.10 is older than 2.12"));
    assert_eq!(
        text(BzImageError::No64BitEntry),
        "kernel has no 64-bit entry (XLF_KERNEL_64)"
    );
    assert!(text(BzImageError::NotEnoughRam {
        init_size: 52 * MIB,
        alignment: 0x20_0000
    })
    .contains("at least 68 MiB"));
}

#[test]
fn pvh_elf_is_not_a_bzimage() {
    let mut elf = vec![0u8; 4096];
    elf[..4].copy_from_slice(b"\x7fELF");
    assert!(!is_bzimage(&elf));
    assert!(!is_bzimage(b""));
}

fn plan_for(
    bytes: &[u8],
    ram: &[(u64, u64)],
    initrd_len: u64,
) -> Result<LinuxBootPlan, BzImageError> {
    let image = parse(bytes).unwrap();
    plan(
        &image,
        ram,
        b"console=ttyS0 nv.test=sleep",
        initrd_len,
        0x8_0000,
        &E820,
    )
}

#[test]
fn zero_page_fields_sit_at_their_offsets() {
    let bytes = synthetic();
    let boot = plan_for(&bytes, &RAM, 0x12_3456).unwrap();
    let zp = &boot.zero_page;
    assert_eq!(zp.len(), 4096);
    // Everything below the header is zero but what the loader fills in.
    assert_eq!(u64_of(zp, 0x070), 0x8_0000, "acpi_rsdp_addr");
    assert_eq!(
        u32_of(zp, 0x0C0),
        (boot.initrd_gpa >> 32) as u32,
        "ext_ramdisk_image"
    );
    assert_eq!(u32_of(zp, 0x0C4), 0, "ext_ramdisk_size");
    assert_eq!(u32_of(zp, 0x0C8), 0, "ext_cmd_line_ptr");
    assert_eq!(zp[0x1E8], 3, "e820_entries");
    assert_eq!(zp[0x1EF], 0, "sentinel");
    // The setup header is the image's, but for the loader's fields.
    assert_eq!(&zp[0x1F1..0x210], &bytes[0x1F1..0x210]);
    assert_eq!(zp[0x210], 0xFF, "type_of_loader");
    assert_eq!(
        zp[0x211], LOADED_HIGH,
        "loadflags: LOADED_HIGH only, no CAN_USE_HEAP"
    );
    assert_eq!(
        u32_of(zp, 0x214),
        0x10_0000,
        "code32_start left as the image has it"
    );
    assert_eq!(u32_of(zp, 0x218), boot.initrd_gpa as u32, "ramdisk_image");
    assert_eq!(u32_of(zp, 0x21C), 0x12_3456, "ramdisk_size");
    assert_eq!(u16_of(zp, 0x224), 0, "heap_end_ptr");
    assert_eq!(u32_of(zp, 0x228), 0x8000, "cmd_line_ptr");
    assert_eq!(&zp[0x22C..0x268], &bytes[0x22C..0x268]);
    assert!(zp[0x268..0x2D0].iter().all(|&b| b == 0));
    for (i, &(addr, size, kind)) in E820.iter().enumerate() {
        let at = 0x2D0 + 20 * i;
        assert_eq!(
            (u64_of(zp, at), u64_of(zp, at + 8), u32_of(zp, at + 16)),
            (addr, size, kind)
        );
    }
    assert!(zp[0x2D0 + 60..].iter().all(|&b| b == 0));
}

#[test]
fn registers_gdt_and_command_line() {
    let boot = plan_for(&synthetic(), &RAM, 0).unwrap();
    assert_eq!(boot.kernel_gpa, 0x100_0000, "pref_address fits");
    assert_eq!(boot.entry_rip, 0x100_0200);
    assert_eq!((boot.rsi, boot.zero_page_gpa), (0x7000, 0x7000));
    assert_eq!((boot.cr3, boot.page_tables_gpa), (0x1_0000, 0x1_0000));
    assert_eq!((boot.gdt_gpa, boot.cmdline_gpa), (0x6000, 0x8000));
    assert_eq!(boot.cmdline, b"console=ttyS0 nv.test=sleep\0");
    assert_eq!(boot.initrd_gpa, 0);
    assert_eq!(u32_of(&boot.zero_page, 0x21C), 0);
    let gdt: Vec<u64> = boot.gdt.chunks(8).map(|d| u64_of(d, 0)).collect();
    assert_eq!(gdt, [0, 0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF]);
}

#[test]
fn command_line_is_truncated_to_cmdline_size() {
    let mut bytes = synthetic();
    put(&mut bytes, 0x238, &7u32.to_le_bytes());
    let boot = plan_for(&bytes, &RAM, 0).unwrap();
    assert_eq!(boot.cmdline, b"console\0");
}

#[test]
fn page_tables_map_four_gib_with_2m_pages() {
    let boot = plan_for(&synthetic(), &RAM, 0).unwrap();
    let pt = &boot.page_tables;
    assert_eq!(boot.identity_map_bytes, 4 * GIB);
    assert_eq!(pt.len(), 6 * 4096);
    assert_eq!(u64_of(pt, 0), 0x1_1003, "PML4[0] → PDPT");
    assert!(pt[8..4096].iter().all(|&b| b == 0));
    for gib in 0..4u64 {
        assert_eq!(
            u64_of(pt, 4096 + 8 * gib as usize),
            (0x1_2000 + gib * 4096) | 3
        );
        for entry in [0u64, 1, 511] {
            let at = (2 + gib as usize) * 4096 + entry as usize * 8;
            assert_eq!(u64_of(pt, at), (gib * GIB + entry * 2 * MIB) | 0x83);
        }
    }
    // 16 GiB of RAM: 16 PDs; 100 GiB: capped at 64.
    let big = plan_for(&synthetic(), &[(0, 16 * GIB)], 0).unwrap();
    assert_eq!(
        (big.identity_map_bytes, big.page_tables.len()),
        (16 * GIB, 18 * 4096)
    );
    let huge = plan_for(&synthetic(), &[(0, 100 * GIB)], 0).unwrap();
    assert_eq!(huge.identity_map_bytes, 64 * GIB);
    assert!(PAGE_TABLES_GPA + huge.page_tables.len() as u64 <= 0x8_0000);
    // Every PD entry of the 64 PDs, read as one array, maps its own 2 MiB page.
    let pds = &huge.page_tables[2 * 4096..];
    assert_eq!(pds.len(), 64 * 4096);
    for (i, entry) in pds.chunks_exact(8).enumerate() {
        assert_eq!(u64_of(entry, 0), (i as u64 * 2 * MIB) | 0x83);
    }
}

#[test]
fn kernel_is_relocated_when_pref_address_is_not_ram() {
    // A hole at 16–32 MiB: the first 2 MiB-aligned fit at or above 16 MiB is 32 MiB.
    let ram = [(0, 16 * MIB), (32 * MIB + 4096, 96 * MIB)];
    let boot = plan_for(&synthetic(), &ram, 0).unwrap();
    assert_eq!(boot.kernel_gpa, 34 * MIB);
    assert_eq!(boot.entry_rip, 34 * MIB + 0x200);
    // Not relocatable: refused, naming the span.
    let mut bytes = synthetic();
    bytes[0x234] = 0;
    assert_eq!(
        plan_for(&bytes, &ram, 0),
        Err(BzImageError::PreferredAddressNotRam {
            pref_address: 16 * MIB,
            init_size: 4 * MIB
        })
    );
}

#[test]
fn too_little_ram_is_an_error() {
    let ram = [(0, 18 * MIB)];
    assert_eq!(
        plan_for(&synthetic(), &ram, 0),
        Err(BzImageError::NotEnoughRam {
            init_size: 4 * MIB,
            alignment: 2 * MIB
        })
    );
    // No RAM under the fixed boot area.
    assert_eq!(
        plan_for(&synthetic(), &[(MIB, 255 * MIB)], 0),
        Err(BzImageError::LowMemoryMissing {
            start: 0x6000,
            end: 0x1_0000 + 6 * 4096
        })
    );
}

#[test]
fn initrd_goes_high_below_its_limit_and_off_the_kernel() {
    // 256 MiB of RAM, limit above it: the initrd ends at the top of RAM, page-aligned down.
    let boot = plan_for(&synthetic(), &RAM, 0x12_3456).unwrap();
    assert_eq!(boot.initrd_gpa, (256 * MIB - 0x12_3456) & !0xFFF);
    // initrd_addr_max below the top of RAM: the initrd's last byte is at or below it.
    let mut bytes = synthetic();
    put(&mut bytes, 0x22C, &(64 * MIB as u32 - 1).to_le_bytes());
    let boot = plan_for(&bytes, &RAM, MIB).unwrap();
    assert_eq!(boot.initrd_gpa, 63 * MIB);
    // RAM ending right after the kernel's span: the initrd goes below the kernel instead.
    let ram = [(0, 20 * MIB + 4096)];
    let boot = plan_for(&synthetic(), &ram, 2 * MIB).unwrap();
    assert_eq!(boot.kernel_gpa, 16 * MIB);
    assert_eq!(boot.initrd_gpa, 14 * MIB);
    let (start, end) = (boot.initrd_gpa, boot.initrd_gpa + 2 * MIB);
    assert!(end <= boot.kernel_gpa || start >= boot.kernel_gpa + 4 * MIB);
    // Above 4 GiB of RAM: the initrd stays below 4 GiB (and below initrd_addr_max).
    let boot = plan_for(&synthetic(), &[(0, 8 * GIB)], MIB).unwrap();
    assert_eq!(boot.initrd_gpa, 2 * GIB - MIB);
    // No room at all.
    assert_eq!(
        plan_for(&synthetic(), &[(0, 20 * MIB)], 32 * MIB),
        Err(BzImageError::InitrdDoesNotFit {
            len: 32 * MIB,
            limit: 0x8000_0000
        })
    );
}

#[test]
fn too_many_e820_entries_are_refused() {
    let image_bytes = synthetic();
    let image = parse(&image_bytes).unwrap();
    let e820 = vec![(0u64, 4096u64, 1u32); 129];
    assert_eq!(
        plan(&image, &RAM, b"", 0, 0, &e820),
        Err(BzImageError::TooManyE820Entries { count: 129 })
    );
    let full = plan(&image, &RAM, b"", 0, 0, &e820[..128]).unwrap();
    assert_eq!(full.zero_page[0x1E8], 128);
}

#[test]
fn protocol_2_12_gets_no_rsdp() {
    let mut bytes = synthetic();
    put(&mut bytes, 0x206, &0x020Cu16.to_le_bytes());
    let boot = plan_for(&bytes, &RAM, 0).unwrap();
    assert_eq!(u64_of(&boot.zero_page, 0x070), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
        let _ = is_bzimage(&bytes);
        if let Ok(image) = parse(&bytes) {
            let _ = plan(&image, &RAM, &bytes[..bytes.len().min(100)], 4096, 0, &E820);
        }
    }

    #[test]
    fn mutated_images_never_panic(
        edits in proptest::collection::vec((0x1F0usize..0x270, any::<u8>()), 1..16),
        cut in 0usize..(4096 + KERNEL_LEN + 1),
        ram in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..6),
        initrd_len in any::<u64>(),
        command_line in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        let mut bytes = synthetic();
        for (at, value) in edits {
            bytes[at] = value;
        }
        bytes.truncate(cut);
        if let Ok(image) = parse(&bytes) {
            prop_assert!(image.version >= MIN_PROTOCOL);
            prop_assert!(image.setup.len() + image.kernel.len() == bytes.len());
            if let Ok(boot) = plan(&image, &ram, &command_line, initrd_len, 0, &E820) {
                prop_assert_eq!(boot.zero_page.len(), 4096);
                prop_assert!(boot.cmdline.len() as u64 <= u64::from(image.cmdline_size) + 1);
                prop_assert_eq!(boot.entry_rip, boot.kernel_gpa + 0x200);
                if initrd_len > 0 {
                    let end = boot.initrd_gpa + initrd_len;
                    prop_assert!(end <= boot.kernel_gpa || boot.initrd_gpa >= boot.kernel_gpa + image.init_size);
                    prop_assert!(end <= u64::from(image.initrd_addr_max) + 1);
                }
            }
        }
    }
}
