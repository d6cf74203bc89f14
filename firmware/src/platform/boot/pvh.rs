//! Reads the PVH loader's `hvm_start_info` into a [`BootInfo`].
//!
//! The start_info, its memory map and the command line sit in low RAM that the memory manager
//! will hand out later, so everything is copied to the heap here, before anything else runs.

use alloc::vec::Vec;

use numavisor_policy::bootinfo::pvh::{self, PvhError, StartInfo, START_INFO_BYTES};
use numavisor_policy::bootinfo::{BootInfo, BootProtocol};

/// Longest command line we read.
const MAX_COMMAND_LINE: usize = 4096;

/// Copies `len` bytes of low physical memory (identity mapped below 4 GiB by the entry code).
fn copy_low(address: u64, len: usize) -> Vec<u8> {
    if address == 0 || address.saturating_add(len as u64) > (4u64 << 30) {
        return Vec::new();
    }
    // SAFETY: the range lies below 4 GiB, which the entry code identity-maps; the loader
    // placed start_info data there and nothing has reused that memory yet.
    unsafe { core::slice::from_raw_parts(address as *const u8, len) }.to_vec()
}

/// Translates the start_info at `address`.
pub fn read_boot_info(address: u64) -> Result<BootInfo, PvhError> {
    let info = StartInfo::parse(&copy_low(address, START_INFO_BYTES))?;
    let memory_map = pvh::parse_memory_map(&copy_low(info.memmap_paddr, info.memmap_bytes()));
    let command_line = if info.cmdline_paddr == 0 {
        Default::default()
    } else {
        // Bounded read: stop at 4 KiB or at the end of low memory.
        let window = MAX_COMMAND_LINE.min((4u64 << 30).saturating_sub(info.cmdline_paddr) as usize);
        pvh::parse_command_line(&copy_low(info.cmdline_paddr, window))
    };
    Ok(BootInfo {
        protocol: BootProtocol::Pvh,
        memory_map,
        rsdp: (info.rsdp_paddr != 0).then_some(info.rsdp_paddr),
        command_line,
    })
}
