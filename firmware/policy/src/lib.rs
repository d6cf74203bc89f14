//! numavisor's policy core.
//!
//! Everything here is pure logic over plain data: it never touches hardware, so the same code
//! runs inside the firmware image and under `cargo test` on the host. The firmware's platform
//! layer feeds it bytes (ACPI tables, the boot memory map) and acts on what it decides.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acpi;
pub mod bootinfo;
pub mod devices;
pub mod guest;
pub mod hypercall;
pub mod iommu;
pub mod memory;
pub mod network;
pub mod partition;
pub mod pci;
pub mod report;
pub mod slat;
pub mod topology;
pub mod vmexit;
pub mod vmm;
pub mod vmx;
