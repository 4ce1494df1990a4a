//! Viewers: one consumer of one producer's stream, whatever protocol carries it.
//!
//! A viewer's kind holds what only that kind has (a Moonlight session's handshake phases, an
//! RTSP player's URL path); everything the lifecycle rules need is common: the producer it
//! watches, who it is, and the one deadline that ends it.

use super::{Codec, Permission, ProducerId, ViewerId};
use crate::EndReason;
use howl_proto::sdp::{StreamConfig, VideoCodec};
use std::time::{Duration, Instant};

/// Who a viewer acts for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A paired Moonlight client, by its certificate fingerprint (lower-case hex).
    Client(String),
    /// The operator (admin token or the API's unix socket).
    Admin,
    /// A tenant, by id: it sees only what it owns.
    Tenant(u64),
}

impl Principal {
    /// Whether this principal may see a producer owned by `owner` (`None`: the operator's).
    pub fn may_access(&self, owner: Option<u64>) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Tenant(id) => owner == Some(*id),
            // Clients reach producers through their own launches and lobby membership lists,
            // never through ownership.
            Principal::Client(_) => false,
        }
    }

    /// The client fingerprint, for a Moonlight client.
    pub fn client(&self) -> Option<&str> {
        match self {
            Principal::Client(fp) => Some(fp),
            _ => None,
        }
    }
}

/// When a viewer ends unless something happens first, and with which reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    pub reason: EndReason,
}

/// A consumer of one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub id: ViewerId,
    pub producer: ProducerId,
    pub kind: ViewerKind,
    pub principal: Principal,
    /// How logs, events and the API name it: a client fingerprint, or `rtsp:admin@peer`.
    pub label: String,
    pub started_at: Instant,
    /// The earliest moment it ends by itself; recomputed on every input that touches it.
    pub deadline: Option<Deadline>,
    /// What it may do now: the domain's rule applied ([`super::permission_of`]), kept in step
    /// with every change.
    pub permission: Permission,
    /// An operator's setting for this one viewer, overriding every other rule.
    pub permission_override: Option<Permission>,
}

/// What kind of viewer, with the state only that kind has. Adding a kind is one variant here,
/// one arm in [`ViewerKind::carries`] and [`ViewerKind::name`], and its deadlines in
/// `Viewer::refresh_deadline`; see the module doc of [`super`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewerKind {
    /// A Moonlight client's stream: RTSP handshake, UDP video/audio, ENet control.
    Moonlight(MoonlightViewer),
    /// A standard RTSP player (VLC, ffmpeg, OBS) on the egress port.
    RtspPlayer(RtspPlayer),
    /// A web browser over WebRTC (WHEP signalling, the shared WebRTC UDP port).
    Browser(BrowserViewer),
}

impl ViewerKind {
    /// Whether this kind can carry `codec` at all (before asking the host or the producer).
    pub fn carries(&self, codec: Codec) -> bool {
        match self {
            ViewerKind::Moonlight(_) => true,
            // RFC 6184 and RFC 7798 payloaders only: there is no AV1 RTP payloader.
            ViewerKind::RtspPlayer(_) => matches!(codec, Codec::H264 | Codec::Hevc),
            // Every browser decodes H.264; AV1 goes to browsers whose offer lists it (the
            // driver refuses other offers with the reason). HEVC in WebRTC is not universal.
            ViewerKind::Browser(_) => matches!(codec, Codec::H264 | Codec::Av1),
        }
    }

    /// Whether this kind has an input channel at all (keyboard, mouse, gamepad).
    pub fn sends_input(&self) -> bool {
        match self {
            ViewerKind::Moonlight(_) => true,
            ViewerKind::RtspPlayer(_) => false,
            // The page's data channels.
            ViewerKind::Browser(_) => true,
        }
    }

    /// A stable name, for logs, metrics and refusals.
    pub fn name(&self) -> &'static str {
        match self {
            ViewerKind::Moonlight(_) => "Moonlight clients",
            ViewerKind::RtspPlayer(_) => "RTSP players",
            ViewerKind::Browser(_) => "browsers",
        }
    }
}

/// A Moonlight session's own state. Phases are derived from what happened (see
/// [`MoonlightViewer::phase`]) rather than stored, because a client may connect its control
/// stream before PLAY is answered, and then two deadlines apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoonlightViewer {
    /// `/launch` or `/resume`: the RTSP handshake deadline counts from here.
    pub launched_at: Instant,
    /// What ANNOUNCE negotiated, once accepted.
    pub announced: Option<AnnouncedStream>,
    /// When PLAY was answered: the control stream must connect within the connect deadline.
    pub played_at: Option<Instant>,
    /// When the last control message (or the ENet connect) arrived; `None` before the
    /// control stream connects.
    pub last_control: Option<Instant>,
}

/// Where a Moonlight session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoonlightPhase {
    /// Launched; RTSP in progress.
    Handshake,
    /// ANNOUNCE accepted (the producer knows its mode); PLAY not yet answered.
    Announced,
    /// PLAY answered; waiting for the ENet control stream.
    Playing,
    /// The control stream is up.
    Connected,
}

impl MoonlightViewer {
    pub fn phase(&self) -> MoonlightPhase {
        match (self.last_control, self.played_at, &self.announced) {
            (Some(_), _, _) => MoonlightPhase::Connected,
            (None, Some(_), _) => MoonlightPhase::Playing,
            (None, None, Some(_)) => MoonlightPhase::Announced,
            (None, None, None) => MoonlightPhase::Handshake,
        }
    }
}

/// An RTSP player's own state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspPlayer {
    /// The URL path it watches (`/app/<name>` or `/lobby/<name>`), for per-path counters.
    pub path: String,
    /// The codec it receives (the producer's).
    pub codec: Codec,
    /// The deadline its connection's protocol state computes (never played, keep-alive) and
    /// publishes; the domain enforces it so a wedged connection task cannot keep it alive.
    pub published: Option<Deadline>,
}

/// A browser viewer's own state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserViewer {
    /// The codec it receives (the producer's).
    pub codec: Codec,
    /// The deadline its driver computes (never connected, ICE consent, silence) and
    /// publishes; the domain enforces it so a wedged driver task cannot keep it alive.
    pub published: Option<Deadline>,
}

/// The lifecycle timeouts of Moonlight sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoonlightTimeouts {
    /// RTSP handshake deadline (to PLAY), counted from `/launch` or `/resume`.
    pub rtsp: Duration,
    /// After PLAY, how long the client has to connect its control stream.
    pub connect: Duration,
    /// With the control stream up, how long without any control message ends the session.
    pub control_silence: Duration,
}

impl Viewer {
    /// Recomputes [`Viewer::deadline`] from the kind's state: the earliest that applies.
    pub(crate) fn refresh_deadline(&mut self, t: &MoonlightTimeouts) {
        self.deadline = match &self.kind {
            ViewerKind::Moonlight(m) => {
                let mut d: Vec<Deadline> = Vec::with_capacity(2);
                match (m.played_at, m.last_control) {
                    (None, _) => d.push(Deadline {
                        at: m.launched_at + t.rtsp,
                        reason: EndReason::RtspDeadline,
                    }),
                    (Some(p), None) => d.push(Deadline {
                        at: p + t.connect,
                        reason: EndReason::NeverConnected,
                    }),
                    (Some(_), Some(_)) => {}
                }
                if let Some(last) = m.last_control {
                    d.push(Deadline {
                        at: last + t.control_silence,
                        reason: EndReason::ControlPingSilence,
                    });
                }
                d.into_iter().min_by_key(|d| d.at)
            }
            ViewerKind::RtspPlayer(p) => p.published.clone(),
            ViewerKind::Browser(b) => b.published.clone(),
        };
    }

    /// The Moonlight state, for a Moonlight viewer.
    pub fn moonlight(&self) -> Option<&MoonlightViewer> {
        match &self.kind {
            ViewerKind::Moonlight(m) => Some(m),
            _ => None,
        }
    }
}

/// What a Moonlight client's ANNOUNCE asks the producer to encode: the part of howl-proto's
/// [`StreamConfig`] the domain decides on (the rest is the driver's: packet size, keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnouncedStream {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    pub codec: Codec,
    pub audio_channels: u8,
    pub audio_packet_ms: u8,
    pub slices_per_frame: u8,
}

/// The encoder bitrate floor for Moonlight streams, in kbit/s: a client that configures no
/// total bitrate (`configuredBitrateKbps` absent, 0) still gets a watchable stream.
pub const MIN_MOONLIGHT_BITRATE_KBPS: u32 = 500;

impl From<&StreamConfig> for AnnouncedStream {
    fn from(cfg: &StreamConfig) -> Self {
        Self {
            width: cfg.width,
            height: cfg.height,
            fps: cfg.fps,
            bitrate_kbps: cfg.bitrate.configured_kbps.max(MIN_MOONLIGHT_BITRATE_KBPS),
            codec: codec_of(cfg.codec),
            audio_channels: cfg.audio.channels,
            // Anything out of range is refused by the parameter check with its own message.
            audio_packet_ms: u8::try_from(cfg.audio.packet_duration_ms).unwrap_or(0),
            // The worker encodes 1 to 4 slices; more is clamped, not refused (as before).
            slices_per_frame: u8::try_from(cfg.slices_per_frame.clamp(1, 4)).unwrap_or(1),
        }
    }
}

/// The one mapping from the SDP's codec to the worker's.
pub fn codec_of(c: VideoCodec) -> Codec {
    match c {
        VideoCodec::H264 => Codec::H264,
        VideoCodec::Hevc => Codec::Hevc,
        VideoCodec::Av1 => Codec::Av1,
    }
}
