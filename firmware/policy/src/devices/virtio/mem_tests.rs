//! The memory device over virtio-mmio as Linux's drivers (virtio_mmio.c, virtio_mem.c) drive
//! it — one request of 24 bytes and a 10-byte response buffer at a time — and as a hostile
//! guest might.

use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::mem::*;
use super::mmio::{MAGIC, VERSION};
use super::queue::{DESC_F_NEXT, DESC_F_WRITE};
use super::testing::{negotiate, DriverQueue, FakeMemory, Registers};
use super::{feature, interrupt, status, GuestError};
use crate::devices::device::{Device, DeviceId, Effect, Register};

const RAM: usize = 0x10_0000;
/// The driver's queue size (descriptors 2n and 2n + 1 carry request n).
const SIZE: u16 = 16;
/// Request `n`'s 24 bytes at REQUESTS + 0x40 * n, its response 0x20 after.
const REQUESTS: u64 = 0x8000;
const BLOCK: u64 = 2 << 20;
/// The region: 64 blocks of 2 MiB at 4 GiB.
const BASE: u64 = 0x1_0000_0000;
const BLOCKS: u64 = 64;
const NODE: u16 = 3;

/// Everything Linux accepts of what the device offers.
const LINUX: u64 = feature::VERSION_1 | F_ACPI_PXM | F_UNPLUGGED_INACCESSIBLE;

fn config() -> MemConfig {
    MemConfig {
        addr: BASE,
        region_size: BLOCKS * BLOCK,
        block_size: BLOCK,
        node_id: NODE,
    }
}

/// The address of block `n` of the region.
fn block(n: u64) -> u64 {
    BASE + n * BLOCK
}

/// A driver and its RAM, with the ring at 0x1000.
struct Guest {
    dev: VirtioMem,
    mem: FakeMemory,
    queue: DriverQueue,
}

impl Registers for Guest {
    fn read_register(&mut self, offset: u64) -> u32 {
        self.r(offset)
    }
    fn write_register(&mut self, offset: u64, value: u32) {
        self.w(offset, value);
    }
}

impl Guest {
    fn new() -> Guest {
        Guest {
            dev: VirtioMem::new(config()),
            mem: FakeMemory::new(RAM),
            queue: DriverQueue::new(0x1000, SIZE),
        }
    }
    /// Probed with Linux's features, asked for `requested` blocks.
    fn probed(requested: u64) -> Guest {
        let mut guest = Guest::new();
        guest.dev.set_requested_size(requested * BLOCK);
        guest.probe();
        guest
    }
    fn probe(&mut self) {
        assert!(negotiate(self, LINUX));
        // Fresh rings, as a driver allocates them.
        self.mem.put(0x1000, &[0; 0x1000]);
        self.queue = DriverQueue::new(0x1000, SIZE);
        self.w(0x030, 0);
        assert_eq!(self.r(0x034), u32::from(QUEUE_SIZE));
        self.w(0x038, u32::from(SIZE));
        self.w(0x080, self.queue.desc as u32);
        self.w(0x090, self.queue.avail as u32);
        self.w(0x0A0, self.queue.used as u32);
        self.w(0x044, 1);
        self.w(
            0x070,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
    }
    fn r(&mut self, offset: u64) -> u32 {
        self.dev.mmio_read(offset, 4) as u32
    }
    fn w(&mut self, offset: u64, value: u32) -> MemEvent {
        self.dev.mmio_write(offset, 4, u64::from(value))
    }
    /// The slot of the next request: its descriptors and buffers.
    fn slot(&self) -> (u16, u64) {
        let slot = self.queue.avail_idx % (SIZE / 2);
        (2 * slot, REQUESTS + 0x40 * u64::from(slot))
    }
    /// Makes a request of `kind` for `count` blocks at `addr` available and notifies;
    /// returns its head.
    fn send(&mut self, kind: u16, addr: u64, count: u16) -> u16 {
        let (head, at) = self.slot();
        let mut bytes = [0u8; REQUEST_SIZE];
        bytes[..2].copy_from_slice(&kind.to_le_bytes());
        bytes[2..8].fill(0xAA); // padding, which the device ignores
        bytes[8..16].copy_from_slice(&addr.to_le_bytes());
        bytes[16..18].copy_from_slice(&count.to_le_bytes());
        bytes[18..].fill(0x55);
        self.mem.put(at, &bytes);
        self.mem.put(at + 0x20, &[0xEE; RESPONSE_SIZE]);
        self.queue.put_desc(
            &self.mem,
            head,
            at,
            REQUEST_SIZE as u32,
            DESC_F_NEXT,
            head + 1,
        );
        self.queue.put_desc(
            &self.mem,
            head + 1,
            at + 0x20,
            RESPONSE_SIZE as u32,
            DESC_F_WRITE,
            0,
        );
        self.queue.make_available(&self.mem, head);
        self.w(0x050, 0);
        head
    }
    /// The response in head `head`'s buffer: (type, state).
    fn response(&self, head: u16) -> (u16, u16) {
        let at = REQUESTS + 0x40 * u64::from(head / 2) + 0x20;
        let bytes = self.mem.bytes(at, RESPONSE_SIZE);
        assert_eq!(bytes[2..8], [0; 6], "response padding");
        (
            u16::from_le_bytes([bytes[0], bytes[1]]),
            u16::from_le_bytes([bytes[8], bytes[9]]),
        )
    }
    /// Sends a request the device answers alone, and its answer.
    fn answered(&mut self, kind: u16, addr: u64, count: u16) -> (u16, u16) {
        let head = self.send(kind, addr, count);
        assert_eq!(self.dev.process(&self.mem), None, "answered by the device");
        assert_eq!(
            self.queue.take_used(&self.mem),
            [(u32::from(head), RESPONSE_SIZE as u32)]
        );
        self.response(head)
    }
    /// Sends a request the caller must carry out.
    fn handed(&mut self, kind: u16, addr: u64, count: u16) -> (u16, MemRequest) {
        let head = self.send(kind, addr, count);
        let request = self
            .dev
            .process(&self.mem)
            .expect("a request for the caller");
        assert!(
            self.queue.take_used(&self.mem).is_empty(),
            "not answered yet"
        );
        (head, request)
    }
    /// Completes `request` with `done`, and the driver's answer.
    fn complete(&mut self, head: u16, request: MemRequest, done: bool) -> (u16, u16) {
        let completion = match request {
            MemRequest::Plug { completion, .. }
            | MemRequest::Unplug { completion, .. }
            | MemRequest::UnplugAll { completion, .. } => completion,
        };
        let _ = self.dev.complete(completion, done, &self.mem);
        assert_eq!(
            self.queue.take_used(&self.mem),
            [(u32::from(head), RESPONSE_SIZE as u32)]
        );
        self.response(head)
    }
    /// Plugs `count` blocks from block `first`, all the way.
    fn plug(&mut self, first: u64, count: u16) {
        let (head, request) = self.handed(request::PLUG, block(first), count);
        assert_eq!(self.complete(head, request, true), (response::ACK, 0));
    }
    fn needs_reset(&mut self) -> bool {
        self.r(0x070) & status::DEVICE_NEEDS_RESET != 0
    }
}

const ACK: (u16, u16) = (response::ACK, 0);
const NACK: (u16, u16) = (response::NACK, 0);
const BUSY: (u16, u16) = (response::BUSY, 0);
const ERROR: (u16, u16) = (response::ERROR, 0);

#[test]
fn identifies_and_requires_unplugged_inaccessible() {
    let mut g = Guest::new();
    assert_eq!(g.r(0x000), MAGIC);
    assert_eq!(g.r(0x004), VERSION);
    assert_eq!(g.r(0x008), 24);
    g.w(0x014, 0);
    assert_eq!(g.r(0x010), 0b11, "ACPI_PXM and UNPLUGGED_INACCESSIBLE");
    g.w(0x014, 1);
    assert_eq!(g.r(0x010), 1, "VERSION_1");
    assert!(negotiate(&mut g, LINUX));
    assert_eq!(g.dev.negotiated_features(), LINUX);
    // A driver that might read unplugged memory is refused; so is a legacy one.
    let mut g = Guest::new();
    assert!(!negotiate(&mut g, feature::VERSION_1 | F_ACPI_PXM));
    let mut g = Guest::new();
    assert!(!negotiate(&mut g, F_UNPLUGGED_INACCESSIBLE | F_ACPI_PXM));
    let mut g = Guest::new();
    assert!(negotiate(
        &mut g,
        feature::VERSION_1 | F_UNPLUGGED_INACCESSIBLE
    ));
}

#[test]
fn config_fields_sit_at_their_offsets() {
    let mut g = Guest::probed(5);
    g.plug(2, 1);
    g.dev.set_requested_size(5 * BLOCK + 123);
    let fields = [
        (0x100, BLOCK),
        (0x110, BASE),
        (0x118, BLOCKS * BLOCK),
        (0x120, BLOCKS * BLOCK),
        (0x128, BLOCK),
        (0x130, 5 * BLOCK),
    ];
    for (offset, value) in fields {
        assert_eq!(g.dev.mmio_read(offset, 8), value, "{offset:#x}");
        assert_eq!(g.dev.mmio_read(offset, 4), value & 0xFFFF_FFFF);
        assert_eq!(g.dev.mmio_read(offset + 4, 4), value >> 32);
        for byte in 0..8 {
            assert_eq!(
                g.dev.mmio_read(offset + byte, 1),
                (value >> (8 * byte)) & 0xFF
            );
        }
    }
    assert_eq!(g.dev.mmio_read(0x108, 2), u64::from(NODE));
    assert_eq!(g.dev.mmio_read(0x108, 1), u64::from(NODE));
    assert_eq!(g.dev.mmio_read(0x10A, 2), 0, "padding");
    assert_eq!(g.dev.mmio_read(0x10C, 4), 0, "padding");
    assert_eq!(g.dev.mmio_read(0x101, 2), 0, "misaligned");
    assert_eq!(g.dev.mmio_read(0x138, 4), 0, "past the config space");
    // Read-only to the driver.
    g.dev.mmio_write(0x130, 8, 0);
    g.dev.mmio_write(0x128, 4, 0);
    g.dev.mmio_write(0x100, 1, 0);
    assert_eq!(g.dev.mmio_read(0x130, 8), 5 * BLOCK);
    assert_eq!(g.dev.mmio_read(0x128, 8), BLOCK);
    assert_eq!(g.dev.mmio_read(0x100, 8), BLOCK);
}

#[test]
fn requested_size_changes_raise_a_config_interrupt() {
    let mut g = Guest::probed(0);
    let generation = g.r(0x0FC);
    g.dev.set_requested_size(3 * BLOCK + BLOCK / 2);
    assert_eq!(g.dev.requested_size(), 3 * BLOCK, "whole blocks");
    assert_eq!(g.r(0x060), interrupt::CONFIG_CHANGE);
    assert_ne!(g.r(0x0FC), generation);
    g.w(0x064, interrupt::CONFIG_CHANGE);
    g.dev.set_requested_size(3 * BLOCK + 1);
    assert!(!g.dev.interrupt_asserted(), "no change");
    g.dev.set_requested_size(u64::MAX);
    assert_eq!(g.dev.requested_size(), BLOCKS * BLOCK, "at most the region");
    assert!(g.dev.interrupt_asserted());
    // Before DRIVER_OK, nothing is raised: the driver reads the field at probe.
    let mut fresh = Guest::new();
    fresh.dev.set_requested_size(BLOCK);
    assert!(!fresh.dev.interrupt_asserted());
}

#[test]
fn plug_is_acknowledged_after_the_caller_completes_it() {
    let mut g = Guest::probed(4);
    let generation = g.r(0x0FC);
    let (head, request) = g.handed(request::PLUG, block(6), 2);
    let MemRequest::Plug { gpa, bytes, .. } = &request else {
        panic!("not a plug: {request:?}");
    };
    assert_eq!((*gpa, *bytes), (block(6), 2 * BLOCK));
    assert_eq!(g.dev.plugged_size(), 0, "not before completion");
    assert!(!g.dev.interrupt_asserted());
    assert_eq!(g.complete(head, request, true), ACK);
    assert_eq!(g.dev.plugged_size(), 2 * BLOCK);
    assert_eq!(g.dev.mmio_read(0x128, 8), 2 * BLOCK);
    assert_eq!(
        g.dev.plugged_ranges().collect::<Vec<_>>(),
        [(block(6), 2 * BLOCK)]
    );
    assert!(!g.dev.is_plugged(block(6) - 1));
    assert!(g.dev.is_plugged(block(6)));
    assert!(g.dev.is_plugged(block(8) - 1));
    assert!(!g.dev.is_plugged(block(8)));
    // A used-buffer interrupt, not a configuration one; a new generation all the same.
    assert_eq!(g.r(0x060), interrupt::USED_BUFFER);
    assert_ne!(g.r(0x0FC), generation);
    // Adjacent plugs merge into one range.
    g.plug(8, 1);
    g.plug(5, 1);
    assert_eq!(
        g.dev.plugged_ranges().collect::<Vec<_>>(),
        [(block(5), 4 * BLOCK)]
    );
    assert_eq!(g.dev.guest_error(), None);
}

#[test]
fn a_plug_the_hypervisor_refuses_is_busy_and_the_driver_can_be_told_to_retry() {
    let mut g = Guest::probed(4);
    let (head, request) = g.handed(request::PLUG, block(0), 4);
    assert_eq!(g.complete(head, request, false), BUSY);
    assert_eq!(g.dev.plugged_size(), 0);
    assert_eq!(g.dev.plugged_ranges().count(), 0);
    let generation = g.r(0x0FC);
    g.dev.retry_refused();
    assert_ne!(g.r(0x0FC), generation, "a configuration change");
    assert_eq!(g.r(0x060) & 2, 2, "its interrupt raised");
}

#[test]
fn plugging_past_the_requested_size_is_nacked_by_the_device() {
    let mut g = Guest::probed(3);
    assert_eq!(g.answered(request::PLUG, block(0), 4), NACK);
    g.plug(0, 2);
    assert_eq!(g.answered(request::PLUG, block(2), 2), NACK);
    g.plug(10, 1);
    assert_eq!(g.answered(request::PLUG, block(11), 1), NACK, "at the size");
    // A smaller wish leaves plugged blocks plugged; unplugging is the driver's move.
    g.dev.set_requested_size(0);
    assert_eq!(g.dev.plugged_size(), 3 * BLOCK);
}

#[test]
fn bad_ranges_are_errors() {
    let mut g = Guest::probed(BLOCKS);
    g.plug(0, 1);
    let top = !(BLOCK - 1); // the last block below 2^64
    for kind in [request::PLUG, request::UNPLUG, request::STATE] {
        for (addr, count, why) in [
            (block(1) + 4096, 1, "unaligned"),
            (block(1) + BLOCK / 2, 1, "unaligned"),
            (block(1), 0, "no blocks"),
            (BASE - BLOCK, 1, "below the region"),
            (BASE - BLOCK, 2, "straddling its start"),
            (block(BLOCKS), 1, "past its end"),
            (block(BLOCKS - 1), 2, "straddling its end"),
            (block(0), u16::MAX, "far past its end"),
            (top, u16::MAX, "overflowing"),
            (0, 1, "at 0"),
        ] {
            assert_eq!(
                g.answered(kind, addr, count),
                ERROR,
                "kind {kind}, {why}: {addr:#x} x {count}"
            );
        }
    }
    assert_eq!(g.answered(7, block(0), 1), ERROR, "unknown type");
    assert_eq!(g.answered(u16::MAX, 0, 0), ERROR, "unknown type");
    assert_eq!(g.dev.plugged_size(), BLOCK);
    assert_eq!(g.dev.guest_error(), None);
}

#[test]
fn plugging_a_plugged_block_or_unplugging_an_unplugged_one_is_an_error() {
    let mut g = Guest::probed(BLOCKS);
    g.plug(4, 2);
    assert_eq!(g.answered(request::PLUG, block(4), 1), ERROR);
    assert_eq!(
        g.answered(request::PLUG, block(3), 2),
        ERROR,
        "partly plugged"
    );
    assert_eq!(g.answered(request::UNPLUG, block(3), 1), ERROR);
    assert_eq!(g.answered(request::UNPLUG, block(5), 2), ERROR, "partly");
    // An error outranks a NACK: the rules are broken whatever the size.
    g.dev.set_requested_size(2 * BLOCK);
    assert_eq!(g.answered(request::PLUG, block(5), 3), ERROR);
    assert_eq!(g.dev.plugged_size(), 2 * BLOCK);
}

#[test]
fn unplug_round_trip_and_a_refused_unplug_is_busy() {
    let mut g = Guest::probed(8);
    g.plug(0, 8);
    let (head, request) = g.handed(request::UNPLUG, block(2), 3);
    let MemRequest::Unplug { gpa, bytes, .. } = &request else {
        panic!("not an unplug: {request:?}");
    };
    assert_eq!((*gpa, *bytes), (block(2), 3 * BLOCK));
    assert_eq!(g.complete(head, request, false), BUSY);
    assert_eq!(g.dev.plugged_size(), 8 * BLOCK);
    let (head, request) = g.handed(request::UNPLUG, block(2), 3);
    assert_eq!(g.complete(head, request, true), ACK);
    assert_eq!(g.dev.plugged_size(), 5 * BLOCK);
    assert_eq!(
        g.dev.plugged_ranges().collect::<Vec<_>>(),
        [(block(0), 2 * BLOCK), (block(5), 3 * BLOCK)]
    );
}

#[test]
fn unplug_all_hands_over_what_is_plugged() {
    let mut g = Guest::probed(BLOCKS);
    // Nothing plugged: the device answers alone.
    assert_eq!(g.answered(request::UNPLUG_ALL, 0, 0), ACK);
    g.plug(1, 2);
    g.plug(BLOCKS - 1, 1);
    let (head, request) = g.handed(request::UNPLUG_ALL, 0xDEAD, 9);
    let MemRequest::UnplugAll { ranges, .. } = &request else {
        panic!("not an unplug-all: {request:?}");
    };
    assert_eq!(ranges, &[(block(1), 2 * BLOCK), (block(BLOCKS - 1), BLOCK)]);
    assert_eq!(g.complete(head, request, false), BUSY);
    assert_eq!(g.dev.plugged_size(), 3 * BLOCK);
    let (head, request) = g.handed(request::UNPLUG_ALL, 0, 0);
    assert_eq!(g.complete(head, request, true), ACK);
    assert_eq!(g.dev.plugged_size(), 0);
    assert_eq!(g.dev.mmio_read(0x128, 8), 0);
    assert_eq!(g.dev.plugged_ranges().count(), 0);
}

#[test]
fn state_reports_plugged_unplugged_and_mixed() {
    let mut g = Guest::probed(BLOCKS);
    g.plug(10, 4);
    let ack = |state| (response::ACK, state);
    assert_eq!(
        g.answered(request::STATE, block(10), 4),
        ack(state::PLUGGED)
    );
    assert_eq!(
        g.answered(request::STATE, block(11), 1),
        ack(state::PLUGGED)
    );
    assert_eq!(
        g.answered(request::STATE, block(0), 10),
        ack(state::UNPLUGGED)
    );
    assert_eq!(
        g.answered(request::STATE, block(14), 50),
        ack(state::UNPLUGGED)
    );
    assert_eq!(g.answered(request::STATE, block(9), 2), ack(state::MIXED));
    assert_eq!(
        g.answered(request::STATE, block(0), BLOCKS as u16),
        ack(state::MIXED)
    );
}

#[test]
fn one_request_is_in_flight_at_a_time() {
    let mut g = Guest::probed(BLOCKS);
    let (head, request) = g.handed(request::PLUG, block(0), 1);
    // A driver that does not wait: its requests stay in the ring.
    let state = g.send(request::STATE, block(0), 1);
    let plug = g.send(request::PLUG, block(1), 1);
    assert_eq!(g.dev.process(&g.mem), None);
    assert_eq!(g.dev.process(&g.mem), None);
    assert!(g.queue.take_used(&g.mem).is_empty());
    let MemRequest::Plug { completion, .. } = request else {
        panic!();
    };
    assert_eq!(
        g.dev.complete(completion, true, &g.mem),
        MemEvent::QueueWork
    );
    assert_eq!(g.queue.take_used(&g.mem).len(), 1);
    assert_eq!(g.response(head), ACK);
    // The STATE behind it is answered (after the plug: plugged), the PLUG handed out.
    let Some(MemRequest::Plug {
        gpa, completion, ..
    }) = g.dev.process(&g.mem)
    else {
        panic!("the second plug");
    };
    assert_eq!(gpa, block(1));
    assert_eq!(g.response(state), (response::ACK, state::PLUGGED));
    assert_eq!(g.dev.complete(completion, true, &g.mem), MemEvent::None);
    assert_eq!(g.response(plug), ACK);
    assert_eq!(g.dev.plugged_size(), 2 * BLOCK);
}

#[test]
fn a_reset_keeps_the_blocks_plugged() {
    let mut g = Guest::probed(8);
    g.plug(3, 2);
    assert_eq!(g.w(0x070, 0), MemEvent::Reset);
    assert_eq!(g.dev.negotiated_features(), 0);
    assert_eq!(g.dev.plugged_size(), 2 * BLOCK);
    assert_eq!(g.dev.mmio_read(0x128, 8), 2 * BLOCK);
    // The new driver finds the blocks and unplugs them.
    g.probe();
    assert_eq!(
        g.answered(request::STATE, block(3), 2),
        (response::ACK, state::PLUGGED)
    );
    let (head, request) = g.handed(request::UNPLUG_ALL, 0, 0);
    assert_eq!(g.complete(head, request, true), ACK);
    assert_eq!(g.dev.plugged_size(), 0);
}

#[test]
fn a_completion_across_a_reset_moves_the_blocks_but_answers_nobody() {
    let mut g = Guest::probed(8);
    let (_, request) = g.handed(request::PLUG, block(0), 2);
    let MemRequest::Plug { completion, .. } = request else {
        panic!();
    };
    assert_eq!(g.w(0x070, 0), MemEvent::Reset);
    g.probe();
    // The new driver's request waits for the old one to finish.
    let state = g.send(request::STATE, block(0), 2);
    assert_eq!(g.dev.process(&g.mem), None);
    // The hypervisor mapped the blocks: they are plugged, whoever asked.
    assert_eq!(
        g.dev.complete(completion, true, &g.mem),
        MemEvent::QueueWork
    );
    assert_eq!(g.dev.plugged_size(), 2 * BLOCK);
    assert!(
        g.queue.take_used(&g.mem).is_empty(),
        "no answer into the new ring"
    );
    assert_eq!(g.dev.process(&g.mem), None);
    assert_eq!(g.queue.take_used(&g.mem).len(), 1);
    assert_eq!(g.response(state), (response::ACK, state::PLUGGED));
    // And a refusal across a reset changes nothing.
    let (_, request) = g.handed(request::UNPLUG, block(0), 2);
    let MemRequest::Unplug { completion, .. } = request else {
        panic!();
    };
    g.w(0x070, 0);
    assert_eq!(g.dev.complete(completion, false, &g.mem), MemEvent::None);
    assert_eq!(g.dev.plugged_size(), 2 * BLOCK);
    assert!(!g.dev.interrupt_asserted());
}

/// A device with one request of `parts` (address, length, flags) descriptors, processed.
fn malformed(parts: &[(u64, u32, u16)]) -> Guest {
    let mut g = Guest::probed(BLOCKS);
    let mut request = [0u8; REQUEST_SIZE];
    request[..2].copy_from_slice(&request::STATE.to_le_bytes());
    request[8..16].copy_from_slice(&BASE.to_le_bytes());
    request[16] = 1;
    g.mem.put(REQUESTS, &request);
    for (index, &(addr, len, flags)) in parts.iter().enumerate() {
        let last = index + 1 == parts.len();
        let (flags, next) = if last {
            (flags, 0)
        } else {
            (flags | DESC_F_NEXT, index as u16 + 1)
        };
        g.queue
            .put_desc(&g.mem, index as u16, addr, len, flags, next);
    }
    g.queue.make_available(&g.mem, 0);
    g.w(0x050, 0);
    assert_eq!(g.dev.process(&g.mem), None);
    g
}

fn assert_needs_reset(mut g: Guest, error: GuestError) {
    assert!(g.needs_reset());
    assert_eq!(g.dev.guest_error(), Some(error));
    assert!(g.queue.take_used(&g.mem).is_empty());
    assert_eq!(
        g.r(0x060) & interrupt::CONFIG_CHANGE,
        interrupt::CONFIG_CHANGE
    );
    // No more work until the driver resets; then the device works again.
    g.send(request::STATE, BASE, 1);
    assert_eq!(g.dev.process(&g.mem), None);
    g.probe();
    assert!(!g.needs_reset());
    assert_eq!(g.answered(request::STATE, BASE, 1).0, response::ACK);
}

#[test]
fn malformed_buffers_need_a_reset() {
    let response = REQUESTS + 0x20;
    let g = malformed(&[(REQUESTS, 16, 0), (response, 10, DESC_F_WRITE)]);
    assert_needs_reset(
        g,
        GuestError::BufferTooSmall {
            len: 16,
            needed: 24,
        },
    );
    let g = malformed(&[(REQUESTS, 24, 0)]);
    assert_needs_reset(g, GuestError::BufferTooSmall { len: 0, needed: 10 });
    let g = malformed(&[(REQUESTS, 24, 0), (response, 8, DESC_F_WRITE)]);
    assert_needs_reset(g, GuestError::BufferTooSmall { len: 8, needed: 10 });
    let g = malformed(&[(response, 10, DESC_F_WRITE), (REQUESTS, 24, 0)]);
    assert_needs_reset(g, GuestError::WrongDirection);
    let g = malformed(&[(REQUESTS, 24, 0), (response, 10, 0)]);
    assert_needs_reset(g, GuestError::BufferTooSmall { len: 0, needed: 10 });
    let g = malformed(&[(RAM as u64 - 8, 24, 0), (response, 10, DESC_F_WRITE)]);
    assert_needs_reset(
        g,
        GuestError::BadAddress {
            gpa: RAM as u64 - 8,
        },
    );
    let g = malformed(&[(REQUESTS, 24, 0), (RAM as u64 - 4, 10, DESC_F_WRITE)]);
    assert_needs_reset(
        g,
        GuestError::BadAddress {
            gpa: RAM as u64 - 4,
        },
    );
    let g = malformed(&[(REQUESTS, 24, 0), (response, 5000, DESC_F_WRITE)]);
    assert_needs_reset(g, GuestError::BufferTooLarge { len: 5024 });
}

#[test]
fn split_buffers_and_longer_requests_are_fine() {
    // The request in three pieces (the last one longer than needed), the response in two.
    let response = REQUESTS + 0x20;
    let mut g = malformed(&[
        (REQUESTS, 5, 0),
        (REQUESTS + 5, 11, 0),
        (REQUESTS + 16, 40, 0),
        (response, 3, DESC_F_WRITE),
        (response + 3, 64, DESC_F_WRITE),
    ]);
    assert_eq!(g.dev.guest_error(), None);
    assert_eq!(g.queue.take_used(&g.mem), [(0, RESPONSE_SIZE as u32)]);
    assert_eq!(g.response(0), (response::ACK, state::UNPLUGGED));
}

#[test]
fn the_device_interface_names_its_index() {
    let mut dev = VirtioMem::new(config()).with_index(2);
    let at = |offset| Register::new(0, offset, 4);
    assert_eq!(Device::read(&mut dev, at(0x008), 0), 24);
    assert_eq!(dev.interrupt_line(), Some(false));
    assert_eq!(
        Device::write(&mut dev, at(0x070), 0, 0),
        Effect::DriverReset(DeviceId::VirtioMem(2))
    );
    let mut g = Guest {
        dev,
        ..Guest::new()
    };
    g.probe();
    g.queue.make_available(&g.mem, 0);
    assert_eq!(
        Device::write(&mut g.dev, at(0x050), 0, 0),
        Effect::QueueWork(DeviceId::VirtioMem(2))
    );
}

#[test]
fn a_config_out_of_line_is_brought_into_line() {
    let dev = VirtioMem::new(MemConfig {
        addr: BLOCK + 5,
        region_size: 10 * BLOCK + 7,
        block_size: BLOCK - 1,
        node_id: 1,
    });
    assert_eq!(
        dev.config(),
        MemConfig {
            addr: 2 * BLOCK,
            region_size: 10 * BLOCK,
            block_size: BLOCK,
            node_id: 1,
        }
    );
    let tiny = VirtioMem::new(MemConfig {
        addr: 0,
        region_size: 1 << 40,
        block_size: 0,
        node_id: 0,
    });
    assert_eq!(tiny.config().block_size, MIN_BLOCK_SIZE);
    assert_eq!(tiny.config().region_size, MAX_BLOCKS * MIN_BLOCK_SIZE);
    let top = VirtioMem::new(MemConfig {
        addr: u64::MAX - 3 * BLOCK,
        region_size: 100 * BLOCK,
        block_size: BLOCK,
        node_id: 0,
    });
    let config = top.config();
    assert!(config.addr.checked_add(config.region_size).is_some());
    assert!(!top.is_plugged(u64::MAX));
}

/// One step of a driver that waits for each answer, as Linux does.
#[derive(Clone, Debug)]
enum Step {
    Request {
        kind: u16,
        first: i64,
        count: u16,
        offset: u64,
    },
    Complete(bool),
    Requested(u64),
    Reset,
}

fn step() -> impl Strategy<Value = Step> {
    let offset = prop_oneof![8 => Just(0u64), 1 => Just(4096u64), 1 => any::<u64>()];
    prop_oneof![
        6 => (0u16..5, -3i64..BLOCKS as i64 + 3, 0u16..12, offset).prop_map(
            |(kind, first, count, offset)| Step::Request { kind, first, count, offset }
        ),
        4 => any::<bool>().prop_map(Step::Complete),
        1 => (0..BLOCKS + 2).prop_map(Step::Requested),
        1 => Just(Step::Reset),
    ]
}

/// What the rules say to a request, from a model of one bool a block: the answer, or the
/// change the caller is handed.
fn expected(
    model: &[bool],
    requested: u64,
    kind: u16,
    addr: u64,
    count: u16,
) -> Result<(u16, u16), (bool, Vec<usize>)> {
    let plugged = model.iter().filter(|&&p| p).count() as u64;
    let range = (count > 0 && addr >= BASE && (addr - BASE).is_multiple_of(BLOCK))
        .then(|| (addr - BASE) / BLOCK)
        .filter(|first| first + u64::from(count) <= BLOCKS)
        .map(|first| first as usize..first as usize + usize::from(count));
    match (kind, range) {
        (request::UNPLUG_ALL, _) if plugged == 0 => Ok(ACK),
        (request::UNPLUG_ALL, _) => Err((false, (0..model.len()).filter(|&b| model[b]).collect())),
        (request::PLUG | request::UNPLUG | request::STATE, None) => Ok(ERROR),
        (request::PLUG, Some(r)) if model[r.clone()].iter().any(|&p| p) => Ok(ERROR),
        (request::PLUG, Some(r)) if (plugged + r.len() as u64) * BLOCK > requested => Ok(NACK),
        (request::PLUG, Some(r)) => Err((true, r.collect())),
        (request::UNPLUG, Some(r)) if !model[r.clone()].iter().all(|&p| p) => Ok(ERROR),
        (request::UNPLUG, Some(r)) => Err((false, r.collect())),
        (request::STATE, Some(r)) => {
            let n = model[r.clone()].iter().filter(|&&p| p).count();
            let state = if n == 0 {
                state::UNPLUGGED
            } else if n == r.len() {
                state::PLUGGED
            } else {
                state::MIXED
            };
            Ok((response::ACK, state))
        }
        _ => Ok(ERROR),
    }
}

proptest! {
    /// Random request sequences, completions, resets and wishes: every answer is the one the
    /// rules give, and plugged_size, plugged_ranges and is_plugged agree with the blocks.
    #[test]
    fn requests_follow_the_rules(steps in proptest::collection::vec(step(), 1..80)) {
        let mut g = Guest::probed(BLOCKS / 2);
        let mut model = vec![false; BLOCKS as usize];
        // The request in flight: its head (None after a reset), completion, the blocks it
        // changes and whether it plugs.
        let mut pending: Option<(Option<u16>, Completion, bool, Vec<usize>)> = None;
        for step in steps {
            match step {
                Step::Request { kind, first, count, offset } => {
                    if pending.is_some() {
                        continue;
                    }
                    let addr = (BASE as i64 + first * BLOCK as i64) as u64;
                    let addr = addr.wrapping_add(offset);
                    let want = expected(&model, g.dev.requested_size(), kind, addr, count);
                    let head = g.send(kind, addr, count);
                    let got = g.dev.process(&g.mem);
                    match (want, got) {
                        (Ok(answer), None) => {
                            prop_assert_eq!(g.queue.take_used(&g.mem).len(), 1);
                            prop_assert_eq!(g.response(head), answer);
                        }
                        (Err((plug, blocks)), Some(request)) => {
                            let completion = match request {
                                MemRequest::Plug { gpa, bytes, completion } => {
                                    prop_assert!(plug);
                                    prop_assert_eq!(gpa, block(blocks[0] as u64));
                                    prop_assert_eq!(bytes, blocks.len() as u64 * BLOCK);
                                    completion
                                }
                                MemRequest::Unplug { gpa, bytes, completion } => {
                                    prop_assert!(!plug);
                                    prop_assert_eq!(gpa, block(blocks[0] as u64));
                                    prop_assert_eq!(bytes, blocks.len() as u64 * BLOCK);
                                    completion
                                }
                                MemRequest::UnplugAll { ranges, completion } => {
                                    let total: u64 = ranges.iter().map(|r| r.1).sum();
                                    prop_assert_eq!(total, blocks.len() as u64 * BLOCK);
                                    completion
                                }
                            };
                            pending = Some((Some(head), completion, plug, blocks));
                        }
                        (want, got) => prop_assert!(false, "wanted {:?}, got {:?}", want, got),
                    }
                }
                Step::Complete(done) => {
                    let Some((head, completion, plug, blocks)) = pending.take() else {
                        continue;
                    };
                    let _ = g.dev.complete(completion, done, &g.mem);
                    if done {
                        for b in blocks {
                            model[b] = plug;
                        }
                    }
                    let answered = g.queue.take_used(&g.mem);
                    if let Some(head) = head {
                        prop_assert_eq!(answered.len(), 1);
                        prop_assert_eq!(g.response(head), if done { ACK } else { BUSY });
                    } else {
                        prop_assert!(answered.is_empty());
                    }
                }
                Step::Requested(blocks) => g.dev.set_requested_size(blocks * BLOCK),
                Step::Reset => {
                    prop_assert_eq!(g.w(0x070, 0), MemEvent::Reset);
                    g.probe();
                    if let Some(pending) = pending.as_mut() {
                        pending.0 = None;
                    }
                }
            }
            let plugged = model.iter().filter(|&&p| p).count() as u64;
            prop_assert_eq!(g.dev.plugged_size(), plugged * BLOCK);
            prop_assert_eq!(g.dev.mmio_read(0x128, 8), plugged * BLOCK);
            let ranges: u64 = g.dev.plugged_ranges().map(|r| r.1).sum();
            prop_assert_eq!(ranges, plugged * BLOCK);
            for (b, &p) in model.iter().enumerate() {
                prop_assert_eq!(g.dev.is_plugged(block(b as u64) + 4096), p);
            }
            prop_assert_eq!(g.dev.guest_error(), None);
        }
    }

    /// Arbitrary register traffic and ring contents: no panic, and plugged_size stays the
    /// count of plugged blocks.
    #[test]
    fn hostile_driver_never_panics(
        steps in proptest::collection::vec(
            prop_oneof![
                (0u64..0x140, prop_oneof![Just(4u8), any::<u8>()], any::<u64>())
                    .prop_map(|(o, s, v)| (0u8, o, s, v)),
                (0u64..0x9000, Just(0u8), any::<u64>()).prop_map(|(o, s, v)| (1u8, o, s, v)),
                Just((2u8, 0, 0, 0)),
                any::<bool>().prop_map(|d| (3u8, 0, 0, u64::from(d))),
            ],
            1..150,
        )
    ) {
        let mut g = Guest::probed(BLOCKS / 2);
        let mut receipts = Vec::new();
        for (what, offset, size, value) in steps {
            match what {
                0 => {
                    g.dev.mmio_write(offset, size, value);
                    g.dev.mmio_read(offset, size);
                }
                1 => g.mem.put(offset, &value.to_le_bytes()),
                2 => {
                    if let Some(request) = g.dev.process(&g.mem) {
                        receipts.push(request);
                    }
                }
                _ => {
                    if let Some(request) = receipts.pop() {
                        let completion = match request {
                            MemRequest::Plug { completion, .. }
                            | MemRequest::Unplug { completion, .. }
                            | MemRequest::UnplugAll { completion, .. } => completion,
                        };
                        let _ = g.dev.complete(completion, value == 1, &g.mem);
                    }
                }
            }
            prop_assert!(receipts.len() <= 1, "one in flight at a time");
            let ranges: u64 = g.dev.plugged_ranges().map(|r| r.1).sum();
            prop_assert_eq!(ranges, g.dev.plugged_size());
            prop_assert!(g.dev.plugged_size() <= BLOCKS * BLOCK);
        }
    }
}
