//! The driver's programming sequences against [`FakeUnit`]: what it writes, in which order,
//! and how it ends when the unit misbehaves.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::fake::{FakeUnit, SharedMemory, QEMU_EFR};
use super::registers::*;
use super::*;
use crate::iommu::{DomainId, FaultLog, FaultReason, SourceId};

const LAYOUT: UnitLayout = UnitLayout {
    device_table: 0x20_0000,
    device_table_pages: 512,
    command_buffer: 0x40_0000,
    event_log: 0x40_1000,
    completion: 0x40_2000,
};

const NVME: SourceId = SourceId {
    bus: 0,
    devfn: 0x18,
};

fn entry(domain: u16, root: u64) -> DeviceTableEntry {
    DeviceTableEntry {
        domain: DomainId(domain),
        page_table_root: root,
        interrupts: Interrupts::Blocked,
    }
}

fn dte(memory: &SharedMemory, device: SourceId) -> [u64; 4] {
    let base = LAYOUT.device_table + u64::from(device.requester_id()) * 32;
    [0, 1, 2, 3].map(|word| memory.qword(base + word * 8))
}

/// A started unit over a blocked device table, its memory and the fake's records cleared.
fn started(fake: FakeUnit) -> (AmdViUnit<FakeUnit>, SharedMemory) {
    let mut memory = fake.memory.clone();
    block_all(&mut memory, LAYOUT.device_table, LAYOUT.device_table_pages).unwrap();
    let mut unit = AmdViUnit::new(fake).unwrap().with_spin_limit(100);
    unit.start(&mut memory, LAYOUT).unwrap();
    memory.take_writes();
    let fake = unit.registers();
    fake.writes.clear();
    fake.performed.clear();
    (unit, memory)
}

/// An IO_PAGE_FAULT event for `device` at `address`, a write when `write`.
fn page_fault(device: SourceId, address: u64, write: bool) -> [u64; 2] {
    let rw = if write { 1 << 53 } else { 0 };
    [0x2 << 60 | rw | u64::from(device.requester_id()), address]
}

#[test]
fn qemu_features_decode_and_a_reserved_depth_is_refused() {
    let features = ExtendedFeatures(QEMU_EFR);
    assert!(features.invalidate_all());
    assert_eq!(features.host_translation_levels(), Some(6));
    assert_eq!(ExtendedFeatures(0).host_translation_levels(), Some(4));
    assert_eq!(ExtendedFeatures(1 << 10).host_translation_levels(), Some(5));
    let mut fake = FakeUnit::qemu();
    fake.efr = 0b11 << 10;
    let err = AmdViUnit::new(fake).unwrap_err();
    assert_eq!(err, AmdViError::ReservedHostTranslationSize { efr: 0xc00 });
    assert!(err.to_string().contains("HATS 11b"));
}

#[test]
fn start_programs_the_registers_in_order_and_invalidates_everything() {
    let fake = FakeUnit::qemu();
    let mut memory = fake.memory.clone();
    let mut unit = AmdViUnit::new(fake).unwrap().with_spin_limit(100);
    unit.start(&mut memory, LAYOUT).unwrap();
    assert!(unit.is_started());
    let fake = unit.registers();
    assert_eq!(
        fake.writes,
        [
            (CONTROL, 0),
            (DEVICE_TABLE_BASE, 0x20_0000 | 511),
            (COMMAND_BUFFER_BASE, 0x0800_0000_0040_0000),
            (COMMAND_HEAD, 0),
            (COMMAND_TAIL, 0),
            (EVENT_LOG_BASE, 0x0800_0000_0040_1000),
            (EVENT_HEAD, 0),
            (EVENT_TAIL, 0),
            (STATUS, 0b111),
            // IommuEn, EventLogEn, Coherent, CmdBufEn.
            (CONTROL, 0x1405),
            // INVALIDATE_IOMMU_ALL and its COMPLETION_WAIT.
            (COMMAND_TAIL, 0x20),
        ]
    );
    assert_eq!(fake.performed, [invalidate_all()]);
    assert!(fake.rejected.is_empty());
    assert_eq!(
        fake.status & (status::CMD_BUF_RUN | status::EVENT_LOG_RUN),
        status::CMD_BUF_RUN | status::EVENT_LOG_RUN
    );
    assert_eq!(memory.qword(LAYOUT.completion), 1);
    assert_eq!(
        memory.qword(LAYOUT.command_buffer + 16),
        completion_wait(LAYOUT.completion, 1)[0]
    );
}

#[test]
fn a_unit_without_invalidate_all_starts_without_it() {
    let mut fake = FakeUnit::qemu();
    fake.efr = 0;
    let (mut unit, mut memory) = started(fake);
    assert_eq!(unit.registers().command_tail, 0);
    assert_eq!(
        unit.invalidate_all(&mut memory),
        Err(AmdViError::Unsupported {
            feature: "INVALIDATE_IOMMU_ALL (EFR.IASup)"
        })
    );
}

#[test]
fn layouts_are_checked() {
    let bad = |layout: UnitLayout| layout.validate().unwrap_err();
    assert!(LAYOUT.validate().is_ok());
    assert_eq!(LAYOUT.device_entries(), 65536);
    assert_eq!(
        bad(UnitLayout {
            command_buffer: 0x40_0008,
            ..LAYOUT
        }),
        AmdViError::BadLayout {
            what: "command buffer",
            address: 0x40_0008
        }
    );
    for pages in [0, 513] {
        assert!(matches!(
            bad(UnitLayout {
                device_table_pages: pages,
                ..LAYOUT
            }),
            AmdViError::BadLayout { .. }
        ));
    }
    // The event log inside the device table.
    let err = bad(UnitLayout {
        event_log: 0x21_0000,
        ..LAYOUT
    });
    assert!(err.to_string().contains("event log (overlaps"));
    // The completion qword inside the command buffer, or misaligned, or past 52 bits.
    for completion in [0x40_0ff8, 0x40_2004, 1 << 52] {
        assert!(matches!(
            bad(UnitLayout {
                completion,
                ..LAYOUT
            }),
            AmdViError::BadLayout { .. }
        ));
    }
    // A table that would wrap the address space.
    assert!(bad(UnitLayout {
        device_table: 0x000f_ffff_ffff_f000,
        ..LAYOUT
    })
    .to_string()
    .contains("device table"));
    let fake = FakeUnit::qemu();
    let mut memory = fake.memory.clone();
    let mut unit = AmdViUnit::new(fake).unwrap();
    assert!(unit
        .start(
            &mut memory,
            UnitLayout {
                device_table: 0x123,
                ..LAYOUT
            }
        )
        .is_err());
    assert!(unit.registers().writes.is_empty());
}

#[test]
fn a_unit_that_never_runs_its_command_buffer_ends_in_a_timeout() {
    let mut fake = FakeUnit::qemu();
    fake.never_sets = status::CMD_BUF_RUN;
    let mut memory = fake.memory.clone();
    let mut unit = AmdViUnit::new(fake).unwrap().with_spin_limit(100);
    let err = unit.start(&mut memory, LAYOUT).unwrap_err();
    assert_eq!(
        err,
        AmdViError::Timeout {
            register: "Status",
            what: "CmdBufRun",
            expected: true,
            polls: 100
        }
    );
    assert_eq!(
        err.to_string(),
        "the AMD-Vi unit did not set Status.CmdBufRun within 100 polls"
    );
    assert!(!unit.is_started());
    assert_eq!(
        unit.block_device(&mut memory, NVME),
        Err(AmdViError::NotStarted)
    );
}

#[test]
fn a_unit_that_never_completes_a_command_ends_in_a_timeout() {
    let (mut unit, mut memory) = started(FakeUnit::qemu());
    unit.registers().hold_commands = true;
    let err = unit
        .set_device(&mut memory, NVME, &entry(1, 0x5000))
        .unwrap_err();
    assert_eq!(
        err,
        AmdViError::Timeout {
            register: "completion-wait qword",
            what: "store",
            expected: true,
            polls: 100
        }
    );
}

#[test]
fn every_blocked_entry_passes_qemus_checks() {
    let mut fake = FakeUnit::qemu();
    fake.efr = 0;
    let (mut unit, mut memory) = started(fake);
    // Invalidate a few entries of the blocked table: QEMU's reserved-bit check passes.
    for devfn in [0, 0x18, 0xff] {
        unit.block_device(&mut memory, SourceId { bus: 0, devfn })
            .unwrap();
    }
    assert_eq!(
        dte(
            &memory,
            SourceId {
                bus: 0xff,
                devfn: 0xff
            }
        ),
        BLOCKED_ENTRY
    );
    let fake = unit.registers();
    assert!(fake.illegal_entries.is_empty() && fake.rejected.is_empty());
    assert_eq!(
        block_all(&mut memory, 0x20_0000, 0),
        Err(AmdViError::BadLayout {
            what: "device table size (1..=512 pages)",
            address: 0
        })
    );
}

#[test]
fn set_device_writes_qword_zero_last_and_invalidates_what_changed() {
    let (mut unit, mut memory) = started(FakeUnit::qemu());
    let base = LAYOUT.device_table + 0x18 * 32;
    let first = entry(1, 0x5000);
    unit.set_device(&mut memory, NVME, &first).unwrap();
    let words = first.encode();
    assert_eq!(dte(&memory, NVME), words);
    let writes = memory.take_writes();
    assert_eq!(
        writes,
        [
            (base, BLOCKED_ENTRY[0]),
            (base + 8, words[1]),
            (base + 16, words[2]),
            (base + 24, words[3]),
            (base, words[0]),
            (LAYOUT.completion, 0),
        ]
    );
    let fake = unit.registers();
    assert_eq!(
        fake.performed,
        [
            invalidate_device_table_entry(NVME),
            invalidate_interrupt_table(NVME),
            invalidate_domain_pages(DomainId(1)),
        ]
    );
    fake.performed.clear();

    // Moving to another domain: both domains' cached pages go.
    unit.set_device(&mut memory, NVME, &entry(2, 0x6000))
        .unwrap();
    let fake = unit.registers();
    assert_eq!(
        fake.performed[2..],
        [
            invalidate_domain_pages(DomainId(2)),
            invalidate_domain_pages(DomainId(1))
        ]
    );
    fake.performed.clear();
    memory.take_writes();

    // Blocking: qword 0 first, and the domain it leaves.
    unit.block_device(&mut memory, NVME).unwrap();
    assert_eq!(dte(&memory, NVME), BLOCKED_ENTRY);
    assert_eq!(memory.take_writes()[0], (base, BLOCKED_ENTRY[0]));
    let fake = unit.registers();
    assert_eq!(
        fake.performed,
        [
            invalidate_device_table_entry(NVME),
            invalidate_interrupt_table(NVME),
            invalidate_domain_pages(DomainId(2)),
        ]
    );
    assert!(fake.rejected.is_empty() && fake.illegal_entries.is_empty());
    assert_eq!(memory.qword(LAYOUT.completion), 4);
}

#[test]
fn a_remapped_device_names_its_own_table_and_its_entries_are_invalidated() {
    let (mut unit, mut memory) = started(FakeUnit::qemu());
    let remapped = DeviceTableEntry {
        interrupts: Interrupts::Remapped(InterruptTable {
            address: 0x7_0000,
            entries_log2: 8,
        }),
        ..entry(1, 0x5000)
    };
    unit.set_device(&mut memory, NVME, &remapped).unwrap();
    // IV, 2^8 entries, the table, IntCtl = 10b (remapped); the pass bits stay 0.
    assert_eq!(dte(&memory, NVME)[2], 0x2000_0000_0007_0011);
    let fake = unit.registers();
    assert!(fake.rejected.is_empty() && fake.illegal_entries.is_empty());
    fake.performed.clear();
    unit.invalidate_interrupt_table(&mut memory, NVME).unwrap();
    assert_eq!(
        unit.registers().performed,
        [invalidate_interrupt_table(NVME)]
    );
}

#[test]
fn qemu_refuses_domain_ids_with_bit_eight() {
    let (mut unit, mut memory) = started(FakeUnit::qemu());
    unit.set_device(&mut memory, NVME, &entry(0x100, 0x5000))
        .unwrap();
    assert_eq!(unit.registers().illegal_entries, [0x18]);
    let log = unit.take_faults(&memory).unwrap();
    assert_eq!(log.faults.len(), 1);
    assert_eq!(log.faults[0].reason, FaultReason::AmdVi(1));
}

#[test]
fn devices_beyond_the_table_are_refused() {
    let fake = FakeUnit::qemu();
    let mut memory = fake.memory.clone();
    let mut unit = AmdViUnit::new(fake).unwrap().with_spin_limit(100);
    let small = UnitLayout {
        device_table_pages: 1,
        ..LAYOUT
    };
    unit.start(&mut memory, small).unwrap();
    let device = SourceId { bus: 1, devfn: 0 };
    let err = unit.block_device(&mut memory, device).unwrap_err();
    assert_eq!(
        err,
        AmdViError::DeviceOutsideTable {
            device,
            entries: 128
        }
    );
    assert!(err.to_string().contains("01:00.0"));
}

#[test]
fn a_full_ring_waits_then_fails_and_drains_when_the_unit_moves() {
    let (mut unit, mut memory) = started(FakeUnit::qemu());
    unit.registers().hold_commands = true;
    // Each call queues two commands and times out waiting for its store.
    for _ in 0..127 {
        assert!(matches!(
            unit.invalidate_domain(&mut memory, DomainId(1)),
            Err(AmdViError::Timeout { .. })
        ));
    }
    let err = unit
        .invalidate_domain(&mut memory, DomainId(1))
        .unwrap_err();
    assert_eq!(err, AmdViError::QueueFull { needed: 2, free: 1 });
    assert!(err.to_string().contains("1 free entries, 2 needed"));
    // The tail stopped one slot short of the head (start's INVALIDATE_IOMMU_ALL and its wait
    // took slots 0 and 1, the 127 batches 2..=255; slot 0 is the one kept free).
    let fake = unit.registers();
    assert_eq!((fake.command_head_register, fake.command_tail), (0x20, 0));

    unit.registers().hold_commands = false;
    unit.invalidate_domain(&mut memory, DomainId(1)).unwrap();
    // Round the ring several times (QEMU's head reads 0x1000 at each wrap).
    for domain in 0..300 {
        unit.invalidate_domain(&mut memory, DomainId(domain))
            .unwrap();
    }
    let fake = unit.registers();
    assert!(fake.rejected.is_empty());
    assert_eq!(fake.performed.len(), 127 + 1 + 300);
}

#[test]
fn the_event_log_drains_in_order_across_the_wrap() {
    let (mut unit, memory) = started(FakeUnit::qemu());
    let fake = unit.registers();
    for page in 0..200u64 {
        assert!(fake.inject_event(page_fault(NVME, page << 12 | 0x123, page % 2 == 0)));
    }
    let log = unit.take_faults(&memory).unwrap();
    assert_eq!(log.faults.len(), 200);
    assert_eq!(log.faults[7].address, 7 << 12);
    assert!(log.faults[8].write && !log.faults[7].write);
    assert_eq!(log.faults[7].source, NVME);
    assert!(!log.overflowed);

    // 100 more: the log wraps past its end (entries 200..=255, then 0..44).
    let fake = unit.registers();
    for page in 200..300u64 {
        assert!(fake.inject_event(page_fault(NVME, page << 12, true)));
    }
    // A command error and an unknown code: skipped, counted.
    assert!(fake.inject_event([0x5 << 60, 0x40_0000]));
    assert!(fake.inject_event([0xf << 60, 0]));
    let log = unit.take_faults(&memory).unwrap();
    let pages: Vec<u64> = log.faults.iter().map(|fault| fault.address >> 12).collect();
    assert_eq!(pages, (200..300).collect::<Vec<_>>());
    assert_eq!(log.other_events, 2);
    let fake = unit.registers();
    assert_eq!(fake.event_head, (302 % 256) * 16);
    assert_eq!(fake.event_head, fake.event_tail);
    assert_eq!(unit.take_faults(&memory).unwrap(), FaultLog::default());
}

#[test]
fn an_overflowed_log_is_reported_cleared_and_restarted() {
    let (mut unit, memory) = started(FakeUnit::qemu());
    let fake = unit.registers();
    // The log holds 255 entries; the 256th overflows and stops it.
    for page in 0..255u64 {
        assert!(fake.inject_event(page_fault(NVME, page << 12, false)));
    }
    assert!(!fake.inject_event(page_fault(NVME, 0xdead_0000, false)));
    assert!(!fake.inject_event(page_fault(NVME, 0xbeef_0000, false)));
    assert_eq!(fake.status & status::EVENT_LOG_RUN, 0);
    fake.writes.clear();

    let log = unit.take_faults(&memory).unwrap();
    assert!(log.overflowed);
    assert_eq!(log.faults.len(), 255);
    let fake = unit.registers();
    assert_eq!(
        fake.writes,
        [
            (EVENT_HEAD, 255 * 16),
            (CONTROL, 0x1401),
            (STATUS, status::EVENT_OVERFLOW),
            (CONTROL, 0x1405),
        ]
    );
    assert_eq!(fake.status & status::EVENT_OVERFLOW, 0);
    assert!(fake.inject_event(page_fault(NVME, 0x1000, true)));
    let log = unit.take_faults(&memory).unwrap();
    assert!(!log.overflowed);
    assert_eq!(log.faults.len(), 1);
}

#[test]
fn a_log_that_does_not_restart_ends_in_a_timeout() {
    let (mut unit, memory) = started(FakeUnit::qemu());
    let fake = unit.registers();
    while fake.inject_event(page_fault(NVME, 0, false)) {}
    fake.never_sets = status::EVENT_LOG_RUN;
    assert_eq!(
        unit.take_faults(&memory),
        Err(AmdViError::Timeout {
            register: "Status",
            what: "EventLogRun",
            expected: true,
            polls: 100
        })
    );
}

#[test]
fn hostile_pointers_and_entries_do_not_panic() {
    let (mut unit, memory) = started(FakeUnit::qemu());
    let fake = unit.registers();
    fake.event_tail = u64::MAX;
    fake.event_head = 0x0007_fff0;
    let log = unit.take_faults(&memory).unwrap();
    // Folded into the ring: from entry 255 (0x7fff0 mod the ring) to entry 255.
    assert_eq!(log.faults.len() as u32 + log.other_events, 0);
    let fake = unit.registers();
    fake.event_head = 0;
    fake.event_tail = 0x0007_fff0;
    let log = unit.take_faults(&memory).unwrap();
    assert_eq!(log.other_events, 255);
    for entry in [[u64::MAX; 2], [0; 2], [0x2000_0000_0000_0000, u64::MAX]] {
        let _ = decode_event(entry);
    }
    assert_eq!(
        vec![decode_event([0x2 << 60, u64::MAX]).unwrap().address],
        [!0xfff]
    );
}
