//! Packetize → lose/reorder datagrams → depacketize, with and without encryption.

// Test helpers may unwrap: a panic here is a failed test (see clippy.toml).
#![allow(clippy::unwrap_used)]

use howl_proto::video::{
    DatagramHeader, DepacketizerConfig, FrameType, LossReason, PacketizerConfig, ReceivedFrame,
    VideoDepacketizer, VideoEvent, VideoFrame, VideoPacketizer, small_frame_budget,
};
use proptest::prelude::*;

const KEY: [u8; 16] = *b"0123456789abcdef";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn access_unit(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut au = vec![0, 0, 0, 1, 0x65];
    au.extend((0..len.saturating_sub(5)).map(|_| rng.next() as u8));
    au.truncate(len);
    au
}

fn events(dp: &mut VideoDepacketizer) -> Vec<VideoEvent> {
    std::iter::from_fn(|| dp.poll_event()).collect()
}

/// Drops up to `P` datagrams per FEC block (when `lossy`) and shuffles the survivors of the
/// whole frame. `meta[i]` = (block index, parity shards) of datagram `i`.
fn lose_and_shuffle(
    dgs: Vec<Vec<u8>>,
    meta: &[(u8, u16)],
    rng: &mut Rng,
    lossy: bool,
) -> Vec<Vec<u8>> {
    let mut blocks: Vec<(u16, Vec<Vec<u8>>)> = Vec::new();
    for (dg, &(blk, p)) in dgs.into_iter().zip(meta) {
        if blocks.len() <= usize::from(blk) {
            blocks.push((p, Vec::new()));
        }
        blocks[usize::from(blk)].1.push(dg);
    }
    let mut out = Vec::new();
    for (p, mut block) in blocks {
        let drop = if lossy {
            rng.below(usize::from(p) + 1)
        } else {
            0
        };
        for _ in 0..drop {
            let i = rng.below(block.len());
            block.remove(i);
        }
        out.append(&mut block);
    }
    for i in (1..out.len()).rev() {
        let j = rng.below(i + 1);
        out.swap(i, j);
    }
    out
}

/// Packetizes `sizes` as consecutive frames. Each datagram's block geometry is read from a
/// plaintext packetizer run with the same settings (identical geometry).
fn run(
    sizes: &[usize],
    packet_size: usize,
    fec: u8,
    encrypt: bool,
    lossy: bool,
    seed: u64,
) -> (Vec<VideoEvent>, Vec<Vec<u8>>) {
    let mut cfg = PacketizerConfig::new(packet_size);
    cfg.fec_percentage = fec;
    if encrypt {
        cfg.encryption_key = Some(KEY);
    }
    run_cfg(sizes, cfg, lossy, seed)
}

/// [`run`] with any packetizer configuration (`encryption_key` set means encrypted).
fn run_cfg(
    sizes: &[usize],
    mut cfg: PacketizerConfig,
    lossy: bool,
    seed: u64,
) -> (Vec<VideoEvent>, Vec<Vec<u8>>) {
    let packet_size = cfg.packet_size;
    let key = cfg.encryption_key.take();
    let mut plain_pz = VideoPacketizer::new(&cfg).unwrap();
    cfg.encryption_key = key;
    let mut pz = VideoPacketizer::new(&cfg).unwrap();
    let mut dcfg = DepacketizerConfig::new(packet_size);
    dcfg.encryption_key = cfg.encryption_key;
    let mut dp = VideoDepacketizer::new(&dcfg).unwrap();
    let mut rng = Rng(seed | 1);
    let mut aus = Vec::new();
    let mut evs = Vec::new();
    for (n, &len) in sizes.iter().enumerate() {
        let au = access_unit(len, seed.wrapping_add(n as u64));
        let frame = VideoFrame {
            frame_index: n as u32 + 1,
            rtp_timestamp: (n as u32) * 1500,
            frame_type: if n == 0 { FrameType::Idr } else { FrameType::P },
            host_processing_latency: n as u16,
            ltr: n % 3 == 0,
            access_unit: &au,
        };
        let meta: Vec<(u8, u16)> = plain_pz
            .packetize(&frame)
            .unwrap()
            .iter()
            .map(|dg| {
                let h = DatagramHeader::parse(dg).unwrap();
                (h.block_index, h.parity_shards())
            })
            .collect();
        let dgs: Vec<Vec<u8>> = pz
            .packetize(&frame)
            .unwrap()
            .iter()
            .map(<[u8]>::to_vec)
            .collect();
        for dg in lose_and_shuffle(dgs, &meta, &mut rng, lossy) {
            dp.handle_datagram(&dg).unwrap();
            evs.extend(events(&mut dp));
        }
        aus.push(au);
    }
    dp.flush();
    evs.extend(events(&mut dp));
    (evs, aus)
}

fn check_all_delivered(evs: &[VideoEvent], aus: &[Vec<u8>]) {
    assert_eq!(evs.len(), aus.len(), "{evs:?}");
    for (n, (ev, au)) in evs.iter().zip(aus).enumerate() {
        let VideoEvent::Frame(ReceivedFrame {
            frame_index,
            access_unit,
            frame_type_raw,
            host_processing_latency,
            ltr,
            rtp_timestamp,
            ..
        }) = ev
        else {
            panic!("frame {} not delivered: {ev:?}", n + 1);
        };
        assert_eq!(*frame_index, n as u32 + 1);
        assert_eq!(access_unit, au, "frame {frame_index}");
        assert_eq!(*frame_type_raw, if n == 0 { 2 } else { 1 });
        assert_eq!(*host_processing_latency, n as u16);
        assert_eq!(*ltr, n % 3 == 0);
        assert_eq!(*rtp_timestamp, n as u32 * 1500);
    }
}

const SIZES: [usize; 9] = [0, 1, 40, 1368, 1369, 5000, 100_000, 300_000, 1_200_000];

#[test]
fn roundtrip_lossless_in_order() {
    for encrypt in [false, true] {
        let (evs, aus) = run(&SIZES, 1392, 20, encrypt, false, 1);
        check_all_delivered(&evs, &aus);
    }
}

#[test]
fn roundtrip_with_loss_and_reordering() {
    for encrypt in [false, true] {
        for seed in 1..6 {
            let (evs, aus) = run(&SIZES[..8], 1392, 20, encrypt, true, seed);
            check_all_delivered(&evs, &aus);
        }
    }
}

#[test]
fn small_packets_high_fec() {
    let sizes: Vec<usize> = (0..30).map(|i| i * 37).collect();
    for fec in [1u8, 50, 100, 255] {
        let (evs, aus) = run(&sizes, 64, fec, true, true, u64::from(fec));
        check_all_delivered(&evs, &aus);
    }
}

/// The small-frame parity budget: tiny frames get up to their share of the bitrate, a
/// one-shard H.264 frame goes as two (the second all padding) with 6 parity shards, and any
/// loss FEC can repair still delivers every frame: the access unit, then only zero padding.
#[test]
fn small_frames_spend_the_budget_on_parity() {
    let sizes = [0usize, 1, 40, 1368, 1369, 3000, 5000, 20_000];
    // (kbps, fps) giving budgets of 9, 9, 4 and 12 datagrams, the same in clear (1408-byte)
    // and encrypted (1440-byte) datagrams, so run_cfg's plaintext geometry matches.
    for (kbps, pad, budget) in [
        (6400u32, true, 9usize),
        (6400, false, 9),
        (2800, true, 4),
        (8400, true, 12),
    ] {
        assert_eq!(small_frame_budget(kbps, 60, 1408), budget);
        assert_eq!(small_frame_budget(kbps, 60, 1440), budget);
        for encrypt in [false, true] {
            let mut cfg = PacketizerConfig::new(1392);
            cfg.small_frame_bitrate = Some((kbps, 60));
            cfg.pad_single_shard = pad;
            if encrypt {
                cfg.encryption_key = Some(KEY);
            }
            // The datagram counts the budget gives (one plaintext run).
            let mut pz = VideoPacketizer::new(&PacketizerConfig {
                encryption_key: None,
                ..cfg.clone()
            })
            .unwrap();
            for &len in &sizes {
                let au = access_unit(len, 3);
                let frame = VideoFrame {
                    frame_index: 1,
                    rtp_timestamp: 0,
                    frame_type: FrameType::P,
                    host_processing_latency: 0,
                    ltr: false,
                    access_unit: &au,
                };
                let dgs: Vec<DatagramHeader> = pz
                    .packetize(&frame)
                    .unwrap()
                    .iter()
                    .map(|dg| DatagramHeader::parse(dg).unwrap())
                    .collect();
                let data = usize::from(dgs[0].data_shards);
                let parity = usize::from(dgs[0].parity_shards());
                let natural = (8 + len).div_ceil(1376); // S = packetSize - 16
                let expect_data = if natural == 1 && pad && budget > 4 {
                    2
                } else {
                    natural
                };
                assert_eq!(data, expect_data, "len {len} budget {budget} pad {pad}");
                // Never below the reference rule (20 %, at least 2); up to the budget where the
                // advertised percentage (at most 255) allows.
                let reference = (data * 20).div_ceil(100).max(2);
                let cap = (data * 255).div_ceil(100);
                let want = budget.saturating_sub(data).min(cap).max(reference);
                assert!(dgs.iter().all(|h| h.block_index == 0), "one block each");
                assert_eq!(parity, want, "len {len} budget {budget} pad {pad}");
                assert_eq!(dgs.len(), data + parity);
            }
            for seed in 1..8 {
                let (evs, aus) = run_cfg(&sizes, cfg.clone(), true, seed);
                assert_eq!(evs.len(), aus.len(), "{evs:?}");
                for (ev, au) in evs.iter().zip(&aus) {
                    let VideoEvent::Frame(f) = ev else {
                        panic!("frame not delivered: {ev:?}");
                    };
                    assert_eq!(&f.access_unit[..au.len()], &au[..]);
                    assert!(f.access_unit[au.len()..].iter().all(|&b| b == 0));
                }
            }
        }
    }
}

#[test]
fn unrecoverable_block_is_reported_lost() {
    let cfg = PacketizerConfig::new(1392);
    let mut pz = VideoPacketizer::new(&cfg).unwrap();
    let mut dp = VideoDepacketizer::new(&DepacketizerConfig::new(1392)).unwrap();
    let au = access_unit(20_000, 9); // 15 data shards, 3 parity
    let mut evs = Vec::new();
    for f in 1..=4u32 {
        let frame = VideoFrame {
            frame_index: f,
            rtp_timestamp: 0,
            frame_type: FrameType::P,
            host_processing_latency: 0,
            ltr: false,
            access_unit: &au,
        };
        let dgs: Vec<Vec<u8>> = pz
            .packetize(&frame)
            .unwrap()
            .iter()
            .map(<[u8]>::to_vec)
            .collect();
        assert_eq!(dgs.len(), 18);
        let skip: &[usize] = match f {
            2 => &[0, 5, 9, 17],               // 4 lost > 3 parity
            3 => &(0..18).collect::<Vec<_>>(), // whole frame lost
            _ => &[],
        };
        for (i, dg) in dgs.iter().enumerate() {
            if !skip.contains(&i) {
                dp.handle_datagram(dg).unwrap();
            }
        }
        evs.extend(events(&mut dp));
    }
    dp.flush();
    evs.extend(events(&mut dp));
    assert!(
        matches!(&evs[0], VideoEvent::Frame(fr) if fr.frame_index == 1 && fr.access_unit == au)
    );
    assert_eq!(
        evs[1],
        VideoEvent::Lost {
            first_frame: 2,
            count: 1,
            reason: LossReason::Incomplete
        }
    );
    assert_eq!(
        evs[2],
        VideoEvent::Lost {
            first_frame: 3,
            count: 1,
            reason: LossReason::NoData
        }
    );
    assert!(
        matches!(&evs[3], VideoEvent::Frame(fr) if fr.frame_index == 4 && fr.recovered_shards == 0)
    );
    assert_eq!(evs.len(), 4);
    let st = dp.stats();
    assert_eq!((st.frames_complete, st.frames_lost), (2, 2));
}

#[test]
fn duplicates_late_and_wrong_key() {
    let mut cfg = PacketizerConfig::new(256);
    cfg.encryption_key = Some(KEY);
    let mut pz = VideoPacketizer::new(&cfg).unwrap();
    let au = access_unit(1000, 3);
    let frame = VideoFrame {
        frame_index: 1,
        rtp_timestamp: 0,
        frame_type: FrameType::Idr,
        host_processing_latency: 0,
        ltr: false,
        access_unit: &au,
    };
    let dgs: Vec<Vec<u8>> = pz
        .packetize(&frame)
        .unwrap()
        .iter()
        .map(<[u8]>::to_vec)
        .collect();

    let mut wrong = DepacketizerConfig::new(256);
    wrong.encryption_key = Some([7; 16]);
    let mut dp = VideoDepacketizer::new(&wrong).unwrap();
    assert!(dp.handle_datagram(&dgs[0]).is_err());

    let mut dcfg = DepacketizerConfig::new(256);
    dcfg.encryption_key = Some(KEY);
    let mut dp = VideoDepacketizer::new(&dcfg).unwrap();
    dp.handle_datagram(&dgs[0]).unwrap();
    dp.handle_datagram(&dgs[0]).unwrap();
    assert_eq!(dp.stats().duplicates, 1);
    for dg in &dgs[1..] {
        dp.handle_datagram(dg).unwrap();
    }
    let evs = events(&mut dp);
    assert!(matches!(&evs[..], [VideoEvent::Frame(fr)] if fr.access_unit == au));
    assert!(
        dp.stats().late >= 1,
        "parity after completion counts as late"
    );
    let mut tampered = dgs[1].clone();
    tampered[40] ^= 1;
    assert!(dp.handle_datagram(&tampered).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn prop_roundtrip(sizes in proptest::collection::vec(0usize..20_000, 1..6), packet in 2usize..40, fec in 1u8..=255, encrypt in any::<bool>(), seed in any::<u64>()) {
        let (evs, aus) = run(&sizes, packet * 16, fec, encrypt, true, seed);
        check_all_delivered(&evs, &aus);
    }
}
