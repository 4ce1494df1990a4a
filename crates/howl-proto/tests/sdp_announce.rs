//! ANNOUNCE parsing/generation and the DESCRIBE body, against the reference's examples.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use howl_proto::sdp::{
    AudioConfig, Bitrate, ChromaSampling, CodecSupport, ColorSpace, CscMode, DescribeInfo,
    DynamicRange, EncryptionFlags, HostOffer, MlFeatureFlags, OpusMultistream, SdpError,
    StreamConfig, SurroundOffer, VideoCodec,
};

/// Reference part 1 §6.7: the body a current client sends (H.265 1080p60, 20 Mbps, stereo,
/// LAN, audio encryption), byte for byte.
const EXAMPLE: &[u8] = include_bytes!("sdp_example_announce.sdp");

fn example_config() -> StreamConfig {
    StreamConfig {
        width: 1920,
        height: 1080,
        fps: 60,
        client_refresh_rate_x100: 6000,
        packet_size: 1392,
        bitrate: Bitrate {
            maximum_kbps: 16000,
            minimum_kbps: Some(16000),
            initial_kbps: Some(16000),
            initial_peak_kbps: Some(16000),
            configured_kbps: 20000,
        },
        codec: VideoCodec::Hevc,
        dynamic_range: DynamicRange::Sdr,
        chroma: ChromaSampling::Yuv420,
        max_ref_frames: 1,
        csc: CscMode {
            color_space: ColorSpace::Bt709,
            full_range: false,
        },
        slices_per_frame: 1,
        fec_enabled: true,
        min_required_fec_packets: 2,
        audio: AudioConfig {
            channels: 2,
            channel_mask: 3,
            high_quality: false,
            packet_duration_ms: 5,
        },
        ss_encryption_enabled: EncryptionFlags(5),
        nv_feature_flags: 167,
        ml_feature_flags: MlFeatureFlags(3),
        control_protocol: 13,
        video_qos_type: 5,
        audio_qos_type: 4,
    }
}

#[test]
fn parses_reference_example_exactly() {
    let c = StreamConfig::parse_announce(EXAMPLE).unwrap();
    assert_eq!(c, example_config());
    assert!(c.ml_feature_flags.session_id_v1());
    assert!(c.ml_feature_flags.fec_status());
    // encryptionEnabled 5 = control v2 + audio; nv flag 0x20 also means audio.
    assert_eq!(
        c.encryption(),
        EncryptionFlags::CONTROL_V2.union(EncryptionFlags::AUDIO)
    );
    assert_eq!(c.audio_samples_per_packet(), 240);
    assert_eq!(c.frame_rate_millihz(), 60_000);
}

#[test]
fn generator_reproduces_reference_example_byte_for_byte() {
    let body = example_config().to_announce(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)), 47998);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        String::from_utf8(EXAMPLE.to_vec()).unwrap()
    );
}

#[test]
fn generator_round_trips_other_configs() {
    let mut c = example_config();
    c.codec = VideoCodec::Av1;
    c.dynamic_range = DynamicRange::Hdr;
    c.chroma = ChromaSampling::Yuv444;
    c.csc = CscMode {
        color_space: ColorSpace::Bt2020,
        full_range: true,
    };
    c.audio = AudioConfig {
        channels: 8,
        channel_mask: 1599,
        high_quality: true,
        packet_duration_ms: 10,
    };
    c.bitrate.initial_kbps = None;
    c.bitrate.configured_kbps = 0;
    let body = c.to_announce(IpAddr::V6(Ipv6Addr::LOCALHOST), 47998);
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.contains("o=android 0 14 IN IPv6 ::1\r\n"));
    assert!(!text.contains("x-nv-clientSupportHevc"), "absent for AV1");
    assert!(text.contains("a=x-nv-audio.surround.enable:1 \r\n"));
    assert_eq!(StreamConfig::parse_announce(&body).unwrap(), c);
}

#[test]
fn tolerates_lf_trailing_spaces_and_unknown_lines() {
    let lf: Vec<u8> = String::from_utf8(EXAMPLE.to_vec())
        .unwrap()
        .replace("\r\n", "   \t\n")
        .replace(":1920", ":  1920")
        .into_bytes();
    let mut lf = lf;
    lf.extend_from_slice(b"a=x-nv-something.new:abc\na=recvonly\nbogus line\n\n");
    assert_eq!(StreamConfig::parse_announce(&lf).unwrap(), example_config());
}

#[test]
fn first_occurrence_wins() {
    let mut body = EXAMPLE.to_vec();
    body.extend_from_slice(b"a=x-nv-video[0].clientViewportWd:640 \r\n");
    assert_eq!(StreamConfig::parse_announce(&body).unwrap().width, 1920);
}

/// The example with every attribute the host does not require removed.
fn minimal_body() -> String {
    [
        "v=0",
        "a=x-nv-video[0].clientViewportWd:1280 ",
        "a=x-nv-video[0].clientViewportHt:720 ",
        "a=x-nv-video[0].maxFPS:30 ",
        "a=x-nv-video[0].packetSize:1024 ",
        "a=x-nv-vqos[0].bw.maximumBitrateKbps:5000 ",
        "a=x-nv-video[0].videoEncoderSlicesPerFrame:4 ",
        "a=x-nv-video[0].maxNumReferenceFrames:0 ",
        "a=x-nv-audio.surround.numChannels:6 ",
        "a=x-nv-audio.surround.channelMask:63 ",
        "a=x-nv-audio.surround.AudioQuality:1 ",
        "",
    ]
    .join("\r\n")
}

#[test]
fn absent_optional_attributes_take_reference_defaults() {
    let c = StreamConfig::parse_announce(minimal_body().as_bytes()).unwrap();
    assert_eq!(
        (c.width, c.height, c.fps, c.packet_size),
        (1280, 720, 30, 1024)
    );
    assert_eq!(
        c.bitrate,
        Bitrate {
            maximum_kbps: 5000,
            minimum_kbps: None,
            initial_kbps: None,
            initial_peak_kbps: None,
            configured_kbps: 0,
        }
    );
    assert_eq!(c.codec, VideoCodec::H264);
    assert_eq!(c.dynamic_range, DynamicRange::Sdr);
    assert_eq!(c.chroma, ChromaSampling::Yuv420);
    assert_eq!(c.csc, CscMode::from_raw(0).unwrap());
    assert_eq!(c.audio.packet_duration_ms, 5);
    assert!(c.audio.high_quality);
    assert_eq!(c.control_protocol, 1);
    assert_eq!(c.min_required_fec_packets, 0);
    assert_eq!(c.nv_feature_flags, 135);
    assert_eq!(c.ml_feature_flags, MlFeatureFlags(0));
    assert_eq!((c.video_qos_type, c.audio_qos_type), (5, 4));
    assert_eq!(c.ss_encryption_enabled, EncryptionFlags::NONE);
    // 135 = 0x87 has no 0x20 bit: audio stays clear.
    assert_eq!(c.encryption(), EncryptionFlags::NONE);
    assert_eq!(c.client_refresh_rate_x100, 0);
    assert!(c.fec_enabled);
    // Without a configured total the encoder uses maximumBitrateKbps.
    assert_eq!(c.bitrate.encoder_kbps(20, 96), 5000);
}

#[test]
fn each_required_attribute_is_required() {
    let body = minimal_body();
    for line in body.lines().filter(|l| l.starts_with("a=")) {
        let without = body.replace(&format!("{line}\r\n"), "");
        let name = line[2..line.find(':').unwrap()].to_owned();
        assert_eq!(
            StreamConfig::parse_announce(without.as_bytes()),
            Err(SdpError::MissingAttribute(
                howl_proto::sdp::ANNOUNCE_ATTRIBUTES
                    .iter()
                    .find(|a| **a == name)
                    .unwrap()
            )),
            "{name}"
        );
    }
}

#[test]
fn bad_values_are_typed_errors() {
    let cases = [
        ("x-nv-video[0].maxFPS:60 ", "x-nv-video[0].maxFPS:sixty "),
        ("x-nv-video[0].maxFPS:60 ", "x-nv-video[0].maxFPS:-60 "),
        (
            "x-nv-video[0].maxFPS:60 ",
            "x-nv-video[0].maxFPS:99999999999 ",
        ),
        ("x-nv-video[0].maxFPS:60 ", "x-nv-video[0].maxFPS: "),
    ];
    for (from, to) in cases {
        let body = String::from_utf8(EXAMPLE.to_vec())
            .unwrap()
            .replace(from, to);
        assert!(
            matches!(
                StreamConfig::parse_announce(body.as_bytes()),
                Err(SdpError::BadValue {
                    attribute: "x-nv-video[0].maxFPS",
                    ..
                })
            ),
            "{to}"
        );
    }
    let unsupported = [
        "a=x-nv-vqos[0].bitStreamFormat:3 ",
        "a=x-nv-video[0].dynamicRangeMode:2 ",
        "a=x-ss-video[0].chromaSamplingType:2 ",
        "a=x-nv-video[0].encoderCscMode:6 ",
        "a=x-nv-aqos.packetDuration:7 ",
        "a=x-nv-audio.surround.AudioQuality:2 ",
    ];
    for line in unsupported {
        let name = &line[2..line.find(':').unwrap()];
        let body = String::from_utf8(EXAMPLE.to_vec())
            .unwrap()
            .lines()
            .map(|l| {
                if l.starts_with(&format!("a={name}:")) {
                    line
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let err = StreamConfig::parse_announce(body.as_bytes()).unwrap_err();
        assert!(
            matches!(err, SdpError::UnsupportedValue { attribute, .. } if attribute == name),
            "{line}: {err:?}"
        );
    }
    let body = String::from_utf8(EXAMPLE.to_vec())
        .unwrap()
        .replace("clientViewportWd:1920", "clientViewportWd:0");
    assert!(matches!(
        StreamConfig::parse_announce(body.as_bytes()),
        Err(SdpError::OutOfRange { value: 0, .. })
    ));
    let huge = vec![b'a'; howl_proto::sdp::MAX_ANNOUNCE_LEN + 1];
    assert!(matches!(
        StreamConfig::parse_announce(&huge),
        Err(SdpError::TooLarge { .. })
    ));
}

#[test]
fn encoder_bitrate_derivation() {
    let b = example_config().bitrate;
    // 20000 total, 20 % FEC on top of data: 16666 data; minus 96 audio and 500 overhead.
    assert_eq!(b.encoder_kbps(20, 96), 16070);
    // Nothing left: fall back to the NVIDIA maximum.
    let tiny = Bitrate {
        configured_kbps: 300,
        ..b
    };
    assert_eq!(tiny.encoder_kbps(20, 96), 16000);
}

#[test]
fn refresh_rate_is_used_only_within_one_percent() {
    let mut c = example_config();
    c.client_refresh_rate_x100 = 5994;
    assert_eq!(c.frame_rate_millihz(), 59_940);
    c.client_refresh_rate_x100 = 14400;
    assert_eq!(c.frame_rate_millihz(), 60_000);
}

fn sunshine_like_offer() -> HostOffer {
    HostOffer {
        codecs: CodecSupport {
            h264: true,
            hevc: true,
            av1: true,
            hdr: true,
            yuv444: false,
        },
        feature_flags: 3,
        encryption_supported: EncryptionFlags(7),
        encryption_requested: EncryptionFlags(1),
        ref_pic_invalidation: true,
        surround: HostOffer::default_surround(),
    }
}

#[test]
fn describe_body_matches_reference_shape() {
    let body = sunshine_like_offer().describe_body();
    // Sunshine's example body, except the 7.1 normal line: the reference notes Sunshine's
    // rotation is short by one, and the client's algorithm needs 85301245673 for identity.
    let expected = "a=x-ss-general.featureFlags:3\n\
                    a=x-ss-general.encryptionSupported:7\n\
                    a=x-ss-general.encryptionRequested:1\n\
                    a=x-nv-video[0].refPicInvalidation:1\n\
                    sprop-parameter-sets=AAAAAU\n\
                    a=rtpmap:98 AV1/90000\n\
                    a=fmtp:97 surround-params=21101\n\
                    a=fmtp:97 surround-params=21101\n\
                    a=fmtp:97 surround-params=642012453\n\
                    a=fmtp:97 surround-params=660012345\n\
                    a=fmtp:97 surround-params=85301245673\n\
                    a=fmtp:97 surround-params=88001234567\n";
    assert_eq!(body, expected);
}

#[test]
fn describe_advertises_exactly_the_offered_codecs() {
    let mut offer = sunshine_like_offer();
    offer.codecs.hevc = false;
    offer.codecs.av1 = false;
    offer.ref_pic_invalidation = false;
    let body = offer.describe_body();
    assert!(!body.contains("AAAAAU") && !body.contains("AV1/90000"));
    assert!(!body.contains("refPicInvalidation"));
    assert!(!body.is_empty());
    let info = DescribeInfo::parse(body.as_bytes());
    assert!(!info.hevc && !info.av1 && !info.ref_pic_invalidation);

    offer.codecs.hevc = true;
    let info = DescribeInfo::parse(offer.describe_body().as_bytes());
    assert!(info.hevc && !info.av1);
    offer.codecs = CodecSupport {
        av1: true,
        ..CodecSupport::default()
    };
    let info = DescribeInfo::parse(offer.describe_body().as_bytes());
    assert!(!info.hevc && info.av1);
}

#[test]
fn client_reads_back_what_the_host_offered() {
    let offer = sunshine_like_offer();
    let info = DescribeInfo::parse(offer.describe_body().as_bytes());
    assert!(info.hevc && info.av1 && info.ref_pic_invalidation);
    assert_eq!(info.feature_flags, Some(3));
    assert_eq!(info.encryption_supported, Some(EncryptionFlags(7)));
    assert_eq!(info.encryption_requested, Some(EncryptionFlags(1)));
    for ch in [6, 8] {
        assert_eq!(
            info.surround_for(ch).as_ref(),
            offer.surround_for(ch),
            "{ch} channels"
        );
    }
    // The client's rotation on the reference's Sunshine 7.1 line gives 0 1 2 7 4 5 3 6.
    let sunshine71 = DescribeInfo::parse(
        b"a=fmtp:97 surround-params=85301245367\na=fmtp:97 surround-params=88001234567\n",
    );
    let s = sunshine71.surround_for(8).unwrap();
    assert_eq!(s.normal.mapping(), &[0, 1, 2, 7, 4, 5, 3, 6]);
    assert_eq!(s.high_quality.unwrap().mapping(), &[0, 1, 2, 3, 4, 5, 6, 7]);
    // No 5.1 line: nothing parsed (the client then falls back to its built-in layout).
    assert_eq!(DescribeInfo::parse(b"x").surround_for(6), None);
    // Hex numbers as strtoul(.., 0) reads them.
    assert_eq!(
        DescribeInfo::parse(b"a=x-ss-general.featureFlags: 0x1f\n").feature_flags,
        Some(31)
    );
}

#[test]
fn opus_layout_validation() {
    assert!(OpusMultistream::new(6, 4, 2, &[0, 1, 2, 3, 4, 5]).is_ok());
    assert!(OpusMultistream::new(9, 4, 2, &[0; 9]).is_err());
    assert!(OpusMultistream::new(6, 2, 4, &[0; 6]).is_err());
    assert!(OpusMultistream::new(6, 250, 250, &[0; 6]).is_err());
    assert!(OpusMultistream::new(6, 4, 2, &[0; 5]).is_err());
    assert!(OpusMultistream::new(6, 4, 2, &[0, 1, 2, 3, 4, 6]).is_err());
    let s = SurroundOffer::surround51();
    assert_eq!(s.normal.streams(), 4);
    assert_eq!(s.normal.coupled_streams(), 2);
}
