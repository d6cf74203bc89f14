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
        // In 64 bits while the product fits (the guest's first hours at GHz rates): a 128-bit
        // division costs every pass of vCPU 0's loop dozens of instructions.
        if let Some(product) = now.checked_mul(PIT_HZ) {
            return product / self.tsc_hz;
        }
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
        if !self.channels[0].has_count {
            // Never programmed (or stopped): no time to read, only edges carried over.
            let carried = core::mem::take(&mut self.channels[0].edges_carried);
            return u32::try_from(carried).unwrap_or(u32::MAX);
        }
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
        let channel = &self.channels[0];
        if !channel.running() {
            return None;
        }
        let t = self.tick(now);
        let e = channel.elapsed(t)?;
        let next = channel.next_edge_after(e)?;
        // While running, elapsed advances one per tick.
        self.tsc_of_tick(t.checked_add(next - e)?)
    }
}

/// The PIT's windows: its four ports (0x40–0x43 on a PC) and the system control port B
/// (0x61), whose bit 0 gates channel 2 and bit 5 shows its output.
pub const COUNTERS: u8 = 0;
/// The port 0x61 window.
pub const PORT61: u8 = 1;

impl crate::devices::device::Device for Pit8254 {
    fn read(&mut self, at: crate::devices::device::Register, now: u64) -> u64 {
        let offset = at.port_offset();
        u64::from(match at.window {
            COUNTERS => Pit8254::read(self, offset, now),
            PORT61 if offset == 0 => self.read_port61(now),
            _ => 0xFF,
        })
    }

    fn write(
        &mut self,
        at: crate::devices::device::Register,
        value: u64,
        now: u64,
    ) -> crate::devices::device::Effect {
        let offset = at.port_offset();
        match at.window {
            COUNTERS => Pit8254::write(self, offset, value as u8, now),
            PORT61 if offset == 0 => self.write_port61(value as u8, now),
            _ => {}
        }
        crate::devices::device::Effect::None
    }

    fn byte_registers(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
