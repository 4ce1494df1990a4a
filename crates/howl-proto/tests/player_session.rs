//! The player RTSP state machine driven the way ffmpeg, VLC and GStreamer drive it: happy paths
//! over UDP and interleaved TCP, authentication, every error status, and the deadlines.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use howl_proto::player::rtp::RtpParams;
use howl_proto::player::{
    Action, AudioTrack, DescribeRefusal, EndReason, Handled, OpusChannels, ParameterSets,
    PlayerConfig, PlayerSession, StreamDescription, StreamTarget, Track, TrackSetup, Transport,
    UdpPorts, VideoCodec, VideoTrack, interleaved,
};
use howl_proto::rtsp::{Incoming, Request, RequestParser, Response};
use md5::{Digest, Md5};

/// The one sanctioned clock read: an arbitrary origin for virtual time.
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

const VIDEO_RTP: RtpParams = RtpParams {
    ssrc: 0x0102_0304,
    initial_sequence: 1000,
    initial_timestamp: 90_000,
};
const AUDIO_RTP: RtpParams = RtpParams {
    ssrc: 0xa0b0_c0d0,
    initial_sequence: 2000,
    initial_timestamp: 48_000,
};
const SID: &str = "S3ss10nId";
const NONCE: &str = "n0nce42";
const URL: &str = "rtsp://host:8554/app/Desktop?fps=60";
const BASE: &str = "rtsp://host:8554/app/Desktop/";

fn config(udp: bool) -> PlayerConfig {
    let mut c = PlayerConfig::new(SID, NONCE, VIDEO_RTP, AUDIO_RTP);
    if udp {
        c.video_udp = Some(UdpPorts {
            rtp: 6970,
            rtcp: 6971,
        });
        c.audio_udp = Some(UdpPorts {
            rtp: 6972,
            rtcp: 6973,
        });
    }
    c
}

fn description() -> StreamDescription {
    StreamDescription {
        session_name: "Desktop".into(),
        video: Some(VideoTrack {
            codec: VideoCodec::H264,
            parameter_sets: ParameterSets {
                vps: None,
                sps: Some(vec![0x67, 0x42, 0xc0, 0x1f]),
                pps: Some(vec![0x68, 0xce]),
            },
            framerate: Some(60),
        }),
        audio: Some(AudioTrack {
            channels: OpusChannels::Stereo,
        }),
    }
}

/// Parses request text (with `\n` line ends, as a test reads best) like the server would.
fn req(text: &str) -> Request {
    let wire = text.replace('\n', "\r\n") + "\r\n";
    RequestParser::new().push(wire.as_bytes()).unwrap().unwrap()
}

fn reply(h: Handled) -> (Response, Vec<Action>) {
    match h {
        Handled::Reply { response, actions } => (response, actions),
        Handled::Describe(q) => panic!("unexpected describe {q:?}"),
    }
}

fn status(h: Handled) -> u16 {
    reply(h).0.status.0
}

/// DESCRIBE, answered with the description and no authentication.
fn described(s: &mut PlayerSession, now: Instant) {
    let Handled::Describe(q) = s.handle(req(&format!("DESCRIBE {URL} RTSP/1.0\nCSeq: 2\n")), now)
    else {
        panic!("describe expected")
    };
    let resp = s.complete_describe(q, Ok(description()));
    assert_eq!(resp.status.0, 200);
}

fn setup_udp(s: &mut PlayerSession, now: Instant) {
    described(s, now);
    let (resp, _) = reply(s.handle(
        req(&format!(
            "SETUP {BASE}trackID=0 RTSP/1.0\nCSeq: 3\nTransport: RTP/AVP;unicast;client_port=5000-5001\n"
        )),
        now,
    ));
    assert_eq!(resp.status.0, 200);
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

#[test]
fn udp_happy_path_with_digest_auth() {
    let t0 = origin();
    let mut s = PlayerSession::new(config(true), t0).unwrap();

    let (resp, _) = reply(s.handle(
        req("OPTIONS rtsp://host:8554/app/Desktop RTSP/1.0\nCSeq: 1\n"),
        t0,
    ));
    assert_eq!(resp.status.0, 200);
    assert_eq!(resp.headers.get("CSeq"), Some("1"));
    assert!(
        resp.headers
            .get("Public")
            .unwrap()
            .contains("GET_PARAMETER")
    );

    // No credentials: the server refuses, the session challenges with both schemes.
    let Handled::Describe(q) = s.handle(
        req(&format!(
            "DESCRIBE {URL} RTSP/1.0\nCSeq: 2\nAccept: application/sdp\n"
        )),
        t0,
    ) else {
        panic!("describe expected")
    };
    assert_eq!(
        q.path.target,
        StreamTarget::App {
            name: "Desktop".into(),
            video: howl_proto::player::VideoRequest {
                fps: Some(60),
                ..Default::default()
            }
        }
    );
    assert!(q.credentials.is_none());
    assert_eq!(q.authorize([(1, "secret")]), None);
    let resp = s.complete_describe(q, Err(DescribeRefusal::Unauthorized));
    assert_eq!(resp.status.0, 401);
    let challenges: Vec<&str> = resp.headers.get_all("WWW-Authenticate").collect();
    assert_eq!(
        challenges,
        vec![
            r#"Digest realm="howl", nonce="n0nce42", algorithm=MD5"#,
            r#"Basic realm="howl""#
        ]
    );

    // ffmpeg answers the Digest challenge (RFC 2069 form, uri = the request URL).
    let ha1 = md5_hex("viewer:howl:secret");
    let ha2 = md5_hex(&format!("DESCRIBE:{URL}"));
    let response = md5_hex(&format!("{ha1}:{NONCE}:{ha2}"));
    let auth = format!(
        r#"Digest username="viewer", realm="howl", nonce="{NONCE}", uri="{URL}", response="{response}""#
    );
    let Handled::Describe(q) = s.handle(
        req(&format!(
            "DESCRIBE {URL} RTSP/1.0\nCSeq: 3\nAuthorization: {auth}\n"
        )),
        t0,
    ) else {
        panic!("describe expected")
    };
    assert_eq!(q.username(), Some("viewer"));
    assert_eq!(q.authorize([("a", "wrong"), ("b", "secret")]), Some("b"));
    let resp = s.complete_describe(q, Ok(description()));
    assert_eq!(resp.status.0, 200);
    assert_eq!(resp.headers.get("CSeq"), Some("3"));
    assert_eq!(resp.headers.get("Content-Base"), Some(BASE));
    assert_eq!(resp.headers.get("Content-Type"), Some("application/sdp"));
    let sdp = String::from_utf8(resp.body.clone()).unwrap();
    assert!(sdp.contains("a=control:trackID=0\r\n") && sdp.contains("opus/48000/2"));
    assert!(!resp.headers.contains("Session"), "no session before SETUP");

    let (resp, actions) = reply(s.handle(
        req(&format!(
            "SETUP {BASE}trackID=0 RTSP/1.0\nCSeq: 4\nTransport: RTP/AVP/UDP;unicast;client_port=5000-5001\n"
        )),
        t0,
    ));
    assert_eq!(resp.status.0, 200);
    assert!(actions.is_empty());
    assert_eq!(resp.headers.get("Session"), Some("S3ss10nId;timeout=60"));
    assert_eq!(
        resp.headers.get("Transport"),
        Some("RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971;ssrc=01020304")
    );
    let (resp, _) = reply(s.handle(
        req(&format!(
            "SETUP {BASE}trackID=1 RTSP/1.0\nCSeq: 5\nSession: {SID}\nTransport: RTP/AVP;unicast;client_port=5002\n"
        )),
        t0,
    ));
    assert_eq!(
        resp.headers.get("Transport"),
        Some("RTP/AVP;unicast;client_port=5002-5003;server_port=6972-6973;ssrc=A0B0C0D0")
    );

    let (resp, actions) = reply(s.handle(
        req(&format!(
            "PLAY {BASE} RTSP/1.0\nCSeq: 6\nSession: {SID}\nRange: npt=0.000-\n"
        )),
        t0,
    ));
    assert_eq!(resp.status.0, 200);
    assert_eq!(
        resp.headers.get("RTP-Info"),
        Some(
            "url=rtsp://host:8554/app/Desktop/trackID=0;seq=1000;rtptime=90000,\
             url=rtsp://host:8554/app/Desktop/trackID=1;seq=2000;rtptime=48000"
        )
    );
    assert_eq!(
        actions,
        vec![Action::StartPlaying {
            tracks: vec![
                TrackSetup {
                    track: Track::Video,
                    transport: Transport::Udp {
                        client_rtp: 5000,
                        client_rtcp: 5001,
                        server: UdpPorts {
                            rtp: 6970,
                            rtcp: 6971
                        }
                    },
                    rtp: VIDEO_RTP,
                    payload_type: 96,
                },
                TrackSetup {
                    track: Track::Audio,
                    transport: Transport::Udp {
                        client_rtp: 5002,
                        client_rtcp: 5003,
                        server: UdpPorts {
                            rtp: 6972,
                            rtcp: 6973
                        }
                    },
                    rtp: AUDIO_RTP,
                    payload_type: 97,
                }
            ]
        }]
    );
    assert!(s.is_playing());

    let (resp, _) = reply(s.handle(
        req(&format!(
            "GET_PARAMETER {BASE} RTSP/1.0\nCSeq: 7\nSession: {SID}\n"
        )),
        t0,
    ));
    assert_eq!(resp.status.0, 200);
    assert_eq!(resp.headers.get("Session"), Some("S3ss10nId;timeout=60"));

    let (resp, actions) = reply(s.handle(
        req(&format!(
            "TEARDOWN {BASE} RTSP/1.0\nCSeq: 8\nSession: {SID}\n"
        )),
        t0,
    ));
    assert_eq!(resp.status.0, 200);
    assert_eq!(actions, vec![Action::End(EndReason::Teardown)]);
    assert_eq!(s.ended(), Some(EndReason::Teardown));
    assert_eq!(s.deadline(), None);
    assert_eq!(
        status(s.handle(
            req(&format!("PLAY {BASE} RTSP/1.0\nCSeq: 9\nSession: {SID}\n")),
            t0
        )),
        454
    );
}

#[test]
fn tcp_interleaved_happy_path_with_basic_auth() {
    let t0 = origin();
    // No UDP ports: only interleaved is possible.
    let mut s = PlayerSession::new(config(false), t0).unwrap();
    let Handled::Describe(q) = s.handle(
        req("DESCRIBE rtsp://h/lobby/Friday%20night RTSP/1.0\nCSeq: 1\nAuthorization: Basic dXNlcjp0b2tlbg==\n"),
        t0,
    ) else {
        panic!("describe expected")
    };
    assert_eq!(
        q.path.target,
        StreamTarget::Lobby {
            name: "Friday night".into()
        }
    );
    assert_eq!(q.authorize([(7u32, "token")]), Some(7));
    assert_eq!(q.authorize([(7u32, "nope")]), None);
    let resp = s.complete_describe(q, Ok(description()));
    assert_eq!(
        resp.headers.get("Content-Base"),
        Some("rtsp://h/lobby/Friday%20night/")
    );

    // UDP is refused (no server ports), so GStreamer-style fallback lists pick TCP.
    assert_eq!(
        status(s.handle(
            req("SETUP rtsp://h/lobby/Friday%20night/trackID=0 RTSP/1.0\nCSeq: 2\nTransport: RTP/AVP;unicast;client_port=5000-5001\n"),
            t0
        )),
        461
    );
    let (resp, _) = reply(s.handle(
        req("SETUP rtsp://h/lobby/Friday%20night/trackID=0 RTSP/1.0\nCSeq: 3\nTransport: RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/TCP;unicast;interleaved=0-1;mode=\"PLAY\"\n"),
        t0,
    ));
    assert_eq!(resp.status.0, 200);
    assert_eq!(
        resp.headers.get("Transport"),
        Some("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=01020304")
    );
    // Colliding channels are refused; without interleaved= the track's default pair is used.
    assert_eq!(
        status(s.handle(
            req(&format!("SETUP rtsp://h/lobby/Friday%20night/trackID=1 RTSP/1.0\nCSeq: 4\nSession: {SID}\nTransport: RTP/AVP/TCP;unicast;interleaved=1-2\n")),
            t0
        )),
        461
    );
    let (resp, _) = reply(s.handle(
        req(&format!("SETUP rtsp://h/lobby/Friday%20night/trackID=1 RTSP/1.0\nCSeq: 5\nSession: {SID}\nTransport: RTP/AVP/TCP;unicast\n")),
        t0,
    ));
    assert_eq!(
        resp.headers.get("Transport"),
        Some("RTP/AVP/TCP;unicast;interleaved=2-3;ssrc=A0B0C0D0")
    );
    assert_eq!(s.track_for_channel(3), Some(Track::Audio));
    assert_eq!(s.track_for_channel(0), Some(Track::Video));
    assert_eq!(s.track_for_channel(4), None);

    let (_, actions) = reply(s.handle(
        req(&format!(
            "PLAY rtsp://h/lobby/Friday%20night/ RTSP/1.0\nCSeq: 6\nSession: {SID}\n"
        )),
        t0,
    ));
    let [Action::StartPlaying { tracks }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        tracks[1].transport,
        Transport::Interleaved {
            rtp_channel: 2,
            rtcp_channel: 3
        }
    );

    // Receiver reports arrive interleaved on the RTCP channels and keep the session alive.
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 9];
    let t50 = t0 + Duration::from_secs(50);
    assert!(!s.on_interleaved(2, &rr, t50), "RTP channel is not RTCP");
    assert!(s.on_interleaved(3, &rr, t50));
    assert_eq!(s.poll_timeout(t0 + Duration::from_secs(100)), None);
    assert_eq!(
        s.poll_timeout(t50 + Duration::from_secs(60)),
        Some(EndReason::KeepAliveTimeout)
    );

    // The same bytes through the interleaved decoder, as the I/O layer would see them.
    let mut wire = format!("GET_PARAMETER rtsp://h/ RTSP/1.0\r\nCSeq: 7\r\nSession: {SID}\r\n\r\n")
        .into_bytes();
    interleaved::write_frame(3, &rr, &mut wire).unwrap();
    let mut d = howl_proto::player::InterleavedDecoder::new();
    d.feed(&wire);
    assert!(matches!(d.next().unwrap(), Some(Incoming::Request(_))));
    assert_eq!(
        d.next().unwrap(),
        Some(Incoming::Interleaved {
            channel: 3,
            data: rr.to_vec()
        })
    );
}

#[test]
fn pause_and_resume() {
    let t0 = origin();
    let mut s = PlayerSession::new(config(true), t0).unwrap();
    setup_udp(&mut s, t0);
    let play = req(&format!("PLAY {BASE} RTSP/1.0\nCSeq: 4\nSession: {SID}\n"));
    let pause = req(&format!("PAUSE {BASE} RTSP/1.0\nCSeq: 5\nSession: {SID}\n"));
    assert!(matches!(
        reply(s.handle(play.clone(), t0)).1.as_slice(),
        [Action::StartPlaying { .. }]
    ));
    assert_eq!(reply(s.handle(pause.clone(), t0)).1, vec![Action::Pause]);
    assert_eq!(reply(s.handle(pause, t0)).1, vec![]);
    let (resp, actions) = reply(s.handle(play.clone(), t0));
    assert_eq!(actions, vec![Action::Resume]);
    assert!(!resp.headers.contains("RTP-Info"));
    assert_eq!(reply(s.handle(play, t0)).1, vec![]);
}

#[test]
fn error_statuses() {
    let t0 = origin();
    let fresh = || PlayerSession::new(config(true), t0).unwrap();

    // 455: SETUP before DESCRIBE; DESCRIBE after SETUP; SETUP after PLAY.
    let setup0 = |cseq: u32, session: bool| {
        let sess = if session {
            format!("Session: {SID}\n")
        } else {
            String::new()
        };
        req(&format!(
            "SETUP {BASE}trackID=0 RTSP/1.0\nCSeq: {cseq}\n{sess}Transport: RTP/AVP;unicast;client_port=5000-5001\n"
        ))
    };
    assert_eq!(status(fresh().handle(setup0(1, false), t0)), 455);
    let mut s = fresh();
    setup_udp(&mut s, t0);
    assert_eq!(
        status(s.handle(req(&format!("DESCRIBE {URL} RTSP/1.0\nCSeq: 9\n")), t0)),
        455
    );
    reply(s.handle(
        req(&format!("PLAY {BASE} RTSP/1.0\nCSeq: 10\nSession: {SID}\n")),
        t0,
    ));
    assert_eq!(status(s.handle(setup0(11, true), t0)), 455);

    // 454: a Session header before any SETUP, a wrong id, PLAY without Session.
    let mut s = fresh();
    assert_eq!(
        status(s.handle(
            req(&format!("OPTIONS * RTSP/1.0\nCSeq: 1\nSession: {SID}\n")),
            t0
        )),
        454
    );
    setup_udp(&mut s, t0);
    assert_eq!(
        status(s.handle(
            req("PLAY rtsp://h/ RTSP/1.0\nCSeq: 4\nSession: other\n"),
            t0
        )),
        454
    );
    assert_eq!(
        status(s.handle(req("PLAY rtsp://h/ RTSP/1.0\nCSeq: 5\n"), t0)),
        454
    );
    assert_eq!(
        status(s.handle(req("PAUSE rtsp://h/ RTSP/1.0\nCSeq: 6\n"), t0)),
        454
    );
    // A refused request does not break the session.
    assert_eq!(
        status(s.handle(
            req(&format!(
                "PLAY rtsp://h/ RTSP/1.0\nCSeq: 7\nSession: {SID};timeout=60\n"
            )),
            t0
        )),
        200
    );

    // 461: multicast only; unknown profile; bad client_port.
    let mut s = fresh();
    described(&mut s, t0);
    for transport in [
        "RTP/AVP;multicast;port=5000-5001",
        "RTP/SAVP;unicast;client_port=5000-5001",
        "RTP/AVP;unicast;client_port=0-1",
        "RTP/AVP;unicast;client_port=abc",
        "RTP/AVP;unicast",
        "RTP/AVP;unicast;client_port=5000-5001;mode=record",
        "RTP/AVP/TCP;unicast;interleaved=4-4",
    ] {
        let r = req(&format!(
            "SETUP {BASE}trackID=0 RTSP/1.0\nCSeq: 3\nTransport: {transport}\n"
        ));
        assert_eq!(status(s.handle(r, t0)), 461, "{transport}");
    }
    // 400: no Transport header.
    assert_eq!(
        status(s.handle(
            req(&format!("SETUP {BASE}trackID=0 RTSP/1.0\nCSeq: 3\n")),
            t0
        )),
        400
    );
    // 404: unknown track, or a track the description lacks.
    assert_eq!(
        status(s.handle(
            req(&format!(
                "SETUP {BASE}trackID=7 RTSP/1.0\nCSeq: 3\nTransport: RTP/AVP/TCP;unicast\n"
            )),
            t0
        )),
        404
    );
    assert_eq!(
        status(s.handle(
            req(&format!(
                "SETUP {BASE}stream=0 RTSP/1.0\nCSeq: 3\nTransport: RTP/AVP/TCP;unicast\n"
            )),
            t0
        )),
        404
    );
    let mut s = fresh();
    let Handled::Describe(q) = s.handle(req(&format!("DESCRIBE {URL} RTSP/1.0\nCSeq: 2\n")), t0)
    else {
        panic!()
    };
    let mut video_only = description();
    video_only.audio = None;
    s.complete_describe(q, Ok(video_only));
    assert_eq!(
        status(s.handle(
            req(&format!(
                "SETUP {BASE}trackID=1 RTSP/1.0\nCSeq: 3\nTransport: RTP/AVP/TCP;unicast\n"
            )),
            t0
        )),
        404
    );

    // DESCRIBE: 404 / 400 from the path without asking the server; refusals from the server.
    let mut s = fresh();
    assert_eq!(
        status(s.handle(
            req("DESCRIBE rtsp://h/nothing/here RTSP/1.0\nCSeq: 1\n"),
            t0
        )),
        404
    );
    assert_eq!(
        status(s.handle(
            req("DESCRIBE rtsp://h/app/x?fps=9999 RTSP/1.0\nCSeq: 2\n"),
            t0
        )),
        400
    );
    for (refusal, code) in [
        (DescribeRefusal::NotFound, 404),
        (DescribeRefusal::Forbidden, 403),
        (DescribeRefusal::Unavailable, 503),
    ] {
        let Handled::Describe(q) =
            s.handle(req(&format!("DESCRIBE {URL} RTSP/1.0\nCSeq: 3\n")), t0)
        else {
            panic!()
        };
        let resp = s.complete_describe(q, Err(refusal));
        assert_eq!(resp.status.0, code);
        assert!(!resp.headers.contains("WWW-Authenticate"));
    }
    // Anything while a DESCRIBE is with the server.
    let Handled::Describe(q) = s.handle(req(&format!("DESCRIBE {URL} RTSP/1.0\nCSeq: 4\n")), t0)
    else {
        panic!()
    };
    assert_eq!(
        status(s.handle(req("OPTIONS * RTSP/1.0\nCSeq: 5\n"), t0)),
        455
    );
    assert_eq!(
        s.complete_describe(q.clone(), Ok(description())).status.0,
        200
    );
    assert_eq!(
        s.complete_describe(q, Ok(description())).status.0,
        455,
        "answered twice"
    );

    // 505, 501, 405, 551.
    let mut s = fresh();
    assert_eq!(
        status(s.handle(req("OPTIONS * RTSP/2.0\nCSeq: 1\n"), t0)),
        505
    );
    assert_eq!(status(s.handle(req("FROB * RTSP/1.0\nCSeq: 2\n"), t0)), 501);
    let (resp, _) = reply(s.handle(req("RECORD * RTSP/1.0\nCSeq: 3\n"), t0));
    assert_eq!(resp.status.0, 405);
    assert!(resp.headers.contains("Allow"));
    let (resp, _) = reply(s.handle(
        req("OPTIONS * RTSP/1.0\nCSeq: 4\nRequire: implicit-play\n"),
        t0,
    ));
    assert_eq!(resp.status.0, 551);
    assert_eq!(resp.headers.get("Unsupported"), Some("implicit-play"));
}

#[test]
fn keepalive_deadline() {
    let t0 = origin();
    let secs = |n| t0 + Duration::from_secs(n);
    let mut s = PlayerSession::new(config(true), t0).unwrap();
    setup_udp(&mut s, t0);
    reply(s.handle(
        req(&format!("PLAY {BASE} RTSP/1.0\nCSeq: 4\nSession: {SID}\n")),
        secs(1),
    ));
    assert_eq!(s.deadline(), Some(secs(61)));
    assert_eq!(s.poll_timeout(secs(60)), None);
    // GET_PARAMETER and OPTIONS refresh.
    reply(s.handle(
        req(&format!(
            "GET_PARAMETER {BASE} RTSP/1.0\nCSeq: 5\nSession: {SID}\n"
        )),
        secs(30),
    ));
    reply(s.handle(
        req(&format!(
            "OPTIONS {BASE} RTSP/1.0\nCSeq: 6\nSession: {SID}\n"
        )),
        secs(55),
    ));
    assert_eq!(s.deadline(), Some(secs(115)));
    // UDP RTCP refreshes; garbage and BYE do not.
    assert!(s.on_rtcp(&[0x80, 201, 0, 1, 0, 0, 0, 9], secs(100)));
    assert!(!s.on_rtcp(b"hello", secs(150)));
    assert!(!s.on_rtcp(&[0x80, 203, 0, 1, 0, 0, 0, 9], secs(150)));
    assert_eq!(s.deadline(), Some(secs(160)));
    assert_eq!(s.poll_timeout(secs(160)), Some(EndReason::KeepAliveTimeout));
    assert_eq!(s.poll_timeout(secs(161)), None, "reported once");
    assert_eq!(s.ended(), Some(EndReason::KeepAliveTimeout));
}

#[test]
fn idle_connection_and_late_request() {
    let t0 = origin();
    let mut s = PlayerSession::new(config(true), t0).unwrap();
    // A connection that never says anything ends after the session timeout too.
    assert_eq!(s.deadline(), Some(t0 + Duration::from_secs(60)));
    // A request arriving after the deadline ends the session rather than reviving it.
    let (resp, actions) = reply(s.handle(
        req("OPTIONS * RTSP/1.0\nCSeq: 1\n"),
        t0 + Duration::from_secs(61),
    ));
    assert_eq!(resp.status.0, 454);
    assert_eq!(actions, vec![Action::End(EndReason::KeepAliveTimeout)]);
}

#[test]
fn never_played_deadline() {
    let t0 = origin();
    let secs = |n| t0 + Duration::from_secs(n);
    let mut s = PlayerSession::new(config(true), t0).unwrap();
    setup_udp(&mut s, secs(5));
    // Keep-alives do not extend the SETUP -> PLAY deadline.
    reply(s.handle(
        req(&format!(
            "GET_PARAMETER {BASE} RTSP/1.0\nCSeq: 5\nSession: {SID}\n"
        )),
        secs(20),
    ));
    assert_eq!(s.deadline(), Some(secs(25)));
    assert_eq!(s.poll_timeout(secs(24)), None);
    assert_eq!(s.poll_timeout(secs(25)), Some(EndReason::NeverPlayed));

    // PLAY in time lifts it.
    let mut s = PlayerSession::new(config(true), t0).unwrap();
    setup_udp(&mut s, secs(5));
    reply(s.handle(
        req(&format!("PLAY {BASE} RTSP/1.0\nCSeq: 4\nSession: {SID}\n")),
        secs(10),
    ));
    assert_eq!(s.deadline(), Some(secs(70)));

    // A shorter configured play timeout.
    let mut c = config(true);
    c.play_timeout = Duration::from_secs(2);
    let mut s = PlayerSession::new(c, t0).unwrap();
    setup_udp(&mut s, t0);
    assert_eq!(s.poll_timeout(secs(2)), Some(EndReason::NeverPlayed));
}

#[test]
fn config_validation() {
    let t0 = origin();
    let mut c = config(true);
    c.session_id = "short".into();
    assert!(PlayerSession::new(c, t0).is_err());
    let mut c = config(true);
    c.session_id = "has;semicolon".into();
    assert!(PlayerSession::new(c, t0).is_err());
    let mut c = config(true);
    c.nonce = "a\"b".into();
    assert!(PlayerSession::new(c, t0).is_err());
    let mut c = config(true);
    c.session_timeout = Duration::ZERO;
    assert!(PlayerSession::new(c, t0).is_err());
}

#[test]
fn describe_query_does_not_leak_the_token() {
    let t0 = origin();
    let mut s = PlayerSession::new(config(false), t0).unwrap();
    let Handled::Describe(q) = s.handle(
        req("DESCRIBE rtsp://h/app/x RTSP/1.0\nCSeq: 1\nAuthorization: Basic dXNlcjp0b2tlbg==\n"),
        t0,
    ) else {
        panic!("describe expected")
    };
    let debug = format!("{q:?}");
    assert!(
        !debug.contains("dXNlcjp0b2tlbg") && !debug.contains("token"),
        "{debug}"
    );
    assert_eq!(q.authorize([((), "token")]), Some(()));
}

#[test]
fn without_digest_the_challenge_is_basic_only() {
    let t0 = origin();
    let mut c = config(false);
    c.offer_digest = false;
    let mut s = PlayerSession::new(c, t0).unwrap();
    let Handled::Describe(q) = s.handle(req(&format!("DESCRIBE {URL} RTSP/1.0\nCSeq: 1\n")), t0)
    else {
        panic!("describe expected")
    };
    let resp = s.complete_describe(q, Err(DescribeRefusal::Unauthorized));
    assert_eq!(resp.status.0, 401);
    let challenges: Vec<&str> = resp.headers.get_all("WWW-Authenticate").collect();
    assert_eq!(challenges, vec![r#"Basic realm="howl""#]);
}
