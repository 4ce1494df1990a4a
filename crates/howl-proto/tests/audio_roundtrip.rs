//! Packetizer → lossy/reordering network → depacketizer round trips (reference part 2 §5):
//! every block survives any two lost datagrams, with and without encryption, across sequence
//! wrap-around; uneven Opus packets are padded so blocks stay even.

// Test helpers may unwrap: a panic here is a failed test (see clippy.toml).
#![allow(clippy::unwrap_used)]

use howl_proto::audio::opus;
use howl_proto::audio::{
    AudioDepacketizer, AudioEncryption, AudioError, AudioEvent, AudioPacketizer,
    AudioReceiverConfig, AudioStreamConfig, MAX_DATAGRAM_LEN, ReceivedPacket,
};
use howl_proto::nvhttp::Fault;

/// SplitMix64: a seeded generator, so every failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn encryption() -> AudioEncryption {
    AudioEncryption {
        key: *b"howl audio key!!",
        rikeyid: -559_038_737,
    }
}

/// A code-0 Opus packet (CELT FB 20 ms TOC) of `len` bytes with random content.
fn opus_packet(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut p = vec![0xfc];
    p.extend((1..len).map(|_| rng.next() as u8));
    p
}

struct Sent {
    /// Per block: its data datagrams then its FEC datagrams.
    blocks: Vec<Vec<Vec<u8>>>,
    packets: Vec<Vec<u8>>,
}

fn send(cfg: &AudioStreamConfig, packets: Vec<Vec<u8>>) -> (Sent, AudioPacketizer) {
    let mut pz = AudioPacketizer::new(cfg).unwrap();
    let mut blocks: Vec<Vec<Vec<u8>>> = Vec::new();
    for (n, p) in packets.iter().enumerate() {
        // First sequence is block-aligned, so every fourth packet opens a block.
        if n % 4 == 0 {
            blocks.push(Vec::new());
        }
        let block = blocks.last_mut().unwrap();
        for d in pz.push(p).unwrap().iter() {
            assert!(d.len() <= MAX_DATAGRAM_LEN);
            block.push(d.to_vec());
        }
    }
    (Sent { blocks, packets }, pz)
}

fn receiver(dur: u32, encrypted: bool, first: u16, window: u16) -> AudioDepacketizer {
    let mut cfg = AudioReceiverConfig::new(dur);
    cfg.first_sequence = Some(first);
    cfg.reorder_window_blocks = window;
    if encrypted {
        cfg.encryption = Some(encryption());
    }
    AudioDepacketizer::new(&cfg).unwrap()
}

fn drain(dp: &mut AudioDepacketizer) -> Vec<AudioEvent> {
    std::iter::from_fn(|| dp.poll_event()).collect()
}

fn expected(
    first_seq: u16,
    first_ts: u32,
    dur: u32,
    packets: &[Vec<u8>],
) -> Vec<(u16, u32, Vec<u8>)> {
    packets
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                first_seq.wrapping_add(i as u16),
                first_ts.wrapping_add(i as u32 * dur),
                p.clone(),
            )
        })
        .collect()
}

fn packets_of(events: &[AudioEvent]) -> Vec<(u16, u32, Vec<u8>)> {
    events
        .iter()
        .map(|e| match e {
            AudioEvent::Packet(ReceivedPacket {
                sequence,
                timestamp,
                opus,
                ..
            }) => (*sequence, *timestamp, opus.clone()),
            AudioEvent::Lost { .. } => panic!("unexpected loss: {e:?}"),
        })
        .collect()
}

#[test]
fn any_two_losses_per_block_are_recovered() {
    for encrypted in [false, true] {
        for dur in [5, 10] {
            for seed in 0..4u64 {
                let mut rng = Rng(seed * 1000 + u64::from(dur) + u64::from(encrypted));
                let len = 20 + rng.below(300);
                let packets: Vec<Vec<u8>> = (0..400).map(|_| opus_packet(&mut rng, len)).collect();
                let mut cfg = AudioStreamConfig::new(dur);
                cfg.first_timestamp = 1234;
                if encrypted {
                    cfg.encryption = Some(encryption());
                }
                let (sent, pz) = send(&cfg, packets);
                assert_eq!(pz.stats().uneven_blocks, 0);
                assert_eq!(pz.stats().fec_packets, 200);
                let mut dp = receiver(dur, encrypted, 0, 1);
                let mut dropped_data = 0;
                for block in &sent.blocks {
                    assert_eq!(block.len(), 6);
                    // Drop 0, 1 or 2 of the six datagrams.
                    let mut drop = [false; 6];
                    for _ in 0..rng.below(3) {
                        drop[rng.below(6)] = true;
                    }
                    for (i, d) in block.iter().enumerate() {
                        if drop[i] {
                            dropped_data += usize::from(i < 4);
                        } else {
                            dp.handle_datagram(d).unwrap();
                        }
                    }
                }
                dp.flush();
                let events = drain(&mut dp);
                assert_eq!(packets_of(&events), expected(0, 1234, dur, &sent.packets));
                let st = dp.stats();
                assert_eq!(
                    st.recovered as usize, dropped_data,
                    "enc {encrypted} dur {dur} seed {seed}"
                );
                assert_eq!((st.lost, st.uneven_blocks, st.bad_recoveries), (0, 0, 0));
                let recovered = events
                    .iter()
                    .filter(|e| matches!(e, AudioEvent::Packet(p) if p.recovered))
                    .count();
                assert_eq!(recovered, dropped_data);
            }
        }
    }
}

#[test]
fn reordering_and_duplicates_within_the_window() {
    for encrypted in [false, true] {
        let mut rng = Rng(77 + u64::from(encrypted));
        let packets: Vec<Vec<u8>> = (0..300).map(|_| opus_packet(&mut rng, 160)).collect();
        let mut cfg = AudioStreamConfig::new(5);
        cfg.first_sequence = 65_520; // wraps after four blocks
        cfg.first_timestamp = u32::MAX - 20;
        if encrypted {
            cfg.encryption = Some(encryption());
        }
        let (sent, _) = send(&cfg, packets);
        // Drop up to two per block, duplicate some, then displace each by at most 5 positions.
        let mut wire: Vec<(usize, Vec<u8>)> = Vec::new();
        for block in &sent.blocks {
            let a = rng.below(8);
            let b = rng.below(8);
            for (i, d) in block.iter().enumerate() {
                if i == a || i == b {
                    continue;
                }
                let key = wire.len() + rng.below(6);
                wire.push((key, d.clone()));
                if rng.below(10) == 0 {
                    let key = wire.len() + rng.below(6);
                    wire.push((key, d.clone()));
                }
            }
        }
        wire.sort_by_key(|(k, _)| *k);
        let mut dp = receiver(5, encrypted, 65_520, 3);
        for (_, d) in &wire {
            dp.handle_datagram(d).unwrap();
        }
        dp.flush();
        let events = drain(&mut dp);
        assert_eq!(
            packets_of(&events),
            expected(65_520, u32::MAX - 20, 5, &sent.packets)
        );
        assert!(dp.stats().duplicates > 0);
    }
}

#[test]
fn three_losses_are_reported_and_the_stream_continues() {
    let mut rng = Rng(5);
    let packets: Vec<Vec<u8>> = (0..16).map(|_| opus_packet(&mut rng, 50)).collect();
    let (sent, _) = send(&AudioStreamConfig::new(5), packets);
    let mut dp = receiver(5, false, 0, 1);
    for (b, block) in sent.blocks.iter().enumerate() {
        for (i, d) in block.iter().enumerate() {
            // Block 1: lose data 1, 2, 3 (FEC can rebuild only two).
            if b == 1 && (1..4).contains(&i) {
                continue;
            }
            dp.handle_datagram(d).unwrap();
        }
    }
    let events = drain(&mut dp);
    assert_eq!(events.len(), 4 + 1 + 1 + 8);
    assert_eq!(
        events[5],
        AudioEvent::Lost {
            first_sequence: 5,
            count: 3
        }
    );
    assert!(matches!(&events[4], AudioEvent::Packet(p) if p.sequence == 4 && !p.recovered));
    assert!(matches!(&events[6], AudioEvent::Packet(p) if p.sequence == 8));
    assert_eq!(dp.stats().lost, 3);
}

#[test]
fn a_whole_missing_block_is_one_lost_range() {
    let mut rng = Rng(6);
    let packets: Vec<Vec<u8>> = (0..12).map(|_| opus_packet(&mut rng, 50)).collect();
    let (sent, _) = send(&AudioStreamConfig::new(10), packets);
    let mut dp = receiver(10, false, 0, 1);
    for d in sent.blocks[0].iter().chain(&sent.blocks[2]) {
        dp.handle_datagram(d).unwrap();
    }
    let events = drain(&mut dp);
    assert_eq!(
        events[4],
        AudioEvent::Lost {
            first_sequence: 4,
            count: 4
        }
    );
    assert_eq!(events.len(), 9);
}

/// Variable-length Opus packets are padded (Opus in-band padding) to the session's longest, so
/// blocks stay even and the client keeps FEC; the padded packets decode to the same frames.
#[test]
fn variable_length_packets_are_padded_not_uneven() {
    for (streams, encrypted) in [(1u8, false), (1, true), (3, false)] {
        let mut rng = Rng(9 + u64::from(streams));
        let mut packets = Vec::new();
        for i in 0..200 {
            // The first packet is the longest; the rest vary below it.
            let len = if i == 0 { 300 } else { 40 + rng.below(250) };
            let mut p = Vec::new();
            // Streams 0..n-1 self-delimited code 0 packets of 10 bytes, the last one plain.
            for _ in 1..streams {
                p.extend([0x7c, 9]);
                p.extend((0..9).map(|_| rng.next() as u8));
            }
            p.extend(opus_packet(&mut rng, len - p.len()));
            packets.push(p);
        }
        let mut cfg = AudioStreamConfig::new(5);
        cfg.opus_streams = streams;
        if encrypted {
            cfg.encryption = Some(encryption());
        }
        let (sent, pz) = send(&cfg, packets.clone());
        let st = pz.stats();
        assert_eq!(st.uneven_blocks, 0);
        assert_eq!(st.padded_packets, 199);
        assert_eq!(st.fec_packets, 100);
        let mut dp = receiver(5, encrypted, 0, 1);
        for block in &sent.blocks {
            // Lose two data packets of every block: recovery needs the even lengths.
            for d in &block[2..] {
                dp.handle_datagram(d).unwrap();
            }
        }
        dp.flush();
        let got = packets_of(&drain(&mut dp));
        assert_eq!(got.len(), 200);
        assert_eq!(dp.stats().uneven_blocks, 0);
        for ((_, _, padded), orig) in got.iter().zip(&packets) {
            assert_eq!(padded.len(), 300);
            let a = opus::parse_multistream(padded, streams).unwrap();
            let b = opus::parse_multistream(orig, streams).unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert_eq!((x.toc & !3, &x.frames), (y.toc & !3, &y.frames));
            }
        }
    }
}

/// A packet longer than the ones its block already sent cannot be fixed: that block goes out
/// without FEC and is counted; later blocks are even again. With encryption, lengths that
/// round to the same ciphertext size are not uneven at all.
#[test]
fn longer_packet_mid_block_makes_one_uneven_block() {
    for (encrypted, uneven) in [(false, 1), (true, 0)] {
        let mut rng = Rng(3);
        let lens = [50, 60, 60, 60, 60, 50, 55, 60];
        let packets: Vec<Vec<u8>> = lens.iter().map(|&l| opus_packet(&mut rng, l)).collect();
        let mut cfg = AudioStreamConfig::new(5);
        if encrypted {
            cfg.encryption = Some(encryption());
        }
        let (sent, pz) = send(&cfg, packets.clone());
        assert_eq!(pz.stats().uneven_blocks, uneven);
        assert_eq!(sent.blocks[0].len(), if uneven == 1 { 4 } else { 6 });
        assert_eq!(sent.blocks[1].len(), 6);
        let mut dp = receiver(5, encrypted, 0, 1);
        for d in sent.blocks.iter().flatten() {
            dp.handle_datagram(d).unwrap();
        }
        assert_eq!(dp.stats().uneven_blocks, uneven);
        let got = packets_of(&drain(&mut dp));
        assert_eq!(got[0].2, packets[0]);
        assert_eq!(got[1].2, packets[1]);
    }
}

#[test]
fn configuration_and_input_errors_are_local_misuse() {
    for (cfg, err) in [
        (
            AudioStreamConfig::new(7),
            AudioError::InvalidPacketDuration(7),
        ),
        (
            AudioStreamConfig {
                first_sequence: 6,
                ..AudioStreamConfig::new(5)
            },
            AudioError::MisalignedFirstSequence(6),
        ),
        (
            AudioStreamConfig {
                opus_streams: 0,
                ..AudioStreamConfig::new(5)
            },
            AudioError::InvalidStreamCount,
        ),
    ] {
        let e = AudioPacketizer::new(&cfg).unwrap_err();
        assert_eq!(e, err);
        assert_eq!(e.fault(), Fault::LocalMisuse);
    }
    assert_eq!(
        AudioDepacketizer::new(&AudioReceiverConfig::new(20)).unwrap_err(),
        AudioError::InvalidPacketDuration(20)
    );

    for encrypted in [false, true] {
        let mut cfg = AudioStreamConfig::new(5);
        if encrypted {
            cfg.encryption = Some(encryption());
        }
        let mut pz = AudioPacketizer::new(&cfg).unwrap();
        let max = pz.max_opus_len();
        assert_eq!(max, if encrypted { 1375 } else { 1376 });
        assert_eq!(pz.push(&[]).unwrap_err(), AudioError::EmptyOpusPacket);
        let e = pz.push(&vec![0xfc; max + 1]).unwrap_err();
        assert_eq!(e.fault(), Fault::LocalMisuse);
        assert_eq!(pz.next_sequence(), 0, "errors do not advance the counters");
        for _ in 0..4 {
            let out = pz.push(&vec![0xfc; max]).unwrap();
            assert!(out.iter().all(|d| d.len() <= MAX_DATAGRAM_LEN));
            if out.len() == 3 {
                assert_eq!(out.iter().last().unwrap().len(), MAX_DATAGRAM_LEN);
            }
        }
    }
}

/// Not a benchmark: prints a rough per-packet cost (debug builds are slow), asserts nothing
/// about time.
#[test]
#[allow(clippy::disallowed_methods)] // reason: timing print only; the library never reads a clock
fn quick_timing_print() {
    let mut rng = Rng(1);
    let packets: Vec<Vec<u8>> = (0..4000).map(|_| opus_packet(&mut rng, 1280)).collect();
    let mut cfg = AudioStreamConfig::new(5);
    cfg.encryption = Some(encryption());
    let mut pz = AudioPacketizer::new(&cfg).unwrap();
    let t = std::time::Instant::now();
    let mut bytes = 0;
    for p in &packets {
        bytes += pz.push(p).unwrap().iter().map(<[u8]>::len).sum::<usize>();
    }
    let el = t.elapsed();
    println!(
        "audio packetize (1280 B, AES-CBC, FEC): {:.1} µs/packet, {bytes} bytes",
        el.as_secs_f64() * 1e6 / packets.len() as f64
    );
}
