//! The Moonlight RTSP handshake end to end: the exact requests a 7.1.431 client sends, every
//! response header it parses, and the refusals for out-of-order or malformed requests.

// Test helpers outside #[test] fns unwrap too: a panic here is a failed test, not a crash.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use howl_proto::rtsp::{
    ClientError, ConfigError, Event, HandshakeError, Method, MoonlightClient, MoonlightParams,
    MoonlightRtsp, ParseError, PingPayload, Request, RequestParser, Response, StatusCode,
    StreamKind, StreamPorts,
};
use howl_proto::sdp::{
    ChromaSampling, CodecSupport, DynamicRange, EncryptionFlags, HostOffer, SdpError, StreamConfig,
    VideoCodec,
};

/// An arbitrary origin for the virtual clock; every later time is an offset from it, so the
/// value itself never matters (the one sanctioned clock read in these tests).
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

const EXAMPLE_ANNOUNCE: &[u8] = include_bytes!("sdp_example_announce.sdp");
const TOKEN: &str = "9C0F2A61D3B4E587";
const CONNECT_DATA: u32 = 2_882_400_001;

fn params() -> MoonlightParams {
    MoonlightParams {
        offer: HostOffer {
            codecs: CodecSupport {
                h264: true,
                hevc: true,
                av1: false,
                hdr: true,
                yuv444: false,
            },
            feature_flags: 3,
            encryption_supported: EncryptionFlags::ALL,
            encryption_requested: EncryptionFlags::CONTROL_V2,
            ref_pic_invalidation: false,
            surround: HostOffer::default_surround(),
        },
        ports: StreamPorts::DEFAULT,
        ping_payload: PingPayload::from_random([0x9C, 0x0F, 0x2A, 0x61, 0xD3, 0xB4, 0xE5, 0x87]),
        connect_data: CONNECT_DATA,
        session_id: "DEADBEEFCAFE".into(),
        encryption_required: EncryptionFlags::NONE,
        handshake_timeout: Duration::from_secs(30),
    }
}

/// What a 7.1.431 client writes for step `cseq` (reference part 1 §6.1 and §6.3).
fn wire_request(cseq: u32) -> Vec<u8> {
    let common = format!("CSeq: {cseq}\r\nX-GS-ClientVersion: 14\r\nHost: 0.0.0.0\r\n");
    let ims = "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n";
    let transport = "Transport: unicast;X-GS-ClientPort=50000-50001\r\n";
    let session = "Session: DEADBEEFCAFE\r\n";
    let mut out = match cseq {
        1 => format!("OPTIONS rtsp://0.0.0.0:48010 RTSP/1.0\r\n{common}\r\n"),
        2 => format!(
            "DESCRIBE rtsp://0.0.0.0:48010 RTSP/1.0\r\n{common}Accept: application/sdp\r\n{ims}\r\n"
        ),
        3 => format!("SETUP streamid=audio/0/0 RTSP/1.0\r\n{common}{transport}{ims}\r\n"),
        4 => format!("SETUP streamid=video/0/0 RTSP/1.0\r\n{common}{session}{transport}{ims}\r\n"),
        5 => {
            format!("SETUP streamid=control/13/0 RTSP/1.0\r\n{common}{session}{transport}{ims}\r\n")
        }
        6 => format!(
            "ANNOUNCE streamid=control/13/0 RTSP/1.0\r\n{common}{session}\
             Content-type: application/sdp\r\nContent-length: {}\r\n\r\n",
            EXAMPLE_ANNOUNCE.len()
        ),
        7 => format!("PLAY / RTSP/1.0\r\n{common}{session}\r\n"),
        _ => unreachable!(),
    }
    .into_bytes();
    if cseq == 6 {
        out.extend_from_slice(EXAMPLE_ANNOUNCE);
    }
    out
}

/// Feeds `wire` in MTU-ish chunks the way the client writes it.
fn parse(wire: &[u8]) -> Request {
    let mut p = RequestParser::new();
    let mut got = None;
    for chunk in wire.chunks(700) {
        assert!(got.is_none(), "request complete before all bytes arrived");
        got = p.push(chunk).unwrap();
    }
    assert_eq!(p.buffered(), 0);
    got.expect("complete request")
}

/// The rules of Moonlight's strict response parser, on raw bytes.
fn assert_client_parsable(raw: &[u8]) {
    let text = String::from_utf8(raw.to_vec()).unwrap();
    let (head, _) = text.split_once("\r\n\r\n").expect("CRLF CRLF");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap();
    let mut parts = status.splitn(3, ' ');
    assert_eq!(parts.next(), Some("RTSP/1.0"));
    assert_eq!(parts.next().unwrap().len(), 3);
    assert!(!parts.next().unwrap().is_empty(), "reason phrase");
    let mut n = 0;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        assert!(!name.is_empty());
        assert!(
            value.starts_with(' ') && !value.starts_with("  "),
            "{line:?}"
        );
        n += 1;
    }
    assert!(n >= 1, "at least one header");
}

/// Exact-case header lookup, as the client does it.
fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn drain(m: &mut MoonlightRtsp) -> Vec<Event> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

#[test]
fn full_handshake_with_exact_client_requests() {
    let t0 = origin();
    let mut host = MoonlightRtsp::new(params(), t0).unwrap();
    assert_eq!(host.deadline(), t0 + Duration::from_secs(30));
    let mut responses = Vec::new();
    for cseq in 1..=7 {
        let req = parse(&wire_request(cseq));
        assert!(!host.is_complete());
        let resp = host.handle(req, t0 + Duration::from_millis(u64::from(cseq) * 10));
        let raw = resp.to_bytes();
        assert_client_parsable(&raw);
        let resp = Response::parse_complete(&raw).unwrap();
        assert_eq!(resp.status, StatusCode::OK, "step {cseq}");
        assert_eq!(header(&resp, "CSeq"), Some(cseq.to_string().as_str()));
        responses.push(resp);
    }
    assert!(host.is_complete());

    // DESCRIBE: non-empty body with the HEVC marker, no AV1 marker, surround lines.
    let describe = String::from_utf8(responses[1].body.clone()).unwrap();
    assert!(describe.contains("sprop-parameter-sets=AAAAAU"));
    assert!(!describe.contains("AV1/90000"));
    assert!(describe.contains("a=x-ss-general.encryptionSupported:7\n"));
    assert!(describe.contains("a=x-ss-general.encryptionRequested:1\n"));
    assert!(describe.contains("a=fmtp:97 surround-params=642012453\n"));

    // SETUP audio / video / control.
    for (i, port, token) in [(2, 48000, true), (3, 47998, true), (4, 47999, false)] {
        let r = &responses[i];
        assert_eq!(header(r, "Session"), Some("DEADBEEFCAFE;timeout=90"));
        assert_eq!(
            header(r, "Transport"),
            Some(format!("server_port={port}").as_str())
        );
        if token {
            assert_eq!(header(r, "X-SS-Ping-Payload"), Some(TOKEN));
            assert_eq!(header(r, "X-SS-Connect-Data"), None);
        } else {
            assert_eq!(header(r, "X-SS-Ping-Payload"), None);
            assert_eq!(header(r, "X-SS-Connect-Data"), Some("2882400001"));
        }
    }

    let events = drain(&mut host);
    let expected = StreamConfig::parse_announce(EXAMPLE_ANNOUNCE).unwrap();
    assert_eq!(
        events,
        vec![Event::Announced(expected.clone()), Event::Play]
    );
    assert_eq!(host.stream_config(), Some(&expected));
    // Stereo with `Host: 0.0.0.0`: normal quality.
    assert!(!host.audio_high_quality());

    // Completed handshakes do not time out; a repeated PLAY is answered without a new event.
    host.handle_timeout(t0 + Duration::from_secs(3600));
    assert!(host.is_complete());
    let again = host.handle(parse(&wire_request(7)), t0 + Duration::from_secs(3600));
    assert_eq!(again.status, StatusCode::OK);
    assert!(drain(&mut host).is_empty());
}

#[test]
fn rust_client_against_host() {
    let t0 = origin();
    let mut host = MoonlightRtsp::new(params(), t0).unwrap();
    let mut want = StreamConfig::parse_announce(EXAMPLE_ANNOUNCE).unwrap();
    want.codec = VideoCodec::Av1; // not offered: the client falls back to H.264
    want.dynamic_range = DynamicRange::Hdr;
    let mut client = MoonlightClient::new(
        "rtsp://0.0.0.0:48010",
        "0.0.0.0",
        IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)),
        want,
    );
    let mut n = 0;
    while let Some(req) = client.next_request() {
        // Each request crosses a fresh "connection": bytes out, bytes in.
        let req = parse(&req.to_bytes());
        let resp = host.handle(req, t0);
        client.handle_response_bytes(&resp.to_bytes()).unwrap();
        n += 1;
    }
    assert_eq!(n, 7);
    assert!(client.is_complete() && host.is_complete());
    assert_eq!(client.session_id(), Some("DEADBEEFCAFE"));
    assert_eq!(client.ports(), StreamPorts::DEFAULT);
    assert_eq!(
        client.ping_payload(StreamKind::Audio).unwrap().as_str(),
        TOKEN
    );
    assert_eq!(
        client.ping_payload(StreamKind::Video).unwrap().as_bytes(),
        TOKEN.as_bytes()
    );
    assert_eq!(client.connect_data(), CONNECT_DATA);
    assert!(client.describe().unwrap().hevc);
    let Event::Announced(cfg) = host.poll_event().unwrap() else {
        panic!("expected Announced")
    };
    assert_eq!(cfg.codec, VideoCodec::H264);
    assert_eq!(cfg.dynamic_range, DynamicRange::Sdr);
    assert_eq!(&cfg, client.config());
    assert_eq!(host.poll_event(), Some(Event::Play));
    assert_eq!(
        client.handle_response(&Response::new(StatusCode::OK)),
        Err(ClientError::Complete)
    );
}

#[test]
fn client_request_shapes_match_the_reference() {
    let client = MoonlightClient::new(
        "rtsp://0.0.0.0:48010",
        "0.0.0.0",
        IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)),
        StreamConfig::parse_announce(EXAMPLE_ANNOUNCE).unwrap(),
    );
    assert_eq!(client.next_request().unwrap().to_bytes(), wire_request(1));
    // Drive the client with canned host answers and compare every request it writes.
    let mut client = client;
    let canned = [
        "RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n".to_owned(),
        "RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\nsprop-parameter-sets=AAAAAU\n".to_owned(),
        format!(
            "RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: DEADBEEFCAFE;timeout = 90\r\n\
             Transport: server_port=47998\r\nX-SS-Ping-Payload: {TOKEN}\r\n\r\n"
        ),
        "RTSP/1.0 200 OK\r\nCSeq: 4\r\nTransport: server_port=47998\r\n\r\n".to_owned(),
        "RTSP/1.0 200 OK\r\nCSeq: 5\r\nTransport: server_port=47999\r\n\r\n".to_owned(),
        "RTSP/1.0 200 OK\r\nCSeq: 6\r\n\r\n".to_owned(),
        "RTSP/1.0 200 OK\r\nCSeq: 7\r\n\r\n".to_owned(),
    ];
    for (i, answer) in canned.iter().enumerate() {
        let cseq = u32::try_from(i).unwrap() + 1;
        assert_eq!(
            String::from_utf8(client.next_request().unwrap().to_bytes()).unwrap(),
            String::from_utf8(wire_request(cseq)).unwrap(),
            "request {cseq}"
        );
        client.handle_response_bytes(answer.as_bytes()).unwrap();
    }
    assert!(client.next_request().is_none());
}

#[test]
fn client_rejects_what_moonlight_rejects() {
    let mk = || {
        MoonlightClient::new(
            "rtsp://0.0.0.0:48010",
            "0.0.0.0",
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            StreamConfig::parse_announce(EXAMPLE_ANNOUNCE).unwrap(),
        )
    };
    for bad in [
        &b"RTSP/1.0 200 OK\r\n\r\n"[..],
        b"RTSP/1.0 200\r\nCSeq: 1\r\n\r\n",
        b"RTSP/1.0 200 OK\r\nCSeq:1\r\n\r\n",
        b"RTSP/1.0 200 OK\r\nCSeq:  1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nCSeq: 1\r\n\r\n",
    ] {
        assert!(matches!(
            mk().handle_response_bytes(bad),
            Err(ClientError::Unparsable(_))
        ));
    }
    assert_eq!(
        mk().handle_response_bytes(b"RTSP/1.0 404 Not Found\r\nCSeq: 1\r\n\r\n"),
        Err(ClientError::Status(StatusCode::NOT_FOUND))
    );
    let mut c = mk();
    c.handle_response_bytes(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n")
        .unwrap();
    assert_eq!(
        c.handle_response_bytes(b"RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\n"),
        Err(ClientError::EmptyDescribe)
    );
    c.handle_response_bytes(b"RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\nx")
        .unwrap();
    assert_eq!(
        c.handle_response_bytes(b"RTSP/1.0 200 OK\r\nCSeq: 3\r\n\r\n"),
        Err(ClientError::MissingSession)
    );
}

fn req(method: Method, uri: &str, cseq: u32) -> Request {
    Request::new(method, uri).with_header("CSeq", cseq.to_string())
}

fn setup_all(host: &mut MoonlightRtsp, now: Instant) {
    for (i, kind) in [StreamKind::Audio, StreamKind::Video, StreamKind::Control]
        .into_iter()
        .enumerate()
    {
        let r = host.handle(req(Method::Setup, kind.uri(), 3 + i as u32), now);
        assert_eq!(r.status, StatusCode::OK);
    }
}

fn announce(body: &[u8]) -> Request {
    req(Method::Announce, "streamid=control/13/0", 6)
        .with_header("Session", "DEADBEEFCAFE")
        .with_body(body.to_vec())
}

/// Asserts the status, the CSeq echo and the matching `Rejected` event.
fn assert_rejected(
    host: &mut MoonlightRtsp,
    resp: &Response,
    status: StatusCode,
) -> HandshakeError {
    assert_eq!(resp.status, status);
    assert!(header(resp, "CSeq").is_some(), "error responses keep CSeq");
    assert_client_parsable(&resp.to_bytes());
    match host.poll_event() {
        Some(Event::Rejected { error, .. }) => {
            assert_eq!(error.status(), status);
            error
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[test]
fn out_of_order_requests_get_455_and_change_nothing() {
    let t = origin();
    let mut host = MoonlightRtsp::new(params(), t).unwrap();
    let s455 = StatusCode::METHOD_NOT_VALID_IN_THIS_STATE;

    let r = host.handle(req(Method::Setup, "streamid=audio/0/0", 1), t);
    let e = assert_rejected(&mut host, &r, s455);
    assert!(matches!(
        e,
        HandshakeError::OutOfOrder {
            method: Method::Setup,
            ..
        }
    ));
    let r = host.handle(req(Method::Play, "/", 2), t);
    assert_rejected(&mut host, &r, s455);
    let r = host.handle(announce(EXAMPLE_ANNOUNCE), t);
    assert_rejected(&mut host, &r, s455);

    assert_eq!(
        host.handle(req(Method::Describe, "rtsp://0.0.0.0:48010", 3), t)
            .status,
        StatusCode::OK
    );
    // ANNOUNCE with only audio set up.
    host.handle(req(Method::Setup, "streamid=audio/0/0", 4), t);
    let r = host.handle(announce(EXAMPLE_ANNOUNCE), t);
    assert_rejected(&mut host, &r, s455);
    let r = host.handle(req(Method::Play, "/", 5), t);
    assert_rejected(&mut host, &r, s455);
    setup_all(&mut host, t);
    assert_eq!(
        host.handle(announce(EXAMPLE_ANNOUNCE), t).status,
        StatusCode::OK
    );
    assert!(matches!(host.poll_event(), Some(Event::Announced(_))));
    // After ANNOUNCE: no second ANNOUNCE, SETUP or DESCRIBE.
    for r in [
        announce(EXAMPLE_ANNOUNCE),
        req(Method::Setup, "streamid=video/0/0", 7),
        req(Method::Describe, "/", 8),
    ] {
        let resp = host.handle(r, t);
        assert_rejected(&mut host, &resp, s455);
    }
    assert_eq!(
        host.handle(req(Method::Options, "*", 9), t).status,
        StatusCode::OK
    );
    assert_eq!(
        host.handle(req(Method::Play, "/", 10), t).status,
        StatusCode::OK
    );
    assert_eq!(host.poll_event(), Some(Event::Play));
    assert!(host.is_complete());
}

#[test]
fn unknown_methods_streams_sessions_and_versions() {
    let t = origin();
    let mut host = MoonlightRtsp::new(params(), t).unwrap();
    for m in ["TEARDOWN", "GET_PARAMETER", "FLY"] {
        let r = host.handle(req(Method::parse(m).unwrap(), "*", 1), t);
        let e = assert_rejected(&mut host, &r, StatusCode::NOT_IMPLEMENTED);
        assert!(matches!(e, HandshakeError::UnknownMethod(_)));
    }
    host.handle(req(Method::Describe, "/", 2), t);
    let r = host.handle(req(Method::Setup, "streamid=subtitles/0/0", 3), t);
    assert_eq!(header(&r, "CSeq"), Some("3"));
    assert_rejected(&mut host, &r, StatusCode::NOT_FOUND);
    let r = host.handle(
        req(Method::Setup, "streamid=video/0/0", 4).with_header("Session", "OTHER;timeout=90"),
        t,
    );
    assert_rejected(&mut host, &r, StatusCode::SESSION_NOT_FOUND);
    let mut v2 = parse(b"OPTIONS * RTSP/2.0\r\nCSeq: 5\r\n\r\n");
    let r = host.handle(v2.clone(), t);
    assert_rejected(&mut host, &r, StatusCode::VERSION_NOT_SUPPORTED);
    v2.version = howl_proto::rtsp::Version::RTSP_1_0;
    assert_eq!(host.handle(v2, t).status, StatusCode::OK);
    // Older SETUP target forms still resolve.
    assert_eq!(
        StreamKind::from_uri("rtsp://10.0.0.1:48010/streamid=audio"),
        Some(StreamKind::Audio)
    );
    assert_eq!(
        StreamKind::from_uri("streamid=control/1/0"),
        Some(StreamKind::Control)
    );
    assert_eq!(StreamKind::from_uri("/"), None);
}

#[test]
fn announce_is_checked_against_the_offer() {
    let t = origin();
    let ready = |p: MoonlightParams| {
        let mut host = MoonlightRtsp::new(p, t).unwrap();
        host.handle(req(Method::Describe, "/", 2), t);
        setup_all(&mut host, t);
        host
    };
    let example = String::from_utf8(EXAMPLE_ANNOUNCE.to_vec()).unwrap();
    let with = |from: &str, to: &str| example.replace(from, to).into_bytes();

    // Malformed or incomplete SDP: 400 with the SDP error inside.
    let mut host = ready(params());
    let r = host.handle(announce(&with("a=x-nv-video[0].maxFPS:60 \r\n", "")), t);
    let e = assert_rejected(&mut host, &r, StatusCode::BAD_REQUEST);
    assert_eq!(
        e,
        HandshakeError::Announce(SdpError::MissingAttribute("x-nv-video[0].maxFPS"))
    );
    let r = host.handle(announce(b"\xff\xfe garbage"), t);
    assert_rejected(&mut host, &r, StatusCode::BAD_REQUEST);

    // Codec / format not offered.
    let r = host.handle(announce(&with("bitStreamFormat:1", "bitStreamFormat:2")), t);
    let e = assert_rejected(&mut host, &r, StatusCode::BAD_REQUEST);
    assert!(matches!(
        e,
        HandshakeError::FormatNotOffered {
            codec: VideoCodec::Av1,
            ..
        }
    ));
    let r = host.handle(
        announce(&with("chromaSamplingType:0", "chromaSamplingType:1")),
        t,
    );
    let e = assert_rejected(&mut host, &r, StatusCode::BAD_REQUEST);
    assert!(matches!(
        e,
        HandshakeError::FormatNotOffered {
            chroma: ChromaSampling::Yuv444,
            ..
        }
    ));
    let h264_hdr = with("bitStreamFormat:1", "bitStreamFormat:0");
    let h264_hdr = String::from_utf8(h264_hdr)
        .unwrap()
        .replace("dynamicRangeMode:0", "dynamicRangeMode:1");
    let r = host.handle(announce(h264_hdr.as_bytes()), t);
    assert_rejected(&mut host, &r, StatusCode::BAD_REQUEST);

    // Audio layout not offered: 7.1 high quality without a high-quality line.
    let mut p = params();
    p.offer
        .surround
        .iter_mut()
        .for_each(|s| s.high_quality = None);
    let mut host = ready(p);
    let body = String::from_utf8(with("numChannels:2", "numChannels:8"))
        .unwrap()
        .replace("channelMask:3", "channelMask:1599")
        .replace("AudioQuality:0", "AudioQuality:1");
    let r = host.handle(announce(body.as_bytes()), t);
    let e = assert_rejected(&mut host, &r, StatusCode::BAD_REQUEST);
    assert_eq!(
        e,
        HandshakeError::AudioNotOffered {
            channels: 8,
            high_quality: true
        }
    );
    let body = body.replace("AudioQuality:1", "AudioQuality:0");
    assert_eq!(
        host.handle(announce(body.as_bytes()), t).status,
        StatusCode::OK
    );
    assert!(!host.audio_high_quality(), "7.1 at normal quality");

    // Encryption the host cannot do: 400; encryption policy not met: 403.
    let mut p = params();
    p.offer.encryption_supported = EncryptionFlags::CONTROL_V2;
    p.offer.encryption_requested = EncryptionFlags::CONTROL_V2;
    let mut host = ready(p);
    let r = host.handle(announce(EXAMPLE_ANNOUNCE), t);
    let e = assert_rejected(&mut host, &r, StatusCode::BAD_REQUEST);
    assert!(matches!(e, HandshakeError::EncryptionUnsupported { .. }));

    let mut p = params();
    p.encryption_required = EncryptionFlags::VIDEO;
    let mut host = ready(p);
    let r = host.handle(announce(EXAMPLE_ANNOUNCE), t);
    let e = assert_rejected(&mut host, &r, StatusCode::FORBIDDEN);
    assert!(matches!(e, HandshakeError::EncryptionRequired { .. }));
    let r = host.handle(
        announce(&with("encryptionEnabled:5", "encryptionEnabled:7")),
        t,
    );
    assert_eq!(r.status, StatusCode::OK);

    // nv feature flag 0x20 alone turns audio encryption on.
    let mut p = params();
    p.encryption_required = EncryptionFlags::AUDIO;
    let mut host = ready(p);
    let r = host.handle(
        announce(&with("encryptionEnabled:5", "encryptionEnabled:1")),
        t,
    );
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn deadline_closes_an_unfinished_handshake() {
    let t0 = origin();
    let mut host = MoonlightRtsp::new(params(), t0).unwrap();
    let deadline = host.deadline();
    host.handle(req(Method::Describe, "/", 1), t0);
    host.handle_timeout(deadline - Duration::from_millis(1));
    assert!(!host.is_closed());
    assert!(host.poll_event().is_none());
    host.handle_timeout(deadline);
    assert!(host.is_closed());
    assert_eq!(host.poll_event(), Some(Event::TimedOut));
    let r = host.handle(req(Method::Options, "*", 2), deadline);
    assert_rejected(&mut host, &r, StatusCode::SESSION_NOT_FOUND);
    // A late request also notices the deadline by itself.
    let mut host = MoonlightRtsp::new(params(), t0).unwrap();
    let r = host.handle(req(Method::Options, "*", 1), t0 + Duration::from_secs(31));
    assert_eq!(host.poll_event(), Some(Event::TimedOut));
    assert_rejected(&mut host, &r, StatusCode::SESSION_NOT_FOUND);
    // Abort after a failed session start.
    let mut host = MoonlightRtsp::new(params(), t0).unwrap();
    host.abort();
    let r = host.handle(req(Method::Options, "*", 1), t0);
    assert_rejected(&mut host, &r, StatusCode::SESSION_NOT_FOUND);
}

#[test]
fn malformed_requests_map_to_statuses() {
    let cases: [(&[u8], ParseError, StatusCode); 5] = [
        (
            b"OPTIONS\r\n\r\n",
            ParseError::BadStartLine,
            StatusCode::BAD_REQUEST,
        ),
        (
            b"GET / HTTP/1.1\r\nCSeq: 4\r\n\r\n",
            ParseError::BadVersion,
            StatusCode::VERSION_NOT_SUPPORTED,
        ),
        (
            b"OPTIONS * RTSP/1.0\r\nCSeq 4\r\n\r\n",
            ParseError::BadHeaderLine,
            StatusCode::BAD_REQUEST,
        ),
        (
            b"ANNOUNCE / RTSP/1.0\r\nCSeq: 4\r\nContent-Length: x\r\n\r\n",
            ParseError::BadContentLength,
            StatusCode::BAD_REQUEST,
        ),
        (
            b"ANNOUNCE / RTSP/1.0\r\nCSeq: 4\r\nContent-Length: 99999999\r\n\r\n",
            ParseError::BodyTooLarge {
                len: 99_999_999,
                max: 65_536,
            },
            StatusCode::REQUEST_ENTITY_TOO_LARGE,
        ),
    ];
    for (wire, err, status) in cases {
        let got = RequestParser::new().push(wire).unwrap_err();
        assert_eq!(got, err);
        let resp = Response::for_parse_error(&got, wire);
        assert_eq!(resp.status, status);
        assert_client_parsable(&resp.to_bytes());
        let want_cseq = if wire.windows(7).any(|w| w == b"CSeq: 4") {
            "4"
        } else {
            "0"
        };
        assert_eq!(header(&resp, "CSeq"), Some(want_cseq));
    }
}

#[test]
fn bad_params_are_refused() {
    let t = origin();
    let mut p = params();
    p.session_id = "DEAD;BEEF".into();
    assert!(matches!(
        MoonlightRtsp::new(p, t),
        Err(ConfigError::BadSessionId(_))
    ));
    let mut p = params();
    p.session_id = String::new();
    assert!(matches!(
        MoonlightRtsp::new(p, t),
        Err(ConfigError::BadSessionId(_))
    ));
    let mut p = params();
    p.offer.encryption_requested = EncryptionFlags::ALL;
    p.offer.encryption_supported = EncryptionFlags::CONTROL_V2;
    assert_eq!(
        MoonlightRtsp::new(p, t).unwrap_err(),
        ConfigError::BadEncryption
    );
    let mut p = params();
    p.offer.encryption_supported = EncryptionFlags(8);
    assert_eq!(
        MoonlightRtsp::new(p, t).unwrap_err(),
        ConfigError::BadEncryption
    );
    let mut p = params();
    p.ports.control = 0;
    assert_eq!(
        MoonlightRtsp::new(p, t).unwrap_err(),
        ConfigError::ZeroPort(StreamKind::Control)
    );
    let mut p = params();
    p.handshake_timeout = Duration::MAX;
    assert_eq!(
        MoonlightRtsp::new(p, t).unwrap_err(),
        ConfigError::BadTimeout
    );

    assert_eq!(
        PingPayload::from_ascii(TOKEN.as_bytes()).unwrap().as_str(),
        TOKEN
    );
    assert!(PingPayload::from_ascii(b"short").is_none());
    assert!(PingPayload::from_ascii(b"has space 123456").is_none());
}

#[test]
fn stereo_high_quality_follows_the_host_header() {
    let t = origin();
    for (base, host_header, hq) in [
        ("rtsp://0.0.0.0:48010", "0.0.0.0", false),
        ("rtsp://192.168.1.5:48010", "192.168.1.5", true),
        ("rtsp://[fe80::1]:48010", "fe80::1", true),
    ] {
        let mut host = MoonlightRtsp::new(params(), t).unwrap();
        let mut client = MoonlightClient::new(
            base,
            host_header,
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5)),
            StreamConfig::parse_announce(EXAMPLE_ANNOUNCE).unwrap(),
        );
        assert!(!host.audio_high_quality(), "nothing announced yet");
        while let Some(req) = client.next_request() {
            let raw = host.handle(parse(&req.to_bytes()), t).to_bytes();
            client.handle_response_bytes(&raw).unwrap();
        }
        assert!(host.is_complete());
        assert_eq!(host.audio_high_quality(), hq, "{base}");
    }
}
