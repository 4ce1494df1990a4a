//! URI sources (issue 9, "sources as apps"): a camera, stream or file feeding the producer.
//!
//! ```text
//! input pipeline (restartable, its own clock and threads):
//!   uridecodebin uri=... -> videoconvert -> videoscale -> I420 WxH caps -> appsink (latest 1)
//!                        \-> audioconvert -> audioresample -> S16LE 48 kHz stereo -> appsink
//! output pipeline (MediaPipeline, never restarted):
//!   appsrc <- main copies the latest input picture, or a slate -> textoverlay -> encoder ...
//!   appsrc <- main moves the input's samples (silence when there are none) -> opusenc ...
//! ```
//!
//! The output side keeps running at the producer's frame rate whatever the input does, so viewers
//! stay connected, key frames on request and the no-B-frame encoder settings come from the
//! ordinary path. The input side is torn down on error, end of stream or a stall, on a thread of
//! its own (setting `rtspsrc` to `Null` can wait for a dead server's TCP), and started again
//! after an exponential backoff. Each outage is reported once as [`Message::SourceLost`] and its
//! end as [`Message::SourceRestored`]; meanwhile the picture is a dark slate with the words
//! `NO SIGNAL` and the reason.
//!
//! Everything here runs on the worker's main thread (called from `MediaPipeline`), so it never
//! blocks: pulling from the input's appsink uses a zero timeout and teardown is asynchronous.
//! Audio is paced by the output's clock: each tick main pushes the samples due by then, taken
//! from a short backlog of the input's samples and padded with silence (a source without
//! audio, an outage, or an input that runs late).

use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use howl_media::protocol::Message;
use howl_media::testpattern;

use crate::error::WorkerError;

/// First reconnect delay after a loss; doubled after every failed attempt.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);

/// Longest reconnect delay. Short enough that a source coming back is on screen within 5 s
/// (issue 9 acceptance), long enough that a dead camera costs a handful of attempts a minute.
pub const BACKOFF_MAX: Duration = Duration::from_secs(3);

/// A connected input that delivers no picture for this long counts as lost (a server that
/// vanished without closing its TCP connection, or a UDP stream that stopped).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(3);

/// An attempt that has produced no picture after this long is abandoned and retried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Jitter-buffer latency asked of `rtspsrc` (its default is 2 s, far too much for live viewing).
pub const RTSP_LATENCY_MS: u32 = 200;

/// How long dropping the feed waits for the input pipeline to reach `Null`.
pub const DROP_DEADLINE: Duration = Duration::from_millis(800);

/// Input audio waiting for the output, at most this long; older samples are dropped (the input
/// ran ahead of the output clock, or the output stalled).
pub const AUDIO_BACKLOG: Duration = Duration::from_millis(200);

/// Output audio is pushed this far ahead of the output clock, on top of one frame period (the
/// main thread wakes once per frame), so the Opus encoder never runs dry between ticks.
pub const AUDIO_LEAD: Duration = Duration::from_millis(20);

/// Sample rate and channels of the audio handed between the two pipelines; the output chain
/// converts to the stream's channel count.
const AUDIO_RATE: u64 = 48_000;
const AUDIO_CHANNELS: usize = 2;

/// Slate colours (I420, video range): a dark blue-grey that no test-pattern frame has.
const SLATE_Y: u8 = 40;
const SLATE_U: u8 = 150;
const SLATE_V: u8 = 120;

/// One attempt's input pipeline.
struct Input {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    sound: gst_app::AppSink,
    started: Instant,
    /// The thread setting the pipeline to `Playing` (a source element may connect inside its
    /// state change, e.g. `srtsrc` in caller mode, which must not stall the heartbeat).
    starter: Option<JoinHandle<()>>,
}

/// The input side of a URI source and its reconnect state, owned by the worker's main thread.
pub struct SourceFeed {
    uri: String,
    info: gst_video::VideoInfo,
    width: usize,
    height: usize,
    outbox: SyncSender<Message>,
    input: Option<Input>,
    /// The thread setting the previous input to `Null`; at most one exists.
    teardown: Option<JoinHandle<()>>,
    /// Latest decoded picture, while the input is live.
    latest: Option<gst::Buffer>,
    live: bool,
    last_picture: Instant,
    retry_at: Instant,
    backoff: Duration,
    /// True between a reported loss and the matching restore.
    reported_down: bool,
    /// Reports that found the outbox full, sent on the next poll (at most a loss and a restore).
    unsent: Vec<Message>,
    overlay: Option<gst::Element>,
    /// The output pipeline's audio source.
    audio_src: gst_app::AppSrc,
    /// Input samples (interleaved stereo) not yet pushed to the output.
    audio: std::collections::VecDeque<i16>,
    /// Sample frames pushed to the output so far (its timeline).
    audio_pushed: u64,
}

impl std::fmt::Debug for SourceFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URI: it may hold credentials.
        f.debug_struct("SourceFeed")
            .field("live", &self.live)
            .field("reported_down", &self.reported_down)
            .finish_non_exhaustive()
    }
}

impl SourceFeed {
    /// Prepares a feed for `uri` at the output's size; the first connection starts on the first
    /// [`SourceFeed::poll`].
    pub fn new(
        uri: &str,
        width: u32,
        height: u32,
        outbox: SyncSender<Message>,
    ) -> Result<Self, WorkerError> {
        let info =
            gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, width, height).build()?;
        // Text on the slate when pango is installed; without it the slate is plain.
        let overlay = match gst::ElementFactory::make("textoverlay")
            .name("slate-text")
            .build()
        {
            Ok(o) => {
                let pt = (height / 24).clamp(8, 96);
                o.set_property("font-desc", format!("Sans Bold {pt}px"));
                o.set_property_from_str("valignment", "center");
                o.set_property_from_str("halignment", "center");
                o.set_property("shaded-background", false);
                o.set_property("text", "NO SIGNAL\nconnecting to the source");
                Some(o)
            }
            Err(_) => {
                tracing::warn!("textoverlay (gstreamer1.0-x) missing: the slate has no text");
                None
            }
        };
        let audio_src = gst_app::AppSrc::builder()
            .name("asrc")
            .caps(&audio_caps())
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(false)
            .block(false)
            .build();
        let now = Instant::now();
        Ok(SourceFeed {
            uri: uri.to_owned(),
            info,
            width: width as usize,
            height: height as usize,
            outbox,
            input: None,
            teardown: None,
            latest: None,
            live: false,
            last_picture: now,
            retry_at: now,
            backoff: BACKOFF_FIRST,
            reported_down: false,
            unsent: Vec::new(),
            overlay,
            audio_src,
            audio: std::collections::VecDeque::new(),
            audio_pushed: 0,
        })
    }

    /// The output's audio source (raw S16LE 48 kHz stereo), in place of the test tone.
    pub fn audio_src(&self) -> &gst_app::AppSrc {
        &self.audio_src
    }

    /// Pushes the output audio due by `now` (output running time) plus the lead: the input's
    /// samples, padded with silence.
    pub fn push_audio(&mut self, now: gst::ClockTime, frame: gst::ClockTime) {
        let ahead = now + frame + gst::ClockTime::from_nseconds(AUDIO_LEAD.as_nanos() as u64);
        let target = ahead.nseconds() * AUDIO_RATE / 1_000_000_000;
        if target <= self.audio_pushed {
            return;
        }
        let mut n = target - self.audio_pushed;
        // Starved for longer than the backlog: restart the timeline at now instead of
        // bursting stale audio.
        let backlog = AUDIO_BACKLOG.as_millis() as u64 * AUDIO_RATE / 1000;
        if n > backlog {
            self.audio_pushed = target - backlog;
            n = backlog;
        }
        let samples = n as usize * AUDIO_CHANNELS;
        let mut bytes = Vec::with_capacity(samples * 2);
        for _ in 0..samples {
            let v = self.audio.pop_front().unwrap_or(0);
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let pts = gst::ClockTime::from_nseconds(self.audio_pushed * 1_000_000_000 / AUDIO_RATE);
        let duration = gst::ClockTime::from_nseconds(n * 1_000_000_000 / AUDIO_RATE);
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        if let Some(b) = buffer.get_mut() {
            b.set_pts(pts);
            b.set_duration(duration);
        }
        self.audio_pushed += n;
        if let Err(e) = self.audio_src.push_buffer(buffer) {
            tracing::debug!(error = ?e, "audio appsrc refused a buffer");
        }
    }

    /// Moves the input's decoded samples into the backlog, dropping the oldest beyond it.
    fn take_input_audio(&mut self) {
        let Some(input) = &self.input else {
            return;
        };
        while let Some(sample) = input.sound.try_pull_sample(gst::ClockTime::ZERO) {
            let Some(buf) = sample.buffer() else {
                continue;
            };
            let Ok(map) = buf.map_readable() else {
                continue;
            };
            self.audio.extend(
                map.chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]])),
            );
        }
        let cap = AUDIO_BACKLOG.as_millis() as usize * AUDIO_RATE as usize / 1000 * AUDIO_CHANNELS;
        if self.audio.len() > cap {
            let extra = self.audio.len() - cap;
            self.audio.drain(..extra);
        }
    }

    /// The text overlay to put between `appsrc` and the encoder, if any.
    pub fn overlay(&self) -> Option<&gst::Element> {
        self.overlay.as_ref()
    }

    /// Writes the next output picture (tight I420 of the output size) into `out`: the latest
    /// input picture when live, else the slate. Returns the test-pattern counter read from the
    /// input picture (0 for the slate or a picture without one).
    pub fn fill(&self, out: &mut [u8]) -> Result<u32, WorkerError> {
        let need = testpattern::i420_size(self.width, self.height);
        let out = out
            .get_mut(..need)
            .ok_or_else(|| WorkerError::Pipeline("raw buffer too small".into()))?;
        let Some(buf) = self.latest.as_ref().filter(|_| self.live) else {
            let (y, uv) = out.split_at_mut(self.width * self.height);
            y.fill(SLATE_Y);
            let (u, v) = uv.split_at_mut(uv.len() / 2);
            u.fill(SLATE_U);
            v.fill(SLATE_V);
            return Ok(0);
        };
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), &self.info)
            .map_err(|e| WorkerError::Pipeline(format!("map input picture: {e}")))?;
        let mut offset = 0;
        for plane in 0..3u32 {
            let (w, h) = if plane == 0 {
                (self.width, self.height)
            } else {
                (self.width / 2, self.height / 2)
            };
            let stride = usize::try_from(frame.plane_stride()[plane as usize]).unwrap_or(0);
            let data = frame
                .plane_data(plane)
                .map_err(|e| WorkerError::Pipeline(format!("input plane: {e}")))?;
            for row in 0..h {
                let src = data
                    .get(row * stride..row * stride + w)
                    .ok_or_else(|| WorkerError::Pipeline("input picture truncated".into()))?;
                out[offset..offset + w].copy_from_slice(src);
                offset += w;
            }
        }
        let luma = &out[..self.width * self.height];
        Ok(testpattern::read_counter(luma, self.width, self.width, self.height).unwrap_or(0))
    }

    /// Drives the input: reads its bus and latest picture, detects loss and stalls, reconnects
    /// when the backoff has passed, and reports changes. Never blocks.
    pub fn poll(&mut self) {
        self.flush_reports();
        let now = Instant::now();
        let Some(input) = &self.input else {
            let teardown_done = self.teardown.as_ref().is_none_or(JoinHandle::is_finished);
            if now >= self.retry_at && teardown_done {
                if let Some(h) = self.teardown.take() {
                    let _ = h.join();
                }
                match self.start_input() {
                    Ok(i) => self.input = Some(i),
                    Err(e) => self.fail(&e.to_string()),
                }
            }
            return;
        };
        if let Some(reason) = bus_failure(&input.pipeline) {
            self.fail(&reason);
            return;
        }
        self.take_input_audio();
        let Some(input) = &self.input else {
            return;
        };
        let mut got = false;
        while let Some(sample) = input.sink.try_pull_sample(gst::ClockTime::ZERO) {
            if let Some(b) = sample.buffer_owned() {
                self.latest = Some(b);
                got = true;
            }
        }
        // The pipeline posts EOS only once every sink has it, and the audio sink of a source
        // without audio never does: the picture sink's own EOS is the end.
        if !got && input.sink.is_eos() {
            self.fail("end of stream");
            return;
        }
        if got {
            self.last_picture = now;
            if !self.live {
                self.live = true;
                self.backoff = BACKOFF_FIRST;
                if let Some(o) = &self.overlay {
                    o.set_property("silent", true);
                }
                tracing::info!("source delivers pictures");
                if self.reported_down {
                    self.reported_down = false;
                    self.report(Message::SourceRestored);
                }
            }
        } else if self.live && now.duration_since(self.last_picture) > STALL_TIMEOUT {
            self.fail(&format!("no picture for {} s", STALL_TIMEOUT.as_secs()));
        } else if !self.live && now.duration_since(input.started) > CONNECT_TIMEOUT {
            self.fail(&format!(
                "no picture within {} s of connecting",
                CONNECT_TIMEOUT.as_secs()
            ));
        }
    }

    /// Ends the current attempt, shows the slate and schedules the next attempt.
    fn fail(&mut self, reason: &str) {
        let reason = self.scrub(reason);
        tracing::warn!(%reason, retry_in = ?self.backoff, "source lost");
        self.tear_down();
        self.live = false;
        self.latest = None;
        self.audio.clear();
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        if let Some(o) = &self.overlay {
            o.set_property("text", format!("NO SIGNAL\n{reason}\nreconnecting"));
            o.set_property("silent", false);
        }
        if !self.reported_down {
            self.reported_down = true;
            self.report(Message::SourceLost { reason });
        }
    }

    /// Sets the input to `Null` on a thread of its own: `rtspsrc` may wait for a dead server.
    fn tear_down(&mut self) {
        let Some(input) = self.input.take() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("howl-src-down".into())
            .spawn(move || {
                if let Some(h) = input.starter {
                    let _ = h.join();
                }
                let _ = input.pipeline.set_state(gst::State::Null);
            });
        match spawned {
            Ok(h) => self.teardown = Some(h),
            Err(e) => tracing::warn!(error = %e, "cannot spawn the source teardown thread"),
        }
    }

    fn start_input(&self) -> Result<Input, WorkerError> {
        let pipeline = gst::Pipeline::with_name("howl-source");
        let src = gst::ElementFactory::make("uridecodebin")
            .name("src")
            .property("uri", &self.uri)
            .build()
            .map_err(|e| WorkerError::Pipeline(format!("uridecodebin: {e}")))?;
        src.connect("source-setup", false, |args| {
            if let Some(el) = args.get(1).and_then(|v| v.get::<gst::Element>().ok())
                && el.find_property("latency").is_some()
                && el.type_().name() == "GstRTSPSrc"
            {
                el.set_property("latency", RTSP_LATENCY_MS);
            }
            None
        });
        let conv = make("videoconvert")?;
        let scale = make("videoscale")?;
        let caps = gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::I420)
            .width(i32::try_from(self.width).unwrap_or(i32::MAX))
            .height(i32::try_from(self.height).unwrap_or(i32::MAX))
            .pixel_aspect_ratio(gst::Fraction::new(1, 1))
            .build();
        // Only the latest picture matters: main takes one per output frame.
        let sink = gst_app::AppSink::builder()
            .name("pictures")
            .caps(&caps)
            .max_buffers(1)
            .drop(true)
            .sync(true)
            .build();
        // Audio waits unlinked until the source shows an audio pad; `async = false` keeps a
        // source without audio from holding the pipeline in preroll.
        let aconv = make("audioconvert")?;
        let ares = make("audioresample")?;
        let sound = gst_app::AppSink::builder()
            .name("sound")
            .caps(&audio_caps())
            .max_buffers(64)
            .drop(true)
            .sync(true)
            .build();
        sound.set_property("async", false);
        pipeline.add_many([&src, &conv, &scale, sink.upcast_ref()])?;
        pipeline.add_many([&aconv, &ares, sound.upcast_ref()])?;
        gst::Element::link_many([&conv, &scale, sink.upcast_ref()])?;
        gst::Element::link_many([&aconv, &ares, sound.upcast_ref()])?;
        let aconv_sink = aconv
            .static_pad("sink")
            .ok_or_else(|| WorkerError::Pipeline("audioconvert has no sink pad".into()))?;
        let conv_sink = conv
            .static_pad("sink")
            .ok_or_else(|| WorkerError::Pipeline("videoconvert has no sink pad".into()))?;
        let weak = pipeline.downgrade();
        src.connect_pad_added(move |_, pad| {
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let kind = caps
                .structure(0)
                .map(|s| s.name().to_string())
                .unwrap_or_default();
            if kind.starts_with("video/") && !conv_sink.is_linked() {
                if let Err(e) = pad.link(&conv_sink) {
                    tracing::warn!(error = ?e, "cannot link the source's video");
                }
                return;
            }
            if kind.starts_with("audio/") && !aconv_sink.is_linked() {
                if let Err(e) = pad.link(&aconv_sink) {
                    tracing::warn!(error = ?e, "cannot link the source's audio");
                }
                return;
            }
            // Extra streams: into a fakesink so an unlinked pad cannot stop the source.
            let Some(pipeline) = weak.upgrade() else {
                return;
            };
            let Ok(fake) = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .property("async", false)
                .build()
            else {
                return;
            };
            if pipeline.add(&fake).is_ok() {
                let _ = fake.sync_state_with_parent();
                if let Some(p) = fake.static_pad("sink") {
                    let _ = pad.link(&p);
                }
            }
        });
        // A refused state change also posts an error on the bus, which `poll` reads; without
        // one, CONNECT_TIMEOUT ends the attempt.
        let starting = pipeline.clone();
        let starter = std::thread::Builder::new()
            .name("howl-src-up".into())
            .spawn(move || {
                if let Err(e) = starting.set_state(gst::State::Playing) {
                    tracing::debug!(error = %e, "source refused Playing");
                }
            })
            .map_err(|e| WorkerError::Pipeline(format!("cannot spawn the source starter: {e}")))?;
        tracing::info!("connecting to the source");
        Ok(Input {
            pipeline,
            sink,
            sound,
            started: Instant::now(),
            starter: Some(starter),
        })
    }

    fn report(&mut self, msg: Message) {
        self.unsent.push(msg);
        self.flush_reports();
    }

    fn flush_reports(&mut self) {
        while !self.unsent.is_empty() {
            let msg = self.unsent.remove(0);
            match self.outbox.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(m)) => {
                    self.unsent.insert(0, m);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.unsent.clear();
                    return;
                }
            }
        }
    }

    /// Removes the URI's `user:password` from a message (GStreamer errors may quote the URI).
    fn scrub(&self, reason: &str) -> String {
        let mut r = reason.to_owned();
        if let Some(userinfo) = userinfo(&self.uri) {
            r = r.replace(userinfo, "***");
        }
        r.chars().filter(|c| !c.is_control()).take(200).collect()
    }
}

impl Drop for SourceFeed {
    fn drop(&mut self) {
        // Bounded: a wedged input is left to the process exit that follows.
        self.tear_down();
        if let Some(h) = self.teardown.take() {
            let deadline = Instant::now() + DROP_DEADLINE;
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                tracing::warn!("source input did not stop before the deadline");
            }
        }
    }
}

fn audio_caps() -> gst::Caps {
    gst_audio_caps(AUDIO_RATE, AUDIO_CHANNELS)
}

fn gst_audio_caps(rate: u64, channels: usize) -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", "S16LE")
        .field("layout", "interleaved")
        .field("rate", i32::try_from(rate).unwrap_or(48_000))
        .field("channels", i32::try_from(channels).unwrap_or(2))
        .build()
}

fn make(factory: &str) -> Result<gst::Element, WorkerError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|e| WorkerError::Pipeline(format!("element {factory}: {e}")))
}

/// The first error or end of stream on the input's bus, as a short reason; drains the bus.
fn bus_failure(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(msg) = bus.pop() {
        use gst::MessageView;
        match msg.view() {
            MessageView::Error(e) => return Some(e.error().to_string()),
            MessageView::Eos(_) => return Some("end of stream".into()),
            MessageView::Latency(_) => {
                let _ = pipeline.recalculate_latency();
            }
            _ => {}
        }
    }
    None
}

/// The `user:password` part of a URI's authority, if any.
fn userinfo(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://")?.1;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    Some(&authority[..at]).filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_found_and_scrubbed() {
        assert_eq!(userinfo("rtsp://u:tok@h:1/a@b"), Some("u:tok"));
        assert_eq!(userinfo("rtsp://h/a@b"), None);
        assert_eq!(userinfo("file:///x"), None);
        gst::init().unwrap();
        let (tx, _rx) = std::sync::mpsc::sync_channel(4);
        let feed = SourceFeed::new("rtsp://u:tok@127.0.0.1:1/x", 64, 32, tx).unwrap();
        assert_eq!(
            feed.scrub("Unauthorized rtsp://u:tok@127.0.0.1:1/x\n"),
            "Unauthorized rtsp://***@127.0.0.1:1/x"
        );
    }

    /// A source that cannot be reached: a slate, one SourceLost, backoff growing to the cap.
    #[test]
    fn unreachable_source_gives_slate_one_loss_and_backoff() {
        gst::init().unwrap();
        // Port 1 on loopback: connection refused at once.
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let mut feed = SourceFeed::new("rtsp://127.0.0.1:1/none", 64, 32, tx).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while feed.backoff < BACKOFF_MAX && Instant::now() < deadline {
            feed.poll();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(feed.backoff, BACKOFF_MAX, "backoff grows to its cap");
        let msgs: Vec<Message> = rx.try_iter().collect();
        assert_eq!(msgs.len(), 1, "one loss per outage: {msgs:?}");
        assert!(matches!(&msgs[0], Message::SourceLost { reason } if !reason.is_empty()));
        let mut out = vec![0u8; testpattern::i420_size(64, 32)];
        assert_eq!(feed.fill(&mut out).unwrap(), 0);
        assert!(out[..64 * 32].iter().all(|&y| y == SLATE_Y));
    }
}
