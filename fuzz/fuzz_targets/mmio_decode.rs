//! The MMIO instruction decoder in every CPU mode, and the guest page walk that fetches the
//! instruction bytes, over untrusted bytes.
//!
//! Input: the instruction bytes for `decode`. For the walk, the same bytes are also the guest's
//! memory (guest-physical `gpa` below 4 GiB reads byte `gpa % len`) and, when long enough,
//! their first 40 bytes give CR0, CR3, CR4, EFER and the linear RIP.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numavisor_policy::vmm::guest_regs::GuestRegisters;
use numavisor_policy::vmm::guest_walk::{self, GuestPhysical, PagingState};
use numavisor_policy::vmm::mmio_decode::{self, CpuMode};

struct WrappingMemory<'a>(&'a [u8]);

impl GuestPhysical for WrappingMemory<'_> {
    fn read_u8(&self, gpa: u64) -> Option<u8> {
        if gpa >> 32 != 0 || self.0.is_empty() {
            return None;
        }
        self.0.get((gpa % self.0.len() as u64) as usize).copied()
    }
}

const MODES: [CpuMode; 4] = [
    CpuMode::Real,
    CpuMode::Protected16,
    CpuMode::Protected32,
    CpuMode::Long64,
];

fn decode_all(bytes: &[u8]) {
    for mode in MODES {
        if let Ok(instruction) = mmio_decode::decode(bytes, mode) {
            let mut registers = GuestRegisters::default();
            let _ = instruction.store_value(&registers);
            instruction.complete_read(&mut registers, u64::MAX);
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    decode_all(bytes);
    let word = |i: usize| {
        bytes
            .get(8 * i..8 * i + 8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
    };
    let (Some(cr0), Some(cr3), Some(cr4), Some(efer), Some(rip)) =
        (word(0), word(1), word(2), word(3), word(4))
    else {
        return;
    };
    let paging = PagingState {
        cr0,
        cr3,
        cr4,
        efer,
    };
    let memory = WrappingMemory(bytes);
    let _ = guest_walk::translate(&memory, &paging, rip);
    let mut buffer = [0u8; 15];
    if let Ok(count) = guest_walk::fetch_instruction(&memory, &paging, rip, &mut buffer) {
        decode_all(&buffer[..count]);
    }
});
