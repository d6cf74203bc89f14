//! Time: the TSC, calibrated once against the PIT (Intel 8254, channel 2).
//!
//! Under `qemu -icount shift=0` the TSC advances one tick per guest instruction, which is what
//! the benchmark relies on; without icount it runs at the host's TSC rate, so we calibrate it.

use core::arch::x86_64::_rdtsc;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

use crate::platform::boot::pvh_entry::ENTRY_TSC;

const PIT_HZ: u64 = 1_193_182;
/// Calibration window: 2 ms of PIT ticks.
const CALIBRATION_PIT_TICKS: u16 = 2_386;
/// Assumed when the PIT does not count (no 8254): 1 GHz, as QEMU's icount TSC runs.
const FALLBACK_HZ: u64 = 1_000_000_000;

static TSC_HZ: AtomicU64 = AtomicU64::new(FALLBACK_HZ);
/// TSC ticks spent waiting on the AP start-up protocol (not work; the benchmark subtracts it).
static WAIT_TICKS: AtomicU64 = AtomicU64::new(0);

/// Reads the time-stamp counter.
pub fn now() -> u64 {
    // SAFETY: RDTSC has no side effects; every x86_64 CPU has it.
    unsafe { _rdtsc() }
}

/// The TSC value read by the first instruction of the entry code.
pub fn entry() -> u64 {
    // SAFETY: written once by the entry code before any Rust ran; read-only afterwards.
    unsafe { core::ptr::addr_of!(ENTRY_TSC).read_volatile() }
}

/// TSC ticks per second.
pub fn hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Measures the TSC rate against PIT channel 2; returns false if the PIT never counted down.
pub fn calibrate() -> bool {
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // SAFETY: ports 0x61/0x42/0x43 are the PC speaker gate and PIT channel 2, which nothing
    // else in the hypervisor uses; mode 0 one-shot with the speaker output disabled.
    let (start, end, counted) = unsafe {
        let value = gate.read();
        gate.write((value & !0x02) | 0x01);
        command.write(0xB0); // channel 2, lobyte/hibyte, mode 0, binary
        channel2.write(CALIBRATION_PIT_TICKS as u8);
        channel2.write((CALIBRATION_PIT_TICKS >> 8) as u8);
        let start = now();
        let mut counted = false;
        // Bounded: 2 ms at 1 GHz is 2 million ticks; give up far beyond that.
        while now().wrapping_sub(start) < 4_000_000_000 {
            if gate.read() & 0x20 != 0 {
                counted = true;
                break;
            }
        }
        (start, now(), counted)
    };
    // The calibration window is a wait, not work: the benchmark reports it apart.
    WAIT_TICKS.fetch_add(end.wrapping_sub(start), Ordering::Relaxed);
    if counted {
        let hz = (end - start) * PIT_HZ / CALIBRATION_PIT_TICKS as u64;
        TSC_HZ.store(hz.max(1_000_000), Ordering::Relaxed);
    }
    counted
}

/// Microseconds since the entry code ran.
pub fn micros_since_entry() -> u64 {
    ticks_to_micros(now().wrapping_sub(entry()))
}

/// Converts TSC ticks to microseconds.
pub fn ticks_to_micros(ticks: u64) -> u64 {
    ((ticks as u128) * 1_000_000 / hz() as u128) as u64
}

/// A point in time `micros` from now.
pub fn deadline_after_micros(micros: u64) -> u64 {
    now().saturating_add(((micros as u128) * hz() as u128 / 1_000_000) as u64)
}

/// Spins until `condition` holds or the deadline passes; the time spent counts as waiting.
pub fn wait_until(deadline: u64, mut condition: impl FnMut() -> bool) -> bool {
    let start = now();
    let mut met = condition();
    while !met && now() < deadline {
        core::hint::spin_loop();
        met = condition();
    }
    WAIT_TICKS.fetch_add(now().wrapping_sub(start), Ordering::Relaxed);
    met
}

/// Adds `ticks` another kind of wait spent to the waiting total.
pub fn count_wait(ticks: u64) {
    WAIT_TICKS.fetch_add(ticks, Ordering::Relaxed);
}

/// Waits `micros` (a protocol-mandated delay, counted as waiting).
pub fn delay_micros(micros: u64) {
    wait_until(deadline_after_micros(micros), || false);
}

/// Total ticks spent in [`wait_until`] and [`delay_micros`].
pub fn wait_ticks() -> u64 {
    WAIT_TICKS.load(Ordering::Relaxed)
}
