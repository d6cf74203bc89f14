//! ACPI discovery over untrusted table bytes (ACPI 6.5 §5.2): RSDP, RSDT/XSDT, and the tables
//! that describe CPUs and NUMA — MADT, SRAT, SLIT, HMAT — and IOMMUs — DMAR (Intel VT-d) and
//! IVRS (AMD).
//!
//! Why our own parser rather than the `acpi` crate (7.0.0-pre1, checked): its SRAT and MADT
//! entry iterators never advance past a zero-length entry (a hang), it dereferences entries
//! shorter than their struct (out-of-bounds reads), its SLIT bound check squares the count
//! twice and `distance()` compares with `<=`, and it maps the RSDT with whatever length the
//! table claims. Firmware tables on real servers are sometimes wrong, and the hypervisor must
//! never hang or panic on them. So every read here is a bounds-checked slice access, every
//! value a table supplies goes through checked arithmetic, every loop advances or stops, and
//! anything wrong becomes an [`AcpiProblem`] with a stated fallback. The host tests use the
//! `acpi` crate as a differential oracle on well-formed tables captured from QEMU.

pub mod aml;
mod bytes;
mod discovery;
pub mod dmar;
pub mod fadt;
#[cfg(test)]
mod fuzz_tests;
pub mod hmat;
mod image;
pub mod ivrs;
pub mod madt;
pub mod mcfg;
#[cfg(test)]
mod override_tests;
pub mod overrides;
mod problem;
#[cfg(test)]
mod qemu_tests;
pub mod rsdp;
pub mod sdt;
pub mod slit;
pub mod srat;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

pub use discovery::{discover, discover_with_overrides};
pub use hmat::{Hmat, HmatDataType, HmatLocality, MemoryProximity, MemorySideCache};
pub use image::{MemoryImage, Overlay};
pub use madt::{InterruptOverride, Madt, MadtIoApic, MadtProcessor};
pub use mcfg::{EcamWindow, Mcfg};
pub use overrides::{OverrideCandidate, TableOverride, OVERRIDABLE};
pub use problem::{
    AcpiProblem, DmarFault, EntryFault, IvrsFault, McfgFault, OverrideFault, RootFallback,
    RsdpFault, ScopeDamage, ScopeFallback, SlitFault, TableFault,
};
pub use rsdp::find_rsdp_in_bios_areas;
pub use sdt::SdtHeader;
pub use slit::{Slit, LOCAL_DISTANCE, REMOTE_DISTANCE, UNREACHABLE};
pub use srat::{CpuAffinity, MemoryAffinity, Srat};

/// No table we accept may claim more than this many bytes (16 MiB); a larger length field is
/// corruption, and reading it could walk off into device memory.
pub const MAX_TABLE_LENGTH: usize = 16 << 20;

/// Read access to system-physical memory where the ACPI tables live.
pub trait PhysicalMemory {
    /// The bytes at `[addr, addr + len)`, or `None` if that range is not readable.
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]>;
}

/// Which root table the tables were found through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootTableKind {
    /// 32-bit entries (ACPI 1.0; what SeaBIOS gives).
    Rsdt,
    /// 64-bit entries (revision ≥ 2 RSDP).
    Xsdt,
}

impl fmt::Display for RootTableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RootTableKind::Rsdt => "RSDT",
            RootTableKind::Xsdt => "XSDT",
        })
    }
}

/// A table the root lists, for dumping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRef {
    pub signature: [u8; 4],
    pub address: u64,
    /// The length its header claims.
    pub length: u32,
    /// Readable, sane length, checksum zero.
    pub valid: bool,
}

/// Everything discovery found, and everything wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiFindings {
    pub rsdp_revision: u8,
    pub oem_id: [u8; 6],
    pub root: RootTableKind,
    /// Every table the root lists whose header was readable, in root order, with boot-module
    /// overrides in the place of the tables they replace and added ones last.
    pub tables: Vec<TableRef>,
    /// The tables boot modules supplied, in the order they were applied.
    pub overrides: Vec<TableOverride>,
    pub madt: Option<Madt>,
    pub srat: Option<Srat>,
    /// Present only if it passed validation.
    pub slit: Option<Slit>,
    pub hmat: Option<Hmat>,
    /// The PCI segments' ECAM windows.
    pub mcfg: Option<Mcfg>,
    /// Intel VT-d remapping units.
    pub dmar: Option<dmar::Dmar>,
    /// AMD-Vi remapping units.
    pub ivrs: Option<ivrs::Ivrs>,
    /// Addresses of the usable definition blocks: the FADT's DSDT first, then every SSDT in
    /// root order.
    pub definition_blocks: Vec<u64>,
    /// The PCI host bridges the definition blocks declare.
    pub host_bridges: Vec<aml::HostBridge>,
    pub problems: Vec<AcpiProblem>,
}

impl AcpiFindings {
    /// Findings with no tables: what a machine without ACPI looks like.
    pub fn empty() -> AcpiFindings {
        AcpiFindings {
            rsdp_revision: 0,
            oem_id: [0; 6],
            root: RootTableKind::Rsdt,
            tables: Vec::new(),
            overrides: Vec::new(),
            madt: None,
            srat: None,
            slit: None,
            hmat: None,
            mcfg: None,
            dmar: None,
            ivrs: None,
            definition_blocks: Vec::new(),
            host_bridges: Vec::new(),
            problems: Vec::new(),
        }
    }
}
