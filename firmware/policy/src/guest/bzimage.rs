//! Reading a Linux bzImage: the setup header of the x86 boot protocol (Linux
//! `Documentation/arch/x86/boot.rst`, "The real-mode kernel header"), checked field by field.
//!
//! A bzImage is the boot sector and `setup_sects` setup sectors (512 bytes each, `0` meaning 4),
//! then the protected-mode kernel. numavisor enters it by the 64-bit boot protocol: the kernel
//! copied to its load address, paging on with an identity map, `rsi` pointing at the zero page
//! (`struct boot_params`), `rip` at the load address + 0x200 (`startup_64`). That needs boot
//! protocol 2.12 or later (`xloadflags`), `LOADED_HIGH` and `XLF_KERNEL_64`. The bytes come
//! from the layout, but are still distrusted: every read is bounds-checked, every sum checked,
//! and a bad image refuses its partition only. Building the boot state is [`plan`].

mod plan;

pub use plan::{
    plan, LinuxBootPlan, BOOT_GDT_GPA, CMDLINE_GPA, CMDLINE_MAX_BYTES, MAX_E820_ENTRIES,
    PAGE_TABLES_GPA, ZERO_PAGE_GPA,
};

use core::fmt;

/// Offset of the setup header in the image (and in the zero page): `setup_sects`.
pub const SETUP_HEADER_OFFSET: usize = 0x1F1;
/// The lowest boot protocol accepted: 2.12 added `xloadflags` (and with it `XLF_KERNEL_64`).
pub const MIN_PROTOCOL: u16 = 0x020C;
/// Offset of the 64-bit entry point from the protected-mode kernel's load address.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// `loadflags` bit 0: the protected-mode kernel is loaded at 0x100000 or above.
pub const LOADED_HIGH: u8 = 1 << 0;
/// `loadflags` bit 7: `heap_end_ptr` is valid.
pub const CAN_USE_HEAP: u8 = 1 << 7;
/// `xloadflags` bit 0: the kernel has the 64-bit entry at load address + 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;

/// Offsets of the setup header fields used here (boot.rst, "The real-mode kernel header").
pub(crate) mod offset {
    pub const SETUP_SECTS: usize = 0x1F1;
    pub const BOOT_FLAG: usize = 0x1FE;
    pub const JUMP_END: usize = 0x201;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const CODE32_START: usize = 0x214;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21C;
    pub const HEAP_END_PTR: usize = 0x224;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22C;
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const PREF_ADDRESS: usize = 0x258;
    pub const INIT_SIZE: usize = 0x260;
    pub const HANDOVER_OFFSET: usize = 0x264;
    /// The first byte past `handover_offset`: a 2.12 header reaches at least this far.
    pub const HEADER_MIN_END: usize = 0x268;
}

/// A checked bzImage, borrowing the image's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BzImage<'a> {
    /// The boot sector and the setup sectors: `(setup_sects + 1) * 512` bytes.
    pub setup: &'a [u8],
    /// The protected-mode kernel (everything after the setup sectors), copied to the load
    /// address.
    pub kernel: &'a [u8],
    /// The setup header as the boot protocol defines its length: image bytes `0x1F1` up to
    /// `0x202 + image[0x201]`, copied into the zero page at the same offsets.
    pub header: &'a [u8],
    /// Boot protocol version, `0x020C` for 2.12; at least [`MIN_PROTOCOL`].
    pub version: u16,
    /// `loadflags` as the image has them (`LOADED_HIGH` is set).
    pub loadflags: u8,
    /// `xloadflags` as the image has them (`XLF_KERNEL_64` is set).
    pub xloadflags: u16,
    /// `code32_start`: the 32-bit entry; unused by the 64-bit protocol.
    pub code32_start: u32,
    /// Where the kernel prefers to be loaded (`0x1000000` for Debian's kernels).
    pub pref_address: u64,
    /// Bytes of memory the kernel needs from its load address while it decompresses itself
    /// and sets up; at least the kernel's own size.
    pub init_size: u64,
    /// The alignment a relocated kernel's load address must have; a power of two when
    /// `relocatable`.
    pub kernel_alignment: u32,
    /// Whether the kernel may be loaded at another `kernel_alignment`-aligned address.
    pub relocatable: bool,
    /// The highest address the initrd's last byte may occupy.
    pub initrd_addr_max: u32,
    /// The longest command line the kernel reads, without its NUL.
    pub cmdline_size: u32,
    /// `handover_offset`: the EFI hand-over entry; unused here.
    pub handover_offset: u32,
}

impl BzImage<'_> {
    /// Whether the kernel reads `acpi_rsdp_addr` from the zero page (protocol 2.14 or later).
    pub fn takes_rsdp(&self) -> bool {
        self.version >= 0x020E
    }
}

/// Why an image is not a bzImage numavisor can boot, or why it cannot be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BzImageError {
    /// The image ends before `what`, which needs `needed` bytes.
    Truncated {
        what: &'static str,
        needed: u64,
        len: usize,
    },
    /// No 0xAA55 at 0x1FE.
    NoBootFlag,
    /// No "HdrS" at 0x202.
    NoHdrS,
    /// Boot protocol older than 2.12.
    ProtocolTooOld { version: u16 },
    /// The setup header, by its own length byte, ends before `handover_offset`.
    HeaderTooShort { end: usize },
    /// `LOADED_HIGH` clear: a zImage for 0x10000.
    NotLoadedHigh,
    /// `XLF_KERNEL_64` clear: no 64-bit entry.
    No64BitEntry,
    /// No protected-mode kernel after the setup sectors.
    NoKernel,
    /// `init_size` is smaller than the kernel itself.
    InitSizeTooSmall { init_size: u64, kernel_len: usize },
    /// A relocatable kernel whose `kernel_alignment` is not a power of two.
    BadKernelAlignment { alignment: u32 },
    /// Not relocatable, and `[pref_address, + init_size)` is not guest RAM.
    PreferredAddressNotRam { pref_address: u64, init_size: u64 },
    /// No `alignment`-aligned place at or above 16 MiB holds `init_size` bytes of RAM.
    NotEnoughRam { init_size: u64, alignment: u64 },
    /// The kernel would lie above what the boot page tables map.
    KernelAboveIdentityMap { end: u64, mapped: u64 },
    /// No page-aligned place below `limit` holds the initrd without touching the kernel.
    InitrdDoesNotFit { len: u64, limit: u64 },
    /// The fixed low boot area `[start, end)` (GDT, zero page, command line, page tables) is
    /// not guest RAM.
    LowMemoryMissing { start: u64, end: u64 },
    /// More memory-map entries than the zero page holds.
    TooManyE820Entries { count: usize },
}

impl fmt::Display for BzImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use BzImageError::*;
        match *self {
            Truncated { what, needed, len } => write!(
                f,
                "truncated bzImage: {what} needs {needed} bytes, the image has {len}"
            ),
            NoBootFlag => f.write_str("not a bzImage: no boot flag 0xAA55 at 0x1FE"),
            NoHdrS => f.write_str("not a bzImage: no HdrS magic at 0x202"),
            ProtocolTooOld { version } => write!(
                f,
                "boot protocol {}.{} is older than 2.12 (needed for the 64-bit entry)",
                version >> 8,
                version & 0xFF
            ),
            HeaderTooShort { end } => write!(
                f,
                "the setup header ends at {end:#x}, before handover_offset (0x268)"
            ),
            NotLoadedHigh => f.write_str(
                "kernel is not loaded high (LOADED_HIGH clear): a zImage, not a bzImage",
            ),
            No64BitEntry => f.write_str("kernel has no 64-bit entry (XLF_KERNEL_64)"),
            NoKernel => {
                f.write_str("truncated bzImage: no protected-mode kernel after the setup sectors")
            }
            InitSizeTooSmall {
                init_size,
                kernel_len,
            } => write!(
                f,
                "init_size ({init_size:#x}) is smaller than the kernel ({kernel_len:#x} bytes)"
            ),
            BadKernelAlignment { alignment } => write!(
                f,
                "kernel_alignment {alignment:#x} of a relocatable kernel is not a power of two"
            ),
            PreferredAddressNotRam {
                pref_address,
                init_size,
            } => write!(
                f,
                "kernel is not relocatable and needs guest RAM at {pref_address:#x}..{:#x} \
                 (pref_address + init_size)",
                pref_address.saturating_add(init_size)
            ),
            NotEnoughRam {
                init_size,
                alignment,
            } => write!(
                f,
                "not enough guest RAM for the kernel: it needs {init_size} bytes ({} MiB, its \
                 init_size) contiguous at a {alignment:#x}-aligned address at or above 16 MiB; \
                 give the partition at least {} MiB",
                init_size.div_ceil(1 << 20),
                (16u64 << 20).saturating_add(init_size).div_ceil(1 << 20)
            ),
            KernelAboveIdentityMap { end, mapped } => write!(
                f,
                "the kernel would end at {end:#x}, above the {mapped:#x} bytes the boot page \
                 tables map"
            ),
            InitrdDoesNotFit { len, limit } => write!(
                f,
                "no room for the {len}-byte initrd in guest RAM below {limit:#x} outside the \
                 kernel's init_size span"
            ),
            LowMemoryMissing { start, end } => write!(
                f,
                "guest RAM must cover {start:#x}..{end:#x} (boot GDT, zero page, command line, \
                 page tables)"
            ),
            TooManyE820Entries { count } => write!(
                f,
                "{count} memory-map entries; the zero page holds at most {MAX_E820_ENTRIES}"
            ),
        }
    }
}

fn u8_at(b: &[u8], o: usize) -> Option<u8> {
    b.get(o).copied()
}
fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Whether `bytes` look like a bzImage (boot flag and "HdrS"), before any other check: what
/// the layout uses to tell a bzImage from a PVH ELF.
pub fn is_bzimage(bytes: &[u8]) -> bool {
    u16_at(bytes, offset::BOOT_FLAG) == Some(0xAA55)
        && bytes.get(offset::HEADER..offset::HEADER + 4) == Some(b"HdrS")
}

/// Checks `bytes` as a bzImage the 64-bit boot protocol can start.
pub fn parse(bytes: &[u8]) -> Result<BzImage<'_>, BzImageError> {
    let truncated = |what, needed: usize| BzImageError::Truncated {
        what,
        needed: needed as u64,
        len: bytes.len(),
    };
    let magic_end = offset::VERSION;
    if bytes.len() < magic_end {
        return Err(truncated("the setup header's magic", magic_end));
    }
    if u16_at(bytes, offset::BOOT_FLAG) != Some(0xAA55) {
        return Err(BzImageError::NoBootFlag);
    }
    if bytes.get(offset::HEADER..offset::HEADER + 4) != Some(b"HdrS") {
        return Err(BzImageError::NoHdrS);
    }
    let version =
        u16_at(bytes, offset::VERSION).ok_or(truncated("the boot protocol version", 0x208))?;
    if version < MIN_PROTOCOL {
        return Err(BzImageError::ProtocolTooOld { version });
    }
    // boot.rst: "The end of setup header can be calculated as 0x0202 + byte value at 0x0201".
    let jump = u8_at(bytes, offset::JUMP_END).ok_or(truncated("the setup header", 0x202))?;
    let header_end = offset::HEADER + usize::from(jump);
    if header_end < offset::HEADER_MIN_END {
        return Err(BzImageError::HeaderTooShort { end: header_end });
    }
    let header = bytes
        .get(SETUP_HEADER_OFFSET..header_end)
        .ok_or(truncated("the setup header", header_end))?;
    let field = |read: Option<u32>| read.ok_or(truncated("the setup header", header_end));
    let loadflags =
        u8_at(bytes, offset::LOADFLAGS).ok_or(truncated("the setup header", header_end))?;
    if loadflags & LOADED_HIGH == 0 {
        return Err(BzImageError::NotLoadedHigh);
    }
    let xloadflags =
        u16_at(bytes, offset::XLOADFLAGS).ok_or(truncated("the setup header", header_end))?;
    if xloadflags & XLF_KERNEL_64 == 0 {
        return Err(BzImageError::No64BitEntry);
    }
    let setup_sects = match bytes[offset::SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let setup_len = (setup_sects + 1) * 512;
    let setup = bytes
        .get(..setup_len)
        .ok_or(truncated("the setup sectors", setup_len))?;
    let kernel = &bytes[setup_len..];
    if kernel.is_empty() {
        return Err(BzImageError::NoKernel);
    }
    let pref_address =
        u64_at(bytes, offset::PREF_ADDRESS).ok_or(truncated("the setup header", header_end))?;
    let init_size = u64::from(field(u32_at(bytes, offset::INIT_SIZE))?);
    if init_size < kernel.len() as u64 {
        return Err(BzImageError::InitSizeTooSmall {
            init_size,
            kernel_len: kernel.len(),
        });
    }
    let kernel_alignment = field(u32_at(bytes, offset::KERNEL_ALIGNMENT))?;
    let relocatable = u8_at(bytes, offset::RELOCATABLE_KERNEL)
        .ok_or(truncated("the setup header", header_end))?
        != 0;
    if relocatable && !kernel_alignment.is_power_of_two() {
        return Err(BzImageError::BadKernelAlignment {
            alignment: kernel_alignment,
        });
    }
    Ok(BzImage {
        setup,
        kernel,
        header,
        version,
        loadflags,
        xloadflags,
        code32_start: field(u32_at(bytes, offset::CODE32_START))?,
        pref_address,
        init_size,
        kernel_alignment,
        relocatable,
        initrd_addr_max: field(u32_at(bytes, offset::INITRD_ADDR_MAX))?,
        cmdline_size: field(u32_at(bytes, offset::CMDLINE_SIZE))?,
        handover_offset: field(u32_at(bytes, offset::HANDOVER_OFFSET))?,
    })
}

#[cfg(test)]
mod tests;
