//! Random accesses and caller actions: nothing panics and the priority rule holds.

use super::*;
use proptest::prelude::*;

/// One guest or caller action.
#[derive(Clone, Debug)]
enum Action {
    MmioRead(u64, u8),
    MmioWrite(u64, u8, u64),
    MsrRead(u32),
    MsrWrite(u32, u64),
    Base(u64),
    Accept(u8, bool),
    Acknowledge,
    Advance(u64),
    Deadline(u64),
    Reset,
}

fn action() -> impl Strategy<Value = Action> {
    let offset = prop_oneof![(0u64..0x100).prop_map(|r| r << 4), any::<u64>()];
    let size = prop_oneof![Just(4u8), any::<u8>()];
    let msr = prop_oneof![0x7F0u32..0x910, any::<u32>()];
    let base = prop_oneof![
        prop::sample::select(vec![0xFEE0_0000u64, 0xFEE0_0800, 0xFEE0_0C00, 0xFEE0_0900]),
        any::<u64>()
    ];
    prop_oneof![
        (offset.clone(), size.clone()).prop_map(|(o, s)| Action::MmioRead(o, s)),
        (offset, size, any::<u64>()).prop_map(|(o, s, v)| Action::MmioWrite(o, s, v)),
        msr.clone().prop_map(Action::MsrRead),
        (msr, any::<u64>()).prop_map(|(m, v)| Action::MsrWrite(m, v)),
        base.prop_map(Action::Base),
        (any::<u8>(), any::<bool>()).prop_map(|(v, l)| Action::Accept(v, l)),
        Just(Action::Acknowledge),
        any::<u64>().prop_map(Action::Advance),
        any::<u64>().prop_map(Action::Deadline),
        Just(Action::Reset),
    ]
}

proptest! {
    #[test]
    fn random_accesses_never_panic(
        tsc_hz in any::<u64>(),
        timer_hz in any::<u64>(),
        id in any::<u32>(),
        actions in prop::collection::vec((action(), 0u64..100_000), 1..200),
    ) {
        let mut apic = LocalApic::new(id, false, tsc_hz, timer_hz);
        apic.mmio_write(SVR, 4, 0x1FF, 0);
        let mut now = 0u64;
        for (action, step) in actions {
            now = now.wrapping_add(step);
            match action {
                Action::MmioRead(offset, size) => {
                    let live = apic.enabled() && !apic.x2apic_enabled();
                    let value = apic.mmio_read(offset, size, now);
                    if !live {
                        // No page: all ones, as wide as the access.
                        let width = if matches!(size, 1 | 2 | 4) { 8 * u32::from(size) } else { 64 };
                        prop_assert_eq!(value.count_ones(), width);
                        continue;
                    }
                    prop_assert!(value <= u64::from(u32::MAX));
                    if offset == ICR_LOW {
                        prop_assert_eq!(value & (1 << 12), 0);
                    }
                }
                Action::MmioWrite(offset, size, value) => {
                    apic.mmio_write(offset, size, value, now);
                }
                Action::MsrRead(msr) => {
                    let _ = apic.msr_read(msr, now);
                }
                Action::MsrWrite(msr, value) => {
                    let _ = apic.msr_write(msr, value, now);
                }
                Action::Base(value) => {
                    let _ = apic.set_apic_base_msr(value);
                }
                Action::Accept(vector, level) => apic.accept(vector, level),
                Action::Acknowledge => {
                    if let Some(vector) = apic.pending_vector() {
                        prop_assert!(vector >= 16);
                        apic.acknowledge(vector);
                    }
                }
                Action::Advance(jump) => {
                    now = now.saturating_add(jump % 1_000_000_000);
                    apic.advance(now);
                }
                Action::Deadline(value) => apic.set_tsc_deadline(value, now),
                Action::Reset => apic.reset(),
            }
            if let Some(vector) = apic.pending_vector() {
                prop_assert!(vector >> 4 > apic.ppr() >> 4);
            }
            let _ = apic.next_deadline();
            let _ = apic.tsc_deadline();
        }
    }
}
