//! Virtual devices as register models: pure state machines the port bus drives.

pub mod acpi_pm;
pub mod cmos_rtc;
pub mod ioapic;
pub mod pci_absent;
pub mod pic8259;
pub mod pit8254;
pub mod reset;
pub mod uart16550;
