//! The network card (VIRTIO 1.2 §5.1, device ID 1) on a virtio-mmio window: one receive
//! queue (0) and one transmit queue (1), no control queue, no multiqueue.
//!
//! Features offered: VERSION_1, MAC (the host chooses the address, [`NetConfig::mac`]),
//! STATUS (the host sets the link, [`VirtioNet::set_link`]), EVENT_IDX, and the checksum and
//! TCP segmentation offloads both ways (CSUM, HOST_TSO4/6 for what the guest sends;
//! GUEST_CSUM, GUEST_TSO4/6 for what it receives): a TCP stream crosses the switch in frames
//! of up to 64 KiB, and a receiver whose driver did not accept an offload gets the frame
//! finished in software ([`net_offload`](super::net_offload)); and MRG_RXBUF: a received
//! frame, behind its 12-byte `virtio_net_hdr` (§5.1.6), fills as many receive buffers as it
//! needs (all or none of them), so the driver posts small ones. The configuration space
//! (§5.1.4) is `mac[6]` then `status` (le16); reads of 1, 2 or 4 bytes, naturally aligned and
//! inside it, answer, others read 0; writes are ignored.
//!
//! The device holds no frames and no buffers. [`VirtioNet::take_transmits`] takes what the
//! guest sent (bounded per call; a flooding guest pays with its own exits) and gives every
//! chain straight back; [`VirtioNet::receive`] copies one frame into the next buffer the
//! guest posted, or drops it. A guest that breaks the queue rules (a descriptor loop, a ring
//! outside its RAM, an index past the ring) puts the device into DEVICE_NEEDS_RESET, as for
//! every virtio device here; a guest that gets one frame or one buffer wrong loses that frame
//! only: it is dropped, counted in [`NicCounters`], and its chain returned with nothing
//! written, so the driver goes on.

use alloc::vec::Vec;

use super::mmio::{read_config, MmioTransport, TransportEvent, CONFIG_OFFSET};
use super::net_offload::{Frame, IpVersion, Offload, PartialChecksum};
use super::queue::{Chain, Descriptor, SplitQueue};
use super::{feature, interrupt, GuestError, QueueMemory};
use crate::devices::device::{Device, DeviceId, Effect, Register};

/// Device type 1: a network card.
pub const DEVICE_ID: u32 = 1;
/// VIRTIO_NET_F_CSUM: the device completes checksums the driver leaves partial.
pub const F_CSUM: u64 = 1 << 0;
/// VIRTIO_NET_F_GUEST_CSUM: the driver accepts received frames with partial checksums.
pub const F_GUEST_CSUM: u64 = 1 << 1;
/// VIRTIO_NET_F_GUEST_TSO4: the driver accepts received TCP/IPv4 frames to segment.
pub const F_GUEST_TSO4: u64 = 1 << 7;
/// VIRTIO_NET_F_GUEST_TSO6: the driver accepts received TCP/IPv6 frames to segment.
pub const F_GUEST_TSO6: u64 = 1 << 8;
/// VIRTIO_NET_F_HOST_TSO4: the device segments TCP/IPv4 frames the driver sends.
pub const F_HOST_TSO4: u64 = 1 << 11;
/// VIRTIO_NET_F_HOST_TSO6: the device segments TCP/IPv6 frames the driver sends.
pub const F_HOST_TSO6: u64 = 1 << 12;
/// VIRTIO_NET_F_MRG_RXBUF: a received frame may fill several receive buffers, their number in
/// the first one's `num_buffers`.
pub const F_MRG_RXBUF: u64 = 1 << 15;
/// Every offload feature offered.
pub const F_OFFLOADS: u64 =
    F_CSUM | F_GUEST_CSUM | F_GUEST_TSO4 | F_GUEST_TSO6 | F_HOST_TSO4 | F_HOST_TSO6;
/// VIRTIO_NET_F_MAC: the configuration space holds the card's address.
pub const F_MAC: u64 = 1 << 5;
/// VIRTIO_NET_F_STATUS: the configuration space holds the link status.
pub const F_STATUS: u64 = 1 << 16;
/// VIRTIO_NET_S_LINK_UP in the `status` field.
pub const S_LINK_UP: u16 = 1;
/// QueueNumMax of the receive queue: room for a TCP window in flight. With mergeable buffers
/// Linux posts one small buffer per entry; a driver that accepts TSO without them posts 64 KiB
/// buffers of 19 descriptors each (no indirect descriptors), 53 in 1,024 entries (13 in 256,
/// where bursts were dropped and retransmitted).
pub const RX_QUEUE_SIZE: u16 = 1024;
/// QueueNumMax of the transmit queue.
pub const TX_QUEUE_SIZE: u16 = 256;
/// Frame bytes one [`VirtioNet::take_transmits`] takes at most, besides the frame that crosses
/// the mark: what a sending vCPU holds on the hypervisor's heap between taking its frames and
/// switching them.
pub const PASS_BYTES: usize = 128 * 1024;
/// Bytes of `virtio_net_hdr` with VERSION_1: flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset (one byte each for the first two, le16 for the rest) and num_buffers (le16).
pub const HEADER_LEN: usize = 12;
/// Bytes of an Ethernet header: destination, source, EtherType.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// The longest frame the card carries (without the virtio header): a 64 KiB packet with its
/// Ethernet header, as Linux's GSO limit allows.
pub const MAX_FRAME_LEN: usize = 65_550;

const RECEIVE_QUEUE: u16 = 0;
const TRANSMIT_QUEUE: u16 = 1;
/// Bytes of configuration space: `mac` and `status`.
const CONFIG_SIZE: u64 = 8;
/// `virtio_net_hdr.flags`: the checksum from `csum_start` is left partial.
const HDR_F_NEEDS_CSUM: u8 = 1;
/// `virtio_net_hdr.gso_type` values.
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;

/// The host's choices for one card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// The card's MAC address, reported in the configuration space.
    pub mac: [u8; 6],
    /// The card's index within its partition (the `n` of [`DeviceId::VirtioNet`]).
    pub index: u8,
}

/// Why [`VirtioNet::receive`] dropped a frame (each counted in [`NicCounters`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxDrop {
    /// The driver is not running (no DRIVER_OK yet, or the device needs a reset).
    NotLive,
    /// The host has the link down.
    LinkDown,
    /// The frame is shorter than an Ethernet header or longer than [`MAX_FRAME_LEN`].
    BadFrame,
    /// The driver has no receive buffer posted (or no receive queue).
    NoBuffer,
    /// The posted buffer is shorter than the header and the frame.
    BufferTooSmall,
    /// The posted buffer has a device-readable descriptor.
    BufferNotWritable,
    /// The posted buffer lies (partly) outside the receiver's RAM.
    BufferOutsideRam,
    /// The receive ring itself is broken: the device now needs a reset.
    RingBroken(GuestError),
}

/// Frame and drop counts of one card since it was made (a driver reset keeps them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicCounters {
    /// Frames the guest sent that left the card.
    pub tx_frames: u64,
    /// Their bytes, without the virtio header.
    pub tx_bytes: u64,
    /// Sent chains dropped as malformed: a device-writable descriptor, or a header asking
    /// for an offload the driver did not negotiate or that does not fit the frame (a
    /// checksum outside it, segmentation of something not TCP over IPv4/IPv6).
    pub tx_dropped_malformed: u64,
    /// Sent chains shorter than the header and an Ethernet header.
    pub tx_dropped_too_short: u64,
    /// Sent chains whose frame is longer than [`MAX_FRAME_LEN`].
    pub tx_dropped_too_large: u64,
    /// Sent chains whose bytes lie outside the sender's RAM.
    pub tx_dropped_outside_ram: u64,
    /// Frames sent while the host had the link down.
    pub tx_dropped_link_down: u64,
    /// Frames written into the guest's receive buffers.
    pub rx_frames: u64,
    /// Their bytes, without the virtio header.
    pub rx_bytes: u64,
    /// Frames dropped because the driver was not running or the link was down.
    pub rx_dropped_not_live: u64,
    /// Frames dropped because no receive buffer was posted.
    pub rx_dropped_no_buffer: u64,
    /// Frames dropped because the posted buffer was too small.
    pub rx_dropped_too_small: u64,
    /// Frames dropped because the posted buffer (or the ring) was bad.
    pub rx_dropped_bad_buffer: u64,
    /// Frames handed to the card that no card could carry (too short or too long).
    pub rx_dropped_bad_frame: u64,
    /// Frames cut into segments for this card, whose driver did not accept them whole.
    pub rx_segmented: u64,
    /// Frames whose checksum was completed for this card, whose driver did not accept it
    /// partial.
    pub rx_checksummed: u64,
}

impl NicCounters {
    /// Every counter with its name, in a fixed order (for the console's JSON).
    pub fn fields(&self) -> [(&'static str, u64); 16] {
        [
            ("tx_frames", self.tx_frames),
            ("tx_bytes", self.tx_bytes),
            ("tx_dropped_malformed", self.tx_dropped_malformed),
            ("tx_dropped_too_short", self.tx_dropped_too_short),
            ("tx_dropped_too_large", self.tx_dropped_too_large),
            ("tx_dropped_outside_ram", self.tx_dropped_outside_ram),
            ("tx_dropped_link_down", self.tx_dropped_link_down),
            ("rx_frames", self.rx_frames),
            ("rx_bytes", self.rx_bytes),
            ("rx_dropped_not_live", self.rx_dropped_not_live),
            ("rx_dropped_no_buffer", self.rx_dropped_no_buffer),
            ("rx_dropped_too_small", self.rx_dropped_too_small),
            ("rx_dropped_bad_buffer", self.rx_dropped_bad_buffer),
            ("rx_dropped_bad_frame", self.rx_dropped_bad_frame),
            ("rx_segmented", self.rx_segmented),
            ("rx_checksummed", self.rx_checksummed),
        ]
    }

    /// Sent chains dropped, for every reason.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped_malformed
            + self.tx_dropped_too_short
            + self.tx_dropped_too_large
            + self.tx_dropped_outside_ram
            + self.tx_dropped_link_down
    }

    /// Frames to receive dropped, for every reason.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped_not_live
            + self.rx_dropped_no_buffer
            + self.rx_dropped_too_small
            + self.rx_dropped_bad_buffer
            + self.rx_dropped_bad_frame
    }
}

/// Why one sent chain is not a frame.
enum TxDrop {
    Malformed,
    TooShort,
    TooLarge,
    OutsideRam,
}

/// A virtio network card behind a virtio-mmio window.
#[derive(Clone, Debug)]
pub struct VirtioNet {
    transport: MmioTransport,
    mac: [u8; 6],
    index: u8,
    link_up: bool,
    counters: NicCounters,
}

impl VirtioNet {
    /// A card with the link down.
    pub fn new(config: NetConfig) -> VirtioNet {
        VirtioNet {
            transport: MmioTransport::new(
                DEVICE_ID,
                F_MAC | F_STATUS | feature::EVENT_IDX | F_OFFLOADS | F_MRG_RXBUF,
                &[RX_QUEUE_SIZE, TX_QUEUE_SIZE],
            ),
            mac: config.mac,
            index: config.index,
            link_up: false,
            counters: NicCounters::default(),
        }
    }

    /// A guest read of `size` bytes at `offset` in the window.
    pub fn mmio_read(&mut self, offset: u64, size: u8) -> u64 {
        if offset < CONFIG_OFFSET {
            return u64::from(self.transport.read(offset, size));
        }
        // Up to 4 bytes: its fields are 6 bytes and a le16.
        read_config(&self.config_bytes(), offset, size, 4)
    }

    /// A guest write of `size` bytes at `offset` in the window; configuration writes are
    /// ignored (nothing in it is the driver's). [`TransportEvent::QueueWork`] only when the
    /// transmit queue has work: receive-queue notifications (new buffers) need nothing.
    pub fn mmio_write(&mut self, offset: u64, size: u8, value: u64) -> TransportEvent {
        if offset >= CONFIG_OFFSET {
            return TransportEvent::None;
        }
        // Registers are 32 bits; wider accesses are refused by the transport.
        match self.transport.write(offset, size, value as u32) {
            TransportEvent::QueueWork if !self.has_pending_transmits() => TransportEvent::None,
            event => event,
        }
    }

    /// Sets the link; a change updates `status` and raises a configuration-change interrupt
    /// once the driver is running.
    pub fn set_link(&mut self, up: bool) {
        if up != self.link_up {
            self.link_up = up;
            self.transport.config_changed();
        }
    }

    /// Whether the host has the link up.
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// The card's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The card's index within its partition.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Whether the driver has notified the transmit queue and the device has not yet taken
    /// everything (a [`take_transmits`](Self::take_transmits) stopped at its limit).
    pub fn has_pending_transmits(&self) -> bool {
        self.transport.is_notified(TRANSMIT_QUEUE)
    }

    /// Takes up to `max_frames` (and at most [`TX_QUEUE_SIZE`]) frames the guest sent, each
    /// with the offloads its virtio header asked for (checked against the frame), and returns
    /// every chain taken to the driver (nothing written), with a used-buffer interrupt if the
    /// driver wants one. A chain that is not a good frame is dropped and counted. If more chains wait, the queue stays notified
    /// ([`has_pending_transmits`](Self::has_pending_transmits)). A guest error puts the
    /// device into DEVICE_NEEDS_RESET; the frames taken before it are returned.
    pub fn take_transmits(&mut self, memory: &dyn QueueMemory, max_frames: usize) -> Vec<Frame> {
        let mut frames = Vec::new();
        if !self.has_pending_transmits() {
            return frames;
        }
        // Only the transmit bit matters: receive notifications need no work.
        let _ = self.transport.take_notified();
        match self.drain_transmits(memory, max_frames, &mut frames) {
            Ok(true) => self.transport.raise(interrupt::USED_BUFFER),
            Ok(false) => {}
            Err(error) => self.transport.fail(error),
        }
        frames
    }

    /// Copies `frame` into the next receive buffer the driver posted, behind a header that
    /// carries the offloads left undone, and returns the buffer with a used-buffer interrupt
    /// if the driver wants one. An offload the driver did not accept is done here first: the
    /// checksum completed, a TCP frame cut into segments (one buffer each). A frame that cannot
    /// be delivered is dropped and counted (for a cut frame, from the segment that failed on);
    /// a bad buffer goes back to the driver empty.
    pub fn receive(&mut self, memory: &dyn QueueMemory, frame: &Frame) -> Result<(), RxDrop> {
        let offload = frame.offload();
        if offload == Offload::NONE || self.accepts(&offload) {
            return self.receive_one(memory, frame.bytes(), &offload);
        }
        self.receivable(frame.bytes())
            .inspect_err(|&drop| self.count_drops(drop, 1))?;
        if offload.segmentation.is_some() && !self.accepts_segmentation(&offload) {
            self.counters.rx_segmented += 1;
            let mut outcome = Ok(());
            let (delivered, count) = frame
                .segments(|segment| {
                    outcome = self.receive_one(memory, segment, &Offload::NONE);
                    outcome.is_ok()
                })
                .unwrap_or((0, 0));
            if let Err(drop) = outcome {
                // The segment that failed is counted; so is every one after it.
                self.count_drops(drop, (count - delivered - 1) as u64);
            }
            return outcome;
        }
        self.counters.rx_checksummed += 1;
        self.receive_one(memory, &frame.with_checksum(), &Offload::NONE)
    }

    /// Delivers `frame` as it is, with `offload` in its header; counts the outcome.
    fn receive_one(
        &mut self,
        memory: &dyn QueueMemory,
        frame: &[u8],
        offload: &Offload,
    ) -> Result<(), RxDrop> {
        let result = self.try_receive(memory, frame, offload);
        match result {
            Ok(()) => {
                self.counters.rx_frames += 1;
                self.counters.rx_bytes += frame.len() as u64;
            }
            Err(drop) => self.count_drops(drop, 1),
        }
        result
    }

    fn count_drops(&mut self, drop: RxDrop, frames: u64) {
        let counters = &mut self.counters;
        let counter = match drop {
            RxDrop::NotLive | RxDrop::LinkDown => &mut counters.rx_dropped_not_live,
            RxDrop::BadFrame => &mut counters.rx_dropped_bad_frame,
            RxDrop::NoBuffer => &mut counters.rx_dropped_no_buffer,
            RxDrop::BufferTooSmall => &mut counters.rx_dropped_too_small,
            RxDrop::BufferNotWritable | RxDrop::BufferOutsideRam | RxDrop::RingBroken(_) => {
                &mut counters.rx_dropped_bad_buffer
            }
        };
        *counter += frames;
    }

    /// Whether the driver accepted every offload `offload` leaves undone.
    fn accepts(&self, offload: &Offload) -> bool {
        let checksum = offload.checksum.is_none() || self.negotiated_features() & F_GUEST_CSUM != 0;
        checksum && self.accepts_segmentation(offload)
    }

    /// Whether the driver accepted the segmentation `offload` asks for (or it asks for none).
    fn accepts_segmentation(&self, offload: &Offload) -> bool {
        let features = self.negotiated_features();
        match offload.segmentation.map(|s| s.ip) {
            None => true,
            // A segmentation request carries a partial checksum.
            Some(ip) => {
                let tso = match ip {
                    IpVersion::V4 => F_GUEST_TSO4,
                    IpVersion::V6 => F_GUEST_TSO6,
                };
                features & (tso | F_GUEST_CSUM) == tso | F_GUEST_CSUM
            }
        }
    }

    /// The card's counters.
    pub fn counters(&self) -> NicCounters {
        self.counters
    }

    /// Whether the interrupt line is asserted (InterruptStatus is non-zero): a level, to be
    /// driven onto the device's I/O APIC pin after every access, transmit pass and receive.
    pub fn interrupt_asserted(&self) -> bool {
        self.transport.interrupt_status() != 0
    }

    /// Whether the device is in DEVICE_NEEDS_RESET, and the guest error that put it there.
    pub fn guest_error(&self) -> Option<GuestError> {
        self.transport.last_error()
    }

    /// The features the driver accepted.
    pub fn negotiated_features(&self) -> u64 {
        self.transport.negotiated_features()
    }

    /// Takes chains until the ring is empty or `max_frames` were taken; returns whether the
    /// driver wants an interrupt for them.
    fn drain_transmits(
        &mut self,
        memory: &dyn QueueMemory,
        max_frames: usize,
        frames: &mut Vec<Frame>,
    ) -> Result<bool, GuestError> {
        let link_up = self.link_up;
        let features = self.transport.negotiated_features();
        let Some(ring) = self.transport.queue_mut(TRANSMIT_QUEUE) else {
            return Ok(false);
        };
        // At most a ring's worth a call, however fast the driver refills it.
        let limit = max_frames.min(usize::from(TX_QUEUE_SIZE));
        let (mut taken, mut held) = (0, 0);
        // And at most PASS_BYTES held (plus the frame that crosses it): the frames wait on the
        // hypervisor's heap until they are switched, and a ring of 64 KiB frames would
        // otherwise ask it for 16 MiB in one pass.
        while taken < limit && held < PASS_BYTES {
            // No byte cap here: a chain's length is judged (and counted) below, before any of
            // its bytes are read.
            let Some(chain) = ring.pop(memory, u64::MAX)? else {
                break;
            };
            taken += 1;
            ring.add_used(memory, chain.head, 0)?;
            match read_frame(&chain, memory, features) {
                Ok(_) if !link_up => self.counters.tx_dropped_link_down += 1,
                Ok(frame) => {
                    self.counters.tx_frames += 1;
                    self.counters.tx_bytes += frame.len() as u64;
                    held += frame.len();
                    frames.push(frame);
                }
                Err(TxDrop::Malformed) => self.counters.tx_dropped_malformed += 1,
                Err(TxDrop::TooShort) => self.counters.tx_dropped_too_short += 1,
                Err(TxDrop::TooLarge) => self.counters.tx_dropped_too_large += 1,
                Err(TxDrop::OutsideRam) => self.counters.tx_dropped_outside_ram += 1,
            }
        }
        let more = ring.has_available(memory)?;
        let interrupt = ring.needs_interrupt(memory)?;
        if more {
            self.transport.renotify(TRANSMIT_QUEUE);
        }
        Ok(interrupt)
    }

    /// Whether the card takes frames now, and `frame` is one a card can carry.
    fn receivable(&self, frame: &[u8]) -> Result<(), RxDrop> {
        if !self.transport.is_live() {
            return Err(RxDrop::NotLive);
        }
        if !self.link_up {
            return Err(RxDrop::LinkDown);
        }
        if frame.len() < ETHERNET_HEADER_LEN || frame.len() > MAX_FRAME_LEN {
            return Err(RxDrop::BadFrame);
        }
        Ok(())
    }

    fn try_receive(
        &mut self,
        memory: &dyn QueueMemory,
        frame: &[u8],
        offload: &Offload,
    ) -> Result<(), RxDrop> {
        self.receivable(frame)?;
        let mergeable = self.negotiated_features() & F_MRG_RXBUF != 0;
        let Some(ring) = self.transport.queue_mut(RECEIVE_QUEUE) else {
            return Err(RxDrop::NoBuffer);
        };
        let needed = (HEADER_LEN + frame.len()) as u64;
        let outcome = take_buffers(ring, memory, needed, mergeable).and_then(|chains| {
            if chains.is_empty() {
                return Ok((false, Err(RxDrop::NoBuffer)));
            }
            // Bounded by the queue size (1,024).
            let header = receive_header(offload, chains.len() as u16);
            let written = write_frame(&chains, memory, &header, frame);
            let used: Vec<(u16, u32)> = match &written {
                Ok(lengths) => chains
                    .iter()
                    .map(|c| c.head)
                    .zip(lengths.iter().copied())
                    .collect(),
                Err(_) => chains.iter().map(|c| (c.head, 0)).collect(),
            };
            ring.add_used_together(memory, &used)?;
            let interrupt = ring.needs_interrupt(memory)?;
            Ok((interrupt, written.map(|_| ())))
        });
        match outcome {
            Ok((interrupt, delivered)) => {
                if interrupt {
                    self.transport.raise(interrupt::USED_BUFFER);
                }
                delivered
            }
            Err(error) => {
                self.transport.fail(error);
                Err(RxDrop::RingBroken(error))
            }
        }
    }

    fn config_bytes(&self) -> [u8; CONFIG_SIZE as usize] {
        let mut bytes = [0u8; CONFIG_SIZE as usize];
        bytes[..6].copy_from_slice(&self.mac);
        let status = if self.link_up { S_LINK_UP } else { 0 };
        bytes[6..].copy_from_slice(&status.to_le_bytes());
        bytes
    }
}

/// The frame a transmit chain carries, its header checked against the frame and the
/// `features` the driver negotiated, and stripped.
fn read_frame(chain: &Chain, memory: &dyn QueueMemory, features: u64) -> Result<Frame, TxDrop> {
    if chain.descriptors.iter().any(|d| d.writable) {
        return Err(TxDrop::Malformed);
    }
    let total: u64 = chain.descriptors.iter().map(|d| u64::from(d.len)).sum();
    if total < (HEADER_LEN + ETHERNET_HEADER_LEN) as u64 {
        return Err(TxDrop::TooShort);
    }
    if total > (HEADER_LEN + MAX_FRAME_LEN) as u64 {
        return Err(TxDrop::TooLarge);
    }
    // Bounded by the check above.
    let mut bytes = Vec::with_capacity(total as usize);
    for descriptor in &chain.descriptors {
        let start = bytes.len();
        bytes.resize(start + descriptor.len as usize, 0);
        if !memory.read(descriptor.addr, &mut bytes[start..]) {
            return Err(TxDrop::OutsideRam);
        }
    }
    let field = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let (flags, gso_type, gso_size) = (bytes[0], bytes[1], field(4));
    // DATA_VALID and RSC_INFO are the device's to set; a driver's are ignored.
    let checksum = match flags & HDR_F_NEEDS_CSUM != 0 {
        false => None,
        true if features & F_CSUM != 0 => Some(PartialChecksum {
            start: field(6),
            offset: field(8),
        }),
        true => return Err(TxDrop::Malformed),
    };
    let segmentation = match gso_type {
        GSO_NONE => None,
        GSO_TCPV4 if features & F_HOST_TSO4 != 0 => Some((IpVersion::V4, gso_size)),
        GSO_TCPV6 if features & F_HOST_TSO6 != 0 => Some((IpVersion::V6, gso_size)),
        // UDP, ECN and anything else: not offered.
        _ => return Err(TxDrop::Malformed),
    };
    Frame::checked(bytes.split_off(HEADER_LEN), checksum, segmentation)
        .map_err(|_| TxDrop::Malformed)
}

/// The receive buffers for a frame of `needed` bytes (with its header): the next chain, or with
/// mergeable buffers as many as it takes. None (and every chain left with the driver) when
/// fewer are posted.
///
/// The work is bounded by the queue size twice: `pop` finds the ring empty after that many
/// chains, and the chains' descriptors together may not outnumber the table (a driver's
/// outstanding chains share none; a hostile one's could, to make each frame walk the table
/// again and again on the sender's vCPU). Past that the chains taken are returned as they are,
/// too small for the frame, which is then dropped.
fn take_buffers(
    ring: &mut SplitQueue,
    memory: &dyn QueueMemory,
    needed: u64,
    mergeable: bool,
) -> Result<Vec<Chain>, GuestError> {
    let mut chains = Vec::new();
    let (mut room, mut descriptors) = (0u64, 0usize);
    while chains.is_empty() || (mergeable && room < needed) {
        if descriptors >= usize::from(ring.size()) {
            break;
        }
        let Some(chain) = ring.pop(memory, u64::MAX)? else {
            // Fewer than the queue size, a u16.
            ring.unpop(chains.len() as u16);
            return Ok(Vec::new());
        };
        room += chain
            .descriptors
            .iter()
            .map(|d| u64::from(d.len))
            .sum::<u64>();
        descriptors += chain.descriptors.len();
        chains.push(chain);
    }
    Ok(chains)
}

/// The `virtio_net_hdr` in front of a received frame: the offloads left undone, and the
/// `buffers` it fills.
fn receive_header(offload: &Offload, buffers: u16) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    if let Some(checksum) = offload.checksum {
        header[0] = HDR_F_NEEDS_CSUM;
        header[6..8].copy_from_slice(&checksum.start.to_le_bytes());
        header[8..10].copy_from_slice(&checksum.offset.to_le_bytes());
    }
    if let Some(segmentation) = offload.segmentation {
        header[1] = match segmentation.ip {
            IpVersion::V4 => GSO_TCPV4,
            IpVersion::V6 => GSO_TCPV6,
        };
        // Headers end well inside a 64 KiB frame.
        header[2..4].copy_from_slice(&(segmentation.layout.payload as u16).to_le_bytes());
        header[4..6].copy_from_slice(&segmentation.segment_size.to_le_bytes());
    }
    header[10..].copy_from_slice(&buffers.to_le_bytes());
    header
}

/// Writes `header` and `frame` into receive chains, filling each in turn; the bytes written
/// into each.
fn write_frame(
    chains: &[Chain],
    memory: &dyn QueueMemory,
    header: &[u8; HEADER_LEN],
    frame: &[u8],
) -> Result<Vec<u32>, RxDrop> {
    let descriptors = || chains.iter().flat_map(|c| &c.descriptors);
    if descriptors().any(|d| !d.writable) {
        return Err(RxDrop::BufferNotWritable);
    }
    let room: u64 = descriptors().map(|d| u64::from(d.len)).sum();
    if room < (HEADER_LEN + frame.len()) as u64 {
        return Err(RxDrop::BufferTooSmall);
    }
    let mut rest = [&header[..], frame];
    let mut lengths = Vec::with_capacity(chains.len());
    for chain in chains {
        // At most HEADER_LEN + MAX_FRAME_LEN, checked by the caller.
        let mut written = 0u32;
        for &Descriptor { addr, len, .. } in &chain.descriptors {
            let mut at = addr;
            let mut left = len as usize;
            for part in &mut rest {
                let n = part.len().min(left);
                if n == 0 {
                    continue;
                }
                if !memory.write(at, &part[..n]) {
                    return Err(RxDrop::BufferOutsideRam);
                }
                *part = &part[n..];
                at = at.wrapping_add(n as u64);
                left -= n;
                written += n as u32;
            }
        }
        lengths.push(written);
    }
    Ok(lengths)
}

impl Device for VirtioNet {
    fn read(&mut self, at: Register, _now: u64) -> u64 {
        self.mmio_read(at.offset, at.size)
    }

    /// Transmit work comes back as [`Effect::QueueWork`]; receive-queue notifications and a
    /// driver reset need nothing, since the device holds no frames and no buffers.
    fn write(&mut self, at: Register, value: u64, _now: u64) -> Effect {
        match self.mmio_write(at.offset, at.size, value) {
            TransportEvent::QueueWork => Effect::QueueWork(DeviceId::VirtioNet(self.index)),
            TransportEvent::None | TransportEvent::Reset => Effect::None,
        }
    }

    fn interrupt_line(&self) -> Option<bool> {
        Some(self.interrupt_asserted())
    }
}
