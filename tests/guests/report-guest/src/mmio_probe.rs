//! Hostile MMIO (`mode=hostile probe=mmio-page-walk` / `probe=mmio-crossing`): accesses that
//! touch a device page other than as one whole register access by the instruction itself.
//! Neither may be emulated as if it were: the partition must stop with the reason
//! (`mmio-page-walk`, `mmio-crossing`). If the access returns, the probe says so
//! (`mmio_returned` with what it read) and exits 0, which the test takes as the defect.

use core::arch::asm;

use crate::console::report;
use crate::entry::page_tables;
use crate::hw::XAPIC;

const PRESENT_WRITABLE: u64 = 0x3;
/// The linear address whose walk goes through PML4 entry 1 (bits 47:39 = 1).
const THROUGH_PML4_1: u64 = 1 << 39;

/// Points the guest's own page tables into the local APIC page (PML4[1] → a "PDPT" at
/// 0xFEE0_0000) and loads through them: the CPU's walk, not the load, reaches the device.
pub fn page_walk_into_the_apic() {
    // SAFETY: the guest is single-threaded and holds no other reference to the page tables;
    // PML4 entry 1 maps nothing the guest uses.
    let tables = unsafe { page_tables() };
    tables.pml4[1] = XAPIC | PRESENT_WRITABLE;
    let value: u64;
    // SAFETY: CR3 reloaded with its own value (the new entry must be seen), then a load
    // through that entry: the hypervisor stops the partition, or a value comes back.
    unsafe {
        asm!("mov rax, cr3", "mov cr3, rax", "mov {value}, qword ptr [{address}]",
            address = in(reg) THROUGH_PML4_1, value = out(reg) value, out("rax") _,
            options(nostack))
    };
    report!("{{\"event\":\"mmio_returned\",\"probe\":\"mmio-page-walk\",\"value\":{value}}}");
}

/// An 8-byte load at the APIC page's last dword: half of it lies in the page that follows.
pub fn access_across_the_apic_page_end() {
    let value: u64;
    // SAFETY: a load from the identity-mapped device area; the hypervisor stops the partition
    // or returns a value.
    unsafe {
        asm!("mov {value}, qword ptr [{address}]", address = in(reg) XAPIC + 0xFFC,
            value = out(reg) value, options(nostack, readonly))
    };
    report!("{{\"event\":\"mmio_returned\",\"probe\":\"mmio-crossing\",\"value\":{value}}}");
}
