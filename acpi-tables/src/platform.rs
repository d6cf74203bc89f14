//! The description of one partition's virtual platform: what its guest should find in ACPI.
//!
//! Plain data, filled in by the partition builder (or by `tools guest-acpi` from a TOML
//! file) and checked by [`crate::generate`] before any byte is written. Vocabulary follows
//! ACPI 6.5 §5.2.16 (SRAT: proximity domains, hot-pluggable memory) and §5.2.12 (MADT).

use alloc::vec::Vec;

use crate::distance::DistanceMatrix;

/// Everything the generator needs to describe one partition's guest platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestPlatform {
    /// The guest's virtual CPUs, in the order the guest should number them: the index is
    /// the ACPI processor UID used in the MADT and the DSDT.
    pub vcpus: Vec<Vcpu>,
    /// The guest's vNUMA nodes; a node's index is its proximity domain.
    pub nodes: Vec<VnumaNode>,
    /// Distances between vNUMA nodes, written as the SLIT. `None`: no SLIT (the guest
    /// then assumes 10 local, 20 remote). Build it with
    /// [`DistanceMatrix::guest_from_host`] so guests see the host's real costs.
    pub distances: Option<DistanceMatrix>,
    /// Latency and bandwidth figures, written as the HMAT. `None`: no HMAT.
    pub hmat: Option<HmatFigures>,
    /// The devices the partition has.
    pub devices: Devices,
    /// Where in guest-physical memory the tables go, and how much room they have.
    pub placement: TablePlacement,
}

/// One virtual CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vcpu {
    /// Its local APIC ID (an x2APIC ID when above 254).
    pub apic_id: u32,
    /// The vNUMA node (index into [`GuestPlatform::nodes`]) it belongs to.
    pub node: u32,
}

/// One vNUMA node: a proximity domain with its memory. A node with no memory (CPUs
/// only) is allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VnumaNode {
    /// Guest-physical memory ranges of this node.
    pub memory: Vec<MemoryRange>,
}

/// A guest-physical memory range of a vNUMA node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRange {
    /// First guest-physical address.
    pub base: u64,
    /// Length in bytes (not zero).
    pub length: u64,
    /// Marked hot-pluggable in the SRAT.
    pub hot_pluggable: bool,
}

/// Latency and bandwidth between vNUMA nodes, for the HMAT (ACPI 6.5 §5.2.28).
///
/// Both matrices are `nodes × nodes`, indexed `[initiator][target]`. Rows of nodes with
/// no vCPU and columns of nodes with no memory are not written. A 0 means "no figure".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HmatFigures {
    /// Access latency in nanoseconds.
    pub latency_ns: Vec<Vec<u32>>,
    /// Access bandwidth in megabytes per second.
    pub bandwidth_mb_s: Vec<Vec<u32>>,
}

/// The devices of the partition that ACPI describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Devices {
    /// A 16550 UART, described in the DSDT.
    pub uart: Option<Uart16550>,
    /// The I/O APIC; it takes GSIs from 0, so the 16 ISA IRQs land on its first pins.
    pub io_apic: IoApic,
    /// Guest-physical base of the local APICs (0xFEE0_0000 on a PC).
    pub local_apic_base: u32,
    /// The ACPI fixed-hardware register block the FADT points at.
    pub pm: PmBlock,
    /// The guest has a pair of 8259 PICs (MADT flag PCAT_COMPAT).
    pub legacy_pic: bool,
    /// The guest has a CMOS RTC at ports 0x70/0x71, IRQ 8.
    pub cmos_rtc: bool,
}

/// A 16550 UART on the ISA port space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart16550 {
    /// First of its 8 I/O ports (0x3F8 for COM1).
    pub port: u16,
    /// Its ISA IRQ (4 for COM1).
    pub irq: u8,
    /// The vNUMA node it is attached to, written as `_PXM`; `None` writes no `_PXM`.
    pub node: Option<u32>,
}

/// The I/O APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    /// Its I/O APIC ID.
    pub id: u8,
    /// Guest-physical address of its registers (0xFEC0_0000 on a PC).
    pub address: u32,
}

/// The ACPI PM register block (ACPI 6.5 §4.8): PM1a event (4 ports: status, enable),
/// PM1a control (2 ports) and, optionally, the PM timer (4 ports), back to back from
/// `port`. The hypervisor emulates them: SCI_EN reads 1 (the FADT has no SMI command
/// port, so the guest is in ACPI mode from the start), and a write of SLP_EN with
/// SLP_TYP = [`crate::S5_SLP_TYP`] is the guest powering off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmBlock {
    /// First I/O port of the block.
    pub port: u16,
    /// The ISA IRQ the SCI is wired to (9 on a PC).
    pub sci_irq: u8,
    /// A 24-bit PM timer sits at `port + 8`.
    pub pm_timer: bool,
}

/// Where the tables go in guest-physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TablePlacement {
    /// Guest-physical address of the RSDP, 16-byte aligned; the tables follow it.
    pub base: u64,
    /// Bytes available from `base`; the whole set must fit, and end below 4 GiB (the RSDT
    /// and the FADT hold 32-bit pointers).
    pub size: u64,
}

impl Devices {
    /// The devices of a minimal PC guest: COM1 (0x3F8, IRQ 4), the I/O APIC at
    /// 0xFEC0_0000 with ID 0, local APICs at 0xFEE0_0000, a PM block at 0x600 with the SCI on
    /// IRQ 9 and a PM timer, the 8259 pair and a CMOS RTC.
    pub const fn pc() -> Self {
        Devices {
            uart: Some(Uart16550 {
                port: 0x3F8,
                irq: 4,
                node: None,
            }),
            io_apic: IoApic {
                id: 0,
                address: 0xFEC0_0000,
            },
            local_apic_base: 0xFEE0_0000,
            pm: PmBlock {
                port: 0x600,
                sci_irq: 9,
                pm_timer: true,
            },
            legacy_pic: true,
            cmos_rtc: true,
        }
    }
}
