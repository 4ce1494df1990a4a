//! Per-session counters, written by the receive tasks and the control thread, read at any time
//! as a [`StatsSnapshot`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use howl_proto::control::TerminationReason;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The host sent the `0x0109` termination message.
    Terminated(TerminationReason),
    /// The ENet peer disconnected (host-initiated DISCONNECT or ENet timeout) without a
    /// termination message; Moonlight reports this as error −1.
    ControlDisconnected { data: u32 },
    /// [`crate::Session::stop`] was called (or the handle dropped).
    Stopped,
    /// A local failure in the control thread.
    ControlFailed(String),
}

const NO_INDEX: u64 = u64::MAX;

/// Live counters. All relaxed atomics: they are statistics, not synchronisation.
#[derive(Debug)]
pub struct SessionStats {
    started: Instant,
    // video
    pub(crate) video_datagrams: AtomicU64,
    pub(crate) video_bytes: AtomicU64,
    pub(crate) video_rejected: AtomicU64,
    pub(crate) frames_received: AtomicU64,
    pub(crate) frames_lost: AtomicU64,
    pub(crate) keyframes: AtomicU64,
    pub(crate) fec_recovered_frames: AtomicU64,
    pub(crate) fec_recovered_shards: AtomicU64,
    pub(crate) frame_bytes: AtomicU64,
    pub(crate) frames_dropped_by_consumer: AtomicU64,
    pub(crate) first_frame_index: AtomicU64,
    pub(crate) last_frame_index: AtomicU64,
    pub(crate) first_frame_was_keyframe: Mutex<Option<bool>>,
    pub(crate) first_frame_after_ms: AtomicU64,
    pub(crate) idr_requests: AtomicU64,
    // audio
    pub(crate) audio_packets: AtomicU64,
    pub(crate) audio_fec_packets: AtomicU64,
    pub(crate) audio_lost: AtomicU64,
    pub(crate) audio_recovered: AtomicU64,
    pub(crate) audio_bytes: AtomicU64,
    pub(crate) audio_rejected: AtomicU64,
    // control
    pub(crate) control_connected: AtomicBool,
    pub(crate) control_messages_in: AtomicU64,
    pub(crate) control_rejected: AtomicU64,
    pub(crate) control_messages_out: AtomicU64,
    pub(crate) end: Mutex<Option<EndReason>>,
}

impl SessionStats {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            video_datagrams: AtomicU64::new(0),
            video_bytes: AtomicU64::new(0),
            video_rejected: AtomicU64::new(0),
            frames_received: AtomicU64::new(0),
            frames_lost: AtomicU64::new(0),
            keyframes: AtomicU64::new(0),
            fec_recovered_frames: AtomicU64::new(0),
            fec_recovered_shards: AtomicU64::new(0),
            frame_bytes: AtomicU64::new(0),
            frames_dropped_by_consumer: AtomicU64::new(0),
            first_frame_index: AtomicU64::new(NO_INDEX),
            last_frame_index: AtomicU64::new(NO_INDEX),
            first_frame_was_keyframe: Mutex::new(None),
            first_frame_after_ms: AtomicU64::new(NO_INDEX),
            idr_requests: AtomicU64::new(0),
            audio_packets: AtomicU64::new(0),
            audio_fec_packets: AtomicU64::new(0),
            audio_lost: AtomicU64::new(0),
            audio_recovered: AtomicU64::new(0),
            audio_bytes: AtomicU64::new(0),
            audio_rejected: AtomicU64::new(0),
            control_connected: AtomicBool::new(false),
            control_messages_in: AtomicU64::new(0),
            control_rejected: AtomicU64::new(0),
            control_messages_out: AtomicU64::new(0),
            end: Mutex::new(None),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records a reassembled frame.
    pub(crate) fn frame(&self, index: u32, keyframe: bool, recovered_shards: usize, bytes: usize) {
        Self::add(&self.frames_received, 1);
        Self::add(&self.frame_bytes, bytes as u64);
        if keyframe {
            Self::add(&self.keyframes, 1);
        }
        if recovered_shards > 0 {
            Self::add(&self.fec_recovered_frames, 1);
            Self::add(&self.fec_recovered_shards, recovered_shards as u64);
        }
        if self
            .first_frame_index
            .compare_exchange(
                NO_INDEX,
                u64::from(index),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.first_frame_after_ms.store(ms, Ordering::Relaxed);
            if let Ok(mut g) = self.first_frame_was_keyframe.lock() {
                *g = Some(keyframe);
            }
        }
        self.last_frame_index
            .store(u64::from(index), Ordering::Relaxed);
    }

    /// Records the end of the session; the first reason wins.
    pub(crate) fn set_end(&self, reason: EndReason) {
        if let Ok(mut g) = self.end.lock()
            && g.is_none()
        {
            *g = Some(reason);
        }
    }

    /// A consistent-enough copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let index = |c: &AtomicU64| u32::try_from(c.load(Ordering::Relaxed)).ok();
        StatsSnapshot {
            elapsed: self.started.elapsed(),
            video_datagrams: get(&self.video_datagrams),
            video_bytes: get(&self.video_bytes),
            video_rejected: get(&self.video_rejected),
            frames_received: get(&self.frames_received),
            frames_lost: get(&self.frames_lost),
            keyframes: get(&self.keyframes),
            fec_recovered_frames: get(&self.fec_recovered_frames),
            fec_recovered_shards: get(&self.fec_recovered_shards),
            frame_bytes: get(&self.frame_bytes),
            frames_dropped_by_consumer: get(&self.frames_dropped_by_consumer),
            first_frame_index: index(&self.first_frame_index),
            last_frame_index: index(&self.last_frame_index),
            first_frame_was_keyframe: self.first_frame_was_keyframe.lock().ok().and_then(|g| *g),
            first_frame_after: match get(&self.first_frame_after_ms) {
                NO_INDEX => None,
                ms => Some(Duration::from_millis(ms)),
            },
            idr_requests: get(&self.idr_requests),
            audio_packets: get(&self.audio_packets),
            audio_fec_packets: get(&self.audio_fec_packets),
            audio_lost: get(&self.audio_lost),
            audio_recovered: get(&self.audio_recovered),
            audio_bytes: get(&self.audio_bytes),
            audio_rejected: get(&self.audio_rejected),
            control_connected: self.control_connected.load(Ordering::Relaxed),
            control_messages_in: get(&self.control_messages_in),
            control_rejected: get(&self.control_rejected),
            control_messages_out: get(&self.control_messages_out),
            end: self.end.lock().ok().and_then(|g| g.clone()),
        }
    }
}

/// A copy of a session's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Since the session object was created (before the RTSP handshake).
    pub elapsed: Duration,
    /// Video datagrams received (data and parity).
    pub video_datagrams: u64,
    /// Their total size in bytes, as received (encrypted size when encrypted).
    pub video_bytes: u64,
    /// Video datagrams the depacketizer refused (malformed, failed authentication).
    pub video_rejected: u64,
    /// Frames reassembled completely.
    pub frames_received: u64,
    /// Frames reported lost (gaps in the frame index, unrecoverable or corrupt frames).
    pub frames_lost: u64,
    /// Reassembled frames whose frame header says IDR.
    pub keyframes: u64,
    /// Frames that needed FEC recovery.
    pub fec_recovered_frames: u64,
    /// Data shards rebuilt from parity.
    pub fec_recovered_shards: u64,
    /// Access-unit bytes of the reassembled frames.
    pub frame_bytes: u64,
    /// Frames not delivered to [`crate::Session::take_frames`] because its queue was full.
    pub frames_dropped_by_consumer: u64,
    pub first_frame_index: Option<u32>,
    pub last_frame_index: Option<u32>,
    /// Whether the first reassembled frame was an IDR (a joiner must get one first).
    pub first_frame_was_keyframe: Option<bool>,
    /// Time from session creation to the first reassembled frame.
    pub first_frame_after: Option<Duration>,
    /// IDR requests sent after losses (not counting Start A).
    pub idr_requests: u64,
    /// Opus packets delivered in sequence (received or FEC-recovered, decrypted).
    pub audio_packets: u64,
    /// Audio FEC datagrams accepted (payload type 127).
    pub audio_fec_packets: u64,
    /// Audio packets reported lost (holes FEC could not fill).
    pub audio_lost: u64,
    /// Audio packets rebuilt from FEC.
    pub audio_recovered: u64,
    pub audio_bytes: u64,
    pub audio_rejected: u64,
    /// Whether the ENet control stream connected.
    pub control_connected: bool,
    /// Control messages from the host that decrypted and decoded.
    pub control_messages_in: u64,
    /// Control packets from the host that did not open.
    pub control_rejected: u64,
    /// Control messages sent (Start A/B, pings, IDR requests, input).
    pub control_messages_out: u64,
    /// Why the session ended, once it has.
    pub end: Option<EndReason>,
}

impl StatsSnapshot {
    /// Reassembled frames per second since the first one arrived.
    pub fn fps(&self) -> f64 {
        let since_first = self
            .first_frame_after
            .map_or(Duration::ZERO, |t| self.elapsed.saturating_sub(t));
        let secs = since_first.as_secs_f64();
        if secs > 0.0 {
            self.frames_received as f64 / secs
        } else {
            0.0
        }
    }
}
