//! Where a Linux guest's boot state goes and what it holds: the 64-bit boot protocol
//! (boot.rst, "64-bit Boot Protocol"; the zero page per `Documentation/arch/x86/zero-page.rst`).
//!
//! Fixed low addresses, all above 0x1000 (page 0 holds the real-mode IVT and BDA Linux reads),
//! below 640 KiB and clear of 0x80000–0x9FFFF (numavisor's guest ACPI tables):
//!
//! | GPA                   | What                                                    |
//! |-----------------------|---------------------------------------------------------|
//! | [`BOOT_GDT_GPA`]      | boot GDT: null, null, 0x10 code64, 0x18 data            |
//! | [`ZERO_PAGE_GPA`]     | the zero page (`struct boot_params`), 4 KiB; `rsi`      |
//! | [`CMDLINE_GPA`]       | the command line, NUL-terminated, < [`CMDLINE_MAX_BYTES`]|
//! | [`PAGE_TABLES_GPA`]   | PML4, PDPT, then one PD per GiB mapped (2 MiB pages); `cr3` |
//!
//! The kernel goes to `pref_address` if its `init_size` span is RAM there, else (relocatable
//! kernels) to the lowest `kernel_alignment`-aligned address at or above 16 MiB with room; the
//! initrd to the highest page-aligned place below `initrd_addr_max` and 4 GiB that keeps out
//! of the kernel's span and of the first MiB.

use alloc::vec;
use alloc::vec::Vec;

use super::offset;
use super::{BzImage, BzImageError, ENTRY_64_OFFSET, LOADED_HIGH};

/// The boot GDT (32 bytes).
pub const BOOT_GDT_GPA: u64 = 0x6000;
/// The zero page (4 KiB).
pub const ZERO_PAGE_GPA: u64 = 0x7000;
/// The command line.
pub const CMDLINE_GPA: u64 = 0x8000;
/// Room for the command line, its NUL included: up to the page tables.
pub const CMDLINE_MAX_BYTES: u64 = PAGE_TABLES_GPA - CMDLINE_GPA;
/// The boot page tables: at most 2 + 64 pages, so they end by 0x52000, below 0x80000.
pub const PAGE_TABLES_GPA: u64 = 0x10000;
/// The zero page's e820 table holds at most this many entries (`E820_MAX_ENTRIES_ZEROPAGE`).
pub const MAX_E820_ENTRIES: usize = 128;

const PAGE: u64 = 0x1000;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// A relocated kernel is placed at or above this.
const RELOCATE_FLOOR: u64 = 16 * MIB;
/// The identity map covers at least this much, and at most [`MAX_IDENTITY_MAP`].
const MIN_IDENTITY_MAP: u64 = 4 * GIB;
const MAX_IDENTITY_MAP: u64 = 64 * GIB;

/// Zero-page offsets outside the setup header (zero-page.rst).
const ZP_ACPI_RSDP_ADDR: usize = 0x070;
const ZP_EXT_RAMDISK_IMAGE: usize = 0x0C0;
const ZP_EXT_RAMDISK_SIZE: usize = 0x0C4;
const ZP_EXT_CMD_LINE_PTR: usize = 0x0C8;
const ZP_E820_ENTRIES: usize = 0x1E8;
const ZP_E820_TABLE: usize = 0x2D0;
const E820_ENTRY_BYTES: usize = 20;

/// The boot GDT's descriptors: null, null, 0x10 64-bit code (L=1, DPL 0), 0x18 flat data.
const GDT: [u64; 4] = [0, 0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF];

/// Page-table entry bits: present, writable, (in a PD) 2 MiB page.
const PTE_PRESENT_WRITABLE: u64 = 0x3;
const PDE_LARGE: u64 = 0x80;

/// A Linux guest's boot state: where each piece goes, its bytes, and the vCPU's start registers
/// (64-bit mode, paging on with [`page_tables`](Self::page_tables), CS 0x10, DS/ES/SS 0x18,
/// interrupts off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxBootPlan {
    /// Where [`BzImage::kernel`] is copied.
    pub kernel_gpa: u64,
    /// Where the initrd is copied; 0 when there is none.
    pub initrd_gpa: u64,
    /// [`ZERO_PAGE_GPA`].
    pub zero_page_gpa: u64,
    /// The zero page, 4096 bytes.
    pub zero_page: Vec<u8>,
    /// [`CMDLINE_GPA`].
    pub cmdline_gpa: u64,
    /// The command line, truncated to `cmdline_size` (and the room at [`CMDLINE_GPA`]), with
    /// its NUL.
    pub cmdline: Vec<u8>,
    /// [`BOOT_GDT_GPA`].
    pub gdt_gpa: u64,
    /// The boot GDT, 32 bytes; load GDTR with base `gdt_gpa`, limit 31.
    pub gdt: Vec<u8>,
    /// [`PAGE_TABLES_GPA`].
    pub page_tables_gpa: u64,
    /// PML4, PDPT and PDs identity-mapping [`identity_map_bytes`](Self::identity_map_bytes)
    /// with 2 MiB pages.
    pub page_tables: Vec<u8>,
    /// How much the page tables map from 0: max(4 GiB, top of RAM rounded up to a GiB), at most
    /// 64 GiB.
    pub identity_map_bytes: u64,
    /// `kernel_gpa + 0x200`: `startup_64`.
    pub entry_rip: u64,
    /// The zero page's address, for `rsi`.
    pub rsi: u64,
    /// The PML4's address, for `cr3`.
    pub cr3: u64,
}

/// Plans a Linux guest's boot. `ram`: usable guest RAM as sorted `(gpa, len)` ranges;
/// `command_line` without NUL; `initrd_len` 0 for none; `rsdp` the guest ACPI tables' RSDP
/// (passed in the zero page for protocol 2.14 and later); `e820` the guest's memory map as
/// `(addr, size, type)`, copied into the zero page.
pub fn plan(
    image: &BzImage,
    ram: &[(u64, u64)],
    command_line: &[u8],
    initrd_len: u64,
    rsdp: u64,
    e820: &[(u64, u64, u32)],
) -> Result<LinuxBootPlan, BzImageError> {
    let ram = merged(ram);
    if e820.len() > MAX_E820_ENTRIES {
        return Err(BzImageError::TooManyE820Entries { count: e820.len() });
    }
    let ram_top = ram.last().map_or(0, |&(start, end)| end.max(start));
    let identity_map_bytes = ram_top
        .div_ceil(GIB)
        .saturating_mul(GIB)
        .clamp(MIN_IDENTITY_MAP, MAX_IDENTITY_MAP);
    // The tables are built last, once the plan is known to succeed: up to 66 pages.
    let low_end = PAGE_TABLES_GPA + identity_map_pages(identity_map_bytes) * PAGE;
    if !contains(&ram, BOOT_GDT_GPA, low_end) {
        return Err(BzImageError::LowMemoryMissing {
            start: BOOT_GDT_GPA,
            end: low_end,
        });
    }

    let kernel_gpa = place_kernel(image, &ram)?;
    let kernel_end = kernel_gpa.saturating_add(image.init_size);
    if kernel_end > identity_map_bytes {
        return Err(BzImageError::KernelAboveIdentityMap {
            end: kernel_end,
            mapped: identity_map_bytes,
        });
    }
    let initrd_gpa = if initrd_len == 0 {
        0
    } else {
        // initrd_addr_max is the highest address the initrd's last byte may occupy.
        let limit = (u64::from(image.initrd_addr_max) + 1).min(MIN_IDENTITY_MAP);
        place_initrd(&ram, initrd_len, limit, (kernel_gpa, kernel_end)).ok_or(
            BzImageError::InitrdDoesNotFit {
                len: initrd_len,
                limit,
            },
        )?
    };

    let room = u64::from(image.cmdline_size).min(CMDLINE_MAX_BYTES - 1);
    let keep = command_line
        .iter()
        .take(room as usize)
        .take_while(|&&b| b != 0)
        .count();
    let mut cmdline = command_line[..keep].to_vec();
    cmdline.push(0);

    let zero_page = zero_page(image, initrd_gpa, initrd_len, rsdp, e820);
    let gdt = GDT.iter().flat_map(|d| d.to_le_bytes()).collect();
    let page_tables = identity_map(identity_map_bytes);
    Ok(LinuxBootPlan {
        kernel_gpa,
        initrd_gpa,
        zero_page_gpa: ZERO_PAGE_GPA,
        zero_page,
        cmdline_gpa: CMDLINE_GPA,
        cmdline,
        gdt_gpa: BOOT_GDT_GPA,
        gdt,
        page_tables_gpa: PAGE_TABLES_GPA,
        page_tables,
        identity_map_bytes,
        entry_rip: kernel_gpa + ENTRY_64_OFFSET,
        rsi: ZERO_PAGE_GPA,
        cr3: PAGE_TABLES_GPA,
    })
}

/// `ram` as sorted `[start, end)` ranges with touching or overlapping ones joined; empty and
/// overflowing ranges dropped.
fn merged(ram: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = ram
        .iter()
        .filter_map(|&(gpa, len)| Some((gpa, gpa.checked_add(len)?)))
        .filter(|&(start, end)| end > start)
        .collect();
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// Whether `[start, end)` lies inside one range of `ram`.
fn contains(ram: &[(u64, u64)], start: u64, end: u64) -> bool {
    ram.iter().any(|&(s, e)| s <= start && end <= e)
}

fn place_kernel(image: &BzImage, ram: &[(u64, u64)]) -> Result<u64, BzImageError> {
    let size = image.init_size;
    // Below 1 MiB the kernel would clash with the fixed boot area.
    if let Some(end) = image.pref_address.checked_add(size) {
        if image.pref_address >= MIB && contains(ram, image.pref_address, end) {
            return Ok(image.pref_address);
        }
    }
    if !image.relocatable {
        return Err(BzImageError::PreferredAddressNotRam {
            pref_address: image.pref_address,
            init_size: size,
        });
    }
    // Checked in `parse`: a power of two; the kernel itself needs at least 2 MiB alignment
    // only for its own page tables, which it builds, so the header's value is what counts.
    let alignment = u64::from(image.kernel_alignment);
    let lowest = ram.iter().find_map(|&(start, end)| {
        let gpa = align_up(start.max(RELOCATE_FLOOR), alignment)?;
        (gpa.checked_add(size)? <= end).then_some(gpa)
    });
    lowest.ok_or(BzImageError::NotEnoughRam {
        init_size: size,
        alignment,
    })
}

/// The highest page-aligned `gpa` with `[gpa, gpa + len)` in RAM, at or above 1 MiB, below
/// `limit`, and outside `kernel`.
fn place_initrd(ram: &[(u64, u64)], len: u64, limit: u64, kernel: (u64, u64)) -> Option<u64> {
    let mut best: Option<u64> = None;
    for &(start, end) in ram {
        let start = start.max(MIB);
        let end = end.min(limit);
        // The range, split around the kernel's span.
        let pieces = [(start, end.min(kernel.0)), (start.max(kernel.1), end)];
        for (lo, hi) in pieces {
            let Some(gpa) = hi.checked_sub(len).map(|top| top & !(PAGE - 1)) else {
                continue;
            };
            if lo < hi && gpa >= lo && best.is_none_or(|b| gpa > b) {
                best = Some(gpa);
            }
        }
    }
    best
}

fn align_up(value: u64, alignment: u64) -> Option<u64> {
    let mask = alignment.checked_sub(1)?;
    Some(value.checked_add(mask)? & !mask)
}

/// The zero page: zeros, the image's setup header at 0x1F1, then what the loader fills in.
fn zero_page(
    image: &BzImage,
    initrd_gpa: u64,
    initrd_len: u64,
    rsdp: u64,
    e820: &[(u64, u64, u32)],
) -> Vec<u8> {
    let mut zp = vec![0u8; PAGE as usize];
    let header_end = super::SETUP_HEADER_OFFSET + image.header.len();
    zp[super::SETUP_HEADER_OFFSET..header_end].copy_from_slice(image.header);
    // "Undefined" boot loader: we have no assigned ID.
    zp[offset::TYPE_OF_LOADER] = 0xFF;
    // LOADED_HIGH only. CAN_USE_HEAP stays clear (with heap_end_ptr 0): the heap is for the
    // real-mode setup code, which the 64-bit entry skips. KEEP_SEGMENTS is a 32-bit-entry
    // flag; QUIET_FLAG is left to the command line.
    zp[offset::LOADFLAGS] = LOADED_HIGH;
    put(&mut zp, offset::HEAP_END_PTR, &0u16.to_le_bytes());
    // code32_start is for the 32-bit entry; the copy from the image stays as it is.
    put(&mut zp, offset::CMD_LINE_PTR, &low32(CMDLINE_GPA));
    put(&mut zp, ZP_EXT_CMD_LINE_PTR, &high32(CMDLINE_GPA));
    put(&mut zp, offset::RAMDISK_IMAGE, &low32(initrd_gpa));
    put(&mut zp, ZP_EXT_RAMDISK_IMAGE, &high32(initrd_gpa));
    put(&mut zp, offset::RAMDISK_SIZE, &low32(initrd_len));
    put(&mut zp, ZP_EXT_RAMDISK_SIZE, &high32(initrd_len));
    // Older protocols find the RSDP by scanning the BIOS area; 2.14 and later read it here.
    if image.takes_rsdp() {
        put(&mut zp, ZP_ACPI_RSDP_ADDR, &rsdp.to_le_bytes());
    }
    // At most MAX_E820_ENTRIES (checked by `plan`), so the table ends at 0xCD0.
    zp[ZP_E820_ENTRIES] = e820.len() as u8;
    for (i, &(addr, size, kind)) in e820.iter().enumerate() {
        let at = ZP_E820_TABLE + i * E820_ENTRY_BYTES;
        put(&mut zp, at, &addr.to_le_bytes());
        put(&mut zp, at + 8, &size.to_le_bytes());
        put(&mut zp, at + 16, &kind.to_le_bytes());
    }
    zp
}

fn put(zp: &mut [u8], at: usize, bytes: &[u8]) {
    zp[at..at + bytes.len()].copy_from_slice(bytes);
}

fn low32(value: u64) -> [u8; 4] {
    (value as u32).to_le_bytes()
}

fn high32(value: u64) -> [u8; 4] {
    ((value >> 32) as u32).to_le_bytes()
}

/// How many pages [`identity_map`] builds for `bytes`: PML4, PDPT and one PD per GiB.
fn identity_map_pages(bytes: u64) -> u64 {
    2 + bytes / GIB
}

/// PML4 at [`PAGE_TABLES_GPA`], PDPT in the next page, then one PD per GiB of `bytes` (a
/// multiple of 1 GiB, at most 64 GiB), each mapping 512 2 MiB pages 1:1.
fn identity_map(bytes: u64) -> Vec<u8> {
    let pds = (bytes / GIB) as usize;
    let mut tables = vec![0u8; identity_map_pages(bytes) as usize * PAGE as usize];
    let (pml4, rest) = tables.split_at_mut(PAGE as usize);
    let (pdpt, pd_pages) = rest.split_at_mut(PAGE as usize);
    let pdpt_gpa = PAGE_TABLES_GPA + PAGE;
    pml4[..8].copy_from_slice(&(pdpt_gpa | PTE_PRESENT_WRITABLE).to_le_bytes());
    // PDPT entry `gib` points at the PD in page 2 + `gib`.
    let (pdpt_entries, _) = pdpt.as_chunks_mut::<8>();
    for (gib, entry) in pdpt_entries.iter_mut().take(pds).enumerate() {
        let pd_gpa = PAGE_TABLES_GPA + (2 + gib as u64) * PAGE;
        *entry = (pd_gpa | PTE_PRESENT_WRITABLE).to_le_bytes();
    }
    // The PDs back to back: entry `i` over all of them maps the 2 MiB page at `i` × 2 MiB.
    // (A plain loop over whole entries: up to 32768 of them, the plan's costliest part.)
    let (pd_entries, _) = pd_pages.as_chunks_mut::<8>();
    let mut gpa = 0u64;
    for entry in pd_entries {
        *entry = (gpa | PTE_PRESENT_WRITABLE | PDE_LARGE).to_le_bytes();
        gpa += 2 * MIB;
    }
    tables
}
