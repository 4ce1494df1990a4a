//! Hostile-input tests for the audio depacketizer (STYLE practices 6 and 11): arbitrary and
//! mutated datagrams never panic, a rejected datagram changes nothing, and the output stays a
//! gap-free, in-order sequence of packets and lost ranges.

// Test helpers may unwrap: a panic here is a failed test (see clippy.toml).
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use howl_proto::audio::opus;
use howl_proto::audio::{
    AudioDepacketizer, AudioEncryption, AudioEvent, AudioPacketizer, AudioReceiverConfig,
    AudioStreamConfig, MAX_DATAGRAM_LEN,
};
use proptest::prelude::*;

fn encryption() -> AudioEncryption {
    AudioEncryption {
        key: [7; 16],
        rikeyid: 42,
    }
}

/// Valid datagrams of three blocks (data and FEC), plain and encrypted.
fn corpus(encrypted: bool) -> &'static [Vec<u8>] {
    static PLAIN: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    static ENC: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let cell = if encrypted { &ENC } else { &PLAIN };
    cell.get_or_init(|| {
        let mut cfg = AudioStreamConfig::new(5);
        if encrypted {
            cfg.encryption = Some(encryption());
        }
        let mut pz = AudioPacketizer::new(&cfg).unwrap();
        let mut out = Vec::new();
        for i in 0..12u8 {
            let p = [
                0xfc,
                i,
                i ^ 0x55,
                3,
                4,
                5,
                6,
                7,
                8,
                9,
                10,
                11,
                12,
                13,
                14,
                15,
                16,
                17,
            ];
            out.extend(pz.push(&p).unwrap().iter().map(<[u8]>::to_vec));
        }
        out
    })
}

fn receiver(encrypted: bool, first: Option<u16>, window: u16) -> AudioDepacketizer {
    let mut cfg = AudioReceiverConfig::new(5);
    cfg.first_sequence = first;
    cfg.reorder_window_blocks = window;
    if encrypted {
        cfg.encryption = Some(encryption());
    }
    AudioDepacketizer::new(&cfg).unwrap()
}

/// Feeds every datagram, checks that rejections leave the receiver unchanged, then flushes
/// and checks the event stream is contiguous. Returns the number of packets delivered.
fn run(dp: &mut AudioDepacketizer, datagrams: &[Vec<u8>]) -> usize {
    let mut next: Option<u16> = None;
    let mut packets = 0;
    let mut check = |dp: &mut AudioDepacketizer| {
        while let Some(ev) = dp.poll_event() {
            let (first, count) = match &ev {
                AudioEvent::Packet(p) => {
                    packets += 1;
                    assert!(p.opus.len() <= MAX_DATAGRAM_LEN);
                    (p.sequence, 1)
                }
                AudioEvent::Lost {
                    first_sequence,
                    count,
                } => {
                    assert!(*count > 0);
                    (*first_sequence, *count)
                }
            };
            if let Some(n) = next {
                assert_eq!(first, n, "events out of order: {ev:?}");
            }
            next = Some(first.wrapping_add(count as u16));
        }
    };
    for d in datagrams {
        let before = (dp.stats(), dp.next_sequence());
        if dp.handle_datagram(d).is_err() {
            assert_eq!((dp.stats(), dp.next_sequence()), before);
            let _ = dp
                .poll_event()
                .map(|e| panic!("event after a rejected datagram: {e:?}"));
        }
        check(dp);
    }
    dp.flush();
    check(dp);
    packets
}

/// A valid datagram, then a few bytes overwritten and maybe truncated or extended.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        any::<prop::sample::Index>(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        prop_oneof![Just(None), (0usize..40).prop_map(Some)],
        prop::collection::vec(any::<u8>(), 0..3),
    )
        .prop_map(|(enc, pick, edits, cut, tail)| {
            let mut d = pick.get(corpus(enc)).clone();
            for (at, b) in edits {
                let i = at.index(d.len());
                d[i] = b;
            }
            if let Some(c) = cut {
                d.truncate(c);
            }
            d.extend(tail);
            d
        })
}

/// An RTP-looking datagram with arbitrary fields, to get past the first checks.
fn rtp_like() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(97u8), Just(127u8), any::<u8>()],
        any::<u16>(),
        any::<[u8; 12]>(),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(pt, seq, hdr, body)| {
            let mut d = vec![0x80, pt];
            d.extend(seq.to_be_bytes());
            d.extend(&hdr[..8]);
            if pt == 127 {
                // Often a plausible FEC header: index 0/1, PT 97, aligned base.
                d.extend([hdr[8] & 1, 97]);
                d.extend((seq & !3).to_be_bytes());
                d.extend(&hdr[..8]);
            }
            d.extend(body);
            d
        })
}

fn datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => mutated(),
        2 => rtp_like(),
        1 => prop::collection::vec(any::<u8>(), 0..48),
        1 => prop::collection::vec(any::<u8>(), 1395..1410),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_datagrams_never_panic(
        encrypted in any::<bool>(),
        first in prop_oneof![Just(None), any::<u16>().prop_map(Some)],
        window in 0u16..5,
        datagrams in prop::collection::vec(datagram(), 1..8),
    ) {
        let mut dp = receiver(encrypted, first, window);
        run(&mut dp, &datagrams);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// The valid stream with hostile datagrams mixed in still delivers every packet (the
    /// mutations either get rejected or are rejected as duplicates/late), as long as nothing
    /// valid was removed and no mutation forged a packet of a future block.
    #[test]
    fn valid_stream_survives_interleaved_garbage(
        encrypted in any::<bool>(),
        junk in prop::collection::vec((any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 0..40)), 0..10),
    ) {
        let mut stream: Vec<Vec<u8>> = corpus(encrypted).to_vec();
        for (at, bytes) in junk {
            // Non-RTP first byte: always rejected before it can touch state.
            let mut d = vec![0x00];
            d.extend(bytes);
            let i = at.index(stream.len() + 1);
            stream.insert(i, d);
        }
        let mut dp = receiver(encrypted, Some(0), 1);
        prop_assert_eq!(run(&mut dp, &stream), 12);
        prop_assert_eq!(dp.stats().lost, 0);
    }
}

/// Targeted regressions: headers that only just fit, and far jumps in sequence space.
#[test]
fn edge_datagrams() {
    let mut dp = receiver(false, None, 1);
    for d in [
        vec![0x80, 97, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // empty payload
        vec![
            0x80, 127, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1, 97, 0, 4, 0, 0, 0, 0, 0, 0, 0,
        ], // FEC header 1 short
        vec![
            0x80, 127, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 2, 97, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0,
        ], // index 2
        vec![
            0x80, 127, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 96, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0,
        ], // PT 96
        vec![
            0x80, 127, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 97, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0,
        ], // base 5
        vec![0x90, 97, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], // extension bit
        vec![0x80, 0xe1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], // marker + 97
        vec![0x80, 97, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
            .into_iter()
            .chain(std::iter::repeat_n(0, 1400))
            .collect(),
    ] {
        assert!(
            dp.handle_datagram(&d).is_err(),
            "{:02x?}",
            &d[..d.len().min(24)]
        );
    }
    assert_eq!(dp.next_sequence(), None);

    // A packet, then one 30 000 sequence numbers ahead, then one behind: one lost range, one
    // late packet.
    let pkt = |seq: u16, ts: u32| {
        let mut d = vec![0x80, 97];
        d.extend(seq.to_be_bytes());
        d.extend(ts.to_be_bytes());
        d.extend([0, 0, 0, 0, 0xfc, 1]);
        d
    };
    dp.handle_datagram(&pkt(0, 0)).unwrap();
    dp.handle_datagram(&pkt(30_000, 150_000)).unwrap();
    dp.handle_datagram(&pkt(2, 10)).unwrap();
    dp.flush();
    let events: Vec<AudioEvent> = std::iter::from_fn(|| dp.poll_event()).collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(
        events[1],
        AudioEvent::Lost {
            first_sequence: 1,
            count: 29_999
        }
    ));
    assert!(
        matches!(&events[2], AudioEvent::Packet(p) if p.sequence == 30_000 && p.timestamp == 150_000)
    );
    // Nothing after 30 000 was seen, so flush reports no trailing loss.
    assert_eq!(dp.next_sequence(), Some(30_001));
    assert_eq!(dp.stats().late, 1);

    // A timestamp that contradicts the block is rejected.
    let mut dp = receiver(false, Some(0), 1);
    dp.handle_datagram(&pkt(0, 0)).unwrap();
    assert!(dp.handle_datagram(&pkt(1, 6)).is_err());
    dp.handle_datagram(&pkt(1, 5)).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the encoder hands over (valid Opus or not, any lengths), the packetizer never
    /// panics, every packet arrives, and a padded packet carries the same Opus frames.
    #[test]
    fn packetizer_accepts_any_packets(
        encrypted in any::<bool>(),
        streams in 1u8..4,
        packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..120), 1..24),
    ) {
        let mut cfg = AudioStreamConfig::new(10);
        cfg.opus_streams = streams;
        if encrypted {
            cfg.encryption = Some(encryption());
        }
        let mut pz = AudioPacketizer::new(&cfg).unwrap();
        let mut dp = AudioDepacketizer::new(&AudioReceiverConfig {
            packet_duration_ms: 10,
            encryption: cfg.encryption.clone(),
            first_sequence: Some(0),
            reorder_window_blocks: 1,
        }).unwrap();
        for p in &packets {
            for d in pz.push(p).unwrap().iter() {
                prop_assert!(d.len() <= MAX_DATAGRAM_LEN);
                dp.handle_datagram(d).unwrap();
            }
        }
        dp.flush();
        let mut got = Vec::new();
        while let Some(ev) = dp.poll_event() {
            match ev {
                AudioEvent::Packet(p) => got.push(p.opus),
                AudioEvent::Lost { .. } => prop_assert!(false, "lost with no loss"),
            }
        }
        prop_assert_eq!(got.len(), packets.len());
        prop_assert_eq!(pz.stats().uneven_blocks, dp.stats().uneven_blocks);
        for (g, p) in got.iter().zip(&packets) {
            if g != p {
                let a = opus::parse_multistream(g, streams).unwrap();
                let b = opus::parse_multistream(p, streams).unwrap();
                prop_assert_eq!(a.len(), b.len());
                for (x, y) in a.iter().zip(&b) {
                    prop_assert_eq!((x.toc & !3, &x.frames), (y.toc & !3, &y.frames));
                }
            }
        }
    }

    /// `opus::pad` on arbitrary bytes: an error, or exactly the target length with the same
    /// frames.
    #[test]
    fn opus_pad_any_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..80),
        streams in 0u8..4,
        grow in 0usize..600,
    ) {
        let mut out = vec![0xaa];
        if opus::pad(&bytes, streams, bytes.len() + grow, &mut out).is_ok() {
            prop_assert_eq!(out.len(), 1 + bytes.len() + grow);
            if grow > 0 {
                let a = opus::parse_multistream(&out[1..], streams).unwrap();
                let b = opus::parse_multistream(&bytes, streams).unwrap();
                for (x, y) in a.iter().zip(&b) {
                    prop_assert_eq!((x.toc & !3, &x.frames), (y.toc & !3, &y.frames));
                }
            }
        } else {
            prop_assert_eq!(out, vec![0xaa]);
        }
    }
}
