//! The application's one run: place the image, gather what the hypervisor needs, leave boot
//! services, enter the image.

use alloc::vec::Vec;
use core::fmt;

use numavisor_policy::bootinfo::uefi::{Handoff, HEADER_BYTES, PAGE_BYTES};
use uefi::boot::{self, AllocateType, MemoryType};
use uefi::mem::memory_map::MemoryMap;
use uefi::prelude::*;
use uefi::println;
use uefi::proto::loaded_image::LoadedImage;
use uefi::system;
use uefi::table::cfg::ConfigTableEntry;

use crate::leave;
use crate::load::{self, LoadError};
use crate::pages::Pages;

/// The hypervisor image, built before this application (`cargo xtask build --efi`).
static IMAGE: &[u8] = include_bytes!(env!("NUMAVISOR_ELF"));

/// Handoff data and the exit code must lie below 4 GiB (the image starts in 32-bit mode).
const BELOW_4G: AllocateType = AllocateType::MaxAddress(0xFFFF_FFFF);
/// Descriptors the map may gain between measuring it and leaving boot services (our own
/// allocations, the final map's buffer, firmware events).
const SPARE_DESCRIPTORS: usize = 32;

/// Why the application returns to the firmware instead of starting the hypervisor.
#[derive(Debug)]
enum StartError {
    Load(LoadError),
    Allocate { what: &'static str, status: Status },
    MemoryMap(Status),
}

impl StartError {
    fn status(&self) -> Status {
        match self {
            StartError::Load(LoadError::Image(_)) => Status::LOAD_ERROR,
            StartError::Load(LoadError::RangeTaken { .. }) => Status::OUT_OF_RESOURCES,
            StartError::Allocate { status, .. } | StartError::MemoryMap(status) => *status,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Load(e) => write!(f, "{e}"),
            StartError::Allocate { what, status } => {
                write!(f, "no memory below 4 GiB for {what} ({status:?})")
            }
            StartError::MemoryMap(status) => {
                write!(f, "the firmware gave no memory map ({status:?})")
            }
        }
    }
}

#[entry]
fn main() -> Status {
    if uefi::helpers::init().is_err() {
        return Status::ABORTED;
    }
    match start() {
        Err(problem) => {
            println!("numavisor.efi: cannot start: {problem}");
            problem.status()
        }
    }
}

/// Runs until the hypervisor has the machine; returns only on failure, with boot services
/// still up and nothing of ours left running.
fn start() -> Result<core::convert::Infallible, StartError> {
    let placed = load::place(IMAGE).map_err(StartError::Load)?;
    let rsdp = find_rsdp();
    let options = load_options();
    let exit_page = allocate_below_4g("the exit code", MemoryType::LOADER_CODE, 1)?;
    let map =
        boot::memory_map(MemoryType::LOADER_DATA).map_err(|e| StartError::MemoryMap(e.status()))?;
    let meta = map.meta();
    let capacity =
        HEADER_BYTES + meta.map_size + SPARE_DESCRIPTORS * meta.desc_size + 8 + options.len();
    drop(map);
    let handoff_pages = capacity.div_ceil(PAGE_BYTES as usize);
    let handoff = allocate_below_4g("the handoff block", MemoryType::LOADER_DATA, handoff_pages)?;
    println!(
        "numavisor.efi: image placed at [{:#x}, {:#x}), entry {:#x}; RSDP at {rsdp:#x}; {} bytes of load options; leaving boot services",
        placed.start,
        placed.end,
        placed.entry,
        options.len()
    );

    // From here on the pages are the hypervisor's.
    let (handoff, exit_page) = (handoff.keep(), exit_page.keep());
    placed.pages.keep();
    // SAFETY: nothing of boot services is used after this point: no allocation, no console.
    let final_map = unsafe { boot::exit_boot_services(None) };
    let meta = final_map.meta();
    let raw_map = &final_map.buffer()[..meta.map_size.min(final_map.buffer().len())];
    let block = Handoff {
        rsdp,
        memory_map: raw_map,
        descriptor_bytes: meta.desc_size as u32,
        descriptor_version: meta.desc_version,
        load_options: &options,
    };
    // SAFETY: `handoff_pages` pages at `handoff` were allocated above for this block and are
    // identity mapped; nothing else uses them.
    let out = unsafe {
        core::slice::from_raw_parts_mut(handoff as *mut u8, handoff_pages * PAGE_BYTES as usize)
    };
    if block.encode(out).is_none() {
        halt_with(b"numavisor.efi: the final memory map outgrew its handoff block; halted\r\n");
    }
    // SAFETY: boot services are gone; the exit page is ours, below 4 GiB and executable
    // (loader code); the image is placed and the handoff block encoded below 4 GiB.
    unsafe { leave::enter_image(placed.entry, handoff, exit_page) }
}

fn allocate_below_4g(
    what: &'static str,
    ty: MemoryType,
    pages: usize,
) -> Result<Pages, StartError> {
    Pages::allocate(BELOW_4G, ty, pages).map_err(|e| StartError::Allocate {
        what,
        status: e.status(),
    })
}

/// The ACPI RSDP from the configuration table: the ACPI 2.0 entry, else the 1.0 one; 0 when
/// the firmware publishes neither (the hypervisor then reports no ACPI).
fn find_rsdp() -> u64 {
    system::with_config_table(|entries| {
        let find = |guid| {
            entries
                .iter()
                .find(|e| e.guid == guid)
                .map(|e| e.address as u64)
        };
        find(ConfigTableEntry::ACPI2_GUID)
            .or_else(|| find(ConfigTableEntry::ACPI_GUID))
            .unwrap_or(0)
    })
}

/// A copy of this image's load options (UCS-2 text from the firmware or the shell), empty if
/// there are none.
fn load_options() -> Vec<u8> {
    boot::open_protocol_exclusive::<LoadedImage>(boot::image_handle())
        .ok()
        .and_then(|image| image.load_options_as_bytes().map(<[u8]>::to_vec))
        .unwrap_or_default()
}

/// Writes `message` to COM1 (left set up by the firmware) and halts: after leaving boot
/// services there is no console to return to.
fn halt_with(message: &[u8]) -> ! {
    for &byte in message {
        // SAFETY: port I/O to the PC's first serial port's transmit register; at worst the
        // byte is lost.
        unsafe { core::arch::asm!("out dx, al", in("dx") 0x3F8u16, in("al") byte) };
    }
    loop {
        // SAFETY: interrupts are off; the CPU stops here for good.
        unsafe { core::arch::asm!("cli; hlt") };
    }
}
