//! Viewers: everything that watches a producer, one driver per kind.
//!
//! A viewer follows its producer through one [`feed::Feed`] (subscription, bounded queue,
//! lag → next keyframe), counts what it sends in its [`ViewerStats`], and publishes its
//! liveness (control traffic, a protocol deadline) for the engine to feed to howl-core's
//! domain, which owns every viewer's lifecycle: the engine ends a viewer when the domain says
//! so, with a typed `EndReason`, which cancels the driver's tasks.
//!
//! Kinds ([`ViewerKind`]): a Moonlight session ([`moonlight`]: the RTSP handshake, the UDP
//! video/audio senders and the ENet control stream), an RTSP player ([`rtsp_player`]) and a
//! browser over WebRTC ([`browser`]).
//! This module never imports the engine: drivers reach it through the small interfaces they
//! define ([`rtsp_player::PlayerEngine`]), so `engine → viewer` is the only direction.

pub mod browser;
pub mod feed;
pub mod moonlight;
pub mod rtsp_player;

use howl_core::EndReason;
use howl_core::domain::Deadline;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The deadline a driver computes and publishes for the engine to enforce (an RTSP player's
/// never-played or keep-alive timeout, a browser's connect or silence deadline): the
/// connection keeps the protocol state, the domain ends the viewer through its one end path.
#[derive(Debug, Default)]
pub struct PublishedDeadline {
    deadline: Mutex<Option<Deadline>>,
}

impl PublishedDeadline {
    /// Replaces the deadline; `None` clears it.
    pub fn publish(&self, next: Option<Deadline>) {
        // A poisoned lock only means another thread panicked mid-store.
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = next;
    }

    /// The deadline the driver published last, for the domain to enforce.
    pub fn deadline(&self) -> Option<Deadline> {
        self.deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Live counters of one viewer, shared with its driver's tasks.
#[derive(Debug, Default)]
pub struct ViewerStats {
    pub frames_sent: AtomicU64,
    pub frames_dropped: AtomicU64,
    /// Frames skipped because this viewer fell behind the producer's fan-out.
    pub frames_dropped_lagged: AtomicU64,
    /// Deltas skipped while waiting for a keyframe (after joining or lagging).
    pub frames_dropped_awaiting_keyframe: AtomicU64,
    /// Frames too large for the packetizer.
    pub frames_dropped_unpacketizable: AtomicU64,
    /// Frames this viewer is behind the producer (gauge).
    pub video_queue_depth: AtomicU64,
    /// Bytes of those frames (gauge; see `worker::VideoBytes`).
    pub video_queue_bytes: AtomicU64,
    /// Datagrams (Moonlight) or RTP/RTCP packets (players) sent.
    pub datagrams_sent: AtomicU64,
    /// Video and audio payload bytes sent to this viewer.
    pub bytes_sent: AtomicU64,
    pub datagrams_fault_dropped: AtomicU64,
    pub audio_packets_sent: AtomicU64,
    pub input_events: AtomicU64,
    /// Input events dropped because the viewer may only view.
    pub input_dropped: AtomicU64,
    /// Whether its input reaches the desktop: its permission, set by the engine whenever the
    /// domain says (`Action::SetPermission`), read on every input packet. False until told,
    /// so input is dropped, never injected, when in doubt.
    pub input_allowed: AtomicBool,
    pub control_messages: AtomicU64,
    pub control_errors: AtomicU64,
    /// Latest ENet round-trip time in ms; 0 until the first report.
    pub rtt_ms: AtomicU64,
}

impl ViewerStats {
    pub fn get(v: &AtomicU64) -> u64 {
        v.load(Ordering::Relaxed)
    }
}

/// What a viewer streams, as the API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamShape {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub codec: String,
    pub bitrate_kbps: u32,
}

/// The kind-specific half of a viewer the engine holds. Adding a kind of viewer means one
/// driver module beside [`moonlight`] and [`rtsp_player`] and one variant here (see
/// docs/ARCHITECTURE.md, "Adding a viewer kind").
#[derive(Debug)]
pub enum ViewerKind {
    Moonlight(Box<moonlight::Moonlight>),
    RtspPlayer(rtsp_player::PlayerViewer),
    Browser(browser::BrowserViewer),
}

impl ViewerKind {
    /// The first part of the end path, before the engine lets go of the viewer: tell the
    /// viewer why (where its protocol can).
    pub fn on_end(&mut self, reason: &EndReason) {
        match self {
            ViewerKind::Moonlight(m) => m.on_end(reason),
            // The connection task sees the cancellation and closes the TCP connection.
            ViewerKind::RtspPlayer(_) => {}
            // The driver sees the cancellation and closes its `Rtc`; a browser whose peer
            // connection is gone notices by ICE consent.
            ViewerKind::Browser(_) => {}
        }
    }

    /// The kind's word in logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ViewerKind::Moonlight(_) => "moonlight",
            ViewerKind::RtspPlayer(_) => "rtsp",
            ViewerKind::Browser(_) => "browser",
        }
    }
}
