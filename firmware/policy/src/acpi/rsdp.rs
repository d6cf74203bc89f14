//! The Root System Description Pointer (ACPI 6.5 §5.2.5).
//!
//! Revision 0 (ACPI 1.0, what SeaBIOS gives) is 20 bytes and names only a 32-bit RSDT.
//! Revision 2 and later add a length, a 64-bit XSDT address and an extended checksum over
//! `length` bytes. Revision 1 was never defined; it is read like revision 0.
//!
//! Without a loader-provided address, [`find_rsdp_in_bios_areas`] searches where §5.2.5.1
//! says a BIOS puts it: the first KiB of the EBDA and 0xE0000..0xFFFFF, on 16-byte
//! boundaries.

use super::bytes::{checksum_ok, u16_at, u32_at, u64_at, u8_at};
use super::problem::{AcpiProblem, RsdpFault};
use super::PhysicalMemory;

/// Bytes covered by the ACPI 1.0 checksum.
const V1_LENGTH: usize = 20;
/// Length of the revision 2 structure.
const V2_LENGTH: usize = 36;
/// No RSDP needs more than a page; anything longer is a corrupt length field.
const MAX_LENGTH: u32 = 4096;

/// A checked RSDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    pub revision: u8,
    pub oem_id: [u8; 6],
    /// Physical address of the RSDT; 0 if none.
    pub rsdt_address: u32,
    /// Physical address of the XSDT, only when revision ≥ 2 and the extended checksum holds.
    pub xsdt_address: Option<u64>,
}

/// Read and check the RSDP at `address`. `Err` means no table at all can be trusted. A bad
/// extended part (revision ≥ 2) is not fatal: the RSDT is still usable, and the problem is
/// pushed onto `problems`.
pub(crate) fn parse(
    mem: &dyn PhysicalMemory,
    address: u64,
    problems: &mut alloc::vec::Vec<AcpiProblem>,
) -> Result<Rsdp, AcpiProblem> {
    let fail = |fault| AcpiProblem::Rsdp { address, fault };
    let v1 = mem
        .read(address, V1_LENGTH)
        .and_then(|b| b.get(..V1_LENGTH))
        .ok_or(fail(RsdpFault::Unreadable))?;
    if &v1[..8] != b"RSD PTR " {
        return Err(fail(RsdpFault::BadSignature));
    }
    if !checksum_ok(v1) {
        return Err(fail(RsdpFault::BadChecksum));
    }
    let revision = u8_at(v1, 15).unwrap_or(0);
    let mut rsdp = Rsdp {
        revision,
        oem_id: v1[9..15].try_into().unwrap_or([0; 6]),
        rsdt_address: u32_at(v1, 16).unwrap_or(0),
        xsdt_address: None,
    };
    if revision >= 2 {
        match extended(mem, address) {
            Ok(xsdt) => rsdp.xsdt_address = (xsdt != 0).then_some(xsdt),
            Err(fault) => problems.push(AcpiProblem::RsdpExtendedUnusable { address, fault }),
        }
    }
    Ok(rsdp)
}

/// The XSDT address of a revision ≥ 2 RSDP, after checking its length and extended checksum.
fn extended(mem: &dyn PhysicalMemory, address: u64) -> Result<u64, RsdpFault> {
    let v2 = mem
        .read(address, V2_LENGTH)
        .and_then(|b| b.get(..V2_LENGTH))
        .ok_or(RsdpFault::Unreadable)?;
    let length = u32_at(v2, 20).unwrap_or(0);
    if (length as usize) < V2_LENGTH || length > MAX_LENGTH {
        return Err(RsdpFault::BadLength(length));
    }
    let all = mem
        .read(address, length as usize)
        .and_then(|b| b.get(..length as usize))
        .ok_or(RsdpFault::Unreadable)?;
    if !checksum_ok(all) {
        return Err(RsdpFault::BadChecksum);
    }
    Ok(u64_at(v2, 24).unwrap_or(0))
}

/// The BIOS read-only area searched for the RSDP.
const BIOS_AREA: (u64, usize) = (0xE_0000, 0x2_0000);

/// Find a revision-agnostic RSDP (signature and 20-byte checksum) in the BIOS search areas
/// (ACPI 6.5 §5.2.5.1): the first 1 KiB of the EBDA, whose segment is at 0x40E, then
/// 0xE0000..0xFFFFF. Unreadable areas are skipped.
pub fn find_rsdp_in_bios_areas(mem: &dyn PhysicalMemory) -> Option<u64> {
    let ebda = mem
        .read(0x40E, 2)
        .and_then(|b| u16_at(b, 0))
        .map(|segment| u64::from(segment) << 4)
        .filter(|&a| (0x400..0xA_0000).contains(&a));
    ebda.map(|a| (a, 1024))
        .into_iter()
        .chain([BIOS_AREA])
        .find_map(|(base, len)| {
            let area = mem.read(base, len)?;
            (0..area.len())
                .step_by(16)
                .find(|&off| {
                    area.get(off..off.saturating_add(V1_LENGTH))
                        .is_some_and(|v1| v1.starts_with(b"RSD PTR ") && checksum_ok(v1))
                })
                .map(|off| base + off as u64)
        })
}
