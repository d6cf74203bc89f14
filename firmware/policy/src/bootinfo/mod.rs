//! The one description of what a boot path hands us.
//!
//! Every boot protocol (PVH, multiboot2, coreboot and UEFI) only translates its
//! own format into a [`BootInfo`]: a memory map, where the RSDP is, the command line and the
//! boot modules. Nothing after the translator knows which protocol booted the image.

pub mod coreboot;
pub mod multiboot2;
pub mod pvh;
pub mod uefi;

use alloc::string::String;
use alloc::vec::Vec;

/// What a range of the boot memory map may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// RAM the hypervisor may use.
    Usable,
    /// Firmware or device memory: never touched.
    Reserved,
    /// ACPI tables; reclaimable once parsed, but we keep them (guests never see host tables).
    AcpiReclaimable,
    /// ACPI non-volatile storage: never touched.
    AcpiNvs,
    /// Memory the firmware reported as bad.
    Unusable,
}

/// One range of the boot memory map, in system-physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub base: u64,
    pub size: u64,
    pub kind: MemoryKind,
}

impl MemoryRegion {
    /// One past the last byte, saturating so a hostile map cannot wrap.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

/// Which protocol booted the image (reported, never branched on after translation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// Xen's PVH ABI (QEMU `-kernel`, cloud-hypervisor `--kernel`).
    Pvh,
    /// Multiboot2 (GRUB's `multiboot2` command).
    Multiboot2,
    /// coreboot, the image as its ELF payload.
    Coreboot,
    /// UEFI: numavisor's UEFI application (`numavisor.efi`), after `ExitBootServices`.
    Uefi,
}

/// Where the loader says the ACPI RSDP is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RsdpSource {
    /// Its physical address (PVH `rsdp_paddr`).
    At(u64),
    /// A copy of its bytes (multiboot2 tags 14 and 15), which lay at `address` inside the
    /// loader's boot information. Discovery reads the RSDP from `bytes` and the tables it
    /// points at from physical memory.
    Copied { address: u64, bytes: Vec<u8> },
}

impl RsdpSource {
    /// The physical address to report: the RSDP's own, or that of the loader's copy.
    pub fn address(&self) -> u64 {
        match self {
            RsdpSource::At(address) | RsdpSource::Copied { address, .. } => *address,
        }
    }
}

/// A boot module: a file the loader placed in RAM (multiboot2 `module2`, PVH modlist, which
/// QEMU fills from `-initrd`). Its memory stays reserved: nothing hands it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Physical address of its first byte.
    pub start: u64,
    /// One past its last byte (`start <= end`, checked by the translator).
    pub end: u64,
    /// Its string (multiboot2) or command line (PVH); often the file name.
    pub name: String,
}

impl Module {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// What every boot path provides, already copied out of the loader's memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootInfo {
    pub protocol: BootProtocol,
    pub memory_map: Vec<MemoryRegion>,
    /// Where the ACPI RSDP is, if the loader said.
    pub rsdp: Option<RsdpSource>,
    pub command_line: String,
    /// The boot modules, in the loader's order.
    pub modules: Vec<Module>,
}

impl BootInfo {
    /// The usable RAM ranges, sorted, with overlaps merged and zero-sized entries dropped.
    ///
    /// Loaders are allowed to hand out unsorted, overlapping maps; everything downstream wants
    /// one clean list.
    pub fn usable_ram(&self) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = self
            .memory_map
            .iter()
            .filter(|r| r.kind == MemoryKind::Usable && r.size > 0)
            .map(|r| (r.base, r.end()))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        // Anything a non-usable entry claims wins over a usable one that overlaps it.
        let mut result = Vec::with_capacity(merged.len());
        for (start, end) in merged {
            let mut pieces = alloc::vec![(start, end)];
            for r in self
                .memory_map
                .iter()
                .filter(|r| r.kind != MemoryKind::Usable)
            {
                pieces = pieces
                    .into_iter()
                    .flat_map(|(s, e)| subtract((s, e), (r.base, r.end())))
                    .collect();
            }
            result.extend(pieces);
        }
        result
    }

    /// The value of `key=value` on the command line, if present (the last one wins).
    pub fn option(&self, key: &str) -> Option<&str> {
        self.command_line
            .split_ascii_whitespace()
            .filter_map(|word| word.split_once('='))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .next_back()
    }

    /// Whether a bare `flag` word, or `flag=1`/`flag=on`, appears on the command line.
    pub fn flag(&self, key: &str) -> bool {
        self.command_line.split_ascii_whitespace().any(|w| w == key)
            || matches!(self.option(key), Some("1" | "on" | "yes" | "true"))
    }
}

/// `range` minus `hole`, as zero, one or two half-open ranges.
fn subtract(range: (u64, u64), hole: (u64, u64)) -> Vec<(u64, u64)> {
    let (s, e) = range;
    let (hs, he) = hole;
    if he <= s || hs >= e {
        return alloc::vec![range];
    }
    let mut out = Vec::new();
    if hs > s {
        out.push((s, hs));
    }
    if he < e {
        out.push((he, e));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(map: &[(u64, u64, MemoryKind)], cmdline: &str) -> BootInfo {
        BootInfo {
            protocol: BootProtocol::Pvh,
            memory_map: map
                .iter()
                .map(|&(base, size, kind)| MemoryRegion { base, size, kind })
                .collect(),
            rsdp: None,
            command_line: cmdline.into(),
            modules: Vec::new(),
        }
    }

    #[test]
    fn usable_ram_merges_sorts_and_cuts_reserved_holes() {
        let b = info(
            &[
                (0x10_0000, 0x10_0000, MemoryKind::Usable),
                (0, 0x9_f000, MemoryKind::Usable),
                (0x18_0000, 0x10_0000, MemoryKind::Usable),
                (0x1c_0000, 0x1000, MemoryKind::Reserved),
                (0x50_0000, 0, MemoryKind::Usable),
            ],
            "",
        );
        assert_eq!(
            b.usable_ram(),
            alloc::vec![
                (0, 0x9_f000),
                (0x10_0000, 0x1c_0000),
                (0x1c_1000, 0x28_0000)
            ]
        );
    }

    #[test]
    fn command_line_options_and_flags() {
        let b = info(&[], "log=debug exit-on-ready foo=1 log=info");
        assert_eq!(b.option("log"), Some("info"));
        assert!(b.flag("exit-on-ready"));
        assert!(b.flag("foo"));
        assert!(!b.flag("bar"));
    }
}
