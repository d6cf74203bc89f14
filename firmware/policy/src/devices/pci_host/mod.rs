//! Passed-through PCI functions as the guest sees them (issue 18): a virtual host bridge
//! with the partition's functions on its bus 0, their configuration spaces virtualized,
//! their MSI and MSI-X messages turned into routes the hypervisor follows, and their BARs
//! described as pieces the SLAT maps directly or traps.
//!
//! - [`physical`]: how the models reach the real function (configuration space, BAR memory).
//! - [`PassthroughFunction`]: one function's configuration space (`function`), BARs
//!   (`bars`), capability list (`capabilities`), MSI (`msi`), MSI-X capability and table
//!   (`msix_capability`, `msix_table`), mappings (`mapping`) and routes (`interrupts`).
//! - [`GuestMsi`]: a guest's message decoded (`message`).
//! - [`VirtualHostBridge`]: the [`crate::devices::device::Device`] the buses reach (`bridge`).
//!
//! The guest never writes the device's configuration space except the command register's
//! Memory Space and Bus Master bits and the MSI-X capability's Enable and Function Mask;
//! the hypervisor writes the physical MSI and MSI-X messages through
//! [`PassthroughFunction::program_msi`] and [`PassthroughFunction::program_msix`].

mod bars;
mod bridge;
mod capabilities;
mod error;
mod function;
mod interrupts;
mod mapping;
mod message;
mod msi;
mod msix_capability;
mod msix_table;
pub mod physical;
#[cfg(test)]
mod tests;

pub use bars::PAGE;
pub use bridge::{PciMappings, VirtualHostBridge, CONFIG_ADDRESS, CONFIG_DATA, ECAM, ECAM_SIZE};
pub use error::{PassthroughError, ProgramError};
pub use function::{FunctionChange, PassthroughFunction};
pub use mapping::{BarMapping, MappingAccess};
pub use message::{
    DestinationMode, GuestMsi, GuestMsiError, HostMessage, InterruptRoute, InterruptSource,
    MessageRoute, MsiDelivery, MsiMessage, Trigger,
};
pub use msix_table::MsixEntry;
pub use physical::{BarMemory, FunctionConfig, OneFunction};
