//! The loader's main line: QEMU's start_info in, the payload called as coreboot would.

use alloc::vec::Vec;
use core::fmt::Write;

use numavisor_policy::bootinfo::pvh::{self, StartInfo, START_INFO_BYTES};

use crate::{enter_payload, tables};

/// Where coreboot leaves its forward table.
const FORWARD_TABLE: u64 = 0x500;

/// The real table's page (coreboot puts its tables in CBMEM, high in RAM).
#[repr(C, align(4096))]
struct TablePage([u8; 4096]);
static mut REAL_TABLE: TablePage = TablePage([0; 4096]);

/// The stack the payload is called on.
#[repr(C, align(16))]
struct Stack([u8; 16 * 1024]);
static mut PAYLOAD_STACK: Stack = Stack([0; 16 * 1024]);

struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for byte in s.bytes() {
            // SAFETY: COM1's data port; QEMU's UART takes bytes without waiting.
            unsafe { core::arch::asm!("out dx, al", in("dx") 0x3F8u16, in("al") byte) };
        }
        Ok(())
    }
}

macro_rules! say {
    ($($arg:tt)*) => { let _ = writeln!(Serial, "coreboot-loader: {}", format_args!($($arg)*)); };
}

fn fail(why: &str) -> ! {
    fail_with(format_args!("{why}"))
}

/// Says why the payload cannot be booted and ends QEMU with a failure status.
pub fn fail_with(why: core::fmt::Arguments) -> ! {
    say!("cannot boot the payload: {why}");
    // SAFETY: QEMU's isa-debug-exit: status (2 << 1) | 1 = 5 ends the run as a failure.
    unsafe { core::arch::asm!("out dx, al", in("dx") 0xF4u16, in("al") 2u8) };
    loop {
        // SAFETY: stopping this CPU is all that is left to do.
        unsafe { core::arch::asm!("cli", "hlt") };
    }
}

/// Bytes of physical memory (identity mapped below 4 GiB by the entry code).
fn physical(address: u64, len: usize) -> &'static [u8] {
    if address == 0 || address.saturating_add(len as u64) > 4 << 30 {
        return &[];
    }
    // SAFETY: below 4 GiB, identity mapped; QEMU put the data there and nothing else runs.
    unsafe { core::slice::from_raw_parts(address as *const u8, len) }
}

fn u16_at(b: &[u8], o: usize) -> u64 {
    b.get(o..o + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]) as u64)
}
fn u32_at(b: &[u8], o: usize) -> u64 {
    b.get(o..o + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64)
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u32_at(b, o) | u32_at(b, o + 4) << 32
}

/// Copies the ELF64 payload's PT_LOAD segments to their physical addresses (zeroing the rest
/// of each) and returns its entry, as coreboot's ELF loader does.
fn load_elf(elf: &[u8]) -> u64 {
    if elf.get(0..4) != Some(b"\x7fELF".as_slice()) || elf.get(4) != Some(&2) {
        fail("the module is not an ELF64 file");
    }
    let (phoff, phentsize, phnum) = (u64_at(elf, 32), u16_at(elf, 54), u16_at(elf, 56));
    for i in 0..phnum {
        let ph = (phoff + i * phentsize) as usize;
        if u32_at(elf, ph) != 1 {
            continue; // not PT_LOAD
        }
        let (offset, paddr) = (u64_at(elf, ph + 8) as usize, u64_at(elf, ph + 24));
        let (filesz, memsz) = (u64_at(elf, ph + 32) as usize, u64_at(elf, ph + 40) as usize);
        let Some(bytes) = elf.get(offset..offset + filesz) else {
            fail("a PT_LOAD segment lies outside the file");
        };
        let loader = crate::entry::image_range();
        if paddr + memsz as u64 > loader.0 && paddr < loader.1 {
            fail("a PT_LOAD segment overlaps the loader (at 64 MiB)");
        }
        // SAFETY: the segment's physical range is RAM below the loader (checked above), and
        // nothing of the loader or QEMU's data lives there.
        unsafe {
            core::ptr::copy(bytes.as_ptr(), paddr as *mut u8, filesz);
            core::ptr::write_bytes((paddr as usize + filesz) as *mut u8, 0, memsz - filesz);
        }
    }
    u64_at(elf, 24)
}

/// Entered from the PVH entry code (`report-guest/src/entry.rs`) in long mode.
pub extern "C" fn guest_main(start_info: u32) -> ! {
    let info = StartInfo::parse(physical(start_info as u64, START_INFO_BYTES))
        .unwrap_or_else(|_| fail("bad hvm_start_info"));
    let map = pvh::parse_memory_map(physical(info.memmap_paddr, info.memmap_bytes()));
    let modules = pvh::parse_module_list(physical(info.modlist_paddr, info.modlist_bytes()))
        .unwrap_or_else(|_| fail("bad module list"));
    let Some(payload) = modules.first() else {
        fail("no payload: give it as QEMU's -initrd");
    };
    let size = payload.end.saturating_sub(payload.start) as usize;
    let entry = load_elf(physical(payload.start, size));

    let real = core::ptr::addr_of!(REAL_TABLE) as u64;
    let reserved = [(0, 0x1000), (real, 4096)];
    let mut records: Vec<Vec<u8>> = Vec::new();
    records.push(tables::memory(&map, &reserved));
    records.push(tables::serial());
    if info.rsdp_paddr != 0 {
        records.push(tables::acpi_rsdp(info.rsdp_paddr));
    }
    let real_bytes = tables::table(&records);
    let forward_bytes = tables::table(&[tables::forward(real)]);
    if real_bytes.len() > 4096 {
        fail("the coreboot table outgrew its page");
    }
    // SAFETY: the table page is the loader's own static; 0x500 lies in the first page of RAM,
    // which QEMU's PVH boot leaves free (coreboot keeps its forward table there too).
    unsafe {
        let page = core::ptr::addr_of_mut!(REAL_TABLE) as *mut u8;
        core::ptr::copy(real_bytes.as_ptr(), page, real_bytes.len());
        core::ptr::copy(
            forward_bytes.as_ptr(),
            FORWARD_TABLE as *mut u8,
            forward_bytes.len(),
        );
    }
    say!(
        "payload entry {entry:#x}; coreboot table at {real:#x} ({} bytes), forward at {FORWARD_TABLE:#x}; calling it in 32-bit protected mode",
        real_bytes.len()
    );
    let stack_top = core::ptr::addr_of!(PAYLOAD_STACK) as u64 + 16 * 1024;
    // SAFETY: the payload was loaded (its entry is inside it); the forward table, the real
    // table and the stack lie below 4 GiB, outside every payload segment.
    unsafe { enter_payload::call_payload(entry, FORWARD_TABLE, stack_top) }
}
