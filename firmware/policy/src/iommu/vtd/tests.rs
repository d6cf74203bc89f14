//! The driver's programming sequences against [`FakeUnit`]: what it writes, in which order,
//! and how it ends when the unit misbehaves.

use alloc::string::ToString;

use super::fake::{FakeUnit, Performed, SharedMemory};
use super::registers::{context_command, global, iotlb_command};
use super::*;
use crate::iommu::{DmaFault, DomainId, FaultReason, SourceId};

const QUEUE: QueueConfig = QueueConfig {
    base: 0x10_0000,
    size_log2: 0,
    status: 0x10_2000,
};

fn bring_up(fake: FakeUnit) -> (VtdUnit<FakeUnit>, SharedMemory) {
    let memory = fake.memory.clone();
    let unit = VtdUnit::new(fake).unwrap().with_spin_limit(1000);
    (unit, memory)
}

#[test]
fn a_unit_without_four_level_tables_is_refused() {
    let mut fake = FakeUnit::qemu(1);
    fake.cap &= !(0b100 << 8); // QEMU's default aw-bits=39: SAGAW 0b010.
    let err = VtdUnit::new(fake).unwrap_err();
    assert_eq!(err, VtdError::NoFourLevelTables { sagaw: 0b010 });
    assert!(err.to_string().contains("aw-bits=48"));
}

#[test]
fn gcmd_writes_keep_enabled_features_and_drop_one_shot_bits() {
    let (mut unit, _) = bring_up(FakeUnit::qemu(1));
    unit.set_root_table(0x5000).unwrap();
    unit.enable_translation().unwrap();
    // QEMU keeps RTPS set after the first SRTP: a second command must not repeat SRTP, and
    // setting the root table again must not turn translation off.
    unit.set_root_table(0x6000).unwrap();
    assert!(unit.translation_enabled());
    let fake = unit.registers();
    assert_eq!(fake.rtaddr, 0x6000);
    assert_eq!(
        fake.gcmd_writes,
        [global::SRTP, global::TE, global::TE | global::SRTP]
    );
    unit.disable_translation().unwrap();
    assert!(!unit.translation_enabled());
    assert_eq!(unit.registers().gcmd_writes.last(), Some(&0));
    assert!(matches!(
        unit.set_root_table(0x5008),
        Err(VtdError::BadAddress { .. })
    ));
}

#[test]
fn a_unit_that_never_reports_ends_in_a_timeout_naming_the_bit() {
    let mut fake = FakeUnit::qemu(1);
    fake.never_sets = global::SRTP;
    let (mut unit, _) = bring_up(fake);
    let err = unit.set_root_table(0x5000).unwrap_err();
    assert_eq!(
        err,
        VtdError::Timeout {
            register: "GSTS",
            bit: "RTPS",
            expected: true,
            polls: 1000
        }
    );
    assert_eq!(
        err.to_string(),
        "the VT-d unit did not set GSTS.RTPS within 1000 polls"
    );
    assert_eq!(unit.registers().rtaddr, 0x5000);
}

#[test]
fn register_invalidation_without_a_queue() {
    let (mut unit, mut memory) = bring_up(FakeUnit::qemu(1).without_queue());
    unit.invalidate_domain(&mut memory, DomainId(7)).unwrap();
    unit.invalidate_all(&mut memory).unwrap();
    let drain = iotlb_command::DRAIN_READS | iotlb_command::DRAIN_WRITES;
    assert_eq!(
        unit.registers().performed,
        [
            Performed::ContextRegister(context_command::ICC | 2 << 61 | 7),
            Performed::IotlbRegister(iotlb_command::IVT | 2 << 60 | 7 << 32 | drain),
            Performed::ContextRegister(context_command::ICC | 1 << 61),
            Performed::IotlbRegister(iotlb_command::IVT | 1 << 60 | drain),
        ]
    );
    // Interrupt entries can only be invalidated through the queue.
    assert!(matches!(
        unit.invalidate_interrupt_entries(&mut memory),
        Err(VtdError::Unsupported { .. })
    ));
    assert!(matches!(
        unit.enable_queued_invalidation(QUEUE),
        Err(VtdError::Unsupported { .. })
    ));
}

#[test]
fn register_invalidation_failures_are_typed() {
    let mut fake = FakeUnit::qemu(1).without_queue();
    fake.refuse_invalidation = true;
    let (mut unit, mut memory) = bring_up(fake);
    assert_eq!(
        unit.invalidate_all(&mut memory),
        Err(VtdError::InvalidationNotPerformed { register: "CCMD" })
    );
    let mut fake = FakeUnit::qemu(1).without_queue();
    fake.stuck_invalidation = true;
    let (mut unit, mut memory) = bring_up(fake);
    assert_eq!(
        unit.invalidate_domain(&mut memory, DomainId(1)),
        Err(VtdError::Timeout {
            register: "CCMD",
            bit: "ICC",
            expected: false,
            polls: 1000
        })
    );
}

#[test]
fn queued_invalidation_sends_descriptors_and_waits_for_the_status_write() {
    let (mut unit, mut memory) = bring_up(FakeUnit::qemu(1));
    unit.enable_queued_invalidation(QUEUE).unwrap();
    assert!(unit.queued_invalidation_enabled());
    assert_eq!(unit.registers().iqa, QUEUE.base);
    unit.invalidate_domain(&mut memory, DomainId(7)).unwrap();
    unit.invalidate_all(&mut memory).unwrap();
    unit.invalidate_interrupt_entries(&mut memory).unwrap();
    let fake = unit.registers();
    assert_eq!(fake.registers_while_queued, 0);
    assert_eq!(
        fake.performed,
        [
            Performed::Descriptor([0x1 | 2 << 4 | 7 << 16, 0]),
            Performed::Descriptor([0x2 | 3 << 6 | 2 << 4 | 7 << 16, 0]),
            Performed::Descriptor([0x1 | 1 << 4, 0]),
            Performed::Descriptor([0x2 | 3 << 6 | 1 << 4, 0]),
            Performed::Descriptor([0x4, 0]),
        ]
    );
    // Three batches: 2 + 1, 2 + 1, 1 + 1 descriptors.
    assert_eq!((fake.iqh, fake.iqt), (8 * 16, 8 * 16));
}

#[test]
fn the_queue_wraps_round_its_ring() {
    let (mut unit, mut memory) = bring_up(FakeUnit::qemu(1));
    unit.enable_queued_invalidation(QUEUE).unwrap();
    for domain in 1..=300 {
        unit.invalidate_domain(&mut memory, DomainId(domain))
            .unwrap();
    }
    let fake = unit.registers();
    assert_eq!(fake.performed.len(), 600);
    assert_eq!(fake.iqt, (900 % 256) * 16);
}

#[test]
fn a_rejected_descriptor_is_reported_and_the_queue_recovers() {
    let mut fake = FakeUnit::qemu(1);
    fake.reject_type = Some(0x2);
    let (mut unit, mut memory) = bring_up(fake);
    unit.enable_queued_invalidation(QUEUE).unwrap();
    let err = unit
        .invalidate_domain(&mut memory, DomainId(3))
        .unwrap_err();
    // The context descriptor went through; the IOTLB one (slot 1) stopped the queue.
    assert_eq!(
        err,
        VtdError::QueueError {
            head: QUEUE.base + 16
        }
    );
    let fake = unit.registers();
    assert_eq!(fake.iqt, fake.iqh);
    fake.reject_type = None;
    unit.invalidate_domain(&mut memory, DomainId(3)).unwrap();
    assert_eq!(unit.registers().performed.len(), 3);
}

#[test]
fn a_queue_the_unit_never_consumes_times_out() {
    let mut fake = FakeUnit::qemu(1);
    fake.ignore_queue = true;
    let (mut unit, mut memory) = bring_up(fake);
    unit.enable_queued_invalidation(QUEUE).unwrap();
    assert!(matches!(
        unit.invalidate_all(&mut memory),
        Err(VtdError::Timeout { .. })
    ));
    // The unit has consumed nothing: each try takes 3 of the 255 usable slots, so the 86th
    // finds none.
    for _ in 0..84 {
        let _ = unit.invalidate_all(&mut memory);
    }
    assert_eq!(
        unit.invalidate_all(&mut memory),
        Err(VtdError::QueueFull { needed: 3, free: 0 })
    );
}

#[test]
fn queue_configuration_is_checked() {
    let (mut unit, _) = bring_up(FakeUnit::qemu(1));
    for bad in [
        QueueConfig {
            base: 0x10_0800,
            ..QUEUE
        },
        QueueConfig {
            size_log2: 8,
            ..QUEUE
        },
        QueueConfig {
            status: QUEUE.base + 0x100,
            ..QUEUE
        },
        QueueConfig {
            status: 0x10_2002,
            ..QUEUE
        },
    ] {
        assert!(matches!(
            unit.enable_queued_invalidation(bad),
            Err(VtdError::BadAddress { .. })
        ));
    }
    assert!(!unit.queued_invalidation_enabled());
    // A 16 KiB ring: the status dword must lie past it.
    let config = QueueConfig {
        size_log2: 2,
        status: QUEUE.base + 0x4000,
        ..QUEUE
    };
    unit.enable_queued_invalidation(config).unwrap();
    assert_eq!(unit.registers().iqa, QUEUE.base | 2);
}

#[test]
fn interrupt_remapping_sequence() {
    let mut fake = FakeUnit::qemu(1);
    fake.gsts = global::CFI; // firmware left compatibility format on
    let (mut unit, mut memory) = bring_up(fake);
    unit.set_root_table(0x5000).unwrap();
    unit.enable_translation().unwrap();
    assert!(matches!(
        unit.enable_interrupt_remapping(),
        Err(VtdError::Unsupported { .. })
    ));
    assert!(matches!(
        unit.set_interrupt_remapping_table(0x20_0000, 8, ApicMode::X2Apic),
        Err(VtdError::Unsupported { .. })
    ));
    assert!(unit
        .set_interrupt_remapping_table(0x20_0000, 17, ApicMode::XApic)
        .is_err());
    unit.enable_queued_invalidation(QUEUE).unwrap();
    unit.set_interrupt_remapping_table(0x20_0000, 8, ApicMode::XApic)
        .unwrap();
    unit.invalidate_interrupt_entries(&mut memory).unwrap();
    unit.enable_interrupt_remapping().unwrap();
    let fake = unit.registers();
    assert_eq!(fake.irta, 0x20_0007);
    let status = fake.gsts;
    assert_eq!(status & global::CFI, 0, "compatibility format blocked");
    for on in [global::TE, global::QIE, global::IRE] {
        assert_ne!(status & on, 0, "{on:#x} still on");
    }
    // No GCMD write after the first carried SRTP again, or SIRTP after its own.
    let srtp = fake.gcmd_writes.iter().filter(|&&w| w & global::SRTP != 0);
    assert_eq!(srtp.count(), 1);
    let sirtp = fake.gcmd_writes.iter().filter(|&&w| w & global::SIRTP != 0);
    assert_eq!(sirtp.count(), 1);
}

#[test]
fn faults_are_taken_in_order_and_cleared() {
    let mut fake = FakeUnit::qemu(4);
    // The unit records round its log from FRI = 3: a write to 0x8000_0abc by 03:00.0 (not
    // writable), then a read of 0x1000 by 00:02.0 (no context entry) in record 0; a third
    // fault finds record 3 full and is lost (PFO).
    fake.first_record = Some(3);
    fake.inject_fault(3, 0x8000_0abc, 0x05 << 32 | 0x0300);
    fake.inject_fault(0, 0x1000, 1 << 62 | 0x02 << 32 | 0x0010);
    fake.inject_fault(3, 0, 0);
    let (mut unit, _) = bring_up(fake);
    let log = unit.take_faults();
    assert!(log.overflowed);
    assert_eq!(
        log.faults,
        [
            DmaFault {
                source: SourceId { bus: 3, devfn: 0 },
                address: 0x8000_0000,
                write: true,
                reason: FaultReason::VtD(5),
            },
            DmaFault {
                source: SourceId {
                    bus: 0,
                    devfn: 0x10
                },
                address: 0x1000,
                write: false,
                reason: FaultReason::VtD(2),
            },
        ]
    );
    let fake = unit.registers();
    assert!(fake.records.iter().all(|r| r[1] >> 63 == 0));
    assert_eq!(fake.fsts, 0);
    assert_eq!(unit.take_faults(), FaultLog::default());
}

#[test]
fn fault_records_of_any_value_do_not_panic() {
    let mut fake = FakeUnit::qemu(1);
    fake.inject_fault(0, u64::MAX, u64::MAX);
    fake.fsts = !super::registers::fault_status::IQE;
    let (mut unit, _) = bring_up(fake);
    let log = unit.take_faults();
    assert_eq!(log.faults.len(), 1);
    assert!(log.faults[0].reason.is_interrupt() || !log.faults[0].reason.describe().is_empty());
}
