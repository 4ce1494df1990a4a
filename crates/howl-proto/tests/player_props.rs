//! Property tests for the player egress: hostile bytes into every parser never panic, chunking
//! never changes what the interleaved decoder sees, and payloading round-trips at any MTU.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use howl_proto::player::auth::parse_authorization;
use howl_proto::player::rtcp::parse_compound;
use howl_proto::player::rtp::{RtpHeader, RtpParams, split_annex_b};
use howl_proto::player::{
    Handled, InterleavedDecoder, PlayerConfig, PlayerSession, StreamDescription, UdpPorts,
    VideoCodec, VideoPayloader, interleaved, parse_path,
};
use howl_proto::rtsp::{Headers, Incoming, Method, Request, Version};
use proptest::prelude::*;

const CASES: u32 = 20_000;

#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

/// Feeds `data` to a decoder in the given chunks and returns everything it yields, or the
/// first error's text.
fn decode_chunked(data: &[u8], cuts: &[usize]) -> Result<Vec<Incoming>, String> {
    let mut d = InterleavedDecoder::new();
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    let mut prev = 0;
    for cut in cuts.into_iter().chain([data.len()]) {
        d.feed(&data[prev..cut]);
        prev = cut;
        loop {
            match d.next() {
                Ok(Some(i)) => out.push(i),
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(out)
}

/// Builds a valid connection byte stream of requests and frames.
fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
    let item = prop_oneof![
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(ch, data)| {
            interleaved::frame(ch, &data).unwrap()
        }),
        (1u32..1000, prop::collection::vec(b'a'..=b'z', 0..40)).prop_map(|(cseq, body)| {
            let mut r = format!(
                "GET_PARAMETER rtsp://h/app/x RTSP/1.0\r\nCSeq: {cseq}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(&body);
            r
        }),
    ];
    prop::collection::vec(item, 0..8).prop_map(|items| items.concat())
}

/// A minimal RFC 6184 depayloader: NAL units back from single-NAL and FU-A packets.
fn depayload_h264(packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut nals = Vec::new();
    let mut fu: Vec<u8> = Vec::new();
    for p in packets {
        let (_, payload) = RtpHeader::parse(p).unwrap();
        if payload[0] & 0x1f == 28 {
            if payload[1] & 0x80 != 0 {
                fu = vec![(payload[0] & 0xe0) | (payload[1] & 0x1f)];
            }
            fu.extend_from_slice(&payload[2..]);
            if payload[1] & 0x40 != 0 {
                nals.push(std::mem::take(&mut fu));
            }
        } else {
            nals.push(payload.to_vec());
        }
    }
    nals
}

fn method_strategy() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Options),
        Just(Method::Describe),
        Just(Method::Setup),
        Just(Method::Play),
        Just(Method::Pause),
        Just(Method::Teardown),
        Just(Method::GetParameter),
        Just(Method::Record),
        Just(Method::Other("FOO".into())),
    ]
}

fn request_strategy() -> impl Strategy<Value = Request> {
    let uri = prop_oneof![
        Just("rtsp://h/app/x".to_owned()),
        Just("rtsp://h/app/x/trackID=0".to_owned()),
        Just("rtsp://h/app/x/trackID=1".to_owned()),
        Just("*".to_owned()),
        ".{0,30}",
    ];
    let transport = prop_oneof![
        Just("RTP/AVP;unicast;client_port=5000-5001".to_owned()),
        Just("RTP/AVP/TCP;unicast;interleaved=0-1".to_owned()),
        Just("RTP/AVP/TCP;unicast".to_owned()),
        "[ -~]{0,40}",
    ];
    let session = prop_oneof![
        Just(None),
        Just(Some("Sess10nId0".to_owned())),
        Just(Some("Sess10nId0;timeout=60".to_owned())),
        "[ -~]{0,20}".prop_map(Some),
    ];
    (
        method_strategy(),
        uri,
        prop::option::of(transport),
        session,
        prop::option::of("[ -~]{0,60}"),
        any::<bool>(),
    )
        .prop_map(|(method, uri, transport, session, auth, v2)| {
            let mut headers = Headers::new();
            headers.append("CSeq", "1");
            if let Some(t) = transport {
                headers.append("Transport", t);
            }
            if let Some(s) = session {
                headers.append("Session", s);
            }
            if let Some(a) = auth {
                headers.append("Authorization", a);
            }
            Request {
                method,
                uri,
                version: if v2 {
                    Version { major: 2, minor: 0 }
                } else {
                    Version::RTSP_1_0
                },
                headers,
                body: Vec::new(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn interleaved_decoder_never_panics(data in prop::collection::vec(any::<u8>(), 0..600), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        let _ = decode_chunked(&data, &cuts);
        // With a leading `$` the bytes are mostly frames.
        let mut framed = vec![b'$'];
        framed.extend_from_slice(&data);
        let _ = decode_chunked(&framed, &cuts);
    }

    #[test]
    fn interleaved_chunking_is_invisible(stream in stream_strategy(), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let whole = decode_chunked(&stream, &[]).unwrap();
        prop_assert_eq!(decode_chunked(&stream, &cuts).unwrap(), whole);
    }

    #[test]
    fn auth_parser_never_panics(value in ".{0,200}", digest in "[ -~]{0,200}", b64 in "[A-Za-z0-9+/=]{0,40}") {
        let _ = parse_authorization(&value);
        let _ = parse_authorization(&format!("Digest {digest}"));
        let _ = parse_authorization(&format!("Basic {b64}"));
        if let Ok(c) = parse_authorization(&format!("Digest {digest}")) {
            let _ = c.verify("DESCRIBE", "howl", "n", "secret");
        }
    }

    #[test]
    fn path_parser_never_panics(raw in ".{0,200}", tail in "[ -~]{0,80}") {
        let _ = parse_path(&raw);
        let _ = parse_path(&format!("rtsp://h/app/{tail}"));
        if let Ok(p) = parse_path(&format!("/lobby/{tail}")) {
            prop_assert!(p.base.ends_with('/'));
        }
    }

    #[test]
    fn rtcp_and_rtp_parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_compound(&data);
        let _ = RtpHeader::parse(&data);
        let _ = split_annex_b(&data).count();
    }

    #[test]
    fn h264_round_trip_any_mtu(
        nal_lens in prop::collection::vec(1usize..3000, 1..6),
        mtu in 16usize..1500,
        seq in any::<u16>(),
        ts in any::<u32>(),
    ) {
        // NAL units whose payload has no zero bytes, so no start code can hide inside.
        let nals: Vec<Vec<u8>> = nal_lens
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let mut n = vec![0x41];
                n.extend((0..len - 1).map(|j| ((i * 31 + j) % 255 + 1) as u8));
                n
            })
            .collect();
        let mut au = Vec::new();
        for n in &nals {
            au.extend_from_slice(&[0, 0, 1]);
            au.extend_from_slice(n);
        }
        let params = RtpParams { ssrc: 1, initial_sequence: seq, initial_timestamp: ts };
        let mut pay = VideoPayloader::new(VideoCodec::H264, 96, params, mtu).unwrap();
        let packets = pay.packetize(&au, Duration::from_secs(3));
        for (i, p) in packets.iter().enumerate() {
            prop_assert!(p.len() <= mtu);
            let (h, _) = RtpHeader::parse(p).unwrap();
            prop_assert_eq!(h.marker, i + 1 == packets.len());
            prop_assert_eq!(h.sequence, seq.wrapping_add(i as u16));
            prop_assert_eq!(h.timestamp, ts);
        }
        prop_assert_eq!(depayload_h264(&packets), nals);
    }

    #[test]
    fn player_session_never_panics(reqs in prop::collection::vec((request_strategy(), 0u64..40), 1..12)) {
        let t0 = origin();
        let mut c = PlayerConfig::new(
            "Sess10nId0",
            "nonce",
            RtpParams { ssrc: 1, initial_sequence: 2, initial_timestamp: 3 },
            RtpParams { ssrc: 4, initial_sequence: 5, initial_timestamp: 6 },
        );
        c.video_udp = Some(UdpPorts { rtp: 7000, rtcp: 7001 });
        let mut s = PlayerSession::new(c, t0).unwrap();
        let mut now = t0;
        for (req, dt) in reqs {
            now += Duration::from_secs(dt);
            match s.handle(req, now) {
                Handled::Reply { response, .. } => {
                    prop_assert!(response.headers.contains("CSeq"));
                }
                Handled::Describe(q) => {
                    let _ = q.authorize([(1, "secret")]);
                    let desc = StreamDescription {
                        session_name: "x".into(),
                        video: None,
                        audio: Some(howl_proto::player::AudioTrack {
                            channels: howl_proto::player::OpusChannels::Stereo,
                        }),
                    };
                    let resp = s.complete_describe(q, Ok(desc));
                    prop_assert_eq!(resp.status.0, 200);
                }
            }
            let _ = s.poll_timeout(now);
            let _ = s.on_interleaved(1, &[0x80, 201, 0, 1, 0, 0, 0, 0], now);
        }
    }
}

/// Pieces of what players send on their connection, to be glued in any order: request lines
/// of every method, the headers the session reads (good and bad values), interleaved frames
/// and raw bytes.
fn player_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"OPTIONS rtsp://h/app/x RTSP/1.0\r\n".to_vec()),
        Just(b"DESCRIBE rtsp://h/app/x?width=640 RTSP/1.0\r\n".to_vec()),
        Just(b"DESCRIBE rtsp://h/lobby/a%20b RTSP/1.0\r\n".to_vec()),
        Just(b"SETUP rtsp://h/app/x/trackID=0 RTSP/1.0\r\n".to_vec()),
        Just(b"SETUP rtsp://h/app/x/trackID=1 RTSP/1.0\r\n".to_vec()),
        Just(b"PLAY rtsp://h/app/x RTSP/1.0\r\n".to_vec()),
        Just(b"PAUSE rtsp://h/app/x RTSP/1.0\r\n".to_vec()),
        Just(b"TEARDOWN rtsp://h/app/x RTSP/1.0\r\n".to_vec()),
        Just(b"GET_PARAMETER rtsp://h/app/x RTSP/2.0\r\n".to_vec()),
        Just(b"CSeq: 7\r\n".to_vec()),
        Just(b"Session: Sess10nId0\r\n".to_vec()),
        Just(b"Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n".to_vec()),
        Just(b"Transport: RTP/AVP/TCP;interleaved=255-256\r\n".to_vec()),
        Just(b"Transport: RTP/AVP;unicast;client_port=5000-5001\r\n".to_vec()),
        Just(b"Authorization: Basic dTpzZWNyZXQ=\r\n".to_vec()),
        Just(b"Authorization: Digest username=\"u\", realm=\"howl\", nonce=\"nonce\", uri=\"x\", response=\"0\"\r\n".to_vec()),
        Just(b"Content-Length: 3\r\n".to_vec()),
        Just(b"Require: x\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"$\x01\x00\x08\x81\xc9\x00\x01\x00\x00\x00\x01".to_vec()),
        Just(b"$\x03\x00\x00".to_vec()),
        prop::collection::vec(any::<u8>(), 0..16),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

/// How many inputs the connection-level test runs: issue 9 asks for at least 100 000.
const CONNECTION_CASES: u32 = 100_000;

proptest! {
    #![proptest_config(ProptestConfig { cases: CONNECTION_CASES, failure_persistence: None, ..ProptestConfig::default() })]

    /// Everything a server does with a player connection's bytes — split them into requests
    /// and frames, answer each request, complete DESCRIBEs, take RTCP — never panics, and every
    /// answer echoes the request's CSeq.
    #[test]
    fn player_connection_bytes_never_panic(data in player_bytes(), cut in any::<usize>()) {
        let t0 = origin();
        let mut c = PlayerConfig::new(
            "Sess10nId0",
            "nonce",
            RtpParams { ssrc: 1, initial_sequence: 2, initial_timestamp: 3 },
            RtpParams { ssrc: 4, initial_sequence: 5, initial_timestamp: 6 },
        );
        c.video_udp = Some(UdpPorts { rtp: 7000, rtcp: 7001 });
        let mut s = PlayerSession::new(c, t0).unwrap();
        let mut d = InterleavedDecoder::new();
        let cut = cut % (data.len() + 1);
        for part in [&data[..cut], &data[cut..]] {
            d.feed(part);
            loop {
                match d.next() {
                    Ok(Some(Incoming::Request(req))) => match (req.headers.get("CSeq").map(str::to_owned), s.handle(req, t0)) {
                        (cseq, Handled::Reply { response, .. }) => {
                            prop_assert_eq!(response.headers.get("CSeq"), cseq.as_deref());
                        }
                        (_, Handled::Describe(q)) => {
                            let ok = q.authorize([(1, "secret")]).is_some();
                            let outcome = if ok {
                                Ok(StreamDescription {
                                    session_name: "x".into(),
                                    video: None,
                                    audio: Some(howl_proto::player::AudioTrack {
                                        channels: howl_proto::player::OpusChannels::Stereo,
                                    }),
                                })
                            } else {
                                Err(howl_proto::player::DescribeRefusal::Unauthorized)
                            };
                            let resp = s.complete_describe(q, outcome);
                            prop_assert_eq!(resp.status.0, if ok { 200 } else { 401 });
                        }
                    },
                    Ok(Some(Incoming::Interleaved { channel, data })) => {
                        let _ = s.on_interleaved(channel, &data, t0);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let r = howl_proto::rtsp::Response::for_parse_error(&e, &data);
                        prop_assert!(r.headers.contains("CSeq"));
                        break;
                    }
                }
            }
        }
    }
}
