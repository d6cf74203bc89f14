//! The platform layer: everything that touches hardware. The policy core never does.

pub mod boot;
pub mod console;
pub mod cpu;
pub mod debug_exit;
pub mod fatal;
pub mod heap;
pub mod iommu;
pub mod pci_config;
pub mod phys_memory;
