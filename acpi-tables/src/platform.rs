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
    /// virtio-mmio devices, described in the DSDT as `VR00`.. (empty slots are skipped).
    /// A fixed array keeps `Devices` plain `Copy` data.
    pub virtio_mmio: [Option<VirtioMmio>; MAX_VIRTIO_MMIO],
    /// A PCI host bridge with the partition's passed-through functions: MCFG, and
    /// `\_SB.PCI0` (PNP0A08) in the DSDT. `None`: no PCI (the guest's probe of mechanism #1
    /// finds an empty bus).
    pub pci_host: Option<PciHostBridge>,
}

/// The guest's PCI host bridge (PCI Firmware 3.3 §4.1.2 MCFG; ACPI 6.5 §6.1, §6.2.14): one
/// segment, buses 0..=`last_bus`, its ECAM window and one 32-bit memory window for BARs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciHostBridge {
    /// Guest-physical base of the ECAM window of bus 0 (1 MiB per bus, 1 MiB aligned).
    pub ecam_base: u32,
    /// The last bus the bridge decodes (its `_CRS` bus range is 0..=`last_bus`).
    pub last_bus: u8,
    /// The memory window BARs are placed in: base and length (not zero).
    pub window_base: u32,
    pub window_length: u32,
    /// The bridge's `_PXM`: the vNUMA node its devices hang on, where known.
    pub node: Option<u32>,
}

/// ECAM bytes per bus: 32 devices × 8 functions × 4 KiB (PCIe Base 6.0 §7.2.2).
pub const ECAM_BUS_SIZE: u32 = 1 << 20;

impl PciHostBridge {
    /// Bytes of its ECAM window.
    pub const fn ecam_length(&self) -> u32 {
        (self.last_bus as u32 + 1) * ECAM_BUS_SIZE
    }
}

/// How many virtio-mmio devices [`Devices`] can describe: slot 0 (the balloon), 1..=4 (the
/// NICs), [`VIRTIO_MEM_FIRST_SLOT`]..=8 (virtio-mem). Slot 8 takes GSI 23
/// ([`VIRTIO_MMIO_PCI_GSI`] + 8 − 1), the I/O APIC's last input, so there is no room for more.
pub const MAX_VIRTIO_MMIO: usize = 9;

/// The slot of the first virtio-mem device (hot-add memory, one device per vnode that grows
/// above its size): the `k`-th growing vnode, counted from 0 in vnode order, is
/// `VirtioMmio::at_slot(VIRTIO_MEM_FIRST_SLOT + k)`, after the balloon's slot 0 and the four
/// NICs' slots 1..=4. Up to 4 devices (the layout's `MAX_GROWING_VNODES`), slots 5..=8,
/// GSIs 20..=23.
pub const VIRTIO_MEM_FIRST_SLOT: usize = 5;

/// Where the first virtio-mmio window goes by default: 0xFEB0_0000, the address QEMU's
/// microvm machine uses, in the hole below the I/O APIC (0xFEC0_0000), the HPET range
/// (0xFED0_0000) and the local APICs (0xFEE0_0000). Further windows follow at
/// [`VIRTIO_MMIO_SIZE`] strides.
pub const VIRTIO_MMIO_BASE: u32 = 0xFEB0_0000;
/// Bytes of one virtio-mmio window (VIRTIO 1.2 §4.2.2: registers, then configuration).
pub const VIRTIO_MMIO_SIZE: u32 = 0x200;
/// The GSI of the first virtio-mmio device by default: ISA IRQ 5, free on our PC platform
/// (the PIT takes 0 → GSI 2, the cascade 2, COM1 4, the RTC 8, the SCI 9) and microvm's
/// first virtio IRQ too. Level-triggered, active high, as QEMU describes virtio-mmio; the
/// MADT gets a matching interrupt source override.
pub const VIRTIO_MMIO_GSI: u32 = 5;
/// The GSI of the device in slot 1; slot `n` ≥ 1 takes `VIRTIO_MMIO_PCI_GSI + n - 1`: the
/// I/O APIC's inputs above the ISA range (16..23), which no ISA device claims and which
/// `_CRS` describes as level-triggered, active high like slot 0's.
pub const VIRTIO_MMIO_PCI_GSI: u32 = 16;

/// One virtio-mmio device window (VIRTIO 1.2 §4.2.2), found by Linux through the DSDT as
/// `_HID "LNRO0005"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmio {
    /// Guest-physical base of the window, below 4 GiB (a `Memory32Fixed` descriptor).
    pub base: u32,
    /// Bytes of the window: at least [`VIRTIO_MMIO_SIZE`].
    pub size: u32,
    /// Its interrupt: an I/O APIC input (GSI 0..23), level-triggered, active high.
    pub gsi: u32,
}

impl VirtioMmio {
    /// The first device at the default placement: [`VIRTIO_MMIO_BASE`],
    /// [`VIRTIO_MMIO_SIZE`], [`VIRTIO_MMIO_GSI`].
    pub const fn default_placement() -> VirtioMmio {
        Self::at_slot(0)
    }

    /// The device of slot `slot` (below [`MAX_VIRTIO_MMIO`]) at its default placement: its
    /// window [`VIRTIO_MMIO_SIZE`] × `slot` above [`VIRTIO_MMIO_BASE`], its interrupt
    /// [`VIRTIO_MMIO_GSI`] for slot 0 and [`VIRTIO_MMIO_PCI_GSI`] + `slot` − 1 after.
    pub const fn at_slot(slot: usize) -> VirtioMmio {
        VirtioMmio {
            base: VIRTIO_MMIO_BASE + VIRTIO_MMIO_SIZE * slot as u32,
            size: VIRTIO_MMIO_SIZE,
            gsi: if slot == 0 {
                VIRTIO_MMIO_GSI
            } else {
                VIRTIO_MMIO_PCI_GSI + slot as u32 - 1
            },
        }
    }
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
            virtio_mmio: [None; MAX_VIRTIO_MMIO],
            pci_host: None,
        }
    }

    /// [`Devices::pc`] plus one virtio-mmio device (the memory balloon) at
    /// [`VirtioMmio::default_placement`].
    pub const fn pc_with_virtio_balloon() -> Self {
        let mut devices = Self::pc();
        devices.virtio_mmio[0] = Some(VirtioMmio::default_placement());
        devices
    }

    /// The virtio-mmio devices present, with their slot index (the `_UID` and `VRnn` name).
    pub fn virtio_mmio_devices(&self) -> impl Iterator<Item = (usize, VirtioMmio)> + '_ {
        self.virtio_mmio
            .iter()
            .enumerate()
            .filter_map(|(index, device)| device.map(|d| (index, d)))
    }
}
