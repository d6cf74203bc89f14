//! The ACPI fixed-hardware power-management block (ACPI 6.5 §4.8, "ACPI Hardware
//! Specification": PM1 event and control registers, §4.8.3, and the power-management timer,
//! §4.8.3.3) at one base port, laid out as the guest's FADT describes it:
//!
//! | offset | register    | size | behaviour                                               |
//! |--------|-------------|------|---------------------------------------------------------|
//! | +0     | PM1a_STS    | 2    | write 1 to clear; TMR_STS (bit 0) sets when timer bit 23 toggles |
//! | +2     | PM1a_EN     | 2    | read/write (defined enable bits only)                    |
//! | +4     | PM1a_CNT    | 2    | SCI_EN (bit 0) reads 1; SLP_TYP (bits 10–12) stored; SLP_EN (bit 13) write-only |
//! | +6     | (reserved)  | 2    | reads 0, writes ignored                                  |
//! | +8     | PM_TMR      | 4    | 24-bit count at [`PM_TIMER_HZ`], read-only              |
//!
//! Accesses of 1, 2 or 4 bytes at any offset compose or split bytes as hardware would: a
//! 4-byte read at +0 returns STS in the low half and EN in the high half; a 1-byte write to +5
//! changes only PM1a_CNT's high byte. Bytes beyond the block (+12 on) read 0xFF and ignore
//! writes; other access sizes read 0 and ignore writes.
//!
//! A PM1a_CNT write with SLP_EN set and SLP_TYP = [`SLP_TYP_S5`] (the DSDT's `\_S5` value) is a
//! power-off request ([`PmEffect::PowerOff`]). Other SLP_TYP values with SLP_EN (S1–S4, which
//! the DSDT does not offer) are ignored. No SCI is ever raised.

/// The PM timer's rate in Hz.
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// SLP_TYP value the DSDT's `\_S5` package names.
pub const SLP_TYP_S5: u16 = 5;
/// Bytes the block decodes.
pub const PM_BLOCK_LEN: u16 = 12;

const STS_OFFSET: u16 = 0;
const EN_OFFSET: u16 = 2;
const CNT_OFFSET: u16 = 4;
const TMR_OFFSET: u16 = 8;

const STS_TMR: u16 = 1 << 0;
/// Defined PM1_EN bits: TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN, RTC_EN, PCIEXP_WAKE_DIS.
const EN_DEFINED: u16 = 0x4721;
const CNT_SCI_EN: u16 = 1 << 0;
/// Stored PM1_CNT bits: BM_RLD and SLP_TYP (GBL_RLS and SLP_EN are write-only).
const CNT_STORED: u16 = 0x1C02;
const CNT_SLP_EN: u16 = 1 << 13;

/// What a write asks of the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmEffect {
    /// Nothing beyond the register update.
    None,
    /// The guest entered S5: power the partition off.
    PowerOff,
}

/// The PM1a event/control registers and the PM timer.
#[derive(Clone, Debug)]
pub struct AcpiPm {
    tsc_hz: u64,
    sts: u16,
    en: u16,
    cnt: u16,
    /// Timer bit-23 half-periods seen, for TMR_STS.
    timer_epoch: u64,
}

impl AcpiPm {
    /// A PM block whose timer is derived from a guest TSC of `tsc_hz` (0 is taken as 1).
    pub fn new(tsc_hz: u64) -> AcpiPm {
        AcpiPm {
            tsc_hz: tsc_hz.max(1),
            sts: 0,
            en: 0,
            cnt: 0,
            timer_epoch: 0,
        }
    }

    /// PM timer ticks since guest TSC 0 (not wrapped).
    fn timer_ticks(&self, now: u64) -> u64 {
        let t = u128::from(now) * u128::from(PM_TIMER_HZ) / u128::from(self.tsc_hz);
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// Sets TMR_STS when the timer's bit 23 has changed since last looked at.
    fn update_timer_status(&mut self, now: u64) {
        let epoch = self.timer_ticks(now) >> 23;
        if epoch != self.timer_epoch {
            self.timer_epoch = epoch;
            self.sts |= STS_TMR;
        }
    }

    /// The byte at block offset `offset`, or None outside the block.
    fn byte(&self, offset: u16, now: u64) -> Option<u8> {
        let timer = (self.timer_ticks(now) & 0x00FF_FFFF) as u32;
        let (value, shift) = match offset {
            0..=1 => (u32::from(self.sts), offset - STS_OFFSET),
            2..=3 => (u32::from(self.en), offset - EN_OFFSET),
            4..=5 => (
                u32::from((self.cnt & CNT_STORED) | CNT_SCI_EN),
                offset - CNT_OFFSET,
            ),
            6..=7 => (0, 0),
            8..=11 => (timer, offset - TMR_OFFSET),
            _ => return None,
        };
        Some((value >> (8 * shift)) as u8)
    }

    /// A guest read of `size` (1, 2 or 4) bytes at `offset` from the block's base.
    pub fn read(&mut self, offset: u16, size: u8, now: u64) -> u32 {
        if !matches!(size, 1 | 2 | 4) {
            return 0;
        }
        self.update_timer_status(now);
        (0..u16::from(size)).fold(0, |acc, i| {
            let byte = offset
                .checked_add(i)
                .and_then(|o| self.byte(o, now))
                .unwrap_or(0xFF);
            acc | u32::from(byte) << (8 * i)
        })
    }

    /// A guest write of `size` (1, 2 or 4) bytes at `offset` from the block's base.
    pub fn write(&mut self, offset: u16, size: u8, value: u32, now: u64) -> PmEffect {
        if !matches!(size, 1 | 2 | 4) {
            return PmEffect::None;
        }
        self.update_timer_status(now);
        // Per 16-bit register: the bytes written (value, byte-enable mask).
        let mut regs = [(0u16, 0u16); 3];
        for i in 0..u16::from(size) {
            let Some(o) = offset.checked_add(i) else {
                break;
            };
            let byte = u16::from((value >> (8 * i)) as u8);
            let slot = match o {
                0..=5 => usize::from(o / 2),
                _ => continue, // reserved, timer, beyond the block
            };
            let shift = 8 * (o % 2);
            regs[slot].0 |= byte << shift;
            regs[slot].1 |= 0xFF << shift;
        }
        let [(sts, sts_mask), (en, en_mask), (cnt, cnt_mask)] = regs;
        self.sts &= !(sts & sts_mask);
        self.en = (self.en & !en_mask) | (en & en_mask & EN_DEFINED);
        if cnt_mask == 0 {
            return PmEffect::None;
        }
        let written = (self.cnt & !cnt_mask) | (cnt & cnt_mask);
        self.cnt = written & CNT_STORED;
        let slp_typ = (written >> 10) & 7;
        if cnt & cnt_mask & CNT_SLP_EN != 0 && slp_typ == SLP_TYP_S5 {
            PmEffect::PowerOff
        } else {
            PmEffect::None
        }
    }
}

impl crate::devices::device::Device for AcpiPm {
    fn read(&mut self, at: crate::devices::device::Register, now: u64) -> u64 {
        let offset = at.port_offset();
        u64::from(AcpiPm::read(self, offset, at.size, now))
    }

    fn write(
        &mut self,
        at: crate::devices::device::Register,
        value: u64,
        now: u64,
    ) -> crate::devices::device::Effect {
        let offset = at.port_offset();
        match AcpiPm::write(self, offset, at.size, value as u32, now) {
            PmEffect::PowerOff => crate::devices::device::Effect::PowerOff,
            PmEffect::None => crate::devices::device::Effect::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TSC_HZ: u64 = 2_100_000_000;

    #[test]
    fn control_and_power_off() {
        let mut pm = AcpiPm::new(TSC_HZ);
        assert_eq!(pm.read(CNT_OFFSET, 2, 0), 1, "SCI_EN reads 1");
        // Linux's S5: SLP_TYP written, then SLP_EN with it.
        let typ = SLP_TYP_S5 << 10;
        assert_eq!(pm.write(CNT_OFFSET, 2, u32::from(typ), 0), PmEffect::None);
        assert_eq!(pm.read(CNT_OFFSET, 2, 0), u32::from(typ | 1));
        let off = u32::from(typ | CNT_SLP_EN);
        assert_eq!(pm.write(CNT_OFFSET, 2, off, 0), PmEffect::PowerOff);
        assert_eq!(
            pm.read(CNT_OFFSET, 2, 0) & 0x2000,
            0,
            "SLP_EN is write-only"
        );
        // Other sleep types are ignored.
        for typ in [0u16, 1, 3, 4, 7] {
            let v = u32::from(typ << 10 | CNT_SLP_EN);
            assert_eq!(pm.write(CNT_OFFSET, 2, v, 0), PmEffect::None, "{typ}");
        }
        // A byte write to the high byte, with SLP_TYP stored from before.
        pm.write(CNT_OFFSET, 2, u32::from(typ), 0);
        assert_eq!(
            pm.write(CNT_OFFSET + 1, 1, 0x20 | 0x14, 0),
            PmEffect::PowerOff
        );
        // A 4-byte write at +2 covers EN and CNT.
        assert_eq!(
            pm.write(EN_OFFSET, 4, u32::from(typ | CNT_SLP_EN) << 16, 0),
            PmEffect::PowerOff
        );
    }

    #[test]
    fn status_is_write_one_to_clear() {
        let mut pm = AcpiPm::new(TSC_HZ);
        let bit23 = (1u64 << 23) * TSC_HZ / PM_TIMER_HZ + 1;
        assert_eq!(
            pm.read(STS_OFFSET, 2, bit23) & 1,
            1,
            "TMR_STS after bit 23 toggles"
        );
        pm.write(STS_OFFSET, 2, 0xFFFE, bit23);
        assert_eq!(pm.read(STS_OFFSET, 2, bit23) & 1, 1, "writing 0 keeps it");
        pm.write(STS_OFFSET, 1, 0x01, bit23);
        assert_eq!(pm.read(STS_OFFSET, 2, bit23), 0);
    }

    #[test]
    fn enable_register_and_composition() {
        let mut pm = AcpiPm::new(TSC_HZ);
        pm.write(EN_OFFSET, 2, 0xFFFF, 0);
        assert_eq!(pm.read(EN_OFFSET, 2, 0), u32::from(EN_DEFINED));
        assert_eq!(pm.read(STS_OFFSET, 4, 0), u32::from(EN_DEFINED) << 16);
        assert_eq!(pm.read(EN_OFFSET + 1, 1, 0), 0x47);
        assert_eq!(
            pm.read(EN_OFFSET + 1, 2, 0),
            0x0147,
            "EN high byte, CNT low byte"
        );
        pm.write(EN_OFFSET + 1, 1, 0, 0);
        assert_eq!(pm.read(EN_OFFSET, 2, 0), 0x21);
        assert_eq!(pm.read(6, 2, 0), 0, "reserved");
        pm.write(6, 2, 0xFFFF, 0);
        assert_eq!(pm.read(6, 2, 0), 0);
    }

    #[test]
    fn malformed_accesses() {
        let mut pm = AcpiPm::new(0);
        assert_eq!(pm.read(12, 1, 0), 0xFF);
        assert_eq!(pm.read(10, 4, 0) >> 16, 0xFFFF, "half outside the block");
        assert_eq!(pm.read(u16::MAX, 4, u64::MAX), 0xFFFF_FFFF);
        for size in [0, 3, 5, 8, 255] {
            assert_eq!(pm.read(0, size, 0), 0);
            assert_eq!(pm.write(CNT_OFFSET, size, 0x3400, 0), PmEffect::None);
        }
        assert_eq!(pm.write(u16::MAX, 4, u32::MAX, u64::MAX), PmEffect::None);
        assert_eq!(pm.write(TMR_OFFSET, 4, 0, 0), PmEffect::None);
    }

    #[test]
    fn timer_is_24_bit_and_read_only() {
        let mut pm = AcpiPm::new(PM_TIMER_HZ);
        assert_eq!(pm.read(TMR_OFFSET, 4, 0x00FF_FFFF), 0x00FF_FFFF);
        assert_eq!(pm.read(TMR_OFFSET, 4, 0x0100_0005), 5, "wraps at 2^24");
        pm.write(TMR_OFFSET, 4, 0, 0x1234);
        assert_eq!(pm.read(TMR_OFFSET, 4, 0x1234), 0x1234);
        assert_eq!(pm.read(TMR_OFFSET + 1, 2, 0x12_3456), 0x1234);
        assert_eq!(pm.read(TMR_OFFSET + 3, 1, 0x12_3456), 0);
    }

    /// Like Linux's PM-timer TSC calibration: count timer ticks over a TSC window.
    #[test]
    fn calibration_loop_matches_tsc() {
        let mut pm = AcpiPm::new(TSC_HZ);
        let mut now = 55_555_555u64;
        let mut prev = pm.read(TMR_OFFSET, 4, now);
        let (start_tsc, mut ticks) = (now, 0u64);
        // About 50 ms of 1 µs polls.
        while ticks < PM_TIMER_HZ / 20 {
            now += TSC_HZ / 1_000_000;
            let v = pm.read(TMR_OFFSET, 4, now);
            ticks += u64::from(v.wrapping_sub(prev) & 0x00FF_FFFF);
            prev = v;
        }
        let khz = (now - start_tsc) * PM_TIMER_HZ / ticks / 1000;
        let want = TSC_HZ / 1000;
        assert!(khz.abs_diff(want) * 1000 <= want, "{khz} kHz");
    }

    proptest! {
        #[test]
        fn never_panics(
            hz in any::<u64>(),
            ops in proptest::collection::vec(
                (any::<bool>(), prop_oneof![0u16..16, any::<u16>()],
                 prop_oneof![Just(1u8), Just(2), Just(4), any::<u8>()], any::<u32>(), any::<u64>()),
                0..200),
        ) {
            let mut pm = AcpiPm::new(hz);
            for (is_read, offset, size, value, now) in ops {
                if is_read {
                    let v = pm.read(offset, size, now);
                    if size == 1 { prop_assert!(v <= 0xFF); }
                    if size == 2 { prop_assert!(v <= 0xFFFF); }
                } else {
                    pm.write(offset, size, value, now);
                }
            }
        }
    }
}
