//! Guest ACPI tables for one numavisor partition (ACPI 6.5 §5.2: the system description
//! tables).
//!
//! Guests learn their CPUs and NUMA layout the way they would on real hardware: from
//! ACPI. Given a [`GuestPlatform`] (vCPUs, vNUMA nodes, distances, optional HMAT figures,
//! devices, where the tables go), [`generate`] checks it and returns [`AcpiTables`]:
//!
//! | table | section | built from |
//! |---|---|---|
//! | RSDP (revision 2) | §5.2.5 | here |
//! | XSDT | §5.2.8 | rust-vmm `acpi_tables` |
//! | RSDT (for ACPI 1.0 guests) | §5.2.7 | here, in rust-vmm's `Sdt` |
//! | FADT (full, not hardware-reduced: see [`fadt`]) | §5.2.9 | rust-vmm |
//! | FACS | §5.2.10 | rust-vmm |
//! | DSDT (processors, UART, RTC, `\_S5`) | §5.2.11.1 | rust-vmm AML |
//! | MADT | §5.2.12 | rust-vmm entries + x2APIC, overrides, NMI here |
//! | SRAT | §5.2.16 | rust-vmm memory affinity + (x2)APIC affinity here |
//! | SLIT, when distances are given | §5.2.17 | here |
//! | HMAT, when figures are given | §5.2.28 | here |
//!
//! Each module says what rust-vmm's crate (`acpi_tables` 0.2.1, `no_std` + `alloc`,
//! builds on stable) lacks where we write a structure ourselves. A guest's distances come
//! from the host's: see [`DistanceMatrix::guest_from_host`].
//!
//! Everything is safe, allocation-only code, tested on the host; bad input is refused
//! with an [`AcpiError`], never a panic.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod distance;
mod dsdt;
mod error;
pub mod fadt;
mod hmat;
mod layout;
mod madt;
mod mcfg;
mod platform;
mod root;
pub mod sdt;
mod slit;
mod srat;
#[cfg(test)]
mod test_platforms;
mod validate;

pub use distance::DistanceMatrix;
pub use dsdt::S5_SLP_TYP;
pub use error::AcpiError;
pub use layout::{AcpiTables, PlacedTable, RSDP_SIGNATURE};
pub use platform::{
    Devices, GuestPlatform, HmatFigures, IoApic, MemoryRange, PciHostBridge, PmBlock,
    TablePlacement, Uart16550, Vcpu, VirtioMmio, VnumaNode, ECAM_BUS_SIZE, MAX_VIRTIO_MMIO,
    VIRTIO_MEM_FIRST_SLOT, VIRTIO_MMIO_BASE, VIRTIO_MMIO_GSI, VIRTIO_MMIO_PCI_GSI,
    VIRTIO_MMIO_SIZE,
};
pub use validate::{MAX_NODES, MAX_RANGES, MAX_VCPUS};

/// Checks `platform` and builds its complete, checksummed set of ACPI tables, placed at
/// `platform.placement.base`.
pub fn generate(platform: &GuestPlatform) -> Result<AcpiTables, AcpiError> {
    validate::check(platform)?;
    let dsdt = dsdt::build(platform);
    let mut listed = alloc::vec![
        (*b"APIC", madt::build(platform)),
        (*b"SRAT", srat::build(platform))
    ];
    if let Some(distances) = &platform.distances {
        listed.push((*b"SLIT", slit::build(distances)));
    }
    if let Some(figures) = &platform.hmat {
        listed.push((*b"HMAT", hmat::build(platform, figures)));
    }
    if let Some(bridge) = &platform.devices.pci_host {
        listed.push((*b"MCFG", mcfg::build(bridge)));
    }
    layout::place(platform, dsdt, listed)
}

#[cfg(test)]
mod tests;
