//! Finishing the identity map: the entry code maps 0..4 GiB with 2 MiB pages; this maps each
//! further GiB the memory map (or a probe) touches, whole, with one 1 GiB page when the CPU has
//! them (CPUID 0x8000_0001 EDX bit 26) or a page directory of 2 MiB pages from the pool
//! (Intel SDM vol. 3A §4.5, AMD APM vol. 2 §5.3).

use core::arch::x86_64::__cpuid;

use crate::entry::page_tables;

const GIB: u64 = 1 << 30;
const PRESENT_WRITABLE: u64 = 0x3;
const PAGE_SIZE_BIT: u64 = 0x80;
/// GiBs one PDPT covers.
const PDPT_ENTRIES: u64 = 512;
/// GiBs the entry code mapped (page directories 0..4 of the pool).
const MAPPED_AT_ENTRY: u64 = 4;

fn has_1gib_pages() -> bool {
    __cpuid(0x8000_0001).edx & (1 << 26) != 0
}

/// Whether every byte of `[start, end)` is identity mapped.
pub fn is_mapped(start: u64, end: u64) -> bool {
    // SAFETY: the guest is single-threaded and holds no other reference to the page tables.
    let tables = unsafe { page_tables() };
    end <= PDPT_ENTRIES * GIB
        && (start / GIB..end.div_ceil(GIB)).all(|gib| tables.pdpt[gib as usize] & 1 != 0)
}

/// Identity-map `[start, end)` (rounded out to whole GiBs), present and writable.
pub fn map_identity(start: u64, end: u64) -> Result<(), &'static str> {
    if end > PDPT_ENTRIES * GIB {
        return Err("address beyond the 512 GiB the guest's page tables cover");
    }
    let huge = has_1gib_pages();
    // SAFETY: the guest is single-threaded and holds no other reference to the page tables.
    let tables = unsafe { page_tables() };
    for gib in start / GIB..end.div_ceil(GIB) {
        let slot = gib as usize;
        if gib < MAPPED_AT_ENTRY || tables.pdpt[slot] & 1 != 0 {
            continue;
        }
        if huge {
            tables.pdpt[slot] = (gib * GIB) | PAGE_SIZE_BIT | PRESENT_WRITABLE;
            continue;
        }
        let used = tables.pdpt.iter().filter(|e| *e & 1 != 0).count();
        let Some(pd) = tables.pd.get_mut(used) else {
            return Err("out of page directories (64 GiB with 2 MiB pages)");
        };
        for (index, entry) in pd.iter_mut().enumerate() {
            *entry = (gib * GIB + ((index as u64) << 21)) | PAGE_SIZE_BIT | PRESENT_WRITABLE;
        }
        tables.pdpt[slot] = pd.as_ptr() as u64 | PRESENT_WRITABLE;
    }
    // SAFETY: reloading CR3 with its own value flushes stale translations; the tables it points
    // to still identity-map everything this code runs from.
    unsafe {
        core::arch::asm!("mov rax, cr3", "mov cr3, rax", out("rax") _, options(nostack));
    }
    Ok(())
}
