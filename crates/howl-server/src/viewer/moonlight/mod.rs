//! The Moonlight viewer: one client's stream of a producer.
//!
//! Its parts: the RTSP handshake state (howl-proto's sans-IO [`MoonlightRtsp`], fed by the
//! per-launch RTSP listener through the engine, which starts the producer at ANNOUNCE), the
//! UDP video/audio senders ([`media`], started at PLAY, sending where the client's pings come
//! from), and the ENet control stream ([`control`]: decrypted and decoded by the viewer's own
//! [`ControlLink`] on the ENet router task, never on the engine actor).
//!
//! Its deadlines (the RTSP handshake, PLAY to the ENet CONNECT, control silence) are howl-core
//! domain rules; the engine feeds the domain the handshake's steps and, each tick, the time of
//! the last control message ([`Moonlight::last_control`]). When the domain ends the viewer, the
//! engine calls [`Moonlight::on_end`], which tells a client that listens why (a termination
//! message) before disconnecting ENet.

pub mod control;
pub mod media;
pub mod rtsp;

pub use control::{ControlLink, route_control};
pub use media::MediaKind;

use crate::data::enet::{EnetCommand, EnetSender, PeerId};
use crate::viewer::ViewerStats;
use crate::viewer::feed::WorkerWatch;
use howl_core::EndReason;
use howl_core::encryption::EncryptionDecision;
use howl_proto::control::{ControlCrypto, HostMessage, IvVariant, TerminationReason};
use howl_proto::rtsp::{Event as RtspEvent, MoonlightRtsp, Request, Response};
use howl_proto::sdp::{EncryptionFlags, NV_FF_AUDIO_ENCRYPTION, StreamConfig, VideoCodec};
use media::{SenderLink, SenderSettings};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The engine's half of a Moonlight viewer.
pub struct Moonlight {
    pub rikey: [u8; 16],
    pub rikeyid: i32,
    pub rtsp: MoonlightRtsp,
    /// What the encryption policy decided at `/launch` (no key material).
    pub encryption: EncryptionDecision,
    played: bool,
    /// The control stream, from the ENet CONNECT on.
    control: Option<Connected>,
    video_addr: watch::Sender<Option<SocketAddr>>,
    audio_addr: watch::Sender<Option<SocketAddr>>,
}

/// What a client's ANNOUNCE turned on.
#[derive(Debug, Clone, Copy)]
struct Negotiated {
    video: bool,
    audio: bool,
    control: bool,
}

fn negotiated_encryption(cfg: &StreamConfig) -> Negotiated {
    let enc = cfg.ss_encryption_enabled;
    Negotiated {
        video: enc.contains(EncryptionFlags::VIDEO),
        // Older clients ask for audio encryption with the NVIDIA feature flag instead.
        audio: enc.contains(EncryptionFlags::AUDIO)
            || cfg.nv_feature_flags & NV_FF_AUDIO_ENCRYPTION != 0,
        control: enc.contains(EncryptionFlags::CONTROL_V2),
    }
}

/// A session's encryption as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct EncryptionView {
    /// The client's network class by its `/launch` address: `loopback`, `lan` or `wan`.
    pub network: String,
    /// The policy for that class: `off`, `preferred` or `required`.
    pub policy: String,
    /// Whether the RTSP handshake is encrypted (`rtspenc://`).
    pub rtsp: bool,
    /// Video, audio and control encryption as the client's ANNOUNCE enabled them; `null`
    /// before ANNOUNCE.
    pub video: Option<bool>,
    pub audio: Option<bool>,
    pub control: Option<bool>,
}

/// A connected control stream.
struct Connected {
    peer: PeerId,
    enet: EnetSender,
    /// The sealing half (the termination message); the link holds the opening half.
    seal: ControlCrypto,
    link: Arc<ControlLink>,
}

impl std::fmt::Debug for Moonlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are never printed.
        f.debug_struct("Moonlight")
            .field("played", &self.played)
            .field("connected", &self.control.is_some())
            .finish_non_exhaustive()
    }
}

impl Moonlight {
    pub fn new(
        rikey: [u8; 16],
        rikeyid: i32,
        rtsp: MoonlightRtsp,
        encryption: EncryptionDecision,
    ) -> Self {
        Self {
            rikey,
            rikeyid,
            rtsp,
            encryption,
            played: false,
            control: None,
            video_addr: watch::channel(None).0,
            audio_addr: watch::channel(None).0,
        }
    }

    /// Runs one RTSP request through the handshake; returns the response and what happened.
    pub fn handshake(&mut self, request: Request, now: Instant) -> (Response, Vec<RtspEvent>) {
        let resp = self.rtsp.handle(request, now);
        let mut events = Vec::new();
        while let Some(ev) = self.rtsp.poll_event() {
            events.push(ev);
        }
        (resp, events)
    }

    /// The stream the client negotiated (from ANNOUNCE on).
    pub fn stream_config(&self) -> Option<&StreamConfig> {
        self.rtsp.stream_config()
    }

    /// What is encrypted for this viewer: the policy's decision, and from ANNOUNCE on what
    /// the client enabled. Never the keys.
    pub fn encryption_view(&self) -> EncryptionView {
        let negotiated = self.rtsp.stream_config().map(negotiated_encryption);
        EncryptionView {
            network: self.encryption.class.name().to_owned(),
            policy: self.encryption.mode.name().to_owned(),
            rtsp: self.encryption.rtsp_encrypted,
            video: negotiated.map(|n| n.video),
            audio: negotiated.map(|n| n.audio),
            control: negotiated.map(|n| n.control),
        }
    }

    /// A ping arrived from `src`: the senders send there from now on.
    pub fn learn_address(&self, kind: MediaKind, src: SocketAddr) {
        let slot = match kind {
            MediaKind::Video => &self.video_addr,
            MediaKind::Audio => &self.audio_addr,
        };
        if *slot.borrow() != Some(src) {
            tracing::debug!(?kind, %src, "media destination learned from ping");
            // send_replace: audio pings start at SETUP, before the sender subscribes at PLAY.
            slot.send_replace(Some(src));
        }
    }

    /// PLAY: starts the video and audio senders (they wait for the client's address).
    pub fn play(
        &mut self,
        (fec_percentage, fec_small_frames): (u8, bool),
        fault_drop_fraction: f64,
        socks: [&Arc<UdpSocket>; 2],
        worker_rx: &WorkerWatch,
        cancel: &CancellationToken,
        stats: &Arc<ViewerStats>,
    ) {
        self.played = true;
        let Some(cfg) = self.rtsp.stream_config().cloned() else {
            return;
        };
        let enc = negotiated_encryption(&cfg);
        let video_key = enc.video.then_some(self.rikey);
        let settings = SenderSettings {
            packet_size: cfg.packet_size as usize,
            fec_percentage,
            min_required_fec_packets: cfg.min_required_fec_packets,
            small_frame_bitrate: fec_small_frames.then_some((cfg.bitrate.maximum_kbps, cfg.fps)),
            pad_single_shard: matches!(cfg.codec, VideoCodec::H264 | VideoCodec::Hevc),
            video_key,
            audio_key: enc.audio.then_some(self.rikey),
            rikeyid: self.rikeyid,
            audio_packet_ms: cfg.audio.packet_duration_ms,
            fault_drop_fraction,
        };
        // The one line per session that says what is encrypted (flags only, never keys).
        tracing::info!(width = cfg.width, height = cfg.height, fps = cfg.fps,
            codec = ?cfg.codec, fec_small_frames,
            video_encrypted = enc.video, audio_encrypted = enc.audio,
            control_encrypted = enc.control, rtsp_encrypted = self.encryption.rtsp_encrypted,
            encryption_policy = self.encryption.mode.name(),
            network = self.encryption.class.name(), "stream negotiated");
        let [video_sock, audio_sock] = socks;
        let link = |sock: &Arc<UdpSocket>, addr: &watch::Sender<Option<SocketAddr>>| SenderLink {
            sock: sock.clone(),
            addr_rx: addr.subscribe(),
            worker_rx: worker_rx.clone(),
            cancel: cancel.clone(),
            stats: stats.clone(),
        };
        media::spawn_video_sender(settings.clone(), link(video_sock, &self.video_addr));
        media::spawn_audio_sender(settings, link(audio_sock, &self.audio_addr));
    }

    /// The ENet CONNECT carried this viewer's token: builds its control link (which the ENet
    /// router then drives) and keeps the sealing half for the termination message.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        &mut self,
        viewer: u64,
        peer: PeerId,
        enet: EnetSender,
        worker_rx: WorkerWatch,
        cancel: CancellationToken,
        stats: Arc<ViewerStats>,
        now: Instant,
    ) -> Result<Arc<ControlLink>, EndReason> {
        let iv = IvVariant::from_advertised(EncryptionFlags::ALL.0);
        let internal = |e: howl_proto::control::ControlError| EndReason::Internal {
            detail: e.to_string(),
        };
        let open = ControlCrypto::new(self.rikey, iv).map_err(internal)?;
        let seal = ControlCrypto::new(self.rikey, iv).map_err(internal)?;
        let link = Arc::new(ControlLink::new(
            viewer, open, worker_rx, cancel, stats, now,
        ));
        enet.send(EnetCommand::SetTimeout {
            peer,
            limit: 2,
            min_ms: 10_000,
            max_ms: 10_000,
        });
        self.control = Some(Connected {
            peer,
            enet,
            seal,
            link: link.clone(),
        });
        Ok(link)
    }

    /// The ENet peer of the control stream, once connected.
    pub fn peer(&self) -> Option<PeerId> {
        self.control.as_ref().map(|c| c.peer)
    }

    /// The peer disconnected by itself: nothing is to be sent to it any more.
    pub fn disconnected(&mut self) {
        self.control = None;
    }

    /// When the last control message arrived, once the control stream is connected.
    pub fn last_control(&self) -> Option<Instant> {
        self.control.as_ref().map(|c| c.link.last_seen())
    }

    /// Tells a client that listens why its stream ends, then disconnects its control stream.
    pub fn on_end(&mut self, reason: &EndReason) {
        let Some(mut c) = self.control.take() else {
            return;
        };
        if reason.client_listens() {
            let code = match reason {
                EndReason::ClientQuit
                | EndReason::Replaced
                | EndReason::ApiStop
                | EndReason::Shutdown
                | EndReason::AppExited { .. }
                | EndReason::IdleTimeout => TerminationReason::Graceful,
                // E_FAIL: the client shows an error with this code.
                _ => TerminationReason::Other(0x8000_4005),
            };
            if let Ok(bytes) = c.seal.seal(&HostMessage::Termination(code)) {
                c.enet.send(EnetCommand::Send {
                    peer: c.peer,
                    channel: howl_proto::control::HOST_SEND_CHANNEL,
                    data: bytes,
                });
            }
        }
        c.enet.send(EnetCommand::DisconnectLater {
            peer: c.peer,
            data: 0,
        });
    }
}
