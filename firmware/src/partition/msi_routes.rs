//! Passed-through functions' interrupts (issue 18 item 5). Each guest MSI or MSI-X message a
//! driver programs gets a host vector of its own, machine-wide (`idt::FIRST_DEVICE_VECTOR`
//! onwards), aimed at the CPU running the partition's vCPU 0; the guest's own address and
//! data never reach the device. The vector and CPU are in an interrupt-remapping entry of
//! that slot's index, usable by that function's requester ID only (VT-d: source-ID checked;
//! AMD-Vi: in the function's own table), and the device is given the remappable message
//! naming it: no message it can send reaches another CPU or vector. When the CPU takes
//! the vector (its vCPU's run ends with a physical-interrupt exit, or its idle HLT wakes),
//! the vCPU loop delivers the guest's vector to the guest's destination through the
//! partition's interrupt routing, as an edge-triggered I/O APIC message would be.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use numavisor_policy::devices::ioapic::{DeliveryMode, IoApicDelivery};
use numavisor_policy::devices::pci_host::{
    DestinationMode, GuestMsi, HostMessage, InterruptRoute, InterruptSource, MsiDelivery,
};
use numavisor_policy::iommu::SourceId;
use spin::Mutex;

use super::dma_remapping::InterruptTarget;
use super::interrupts::deliver_ioapic;
use super::Partition;
use crate::platform::cpu::idt::{take_device_vectors, DEVICE_VECTOR_COUNT, FIRST_DEVICE_VECTOR};

/// What one host vector carries.
#[derive(Clone, Copy, Debug)]
struct Route {
    partition: usize,
    /// The function's guest device number.
    device: u8,
    source: InterruptSource,
    msi: GuestMsi,
}

/// Every device vector's route, by `vector - FIRST_DEVICE_VECTOR`.
static ROUTES: Mutex<[Option<Route>; DEVICE_VECTOR_COUNT]> =
    Mutex::new([None; DEVICE_VECTOR_COUNT]);

/// Programs each changed route's physical message: a host vector aimed at the partition's
/// vCPU 0's CPU, or masked when the guest masked or disabled it (or no vector is left).
pub fn route(partition: &Partition, routes: Vec<InterruptRoute>) {
    let host_apic = partition.state.lock().vcpus.first().map(|v| v.apic_id);
    for InterruptRoute { device, route } in routes {
        let (slot, freed) = update_table(partition, device, route.source, route.target);
        if let Some(freed) = freed {
            clear_entry(partition, device, freed);
        }
        let message = match (slot, host_apic) {
            (Some(slot), Some(apic)) if apic <= 0xFF => message(partition, device, slot, apic),
            (Some(_), _) => {
                log::warn!(
                    "partition \"{}\": device {device}: its CPU's APIC ID needs x2APIC messages; \
                     the message stays masked",
                    partition.name()
                );
                None
            }
            (None, _) => None,
        };
        let mut devices = partition.devices.lock();
        let Some(function) = devices
            .pci
            .bridge_mut()
            .and_then(|b| b.function_mut(device))
        else {
            continue;
        };
        let programmed = match route.source {
            InterruptSource::Msi => function.program_msi(message),
            InterruptSource::MsixEntry(entry) => function.program_msix(entry, message),
        };
        if let Err(e) = programmed {
            log::warn!(
                "partition \"{}\": device {device} {:?}: {e}",
                partition.name(),
                route.source
            );
        }
    }
}

/// The physical message for host vector slot `slot` aimed at the CPU with xAPIC ID `apic`:
/// the remappable message naming the function's interrupt-remapping entry of that slot,
/// written first (fixed delivery, physical destination, edge: SDM vol. 3A §11.11.1); `None`
/// (masked) where the entry cannot be written.
fn message(partition: &Partition, device: u8, slot: usize, apic: u32) -> Option<HostMessage> {
    let vector = (FIRST_DEVICE_VECTOR + slot) as u8;
    let hv = partition.hv;
    let index = *partition
        .pci_devices
        .get(usize::from(device).wrapping_sub(1))?;
    let unit = hv.pci.unit_of(index)?;
    let source = SourceId::from(hv.pci.devices[index].function.address);
    let programmed = hv.dma.lock().program_interrupt(
        unit,
        source,
        slot as u16,
        InterruptTarget { vector, apic },
    );
    match programmed {
        Ok((address, data)) => Some(HostMessage {
            address: u64::from(address),
            data,
        }),
        Err(e) => {
            log::warn!(
                "partition \"{}\": device {device}: {e}; its message stays masked",
                partition.name()
            );
            None
        }
    }
}

/// Clears the interrupt-remapping entry of slot `slot`, which `device` no longer uses.
fn clear_entry(partition: &Partition, device: u8, slot: usize) {
    let hv = partition.hv;
    let Some(&index) = partition
        .pci_devices
        .get(usize::from(device).wrapping_sub(1))
    else {
        return;
    };
    let source = SourceId::from(hv.pci.devices[index].function.address);
    if let Some(unit) = hv.pci.unit_of(index) {
        if let Err(e) = hv.dma.lock().clear_interrupt(unit, source, slot as u16) {
            log::error!("partition \"{}\": device {device}: {e}", partition.name());
        }
    }
}

/// Records `target` for the partition's `(device, source)`: its host vector slot (kept, or
/// the first free one), or frees the slot when there is no target. Returns the slot in use
/// and the slot freed.
fn update_table(
    partition: &Partition,
    device: u8,
    source: InterruptSource,
    target: Option<GuestMsi>,
) -> (Option<usize>, Option<usize>) {
    let mut table = ROUTES.lock();
    let held = table.iter().position(|r| {
        r.is_some_and(|r| {
            r.partition == partition.index && r.device == device && r.source == source
        })
    });
    let Some(msi) = target else {
        if let Some(slot) = held {
            table[slot] = None;
            set_owned(partition, slot, false);
        }
        return (None, held);
    };
    let Some(slot) = held.or_else(|| table.iter().position(Option::is_none)) else {
        log::warn!(
            "partition \"{}\": device {device}: every device vector is taken; its message stays \
             masked",
            partition.name()
        );
        return (None, None);
    };
    table[slot] = Some(Route {
        partition: partition.index,
        device,
        source,
        msi,
    });
    set_owned(partition, slot, true);
    (Some(slot), None)
}

fn set_owned(partition: &Partition, slot: usize, owned: bool) {
    let vector = FIRST_DEVICE_VECTOR + slot;
    let (word, bit) = (&partition.pci_vectors[vector / 64], 1u64 << (vector % 64));
    match owned {
        true => word.fetch_or(bit, Ordering::AcqRel),
        false => word.fetch_and(!bit, Ordering::AcqRel),
    };
}

/// Delivers the guest interrupts behind the partition's device vectors this or another CPU
/// took. Cheap when it owns none.
pub fn deliver_pending(partition: &Partition) {
    let owned = [0, 1, 2, 3].map(|i| partition.pci_vectors[i].load(Ordering::Relaxed));
    if owned == [0; 4] {
        return;
    }
    let taken = take_device_vectors(&owned);
    for (word, bits) in taken.iter().enumerate() {
        let mut bits = *bits;
        while bits != 0 {
            let vector = word * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let route = vector
                .checked_sub(FIRST_DEVICE_VECTOR)
                .and_then(|slot| ROUTES.lock().get(slot).copied().flatten());
            if let Some(route) = route.filter(|r| r.partition == partition.index) {
                deliver_ioapic(partition, delivery(route.msi));
            }
        }
    }
}

/// The guest message as the I/O APIC's routing takes it: edge-triggered, its own
/// destination, mode and vector.
fn delivery(msi: GuestMsi) -> IoApicDelivery {
    IoApicDelivery {
        vector: msi.vector,
        delivery_mode: match msi.delivery {
            MsiDelivery::Fixed => DeliveryMode::Fixed,
            MsiDelivery::LowestPriority => DeliveryMode::LowestPriority,
        },
        logical: msi.mode == DestinationMode::Logical,
        destination: msi.destination,
        level_triggered: false,
        // No pin: a message, named in logs as pin 255.
        pin: u8::MAX,
    }
}

/// Frees every vector of the partition and clears its remapping entries (a stop, or a
/// restart whose new functions start masked).
pub fn release(partition: &Partition) {
    let mut freed = Vec::new();
    {
        let mut table = ROUTES.lock();
        for (slot, route) in table.iter_mut().enumerate() {
            if let Some(r) = route.filter(|r| r.partition == partition.index) {
                *route = None;
                set_owned(partition, slot, false);
                freed.push((r.device, slot));
            }
        }
    }
    for (device, slot) in freed {
        clear_entry(partition, device, slot);
    }
}
