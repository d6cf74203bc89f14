//! The guest's general-purpose registers, indexed by x86 register number.
//!
//! Register numbers and the partial-register write rules follow Intel SDM vol. 1 §3.4.1.1
//! ("General-Purpose Registers in 64-Bit Mode") and vol. 2 §2.1.5 / §2.2.1 (ModRM `reg`
//! encoding, REX): a 32-bit write zero-extends into the full 64-bit register, an 8- or 16-bit
//! write leaves the other bits alone. Without a REX prefix, 8-bit register numbers 4–7 name
//! AH, CH, DH, BH (bits 8–15 of RAX, RCX, RDX, RBX) instead of SPL, BPL, SIL, DIL.
//!
//! Indices are masked to four bits (`index & 0xF`), so any `u8` is a valid argument: a decoder
//! bug can name the wrong register but never panic.

/// The sixteen general-purpose registers of a vCPU (RIP and RFLAGS live with the backend).
/// `repr(C)` in this order: the SVM world switch (`virt/svm/run.rs`) addresses the fields by
/// offset (8 bytes each, RAX at 0 ... R15 at 120).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRegisters {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// Bits of a register a write of `size` bytes replaces (anything but 1, 2, 4 counts as 8).
fn size_mask(size: u8) -> u64 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        4 => 0xFFFF_FFFF,
        _ => u64::MAX,
    }
}

impl GuestRegisters {
    /// The register with x86 number `index` (RAX=0, RCX=1, RDX=2, RBX=3, RSP=4, RBP=5, RSI=6,
    /// RDI=7, R8..R15 = 8..15); only the low four bits of `index` count.
    pub fn get(&self, index: u8) -> u64 {
        match index & 0xF {
            0 => self.rax,
            1 => self.rcx,
            2 => self.rdx,
            3 => self.rbx,
            4 => self.rsp,
            5 => self.rbp,
            6 => self.rsi,
            7 => self.rdi,
            8 => self.r8,
            9 => self.r9,
            10 => self.r10,
            11 => self.r11,
            12 => self.r12,
            13 => self.r13,
            14 => self.r14,
            _ => self.r15,
        }
    }

    fn slot(&mut self, index: u8) -> &mut u64 {
        match index & 0xF {
            0 => &mut self.rax,
            1 => &mut self.rcx,
            2 => &mut self.rdx,
            3 => &mut self.rbx,
            4 => &mut self.rsp,
            5 => &mut self.rbp,
            6 => &mut self.rsi,
            7 => &mut self.rdi,
            8 => &mut self.r8,
            9 => &mut self.r9,
            10 => &mut self.r10,
            11 => &mut self.r11,
            12 => &mut self.r12,
            13 => &mut self.r13,
            14 => &mut self.r14,
            _ => &mut self.r15,
        }
    }

    /// Replaces the whole 64-bit register `index`.
    pub fn set(&mut self, index: u8, value: u64) {
        *self.slot(index) = value;
    }

    /// The low `size` bytes (1, 2, 4; anything else means 8) of register `index`.
    pub fn get_sized(&self, index: u8, size: u8) -> u64 {
        self.get(index) & size_mask(size)
    }

    /// Writes the low `size` bytes of `value` to register `index` with x86 semantics: a 4-byte
    /// write zero-extends to 64 bits, a 1- or 2-byte write merges into the old value, any other
    /// size replaces the whole register. A 1-byte write here is the REX form (SPL..DIL for 4–7);
    /// use [`Self::set8_legacy`] for the AH..BH forms.
    pub fn set_sized(&mut self, index: u8, size: u8, value: u64) {
        let slot = self.slot(index);
        *slot = match size {
            1 | 2 => {
                let mask = size_mask(size);
                (*slot & !mask) | (value & mask)
            }
            4 => value & 0xFFFF_FFFF,
            _ => value,
        };
    }

    /// Reads 8-bit register `index` as encoded without REX: 0–3 are AL, CL, DL, BL; 4–7 are
    /// AH, CH, DH, BH (bits 8–15 of RAX, RCX, RDX, RBX). Only the low three bits count.
    pub fn get8_legacy(&self, index: u8) -> u8 {
        let index = index & 7;
        if index < 4 {
            self.get(index) as u8
        } else {
            (self.get(index - 4) >> 8) as u8
        }
    }

    /// Writes 8-bit register `index` as encoded without REX (see [`Self::get8_legacy`]).
    pub fn set8_legacy(&mut self, index: u8, value: u8) {
        let index = index & 7;
        if index < 4 {
            self.set_sized(index, 1, u64::from(value));
        } else {
            let slot = self.slot(index - 4);
            *slot = (*slot & !0xFF00) | (u64::from(value) << 8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_follows_x86() {
        let mut regs = GuestRegisters::default();
        for index in 0..16u8 {
            regs.set(index, 0x100 + u64::from(index));
        }
        assert_eq!(regs.rax, 0x100);
        assert_eq!(regs.rcx, 0x101);
        assert_eq!(regs.rdx, 0x102);
        assert_eq!(regs.rbx, 0x103);
        assert_eq!(regs.rsp, 0x104);
        assert_eq!(regs.rbp, 0x105);
        assert_eq!(regs.rsi, 0x106);
        assert_eq!(regs.rdi, 0x107);
        assert_eq!(regs.r8, 0x108);
        assert_eq!(regs.r15, 0x10F);
        for index in 0..16u8 {
            assert_eq!(regs.get(index), 0x100 + u64::from(index));
        }
        // Out-of-range numbers wrap to the low four bits instead of panicking.
        assert_eq!(regs.get(0x13), regs.rbx);
    }

    #[test]
    fn sized_writes_follow_x86() {
        let mut regs = GuestRegisters {
            rax: 0x1122_3344_5566_7788,
            ..Default::default()
        };
        regs.set_sized(0, 4, 0xAABB_CCDD_EEFF);
        assert_eq!(regs.rax, 0xCCDD_EEFF, "32-bit writes zero-extend");
        regs.rax = 0x1122_3344_5566_7788;
        regs.set_sized(0, 2, 0xABCD);
        assert_eq!(regs.rax, 0x1122_3344_5566_ABCD, "16-bit writes merge");
        regs.set_sized(0, 1, 0x1EF);
        assert_eq!(regs.rax, 0x1122_3344_5566_ABEF, "8-bit writes merge");
        regs.set_sized(0, 8, 7);
        assert_eq!(regs.rax, 7);
        assert_eq!(regs.get_sized(0, 1), 7);
        regs.rsi = 0xFFFF;
        regs.set_sized(6, 1, 0); // SIL with REX
        assert_eq!(regs.rsi, 0xFF00);
    }

    #[test]
    fn legacy_high_bytes() {
        let mut regs = GuestRegisters {
            rax: 0x1234,
            rbx: 0xFFFF_FFFF_FFFF_FFFF,
            ..Default::default()
        };
        assert_eq!(regs.get8_legacy(0), 0x34); // AL
        assert_eq!(regs.get8_legacy(4), 0x12); // AH
        regs.set8_legacy(7, 0x00); // BH
        assert_eq!(regs.rbx, 0xFFFF_FFFF_FFFF_00FF);
        regs.set8_legacy(3, 0x00); // BL
        assert_eq!(regs.rbx, 0xFFFF_FFFF_FFFF_0000);
        regs.set8_legacy(5, 0xAB); // CH
        assert_eq!(regs.rcx, 0xAB00);
        assert_eq!(regs.rsp, 0, "AH..BH never touch RSP..RDI");
    }
}
