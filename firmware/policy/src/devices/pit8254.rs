//! An Intel 8254 programmable interval timer (Intel 8254 data sheet) at ports
//! 0x40–0x43, plus the bits of the PC's port 0x61 (NMI status and control) that it drives.
//!
//! The input clock is [`PIT_HZ`], derived from guest TSC ticks (`now`) with u128 arithmetic:
//! PIT tick `t = now * PIT_HZ / tsc_hz`. A count is loaded at the PIT tick of the write that
//! completes it (the data sheet's extra load cycle is not modelled); a count of 0 means 65536.
//!
//! Modelled: the control word (channel select, latch command, read-back command, access modes
//! LSB / MSB / LSB-then-MSB, modes 0–5 with 6 and 7 aliasing 2 and 3), latched and live count
//! reads, status reads, and GATE: channels 0 and 1 have GATE tied high; channel 2's GATE is
//! port 0x61 bit 0. Simplifications, all documented here: BCD (control word bit 0) is stored
//! and reported in the status byte but counting is binary; a new count written to a channel in
//! mode 2 or 3 restarts it at once instead of at the end of the current period; mode 3 count
//! reads are approximate for odd counts (OUT is exact: high for (N+1)/2, low for N/2 ticks).
//!
//! Port 0x61: bit 0 GATE2, bit 1 speaker data, bits 2–3 (SERR/IOCHK NMI disables) are stored
//! and read back; bit 4 (refresh) toggles on every read; bit 5 reads channel 2's OUT; bits 6–7
//! (NMI sources) read 0.

/// The 8254's input clock on a PC, in Hz.
pub const PIT_HZ: u64 = 1_193_182;

/// One of the three counters.
#[derive(Clone, Debug)]
struct Channel {
    mode: u8,
    /// Access mode (control word bits 4–5): 1 LSB, 2 MSB, 3 LSB then MSB.
    access: u8,
    bcd: bool,
    /// Count register value as loaded: 1..=65536.
    reload: u64,
    /// LSB-then-MSB writes: the LSB has been written, MSB next.
    write_msb_next: bool,
    write_lsb: u8,
    /// LSB-then-MSB reads: the MSB comes next (shared by latched and live reads).
    read_msb_next: bool,
    latched_count: Option<u16>,
    latched_status: Option<u8>,
    null_count: bool,
    /// A count has been loaded since the control word.
    has_count: bool,
    /// Modes 1 and 5: a GATE rising edge has started the count.
    triggered: bool,
    gate: bool,
    /// PIT tick at which counting (re)started, and ticks counted before it (modes 0/4 pause
    /// while GATE is low).
    start: u64,
    counted: u64,
    /// Rising edges of OUT already reported ([`Pit8254::irq0_edges_since_last`]), as the
    /// elapsed count of the current programming, and edges folded in from earlier ones.
    edges_seen_at: u64,
    edges_carried: u64,
}

impl Channel {
    fn new(gate: bool) -> Channel {
        Channel {
            mode: 0,
            access: 3,
            bcd: false,
            reload: 0x1_0000,
            write_msb_next: false,
            write_lsb: 0,
            read_msb_next: false,
            latched_count: None,
            latched_status: None,
            null_count: true,
            has_count: false,
            triggered: false,
            gate,
            start: 0,
            counted: 0,
            edges_seen_at: 0,
            edges_carried: 0,
        }
    }

    /// PIT ticks counted at tick `t`, or None when the counter is not counting at all.
    fn elapsed(&self, t: u64) -> Option<u64> {
        if !self.has_count {
            return None;
        }
        match self.mode {
            1 | 5 if !self.triggered => None,
            1 | 5 => Some(t.saturating_sub(self.start)),
            _ if self.gate => Some(self.counted.saturating_add(t.saturating_sub(self.start))),
            _ => Some(self.counted),
        }
    }

    /// Counting is in progress (time advances the count).
    fn running(&self) -> bool {
        self.has_count
            && match self.mode {
                1 | 5 => self.triggered,
                _ => self.gate,
            }
    }

    fn period(&self) -> u64 {
        self.reload.max(2)
    }

    fn out(&self, t: u64) -> bool {
        let n = self.reload;
        match (self.mode, self.elapsed(t)) {
            (0, None) => false,
            (0, Some(e)) => e >= n,
            (1, Some(e)) => e >= n,
            (2 | 3, Some(_)) if !self.gate => true,
            (2, Some(e)) => e % self.period() != self.period() - 1,
            (3, Some(e)) => e % self.period() < self.period().div_ceil(2),
            (4 | 5, Some(e)) => e != n,
            _ => true,
        }
    }

    fn count(&self, t: u64) -> u16 {
        let n = self.reload;
        let Some(e) = self.elapsed(t) else {
            return n as u16; // 65536 reads as 0
        };
        match self.mode {
            2 => (self.period() - e % self.period()) as u16,
            3 => {
                let period = self.period();
                let high = period.div_ceil(2);
                let p = e % period;
                let p = if p < high { p } else { p - high };
                (period & !1).saturating_sub(p.saturating_mul(2)) as u16
            }
            _ => n.wrapping_sub(e) as u16,
        }
    }

    /// Rising edges of OUT at elapsed counts 1..=e of the current programming.
    fn edges_upto(&self, e: u64) -> u64 {
        let n = self.reload;
        match self.mode {
            0 | 1 => u64::from(e >= n),
            2 | 3 => e / self.period(),
            _ => u64::from(e > n),
        }
    }

    /// Elapsed count of the next rising edge after `e`, if one will come.
    fn next_edge_after(&self, e: u64) -> Option<u64> {
        let n = self.reload;
        match self.mode {
            0 | 1 => (e < n).then_some(n),
            2 | 3 => (e / self.period())
                .checked_add(1)
                .and_then(|k| k.checked_mul(self.period())),
            _ => (e <= n).then(|| n + 1),
        }
    }

    /// Folds the edges up to tick `t` into the carry before the programming changes.
    fn fold_edges(&mut self, t: u64) {
        if let Some(e) = self.elapsed(t) {
            let new = self
                .edges_upto(e)
                .saturating_sub(self.edges_upto(self.edges_seen_at));
            self.edges_carried = self.edges_carried.saturating_add(new);
        }
        self.edges_seen_at = 0;
    }

    fn restart(&mut self, t: u64) {
        self.fold_edges(t);
        self.start = t;
        self.counted = 0;
    }

    fn status(&self, t: u64) -> u8 {
        (u8::from(self.out(t)) << 7)
            | (u8::from(self.null_count) << 6)
            | (self.access << 4)
            | (self.mode << 1)
            | u8::from(self.bcd)
    }

    fn control(&mut self, value: u8, t: u64) {
        self.fold_edges(t);
        let mode = (value >> 1) & 7;
        self.mode = if mode >= 6 { mode - 4 } else { mode };
        self.access = (value >> 4) & 3;
        self.bcd = value & 1 != 0;
        self.write_msb_next = false;
        self.read_msb_next = false;
        self.latched_count = None;
        self.latched_status = None;
        self.null_count = true;
        self.has_count = false;
        self.triggered = false;
        self.counted = 0;
    }

    fn latch(&mut self, t: u64) {
        if self.latched_count.is_none() {
            self.latched_count = Some(self.count(t));
        }
    }

    fn write_count(&mut self, value: u8, t: u64) {
        let n = match self.access {
            1 => u16::from(value),
            2 => u16::from(value) << 8,
            _ if !self.write_msb_next => {
                self.write_lsb = value;
                self.write_msb_next = true;
                if self.mode == 0 {
                    // Writing the first byte stops a mode 0 count (OUT low).
                    self.fold_edges(t);
                    self.has_count = false;
                }
                return;
            }
            _ => {
                self.write_msb_next = false;
                u16::from(self.write_lsb) | u16::from(value) << 8
            }
        };
        self.restart(t);
        self.reload = if n == 0 { 0x1_0000 } else { u64::from(n) };
        self.has_count = true;
        self.null_count = false;
        self.triggered = false;
    }

    fn read(&mut self, t: u64) -> u8 {
        if let Some(status) = self.latched_status.take() {
            return status;
        }
        let (value, from_latch) = match self.latched_count {
            Some(v) => (v, true),
            None => (self.count(t), false),
        };
        let (byte, done) = match self.access {
            1 => (value as u8, true),
            2 => ((value >> 8) as u8, true),
            _ if !self.read_msb_next => {
                self.read_msb_next = true;
                (value as u8, false)
            }
            _ => {
                self.read_msb_next = false;
                ((value >> 8) as u8, true)
            }
        };
        if from_latch && done {
            self.latched_count = None;
        }
        byte
    }

    fn set_gate(&mut self, gate: bool, t: u64) {
        if gate == self.gate {
            return;
        }
        if gate {
            match self.mode {
                1 | 5 if self.has_count => {
                    self.restart(t);
                    self.triggered = true;
                }
                2 | 3 => self.restart(t),
                _ => self.start = t,
            }
        } else if matches!(self.mode, 0 | 2 | 3 | 4) {
            self.counted = self.elapsed(t).unwrap_or(0);
        }
        self.gate = gate;
    }
}

/// The three 8254 channels and port 0x61.
#[derive(Clone, Debug)]
pub struct Pit8254 {
    tsc_hz: u64,
    channels: [Channel; 3],
    /// Port 0x61 bits 0–3 as written.
    port61: u8,
    refresh: bool,
}

impl Pit8254 {
    /// A PIT whose input clock is derived from a guest TSC of `tsc_hz` (0 is taken as 1).
    /// All channels start unprogrammed: no count, channel 0 raises no IRQ 0 until programmed.
    pub fn new(tsc_hz: u64) -> Pit8254 {
        Pit8254 {
            tsc_hz: tsc_hz.max(1),
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port61: 0,
            refresh: false,
        }
    }

    fn tick(&self, now: u64) -> u64 {
        let t = u128::from(now) * u128::from(PIT_HZ) / u128::from(self.tsc_hz);
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// The first guest TSC value at which the PIT clock has reached tick `t`.
    fn tsc_of_tick(&self, t: u64) -> Option<u64> {
        let num = u128::from(t) * u128::from(self.tsc_hz);
        u64::try_from(num.div_ceil(u128::from(PIT_HZ))).ok()
    }

    /// A guest read of port 0x40 + `port_offset`: channel counts or status (0..=2); the
    /// control port (3) and out-of-range offsets read 0xFF.
    pub fn read(&mut self, port_offset: u16, now: u64) -> u8 {
        let t = self.tick(now);
        match self.channels.get_mut(usize::from(port_offset)) {
            Some(channel) => channel.read(t),
            None => 0xFF,
        }
    }

    /// A guest write to port 0x40 + `port_offset`: a count byte (0..=2) or the control word
    /// (3); out-of-range offsets are ignored.
    pub fn write(&mut self, port_offset: u16, value: u8, now: u64) {
        let t = self.tick(now);
        match port_offset {
            0..=2 => self.channels[usize::from(port_offset)].write_count(value, t),
            3 => self.control(value, t),
            _ => {}
        }
    }

    fn control(&mut self, value: u8, t: u64) {
        let select = value >> 6;
        if select == 3 {
            // Read-back: bit 5 clear latches counts, bit 4 clear latches status, bits 1–3
            // select channels 0–2.
            for (i, channel) in self.channels.iter_mut().enumerate() {
                if value & (2 << i) == 0 {
                    continue;
                }
                if value & 0x20 == 0 {
                    channel.latch(t);
                }
                if value & 0x10 == 0 && channel.latched_status.is_none() {
                    channel.latched_status = Some(channel.status(t));
                }
            }
            return;
        }
        let channel = &mut self.channels[usize::from(select)];
        if value & 0x30 == 0 {
            channel.latch(t);
        } else {
            channel.control(value, t);
        }
    }

    /// A guest read of port 0x61.
    pub fn read_port61(&mut self, now: u64) -> u8 {
        let t = self.tick(now);
        self.refresh = !self.refresh;
        (self.port61 & 0x0F)
            | (u8::from(self.refresh) << 4)
            | (u8::from(self.channels[2].out(t)) << 5)
    }

    /// A guest write to port 0x61: bit 0 drives channel 2's GATE; bits 0–3 are stored.
    pub fn write_port61(&mut self, value: u8, now: u64) {
        let t = self.tick(now);
        self.port61 = value & 0x0F;
        self.channels[2].set_gate(value & 1 != 0, t);
    }

    /// Rising edges of channel 0's OUT (IRQ 0) since the previous call (saturating).
    pub fn irq0_edges_since_last(&mut self, now: u64) -> u32 {
        let t = self.tick(now);
        let channel = &mut self.channels[0];
        let mut edges = core::mem::take(&mut channel.edges_carried);
        if let Some(e) = channel.elapsed(t) {
            if e > channel.edges_seen_at {
                let new = channel
                    .edges_upto(e)
                    .saturating_sub(channel.edges_upto(channel.edges_seen_at));
                edges = edges.saturating_add(new);
                channel.edges_seen_at = e;
            }
        }
        u32::try_from(edges).unwrap_or(u32::MAX)
    }

    /// The guest TSC of channel 0's next OUT rising edge after `now`, or None when it will
    /// not fire (unprogrammed, a finished one-shot, or beyond the TSC's range).
    pub fn next_irq0(&self, now: u64) -> Option<u64> {
        let t = self.tick(now);
        let channel = &self.channels[0];
        if !channel.running() {
            return None;
        }
        let e = channel.elapsed(t)?;
        let next = channel.next_edge_after(e)?;
        // While running, elapsed advances one per tick.
        self.tsc_of_tick(t.checked_add(next - e)?)
    }
}

#[cfg(test)]
mod tests {
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
}
