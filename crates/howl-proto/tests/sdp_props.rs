//! Property tests: the ANNOUNCE parser and the DESCRIBE reader never panic on arbitrary or
//! mutated bodies, and the generators round-trip through them (STYLE practice 11).

// Test helpers outside #[test] fns unwrap too: a panic here is a failed test, not a crash.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use howl_proto::sdp::{
    ANNOUNCE_ATTRIBUTES, AudioConfig, Bitrate, ChromaSampling, CodecSupport, CscMode, DescribeInfo,
    DynamicRange, EncryptionFlags, HostOffer, MlFeatureFlags, OpusMultistream, StreamConfig,
    SurroundOffer, VideoCodec,
};
use proptest::prelude::*;

const PARSER_CASES: u32 = 100_000;
const ROUND_TRIP_CASES: u32 = 20_000;
const EXAMPLE: &[u8] = include_bytes!("sdp_example_announce.sdp");

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Applies byte-level edits (flip, overwrite, insert, delete, truncate).
fn mutate(mut data: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(pos, op, value) in edits {
        if data.is_empty() {
            data.push(value);
            continue;
        }
        let i = pos % data.len();
        match op % 5 {
            0 => data[i] ^= 1 << (value % 8),
            1 => data[i] = value,
            2 => data.insert(i, value),
            3 => {
                data.remove(i);
            }
            _ => data.truncate(i),
        }
    }
    data
}

/// Parsing must not panic; when it succeeds the result must survive generate → parse.
fn check(body: &[u8]) -> Result<(), TestCaseError> {
    match StreamConfig::parse_announce(body) {
        Ok(c) => {
            let again = c.to_announce(IpAddr::V4(Ipv4Addr::LOCALHOST), 47998);
            prop_assert_eq!(StreamConfig::parse_announce(&again), Ok(c));
        }
        Err(e) => {
            let _ = (e.fault(), e.to_string());
        }
    }
    Ok(())
}

/// Example lines with some values replaced by arbitrary text and lines dropped/duplicated.
fn line_mutated() -> impl Strategy<Value = Vec<u8>> {
    let lines: Vec<String> = String::from_utf8(EXAMPLE.to_vec())
        .unwrap()
        .split("\r\n")
        .map(str::to_owned)
        .collect();
    let n = lines.len();
    (
        prop::collection::vec((0..n, "[ -~]{0,14}", 0u8..4), 0..6),
        any::<bool>(),
    )
        .prop_map(move |(edits, lf)| {
            let mut ls = lines.clone();
            for (i, text, op) in edits {
                let i = i % ls.len().max(1);
                if ls.is_empty() {
                    break;
                }
                match op {
                    0 => {
                        let name = ls[i].split(':').next().unwrap_or("").to_owned();
                        ls[i] = format!("{name}:{text}");
                    }
                    1 => {
                        ls.remove(i);
                    }
                    2 => {
                        let dup = ls[i].clone();
                        ls.insert(0, dup);
                    }
                    _ => {
                        let name = ANNOUNCE_ATTRIBUTES[i % ANNOUNCE_ATTRIBUTES.len()];
                        ls.insert(i, format!("a={name}:{text}"));
                    }
                }
            }
            ls.join(if lf { "\n" } else { "\r\n" }).into_bytes()
        })
}

proptest! {
    #![proptest_config(config(PARSER_CASES))]

    #[test]
    fn announce_parser_never_panics_on_arbitrary_bytes(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..600),
            prop::collection::vec(
                prop_oneof![
                    Just(b"a=".to_vec()),
                    Just(b":".to_vec()),
                    Just(b"\r\n".to_vec()),
                    (0..ANNOUNCE_ATTRIBUTES.len()).prop_map(|i| ANNOUNCE_ATTRIBUTES[i].as_bytes().to_vec()),
                    "[0-9 ]{0,12}".prop_map(String::into_bytes),
                    prop::collection::vec(any::<u8>(), 0..6),
                ],
                0..60,
            ).prop_map(|v| v.concat()),
        ],
    ) {
        check(&body)?;
        let _ = DescribeInfo::parse(&body);
    }

    #[test]
    fn announce_parser_never_panics_on_mutated_example(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..8),
    ) {
        check(&mutate(EXAMPLE.to_vec(), &edits))?;
    }

    #[test]
    fn announce_parser_never_panics_on_line_mutations(body in line_mutated()) {
        check(&body)?;
    }

    #[test]
    fn describe_reader_never_panics_on_mutated_offers(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..8),
    ) {
        let offer = HostOffer {
            codecs: CodecSupport { h264: true, hevc: true, av1: true, hdr: true, yuv444: true },
            feature_flags: 3,
            encryption_supported: EncryptionFlags::ALL,
            encryption_requested: EncryptionFlags::ALL,
            ref_pic_invalidation: true,
            surround: HostOffer::default_surround(),
        };
        let _ = DescribeInfo::parse(&mutate(offer.describe_body().into_bytes(), &edits));
    }
}

fn any_config() -> impl Strategy<Value = StreamConfig> {
    let video = (
        1u32..=16_384,
        1u32..=16_384,
        1u32..=1_000,
        any::<u32>(),
        64u32..=65_507,
        prop_oneof![
            Just(VideoCodec::H264),
            Just(VideoCodec::Hevc),
            Just(VideoCodec::Av1)
        ],
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
        0u32..6,
        any::<u32>(),
    );
    let bitrate = (
        any::<u32>(),
        any::<Option<u32>>(),
        any::<Option<u32>>(),
        any::<Option<u32>>(),
        any::<u32>(),
    )
        .prop_map(|(max, min, init, peak, conf)| Bitrate {
            maximum_kbps: max,
            minimum_kbps: min,
            initial_kbps: init,
            initial_peak_kbps: peak,
            configured_kbps: conf,
        });
    let rest = (
        any::<bool>(),
        any::<u32>(),
        (
            1u8..=8,
            any::<u32>(),
            any::<bool>(),
            prop::sample::select(vec![5u32, 10, 20, 40, 60]),
        ),
        any::<[u32; 6]>(),
    );
    (video, bitrate, rest).prop_map(
        |(
            (w, h, fps, refresh, pkt, codec, hdr, yuv444, refs, csc, slices),
            bitrate,
            (fec, min_fec, (channels, mask, hq, dur), [enc, nvff, mlff, ctrl, vq, aq]),
        )| StreamConfig {
            width: w,
            height: h,
            fps,
            client_refresh_rate_x100: refresh,
            packet_size: pkt,
            bitrate,
            codec,
            dynamic_range: if hdr {
                DynamicRange::Hdr
            } else {
                DynamicRange::Sdr
            },
            chroma: if yuv444 {
                ChromaSampling::Yuv444
            } else {
                ChromaSampling::Yuv420
            },
            max_ref_frames: refs,
            csc: CscMode::from_raw(csc).unwrap(),
            slices_per_frame: slices,
            fec_enabled: fec,
            min_required_fec_packets: min_fec,
            audio: AudioConfig {
                channels,
                channel_mask: mask,
                high_quality: hq,
                packet_duration_ms: dur,
            },
            ss_encryption_enabled: EncryptionFlags(enc),
            nv_feature_flags: nvff,
            ml_feature_flags: MlFeatureFlags(mlff),
            control_protocol: ctrl,
            video_qos_type: vq,
            audio_qos_type: aq,
        },
    )
}

fn any_layout(channels: u8) -> impl Strategy<Value = OpusMultistream> {
    (1u8..=9, 0u8..=9).prop_flat_map(move |(streams, coupled)| {
        let coupled = coupled.min(streams).min(9 - streams.min(9));
        let total = streams + coupled;
        prop::collection::vec(0..total, usize::from(channels))
            .prop_map(move |m| OpusMultistream::new(channels, streams, coupled, &m).unwrap())
    })
}

proptest! {
    #![proptest_config(config(ROUND_TRIP_CASES))]

    #[test]
    fn announce_round_trips(c in any_config(), v6 in any::<bool>(), port in any::<u16>()) {
        let addr = if v6 { IpAddr::V6(Ipv6Addr::LOCALHOST) } else { IpAddr::V4(Ipv4Addr::LOCALHOST) };
        let body = c.to_announce(addr, port);
        prop_assert_eq!(StreamConfig::parse_announce(&body), Ok(c));
    }

    /// Whatever 5.1/7.1 layouts the host advertises, the client's reading (with its rotation
    /// quirk) yields exactly those layouts.
    #[test]
    fn surround_params_round_trip(
        n6 in any_layout(6), h6 in proptest::option::of(any_layout(6)),
        n8 in any_layout(8), h8 in proptest::option::of(any_layout(8)),
    ) {
        let offer = HostOffer {
            codecs: CodecSupport::default(),
            feature_flags: 0,
            encryption_supported: EncryptionFlags::NONE,
            encryption_requested: EncryptionFlags::NONE,
            ref_pic_invalidation: false,
            surround: vec![
                SurroundOffer::stereo(),
                SurroundOffer { normal: n6, high_quality: h6 },
                SurroundOffer { normal: n8, high_quality: h8 },
            ],
        };
        let info = DescribeInfo::parse(offer.describe_body().as_bytes());
        prop_assert_eq!(info.surround_for(6), offer.surround_for(6).copied());
        prop_assert_eq!(info.surround_for(8), offer.surround_for(8).copied());
    }
}
