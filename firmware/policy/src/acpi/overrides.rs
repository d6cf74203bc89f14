//! ACPI table override from boot modules, as Linux's "ACPI table upgrade" does
//! (Documentation/admin-guide/acpi/initrd_table_override.rst): a boot module whose bytes are a
//! valid SRAT, SLIT, HMAT or MADT replaces the firmware's table of that signature, or is added
//! when the firmware has none (Bochs's BIOS has no SRAT or SLIT; real boards sometimes ship
//! broken ones).
//!
//! A module is a candidate only if it starts with one of those signatures; anything else (an
//! initrd, a guest image) is left alone without a word. A candidate must then pass the same
//! checks as a firmware table (ACPI 6.5 §5.2.6: readable, sane length, zero checksum) and fit
//! inside its module; one that does not is an [`AcpiProblem::OverrideRejected`] and the
//! firmware's table stays. Two modules with one signature: the first wins.

use alloc::vec::Vec;

use super::problem::{AcpiProblem, OverrideFault};
use super::sdt::{load_table, SdtHeader, SDT_HEADER_LENGTH};
use super::{dmar, hmat, ivrs, madt, mcfg, srat, PhysicalMemory};

/// The signatures a boot module may override (`APIC` is the MADT).
pub const OVERRIDABLE: [[u8; 4]; 4] = [*b"SRAT", *b"SLIT", *b"HMAT", *b"APIC"];

/// A boot module that may hold a table: its physical range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverrideCandidate {
    /// Physical address of the module's first byte.
    pub address: u64,
    /// Its length in bytes.
    pub length: u64,
}

/// A table that a module supplied, and the firmware table it replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableOverride {
    pub signature: [u8; 4],
    /// Physical address of the module (and so of the table used).
    pub module: u64,
    /// The firmware table it replaced; `None` when the firmware had none (the table was
    /// added).
    pub replaced: Option<u64>,
}

/// The smallest length a table of `signature` may have (its fixed fields).
pub(crate) fn minimum_length(signature: &[u8; 4]) -> usize {
    match signature {
        b"APIC" => madt::MADT_FIXED_LENGTH,
        b"SRAT" => srat::SRAT_FIXED_LENGTH,
        b"SLIT" => SDT_HEADER_LENGTH + 8,
        b"HMAT" => hmat::HMAT_FIXED_LENGTH,
        b"MCFG" => mcfg::MCFG_FIXED_LENGTH,
        b"DMAR" => dmar::DMAR_FIXED_LENGTH,
        b"IVRS" => ivrs::IVRS_FIXED_LENGTH,
        _ => SDT_HEADER_LENGTH,
    }
}

/// A checked override: its signature and address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Accepted {
    signature: [u8; 4],
    address: u64,
}

/// The candidates that hold a usable table; every rejected one is named in `problems`.
pub(crate) fn vet(
    mem: &dyn PhysicalMemory,
    candidates: &[OverrideCandidate],
    problems: &mut Vec<AcpiProblem>,
) -> Vec<Accepted> {
    let mut accepted: Vec<Accepted> = Vec::new();
    for candidate in candidates {
        let Some(signature) = mem
            .read(candidate.address, 4)
            .and_then(|b| <[u8; 4]>::try_from(b.get(..4)?).ok())
            .filter(|s| OVERRIDABLE.contains(s))
        else {
            continue;
        };
        let reject = |fault| AcpiProblem::OverrideRejected {
            module: candidate.address,
            signature,
            fault,
        };
        let header = (candidate.length >= SDT_HEADER_LENGTH as u64)
            .then(|| mem.read(candidate.address, SDT_HEADER_LENGTH))
            .flatten()
            .and_then(SdtHeader::parse);
        let Some(header) = header else {
            problems.push(reject(OverrideFault::ShorterThanHeader {
                module_bytes: candidate.length,
            }));
            continue;
        };
        if u64::from(header.length) > candidate.length {
            problems.push(reject(OverrideFault::LongerThanModule {
                length: header.length,
                module_bytes: candidate.length,
            }));
            continue;
        }
        let minimum = minimum_length(&signature);
        if let Err(problem) = load_table(mem, candidate.address, Some(signature), minimum) {
            let fault = match problem {
                AcpiProblem::TableUnusable { fault, .. } => OverrideFault::Table(fault),
                _ => OverrideFault::Table(super::TableFault::HeaderUnreadable),
            };
            problems.push(reject(fault));
            continue;
        }
        if let Some(kept) = accepted.iter().find(|a| a.signature == signature) {
            problems.push(reject(OverrideFault::Duplicate { kept: kept.address }));
            continue;
        }
        accepted.push(Accepted {
            signature,
            address: candidate.address,
        });
    }
    accepted
}

/// The root's table addresses with each overridden signature's tables replaced by the
/// override (in the first one's place), and overrides for signatures the firmware lacks
/// appended; what was done is pushed onto `done`.
pub(crate) fn apply(
    mem: &dyn PhysicalMemory,
    entries: Vec<u64>,
    accepted: &[Accepted],
    done: &mut Vec<TableOverride>,
) -> Vec<u64> {
    let mut used = alloc::vec![false; accepted.len()];
    let mut addresses = Vec::with_capacity(entries.len() + accepted.len());
    for address in entries {
        let signature = mem
            .read(address, 4)
            .and_then(|b| <[u8; 4]>::try_from(b.get(..4)?).ok());
        let which = signature.and_then(|s| accepted.iter().position(|a| a.signature == s));
        match which {
            Some(index) if !used[index] => {
                used[index] = true;
                done.push(TableOverride {
                    signature: accepted[index].signature,
                    module: accepted[index].address,
                    replaced: Some(address),
                });
                addresses.push(accepted[index].address);
            }
            // A second firmware table of an overridden signature goes too.
            Some(_) => {}
            None => addresses.push(address),
        }
    }
    for (index, override_table) in accepted.iter().enumerate() {
        if !used[index] {
            done.push(TableOverride {
                signature: override_table.signature,
                module: override_table.address,
                replaced: None,
            });
            addresses.push(override_table.address);
        }
    }
    addresses
}
