//! Virtual devices as register models: pure state machines the port and MMIO buses drive
//! through one interface ([`device::Device`], see `vmm::platform`), each unit-tested without a
//! VM.

pub mod acpi_pm;
pub mod cmos_rtc;
pub mod device;
pub mod ioapic;
pub mod lapic;
pub mod pci_absent;
pub mod pci_config;
pub mod pci_host;
pub mod pic8259;
pub mod pit8254;
pub mod reset;
pub mod uart16550;
pub mod virtio;
