//! The network card over virtio-mmio as Linux's virtio_net.c drives it, and as a hostile
//! guest might.

use alloc::vec;
use alloc::vec::Vec;

use super::mmio::TransportEvent;
use super::net::*;
use super::net_offload::Frame;
use super::net_offload::{IpVersion, Offload};
use super::queue::{need_event, DESC_F_NEXT, DESC_F_WRITE};
use super::testing::{
    ethernet, parse_segment, tcp_frame, FakeMemory, NetGuest, ACK, NET_QUEUE, PSH, RX_BUFFER,
    SCRATCH,
};
use super::{feature, interrupt, status, GuestError};
use crate::devices::device::{Device, DeviceId, Effect, Register};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const PEER: [u8; 6] = [0x52, 0x54, 0x00, 0xAB, 0xCD, 0xEF];

fn frame(len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len - 14).map(|i| i as u8).collect();
    ethernet(PEER, MAC, &payload)
}

fn plain() -> u64 {
    feature::VERSION_1 | F_MAC | F_STATUS
}

#[test]
fn offers_mac_status_event_idx_offloads_and_mergeable_buffers_only() {
    let mut g = NetGuest::new(MAC);
    assert_eq!(g.r(0x008), DEVICE_ID);
    g.w(0x014, 0);
    assert_eq!(
        u64::from(g.r(0x010)),
        F_MAC | F_STATUS | feature::EVENT_IDX | F_OFFLOADS | F_MRG_RXBUF
    );
    g.w(0x014, 1);
    assert_eq!(g.r(0x010), 1, "VERSION_1");
    for (q, size) in [(0, RX_QUEUE_SIZE), (1, TX_QUEUE_SIZE)] {
        g.w(0x030, q);
        assert_eq!(g.r(0x034), u32::from(size));
    }
    g.w(0x030, 2);
    assert_eq!(g.r(0x034), 0, "no control queue");
    // A feature the device never offered (CTRL_VQ, bit 17) is refused.
    let mut g = NetGuest::new(MAC);
    g.w(0x070, status::ACKNOWLEDGE | status::DRIVER);
    g.w(0x024, 1);
    g.w(0x020, 1);
    g.w(0x024, 0);
    g.w(0x020, 1 << 17);
    g.w(
        0x070,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    assert_eq!(g.r(0x070) & status::FEATURES_OK, 0);
    let g = NetGuest::running(MAC, NetGuest::linux_features(), 0);
    assert_eq!(g.nic.negotiated_features(), NetGuest::linux_features());
}

#[test]
fn config_space_holds_mac_and_link() {
    let mut g = NetGuest::new(MAC);
    assert_eq!(g.nic.mac(), MAC);
    assert!(!g.nic.link_up(), "the link starts down");
    for (i, byte) in MAC.iter().enumerate() {
        assert_eq!(g.nic.mmio_read(0x100 + i as u64, 1), u64::from(*byte));
    }
    assert_eq!(g.nic.mmio_read(0x100, 4), 0x1200_5452);
    assert_eq!(g.nic.mmio_read(0x104, 2), 0x5634);
    assert_eq!(g.nic.mmio_read(0x106, 2), 0);
    g.nic.set_link(true);
    assert_eq!(g.nic.mmio_read(0x106, 2), u64::from(S_LINK_UP));
    assert_eq!(g.nic.mmio_read(0x104, 4), 0x0001_5634);
    // Misaligned, 8-byte and out-of-space reads are 0; writes change nothing.
    assert_eq!(g.nic.mmio_read(0x101, 2), 0);
    assert_eq!(g.nic.mmio_read(0x100, 8), 0);
    assert_eq!(g.nic.mmio_read(0x108, 1), 0);
    assert_eq!(g.nic.mmio_read(0x106, 4), 0);
    g.nic.mmio_write(0x100, 4, 0xFFFF_FFFF);
    g.nic.mmio_write(0x106, 2, 0);
    assert_eq!(g.nic.mac(), MAC);
    assert_eq!(g.nic.mmio_read(0x106, 2), 1);
}

#[test]
fn link_changes_raise_a_config_interrupt_once_running() {
    let mut g = NetGuest::new(MAC);
    g.nic.set_link(true);
    assert!(!g.nic.interrupt_asserted(), "not before DRIVER_OK");
    let mut g = NetGuest::running(MAC, NetGuest::linux_features(), 0);
    let generation = g.r(0x0FC);
    g.nic.set_link(true);
    assert!(!g.nic.interrupt_asserted(), "no change");
    g.nic.set_link(false);
    assert_eq!(g.r(0x060), interrupt::CONFIG_CHANGE);
    assert_ne!(g.r(0x0FC), generation);
    assert_eq!(g.nic.mmio_read(0x106, 2), 0);
    assert!(g.nic.interrupt_line() == Some(true));
    g.w(0x064, interrupt::CONFIG_CHANGE);
    assert!(!g.nic.interrupt_asserted());
}

#[test]
fn transmit_and_receive_round_trip() {
    let mut g = NetGuest::running(MAC, plain(), 4);
    let sent = frame(100);
    g.send(&sent);
    assert!(g.nic.has_pending_transmits());
    let frames = g.nic.take_transmits(&g.mem, 16);
    assert_eq!(frames, [Frame::plain(&sent)]);
    assert!(!g.nic.has_pending_transmits());
    assert_eq!(g.tx.take_used(&g.mem), [(0, 0)]);
    assert_eq!(g.r(0x060), interrupt::USED_BUFFER);
    g.w(0x064, interrupt::USED_BUFFER);

    let incoming = ethernet(MAC, PEER, b"hello, partition");
    assert_eq!(g.nic.receive(&g.mem, &Frame::plain(&incoming)), Ok(()));
    assert!(g.nic.interrupt_asserted());
    assert_eq!(g.received(), core::slice::from_ref(&incoming));
    let c = g.nic.counters();
    assert_eq!((c.tx_frames, c.tx_bytes), (1, 100));
    assert_eq!((c.rx_frames, c.rx_bytes), (1, incoming.len() as u64));
    assert_eq!(c.tx_dropped() + c.rx_dropped(), 0);
    assert_eq!(g.nic.guest_error(), None);
}

#[test]
fn header_and_frame_may_be_split_across_descriptors() {
    let mut g = NetGuest::running(MAC, plain(), 0);
    // Transmit: header in one descriptor, frame in two more.
    let sent = frame(60);
    g.mem.put(SCRATCH, &[0; HEADER_LEN]);
    g.mem.put(SCRATCH + 0x100, &sent[..20]);
    g.mem.put(SCRATCH + 0x200, &sent[20..]);
    g.tx.put_desc(&g.mem, 5, SCRATCH, HEADER_LEN as u32, DESC_F_NEXT, 9);
    g.tx.put_desc(&g.mem, 9, SCRATCH + 0x100, 20, DESC_F_NEXT, 2);
    g.tx.put_desc(&g.mem, 2, SCRATCH + 0x200, 40, 0, 0);
    g.tx.make_available(&g.mem, 5);
    g.w(0x050, 1);
    assert_eq!(g.nic.take_transmits(&g.mem, 1), [Frame::plain(&sent)]);
    assert_eq!(g.tx.take_used(&g.mem), [(5, 0)]);
    // Receive: a 5-byte descriptor then a big one.
    let rx = SCRATCH + 0x1000;
    g.rx.put_desc(&g.mem, 0, rx, 5, DESC_F_WRITE | DESC_F_NEXT, 1);
    g.rx.put_desc(&g.mem, 1, rx + 0x100, 1000, DESC_F_WRITE, 0);
    g.rx.make_available(&g.mem, 0);
    assert_eq!(g.nic.receive(&g.mem, &Frame::plain(&sent)), Ok(()));
    let len = HEADER_LEN + sent.len();
    assert_eq!(g.rx.take_used(&g.mem), [(0, len as u32)]);
    let mut got = g.mem.bytes(rx, 5);
    got.extend(g.mem.bytes(rx + 0x100, len - 5));
    assert_eq!(got[10], 1, "num_buffers");
    assert_eq!(got[HEADER_LEN..], sent[..]);
}

#[test]
fn no_interrupt_flag_is_honoured_without_event_idx() {
    let mut g = NetGuest::running(MAC, plain(), 2);
    g.tx.set_avail_flags(&g.mem, 1);
    g.rx.set_avail_flags(&g.mem, 1);
    g.send(&frame(60));
    assert_eq!(g.nic.take_transmits(&g.mem, 8).len(), 1);
    assert_eq!(g.nic.receive(&g.mem, &Frame::plain(&frame(60))), Ok(()));
    assert!(!g.nic.interrupt_asserted());
    // And avail_event stays untouched.
    assert_eq!(g.tx.avail_event(&g.mem), 0);
}

#[test]
fn need_event_follows_the_spec() {
    assert!(need_event(0, 1, 0));
    assert!(
        !need_event(1, 1, 0),
        "the driver wants the interrupt after entry 1"
    );
    assert!(need_event(1, 2, 0));
    assert!(need_event(3, 5, 2));
    assert!(!need_event(5, 5, 2));
    assert!(need_event(0xFFFF, 1, 0xFFFE), "across the wrap");
}

#[test]
fn used_event_suppresses_interrupts_with_event_idx() {
    let mut g = NetGuest::running(MAC, NetGuest::linux_features(), 8);
    // NO_INTERRUPT means nothing with EVENT_IDX.
    g.tx.set_avail_flags(&g.mem, 1);
    // The driver wants an interrupt only when the used index passes 2 (after the third).
    g.tx.set_used_event(&g.mem, 2);
    g.queue_frame(&frame(60));
    g.queue_frame(&frame(61));
    g.send(&frame(62));
    assert_eq!(g.nic.take_transmits(&g.mem, 2).len(), 2);
    assert!(!g.nic.interrupt_asserted(), "used index 2 has not passed 2");
    assert!(g.nic.has_pending_transmits(), "one frame left");
    assert_eq!(g.nic.take_transmits(&g.mem, 2).len(), 1);
    assert_eq!(g.r(0x060), interrupt::USED_BUFFER);
    g.w(0x064, interrupt::USED_BUFFER);
    // A batch that jumps over used_event still interrupts once.
    g.tx.set_used_event(&g.mem, 4);
    for n in 0..4 {
        g.queue_frame(&frame(60 + n));
    }
    g.w(0x050, 1);
    assert_eq!(g.nic.take_transmits(&g.mem, 8).len(), 4);
    assert!(g.nic.interrupt_asserted());
    g.w(0x064, interrupt::USED_BUFFER);
    // Receive: used_event far ahead suppresses.
    g.rx.set_used_event(&g.mem, 100);
    assert_eq!(g.nic.receive(&g.mem, &Frame::plain(&frame(60))), Ok(()));
    assert!(!g.nic.interrupt_asserted());
    g.rx.set_used_event(&g.mem, 1);
    assert_eq!(g.nic.receive(&g.mem, &Frame::plain(&frame(60))), Ok(()));
    assert!(g.nic.interrupt_asserted());
}

#[test]
fn avail_event_is_written_with_event_idx() {
    let mut g = NetGuest::running(MAC, NetGuest::linux_features(), 0);
    for n in 0..3 {
        g.queue_frame(&frame(60 + n));
    }
    g.w(0x050, 1);
    assert_eq!(g.nic.take_transmits(&g.mem, 64).len(), 3);
    assert_eq!(g.tx.avail_event(&g.mem), 3, "notify me at the next entry");
    // The receive ring, empty, asks to hear of the next buffer.
    assert_eq!(
        g.nic.receive(&g.mem, &Frame::plain(&frame(60))),
        Err(RxDrop::NoBuffer)
    );
    assert_eq!(g.rx.avail_event(&g.mem), 0);
    g.post_rx(2);
    assert_eq!(g.nic.receive(&g.mem, &Frame::plain(&frame(60))), Ok(()));
    assert_eq!(g.nic.receive(&g.mem, &Frame::plain(&frame(60))), Ok(()));
    assert_eq!(
        g.nic.receive(&g.mem, &Frame::plain(&frame(60))),
        Err(RxDrop::NoBuffer)
    );
    assert_eq!(g.rx.avail_event(&g.mem), 2);
}

#[test]
fn transmit_work_is_bounded_and_resumes() {
    let mut g = NetGuest::running(MAC, plain(), 0);
    for n in 0..40 {
        g.queue_frame(&frame(60 + n));
    }
    assert_eq!(
        g.nic.write(Register::new(0, 0x050, 4), 1, 0),
        Effect::QueueWork(DeviceId::VirtioNet(0))
    );
    let mut total = 0;
    let mut calls = 0;
    while g.nic.has_pending_transmits() {
        let frames = g.nic.take_transmits(&g.mem, 16);
        assert!(frames.len() <= 16);
        total += frames.len();
        calls += 1;
    }
    assert_eq!((total, calls), (40, 3));
    assert_eq!(g.tx.take_used(&g.mem).len(), 40);
    // max_frames 0 takes nothing and keeps the work.
    g.send(&frame(60));
    assert!(g.nic.take_transmits(&g.mem, 0).is_empty());
    assert!(g.nic.has_pending_transmits());
    assert_eq!(g.nic.take_transmits(&g.mem, 1).len(), 1);
}

#[test]
fn notifications_map_to_effects() {
    let mut g = NetGuest::new(MAC);
    assert!(g.negotiate(plain()));
    g.setup_queues();
    // Before DRIVER_OK: a transmit kick is kept, nothing is done.
    g.queue_frame(&frame(60));
    assert_eq!(g.nic.write(Register::new(0, 0x050, 4), 1, 0), Effect::None);
    assert!(g.nic.take_transmits(&g.mem, 8).is_empty());
    assert_eq!(
        g.nic.mmio_write(0x070, 4, 0xF),
        TransportEvent::QueueWork,
        "DRIVER_OK makes the kept kick work"
    );
    g.nic.set_link(true);
    assert_eq!(g.nic.take_transmits(&g.mem, 8).len(), 1);
    // Receive kicks and resets need nothing from the hypervisor.
    assert_eq!(g.nic.write(Register::new(0, 0x050, 4), 0, 0), Effect::None);
    assert!(!g.nic.has_pending_transmits());
    assert_eq!(g.nic.write(Register::new(0, 0x070, 4), 0, 0), Effect::None);
    assert_eq!(g.r(0x070), 0);
    let nic1 = VirtioNet::new(NetConfig { mac: MAC, index: 3 });
    assert_eq!(nic1.index(), 3);
}

#[test]
fn link_down_and_not_live_drop_frames() {
    let mut g = NetGuest::new(MAC);
    assert_eq!(
        g.nic.receive(&g.mem, &Frame::plain(&frame(60))),
        Err(RxDrop::NotLive)
    );
    let mut g = NetGuest::running(MAC, plain(), 4);
    g.nic.set_link(false);
    assert_eq!(
        g.nic.receive(&g.mem, &Frame::plain(&frame(60))),
        Err(RxDrop::LinkDown)
    );
    g.send(&frame(60));
    assert!(g.nic.take_transmits(&g.mem, 8).is_empty());
    assert_eq!(
        g.tx.take_used(&g.mem),
        [(0, 0)],
        "the chain still goes back"
    );
    let c = g.nic.counters();
    assert_eq!((c.rx_dropped_not_live, c.tx_dropped_link_down), (1, 1));
    assert_eq!(
        g.nic.receive(&g.mem, &Frame::plain(&[0; 13])),
        Err(RxDrop::LinkDown)
    );
    g.nic.set_link(true);
    assert_eq!(
        g.nic.receive(&g.mem, &Frame::plain(&[0; 13])),
        Err(RxDrop::BadFrame)
    );
    assert_eq!(
        g.nic
            .receive(&g.mem, &Frame::plain(&vec![0; MAX_FRAME_LEN + 1])),
        Err(RxDrop::BadFrame)
    );
    assert_eq!(g.nic.counters().rx_dropped_bad_frame, 2);
    assert!(g.received().is_empty());
}

/// A running card whose transmit descriptor 0 `set_up` builds; offered and taken.
fn transmit_hostile(set_up: impl FnOnce(&NetGuest)) -> (NetGuest, Vec<Frame>) {
    let mut g = NetGuest::running(MAC, plain(), 0);
    set_up(&g);
    g.tx.make_available(&g.mem, 0);
    g.w(0x050, 1);
    let frames = g.nic.take_transmits(&g.mem, 8);
    (g, frames)
}

/// The frame was dropped and counted, the chain returned empty, the device still fine.
fn assert_tx_dropped((mut g, frames): (NetGuest, Vec<Frame>), counter: fn(&NicCounters) -> u64) {
    assert!(frames.is_empty());
    assert_eq!(counter(&g.nic.counters()), 1);
    assert_eq!(g.nic.counters().tx_dropped(), 1);
    assert_eq!(g.tx.take_used(&g.mem), [(0, 0)]);
    assert_eq!(g.nic.guest_error(), None);
    // The next good frame goes through.
    g.tx.avail_idx = 1;
    g.send(&frame(60));
    assert_eq!(g.nic.take_transmits(&g.mem, 8).len(), 1);
}

fn with_header(frame: &[u8], flags: u8, gso_type: u8) -> Vec<u8> {
    let mut bytes = vec![flags, gso_type, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(frame);
    bytes
}

#[test]
fn bad_transmit_chains_are_dropped_and_returned() {
    let good = with_header(&frame(60), 0, 0);
    // A device-writable descriptor in the chain.
    assert_tx_dropped(
        transmit_hostile(|g| {
            g.mem.put(SCRATCH, &good);
            g.tx.put_desc(&g.mem, 0, SCRATCH, 20, DESC_F_NEXT, 1);
            g.tx.put_desc(&g.mem, 1, SCRATCH + 20, 52, DESC_F_WRITE, 0);
        }),
        |c| c.tx_dropped_malformed,
    );
    // Offloads that were not offered.
    for (flags, gso) in [(0, 1), (0, 0x80), (1, 0)] {
        assert_tx_dropped(
            transmit_hostile(|g| {
                g.mem.put(SCRATCH, &with_header(&frame(60), flags, gso));
                g.tx.put_desc(&g.mem, 0, SCRATCH, 72, 0, 0);
            }),
            |c| c.tx_dropped_malformed,
        );
    }
    // Shorter than header + Ethernet header; an empty descriptor.
    for len in [0, 25] {
        assert_tx_dropped(
            transmit_hostile(|g| g.tx.put_desc(&g.mem, 0, SCRATCH, len, 0, 0)),
            |c| c.tx_dropped_too_short,
        );
    }
    // Longer than the largest frame, in one descriptor or spread over several (no byte of
    // it is read: the address is nowhere).
    assert_tx_dropped(
        transmit_hostile(|g| {
            let len = (HEADER_LEN + MAX_FRAME_LEN + 1) as u32;
            g.tx.put_desc(&g.mem, 0, u64::MAX, len, 0, 0);
        }),
        |c| c.tx_dropped_too_large,
    );
    assert_tx_dropped(
        transmit_hostile(|g| {
            g.tx.put_desc(&g.mem, 0, SCRATCH, u32::MAX, DESC_F_NEXT, 1);
            g.tx.put_desc(&g.mem, 1, SCRATCH, u32::MAX, 0, 0);
        }),
        |c| c.tx_dropped_too_large,
    );
    // The largest frame itself is fine.
    let (g, frames) = transmit_hostile(|g| {
        g.mem
            .put(SCRATCH, &with_header(&vec![0xAA; MAX_FRAME_LEN], 0, 0));
        g.tx.put_desc(
            &g.mem,
            0,
            SCRATCH,
            (HEADER_LEN + MAX_FRAME_LEN) as u32,
            0,
            0,
        );
    });
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].len(), MAX_FRAME_LEN);
    assert_eq!(g.nic.counters().tx_bytes, MAX_FRAME_LEN as u64);
    // Bytes outside RAM.
    for addr in [(1 << 20) - 10, 1 << 40, u64::MAX - 5] {
        assert_tx_dropped(
            transmit_hostile(|g| g.tx.put_desc(&g.mem, 0, addr, 72, 0, 0)),
            |c| c.tx_dropped_outside_ram,
        );
    }
}

/// A running card with receive descriptor 0 as `set_up` builds it, posted; `frame` received.
fn receive_hostile(set_up: impl FnOnce(&NetGuest), frame: &[u8]) -> (NetGuest, Result<(), RxDrop>) {
    let mut g = NetGuest::running(MAC, plain(), 0);
    set_up(&g);
    g.rx.make_available(&g.mem, 0);
    let result = g.nic.receive(&g.mem, &Frame::plain(frame));
    (g, result)
}

/// A receive buffer's set-up, the drop it gets and the counter that counts it.
type RxCase = (fn(&NetGuest), RxDrop, fn(&NicCounters) -> u64);

#[test]
fn bad_receive_buffers_are_returned_empty() {
    let f = frame(100);
    let cases: [RxCase; 4] = [
        (
            |g| g.rx.put_desc(&g.mem, 0, SCRATCH, RX_BUFFER, 0, 0),
            RxDrop::BufferNotWritable,
            |c| c.rx_dropped_bad_buffer,
        ),
        (
            |g| g.rx.put_desc(&g.mem, 0, SCRATCH, 111, DESC_F_WRITE, 0),
            RxDrop::BufferTooSmall,
            |c| c.rx_dropped_too_small,
        ),
        (
            |g| {
                g.rx.put_desc(&g.mem, 0, (1 << 20) - 50, RX_BUFFER, DESC_F_WRITE, 0)
            },
            RxDrop::BufferOutsideRam,
            |c| c.rx_dropped_bad_buffer,
        ),
        (
            |g| {
                g.rx.put_desc(&g.mem, 0, SCRATCH, 10, DESC_F_WRITE | DESC_F_NEXT, 1);
                g.rx.put_desc(&g.mem, 1, u64::MAX - 4, RX_BUFFER, DESC_F_WRITE, 0);
            },
            RxDrop::BufferOutsideRam,
            |c| c.rx_dropped_bad_buffer,
        ),
    ];
    for (set_up, why, counter) in cases {
        let (mut g, result) = receive_hostile(set_up, &f);
        assert_eq!(result, Err(why));
        assert_eq!(counter(&g.nic.counters()), 1);
        assert_eq!(g.nic.counters().rx_dropped(), 1);
        assert_eq!(g.rx.take_used(&g.mem), [(0, 0)]);
        assert_eq!(g.nic.guest_error(), None);
        g.post_rx(1);
        assert_eq!(g.nic.receive(&g.mem, &Frame::plain(&f)), Ok(()));
        assert_eq!(g.received(), core::slice::from_ref(&f));
    }
    // Exactly big enough is enough.
    let (_, result) = receive_hostile(
        |g| g.rx.put_desc(&g.mem, 0, SCRATCH, 112, DESC_F_WRITE, 0),
        &f,
    );
    assert_eq!(result, Ok(()));
}

fn assert_needs_reset(g: &mut NetGuest, error: GuestError) {
    assert_eq!(g.nic.guest_error(), Some(error));
    assert_ne!(g.r(0x070) & status::DEVICE_NEEDS_RESET, 0);
    assert_ne!(g.r(0x060) & interrupt::CONFIG_CHANGE, 0);
    // No more work until the driver resets: frames are dropped, kicks ignored.
    assert_eq!(
        g.nic.receive(&g.mem, &Frame::plain(&frame(60))),
        Err(RxDrop::NotLive)
    );
    g.send(&frame(60));
    assert!(g.nic.take_transmits(&g.mem, 8).is_empty());
    g.w(0x070, 0);
    assert_eq!(g.nic.guest_error(), None);
}

#[test]
fn broken_rings_need_a_reset() {
    // A descriptor loop on the transmit queue.
    let (mut g, frames) = transmit_hostile(|g| {
        g.tx.put_desc(&g.mem, 0, SCRATCH, 40, DESC_F_NEXT, 1);
        g.tx.put_desc(&g.mem, 1, SCRATCH, 40, DESC_F_NEXT, 0);
    });
    assert!(frames.is_empty());
    assert_needs_reset(&mut g, GuestError::ChainTooLong);
    // A `next` past the ring.
    let (mut g, _) = transmit_hostile(|g| {
        g.tx.put_desc(&g.mem, 0, SCRATCH, 40, DESC_F_NEXT, NET_QUEUE);
    });
    assert_needs_reset(&mut g, GuestError::DescriptorIndex { index: NET_QUEUE });
    // A head past the ring on the receive queue.
    let mut g = NetGuest::running(MAC, plain(), 0);
    g.rx.make_available(&g.mem, 999);
    assert_eq!(
        g.nic.receive(&g.mem, &Frame::plain(&frame(60))),
        Err(RxDrop::RingBroken(GuestError::DescriptorIndex {
            index: 999
        }))
    );
    assert_eq!(g.nic.counters().rx_dropped_bad_buffer, 1);
    assert_needs_reset(&mut g, GuestError::DescriptorIndex { index: 999 });
    // The available index a whole ring ahead.
    let mut g = NetGuest::running(MAC, plain(), 0);
    g.tx.avail_idx = NET_QUEUE;
    g.send(&frame(60));
    assert!(g.nic.take_transmits(&g.mem, 8).is_empty());
    assert_needs_reset(
        &mut g,
        GuestError::AvailIndexJump {
            avail_idx: NET_QUEUE + 1,
            last_seen: 0,
        },
    );
}

#[test]
fn rings_outside_ram_need_a_reset() {
    // The used ring (and its avail_event) past the end of RAM: the first completion fails.
    let mut g = NetGuest::new(MAC);
    g.tx.used = (1 << 20) - 8;
    assert!(g.negotiate(NetGuest::linux_features()));
    g.setup_queues();
    g.driver_ok();
    g.nic.set_link(true);
    g.send(&frame(60));
    assert!(g.nic.take_transmits(&g.mem, 8).is_empty());
    assert!(matches!(
        g.nic.guest_error(),
        Some(GuestError::BadAddress { .. })
    ));
    // used_event past the end of RAM: the interrupt decision fails.
    let mut g = NetGuest::new(MAC);
    g.rx.avail = (1 << 20) - 4 - 2 * u64::from(NET_QUEUE);
    assert!(g.negotiate(NetGuest::linux_features()));
    g.setup_queues();
    g.driver_ok();
    g.nic.set_link(true);
    g.post_rx(1);
    assert!(matches!(
        g.nic.receive(&g.mem, &Frame::plain(&frame(60))),
        Err(RxDrop::RingBroken(GuestError::BadAddress { .. }))
    ));
}

#[test]
fn a_flood_of_hostile_chains_is_bounded() {
    // Every descriptor chains to the next, the last back to the first: each pop walks at
    // most the ring, and a call takes at most max_frames chains.
    let mut g = NetGuest::running(MAC, plain(), 0);
    for i in 0..NET_QUEUE {
        g.tx.put_desc(&g.mem, i, SCRATCH, 12, 0, 0);
    }
    for _ in 0..NET_QUEUE {
        g.tx.make_available(&g.mem, 0);
    }
    g.w(0x050, 1);
    assert!(g.nic.take_transmits(&g.mem, 10).is_empty());
    assert_eq!(g.nic.counters().tx_dropped_too_short, 10);
    assert!(g.nic.has_pending_transmits());
}

#[test]
fn memory_of_another_size_is_just_ram() {
    // A guest with 64 KiB of RAM: the rings fit, the buffers past 64 KiB do not.
    let mut g = NetGuest::running(MAC, plain(), 0);
    g.mem = FakeMemory::new(0x1_0000);
    g.tx.put_desc(&g.mem, 0, SCRATCH, 72, 0, 0);
    g.tx.make_available(&g.mem, 0);
    g.w(0x050, 1);
    assert!(g.nic.take_transmits(&g.mem, 8).is_empty());
    assert_eq!(g.nic.counters().tx_dropped_outside_ram, 1);
}

#[test]
fn counters_list_every_field_once() {
    let g = NetGuest::running(MAC, plain(), 0);
    let fields = g.nic.counters().fields();
    let mut names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), fields.len());
    assert!(fields.iter().all(|(_, value)| *value == 0));
}

/// A TCP/IPv4 frame with `payload` bytes as Linux sends one with TSO, its `virtio_net_hdr`
/// (NEEDS_CSUM on the TCP checksum, GSO_TCPV4 with a 1,448-byte MSS) and its IP header's
/// offset.
fn tso_frame(payload: usize, gso_type: u8) -> (Vec<u8>, [u8; HEADER_LEN], usize) {
    let data: Vec<u8> = (0..payload).map(|i| (i % 251) as u8).collect();
    let (frame, network) = tcp_frame(false, false, 12, PSH | ACK, &data);
    let transport = (network + 20) as u16;
    let mut header = [0u8; HEADER_LEN];
    header[0] = 1;
    header[1] = gso_type;
    header[2..4].copy_from_slice(&(transport + 32).to_le_bytes());
    header[4..6].copy_from_slice(&1448u16.to_le_bytes());
    header[6..8].copy_from_slice(&transport.to_le_bytes());
    header[8..10].copy_from_slice(&16u16.to_le_bytes());
    (frame, header, network)
}

/// A card that accepted `accept` sends `frame` behind `header` (one descriptor at SCRATCH).
fn send_with_header(accept: u64, header: [u8; HEADER_LEN], frame: &[u8]) -> (NetGuest, Vec<Frame>) {
    let mut g = NetGuest::running(MAC, accept, 0);
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(frame);
    g.mem.put(SCRATCH, &bytes);
    g.tx.put_desc(&g.mem, 0, SCRATCH, bytes.len() as u32, 0, 0);
    g.tx.make_available(&g.mem, 0);
    g.w(0x050, 1);
    let frames = g.nic.take_transmits(&g.mem, 8);
    (g, frames)
}

/// A receiver that accepted `accept`, with one 64 KiB receive buffer at SCRATCH.
fn big_buffer_receiver(accept: u64) -> NetGuest {
    let mut g = NetGuest::running(PEER, accept, 0);
    g.rx.put_desc(
        &g.mem,
        0,
        SCRATCH,
        (HEADER_LEN + MAX_FRAME_LEN) as u32,
        DESC_F_WRITE,
        0,
    );
    g.rx.make_available(&g.mem, 0);
    g
}

#[test]
fn tso_frames_cross_whole_between_drivers_that_accept_them() {
    let (frame, header, _) = tso_frame(20_000, 1);
    let (sender, frames) = send_with_header(NetGuest::linux_features(), header, &frame);
    assert_eq!(sender.nic.counters().tx_dropped(), 0);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].bytes(), &frame[..]);
    let segmentation = frames[0].offload().segmentation.expect("a TSO frame");
    assert_eq!(
        (segmentation.ip, segmentation.segment_size),
        (IpVersion::V4, 1448)
    );

    let mut receiver = big_buffer_receiver(NetGuest::linux_features());
    assert_eq!(receiver.nic.receive(&receiver.mem, &frames[0]), Ok(()));
    let len = HEADER_LEN + frame.len();
    assert_eq!(receiver.rx.take_used(&receiver.mem), [(0, len as u32)]);
    let got = receiver.mem.bytes(SCRATCH, len);
    // The sender's header, as it was, with num_buffers 1.
    let mut expected = header;
    expected[10] = 1;
    assert_eq!(got[..HEADER_LEN], expected);
    assert_eq!(got[HEADER_LEN..], frame[..]);
    let c = receiver.nic.counters();
    assert_eq!((c.rx_frames, c.rx_segmented, c.rx_checksummed), (1, 0, 0));
}

#[test]
fn a_receiver_without_offloads_gets_finished_segments() {
    let (frame, header, network) = tso_frame(5_000, 1);
    let (_, frames) = send_with_header(NetGuest::linux_features(), header, &frame);
    // No offloads at all, or the checksum but no TSO: cut in software, one buffer each.
    for accept in [plain(), plain() | F_GUEST_CSUM, plain() | F_GUEST_TSO4] {
        let mut receiver = NetGuest::running(PEER, accept, NET_QUEUE);
        assert_eq!(receiver.nic.receive(&receiver.mem, &frames[0]), Ok(()));
        let segments = receiver.received();
        assert_eq!(segments.len(), 4, "5,000 bytes at 1,448 a segment");
        let payload: Vec<u8> = segments
            .iter()
            .flat_map(|s| parse_segment(s, network, false).payload)
            .collect();
        assert_eq!(payload[..], frame[network + 20 + 32..]);
        let c = receiver.nic.counters();
        assert_eq!((c.rx_frames, c.rx_segmented, c.rx_dropped()), (4, 1, 0));
    }
}

#[test]
fn a_partial_checksum_goes_through_or_is_completed() {
    let (frame, mut header, network) = tso_frame(600, 1);
    header[1] = 0;
    let (_, frames) = send_with_header(plain() | F_CSUM, header, &frame);
    assert_eq!(frames.len(), 1);
    assert!(frames[0].offload().checksum.is_some());
    // A driver that accepts partial checksums gets the frame as it was sent.
    let mut receiver = big_buffer_receiver(plain() | F_GUEST_CSUM);
    assert_eq!(receiver.nic.receive(&receiver.mem, &frames[0]), Ok(()));
    let got = receiver.mem.bytes(SCRATCH, HEADER_LEN + frame.len());
    assert_eq!(got[0], 1, "NEEDS_CSUM");
    assert_eq!(got[6..10], header[6..10], "csum_start, csum_offset");
    assert_eq!(got[HEADER_LEN..], frame[..]);
    // One that does not gets it complete.
    let mut receiver = NetGuest::running(PEER, plain(), 2);
    assert_eq!(receiver.nic.receive(&receiver.mem, &frames[0]), Ok(()));
    let received = receiver.received();
    assert_eq!(
        parse_segment(&received[0], network, false).payload.len(),
        600
    );
    assert_eq!(receiver.nic.counters().rx_checksummed, 1);
}

#[test]
fn a_cut_frame_that_runs_out_of_buffers_counts_every_lost_segment() {
    let (frame, header, _) = tso_frame(5 * 1448, 1);
    let (_, frames) = send_with_header(NetGuest::linux_features(), header, &frame);
    let mut receiver = NetGuest::running(PEER, plain(), 2);
    assert_eq!(
        receiver.nic.receive(&receiver.mem, &frames[0]),
        Err(RxDrop::NoBuffer)
    );
    assert_eq!(receiver.received().len(), 2);
    let c = receiver.nic.counters();
    assert_eq!((c.rx_frames, c.rx_dropped_no_buffer), (2, 3));
    // A receiver that is not running loses the frame once, before any cutting.
    let mut stopped = NetGuest::running(PEER, plain(), 2);
    stopped.nic.set_link(false);
    assert_eq!(
        stopped.nic.receive(&stopped.mem, &frames[0]),
        Err(RxDrop::LinkDown)
    );
    let c = stopped.nic.counters();
    assert_eq!((c.rx_dropped_not_live, c.rx_segmented), (1, 0));
}

#[test]
fn offload_requests_the_driver_did_not_negotiate_or_that_lie_are_dropped() {
    let (frame, header, _) = tso_frame(3_000, 1);
    let malformed = |accept: u64, header: [u8; HEADER_LEN], frame: &[u8]| {
        let (g, frames) = send_with_header(accept, header, frame);
        assert!(frames.is_empty());
        assert_eq!(g.nic.counters().tx_dropped_malformed, 1);
        assert_eq!(g.nic.guest_error(), None);
    };
    // TSO without HOST_TSO4, a checksum without CSUM.
    malformed(plain() | F_CSUM | F_HOST_TSO6, header, &frame);
    let mut checksum_only = header;
    checksum_only[1] = 0;
    malformed(plain() | F_HOST_TSO4, checksum_only, &frame);
    // UDP, UDP_L4, ECN and unknown segmentation types are never offered.
    for gso_type in [3, 5, 0x81, 0x7F] {
        let mut forged = header;
        forged[1] = gso_type;
        malformed(NetGuest::linux_features(), forged, &frame);
    }
    // IPv6 segmentation of an IPv4 frame; a checksum field past the end; no checksum.
    let mut wrong_ip = header;
    wrong_ip[1] = 4;
    malformed(NetGuest::linux_features(), wrong_ip, &frame);
    let mut outside = header;
    outside[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
    malformed(NetGuest::linux_features(), outside, &frame);
    let mut no_checksum = header;
    no_checksum[0] = 0;
    malformed(NetGuest::linux_features(), no_checksum, &frame);
    // A driver's DATA_VALID is ignored: the frame goes.
    let mut data_valid = header;
    data_valid[0] |= 2;
    let (_, frames) = send_with_header(NetGuest::linux_features(), data_valid, &frame);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        frames[0].offload().segmentation.map(|s| s.segment_size),
        Some(1448)
    );
    assert_ne!(frames[0].offload(), Offload::NONE);
}

/// A receiver with mergeable buffers and `count` posted buffers of `size` bytes at SCRATCH.
fn mergeable_receiver(count: u16, size: u32) -> NetGuest {
    let mut g = NetGuest::running(PEER, plain() | F_MRG_RXBUF | F_GUEST_CSUM | F_GUEST_TSO4, 0);
    for i in 0..count {
        let addr = SCRATCH + u64::from(i) * u64::from(size);
        g.rx.put_desc(&g.mem, i, addr, size, DESC_F_WRITE, 0);
        g.rx.make_available(&g.mem, i);
    }
    g
}

#[test]
fn mergeable_buffers_take_a_frame_across_as_many_as_it_needs() {
    let (tcp, header, _) = tso_frame(5_000, 1);
    let (_, frames) = send_with_header(NetGuest::linux_features(), header, &tcp);
    let mut g = mergeable_receiver(8, 1500);
    let used_before = g.rx.used_idx(&g.mem);
    assert_eq!(g.nic.receive(&g.mem, &frames[0]), Ok(()));
    // 12 + 5,098 bytes: four buffers of 1,500, the last one part full.
    let total = HEADER_LEN + tcp.len();
    assert_eq!(
        g.rx.take_used(&g.mem),
        [(0, 1500), (1, 1500), (2, 1500), (3, (total - 4500) as u32)]
    );
    assert_eq!(g.rx.used_idx(&g.mem), used_before.wrapping_add(4));
    let mut got = g.mem.bytes(SCRATCH, total);
    assert_eq!(got[10..12], [4, 0], "num_buffers");
    got[10] = 0;
    let mut expected = header;
    expected[10] = 0;
    assert_eq!(got[..HEADER_LEN], expected, "the offloads go through");
    assert_eq!(got[HEADER_LEN..], tcp[..]);
    // A small frame takes one.
    assert_eq!(g.nic.receive(&g.mem, &Frame::plain(&frame(60))), Ok(()));
    assert_eq!(g.rx.take_used(&g.mem), [(4, (HEADER_LEN + 60) as u32)]);
    assert_eq!(g.nic.counters().rx_frames, 2);
}

#[test]
fn a_frame_that_needs_more_buffers_than_posted_takes_none() {
    let (frame, header, _) = tso_frame(5_000, 1);
    let (_, frames) = send_with_header(NetGuest::linux_features(), header, &frame);
    let mut g = mergeable_receiver(3, 1500);
    assert_eq!(g.nic.receive(&g.mem, &frames[0]), Err(RxDrop::NoBuffer));
    assert!(
        g.rx.take_used(&g.mem).is_empty(),
        "the three stay with the driver"
    );
    assert_eq!(g.nic.counters().rx_dropped_no_buffer, 1);
    // The driver posts a fourth: the frame's successor uses all four, from the first.
    g.rx.put_desc(&g.mem, 3, SCRATCH + 3 * 1500, 1500, DESC_F_WRITE, 0);
    g.rx.make_available(&g.mem, 3);
    assert_eq!(g.nic.receive(&g.mem, &frames[0]), Ok(()));
    let used: Vec<u32> = g.rx.take_used(&g.mem).iter().map(|&(id, _)| id).collect();
    assert_eq!(used, [0, 1, 2, 3]);
    assert_eq!(g.nic.guest_error(), None);
}

#[test]
fn chains_that_share_descriptors_cannot_make_a_frame_walk_the_table_again_and_again() {
    // Every available entry names the same 64-descriptor chain of empty buffers: each pop walks
    // 64 descriptors, and a mergeable frame would pop all 64 entries.
    let mut g = NetGuest::running(PEER, plain() | F_MRG_RXBUF, 0);
    for i in 0..NET_QUEUE {
        let next = (i + 1) % NET_QUEUE;
        let flags = DESC_F_WRITE | if i + 1 < NET_QUEUE { DESC_F_NEXT } else { 0 };
        g.rx.put_desc(&g.mem, i, SCRATCH, 0, flags, next);
    }
    for _ in 0..NET_QUEUE {
        g.rx.make_available(&g.mem, 0);
    }
    assert_eq!(
        g.nic.receive(&g.mem, &Frame::plain(&frame(100))),
        Err(RxDrop::BufferTooSmall)
    );
    // One chain's worth of descriptors (the table's size) was walked, and that chain returned
    // empty; the device is fine.
    assert_eq!(g.rx.take_used(&g.mem), [(0, 0)]);
    assert_eq!(g.nic.guest_error(), None);
}

#[test]
fn a_bad_buffer_among_several_drops_the_frame_and_returns_them_all_empty() {
    let mut g = mergeable_receiver(2, 40);
    g.rx.put_desc(&g.mem, 1, SCRATCH + 40, 40, 0, 0);
    assert_eq!(
        g.nic.receive(&g.mem, &Frame::plain(&frame(60))),
        Err(RxDrop::BufferNotWritable)
    );
    assert_eq!(g.rx.take_used(&g.mem), [(0, 0), (1, 0)]);
    assert_eq!(g.nic.counters().rx_dropped_bad_buffer, 1);
}

#[test]
fn a_pass_holds_a_bounded_number_of_bytes() {
    // 8 frames of 60 KiB: a pass stops once it holds PASS_BYTES, the rest waits for the next.
    let mut g = NetGuest::running(MAC, plain(), 0);
    let big = frame(60 * 1024);
    let mut bytes = vec![0u8; HEADER_LEN];
    bytes.extend_from_slice(&big);
    g.mem.put(SCRATCH, &bytes);
    for i in 0..8u16 {
        g.tx.put_desc(&g.mem, i, SCRATCH, bytes.len() as u32, 0, 0);
        g.tx.make_available(&g.mem, i);
    }
    g.w(0x050, 1);
    let first = g.nic.take_transmits(&g.mem, 64);
    let per_pass = PASS_BYTES.div_ceil(big.len());
    assert_eq!(first.len(), per_pass);
    assert!(first.iter().map(Frame::len).sum::<usize>() < PASS_BYTES + MAX_FRAME_LEN);
    assert!(g.nic.has_pending_transmits(), "the rest is still to take");
    let mut total = first.len();
    while g.nic.has_pending_transmits() {
        total += g.nic.take_transmits(&g.mem, 64).len();
    }
    assert_eq!(total, 8);
}
