//! The balloon over virtio-mmio as Linux's drivers (virtio_mmio.c, virtio_balloon.c) drive
//! it, and as a hostile guest might.

use alloc::vec::Vec;

use proptest::prelude::*;

use super::balloon::*;
use super::mmio::{MAGIC, VENDOR_ID, VERSION};
use super::queue::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};
use super::testing::{negotiate, FakeMemory, Registers};
use super::{feature, interrupt, status, GuestError};

const RAM: usize = 0x10_0000;
/// Queue `q`'s rings at 0x1000 * (q + 1): descriptors, available ring at +0x400, used at +0x800.
fn desc_base(q: u16) -> u64 {
    0x1000 * (u64::from(q) + 1)
}
fn avail_base(q: u16) -> u64 {
    desc_base(q) + 0x400
}
fn used_base(q: u16) -> u64 {
    desc_base(q) + 0x800
}
/// Buffers from 0x8000.
const DATA: u64 = 0x8000;
const SIZE: u16 = 16;

impl Registers for Driver {
    fn read_register(&mut self, offset: u64) -> u32 {
        self.r(offset)
    }
    fn write_register(&mut self, offset: u64, value: u32) {
        self.w(offset, value);
    }
}

/// A driver following Linux's order, with the ring state it keeps.
struct Driver {
    dev: VirtioBalloon,
    mem: FakeMemory,
    avail_idx: [u16; 3],
}

impl Driver {
    fn new() -> Driver {
        Driver {
            dev: VirtioBalloon::new(BalloonConfig::default()),
            mem: FakeMemory::new(RAM),
            avail_idx: [0; 3],
        }
    }
    fn r(&mut self, offset: u64) -> u32 {
        self.dev.mmio_read(offset, 4) as u32
    }
    fn w(&mut self, offset: u64, value: u32) -> BalloonEvent {
        self.dev.mmio_write(offset, 4, u64::from(value))
    }
    /// Linux's probe up to FEATURES_OK: reset, ACKNOWLEDGE, DRIVER, features.
    fn negotiate(&mut self, accept: u64) -> bool {
        assert_eq!(self.r(0x000), MAGIC);
        assert_eq!(self.r(0x004), VERSION);
        assert_eq!(self.r(0x008), DEVICE_ID);
        negotiate(self, accept)
    }
    fn setup_queue(&mut self, q: u16, size: u32) {
        self.w(0x030, u32::from(q));
        assert_eq!(self.r(0x044), 0, "queue {q} already ready");
        assert_eq!(self.r(0x034), u32::from(QUEUE_SIZE));
        self.w(0x038, size);
        self.w(0x080, desc_base(q) as u32);
        self.w(0x084, 0);
        self.w(0x090, avail_base(q) as u32);
        self.w(0x094, 0);
        self.w(0x0A0, used_base(q) as u32);
        self.w(0x0A4, 0);
        self.w(0x044, 1);
    }
    fn driver_ok(&mut self) -> BalloonEvent {
        self.w(
            0x070,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        )
    }
    /// The whole probe, with all three queues.
    fn probed() -> Driver {
        let mut d = Driver::new();
        assert!(d.negotiate(feature::VERSION_1 | F_STATS_VQ | F_MUST_TELL_HOST));
        for q in 0..3 {
            d.setup_queue(q, u32::from(SIZE));
        }
        assert_eq!(d.driver_ok(), BalloonEvent::None);
        d
    }
    fn put_desc(&self, q: u16, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..].copy_from_slice(&next.to_le_bytes());
        self.mem.put(desc_base(q) + 16 * u64::from(index), &raw);
    }
    /// Makes chain `head` available on `q` and notifies.
    fn offer(&mut self, q: u16, head: u16) -> BalloonEvent {
        let slot = u64::from(self.avail_idx[q as usize] % SIZE);
        self.mem
            .put(avail_base(q) + 4 + 2 * slot, &head.to_le_bytes());
        self.avail_idx[q as usize] = self.avail_idx[q as usize].wrapping_add(1);
        self.mem
            .put(avail_base(q) + 2, &self.avail_idx[q as usize].to_le_bytes());
        self.w(0x050, u32::from(q))
    }
    /// One buffer of frame numbers in descriptor `head`, offered on `q`.
    fn send_pfns(&mut self, q: u16, head: u16, pfns: &[u32]) -> BalloonEvent {
        let bytes: Vec<u8> = pfns.iter().flat_map(|p| p.to_le_bytes()).collect();
        let addr = DATA + 0x1000 * u64::from(q);
        self.mem.put(addr, &bytes);
        self.put_desc(q, head, addr, bytes.len() as u32, 0, 0);
        self.offer(q, head)
    }
    fn send_stats(&mut self, head: u16, entries: &[(u16, u64)]) -> BalloonEvent {
        let bytes: Vec<u8> = entries
            .iter()
            .flat_map(|(t, v)| t.to_le_bytes().into_iter().chain(v.to_le_bytes()))
            .collect();
        let addr = DATA + 0x3000;
        self.mem.put(addr, &bytes);
        self.put_desc(2, head, addr, bytes.len() as u32, 0, 0);
        self.offer(2, head)
    }
    fn used_idx(&self, q: u16) -> u16 {
        self.mem.u16_at(used_base(q) + 2)
    }
    fn used_elem(&self, q: u16, slot: u16) -> (u32, u32) {
        let at = used_base(q) + 4 + 8 * u64::from(slot);
        (self.mem.u32_at(at), self.mem.u32_at(at + 4))
    }
    fn process(&mut self) -> Vec<BalloonRequest> {
        self.dev.process(&self.mem)
    }
    fn needs_reset(&mut self) -> bool {
        self.r(0x070) & status::DEVICE_NEEDS_RESET != 0
    }
}

#[test]
fn identifies_as_a_modern_balloon() {
    let mut d = Driver::new();
    assert_eq!(d.r(0x000), 0x7472_6976);
    assert_eq!(d.r(0x004), 2);
    assert_eq!(d.r(0x008), 5);
    assert_eq!(d.r(0x00C), VENDOR_ID);
    d.w(0x014, 0);
    assert_eq!(
        d.r(0x010),
        (F_MUST_TELL_HOST | F_STATS_VQ) as u32,
        "no DEFLATE_ON_OOM by default"
    );
    d.w(0x014, 1);
    assert_eq!(d.r(0x010), 1, "VERSION_1 is bit 32");
    d.w(0x014, 2);
    assert_eq!(d.r(0x010), 0);
    // No shared memory regions; reserved registers read 0; narrow accesses read 0.
    assert_eq!(d.r(0x0B0), u32::MAX);
    assert_eq!(d.r(0x0B4), u32::MAX);
    assert_eq!(d.r(0x040), 0);
    assert_eq!(d.dev.mmio_read(0x000, 2), 0);
    assert_eq!(d.dev.mmio_read(0x001, 4), 0);
    // Absent queues have QueueNumMax 0.
    d.w(0x030, 3);
    assert_eq!(d.r(0x034), 0);
    d.w(0x030, 0);
    assert_eq!(d.r(0x034), u32::from(QUEUE_SIZE));

    let oom = VirtioBalloon::new(BalloonConfig {
        deflate_on_oom: true,
    });
    let mut d = Driver {
        dev: oom,
        ..Driver::new()
    };
    assert_eq!(d.r(0x010) as u64 & F_DEFLATE_ON_OOM, F_DEFLATE_ON_OOM);
}

#[test]
fn linux_probe_sequence_reaches_driver_ok() {
    let mut d = Driver::probed();
    assert_eq!(
        d.dev.negotiated_features(),
        feature::VERSION_1 | F_STATS_VQ | F_MUST_TELL_HOST
    );
    assert_eq!(d.r(0x070) & status::DRIVER_OK, status::DRIVER_OK);
    for q in 0..3 {
        d.w(0x030, q);
        assert_eq!(d.r(0x044), 1);
    }
    assert!(!d.dev.interrupt_asserted());
    assert_eq!(d.dev.guest_error(), None);
}

#[test]
fn features_ok_needs_version_1_and_only_offered_bits() {
    let mut d = Driver::new();
    assert!(!d.negotiate(F_STATS_VQ), "a legacy driver is refused");
    let mut d = Driver::new();
    assert!(d.negotiate(feature::VERSION_1));
    // Bits the device never offered: write them directly.
    let mut d = Driver::new();
    d.w(0x070, status::ACKNOWLEDGE | status::DRIVER);
    d.w(0x024, 1);
    d.w(0x020, 1);
    d.w(0x024, 0);
    d.w(0x020, 1 << 3); // FREE_PAGE_HINT, not offered
    d.w(
        0x070,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    assert_eq!(d.r(0x070) & status::FEATURES_OK, 0);
    // And features are frozen once FEATURES_OK stuck.
    let mut d = Driver::new();
    assert!(d.negotiate(feature::VERSION_1));
    d.w(0x024, 0);
    d.w(0x020, F_STATS_VQ as u32);
    assert_eq!(d.dev.negotiated_features(), feature::VERSION_1);
}

#[test]
fn inflate_is_acknowledged_only_after_completion() {
    let mut d = Driver::probed();
    assert_eq!(
        d.send_pfns(0, 3, &[0x100, 0x101, 0x2345]),
        BalloonEvent::QueueWork
    );
    let mut requests = d.process();
    assert_eq!(requests.len(), 1);
    let BalloonRequest::Inflate { pfns, completion } = requests.remove(0) else {
        panic!("not an inflate");
    };
    assert_eq!(pfns, [0x100, 0x101, 0x2345]);
    // The hypervisor has not done its part yet: the driver still waits.
    assert_eq!(d.used_idx(0), 0);
    assert!(!d.dev.interrupt_asserted());
    assert!(d.process().is_empty(), "nothing new");
    let _ = d.dev.complete(completion, &d.mem);
    assert_eq!(d.used_idx(0), 1);
    assert_eq!(d.used_elem(0, 0), (3, 0));
    assert!(d.dev.interrupt_asserted());
    assert_eq!(d.r(0x060), interrupt::USED_BUFFER);
    d.w(0x064, interrupt::USED_BUFFER);
    assert!(!d.dev.interrupt_asserted());
}

#[test]
fn deflate_round_trip_and_chained_buffers() {
    let mut d = Driver::probed();
    // A two-descriptor chain: 0 -> 5.
    d.mem.put(DATA, &7u32.to_le_bytes());
    d.mem.put(DATA + 0x100, &[8, 0, 0, 0, 9, 0, 0, 0]);
    d.put_desc(1, 0, DATA, 4, DESC_F_NEXT, 5);
    d.put_desc(1, 5, DATA + 0x100, 8, 0, 0);
    d.offer(1, 0);
    let mut requests = d.process();
    let BalloonRequest::Deflate { pfns, completion } = requests.remove(0) else {
        panic!("not a deflate");
    };
    assert_eq!(pfns, [7, 8, 9]);
    let _ = d.dev.complete(completion, &d.mem);
    assert_eq!(d.used_idx(1), 1);
    assert_eq!(d.used_elem(1, 0).0, 0);
    // The wrap of the free-running indices: 40 more buffers on a 16-entry ring.
    for n in 0..40u32 {
        d.send_pfns(1, (n % u32::from(SIZE)) as u16, &[n]);
        for request in d.process() {
            let BalloonRequest::Deflate { pfns, completion } = request else {
                panic!();
            };
            assert_eq!(pfns, [n]);
            let _ = d.dev.complete(completion, &d.mem);
        }
    }
    assert_eq!(d.used_idx(1), 41);
    assert_eq!(d.dev.guest_error(), None);
}

#[test]
fn no_interrupt_flag_is_honoured() {
    let mut d = Driver::probed();
    d.mem.put(avail_base(0), &1u16.to_le_bytes());
    d.send_pfns(0, 0, &[1]);
    let Some(BalloonRequest::Inflate { completion, .. }) = d.process().pop() else {
        panic!();
    };
    let _ = d.dev.complete(completion, &d.mem);
    assert_eq!(d.used_idx(0), 1);
    assert!(!d.dev.interrupt_asserted());
}

#[test]
fn stats_kicked_before_driver_ok_arrive_after_it_and_refresh_on_request() {
    // Linux primes the statistics queue and kicks it before DRIVER_OK.
    let mut d = Driver::new();
    assert!(d.negotiate(feature::VERSION_1 | F_STATS_VQ | F_MUST_TELL_HOST));
    for q in 0..3 {
        d.setup_queue(q, u32::from(SIZE));
    }
    assert_eq!(
        d.send_stats(0, &[(4, 1000), (5, 4000), (6, 2000), (77, 1)]),
        BalloonEvent::None
    );
    assert!(d.process().is_empty(), "not before DRIVER_OK");
    assert!(!d.dev.request_stats(&d.mem));
    assert_eq!(d.driver_ok(), BalloonEvent::QueueWork);
    let requests = d.process();
    let expected = BalloonStats {
        free: Some(1000),
        total: Some(4000),
        available: Some(2000),
        ..BalloonStats::default()
    };
    assert_eq!(requests, [BalloonRequest::Stats(expected)]);
    // The device keeps the buffer until the host asks.
    assert_eq!(d.used_idx(2), 0);
    assert!(d.dev.request_stats(&d.mem));
    assert_eq!(d.used_idx(2), 1);
    assert!(d.dev.interrupt_asserted());
    assert!(!d.dev.request_stats(&d.mem), "already returned");
    // The driver refills it.
    d.send_stats(0, &[(0, 1), (1, 2), (2, 3), (3, 4), (7, 5), (8, 6), (9, 7)]);
    let requests = d.process();
    assert_eq!(
        requests,
        [BalloonRequest::Stats(BalloonStats {
            swap_in: Some(1),
            swap_out: Some(2),
            major_faults: Some(3),
            minor_faults: Some(4),
            disk_caches: Some(5),
            hugetlb_allocations: Some(6),
            hugetlb_failures: Some(7),
            ..BalloonStats::default()
        })]
    );
}

#[test]
fn target_changes_raise_a_config_interrupt() {
    let mut d = Driver::probed();
    let generation = d.r(0x0FC);
    d.dev.set_target_pages(0x1234);
    assert_eq!(d.r(0x060), interrupt::CONFIG_CHANGE);
    assert_ne!(d.r(0x0FC), generation);
    assert_eq!(d.r(0x100), 0x1234);
    assert_eq!(d.dev.mmio_read(0x100, 1), 0x34);
    assert_eq!(d.dev.mmio_read(0x101, 1), 0x12);
    assert_eq!(d.dev.mmio_read(0x100, 8), 0x1234);
    assert_eq!(d.dev.mmio_read(0x101, 2), 0, "misaligned");
    assert_eq!(d.dev.mmio_read(0x108, 4), 0, "past the config space");
    d.w(0x064, interrupt::CONFIG_CHANGE);
    assert!(!d.dev.interrupt_asserted());
    // Setting the same target again is no change.
    d.dev.set_target_pages(0x1234);
    assert!(!d.dev.interrupt_asserted());
    // The driver writes `actual`, never `num_pages`.
    d.dev.mmio_write(0x104, 4, 0x1000);
    d.dev.mmio_write(0x100, 4, 0xdead);
    assert_eq!(d.dev.actual_pages(), 0x1000);
    assert_eq!(d.dev.target_pages(), 0x1234);
    d.dev.mmio_write(0x107, 1, 0xAB);
    assert_eq!(d.dev.actual_pages(), 0xAB00_1000);
    assert_eq!(d.r(0x104), 0xAB00_1000);
    // Before DRIVER_OK a target change raises nothing (the driver reads it at probe).
    let mut fresh = Driver::new();
    fresh.dev.set_target_pages(5);
    assert!(!fresh.dev.interrupt_asserted());
    assert_eq!(fresh.r(0x100), 5);
}

#[test]
fn reset_voids_outstanding_work() {
    let mut d = Driver::probed();
    d.send_pfns(0, 0, &[1, 2]);
    let Some(BalloonRequest::Inflate { completion, .. }) = d.process().pop() else {
        panic!();
    };
    d.dev.mmio_write(0x104, 4, 2);
    assert_eq!(d.w(0x070, 0), BalloonEvent::Reset);
    assert_eq!(d.r(0x070), 0);
    assert_eq!(d.dev.actual_pages(), 0);
    assert_eq!(d.dev.negotiated_features(), 0);
    d.w(0x030, 0);
    assert_eq!(d.r(0x044), 0);
    // The old receipt writes nothing into the (now unconfigured) rings.
    let _ = d.dev.complete(completion, &d.mem);
    assert_eq!(d.used_idx(0), 0);
    assert!(!d.dev.interrupt_asserted());
}

/// Sets up a device, lets `break_it` corrupt queue 0, offers head 0 and processes.
fn hostile(break_it: impl FnOnce(&mut Driver)) -> (Driver, Vec<BalloonRequest>) {
    let mut d = Driver::probed();
    d.put_desc(0, 0, DATA, 4, 0, 0);
    break_it(&mut d);
    d.offer(0, 0);
    let requests = d.process();
    (d, requests)
}

fn assert_failed(mut d: Driver, requests: Vec<BalloonRequest>, error: GuestError) {
    assert!(requests.is_empty(), "{requests:?}");
    assert!(d.needs_reset());
    assert_eq!(d.dev.guest_error(), Some(error));
    assert_eq!(
        d.r(0x060) & interrupt::CONFIG_CHANGE,
        interrupt::CONFIG_CHANGE
    );
    // No more queue work until reset; then the device works again.
    d.send_pfns(0, 1, &[1]);
    assert!(d.process().is_empty());
    d.w(0x070, 0);
    assert!(!d.needs_reset());
    assert_eq!(d.dev.guest_error(), None);
}

#[test]
fn descriptor_loop_is_refused() {
    let (d, r) = hostile(|d| {
        d.put_desc(0, 0, DATA, 4, DESC_F_NEXT, 1);
        d.put_desc(0, 1, DATA, 4, DESC_F_NEXT, 0);
    });
    assert_failed(d, r, GuestError::ChainTooLong);
    let (d, r) = hostile(|d| d.put_desc(0, 0, DATA, 4, DESC_F_NEXT, 0));
    assert_failed(d, r, GuestError::ChainTooLong);
}

#[test]
fn out_of_range_addresses_are_refused() {
    let (d, r) = hostile(|d| d.put_desc(0, 0, RAM as u64 - 2, 4, 0, 0));
    assert_failed(
        d,
        r,
        GuestError::BadAddress {
            gpa: RAM as u64 - 2,
        },
    );
    let (d, r) = hostile(|d| d.put_desc(0, 0, u64::MAX - 1, 4, 0, 0));
    assert_failed(d, r, GuestError::BadAddress { gpa: u64::MAX - 1 });
    // Rings outside RAM.
    let mut d = Driver::new();
    assert!(d.negotiate(feature::VERSION_1));
    d.w(0x030, 0);
    d.w(0x038, 16);
    d.w(0x084, 0x10); // descriptor table above 64 GiB
    d.w(0x090, avail_base(0) as u32);
    d.w(0x0A0, used_base(0) as u32);
    d.w(0x044, 1);
    d.driver_ok();
    d.avail_idx[0] = 0;
    d.offer(0, 0);
    let requests = d.process();
    assert_failed(
        d,
        requests,
        GuestError::BadAddress {
            gpa: 0x10_0000_0000,
        },
    );
}

#[test]
fn bad_ring_indices_and_flags_are_refused() {
    let (d, r) = hostile(|d| d.put_desc(0, 0, DATA, 4, DESC_F_NEXT, SIZE));
    assert_failed(d, r, GuestError::DescriptorIndex { index: SIZE });
    let (d, r) = hostile(|d| d.put_desc(0, 0, DATA, 16, DESC_F_INDIRECT, 0));
    assert_failed(d, r, GuestError::IndirectDescriptor);
    let (d, r) = hostile(|d| d.put_desc(0, 0, DATA, 4, DESC_F_WRITE, 0));
    assert_failed(d, r, GuestError::WrongDirection);
    let (d, r) = hostile(|d| d.put_desc(0, 0, DATA, 4 * 1025, 0, 0));
    assert_failed(d, r, GuestError::BufferTooLarge { len: 4100 });
    // A head past the ring.
    let mut d = Driver::probed();
    d.offer(0, SIZE + 3);
    let r = d.process();
    assert_failed(d, r, GuestError::DescriptorIndex { index: SIZE + 3 });
    // The available index running more than a ring ahead.
    let mut d = Driver::probed();
    d.put_desc(0, 0, DATA, 4, 0, 0);
    d.avail_idx[0] = SIZE;
    d.offer(0, 0);
    let r = d.process();
    assert_failed(
        d,
        r,
        GuestError::AvailIndexJump {
            avail_idx: SIZE + 1,
            last_seen: 0,
        },
    );
}

#[test]
fn bad_queue_sizes_and_alignment_are_refused() {
    for size in [0, 3, 24, u32::from(QUEUE_SIZE) * 2, u32::MAX] {
        let mut d = Driver::new();
        assert!(d.negotiate(feature::VERSION_1));
        d.setup_queue(0, size);
        assert!(d.needs_reset(), "size {size}");
        assert_eq!(d.r(0x044), 0);
        assert_eq!(
            d.dev.guest_error(),
            Some(GuestError::BadQueueSize { queue: 0, size })
        );
        // Before DRIVER_OK the error is in the status only.
        assert!(!d.dev.interrupt_asserted());
    }
    let mut d = Driver::new();
    assert!(d.negotiate(feature::VERSION_1));
    d.w(0x030, 1);
    d.w(0x038, 16);
    d.w(0x080, 0x1008);
    d.w(0x044, 1);
    assert_eq!(
        d.dev.guest_error(),
        Some(GuestError::MisalignedRing { queue: 1 })
    );
}

#[test]
fn notifies_of_unready_or_absent_queues_do_nothing() {
    let mut d = Driver::new();
    assert!(d.negotiate(feature::VERSION_1 | F_STATS_VQ));
    d.setup_queue(0, 16);
    d.driver_ok();
    // Queue 1 not ready, queue 7 absent, a huge index.
    for q in [1, 7, 0xFFFF_FFFF] {
        assert_eq!(d.w(0x050, q), BalloonEvent::None);
    }
    assert!(d.process().is_empty());
    assert!(!d.needs_reset());
    // Queue registers of a ready queue are frozen.
    d.w(0x030, 0);
    d.w(0x038, 4);
    d.w(0x080, 0x4_0000);
    d.send_pfns(0, 0, &[42]);
    assert!(matches!(
        d.process().as_slice(),
        [BalloonRequest::Inflate { pfns, .. }] if pfns == &[42]
    ));
    // Before DRIVER_OK nothing is processed, even on a ready queue.
    let mut d = Driver::new();
    assert!(d.negotiate(feature::VERSION_1));
    d.setup_queue(0, 16);
    assert_eq!(d.send_pfns(0, 0, &[1]), BalloonEvent::None);
    assert!(d.process().is_empty());
}

#[test]
fn queue_ready_zero_stops_a_queue() {
    let mut d = Driver::probed();
    d.w(0x030, 0);
    d.w(0x044, 0);
    assert_eq!(d.r(0x044), 0);
    assert_eq!(d.send_pfns(0, 0, &[1]), BalloonEvent::None);
    assert!(d.process().is_empty());
}

#[test]
fn in_flight_buffers_are_bounded_by_the_ring() {
    let mut d = Driver::probed();
    // The driver reuses one descriptor forever without waiting: the device hands out at most
    // the ring's size of receipts until some are completed.
    for _ in 0..SIZE {
        d.send_pfns(0, 0, &[1]);
    }
    let receipts = d.process();
    assert_eq!(receipts.len(), usize::from(SIZE));
    for _ in 0..SIZE {
        d.send_pfns(0, 0, &[2]);
    }
    assert!(d.process().is_empty());
    assert!(!d.needs_reset());
    let mut events = Vec::new();
    for request in receipts {
        if let BalloonRequest::Inflate { completion, .. } = request {
            events.push(d.dev.complete(completion, &d.mem));
        }
    }
    assert_eq!(events.last(), Some(&BalloonEvent::QueueWork));
    assert_eq!(d.process().len(), usize::from(SIZE));
}

/// One step of a hostile driver.
#[derive(Clone, Debug)]
enum Step {
    Write { offset: u64, size: u8, value: u64 },
    Read { offset: u64, size: u8 },
    Poke { at: u16, bytes: Vec<u8> },
    Process,
    CompleteAll,
    Stats,
    Target(u32),
}

fn step() -> impl Strategy<Value = Step> {
    // Offsets mostly on real registers, so that the device gets somewhere.
    let offset = prop_oneof![(0u64..0x40).prop_map(|r| r * 4), (0u64..0x210),];
    let size = prop_oneof![Just(4u8), Just(1u8), Just(2u8), Just(8u8), any::<u8>()];
    let value = prop_oneof![
        0u64..0x100,
        Just(0x1000),
        Just(0x1400),
        Just(0x1800),
        any::<u64>()
    ];
    prop_oneof![
        4 => (offset.clone(), size.clone(), value).prop_map(|(offset, size, value)| Step::Write {
            offset,
            size,
            value
        }),
        1 => (offset, size).prop_map(|(offset, size)| Step::Read { offset, size }),
        3 => (0u16..0x2000, proptest::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(at, bytes)| Step::Poke { at, bytes }),
        2 => Just(Step::Process),
        1 => Just(Step::CompleteAll),
        1 => Just(Step::Stats),
        1 => any::<u32>().prop_map(Step::Target),
    ]
}

proptest! {
    /// Arbitrary register traffic and ring contents: no panic, and no call hands out more
    /// than the rings allow.
    #[test]
    fn hostile_driver_never_panics(steps in proptest::collection::vec(step(), 1..200)) {
        let mut d = Driver::new();
        let mut receipts = Vec::new();
        for step in steps {
            match step {
                Step::Write { offset, size, value } => {
                    d.dev.mmio_write(offset, size, value);
                }
                Step::Read { offset, size } => {
                    d.dev.mmio_read(offset, size);
                }
                Step::Poke { at, bytes } => d.mem.put(u64::from(at), &bytes),
                Step::Process => {
                    let requests = d.process();
                    prop_assert!(requests.len() <= 3 * usize::from(QUEUE_SIZE));
                    for request in requests {
                        match request {
                            BalloonRequest::Inflate { pfns, completion }
                            | BalloonRequest::Deflate { pfns, completion } => {
                                prop_assert!(pfns.len() <= MAX_PFNS_PER_BUFFER);
                                receipts.push(completion);
                            }
                            BalloonRequest::Stats(_) => {}
                        }
                    }
                }
                Step::CompleteAll => {
                    for completion in receipts.drain(..) {
                        let _ = d.dev.complete(completion, &d.mem);
                    }
                }
                Step::Stats => {
                    d.dev.request_stats(&d.mem);
                }
                Step::Target(pages) => d.dev.set_target_pages(pages),
            }
            prop_assert!(receipts.len() <= 2 * usize::from(QUEUE_SIZE) * 200);
            let _ = d.dev.interrupt_asserted();
        }
    }
}
