//! Property tests: the RTSP framing and the Moonlight handshake never panic on hostile input,
//! chunking never changes what the parser sees, and written requests parse back unchanged
//! (STYLE practice 11).

// Test helpers outside #[test] fns unwrap too: a panic here is a failed test, not a crash.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use howl_proto::rtsp::{
    Event, Incoming, Limits, Method, MoonlightClient, MoonlightParams, MoonlightRtsp, ParseError,
    PingPayload, Request, RequestParser, Response, ResponseParser, StatusCode, StreamPorts,
};
use howl_proto::sdp::{CodecSupport, EncryptionFlags, HostOffer, StreamConfig};
use proptest::prelude::*;

/// An arbitrary origin for the virtual clock; every later time is an offset from it, so the
/// value itself never matters (the one sanctioned clock read in these tests).
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

const PARSER_CASES: u32 = 100_000;
const ROUND_TRIP_CASES: u32 = 20_000;

/// Parsed once: the test client's configuration is not what is under test.
static EXAMPLE_CONFIG: LazyLock<StreamConfig> =
    LazyLock::new(|| StreamConfig::parse_announce(EXAMPLE_ANNOUNCE).unwrap());
const EXAMPLE_ANNOUNCE: &[u8] = include_bytes!("sdp_example_announce.sdp");

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Everything a parser produces for a byte stream delivered in `chunks` (sizes cycled; an
/// empty list means all at once): the items in order, then the first error if any.
fn feed(limits: Limits, data: &[u8], chunks: &[usize]) -> (Vec<Incoming>, Option<ParseError>) {
    let mut p = RequestParser::with_limits(limits);
    let mut items = Vec::new();
    let mut pos = 0;
    let mut sizes = chunks.iter().copied().cycle();
    loop {
        let n = if chunks.is_empty() {
            data.len() - pos
        } else {
            sizes.next().unwrap().min(data.len() - pos)
        };
        let mut input = &data[pos..pos + n];
        pos += n;
        // Drain everything complete before feeding more, as a server loop would.
        loop {
            match p.push_incoming(input) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => return (items, Some(e)),
            }
            input = &[];
        }
        if pos == data.len() {
            return (items, None);
        }
    }
}

/// Bytes that look enough like RTSP to get past the first line often.
fn rtsp_ish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"OPTIONS * RTSP/1.0\r\n".to_vec()),
        Just(b"ANNOUNCE streamid=control/13/0 RTSP/1.0\r\n".to_vec()),
        Just(b"CSeq: 1\r\n".to_vec()),
        Just(b"Content-length: 4\r\n".to_vec()),
        Just(b"Content-Length: 0\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"$\x00\x00\x03abc".to_vec()),
        Just(b": ".to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn small_limits() -> Limits {
    Limits {
        max_head: 96,
        max_body: 16,
        max_headers: 3,
    }
}

proptest! {
    #![proptest_config(config(PARSER_CASES))]

    /// Arbitrary bytes in arbitrary chunkings: no panic, and the same outcome as all at once.
    #[test]
    fn request_parser_is_chunking_invariant(
        data in prop_oneof![prop::collection::vec(any::<u8>(), 0..512), rtsp_ish()],
        chunks in prop::collection::vec(1usize..40, 0..16),
        small in any::<bool>(),
    ) {
        let limits = if small { small_limits() } else { Limits::default() };
        let whole = feed(limits, &data, &[]);
        let chunked = feed(limits, &data, &chunks);
        prop_assert_eq!(&whole, &chunked);
        let one_by_one = feed(limits, &data, &[1]);
        prop_assert_eq!(&whole, &one_by_one);
        for item in &whole.0 {
            if let Incoming::Request(r) = item {
                prop_assert!(r.body.len() <= limits.max_body);
                prop_assert!(r.headers.len() <= limits.max_headers);
                // Whatever parsed must be answerable with a well-formed response.
                let resp = Response::for_request(r, StatusCode::OK).to_bytes();
                prop_assert!(resp.starts_with(b"RTSP/1.0 200 OK\r\n"));
            }
        }
        if let Some(e) = &whole.1 {
            let _ = (e.fault(), e.status(), Response::for_parse_error(e, &data).to_bytes());
        }
    }

    /// The response side on arbitrary bytes: no panic in the incremental parser, the
    /// read-until-EOF parser or the Moonlight test client.
    #[test]
    fn response_parsers_never_panic(
        data in prop_oneof![prop::collection::vec(any::<u8>(), 0..512), rtsp_ish().prop_map(|mut v| {
            v.splice(0..0, b"RTSP/1.0 200 OK\r\n".iter().copied());
            v
        })],
        chunks in prop::collection::vec(1usize..40, 0..8),
        step in 0usize..8,
    ) {
        let mut p = ResponseParser::new();
        let mut sizes = chunks.iter().copied().cycle();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = if chunks.is_empty() { rest.len() } else { sizes.next().unwrap().min(rest.len()) };
            if p.push(&rest[..n]).is_err() {
                break;
            }
            rest = &rest[n..];
        }
        let _ = Response::parse_complete(&data);
        let mut client = MoonlightClient::new(
            "rtsp://0.0.0.0:48010",
            "0.0.0.0",
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            EXAMPLE_CONFIG.clone(),
        );
        for _ in 0..step {
            let ok = b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nSession: S\r\n\r\nx";
            let _ = client.handle_response_bytes(ok);
        }
        let _ = client.handle_response_bytes(&data);
        let _ = client.next_request();
    }
}

proptest! {
    #![proptest_config(config(ROUND_TRIP_CASES))]

    /// Requests we write parse back to the same request, however the bytes are split.
    #[test]
    fn written_requests_parse_back(
        method in prop_oneof![
            Just(Method::Options), Just(Method::Describe), Just(Method::Setup),
            Just(Method::Announce), Just(Method::Play), Just(Method::Teardown),
            "[A-Z_]{1,12}".prop_map(|m| Method::parse(&m).unwrap()),
        ],
        uri in "[!-~]{1,60}",
        headers in prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,20}", "[!-~]([ -~]{0,40}[!-~])?"), 0..10),
        body in prop::collection::vec(any::<u8>(), 0..300),
        chunks in prop::collection::vec(1usize..64, 0..8),
    ) {
        let mut req = Request::new(method, uri);
        for (n, v) in &headers {
            if !n.eq_ignore_ascii_case("content-length") {
                req.headers.append(n.clone(), v.clone());
            }
        }
        req.body = body;
        let wire = req.to_bytes();
        let (items, err) = feed(Limits::default(), &wire, &chunks);
        prop_assert_eq!(err, None);
        prop_assert_eq!(items.len(), 1);
        let Incoming::Request(back) = &items[0] else { panic!("not a request") };
        prop_assert_eq!(&back.method, &req.method);
        prop_assert_eq!(&back.uri, &req.uri);
        prop_assert_eq!(&back.body, &req.body);
        let mut expected: Vec<(String, String)> =
            req.headers.iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
        if !req.body.is_empty() {
            expected.push(("Content-length".into(), req.body.len().to_string()));
        }
        let got: Vec<(String, String)> =
            back.headers.iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
        prop_assert_eq!(got, expected);
    }
}

fn host_params() -> MoonlightParams {
    MoonlightParams {
        offer: HostOffer {
            codecs: CodecSupport {
                h264: true,
                hevc: true,
                av1: true,
                hdr: true,
                yuv444: true,
            },
            feature_flags: 3,
            encryption_supported: EncryptionFlags::ALL,
            encryption_requested: EncryptionFlags::CONTROL_V2,
            ref_pic_invalidation: false,
            surround: HostOffer::default_surround(),
        },
        ports: StreamPorts::DEFAULT,
        ping_payload: PingPayload::from_random([1, 2, 3, 4, 5, 6, 7, 8]),
        connect_data: 7,
        session_id: "DEADBEEFCAFE".into(),
        encryption_required: EncryptionFlags::NONE,
        handshake_timeout: Duration::from_secs(10),
    }
}

/// One request of a random sequence: method, target, session header and body choices.
fn any_request() -> impl Strategy<Value = Request> {
    let method = prop_oneof![
        Just(Method::Options),
        Just(Method::Describe),
        Just(Method::Setup),
        Just(Method::Announce),
        Just(Method::Play),
        Just(Method::Teardown),
        Just(Method::Other("X".into())),
    ];
    let uri = prop_oneof![
        Just("streamid=audio/0/0".to_owned()),
        Just("streamid=video/0/0".to_owned()),
        Just("streamid=control/13/0".to_owned()),
        Just("/".to_owned()),
        "[ -~]{0,30}",
    ];
    let session = prop_oneof![
        Just(None),
        Just(Some("DEADBEEFCAFE".to_owned())),
        "[ -~]{0,20}".prop_map(Some),
    ];
    let body = prop_oneof![
        Just(Vec::new()),
        Just(EXAMPLE_ANNOUNCE.to_vec()),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| {
            let mut v = EXAMPLE_ANNOUNCE.to_vec();
            let i = i % v.len();
            v[i] = b;
            v
        }),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    (method, uri, session, body, any::<Option<u32>>()).prop_map(
        |(method, uri, session, body, cseq)| {
            let mut r = Request::new(method, uri).with_body(body);
            if let Some(c) = cseq {
                r.headers.append("CSeq", c.to_string());
            }
            if let Some(s) = session {
                r.headers.append("Session", s);
            }
            r
        },
    )
}

proptest! {
    #![proptest_config(config(PARSER_CASES))]

    /// Random request sequences and clock jumps: no panic, CSeq always echoed, every refusal
    /// reported, and `Announced`/`Play` each at most once and in that order.
    #[test]
    fn handshake_survives_any_request_sequence(
        reqs in prop::collection::vec((any_request(), 0u64..4_000), 0..12),
    ) {
        let t0 = origin();
        let mut host = MoonlightRtsp::new(host_params(), t0).unwrap();
        let mut now = t0;
        let mut events = Vec::new();
        for (req, advance_ms) in reqs {
            now += Duration::from_millis(advance_ms);
            let cseq = req.cseq().map(str::to_owned);
            let resp = host.handle(req, now);
            prop_assert_eq!(resp.headers.get("CSeq").map(str::to_owned), cseq);
            let fresh: Vec<Event> = std::iter::from_fn(|| host.poll_event()).collect();
            let rejected = fresh.iter().filter(|e| matches!(e, Event::Rejected { .. })).count();
            prop_assert_eq!(rejected, usize::from(!resp.status.is_success()));
            events.extend(fresh);
        }
        let announced = events.iter().position(|e| matches!(e, Event::Announced(_)));
        let play = events.iter().position(|e| *e == Event::Play);
        prop_assert!(events.iter().filter(|e| matches!(e, Event::Announced(_))).count() <= 1);
        prop_assert!(events.iter().filter(|e| **e == Event::Play).count() <= 1);
        if let Some(p) = play {
            prop_assert!(announced.is_some_and(|a| a < p));
            prop_assert!(host.is_complete());
        }
    }
}
