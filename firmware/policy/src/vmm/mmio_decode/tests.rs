//! Tests for the MMIO instruction decoder: byte sequences Linux and firmware use on device
//! pages (lengths checked by hand against SDM vol. 2 tables 2-1 to 2-3), prefix rules, errors,
//! and random bytes.

use super::*;
use proptest::prelude::*;

use CpuMode::{Long64, Protected16, Protected32, Real};

fn load(register: u8, size: u8) -> MmioKind {
    MmioKind::Load {
        register,
        extend: Extend::None,
        high_byte: false,
        dest_size: size,
    }
}

fn store(register: u8) -> MmioKind {
    MmioKind::Store {
        source: MmioSource::Register {
            register,
            high_byte: false,
        },
    }
}

fn ok(length: u8, size: u8, kind: MmioKind) -> Result<MmioInstruction, DecodeError> {
    Ok(MmioInstruction { length, size, kind })
}

/// Every proper prefix of a valid encoding is `Truncated`.
fn assert_truncates(bytes: &[u8], mode: CpuMode) {
    let full = decode(bytes, mode).expect("full encoding decodes");
    assert_eq!(usize::from(full.length), bytes.len(), "{bytes:02x?}");
    for end in 0..bytes.len() {
        assert_eq!(
            decode(&bytes[..end], mode),
            Err(DecodeError::Truncated),
            "{:02x?}",
            &bytes[..end]
        );
    }
}

#[test]
fn linux_lapic_and_ioapic_accesses() {
    // mov eax, [rdi+0x330]: 8B, ModRM 87 (mod=10 reg=eax rm=rdi), disp32 => 6 bytes.
    let bytes = [0x8B, 0x87, 0x30, 0x03, 0x00, 0x00];
    assert_eq!(decode(&bytes, Long64), ok(6, 4, load(0, 4)));
    assert_truncates(&bytes, Long64);
    // mov [0xffffffffffe00300], edx: 89, ModRM 14 (mod=00 reg=edx rm=SIB), SIB 25 (no index,
    // base=101 with mod=00 => disp32 only), disp32 => 7 bytes.
    let bytes = [0x89, 0x14, 0x25, 0x00, 0x03, 0xE0, 0xFF];
    assert_eq!(decode(&bytes, Long64), ok(7, 4, store(2)));
    assert_truncates(&bytes, Long64);
    // mov dword [rip+0x12345678], 0x11223344: C7 /0, ModRM 05 (RIP-relative), disp32, imm32.
    let bytes = [0xC7, 0x05, 0x78, 0x56, 0x34, 0x12, 0x44, 0x33, 0x22, 0x11];
    let immediate = MmioKind::Store {
        source: MmioSource::Immediate(0x1122_3344),
    };
    assert_eq!(decode(&bytes, Long64), ok(10, 4, immediate));
    assert_truncates(&bytes, Long64);
    // mov [rax], r8d: REX.R.
    assert_eq!(decode(&[0x44, 0x89, 0x00], Long64), ok(3, 4, store(8)));
    // xchg [rdi], eax (Linux's native_apic_mem_write with the 11AP erratum).
    let xchg = MmioKind::Exchange {
        register: 0,
        high_byte: false,
    };
    assert_eq!(decode(&[0x87, 0x07], Long64), ok(2, 4, xchg));
    // mov [rdi], ax / mov [rdi], al / movzx eax, byte [rdi].
    assert_eq!(decode(&[0x66, 0x89, 0x07], Long64), ok(3, 2, store(0)));
    assert_eq!(decode(&[0x88, 0x07], Long64), ok(2, 1, store(0)));
    let movzx = MmioKind::Load {
        register: 0,
        extend: Extend::Zero,
        high_byte: false,
        dest_size: 4,
    };
    assert_eq!(decode(&[0x0F, 0xB6, 0x07], Long64), ok(3, 1, movzx));
    assert_truncates(&[0x0F, 0xB6, 0x07], Long64);
    // mov rax, [rip+0x2cd1]: REX.W.
    let bytes = [0x48, 0x8B, 0x05, 0xD1, 0x2C, 0x00, 0x00];
    assert_eq!(decode(&bytes, Long64), ok(7, 8, load(0, 8)));
    assert_truncates(&bytes, Long64);
    // mov ecx, [rbx+rsi*4+0x10]: SIB with disp8.
    let bytes = [0x8B, 0x4C, 0xB3, 0x10];
    assert_eq!(decode(&bytes, Long64), ok(4, 4, load(1, 4)));
    // mov r9d, [r13+0]: mod=01 because rm=101 with mod=00 would be RIP-relative.
    let bytes = [0x45, 0x8B, 0x4D, 0x00];
    assert_eq!(decode(&bytes, Long64), ok(4, 4, load(9, 4)));
    // mov eax, [r12]: rm=100 needs a SIB even with REX.B.
    assert_eq!(
        decode(&[0x41, 0x8B, 0x04, 0x24], Long64),
        ok(4, 4, load(0, 4))
    );
}

#[test]
fn immediates() {
    // mov qword [rax], -1: C7 with REX.W sign-extends imm32.
    let bytes = [0x48, 0xC7, 0x00, 0xFF, 0xFF, 0xFF, 0xFF];
    let all_ones = MmioKind::Store {
        source: MmioSource::Immediate(u64::MAX),
    };
    assert_eq!(decode(&bytes, Long64), ok(7, 8, all_ones));
    assert_truncates(&bytes, Long64);
    // mov qword [rax], 0x7fffffff: positive stays positive.
    let bytes = [0x48, 0xC7, 0x00, 0xFF, 0xFF, 0xFF, 0x7F];
    let positive = MmioKind::Store {
        source: MmioSource::Immediate(0x7FFF_FFFF),
    };
    assert_eq!(decode(&bytes, Long64), ok(7, 8, positive));
    // mov word [rdi+4], 0x1234: 66 C7 /0 with imm16.
    let bytes = [0x66, 0xC7, 0x47, 0x04, 0x34, 0x12];
    let word = MmioKind::Store {
        source: MmioSource::Immediate(0x1234),
    };
    assert_eq!(decode(&bytes, Long64), ok(6, 2, word));
    // mov byte [rdi], 0x80.
    let byte = MmioKind::Store {
        source: MmioSource::Immediate(0x80),
    };
    assert_eq!(decode(&[0xC6, 0x07, 0x80], Long64), ok(3, 1, byte));
    // C7 /1 is not MOV.
    assert_eq!(
        decode(&[0xC7, 0x0F, 0, 0, 0, 0], Long64),
        Err(DecodeError::Unsupported { opcode: 0xC7 })
    );
}

#[test]
fn moffs_forms_follow_address_size() {
    let mut bytes = [0u8; 10];
    bytes[0] = 0xA1;
    // 64-bit mode: 8-byte offset.
    assert_eq!(decode(&bytes[..9], Long64), ok(9, 4, load(0, 4)));
    assert_truncates(&bytes[..9], Long64);
    // 67: 4-byte offset.
    let mut with_67 = [0u8; 6];
    with_67[0] = 0x67;
    with_67[1] = 0xA1;
    assert_eq!(decode(&with_67, Long64), ok(6, 4, load(0, 4)));
    // REX.W A3: store RAX to an 8-byte offset.
    let mut rex = [0u8; 10];
    rex[0] = 0x48;
    rex[1] = 0xA3;
    assert_eq!(decode(&rex, Long64), ok(10, 8, store(0)));
    // 32-bit protected mode: 4-byte offset; A0 loads AL.
    assert_eq!(
        decode(&[0xA1, 0x00, 0x03, 0xE0, 0xFE], Protected32),
        ok(5, 4, load(0, 4))
    );
    assert_eq!(
        decode(&[0xA0, 0x00, 0x03, 0xE0, 0xFE], Protected32),
        ok(5, 1, load(0, 1))
    );
    assert_eq!(decode(&[0xA2, 0x00, 0x03], Real), ok(3, 1, store(0)));
    // Real mode: 2-byte offset, 16-bit operand.
    assert_eq!(decode(&[0xA1, 0x00, 0x03], Real), ok(3, 2, load(0, 2)));
}

#[test]
fn sixteen_bit_addressing() {
    // mov [bx], ax.
    assert_eq!(decode(&[0x89, 0x07], Real), ok(2, 2, store(0)));
    // mov ax, [bp-2]: disp8.
    assert_eq!(
        decode(&[0x8B, 0x46, 0xFE], Protected16),
        ok(3, 2, load(0, 2))
    );
    // mov [0x1234], ax: mod=00 rm=110 is disp16.
    let bytes = [0x89, 0x06, 0x34, 0x12];
    assert_eq!(decode(&bytes, Real), ok(4, 2, store(0)));
    assert_truncates(&bytes, Real);
    // mov [bx+si+0x1234], dx: mod=10 disp16.
    assert_eq!(decode(&[0x89, 0x90, 0x34, 0x12], Real), ok(4, 2, store(2)));
    // 66: 32-bit operand in real mode.
    assert_eq!(decode(&[0x66, 0x89, 0x07], Real), ok(3, 4, store(0)));
    // 67: 32-bit addressing in real mode, so rm=100 takes a SIB.
    assert_eq!(decode(&[0x67, 0x89, 0x04, 0x24], Real), ok(4, 2, store(0)));
    // And 67 in 32-bit mode selects 16-bit addressing: mod=00 rm=110 is disp16.
    assert_eq!(
        decode(&[0x67, 0x89, 0x06, 0x34, 0x12], Protected32),
        ok(5, 4, store(0))
    );
    // 66 in 32-bit mode: 16-bit operand.
    assert_eq!(
        decode(&[0x66, 0x8B, 0x07], Protected32),
        ok(3, 2, load(0, 2))
    );
}

#[test]
fn rex_rules() {
    // A REX followed by a legacy prefix is ignored: W is lost, 66 applies.
    assert_eq!(
        decode(&[0x48, 0x66, 0x89, 0x07], Long64),
        ok(4, 2, store(0))
    );
    // REX.W beats 66.
    assert_eq!(
        decode(&[0x66, 0x48, 0x89, 0x07], Long64),
        ok(4, 8, store(0))
    );
    // Two REX bytes: only the last counts.
    assert_eq!(
        decode(&[0x4C, 0x40, 0x89, 0x07], Long64),
        ok(4, 4, store(0))
    );
    // Outside 64-bit mode 40-4F are INC/DEC.
    assert_eq!(
        decode(&[0x48, 0x89, 0x07], Protected32),
        Err(DecodeError::Unsupported { opcode: 0x48 })
    );
    // mov ah, [rdi] without REX; mov spl, [rdi] with one.
    let ah = MmioKind::Load {
        register: 0,
        extend: Extend::None,
        high_byte: true,
        dest_size: 1,
    };
    assert_eq!(decode(&[0x8A, 0x27], Long64), ok(2, 1, ah));
    let spl = MmioKind::Load {
        register: 4,
        extend: Extend::None,
        high_byte: false,
        dest_size: 1,
    };
    assert_eq!(decode(&[0x40, 0x8A, 0x27], Long64), ok(3, 1, spl));
    // mov [rdi], bh.
    let bh = MmioKind::Store {
        source: MmioSource::Register {
            register: 3,
            high_byte: true,
        },
    };
    assert_eq!(decode(&[0x88, 0x3F], Long64), ok(2, 1, bh));
}

#[test]
fn movzx_movsx_widths() {
    let sign = |register, dest_size| MmioKind::Load {
        register,
        extend: Extend::Sign,
        high_byte: false,
        dest_size,
    };
    assert_eq!(decode(&[0x0F, 0xBE, 0x07], Long64), ok(3, 1, sign(0, 4)));
    assert_eq!(
        decode(&[0x48, 0x0F, 0xBF, 0x0F], Long64),
        ok(4, 2, sign(1, 8))
    );
    let zero16 = MmioKind::Load {
        register: 2,
        extend: Extend::Zero,
        high_byte: false,
        dest_size: 4,
    };
    assert_eq!(decode(&[0x0F, 0xB7, 0x17], Long64), ok(3, 2, zero16));
    assert_eq!(
        decode(&[0x0F, 0x0B], Long64),
        Err(DecodeError::Unsupported { opcode: 0x0F0B })
    );
}

#[test]
fn prefixes_and_errors() {
    // LOCK XCHG is fine, LOCK MOV is #UD.
    let xchg = MmioKind::Exchange {
        register: 0,
        high_byte: false,
    };
    assert_eq!(decode(&[0xF0, 0x87, 0x07], Long64), ok(3, 4, xchg));
    assert_eq!(
        decode(&[0xF0, 0x89, 0x07], Long64),
        Err(DecodeError::InvalidPrefix { prefix: 0xF0 })
    );
    assert_eq!(
        decode(&[0xF3, 0x89, 0x07], Long64),
        Err(DecodeError::InvalidPrefix { prefix: 0xF3 })
    );
    assert_eq!(
        decode(&[0xF2, 0x8B, 0x07], Long64),
        Err(DecodeError::InvalidPrefix { prefix: 0xF2 })
    );
    // Segment overrides are accepted (the fault already gave the address).
    for segment in [0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65] {
        assert_eq!(decode(&[segment, 0x89, 0x07], Long64), ok(3, 4, store(0)));
    }
    // Register operands are not memory accesses.
    assert_eq!(
        decode(&[0x89, 0xC0], Long64),
        Err(DecodeError::RegisterOperand)
    );
    assert_eq!(
        decode(&[0x86, 0xC0], Real),
        Err(DecodeError::RegisterOperand)
    );
    assert_eq!(
        decode(&[0xFF, 0x07], Long64),
        Err(DecodeError::Unsupported { opcode: 0xFF })
    );
    assert_eq!(decode(&[], Long64), Err(DecodeError::Truncated));
    // 13 prefixes + 89 07 = 15 bytes is fine; 14 prefixes is too long.
    let mut bytes = [0x66u8; 16];
    bytes[13] = 0x89;
    bytes[14] = 0x07;
    assert_eq!(decode(&bytes[..15], Long64), ok(15, 2, store(0)));
    let mut bytes = [0x66u8; 16];
    bytes[14] = 0x89;
    bytes[15] = 0x07;
    assert_eq!(decode(&bytes, Long64), Err(DecodeError::TooLong));
    // 15 prefixes supplied, nothing after: too long, not truncated.
    assert_eq!(decode(&[0x66; 15], Long64), Err(DecodeError::TooLong));
    assert_eq!(decode(&[0x66; 14], Long64), Err(DecodeError::Truncated));
}

#[test]
fn completing_accesses() {
    let mut registers = GuestRegisters {
        rax: 0xFFFF_FFFF_FFFF_FFFF,
        rbx: 0x1234,
        rdx: 0xAAAA_BBBB_CCCC_DDDD,
        ..Default::default()
    };
    // mov eax, [rdi+0x330]: zero-extends.
    let insn = decode(&[0x8B, 0x87, 0x30, 0x03, 0x00, 0x00], Long64).unwrap();
    assert_eq!(insn.store_value(&registers), None);
    insn.complete_read(&mut registers, 0x1_0000_0005);
    assert_eq!(registers.rax, 5);
    // mov [rdi], dx: low 16 bits.
    let insn = decode(&[0x66, 0x89, 0x17], Long64).unwrap();
    assert_eq!(insn.store_value(&registers), Some(0xDDDD));
    // mov [rdi], bh.
    let insn = decode(&[0x88, 0x3F], Long64).unwrap();
    assert_eq!(insn.store_value(&registers), Some(0x12));
    // mov ah, [rdi]: merges into bits 8-15.
    let insn = decode(&[0x8A, 0x27], Long64).unwrap();
    insn.complete_read(&mut registers, 0xAB);
    assert_eq!(registers.rax, 0xAB05);
    // movsx ecx, byte [rdi]: sign-extends to 32, zero-extends to 64.
    let insn = decode(&[0x0F, 0xBE, 0x0F], Long64).unwrap();
    registers.rcx = u64::MAX;
    insn.complete_read(&mut registers, 0x80);
    assert_eq!(registers.rcx, 0xFFFF_FF80);
    // movsx rcx, word [rdi].
    let insn = decode(&[0x48, 0x0F, 0xBF, 0x0F], Long64).unwrap();
    insn.complete_read(&mut registers, 0x8000);
    assert_eq!(registers.rcx, 0xFFFF_FFFF_FFFF_8000);
    // xchg [rdi], edx: writes the old EDX, loads the device value.
    let insn = decode(&[0x87, 0x17], Long64).unwrap();
    assert_eq!(insn.store_value(&registers), Some(0xCCCC_DDDD));
    insn.complete_read(&mut registers, 7);
    assert_eq!(registers.rdx, 7);
    // Immediates mask to the access size.
    let insn = decode(&[0xC6, 0x07, 0x80], Long64).unwrap();
    assert_eq!(insn.store_value(&registers), Some(0x80));
}

fn any_mode() -> impl Strategy<Value = CpuMode> {
    prop_oneof![
        Just(Real),
        Just(Protected16),
        Just(Protected32),
        Just(Long64)
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..24),
        mode in any_mode(),
        value in any::<u64>(),
    ) {
        if let Ok(insn) = decode(&bytes, mode) {
            prop_assert!(insn.length >= 1);
            prop_assert!(usize::from(insn.length) <= MAX_INSTRUCTION_LENGTH);
            prop_assert!(usize::from(insn.length) <= bytes.len());
            prop_assert!(matches!(insn.size, 1 | 2 | 4 | 8));
            // The decode depends only on the instruction's own bytes.
            prop_assert_eq!(decode(&bytes[..usize::from(insn.length)], mode), Ok(insn));
            let mut registers = GuestRegisters::default();
            let _ = insn.store_value(&registers);
            insn.complete_read(&mut registers, value);
        }
    }
}

#[test]
fn mov_to_cr8_forms() {
    use crate::vmm::mmio_decode::{decode_mov_to_cr8, MovToCr8};
    let long = CpuMode::Long64;
    // mov cr8, rax / mov cr8, r9 / mov cr8, rcx behind a CS override.
    assert_eq!(
        decode_mov_to_cr8(&[0x44, 0x0F, 0x22, 0xC0], long),
        Ok(MovToCr8 {
            register: 0,
            length: 4
        })
    );
    assert_eq!(
        decode_mov_to_cr8(&[0x45, 0x0F, 0x22, 0xC1], long),
        Ok(MovToCr8 {
            register: 9,
            length: 4
        })
    );
    assert_eq!(
        decode_mov_to_cr8(&[0x2E, 0x44, 0x0F, 0x22, 0xC1], long),
        Ok(MovToCr8 {
            register: 1,
            length: 5
        })
    );
    // AMD's LOCK form in 32-bit code: lock mov cr0, edx is CR8.
    assert_eq!(
        decode_mov_to_cr8(&[0xF0, 0x0F, 0x22, 0xC2], CpuMode::Protected32),
        Ok(MovToCr8 {
            register: 2,
            length: 4
        })
    );
    // CR0, CR3, CR4 writes, a read of CR8, a REX voided by a later prefix: not this.
    for bytes in [
        &[0x0F, 0x22, 0xC0][..],
        &[0x0F, 0x22, 0xD8],
        &[0x44, 0x0F, 0x20, 0xC0],
        &[0x44, 0x2E, 0x0F, 0x22, 0xC0],
    ] {
        assert!(decode_mov_to_cr8(bytes, long).is_err(), "{bytes:02x?}");
    }
    assert_eq!(
        decode_mov_to_cr8(&[0x44, 0x0F], long),
        Err(DecodeError::Truncated)
    );
    assert_eq!(
        decode_mov_to_cr8(&[0x66; 20], long),
        Err(DecodeError::TooLong)
    );
}
