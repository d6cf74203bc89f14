//! Test helpers shared by the virtio and network tests: a fake guest RAM, the driver's side of
//! one split virtqueue laid out in it, and a virtio-net driver that probes a card the way
//! Linux's virtio_mmio.c and virtio_net.c do.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::net::{NetConfig, VirtioNet, F_MAC, F_MRG_RXBUF, F_OFFLOADS, F_STATUS, HEADER_LEN};
use super::net_offload::PartialChecksum;
use super::queue::DESC_F_WRITE;
use super::{feature, status, QueueMemory};

/// Guest RAM from 0 to `len`; anything past it is refused.
pub(crate) struct FakeMemory(RefCell<Vec<u8>>);

impl FakeMemory {
    pub(crate) fn new(len: usize) -> FakeMemory {
        FakeMemory(RefCell::new(vec![0; len]))
    }
    fn range(&self, gpa: u64, len: usize) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(gpa).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.0.borrow().len()).then_some(start..end)
    }
    pub(crate) fn put(&self, gpa: u64, bytes: &[u8]) {
        assert!(self.write(gpa, bytes));
    }
    pub(crate) fn bytes(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        assert!(self.read(gpa, &mut b));
        b
    }
    pub(crate) fn u16_at(&self, gpa: u64) -> u16 {
        let mut b = [0; 2];
        assert!(self.read(gpa, &mut b));
        u16::from_le_bytes(b)
    }
    pub(crate) fn u32_at(&self, gpa: u64) -> u32 {
        let mut b = [0; 4];
        assert!(self.read(gpa, &mut b));
        u32::from_le_bytes(b)
    }
}

impl QueueMemory for FakeMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        match self.range(gpa, buf.len()) {
            Some(r) => {
                buf.copy_from_slice(&self.0.borrow()[r]);
                true
            }
            None => false,
        }
    }
    fn write(&self, gpa: u64, bytes: &[u8]) -> bool {
        match self.range(gpa, bytes.len()) {
            Some(r) => {
                self.0.borrow_mut()[r].copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

/// The driver's side of one split virtqueue: descriptor table at `desc`, the available ring
/// right after it, the used ring after that (4-byte aligned), and the driver's indices.
pub(crate) struct DriverQueue {
    pub(crate) desc: u64,
    pub(crate) avail: u64,
    pub(crate) used: u64,
    pub(crate) size: u16,
    /// The available index the driver last published.
    pub(crate) avail_idx: u16,
    /// The used index the driver has consumed up to.
    pub(crate) seen_used: u16,
}

impl DriverQueue {
    pub(crate) fn new(desc: u64, size: u16) -> DriverQueue {
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
        DriverQueue {
            desc,
            avail,
            used,
            size,
            avail_idx: 0,
            seen_used: 0,
        }
    }
    pub(crate) fn put_desc(
        &self,
        mem: &FakeMemory,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..].copy_from_slice(&next.to_le_bytes());
        mem.put(self.desc + 16 * u64::from(index), &raw);
    }
    /// Makes chain `head` available (entry, then index).
    pub(crate) fn make_available(&mut self, mem: &FakeMemory, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        mem.put(self.avail + 4 + 2 * slot, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.put(self.avail + 2, &self.avail_idx.to_le_bytes());
    }
    pub(crate) fn set_avail_flags(&self, mem: &FakeMemory, flags: u16) {
        mem.put(self.avail, &flags.to_le_bytes());
    }
    pub(crate) fn set_used_event(&self, mem: &FakeMemory, event: u16) {
        mem.put(
            self.avail + 4 + 2 * u64::from(self.size),
            &event.to_le_bytes(),
        );
    }
    pub(crate) fn avail_event(&self, mem: &FakeMemory) -> u16 {
        mem.u16_at(self.used + 4 + 8 * u64::from(self.size))
    }
    pub(crate) fn used_idx(&self, mem: &FakeMemory) -> u16 {
        mem.u16_at(self.used + 2)
    }
    /// The used elements (id, len) the driver has not consumed yet, consuming them.
    pub(crate) fn take_used(&mut self, mem: &FakeMemory) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        while self.seen_used != self.used_idx(mem) {
            let at = self.used + 4 + 8 * u64::from(self.seen_used % self.size);
            out.push((mem.u32_at(at), mem.u32_at(at + 4)));
            self.seen_used = self.seen_used.wrapping_add(1);
        }
        out
    }
}

/// Guest RAM of a [`NetGuest`]: 1 MiB.
pub(crate) const NET_RAM: usize = 0x10_0000;
/// The queue size the test driver chooses.
pub(crate) const NET_QUEUE: u16 = 64;
/// Receive buffers from here, [`RX_BUFFER`] bytes each, one per descriptor.
const RX_DATA: u64 = 0x4_0000;
/// Bytes of one posted receive buffer: Linux's small buffers (1518 + header).
pub(crate) const RX_BUFFER: u32 = 1536;
/// Transmit buffers from here, [`TX_SLOT`] bytes each, one per descriptor.
const TX_DATA: u64 = 0x6_0000;
const TX_SLOT: u64 = 0x800;
/// Free guest RAM for tests that build their own buffers.
pub(crate) const SCRATCH: u64 = 0x8_0000;

/// A driver's 4-byte register accesses to a virtio-mmio window.
pub(crate) trait Registers {
    fn read_register(&mut self, offset: u64) -> u32;
    fn write_register(&mut self, offset: u64, value: u32);
}

/// Linux's probe up to FEATURES_OK (virtio_mmio.c, virtio.c): reset, ACKNOWLEDGE, DRIVER,
/// the offered features read, `accept` of them written, FEATURES_OK; whether it stuck.
pub(crate) fn negotiate(device: &mut impl Registers, accept: u64) -> bool {
    device.write_register(0x070, 0);
    device.write_register(0x070, status::ACKNOWLEDGE);
    device.write_register(0x070, status::ACKNOWLEDGE | status::DRIVER);
    device.write_register(0x014, 1);
    let mut offered = u64::from(device.read_register(0x010)) << 32;
    device.write_register(0x014, 0);
    offered |= u64::from(device.read_register(0x010));
    let accept = accept & offered;
    device.write_register(0x024, 1);
    device.write_register(0x020, (accept >> 32) as u32);
    device.write_register(0x024, 0);
    device.write_register(0x020, accept as u32);
    device.write_register(
        0x070,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    device.read_register(0x070) & status::FEATURES_OK != 0
}

impl Registers for NetGuest {
    fn read_register(&mut self, offset: u64) -> u32 {
        self.r(offset)
    }
    fn write_register(&mut self, offset: u64, value: u32) {
        self.w(offset, value);
    }
}

/// A partition's virtio-net driver and its RAM: receive queue rings at 0x1000, transmit
/// rings at 0x8000, one descriptor per buffer.
pub(crate) struct NetGuest {
    pub(crate) nic: VirtioNet,
    pub(crate) mem: FakeMemory,
    pub(crate) rx: DriverQueue,
    pub(crate) tx: DriverQueue,
}

impl NetGuest {
    pub(crate) fn new(mac: [u8; 6]) -> NetGuest {
        NetGuest {
            nic: VirtioNet::new(NetConfig { mac, index: 0 }),
            mem: FakeMemory::new(NET_RAM),
            rx: DriverQueue::new(0x1000, NET_QUEUE),
            tx: DriverQueue::new(0x8000, NET_QUEUE),
        }
    }
    /// A card probed with `accept` (what the device offers of it), link up, `rx_buffers`
    /// receive buffers posted.
    pub(crate) fn running(mac: [u8; 6], accept: u64, rx_buffers: u16) -> NetGuest {
        let mut guest = NetGuest::new(mac);
        assert!(guest.negotiate(accept));
        guest.setup_queues();
        guest.driver_ok();
        guest.nic.set_link(true);
        guest.w(0x064, 3);
        guest.post_rx(rx_buffers);
        guest
    }
    /// Everything Linux accepts of what this device offers.
    pub(crate) fn linux_features() -> u64 {
        feature::VERSION_1 | F_MAC | F_STATUS | feature::EVENT_IDX | F_OFFLOADS | F_MRG_RXBUF
    }
    pub(crate) fn r(&mut self, offset: u64) -> u32 {
        self.nic.mmio_read(offset, 4) as u32
    }
    pub(crate) fn w(&mut self, offset: u64, value: u32) {
        self.nic.mmio_write(offset, 4, u64::from(value));
    }
    /// Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK; whether it stuck.
    pub(crate) fn negotiate(&mut self, accept: u64) -> bool {
        negotiate(self, accept)
    }
    pub(crate) fn setup_queues(&mut self) {
        for q in 0..2u16 {
            let ring = if q == 0 { &self.rx } else { &self.tx };
            let (size, desc, avail, used) = (ring.size, ring.desc, ring.avail, ring.used);
            self.w(0x030, u32::from(q));
            self.w(0x038, u32::from(size));
            self.w(0x080, desc as u32);
            self.w(0x084, 0);
            self.w(0x090, avail as u32);
            self.w(0x094, 0);
            self.w(0x0A0, used as u32);
            self.w(0x0A4, 0);
            self.w(0x044, 1);
        }
    }
    pub(crate) fn driver_ok(&mut self) {
        self.w(
            0x070,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
    }
    /// Posts `count` more receive buffers (descriptor = ring slot), and notifies.
    pub(crate) fn post_rx(&mut self, count: u16) {
        for _ in 0..count {
            let index = self.rx.avail_idx % self.rx.size;
            let addr = RX_DATA + u64::from(index) * u64::from(RX_BUFFER);
            self.rx
                .put_desc(&self.mem, index, addr, RX_BUFFER, DESC_F_WRITE, 0);
            self.rx.make_available(&self.mem, index);
        }
        self.w(0x050, 0);
    }
    /// Makes `frame` available on the transmit queue behind a zero header, one descriptor
    /// (descriptor = ring slot), without notifying.
    pub(crate) fn queue_frame(&mut self, frame: &[u8]) {
        let index = self.tx.avail_idx % self.tx.size;
        let addr = TX_DATA + u64::from(index) * TX_SLOT;
        let mut bytes = vec![0u8; HEADER_LEN];
        bytes.extend_from_slice(frame);
        assert!(bytes.len() as u64 <= TX_SLOT);
        self.mem.put(addr, &bytes);
        self.tx
            .put_desc(&self.mem, index, addr, bytes.len() as u32, 0, 0);
        self.tx.make_available(&self.mem, index);
    }
    /// Queues `frame` and notifies the transmit queue.
    pub(crate) fn send(&mut self, frame: &[u8]) {
        self.queue_frame(frame);
        self.w(0x050, 1);
    }
    /// The frames received since the last call: each buffer's bytes after the header, whose
    /// num_buffers must be 1 and the rest zero. Empty buffers (dropped frames) are skipped.
    pub(crate) fn received(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for (id, len) in self.rx.take_used(&self.mem) {
            if len == 0 {
                continue;
            }
            let addr = RX_DATA + u64::from(id) * u64::from(RX_BUFFER);
            let bytes = self.mem.bytes(addr, len as usize);
            assert_eq!(bytes[..HEADER_LEN], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
            frames.push(bytes[HEADER_LEN..].to_vec());
        }
        frames
    }
}

/// An Ethernet frame from `src` to `dst` carrying `payload` (EtherType 0x88B5, local
/// experimental).
pub(crate) fn ethernet(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&[0x88, 0xB5]);
    frame.extend_from_slice(payload);
    frame
}

const TCP: u8 = 6;
pub(crate) const FIN: u8 = 0x01;
pub(crate) const PSH: u8 = 0x08;
pub(crate) const ACK: u8 = 0x10;
pub(crate) const CWR: u8 = 0x80;

/// A reference Internet checksum (RFC 1071), written plainly and apart from the module's.
pub(crate) fn reference_checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut total: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        total += u32::from(word);
        total = (total & 0xFFFF) + (total >> 16);
    }
    !(total as u16)
}

/// The pseudo-header of a TCP segment, as bytes.
fn pseudo_header(frame: &[u8], network: usize, v6: bool, tcp_len: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    if v6 {
        bytes.extend_from_slice(&frame[network + 8..network + 40]);
        bytes.extend_from_slice(&(tcp_len as u32).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, TCP]);
    } else {
        bytes.extend_from_slice(&frame[network + 12..network + 20]);
        bytes.extend_from_slice(&[0, TCP]);
        bytes.extend_from_slice(&(tcp_len as u16).to_be_bytes());
    }
    bytes
}

/// A TCP frame as Linux hands one to a card with its offloads on: the TCP checksum field holds
/// the pseudo-header's folded sum (not inverted), IPv4's header checksum is right, the IP length
/// covers the whole packet. `options` TCP option bytes (a multiple of 4); an 802.1Q tag if
/// `vlan`.
pub(crate) fn tcp_frame(
    v6: bool,
    vlan: bool,
    options: usize,
    flags: u8,
    payload: &[u8],
) -> (Vec<u8>, usize) {
    let mut frame = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    if vlan {
        frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    }
    frame.extend_from_slice(if v6 { &[0x86, 0xDD] } else { &[0x08, 0x00] });
    let network = frame.len();
    let tcp_len = 20 + options + payload.len();
    if v6 {
        frame.extend_from_slice(&[0x60, 0, 0, 0]);
        frame.extend_from_slice(&(tcp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[TCP, 64]);
        frame.extend((0..32).map(|i| 0x20 + i as u8));
    } else {
        frame.extend_from_slice(&[0x45, 0]);
        frame.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        frame.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, TCP, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let checksum = reference_checksum(&[&frame[network..network + 20]]);
        frame[network + 10..network + 12].copy_from_slice(&checksum.to_be_bytes());
    }
    let transport = frame.len();
    frame.extend_from_slice(&[0x9C, 0x40, 0x13, 0x88]); // ports 40000 -> 5000
    frame.extend_from_slice(&0xFFFF_FF00u32.to_be_bytes()); // a sequence about to wrap
    frame.extend_from_slice(&7u32.to_be_bytes());
    frame.push((((20 + options) / 4) as u8) << 4);
    frame.push(flags);
    frame.extend_from_slice(&[0xFF, 0xFF, 0, 0, 0, 0]);
    frame.extend((0..options).map(|i| if i + 1 == options { 0 } else { 1 }));
    frame.extend_from_slice(payload);
    let pseudo = !reference_checksum(&[&pseudo_header(&frame, network, v6, tcp_len)]);
    frame[transport + 16..transport + 18].copy_from_slice(&pseudo.to_be_bytes());
    (frame, network)
}

pub(crate) fn partial(start: usize) -> Option<PartialChecksum> {
    Some(PartialChecksum {
        start: start as u16,
        offset: 16,
    })
}

/// One received segment's fields, after checking both checksums and the IP length.
pub(crate) struct Segment {
    pub(crate) sequence: u32,
    pub(crate) flags: u8,
    pub(crate) ip_id: Option<u16>,
    pub(crate) payload: Vec<u8>,
}

pub(crate) fn parse_segment(frame: &[u8], network: usize, v6: bool) -> Segment {
    let (transport, ip_id) = if v6 {
        let length = u16::from_be_bytes([frame[network + 4], frame[network + 5]]);
        assert_eq!(
            usize::from(length),
            frame.len() - network - 40,
            "IPv6 payload length"
        );
        (network + 40, None)
    } else {
        let header_len = usize::from(frame[network] & 0xF) * 4;
        let length = u16::from_be_bytes([frame[network + 2], frame[network + 3]]);
        assert_eq!(
            usize::from(length),
            frame.len() - network,
            "IPv4 total length"
        );
        let header = &frame[network..network + header_len];
        assert_eq!(reference_checksum(&[header]), 0, "IPv4 header checksum");
        (
            network + header_len,
            Some(u16::from_be_bytes([frame[network + 4], frame[network + 5]])),
        )
    };
    let tcp = &frame[transport..];
    let pseudo = pseudo_header(frame, network, v6, tcp.len());
    assert_eq!(reference_checksum(&[&pseudo, tcp]), 0, "TCP checksum");
    let data_offset = usize::from(tcp[12] >> 4) * 4;
    Segment {
        sequence: u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
        flags: tcp[13],
        ip_id,
        payload: tcp[data_offset..].to_vec(),
    }
}
