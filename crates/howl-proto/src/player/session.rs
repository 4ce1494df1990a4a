//! [`PlayerSession`]: the RFC 2326 server side of one RTSP connection from a standard player.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::auth::{self, AuthParseError, Credentials};
use super::describe::{StreamDescription, Track};
use super::path::{StreamPath, parse_path, strip_authority};
use super::rtcp;
use super::rtp::RtpParams;
use crate::rtsp::{Method, Request, Response, StatusCode, Version};

/// How long a session lives without a keep-alive (an RTSP request or an RTCP report). RFC 2326
/// §12.37's default; players send keep-alives at about half of the announced timeout.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a player may take from its first SETUP to PLAY. Real players PLAY within
/// milliseconds; this bounds what a probe that set up and walked away holds.
pub const DEFAULT_PLAY_TIMEOUT: Duration = Duration::from_secs(20);
/// The `Public` header: what this server implements.
pub const PUBLIC_METHODS: &str = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER";

/// A pair of server UDP ports (RTP, RTCP) for one track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpPorts {
    pub rtp: u16,
    pub rtcp: u16,
}

/// Settings of one [`PlayerSession`]; the random parts come from the caller's RNG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerConfig {
    /// The `Session` id, at least 8 characters of `[A-Za-z0-9$-_.+]` (RFC 2326 §3.4). Random:
    /// it is the only thing that ties requests to the session.
    pub session_id: String,
    /// The Digest nonce for this connection's challenges. Random, `[A-Za-z0-9]`.
    pub nonce: String,
    /// The realm of the challenges.
    pub realm: String,
    pub session_timeout: Duration,
    pub play_timeout: Duration,
    /// The server's UDP ports per track (bound by the caller, e.g. one shared pair for all
    /// sessions); `None` refuses UDP with 461, leaving interleaved TCP.
    pub video_udp: Option<UdpPorts>,
    pub audio_udp: Option<UdpPorts>,
    /// SSRC, first sequence number and first timestamp of each track; the payloaders must be
    /// built with the same values so that `RTP-Info` tells the truth.
    pub video_rtp: RtpParams,
    pub audio_rtp: RtpParams,
    /// Offer Digest in a 401 besides Basic. Players such as ffmpeg and VLC answer Digest
    /// whenever it is offered, so a server whose secrets it only holds as hashes turns it off
    /// to get Basic from them.
    pub offer_digest: bool,
}

impl PlayerConfig {
    /// A configuration with the default realm and timeouts and no UDP.
    pub fn new(
        session_id: impl Into<String>,
        nonce: impl Into<String>,
        video_rtp: RtpParams,
        audio_rtp: RtpParams,
    ) -> Self {
        Self {
            session_id: session_id.into(),
            nonce: nonce.into(),
            realm: auth::DEFAULT_REALM.to_owned(),
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            play_timeout: DEFAULT_PLAY_TIMEOUT,
            video_udp: None,
            audio_udp: None,
            video_rtp,
            audio_rtp,
            offer_digest: true,
        }
    }

    fn rtp(&self, track: Track) -> RtpParams {
        match track {
            Track::Video => self.video_rtp,
            Track::Audio => self.audio_rtp,
        }
    }

    fn udp(&self, track: Track) -> Option<UdpPorts> {
        match track {
            Track::Video => self.video_udp,
            Track::Audio => self.audio_udp,
        }
    }
}

/// Invalid [`PlayerConfig`]: a bug in the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayerConfigError {
    #[error("session id must be at least 8 of [A-Za-z0-9$-_.+]")]
    BadSessionId,
    #[error("nonce must be non-empty [A-Za-z0-9]")]
    BadNonce,
    #[error("timeouts must be between 1 s and 1 day")]
    BadTimeout,
}

/// How a track's packets travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP to the player's address (the RTSP peer's IP; a `destination=` in the request is
    /// ignored so that the server cannot be aimed at a third party) on `client_rtp` and
    /// `client_rtcp`, from `server`.
    Udp {
        client_rtp: u16,
        client_rtcp: u16,
        server: UdpPorts,
    },
    /// Interleaved `$` frames on the RTSP connection.
    Interleaved { rtp_channel: u8, rtcp_channel: u8 },
}

/// One track as set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackSetup {
    pub track: Track,
    pub transport: Transport,
    pub rtp: RtpParams,
    pub payload_type: u8,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum EndReason {
    /// The player sent TEARDOWN.
    #[error("player tore the session down")]
    Teardown,
    /// No RTSP request or RTCP report within the session timeout.
    #[error("no keep-alive within the session timeout")]
    KeepAliveTimeout,
    /// SETUP but no PLAY within the play timeout.
    #[error("player set up but never played")]
    NeverPlayed,
}

/// What the I/O layer must do after writing the response, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start sending these tracks: build the payloaders with each `rtp` and `payload_type`,
    /// and send from the next keyframe (request one from the encoder).
    StartPlaying { tracks: Vec<TrackSetup> },
    /// Stop sending (PAUSE); keep the payloaders so numbering continues.
    Pause,
    /// Send again after a pause, from the next keyframe.
    Resume,
    /// Stop sending and close the connection.
    End(EndReason),
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Write `response`, then carry out `actions`.
    Reply {
        response: Response,
        actions: Vec<Action>,
    },
    /// A DESCRIBE that needs the server: resolve [`DescribeQuery::path`], check
    /// [`DescribeQuery::authorize`], then answer with
    /// [`PlayerSession::complete_describe`]. Read no further request until then.
    Describe(Box<DescribeQuery>),
}

impl Handled {
    fn reply(response: Response) -> Self {
        Self::Reply {
            response,
            actions: Vec::new(),
        }
    }
}

/// A DESCRIBE waiting for the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeQuery {
    /// What the URL asks for.
    pub path: StreamPath,
    /// The parsed `Authorization` header: `None` if absent.
    pub credentials: Option<Result<Credentials, AuthParseError>>,
    /// The request, kept to answer it.
    request: Request,
    realm: String,
    nonce: String,
}

impl DescribeQuery {
    /// The tag of the candidate secret the player's credentials prove, if any (see
    /// [`auth::authorize`]); candidates may depend on [`username`](Self::username).
    pub fn authorize<T, S: AsRef<str>>(
        &self,
        candidates: impl IntoIterator<Item = (T, S)>,
    ) -> Option<T> {
        let creds = self.credentials.as_ref()?.as_ref().ok()?;
        auth::authorize(
            creds,
            self.request.method.as_str(),
            &self.realm,
            &self.nonce,
            candidates,
        )
    }

    /// The user name the player sent, if it sent usable credentials.
    pub fn username(&self) -> Option<&str> {
        Some(self.credentials.as_ref()?.as_ref().ok()?.username())
    }
}

/// Why the server declined a DESCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DescribeRefusal {
    /// Missing or wrong credentials: 401 with Digest and Basic challenges.
    #[error("unauthorized")]
    Unauthorized,
    /// Valid credentials that may not watch this stream.
    #[error("forbidden")]
    Forbidden,
    /// No such app or lobby.
    #[error("no such stream")]
    NotFound,
    /// The stream exists but cannot start now (no free encoder, app failed to launch).
    #[error("stream unavailable")]
    Unavailable,
    /// The request cannot be served as asked (a mode the encoder refuses).
    #[error("bad request")]
    BadRequest,
}

impl DescribeRefusal {
    /// The status answered.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode(401),
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadRequest => StatusCode::BAD_REQUEST,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing described yet (OPTIONS only).
    Init,
    /// A DESCRIBE is with the server.
    Describing,
    /// DESCRIBE answered 200; SETUPs may come.
    Described,
    /// PLAY answered.
    Playing,
    /// PAUSE answered while playing.
    Paused,
    /// Over; reported once.
    Ended(EndReason),
}

/// The RFC 2326 server state machine of one player connection (sans-IO).
///
/// Drive loop: feed every request from the connection's
/// [`InterleavedDecoder`](super::InterleavedDecoder) to [`handle`](Self::handle) and write the
/// response before reading the next; interleaved frames go to
/// [`on_interleaved`](Self::on_interleaved), RTCP datagrams from the player's address to
/// [`on_rtcp`](Self::on_rtcp). Arm a timer for [`deadline`](Self::deadline) and call
/// [`poll_timeout`](Self::poll_timeout) when it fires. Close the connection after an
/// [`Action::End`] or a `Some` from `poll_timeout`.
#[derive(Debug, Clone)]
pub struct PlayerSession {
    config: PlayerConfig,
    phase: Phase,
    description: Option<StreamDescription>,
    /// The `Content-Base` sent with the description.
    base: String,
    setups: [Option<TrackSetup>; 2],
    /// Whether a SETUP created the session (the `Session` id is then in force).
    session_open: bool,
    first_setup: Option<Instant>,
    last_keepalive: Instant,
}

impl PlayerSession {
    /// A session for a connection accepted at `now`.
    pub fn new(config: PlayerConfig, now: Instant) -> Result<Self, PlayerConfigError> {
        let id = &config.session_id;
        if id.len() < 8
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"$-_.+".contains(&b))
        {
            return Err(PlayerConfigError::BadSessionId);
        }
        if config.nonce.is_empty() || !config.nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(PlayerConfigError::BadNonce);
        }
        let ok = |d: Duration| (Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&d);
        if !ok(config.session_timeout) || !ok(config.play_timeout) {
            return Err(PlayerConfigError::BadTimeout);
        }
        Ok(Self {
            config,
            phase: Phase::Init,
            description: None,
            base: String::new(),
            setups: [None, None],
            session_open: false,
            first_setup: None,
            last_keepalive: now,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PlayerConfig {
        &self.config
    }

    /// The description accepted at DESCRIBE.
    pub fn description(&self) -> Option<&StreamDescription> {
        self.description.as_ref()
    }

    /// The tracks set up so far.
    pub fn setups(&self) -> impl Iterator<Item = &TrackSetup> {
        self.setups.iter().flatten()
    }

    /// Whether PLAY was answered and no PAUSE or end followed.
    pub fn is_playing(&self) -> bool {
        self.phase == Phase::Playing
    }

    /// Why the session ended, once it has.
    pub fn ended(&self) -> Option<EndReason> {
        match self.phase {
            Phase::Ended(r) => Some(r),
            _ => None,
        }
    }

    /// When [`poll_timeout`](Self::poll_timeout) must next be called; `None` once ended.
    pub fn deadline(&self) -> Option<Instant> {
        self.next_deadline().map(|(at, _)| at)
    }

    /// The next deadline and the reason the session ends with if it passes; `None` once
    /// ended. For a server whose session engine, not the connection, owns the deadlines.
    pub fn next_deadline(&self) -> Option<(Instant, EndReason)> {
        if matches!(self.phase, Phase::Ended(_)) {
            return None;
        }
        let idle = (
            self.last_keepalive + self.config.session_timeout,
            EndReason::KeepAliveTimeout,
        );
        let never_played = match (self.phase, self.first_setup) {
            (Phase::Described, Some(at)) => {
                Some((at + self.config.play_timeout, EndReason::NeverPlayed))
            }
            _ => None,
        };
        Some(match never_played {
            Some(np) if np.0 <= idle.0 => np,
            _ => idle,
        })
    }

    /// Ends the session if a deadline has passed at `now`, returning why (once).
    pub fn poll_timeout(&mut self, now: Instant) -> Option<EndReason> {
        let (at, reason) = self.next_deadline()?;
        if now >= at {
            self.phase = Phase::Ended(reason);
            Some(reason)
        } else {
            None
        }
    }

    /// An RTCP packet from the player (UDP, or via [`on_interleaved`](Self::on_interleaved)).
    /// Returns whether it counted as a keep-alive.
    pub fn on_rtcp(&mut self, data: &[u8], now: Instant) -> bool {
        if matches!(self.phase, Phase::Ended(_)) || !rtcp::is_keepalive(data) {
            return false;
        }
        self.last_keepalive = self.last_keepalive.max(now);
        true
    }

    /// An interleaved frame from the player. RTCP on a set-up track's RTCP channel counts as a
    /// keep-alive; anything else is ignored. Returns whether it was a keep-alive.
    pub fn on_interleaved(&mut self, channel: u8, data: &[u8], now: Instant) -> bool {
        let is_rtcp_channel = self.setups().any(|s| {
            matches!(s.transport, Transport::Interleaved { rtcp_channel, .. } if rtcp_channel == channel)
        });
        is_rtcp_channel && self.on_rtcp(data, now)
    }

    /// The track whose RTCP arrives on interleaved `channel`, if any.
    pub fn track_for_channel(&self, channel: u8) -> Option<Track> {
        self.setups()
            .find(|s| match s.transport {
                Transport::Interleaved {
                    rtp_channel,
                    rtcp_channel,
                } => channel == rtp_channel || channel == rtcp_channel,
                Transport::Udp { .. } => false,
            })
            .map(|s| s.track)
    }

    /// Answers one request at `now`. Never fails: refusals are error responses.
    pub fn handle(&mut self, req: Request, now: Instant) -> Handled {
        if let Some(reason) = self.poll_timeout(now) {
            return Handled::Reply {
                response: Response::for_request(&req, StatusCode::SESSION_NOT_FOUND),
                actions: vec![Action::End(reason)],
            };
        }
        if let Phase::Ended(_) = self.phase {
            let status = if req.method == Method::Options {
                StatusCode::OK
            } else {
                StatusCode::SESSION_NOT_FOUND
            };
            return Handled::reply(self.respond(&req, status));
        }
        if req.version != Version::RTSP_1_0 {
            return Handled::reply(Response::for_request(
                &req,
                StatusCode::VERSION_NOT_SUPPORTED,
            ));
        }
        if self.phase == Phase::Describing {
            // The I/O layer broke the drive loop; refuse rather than answer out of order.
            return Handled::reply(self.respond(&req, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE));
        }
        if let Some(value) = req.headers.get("Session") {
            let id = value.split(';').next().unwrap_or_default().trim();
            if !self.session_open || id != self.config.session_id {
                return Handled::reply(Response::for_request(&req, StatusCode::SESSION_NOT_FOUND));
            }
        }
        // Any request for this session, answered or not, shows the player is alive.
        self.last_keepalive = self.last_keepalive.max(now);
        if let Some(required) = req.headers.get("Require") {
            // No option tags are supported (RFC 2326 §12.32).
            let mut resp = self.respond(&req, StatusCode(551));
            resp.headers.append("Unsupported", sanitize(required));
            return Handled::reply(resp);
        }
        match req.method {
            Method::Options => Handled::reply(
                self.respond(&req, StatusCode::OK)
                    .with_header("Public", PUBLIC_METHODS),
            ),
            Method::GetParameter => Handled::reply(self.respond(&req, StatusCode::OK)),
            Method::Describe => self.describe(req),
            Method::Setup => Handled::reply(self.setup(&req, now)),
            Method::Play => self.play(&req),
            Method::Pause => self.pause(&req),
            Method::Teardown => {
                self.phase = Phase::Ended(EndReason::Teardown);
                Handled::Reply {
                    response: self.respond(&req, StatusCode::OK),
                    actions: vec![Action::End(EndReason::Teardown)],
                }
            }
            Method::Announce | Method::Record | Method::Redirect | Method::SetParameter => {
                Handled::reply(
                    self.respond(&req, StatusCode::METHOD_NOT_ALLOWED)
                        .with_header("Allow", PUBLIC_METHODS),
                )
            }
            Method::Other(_) => Handled::reply(
                self.respond(&req, StatusCode::NOT_IMPLEMENTED)
                    .with_header("Public", PUBLIC_METHODS),
            ),
        }
    }

    /// A response with `CSeq`, and `Session` once the session exists.
    fn respond(&self, req: &Request, status: StatusCode) -> Response {
        let mut resp = Response::for_request(req, status);
        if self.session_open {
            resp.headers.append("Session", self.session_header());
        }
        resp
    }

    fn session_header(&self) -> String {
        format!(
            "{};timeout={}",
            self.config.session_id,
            self.config.session_timeout.as_secs()
        )
    }

    fn describe(&mut self, req: Request) -> Handled {
        if !matches!(self.phase, Phase::Init | Phase::Described) || self.session_open {
            return Handled::reply(self.respond(&req, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE));
        }
        let path = match parse_path(&req.uri) {
            Ok(p) => p,
            Err(e) => return Handled::reply(self.respond(&req, e.status())),
        };
        let credentials = req
            .headers
            .get("Authorization")
            .map(auth::parse_authorization);
        // Keep only what the answer needs: the raw Authorization header must not end up in a
        // log line that prints the query.
        let mut request = Request::new(req.method.clone(), req.uri.clone());
        if let Some(cseq) = req.headers.get("CSeq") {
            request.headers.append("CSeq", cseq);
        }
        self.phase = Phase::Describing;
        Handled::Describe(Box::new(DescribeQuery {
            path,
            credentials,
            request,
            realm: self.config.realm.clone(),
            nonce: self.config.nonce.clone(),
        }))
    }

    /// Answers a DESCRIBE returned as [`Handled::Describe`]: with the SDP of `outcome`'s
    /// description, or with the refusal's status (401 carries both challenges).
    pub fn complete_describe(
        &mut self,
        query: Box<DescribeQuery>,
        outcome: Result<StreamDescription, DescribeRefusal>,
    ) -> Response {
        let req = &query.request;
        if self.phase != Phase::Describing {
            return self.respond(req, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE);
        }
        match outcome {
            Ok(description) => {
                self.phase = Phase::Described;
                self.base = query.path.base.clone();
                let sdp = description.to_sdp();
                self.description = Some(description);
                self.respond(req, StatusCode::OK)
                    .with_header("Content-Base", sanitize(&self.base))
                    .with_header("Content-Type", "application/sdp")
                    .with_body(sdp)
            }
            Err(refusal) => {
                // A refused DESCRIBE leaves the connection as it was before it.
                self.phase = if self.description.is_some() {
                    Phase::Described
                } else {
                    Phase::Init
                };
                let mut resp = self.respond(req, refusal.status());
                if refusal == DescribeRefusal::Unauthorized {
                    let [digest, basic] = auth::challenges(&self.config.realm, &self.config.nonce);
                    if self.config.offer_digest {
                        resp.headers.append("WWW-Authenticate", digest);
                    }
                    resp.headers.append("WWW-Authenticate", basic);
                }
                resp
            }
        }
    }

    fn setup(&mut self, req: &Request, now: Instant) -> Response {
        if self.phase != Phase::Described {
            return self.respond(req, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE);
        }
        let Some(description) = &self.description else {
            return self.respond(req, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE);
        };
        let Some(track) = track_of_uri(&req.uri).filter(|t| description.has(*t)) else {
            return self.respond(req, StatusCode::NOT_FOUND);
        };
        let Some(header) = req.headers.get("Transport") else {
            return self.respond(req, StatusCode::BAD_REQUEST);
        };
        let Some(transport) = self.choose_transport(track, header) else {
            return self.respond(req, StatusCode::UNSUPPORTED_TRANSPORT);
        };
        let setup = TrackSetup {
            track,
            transport,
            rtp: self.config.rtp(track),
            payload_type: track.payload_type(),
        };
        self.setups[track.index()] = Some(setup);
        self.session_open = true;
        self.first_setup.get_or_insert(now);
        let ssrc = setup.rtp.ssrc;
        let transport = match transport {
            Transport::Udp {
                client_rtp,
                client_rtcp,
                server,
            } => format!(
                "RTP/AVP;unicast;client_port={client_rtp}-{client_rtcp};server_port={}-{};ssrc={ssrc:08X}",
                server.rtp, server.rtcp
            ),
            Transport::Interleaved {
                rtp_channel,
                rtcp_channel,
            } => format!(
                "RTP/AVP/TCP;unicast;interleaved={rtp_channel}-{rtcp_channel};ssrc={ssrc:08X}"
            ),
        };
        self.respond(req, StatusCode::OK)
            .with_header("Transport", transport)
    }

    /// The first acceptable transport of the player's list (RFC 2326 §12.39).
    fn choose_transport(&self, track: Track, header: &str) -> Option<Transport> {
        header
            .split(',')
            .find_map(|spec| self.accept_transport(track, spec))
    }

    fn accept_transport(&self, track: Track, spec: &str) -> Option<Transport> {
        let mut parts = spec.split(';').map(str::trim);
        let protocol = parts.next()?.to_ascii_uppercase();
        let tcp = match protocol.as_str() {
            "RTP/AVP" | "RTP/AVP/UDP" => false,
            "RTP/AVP/TCP" => true,
            _ => return None,
        };
        let mut client_port = None;
        let mut interleaved = None;
        for p in parts {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "multicast" => return None,
                "client_port" => client_port = Some(port_range(value)?),
                "interleaved" => interleaved = Some(channel_range(value)?),
                "mode" => {
                    let mode = value.trim().trim_matches('"');
                    if !mode.eq_ignore_ascii_case("play") {
                        return None;
                    }
                }
                _ => {}
            }
        }
        // Channels and ports in use by the other track.
        let other = self
            .setups()
            .filter(|s| s.track != track)
            .map(|s| s.transport)
            .next();
        if tcp {
            let (rtp_channel, rtcp_channel) =
                interleaved.unwrap_or((2 * track.id(), 2 * track.id() + 1));
            if let Some(Transport::Interleaved {
                rtp_channel: a,
                rtcp_channel: b,
            }) = other
                && [a, b]
                    .iter()
                    .any(|c| *c == rtp_channel || *c == rtcp_channel)
            {
                return None;
            }
            Some(Transport::Interleaved {
                rtp_channel,
                rtcp_channel,
            })
        } else {
            let (client_rtp, client_rtcp) = client_port?;
            let server = self.config.udp(track)?;
            Some(Transport::Udp {
                client_rtp,
                client_rtcp,
                server,
            })
        }
    }

    fn play(&mut self, req: &Request) -> Handled {
        if !req.headers.contains("Session") {
            return Handled::reply(Response::for_request(req, StatusCode::SESSION_NOT_FOUND));
        }
        match self.phase {
            Phase::Described => {
                // session_open implies at least one SETUP.
                self.phase = Phase::Playing;
                let tracks: Vec<TrackSetup> = self.setups().copied().collect();
                let mut info = String::new();
                for s in &tracks {
                    if !info.is_empty() {
                        info.push(',');
                    }
                    let _ = write!(
                        info,
                        "url={}{};seq={};rtptime={}",
                        self.base,
                        s.track.control(),
                        s.rtp.initial_sequence,
                        s.rtp.initial_timestamp
                    );
                }
                let response = self
                    .respond(req, StatusCode::OK)
                    .with_header("Range", "npt=0.000-")
                    .with_header("RTP-Info", sanitize(&info));
                Handled::Reply {
                    response,
                    actions: vec![Action::StartPlaying { tracks }],
                }
            }
            Phase::Paused => {
                self.phase = Phase::Playing;
                Handled::Reply {
                    response: self
                        .respond(req, StatusCode::OK)
                        .with_header("Range", "npt=0.000-"),
                    actions: vec![Action::Resume],
                }
            }
            Phase::Playing => Handled::reply(
                self.respond(req, StatusCode::OK)
                    .with_header("Range", "npt=0.000-"),
            ),
            _ => Handled::reply(self.respond(req, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE)),
        }
    }

    fn pause(&mut self, req: &Request) -> Handled {
        if !req.headers.contains("Session") {
            return Handled::reply(Response::for_request(req, StatusCode::SESSION_NOT_FOUND));
        }
        match self.phase {
            Phase::Playing => {
                self.phase = Phase::Paused;
                Handled::Reply {
                    response: self.respond(req, StatusCode::OK),
                    actions: vec![Action::Pause],
                }
            }
            // RFC 2326 §10.6: PAUSE in the ready state is accepted and changes nothing.
            Phase::Paused | Phase::Described => Handled::reply(self.respond(req, StatusCode::OK)),
            _ => Handled::reply(self.respond(req, StatusCode::METHOD_NOT_VALID_IN_THIS_STATE)),
        }
    }
}

/// The track a SETUP URL names by its last segment, `trackID=N` (any case), whatever base
/// the player joined it to.
fn track_of_uri(uri: &str) -> Option<Track> {
    let path = strip_authority(uri).unwrap_or(uri);
    let last = path.rsplit('/').next()?;
    let last = last.split('?').next()?;
    let (name, id) = last.split_once('=')?;
    if !name.eq_ignore_ascii_case("trackID") {
        return None;
    }
    Track::from_id(id.parse().ok()?)
}

/// `a` or `a-b`; `a` alone means `a-(a+1)` (RFC 2326 §12.39).
fn port_range(value: &str) -> Option<(u16, u16)> {
    let (a, b) = match value.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?),
        None => {
            let a = value.trim().parse::<u16>().ok()?;
            (a, a.checked_add(1)?)
        }
    };
    (a != 0 && b != 0).then_some((a, b))
}

fn channel_range(value: &str) -> Option<(u8, u8)> {
    let (a, b) = match value.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u8>().ok()?, b.trim().parse::<u8>().ok()?),
        None => {
            let a = value.trim().parse::<u8>().ok()?;
            (a, a.checked_add(1)?)
        }
    };
    (a != b).then_some((a, b))
}

/// Header values built from player input stay on one line.
fn sanitize(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}
