//! What can be inconsistent between SRAT, SLIT, MADT and the boot memory map (ACPI 6.5
//! §5.2.16–§5.2.17), and the fallback taken for each.

use core::fmt;

/// One inconsistency found while building the topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopologyProblem {
    /// An SRAT exists but names no enabled CPU, memory or initiator: one domain is used.
    SratEmpty,
    /// No MADT: the topology lists no CPUs (the firmware still runs the boot CPU).
    NoMadt,
    /// The MADT lists a present CPU the SRAT does not place: it goes to node 0.
    CpuNotInSrat { apic_id: u32 },
    /// The SRAT places a CPU the MADT does not list at all: it is left out.
    CpuNotInMadt { apic_id: u32, pxm: u32 },
    /// The SRAT places one APIC ID twice: the first entry wins.
    DuplicateApicId {
        apic_id: u32,
        first_pxm: u32,
        other_pxm: u32,
    },
    /// SRAT memory ranges of two domains overlap: the earlier entry keeps the overlap.
    OverlappingRanges {
        base: u64,
        end: u64,
        kept_pxm: u32,
        dropped_pxm: u32,
    },
    /// Usable RAM that no SRAT range covers: given to node 0.
    RamNotInSrat { base: u64, end: u64 },
    /// The SLIT does not cover a domain the SRAT names: default distances for all.
    SlitMissesDomain { pxm: u32, localities: usize },
}

impl fmt::Display for TopologyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TopologyProblem::SratEmpty => {
                f.write_str("SRAT has no enabled entries; using one domain")
            }
            TopologyProblem::NoMadt => {
                f.write_str("no usable MADT; the topology lists no CPUs besides the boot CPU")
            }
            TopologyProblem::CpuNotInSrat { apic_id } => {
                write!(
                    f,
                    "CPU with APIC ID {apic_id} is not in the SRAT; placed in node 0"
                )
            }
            TopologyProblem::CpuNotInMadt { apic_id, pxm } => write!(
                f,
                "SRAT places APIC ID {apic_id} in domain {pxm} but the MADT does not list it; \
                 ignored"
            ),
            TopologyProblem::DuplicateApicId {
                apic_id,
                first_pxm,
                other_pxm,
            } => write!(
                f,
                "SRAT places APIC ID {apic_id} in domain {first_pxm} and again in domain \
                 {other_pxm}; the first wins"
            ),
            TopologyProblem::OverlappingRanges {
                base,
                end,
                kept_pxm,
                dropped_pxm,
            } => write!(
                f,
                "SRAT memory {base:#x}..{end:#x} is claimed by domain {kept_pxm} and domain \
                 {dropped_pxm}; domain {kept_pxm} (listed first) keeps it"
            ),
            TopologyProblem::RamNotInSrat { base, end } => write!(
                f,
                "usable RAM {base:#x}..{end:#x} is in no SRAT range; given to node 0"
            ),
            TopologyProblem::SlitMissesDomain { pxm, localities } => write!(
                f,
                "SLIT covers domains 0..{localities} but SRAT names domain {pxm}; distances \
                 fall back to 10 local / 20 remote"
            ),
        }
    }
}
