//! PCI passthrough at the partition edge: which of the layout's host functions each partition
//! may own on this machine (`numavisor_policy::pci::passthrough` decides) and the warning for
//! one far from its memory; the virtual host bridge of its functions; their attachment to
//! its DMA remapping domain (`dma_remapping`) and detachment at stop; the SLAT mappings of
//! their BARs as the guest places them; and the faults their DMA takes.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use numavisor_layout::{Layout, PartitionSpec};
use numavisor_policy::devices::pci_host::{
    BarMemory, MappingAccess, OneFunction, PassthroughFunction, PciMappings, VirtualHostBridge,
};
use numavisor_policy::iommu::SourceId;
use numavisor_policy::pci::guest_bus;
use numavisor_policy::pci::passthrough::{
    check_requests, far_device, vnode_for_device, PassthroughRefusal, PassthroughRequest,
};
use numavisor_policy::pci::{PciAddress, PciInventory};
use numavisor_policy::report::events;
use numavisor_policy::vmm::exit::{StopKind, StopRequest};

use super::Partition;
use crate::platform::console::report;
use crate::platform::pci_config::Ecam;

/// Every `pci` entry of the layout, in file order (partition by partition): the function's
/// index in `inventory.devices`, or why the machine refuses it.
pub fn check_layout(
    inventory: &PciInventory,
    layout: &Layout,
) -> Vec<Result<usize, PassthroughRefusal>> {
    let requests: Vec<PassthroughRequest> = layout
        .partitions
        .iter()
        .enumerate()
        .flat_map(|(partition, spec)| {
            spec.pci.iter().map(move |d| PassthroughRequest {
                partition,
                host: d.host,
            })
        })
        .collect();
    check_requests(inventory, &requests)
}

/// Why a partition cannot have its functions: the first refused one, by address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub host: PciAddress,
    pub reason: PassthroughRefusal,
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "pci {}: {}", self.host, self.reason)
    }
}

/// The inventory indices of `spec`'s functions, or why one is refused; `checked` is this
/// partition's slice of [`check_layout`]. Both kinds of unit have a driver
/// (`dma_remapping`), so a function the machine's checks accept is given.
pub fn accept(
    spec: &PartitionSpec,
    checked: &[Result<usize, PassthroughRefusal>],
) -> Result<Vec<usize>, Refused> {
    spec.pci
        .iter()
        .zip(checked)
        .map(|(device, result)| {
            result.clone().map_err(|reason| Refused {
                host: device.host,
                reason,
            })
        })
        .collect()
}

/// The SLIT distance between two dense nodes of `distances`; unknown is the farthest.
fn slit(distances: &[Vec<u8>]) -> impl Fn(usize, usize) -> u8 + '_ {
    |a, b| {
        distances
            .get(a)
            .and_then(|row| row.get(b))
            .copied()
            .unwrap_or(u8::MAX)
    }
}

/// Reports (`pci_far`) each function of the partition whose node holds none of its memory.
pub fn report_far(
    inventory: &PciInventory,
    spec: &PartitionSpec,
    devices: &[usize],
    vnode_nodes: &[usize],
    distances: &[Vec<u8>],
) {
    let distance = slit(distances);
    for &index in devices {
        let device = &inventory.devices[index];
        if let Some(far) = far_device(device.node, vnode_nodes, &distance) {
            log::warn!(
                "partition \"{}\": pci {} is on node {}, which holds none of its memory \
                 (nearest: node {}, distance {})",
                spec.name,
                device.function.address,
                far.device_node,
                far.nearest,
                far.distance
            );
            report::emit(&events::pci_far(
                spec.name,
                &device.function.address,
                far.device_node,
                far.nearest,
                far.distance,
            ));
        }
    }
}

/// A passed-through function's trapped BAR bytes (its MSI-X page besides the table), read and
/// written at their host addresses through the identity map.
struct IdentityBars {
    /// The function's memory BARs, `[base, end)`.
    bars: Vec<(u64, u64)>,
}

impl IdentityBars {
    /// The address, if `size` bytes there lie inside one BAR below 4 GiB (where the identity
    /// map is uncacheable) and are naturally aligned.
    fn at(&self, address: u64, size: u8) -> Option<u64> {
        let end = address.checked_add(u64::from(size))?;
        let inside = self.bars.iter().any(|&(b, e)| b <= address && end <= e);
        (inside && end <= 4 << 30 && address.is_multiple_of(u64::from(size))).then_some(address)
    }
}

impl BarMemory for IdentityBars {
    fn read(&mut self, host_physical: u64, size: u8) -> u64 {
        let Some(address) = self.at(host_physical, size) else {
            return u64::MAX;
        };
        // SAFETY: an aligned access inside one of the function's own memory BARs, below
        // 4 GiB where the identity map is uncacheable (`at`); the function belongs to this
        // partition, whose device lock the caller holds.
        unsafe {
            match size {
                1 => u64::from((address as *const u8).read_volatile()),
                2 => u64::from((address as *const u16).read_volatile()),
                4 => u64::from((address as *const u32).read_volatile()),
                _ => (address as *const u64).read_volatile(),
            }
        }
    }

    fn write(&mut self, host_physical: u64, size: u8, value: u64) {
        let Some(address) = self.at(host_physical, size) else {
            return;
        };
        // SAFETY: as for `read`.
        unsafe {
            match size {
                1 => (address as *mut u8).write_volatile(value as u8),
                2 => (address as *mut u16).write_volatile(value as u16),
                4 => (address as *mut u32).write_volatile(value as u32),
                _ => (address as *mut u64).write_volatile(value),
            }
        }
    }
}

/// The virtual host bridge of a partition's functions (`devices`: indices in `inventory`),
/// each function reset (decoding, bus mastering, MSI and MSI-X off) and its memory BARs
/// placed in the guest's PCI window, as a PC's firmware leaves them.
pub fn new_bridge(
    inventory: &PciInventory,
    devices: &[usize],
) -> Result<VirtualHostBridge, String> {
    let functions: Vec<&numavisor_policy::pci::PciFunction> = devices
        .iter()
        .map(|&i| &inventory.devices[i].function)
        .collect();
    let placed = guest_bus::place_bars(&functions).map_err(|e| format!("{e}"))?;
    let mut built = Vec::new();
    for (function, bars) in functions.iter().zip(&placed) {
        // SAFETY: the firmware's MCFG windows; the function is this partition's alone, and
        // its configuration space is reached only through its device lock from now on.
        let ecam = unsafe { Ecam::new(&inventory.windows) };
        let config = OneFunction {
            config: ecam,
            address: function.address,
        };
        let memory = IdentityBars {
            bars: function
                .bars
                .iter()
                .filter(|b| b.kind != numavisor_policy::pci::BarKind::Io)
                .map(|b| (b.base, b.base.saturating_add(b.size)))
                .collect(),
        };
        let mut model =
            PassthroughFunction::new(Box::new(config), &function.bars, Box::new(memory))
                .map_err(|e| format!("pci {}: {e}", function.address))?;
        for bar in bars {
            let register = 0x10 + 4 * u16::from(bar.host.index);
            model.write(register, bar.guest as u32, 0xF);
            if bar.host.kind == numavisor_policy::pci::BarKind::Memory64 {
                model.write(register + 4, (bar.guest >> 32) as u32, 0xF);
            }
        }
        built.push(model);
    }
    VirtualHostBridge::new(built).map_err(|e| format!("{e}"))
}

/// The guest's host bridge for its ACPI tables: on the vnode of its first function's node.
pub fn guest_host_bridge(
    inventory: &PciInventory,
    devices: &[usize],
    vnode_nodes: &[usize],
    distances: &[Vec<u8>],
) -> Option<numavisor_acpi_tables::PciHostBridge> {
    let first = devices.first()?;
    let distance = slit(distances);
    let vnode = vnode_for_device(inventory.devices[*first].node, vnode_nodes, distance);
    Some(numavisor_acpi_tables::PciHostBridge {
        ecam_base: guest_bus::GUEST_ECAM_BASE,
        last_bus: 0,
        window_base: guest_bus::GUEST_BAR_WINDOW_BASE,
        window_length: guest_bus::GUEST_BAR_WINDOW_LENGTH,
        node: vnode.map(|v| v as u32),
    })
}

/// Attaches every function of `partition` to its remapping domain (its DMA then reaches
/// exactly its guest RAM). Called by the builder, which holds the free memory (`frames`)
/// before any vCPU runs: the one place the remapping lock is taken inside it.
pub fn attach_all_with(
    partition: &Partition,
    dma_root: u64,
    frames: &mut numavisor_policy::memory::FrameAllocator,
) -> Result<(), String> {
    let hv = partition.hv;
    let domain = super::dma_remapping::domain_of(partition.index);
    for &index in &partition.pci_devices {
        let device = &hv.pci.devices[index];
        let unit = hv
            .pci
            .unit_of(index)
            .ok_or_else(|| format!("pci {}: no remapping unit", device.function.address))?;
        hv.dma
            .lock()
            .attach(
                frames,
                unit,
                SourceId::from(device.function.address),
                domain,
                dma_root,
            )
            .map_err(|e| format!("pci {}: {e}", device.function.address))?;
    }
    Ok(())
}

/// Stops the partition's functions' DMA for good before its memory goes: bus mastering and
/// decoding off, then out of its remapping domain, the unit's caches invalidated.
pub fn detach_all(partition: &Partition) {
    super::msi_routes::release(partition);
    if let Some(bridge) = partition.devices.lock().pci.bridge_mut() {
        for device in 1..=partition.pci_devices.len() {
            if let Some(function) = bridge.function_mut(device as u8) {
                // Memory Space and Bus Master off (the low word of the command register).
                function.write(0x04, 0, 0x3);
            }
        }
    }
    let hv = partition.hv;
    for &index in &partition.pci_devices {
        let device = &hv.pci.devices[index];
        if let Some(unit) = hv.pci.unit_of(index) {
            hv.dma
                .lock()
                .detach(unit, SourceId::from(device.function.address));
        }
    }
}

/// Maps a function's BARs where the guest now has them ([`Effect::PciMappings`]): what was
/// mapped for it before and is not any more is unmapped (every vCPU flushes before the
/// return), the new direct pieces mapped read-write. A piece outside the guest's PCI window
/// is not mapped (the guest's accesses there fault): the window is what its ACPI tables give
/// the bridge, and mapping elsewhere could cover its own RAM or devices.
pub fn apply_mappings(partition: &Partition, vcpu: usize, mappings: PciMappings) {
    let window = u64::from(guest_bus::GUEST_BAR_WINDOW_BASE)
        ..u64::from(guest_bus::GUEST_BAR_WINDOW_BASE)
            + u64::from(guest_bus::GUEST_BAR_WINDOW_LENGTH);
    let wanted: Vec<(u64, u64, u64)> = mappings
        .mappings
        .iter()
        .filter(|m| m.access == MappingAccess::Direct)
        .filter(|m| {
            let inside = window.contains(&m.guest_physical)
                && m.guest_physical.saturating_add(m.size) <= window.end;
            if !inside {
                log::warn!(
                    "partition \"{}\": guest BAR {} of device {} at {:#x} lies outside its PCI \
                     window; not mapped",
                    partition.name(),
                    m.bar,
                    mappings.device,
                    m.guest_physical
                );
            }
            inside
        })
        .map(|m| (m.guest_physical, m.host_physical, m.size))
        .collect();
    let mut state = partition.state.lock();
    let old = state
        .pci_mapped
        .get(&mappings.device)
        .cloned()
        .unwrap_or_default();
    if old == wanted {
        return;
    }
    let gone: Vec<(u64, u64)> = old
        .iter()
        .filter(|m| !wanted.contains(m))
        .map(|&(gpa, _, size)| (gpa, size))
        .collect();
    let new: Vec<(u64, u64, u64)> = wanted
        .iter()
        .filter(|m| !old.contains(m))
        .copied()
        .collect();
    if let Err(e) = super::page_moves::unmap_device(partition, &mut state, &gone) {
        log::error!("partition \"{}\": unmapping BARs: {e}", partition.name());
    }
    let mut kept: Vec<(u64, u64, u64)> = old.into_iter().filter(|m| wanted.contains(m)).collect();
    for piece in new {
        match super::page_moves::map_device(partition, &mut state, piece) {
            Ok(()) => kept.push(piece),
            Err(e) => log::warn!(
                "partition \"{}\": device {} BAR at {:#x}: not mapped: {e}",
                partition.name(),
                mappings.device,
                piece.0
            ),
        }
    }
    state.pci_mapped.insert(mappings.device, kept);
    if gone.is_empty() {
        return;
    }
    let generation = super::memory_sync::bump(partition, &mut state);
    drop(state);
    super::memory_sync::wait_caught_up(partition, vcpu, generation);
}

/// DMA faults of a partition's functions, in one life, after which it is stopped as a
/// faulting guest (its `on_fault` applies): a driver gone wrong, or a guest probing the
/// unit, should not keep a remapping unit busy recording faults for ever.
pub const DMA_FAULT_LIMIT: u32 = 8;

/// Reports the DMA faults the remapping units recorded (`dma_fault`), each with the
/// partition owning the device, and stops a partition whose functions reached
/// [`DMA_FAULT_LIMIT`]. Called from a partition's vCPU 0 with its timers; another CPU
/// polling meanwhile leaves this one nothing to do.
pub fn poll_faults(partition: &Partition) {
    if partition.pci_devices.is_empty() {
        return;
    }
    let hv = partition.hv;
    let Some(mut dma) = hv.dma.try_lock() else {
        return;
    };
    let (faults, overflowed) = dma.take_faults();
    drop(dma);
    if overflowed {
        log::warn!("DMA remapping: faults were lost (every fault record was full)");
    }
    for (unit, fault) in faults {
        let owner = hv.partitions().iter().find(|p| {
            p.pci_devices.iter().any(|&i| {
                let device = &hv.pci.devices[i];
                SourceId::from(device.function.address) == fault.source
                    && hv.pci.unit_of(i).map(|u| u.base) == Some(unit)
            })
        });
        let name = owner.map(|p| p.name());
        log::warn!(
            "DMA remapping unit {unit:#x}: partition {}: {fault}",
            name.unwrap_or("(none)")
        );
        report::emit(&events::dma_fault(name, unit, &fault));
        if let Some(owner) = owner {
            let count = owner.dma_faults.fetch_add(1, Ordering::Relaxed) + 1;
            if count == DMA_FAULT_LIMIT {
                owner.control.ask(StopRequest {
                    kind: StopKind::Fault,
                    reason: "dma-faults",
                    detail: format!(
                        "its PCI functions' DMA was refused {count} times (the last: {fault})"
                    ),
                });
                for slot in &owner.vcpus {
                    slot.kick();
                }
            }
        }
    }
}
