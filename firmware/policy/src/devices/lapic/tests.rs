//! Behaviour of the local APIC model, one feature per test: registers, priority and modes
//! here; the timer, IPIs and destinations, and random accesses that must never panic, in the
//! files below.

use super::*;

mod ipi;
mod random;
mod timer;

const TSC_HZ: u64 = 2_000_000_000;
const TIMER_HZ: u64 = 1_000_000_000;

const TPR: u64 = 0x080;
const PPR: u64 = 0x0A0;
const EOI: u64 = 0x0B0;
const LDR: u64 = 0x0D0;
const DFR: u64 = 0x0E0;
const SVR: u64 = 0x0F0;
const ISR: u64 = 0x100;
const TMR: u64 = 0x180;
const IRR: u64 = 0x200;
const ESR: u64 = 0x280;
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
const LVT_TIMER: u64 = 0x320;
const LVT_ERROR: u64 = 0x370;
const TMICT: u64 = 0x380;
const TMCCT: u64 = 0x390;
const TDCR: u64 = 0x3E0;

const ONE_SHOT: u64 = 0;
const PERIODIC: u64 = 1 << 17;
const TSC_DEADLINE: u64 = 2 << 17;

/// A software-enabled xAPIC with spurious vector 0xFF.
fn enabled_apic(id: u32) -> LocalApic {
    let mut apic = LocalApic::new(id, id == 0, TSC_HZ, TIMER_HZ);
    apic.mmio_write(SVR, 4, 0x1FF, 0);
    apic
}

fn read(apic: &mut LocalApic, offset: u64) -> u64 {
    apic.mmio_read(offset, 4, 0)
}

fn write(apic: &mut LocalApic, offset: u64, value: u64) -> LapicEffect {
    apic.mmio_write(offset, 4, value, 0)
}

/// The same APIC switched to x2APIC mode.
fn x2apic(id: u32) -> LocalApic {
    let mut apic = enabled_apic(id);
    let base = apic.apic_base_msr();
    apic.set_apic_base_msr(base | BASE_EXTD).unwrap();
    apic
}

fn ipi(effect: LapicEffect) -> Ipi {
    match effect {
        LapicEffect::Ipi(ipi) => ipi,
        other => panic!("expected an IPI, got {other:?}"),
    }
}

/// Takes the pending interrupt as the vCPU would: inject, then EOI.
fn take(apic: &mut LocalApic) -> Option<u8> {
    let vector = apic.pending_vector()?;
    apic.acknowledge(vector);
    Some(vector)
}

#[test]
fn power_up_state() {
    let mut apic = LocalApic::new(3, true, TSC_HZ, TIMER_HZ);
    assert_eq!(apic.apic_base_msr(), 0xFEE0_0900);
    assert!(apic.enabled() && !apic.x2apic_enabled() && !apic.software_enabled());
    assert_eq!(read(&mut apic, 0x020), 3 << 24);
    assert_eq!(read(&mut apic, 0x030), 0x0005_0014);
    assert_eq!(read(&mut apic, SVR), 0xFF);
    assert_eq!(read(&mut apic, DFR), 0xFFFF_FFFF);
    for offset in [0x320, 0x330, 0x340, 0x350, 0x360, 0x370] {
        assert_eq!(read(&mut apic, offset), 1 << 16, "LVT at {offset:#x}");
    }
    // No CMCI, so no LVT CMCI register (kvm-unit-tests' msr test checks MSR 0x82F).
    write(&mut apic, 0x2F0, 0x40);
    assert_eq!(read(&mut apic, 0x2F0), 0, "LVT CMCI absent");
    assert_eq!(
        LocalApic::new(1, false, TSC_HZ, TIMER_HZ).apic_base_msr(),
        0xFEE0_0800
    );
}

#[test]
fn svr_enable_gates_acceptance_and_lvt_masks() {
    let mut apic = LocalApic::new(0, true, TSC_HZ, TIMER_HZ);
    apic.accept(0x40, false);
    assert_eq!(
        read(&mut apic, IRR + 0x20),
        0,
        "software-disabled APIC accepts nothing"
    );
    // While disabled, LVT mask bits cannot be cleared.
    write(&mut apic, LVT_TIMER, 0x30);
    assert_eq!(read(&mut apic, LVT_TIMER), 0x1_0030);

    write(&mut apic, SVR, 0x1FF);
    assert!(apic.software_enabled());
    write(&mut apic, LVT_TIMER, 0x30);
    assert_eq!(read(&mut apic, LVT_TIMER), 0x30);
    apic.accept(0x40, false);
    assert_eq!(apic.pending_vector(), Some(0x40));

    // Clearing the enable bit masks every LVT entry and hides the pending vector.
    write(&mut apic, SVR, 0xFF);
    assert_eq!(read(&mut apic, LVT_TIMER), 0x1_0030);
    assert_eq!(apic.pending_vector(), None);
    assert!(!apic.has_pending_interrupt());
    // EOI-broadcast suppression (bit 12) is not supported, so not writable.
    write(&mut apic, SVR, 0x11FF);
    assert_eq!(read(&mut apic, SVR), 0x1FF);
}

#[test]
fn tpr_masks_by_priority_class() {
    let mut apic = enabled_apic(0);
    apic.accept(0x51, false);
    write(&mut apic, TPR, 0x50);
    assert_eq!(
        apic.pending_vector(),
        None,
        "class 5 is not above TPR class 5"
    );
    assert_eq!(read(&mut apic, PPR), 0x50);
    write(&mut apic, TPR, 0x4F);
    assert_eq!(apic.pending_vector(), Some(0x51));
    // TPR keeps its low 8 bits only; APR reads 0.
    write(&mut apic, TPR, 0x1234);
    assert_eq!(read(&mut apic, TPR), 0x34);
    assert_eq!(read(&mut apic, 0x090), 0);
}

#[test]
fn ppr_follows_the_highest_in_service_class() {
    let mut apic = enabled_apic(0);
    apic.accept(0x87, false);
    assert_eq!(take(&mut apic), Some(0x87));
    write(&mut apic, TPR, 0x23);
    assert_eq!(read(&mut apic, PPR), 0x80, "ISR class wins, low nibble 0");
    write(&mut apic, TPR, 0x95);
    assert_eq!(read(&mut apic, PPR), 0x95, "TPR wins whole");
    write(&mut apic, TPR, 0x8F);
    assert_eq!(read(&mut apic, PPR), 0x8F, "equal classes: TPR");
}

#[test]
fn highest_vector_first_and_nesting_only_above_in_service() {
    let mut apic = enabled_apic(0);
    for vector in [0x30, 0x80, 0x41] {
        apic.accept(vector, false);
    }
    assert_eq!(take(&mut apic), Some(0x80));
    assert_eq!(read(&mut apic, ISR + 0x40), 1);
    assert_eq!(
        apic.pending_vector(),
        None,
        "0x41 waits for the class-8 handler"
    );
    apic.accept(0x8F, false);
    assert_eq!(apic.pending_vector(), None, "same class does not nest");
    apic.accept(0x90, false);
    assert_eq!(take(&mut apic), Some(0x90));
    assert_eq!(
        write(&mut apic, EOI, 0),
        LapicEffect::Eoi {
            vector: 0x90,
            level_triggered: false
        }
    );
    assert_eq!(
        write(&mut apic, EOI, 0),
        LapicEffect::Eoi {
            vector: 0x80,
            level_triggered: false
        }
    );
    assert_eq!(take(&mut apic), Some(0x8F));
    write(&mut apic, EOI, 0);
    assert_eq!(take(&mut apic), Some(0x41));
    write(&mut apic, EOI, 0);
    assert_eq!(take(&mut apic), Some(0x30));
    // Acknowledging a vector that is not requested changes nothing.
    apic.acknowledge(0x55);
    assert_eq!(
        read(&mut apic, ISR + 0x10),
        1 << 16,
        "0x30 alone in service"
    );
}

#[test]
fn eoi_ends_nested_interrupts_innermost_first_and_reports_level() {
    let mut apic = enabled_apic(0);
    apic.accept(0x40, true);
    assert_eq!(read(&mut apic, TMR + 0x20), 1, "level vectors set TMR");
    assert_eq!(take(&mut apic), Some(0x40));
    apic.accept(0x80, false);
    assert_eq!(take(&mut apic), Some(0x80));
    assert_eq!(
        write(&mut apic, EOI, 0),
        LapicEffect::Eoi {
            vector: 0x80,
            level_triggered: false
        }
    );
    assert_eq!(
        write(&mut apic, EOI, 0),
        LapicEffect::Eoi {
            vector: 0x40,
            level_triggered: true
        }
    );
    assert_eq!(
        write(&mut apic, EOI, 0),
        LapicEffect::None,
        "nothing in service"
    );
    // An edge arrival of the same vector clears its TMR bit.
    apic.accept(0x40, false);
    assert_eq!(read(&mut apic, TMR + 0x20), 0);
}

#[test]
fn a_withdrawn_interrupt_is_requested_again_and_keeps_its_trigger_mode() {
    let mut apic = enabled_apic(0);
    apic.accept(0x30, false);
    assert_eq!(take(&mut apic), Some(0x30));
    apic.accept(0x40, true);
    assert_eq!(take(&mut apic), Some(0x40), "0x40 nests above 0x30");
    // The guest never took 0x40 (the backend's offer lapsed): it is requested again, and
    // 0x30 stays in service beneath it.
    apic.withdraw(0x40);
    assert_eq!(read(&mut apic, ISR + 0x20), 0, "0x40 out of service");
    assert_eq!(
        read(&mut apic, ISR + 0x10),
        1 << 16,
        "0x30 still in service"
    );
    assert_eq!(read(&mut apic, IRR + 0x20), 1, "0x40 requested again");
    assert_eq!(read(&mut apic, TMR + 0x20), 1, "still level-triggered");
    assert_eq!(take(&mut apic), Some(0x40), "offered again");
    assert_eq!(
        write(&mut apic, EOI, 0),
        LapicEffect::Eoi {
            vector: 0x40,
            level_triggered: true
        }
    );
    // Withdrawing a vector that is not in service changes nothing.
    apic.withdraw(0x50);
    assert_eq!(read(&mut apic, IRR + 0x50), 0);
    assert_eq!(
        take(&mut apic),
        None,
        "0x30 is in service; nothing else requested"
    );
}

#[test]
fn illegal_vectors_and_write_then_read_esr() {
    let mut apic = enabled_apic(0);
    apic.accept(0x0E, false);
    assert_eq!(read(&mut apic, IRR), 0, "dropped");
    assert_eq!(read(&mut apic, ESR), 0, "not visible before an ESR write");
    write(&mut apic, ESR, 0);
    assert_eq!(read(&mut apic, ESR), 1 << 6, "receive illegal vector");
    write(&mut apic, ESR, 0);
    assert_eq!(read(&mut apic, ESR), 0, "cleared by the next write");

    // Sending a fixed IPI with vector 5: not sent, send illegal vector, error interrupt.
    write(&mut apic, LVT_ERROR, 0xFE);
    assert_eq!(write(&mut apic, ICR_LOW, 0x05), LapicEffect::None);
    write(&mut apic, ESR, 0);
    assert_eq!(read(&mut apic, ESR), 1 << 5);
    assert_eq!(take(&mut apic), Some(0xFE));
    // NMI and SIPI carry no interrupt vector, so low ones are fine.
    assert!(matches!(
        write(&mut apic, ICR_LOW, 0x0405),
        LapicEffect::Ipi(_)
    ));
    // A timer LVT with an illegal vector: receive illegal vector.
    write(&mut apic, LVT_TIMER, 0x08);
    apic.mmio_write(TMICT, 4, 1, 0);
    apic.advance(1_000);
    write(&mut apic, ESR, 0);
    assert_eq!(read(&mut apic, ESR), 1 << 6);
}

#[test]
fn malformed_xapic_accesses_read_zero_and_are_ignored() {
    let mut apic = enabled_apic(0);
    write(&mut apic, TPR, 0x20);
    for (offset, size) in [
        (TPR, 1),
        (TPR, 2),
        (TPR, 8),
        (TPR + 4, 4),
        (TPR + 1, 4),
        (0x1000, 4),
        (u64::MAX, 4),
    ] {
        assert_eq!(apic.mmio_read(offset, size, 0), 0, "{offset:#x}/{size}");
        apic.mmio_write(offset, size, 0xFF, 0);
    }
    assert_eq!(read(&mut apic, TPR), 0x20);
    // Reserved offsets and read-only registers.
    for offset in [
        0x000, 0x010, 0x040, 0x070, 0x290, 0x2E0, 0x3A0, 0x3F0, 0xFF0,
    ] {
        assert_eq!(read(&mut apic, offset), 0, "{offset:#x}");
        assert_eq!(write(&mut apic, offset, 0xFFFF_FFFF), LapicEffect::None);
    }
    write(&mut apic, 0x030, 0);
    write(&mut apic, IRR + 0x20, 0xFFFF_FFFF);
    assert_eq!(read(&mut apic, 0x030), 0x0005_0014);
    assert_eq!(read(&mut apic, IRR + 0x20), 0);
    // MMIO is dead in x2APIC mode, MSRs outside it.
    assert_eq!(apic.msr_read(0x808, 0), Err(ApicFault::GeneralProtection));
    let mut x2 = x2apic(0);
    assert_eq!(x2.mmio_read(0x030, 4, 0), 0xFFFF_FFFF);
}

#[test]
fn x2apic_faults() {
    let mut apic = x2apic(1);
    let gp = Some(ApicFault::GeneralProtection);
    // No register: APR, RRD, DFR, LVT CMCI, ICR high, reserved, past the range.
    for msr in [
        0x800, 0x809, 0x80C, 0x80E, 0x829, 0x82F, 0x831, 0x83A, 0x840, 0x8FF, 0x7FF, 0x900,
    ] {
        assert_eq!(apic.msr_read(msr, 0).err(), gp, "read {msr:#x}");
        assert_eq!(apic.msr_write(msr, 0, 0).err(), gp, "write {msr:#x}");
    }
    // Write-only, read-only.
    assert_eq!(apic.msr_read(0x80B, 0).err(), gp);
    for msr in [0x802, 0x803, 0x80A, 0x80D, 0x810, 0x818, 0x827, 0x839] {
        assert_eq!(apic.msr_write(msr, 0, 0).err(), gp, "write {msr:#x}");
        assert!(apic.msr_read(msr, 0).is_ok(), "read {msr:#x}");
    }
    // Non-zero EOI and ESR writes, and high bits outside the ICR.
    assert_eq!(apic.msr_write(0x80B, 1, 0).err(), gp);
    assert_eq!(apic.msr_write(0x80B, 0, 0), Ok(LapicEffect::None));
    assert_eq!(apic.msr_write(0x828, 1, 0).err(), gp);
    assert_eq!(apic.msr_write(0x828, 0, 0), Ok(LapicEffect::None));
    assert_eq!(apic.msr_write(0x808, 1 << 32, 0).err(), gp);
    assert_eq!(apic.msr_write(0x808, 0x30, 0), Ok(LapicEffect::None));
    assert_eq!(apic.msr_read(0x808, 0), Ok(0x30));
}

#[test]
fn x2apic_timer_and_interrupt_registers() {
    let mut apic = x2apic(0);
    apic.msr_write(0x83E, 0b1011, 0).unwrap();
    apic.msr_write(0x832, 0xEC, 0).unwrap();
    apic.msr_write(0x838, 1000, 0).unwrap();
    assert_eq!(apic.msr_read(0x839, 500), Ok(750));
    apic.advance(2000);
    assert_eq!(apic.msr_read(0x827, 2000), Ok(1 << 12));
    assert_eq!(take(&mut apic), Some(0xEC));
    assert_eq!(apic.msr_read(0x817, 2000), Ok(1 << 12));
    assert_eq!(
        apic.msr_write(0x80B, 0, 2000),
        Ok(LapicEffect::Eoi {
            vector: 0xEC,
            level_triggered: false
        })
    );
}

#[test]
fn apic_base_transitions() {
    let gp = Err(ApicFault::GeneralProtection);
    let mut apic = enabled_apic(4);
    assert_eq!(apic.set_apic_base_msr(0xFEE0_0800), Ok(()), "same state");
    assert_eq!(apic.set_apic_base_msr(0xFEE0_0400), gp, "EXTD without EN");
    assert_eq!(
        apic.set_apic_base_msr(0xFED0_0800),
        gp,
        "relocation refused"
    );
    assert_eq!(apic.set_apic_base_msr(0xFEE0_0801), gp, "reserved bit 0");
    assert_eq!(apic.set_apic_base_msr(0xFEE0_0A00), gp, "reserved bit 9");
    assert_eq!(
        apic.set_apic_base_msr(1 << 63 | 0xFEE0_0800),
        gp,
        "reserved bit 63"
    );
    assert_eq!(apic.set_apic_base_msr(0xFEE0_0C00), Ok(()));
    assert!(apic.x2apic_enabled());
    assert_eq!(apic.set_apic_base_msr(0xFEE0_0800), gp, "x2APIC → xAPIC");
    assert_eq!(apic.set_apic_base_msr(0xFEE0_0000), Ok(()));
    assert!(!apic.enabled());
    assert_eq!(apic.apic_base_msr(), 0xFEE0_0000);
    assert_eq!(apic.set_apic_base_msr(0xFEE0_0C00), gp, "disabled → x2APIC");
    // Disabled: no MMIO (reads reach nothing: all ones), no interrupts.
    assert_eq!(apic.mmio_read(0x030, 4, 0), 0xFFFF_FFFF);
    apic.accept(0x40, false);
    assert_eq!(
        apic.set_apic_base_msr(0xFEE0_0900),
        Ok(()),
        "the BSP bit written is ignored"
    );
    assert_eq!(apic.apic_base_msr(), 0xFEE0_0800);
    assert!(
        !apic.software_enabled(),
        "state reset on the way through disabled"
    );
    assert_eq!(read(&mut apic, 0x020), 4 << 24);
    assert_eq!(read(&mut apic, IRR + 0x20), 0);
}

#[test]
fn init_resets_all_but_id_and_mode() {
    let mut apic = x2apic(9);
    apic.msr_write(0x808, 0x40, 0).unwrap();
    apic.msr_write(0x832, 0xEC, 0).unwrap();
    apic.msr_write(0x838, 10, 0).unwrap();
    apic.accept(0x70, true);
    apic.reset();
    assert!(apic.x2apic_enabled());
    assert_eq!(apic.id(), 9);
    assert_eq!(apic.msr_read(0x808, 0), Ok(0));
    assert_eq!(apic.msr_read(0x80F, 0), Ok(0xFF));
    assert_eq!(apic.msr_read(0x832, 0), Ok(1 << 16));
    assert_eq!(apic.msr_read(0x838, 0), Ok(0));
    assert_eq!(apic.msr_read(0x823, 0), Ok(0));
    assert_eq!(apic.next_deadline(), None);
}

/// A disabled APIC, and one in x2APIC mode, has no MMIO page (SDM vol. 3A §11.4.3, §11.12.2):
/// every read there returns all ones and every write is dropped, whatever the register.
#[test]
fn the_mmio_page_is_gone_when_disabled_or_in_x2apic_mode() {
    let mut apic = enabled_apic(3);
    apic.mmio_write(0x080, 4, 0x20, 0); // TPR
    assert_eq!(read(&mut apic, 0x080), 0x20);
    apic.set_apic_base_msr(0xFEE0_0C00).unwrap();
    for (offset, size, ones) in [
        (0x030, 4, 0xFFFF_FFFF),
        (0x080, 4, 0xFFFF_FFFF),
        (0x020, 1, 0xFF),
        (0x021, 2, 0xFFFF),
        (0x008, 8, u64::MAX),
    ] {
        assert_eq!(apic.mmio_read(offset, size, 0), ones, "x2APIC +{offset:#x}");
    }
    assert_eq!(apic.mmio_write(0x080, 4, 0xF0, 0), LapicEffect::None);
    assert_eq!(
        apic.msr_read(0x808, 0),
        Ok(0x20),
        "the MMIO write reached nothing"
    );
    assert_eq!(apic.task_priority(), 0x20);
    apic.set_apic_base_msr(0xFEE0_0000).unwrap();
    apic.mmio_write(0x080, 4, 0xF0, 0);
    assert_eq!(apic.mmio_read(0x080, 4, 0), 0xFFFF_FFFF, "disabled");
    assert_eq!(apic.task_priority(), 0);
}

/// An interrupt held back only by the TPR is known as such (so the hypervisor can ask to see
/// the guest lower it); one held back by a higher in-service class, or none, is not.
#[test]
fn an_interrupt_held_by_the_task_priority_is_known() {
    let mut apic = enabled_apic(0);
    assert!(!apic.held_by_task_priority(), "nothing requested");
    apic.set_task_priority(0x50);
    apic.accept(0x45, false);
    assert_eq!(apic.pending_vector(), None);
    assert!(apic.held_by_task_priority());
    apic.set_task_priority(0x30);
    assert_eq!(apic.pending_vector(), Some(0x45));
    assert!(!apic.held_by_task_priority(), "deliverable already");
    // In service at class 6: the class-4 request waits for the EOI, not for the TPR.
    apic.accept(0x61, false);
    apic.acknowledge(0x61);
    apic.set_task_priority(0x50);
    assert!(!apic.held_by_task_priority());
}
