//! Passed-through functions' interrupts (issue 18 item 5). Each guest MSI or MSI-X message a
//! driver programs gets a host vector of its own, machine-wide (`idt::FIRST_DEVICE_VECTOR`
//! onwards), and the physical message is written to reach the CPU running the partition's
//! vCPU 0 with that vector; the guest's own address and data never reach the device. When
//! the CPU takes the vector (its vCPU's run ends with a physical-interrupt exit, or its idle
//! HLT wakes), the vCPU loop delivers the guest's vector to the guest's destination through
//! the partition's interrupt routing, as an edge-triggered I/O APIC message would be.
//!
//! Not done: interrupt remapping. Without it a device's DMA write to 0xFEEx_xxxx is a
//! message the remapping unit does not check, which a hostile guest's device could aim at
//! any CPU; `docs/pci.md` says so.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use numavisor_policy::devices::ioapic::{DeliveryMode, IoApicDelivery};
use numavisor_policy::devices::pci_host::{
    DestinationMode, GuestMsi, HostMessage, InterruptRoute, InterruptSource, MsiDelivery,
};
use spin::Mutex;

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
        let vector = update_table(partition, device, route.source, route.target);
        let message = match (vector, host_apic) {
            // xAPIC physical destination, fixed delivery, edge (SDM vol. 3A §11.11.1).
            (Some(vector), Some(apic)) if apic <= 0xFF => Some(HostMessage {
                address: 0xFEE0_0000 | u64::from(apic) << 12,
                data: vector as u32,
            }),
            (Some(_), _) => {
                log::warn!(
                    "partition \"{}\": device {device}: its CPU's APIC ID needs x2APIC messages \
                     (interrupt remapping); the message stays masked",
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

/// Records `target` for the partition's `(device, source)`: its host vector (kept, or the
/// first free one), or frees the vector when there is no target.
fn update_table(
    partition: &Partition,
    device: u8,
    source: InterruptSource,
    target: Option<GuestMsi>,
) -> Option<usize> {
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
        return None;
    };
    let Some(slot) = held.or_else(|| table.iter().position(Option::is_none)) else {
        log::warn!(
            "partition \"{}\": device {device}: every device vector is taken; its message stays \
             masked",
            partition.name()
        );
        return None;
    };
    table[slot] = Some(Route {
        partition: partition.index,
        device,
        source,
        msi,
    });
    set_owned(partition, slot, true);
    Some(FIRST_DEVICE_VECTOR + slot)
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

/// Frees every vector of the partition (a stop, or a restart whose new functions start
/// masked).
pub fn release(partition: &Partition) {
    let mut table = ROUTES.lock();
    for (slot, route) in table.iter_mut().enumerate() {
        if route.is_some_and(|r| r.partition == partition.index) {
            *route = None;
            set_owned(partition, slot, false);
        }
    }
}
