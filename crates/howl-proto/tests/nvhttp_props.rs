//! Property tests: the NVHTTP parsers never panic on hostile input, and every encoder's output
//! decodes back to the same value (STYLE practice 11).
//!
//! Case counts: every parser of network input gets 100 000 generated inputs per test
//! (`PARSER_CASES`); the encode/decode round-trip properties use 20 000.

// Test helpers outside #[test] fns unwrap too: a panic here is a failed test, not a crash.
#![allow(clippy::unwrap_used)]

use howl_proto::nvhttp::{
    App, AppList, CancelResponse, DisplayMode, ErrorResponse, LaunchRequest, LaunchResponse,
    PairRequest, PairResponse, Query, ResumeResponse, ServerInfo, XmlDoc, XmlWriter,
};
use proptest::prelude::*;

const PARSER_CASES: u32 = 100_000;
const ROUND_TRIP_CASES: u32 = 20_000;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Applies up to a few byte-level edits (flip, overwrite, insert, delete, truncate).
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

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)
}

/// Characters that matter to a query parser, plus a few multi-byte ones.
fn query_text() -> impl Strategy<Value = String> {
    let alphabet: Vec<char> = "aZ09%&=+?-_.~ fF/\u{e9}\u{1f600}".chars().collect();
    prop::collection::vec(prop::sample::select(alphabet), 0..80)
        .prop_map(|chars| chars.into_iter().collect())
}

const PAIR_NAMES: &[&str] = &[
    "phrase",
    "salt",
    "clientcert",
    "clientchallenge",
    "serverchallengeresp",
    "clientpairingsecret",
    "uniqueid",
    "PHRASE",
    "x",
];
const PAIR_VALUES: &[&str] = &[
    "getservercert",
    "pairchallenge",
    "bogus",
    "",
    "0",
    "00",
    "0g",
    "abc",
    "000102030405060708090a0b0c0d0e0f",
    "000102030405060708090A0B0C0D0E0F000102030405060708090a0b0c0d0e0f",
    "2d2d2d2d2d",
];

fn hexish() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(PAIR_VALUES).prop_map(str::to_owned),
        prop::collection::vec(
            prop::sample::select(b"0123456789abcdefABCDEFxg ".to_vec()),
            0..80
        )
        .prop_map(|b| String::from_utf8(b).unwrap_or_default()),
    ]
}

fn pair_query() -> impl Strategy<Value = Query> {
    prop::collection::vec((prop::sample::select(PAIR_NAMES), hexish()), 0..6).prop_map(|params| {
        let mut q = Query::new();
        for (name, value) in params {
            q.push(name, value);
        }
        q
    })
}

const LAUNCH_NAMES: &[&str] = &[
    "appid",
    "mode",
    "rikey",
    "rikeyid",
    "localAudioPlayMode",
    "surroundAudioInfo",
    "sops",
    "hdrMode",
    "remoteControllersBitmap",
    "gcmap",
    "gcpersist",
    "corever",
];

fn launch_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        Just("1920x1080x60".to_owned()),
        Just("1920x1080".to_owned()),
        Just("000102030405060708090a0b0c0d0e0f".to_owned()),
        "[0-9x-]{0,12}",
    ]
}

fn sample_docs() -> Vec<Vec<u8>> {
    let info = ServerInfo {
        hostname: "den-pc".into(),
        app_version: "7.1.431.-1".into(),
        gfe_version: "3.23.0.74".into(),
        unique_id: "5C3D8E36".into(),
        https_port: 47984,
        external_port: Some(47989),
        external_ip: Some("203.0.113.5".into()),
        local_ip: "192.168.1.20".into(),
        mac: "00:00:00:00:00:00".into(),
        max_luma_pixels_hevc: 1_869_449_984,
        codec_mode_support: 197_377,
        paired: true,
        current_game: 881_448_767,
        display_modes: Some(vec![DisplayMode {
            width: 1920,
            height: 1080,
            refresh_rate: 60,
        }]),
    };
    let apps = AppList {
        apps: vec![
            App {
                id: 1,
                title: "A & <B>".into(),
                hdr_supported: true,
            },
            App {
                id: -5,
                title: String::new(),
                hdr_supported: false,
            },
        ],
    };
    let pair = PairResponse {
        paired: true,
        plaincert: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
        challenge_response: Some(vec![0xab; 48]),
        pairing_secret: None,
    };
    vec![
        info.to_xml().into_bytes(),
        apps.to_xml().into_bytes(),
        pair.to_xml().into_bytes(),
        LaunchResponse {
            session_url: "rtsp://192.168.1.20:48010".into(),
        }
        .to_xml()
        .into_bytes(),
        CancelResponse.to_xml().into_bytes(),
        ErrorResponse::launch_failed(-1, "Invalid")
            .to_xml()
            .into_bytes(),
        b"<root status_code=\"200\"><a>&amp;&#65;<![CDATA[x]]></a><!-- c --></root>".to_vec(),
    ]
}

/// Runs every typed decoder on a parsed document; none may panic.
fn decode_all(doc: &XmlDoc) {
    let _ = ServerInfo::from_xml(doc);
    let _ = AppList::from_xml(doc);
    let _ = PairResponse::from_xml(doc);
    let _ = LaunchResponse::from_xml(doc);
    let _ = ResumeResponse::from_xml(doc);
    let _ = CancelResponse::from_xml(doc);
    let _ = ErrorResponse::from_xml(doc);
}

proptest! {
    #![proptest_config(config(PARSER_CASES))]

    #[test]
    fn query_parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        let _ = Query::parse_bytes(&bytes);
    }

    #[test]
    fn query_parse_never_panics_and_reencodes(text in query_text()) {
        if let Ok(q) = Query::parse(&text) {
            let again = Query::parse(&q.to_query_string()).unwrap();
            prop_assert_eq!(again, q);
        }
    }

    #[test]
    fn xml_parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        if let Ok(doc) = XmlDoc::parse(&bytes) {
            decode_all(&doc);
        }
    }

    #[test]
    fn xml_parse_never_panics_on_mutated_documents(
        which in 0usize..7,
        edits in edits(),
    ) {
        let docs = sample_docs();
        let bytes = mutate(docs[which % docs.len()].clone(), &edits);
        if let Ok(doc) = XmlDoc::parse(&bytes) {
            decode_all(&doc);
        }
    }

    #[test]
    fn pair_request_decoding_never_panics(q in pair_query()) {
        if let Ok(req) = PairRequest::from_query(&q) {
            // Whatever decodes must re-encode to something that decodes the same way.
            prop_assert_eq!(PairRequest::from_query(&req.to_query()).unwrap(), req);
        }
    }

    #[test]
    fn pair_request_decoding_never_panics_on_raw_queries(text in query_text()) {
        if let Ok(q) = Query::parse(&text) {
            let _ = PairRequest::from_query(&q);
            let _ = LaunchRequest::from_query(&q);
        }
    }

    #[test]
    fn launch_request_decoding_never_panics(
        params in prop::collection::vec((prop::sample::select(LAUNCH_NAMES), launch_value()), 0..14),
    ) {
        let mut q = Query::new();
        for (name, value) in params {
            q.push(name, value);
        }
        if let Ok(req) = LaunchRequest::from_query(&q) {
            prop_assert_eq!(LaunchRequest::from_query(&req.to_query()).unwrap(), req);
        }
    }
}

proptest! {
    #![proptest_config(config(ROUND_TRIP_CASES))]

    #[test]
    fn xml_text_round_trips(text in any::<String>(), message in any::<String>()) {
        let mut w = XmlWriter::with_status(200, Some(&message));
        w.element("hostname", &text);
        let doc = XmlDoc::parse(w.finish().as_bytes()).unwrap();
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    '\t' | '\n' | '\r' => c,
                    '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
                    _ => c,
                })
                .collect()
        };
        prop_assert_eq!(doc.get("hostname").unwrap(), clean(&text));
        // Attribute values are normalised by XML (newlines/tabs become spaces); compare the rest.
        let expected: String = clean(&message)
            .chars()
            .map(|c| if matches!(c, '\t' | '\n' | '\r') { ' ' } else { c })
            .collect();
        let got: String = doc
            .status_message
            .unwrap()
            .chars()
            .map(|c| if matches!(c, '\t' | '\n' | '\r') { ' ' } else { c })
            .collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn query_round_trips(params in prop::collection::vec((any::<String>(), any::<String>()), 0..8)) {
        let mut q = Query::new();
        for (name, value) in &params {
            q.push(name.clone(), value.clone());
        }
        let parsed = Query::parse(&q.to_query_string()).unwrap();
        // Every pair survives, even an empty name with an empty value (encoded as `=`).
        let expected: Vec<_> = params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let got: Vec<_> = parsed.iter().collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn app_list_round_trips(
        apps in prop::collection::vec((any::<i32>(), any::<String>(), any::<bool>()), 0..5),
    ) {
        let list = AppList {
            apps: apps
                .into_iter()
                .filter(|(id, _, _)| *id != 0)
                .map(|(id, title, hdr_supported)| App {
                    id,
                    title: title.chars().filter(|c| !c.is_control() && !matches!(c, '\u{fffe}' | '\u{ffff}')).collect(),
                    hdr_supported,
                })
                .collect(),
        };
        let doc = XmlDoc::parse(list.to_xml().as_bytes()).unwrap();
        prop_assert_eq!(AppList::from_xml(&doc).unwrap(), list);
    }
}
