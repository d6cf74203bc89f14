//! The `acpi` report: the vNUMA layout the partition's ACPI tables describe (ACPI 6.5 §5.2:
//! RSDP → XSDT or RSDT → MADT, SRAT, SLIT), parsed with the hypervisor's own parser.
//!
//! Not the `acpi` crate from crates.io: its SRAT decoding is broken (entry iterators that never
//! advance past a zero-length entry, reads past short entries, a wrong SLIT bound check) — see
//! the comment at the top of `firmware/policy/src/acpi/mod.rs`.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use numavisor_policy::acpi::{discover, find_rsdp_in_bios_areas, AcpiFindings, PhysicalMemory};

use crate::console::{report, Json};
use crate::paging::is_mapped;
use crate::start_info::MemRange;

/// Where a legacy BIOS keeps the RSDP (ACPI 6.5 §5.2.5.1); readable even when the memory map
/// leaves it out, as QEMU's does not describe the ROM area.
const BIOS_AREA: (u64, u64) = (0xE_0000, 0x10_0000);

/// Identity-mapped guest memory, readable where mapped ranges of the memory map (any type) or
/// the BIOS area cover every byte.
struct GuestMemory<'a> {
    map: &'a [MemRange],
}

impl GuestMemory<'_> {
    fn covered(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        while at < end {
            let containing = self
                .map
                .iter()
                .map(|r| (r.base, r.end()))
                .filter(|&(base, end)| is_mapped(base, end))
                .chain([BIOS_AREA])
                .find(|&(base, range_end)| base <= at && at < range_end);
            match containing {
                Some((_, range_end)) => at = range_end,
                None => return false,
            }
        }
        true
    }
}

impl PhysicalMemory for GuestMemory<'_> {
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let end = addr.checked_add(len as u64)?;
        if addr == 0 || !self.covered(addr, end) {
            return None;
        }
        // SAFETY: every byte is in an identity-mapped memory-map range or the BIOS area (below
        // 4 GiB, mapped at entry); the address is non-null; nothing writes guest memory while
        // discovery holds these slices (the RAM test runs after the findings, which own their
        // data, are printed).
        Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len) })
    }
}

/// Parse the tables and print the report; `false` if they are missing or have problems.
pub fn report_acpi(map: &[MemRange], rsdp: u64) -> bool {
    let memory = GuestMemory { map };
    let rsdp = match rsdp {
        0 => find_rsdp_in_bios_areas(&memory),
        address => Some(address),
    };
    let Some(rsdp) = rsdp else {
        report!("{{\"event\":\"acpi\",\"error\":\"no RSDP: rsdp_paddr is 0 and none in the BIOS area\"}}");
        return false;
    };
    let findings = discover(&memory, rsdp);
    let mut errors: Vec<String> = findings
        .problems
        .iter()
        .map(|p| alloc::format!("{p}"))
        .collect();
    if findings.madt.is_none() {
        errors.push(String::from("no usable MADT"));
    }
    if !errors.is_empty() {
        report!(
            "{{\"event\":\"acpi\",\"error\":{}}}",
            Json(errors.join("; "))
        );
        return false;
    }
    report!(
        "{{\"event\":\"acpi\",\"root\":\"{}\",{}}}",
        findings.root,
        layout(&findings)
    );
    true
}

/// The APIC IDs of the partition's processors, as its MADT lists them (present ones only).
pub fn apic_ids(map: &[MemRange], rsdp: u64) -> Result<Vec<u32>, &'static str> {
    let memory = GuestMemory { map };
    let rsdp = match rsdp {
        0 => find_rsdp_in_bios_areas(&memory).ok_or("no RSDP")?,
        address => address,
    };
    let findings = discover(&memory, rsdp);
    let madt = findings.madt.as_ref().ok_or("no usable MADT")?;
    Ok(madt.present_apic_ids())
}

/// `"cpus":[...],"memory":[...],"distances":[[...]...]` (null where a table is absent).
fn layout(findings: &AcpiFindings) -> String {
    let mut out = String::from("\"cpus\":[");
    let apic_ids = findings
        .madt
        .as_ref()
        .map(|m| m.present_apic_ids())
        .unwrap_or_default();
    for (index, apic_id) in apic_ids.iter().enumerate() {
        let vnode = findings
            .srat
            .as_ref()
            .and_then(|s| s.cpus.iter().find(|c| c.apic_id == *apic_id))
            .map(|c| c.pxm);
        let sep = if index == 0 { "" } else { "," };
        let _ = write!(out, "{sep}{{\"apic_id\":{apic_id},\"vnode\":");
        let _ = match vnode {
            Some(vnode) => write!(out, "{vnode}}}"),
            None => write!(out, "null}}"),
        };
    }
    out.push_str("],\"memory\":[");
    let ranges = findings
        .srat
        .as_ref()
        .map(|s| s.memory.as_slice())
        .unwrap_or_default();
    for (index, range) in ranges.iter().enumerate() {
        let sep = if index == 0 { "" } else { "," };
        let (vnode, base, size) = (range.pxm, range.base, range.size);
        let _ = write!(
            out,
            "{sep}{{\"vnode\":{vnode},\"base\":{base},\"size\":{size}}}"
        );
    }
    out.push_str("],\"distances\":");
    match &findings.slit {
        Some(slit) if slit.localities > 0 => {
            for (row_index, row) in slit.distances.chunks(slit.localities).enumerate() {
                out.push(if row_index == 0 { '[' } else { ',' });
                for (index, distance) in row.iter().enumerate() {
                    let _ = write!(out, "{}{distance}", if index == 0 { "[" } else { "," });
                }
                out.push(']');
            }
            out.push(']');
        }
        _ => out.push_str("null"),
    }
    out
}
