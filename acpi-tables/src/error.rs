//! Why a guest platform description was refused.
//!
//! Every check in [`crate::validate`] and [`crate::distance`] ends in one of these
//! variants, naming the vCPU, node, range or table at fault, so the partition builder
//! (or `tools guest-acpi`) can report it in the layout's own terms.

use core::fmt;

/// A guest platform description that cannot be turned into ACPI tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcpiError {
    /// The description has no vCPU.
    NoVcpus,
    /// More vCPUs, nodes or memory ranges than the generator supports.
    TooMany {
        /// What there are too many of ("vCPUs", "vNUMA nodes", "memory ranges").
        what: &'static str,
        /// How many were given.
        count: usize,
        /// The most supported.
        max: usize,
    },
    /// A vCPU names a node that is not in the description.
    VcpuOnMissingNode {
        vcpu: usize,
        node: u32,
        nodes: usize,
    },
    /// Two vCPUs share an APIC ID.
    DuplicateApicId {
        first: usize,
        second: usize,
        apic_id: u32,
    },
    /// A vCPU has the x2APIC broadcast ID 0xFFFF_FFFF.
    ReservedApicId { vcpu: usize },
    /// A memory range has length 0.
    EmptyRange { node: usize, range: usize },
    /// A memory range runs past the end of the 64-bit address space.
    RangeOverflows { node: usize, range: usize },
    /// Two memory ranges overlap (possibly within one node).
    OverlappingRanges {
        node_a: usize,
        range_a: usize,
        node_b: usize,
        range_b: usize,
    },
    /// A distance matrix has no rows.
    EmptyDistanceMatrix,
    /// A distance matrix row has the wrong length.
    DistanceRowLength {
        row: usize,
        expected: usize,
        found: usize,
    },
    /// The SLIT has a different number of localities than there are vNUMA nodes.
    DistanceMatrixSize { expected: usize, found: usize },
    /// A diagonal distance is not 10 (ACPI 6.5 §5.2.17).
    DistanceDiagonal { node: usize, value: u8 },
    /// An off-diagonal distance is 10 or less (values 0..9 are reserved; Linux refuses
    /// a SLIT whose remote distances are not above 10).
    DistanceTooSmall { from: usize, to: usize, value: u8 },
    /// A vNUMA node is backed by a host proximity domain the host matrix lacks.
    MissingHostDomain {
        node: usize,
        host_domain: u32,
        host_domains: usize,
    },
    /// The number of backing host domains differs from the number of vNUMA nodes.
    BackingCount { expected: usize, found: usize },
    /// An HMAT matrix has the wrong shape.
    HmatMatrixSize {
        which: &'static str,
        row: Option<usize>,
        expected: usize,
        found: usize,
    },
    /// The UART's ports run past 0xFFFF or its IRQ is not an ISA IRQ (0..15).
    BadUart { port: u16, irq: u8 },
    /// A device names a node that is not in the description.
    DeviceOnMissingNode {
        device: &'static str,
        node: u32,
        nodes: usize,
    },
    /// The PM block's ports run past 0xFFFF or the SCI is not an ISA IRQ (1..15, not 2).
    BadPmBlock { port: u16, sci_irq: u8 },
    /// The I/O APIC's ID does not fit its ID register's four bits (82093AA).
    BadIoApicId { id: u8 },
    /// A virtio-mmio device's window or interrupt cannot be described or collides with
    /// another device's.
    BadVirtioMmio {
        index: usize,
        base: u32,
        gsi: u32,
        reason: &'static str,
    },
    /// The PCI host bridge's ECAM or BAR window cannot be described (not aligned, empty,
    /// past 4 GiB, or overlapping the other).
    BadPciHost { reason: &'static str },
    /// The tables' base address is not 16-byte aligned (the RSDP must be).
    MisalignedBase { base: u64 },
    /// The tables need more room than the placement gives.
    TablesDoNotFit { needed: u64, available: u64 },
    /// The tables would end above 4 GiB, out of reach of the RSDT's 32-bit pointers.
    TablesAbove4GiB { end: u64 },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use AcpiError::*;
        match *self {
            NoVcpus => write!(f, "the partition has no vCPU"),
            BadPciHost { reason } => write!(f, "the PCI host bridge: {reason}"),
            TooMany { what, count, max } => write!(f, "{count} {what}: at most {max} supported"),
            VcpuOnMissingNode { vcpu, node, nodes } => {
                write!(
                    f,
                    "vCPU {vcpu} is on node {node}, but there are only {nodes} nodes"
                )
            }
            DuplicateApicId {
                first,
                second,
                apic_id,
            } => {
                write!(f, "vCPUs {first} and {second} both have APIC ID {apic_id}")
            }
            ReservedApicId { vcpu } => {
                write!(f, "vCPU {vcpu} has APIC ID 0xFFFFFFFF, the broadcast ID")
            }
            EmptyRange { node, range } => write!(f, "node {node} memory range {range} is empty"),
            RangeOverflows { node, range } => {
                write!(f, "node {node} memory range {range} runs past 2^64")
            }
            OverlappingRanges {
                node_a,
                range_a,
                node_b,
                range_b,
            } => write!(
                f,
                "node {node_a} memory range {range_a} overlaps node {node_b} memory range {range_b}"
            ),
            EmptyDistanceMatrix => write!(f, "the distance matrix is empty"),
            DistanceRowLength {
                row,
                expected,
                found,
            } => write!(
                f,
                "distance matrix row {row} has {found} entries, expected {expected}"
            ),
            DistanceMatrixSize { expected, found } => write!(
                f,
                "the distance matrix is {found}x{found}, but there are {expected} nodes"
            ),
            DistanceDiagonal { node, value } => {
                write!(
                    f,
                    "distance from node {node} to itself is {value}, must be 10"
                )
            }
            DistanceTooSmall { from, to, value } => write!(
                f,
                "distance from node {from} to node {to} is {value}, must be above 10"
            ),
            MissingHostDomain {
                node,
                host_domain,
                host_domains,
            } => write!(
                f,
                "node {node} is backed by host domain {host_domain}, \
                 but the host distance matrix has {host_domains} domains"
            ),
            BackingCount { expected, found } => {
                write!(f, "{found} backing host domains given for {expected} nodes")
            }
            HmatMatrixSize {
                which,
                row: None,
                expected,
                found,
            } => {
                write!(f, "HMAT {which} has {found} rows, expected {expected}")
            }
            HmatMatrixSize {
                which,
                row: Some(row),
                expected,
                found,
            } => write!(
                f,
                "HMAT {which} row {row} has {found} entries, expected {expected}"
            ),
            BadUart { port, irq } => write!(
                f,
                "UART at port {port:#x} IRQ {irq}: needs 8 ports below 0x10000 and an ISA IRQ 0..15"
            ),
            DeviceOnMissingNode {
                device,
                node,
                nodes,
            } => {
                write!(
                    f,
                    "{device} is on node {node}, but there are only {nodes} nodes"
                )
            }
            BadIoApicId { id } => {
                write!(f, "I/O APIC ID {id}: its ID register holds 4 bits (0..15)")
            }
            BadPmBlock { port, sci_irq } => write!(
                f,
                "PM block at port {port:#x} SCI {sci_irq}: needs 12 ports below 0x10000 \
                 and an ISA IRQ 1..15 other than 2"
            ),
            BadVirtioMmio {
                index,
                base,
                gsi,
                reason,
            } => write!(
                f,
                "virtio-mmio device {index} at {base:#x} on GSI {gsi}: {reason}"
            ),
            MisalignedBase { base } => {
                write!(f, "table base {base:#x} is not 16-byte aligned")
            }
            TablesDoNotFit { needed, available } => write!(
                f,
                "the tables need {needed} bytes, the placement gives {available}"
            ),
            TablesAbove4GiB { end } => {
                write!(f, "the tables would end at {end:#x}, above 4 GiB")
            }
        }
    }
}

impl core::error::Error for AcpiError {}
