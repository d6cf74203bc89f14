//! The offloads finished in software: every segment of a cut TCP frame must be a frame a
//! receiver's stack accepts (its own IP and TCP checksums right, lengths and sequence numbers
//! in order) and together they must carry exactly the sent bytes; every request a sender could
//! forge must be refused before any byte is indexed.

use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::net_offload::*;
use super::testing::{parse_segment, partial, reference_checksum, tcp_frame, ACK, CWR, FIN, PSH};

fn cut(frame: &Frame) -> Vec<Vec<u8>> {
    let mut segments = Vec::new();
    let (accepted, count) = frame
        .segments(|segment| {
            segments.push(segment.to_vec());
            true
        })
        .expect("a segmentation request");
    assert_eq!((accepted, count), (segments.len(), segments.len()));
    segments
}

#[test]
fn checksum_matches_rfc_1071_example_header() {
    // The IPv4 header of RFC 1071's companion examples: 0xB861 is its checksum.
    let header = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xC0, 0xA8, 0x00,
        0x01, 0xC0, 0xA8, 0x00, 0xC7,
    ];
    assert_eq!(reference_checksum(&[&header]), 0xB861);
    // The module's: a frame whose "partial" checksum covers that header with 0 left in the field.
    let mut bytes = vec![0u8; 14];
    bytes.extend_from_slice(&header);
    let frame = Frame::checked(
        bytes,
        Some(PartialChecksum {
            start: 14,
            offset: 10,
        }),
        None,
    )
    .unwrap();
    assert_eq!(frame.with_checksum()[24..26], [0xB8, 0x61]);
}

#[test]
fn a_partial_checksum_is_completed_over_the_pseudo_header() {
    for v6 in [false, true] {
        for len in [0, 1, 2, 999, 1460] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let (bytes, network) = tcp_frame(v6, false, 0, PSH | ACK, &payload);
            let transport = if v6 { network + 40 } else { network + 20 };
            let frame = Frame::checked(bytes, partial(transport), None).unwrap();
            let done = frame.with_checksum();
            let segment = parse_segment(&done, network, v6);
            assert_eq!(segment.payload, payload);
        }
    }
}

#[test]
fn a_zero_sum_is_stored_as_all_ones() {
    // Bytes summing to 0xFFFF: the checksum is 0, stored as 0xFFFF (UDP's rule).
    let mut bytes = vec![0u8; 14];
    bytes.extend_from_slice(&[0xFF, 0xFF, 0, 0]);
    let frame = Frame::checked(
        bytes,
        Some(PartialChecksum {
            start: 14,
            offset: 2,
        }),
        None,
    )
    .unwrap();
    assert_eq!(frame.with_checksum()[16..18], [0xFF, 0xFF]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Cut a TCP frame of any size and shape: every segment is valid on its own, and
    /// together they carry the payload in order, with FIN/PSH only on the last and CWR only
    /// on the first.
    #[test]
    fn segments_are_valid_frames_that_carry_the_payload(
        v6 in any::<bool>(),
        vlan in any::<bool>(),
        options in 0usize..=10,
        len in 0usize..20_000,
        size in 1u16..=1460,
        flags in any::<u8>(),
        seed in any::<u8>(),
    ) {
        let payload: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        let (bytes, network) = tcp_frame(v6, vlan, options * 4, flags, &payload);
        let transport = network + if v6 { 40 } else { 20 };
        let ip = if v6 { IpVersion::V6 } else { IpVersion::V4 };
        let frame = Frame::checked(bytes, partial(transport), Some((ip, size))).unwrap();
        let segments = cut(&frame);
        prop_assert_eq!(segments.len(), len.div_ceil(usize::from(size)).max(1));
        let mut carried = Vec::new();
        for (index, bytes) in segments.iter().enumerate() {
            let segment = parse_segment(bytes, network, v6);
            let last = index + 1 == segments.len();
            prop_assert!(segment.payload.len() <= usize::from(size));
            prop_assert_eq!(
                segment.sequence,
                0xFFFF_FF00u32.wrapping_add(carried.len() as u32)
            );
            let mut expected = flags;
            if !last {
                expected &= !(FIN | PSH);
            }
            if index > 0 {
                expected &= !CWR;
            }
            prop_assert_eq!(segment.flags, expected);
            if let Some(id) = segment.ip_id {
                prop_assert_eq!(id, 0x1234u16.wrapping_add(index as u16));
            }
            prop_assert_eq!(&bytes[..network], &frame.bytes()[..network], "link header");
            carried.extend_from_slice(&segment.payload);
        }
        prop_assert_eq!(carried, payload);
    }

    /// Any bytes and any request: refused, or cut without a panic into segments no longer
    /// than the frame.
    #[test]
    fn forged_requests_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        start in any::<u16>(),
        offset in any::<u16>(),
        v6 in any::<bool>(),
        size in any::<u16>(),
    ) {
        let ip = if v6 { IpVersion::V6 } else { IpVersion::V4 };
        let checksum = Some(PartialChecksum { start, offset });
        if let Ok(frame) = Frame::checked(bytes, checksum, Some((ip, size))) {
            cut_within_the_frame(&frame)?;
            frame.with_checksum();
        }
    }

    /// A real TCP frame with a few bytes changed (lengths, header lengths, versions, flags)
    /// and a request near the right one: refused, or cut without a panic, every segment no
    /// longer than the frame.
    #[test]
    fn damaged_tcp_frames_never_panic(
        v6 in any::<bool>(),
        vlan in any::<bool>(),
        len in 0usize..3_000,
        damage in proptest::collection::vec((0usize..120, any::<u8>()), 0..6),
        start_shift in -4i32..=4,
        size in 0u16..=2_000,
        cut_to in any::<proptest::sample::Index>(),
    ) {
        let (mut bytes, network) = tcp_frame(v6, vlan, 0, ACK, &vec![0x42; len]);
        for (at, value) in damage {
            if let Some(byte) = bytes.get_mut(at) {
                *byte = value;
            }
        }
        let keep = cut_to.index(bytes.len() + 1);
        bytes.truncate(keep.max(bytes.len() / 2));
        let transport = network + if v6 { 40 } else { 20 };
        let start = (transport as i32 + start_shift).max(0) as usize;
        let ip = if v6 { IpVersion::V6 } else { IpVersion::V4 };
        if let Ok(frame) = Frame::checked(bytes, partial(start), Some((ip, size))) {
            cut_within_the_frame(&frame)?;
        }
    }
}

/// Cuts `frame` (a segmentation request), checking every segment is taken and none is longer
/// than the frame.
fn cut_within_the_frame(frame: &Frame) -> Result<(), TestCaseError> {
    let mut longest = 0;
    let (accepted, count) = frame
        .segments(|s| {
            longest = longest.max(s.len());
            true
        })
        .expect("a segmentation request");
    prop_assert_eq!(accepted, count);
    prop_assert!(longest <= frame.len());
    Ok(())
}

#[test]
fn the_receiver_can_stop_the_cut() {
    let (bytes, network) = tcp_frame(false, false, 0, ACK, &[0x55; 5000]);
    let frame = Frame::checked(bytes, partial(network + 20), Some((IpVersion::V4, 1000))).unwrap();
    let mut seen = 0;
    let result = frame.segments(|_| {
        seen += 1;
        seen < 3
    });
    assert_eq!(
        result,
        Some((2, 5)),
        "two taken, the third refused, of five"
    );
    assert_eq!(Frame::plain(&[0; 60]).segments(|_| true), None);
}

#[test]
fn requests_that_do_not_fit_the_frame_are_refused() {
    let (tcp4, network) = tcp_frame(false, false, 0, ACK, &[1; 100]);
    let (tcp6, _) = tcp_frame(true, false, 0, ACK, &[1; 100]);
    let transport = network + 20;
    let v4 = Some((IpVersion::V4, 1460));
    let check = |bytes: &[u8], checksum, segmentation| {
        Frame::checked(bytes.to_vec(), checksum, segmentation).map(|_| ())
    };
    assert_eq!(check(&tcp4, partial(transport), v4), Ok(()));
    // The checksum field past the end (or its second byte).
    let end = tcp4.len() as u16;
    for (start, offset) in [(end, 0), (end - 1, 0), (0, end - 1), (u16::MAX, u16::MAX)] {
        assert_eq!(
            check(&tcp4, Some(PartialChecksum { start, offset }), None),
            Err(OffloadError::ChecksumOutsideFrame)
        );
    }
    // Segmentation without a checksum, or of size 0.
    assert_eq!(check(&tcp4, None, v4), Err(OffloadError::BadSegmentation));
    assert_eq!(
        check(&tcp4, partial(transport), Some((IpVersion::V4, 0))),
        Err(OffloadError::BadSegmentation)
    );
    // The checksum is not TCP's.
    assert_eq!(
        check(&tcp4, partial(network), v4),
        Err(OffloadError::ChecksumNotTcp)
    );
    // The wrong IP version for the frame, either way.
    assert_eq!(
        check(&tcp4, partial(transport), Some((IpVersion::V6, 1460))),
        Err(OffloadError::NotTcp)
    );
    assert_eq!(
        check(&tcp6, partial(network + 40), v4),
        Err(OffloadError::NotTcp)
    );
    // Not TCP, a fragment, an IHL below 5, a data offset below 5, headers past the end.
    let mutations: [(usize, u8); 5] = [
        (network + 9, 17),
        (network + 6, 0x20),
        (network, 0x44),
        (transport + 12, 0x40),
        (transport + 12, 0xF0),
    ];
    for (at, value) in mutations {
        let mut bytes = tcp4.clone();
        bytes[at] = value;
        bytes.truncate(if value == 0xF0 {
            transport + 40
        } else {
            bytes.len()
        });
        assert_eq!(
            check(&bytes, partial(transport), v4),
            Err(OffloadError::NotTcp),
            "byte {at} = {value:#x}"
        );
    }
    // Cut short inside the TCP header.
    assert_eq!(
        check(&tcp4[..transport + 12], partial(transport), v4),
        Err(OffloadError::ChecksumOutsideFrame)
    );
    // IPv6 whose next header is not TCP (an extension header).
    let mut bytes = tcp6.clone();
    bytes[network + 6] = 0;
    assert_eq!(
        check(&bytes, partial(network + 40), Some((IpVersion::V6, 1460))),
        Err(OffloadError::NotTcp)
    );
}
