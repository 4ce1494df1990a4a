//! Byte-exact video packet layouts from reference part 2 §4.12, plus layout invariants of
//! multi-block frames (§4.3, §4.6).

// Test helpers may unwrap: a panic here is a failed test (see clippy.toml).
#![allow(clippy::unwrap_used)]

use howl_proto::video::{
    DatagramHeader, FrameType, PacketizerConfig, VideoFrame, VideoPacketizer, video_iv,
};

const KEY: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];

/// `E` of the §4.12 complete-frame vector: SPS ‖ PPS ‖ slice NAL header ‖ 0x11..=0x74.
fn vector_frame() -> Vec<u8> {
    let mut e = hex::decode("0000000167640028acd20000000168ee3c800000000165").unwrap();
    e.extend((0..100u8).map(|n| 0x11 + n));
    assert_eq!(e.len(), 123);
    e
}

const GOLDEN: [&str; 5] = [
    "9000000000015f9000000000000000000000000001000000050010002004c000\
     01000002230000000000000167640028acd20000000168ee3c8000000001651112131415161718191a1b1c1d1e1f2021",
    "9000000100015f9000000000000000000001000001000000010010002014c000\
     22232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f5051",
    "9000000200015f9000000000000000000002000001000000030010002024c000\
     52535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f707172737400000000000000000000000000",
    "9000000300015f900000000000000000007a000001000000b100f7002034c000\
     0a3709bbedc10ebd75c6f8c53e0208af25a9fe4d85b8cd3d9c710fbc74496be2a5982b4cc2b8344ec0bac1bb354f205a",
    "9000000400015f90000000000000000000dd000001000000790051002044c000\
     a67ba4781cdf557c072ef12c755df3c2c5c6577e05d875d5e056022b508d4a4f35e8c154daa02c56d8a2d9a32d57c3b9",
];

fn frame(e: &[u8]) -> VideoFrame<'_> {
    VideoFrame {
        frame_index: 1,
        rtp_timestamp: 90_000,
        frame_type: FrameType::Idr,
        host_processing_latency: 0,
        ltr: false,
        access_unit: e,
    }
}

#[test]
fn golden_complete_frame() {
    let e = vector_frame();
    let mut pz = VideoPacketizer::new(&PacketizerConfig::new(64)).unwrap();
    let dgs = pz.packetize(&frame(&e)).unwrap();
    assert_eq!(dgs.len(), 5);
    assert_eq!(dgs.datagram_len(), 80);
    for (i, dg) in dgs.iter().enumerate() {
        assert_eq!(hex::encode(dg), GOLDEN[i], "packet {i}");
    }
    assert_eq!(pz.next_sequence(), 5);
}

#[test]
fn golden_encrypted_first_packet() {
    let e = vector_frame();
    let mut cfg = PacketizerConfig::new(64);
    cfg.encryption_key = Some(KEY);
    let mut pz = VideoPacketizer::new(&cfg).unwrap();
    let dgs = pz.packetize(&frame(&e)).unwrap();
    assert_eq!(dgs.datagram_len(), 112);
    let want = "000000000000000000000056\
                01000000\
                74a2f785676684e9436834e67812f8a8\
                3a8a76d340587afbc781504ebd21e14ab87f3103d314587a45a7cf27aba694dab1946095fdd3c6c0258f13fe13b3e973\
                da55140284106168afb2fbc7586d0f4cde45d7a7276c6392b8af02e53fd675ae";
    assert_eq!(hex::encode(dgs.get(0).unwrap()), want);
    // Every shard gets the next IV counter value.
    for (i, dg) in dgs.iter().enumerate() {
        assert_eq!(&dg[..12], &video_iv(i as u64));
        assert_eq!(&dg[12..16], &1u32.to_le_bytes());
    }
    assert_eq!(pz.next_iv_counter(), 5);
}

#[test]
fn header_parse_of_golden_packets() {
    let h = DatagramHeader::parse(&hex::decode(GOLDEN[3]).unwrap()).unwrap();
    assert_eq!(h.sequence, 3);
    assert_eq!(h.timestamp, 90_000);
    assert_eq!(h.frame_index, 1);
    assert_eq!((h.data_shards, h.shard_index, h.fec_percentage), (3, 3, 66));
    assert_eq!(h.parity_shards(), 2);
    assert_eq!((h.block_index, h.last_block_index), (0, 0));
}

/// Multi-block frame at packetSize 1392: per-block SOF/EOF, continuous sequence numbers,
/// increasing stream packet indices, consistent fecInfo and multiFecBlocks.
#[test]
fn multi_block_layout() {
    let au: Vec<u8> = (0..400_000u32).map(|i| (i * 7 + 1) as u8).collect();
    let mut cfg = PacketizerConfig::new(1392);
    cfg.first_sequence = 65_530; // exercise 16-bit wrap
    let mut pz = VideoPacketizer::new(&cfg).unwrap();
    let f = VideoFrame {
        frame_index: 7,
        rtp_timestamp: 1234,
        frame_type: FrameType::P,
        host_processing_latency: 25,
        ltr: true,
        access_unit: &au,
    };
    let dgs = pz.packetize(&f).unwrap();
    // N = ceil((400000 + 8) / 1376) = 291 → K = 2 blocks of 146 + 145 data shards.
    assert_eq!(dgs.fec_blocks(), 2);
    let mut last_spi: Option<u32> = None;
    let mut per_block = [0usize; 2];
    for (seq, dg) in (65_530u64..).zip(dgs.iter()) {
        assert_eq!(dg.len(), 1408);
        let h = DatagramHeader::parse(dg).unwrap();
        assert_eq!(h.sequence, seq as u16);
        assert_eq!(h.timestamp, 1234);
        assert_eq!(h.frame_index, 7);
        assert_eq!(h.last_block_index, 1);
        let d = usize::from(h.data_shards);
        assert_eq!(d, if h.block_index == 0 { 146 } else { 145 });
        assert_eq!(h.fec_percentage, 20);
        assert_eq!(usize::from(h.parity_shards()), d.div_ceil(5));
        per_block[usize::from(h.block_index)] += 1;
        let x = usize::from(h.shard_index);
        if x < d {
            let mut want = 0x01;
            if x == 0 {
                want |= 0x04;
            }
            if x == d - 1 {
                want |= 0x02;
            }
            assert_eq!(h.flags, want);
            assert_eq!(h.extra_flags, 1);
            assert_eq!(h.stream_packet_index, (seq & 0xff_ffff) as u32);
            if let Some(prev) = last_spi {
                assert!(h.stream_packet_index > prev);
            }
            last_spi = Some(h.stream_packet_index);
        }
    }
    assert_eq!(per_block, [146 + 30, 145 + 29]);
    // Frame header: latency 25, type 1, lastPayloadLen = (8 + 400000) mod 1376.
    let first = dgs.get(0).unwrap();
    assert_eq!(
        &first[32..40],
        &[
            0x01,
            25,
            0,
            1,
            (400_008 % 1376) as u8,
            ((400_008 % 1376) >> 8) as u8,
            0,
            0
        ]
    );
}

#[test]
fn oversized_frames_disable_fec_then_fail() {
    let mut pz = VideoPacketizer::new(&PacketizerConfig::new(1392)).unwrap();
    // 849 data shards > 4 × 212: FEC off, 4 blocks, fecInfo F = 0.
    let au = vec![0u8; 849 * 1376 - 8];
    let dgs = pz
        .packetize(&VideoFrame {
            frame_index: 1,
            rtp_timestamp: 0,
            frame_type: FrameType::Idr,
            host_processing_latency: 0,
            ltr: false,
            access_unit: &au,
        })
        .unwrap();
    assert_eq!(dgs.len(), 849);
    assert_eq!(dgs.fec_blocks(), 4);
    assert!(
        dgs.iter()
            .all(|dg| DatagramHeader::parse(dg).unwrap().fec_percentage == 0)
    );
    let too_big = vec![0u8; pz.max_access_unit_len() + 1];
    let seq = pz.next_sequence();
    assert!(
        pz.packetize(&VideoFrame {
            frame_index: 2,
            rtp_timestamp: 0,
            frame_type: FrameType::P,
            host_processing_latency: 0,
            ltr: false,
            access_unit: &too_big
        })
        .is_err()
    );
    assert_eq!(pz.next_sequence(), seq, "failed frame consumes nothing");
    let max = vec![0u8; pz.max_access_unit_len()];
    assert_eq!(
        pz.packetize(&VideoFrame {
            frame_index: 2,
            rtp_timestamp: 0,
            frame_type: FrameType::P,
            host_processing_latency: 0,
            ltr: false,
            access_unit: &max
        })
        .unwrap()
        .len(),
        4092
    );
}

#[test]
fn empty_access_unit_and_bad_config() {
    let mut pz = VideoPacketizer::new(&PacketizerConfig::new(64)).unwrap();
    let dgs = pz
        .packetize(&VideoFrame {
            frame_index: 1,
            rtp_timestamp: 0,
            frame_type: FrameType::P,
            host_processing_latency: 0,
            ltr: false,
            access_unit: &[],
        })
        .unwrap();
    assert_eq!(dgs.len(), 3); // one data shard + 2 forced parity
    assert!(VideoPacketizer::new(&PacketizerConfig::new(31)).is_err());
    assert!(VideoPacketizer::new(&PacketizerConfig::new(65_001)).is_err());
}
