//! The MMIO instructions a vCPU decoded lately. A guest's device accesses come from a few
//! places (Linux's xAPIC EOI write, a driver's doorbell), and fetching one means walking the
//! guest's page tables and decoding its bytes: most of an MMIO exit's instructions. An
//! instruction seen before, at the same linear address under the same paging state and CPU
//! mode, is taken from here once its bytes, read again at the guest-physical address its walk
//! found, are still the same. As with [`super::skip::CodePage`], a guest that remaps its
//! running code without invalidating can at worst mislead its own instruction, as a stale TLB
//! entry would.

use super::guest_walk::{GuestPhysical, PagingState};
use super::mmio_decode::{CpuMode, MmioInstruction};

/// One decoded instruction and where it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Decoded {
    paging: PagingState,
    mode: CpuMode,
    linear: u64,
    gpa: u64,
    bytes: [u8; 15],
    /// The first 8 bytes as a little-endian word, and the mask of those the instruction
    /// has: most MMIO instructions are 2 to 7 bytes, compared in one read.
    head: u64,
    head_mask: u64,
    instruction: MmioInstruction,
}

/// A few decoded MMIO instructions of one vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodedMmio {
    entries: [Option<Decoded>; 4],
    /// The entry the next instruction kept replaces.
    next: usize,
}

impl DecodedMmio {
    /// The instruction at `linear`, if it was decoded under `paging` and `mode` and its bytes
    /// at its guest-physical address are unchanged.
    pub fn lookup(
        &self,
        memory: &impl GuestPhysical,
        paging: PagingState,
        mode: CpuMode,
        linear: u64,
    ) -> Option<MmioInstruction> {
        let entry = self
            .entries
            .iter()
            .flatten()
            .find(|e| e.linear == linear && e.paging == paging && e.mode == mode)?;
        let length = usize::from(entry.instruction.length);
        if length <= 8 {
            // One word read (it may run past the instruction, not past its RAM block).
            if let Some(word) = memory.read_u64(entry.gpa) {
                return ((word ^ entry.head) & entry.head_mask == 0).then_some(entry.instruction);
            }
        }
        let mut bytes = [0u8; 15];
        let now = bytes.get_mut(..length)?;
        (memory.read_bytes(entry.gpa, now) && *now == entry.bytes[..length])
            .then_some(entry.instruction)
    }

    /// Keeps `instruction`, decoded from `bytes` at `linear` (guest-physical `gpa`). One that
    /// runs into the next page is not kept: its bytes there have a translation of their own.
    pub fn keep(
        &mut self,
        paging: PagingState,
        mode: CpuMode,
        linear: u64,
        gpa: u64,
        bytes: &[u8],
        instruction: MmioInstruction,
    ) {
        let length = usize::from(instruction.length);
        if (linear & 0xFFF) as usize + length > 0x1000 || length > bytes.len() || length > 15 {
            return;
        }
        let mut kept = [0u8; 15];
        kept[..length].copy_from_slice(&bytes[..length]);
        let head = u64::from_le_bytes(kept[..8].try_into().unwrap_or([0; 8]));
        let head_mask = match length {
            8.. => u64::MAX,
            n => (1u64 << (8 * n)) - 1,
        };
        self.entries[self.next] = Some(Decoded {
            paging,
            mode,
            linear,
            gpa,
            bytes: kept,
            head,
            head_mask,
            instruction,
        });
        self.next = (self.next + 1) % self.entries.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::mmio_decode::decode;
    use core::cell::RefCell;

    /// Guest RAM from 0, as a vector.
    struct Ram(RefCell<alloc::vec::Vec<u8>>);

    impl GuestPhysical for Ram {
        fn read_u8(&self, gpa: u64) -> Option<u8> {
            self.0.borrow().get(gpa as usize).copied()
        }
    }

    const PAGING: PagingState = PagingState {
        cr0: 1,
        cr3: 0,
        cr4: 0,
        efer: 0,
    };

    fn ram_with(at: usize, bytes: &[u8]) -> Ram {
        let mut ram = alloc::vec![0u8; 0x3000];
        ram[at..at + bytes.len()].copy_from_slice(bytes);
        Ram(RefCell::new(ram))
    }

    #[test]
    fn an_instruction_seen_before_is_not_decoded_again_while_its_bytes_hold() {
        // mov [eax], ebx (89 18): 2 bytes, a 4-byte store.
        let bytes = [0x89, 0x18];
        let ram = ram_with(0x1100, &bytes);
        let instruction = decode(&bytes, CpuMode::Protected32).unwrap();
        let mut cache = DecodedMmio::default();
        assert_eq!(
            cache.lookup(&ram, PAGING, CpuMode::Protected32, 0x1100),
            None
        );
        cache.keep(
            PAGING,
            CpuMode::Protected32,
            0x1100,
            0x1100,
            &bytes,
            instruction,
        );
        assert_eq!(
            cache.lookup(&ram, PAGING, CpuMode::Protected32, 0x1100),
            Some(instruction)
        );
        // Another mode, another paging state, another address: not this entry.
        assert_eq!(cache.lookup(&ram, PAGING, CpuMode::Long64, 0x1100), None);
        let other = PagingState {
            cr3: 0x1000,
            ..PAGING
        };
        assert_eq!(
            cache.lookup(&ram, other, CpuMode::Protected32, 0x1100),
            None
        );
        assert_eq!(
            cache.lookup(&ram, PAGING, CpuMode::Protected32, 0x1101),
            None
        );
        // The guest rewrote it (mov [eax], ecx: 89 08): decoded again.
        ram.0.borrow_mut()[0x1101] = 0x08;
        assert_eq!(
            cache.lookup(&ram, PAGING, CpuMode::Protected32, 0x1100),
            None
        );
    }

    #[test]
    fn an_instruction_running_into_the_next_page_is_not_kept() {
        let bytes = [0x89, 0x18];
        let ram = ram_with(0xFFF, &bytes);
        let instruction = decode(&bytes, CpuMode::Protected32).unwrap();
        let mut cache = DecodedMmio::default();
        cache.keep(
            PAGING,
            CpuMode::Protected32,
            0xFFF,
            0xFFF,
            &bytes,
            instruction,
        );
        assert_eq!(
            cache.lookup(&ram, PAGING, CpuMode::Protected32, 0xFFF),
            None
        );
    }

    #[test]
    fn bytes_after_the_instruction_do_not_matter_and_ram_ending_after_it_is_read_bytewise() {
        // mov dword [rip+0x100], eax (89 05 00 01 00 00): 6 bytes, then whatever follows.
        let bytes = [0x89, 0x05, 0x00, 0x01, 0x00, 0x00];
        let instruction = decode(&bytes, CpuMode::Long64).unwrap();
        assert_eq!(instruction.length, 6);
        // RAM ends 6 bytes after the instruction's start: no word read there.
        for at in [0x1100usize, 0x3000 - 6] {
            let ram = ram_with(at, &bytes);
            let mut cache = DecodedMmio::default();
            cache.keep(
                PAGING,
                CpuMode::Long64,
                at as u64,
                at as u64,
                &bytes,
                instruction,
            );
            let found = || cache.lookup(&ram, PAGING, CpuMode::Long64, at as u64);
            assert_eq!(found(), Some(instruction), "at {at:#x}");
            if at + 8 <= 0x3000 {
                ram.0.borrow_mut()[at + 6] = 0xCC;
                ram.0.borrow_mut()[at + 7] = 0xCC;
                assert_eq!(found(), Some(instruction), "at {at:#x}");
            }
            ram.0.borrow_mut()[at + 5] = 0x01;
            assert_eq!(found(), None, "the displacement changed, at {at:#x}");
        }
    }
}
