//! Routing interrupts between a partition's vCPUs: IPIs from a local APIC and messages from
//! the I/O APIC, to the local APICs whose destination they match (Intel SDM vol. 3A §11.6,
//! §11.12.10 for x2APIC destinations), and a wake-up of the CPUs that run them.
//!
//! Lock order: a vCPU's local APIC and the partition's devices are never held together, and
//! no two local APICs are held at once; messages are collected first, then delivered.

use alloc::vec::Vec;

use numavisor_policy::devices::ioapic::{DeliveryMode, IoApicDelivery};
use numavisor_policy::devices::lapic::{Ipi, IpiDelivery, Shorthand};

use super::Partition;

/// The vCPUs whose local APIC accepts `destination`.
fn matching(partition: &Partition, destination: u32, logical: bool) -> Vec<usize> {
    (0..partition.vcpus.len())
        .filter(|&i| {
            partition.vcpus[i]
                .lapic
                .lock()
                .matches_destination(destination, logical)
        })
        .collect()
}

/// An IPI from vCPU `from` (Intel SDM vol. 3A §11.6).
pub fn deliver_ipi(partition: &Partition, from: usize, ipi: Ipi) {
    let all = 0..partition.vcpus.len();
    let targets: Vec<usize> = match ipi.shorthand {
        Shorthand::SelfOnly => alloc::vec![from],
        Shorthand::AllIncludingSelf => all.collect(),
        Shorthand::AllExcludingSelf => all.filter(|&i| i != from).collect(),
        Shorthand::None => matching(partition, ipi.destination, ipi.logical),
    };
    match ipi.delivery {
        IpiDelivery::Fixed => {
            for target in targets {
                accept(partition, target, ipi.vector, false);
            }
        }
        IpiDelivery::LowestPriority => {
            if let Some(&target) = targets.first() {
                accept(partition, target, ipi.vector, false);
            }
        }
        IpiDelivery::Init => {
            for target in targets.into_iter().filter(|&t| t != from) {
                let slot = &partition.vcpus[target];
                slot.signal_init();
                slot.kick();
            }
        }
        IpiDelivery::Startup => {
            for target in targets.into_iter().filter(|&t| t != from) {
                let slot = &partition.vcpus[target];
                slot.signal_startup(ipi.vector);
                slot.kick();
            }
        }
        IpiDelivery::Nmi => {
            for target in targets {
                let slot = &partition.vcpus[target];
                slot.signal_nmi();
                slot.kick();
            }
        }
        other => log::debug!(
            "partition \"{}\": IPI {other:?} from vCPU {from} ignored",
            partition.name()
        ),
    }
}

/// An interrupt message from the I/O APIC.
pub fn deliver_ioapic(partition: &Partition, delivery: IoApicDelivery) {
    let targets = matching(partition, delivery.destination as u32, delivery.logical);
    match delivery.delivery_mode {
        DeliveryMode::Fixed => {
            for target in targets {
                accept(partition, target, delivery.vector, delivery.level_triggered);
            }
        }
        DeliveryMode::LowestPriority => {
            if let Some(&target) = targets.first() {
                accept(partition, target, delivery.vector, delivery.level_triggered);
            }
        }
        DeliveryMode::Nmi => {
            for target in targets {
                partition.vcpus[target].signal_nmi();
                partition.vcpus[target].kick();
            }
        }
        other => log::debug!(
            "partition \"{}\": I/O APIC pin {} delivery {other:?} ignored",
            partition.name(),
            delivery.pin
        ),
    }
}

fn accept(partition: &Partition, target: usize, vector: u8, level: bool) {
    let slot = &partition.vcpus[target];
    slot.lapic.lock().accept(vector, level);
    slot.kick();
}
