//! The hypervisor's own identity map (AMD APM vol. 2 §5.3, Intel SDM vol. 3A §4.5).
//!
//! The entry code maps 0..4 GiB with 2 MiB write-back pages. Once the memory map is known we
//! make every 2 MiB page that holds no RAM uncacheable (the local APIC and other MMIO live
//! there), and extend the map over RAM above 4 GiB — with 1 GiB pages where CPUID offers them.

use alloc::boxed::Box;

use numavisor_policy::bootinfo::{MemoryKind, MemoryRegion};
use raw_cpuid::CpuId;

use crate::platform::boot::pvh_entry::BootPageTables;

const PRESENT_WRITABLE: u64 = 0b11;
const PAGE_SIZE: u64 = 1 << 7;
const UNCACHEABLE: u64 = (1 << 3) | (1 << 4); // PWT | PCD
const TWO_MIB: u64 = 2 << 20;
const ONE_GIB: u64 = 1 << 30;
const FOUR_GIB: u64 = 4 << 30;
const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;

#[repr(C, align(4096))]
struct Table([u64; 512]);

/// How the identity map ended up.
#[derive(Clone, Copy, Debug)]
pub struct IdentityMap {
    /// Everything below this address is mapped.
    pub top: u64,
    pub used_1g_pages: bool,
}

fn holds_ram(map: &[MemoryRegion], start: u64, end: u64) -> bool {
    map.iter().any(|r| {
        matches!(
            r.kind,
            MemoryKind::Usable | MemoryKind::AcpiReclaimable | MemoryKind::AcpiNvs
        ) && r.base < end
            && r.end() > start
    })
}

/// Finishes the identity map for `map`; returns how far it reaches.
pub fn finish_identity_map(tables: &mut BootPageTables, map: &[MemoryRegion]) -> IdentityMap {
    let ram_top = map
        .iter()
        .filter(|r| r.kind != MemoryKind::Reserved && r.kind != MemoryKind::Unusable)
        .map(|r| r.end())
        .max()
        .unwrap_or(0);
    let max_physical = CpuId::new()
        .get_processor_capacity_feature_info()
        .map(|c| 1u64 << c.physical_address_bits())
        .unwrap_or(1 << 36);
    let top = ram_top
        .min(max_physical)
        .max(FOUR_GIB)
        .next_multiple_of(ONE_GIB);
    let gib_pages = CpuId::new()
        .get_extended_processor_and_feature_identifiers()
        .is_some_and(|f| f.has_1gib_pages());

    for (gib, directory) in tables.pd.iter_mut().enumerate() {
        for (index, entry) in directory.iter_mut().enumerate() {
            let start = gib as u64 * ONE_GIB + index as u64 * TWO_MIB;
            if !holds_ram(map, start, start + TWO_MIB) {
                *entry |= UNCACHEABLE;
            }
        }
    }

    let mut address = FOUR_GIB;
    while address < top {
        let pml4_index = (address >> 39) as usize & 511;
        if tables.pml4[pml4_index] & 1 == 0 {
            let pdpt = Box::leak(Box::new(Table([0; 512])));
            tables.pml4[pml4_index] = pdpt as *mut Table as u64 | PRESENT_WRITABLE;
        }
        let pdpt_address = tables.pml4[pml4_index] & ADDRESS_MASK;
        let pdpt = if pml4_index == 0 {
            &mut tables.pdpt
        } else {
            // SAFETY: the PDPT was allocated just above (or on an earlier pass) from the
            // heap, which is identity mapped; nothing else references it.
            unsafe { &mut (*(pdpt_address as *mut Table)).0 }
        };
        let cache = if holds_ram(map, address, address + ONE_GIB) {
            0
        } else {
            UNCACHEABLE
        };
        let pdpt_index = (address >> 30) as usize & 511;
        if gib_pages {
            pdpt[pdpt_index] = address | PRESENT_WRITABLE | PAGE_SIZE | cache;
        } else {
            let directory = Box::leak(Box::new(Table([0; 512])));
            for (index, entry) in directory.0.iter_mut().enumerate() {
                *entry = (address + index as u64 * TWO_MIB) | PRESENT_WRITABLE | PAGE_SIZE | cache;
            }
            pdpt[pdpt_index] = directory as *mut Table as u64 | PRESENT_WRITABLE;
        }
        address += ONE_GIB;
    }
    // SAFETY: reloading CR3 with the same root flushes the TLB so the new cache attributes
    // and mappings take effect; the map still covers all code, data and stacks.
    unsafe {
        let (frame, flags) = x86_64::registers::control::Cr3::read();
        x86_64::registers::control::Cr3::write(frame, flags);
    }
    IdentityMap {
        top,
        used_1g_pages: gib_pages,
    }
}
