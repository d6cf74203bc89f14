//! The local APIC timer (Intel SDM vol. 3A §11.5.4): a 32-bit down-counter clocked by the
//! timer input clock through the divide configuration, in one-shot, periodic or TSC-deadline
//! mode.
//!
//! Nothing ticks: the counter is computed from guest TSC time. A countdown remembers the TSC
//! at which it started and the count it started from; the count after `n` TSC ticks is
//! `start_count - floor(n * timer_hz / (tsc_hz * divisor))`. Periodic expiries are reckoned
//! from that fixed start, so reloading never accumulates rounding drift. All products are
//! u128: a u64 TSC difference times a u64 rate cannot overflow one.

/// `numerator / divisor` (0 for a zero divisor), in 64 bits where both fit: the common case
/// (short countdowns), which spares the vCPU loop a 128-bit division's dozens of instructions.
fn divide(numerator: u128, divisor: u128) -> u128 {
    match (u64::try_from(numerator), u64::try_from(divisor)) {
        (_, Ok(0)) => 0,
        (Ok(n), Ok(d)) => u128::from(n / d),
        _ => numerator / divisor,
    }
}

/// `numerator % divisor` (0 for a zero divisor), in 64 bits where both fit, as [`divide`].
fn remainder(numerator: u128, divisor: u128) -> u128 {
    match (u64::try_from(numerator), u64::try_from(divisor)) {
        (_, Ok(0)) => 0,
        (Ok(n), Ok(d)) => u128::from(n % d),
        _ => numerator % divisor,
    }
}

/// LVT timer mode, bits 17–18.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TimerMode {
    OneShot,
    Periodic,
    TscDeadline,
}

impl TimerMode {
    /// Mode of an LVT timer value. The reserved encoding 3 behaves as one-shot.
    pub(super) fn of_lvt(lvt: u32) -> TimerMode {
        match (lvt >> 17) & 3 {
            1 => TimerMode::Periodic,
            2 => TimerMode::TscDeadline,
            _ => TimerMode::OneShot,
        }
    }
}

/// A running count-down (one-shot or periodic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Countdown {
    /// Guest TSC at which the count was `start_count`.
    start_tsc: u64,
    /// Count at `start_tsc`; the first expiry is when it reaches 0.
    start_count: u32,
    /// Expiries already reckoned (delivered or lost to masking or coalescing).
    expiries: u64,
}

/// Timer registers and state.
#[derive(Clone, Debug)]
pub(super) struct ApicTimer {
    tsc_hz: u64,
    timer_hz: u64,
    mode: TimerMode,
    /// Initial count register (TMICT); also the periodic reload value.
    initial_count: u32,
    /// Divide configuration register (TDCR), bits 0, 1 and 3.
    divide_config: u32,
    countdown: Option<Countdown>,
    /// IA32_TSC_DEADLINE; 0 is disarmed.
    deadline: u64,
}

/// Writable bits of the divide configuration register.
pub(super) const DIVIDE_CONFIG_MASK: u32 = 0b1011;

/// The divisor selected by a divide configuration value: bits 0, 1 and 3 form a 3-bit number
/// `n`; 7 means divide by 1, anything else by `2^(n+1)`.
pub(super) fn divisor(divide_config: u32) -> u32 {
    let n = (divide_config & 3) | ((divide_config >> 1) & 4);
    if n == 7 {
        1
    } else {
        2 << n
    }
}

impl ApicTimer {
    /// A stopped timer in its reset state. A zero rate is treated as 1 Hz.
    pub(super) fn new(tsc_hz: u64, timer_hz: u64) -> ApicTimer {
        ApicTimer {
            tsc_hz: tsc_hz.max(1),
            timer_hz: timer_hz.max(1),
            mode: TimerMode::OneShot,
            initial_count: 0,
            divide_config: 0,
            countdown: None,
            deadline: 0,
        }
    }

    /// INIT or power-up: stopped, counts and divider zero, one-shot.
    pub(super) fn reset(&mut self) {
        *self = ApicTimer::new(self.tsc_hz, self.timer_hz);
    }

    pub(super) fn initial_count(&self) -> u32 {
        self.initial_count
    }

    pub(super) fn divide_config(&self) -> u32 {
        self.divide_config
    }

    /// IA32_TSC_DEADLINE as RDMSR returns it: 0 outside TSC-deadline mode.
    pub(super) fn deadline(&self) -> u64 {
        if self.mode == TimerMode::TscDeadline {
            self.deadline
        } else {
            0
        }
    }

    /// TSC ticks per `counts` counter decrements, rounded up, from the counter's start; None
    /// when the answer is past any u64 TSC.
    fn tsc_ticks_for(&self, counts: u128) -> Option<u64> {
        let numerator = counts
            .checked_mul(u128::from(divisor(self.divide_config)))?
            .checked_mul(u128::from(self.tsc_hz))?;
        // Rounded up; `timer_hz` is at least 1.
        let timer_hz = u128::from(self.timer_hz);
        let ticks = divide(numerator.checked_add(timer_hz - 1)?, timer_hz);
        u64::try_from(ticks).ok()
    }

    /// Counter decrements between `start_tsc` and `now` (0 if `now` is earlier).
    fn counts_since(&self, start_tsc: u64, now: u64) -> u128 {
        let tsc = u128::from(now.saturating_sub(start_tsc));
        let per = u128::from(self.tsc_hz) * u128::from(divisor(self.divide_config));
        divide(tsc * u128::from(self.timer_hz), per)
    }

    /// Counter decrements from the countdown's start to its expiry number `index` (0-based).
    fn counts_to_expiry(&self, countdown: &Countdown, index: u64) -> Option<u128> {
        match self.mode {
            TimerMode::Periodic => u128::from(index)
                .checked_mul(u128::from(self.initial_count))?
                .checked_add(u128::from(countdown.start_count)),
            _ => (index == 0).then_some(u128::from(countdown.start_count)),
        }
    }

    /// Current count register (TMCCT) at `now`; 0 when stopped or in TSC-deadline mode.
    pub(super) fn current_count(&self, now: u64) -> u32 {
        let Some(countdown) = self.countdown else {
            return 0;
        };
        let counts = self.counts_since(countdown.start_tsc, now);
        let start = u128::from(countdown.start_count);
        if counts < start {
            // The difference is below a u32 start count.
            return (start - counts) as u32;
        }
        match self.mode {
            TimerMode::Periodic if self.initial_count != 0 => {
                let into_period = remainder(counts - start, u128::from(self.initial_count));
                // `into_period < initial_count`, so this is in 1..=initial_count.
                (u128::from(self.initial_count) - into_period) as u32
            }
            _ => 0,
        }
    }

    /// Brings the timer up to `now`; true if it expired at least once since the last call
    /// (the caller raises one interrupt however many periods passed).
    pub(super) fn advance(&mut self, now: u64) -> bool {
        if self.mode == TimerMode::TscDeadline {
            if self.deadline != 0 && now >= self.deadline {
                self.deadline = 0;
                return true;
            }
            return false;
        }
        let Some(mut countdown) = self.countdown else {
            return false;
        };
        let counts = self.counts_since(countdown.start_tsc, now);
        let start = u128::from(countdown.start_count);
        if counts < start {
            return false;
        }
        if self.mode != TimerMode::Periodic || self.initial_count == 0 {
            self.countdown = None;
            return true;
        }
        let periods = divide(counts - start, u128::from(self.initial_count));
        let due = u64::try_from(periods.saturating_add(1)).unwrap_or(u64::MAX);
        let fired = due > countdown.expiries;
        countdown.expiries = countdown.expiries.max(due);
        self.countdown = Some(countdown);
        fired
    }

    /// Guest TSC of the next expiry, if one is armed (masked or not).
    pub(super) fn next_deadline(&self) -> Option<u64> {
        if self.mode == TimerMode::TscDeadline {
            return (self.deadline != 0).then_some(self.deadline);
        }
        let countdown = self.countdown?;
        let counts = self.counts_to_expiry(&countdown, countdown.expiries)?;
        countdown.start_tsc.checked_add(self.tsc_ticks_for(counts)?)
    }

    /// A write to the LVT timer's mode bits at `now`. Moving into or out of TSC-deadline mode
    /// disarms the timer (SDM §11.5.4.1); between one-shot and periodic a running count goes
    /// on from its current value, and only what happens at 0 changes (reload or stop). The
    /// caller has advanced the timer to `now`.
    pub(super) fn set_mode(&mut self, mode: TimerMode, now: u64) {
        if mode == self.mode {
            return;
        }
        if (mode == TimerMode::TscDeadline) != (self.mode == TimerMode::TscDeadline) {
            self.mode = mode;
            self.countdown = None;
            self.deadline = 0;
            return;
        }
        let current = self.current_count(now);
        self.mode = mode;
        self.continue_count(current, now);
    }

    /// A write to TMICT: 0 stops the count, anything else (re)starts it from `now`. Ignored
    /// in TSC-deadline mode.
    pub(super) fn set_initial_count(&mut self, value: u32, now: u64) {
        if self.mode == TimerMode::TscDeadline {
            return;
        }
        self.initial_count = value;
        self.countdown = (value != 0).then_some(Countdown {
            start_tsc: now,
            start_count: value,
            expiries: 0,
        });
    }

    /// A write to TDCR. A running count keeps its current value and continues at the new
    /// rate from `now`. The caller has advanced the timer to `now`.
    pub(super) fn set_divide_config(&mut self, value: u32, now: u64) {
        let current = self.current_count(now);
        self.divide_config = value & DIVIDE_CONFIG_MASK;
        self.continue_count(current, now);
    }

    /// A running count goes on from `current` at `now`, under the timer's present mode and
    /// rate (a count that reached 0 stays stopped).
    fn continue_count(&mut self, current: u32, now: u64) {
        if self.countdown.is_some() {
            self.countdown = (current != 0).then_some(Countdown {
                start_tsc: now,
                start_count: current,
                expiries: 0,
            });
        }
    }

    /// A write to IA32_TSC_DEADLINE; ignored outside TSC-deadline mode, 0 disarms.
    pub(super) fn set_deadline(&mut self, value: u64) {
        if self.mode == TimerMode::TscDeadline {
            self.deadline = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divisor_decodes_the_split_field() {
        let expected = [(0b0000, 2), (0b0001, 4), (0b0010, 8), (0b0011, 16)];
        let high = [(0b1000, 32), (0b1001, 64), (0b1010, 128), (0b1011, 1)];
        for (config, div) in expected.into_iter().chain(high) {
            assert_eq!(divisor(config), div, "config {config:#06b}");
        }
        // Bit 2 is reserved and does not change the divisor.
        assert_eq!(divisor(0b0100), 2);
    }

    #[test]
    fn expiry_rounds_up_to_a_whole_tsc_tick() {
        // 3 TSC ticks per 1 timer tick, divide by 2: each count takes 6 TSC ticks.
        let mut timer = ApicTimer::new(3_000, 1_000);
        timer.set_initial_count(5, 100);
        assert_eq!(timer.next_deadline(), Some(130));
        assert_eq!(timer.current_count(129), 1);
        assert!(!timer.advance(129));
        assert!(timer.advance(130));
        assert_eq!(timer.next_deadline(), None);
    }

    #[test]
    fn absurd_rates_do_not_overflow() {
        let mut timer = ApicTimer::new(u64::MAX, 1);
        timer.set_divide_config(0b1010, 0);
        timer.set_initial_count(u32::MAX, u64::MAX - 1);
        assert_eq!(timer.next_deadline(), None);
        assert_eq!(timer.current_count(u64::MAX), u32::MAX);
        assert!(!timer.advance(u64::MAX));
    }
}
