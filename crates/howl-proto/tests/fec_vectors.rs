//! nanors byte-compatibility: the RS pattern vectors of reference part 2 §4.12, checked on every
//! backend, plus scalar-vs-SIMD equality and erasure recovery.

// Test helpers may unwrap: a panic here is a failed test (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::needless_range_loop)]

use howl_proto::fec::{Backend, FecError, ReedSolomon};
use proptest::prelude::*;

const BACKENDS: [Backend; 3] = [Backend::Scalar, Backend::Ssse3, Backend::Avx2];

/// Data shard `i` byte `k` = `(i·B + k) mod 256`.
fn pattern(d: usize, b: usize) -> Vec<Vec<u8>> {
    (0..d)
        .map(|i| (0..b).map(|k| ((i * b + k) % 256) as u8).collect())
        .collect()
}

fn parity_of(d: usize, p: usize, b: usize, backend: Backend) -> Vec<Vec<u8>> {
    let rs = ReedSolomon::new(d, p).unwrap();
    let data = pattern(d, b);
    let mut parity = vec![vec![0xAAu8; b]; p];
    rs.encode_with(backend, &data, &mut parity).unwrap();
    parity
}

#[test]
fn golden_pattern_vectors() {
    let cases: [(usize, usize, usize, &str, &str); 3] = [
        (4, 2, 8, "049e2db756cc7fe5", "a03a8913f268db41"),
        (3, 2, 4, "f5c88fb2", "538ef429"),
        (10, 2, 4, "aa85f4db", "16394867"),
    ];
    for backend in BACKENDS {
        for (d, p, b, p0, p1) in cases {
            let parity = parity_of(d, p, b, backend);
            assert_eq!(hex::encode(&parity[0]), p0, "{backend:?} D={d} P={p} B={b}");
            assert_eq!(hex::encode(&parity[1]), p1, "{backend:?} D={d} P={p} B={b}");
        }
    }
}

#[test]
fn golden_frame_parity() {
    // The two parity payloads of the complete-frame vector (§4.12, packetSize 64): RS over the
    // three 80-byte data datagrams. Only bytes that the packetizer does not overwrite are
    // compared (16..20, 24..26, 32..80).
    let hdr = |seq: u8, spi: u8, flags: u8| {
        let mut h = vec![0u8; 32];
        h[16] = 0;
        h[17] = spi;
        h[24] = flags;
        h[26] = 0x10;
        let _ = seq;
        h
    };
    let mut e = hex::decode("0000000167640028acd20000000168ee3c800000000165").unwrap();
    e.extend((0..100u8).map(|n| 0x11 + n));
    let mut x = vec![0x01, 0, 0, 2, 0x23, 0, 0, 0];
    x.extend_from_slice(&e);
    x.resize(144, 0);
    let data: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let flags = 1 | if i == 0 { 4 } else { 0 } | if i == 2 { 2 } else { 0 };
            let mut s = hdr(i as u8, i as u8, flags);
            s.extend_from_slice(&x[i * 48..(i + 1) * 48]);
            s
        })
        .collect();
    let rs = ReedSolomon::new(3, 2).unwrap();
    let want = [
        "0a3709bbedc10ebd75c6f8c53e0208af25a9fe4d85b8cd3d9c710fbc74496be2a5982b4cc2b8344ec0bac1bb354f205a",
        "a67ba4781cdf557c072ef12c755df3c2c5c6577e05d875d5e056022b508d4a4f35e8c154daa02c56d8a2d9a32d57c3b9",
    ];
    let want_hdr = [("007a0000", "b100"), ("00dd0000", "7900")];
    for backend in BACKENDS {
        let mut parity = vec![vec![0u8; 80]; 2];
        rs.encode_with(backend, &data, &mut parity).unwrap();
        for j in 0..2 {
            assert_eq!(
                hex::encode(&parity[j][32..]),
                want[j],
                "{backend:?} parity {j}"
            );
            assert_eq!(hex::encode(&parity[j][16..20]), want_hdr[j].0);
            assert_eq!(hex::encode(&parity[j][24..26]), want_hdr[j].1);
        }
    }
}

#[test]
fn coder_limits() {
    assert!(matches!(
        ReedSolomon::new(0, 2),
        Err(FecError::InvalidShardCounts { .. })
    ));
    assert!(matches!(
        ReedSolomon::new(2, 0),
        Err(FecError::InvalidShardCounts { .. })
    ));
    assert!(matches!(
        ReedSolomon::new(200, 56),
        Err(FecError::InvalidShardCounts { .. })
    ));
    assert!(ReedSolomon::new(200, 55).is_ok());
    assert!(ReedSolomon::new(1, 254).is_ok());
}

#[test]
fn encode_rejects_bad_shapes() {
    let rs = ReedSolomon::new(3, 2).unwrap();
    let data = vec![vec![0u8; 8]; 3];
    let mut parity = vec![vec![0u8; 8]; 1];
    assert!(matches!(
        rs.encode(&data, &mut parity),
        Err(FecError::WrongShardCount { .. })
    ));
    let mut parity = vec![vec![0u8; 7], vec![0u8; 8]];
    assert_eq!(rs.encode(&data, &mut parity), Err(FecError::ShardLength));
    let mut buf = vec![0u8; 5 * 10 - 1];
    assert_eq!(
        rs.encode_strided(&mut buf, 10, 2, 8),
        Err(FecError::ShardLength)
    );
    let mut buf = vec![0u8; 50];
    assert_eq!(
        rs.encode_strided(&mut buf, 10, 3, 8),
        Err(FecError::ShardLength)
    );
}

/// Largest shape the video path uses, with odd lengths that exercise every SIMD tail.
#[test]
fn backends_agree_on_all_shapes() {
    let mut seed = 0x1234_5678_u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed as u8
    };
    for &(d, p) in &[
        (1, 1),
        (1, 2),
        (2, 1),
        (5, 3),
        (10, 2),
        (17, 7),
        (50, 10),
        (200, 40),
        (128, 127),
        (1, 254),
    ] {
        for &len in &[1usize, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1408, 1409] {
            let data: Vec<Vec<u8>> = (0..d).map(|_| (0..len).map(|_| next()).collect()).collect();
            let rs = ReedSolomon::new(d, p).unwrap();
            let mut want = vec![vec![0u8; len]; p];
            rs.encode_with(Backend::Scalar, &data, &mut want).unwrap();
            // Reference: straight from the definition.
            for j in 0..p {
                for k in 0..len {
                    let mut acc = 0u8;
                    for i in 0..d {
                        acc ^= howl_proto::fec::gf_mul(rs.coefficient(j, i), data[i][k]);
                    }
                    assert_eq!(want[j][k], acc);
                }
            }
            for backend in [Backend::Ssse3, Backend::Avx2] {
                let mut got = vec![vec![0x55u8; len]; p];
                rs.encode_with(backend, &data, &mut got).unwrap();
                assert_eq!(got, want, "{backend:?} d={d} p={p} len={len}");
                // Strided layout with a prefix, as the encrypted packetizer uses it.
                let stride = len + 40;
                let mut buf = vec![0x77u8; stride * (d + p)];
                for (i, s) in data.iter().enumerate() {
                    buf[i * stride + 32..i * stride + 32 + len].copy_from_slice(s);
                }
                rs.encode_strided_with(backend, &mut buf, stride, 32, len)
                    .unwrap();
                for j in 0..p {
                    let at = (d + j) * stride;
                    assert_eq!(&buf[at + 32..at + 32 + len], &want[j][..]);
                    assert!(buf[at..at + 32].iter().all(|&b| b == 0x77));
                    assert!(buf[at + 32 + len..at + stride].iter().all(|&b| b == 0x77));
                }
            }
        }
    }
}

fn check_recovery(d: usize, p: usize, len: usize, lost: &[usize], backend: Backend) {
    let rs = ReedSolomon::new(d, p).unwrap();
    let data: Vec<Vec<u8>> = (0..d)
        .map(|i| (0..len).map(|k| (i * 31 + k * 7 + 3) as u8).collect())
        .collect();
    let mut shards = data.clone();
    shards.extend(std::iter::repeat_n(vec![0u8; len], p));
    {
        let (dd, pp) = shards.split_at_mut(d);
        rs.encode(dd, pp).unwrap();
    }
    let original = shards.clone();
    let mut present = vec![true; d + p];
    for &x in lost {
        present[x] = false;
        shards[x].fill(0xEE);
    }
    rs.reconstruct_with(backend, &mut shards, &present, true)
        .unwrap();
    assert_eq!(shards, original, "d={d} p={p} lost={lost:?}");
}

#[test]
fn recovers_any_erasures_up_to_parity() {
    for backend in BACKENDS {
        check_recovery(3, 2, 80, &[0, 1], backend);
        check_recovery(3, 2, 80, &[1, 4], backend);
        check_recovery(10, 2, 100, &[9, 10], backend);
        check_recovery(
            200,
            40,
            1408,
            &(0..40).map(|x| x * 5).collect::<Vec<_>>(),
            backend,
        );
        check_recovery(1, 254, 33, &(0..254).collect::<Vec<_>>(), backend);
    }
}

#[test]
fn too_many_missing_is_an_error() {
    let rs = ReedSolomon::new(4, 2).unwrap();
    let mut shards = vec![vec![0u8; 8]; 6];
    let present = [false, false, true, true, false, true];
    assert_eq!(
        rs.reconstruct_data(&mut shards, &present),
        Err(FecError::TooManyMissing {
            missing: 2,
            available: 1
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn prop_recovery(d in 1usize..60, p in 1usize..20, len in 1usize..200, seed in any::<u64>()) {
        let mut s = seed | 1;
        let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s };
        let n_lost = (next() as usize) % (p + 1);
        let mut lost: Vec<usize> = Vec::new();
        while lost.len() < n_lost {
            let x = (next() as usize) % (d + p);
            if !lost.contains(&x) { lost.push(x); }
        }
        for backend in BACKENDS {
            check_recovery(d, p, len, &lost, backend);
        }
    }
}
