//! The network card's hostile probe (`docs/network.md`, issue #17 test (d)):
//! `mode=hostile probe=virtio-net [ip=A.B.C.D] [peer=A.B.C.D]` drives the partition's card 0
//! (virtio-net, VIRTIO 1.2 §5.1, on its virtio-mmio window at `0xFEB0_0200`: the layout has
//! no balloon) through each way a driver can break the rules, and prints the answer it
//! observes for each as one `{"event":"virtio_net","case":NAME,...,"ok":BOOL}` line.
//!
//! Cases that break a ring put the card into DEVICE_NEEDS_RESET; the probe resets it and sets
//! it up again after each: a notification before DRIVER_OK (nothing is used until DRIVER_OK),
//! a queue size that is not a power of two (QueueReady stays 0), a descriptor loop, a chain
//! longer than the queue, an available index past the queue. Then, the card set up properly,
//! the probe finds its peer (a Linux partition at `peer`, default 10.0.0.1) by ARP, from
//! address `ip` (default 10.0.0.9) and the card's own MAC, read from its configuration space.
//! Each bad frame (outside RAM, in the I/O APIC's or its own card's window, wrapping past
//! 2^64, longer than 65,550 bytes, shorter than its headers, device-writable, asking for an
//! offload not offered) must come back used with nothing written while the card keeps
//! running, which the next ARP round trip to the peer proves. On the receive side: no buffers
//! posted while replies arrive (nothing used, the card keeps running), a device-readable
//! buffer (returned empty, untouched), and a flood of [`FLOOD_FRAMES`] broadcast frames (all
//! returned; the guest goes on). Last, `hostile_done` and exit status 0 when every case got
//! its answer, 1 otherwise (and 1 with an `error` line when a step it needs fails).
//!
//! Waits are counted in TSC ticks at an assumed [`TICKS_PER_S`]: bounds, not measurements.

use numavisor_policy::devices::virtio::net::{
    DEVICE_ID as NET_DEVICE, ETHERNET_HEADER_LEN, HEADER_LEN, MAX_FRAME_LEN,
};
use numavisor_policy::report::events::mac_string;

use crate::console::{exit, report, Json};
use crate::virtio_mmio::{
    reg, status, DeviceMemory, Ring, Window, CONFIG_OFFSET, DESC_F_NEXT, DESC_F_WRITE,
    F_VERSION_1_HIGH, MAX_POLLS, RING_BYTES,
};

/// Card 0's window: slot 1 (slot 0 is the balloon's, absent here).
const WINDOW: Window = Window(0xFEB0_0200);
/// VIRTIO_NET_F_MAC (bit 5 of word 0).
const F_MAC: u32 = 1 << 5;
const RECEIVE: u16 = 0;
const TRANSMIT: u16 = 1;
/// The driver's queue sizes: receive buffers, and a transmit ring a flood fills at once.
const RX_SIZE: u16 = 16;
const TX_SIZE: u16 = 256;
/// The transmit ring of the ring-breaking cases.
const SMALL_TX_SIZE: u16 = 8;
/// Bytes of one receive buffer: the header and a 1,514-byte frame fit.
const RX_BUFFER: usize = 2048;
/// Broadcast frames the flood sends, a transmit ring's worth per notification.
const FLOOD_FRAMES: u32 = 4096;
/// An assumption for bounds only (QEMU's TCG and most hosts run the TSC at 1 to 4 GHz).
const TICKS_PER_S: u64 = 2_000_000_000;
/// Seconds the probe gives its peer to answer its first ARP request (the Linux partitions
/// boot meanwhile).
const PEER_WAIT_S: u64 = 300;
/// An EtherType for nobody (IEEE 802 local experimental): what the flood carries.
const ETHERTYPE_EXPERIMENTAL: u16 = 0x88B5;
const ETHERTYPE_ARP: u16 = 0x0806;
/// Addresses a frame must not be read from: past RAM, the I/O APIC, the card's own window,
/// and a range that wraps past 2^64.
const OUTSIDE_RAM: u64 = 0x40_0000_0000;
const IOAPIC: u64 = 0xFEC0_0000;
const WRAPPING: u64 = 0xFFFF_FFFF_FFFF_FFF0;

static RX_RING: DeviceMemory<RING_BYTES> = DeviceMemory::new();
static TX_RING: DeviceMemory<RING_BYTES> = DeviceMemory::new();
static RX_BUFFERS: DeviceMemory<{ RX_SIZE as usize * RX_BUFFER }> = DeviceMemory::new();
/// Frames to send, each behind its virtio header: [`ARP_AT`], [`FLOOD_AT`], [`OFFLOAD_AT`].
static TX_FRAMES: DeviceMemory<4096> = DeviceMemory::new();
const ARP_AT: usize = 0;
const FLOOD_AT: usize = 1024;
const OFFLOAD_AT: usize = 2048;
/// Bytes of an ARP request for IPv4 over Ethernet.
const ARP_FRAME_LEN: usize = 42;
const FLOOD_FRAME_LEN: usize = 60;
/// A buffer for the frame one byte longer than the card carries.
static BIG: DeviceMemory<{ 17 * 4096 }> = DeviceMemory::new();

/// The card, set up: its rings, its MAC, and how far the driver has read the receive ring.
struct Card {
    rx: Ring,
    tx: Ring,
    mac: [u8; 6],
    rx_seen: u16,
    ip: [u8; 4],
    peer: [u8; 4],
}

/// What the device did with one transmit chain.
struct Sent {
    returned: bool,
    used_len: u32,
    needs_reset: bool,
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn device_needs_reset() -> bool {
    WINDOW.status() & status::DEVICE_NEEDS_RESET != 0
}

/// The card's MAC from its configuration space (4-byte reads: mac[0..4], mac[4..6] and
/// status).
fn read_mac() -> [u8; 6] {
    let low = WINDOW.read(CONFIG_OFFSET).to_le_bytes();
    let high = WINDOW.read(CONFIG_OFFSET + 4).to_le_bytes();
    [low[0], low[1], low[2], low[3], high[0], high[1]]
}

/// Writes the ARP request "who has `peer`, tell `ip`" from `mac` at [`ARP_AT`].
fn write_arp_request(mac: [u8; 6], ip: [u8; 4], peer: [u8; 4]) {
    let mut frame = [0u8; HEADER_LEN + ARP_FRAME_LEN];
    let eth = &mut frame[HEADER_LEN..];
    eth[..6].copy_from_slice(&[0xFF; 6]);
    eth[6..12].copy_from_slice(&mac);
    eth[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // Ethernet, IPv4, 6-byte and 4-byte addresses, a request.
    eth[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    eth[22..28].copy_from_slice(&mac);
    eth[28..32].copy_from_slice(&ip);
    eth[38..42].copy_from_slice(&peer);
    TX_FRAMES.write_bytes(ARP_AT, &frame);
}

/// Features, rings and queues, without DRIVER_OK; receive buffers posted if `post_rx`.
fn configure(tx_size: u16, post_rx: bool) -> Result<(Ring, Ring), &'static str> {
    WINDOW.negotiate(F_MAC, F_VERSION_1_HIGH)?;
    let mut rx = Ring::new(&RX_RING, RX_SIZE);
    let tx = Ring::new(&TX_RING, tx_size);
    for i in 0..RX_SIZE {
        let addr = RX_BUFFERS.base() + (usize::from(i) * RX_BUFFER) as u64;
        rx.set_descriptor(i, addr, RX_BUFFER as u32, DESC_F_WRITE, 0);
    }
    if post_rx {
        for i in 0..RX_SIZE {
            rx.make_available(i);
        }
    }
    WINDOW.enable_queue(RECEIVE, &rx)?;
    WINDOW.enable_queue(TRANSMIT, &tx)?;
    Ok((rx, tx))
}

impl Card {
    /// Resets the card and sets it up again, running (DRIVER_OK).
    fn setup(
        tx_size: u16,
        post_rx: bool,
        ip: [u8; 4],
        peer: [u8; 4],
    ) -> Result<Card, &'static str> {
        let (rx, tx) = configure(tx_size, post_rx)?;
        WINDOW.driver_ok()?;
        Ok(Card {
            rx,
            tx,
            mac: read_mac(),
            rx_seen: 0,
            ip,
            peer,
        })
    }

    /// Sends the chain `descriptors` (address, length, flags; linked in order from the next
    /// free slot) and reads what came back.
    fn send(&mut self, descriptors: &[(u64, u32, u16)]) -> Sent {
        let size = self.tx.size();
        let head = self.tx.available() % size;
        for (i, &(addr, len, flags)) in descriptors.iter().enumerate() {
            let index = (head + i as u16) % size;
            let last = i + 1 == descriptors.len();
            let flags = if last { flags } else { flags | DESC_F_NEXT };
            self.tx
                .set_descriptor(index, addr, len, flags, (index + 1) % size);
        }
        self.tx.make_available(head);
        WINDOW.notify(TRANSMIT);
        let returned = self.tx.wait_used(self.tx.available(), MAX_POLLS);
        let (id, used_len) = self.tx.used_element(self.tx.available().wrapping_sub(1));
        Sent {
            returned: returned && id == u32::from(head),
            used_len,
            needs_reset: device_needs_reset(),
        }
    }

    fn send_arp_request(&mut self) -> Sent {
        write_arp_request(self.mac, self.ip, self.peer);
        self.send(&[(
            TX_FRAMES.base() + ARP_AT as u64,
            (HEADER_LEN + ARP_FRAME_LEN) as u32,
            0,
        )])
    }

    /// The next receive buffer the device returned: its descriptor and the bytes written.
    fn next_received(&mut self) -> Option<(u16, u32)> {
        if self.rx.used_idx() == self.rx_seen {
            return None;
        }
        let (id, len) = self.rx.used_element(self.rx_seen);
        self.rx_seen = self.rx_seen.wrapping_add(1);
        Some(((id as u16) % RX_SIZE, len))
    }

    /// Whether buffer `id`, `len` bytes written, holds the peer's ARP reply to this card.
    fn is_arp_reply(&self, id: u16, len: u32) -> bool {
        let mut frame = [0u8; HEADER_LEN + ARP_FRAME_LEN];
        if (len as usize) < frame.len() {
            return false;
        }
        RX_BUFFERS.read_bytes(usize::from(id) * RX_BUFFER, &mut frame);
        let eth = &frame[HEADER_LEN..];
        eth[..6] == self.mac
            && eth[12..14] == ETHERTYPE_ARP.to_be_bytes()
            && eth[20..22] == [0, 2]
            && eth[28..32] == self.peer
    }

    /// ARP requests to the peer, one about every half second, until it answers or `tries`
    /// were sent; every buffer the device returns is posted again. The tries it took.
    fn round_trip(&mut self, tries: u64) -> Option<u64> {
        for attempt in 1..=tries {
            if self.send_arp_request().needs_reset {
                return None;
            }
            let deadline = rdtsc() + TICKS_PER_S / 2;
            while rdtsc() < deadline {
                if let Some((id, len)) = self.next_received() {
                    let reply = self.is_arp_reply(id, len);
                    self.rx.make_available(id);
                    if reply {
                        return Some(attempt);
                    }
                }
                core::hint::spin_loop();
            }
        }
        None
    }

    /// Polls the receive ring for about `seconds`; buffers returned (not posted again).
    fn watch_receive(&mut self, seconds_halves: u64) -> u16 {
        let deadline = rdtsc() + seconds_halves * TICKS_PER_S / 2;
        while rdtsc() < deadline {
            core::hint::spin_loop();
        }
        self.rx.used_idx().wrapping_sub(self.rx_seen)
    }
}

/// The probe's verdicts, one line each.
struct Verdicts {
    cases: u32,
    failed: u32,
}

impl Verdicts {
    /// Prints case `name`'s line (`fields`: more JSON members, each with a leading comma).
    fn case(&mut self, name: &str, ok: bool, fields: core::fmt::Arguments) {
        self.cases += 1;
        if !ok {
            self.failed += 1;
        }
        report!(
            "{{\"event\":\"virtio_net\",\"case\":{}{fields},\"ok\":{ok}}}",
            Json(name)
        );
    }
}

fn fail(step: &str, message: &str) -> ! {
    report!(
        "{{\"event\":\"virtio_net\",\"error\":{},\"step\":{}}}",
        Json(message),
        Json(step)
    );
    exit(1)
}

/// `A.B.C.D`.
fn parse_ipv4(text: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = text.split('.');
    for byte in &mut out {
        *byte = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The probe (see the module note), with the command line's `ip=` and `peer=`.
pub fn run(ip: Option<&str>, peer: Option<&str>) -> ! {
    let ip = ip.and_then(parse_ipv4).unwrap_or([10, 0, 0, 9]);
    let peer = peer.and_then(parse_ipv4).unwrap_or([10, 0, 0, 1]);
    if let Err(message) = WINDOW.find(NET_DEVICE) {
        fail("find", message);
    }
    let mut verdicts = Verdicts {
        cases: 0,
        failed: 0,
    };
    let mac = read_mac();
    report!(
        "{{\"event\":\"virtio_net_card\",\"mac\":{},\"window\":{}}}",
        Json(mac_string(mac)),
        WINDOW.0
    );
    breaks_the_ring(&mut verdicts, ip, peer);
    let mut card = Card::setup(TX_SIZE, true, ip, peer).unwrap_or_else(|m| fail("setup", m));
    let started = rdtsc();
    let Some(tries) = card.round_trip(PEER_WAIT_S * 2) else {
        fail("peer", "the peer never answered an ARP request")
    };
    verdicts.case(
        "peer-answers",
        true,
        format_args!(
            ",\"tries\":{tries},\"seconds\":{}",
            (rdtsc() - started) / TICKS_PER_S
        ),
    );
    bad_frames(&mut verdicts, &mut card);
    let card = receive_side(&mut verdicts, ip, peer);
    flood(&mut verdicts, card);
    report!(
        "{{\"event\":\"hostile_done\",\"probe\":\"virtio-net\",\"count\":{},\"failed\":{}}}",
        verdicts.cases,
        verdicts.failed
    );
    exit(if verdicts.failed == 0 { 0 } else { 1 })
}

/// Writes a transmit ring the device must refuse (its frame at the address given).
type BreakRing = fn(&mut Ring, u64);

/// The cases that break the device's rules on the rings, each from a reset.
fn breaks_the_ring(verdicts: &mut Verdicts, ip: [u8; 4], peer: [u8; 4]) {
    // A notification before DRIVER_OK: nothing is used until the driver is running.
    let (_rx, mut tx) = configure(TX_SIZE, false).unwrap_or_else(|m| fail("configure", m));
    write_arp_request(read_mac(), ip, peer);
    tx.set_descriptor(
        0,
        TX_FRAMES.base() + ARP_AT as u64,
        (HEADER_LEN + ARP_FRAME_LEN) as u32,
        0,
        0,
    );
    tx.make_available(0);
    WINDOW.notify(TRANSMIT);
    let before = if tx.wait_used(1, MAX_POLLS / 10) {
        1
    } else {
        0
    };
    let status_before = WINDOW.status();
    let driver_ok = WINDOW.driver_ok().is_ok();
    let after = if tx.wait_used(1, MAX_POLLS) { 1 } else { 0 };
    verdicts.case(
        "notify-before-driver-ok",
        before == 0 && driver_ok,
        format_args!(
            ",\"used_before_driver_ok\":{before},\"status_before\":{status_before},\"used_after_driver_ok\":{after}"
        ),
    );

    // A queue size that is not a power of two: QueueReady refused, DEVICE_NEEDS_RESET.
    WINDOW
        .negotiate(F_MAC, F_VERSION_1_HIGH)
        .unwrap_or_else(|m| fail("negotiate", m));
    let odd = Ring::new(&TX_RING, 3);
    WINDOW.configure_queue(TRANSMIT, 3, &odd);
    WINDOW.write(reg::QUEUE_READY, 1);
    let ready = WINDOW.read(reg::QUEUE_READY);
    let needs_reset = device_needs_reset();
    verdicts.case(
        "queue-size-not-power-of-two",
        ready == 0 && needs_reset,
        format_args!(",\"queue_size\":3,\"queue_ready\":{ready},\"needs_reset\":{needs_reset}"),
    );

    // Chains the device must refuse whole: each puts it into DEVICE_NEEDS_RESET.
    let frame = TX_FRAMES.base() + ARP_AT as u64;
    let ring_cases: [(&str, BreakRing); 3] = [
        ("descriptor-loop", |tx: &mut Ring, frame: u64| {
            tx.set_descriptor(0, frame, 12, DESC_F_NEXT, 1);
            tx.set_descriptor(1, frame + 12, 42, DESC_F_NEXT, 0);
            tx.make_available(0);
        }),
        ("chain-longer-than-queue", |tx: &mut Ring, frame: u64| {
            // Nine descriptors, 0 to 8, in a queue of eight.
            for i in 0..=SMALL_TX_SIZE {
                let flags = if i < SMALL_TX_SIZE { DESC_F_NEXT } else { 0 };
                tx.set_descriptor(i, frame + u64::from(i) * 6, 6, flags, i + 1);
            }
            tx.make_available(0);
        }),
        ("avail-index-past-queue", |tx: &mut Ring, _: u64| {
            tx.set_avail_idx(SMALL_TX_SIZE + 1);
        }),
    ];
    for (name, break_ring) in ring_cases {
        let mut card =
            Card::setup(SMALL_TX_SIZE, false, ip, peer).unwrap_or_else(|m| fail("setup", m));
        break_ring(&mut card.tx, frame);
        WINDOW.notify(TRANSMIT);
        let needs_reset = device_needs_reset();
        let used = card.tx.used_idx();
        verdicts.case(
            name,
            needs_reset && used == 0,
            format_args!(",\"needs_reset\":{needs_reset},\"used\":{used}"),
        );
    }
}

/// Frames the device must drop, returning their chains, the card still running: each
/// followed by an ARP round trip to the peer.
fn bad_frames(verdicts: &mut Verdicts, card: &mut Card) {
    let frame_len = (HEADER_LEN + ARP_FRAME_LEN) as u32;
    let arp = TX_FRAMES.base() + ARP_AT as u64;
    // A header asking for TCPv4 segmentation (gso_type 1), which the card did not offer.
    let mut offload = [0u8; HEADER_LEN + ARP_FRAME_LEN];
    offload[1] = 1;
    TX_FRAMES.write_bytes(OFFLOAD_AT, &offload);
    let too_large = (HEADER_LEN + MAX_FRAME_LEN + 1) as u32;
    let too_short = (HEADER_LEN + ETHERNET_HEADER_LEN - 1) as u32;
    let cases: [(&str, (u64, u32, u16)); 8] = [
        ("frame-outside-ram", (OUTSIDE_RAM, frame_len, 0)),
        ("frame-in-ioapic-window", (IOAPIC, frame_len, 0)),
        ("frame-in-own-card-window", (WINDOW.0, frame_len, 0)),
        ("frame-wraps-past-2^64", (WRAPPING, frame_len, 0)),
        ("frame-longer-than-65550", (BIG.base(), too_large, 0)),
        ("frame-shorter-than-headers", (arp, too_short, 0)),
        (
            "transmit-buffer-device-writable",
            (arp, frame_len, DESC_F_WRITE),
        ),
        (
            "offload-not-offered",
            (TX_FRAMES.base() + OFFLOAD_AT as u64, frame_len, 0),
        ),
    ];
    for (name, descriptor) in cases {
        let sent = card.send(&[descriptor]);
        let round_trip = card.round_trip(10);
        verdicts.case(
            name,
            sent.returned && sent.used_len == 0 && !sent.needs_reset && round_trip.is_some(),
            format_args!(
                ",\"len\":{},\"returned\":{},\"used_len\":{},\"needs_reset\":{},\"then_round_trip\":{}",
                descriptor.1,
                sent.returned,
                sent.used_len,
                sent.needs_reset,
                round_trip.is_some()
            ),
        );
    }
}

/// The receive side: no buffers posted while replies arrive, then a device-readable
/// buffer. Returns the card set up again, running.
fn receive_side(verdicts: &mut Verdicts, ip: [u8; 4], peer: [u8; 4]) -> Card {
    // Never posts a receive buffer: the peer's replies find none.
    let mut card = Card::setup(TX_SIZE, false, ip, peer).unwrap_or_else(|m| fail("setup", m));
    let requests = 4;
    for _ in 0..requests {
        card.send_arp_request();
        card.watch_receive(1);
    }
    let rx_used = card.rx.used_idx();
    let needs_reset = device_needs_reset();
    for i in 0..RX_SIZE {
        card.rx.make_available(i);
    }
    let round_trip = card.round_trip(10);
    verdicts.case(
        "never-posts-receive-buffers",
        rx_used == 0 && !needs_reset && round_trip.is_some(),
        format_args!(
            ",\"requests\":{requests},\"rx_used\":{rx_used},\"needs_reset\":{needs_reset},\"then_round_trip\":{}",
            round_trip.is_some()
        ),
    );

    // A receive buffer the device may only read: the frame for it is dropped, the buffer
    // returned with nothing written.
    let mut card = Card::setup(TX_SIZE, false, ip, peer).unwrap_or_else(|m| fail("setup", m));
    RX_BUFFERS.fill(0xA5);
    card.rx
        .set_descriptor(0, RX_BUFFERS.base(), RX_BUFFER as u32, 0, 0);
    card.rx.make_available(0);
    let mut returned = None;
    for _ in 0..10 {
        card.send_arp_request();
        if card.watch_receive(1) != 0 {
            returned = card.next_received();
            break;
        }
    }
    let mut buffer = [0u8; RX_BUFFER];
    RX_BUFFERS.read_bytes(0, &mut buffer);
    let untouched = buffer.iter().all(|&b| b == 0xA5);
    let needs_reset = device_needs_reset();
    card.rx
        .set_descriptor(0, RX_BUFFERS.base(), RX_BUFFER as u32, DESC_F_WRITE, 0);
    for i in 0..RX_SIZE {
        card.rx.make_available(i);
    }
    let round_trip = card.round_trip(10);
    let (id, used_len) = returned.unwrap_or((u16::MAX, u32::MAX));
    verdicts.case(
        "receive-buffer-device-readable",
        returned.is_some() && used_len == 0 && untouched && !needs_reset && round_trip.is_some(),
        format_args!(
            ",\"returned\":{},\"id\":{id},\"used_len\":{used_len},\"untouched\":{untouched},\"needs_reset\":{needs_reset},\"then_round_trip\":{}",
            returned.is_some(),
            round_trip.is_some()
        ),
    );
    card
}

/// [`FLOOD_FRAMES`] broadcast frames as fast as the ring takes them: the guest's own vCPU
/// pays for the copies, and the card keeps running.
fn flood(verdicts: &mut Verdicts, mut card: Card) {
    let mut frame = [0u8; HEADER_LEN + FLOOD_FRAME_LEN];
    let eth = &mut frame[HEADER_LEN..];
    eth[..6].copy_from_slice(&[0xFF; 6]);
    eth[6..12].copy_from_slice(&card.mac);
    eth[12..14].copy_from_slice(&ETHERTYPE_EXPERIMENTAL.to_be_bytes());
    TX_FRAMES.write_bytes(FLOOD_AT, &frame);
    let addr = TX_FRAMES.base() + FLOOD_AT as u64;
    for i in 0..TX_SIZE {
        card.tx.set_descriptor(i, addr, frame.len() as u32, 0, 0);
    }
    let started = rdtsc();
    let mut returned = 0u32;
    while returned < FLOOD_FRAMES {
        for _ in 0..TX_SIZE {
            let head = card.tx.available() % TX_SIZE;
            card.tx.make_available(head);
        }
        WINDOW.notify(TRANSMIT);
        if !card.tx.wait_used(card.tx.available(), MAX_POLLS) {
            break;
        }
        returned += u32::from(TX_SIZE);
    }
    let ticks = rdtsc() - started;
    let needs_reset = device_needs_reset();
    let round_trip = card.round_trip(20);
    verdicts.case(
        "flood",
        returned == FLOOD_FRAMES && !needs_reset && round_trip.is_some(),
        format_args!(
            ",\"frames\":{FLOOD_FRAMES},\"returned\":{returned},\"ticks\":{ticks},\"needs_reset\":{needs_reset},\"then_round_trip\":{}",
            round_trip.is_some()
        ),
    );
}
