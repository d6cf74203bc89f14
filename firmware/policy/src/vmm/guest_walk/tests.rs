//! Tests for the guest page walk over a sparse fake guest memory.

use super::*;
use alloc::collections::BTreeMap;

/// Guest RAM as a sparse byte map; absent bytes are "not RAM".
#[derive(Default)]
struct FakeMemory {
    bytes: BTreeMap<u64, u8>,
}

impl FakeMemory {
    fn write_u64(&mut self, gpa: u64, value: u64) {
        for (index, byte) in value.to_le_bytes().into_iter().enumerate() {
            self.bytes.insert(gpa + index as u64, byte);
        }
    }

    fn write_u32(&mut self, gpa: u64, value: u32) {
        for (index, byte) in value.to_le_bytes().into_iter().enumerate() {
            self.bytes.insert(gpa + index as u64, byte);
        }
    }

    fn write_bytes(&mut self, gpa: u64, bytes: &[u8]) {
        for (index, byte) in bytes.iter().enumerate() {
            self.bytes.insert(gpa + index as u64, *byte);
        }
    }
}

impl GuestPhysical for FakeMemory {
    fn read_u8(&self, gpa: u64) -> Option<u8> {
        self.bytes.get(&gpa).copied()
    }
}

const P: u64 = 1;
const RW: u64 = 2;
const PS: u64 = 1 << 7;

fn long4(cr3: u64) -> PagingState {
    PagingState {
        cr0: CR0_PG | 1,
        cr3,
        cr4: CR4_PAE,
        efer: EFER_LMA | (1 << 8),
    }
}

/// Index of `gva` at `level` (1..5) of a 9-bit-per-level walk.
fn index(gva: u64, level: u32) -> u64 {
    (gva >> (12 + 9 * (level - 1))) & 0x1FF
}

#[test]
fn paging_off_is_identity() {
    let memory = FakeMemory::default();
    let paging = PagingState::default();
    assert_eq!(translate(&memory, &paging, 0xFEE0_0300), Ok(0xFEE0_0300));
}

#[test]
fn four_level_4k_2m_1g() {
    let mut memory = FakeMemory::default();
    let gva = 0xFFFF_FFFF_8100_1234u64; // Linux's kernel text mapping area.
    memory.write_u64(0x1000 + index(gva, 4) * 8, 0x2000 | P | RW);
    memory.write_u64(0x2000 + index(gva, 3) * 8, 0x3000 | P | RW);
    memory.write_u64(0x3000 + index(gva, 2) * 8, 0x4000 | P | RW);
    // NX (bit 63) and software bits must not leak into the address.
    memory.write_u64(0x4000 + index(gva, 1) * 8, (1 << 63) | 0x0012_3456_7000 | P);
    let paging = long4(0x1000 | 0x18); // PWT/PCD bits in CR3 are ignored.
    assert_eq!(translate(&memory, &paging, gva), Ok(0x0012_3456_7234));

    // A 2 MiB page in the PD (with the PAT bit 12 set, which is not an address bit).
    memory.write_u64(0x3000 + index(gva, 2) * 8, 0x4060_0000 | (1 << 12) | PS | P);
    assert_eq!(
        translate(&memory, &paging, gva),
        Ok(0x4060_0000 | (gva & 0x1F_FFFF))
    );

    // A 1 GiB page in the PDPT.
    memory.write_u64(0x2000 + index(gva, 3) * 8, 0x8_4000_0000 | PS | P);
    assert_eq!(
        translate(&memory, &paging, gva),
        Ok(0x8_4000_0000 | (gva & 0x3FFF_FFFF))
    );
}

#[test]
fn non_present_at_each_level() {
    let gva = 0x0000_7F00_0020_3000u64;
    let mut memory = FakeMemory::default();
    let paging = long4(0x1000);
    // Empty tables that exist in RAM: a zero PML4E is not present.
    memory.write_u64(0x1000 + index(gva, 4) * 8, 0);
    assert_eq!(
        translate(&memory, &paging, gva),
        Err(WalkError::NotPresent { level: 4 })
    );
    memory.write_u64(0x1000 + index(gva, 4) * 8, 0x2000 | P);
    memory.write_u64(0x2000 + index(gva, 3) * 8, 0x3000); // Address but no present bit.
    assert_eq!(
        translate(&memory, &paging, gva),
        Err(WalkError::NotPresent { level: 3 })
    );
    memory.write_u64(0x2000 + index(gva, 3) * 8, 0x3000 | P);
    memory.write_u64(0x3000 + index(gva, 2) * 8, 0x4000 | RW);
    assert_eq!(
        translate(&memory, &paging, gva),
        Err(WalkError::NotPresent { level: 2 })
    );
    memory.write_u64(0x3000 + index(gva, 2) * 8, 0x4000 | P);
    memory.write_u64(0x4000 + index(gva, 1) * 8, 0x5000);
    assert_eq!(
        translate(&memory, &paging, gva),
        Err(WalkError::NotPresent { level: 1 })
    );
    memory.write_u64(0x4000 + index(gva, 1) * 8, 0x5000 | P);
    assert_eq!(translate(&memory, &paging, gva), Ok(0x5000));
    // A table outside RAM.
    memory.write_u64(0x4000 + index(gva, 1) * 8, 0x5000 | P);
    memory.write_u64(0x3000 + index(gva, 2) * 8, 0x9_0000 | P);
    assert_eq!(
        translate(&memory, &paging, gva),
        Err(WalkError::TableNotInRam {
            gpa: 0x9_0000 + index(gva, 1) * 8
        })
    );
}

#[test]
fn five_level_and_canonical_checks() {
    let mut memory = FakeMemory::default();
    let mut paging = long4(0x1000);
    // Non-canonical for 4 levels.
    assert_eq!(
        translate(&memory, &paging, 0x0000_8000_0000_0000),
        Err(WalkError::NonCanonical)
    );
    assert_eq!(
        translate(&memory, &paging, 0x0100_0000_0000_0000),
        Err(WalkError::NonCanonical)
    );
    // With LA57 an address with bit 48 set (and 63:49 clear) is canonical; bit 56 set with
    // 63:57 clear is not.
    paging.cr4 |= CR4_LA57;
    let gva = 0x0001_0000_0000_0000u64 | 0xABC;
    memory.write_u64(0x1000 + index(gva, 5) * 8, 0x2000 | P);
    memory.write_u64(0x2000 + index(gva, 4) * 8, 0x3000 | P);
    memory.write_u64(0x3000 + index(gva, 3) * 8, 0x4000 | P);
    memory.write_u64(0x4000 + index(gva, 2) * 8, 0x5000 | P);
    memory.write_u64(0x5000 + index(gva, 1) * 8, 0x7000 | P);
    assert_eq!(translate(&memory, &paging, gva), Ok(0x7ABC));
    assert_eq!(
        translate(&memory, &paging, 0x0100_0000_0000_0000),
        Err(WalkError::NonCanonical)
    );
    paging.cr4 &= !CR4_LA57;
    assert_eq!(
        translate(&memory, &paging, gva),
        Err(WalkError::NonCanonical)
    );
}

#[test]
fn thirty_two_bit_paging() {
    let mut memory = FakeMemory::default();
    let mut paging = PagingState {
        cr0: CR0_PG | 1,
        cr3: 0x1000,
        cr4: 0,
        efer: 0,
    };
    let gva = 0xC010_2345u64;
    memory.write_u32(0x1000 + ((gva >> 22) << 2), 0x2000 | P as u32);
    memory.write_u32(
        0x2000 + (((gva >> 12) & 0x3FF) << 2),
        0x0ABC_D000 | P as u32,
    );
    assert_eq!(translate(&memory, &paging, gva), Ok(0x0ABC_D345));
    // A 4 MiB page, ignored (PS treated as a plain PDE) without CR4.PSE.
    let big = 0x0840_0000 | PS as u32 | P as u32 | (0x12 << 13);
    memory.write_u32(0x1000 + ((gva >> 22) << 2), big);
    paging.cr4 = CR4_PSE;
    assert_eq!(translate(&memory, &paging, gva), Ok(0x12_0850_2345));
    paging.cr4 = 0;
    assert!(matches!(
        translate(&memory, &paging, gva),
        Err(WalkError::TableNotInRam { .. })
    ));
    // Not present.
    memory.write_u32(0x1000 + ((gva >> 22) << 2), 0);
    assert_eq!(
        translate(&memory, &paging, gva),
        Err(WalkError::NotPresent { level: 2 })
    );
    assert_eq!(
        translate(&memory, &paging, 1 << 32),
        Err(WalkError::BeyondLinearSpace)
    );
}

#[test]
fn pae_paging() {
    let mut memory = FakeMemory::default();
    let paging = PagingState {
        cr0: CR0_PG | 1,
        cr3: 0x1020, // The PDPT is 32-byte aligned, not page aligned.
        cr4: CR4_PAE,
        efer: 0,
    };
    let gva = 0xC020_1ABCu64;
    memory.write_u64(0x1020 + 3 * 8, 0x3000 | P);
    memory.write_u64(0x3000 + ((gva >> 21) & 0x1FF) * 8, 0x4000 | P);
    memory.write_u64(0x4000 + ((gva >> 12) & 0x1FF) * 8, 0x1_2345_6000 | P);
    assert_eq!(translate(&memory, &paging, gva), Ok(0x1_2345_6ABC));
    // 2 MiB page.
    memory.write_u64(0x3000 + ((gva >> 21) & 0x1FF) * 8, 0x20_0000 | PS | P);
    assert_eq!(
        translate(&memory, &paging, gva),
        Ok(0x20_0000 | (gva & 0x1F_FFFF))
    );
    // PDPTE 0 absent from RAM; PDPTE 1 not present.
    memory.write_u64(0x1020 + 8, 0);
    assert_eq!(
        translate(&memory, &paging, 0x4000_0000),
        Err(WalkError::NotPresent { level: 3 })
    );
    assert_eq!(
        translate(&memory, &paging, 0),
        Err(WalkError::TableNotInRam { gpa: 0x1020 })
    );
}

#[test]
fn self_referencing_tables_terminate() {
    let mut memory = FakeMemory::default();
    // Every entry of the page at 0x1000 points back at 0x1000: the walk takes exactly four
    // steps and lands in the table itself.
    for entry in 0..512u64 {
        memory.write_u64(0x1000 + entry * 8, 0x1000 | P | RW);
    }
    let paging = long4(0x1000);
    assert_eq!(translate(&memory, &paging, 0x7FFF_FFFF_F123), Ok(0x1123));
    let mut paging5 = paging;
    paging5.cr4 |= CR4_LA57;
    assert_eq!(translate(&memory, &paging5, 0x456), Ok(0x1456));
}

#[test]
fn fetch_across_a_page_boundary() {
    let mut memory = FakeMemory::default();
    let paging = long4(0x1000);
    let rip = 0x40_0FFA_u64; // Six bytes before the end of a page.
    for page in [rip, rip + 0x1000] {
        memory.write_u64(0x1000 + index(page, 4) * 8, 0x2000 | P);
        memory.write_u64(0x2000 + index(page, 3) * 8, 0x3000 | P);
        memory.write_u64(0x3000 + index(page, 2) * 8, 0x4000 | P);
    }
    // The two virtual pages map to physically distant frames, in reverse order.
    memory.write_u64(0x4000 + index(rip, 1) * 8, 0x9000 | P);
    memory.write_u64(0x4000 + index(rip + 0x1000, 1) * 8, 0x8000 | P);
    memory.write_bytes(0x9FFA, &[1, 2, 3, 4, 5, 6]);
    memory.write_bytes(0x8000, &[7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    let mut buffer = [0u8; 15];
    assert_eq!(
        fetch_instruction(&memory, &paging, rip, &mut buffer),
        Ok(15)
    );
    assert_eq!(buffer, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);

    // Second page not present: the six bytes of the first.
    memory.write_u64(0x4000 + index(rip + 0x1000, 1) * 8, 0);
    let mut buffer = [0u8; 15];
    assert_eq!(fetch_instruction(&memory, &paging, rip, &mut buffer), Ok(6));
    assert_eq!(&buffer[..6], &[1, 2, 3, 4, 5, 6]);
    // Starting on the missing page: the error.
    assert_eq!(
        fetch_instruction(&memory, &paging, rip + 6, &mut buffer),
        Err(WalkError::NotPresent { level: 1 })
    );
    // A mapped page whose frame is not RAM.
    memory.write_u64(0x4000 + index(rip, 1) * 8, 0xFEE0_0000 | P);
    assert_eq!(
        fetch_instruction(&memory, &paging, rip, &mut buffer),
        Err(WalkError::NotGuestRam { gpa: 0xFEE0_0FFA })
    );
    // Fetching at the very top of the address space stops instead of wrapping.
    let flat = PagingState::default();
    memory.write_bytes(u64::MAX - 1, &[0xAA, 0xBB]);
    assert_eq!(
        fetch_instruction(&memory, &flat, u64::MAX - 1, &mut buffer),
        Ok(2)
    );
    // And at linear 0, the bottom, it reads the whole instruction (the fuzzer found an
    // overflow there: with wrapping arithmetic an empty piece, and a loop for ever).
    memory.write_bytes(0, &[0x90; 15]);
    assert_eq!(fetch_instruction(&memory, &flat, 0, &mut buffer), Ok(15));
}

#[test]
fn random_tables_never_panic() {
    use proptest::prelude::*;
    proptest!(|(entries in proptest::collection::vec(any::<u64>(), 8),
                cr3 in any::<u64>(), cr4 in any::<u64>(), efer in any::<u64>(),
                gva in any::<u64>())| {
        // Every table lookup lands on one of a few random entries.
        struct Random<'a>(&'a [u64]);
        impl GuestPhysical for Random<'_> {
            fn read_u8(&self, gpa: u64) -> Option<u8> {
                let word = self.0[((gpa >> 3) % 8) as usize];
                Some(word.to_le_bytes()[(gpa & 7) as usize])
            }
        }
        let memory = Random(&entries);
        let paging = PagingState { cr0: CR0_PG, cr3, cr4, efer };
        let _ = translate(&memory, &paging, gva);
        let mut buffer = [0u8; 15];
        if let Ok(count) = fetch_instruction(&memory, &paging, gva, &mut buffer) {
            prop_assert!((1..=15).contains(&count));
        }
    });
}
