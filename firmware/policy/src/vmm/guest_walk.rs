//! Translating a guest-virtual address by walking the guest's own page tables.
//!
//! Used to fetch the bytes of an instruction that faulted on an MMIO page (see
//! [`super::mmio_decode`]). Follows Intel SDM vol. 3A ch. 4 (§4.3 32-bit paging with PSE and
//! PSE-36, §4.4 PAE paging, §4.5 4- and 5-level paging) and AMD APM vol. 2 §5.3; CR0.PG is bit
//! 31, CR4.PSE bit 4, CR4.PAE bit 5, CR4.LA57 bit 12, EFER.LMA bit 10.
//!
//! What is deliberately not checked, and why:
//! - Reserved bits and the access rights (R/W, U/S, NX, SMEP/SMAP, protection keys): the CPU
//!   already fetched and executed this instruction under its own checks; we re-walk only to find
//!   the bytes. A guest that rewrites its tables between the fault and the walk at worst gets its
//!   own other bytes decoded.
//! - MAXPHYADDR: table and page addresses keep bits 51:12; an address that is not guest RAM
//!   fails in [`GuestPhysical`] instead.
//!
//! Every walk has a fixed number of levels, so tables that point at themselves terminate.

/// Read access to guest-physical memory. `None` means "not guest RAM" (a hole, an MMIO page).
pub trait GuestPhysical {
    /// The byte at `gpa`.
    fn read_u8(&self, gpa: u64) -> Option<u8>;

    /// The little-endian 32-bit value at `gpa` (byte by byte unless overridden).
    fn read_u32(&self, gpa: u64) -> Option<u32> {
        let mut value = 0u32;
        for index in 0..4u32 {
            let byte = self.read_u8(gpa.checked_add(u64::from(index))?)?;
            value |= u32::from(byte) << (8 * index);
        }
        Some(value)
    }

    /// Fills `buf` from `gpa` if every byte is guest RAM (byte by byte unless overridden);
    /// false, with `buf` in an unspecified state, otherwise.
    fn read_bytes(&self, gpa: u64, buf: &mut [u8]) -> bool {
        for (index, slot) in buf.iter_mut().enumerate() {
            match gpa
                .checked_add(index as u64)
                .and_then(|at| self.read_u8(at))
            {
                Some(byte) => *slot = byte,
                None => return false,
            }
        }
        true
    }

    /// The little-endian 64-bit value at `gpa` (byte by byte unless overridden).
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let mut value = 0u64;
        for index in 0..8u32 {
            let byte = self.read_u8(gpa.checked_add(u64::from(index))?)?;
            value |= u64::from(byte) << (8 * index);
        }
        Some(value)
    }
}

/// The control registers that select the paging mode, as the guest last set them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagingState {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;

const PRESENT: u64 = 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;
/// Bits 51:12 of a PAE / long-mode entry: the next table or a 4 KiB frame.
const FRAME_4K: u64 = 0x000F_FFFF_FFFF_F000;
const FRAME_2M: u64 = 0x000F_FFFF_FFE0_0000;
const FRAME_1G: u64 = 0x000F_FFFF_C000_0000;

/// Why a guest-virtual address has no translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// The entry at `level` (1 = page table, 2 = page directory, 3 = PDPT, 4 = PML4, 5 = PML5)
    /// has its present bit clear.
    NotPresent { level: u8 },
    /// A paging-structure entry at `gpa` is not in guest RAM.
    TableNotInRam { gpa: u64 },
    /// A 64-bit-mode address that is not canonical for the paging depth in use.
    NonCanonical,
    /// An address above 4 GiB outside long mode, where linear addresses have 32 bits.
    BeyondLinearSpace,
    /// The translated page is not guest RAM (only from [`fetch_instruction`]).
    NotGuestRam { gpa: u64 },
}

/// The paging mode `paging` selects (SDM vol. 3A §4.1.1, table 4-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Off,
    Bits32,
    Pae,
    Level4,
    Level5,
}

fn mode(paging: &PagingState) -> Mode {
    if paging.cr0 & CR0_PG == 0 {
        Mode::Off
    } else if paging.cr4 & CR4_PAE == 0 {
        Mode::Bits32
    } else if paging.efer & EFER_LMA == 0 {
        Mode::Pae
    } else if paging.cr4 & CR4_LA57 != 0 {
        Mode::Level5
    } else {
        Mode::Level4
    }
}

fn read_entry(memory: &impl GuestPhysical, gpa: u64) -> Result<u64, WalkError> {
    memory.read_u64(gpa).ok_or(WalkError::TableNotInRam { gpa })
}

/// The guest-physical address that `gva` maps to under `paging`.
pub fn translate(
    memory: &impl GuestPhysical,
    paging: &PagingState,
    gva: u64,
) -> Result<u64, WalkError> {
    let mode = mode(paging);
    if !matches!(mode, Mode::Off | Mode::Level4 | Mode::Level5) && gva > u64::from(u32::MAX) {
        return Err(WalkError::BeyondLinearSpace);
    }
    match mode {
        Mode::Off => Ok(gva),
        Mode::Bits32 => translate_32bit(memory, paging, gva),
        Mode::Pae => {
            // The 4-entry PDPT: CR3 bits 31:5 (SDM §4.4.1).
            let entry_gpa = (paging.cr3 & 0xFFFF_FFE0) | (((gva >> 30) & 3) << 3);
            let pdpte = read_entry(memory, entry_gpa)?;
            if pdpte & PRESENT == 0 {
                return Err(WalkError::NotPresent { level: 3 });
            }
            walk_from(memory, pdpte & FRAME_4K, 2, gva)
        }
        Mode::Level4 | Mode::Level5 => {
            let levels = if mode == Mode::Level5 { 5 } else { 4 };
            // Canonical: bits 63 down to the top translated bit are all equal.
            let top_bit = 12 + 9 * levels - 1;
            let upper = (gva as i64) >> top_bit;
            if upper != 0 && upper != -1 {
                return Err(WalkError::NonCanonical);
            }
            walk_from(memory, paging.cr3 & FRAME_4K, levels, gva)
        }
    }
}

/// Walks 64-bit entries from the table at `table` for `level` (5..1) down to the page.
fn walk_from(
    memory: &impl GuestPhysical,
    mut table: u64,
    top_level: u32,
    gva: u64,
) -> Result<u64, WalkError> {
    for level in (1..=top_level).rev() {
        let index = (gva >> (12 + 9 * (level - 1))) & 0x1FF;
        let entry = read_entry(memory, table | (index << 3))?;
        if entry & PRESENT == 0 {
            return Err(WalkError::NotPresent { level: level as u8 });
        }
        let large = entry & PAGE_SIZE_BIT != 0;
        match level {
            // 1 GiB page from a PDPTE (long mode only: PAE PDPTEs start at level 2 here).
            3 if large => return Ok((entry & FRAME_1G) | (gva & 0x3FFF_FFFF)),
            2 if large => return Ok((entry & FRAME_2M) | (gva & 0x1F_FFFF)),
            1 => return Ok((entry & FRAME_4K) | (gva & 0xFFF)),
            _ => table = entry & FRAME_4K,
        }
    }
    // Unreachable for top_level >= 1; an empty walk maps nothing.
    Err(WalkError::NotPresent { level: 1 })
}

/// 32-bit paging: 4-byte entries, 4 KiB pages, and 4 MiB pages when CR4.PSE (with PSE-36
/// bits 20:13 giving physical bits 39:32).
fn translate_32bit(
    memory: &impl GuestPhysical,
    paging: &PagingState,
    gva: u64,
) -> Result<u64, WalkError> {
    let pde_gpa = (paging.cr3 & 0xFFFF_F000) | (((gva >> 22) & 0x3FF) << 2);
    let pde = u64::from(
        memory
            .read_u32(pde_gpa)
            .ok_or(WalkError::TableNotInRam { gpa: pde_gpa })?,
    );
    if pde & PRESENT == 0 {
        return Err(WalkError::NotPresent { level: 2 });
    }
    if pde & PAGE_SIZE_BIT != 0 && paging.cr4 & CR4_PSE != 0 {
        let high = ((pde >> 13) & 0xFF) << 32;
        return Ok(high | (pde & 0xFFC0_0000) | (gva & 0x3F_FFFF));
    }
    let pte_gpa = (pde & 0xFFFF_F000) | (((gva >> 12) & 0x3FF) << 2);
    let pte = u64::from(
        memory
            .read_u32(pte_gpa)
            .ok_or(WalkError::TableNotInRam { gpa: pte_gpa })?,
    );
    if pte & PRESENT == 0 {
        return Err(WalkError::NotPresent { level: 1 });
    }
    Ok((pte & 0xFFFF_F000) | (gva & 0xFFF))
}

/// Reads up to 15 instruction bytes at linear address `rip_linear` (CS base + RIP) into
/// `buffer`, translating each 4 KiB page separately. Stops at the first byte whose page does
/// not translate or is not RAM, or at the end of the linear address space: returns how many
/// bytes were read if at least one, else why the first could not be.
pub fn fetch_instruction(
    memory: &impl GuestPhysical,
    paging: &PagingState,
    rip_linear: u64,
    buffer: &mut [u8; 15],
) -> Result<usize, WalkError> {
    fetch_instruction_located(memory, paging, rip_linear, buffer).map(|(count, _)| count)
}

/// [`fetch_instruction`], with the guest-physical address its walk found for the first byte.
pub fn fetch_instruction_located(
    memory: &impl GuestPhysical,
    paging: &PagingState,
    rip_linear: u64,
    buffer: &mut [u8; 15],
) -> Result<(usize, u64), WalkError> {
    let mut count = 0;
    let mut first_gpa = 0;
    let mut failure = None;
    // Page by page (an instruction spans at most two): one translation each, and the bytes
    // read in one go where the whole piece is RAM, byte by byte (to the first that is not)
    // otherwise.
    while count < buffer.len() {
        let Some(linear) = rip_linear.checked_add(count as u64) else {
            break;
        };
        let gpa = match translate(memory, paging, linear) {
            Ok(gpa) => gpa,
            Err(error) => {
                failure = Some(error);
                break;
            }
        };
        if count == 0 {
            first_gpa = gpa;
        }
        let in_page = (0x1000 - (linear & 0xFFF)) as usize;
        // The linear space may end before the page does (at linear 0 it holds every byte).
        let in_space =
            usize::try_from(u64::MAX - linear).map_or(usize::MAX, |n| n.saturating_add(1));
        let piece = &mut buffer[count..][..in_page.min(in_space).min(15 - count)];
        if memory.read_bytes(gpa, piece) {
            count += piece.len();
            continue;
        }
        let readable = (0..piece.len())
            .map_while(|i| memory.read_u8(gpa + i as u64).map(|byte| piece[i] = byte))
            .count();
        count += readable;
        failure = Some(WalkError::NotGuestRam {
            gpa: gpa + readable as u64,
        });
        break;
    }
    match (count, failure) {
        (0, Some(error)) => Err(error),
        (0, None) => Err(WalkError::BeyondLinearSpace),
        _ => Ok((count, first_gpa)),
    }
}

#[cfg(test)]
mod tests;
