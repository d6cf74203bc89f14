//! Reads the PVH loader's `hvm_start_info` into a [`BootInfo`].
//!
//! The start_info, its memory map, the module list and the command lines sit in low RAM that
//! the memory manager will hand out later, so everything is copied to the heap here, before
//! anything else runs. The modules themselves stay where they are (see `start.rs`, which
//! keeps their memory reserved).

use alloc::vec::Vec;

use numavisor_policy::bootinfo::pvh::{self, PvhError, StartInfo, START_INFO_BYTES};
use numavisor_policy::bootinfo::{BootInfo, BootProtocol, Module, RsdpSource};

use super::low_memory::{copy_low, copy_string};

/// Longest command line we read.
const MAX_COMMAND_LINE: usize = 4096;

fn command_line(address: u64) -> alloc::string::String {
    if address == 0 {
        Default::default()
    } else {
        pvh::parse_command_line(&copy_string(address, MAX_COMMAND_LINE))
    }
}

/// Translates the start_info at `address`.
pub fn read_boot_info(address: u64) -> Result<BootInfo, PvhError> {
    let info = StartInfo::parse(&copy_low(address, START_INFO_BYTES))?;
    let memory_map = pvh::parse_memory_map(&copy_low(info.memmap_paddr, info.memmap_bytes()));
    let modules: Vec<Module> =
        pvh::parse_module_list(&copy_low(info.modlist_paddr, info.modlist_bytes()))?
            .into_iter()
            .map(|entry| Module {
                start: entry.start,
                end: entry.end,
                name: command_line(entry.cmdline_paddr),
            })
            .collect();
    Ok(BootInfo {
        protocol: BootProtocol::Pvh,
        memory_map,
        rsdp: (info.rsdp_paddr != 0).then_some(RsdpSource::At(info.rsdp_paddr)),
        command_line: command_line(info.cmdline_paddr),
        modules,
    })
}
