//! The switch alone, and three partitions' cards on one switch, driven as the firmware will.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use proptest::prelude::*;

use super::switch::{SwitchCounters, MAX_ENTRIES};
use super::*;
use crate::devices::virtio::net::{NicCounters, HEADER_LEN};
use crate::devices::virtio::queue::DESC_F_WRITE;
use crate::devices::virtio::testing::{ethernet, NetGuest, NET_QUEUE};

const BROADCAST: [u8; 6] = [0xFF; 6];

fn mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x00, 0x00, n]
}

#[test]
fn unknown_unicast_floods_then_learned_unicast_goes_to_one_port() {
    let mut switch = Switch::new(3);
    assert_eq!(
        switch.route(0, &ethernet(mac(1), mac(0), b"x")),
        Route::Flood
    );
    assert_eq!(switch.lookup(&mac(0)), Some(0));
    assert_eq!(
        switch.route(1, &ethernet(mac(0), mac(1), b"y")),
        Route::Port(0)
    );
    assert_eq!(
        switch.route(0, &ethernet(mac(1), mac(0), b"z")),
        Route::Port(1)
    );
    assert_eq!(
        switch.route(2, &ethernet(mac(9), mac(2), b"")),
        Route::Flood
    );
    assert_eq!(switch.learned(), 3);
    assert_eq!(
        switch.counters(),
        SwitchCounters {
            unicast: 2,
            flooded: 2,
            ..SwitchCounters::default()
        }
    );
}

#[test]
fn broadcast_and_multicast_flood_and_are_never_learned_as_sources() {
    let mut switch = Switch::new(2);
    let ipv6_multicast = [0x33, 0x33, 0, 0, 0, 1];
    assert_eq!(
        switch.route(0, &ethernet(BROADCAST, mac(0), b"")),
        Route::Flood
    );
    assert_eq!(
        switch.route(0, &ethernet(ipv6_multicast, mac(0), b"")),
        Route::Flood
    );
    // A multicast source is not learned, so it cannot attract unicast.
    assert_eq!(
        switch.route(1, &ethernet(mac(0), ipv6_multicast, b"")),
        Route::Port(0)
    );
    assert_eq!(switch.lookup(&ipv6_multicast), None);
    assert_eq!(
        switch.route(1, &ethernet(mac(0), BROADCAST, b"")),
        Route::Port(0)
    );
    assert_eq!(switch.learned(), 1);
}

#[test]
fn runts_same_port_and_missing_ports_are_dropped() {
    let mut switch = Switch::new(2);
    for len in [0, 6, 12, 13] {
        assert_eq!(
            switch.route(0, &vec![0; len]),
            Route::Drop(DropReason::Runt)
        );
    }
    assert_eq!(switch.learned(), 0, "nothing learned from a runt");
    assert_eq!(
        switch.route(0, &ethernet(BROADCAST, mac(0), b"")),
        Route::Flood
    );
    assert_eq!(
        switch.route(0, &ethernet(BROADCAST, mac(7), b"")),
        Route::Flood
    );
    // Two addresses behind port 0 talking to each other: port 0 has the frame already.
    assert_eq!(
        switch.route(0, &ethernet(mac(7), mac(0), b"")),
        Route::Drop(DropReason::SamePort)
    );
    assert_eq!(
        switch.route(2, &ethernet(mac(0), mac(1), b"")),
        Route::Drop(DropReason::NoSuchPort)
    );
    assert_eq!(switch.lookup(&mac(1)), None);
    let c = switch.counters();
    assert_eq!(
        (c.dropped_runt, c.dropped_same_port, c.dropped_no_such_port),
        (4, 1, 1)
    );
}

#[test]
fn a_moved_address_is_relearned_and_forget_drops_a_port() {
    let mut switch = Switch::new(3);
    switch.route(0, &ethernet(BROADCAST, mac(5), b""));
    switch.route(1, &ethernet(BROADCAST, mac(6), b""));
    assert_eq!(
        switch.route(1, &ethernet(mac(5), mac(6), b"")),
        Route::Port(0)
    );
    // mac(5) moves to port 2 (a member restarted elsewhere, a VM moved).
    switch.route(2, &ethernet(BROADCAST, mac(5), b""));
    assert_eq!(
        switch.route(1, &ethernet(mac(5), mac(6), b"")),
        Route::Port(2)
    );
    switch.forget(2);
    assert_eq!(switch.lookup(&mac(5)), None);
    assert_eq!(switch.lookup(&mac(6)), Some(1));
    assert_eq!(
        switch.route(1, &ethernet(mac(5), mac(6), b"")),
        Route::Flood
    );
}

#[test]
fn the_table_is_bounded_and_a_flooder_evicts_its_own_first() {
    let mut switch = Switch::new(2);
    // Port 0: two honest addresses.
    switch.route(0, &ethernet(BROADCAST, mac(0), b""));
    switch.route(0, &ethernet(BROADCAST, mac(1), b""));
    // Port 1 invents 10,000 source addresses.
    for n in 0..10_000u32 {
        let b = n.to_le_bytes();
        let source = [0x02, 0, b[0], b[1], b[2], b[3]];
        switch.route(1, &ethernet(BROADCAST, source, b""));
        assert!(switch.learned() <= MAX_ENTRIES);
    }
    assert_eq!(switch.learned(), MAX_ENTRIES);
    assert_eq!(switch.lookup(&mac(0)), Some(0));
    assert_eq!(switch.lookup(&mac(1)), Some(0));
    // The flooder's oldest inventions went first; its newest is known.
    let newest = 9_999u32.to_le_bytes();
    assert_eq!(
        switch.lookup(&[0x02, 0, newest[0], newest[1], newest[2], newest[3]]),
        Some(1)
    );
    assert_eq!(switch.lookup(&[0x02, 0, 0, 0, 0, 0]), None);
    // Least recently seen goes first on the fullest port: refresh one, evict the other.
    let mut switch = Switch::new(1);
    for n in 0..MAX_ENTRIES as u8 {
        switch.route(0, &ethernet(BROADCAST, [2, 0, 0, 0, 0, n], b""));
    }
    switch.route(0, &ethernet(BROADCAST, [2, 0, 0, 0, 0, 0], b""));
    switch.route(0, &ethernet(BROADCAST, [2, 0, 0, 0, 1, 0], b""));
    assert_eq!(switch.lookup(&[2, 0, 0, 0, 0, 0]), Some(0));
    assert_eq!(switch.lookup(&[2, 0, 0, 0, 0, 1]), None);
}

/// Three (or more) partitions, each a card and its RAM, as the firmware's members.
struct Members(Vec<RefCell<Option<NetGuest>>>);

impl Ports for Members {
    fn port_count(&self) -> usize {
        self.0.len()
    }
    fn with_port<R>(
        &self,
        port: usize,
        f: impl FnOnce(&mut crate::devices::virtio::net::VirtioNet, &dyn QueueMemory) -> R,
    ) -> Option<R> {
        let mut member = self.0.get(port)?.borrow_mut();
        let guest = member.as_mut()?;
        Some(f(&mut guest.nic, &guest.mem))
    }
}

impl Members {
    fn new(buffers: &[u16]) -> Members {
        Members(
            buffers
                .iter()
                .enumerate()
                .map(|(n, &count)| {
                    let features = NetGuest::linux_features();
                    RefCell::new(Some(NetGuest::running(mac(n as u8), features, count)))
                })
                .collect(),
        )
    }
    fn guest<R>(&self, port: usize, f: impl FnOnce(&mut NetGuest) -> R) -> R {
        f(self.0[port].borrow_mut().as_mut().unwrap())
    }
    /// The firmware's transmit pass for `port`: take a batch, route each frame under the
    /// switch "lock", deliver with no lock held.
    fn transmit(&self, switch: &RefCell<Switch>, port: usize) -> Vec<Delivery> {
        let frames = self.guest(port, |g| g.nic.take_transmits(&g.mem, 64));
        frames
            .iter()
            .map(|frame| {
                let route = switch.borrow_mut().route(port, frame.bytes());
                deliver(self, port, route, frame)
            })
            .collect()
    }
    fn received(&self, port: usize) -> Vec<Vec<u8>> {
        self.guest(port, |g| g.received())
    }
    fn counters(&self, port: usize) -> NicCounters {
        self.guest(port, |g| g.nic.counters())
    }
}

#[test]
fn three_partitions_on_one_switch() {
    let members = Members::new(&[8, 8, 8]);
    let switch = RefCell::new(Switch::new(3));
    // 0 says hello to everyone (ARP-like broadcast).
    let hello = ethernet(BROADCAST, mac(0), b"who has 10.0.0.2");
    members.guest(0, |g| g.send(&hello));
    let d = members.transmit(&switch, 0);
    assert_eq!(
        d,
        [Delivery {
            delivered: 2,
            dropped: 0,
            not_running: 0
        }]
    );
    assert!(members.received(0).is_empty());
    assert_eq!(members.received(1), core::slice::from_ref(&hello));
    assert_eq!(members.received(2), core::slice::from_ref(&hello));
    assert!(members.guest(1, |g| g.nic.interrupt_asserted()));
    // 1 answers 0: learned, so only 0 gets it.
    let answer = ethernet(mac(0), mac(1), b"10.0.0.2 is at mac(1)");
    members.guest(1, |g| g.send(&answer));
    assert_eq!(members.transmit(&switch, 1)[0].delivered, 1);
    assert_eq!(members.received(0), core::slice::from_ref(&answer));
    assert!(members.received(1).is_empty());
    assert!(members.received(2).is_empty());
    // 0 to 1, several frames in one batch.
    let frames: Vec<Vec<u8>> = (0..5u8)
        .map(|n| ethernet(mac(1), mac(0), &[n; 40]))
        .collect();
    members.guest(0, |g| {
        for frame in &frames {
            g.queue_frame(frame);
        }
        g.w(0x050, 1);
    });
    assert_eq!(members.transmit(&switch, 0).len(), 5);
    assert_eq!(members.received(1), frames);
    assert!(members.received(2).is_empty());
    let c0 = members.counters(0);
    let c1 = members.counters(1);
    assert_eq!((c0.tx_frames, c0.rx_frames), (6, 1));
    assert_eq!((c1.tx_frames, c1.rx_frames), (1, 6));
    assert_eq!(c1.rx_bytes, (hello.len() + 5 * 54) as u64);
}

#[test]
fn a_receiver_without_buffers_only_loses_frames() {
    let members = Members::new(&[4, 0, 4]);
    let switch = RefCell::new(Switch::new(3));
    let frame = ethernet(BROADCAST, mac(0), b"anyone?");
    for _ in 0..3 {
        members.guest(0, |g| g.send(&frame));
        let d = members.transmit(&switch, 0);
        assert_eq!(
            d,
            [Delivery {
                delivered: 1,
                dropped: 1,
                not_running: 0
            }]
        );
    }
    assert_eq!(members.counters(1).rx_dropped_no_buffer, 3);
    assert_eq!(members.received(2).len(), 3);
    // A member that stopped: its port drops, nothing is counted on a card.
    *members.0[2].borrow_mut() = None;
    switch.borrow_mut().forget(2);
    members.guest(0, |g| g.send(&frame));
    assert_eq!(
        members.transmit(&switch, 0),
        [Delivery {
            delivered: 0,
            dropped: 2,
            not_running: 1
        }]
    );
    // The receiver posts buffers again and gets the next frames.
    members.guest(1, |g| g.post_rx(2));
    members.guest(0, |g| g.send(&frame));
    assert_eq!(members.transmit(&switch, 0)[0].delivered, 1);
    assert_eq!(members.received(1), [frame]);
}

#[test]
fn deliver_ignores_a_route_back_to_the_sender() {
    let members = Members::new(&[2, 2]);
    let frame = ethernet(mac(1), mac(0), b"");
    assert_eq!(
        deliver(&members, 0, Route::Port(0), &Frame::plain(&frame)),
        Delivery::default()
    );
    assert_eq!(
        deliver(
            &members,
            0,
            Route::Drop(DropReason::Runt),
            &Frame::plain(&frame)
        ),
        Delivery::default()
    );
    assert_eq!(
        deliver(&members, 0, Route::Port(7), &Frame::plain(&frame)),
        Delivery {
            delivered: 0,
            dropped: 1,
            not_running: 1
        }
    );
}

/// One step of the property: a member sends a frame, corrupts its rings, or posts buffers.
#[derive(Clone, Debug)]
enum Step {
    /// Member `from` sends a frame to `to` (an index into the members' MACs, a broadcast, or
    /// an unknown address), with a payload of `len` bytes.
    Send { from: usize, to: usize, len: usize },
    /// Member `port` writes random bytes somewhere in its RAM (rings included).
    Poke {
        port: usize,
        at: u32,
        bytes: Vec<u8>,
    },
    /// Member `port` posts receive buffers.
    Post { port: usize, count: u16 },
    /// Member `port` posts one receive buffer with a random descriptor.
    PostBad {
        port: usize,
        addr: u64,
        len: u32,
        flags: u16,
    },
    /// Member `port` makes a random head available on its transmit queue.
    SendBad {
        port: usize,
        head: u16,
        addr: u64,
        len: u32,
        flags: u16,
    },
    /// The host flips member `port`'s link.
    Link { port: usize, up: bool },
    /// Member `port`'s transmit pass.
    Transmit { port: usize },
}

const PORTS: usize = 3;

fn step() -> impl Strategy<Value = Step> {
    let port = 0..PORTS;
    prop_oneof![
        6 => (port.clone(), 0..PORTS + 2, 0usize..1600)
            .prop_map(|(from, to, len)| Step::Send { from, to, len }),
        1 => (port.clone(), 0u32..0x10_0100, proptest::collection::vec(any::<u8>(), 1..24))
            .prop_map(|(port, at, bytes)| Step::Poke { port, at, bytes }),
        2 => (port.clone(), 0u16..8).prop_map(|(port, count)| Step::Post { port, count }),
        1 => (port.clone(), prop_oneof![0u64..0x10_0100, any::<u64>()], any::<u32>(), 0u16..8)
            .prop_map(|(port, addr, len, flags)| Step::PostBad { port, addr, len, flags }),
        1 => (port.clone(), 0u16..NET_QUEUE + 2, prop_oneof![0u64..0x10_0100, any::<u64>()],
              prop_oneof![0u32..2000, any::<u32>()], 0u16..8)
            .prop_map(|(port, head, addr, len, flags)| Step::SendBad { port, head, addr, len, flags }),
        1 => (port.clone(), any::<bool>()).prop_map(|(port, up)| Step::Link { port, up }),
        4 => port.prop_map(|port| Step::Transmit { port }),
    ]
}

proptest! {
    /// Random frames between three members, with random hostile ring contents and buffers:
    /// nothing panics, and every frame a card sent is accounted for — routed by the switch
    /// (or dropped there), then delivered or counted as dropped at each destination.
    #[test]
    fn every_frame_is_delivered_or_counted(steps in proptest::collection::vec(step(), 1..120)) {
        let members = Members::new(&[4, 4, 4]);
        let switch = RefCell::new(Switch::new(PORTS));
        let mut sent = 0u64;
        let mut destinations = 0u64;
        let mut delivered = 0u64;
        let mut dropped = 0u64;
        for step in steps {
            match step {
                Step::Send { from, to, len } => {
                    let dst = if to < PORTS { mac(to as u8) } else if to == PORTS { BROADCAST } else { mac(0xEE) };
                    let frame = ethernet(dst, mac(from as u8), &vec![0x5A; len]);
                    members.guest(from, |g| g.send(&frame));
                }
                Step::Poke { port, at, bytes } => {
                    members.guest(port, |g| {
                        let _ = g.mem.write(u64::from(at), &bytes);
                    });
                }
                Step::Post { port, count } => members.guest(port, |g| g.post_rx(count)),
                Step::PostBad { port, addr, len, flags } => members.guest(port, |g| {
                    let index = g.rx.avail_idx % g.rx.size;
                    g.rx.put_desc(&g.mem, index, addr, len, flags | (DESC_F_WRITE * u16::from(flags & 4 == 0)), index);
                    g.rx.make_available(&g.mem, index);
                }),
                Step::SendBad { port, head, addr, len, flags } => members.guest(port, |g| {
                    g.tx.put_desc(&g.mem, head % g.tx.size, addr, len, flags, head);
                    g.tx.make_available(&g.mem, head);
                    g.w(0x050, 1);
                }),
                Step::Link { port, up } => members.guest(port, |g| g.nic.set_link(up)),
                Step::Transmit { port } => {
                    for delivery in members.transmit(&switch, port) {
                        sent += 1;
                        destinations += delivery.destinations() as u64;
                        delivered += delivery.delivered as u64;
                        dropped += delivery.dropped as u64;
                        prop_assert!(delivery.destinations() < PORTS);
                        prop_assert_eq!(delivery.not_running, 0);
                    }
                }
            }
        }
        let cards: Vec<NicCounters> = (0..PORTS).map(|p| members.counters(p)).collect();
        let tx_frames: u64 = cards.iter().map(|c| c.tx_frames).sum();
        let rx_frames: u64 = cards.iter().map(|c| c.rx_frames).sum();
        let rx_dropped: u64 = cards.iter().map(|c| c.rx_dropped()).sum();
        let s = switch.borrow().counters();
        prop_assert_eq!(tx_frames, sent);
        prop_assert_eq!(
            s.unicast + s.flooded + s.dropped_runt + s.dropped_same_port + s.dropped_no_such_port,
            sent
        );
        prop_assert_eq!(destinations, s.unicast + 2 * s.flooded);
        prop_assert_eq!(delivered, rx_frames);
        prop_assert_eq!(dropped, rx_dropped);
        for (card, port) in cards.iter().zip(0..) {
            let bytes_ok = card.rx_bytes <= card.rx_frames * (HEADER_LEN as u64 + 65_550);
            prop_assert!(bytes_ok, "port {}", port);
        }
    }
}
