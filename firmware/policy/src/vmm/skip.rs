//! Moving RIP past an intercepted instruction. The CPU says where the next instruction starts
//! when it saves next-RIP (SVM's NRIPS, VMX's exit instruction length); without it (QEMU's
//! SVM) the hypervisor reads the instruction's prefixes from guest memory, since a prefixed
//! `2E 2E 0F A2` must not be resumed in its middle.
//!
//! Reading them takes a walk of the guest's page tables, which cost most of an exit's
//! instructions until [`CodePage`] kept the code page's translation between exits: a guest's
//! CPUID, MSR and HLT exits come from a handful of code pages. A TLB may keep a translation
//! until the guest invalidates it; this one is checked besides: the byte after the prefixes
//! must be the intercepted instruction's opcode, else the walk is made again. A guest that
//! remaps its running code without invalidating can at worst mislead its own RIP, as stale
//! TLB entries would.

use super::guest_walk::{self, GuestPhysical, PagingState};
use super::mmio_decode::CpuMode;
use super::vcpu::Vcpu;

/// Prefix bytes looked at: at most 15 minus the shortest opcode.
const MOST_PREFIXES: u64 = 14;

/// The guest-physical pages of the code pages seen at the last instruction exits: a few, as
/// a guest's loop and its interrupt handler (an EOI) usually sit on different pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodePage {
    /// (paging state, linear page, guest-physical page).
    entries: [Option<(PagingState, u64, u64)>; 4],
    /// The entry the next miss replaces.
    next: usize,
    /// The last few instructions skipped that had no prefix: (paging state, linear address,
    /// guest-physical address, opcode byte). The same instruction exiting again (a guest's
    /// loop: its timer write, its HLT, its handler's EOI) costs one byte read: if that byte is
    /// still its opcode, it still has no prefix, whatever the CPU mode. The paging state
    /// (CR3 above all) must match: two processes run different programs at the same linear
    /// address, and a prefixed instruction of one must not be skipped as the other's.
    recent: [Option<(PagingState, u64, u64, u8)>; 4],
    /// The entry of `recent` the next unprefixed instruction replaces.
    next_recent: usize,
}

impl CodePage {
    fn find(&self, paging: PagingState, page: u64) -> Option<usize> {
        self.entries
            .iter()
            // The page first: it differs far more often, and is one word.
            .position(|e| e.is_some_and(|(p, l, _)| l == page && p == paging))
    }

    fn keep(&mut self, entry: (PagingState, u64, u64)) {
        self.entries[self.next] = Some(entry);
        self.next = (self.next + 1) % self.entries.len();
    }

    /// The guest-physical address of the unprefixed instruction `first` at `linear`, if it
    /// is one of the recent ones.
    fn recent(&self, paging: PagingState, linear: u64, first: u8) -> Option<u64> {
        for &(p, l, gpa, opcode) in self.recent.iter().flatten() {
            if l == linear && opcode == first && p == paging {
                return Some(gpa);
            }
        }
        None
    }

    /// Notes that the instruction at `linear` (`gpa`) has no prefix before `first`.
    fn keep_unprefixed(&mut self, paging: PagingState, linear: u64, gpa: u64, first: u8) {
        self.recent[self.next_recent] = Some((paging, linear, gpa, first));
        self.next_recent = (self.next_recent + 1) % self.recent.len();
    }
}

/// The intercepted instruction: its opcode's first byte and its length without prefixes
/// (CPUID `0F A2`: `0x0F`, 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opcode {
    pub first: u8,
    pub length: u64,
}

/// Moves RIP past the intercepted instruction `opcode`: the hardware's next RIP where it saved
/// one, else `opcode.length` plus the prefixes in front of it. An instruction that cannot be
/// read is taken as `opcode.length` bytes.
pub fn skip(cpu: &mut impl Vcpu, code: &mut CodePage, memory: &impl GuestPhysical, opcode: Opcode) {
    let next = cpu.next_rip().unwrap_or_else(|| {
        let prefixes = prefix_bytes(cpu, code, memory, opcode.first);
        cpu.rip().wrapping_add(prefixes + opcode.length)
    });
    cpu.set_rip(next);
}

fn is_prefix(byte: u8, long: bool) -> bool {
    matches!(
        byte,
        0x66 | 0x67 | 0xF0 | 0xF2 | 0xF3 | 0x2E | 0x36 | 0x3E | 0x26 | 0x64 | 0x65
    ) || (long && (0x40..=0x4F).contains(&byte))
}

/// How many prefix bytes precede the opcode at the guest's RIP (legacy prefixes, and in
/// 64-bit mode a REX byte).
fn prefix_bytes(
    cpu: &impl Vcpu,
    code: &mut CodePage,
    memory: &impl GuestPhysical,
    first: u8,
) -> u64 {
    let linear = cpu.code_base().wrapping_add(cpu.rip());
    let paging = cpu.paging();
    if let Some(gpa) = code.recent(paging, linear, first) {
        if memory.read_u8(gpa) == Some(first) {
            return 0;
        }
    }
    let long = cpu.cpu_mode() == CpuMode::Long64;
    let page = linear & !0xFFF;
    let cached = code.find(paging, page);
    if let Some(index) = cached {
        let gpa_page = code.entries[index].map_or(0, |(_, _, gpa)| gpa);
        let gpa = gpa_page | (linear & 0xFFF);
        if let Some(count) = prefixes_before(memory, gpa, long, first) {
            if count == 0 {
                code.keep_unprefixed(paging, linear, gpa, first);
            }
            return count;
        }
        code.entries[index] = None;
    }
    let Ok(gpa) = guest_walk::translate(memory, &paging, linear) else {
        return 0;
    };
    code.keep((paging, page, gpa & !0xFFF));
    // Within the instruction's first page, through the one translation; prefixes up to the
    // page's end continue on the next page.
    let (count, next) = prefixes_in_page(memory, gpa, long);
    if count < 0x1000 - (gpa & 0xFFF) {
        if count == 0 && next == Some(first) {
            code.keep_unprefixed(paging, linear, gpa, first);
        }
        return count;
    }
    // Prefixes run into the next page: read the whole instruction through the walk.
    let mut bytes = [0u8; 15];
    let Ok(fetched) = guest_walk::fetch_instruction(memory, &paging, linear, &mut bytes) else {
        return count;
    };
    bytes[..fetched]
        .iter()
        .take(MOST_PREFIXES as usize)
        .take_while(|&&b| is_prefix(b, long))
        .count() as u64
}

/// The prefixes at `gpa` if, within its page, they are followed by `first`; `None` otherwise
/// (a stale translation, or prefixes running into the next page).
fn prefixes_before(memory: &impl GuestPhysical, gpa: u64, long: bool, first: u8) -> Option<u64> {
    let (count, next) = prefixes_in_page(memory, gpa, long);
    (next == Some(first)).then_some(count)
}

/// The prefix bytes at `gpa`, byte by byte within its page (at most [`MOST_PREFIXES`]), and
/// the byte after them if that was read there: `None` when the page ended, the limit was
/// reached or the byte is outside guest RAM.
fn prefixes_in_page(memory: &impl GuestPhysical, gpa: u64, long: bool) -> (u64, Option<u8>) {
    let in_page = 0x1000 - (gpa & 0xFFF);
    let mut count = 0;
    while count < MOST_PREFIXES.min(in_page) {
        match memory.read_u8(gpa.wrapping_add(count)) {
            Some(byte) if is_prefix(byte, long) => count += 1,
            next => return (count, next),
        }
    }
    (count, None)
}
