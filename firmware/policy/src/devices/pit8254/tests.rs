//! The 8254 model under Linux's own calibration loops, every mode, and malformed accesses.
use super::*;
use proptest::prelude::*;

const TSC_HZ: u64 = 2_500_000_000;

/// A guest whose port accesses each cost `io` TSC ticks.
struct Guest {
    pit: Pit8254,
    now: u64,
    io: u64,
}

impl Guest {
    fn inb(&mut self, port: u16) -> u8 {
        self.now += self.io;
        if port == 0x61 {
            self.pit.read_port61(self.now)
        } else {
            self.pit.read(port - 0x40, self.now)
        }
    }
    fn outb(&mut self, value: u8, port: u16) {
        self.now += self.io;
        if port == 0x61 {
            self.pit.write_port61(value, self.now)
        } else {
            self.pit.write(port - 0x40, value, self.now)
        }
    }
    fn get_cycles(&mut self) -> u64 {
        self.now += 20;
        self.now
    }
    fn verify_msb(&mut self, val: u8) -> bool {
        self.inb(0x42);
        self.inb(0x42) == val
    }
    fn expect_msb(&mut self, val: u8) -> Option<(u64, u64)> {
        let (mut tsc, mut prev) = (0, 0);
        let mut count = 0;
        while count < 50_000 {
            if !self.verify_msb(val) {
                break;
            }
            prev = tsc;
            tsc = self.get_cycles();
            count += 1;
        }
        let delta = self.get_cycles() - prev;
        (count > 5).then_some((tsc, delta))
    }
}

/// Linux's quick_pit_calibrate, step for step; returns kHz.
fn quick_pit_calibrate(g: &mut Guest) -> Option<u64> {
    let v = g.inb(0x61);
    g.outb((v & !0x02) | 0x01, 0x61);
    g.outb(0xB0, 0x43);
    g.outb(0xFF, 0x42);
    g.outb(0xFF, 0x42);
    g.verify_msb(0);
    let max_iter = 50 * PIT_HZ / 1000 / 256;
    let (tsc, d1) = g.expect_msb(0xFF)?;
    for i in 1..=max_iter {
        let (t, d2) = g.expect_msb((0xFF - i) as u8)?;
        let delta = t - tsc;
        if i == 1 && d1 + d2 >= (delta * max_iter) >> 11 {
            return None;
        }
        if d1 + d2 >= delta >> 11 {
            continue;
        }
        if !g.verify_msb((0xFE - i) as u8) {
            return None;
        }
        return Some(delta * PIT_HZ / (i * 256 * 1000));
    }
    None
}

/// Linux's pit_calibrate_tsc(CAL_LATCH, CAL_MS, CAL_PIT_LOOPS); returns kHz.
fn pit_calibrate_tsc(g: &mut Guest) -> Option<u64> {
    let latch = PIT_HZ / (1000 / 10);
    let v = g.inb(0x61);
    g.outb((v & !0x02) | 0x01, 0x61);
    g.outb(0xB0, 0x43);
    g.outb((latch & 0xFF) as u8, 0x42);
    g.outb((latch >> 8) as u8, 0x42);
    let t1 = g.get_cycles();
    let (mut tsc, mut t2) = (t1, t1);
    let (mut min, mut max, mut loops) = (u64::MAX, 0, 0);
    while g.inb(0x61) & 0x20 == 0 {
        t2 = g.get_cycles();
        let delta = t2 - tsc;
        tsc = t2;
        min = min.min(delta);
        max = max.max(delta);
        loops += 1;
    }
    (loops >= 1000 && max <= 10 * min).then_some((t2 - t1) / 10)
}

fn close(khz: u64) -> bool {
    let want = TSC_HZ / 1000;
    khz.abs_diff(want) * 1000 <= want
}

#[test]
fn linux_quick_pit_calibration() {
    for io in [1_000, 2_500, 7_000] {
        let mut g = Guest {
            pit: Pit8254::new(TSC_HZ),
            now: 123_456_789,
            io,
        };
        let khz = quick_pit_calibrate(&mut g).expect("calibration succeeds");
        assert!(close(khz), "io {io}: {khz} kHz");
    }
}

#[test]
fn linux_slow_pit_calibration() {
    let mut g = Guest {
        pit: Pit8254::new(TSC_HZ),
        now: 987_654_321,
        io: 2_000,
    };
    let khz = pit_calibrate_tsc(&mut g).expect("calibration succeeds");
    assert!(close(khz), "{khz} kHz");
}

fn ticks(n: u64) -> u64 {
    (n * TSC_HZ).div_ceil(PIT_HZ)
}

#[test]
fn mode0_one_shot_and_latch() {
    let mut pit = Pit8254::new(TSC_HZ);
    pit.write(3, 0x30, 0); // ch0, LSB/MSB, mode 0
    pit.write(0, 0x00, 0);
    pit.write(0, 0x01, 0); // 256
    assert_eq!(pit.next_irq0(0), Some(ticks(256)));
    pit.write(3, 0x00, ticks(6)); // latch
    assert_eq!(pit.read(0, ticks(100)), 250);
    assert_eq!(pit.read(0, ticks(100)), 0);
    // Live again.
    assert_eq!(pit.read(0, ticks(100)), 156);
    assert_eq!(pit.read(0, ticks(100)), 0);
    assert_eq!(pit.irq0_edges_since_last(ticks(255)), 0);
    assert_eq!(pit.irq0_edges_since_last(ticks(300)), 1);
    assert_eq!(pit.irq0_edges_since_last(ticks(90_000)), 0);
    assert_eq!(pit.next_irq0(ticks(300)), None);
    // Status via read-back: OUT high, mode 0, access 3.
    pit.write(3, 0xE2, ticks(300));
    assert_eq!(pit.read(0, ticks(300)), 0x80 | 0x30);
}

#[test]
fn mode2_periodic_irq0() {
    let mut pit = Pit8254::new(TSC_HZ);
    assert_eq!(pit.next_irq0(0), None, "unprogrammed");
    pit.write(3, 0x34, 1000);
    pit.write(0, 0x9C, 1000);
    pit.write(0, 0x2E, 1000); // 11932: ~100 Hz
    let start = 1000;
    let next = pit.next_irq0(start).unwrap();
    assert!(next > start);
    let one_second = start + TSC_HZ;
    let edges = pit.irq0_edges_since_last(one_second);
    assert!((99..=100).contains(&edges), "{edges}");
    assert_eq!(pit.irq0_edges_since_last(one_second), 0);
    let n = pit.next_irq0(one_second).unwrap();
    assert_eq!(pit.irq0_edges_since_last(n - 1), 0);
    assert_eq!(pit.irq0_edges_since_last(n), 1);
    // Reprogramming keeps edges already passed.
    let later = n + TSC_HZ / 20;
    pit.write(3, 0x30, later);
    assert!(pit.irq0_edges_since_last(later) >= 4);
}

#[test]
fn mode4_one_shot_as_linux_clockevents() {
    let mut pit = Pit8254::new(TSC_HZ);
    pit.write(3, 0x38, 0); // ch0, LSB/MSB, mode 4
    pit.write(0, 100, 0);
    pit.write(0, 0, 0);
    assert_eq!(
        pit.next_irq0(0),
        Some(ticks(101)),
        "OUT low at TC, high one tick later"
    );
    assert_eq!(pit.irq0_edges_since_last(ticks(100)), 0);
    assert_eq!(pit.irq0_edges_since_last(ticks(101)), 1);
    assert_eq!(pit.next_irq0(ticks(101)), None);
    // Re-arming with a new count fires again.
    pit.write(0, 50, ticks(200));
    pit.write(0, 0, ticks(200));
    assert_eq!(pit.next_irq0(ticks(200)), Some(ticks(251)));
}

#[test]
fn modes_1_and_5_start_on_gate_edge() {
    let mut pit = Pit8254::new(TSC_HZ);
    pit.write(3, 0x92, 0); // ch2, LSB only, mode 1
    pit.write(2, 40, 0);
    assert_eq!(
        pit.read_port61(ticks(10)) & 0x20,
        0x20,
        "OUT high until triggered"
    );
    assert_eq!(pit.read(2, ticks(10)), 40);
    pit.write_port61(0x01, ticks(10));
    assert_eq!(
        pit.read_port61(ticks(20)) & 0x20,
        0,
        "OUT low while counting"
    );
    assert_eq!(pit.read(2, ticks(20)), 30);
    pit.write_port61(0x00, ticks(25)); // GATE low does not stop mode 1
    assert_eq!(pit.read_port61(ticks(50)) & 0x20, 0x20);
    pit.write(3, 0x9A, ticks(50)); // mode 5
    pit.write(2, 10, ticks(50));
    pit.write_port61(0x01, ticks(60));
    assert_eq!(pit.read_port61(ticks(70)) & 0x20, 0, "strobe at TC");
    assert_eq!(pit.read_port61(ticks(71)) & 0x20, 0x20);
}

#[test]
fn mode3_square_wave_out() {
    let mut pit = Pit8254::new(TSC_HZ);
    pit.write_port61(0x01, 0);
    pit.write(3, 0xB6, 0); // ch2, LSB/MSB, mode 3
    pit.write(2, 10, 0);
    pit.write(2, 0, 0);
    assert_eq!(pit.read_port61(ticks(2)) & 0x20, 0x20);
    assert_eq!(pit.read_port61(ticks(7)) & 0x20, 0);
    assert_eq!(pit.read_port61(ticks(12)) & 0x20, 0x20);
    // GATE low forces OUT high.
    pit.write_port61(0x00, ticks(17));
    assert_eq!(pit.read_port61(ticks(18)) & 0x21, 0x20);
}

#[test]
fn gate_pauses_mode0_on_channel2() {
    let mut pit = Pit8254::new(TSC_HZ);
    pit.write(3, 0x90, 0); // ch2, LSB only, mode 0
    pit.write(2, 100, 0);
    assert_eq!(pit.read(2, ticks(50)), 100, "GATE low: not counting");
    pit.write_port61(0x03, ticks(50));
    assert_eq!(pit.read(2, ticks(60)), 90);
    pit.write_port61(0x02, ticks(60));
    assert_eq!(pit.read(2, ticks(500)), 90);
    assert_eq!(pit.read_port61(ticks(500)) & 0x23, 0x02);
    pit.write_port61(0x03, ticks(500));
    assert_eq!(pit.read_port61(ticks(600)) & 0x20, 0x20);
}

#[test]
fn port61_refresh_toggles_and_bits_stick() {
    let mut pit = Pit8254::new(TSC_HZ);
    pit.write_port61(0xFE, 0);
    let a = pit.read_port61(0);
    let b = pit.read_port61(0);
    assert_eq!((a ^ b) & 0x10, 0x10);
    assert_eq!(a & 0xCF, 0x0E);
}

#[test]
fn access_modes_and_readback() {
    let mut pit = Pit8254::new(TSC_HZ);
    pit.write(3, 0x52, 0); // ch1, LSB only, mode 1: waits for a GATE edge that never comes
    pit.write(1, 0x40, 0);
    assert_eq!(pit.read(1, ticks(1000)), 0x40);
    pit.write(3, 0x64, 0); // ch1, MSB only, mode 2
    pit.write(1, 0x01, 0); // 256
    assert_eq!(pit.read(1, ticks(56)), 0x00, "MSB of 200");
    // Read-back of ch1 count and status: status first, then count.
    pit.write(3, 0xC4, ticks(56));
    assert_eq!(pit.read(1, ticks(90)), 0x80 | 0x20 | 0x04);
    assert_eq!(pit.read(1, ticks(90)), 0x00);
    // BCD is stored in status but counting stays binary.
    pit.write(3, 0x31, 0);
    pit.write(3, 0xE2, 0);
    assert_eq!(pit.read(0, 0) & 0x41, 0x41, "null count and BCD");
    // Modes 6 and 7 alias 2 and 3.
    pit.write(3, 0x3E, 0);
    pit.write(3, 0xE2, 0);
    assert_eq!(pit.read(0, 0) & 0x0E, 0x06);
}

#[test]
fn malformed_accesses_are_defined() {
    let mut pit = Pit8254::new(0);
    assert_eq!(pit.read(3, 0), 0xFF);
    assert_eq!(pit.read(4, 0), 0xFF);
    assert_eq!(pit.read(u16::MAX, u64::MAX), 0xFF);
    pit.write(9, 0xFF, u64::MAX);
    pit.write(3, 0x34, u64::MAX);
    pit.write(0, 0, u64::MAX);
    pit.write(0, 0, u64::MAX);
    assert_eq!(pit.next_irq0(u64::MAX), None);
    let _ = pit.irq0_edges_since_last(0);
    let _ = pit.irq0_edges_since_last(u64::MAX);
}

proptest! {
    #[test]
    fn never_panics(
        hz in prop_oneof![Just(0u64), Just(1), Just(TSC_HZ), any::<u64>()],
        ops in proptest::collection::vec((0u8..6, 0u16..6, any::<u8>(), any::<u64>()), 0..200),
    ) {
        let mut pit = Pit8254::new(hz);
        for (kind, offset, value, now) in ops {
            match kind {
                0 => { pit.read(offset, now); }
                1 => pit.write(offset, value, now),
                2 => { pit.read_port61(now); }
                3 => pit.write_port61(value, now),
                4 => { pit.irq0_edges_since_last(now); }
                _ => { pit.next_irq0(now); }
            }
        }
    }
}
