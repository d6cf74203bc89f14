//! Boot protocols. Each one only translates its loader's format into a `BootInfo`.
//!
//! Four entries share one path to long mode (`pvh_entry.rs`): PVH (QEMU `-kernel`,
//! through the Xen ELF note), multiboot2 (GRUB, through the ELF entry and the multiboot2
//! header), coreboot's ELF payload call and numavisor's UEFI application (the same ELF
//! entry, told apart by EAX: `coreboot_entry.rs`). The entry code says which one ran; [`read_boot_info`] picks the translator.

pub mod coreboot;
pub mod coreboot_entry;
mod low_memory;
pub mod multiboot2;
pub mod multiboot2_entry;
pub mod pvh;
pub mod pvh_entry;
pub mod uefi;

use numavisor_policy::bootinfo::coreboot::CorebootError;
use numavisor_policy::bootinfo::multiboot2::Multiboot2Error;
use numavisor_policy::bootinfo::pvh::PvhError;
use numavisor_policy::bootinfo::uefi::UefiError;
use numavisor_policy::bootinfo::BootInfo;

use pvh_entry::{ENTERED_BY_COREBOOT, ENTERED_BY_MULTIBOOT2, ENTERED_BY_PVH, ENTERED_BY_UEFI};

/// Why the loader's boot information cannot be used.
#[derive(Debug)]
pub enum BootError {
    Pvh(PvhError),
    Multiboot2(Multiboot2Error),
    Coreboot(CorebootError),
    Uefi(UefiError),
    /// The entry code passed an entry number it does not define (a bug).
    UnknownEntry(u32),
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootError::Pvh(e) => write!(f, "{e}"),
            BootError::Multiboot2(e) => write!(f, "{e}"),
            BootError::Coreboot(e) => write!(f, "{e}"),
            BootError::Uefi(e) => write!(f, "{e}"),
            BootError::UnknownEntry(n) => write!(f, "entered through unknown entry {n}"),
        }
    }
}

/// Translates the boot information at `address` of the protocol whose entry ran (`entry`, as
/// the entry code passes it); `magic` is the loader's magic register value (multiboot2).
pub fn read_boot_info(address: u32, entry: u32, magic: u32) -> Result<BootInfo, BootError> {
    match entry {
        ENTERED_BY_PVH => pvh::read_boot_info(address.into()).map_err(BootError::Pvh),
        ENTERED_BY_MULTIBOOT2 => {
            multiboot2::read_boot_info(address.into(), magic).map_err(BootError::Multiboot2)
        }
        ENTERED_BY_COREBOOT => {
            coreboot::read_boot_info(address.into()).map_err(BootError::Coreboot)
        }
        ENTERED_BY_UEFI => uefi::read_boot_info(address.into()).map_err(BootError::Uefi),
        other => Err(BootError::UnknownEntry(other)),
    }
}
