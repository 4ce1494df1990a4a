//! Hostile-input tests for the video depacketizer (STYLE practices 6 and 11): arbitrary and
//! mutated datagrams must never panic, and every rejection leaves the receiver usable.

// Test helpers may unwrap: a panic here is a failed test (see clippy.toml).
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use howl_proto::video::{
    DepacketizerConfig, FrameType, PacketizerConfig, VideoDepacketizer, VideoEvent, VideoFrame,
    VideoPacketizer,
};
use proptest::prelude::*;

const PACKET: usize = 64;
const KEY: [u8; 16] = [9; 16];

/// Valid datagrams of four small frames (one multi-shard, one with FEC forced), plain and
/// encrypted.
fn corpus(encrypted: bool) -> &'static [Vec<u8>] {
    static PLAIN: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    static ENC: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let cell = if encrypted { &ENC } else { &PLAIN };
    cell.get_or_init(|| {
        let mut cfg = PacketizerConfig::new(PACKET);
        cfg.fec_percentage = 50;
        if encrypted {
            cfg.encryption_key = Some(KEY);
        }
        let mut pz = VideoPacketizer::new(&cfg).unwrap();
        let mut out = Vec::new();
        for (f, len) in [(1u32, 10usize), (2, 300), (3, 0), (4, 120)] {
            let au: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let frame = VideoFrame {
                frame_index: f,
                rtp_timestamp: f * 3000,
                frame_type: FrameType::P,
                host_processing_latency: 0,
                ltr: false,
                access_unit: &au,
            };
            out.extend(pz.packetize(&frame).unwrap().iter().map(<[u8]>::to_vec));
        }
        out
    })
}

fn receiver(encrypted: bool, window: u32) -> VideoDepacketizer {
    let mut cfg = DepacketizerConfig::new(PACKET);
    cfg.reorder_window = window;
    if encrypted {
        cfg.encryption_key = Some(KEY);
    }
    VideoDepacketizer::new(&cfg).unwrap()
}

fn drain_and_check(dp: &mut VideoDepacketizer) -> usize {
    let mut n = 0;
    while let Some(ev) = dp.poll_event() {
        if let VideoEvent::Frame(fr) = &ev {
            assert!(fr.fec_blocks >= 1 && fr.fec_blocks <= 4);
        }
        n += 1;
    }
    n
}

/// One edit of a corpus datagram.
#[derive(Debug, Clone)]
struct Edit {
    pick: usize,
    flips: Vec<(usize, u8)>,
    cut: Option<usize>,
}

fn edit() -> impl Strategy<Value = Edit> {
    (
        any::<usize>(),
        proptest::collection::vec((0usize..120, any::<u8>()), 0..4),
        proptest::option::weighted(0.1, 0usize..120),
    )
        .prop_map(|(pick, flips, cut)| Edit { pick, flips, cut })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Valid datagrams with flipped bytes (headers: the parser's fields; encrypted: the
    /// prefix, tag and ciphertext), truncations, duplicates and reordering.
    #[test]
    fn mutated_datagrams_never_panic(edits in proptest::collection::vec(edit(), 1..10), encrypted in any::<bool>(), window in 1u32..4) {
        let corpus = corpus(encrypted);
        let mut dp = receiver(encrypted, window);
        for e in &edits {
            let mut dg = corpus[e.pick % corpus.len()].clone();
            for &(pos, x) in &e.flips {
                if let Some(b) = dg.get_mut(pos) {
                    *b ^= x;
                }
            }
            if let Some(c) = e.cut {
                dg.truncate(c);
            }
            let _ = dp.handle_datagram(&dg);
            drain_and_check(&mut dp);
        }
        dp.flush();
        drain_and_check(&mut dp);
        let st = dp.stats();
        prop_assert_eq!(st.datagrams, edits.len() as u64);
        // Still usable: a clean frame far ahead is delivered.
        let mut pz_cfg = PacketizerConfig::new(PACKET);
        if encrypted {
            pz_cfg.encryption_key = Some(KEY);
            pz_cfg.first_iv_counter = 1 << 40;
        }
        let mut pz = VideoPacketizer::new(&pz_cfg).unwrap();
        let au = [0u8, 0, 1, 0x65, 7];
        let fresh = dp.next_frame_index().unwrap_or(1).wrapping_add(5);
        let dgs: Vec<Vec<u8>> = pz.packetize(&VideoFrame { frame_index: fresh, rtp_timestamp: 0, frame_type: FrameType::Idr, host_processing_latency: 0, ltr: false, access_unit: &au }).unwrap().iter().map(<[u8]>::to_vec).collect();
        let mut got = false;
        for dg in &dgs {
            let _ = dp.handle_datagram(dg);
            while let Some(ev) = dp.poll_event() {
                if let VideoEvent::Frame(fr) = ev {
                    got |= fr.frame_index == fresh && fr.access_unit == au;
                }
            }
        }
        dp.flush();
        while let Some(ev) = dp.poll_event() {
            if let VideoEvent::Frame(fr) = ev {
                got |= fr.frame_index == fresh && fr.access_unit == au;
            }
        }
        prop_assert!(got);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary bytes, with a valid RTP byte 0 most of the time so the NV fields are reached.
    #[test]
    fn arbitrary_datagrams_never_panic(dgs in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..130), any::<bool>()), 1..8), encrypted in any::<bool>()) {
        let mut dp = receiver(encrypted, 2);
        for (mut dg, fix) in dgs {
            if fix && !dg.is_empty() {
                dg[0] = 0x90;
            }
            let _ = dp.handle_datagram(&dg);
            drain_and_check(&mut dp);
        }
        dp.flush();
        drain_and_check(&mut dp);
    }
}
