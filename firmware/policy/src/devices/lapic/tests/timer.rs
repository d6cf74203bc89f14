//! The APIC timer: one-shot, periodic and TSC-deadline, through the registers.

use super::*;

#[test]
fn one_shot_counts_with_every_divider() {
    // (TDCR, divisor); 2 TSC ticks per timer input tick.
    let dividers = [
        (0b0000, 2),
        (0b0001, 4),
        (0b0010, 8),
        (0b0011, 16),
        (0b1000, 32),
        (0b1001, 64),
        (0b1010, 128),
        (0b1011, 1),
    ];
    for (config, divisor) in dividers {
        let mut apic = enabled_apic(0);
        let start = 10_000;
        apic.mmio_write(TDCR, 4, config, start);
        assert_eq!(apic.mmio_read(TDCR, 4, start), config);
        apic.mmio_write(LVT_TIMER, 4, ONE_SHOT | 0xEC, start);
        apic.mmio_write(TMICT, 4, 1000, start);
        let ticks_per_count = 2 * divisor;
        let expiry = start + 1000 * ticks_per_count;
        assert_eq!(apic.next_deadline(), Some(expiry), "divider {divisor}");
        assert_eq!(apic.mmio_read(TMCCT, 4, start), 1000);
        assert_eq!(apic.mmio_read(TMCCT, 4, start + 250 * ticks_per_count), 750);
        assert_eq!(apic.mmio_read(TMCCT, 4, expiry - 1), 1);
        assert!(!apic.has_pending_interrupt());
        apic.advance(expiry);
        assert_eq!(take(&mut apic), Some(0xEC), "divider {divisor}");
        write(&mut apic, EOI, 0);
        assert_eq!(apic.mmio_read(TMCCT, 4, expiry + 5), 0);
        assert_eq!(apic.mmio_read(TMICT, 4, expiry + 5), 1000);
        apic.advance(expiry * 2);
        assert_eq!(apic.pending_vector(), None, "one-shot fires once");
        assert_eq!(apic.next_deadline(), None);
    }
}

#[test]
fn periodic_reloads_with_every_divider() {
    for config in [
        0b0000u32, 0b0001, 0b0010, 0b0011, 0b1000, 0b1001, 0b1010, 0b1011,
    ] {
        let divisor = crate::devices::lapic::timer::divisor(config);
        let period = 2 * 50 * u64::from(divisor);
        let mut apic = enabled_apic(0);
        apic.mmio_write(TDCR, 4, u64::from(config), 0);
        apic.mmio_write(LVT_TIMER, 4, PERIODIC | 0xEF, 0);
        apic.mmio_write(TMICT, 4, 50, 100);
        for n in 1..=3 {
            assert_eq!(apic.next_deadline(), Some(100 + n * period));
            assert_eq!(apic.mmio_read(TMCCT, 4, 100 + n * period - 1), 1);
            apic.advance(100 + n * period);
            assert_eq!(take(&mut apic), Some(0xEF), "divider {divisor}, period {n}");
            write(&mut apic, EOI, 0);
            assert_eq!(apic.mmio_read(TMCCT, 4, 100 + n * period), 50);
        }
    }
}

#[test]
fn periodic_catches_up_with_one_interrupt_and_no_drift() {
    // 1.5 TSC ticks per count at divide-by-1: expiries at 1.5, 3, 4.5, … TSC ticks.
    let mut apic = LocalApic::new(0, true, 3_000, 2_000);
    write(&mut apic, SVR, 0x1FF);
    write(&mut apic, TDCR, 0b1011);
    write(&mut apic, LVT_TIMER, PERIODIC | 0x40);
    apic.mmio_write(TMICT, 4, 1, 0);
    assert_eq!(apic.next_deadline(), Some(2), "1.5 rounds up");
    apic.advance(2);
    assert_eq!(apic.next_deadline(), Some(3));
    // Miss a thousand periods: one interrupt, and the schedule stays on the original grid.
    apic.advance(1_499);
    assert_eq!(take(&mut apic), Some(0x40));
    assert!(!apic.has_pending_interrupt(), "IRR holds one");
    assert_eq!(apic.next_deadline(), Some(1_500));
    apic.advance(1_500);
    assert_eq!(
        read(&mut apic, IRR + 0x20),
        1,
        "requested again, behind the one in service"
    );
    assert_eq!(apic.next_deadline(), Some(1_502));
}

#[test]
fn masked_timer_counts_without_interrupting() {
    let mut apic = enabled_apic(0);
    write(&mut apic, TDCR, 0b1011);
    write(&mut apic, LVT_TIMER, PERIODIC | (1 << 16) | 0x40);
    apic.mmio_write(TMICT, 4, 100, 0);
    apic.advance(450);
    assert_eq!(read(&mut apic, IRR + 0x20), 0);
    assert_eq!(apic.mmio_read(TMCCT, 4, 450), 75);
    apic.mmio_write(LVT_TIMER, 4, PERIODIC | 0x40, 450);
    apic.advance(599);
    assert!(!apic.has_pending_interrupt());
    apic.advance(600);
    assert_eq!(take(&mut apic), Some(0x40));
}

#[test]
fn initial_count_zero_stops_and_rewrite_restarts() {
    let mut apic = enabled_apic(0);
    write(&mut apic, TDCR, 0b1011);
    write(&mut apic, LVT_TIMER, 0x40);
    apic.mmio_write(TMICT, 4, 100, 0);
    apic.mmio_write(TMICT, 4, 100, 150);
    assert_eq!(apic.next_deadline(), Some(350));
    apic.mmio_write(TMICT, 4, 0, 200);
    assert_eq!(apic.next_deadline(), None);
    assert_eq!(apic.mmio_read(TMCCT, 4, 200), 0);
}

#[test]
fn divider_change_keeps_the_count() {
    let mut apic = enabled_apic(0);
    write(&mut apic, TDCR, 0b1011); // 2 TSC ticks per count
    write(&mut apic, LVT_TIMER, 0x40);
    apic.mmio_write(TMICT, 4, 100, 0);
    apic.mmio_write(TDCR, 4, 0b0000, 100); // 50 counts left, now 4 ticks per count
    assert_eq!(apic.mmio_read(TMCCT, 4, 100), 50);
    assert_eq!(apic.next_deadline(), Some(300));
}

#[test]
fn tsc_deadline_fires_and_disarms() {
    let mut apic = enabled_apic(0);
    apic.set_tsc_deadline(5_000, 0);
    assert_eq!(apic.tsc_deadline(), 0, "ignored outside TSC-deadline mode");
    write(&mut apic, LVT_TIMER, TSC_DEADLINE | 0xEC);
    apic.set_tsc_deadline(5_000, 1_000);
    assert_eq!(apic.tsc_deadline(), 5_000);
    assert_eq!(apic.next_deadline(), Some(5_000));
    assert_eq!(apic.mmio_read(TMCCT, 4, 2_000), 0, "current count reads 0");
    apic.mmio_write(TMICT, 4, 10, 2_000);
    assert_eq!(
        apic.mmio_read(TMICT, 4, 2_000),
        0,
        "TMICT ignored in TSC-deadline mode"
    );
    apic.advance(4_999);
    assert!(!apic.has_pending_interrupt());
    apic.advance(5_000);
    assert_eq!(apic.tsc_deadline(), 0, "disarmed after firing");
    assert_eq!(apic.next_deadline(), None);
    assert_eq!(take(&mut apic), Some(0xEC));
    write(&mut apic, EOI, 0);

    // Writing 0 disarms.
    apic.set_tsc_deadline(9_000, 6_000);
    apic.set_tsc_deadline(0, 6_000);
    apic.advance(10_000);
    assert!(!apic.has_pending_interrupt());
    // A deadline in the past fires at once.
    apic.set_tsc_deadline(1, 10_000);
    assert_eq!(take(&mut apic), Some(0xEC));
    write(&mut apic, EOI, 0);
    // Changing the timer mode disarms.
    apic.set_tsc_deadline(20_000, 10_000);
    write(&mut apic, LVT_TIMER, ONE_SHOT | 0xEC);
    assert_eq!(apic.next_deadline(), None);
    write(&mut apic, LVT_TIMER, TSC_DEADLINE | 0xEC);
    assert_eq!(apic.tsc_deadline(), 0);
    // Changing only the mask does not.
    apic.set_tsc_deadline(20_000, 10_000);
    write(&mut apic, LVT_TIMER, TSC_DEADLINE | (1 << 16) | 0xEC);
    assert_eq!(apic.tsc_deadline(), 20_000);
}

/// An APIC whose timer counts 1000 from TSC 0 under LVT timer `lvt`, dividing by 1 (TDCR
/// 0b1011): one count is 2 TSC ticks.
fn counting_from_1000(lvt: u64) -> LocalApic {
    let mut apic = enabled_apic(0);
    apic.mmio_write(TDCR, 4, 0b1011, 0);
    apic.mmio_write(LVT_TIMER, 4, lvt, 0);
    apic.mmio_write(TMICT, 4, 1000, 0);
    apic
}

#[test]
fn one_shot_to_periodic_goes_on_counting_then_reloads() {
    let mut apic = counting_from_1000(ONE_SHOT | 0x40);
    // 400 counts in, the mode becomes periodic: the count is not restarted (SDM §11.5.4).
    apic.mmio_write(LVT_TIMER, 4, PERIODIC | 0x40, 800);
    assert_eq!(apic.mmio_read(TMCCT, 4, 800), 600);
    assert_eq!(apic.next_deadline(), Some(2000));
    apic.advance(2000);
    assert_eq!(take(&mut apic), Some(0x40));
    assert_eq!(apic.mmio_read(TMCCT, 4, 2000), 1000, "reloaded from TMICT");
    assert_eq!(apic.next_deadline(), Some(4000));
}

#[test]
fn periodic_to_one_shot_ends_the_period_then_stops() {
    let mut apic = counting_from_1000(PERIODIC | 0x41);
    // In the second period: the first expiry (at 2000) is requested by the write itself.
    apic.mmio_write(LVT_TIMER, 4, ONE_SHOT | 0x41, 2400);
    assert_eq!(take(&mut apic), Some(0x41));
    write(&mut apic, EOI, 0);
    assert_eq!(apic.mmio_read(TMCCT, 4, 2400), 800);
    assert_eq!(apic.next_deadline(), Some(4000));
    apic.advance(4000);
    assert_eq!(take(&mut apic), Some(0x41));
    assert_eq!(apic.mmio_read(TMCCT, 4, 4000), 0, "one-shot: no reload");
    assert_eq!(apic.next_deadline(), None);
    // A count that reached 0 stays there when the mode becomes periodic again.
    apic.mmio_write(LVT_TIMER, 4, PERIODIC | 0x41, 5000);
    assert_eq!(apic.mmio_read(TMCCT, 4, 5000), 0);
    assert_eq!(apic.next_deadline(), None);
}

#[test]
fn entering_or_leaving_tsc_deadline_mode_disarms() {
    let mut apic = enabled_apic(0);
    write(&mut apic, LVT_TIMER, ONE_SHOT | 0x40);
    write(&mut apic, TMICT, 1000);
    write(&mut apic, LVT_TIMER, TSC_DEADLINE | 0x40);
    assert_eq!(apic.next_deadline(), None);
    assert_eq!(read(&mut apic, TMCCT), 0);
    apic.set_tsc_deadline(5000, 0);
    assert_eq!(apic.next_deadline(), Some(5000));
    write(&mut apic, LVT_TIMER, PERIODIC | 0x40);
    assert_eq!(apic.next_deadline(), None, "the deadline is gone");
    assert_eq!(read(&mut apic, TMCCT), 0);
}
