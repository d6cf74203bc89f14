//! Walking from the RSDP to the tables we use (ACPI 6.5 §5.2.5–§5.2.8).
//!
//! RSDP → XSDT (revision ≥ 2 with a nonzero, checksummed XSDT; 64-bit entries, possibly
//! unaligned) or RSDT (32-bit entries) → every table. An unusable XSDT falls back to the
//! RSDT. Boot modules holding tables override the firmware's ([`super::overrides`]). Each
//! table we parse (APIC, SRAT, SLIT, HMAT) must pass [`load_table`]; the first usable one of
//! each signature is decoded and later ones are noted and ignored.

use alloc::vec::Vec;

use super::bytes::{u32_at, u64_at};
use super::overrides::{self, OverrideCandidate};
use super::problem::{AcpiProblem, RootFallback};
use super::sdt::{load_table, SdtHeader, SDT_HEADER_LENGTH};
use super::{aml, dmar, fadt, hmat, ivrs, madt, mcfg, rsdp, slit, srat};
use super::{AcpiFindings, PhysicalMemory, RootTableKind, TableRef};

/// Find and decode everything ACPI tells us about CPUs and NUMA, starting from the RSDP at
/// `rsdp_address`. Never fails: what cannot be used is left out and named in `problems`.
pub fn discover(mem: &dyn PhysicalMemory, rsdp_address: u64) -> AcpiFindings {
    discover_with_overrides(mem, rsdp_address, &[])
}

/// [`discover`], with the boot modules in `candidates` overriding the firmware's tables of
/// their signatures (or adding them, even when the firmware's root tables are unusable).
pub fn discover_with_overrides(
    mem: &dyn PhysicalMemory,
    rsdp_address: u64,
    candidates: &[OverrideCandidate],
) -> AcpiFindings {
    let mut findings = AcpiFindings::empty();
    let entries = firmware_entries(mem, rsdp_address, &mut findings);
    let accepted = overrides::vet(mem, candidates, &mut findings.problems);
    let entries = overrides::apply(mem, entries, &accepted, &mut findings.overrides);
    // The definition blocks as loaded (address, signature, bytes), DSDT first, for the AML
    // reader after the walk.
    let mut blocks: Vec<(u64, [u8; 4], &[u8])> = Vec::new();

    for address in entries {
        let Some(header) = mem
            .read(address, SDT_HEADER_LENGTH)
            .and_then(SdtHeader::parse)
        else {
            // load_table words the problem (and nothing else reads this table).
            if let Err(problem) = load_table(mem, address, None, 0) {
                findings.problems.push(problem);
            }
            continue;
        };
        let signature = header.signature;
        let table_ref = TableRef {
            signature,
            address,
            length: header.length,
            valid: false,
        };
        let index = findings.tables.len();
        findings.tables.push(table_ref);
        let minimum = overrides::minimum_length(&signature);
        let table = match load_table(mem, address, None, minimum) {
            Ok(table) => table,
            Err(problem) => {
                findings.problems.push(problem);
                continue;
            }
        };
        findings.tables[index].valid = true;
        // The first usable table of a signature we decode wins.
        let kept = findings.tables[..index]
            .iter()
            .find(|t| t.valid && t.signature == signature)
            .map(|t| t.address);
        let decoded = matches!(
            &signature,
            b"APIC" | b"SRAT" | b"SLIT" | b"HMAT" | b"MCFG" | b"FACP" | b"DMAR" | b"IVRS"
        );
        if let (Some(kept), true) = (kept, decoded) {
            findings.problems.push(AcpiProblem::DuplicateTable {
                signature,
                address,
                kept,
            });
            continue;
        }
        let problems = &mut findings.problems;
        match &signature {
            b"APIC" => findings.madt = Some(madt::parse(table, problems)),
            b"SRAT" => findings.srat = Some(srat::parse(table, problems)),
            b"HMAT" => findings.hmat = Some(hmat::parse(table, problems)),
            b"MCFG" => findings.mcfg = Some(mcfg::parse(table, problems)),
            b"DMAR" => findings.dmar = Some(dmar::parse(table, problems)),
            b"IVRS" => findings.ivrs = Some(ivrs::parse(table, problems)),
            b"SSDT" => blocks.push((address, signature, table)),
            b"FACP" => {
                // The DSDT is not in the root: the FADT points at it, and it comes first.
                if let Some(dsdt) = fadt::dsdt_address(table) {
                    match load_table(mem, dsdt, Some(*b"DSDT"), 0) {
                        Ok(bytes) => blocks.insert(0, (dsdt, *b"DSDT", bytes)),
                        Err(problem) => problems.push(problem),
                    }
                }
            }
            b"SLIT" => match slit::parse(table) {
                Ok(slit) => findings.slit = Some(slit),
                Err(problem) => problems.push(problem),
            },
            _ => {}
        }
    }
    read_host_bridges(&blocks, &mut findings);
    findings
}

/// The PCI host bridges of the definition blocks `blocks` (DSDT first, then the SSDTs, whose
/// `Scope`s may extend the DSDT's devices), and the blocks' addresses.
fn read_host_bridges(blocks: &[(u64, [u8; 4], &[u8])], findings: &mut AcpiFindings) {
    findings.definition_blocks = blocks.iter().map(|&(address, _, _)| address).collect();
    let bodies: Vec<&[u8]> = blocks
        .iter()
        .map(|(_, _, table)| table.get(SDT_HEADER_LENGTH..).unwrap_or(&[]))
        .collect();
    let mut problems = Vec::new();
    findings.host_bridges = aml::host_bridges(&bodies, &mut problems);
    for problem in problems {
        if let Some(&(address, signature, _)) = blocks.get(problem.table) {
            findings.problems.push(AcpiProblem::Aml {
                signature,
                address,
                problem,
            });
        }
    }
}

/// The table addresses the firmware's root lists (none if the RSDP or root is unusable),
/// with the RSDP's facts recorded in `findings`.
fn firmware_entries(
    mem: &dyn PhysicalMemory,
    rsdp_address: u64,
    findings: &mut AcpiFindings,
) -> Vec<u64> {
    let problems = &mut findings.problems;
    let rsdp = match rsdp::parse(mem, rsdp_address, problems) {
        Ok(rsdp) => rsdp,
        Err(problem) => {
            problems.push(problem);
            return Vec::new();
        }
    };
    findings.rsdp_revision = rsdp.revision;
    findings.oem_id = rsdp.oem_id;
    let Some((kind, root)) = root_table(mem, &rsdp, problems) else {
        return Vec::new();
    };
    findings.root = kind;
    root_entries(kind, root, problems)
}

/// The root table to use and its bytes, falling back from a bad XSDT to the RSDT.
fn root_table<'m>(
    mem: &'m dyn PhysicalMemory,
    rsdp: &rsdp::Rsdp,
    problems: &mut Vec<AcpiProblem>,
) -> Option<(RootTableKind, &'m [u8])> {
    let rsdt_address = u64::from(rsdp.rsdt_address);
    if let Some(xsdt) = rsdp.xsdt_address {
        match load_table(mem, xsdt, Some(*b"XSDT"), 0) {
            Ok(bytes) => return Some((RootTableKind::Xsdt, bytes)),
            Err(problem) => {
                problems.push(problem);
                let fallback = if rsdt_address != 0 {
                    RootFallback::UseRsdt
                } else {
                    RootFallback::NoTables
                };
                problems.push(AcpiProblem::RootUnusable {
                    kind: RootTableKind::Xsdt,
                    fallback,
                });
            }
        }
    }
    if rsdt_address == 0 {
        if rsdp.xsdt_address.is_none() {
            let kind = RootTableKind::Rsdt;
            problems.push(AcpiProblem::RootUnusable {
                kind,
                fallback: RootFallback::NoTables,
            });
        }
        return None;
    }
    match load_table(mem, rsdt_address, Some(*b"RSDT"), 0) {
        Ok(bytes) => Some((RootTableKind::Rsdt, bytes)),
        Err(problem) => {
            problems.push(problem);
            let kind = RootTableKind::Rsdt;
            problems.push(AcpiProblem::RootUnusable {
                kind,
                fallback: RootFallback::NoTables,
            });
            None
        }
    }
}

/// The nonzero table addresses a root table lists, in order.
fn root_entries(kind: RootTableKind, root: &[u8], problems: &mut Vec<AcpiProblem>) -> Vec<u64> {
    let width = match kind {
        RootTableKind::Rsdt => 4,
        RootTableKind::Xsdt => 8,
    };
    let area = root.get(SDT_HEADER_LENGTH..).unwrap_or(&[]);
    if area.len() % width != 0 {
        problems.push(AcpiProblem::RootTrailingBytes {
            kind,
            count: area.len() % width,
        });
    }
    let mut addresses = Vec::with_capacity(area.len() / width);
    for (index, entry) in area.chunks_exact(width).enumerate() {
        let address = match kind {
            RootTableKind::Rsdt => u32_at(entry, 0).map(u64::from),
            RootTableKind::Xsdt => u64_at(entry, 0),
        };
        match address {
            Some(0) | None => problems.push(AcpiProblem::RootEntryNull { kind, index }),
            Some(address) => addresses.push(address),
        }
    }
    addresses
}
