//! The one description of what a boot path hands us.
//!
//! Every boot protocol (PVH today; EFI, coreboot and multiboot2 later) only translates its own
//! format into a [`BootInfo`]: a memory map, where the RSDP is, and the command line. Nothing
//! after the translator knows which protocol booted the image.

pub mod pvh;

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
    Pvh,
}

/// What every boot path provides, already copied out of the loader's memory.
#[derive(Clone, Debug)]
pub struct BootInfo {
    pub protocol: BootProtocol,
    pub memory_map: Vec<MemoryRegion>,
    /// Physical address of the ACPI RSDP, if the loader gave one.
    pub rsdp: Option<u64>,
    pub command_line: String,
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
