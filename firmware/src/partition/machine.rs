//! The firmware's side of the VMM core's [`Machine`]: one vCPU's view of its partition,
//! over the partition's locks, and the routing of interrupts between its vCPUs.
//!
//! Lock order: a vCPU's local APIC and the partition's devices are never held together, and
//! no two local APICs are held at once; messages are collected first, then delivered.

use alloc::vec::Vec;
use core::arch::x86_64::__cpuid_count;

use numavisor_policy::devices::ioapic::{DeliveryMode, IoApicDelivery};
use numavisor_policy::devices::lapic::{Ipi, IpiDelivery, LocalApic, Shorthand};
use numavisor_policy::vmm::cpuid::HostCpuid;
use numavisor_policy::vmm::exit::Machine;
use numavisor_policy::vmm::platform::PlatformDevices;

use numavisor_policy::hypercall::{Call, Reply};

use super::guest_memory::GuestMemory;
use super::hypercalls::CallerView;
use super::{emit_console, Partition};

/// One vCPU's view of its partition.
pub struct PartitionMachine<'a> {
    pub partition: &'a Partition,
    /// The vCPU this view belongs to.
    pub vcpu: usize,
    pub memory: GuestMemory,
}

impl HostCpuid for PartitionMachine<'_> {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let r = __cpuid_count(leaf, subleaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    }
}

impl<'a> Machine for PartitionMachine<'a> {
    type Memory = GuestMemory;

    fn memory(&self) -> &Self::Memory {
        &self.memory
    }

    fn with_lapic<R>(&self, vcpu: usize, f: impl FnOnce(&mut LocalApic) -> R) -> R {
        // `vcpu` is the caller's own index, always in range; fall back to vCPU 0 otherwise.
        let slot = self
            .partition
            .vcpus
            .get(vcpu)
            .unwrap_or(&self.partition.vcpus[0]);
        f(&mut slot.lapic.lock())
    }

    fn with_devices<R>(&self, f: impl FnOnce(&mut PlatformDevices) -> R) -> R {
        f(&mut self.partition.devices.lock())
    }

    fn deliver_ipi(&self, from: usize, ipi: Ipi) {
        deliver_ipi(self.partition, from, ipi);
    }

    fn deliver_ioapic(&self, delivery: IoApicDelivery) {
        deliver_ioapic(self.partition, delivery);
    }

    fn console(&self, line: &str) {
        emit_console(self.partition.name(), line);
    }

    fn balloon_write(&self, vcpu: usize, offset: u64, size: u8, value: u64) {
        // This vCPU's copy of the RAM is let go while pages move, and the current RAM taken
        // back after (the loop renews it anyway before the next entry).
        self.memory.detach();
        super::dynamic::balloon_write(self.partition, vcpu, offset, size, value);
        self.memory.attach(self.partition.state.lock().ram.clone());
    }

    fn hypercall(&self, call: &Call) -> Reply {
        let view = CallerView {
            caller: self.partition,
            vcpu: self.vcpu,
            memory: &self.memory,
        };
        numavisor_policy::hypercall::handle(call, &view)
    }
}

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
