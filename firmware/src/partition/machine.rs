//! The firmware's side of the VMM core's [`Machine`]: one vCPU's view of its partition,
//! over the partition's locks (interrupts are routed by `interrupts`).

use core::arch::x86_64::__cpuid_count;
use core::cell::Cell;

use numavisor_policy::devices::device::DeviceId;
use numavisor_policy::devices::ioapic::IoApicDelivery;
use numavisor_policy::devices::lapic::{Ipi, LocalApic};
use numavisor_policy::devices::pci_host::{InterruptRoute, PciMappings};
use numavisor_policy::vmm::cpuid::HostCpuid;
use numavisor_policy::vmm::exit::{Machine, OwedPage};
use numavisor_policy::vmm::platform::PlatformDevices;

use numavisor_policy::hypercall::{Call, Reply};

use super::guest_memory::GuestMemory;
use super::hypercalls::CallerView;
use super::interrupts::{deliver_ioapic, deliver_ipi};
use super::{emit_console, Partition};

/// One vCPU's view of its partition.
pub struct PartitionMachine<'a> {
    pub partition: &'a Partition,
    /// The vCPU this view belongs to.
    pub vcpu: usize,
    pub memory: GuestMemory,
    /// Whether the exit being handled reached beyond the guest's registers and the device it
    /// read — a local APIC, an interrupt or IPI, a console line, device work, a hypercall — so
    /// the vCPU loop must look at its whole world before the next entry.
    touched: Cell<bool>,
}

impl<'a> PartitionMachine<'a> {
    pub fn new(partition: &'a Partition, vcpu: usize, memory: GuestMemory) -> Self {
        PartitionMachine {
            partition,
            vcpu,
            memory,
            touched: Cell::new(false),
        }
    }

    /// Whether the exit handled since the last call touched more than its own device read
    /// (see the field); clears it.
    pub fn take_touched(&self) -> bool {
        self.touched.replace(false)
    }
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

    #[inline(always)]
    fn with_lapic<R>(&self, vcpu: usize, f: impl FnOnce(&mut LocalApic) -> R) -> R {
        self.touched.set(true);
        // `vcpu` is the caller's own index, always in range; fall back to vCPU 0 otherwise.
        let slot = self
            .partition
            .vcpus
            .get(vcpu)
            .unwrap_or(&self.partition.vcpus[0]);
        f(&mut slot.lapic.lock())
    }

    #[inline(always)]
    fn with_devices<R>(&self, f: impl FnOnce(&mut PlatformDevices) -> R) -> R {
        f(&mut self.partition.devices.lock())
    }

    fn deliver_ipi(&self, from: usize, ipi: Ipi) {
        self.touched.set(true);
        deliver_ipi(self.partition, from, ipi);
    }

    fn deliver_ioapic(&self, delivery: IoApicDelivery) {
        self.touched.set(true);
        deliver_ioapic(self.partition, delivery);
    }

    fn console(&self, line: &str) {
        self.touched.set(true);
        emit_console(self.partition, line);
    }

    fn serve_device(&self, vcpu: usize, device: DeviceId, reset: bool) {
        self.touched.set(true);
        match device {
            DeviceId::VirtioBalloon => {
                // This vCPU's copy of the RAM is let go while pages move, and the current RAM
                // taken back after (the loop renews it anyway before the next entry).
                self.memory.detach();
                super::dynamic::serve_balloon(self.partition, vcpu, reset);
                self.memory.attach(self.partition.state.lock().ram.clone());
            }
            DeviceId::VirtioMem(index) => {
                self.memory.detach();
                super::hot_add::serve(self.partition, vcpu, index, reset);
                self.memory.attach(self.partition.state.lock().ram.clone());
            }
            // A driver reset leaves nothing with the hypervisor: frames are copied at once.
            DeviceId::VirtioNet(nic) => {
                if !reset {
                    super::network::transmit(self.partition, nic, &self.memory)
                }
            }
            other => log::warn!(
                "partition \"{}\": {other:?} asked for device work it does not have",
                self.partition.name()
            ),
        }
    }

    fn back_owed_page(&self, gpa: u64) -> OwedPage {
        let found = super::page_moves::back_owed(self.partition, gpa);
        if found == OwedPage::Backed {
            // The generation moved: the loop renews this vCPU's RAM copy and translations.
            self.touched.set(true);
        }
        found
    }

    fn pci_mappings(&self, vcpu: usize, mappings: PciMappings) {
        self.touched.set(true);
        super::passthrough::apply_mappings(self.partition, vcpu, mappings);
    }

    fn pci_interrupts(&self, _vcpu: usize, routes: alloc::vec::Vec<InterruptRoute>) {
        self.touched.set(true);
        super::msi_routes::route(self.partition, routes);
    }

    fn hypercall(&self, call: &Call) -> Reply {
        self.touched.set(true);
        let view = CallerView {
            caller: self.partition,
            vcpu: self.vcpu,
            memory: &self.memory,
        };
        numavisor_policy::hypercall::handle(call, &view)
    }
}
