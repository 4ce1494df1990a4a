//! The Moonlight RTSP handshake (appversion 7.1.431): host state machine and test client.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{Method, ParseError, Request, Response, StatusCode, Version};
use crate::nvhttp::Fault;
use crate::sdp::{
    ChromaSampling, DescribeInfo, DynamicRange, EncryptionFlags, HostOffer, SdpError, StreamConfig,
    VideoCodec,
};

/// Value of the `timeout=` parameter in the `Session` header. Moonlight ignores it (it only
/// echoes the text before `;`), but RFC 2326 clients use it for keep-alives.
pub const SESSION_TIMEOUT_SECS: u32 = 90;

/// How long a launch may take from `/launch` to PLAY before it is dropped. Generous: a real
/// client finishes in well under a second plus encoder start-up, and gives up on its own after
/// 15 s without an answer, so this only bounds how long an abandoned launch holds resources.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The three UDP streams negotiated by SETUP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Audio,
    Video,
    Control,
}

impl StreamKind {
    /// The stream named by a SETUP Request-URI: `streamid=audio/0/0`, `streamid=video/0/0`,
    /// `streamid=control/13/0` (also accepted: a full `rtsp://…/streamid=video` URI and the
    /// pre-7.1 forms without the `/0/0` suffix).
    pub fn from_uri(uri: &str) -> Option<Self> {
        let (_, rest) = uri.split_once("streamid=")?;
        let name = rest.split('/').next().unwrap_or(rest);
        match name {
            "audio" => Some(Self::Audio),
            "video" => Some(Self::Video),
            "control" => Some(Self::Control),
            _ => None,
        }
    }

    /// The Request-URI a 7.1.431 client uses.
    pub fn uri(self) -> &'static str {
        match self {
            Self::Audio => "streamid=audio/0/0",
            Self::Video => "streamid=video/0/0",
            Self::Control => "streamid=control/13/0",
        }
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Control => "control",
        })
    }
}

/// The host's UDP ports, returned as `Transport: server_port=N`. The sockets must already be
/// bound when SETUP is answered: the audio ping thread starts as soon as the client has read
/// the audio SETUP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamPorts {
    pub video: u16,
    pub audio: u16,
    pub control: u16,
}

impl StreamPorts {
    /// The GameStream defaults for base port 47989 (also what clients assume when a SETUP
    /// response lacks `server_port=`).
    pub const DEFAULT: Self = Self {
        video: 47998,
        audio: 48000,
        control: 47999,
    };

    /// The port of one stream.
    pub fn get(&self, kind: StreamKind) -> u16 {
        match kind {
            StreamKind::Audio => self.audio,
            StreamKind::Video => self.video,
            StreamKind::Control => self.control,
        }
    }
}

/// The 16-character token sent as `X-SS-Ping-Payload`; the client copies it verbatim into the
/// first 16 bytes of every audio/video UDP ping, which is how the host matches pings to this
/// launch when the client has `ML_FF_SESSION_ID_V1` (part 2 §1.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PingPayload([u8; 16]);

impl PingPayload {
    /// Sunshine's format: 8 random bytes as 16 upper-case hex characters. Randomness is an
    /// input (this crate draws none itself).
    pub fn from_random(random: [u8; 8]) -> Self {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = [0u8; 16];
        for (i, b) in random.iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        Self(out)
    }

    /// A token from 16 bytes, which must be visible ASCII (`!`..=`~`) so that it survives a
    /// header line unchanged; the client ignores any value that is not exactly 16 characters.
    pub fn from_ascii(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 16] = bytes.try_into().ok()?;
        arr.iter().all(u8::is_ascii_graphic).then_some(Self(arr))
    }

    /// The 16 bytes as they appear at the start of a ping datagram.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The token as a header value.
    pub fn as_str(&self) -> &str {
        // Invariant: constructors only admit ASCII graphic bytes, which are valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for PingPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PingPayload({:?})", self.as_str())
    }
}

/// What the host decided at `/launch`, fixed for the whole handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoonlightParams {
    /// Codecs, audio layouts, encryption and feature flags advertised in DESCRIBE.
    pub offer: HostOffer,
    pub ports: StreamPorts,
    /// Returned on the audio and video SETUP.
    pub ping_payload: PingPayload,
    /// Returned on the control SETUP as `X-SS-Connect-Data`; becomes the ENet CONNECT `data`.
    pub connect_data: u32,
    /// The RTSP session id (`Session:` header); both known hosts use `DEADBEEFCAFE`.
    pub session_id: String,
    /// `SS_ENC_*` bits without which the host refuses to stream (403 at ANNOUNCE). Must be a
    /// subset of `offer.encryption_supported`; usually also put in `encryption_requested` so
    /// that the client turns them on.
    pub encryption_required: EncryptionFlags,
    /// Time from construction until the handshake must have reached PLAY.
    pub handshake_timeout: Duration,
}

/// Invalid [`MoonlightParams`]: a bug in host code, never the client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The session id is empty or has characters other than RFC 2326 `safe` ones.
    #[error("invalid RTSP session id {0:?}")]
    BadSessionId(String),
    /// `encryption_requested` or `encryption_required` asks for bits not in
    /// `encryption_supported`, or bits beyond `SS_ENC_*`.
    #[error("encryption flags request unsupported bits")]
    BadEncryption,
    /// `handshake_timeout` does not fit an `Instant`.
    #[error("handshake timeout out of range")]
    BadTimeout,
    /// A stream port is 0.
    #[error("UDP port of the {0} stream is 0")]
    ZeroPort(StreamKind),
}

impl ConfigError {
    /// Always [`Fault::LocalMisuse`].
    pub fn fault(&self) -> Fault {
        Fault::LocalMisuse
    }
}

/// Why the host refused a request (the response carries [`HandshakeError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A valid method at the wrong time (SETUP before DESCRIBE, ANNOUNCE before all three
    /// SETUPs, PLAY before ANNOUNCE, anything but OPTIONS/PLAY after ANNOUNCE).
    #[error("{method} is not valid while {state}")]
    OutOfOrder { method: Method, state: &'static str },
    /// A method the Moonlight handshake does not use.
    #[error("method {0} not implemented")]
    UnknownMethod(Method),
    /// SETUP for a stream other than audio/video/control.
    #[error("SETUP for unknown stream {0:?}")]
    UnknownStream(String),
    /// The `Session` header names another session.
    #[error("request for unknown session {0:?}")]
    SessionMismatch(String),
    /// Not `RTSP/1.0`.
    #[error("unsupported RTSP version {0}")]
    UnsupportedVersion(Version),
    /// The ANNOUNCE body is unusable.
    #[error("bad ANNOUNCE body: {0}")]
    Announce(#[from] SdpError),
    /// The announced codec or format (HDR, 4:4:4) was not offered.
    #[error("client asked for {codec:?} {range:?} {chroma:?}, which was not offered")]
    FormatNotOffered {
        codec: VideoCodec,
        range: DynamicRange,
        chroma: ChromaSampling,
    },
    /// The announced channel count or audio quality was not offered.
    #[error("client asked for {channels} channels (high quality {high_quality}), not offered")]
    AudioNotOffered { channels: u8, high_quality: bool },
    /// The client enables encryption the host cannot do.
    #[error("client enables encryption {enabled:?}, host supports {supported:?}")]
    EncryptionUnsupported {
        enabled: EncryptionFlags,
        supported: EncryptionFlags,
    },
    /// Host policy requires encryption the client did not enable.
    #[error("host requires encryption {required:?}, client enabled {enabled:?}")]
    EncryptionRequired {
        required: EncryptionFlags,
        enabled: EncryptionFlags,
    },
    /// The handshake passed its deadline or was aborted; the launch is gone.
    #[error("the launch session is closed")]
    Closed,
}

impl HandshakeError {
    /// Who is at fault; see [`Fault`].
    pub fn fault(&self) -> Fault {
        match self {
            Self::Announce(e) => e.fault(),
            Self::OutOfOrder { .. } | Self::SessionMismatch(_) | Self::Closed => {
                Fault::PeerMisbehaved
            }
            Self::FormatNotOffered { .. }
            | Self::AudioNotOffered { .. }
            | Self::EncryptionUnsupported { .. } => Fault::PeerMisbehaved,
            Self::UnknownMethod(_)
            | Self::UnknownStream(_)
            | Self::UnsupportedVersion(_)
            | Self::EncryptionRequired { .. } => Fault::Unsupported,
        }
    }

    /// The RTSP status answered for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::OutOfOrder { .. } => StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
            Self::UnknownMethod(_) => StatusCode::NOT_IMPLEMENTED,
            Self::UnknownStream(_) => StatusCode::NOT_FOUND,
            Self::SessionMismatch(_) | Self::Closed => StatusCode::SESSION_NOT_FOUND,
            Self::UnsupportedVersion(_) => StatusCode::VERSION_NOT_SUPPORTED,
            Self::EncryptionRequired { .. } => StatusCode::FORBIDDEN,
            Self::Announce(_)
            | Self::FormatNotOffered { .. }
            | Self::AudioNotOffered { .. }
            | Self::EncryptionUnsupported { .. } => StatusCode::BAD_REQUEST,
        }
    }
}

/// Outputs of [`MoonlightRtsp`], drained with [`MoonlightRtsp::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// ANNOUNCE accepted: the negotiated stream. Start the encoder and audio capture now (the
    /// client waits up to 15 s for the ANNOUNCE answer, then for PLAY). If that fails, answer
    /// the ANNOUNCE with 500 instead of the returned response and call
    /// [`MoonlightRtsp::abort`].
    Announced(StreamConfig),
    /// PLAY answered: the handshake is complete; UDP rendezvous follows (part 2 §1).
    Play,
    /// A request was refused with `error.status()`; for logs and metrics.
    Rejected {
        method: Method,
        error: HandshakeError,
    },
    /// The deadline passed before PLAY; drop the launch.
    TimedOut,
}

/// Where the handshake stands. A flat enum (STYLE practice 4 allows it for a short linear
/// flow); the negotiated configuration exists only from `Announced` on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Nothing but OPTIONS so far.
    AwaitDescribe,
    /// DESCRIBE answered; SETUPs arriving.
    Setup {
        audio: bool,
        video: bool,
        control: bool,
    },
    /// ANNOUNCE accepted, waiting for PLAY.
    Announced(StreamConfig),
    /// PLAY answered.
    Playing(StreamConfig),
    /// Timed out or aborted.
    Closed,
}

impl Phase {
    fn describe(&self) -> &'static str {
        match self {
            Self::AwaitDescribe => "waiting for DESCRIBE",
            Self::Setup {
                audio: true,
                video: true,
                control: true,
            } => "waiting for ANNOUNCE",
            Self::Setup { .. } => "waiting for SETUP of audio, video and control",
            Self::Announced(_) => "waiting for PLAY",
            Self::Playing(_) => "playing",
            Self::Closed => "closed",
        }
    }
}

/// Host side of the Moonlight RTSP handshake for one launch session (see the module docs for
/// the drive loop). Requests from many TCP connections are fed to the same instance.
#[derive(Debug)]
pub struct MoonlightRtsp {
    params: MoonlightParams,
    phase: Phase,
    deadline: Instant,
    events: VecDeque<Event>,
    /// Whether the ANNOUNCE's `Host` header named a real address rather than `0.0.0.0`: the
    /// client's signal that it wants high-quality stereo (reference part 1 §6.1).
    stereo_high_quality: bool,
}

impl MoonlightRtsp {
    /// Starts the handshake at `now`; [`deadline`](Self::deadline) is
    /// `now + params.handshake_timeout`.
    pub fn new(params: MoonlightParams, now: Instant) -> Result<Self, ConfigError> {
        let id = &params.session_id;
        // RFC 2326 session-id: 1*( ALPHA | DIGIT | safe ); ';' would end it early.
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"$-_.+".contains(&b))
        {
            return Err(ConfigError::BadSessionId(id.clone()));
        }
        let offer = &params.offer;
        if !EncryptionFlags::ALL.contains(offer.encryption_supported)
            || !offer
                .encryption_supported
                .contains(offer.encryption_requested)
            || !offer
                .encryption_supported
                .contains(params.encryption_required)
        {
            return Err(ConfigError::BadEncryption);
        }
        for kind in [StreamKind::Audio, StreamKind::Video, StreamKind::Control] {
            if params.ports.get(kind) == 0 {
                return Err(ConfigError::ZeroPort(kind));
            }
        }
        let deadline = now
            .checked_add(params.handshake_timeout)
            .ok_or(ConfigError::BadTimeout)?;
        Ok(Self {
            params,
            phase: Phase::AwaitDescribe,
            deadline,
            events: VecDeque::new(),
            stereo_high_quality: false,
        })
    }

    /// The parameters this handshake was built with.
    pub fn params(&self) -> &MoonlightParams {
        &self.params
    }

    /// When the handshake must be complete. Meaningful while [`is_complete`](Self::is_complete)
    /// is false; arm a timer and call [`handle_timeout`](Self::handle_timeout) when it fires.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether PLAY has been answered.
    pub fn is_complete(&self) -> bool {
        matches!(self.phase, Phase::Playing(_))
    }

    /// Whether the handshake timed out or was aborted.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The negotiated configuration, once ANNOUNCE was accepted.
    pub fn stream_config(&self) -> Option<&StreamConfig> {
        match &self.phase {
            Phase::Announced(c) | Phase::Playing(c) => Some(c),
            _ => None,
        }
    }

    /// Whether to encode audio at high quality once announced. For surround this is the
    /// client's `AudioQuality` flag; stereo is never flagged there, and the client instead
    /// addresses the host by its real address (not `0.0.0.0`) in `Host` when it wants
    /// high-quality (512 kbps) stereo, the GFE convention Sunshine follows.
    pub fn audio_high_quality(&self) -> bool {
        self.stream_config().is_some_and(|c| {
            if c.audio.channels <= 2 {
                self.stereo_high_quality
            } else {
                c.audio.high_quality
            }
        })
    }

    /// The next queued event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Checks the deadline; closes the handshake (queuing [`Event::TimedOut`]) if `now` is at
    /// or past it and PLAY has not been answered.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.deadline && !self.is_complete() && !self.is_closed() {
            self.phase = Phase::Closed;
            self.events.push_back(Event::TimedOut);
        }
    }

    /// Closes the handshake, e.g. because the session could not start after ANNOUNCE or the
    /// launch was cancelled. Later requests get 454.
    pub fn abort(&mut self) {
        self.phase = Phase::Closed;
    }

    /// Answers one request. Never fails: refusals are error responses (with `CSeq`) plus an
    /// [`Event::Rejected`]. A refused request does not change the state, so a stray or
    /// malformed connection cannot break an otherwise healthy launch.
    pub fn handle(&mut self, req: Request, now: Instant) -> Response {
        self.handle_timeout(now);
        match self.dispatch(&req) {
            Ok(resp) => resp,
            Err(error) => {
                let resp = Response::for_request(&req, error.status());
                self.events.push_back(Event::Rejected {
                    method: req.method,
                    error,
                });
                resp
            }
        }
    }

    fn out_of_order(&self, req: &Request) -> HandshakeError {
        HandshakeError::OutOfOrder {
            method: req.method.clone(),
            state: self.phase.describe(),
        }
    }

    fn dispatch(&mut self, req: &Request) -> Result<Response, HandshakeError> {
        if self.phase == Phase::Closed {
            return Err(HandshakeError::Closed);
        }
        if req.version != Version::RTSP_1_0 {
            return Err(HandshakeError::UnsupportedVersion(req.version));
        }
        if let Some(session) = req.headers.get("Session") {
            let id = session.split(';').next().unwrap_or_default().trim();
            if id != self.params.session_id {
                return Err(HandshakeError::SessionMismatch(
                    id.chars().take(64).collect(),
                ));
            }
        }
        match req.method {
            Method::Options => Ok(Response::for_request(req, StatusCode::OK)
                .with_header("Public", "OPTIONS, DESCRIBE, SETUP, ANNOUNCE, PLAY")),
            Method::Describe => self.describe(req),
            Method::Setup => self.setup(req),
            Method::Announce => self.announce(req),
            Method::Play => self.play(req),
            _ => Err(HandshakeError::UnknownMethod(req.method.clone())),
        }
    }

    fn describe(&mut self, req: &Request) -> Result<Response, HandshakeError> {
        match self.phase {
            Phase::AwaitDescribe => {
                self.phase = Phase::Setup {
                    audio: false,
                    video: false,
                    control: false,
                };
            }
            // A repeated DESCRIBE is harmless and answered identically.
            Phase::Setup { .. } => {}
            _ => return Err(self.out_of_order(req)),
        }
        Ok(Response::for_request(req, StatusCode::OK)
            .with_header("Content-Type", "application/sdp")
            .with_body(self.params.offer.describe_body()))
    }

    fn setup(&mut self, req: &Request) -> Result<Response, HandshakeError> {
        let Phase::Setup {
            audio,
            video,
            control,
        } = &mut self.phase
        else {
            return Err(self.out_of_order(req));
        };
        let kind = StreamKind::from_uri(&req.uri)
            .ok_or_else(|| HandshakeError::UnknownStream(req.uri.chars().take(128).collect()))?;
        match kind {
            StreamKind::Audio => *audio = true,
            StreamKind::Video => *video = true,
            StreamKind::Control => *control = true,
        }
        let p = &self.params;
        let mut resp = Response::for_request(req, StatusCode::OK)
            .with_header(
                "Session",
                format!("{};timeout={SESSION_TIMEOUT_SECS}", p.session_id),
            )
            .with_header("Transport", format!("server_port={}", p.ports.get(kind)));
        match kind {
            StreamKind::Audio | StreamKind::Video => {
                resp.headers
                    .append("X-SS-Ping-Payload", p.ping_payload.as_str());
            }
            StreamKind::Control => {
                resp.headers
                    .append("X-SS-Connect-Data", p.connect_data.to_string());
            }
        }
        Ok(resp)
    }

    fn announce(&mut self, req: &Request) -> Result<Response, HandshakeError> {
        if self.phase
            != (Phase::Setup {
                audio: true,
                video: true,
                control: true,
            })
        {
            return Err(self.out_of_order(req));
        }
        let config = StreamConfig::parse_announce(&req.body)?;
        self.check_offer(&config)?;
        self.stereo_high_quality = req
            .headers
            .get("Host")
            .is_some_and(|h| !h.is_empty() && !h.contains("0.0.0.0"));
        self.phase = Phase::Announced(config.clone());
        self.events.push_back(Event::Announced(config));
        Ok(Response::for_request(req, StatusCode::OK))
    }

    /// The client only asks for what DESCRIBE offered; anything else means a confused or
    /// hostile client, and the host could not satisfy it anyway (reference: 400 / 403).
    fn check_offer(&self, c: &StreamConfig) -> Result<(), HandshakeError> {
        let offer = &self.params.offer;
        let codecs = offer.codecs;
        let codec_ok = match c.codec {
            VideoCodec::H264 => codecs.h264 && c.dynamic_range == DynamicRange::Sdr,
            VideoCodec::Hevc => codecs.hevc,
            VideoCodec::Av1 => codecs.av1,
        };
        let range_ok = c.dynamic_range == DynamicRange::Sdr || codecs.hdr;
        let chroma_ok = c.chroma == ChromaSampling::Yuv420 || codecs.yuv444;
        if !(codec_ok && range_ok && chroma_ok) {
            return Err(HandshakeError::FormatNotOffered {
                codec: c.codec,
                range: c.dynamic_range,
                chroma: c.chroma,
            });
        }
        let audio = &c.audio;
        // Stereo is never parsed by the client, so every host accepts it at normal quality;
        // stereo "high quality" is chosen by the Host-header heuristic, not by this flag.
        let audio_ok = audio.channels == 2
            || offer
                .surround_for(audio.channels)
                .is_some_and(|s| !audio.high_quality || s.high_quality.is_some());
        if !audio_ok {
            return Err(HandshakeError::AudioNotOffered {
                channels: audio.channels,
                high_quality: audio.high_quality,
            });
        }
        let enabled = c.encryption();
        if !offer.encryption_supported.contains(enabled) {
            return Err(HandshakeError::EncryptionUnsupported {
                enabled,
                supported: offer.encryption_supported,
            });
        }
        if !enabled.contains(self.params.encryption_required) {
            return Err(HandshakeError::EncryptionRequired {
                required: self.params.encryption_required,
                enabled,
            });
        }
        Ok(())
    }

    fn play(&mut self, req: &Request) -> Result<Response, HandshakeError> {
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Announced(config) => {
                self.phase = Phase::Playing(config);
                self.events.push_back(Event::Play);
            }
            // Older clients sent one PLAY per stream; a repeat is answered, not re-announced.
            playing @ Phase::Playing(_) => self.phase = playing,
            other => {
                self.phase = other;
                return Err(self.out_of_order(req));
            }
        }
        Ok(Response::for_request(req, StatusCode::OK))
    }
}

/// Why [`MoonlightClient`] gave up, mirroring how common-c fails a handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The bytes would not pass Moonlight's strict response parser (`RtspParser.c`).
    #[error("response rejected by the client parser: {0}")]
    Unparsable(&'static str),
    /// The response did not frame as RTSP at all.
    #[error("malformed response: {0}")]
    Parse(#[from] ParseError),
    /// Any non-200 status aborts the connection attempt with that code.
    #[error("host answered {0}")]
    Status(StatusCode),
    /// DESCRIBE answered with an empty body ("no content").
    #[error("DESCRIBE reply has no body")]
    EmptyDescribe,
    /// The audio SETUP reply lacks `Session`.
    #[error("SETUP audio reply has no Session header")]
    MissingSession,
    /// A response arrived after the handshake finished.
    #[error("handshake already complete")]
    Complete,
}

impl ClientError {
    /// Who is at fault (the host, from the client's point of view).
    pub fn fault(&self) -> Fault {
        match self {
            Self::Unparsable(_) | Self::Parse(_) | Self::EmptyDescribe => Fault::MalformedInput,
            Self::Status(_) | Self::MissingSession => Fault::PeerMisbehaved,
            Self::Complete => Fault::LocalMisuse,
        }
    }
}

/// The client side of the handshake as a 7.1.431 Moonlight client performs it, for our Rust
/// test client: [`next_request`](Self::next_request) gives the exact request (new TCP
/// connection each), [`handle_response_bytes`](Self::handle_response_bytes) takes everything
/// read until the host closed. Requests are byte-for-byte in the order and shape of common-c.
#[derive(Debug, Clone)]
pub struct MoonlightClient {
    base_uri: String,
    host_header: String,
    host_addr: IpAddr,
    config: StreamConfig,
    step: u32,
    session: Option<String>,
    describe: Option<DescribeInfo>,
    ports: StreamPorts,
    ping_payload: [Option<PingPayload>; 2],
    connect_data: u32,
}

const CLIENT_STEPS: u32 = 7;
const IF_MODIFIED_SINCE: &str = "Thu, 01 Jan 1970 00:00:00 GMT";

impl MoonlightClient {
    /// `base_uri` is `rtsp://0.0.0.0:<port>` (or `sessionUrl0` verbatim), `host_header` the
    /// `Host:` value (`0.0.0.0` normally), `host_addr` the host's address for the SDP `o=`
    /// line, `config` what the client wants (adjusted to the DESCRIBE offer like the real
    /// client: an unoffered HEVC/AV1 falls back to H.264 SDR, unoffered high-quality surround
    /// to normal quality).
    pub fn new(
        base_uri: impl Into<String>,
        host_header: impl Into<String>,
        host_addr: IpAddr,
        config: StreamConfig,
    ) -> Self {
        Self {
            base_uri: base_uri.into(),
            host_header: host_header.into(),
            host_addr,
            config,
            step: 0,
            session: None,
            describe: None,
            ports: StreamPorts::DEFAULT,
            ping_payload: [None, None],
            connect_data: 0,
        }
    }

    /// The request to send now, or `None` when the handshake is complete.
    pub fn next_request(&self) -> Option<Request> {
        let cseq = self.step + 1;
        let base = |method, uri: &str| {
            Request::new(method, uri)
                .with_header("CSeq", cseq.to_string())
                .with_header("X-GS-ClientVersion", "14")
                .with_header("Host", self.host_header.clone())
        };
        let session = self.session.clone().unwrap_or_default();
        let transport = "unicast;X-GS-ClientPort=50000-50001";
        Some(match self.step {
            0 => base(Method::Options, &self.base_uri),
            1 => base(Method::Describe, &self.base_uri)
                .with_header("Accept", "application/sdp")
                .with_header("If-Modified-Since", IF_MODIFIED_SINCE),
            2 => base(Method::Setup, StreamKind::Audio.uri())
                .with_header("Transport", transport)
                .with_header("If-Modified-Since", IF_MODIFIED_SINCE),
            3 | 4 => {
                let kind = if self.step == 3 {
                    StreamKind::Video
                } else {
                    StreamKind::Control
                };
                base(Method::Setup, kind.uri())
                    .with_header("Session", session)
                    .with_header("Transport", transport)
                    .with_header("If-Modified-Since", IF_MODIFIED_SINCE)
            }
            5 => {
                let body = self.config.to_announce(self.host_addr, self.ports.video);
                base(Method::Announce, StreamKind::Control.uri())
                    .with_header("Session", session)
                    .with_header("Content-type", "application/sdp")
                    .with_header("Content-length", body.len().to_string())
                    .with_body(body)
            }
            6 => base(Method::Play, "/").with_header("Session", session),
            _ => return None,
        })
    }

    /// Checks `raw` (everything read until the host closed) with the rules of Moonlight's
    /// response parser, then handles it.
    pub fn handle_response_bytes(&mut self, raw: &[u8]) -> Result<(), ClientError> {
        strict_check(raw)?;
        let resp = Response::parse_complete(raw)?;
        self.handle_response(&resp)
    }

    /// Handles the response to the request from [`next_request`](Self::next_request).
    pub fn handle_response(&mut self, resp: &Response) -> Result<(), ClientError> {
        if self.step >= CLIENT_STEPS {
            return Err(ClientError::Complete);
        }
        if resp.status != StatusCode::OK {
            return Err(ClientError::Status(resp.status));
        }
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
        };
        match self.step {
            1 => {
                if resp.body.is_empty() {
                    return Err(ClientError::EmptyDescribe);
                }
                let info = DescribeInfo::parse(&resp.body);
                self.adapt_to_offer(&info);
                self.describe = Some(info);
            }
            2..=4 => {
                let kind = match self.step {
                    2 => StreamKind::Audio,
                    3 => StreamKind::Video,
                    _ => StreamKind::Control,
                };
                if let Some(s) = header("Session") {
                    self.session = Some(s.split(';').next().unwrap_or_default().to_owned());
                } else if kind == StreamKind::Audio {
                    return Err(ClientError::MissingSession);
                }
                if let Some(port) = header("Transport").and_then(server_port) {
                    match kind {
                        StreamKind::Audio => self.ports.audio = port,
                        StreamKind::Video => self.ports.video = port,
                        StreamKind::Control => self.ports.control = port,
                    }
                }
                match kind {
                    StreamKind::Audio | StreamKind::Video => {
                        let token = header("X-SS-Ping-Payload")
                            .and_then(|v| PingPayload::from_ascii(v.as_bytes()));
                        self.ping_payload[usize::from(kind == StreamKind::Video)] = token;
                    }
                    StreamKind::Control => {
                        self.connect_data = header("X-SS-Connect-Data")
                            .and_then(strtoul_u32)
                            .unwrap_or(0);
                    }
                }
            }
            _ => {}
        }
        self.step += 1;
        Ok(())
    }

    fn adapt_to_offer(&mut self, info: &DescribeInfo) {
        let c = &mut self.config;
        let offered = match c.codec {
            VideoCodec::H264 => true,
            VideoCodec::Hevc => info.hevc,
            VideoCodec::Av1 => info.av1,
        };
        if !offered {
            c.codec = VideoCodec::H264;
            c.dynamic_range = DynamicRange::Sdr;
        }
        if c.audio.channels > 2
            && c.audio.high_quality
            && info
                .surround_for(c.audio.channels)
                .is_none_or(|s| s.high_quality.is_none())
        {
            c.audio.high_quality = false;
        }
    }

    /// Whether PLAY was answered.
    pub fn is_complete(&self) -> bool {
        self.step >= CLIENT_STEPS
    }

    /// The configuration sent (or to be sent) in ANNOUNCE.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// The DESCRIBE reply as read.
    pub fn describe(&self) -> Option<&DescribeInfo> {
        self.describe.as_ref()
    }

    /// The session id echoed on later requests.
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// The host ports learned from `Transport` (defaults where absent).
    pub fn ports(&self) -> StreamPorts {
        self.ports
    }

    /// The ping token for `kind` (audio or video); `None` means legacy `PING` datagrams.
    pub fn ping_payload(&self, kind: StreamKind) -> Option<PingPayload> {
        match kind {
            StreamKind::Audio => self.ping_payload[0],
            StreamKind::Video => self.ping_payload[1],
            StreamKind::Control => None,
        }
    }

    /// The ENet CONNECT `data` value (0 when the host sent none).
    pub fn connect_data(&self) -> u32 {
        self.connect_data
    }
}

/// Reads the decimal port after `server_port=` anywhere in a Transport value.
fn server_port(transport: &str) -> Option<u16> {
    let (_, rest) = transport.split_once("server_port=")?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// `strtoul(v, 0)` limited to values that fit a `u32`.
fn strtoul_u32(v: &str) -> Option<u32> {
    let v = v.trim_start();
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        let end = hex
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(hex.len());
        return u32::from_str_radix(&hex[..end], 16).ok();
    }
    let end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    v[..end].parse().ok()
}

/// The syntax rules of common-c's `RtspParser.c` that a host response must satisfy.
fn strict_check(raw: &[u8]) -> Result<(), ClientError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ClientError::Unparsable("no CRLF CRLF after the headers"))?;
    let head = std::str::from_utf8(&raw[..end])
        .map_err(|_| ClientError::Unparsable("head is not text"))?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let rest = status
        .strip_prefix("RTSP/1.0 ")
        .ok_or(ClientError::Unparsable(
            "status line must start with RTSP/1.0",
        ))?;
    let (code, reason) = rest
        .split_once(' ')
        .ok_or(ClientError::Unparsable("status line has no reason phrase"))?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) || reason.is_empty() {
        return Err(ClientError::Unparsable("bad status code or empty reason"));
    }
    let mut headers = 0;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(ClientError::Unparsable("header line without a colon"))?;
        if name.is_empty() || !value.starts_with(' ') || value.starts_with("  ") {
            return Err(ClientError::Unparsable(
                "header must be `Name: value` with exactly one space",
            ));
        }
        headers += 1;
    }
    if headers == 0 {
        return Err(ClientError::Unparsable("response without any header"));
    }
    Ok(())
}
