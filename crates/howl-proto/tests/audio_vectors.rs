//! Byte-exact audio vectors from the reference (part 2 §5.3 crypto table, §5.4 FEC vector), each
//! checked against the packetizer, the stand-alone helpers and the depacketizer.

// Test helpers may unwrap: a panic here is a failed test (see clippy.toml).
#![allow(clippy::unwrap_used)]

use howl_proto::audio::{
    AudioDepacketizer, AudioEncryption, AudioEvent, AudioPacketizer, AudioReceiverConfig,
    AudioStreamConfig, FEC_MATRIX, ReceivedPacket, audio_iv, decrypt_payload, encrypt_payload,
    fec_parity,
};

const KEY: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn enc(rikeyid: u32) -> AudioEncryption {
    AudioEncryption {
        key: KEY,
        rikeyid: rikeyid as i32,
    }
}

fn drain(dp: &mut AudioDepacketizer) -> Vec<AudioEvent> {
    std::iter::from_fn(|| dp.poll_event()).collect()
}

// ---------------------------------------------------------------------------------------------
// §5.4 FEC vector
// ---------------------------------------------------------------------------------------------

const FEC_DATA: [&str; 4] = [
    "806100080000002800000000 000102030405060708090a0b0c0d0e0f",
    "806100090000002d00000000 101112131415161718191a1b1c1d1e1f",
    "8061000a0000003200000000 202122232425262728292a2b2c2d2e2f",
    "8061000b0000003700000000 303132333435363738393a3b3c3d3e3f",
];
const FEC_PARITY: [&str; 2] = [
    "807f000c0000000000000000 00610008 00000028 00000000 1a1b18191e1f1c1d1213101116171415",
    "807f000d0000000000000000 01610008 00000028 00000000 909192939495969798999a9b9c9d9e9f",
];

fn fec_payload(i: u8) -> Vec<u8> {
    (0..16).map(|k| 16 * i + k).collect()
}

#[test]
fn fec_vector_from_the_packetizer() {
    let mut cfg = AudioStreamConfig::new(5);
    cfg.first_sequence = 8;
    cfg.first_timestamp = 40;
    let mut pz = AudioPacketizer::new(&cfg).unwrap();
    for i in 0..4u8 {
        let out = pz.push(&fec_payload(i)).unwrap();
        assert_eq!(
            out.data(),
            hex(FEC_DATA[usize::from(i)]),
            "data seq {}",
            8 + i
        );
        let fec: Vec<Vec<u8>> = out.fec().map(<[u8]>::to_vec).collect();
        if i < 3 {
            assert!(fec.is_empty());
            assert_eq!(out.len(), 1);
        } else {
            assert_eq!(fec, vec![hex(FEC_PARITY[0]), hex(FEC_PARITY[1])]);
            assert_eq!(out.iter().count(), 3);
        }
    }
    let stats = pz.stats();
    assert_eq!((stats.data_packets, stats.fec_packets), (4, 2));
    assert_eq!((stats.padded_packets, stats.uneven_blocks), (0, 0));
}

#[test]
fn fec_vector_from_the_helper_and_the_matrix() {
    assert_eq!(
        FEC_MATRIX,
        [[0x77, 0x40, 0x38, 0x0e], [0xc7, 0xa7, 0x0d, 0x6c]]
    );
    let d: Vec<Vec<u8>> = (0..4).map(fec_payload).collect();
    for (j, want) in FEC_PARITY.iter().enumerate() {
        let mut p = [0u8; 16];
        fec_parity(j, [&d[0], &d[1], &d[2], &d[3]], &mut p);
        assert_eq!(p[..], hex(want)[24..]);
    }
}

/// The reference's client check: a preceding block for synchronisation, then seq 8, seq 11 and
/// both FEC packets give seq 8–11 with 9 and 10 recovered byte-exactly.
#[test]
fn fec_vector_recovers_nine_and_ten() {
    let mut dp = AudioDepacketizer::new(&AudioReceiverConfig::new(5)).unwrap();
    let mut cfg = AudioStreamConfig::new(5);
    cfg.first_sequence = 4;
    cfg.first_timestamp = 20;
    let mut pz = AudioPacketizer::new(&cfg).unwrap();
    for i in 0..4u8 {
        for d in pz.push(&[0xf8, i, i, i]).unwrap().iter() {
            dp.handle_datagram(d).unwrap();
        }
    }
    let sync = drain(&mut dp);
    assert_eq!(sync.len(), 4);
    for d in [FEC_DATA[0], FEC_DATA[3], FEC_PARITY[0], FEC_PARITY[1]] {
        dp.handle_datagram(&hex(d)).unwrap();
    }
    let got = drain(&mut dp);
    let want: Vec<AudioEvent> = (0..4u8)
        .map(|i| {
            AudioEvent::Packet(ReceivedPacket {
                sequence: 8 + u16::from(i),
                timestamp: 40 + 5 * u32::from(i),
                opus: fec_payload(i),
                recovered: i == 1 || i == 2,
            })
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(dp.stats().recovered, 2);
    assert_eq!(dp.stats().lost, 0);
}

// ---------------------------------------------------------------------------------------------
// §5.3 crypto vectors
// ---------------------------------------------------------------------------------------------

struct CryptoVector {
    rikeyid: u32,
    seq: u16,
    iv_prefix: [u8; 4],
    plain: Vec<u8>,
    packet: &'static str,
}

fn crypto_vectors() -> Vec<CryptoVector> {
    let p20 = hex("101112131415161718191a1b1c1d1e1f20212223");
    vec![
        CryptoVector {
            rikeyid: 0x1234_5678,
            seq: 0,
            iv_prefix: [0x12, 0x34, 0x56, 0x78],
            plain: p20.clone(),
            packet: "806100000000000000000000614e9c64f50c6e2c4f989ab37f1440ab2cbd35dae32e10fcd9ab2d6f8d20bf6f",
        },
        CryptoVector {
            rikeyid: 0xDEAD_BEEF,
            seq: 17,
            iv_prefix: [0xde, 0xad, 0xbf, 0x00],
            plain: p20,
            packet: "806100110000005500000000f5fb36067889676cd0d64bf9cc17615ad64b0080059b85e3dab990a46ac17bc9",
        },
        CryptoVector {
            rikeyid: 0x1234_5678,
            seq: 1,
            iv_prefix: [0x12, 0x34, 0x56, 0x79],
            plain: (0..32).collect(),
            packet: "8061000100000005000000001f2c184aa79d0ec3fb281ab97cdd93e7b740c779de84ba461a0ae69d18c2bd62289c3ab86e65686dd94c7458568a3a9f",
        },
    ]
}

#[test]
fn crypto_vectors_iv_and_helpers() {
    assert_eq!(0xDEAD_BEEFu32 as i32, -559_038_737);
    for v in crypto_vectors() {
        let iv = audio_iv(v.rikeyid as i32, v.seq);
        assert_eq!(iv[..4], v.iv_prefix);
        assert_eq!(iv[4..], [0u8; 12]);
        let packet = hex(v.packet);
        let ct = encrypt_payload(&enc(v.rikeyid), v.seq, &v.plain).unwrap();
        assert_eq!(ct, packet[12..], "rikeyid {:#x} seq {}", v.rikeyid, v.seq);
        assert_eq!(
            decrypt_payload(&enc(v.rikeyid), v.seq, &ct).unwrap(),
            v.plain
        );
    }
}

#[test]
fn crypto_vectors_from_the_packetizer() {
    for v in crypto_vectors() {
        // Start at the vector's block, and push same-length filler up to its sequence number.
        let mut cfg = AudioStreamConfig::new(5);
        cfg.encryption = Some(enc(v.rikeyid));
        cfg.first_sequence = v.seq & !3;
        cfg.first_timestamp = u32::from(v.seq & !3) * 5;
        let mut pz = AudioPacketizer::new(&cfg).unwrap();
        for _ in 0..v.seq % 4 {
            pz.push(&v.plain).unwrap();
        }
        let out = pz.push(&v.plain).unwrap();
        assert_eq!(
            out.data(),
            hex(v.packet),
            "rikeyid {:#x} seq {}",
            v.rikeyid,
            v.seq
        );
    }
}

#[test]
fn crypto_vectors_through_the_depacketizer() {
    for v in crypto_vectors() {
        let mut cfg = AudioReceiverConfig::new(5);
        cfg.encryption = Some(enc(v.rikeyid));
        cfg.first_sequence = Some(v.seq);
        cfg.reorder_window_blocks = 1;
        let mut dp = AudioDepacketizer::new(&cfg).unwrap();
        dp.handle_datagram(&hex(v.packet)).unwrap();
        let got = drain(&mut dp);
        assert_eq!(
            got,
            vec![AudioEvent::Packet(ReceivedPacket {
                sequence: v.seq,
                timestamp: u32::from(v.seq) * 5,
                opus: v.plain.clone(),
                recovered: false,
            })]
        );
        // The wrong rikeyid garbles the first block, which PKCS#7 (almost surely) rejects, or
        // yields other bytes; it never yields the plaintext.
        let mut wrong = cfg.clone();
        wrong.encryption = Some(enc(v.rikeyid ^ 1));
        let mut dp = AudioDepacketizer::new(&wrong).unwrap();
        if dp.handle_datagram(&hex(v.packet)).is_ok()
            && let Some(AudioEvent::Packet(p)) = dp.poll_event()
        {
            assert_ne!(p.opus, v.plain);
        }
    }
}

/// FEC is computed over the ciphertext payloads as sent.
#[test]
fn encrypted_fec_is_over_ciphertext() {
    let mut cfg = AudioStreamConfig::new(10);
    cfg.encryption = Some(enc(0x1234_5678));
    let mut pz = AudioPacketizer::new(&cfg).unwrap();
    let mut data = Vec::new();
    let mut fec = Vec::new();
    for i in 0..4u8 {
        let out = pz.push(&[0xf8, i, 2 * i, 3 * i, 4]).unwrap();
        data.push(out.data().to_vec());
        fec.extend(out.fec().map(<[u8]>::to_vec));
    }
    assert_eq!(fec.len(), 2);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d.len(), 12 + 16);
        assert_eq!(d[4..8], (i as u32 * 10).to_be_bytes());
        assert_eq!(
            d[12..],
            encrypt_payload(
                &enc(0x1234_5678),
                i as u16,
                &[0xf8, i as u8, 2 * i as u8, 3 * i as u8, 4]
            )
            .unwrap()[..]
        );
    }
    let shards = [
        &data[0][12..],
        &data[1][12..],
        &data[2][12..],
        &data[3][12..],
    ];
    for (j, f) in fec.iter().enumerate() {
        let mut p = [0u8; 16];
        fec_parity(j, shards, &mut p);
        assert_eq!(f[24..], p);
        // RTP: seq = last data seq + 1 + j, ts 0, SSRC 0; FEC header: j, PT 97, base 0, ts 0, SSRC 0.
        let header = format!(
            "807f{:04x} 00000000 00000000 {j:02x}61 0000 00000000 00000000",
            4 + j
        );
        assert_eq!(f[..24], hex(&header)[..]);
    }
}
