//! Decoding the instruction that faulted on an MMIO page.
//!
//! A nested page fault on a device page gives the guest-physical address but (under QEMU's SVM,
//! which offers no decode assist) not the access itself, so the exit handler fetches up to 15
//! bytes at the guest's RIP and decodes them here. Only the memory forms Linux and firmware use
//! on APIC, I/O APIC and other MMIO registers are accepted; anything else is an error the caller
//! turns into a stated fallback (stop the partition, or inject #UD).
//!
//! Encoding facts follow Intel SDM vol. 2 ch. 2 (§2.1 instruction format, prefixes, ModRM/SIB
//! tables 2-1 to 2-3; §2.2.1 REX, "REX prefixes ... must immediately precede the opcode ... other
//! placements are ignored"; §2.2.1.6 RIP-relative addressing), the MOV/MOVZX/MOVSX/XCHG entries of
//! vol. 2B, and the 15-byte limit of §2.3.11. The effective address itself is never computed:
//! the fault already told us the guest-physical address, so ModRM/SIB are parsed for length only.

use super::guest_regs::GuestRegisters;

/// The mode the vCPU was executing in when it faulted (from CR0.PE, EFER.LMA, CS.L, CS.D).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMode {
    /// Real mode (and virtual-8086): 16-bit operands and addresses.
    Real,
    /// Protected mode with a 16-bit code segment (CS.D = 0).
    Protected16,
    /// Protected mode (or compatibility mode) with a 32-bit code segment.
    Protected32,
    /// 64-bit mode (EFER.LMA and CS.L): 32-bit operands, 64-bit addresses, REX prefixes.
    Long64,
}

impl CpuMode {
    /// Default operand size in bytes (SDM vol. 1 §3.6, table 3-4).
    fn default_operand_size(self) -> u8 {
        match self {
            CpuMode::Real | CpuMode::Protected16 => 2,
            CpuMode::Protected32 | CpuMode::Long64 => 4,
        }
    }

    /// Default address size in bytes.
    fn default_address_size(self) -> u8 {
        match self {
            CpuMode::Real | CpuMode::Protected16 => 2,
            CpuMode::Protected32 => 4,
            CpuMode::Long64 => 8,
        }
    }
}

/// How a load widens the value read into its destination register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extend {
    /// Plain MOV: x86 write semantics for `dest_size` (32-bit zero-extends, 8/16-bit merge).
    None,
    /// MOVZX: zero-extend the `size`-byte value to `dest_size`.
    Zero,
    /// MOVSX: sign-extend the `size`-byte value to `dest_size`.
    Sign,
}

/// Where the value a store writes comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioSource {
    /// A general-purpose register (x86 number 0–15). `high_byte`: the byte is bits 8–15 of
    /// `register` (AH, CH, DH, BH; then `register` is 0–3).
    Register { register: u8, high_byte: bool },
    /// An immediate, already extended as the instruction defines (C7 with REX.W sign-extends).
    Immediate(u64),
}

/// What the instruction does with the memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioKind {
    /// Read `size` bytes into `register`, widened per `extend` to `dest_size` bytes.
    /// `high_byte`: the destination is bits 8–15 of `register` (AH..BH, `register` 0–3).
    Load {
        register: u8,
        extend: Extend,
        high_byte: bool,
        dest_size: u8,
    },
    /// Write `size` bytes from `source`.
    Store { source: MmioSource },
    /// XCHG reg, mem: read `size` bytes, write the register's old value, put the read value in
    /// the register. `high_byte` as for loads (8-bit form only).
    Exchange { register: u8, high_byte: bool },
}

/// A decoded MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioInstruction {
    /// Instruction length in bytes (1–15): the guest's RIP advances by this much.
    pub length: u8,
    /// Bytes accessed in memory: 1, 2, 4 or 8.
    pub size: u8,
    pub kind: MmioKind,
}

/// Why the bytes are not an MMIO access we emulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes ended (fewer than 15 supplied) before the instruction did.
    Truncated,
    /// The instruction would be longer than 15 bytes (the CPU raises #GP).
    TooLong,
    /// An opcode we do not emulate: one byte, or `0x0Fxx` for two-byte opcodes.
    Unsupported { opcode: u16 },
    /// The ModRM operand is a register (mod = 11): not a memory access at all.
    RegisterOperand,
    /// A prefix these instructions do not allow: F2/F3 (REP), or F0 (LOCK) on anything but XCHG.
    InvalidPrefix { prefix: u8 },
}

/// The architectural maximum instruction length (SDM vol. 2 §2.3.11).
pub const MAX_INSTRUCTION_LENGTH: usize = 15;

/// A cursor over the fetched bytes that enforces both the input end and the 15-byte limit.
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Cursor<'_> {
    fn next(&mut self) -> Result<u8, DecodeError> {
        if self.position >= MAX_INSTRUCTION_LENGTH {
            return Err(DecodeError::TooLong);
        }
        let byte = *self
            .bytes
            .get(self.position)
            .ok_or(DecodeError::Truncated)?;
        self.position += 1;
        Ok(byte)
    }

    /// Skips `count` bytes (a displacement).
    fn skip(&mut self, count: u8) -> Result<(), DecodeError> {
        for _ in 0..count {
            self.next()?;
        }
        Ok(())
    }

    /// Reads a little-endian value of `count` (≤ 8) bytes.
    fn little_endian(&mut self, count: u8) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for index in 0..count.min(8) {
            value |= u64::from(self.next()?) << (8 * u32::from(index));
        }
        Ok(value)
    }
}

/// The prefixes seen before the opcode.
#[derive(Default)]
struct Prefixes {
    operand_size: bool,
    address_size: bool,
    lock: bool,
    repeat: Option<u8>,
    /// The REX byte, only if it immediately precedes the opcode (64-bit mode only).
    rex: Option<u8>,
}

impl Prefixes {
    fn rex_bit(&self, bit: u8) -> bool {
        self.rex.is_some_and(|rex| rex & bit != 0)
    }
}

const REX_W: u8 = 8;
const REX_R: u8 = 4;
const REX_B: u8 = 1;

/// The ModRM fields that matter: `reg` (with REX.R applied). The memory operand's length has
/// been consumed from the cursor.
struct ModRm {
    reg: u8,
}

/// Parses ModRM, SIB and displacement, refusing register operands.
fn memory_operand(
    cursor: &mut Cursor<'_>,
    prefixes: &Prefixes,
    address_size: u8,
) -> Result<ModRm, DecodeError> {
    let modrm = cursor.next()?;
    let mode = modrm >> 6;
    let rm = modrm & 7;
    let reg = ((modrm >> 3) & 7) | if prefixes.rex_bit(REX_R) { 8 } else { 0 };
    if mode == 3 {
        return Err(DecodeError::RegisterOperand);
    }
    if address_size == 2 {
        // SDM vol. 2 table 2-1: no SIB; mod=00 rm=110 is disp16 alone.
        let displacement = match (mode, rm) {
            (0, 6) => 2,
            (0, _) => 0,
            (1, _) => 1,
            _ => 2,
        };
        cursor.skip(displacement)?;
    } else {
        // SDM vol. 2 tables 2-2 and 2-3; the special cases look at the raw three bits, so
        // REX.B does not change them. mod=00 rm=101 is disp32 (RIP-relative in 64-bit mode).
        let mut displacement = match mode {
            0 if rm == 5 => 4,
            0 => 0,
            1 => 1,
            _ => 4,
        };
        if rm == 4 {
            let sib = cursor.next()?;
            if mode == 0 && sib & 7 == 5 {
                displacement = 4; // No base: [index*scale + disp32].
            }
        }
        cursor.skip(displacement)?;
    }
    Ok(ModRm { reg })
}

/// An 8-bit register operand: without REX, numbers 4–7 are AH, CH, DH, BH.
fn byte_register(reg: u8, prefixes: &Prefixes) -> (u8, bool) {
    if prefixes.rex.is_none() && (4..8).contains(&reg) {
        (reg - 4, true)
    } else {
        (reg, false)
    }
}

/// Reads the legacy and REX prefixes in front of the opcode; returns them and the opcode.
fn prefixes_and_opcode(
    cursor: &mut Cursor<'_>,
    mode: CpuMode,
) -> Result<(Prefixes, u8), DecodeError> {
    let mut prefixes = Prefixes::default();
    let opcode = loop {
        let byte = cursor.next()?;
        match byte {
            0x66 => prefixes.operand_size = true,
            0x67 => prefixes.address_size = true,
            0xF0 => prefixes.lock = true,
            0xF2 | 0xF3 => prefixes.repeat = Some(byte),
            0x2E | 0x36 | 0x3E | 0x26 | 0x64 | 0x65 => {}
            0x40..=0x4F if mode == CpuMode::Long64 => {
                prefixes.rex = Some(byte);
                continue; // Keep it only if the opcode comes next.
            }
            _ => break byte,
        }
        // A legacy prefix after a REX makes that REX void (SDM vol. 2 §2.2.1).
        prefixes.rex = None;
    };
    Ok((prefixes, opcode))
}

/// A `MOV CR8, r` the hardware intercepted without decoding it (SVM without decode assists).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MovToCr8 {
    /// The source general register (x86 number 0–15).
    pub register: u8,
    /// The instruction's length in bytes, prefixes included.
    pub length: u8,
}

/// Decodes `MOV CR8, r` (`0F 22 /r`, SDM vol. 2B "MOV—Move to/from Control Registers"): CR8
/// is control register 8, so `reg` is 0 with REX.R in 64-bit mode, or 0 behind a LOCK prefix
/// (AMD's alternative encoding of CR8, APM vol. 3). The ModRM `mod` bits are ignored (always a
/// register operand), `rm` with REX.B is the source.
pub fn decode_mov_to_cr8(bytes: &[u8], mode: CpuMode) -> Result<MovToCr8, DecodeError> {
    let mut cursor = Cursor { bytes, position: 0 };
    let (prefixes, first) = prefixes_and_opcode(&mut cursor, mode)?;
    let second = cursor.next()?;
    if (first, second) != (0x0F, 0x22) {
        return Err(DecodeError::Unsupported {
            opcode: u16::from_be_bytes([first, second]),
        });
    }
    let modrm = cursor.next()?;
    let control = ((modrm >> 3) & 7)
        | if prefixes.rex_bit(REX_R) || prefixes.lock {
            8
        } else {
            0
        };
    if control != 8 {
        return Err(DecodeError::Unsupported { opcode: 0x0F22 });
    }
    Ok(MovToCr8 {
        register: (modrm & 7) | if prefixes.rex_bit(REX_B) { 8 } else { 0 },
        length: cursor.position as u8,
    })
}

/// Decodes the instruction at the start of `bytes` (at most the first 15 are looked at).
pub fn decode(bytes: &[u8], mode: CpuMode) -> Result<MmioInstruction, DecodeError> {
    let mut cursor = Cursor { bytes, position: 0 };
    let (prefixes, opcode) = prefixes_and_opcode(&mut cursor, mode)?;
    if let Some(prefix) = prefixes.repeat {
        return Err(DecodeError::InvalidPrefix { prefix });
    }

    let operand_size = if prefixes.rex_bit(REX_W) {
        8
    } else if prefixes.operand_size {
        6 - mode.default_operand_size() // 2 <-> 4
    } else {
        mode.default_operand_size()
    };
    let address_size = match (mode, prefixes.address_size) {
        (_, false) => mode.default_address_size(),
        (CpuMode::Long64, true) => 4,
        (CpuMode::Protected32, true) => 2,
        (_, true) => 4,
    };

    let (size, kind, lock_allowed) = match opcode {
        0x86..=0x8B => {
            let byte_form = opcode & 1 == 0;
            let operand = memory_operand(&mut cursor, &prefixes, address_size)?;
            let size = if byte_form { 1 } else { operand_size };
            let (register, high_byte) = if byte_form {
                byte_register(operand.reg, &prefixes)
            } else {
                (operand.reg, false)
            };
            let kind = match opcode {
                0x88 | 0x89 => MmioKind::Store {
                    source: MmioSource::Register {
                        register,
                        high_byte,
                    },
                },
                0x8A | 0x8B => MmioKind::Load {
                    register,
                    extend: Extend::None,
                    high_byte,
                    dest_size: size,
                },
                _ => MmioKind::Exchange {
                    register,
                    high_byte,
                },
            };
            (size, kind, opcode == 0x86 || opcode == 0x87)
        }
        0xC6 | 0xC7 => {
            let operand = memory_operand(&mut cursor, &prefixes, address_size)?;
            if operand.reg & 7 != 0 {
                return Err(DecodeError::Unsupported {
                    opcode: u16::from(opcode),
                });
            }
            let size = if opcode == 0xC6 { 1 } else { operand_size };
            let immediate = match size {
                1 => cursor.little_endian(1)?,
                2 => cursor.little_endian(2)?,
                4 => cursor.little_endian(4)?,
                // REX.W: imm32 sign-extended to 64 bits.
                _ => cursor.little_endian(4)? as u32 as i32 as i64 as u64,
            };
            let kind = MmioKind::Store {
                source: MmioSource::Immediate(immediate),
            };
            (size, kind, false)
        }
        0xA0..=0xA3 => {
            // moffs: the offset is address-size wide (8 bytes in 64-bit mode without 67).
            cursor.skip(address_size)?;
            let size = if opcode & 1 == 0 { 1 } else { operand_size };
            let kind = if opcode < 0xA2 {
                MmioKind::Load {
                    register: 0,
                    extend: Extend::None,
                    high_byte: false,
                    dest_size: size,
                }
            } else {
                MmioKind::Store {
                    source: MmioSource::Register {
                        register: 0,
                        high_byte: false,
                    },
                }
            };
            (size, kind, false)
        }
        0x0F => {
            let second = cursor.next()?;
            let extend = match second {
                0xB6 | 0xB7 => Extend::Zero,
                0xBE | 0xBF => Extend::Sign,
                _ => {
                    return Err(DecodeError::Unsupported {
                        opcode: 0x0F00 | u16::from(second),
                    })
                }
            };
            let operand = memory_operand(&mut cursor, &prefixes, address_size)?;
            let size = if second & 1 == 0 { 1 } else { 2 };
            let kind = MmioKind::Load {
                register: operand.reg,
                extend,
                high_byte: false,
                dest_size: operand_size,
            };
            (size, kind, false)
        }
        _ => {
            return Err(DecodeError::Unsupported {
                opcode: u16::from(opcode),
            })
        }
    };
    if prefixes.lock && !lock_allowed {
        return Err(DecodeError::InvalidPrefix { prefix: 0xF0 });
    }
    Ok(MmioInstruction {
        // The cursor never passes 15, so this fits.
        length: cursor.position as u8,
        size,
        kind,
    })
}

/// Bits of a `size`-byte value (anything but 1, 2, 4 counts as 8).
fn mask(size: u8) -> u64 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        4 => 0xFFFF_FFFF,
        _ => u64::MAX,
    }
}

/// Sign-extends the low `size` bytes of `value` to 64 bits.
fn sign_extend(value: u64, size: u8) -> u64 {
    match size {
        1 => value as u8 as i8 as i64 as u64,
        2 => value as u16 as i16 as i64 as u64,
        4 => value as u32 as i32 as i64 as u64,
        _ => value,
    }
}

impl MmioInstruction {
    /// The value a store or exchange writes to the device (the low `size` bytes), or `None`
    /// for a load.
    pub fn store_value(&self, registers: &GuestRegisters) -> Option<u64> {
        let (register, high_byte) = match self.kind {
            MmioKind::Load { .. } => return None,
            MmioKind::Store {
                source: MmioSource::Immediate(value),
            } => return Some(value & mask(self.size)),
            MmioKind::Store {
                source:
                    MmioSource::Register {
                        register,
                        high_byte,
                    },
            } => (register, high_byte),
            MmioKind::Exchange {
                register,
                high_byte,
            } => (register, high_byte),
        };
        let value = if high_byte {
            registers.get(register) >> 8
        } else {
            registers.get(register)
        };
        Some(value & mask(self.size))
    }

    /// Puts `value`, the `size` bytes a load or exchange read from the device, into the
    /// destination register with x86 write semantics; a store leaves the registers alone.
    pub fn complete_read(&self, registers: &mut GuestRegisters, value: u64) {
        let value = value & mask(self.size);
        match self.kind {
            MmioKind::Store { .. } => {}
            MmioKind::Load {
                register,
                high_byte: true,
                ..
            }
            | MmioKind::Exchange {
                register,
                high_byte: true,
            } => {
                let old = registers.get(register);
                registers.set(register, (old & !0xFF00) | (value << 8));
            }
            MmioKind::Load {
                register,
                extend,
                dest_size,
                ..
            } => {
                let widened = match extend {
                    Extend::None | Extend::Zero => value,
                    Extend::Sign => sign_extend(value, self.size) & mask(dest_size),
                };
                registers.set_sized(register, dest_size, widened);
            }
            MmioKind::Exchange { register, .. } => {
                registers.set_sized(register, self.size, value);
            }
        }
    }
}

#[cfg(test)]
mod tests;
