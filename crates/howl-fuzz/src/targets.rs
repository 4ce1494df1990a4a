//! One entry per network parser: its seeds (valid messages from the crates' own encoders or
//! captured shapes), its state and how one input goes through it. `run` must not panic on
//! any input; errors are fine.

use howl_media::protocol as wp;
use howl_proto::audio::{
    AudioDepacketizer, AudioPacketizer, AudioReceiverConfig, AudioStreamConfig,
};
use howl_proto::control::{ClientCrypto, ClientMessage, ControlCrypto, FrameFecStatus, IvVariant};
use howl_proto::input::{InputEvent, magic};
use howl_proto::nvhttp::{
    AppList, CancelResponse, ErrorResponse, LaunchRequest, LaunchResponse, PairRequest,
    PairResponse, Query, ResumeResponse, ServerInfo, XmlDoc,
};
use howl_proto::player::{InterleavedDecoder, NtpTime, SenderReport, SenderStats};
use howl_proto::rtsp::{
    EncryptedReader, RequestParser, Response, ResponseParser, RtspCipher, RtspDirection,
};
use howl_proto::sdp::{DescribeInfo, StreamConfig};
use howl_proto::video::{
    DepacketizerConfig, FrameType, PacketizerConfig, VideoDepacketizer, VideoFrame, VideoPacketizer,
};

/// A parser's state between inputs (stream decoders, depacketizers, keys).
// One value per target, re-made every STATE_RUN inputs: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum State {
    None,
    Rtsp(RequestParser, ResponseParser),
    RtspEncrypted(EncryptedReader, RtspCipher),
    Player(InterleavedDecoder),
    Control(ControlCrypto),
    Video(VideoDepacketizer),
    Audio(AudioDepacketizer),
    Worker(wp::FrameDecoder),
    Node(howl_media::node::NodeDecoder),
}

pub struct Target {
    pub name: &'static str,
    /// Text protocol: mutations also swap numbers for extremes.
    pub text: bool,
    /// Longest random input.
    pub max_len: usize,
    pub seeds: fn() -> Vec<Vec<u8>>,
    pub fresh: fn() -> State,
    pub run: fn(&mut State, &[u8]),
}

pub fn all() -> Vec<Target> {
    vec![
        Target {
            name: "nvhttp_query",
            text: true,
            max_len: 512,
            seeds: query_seeds,
            fresh: || State::None,
            run: run_query,
        },
        Target {
            name: "nvhttp_xml",
            text: true,
            max_len: 1024,
            seeds: xml_seeds,
            fresh: || State::None,
            run: run_xml,
        },
        Target {
            name: "rtsp_moonlight",
            text: true,
            max_len: 1024,
            seeds: moonlight_rtsp_seeds,
            fresh: fresh_rtsp,
            run: run_moonlight_rtsp,
        },
        Target {
            name: "rtsp_encrypted",
            text: false,
            max_len: 1024,
            seeds: encrypted_rtsp_seeds,
            fresh: fresh_encrypted_rtsp,
            run: run_encrypted_rtsp,
        },
        Target {
            name: "rtsp_player",
            text: true,
            max_len: 1024,
            seeds: player_rtsp_seeds,
            fresh: || State::Player(InterleavedDecoder::new()),
            run: run_player_rtsp,
        },
        Target {
            name: "sdp",
            text: true,
            max_len: 2048,
            seeds: sdp_seeds,
            fresh: || State::None,
            run: run_sdp,
        },
        Target {
            name: "enet_control",
            text: false,
            max_len: 256,
            seeds: control_seeds,
            fresh: fresh_control,
            run: run_control,
        },
        Target {
            name: "input",
            text: false,
            max_len: 128,
            seeds: input_seeds,
            fresh: || State::None,
            run: run_input,
        },
        Target {
            name: "video_depacketizer",
            text: false,
            max_len: 200,
            seeds: video_seeds,
            fresh: fresh_video,
            run: run_video,
        },
        Target {
            name: "audio_depacketizer",
            text: false,
            max_len: 200,
            seeds: audio_seeds,
            fresh: fresh_audio,
            run: run_audio,
        },
        Target {
            name: "rtcp",
            text: false,
            max_len: 256,
            seeds: rtcp_seeds,
            fresh: || State::None,
            run: run_rtcp,
        },
        Target {
            name: "worker_protocol",
            text: false,
            max_len: 512,
            seeds: worker_seeds,
            fresh: || State::Worker(wp::FrameDecoder::new()),
            run: run_worker,
        },
        Target {
            name: "node_protocol",
            text: false,
            max_len: 512,
            seeds: node_seeds,
            fresh: || State::Node(howl_media::node::NodeDecoder::new()),
            run: run_node,
        },
    ]
}

// ---- NVHTTP ----------------------------------------------------------------------------

fn query_seeds() -> Vec<Vec<u8>> {
    [
        "uniqueid=0123456789ABCDEF&uuid=2b8f9c5e0a1d4e6f&devicename=roth&updateState=1&phrase=getservercert&salt=00112233445566778899aabbccddeeff&clientcert=2d2d2d2d2d424547494e",
        "uniqueid=0123456789ABCDEF&uuid=1&devicename=roth&updateState=1&clientchallenge=00112233445566778899aabbccddeeff",
        "uniqueid=0123456789ABCDEF&uuid=1&serverchallengeresp=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "uniqueid=0123456789ABCDEF&uuid=1&clientpairingsecret=0011223344556677",
        "uniqueid=0123456789ABCDEF&uuid=1&phrase=pairchallenge",
        "uniqueid=0123456789ABCDEF&uuid=1&appid=1&mode=1920x1080x60&additionalStates=1&sops=1&rikey=00112233445566778899aabbccddeeff&rikeyid=1234&localAudioPlayMode=0&surroundAudioInfo=196610&remoteControllersBitmap=1&gcmap=1&corever=1",
        "a=%41%zz&b=&&c",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn run_query(_: &mut State, input: &[u8]) {
    if let Ok(q) = Query::parse_bytes(input) {
        let _ = PairRequest::from_query(&q);
        let _ = LaunchRequest::from_query(&q);
    }
}

fn xml_seeds() -> Vec<Vec<u8>> {
    vec![
        PairResponse {
            paired: true,
            plaincert: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            challenge_response: Some(vec![0xab; 48]),
            pairing_secret: Some(vec![1; 16]),
        }
        .to_xml()
        .into_bytes(),
        LaunchResponse { session_url: "rtsp://192.168.1.20:48010".into() }.to_xml().into_bytes(),
        CancelResponse.to_xml().into_bytes(),
        ErrorResponse::launch_failed(-1, "Invalid").to_xml().into_bytes(),
        b"<?xml version=\"1.0\" encoding=\"utf-8\"?><root status_code=\"200\"><hostname>den</hostname><appversion>7.1.431.-1</appversion><GfeVersion>3.23.0.74</GfeVersion><uniqueid>5C3D</uniqueid><HttpsPort>47984</HttpsPort><ExternalPort>47989</ExternalPort><mac>00:00:00:00:00:00</mac><LocalIP>192.168.1.20</LocalIP><ServerCodecModeSupport>197377</ServerCodecModeSupport><MaxLumaPixelsHEVC>0</MaxLumaPixelsHEVC><PairStatus>1</PairStatus><currentgame>0</currentgame><state>SUNSHINE_SERVER_FREE</state><SupportedDisplayMode><DisplayMode><Width>1920</Width><Height>1080</Height><RefreshRate>60</RefreshRate></DisplayMode></SupportedDisplayMode></root>".to_vec(),
        b"<root status_code=\"200\"><App><AppTitle>A &amp; B</AppTitle><ID>1</ID><IsHdrSupported>0</IsHdrSupported></App></root>".to_vec(),
        b"<root status_code=\"200\"><a>&amp;&#65;<![CDATA[x]]></a><!-- c --></root>".to_vec(),
    ]
}

fn run_xml(_: &mut State, input: &[u8]) {
    if let Ok(doc) = XmlDoc::parse(input) {
        let _ = ServerInfo::from_xml(&doc);
        let _ = AppList::from_xml(&doc);
        let _ = PairResponse::from_xml(&doc);
        let _ = LaunchResponse::from_xml(&doc);
        let _ = ResumeResponse::from_xml(&doc);
        let _ = CancelResponse::from_xml(&doc);
        let _ = ErrorResponse::from_xml(&doc);
    }
}

// ---- RTSP ----------------------------------------------------------------------------

const ANNOUNCE: &[u8] = include_bytes!("../../howl-proto/tests/sdp_example_announce.sdp");

fn moonlight_rtsp_seeds() -> Vec<Vec<u8>> {
    let mut announce = format!(
        "ANNOUNCE streamid=control/13/0 RTSP/1.0\r\nCSeq: 6\r\nX-GS-ClientVersion: 14\r\nHost: 192.168.1.20\r\nContent-type: application/sdp\r\nContent-length: {}\r\n\r\n",
        ANNOUNCE.len()
    )
    .into_bytes();
    announce.extend_from_slice(ANNOUNCE);
    vec![
        b"OPTIONS rtsp://192.168.1.20:48010 RTSP/1.0\r\nCSeq: 1\r\nX-GS-ClientVersion: 14\r\nHost: 192.168.1.20\r\n\r\n".to_vec(),
        b"DESCRIBE rtsp://192.168.1.20:48010 RTSP/1.0\r\nCSeq: 2\r\nX-GS-ClientVersion: 14\r\nHost: 192.168.1.20\r\nAccept: application/sdp\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n".to_vec(),
        b"SETUP streamid=audio/0/0 RTSP/1.0\r\nCSeq: 3\r\nX-GS-ClientVersion: 14\r\nHost: 192.168.1.20\r\nTransport: unicast;X-GS-ClientPort=50000-50001\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n".to_vec(),
        b"SETUP streamid=video/0/0 RTSP/1.0\r\nCSeq: 4\r\nSession: DEADBEEFCAFE;timeout = 90\r\nTransport: unicast;X-GS-ClientPort=50000-50001\r\n\r\n".to_vec(),
        b"PLAY / RTSP/1.0\r\nCSeq: 7\r\nSession: DEADBEEFCAFE\r\n\r\n".to_vec(),
        announce,
        b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: DEADBEEFCAFE;timeout = 90\r\nTransport: server_port=48000\r\nX-SS-Ping-Payload: 0123456789ABCDEF\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
    ]
}

fn fresh_rtsp() -> State {
    State::Rtsp(RequestParser::new(), ResponseParser::new())
}

fn run_moonlight_rtsp(state: &mut State, input: &[u8]) {
    let _ = Response::parse_complete(input);
    let State::Rtsp(req, resp) = state else {
        return;
    };
    // Streamed as a connection would: errors end the connection, so start over.
    match req.push(input) {
        Ok(Some(r)) => {
            let _ = r.to_bytes();
        }
        Ok(None) => {}
        Err(_) => *req = RequestParser::new(),
    }
    if resp.push(input).is_err() {
        *resp = ResponseParser::new();
    }
}

/// The fuzzed connections' key: seeds are sealed with it, so mutations reach the GCM check
/// and (unmutated) the RTSP parser behind it.
const RTSP_KEY: [u8; 16] = *b"howl-fuzz-rtsp-k";

fn rtsp_cipher() -> RtspCipher {
    // A 16-byte key is always accepted; a failure here is a broken crypto library.
    RtspCipher::new(&RTSP_KEY).expect("AES-128 key")
}

fn encrypted_rtsp_seeds() -> Vec<Vec<u8>> {
    let c = rtsp_cipher();
    moonlight_rtsp_seeds()
        .iter()
        .enumerate()
        .filter_map(|(i, m)| c.seal(RtspDirection::ClientToHost, i as u32 + 1, m).ok())
        .collect()
}

fn fresh_encrypted_rtsp() -> State {
    State::RtspEncrypted(EncryptedReader::new(), rtsp_cipher())
}

fn run_encrypted_rtsp(state: &mut State, input: &[u8]) {
    let State::RtspEncrypted(reader, cipher) = state else {
        return;
    };
    let _ = cipher.open(RtspDirection::ClientToHost, input);
    // Streamed as the server reads a connection: one message, then the plain parser.
    match reader.push(input) {
        Ok(Some(frame)) => {
            if let Ok((_, plain)) = cipher.open(RtspDirection::ClientToHost, &frame) {
                let _ = RequestParser::new().push(&plain);
            }
            *reader = EncryptedReader::new();
        }
        Ok(None) => {}
        Err(_) => *reader = EncryptedReader::new(),
    }
}

fn player_rtsp_seeds() -> Vec<Vec<u8>> {
    let mut interleaved = b"$\x01\x00\x08\x81\xc9\x00\x01\x00\x00\x00\x01".to_vec();
    interleaved.extend_from_slice(b"GET_PARAMETER rtsp://127.0.0.1:8554/app/Test%20Pattern RTSP/1.0\r\nCSeq: 9\r\nSession: 1234\r\n\r\n");
    vec![
        b"OPTIONS rtsp://127.0.0.1:8554/app/Test%20Pattern RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: Lavf61.1.100\r\n\r\n".to_vec(),
        b"DESCRIBE rtsp://127.0.0.1:8554/app/Test%20Pattern?width=1280&height=720&fps=30 RTSP/1.0\r\nAccept: application/sdp\r\nCSeq: 2\r\nAuthorization: Basic YWRtaW46dG9rZW4=\r\n\r\n".to_vec(),
        b"DESCRIBE rtsp://127.0.0.1:8554/lobby/Movie%20night RTSP/1.0\r\nCSeq: 3\r\nAuthorization: Digest username=\"admin\", realm=\"howl\", nonce=\"0011\", uri=\"rtsp://127.0.0.1:8554/lobby/Movie%20night\", response=\"00112233445566778899aabbccddeeff\"\r\n\r\n".to_vec(),
        b"SETUP rtsp://127.0.0.1:8554/app/Test%20Pattern/trackID=0 RTSP/1.0\r\nCSeq: 4\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n".to_vec(),
        b"SETUP rtsp://127.0.0.1:8554/app/Test%20Pattern/trackID=1 RTSP/1.0\r\nCSeq: 5\r\nTransport: RTP/AVP;unicast;client_port=50000-50001\r\nSession: 1234\r\n\r\n".to_vec(),
        b"PLAY rtsp://127.0.0.1:8554/app/Test%20Pattern/ RTSP/1.0\r\nCSeq: 6\r\nSession: 1234\r\nRange: npt=0.000-\r\n\r\n".to_vec(),
        b"TEARDOWN rtsp://127.0.0.1:8554/app/Test%20Pattern/ RTSP/1.0\r\nCSeq: 7\r\nSession: 1234\r\n\r\n".to_vec(),
        interleaved,
    ]
}

fn run_player_rtsp(state: &mut State, input: &[u8]) {
    let State::Player(dec) = state else { return };
    dec.feed(input);
    // Drain what the bytes completed (a chunk can hold several messages).
    for _ in 0..16 {
        match dec.next() {
            Ok(Some(howl_proto::rtsp::Incoming::Request(r))) => {
                let _ = howl_proto::player::parse_path(&r.uri);
                if let Some(v) = r.headers.get("authorization") {
                    let _ = howl_proto::player::auth::parse_authorization(v);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                *dec = InterleavedDecoder::new();
                break;
            }
        }
    }
    // The header parsers also see raw values (a header line is whatever the peer sends).
    if let Ok(text) = std::str::from_utf8(input) {
        let _ = howl_proto::player::auth::parse_authorization(text);
        let _ = howl_proto::player::parse_path(text);
    }
}

// ---- SDP ------------------------------------------------------------------------------

fn sdp_seeds() -> Vec<Vec<u8>> {
    vec![
        ANNOUNCE.to_vec(),
        b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=howl\r\nsprop-parameter-sets=Z0IAH5WoFAFuQA==,aM48gA==\r\na=rtpmap:97 opus/48000/2\r\na=fmtp:97 surround-params=21101\r\nx-ss-general.featureFlags: 3\r\nx-ss-general.encryptionSupported: 5\r\n".to_vec(),
    ]
}

fn run_sdp(_: &mut State, input: &[u8]) {
    let _ = StreamConfig::parse_announce(input);
    let _ = DescribeInfo::parse(input);
}

// ---- ENet control ---------------------------------------------------------------------

const KEY: [u8; 16] = [0x5a; 16];

fn client_messages() -> Vec<ClientMessage> {
    vec![
        ClientMessage::RequestIdr,
        ClientMessage::StartB,
        ClientMessage::PeriodicPing,
        ClientMessage::InvalidateReferenceFrames {
            first_frame: 10,
            last_frame: 20,
        },
        ClientMessage::LossStats {
            last_good_frame: 99,
        },
        ClientMessage::LtrFrameAck { frame_index: 7 },
        ClientMessage::FrameFecStatus(FrameFecStatus {
            frame_index: 5,
            highest_received_sequence_number: 9,
            next_contiguous_sequence_number: 3,
            missing_packets_before_highest_received: 1,
            total_data_packets: 4,
            total_parity_packets: 2,
            received_data_packets: 3,
            received_parity_packets: 1,
            fec_percentage: 20,
            multi_fec_block_index: 0,
            multi_fec_block_count: 1,
        }),
        ClientMessage::Input(input_seeds().swap_remove(0)),
    ]
}

/// An input is either `type (LE16) ‖ payload` for the message decoder or a sealed envelope;
/// both paths see every input.
fn control_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (i, m) in client_messages().into_iter().enumerate() {
        let mut plain = m.msg_type().to_le_bytes().to_vec();
        plain.extend_from_slice(&m.encode_payload());
        seeds.push(plain);
        let variant = if i % 2 == 0 {
            IvVariant::V2
        } else {
            IvVariant::Legacy
        };
        if let Ok(mut c) = ClientCrypto::new(KEY, variant)
            && let Ok(sealed) = c.seal(&m)
        {
            seeds.push(sealed);
        }
    }
    seeds
}

fn fresh_control() -> State {
    match ControlCrypto::new(KEY, IvVariant::V2) {
        Ok(c) => State::Control(c),
        Err(_) => State::None,
    }
}

fn run_control(state: &mut State, input: &[u8]) {
    if let [a, b, payload @ ..] = input {
        let _ = ClientMessage::decode(u16::from_le_bytes([*a, *b]), payload);
    }
    if let State::Control(c) = state {
        let _ = c.open(input);
    }
}

// ---- Input ----------------------------------------------------------------------------

fn input_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![InputEvent::MouseMove { dx: -3, dy: 7 }.encode()];
    for m in [
        magic::KEY_DOWN,
        magic::KEY_UP,
        magic::MOUSE_POSITION,
        magic::MOUSE_MOVE,
        magic::MOUSE_BUTTON_DOWN,
        magic::MOUSE_BUTTON_UP,
        magic::SCROLL,
        magic::MULTI_CONTROLLER,
        magic::ENABLE_HAPTICS,
        magic::UTF8_TEXT,
        magic::HSCROLL,
        magic::TOUCH,
        magic::PEN,
        magic::CONTROLLER_ARRIVAL,
        magic::CONTROLLER_TOUCH,
        magic::CONTROLLER_MOTION,
        magic::CONTROLLER_BATTERY,
    ] {
        for body_len in [2usize, 6, 10, 14, 22, 26] {
            let mut p = u32::try_from(body_len + 4)
                .unwrap_or(0)
                .to_be_bytes()
                .to_vec();
            p.extend_from_slice(&m.to_le_bytes());
            p.extend((0..body_len).map(|i| i as u8));
            seeds.push(p);
        }
    }
    seeds
}

fn run_input(_: &mut State, input: &[u8]) {
    if let Ok(ev) = InputEvent::decode(input) {
        let _ = ev.encode();
    }
}

// ---- Video and audio ------------------------------------------------------------------

const VIDEO_PACKET: usize = 64;

fn video_seeds() -> Vec<Vec<u8>> {
    let mut cfg = PacketizerConfig::new(VIDEO_PACKET);
    cfg.fec_percentage = 50;
    let Ok(mut pz) = VideoPacketizer::new(&cfg) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (f, len) in [(1u32, 10usize), (2, 300), (3, 0), (4, 120)] {
        let au: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let frame = VideoFrame {
            frame_index: f,
            rtp_timestamp: f * 3000,
            frame_type: if f == 1 { FrameType::Idr } else { FrameType::P },
            host_processing_latency: 0,
            ltr: false,
            access_unit: &au,
        };
        if let Ok(d) = pz.packetize(&frame) {
            out.extend(d.iter().map(<[u8]>::to_vec));
        }
    }
    out
}

fn fresh_video() -> State {
    match VideoDepacketizer::new(&DepacketizerConfig::new(VIDEO_PACKET)) {
        Ok(d) => State::Video(d),
        Err(_) => State::None,
    }
}

fn run_video(state: &mut State, input: &[u8]) {
    let State::Video(d) = state else { return };
    let _ = d.handle_datagram(input);
    while d.poll_event().is_some() {}
}

fn audio_seeds() -> Vec<Vec<u8>> {
    let Ok(mut pz) = AudioPacketizer::new(&AudioStreamConfig::new(5)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in 0..12u8 {
        let opus: Vec<u8> = (0..20).map(|j| i ^ j).collect();
        if let Ok(d) = pz.push(&opus) {
            out.extend(d.iter().map(<[u8]>::to_vec));
        }
    }
    out
}

fn fresh_audio() -> State {
    match AudioDepacketizer::new(&AudioReceiverConfig::new(5)) {
        Ok(d) => State::Audio(d),
        Err(_) => State::None,
    }
}

fn run_audio(state: &mut State, input: &[u8]) {
    let State::Audio(d) = state else { return };
    let _ = d.handle_datagram(input);
    while d.poll_event().is_some() {}
}

// ---- RTCP -----------------------------------------------------------------------------

fn rtcp_seeds() -> Vec<Vec<u8>> {
    let sr = SenderReport {
        ssrc: 0x1234_5678,
        ntp: NtpTime(0xe000_0000_8000_0000),
        rtp_timestamp: 90_000,
        stats: SenderStats {
            packet_count: 10,
            octet_count: 12_000,
        },
    };
    vec![
        sr.to_compound("howl"),
        // A receiver report with one block, then an SDES CNAME.
        vec![
            0x81, 201, 0, 7, 0, 0, 0, 1, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 5, 0, 0, 1, 0, 0, 0, 0,
            2, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 202, 0, 2, 0, 0, 0, 1, 1, 2, b'v', b'l',
        ],
        // BYE.
        vec![0x81, 203, 0, 1, 0, 0, 0, 1],
    ]
}

fn run_rtcp(_: &mut State, input: &[u8]) {
    let _ = howl_proto::player::rtcp::parse_compound(input);
    let _ = howl_proto::player::rtcp::is_keepalive(input);
}

// ---- Worker protocol ------------------------------------------------------------------

fn worker_seeds() -> Vec<Vec<u8>> {
    let messages = vec![
        wp::Message::Start(wp::StreamParams {
            width: 1280,
            height: 720,
            fps: 60,
            bitrate_kbps: 8000,
            codec: wp::Codec::H264,
            audio_channels: 2,
            audio_packet_ms: 5,
            source: wp::Source::Desktop(wp::DesktopApp {
                command: "howl-testapp".into(),
                args: vec!["--exit-after".into(), "5".into()],
                env: vec![("A".into(), "b".into())],
                working_dir: Some("/tmp".into()),
                container: Some(wp::ContainerSpec {
                    image: "img".into(),
                    mounts: vec!["/a:/b:ro".into()],
                    network: "none".into(),
                }),
            }),
            slices_per_frame: 1,
        }),
        wp::Message::RequestKeyframe,
        wp::Message::Stop,
        wp::Message::ReleaseInput { viewer: 3 },
        wp::Message::Input {
            viewer: 3,
            event: InputEvent::MouseMove { dx: -4, dy: 9 },
        },
        wp::Message::Hello {
            version: wp::PROTOCOL_VERSION,
            pid: 42,
            encoders: vec![wp::EncoderInfo {
                codec: wp::Codec::Hevc,
                element_name: "x265enc".into(),
                hardware: false,
            }],
        },
        wp::Message::Video(wp::VideoFrame {
            seq: 1,
            frame_counter: 2,
            pts_us: 3,
            keyframe: true,
            data: vec![0, 0, 0, 1, 0x65, 1, 2, 3],
        }),
        wp::Message::Audio(wp::AudioPacket {
            seq: 1,
            pts_us: 5000,
            data: vec![0xfc, 1, 2],
        }),
        wp::Message::Heartbeat {
            seq: 4,
            video_frames: 5,
            audio_packets: 6,
        },
        wp::Message::AppExited {
            detail: "exit status: 0".into(),
        },
        wp::Message::SourceLost {
            reason: "timeout".into(),
        },
        wp::Message::SourceRestored,
        wp::Message::SetClipboard {
            text: "pasted é".into(),
        },
        wp::Message::Clipboard {
            text: "copied\n".into(),
        },
    ];
    let mut seeds = Vec::new();
    for m in &messages {
        let mut out = Vec::new();
        if wp::encode(m, &mut out).is_ok() {
            seeds.push(out);
        }
    }
    // Two frames back to back: the stream decoder's boundary handling.
    if seeds.len() >= 2 {
        let two = [seeds[0].clone(), seeds[1].clone()].concat();
        seeds.push(two);
    }
    seeds
}

fn run_worker(state: &mut State, input: &[u8]) {
    let _ = wp::decode_frame(input);
    let State::Worker(dec) = state else { return };
    dec.push(input);
    loop {
        match dec.next() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                *dec = wp::FrameDecoder::new();
                break;
            }
        }
    }
}

// ---- Node protocol (the node endpoint's first bytes come from anyone) ----------------------

fn node_seeds() -> Vec<Vec<u8>> {
    use howl_media::node::{Capacity, NodeMessage};
    let messages = [
        NodeMessage::JoinControl {
            version: 1,
            name: "gpu-1".into(),
            token: "howl-node1.ab.cd".into(),
            labels: vec![("gpu".into(), "nvidia".into())],
            capacity: Capacity {
                max_producers: 2,
                max_encoder_sessions: 8,
                cores: 16,
                gpus: 1,
                encoders: vec![("h264".into(), 8)],
            },
        },
        NodeMessage::JoinWorker {
            version: 1,
            worker: 7,
            pid: 42,
        },
        NodeMessage::Welcome {
            name: "gpu-1".into(),
            heartbeat_ms: 500,
        },
        NodeMessage::Refused {
            reason: "token expired".into(),
        },
        NodeMessage::Heartbeat,
        NodeMessage::SpawnWorker {
            worker: 7,
            args: vec!["--desktop-isolation".into(), "cookie".into()],
        },
        NodeMessage::KillWorker { worker: 7 },
        NodeMessage::WorkerExited {
            worker: 7,
            detail: "exited: 0".into(),
        },
    ];
    messages
        .iter()
        .filter_map(|m| {
            let mut out = Vec::new();
            howl_media::node::encode_node(m, &mut out)
                .ok()
                .map(|()| out)
        })
        .collect()
}

fn run_node(state: &mut State, input: &[u8]) {
    let State::Node(dec) = state else { return };
    dec.push(input);
    loop {
        match dec.next() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(howl_media::node::NodeProtocolError::Framing(_)) => {
                *dec = howl_media::node::NodeDecoder::new();
                break;
            }
            Err(_) => {}
        }
    }
}
