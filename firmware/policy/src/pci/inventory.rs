//! The host's PCI inventory: every function with its host bridge, NUMA node and remapping
//! unit, as the `pci` report event lists it and passthrough checks it.

use alloc::string::String;
use alloc::vec::Vec;

use super::{attribute_roots, HostBridgeRoot, PciFunction};
use crate::acpi::aml::{HostBridge, Proximity};
use crate::acpi::EcamWindow;

/// A PCI host bridge from the ACPI namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostBridgeInfo {
    /// Its namespace path, e.g. `\_SB_.PC40`.
    pub path: String,
    pub root: HostBridgeRoot,
    /// Its proximity domain (`_PXM`, its own or an ancestor's), where the reader could tell.
    pub pxm: Option<u32>,
    /// The node of that domain, if the domain is one of the machine's nodes.
    pub node: Option<usize>,
}

impl HostBridgeInfo {
    /// The host bridges of the ACPI namespace, with the node of each one's proximity domain
    /// (`node_of_pxm`). A bridge whose `_SEG` or `_BBN` does not fit a segment or bus number
    /// is left out: it can decode nothing real.
    pub fn from_namespace(
        bridges: &[HostBridge],
        node_of_pxm: impl Fn(u32) -> Option<usize>,
    ) -> Vec<HostBridgeInfo> {
        bridges
            .iter()
            .filter_map(|b| {
                let segment = u16::try_from(b.segment.unwrap_or(0)).ok()?;
                // No _BBN: the bus range's start, else bus 0 (as Linux assumes).
                let bus = match b.base_bus {
                    Some(bus) => u8::try_from(bus).ok()?,
                    None => b.bus_range.map_or(0, |(low, _)| low),
                };
                let pxm = match b.proximity {
                    Proximity::Declared(pxm) | Proximity::Inherited { pxm, .. } => Some(pxm),
                    Proximity::Computed | Proximity::None => None,
                };
                Some(HostBridgeInfo {
                    path: b.path.clone(),
                    root: HostBridgeRoot {
                        segment,
                        bus,
                        bus_range: b.bus_range,
                    },
                    pxm,
                    node: pxm.and_then(&node_of_pxm),
                })
            })
            .collect()
    }
}

/// Which kind of DMA remapping hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemappingKind {
    /// Intel VT-d (DMAR DRHD).
    VtD,
    /// AMD-Vi (IVRS IVHD).
    AmdVi,
}

impl RemappingKind {
    /// The name the report uses.
    pub fn name(self) -> &'static str {
        match self {
            RemappingKind::VtD => "vt-d",
            RemappingKind::AmdVi => "amd-vi",
        }
    }
}

/// One DMA remapping unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemappingUnit {
    pub kind: RemappingKind,
    /// Its register base.
    pub base: u64,
    pub segment: u16,
    /// Its proximity domain (DMAR RHSA), where the firmware gives one.
    pub pxm: Option<u32>,
    pub node: Option<usize>,
    /// Whether the firmware says interrupt remapping is usable through it: the DMAR's
    /// INTR_REMAP flag (VT-d), an I/O APIC among the IVHD's special devices (AMD-Vi, where
    /// Linux asks the same before it remaps). Without it a passed-through function's
    /// messages could reach any CPU, so none is given to a partition.
    pub interrupt_remapping: bool,
}

/// One function and where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciDevice {
    pub function: PciFunction,
    /// Index in [`PciInventory::host_bridges`].
    pub host_bridge: Option<usize>,
    /// Its host bridge's node.
    pub node: Option<usize>,
    /// Index in [`PciInventory::units`] of the unit that remaps its DMA.
    pub unit: Option<usize>,
    /// Memory the firmware keeps using for its DMA (VT-d RMRR, AMD-Vi IVMD), `[base, end)`:
    /// a device with any cannot be given to a partition.
    pub reserved_memory: Vec<(u64, u64)>,
}

/// What the hypervisor knows of the host's PCI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PciInventory {
    pub windows: Vec<EcamWindow>,
    pub host_bridges: Vec<HostBridgeInfo>,
    pub units: Vec<RemappingUnit>,
    pub devices: Vec<PciDevice>,
}

impl PciInventory {
    /// The remapping unit of function `device` (an index in [`devices`](Self::devices)), if
    /// one covers it.
    pub fn unit_of(&self, device: usize) -> Option<&RemappingUnit> {
        self.devices
            .get(device)
            .and_then(|d| d.unit)
            .and_then(|u| self.units.get(u))
    }
}

/// Where a function's DMA goes: its remapping unit and the memory the firmware reserved for
/// it. Implemented over DMAR and IVRS.
pub trait RemappingMap {
    /// The units, in the order `unit_for` indexes them.
    fn units(&self) -> Vec<RemappingUnit>;
    /// The unit remapping `function` (whose bridges `functions` describes).
    fn unit_for(&self, function: &PciFunction, functions: &[PciFunction]) -> Option<usize>;
    /// The reserved regions `[base, end)` that apply to `function`.
    fn reserved_for(&self, function: &PciFunction, functions: &[PciFunction]) -> Vec<(u64, u64)>;
}

/// Places every function of `functions` under `host_bridges` and `remapping`.
pub fn build(
    windows: &[EcamWindow],
    functions: Vec<PciFunction>,
    host_bridges: Vec<HostBridgeInfo>,
    remapping: Option<&dyn RemappingMap>,
) -> PciInventory {
    let roots: Vec<HostBridgeRoot> = host_bridges.iter().map(|b| b.root).collect();
    let owners = attribute_roots(&functions, &roots);
    let units = remapping.map(|r| r.units()).unwrap_or_default();
    let devices = functions
        .iter()
        .zip(owners)
        .map(|(function, owner)| PciDevice {
            function: function.clone(),
            host_bridge: owner,
            node: owner.and_then(|i| host_bridges[i].node),
            unit: remapping.and_then(|r| r.unit_for(function, &functions)),
            reserved_memory: remapping
                .map(|r| r.reserved_for(function, &functions))
                .unwrap_or_default(),
        })
        .collect();
    PciInventory {
        windows: windows.to_vec(),
        host_bridges,
        units,
        devices,
    }
}
