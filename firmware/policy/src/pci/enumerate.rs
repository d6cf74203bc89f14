//! Finding every function of every ECAM window and reading its header (PCI Local Bus 3.0
//! §6.1, §6.2.5 BARs, §6.7 capabilities; PCI Express Base 6.0 §7.5.3 the PCIe capability,
//! §7.7 MSI/MSI-X).
//!
//! The walk visits every bus a window decodes rather than following bridges from a root
//! bus: a function behind a bridge the firmware left unconfigured, or on a root bus no host
//! bridge object names, is still found (placement says where it hangs). Absent functions read
//! all ones, so a window of 256 buses costs 8,192 reads of function 0.

use alloc::vec::Vec;

use super::register::*;
use super::{ConfigSpace, PciAddress};
use crate::acpi::EcamWindow;

/// What a function's header type says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    /// Type 0: an endpoint (or a host bridge function, by its class).
    Endpoint,
    /// Type 1: a PCI-to-PCI bridge (PCIe root and switch ports among them) and the buses it
    /// forwards to.
    Bridge {
        primary: u8,
        secondary: u8,
        subordinate: u8,
    },
    /// Type 2: a CardBus bridge.
    CardBus,
    /// A header type the specification does not define.
    Other(u8),
}

/// One implemented base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// BAR number, 0..=5 (a 64-bit BAR has the lower of its two).
    pub index: u8,
    pub kind: BarKind,
    pub prefetchable: bool,
    /// The address the firmware assigned.
    pub base: u64,
    /// Bytes it decodes, a power of two.
    pub size: u64,
}

/// The space a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Memory32,
    /// Memory below 1 MiB (PCI 2.x type 01b).
    MemoryBelow1M,
    Memory64,
}

impl BarKind {
    /// The name the report uses.
    pub fn name(self) -> &'static str {
        match self {
            BarKind::Io => "io",
            BarKind::Memory32 => "mem32",
            BarKind::MemoryBelow1M => "mem1m",
            BarKind::Memory64 => "mem64",
        }
    }
}

/// The capabilities passthrough cares about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Offset of the MSI capability.
    pub msi: Option<u8>,
    /// The MSI-X capability: offset and table size (entries).
    pub msix: Option<(u8, u16)>,
    /// The PCI Express capability's device/port type (0 endpoint, 1 legacy endpoint, 4 root
    /// port, 5/6 switch ports, 9 root complex integrated endpoint, …).
    pub express_type: Option<u8>,
}

/// One function, as the firmware left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciFunction {
    pub address: PciAddress,
    pub vendor: u16,
    pub device: u16,
    /// Base class, subclass and programming interface: `0x010802` is an NVMe controller.
    pub class: u32,
    pub revision: u8,
    pub header: HeaderKind,
    /// Endpoint BARs (sized with decoding off, then restored); bridges' are not touched.
    pub bars: Vec<Bar>,
    pub capabilities: Capabilities,
}

impl PciFunction {
    /// Whether the function is an endpoint a partition could own: a type 0 header whose
    /// class is not a bridge (base class 06: host, ISA/LPC and other bridges the platform
    /// itself needs).
    pub fn is_endpoint(&self) -> bool {
        self.header == HeaderKind::Endpoint && self.class >> 16 != 0x06
    }
}

/// Most capabilities a list may hold before the walk stops (a loop in a hostile or broken
/// device's list must not hang the boot): 48 fit in the 192 bytes above the header.
const MAX_CAPABILITIES: usize = 48;

/// Every function the `windows` decode, in address order.
pub fn enumerate(windows: &[EcamWindow], config: &mut impl ConfigSpace) -> Vec<PciFunction> {
    let mut found = Vec::new();
    for window in windows {
        for bus in window.start_bus..=window.end_bus {
            for device in 0..32 {
                let Some(first) = PciAddress::new(window.segment, bus, device, 0) else {
                    continue;
                };
                let Some(id) = id_of(config, first) else {
                    continue;
                };
                let multifunction = config.read32(first, HEADER_TYPE_DWORD) >> 16 & 0x80 != 0;
                found.push(read_function(config, first, id));
                let functions = if multifunction { 8 } else { 1 };
                for function in 1..functions {
                    let Some(address) = PciAddress::new(window.segment, bus, device, function)
                    else {
                        continue;
                    };
                    if let Some(id) = id_of(config, address) {
                        found.push(read_function(config, address, id));
                    }
                }
            }
        }
    }
    found.sort_by_key(|f| f.address);
    found.dedup_by_key(|f| f.address);
    found
}

/// The vendor and device ID dword of the function at `address`, if one answers there.
fn id_of(config: &mut impl ConfigSpace, address: PciAddress) -> Option<u32> {
    let id = config.read32(address, ID);
    let vendor = id & 0xFFFF;
    (vendor != 0xFFFF && vendor != 0).then_some(id)
}

/// The function at `address`, whose ID dword is `id`.
fn read_function(config: &mut impl ConfigSpace, address: PciAddress, id: u32) -> PciFunction {
    let class_revision = config.read32(address, CLASS_REVISION);
    let header_type = (config.read32(address, HEADER_TYPE_DWORD) >> 16) as u8 & 0x7F;
    let header = match header_type {
        0 => HeaderKind::Endpoint,
        1 => {
            let buses = config.read32(address, BUS_NUMBERS);
            HeaderKind::Bridge {
                primary: buses as u8,
                secondary: (buses >> 8) as u8,
                subordinate: (buses >> 16) as u8,
            }
        }
        2 => HeaderKind::CardBus,
        other => HeaderKind::Other(other),
    };
    let bars = if header == HeaderKind::Endpoint {
        size_bars(config, address)
    } else {
        Vec::new()
    };
    PciFunction {
        address,
        vendor: id as u16,
        device: (id >> 16) as u16,
        class: class_revision >> 8,
        revision: class_revision as u8,
        header,
        bars,
        capabilities: capabilities(config, address),
    }
}

/// The implemented BARs of a type 0 function. Decoding is off while each BAR reads back its
/// size mask (all ones written, PCI 3.0 §6.2.5.1), so no access can hit the probe address,
/// and every register is restored as it was.
fn size_bars(config: &mut impl ConfigSpace, address: PciAddress) -> Vec<Bar> {
    let command = config.read32(address, COMMAND_STATUS);
    // The status half is write-one-to-clear: writing zeros there leaves it alone.
    let quiet = command & 0xFFFF & !(DECODE_IO | DECODE_MEMORY);
    config.write32(address, COMMAND_STATUS, quiet);
    let mut bars = Vec::new();
    let mut index = 0u8;
    while index < 6 {
        let offset = BAR0 + 4 * u16::from(index);
        let low = probe(config, address, offset);
        let (original, mask) = low;
        let kind = if original & 1 != 0 {
            BarKind::Io
        } else {
            match original >> 1 & 3 {
                1 => BarKind::MemoryBelow1M,
                2 if index < 5 => BarKind::Memory64,
                _ => BarKind::Memory32,
            }
        };
        let (base, size_mask, width) = match kind {
            BarKind::Io => (u64::from(original & !3), u64::from(mask & !3), 1),
            BarKind::Memory64 => {
                let (high, high_mask) = probe(config, address, offset + 4);
                (
                    u64::from(high) << 32 | u64::from(original & !0xF),
                    u64::from(high_mask) << 32 | u64::from(mask & !0xF),
                    2,
                )
            }
            _ => (u64::from(original & !0xF), u64::from(mask & !0xF), 1),
        };
        // The lowest writable address bit is the size (as Linux's pci_size takes it); a BAR
        // whose address bits all read back zero is not implemented.
        if size_mask != 0 {
            bars.push(Bar {
                index,
                kind,
                prefetchable: kind != BarKind::Io && original & 8 != 0,
                base,
                size: 1 << size_mask.trailing_zeros(),
            });
        }
        index += width;
    }
    config.write32(address, COMMAND_STATUS, command & 0xFFFF);
    bars
}

/// The BAR dword at `offset` as found, and what it reads after all ones are written; then
/// the original is written back.
fn probe(config: &mut impl ConfigSpace, address: PciAddress, offset: u16) -> (u32, u32) {
    let original = config.read32(address, offset);
    config.write32(address, offset, u32::MAX);
    let mask = config.read32(address, offset);
    config.write32(address, offset, original);
    (original, mask)
}

/// MSI, MSI-X and PCIe from the capability list, walked at most [`MAX_CAPABILITIES`] steps.
fn capabilities(config: &mut impl ConfigSpace, address: PciAddress) -> Capabilities {
    let mut found = Capabilities::default();
    if config.read32(address, COMMAND_STATUS) & STATUS_CAPABILITIES == 0 {
        return found;
    }
    let mut at = (config.read32(address, CAPABILITIES_POINTER) & 0xFC) as u8;
    for _ in 0..MAX_CAPABILITIES {
        // The list lives above the 64-byte header.
        if at < 0x40 {
            break;
        }
        let head = config.read32(address, u16::from(at));
        match head as u8 {
            0x05 => found.msi = found.msi.or(Some(at)),
            0x10 => found.express_type = found.express_type.or(Some((head >> 20 & 0xF) as u8)),
            0x11 => {
                found.msix = found.msix.or(Some((at, ((head >> 16) & 0x7FF) as u16 + 1)));
            }
            _ => {}
        }
        at = (head >> 8) as u8 & 0xFC;
    }
    found
}
