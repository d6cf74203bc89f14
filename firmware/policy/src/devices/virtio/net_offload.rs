//! The offloads a virtio network card carries (VIRTIO 1.2 §5.1.6.2): a checksum the sender
//! left partial (`VIRTIO_NET_HDR_F_NEEDS_CSUM`) and TCP segmentation (`GSO_TCPV4`,
//! `GSO_TCPV6`). Between two cards whose drivers both accept them, a frame crosses the switch
//! as the sender wrote it (one 64 KiB TCP frame instead of 45 of 1,514 bytes); for a receiver
//! that did not accept them, this module finishes the work in software, as a real card's
//! hardware would have done before the wire.
//!
//! Everything here reads sender-controlled bytes. [`Frame::checked`] is the gate a frame
//! passes on transmit: the checksum inside the frame, and for segmentation a well-formed
//! Ethernet (one optional 802.1Q/802.1ad tag), IPv4 (not a fragment) or IPv6 (TCP as the
//! next header, no extension headers) and TCP header. After it, `segment` and
//! `complete_checksum` cannot index out of the frame.
//!
//! Written here rather than taken from `smoltcp` or `etherparse`: what is needed is two
//! header rewrites and the Internet checksum (RFC 1071) on borrowed bytes, with no sockets and
//! no allocation per segment.

use alloc::vec::Vec;

/// A checksum the sender left to the card: the Internet checksum of the bytes from `start` to
/// the frame's end, stored at `start + offset` (where the sender put the pseudo-header's sum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialChecksum {
    /// The first byte summed, from the start of the Ethernet frame.
    pub start: u16,
    /// Where the result goes, from `start`.
    pub offset: u16,
}

/// The IP version of a segmentation request (`gso_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    /// `VIRTIO_NET_HDR_GSO_TCPV4`.
    V4,
    /// `VIRTIO_NET_HDR_GSO_TCPV6`.
    V6,
}

/// Where the headers of a TCP frame are, as [`Frame::checked`] found them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLayout {
    /// The IP header's first byte.
    pub network: usize,
    /// The TCP header's first byte.
    pub transport: usize,
    /// The first payload byte: the headers' length.
    pub payload: usize,
}

/// A TCP frame to cut into segments of at most `segment_size` payload bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segmentation {
    /// IPv4 or IPv6.
    pub ip: IpVersion,
    /// The largest payload of one segment (the TCP MSS, `gso_size`).
    pub segment_size: u16,
    /// The frame's headers.
    pub layout: TcpLayout,
}

/// The work a sender left undone on one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    /// A partial checksum to complete.
    pub checksum: Option<PartialChecksum>,
    /// TCP segmentation (always with `checksum`, on the TCP checksum).
    pub segmentation: Option<Segmentation>,
}

/// Why a sender's offload request is refused (the frame is dropped as malformed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// The checksum's field lies outside the frame.
    ChecksumOutsideFrame,
    /// Segmentation asked for without a partial checksum, or with a segment size of 0.
    BadSegmentation,
    /// The frame is not the TCP over IPv4 / IPv6 its segmentation request says, or its headers
    /// run past its end.
    NotTcp,
    /// The partial checksum is not the TCP header's checksum field.
    ChecksumNotTcp,
}

/// Offset of the checksum field in a TCP header.
const TCP_CHECKSUM: usize = 16;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: [u16; 2] = [0x8100, 0x88A8];
const PROTOCOL_TCP: u8 = 6;
const IPV6_HEADER_LEN: usize = 40;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

impl Offload {
    /// No offload: a frame complete as it is.
    pub const NONE: Offload = Offload {
        checksum: None,
        segmentation: None,
    };

    /// Checks a sender's request for `frame`: `checksum` from NEEDS_CSUM with `csum_start` /
    /// `csum_offset`, and `segmentation` from `gso_type` with `gso_size`.
    fn check(
        frame: &[u8],
        checksum: Option<PartialChecksum>,
        segmentation: Option<(IpVersion, u16)>,
    ) -> Result<Offload, OffloadError> {
        if let Some(c) = checksum {
            let field = usize::from(c.start) + usize::from(c.offset);
            if field + 2 > frame.len() {
                return Err(OffloadError::ChecksumOutsideFrame);
            }
        }
        let segmentation = match (segmentation, checksum) {
            (None, _) => None,
            (Some((_, 0)), _) | (Some(_), None) => return Err(OffloadError::BadSegmentation),
            (Some((ip, segment_size)), Some(c)) => {
                let layout = tcp_layout(frame, ip).ok_or(OffloadError::NotTcp)?;
                if usize::from(c.start) != layout.transport || usize::from(c.offset) != TCP_CHECKSUM
                {
                    return Err(OffloadError::ChecksumNotTcp);
                }
                Some(Segmentation {
                    ip,
                    segment_size,
                    layout,
                })
            }
        };
        Ok(Offload {
            checksum,
            segmentation,
        })
    }
}

/// An Ethernet frame crossing the switch (no virtio header) with the offloads its sender
/// left undone, checked against its bytes: only [`Frame::plain`] and [`Frame::checked`] make
/// one, so segmentation and checksum completion never meet a request they cannot meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    bytes: Vec<u8>,
    offload: Offload,
}

impl Frame {
    /// A complete frame: nothing left to do.
    pub fn plain(bytes: &[u8]) -> Frame {
        Frame {
            bytes: bytes.to_vec(),
            offload: Offload::NONE,
        }
    }

    /// `bytes` with a sender's requests ([`Offload::check`]).
    pub fn checked(
        bytes: Vec<u8>,
        checksum: Option<PartialChecksum>,
        segmentation: Option<(IpVersion, u16)>,
    ) -> Result<Frame, OffloadError> {
        let offload = Offload::check(&bytes, checksum, segmentation)?;
        Ok(Frame { bytes, offload })
    }

    /// The Ethernet frame.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// What its sender left undone.
    pub fn offload(&self) -> Offload {
        self.offload
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The frame with its checksum completed, if one was left partial.
    pub fn with_checksum(&self) -> Vec<u8> {
        let mut bytes = self.bytes.clone();
        if let Some(checksum) = self.offload.checksum {
            complete_checksum(&mut bytes, checksum);
        }
        bytes
    }

    /// Cuts the frame into segments ([`segment`]); `None` if it asks for no segmentation.
    pub fn segments(&self, each: impl FnMut(&[u8]) -> bool) -> Option<(usize, usize)> {
        let segmentation = self.offload.segmentation?;
        Some(segment(&self.bytes, &segmentation, each))
    }
}

/// The headers of a TCP frame over `ip`, if it is one.
fn tcp_layout(frame: &[u8], ip: IpVersion) -> Option<TcpLayout> {
    let mut network = 14;
    let mut ethertype = be16(frame, 12)?;
    if ETHERTYPE_VLAN.contains(&ethertype) {
        ethertype = be16(frame, 16)?;
        network = 18;
    }
    let version = frame.get(network)? >> 4;
    let transport = match ip {
        IpVersion::V4 => {
            let header_len = usize::from(frame[network] & 0x0F) * 4;
            let fragment = be16(frame, network + 6)? & 0x3FFF;
            if ethertype != ETHERTYPE_IPV4
                || version != 4
                || header_len < 20
                || fragment != 0
                || *frame.get(network + 9)? != PROTOCOL_TCP
            {
                return None;
            }
            network + header_len
        }
        IpVersion::V6 => {
            if ethertype != ETHERTYPE_IPV6
                || version != 6
                || *frame.get(network + 6)? != PROTOCOL_TCP
            {
                return None;
            }
            network + IPV6_HEADER_LEN
        }
    };
    let tcp_len = usize::from(frame.get(transport + 12)? >> 4) * 4;
    let payload = transport + tcp_len;
    if tcp_len < 20 || payload > frame.len() {
        return None;
    }
    Some(TcpLayout {
        network,
        transport,
        payload,
    })
}

/// Completes the partial checksum `checksum` of `frame` (checked by [`Offload::check`]):
/// the one's-complement sum from `start` to the end, over the pseudo-header sum the sender
/// left in the field. A result of 0 is stored as 0xFFFF, its other form, as UDP requires
/// (RFC 768) and TCP accepts.
fn complete_checksum(frame: &mut [u8], checksum: PartialChecksum) {
    let start = usize::from(checksum.start);
    let field = start + usize::from(checksum.offset);
    let value = !fold(sum(&frame[start..], 0));
    let value = if value == 0 { 0xFFFF } else { value };
    frame[field..field + 2].copy_from_slice(&value.to_be_bytes());
}

/// Cuts the TCP frame `frame` as `segmentation` says (checked by [`Offload::check`]) into
/// frames of at most `segment_size` payload bytes, each with its own IP length (IPv4: ID
/// counting up, header checksum), sequence number, flags (FIN and PSH on the last, CWR on the
/// first) and complete TCP checksum, and hands each to `each` in turn through one reused
/// buffer. Stops early when `each` returns false; returns the segments `each` accepted and
/// the number there were.
fn segment(
    frame: &[u8],
    segmentation: &Segmentation,
    mut each: impl FnMut(&[u8]) -> bool,
) -> (usize, usize) {
    let TcpLayout {
        network,
        transport,
        payload,
    } = segmentation.layout;
    let (headers, data) = frame.split_at(payload);
    let size = usize::from(segmentation.segment_size);
    let count = data.len().div_ceil(size).max(1);
    let first_id = be16(frame, network + 4).unwrap_or(0);
    let first_sequence = be32(frame, transport + 4).unwrap_or(0);
    let flags = frame[transport + 13];
    let mut buffer = Vec::with_capacity(payload + size.min(data.len()));
    for index in 0..count {
        let chunk = data
            .get(index * size..data.len().min((index + 1) * size))
            .unwrap_or(&[]);
        buffer.clear();
        buffer.extend_from_slice(headers);
        buffer.extend_from_slice(chunk);
        // At most a 64 KiB frame: every length fits 16 bits.
        let ip_len = (buffer.len() - network) as u16;
        match segmentation.ip {
            IpVersion::V4 => {
                let header_len = usize::from(buffer[network] & 0x0F) * 4;
                put16(&mut buffer, network + 2, ip_len);
                put16(
                    &mut buffer,
                    network + 4,
                    first_id.wrapping_add(index as u16),
                );
                put16(&mut buffer, network + 10, 0);
                let checksum = !fold(sum(&buffer[network..network + header_len], 0));
                put16(&mut buffer, network + 10, checksum);
            }
            IpVersion::V6 => {
                put16(&mut buffer, network + 4, ip_len - IPV6_HEADER_LEN as u16);
            }
        }
        let sequence = first_sequence.wrapping_add((index * size) as u32);
        buffer[transport + 4..transport + 8].copy_from_slice(&sequence.to_be_bytes());
        let mut segment_flags = flags;
        if index + 1 < count {
            segment_flags &= !(TCP_FIN | TCP_PSH);
        }
        if index > 0 {
            segment_flags &= !TCP_CWR;
        }
        buffer[transport + 13] = segment_flags;
        put16(&mut buffer, transport + TCP_CHECKSUM, 0);
        let tcp_len = buffer.len() - transport;
        let pseudo = pseudo_header_sum(&buffer, segmentation.ip, network, tcp_len);
        let checksum = !fold(sum(&buffer[transport..], pseudo));
        put16(&mut buffer, transport + TCP_CHECKSUM, checksum);
        if !each(&buffer) {
            return (index, count);
        }
    }
    (count, count)
}

/// The one's-complement sum of the TCP pseudo-header (RFC 793 for IPv4, RFC 8200 §8.1 for
/// IPv6), unfolded.
fn pseudo_header_sum(frame: &[u8], ip: IpVersion, network: usize, tcp_len: usize) -> u64 {
    let (addresses, len) = match ip {
        IpVersion::V4 => (&frame[network + 12..network + 20], tcp_len as u64),
        IpVersion::V6 => (&frame[network + 8..network + 40], tcp_len as u64),
    };
    sum(
        addresses,
        u64::from(PROTOCOL_TCP) + (len & 0xFFFF) + (len >> 16),
    )
}

/// The one's-complement sum of `bytes` as big-endian 16-bit words (an odd last byte padded
/// with zero), added to `initial`, unfolded.
fn sum(bytes: &[u8], initial: u64) -> u64 {
    let mut total = initial;
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        total += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        total += u64::from(*last) << 8;
    }
    total
}

/// Folds a sum into 16 bits with end-around carry.
fn fold(mut total: u64) -> u16 {
    while total > 0xFFFF {
        total = (total & 0xFFFF) + (total >> 16);
    }
    total as u16
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn put16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
}
