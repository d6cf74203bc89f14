//! A Motorola MC146818 CMOS real-time clock (MC146818A data sheet) at ports 0x70 (index) and
//! 0x71 (data), as a PC exposes it.
//!
//! The time is the Unix time passed at construction plus the guest time elapsed since guest TSC
//! 0 (`now / tsc_hz` whole seconds), in UTC. Registers 0x00–0x09 report seconds, minutes,
//! hours, day of week (1 = Sunday), day of month, month and two-digit year, in BCD or binary
//! and 12- or 24-hour form as register B's DM (bit 2) and 24/12 (bit 1) bits say; in 12-hour
//! form bit 7 of the hour marks PM.
//!
//! Simplifications: the clock never shows an update in progress (register A's UIP, bit 7,
//! always reads 0, so Linux's wait-for-UIP loop exits at once); writes to the time and date
//! registers are ignored (the guest cannot set the clock) but the alarm registers 0x01, 0x03
//! and 0x05 are stored; no interrupt (periodic, alarm, update) ever fires: register C reads 0,
//! register D reads 0x80 (valid RAM and time). Registers 0x0E–0x7F are plain NVRAM, zero at
//! start (no century byte is kept). The index port's bit 7 (NMI disable) is ignored; port 0x70
//! reads 0xFF, as the write-only index register does on a PC.

/// Register A's reset value: 32.768 kHz time base, 1024 Hz periodic rate.
const REG_A_DEFAULT: u8 = 0x26;
/// Register B's reset value: 24-hour, BCD.
const REG_B_DEFAULT: u8 = 0x02;
const REG_B_DM_BINARY: u8 = 0x04;
const REG_B_24H: u8 = 0x02;
/// Register D: valid RAM and time.
const REG_D_VRT: u8 = 0x80;

/// Days from 0000-03-01 (proleptic Gregorian) to 1970-01-01.
const EPOCH_SHIFT_DAYS: u64 = 719_468;
const DAYS_PER_ERA: u64 = 146_097;

/// A UTC calendar time as the RTC shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DateTime {
    year: u64,
    month: u8,
    day: u8,
    weekday: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl DateTime {
    /// The calendar time of `secs` seconds after 1970-01-01 00:00:00 UTC.
    fn from_unix(secs: u64) -> DateTime {
        let days = secs / 86_400;
        let rem = secs % 86_400;
        // Gregorian calendar by 400-year eras of years starting on 1 March.
        let shifted = days + EPOCH_SHIFT_DAYS;
        let era = shifted / DAYS_PER_ERA;
        let doe = shifted % DAYS_PER_ERA;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153; // 0 = March
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = era * 400 + yoe + u64::from(month <= 2);
        DateTime {
            year,
            month: month as u8,
            day: day as u8,
            // 1970-01-01 was a Thursday; 1 = Sunday.
            weekday: ((days + 4) % 7 + 1) as u8,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }
}

fn to_bcd(value: u8) -> u8 {
    (value / 10) << 4 | (value % 10)
}

/// The RTC and its 128 bytes of CMOS.
#[derive(Clone, Debug)]
pub struct CmosRtc {
    tsc_hz: u64,
    epoch_seconds: u64,
    index: u8,
    ram: [u8; 128],
}

impl CmosRtc {
    /// An RTC showing `epoch_seconds` (Unix time) at guest TSC 0, advancing with a guest TSC of
    /// `tsc_hz` (0 is taken as 1).
    pub fn new(tsc_hz: u64, epoch_seconds: u64) -> CmosRtc {
        let mut ram = [0; 128];
        ram[0x0A] = REG_A_DEFAULT;
        ram[0x0B] = REG_B_DEFAULT;
        CmosRtc {
            tsc_hz: tsc_hz.max(1),
            epoch_seconds,
            index: 0,
            ram,
        }
    }

    fn now_unix(&self, now: u64) -> u64 {
        self.epoch_seconds.saturating_add(now / self.tsc_hz)
    }

    /// A guest read of port 0x70 + `port_offset`: 1 reads the selected register, 0 and any
    /// other offset read 0xFF.
    pub fn read(&mut self, port_offset: u16, now: u64) -> u8 {
        match port_offset {
            1 => self.read_register(self.index, now),
            _ => 0xFF,
        }
    }

    /// A guest write to port 0x70 + `port_offset`: 0 selects a register (bit 7, NMI disable,
    /// ignored), 1 writes it; other offsets are ignored.
    pub fn write(&mut self, port_offset: u16, value: u8, _now: u64) {
        match port_offset {
            0 => self.index = value & 0x7F,
            1 => self.write_register(self.index, value),
            _ => {}
        }
    }

    fn read_register(&self, index: u8, now: u64) -> u8 {
        let b = self.ram[0x0B];
        let encode = |v: u8| {
            if b & REG_B_DM_BINARY != 0 {
                v
            } else {
                to_bcd(v)
            }
        };
        let time = || DateTime::from_unix(self.now_unix(now));
        match index {
            0x00 => encode(time().second),
            0x02 => encode(time().minute),
            0x04 => {
                let hour = time().hour;
                if b & REG_B_24H != 0 {
                    encode(hour)
                } else {
                    let pm = if hour >= 12 { 0x80 } else { 0 };
                    let h12 = match hour % 12 {
                        0 => 12,
                        h => h,
                    };
                    encode(h12) | pm
                }
            }
            0x06 => encode(time().weekday),
            0x07 => encode(time().day),
            0x08 => encode(time().month),
            0x09 => encode((time().year % 100) as u8),
            0x0A => self.ram[0x0A] & 0x7F, // UIP never set
            0x0C => 0,
            0x0D => REG_D_VRT,
            i => self.ram[usize::from(i & 0x7F)],
        }
    }

    fn write_register(&mut self, index: u8, value: u8) {
        match index {
            0x01 | 0x03 | 0x05 | 0x0B | 0x0E..=0x7F => self.ram[usize::from(index)] = value,
            0x0A => self.ram[0x0A] = value & 0x7F,
            _ => {} // time and date, C and D
        }
    }
}

impl crate::devices::device::Device for CmosRtc {
    fn read(&mut self, at: crate::devices::device::Register, now: u64) -> u64 {
        u64::from(CmosRtc::read(self, at.port_offset(), now))
    }

    fn write(
        &mut self,
        at: crate::devices::device::Register,
        value: u64,
        now: u64,
    ) -> crate::devices::device::Effect {
        let offset = at.port_offset();
        CmosRtc::write(self, offset, value as u8, now);
        crate::devices::device::Effect::None
    }

    fn byte_registers(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HZ: u64 = 1_000_000_000;
    /// 2026-12-01 00:00:00 UTC, a Tuesday.
    const DEC_2026: u64 = 1_796_083_200;

    fn reg(rtc: &mut CmosRtc, index: u8, now: u64) -> u8 {
        rtc.write(0, index | 0x80, now);
        rtc.read(1, now)
    }

    fn regs(rtc: &mut CmosRtc, now: u64) -> [u8; 7] {
        [0, 2, 4, 6, 7, 8, 9].map(|i| reg(rtc, i, now))
    }

    #[test]
    fn date_in_bcd_and_binary() {
        let mut rtc = CmosRtc::new(HZ, DEC_2026);
        assert_eq!(regs(&mut rtc, 0), [0, 0, 0, 3, 0x01, 0x12, 0x26]);
        // 13:45:59 later the same day.
        let later = (13 * 3600 + 45 * 60 + 59) * HZ;
        assert_eq!(
            regs(&mut rtc, later),
            [0x59, 0x45, 0x13, 3, 0x01, 0x12, 0x26]
        );
        rtc.write(0, 0x0B, 0);
        rtc.write(1, REG_B_DEFAULT | REG_B_DM_BINARY, 0);
        assert_eq!(regs(&mut rtc, later), [59, 45, 13, 3, 1, 12, 26]);
    }

    #[test]
    fn twelve_hour_mode() {
        let mut rtc = CmosRtc::new(HZ, DEC_2026);
        rtc.write(0, 0x0B, 0);
        rtc.write(1, 0x00, 0); // BCD, 12-hour
        assert_eq!(reg(&mut rtc, 4, 0), 0x12, "midnight is 12 AM");
        assert_eq!(reg(&mut rtc, 4, 3600 * HZ), 0x01);
        assert_eq!(reg(&mut rtc, 4, 12 * 3600 * HZ), 0x92, "noon is 12 PM");
        assert_eq!(reg(&mut rtc, 4, 23 * 3600 * HZ), 0x91);
        rtc.write(0, 0x0B, 0);
        rtc.write(1, REG_B_DM_BINARY, 0); // binary, 12-hour
        assert_eq!(reg(&mut rtc, 4, 13 * 3600 * HZ), 0x81);
        assert_eq!(reg(&mut rtc, 4, 11 * 3600 * HZ), 11);
    }

    #[test]
    fn calendar_edges_and_leap_years() {
        let cases = [
            (0, (1970, 1, 1, 5)),
            (951_782_400, (2000, 2, 29, 3)), // 2000 is a leap year (÷400)
            (951_868_800, (2000, 3, 1, 4)),
            (1_709_164_800, (2024, 2, 29, 5)), // ÷4
            (4_107_542_400, (2100, 3, 1, 2)),  // 2100 is not (÷100): 28 Feb -> 1 Mar
            (4_107_456_000, (2100, 2, 28, 1)),
            (DEC_2026 - 1, (2026, 11, 30, 2)),
        ];
        for (secs, (y, m, d, wd)) in cases {
            let t = DateTime::from_unix(secs);
            assert_eq!((t.year, t.month, t.day, t.weekday), (y, m, d, wd), "{secs}");
        }
        assert_eq!(DateTime::from_unix(DEC_2026 - 1).second, 59);
    }

    #[test]
    fn status_registers() {
        let mut rtc = CmosRtc::new(HZ, DEC_2026);
        assert_eq!(reg(&mut rtc, 0x0A, 0), 0x26);
        rtc.write(1, 0xA6, 0); // guest tries to set UIP
        assert_eq!(reg(&mut rtc, 0x0A, 0) & 0x80, 0);
        assert_eq!(reg(&mut rtc, 0x0B, 0), 0x02);
        assert_eq!(reg(&mut rtc, 0x0C, 0), 0);
        assert_eq!(reg(&mut rtc, 0x0D, 0), 0x80);
        rtc.write(0, 0x0D, 0);
        rtc.write(1, 0, 0);
        assert_eq!(rtc.read(1, 0), 0x80, "D is read-only");
    }

    #[test]
    fn nvram_and_ignored_writes() {
        let mut rtc = CmosRtc::new(HZ, DEC_2026);
        for i in 0x0E..0x80u8 {
            assert_eq!(reg(&mut rtc, i, 0), 0);
            rtc.write(1, i ^ 0x5A, 0);
        }
        for i in 0x0E..0x80u8 {
            assert_eq!(reg(&mut rtc, i, 0), i ^ 0x5A);
        }
        rtc.write(0, 0x00, 0);
        rtc.write(1, 0x33, 0);
        assert_eq!(rtc.read(1, 0), 0, "seconds cannot be set");
        rtc.write(0, 0x01, 0);
        rtc.write(1, 0x33, 0);
        assert_eq!(rtc.read(1, 0), 0x33, "alarm is stored");
        assert_eq!(rtc.read(0, 0), 0xFF);
        assert_eq!(rtc.read(2, 0), 0xFF);
        rtc.write(7, 0x12, 0);
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let mut rtc = CmosRtc::new(0, u64::MAX);
        let _ = regs(&mut rtc, u64::MAX);
        let t = DateTime::from_unix(u64::MAX);
        assert!(t.month >= 1 && t.month <= 12 && t.day >= 1 && t.day <= 31);
    }

    proptest! {
        #[test]
        fn never_panics(
            hz in any::<u64>(), epoch in any::<u64>(),
            ops in proptest::collection::vec((any::<bool>(), 0u16..4, any::<u8>(), any::<u64>()), 0..200),
        ) {
            let mut rtc = CmosRtc::new(hz, epoch);
            for (is_read, offset, value, now) in ops {
                if is_read {
                    rtc.read(offset, now);
                } else {
                    rtc.write(offset, value, now);
                }
            }
        }

        #[test]
        fn fields_in_range(secs in any::<u64>()) {
            let t = DateTime::from_unix(secs);
            prop_assert!((1..=12).contains(&t.month));
            prop_assert!((1..=31).contains(&t.day));
            prop_assert!((1..=7).contains(&t.weekday));
            prop_assert!(t.hour < 24 && t.minute < 60 && t.second < 60);
        }
    }
}
