//! The media pipeline for one producer, owned by the worker's main thread.
//!
//! ```text
//! appsrc (test pattern, I420, live) -> [videoconvert] -> encoder -> parser -> capsfilter -> appsink
//! audiotestsrc (sine, live) -> audioconvert -> audioresample -> capsfilter -> opusenc -> appsink
//! ```
//!
//! A desktop replaces both sources:
//!
//! ```text
//! ximagesrc (Xvfb display, XShm) -> capsfilter (fps) -> queue (leaky) -> videoconvert -> capsfilter (I420/NV12) -> encoder ...
//! pulsesrc (null sink monitor) | audiotestsrc (silence, no sound server) -> audioconvert ...
//! ```
//!
//! The main thread draws test-pattern frames into pooled buffers and pushes them into `appsrc`
//! at the frame rate (PTS = pipeline running time, shared with the audio). The appsink callbacks
//! run on GStreamer streaming threads: they copy the sample into a protocol message and
//! `try_send` it to the writer; on overflow they drop, count, and ask main for a key frame,
//! dropping video until it arrives (a delta frame after a gap is undecodable anyway).
//! [`MediaPipeline`]'s `Drop` sets the pipeline to `Null` on every exit path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use howl_media::annexb;
use howl_media::protocol::{AudioPacket, Codec, Message, OpusConfig, StreamParams, VideoFrame};
use howl_media::testpattern;

use crate::encoders::{self, set};
use crate::error::WorkerError;
use crate::source::SourceFeed;

/// Frames whose (pts → counter) pairing waits for the encoder's output. The encoder holds at
/// most a few frames (zero-latency, no B-frames); this bounds the table if it drops some.
pub const PENDING_COUNTERS_CAPACITY: usize = 64;

/// Raw frames in flight between the drawing thread and the encoder (buffer pool size). When all
/// are busy the encoder is behind and the next frame is skipped instead of queued.
pub const RAW_FRAME_POOL: u32 = 6;

/// Live-ness: `appsrc` queue length before it drops new frames (encoder overloaded).
pub const APPSRC_MAX_BUFFERS: u32 = 2;

/// Counters shared between the streaming-thread callbacks and the main thread.
#[derive(Debug, Default)]
pub struct Shared {
    /// Video access units produced by the encoder (sent or dropped); also the next video `seq`.
    pub video_frames: AtomicU64,
    /// Opus packets produced (sent or dropped); also the next audio `seq`.
    pub audio_packets: AtomicU64,
    /// Video frames dropped because the outbox was full (or while waiting for a key frame).
    pub video_dropped: AtomicU64,
    /// Audio packets dropped because the outbox was full.
    pub audio_dropped: AtomicU64,
    /// Raw frames not drawn because the encoder was behind (pool empty / appsrc full).
    pub frames_skipped: AtomicU64,
    /// Set by a callback after a video drop: main forces a key frame.
    pub need_keyframe: AtomicBool,
    /// While set, the video callback drops delta frames.
    awaiting_keyframe: AtomicBool,
    /// Set once the audio caps were checked against the announced Opus layout.
    audio_caps_checked: AtomicBool,
}

/// (pts ns, counter) of frames pushed but not yet seen at the encoder's output.
type PendingCounters = Arc<Mutex<VecDeque<(u64, u32)>>>;

/// Raw desktop frames queued in front of the encoder; older ones are dropped (leaky) so a slow
/// encoder shows the newest picture instead of building latency.
pub const DESKTOP_QUEUE_FRAMES: u32 = 2;

/// What the pipeline captures.
#[derive(Debug, Clone)]
pub enum Capture {
    /// The drawn test pattern and a sine tone.
    TestPattern {
        /// Tone frequency.
        tone_hz: u32,
    },
    /// A camera, stream or file, decoded by a restartable input ([`SourceFeed`]) and drawn
    /// into the frames pushed on the test pattern's schedule.
    Uri {
        /// The URI (credentials possible: never logged).
        uri: String,
    },
    /// An X display and (optionally) a PulseAudio null sink's monitor.
    Desktop {
        /// X display name, `:N`.
        display: String,
        /// PulseAudio server (`unix:/path`); `None`: silent audio.
        pulse_server: Option<String>,
    },
}

/// One running (or ready) pipeline.
#[derive(Debug)]
pub struct MediaPipeline {
    pipeline: gst::Pipeline,
    /// The test pattern's source; `None` for a desktop (its source runs by itself).
    appsrc: Option<gst_app::AppSrc>,
    encoder: gst::Element,
    pool: Option<gst::BufferPool>,
    pending: PendingCounters,
    shared: Arc<Shared>,
    width: usize,
    height: usize,
    frame_duration: gst::ClockTime,
    /// Index of the next frame slot on the fps grid (PTS = index * frame_duration).
    next_slot: u64,
    /// Test-pattern counter of the next frame pushed; starts at 1.
    next_counter: u32,
    /// Name of the encoder element in use (for logs).
    pub encoder_name: &'static str,
    /// The input of a URI source; `None` for the test pattern.
    feed: Option<SourceFeed>,
}

fn make(factory: &str, name: &str) -> Result<gst::Element, WorkerError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|e| WorkerError::Pipeline(format!("element {factory}: {e}")))
}

fn capsfilter(name: &str, caps: &gst::Caps) -> Result<gst::Element, WorkerError> {
    let f = make("capsfilter", name)?;
    f.set_property("caps", caps);
    Ok(f)
}

fn parse_caps(s: &str) -> Result<gst::Caps, WorkerError> {
    s.parse::<gst::Caps>()
        .map_err(|e| WorkerError::Pipeline(format!("caps {s}: {e}")))
}

impl MediaPipeline {
    /// Builds (but does not start) the pipeline for `params`, sending media to `outbox`.
    pub fn build(
        params: &StreamParams,
        capture: &Capture,
        outbox: SyncSender<Message>,
        shared: Arc<Shared>,
    ) -> Result<Self, WorkerError> {
        params.validate()?;
        let opus = OpusConfig::for_channels(params.audio_channels).ok_or_else(|| {
            WorkerError::Unsupported(format!("{} audio channels", params.audio_channels))
        })?;
        let feed = match capture {
            Capture::Uri { uri } => Some(SourceFeed::new(
                uri,
                params.width,
                params.height,
                outbox.clone(),
            )?),
            Capture::TestPattern { .. } | Capture::Desktop { .. } => None,
        };

        let pipeline = gst::Pipeline::with_name("howl-worker");
        let width = params.width as usize;
        let height = params.height as usize;
        let fps = i32::try_from(params.fps)
            .map_err(|_| WorkerError::Unsupported(format!("fps {}", params.fps)))?;

        // --- video ---
        let info = gst_video::VideoInfo::builder(
            gst_video::VideoFormat::I420,
            params.width,
            params.height,
        )
        .fps(gst::Fraction::new(fps, 1))
        .build()?;
        let raw_caps = info.to_caps()?;
        let appsrc = gst_app::AppSrc::builder()
            .name("vsrc")
            .caps(&raw_caps)
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(false)
            .block(false)
            .build();
        set(&appsrc, "max-buffers", &APPSRC_MAX_BUFFERS.to_string())?;
        set(&appsrc, "leaky-type", "downstream")?;

        let (candidate, encoder) = encoders::make_encoder(params)?;
        let (parser_name, parsed_caps) = encoders::parser_for(params.codec);
        let parser = make(parser_name, "vparse")?;
        if params.codec != Codec::Av1 {
            // Parameter sets before every key frame, whatever the encoder does.
            set(&parser, "config-interval", "-1")?;
        }
        let vcaps = capsfilter("vcaps", &parse_caps(parsed_caps)?)?;
        let pending: PendingCounters = Arc::new(Mutex::new(VecDeque::with_capacity(
            PENDING_COUNTERS_CAPACITY,
        )));
        let vsink = video_sink(
            params.codec,
            outbox.clone(),
            shared.clone(),
            pending.clone(),
        );

        let mut chain: Vec<gst::Element> = Vec::new();
        match capture {
            Capture::TestPattern { .. } | Capture::Uri { .. } => {
                chain.push(appsrc.clone().upcast());
                if let Some(overlay) = feed.as_ref().and_then(SourceFeed::overlay) {
                    chain.push(overlay.clone());
                }
                if candidate.wants_convert {
                    chain.push(make("videoconvert", "vconv")?);
                }
            }
            Capture::Desktop { display, .. } => {
                let xsrc = make("ximagesrc", "vsrc")?;
                set(&xsrc, "display-name", display)?;
                // Full frames at the requested rate: damage tracking adds latency and work for
                // a desktop that changes anyway, and XShm does the copying.
                set(&xsrc, "use-damage", "false")?;
                set(&xsrc, "show-pointer", "true")?;
                let rate = capsfilter(
                    "vrate",
                    &parse_caps(&format!("video/x-raw,framerate={fps}/1"))?,
                )?;
                let queue = make("queue", "vqueue")?;
                set(
                    &queue,
                    "max-size-buffers",
                    &DESKTOP_QUEUE_FRAMES.to_string(),
                )?;
                set(&queue, "max-size-bytes", "0")?;
                set(&queue, "max-size-time", "0")?;
                set(&queue, "leaky", "downstream")?;
                let format = if candidate.wants_convert {
                    "NV12"
                } else {
                    "I420"
                };
                let conv_caps = capsfilter(
                    "vfmt",
                    &parse_caps(&format!(
                        "video/x-raw,format={format},width={},height={}",
                        params.width, params.height
                    ))?,
                )?;
                chain.extend([
                    xsrc,
                    rate,
                    queue,
                    make("videoconvert", "vconv")?,
                    make("videoscale", "vscale")?,
                    conv_caps,
                ]);
            }
        }
        chain.extend([encoder.clone(), parser, vcaps, vsink.upcast()]);
        pipeline.add_many(&chain)?;
        gst::Element::link_many(&chain)?;

        // --- audio ---
        let samples = 48 * u32::from(params.audio_packet_ms);
        let asrc = match capture {
            // URI sources: the source's audio (or silence), pushed by main.
            Capture::Uri { .. } => match &feed {
                Some(feed) => feed.audio_src().clone().upcast(),
                None => return Err(WorkerError::Pipeline("URI source without its feed".into())),
            },
            Capture::TestPattern { tone_hz } => {
                let asrc = make("audiotestsrc", "asrc")?;
                set(&asrc, "wave", "sine")?;
                set(&asrc, "freq", &tone_hz.to_string())?;
                set(&asrc, "is-live", "true")?;
                set(&asrc, "samplesperbuffer", &samples.to_string())?;
                asrc
            }
            Capture::Desktop {
                pulse_server: Some(server),
                ..
            } => {
                let asrc = make("pulsesrc", "asrc")?;
                set(&asrc, "server", server)?;
                set(
                    &asrc,
                    "device",
                    &format!("{}.monitor", crate::desktop::SINK_NAME),
                )?;
                // The system clock paces the pipeline, not the sound server's: a pulse clock
                // that starts late stalls the screen capture, which waits on it (seen as
                // 0.7 s without frames two seconds into a stream).
                set(&asrc, "provide-clock", "false")?;
                // Small capture buffers: audio latency is the buffer time.
                set(&asrc, "buffer-time", "40000")?;
                set(
                    &asrc,
                    "latency-time",
                    &(u64::from(params.audio_packet_ms) * 1000).to_string(),
                )?;
                asrc
            }
            Capture::Desktop {
                pulse_server: None, ..
            } => {
                let asrc = make("audiotestsrc", "asrc")?;
                set(&asrc, "wave", "silence")?;
                set(&asrc, "is-live", "true")?;
                set(&asrc, "samplesperbuffer", &samples.to_string())?;
                asrc
            }
        };
        let aconv = make("audioconvert", "aconv")?;
        let ares = make("audioresample", "ares")?;
        let acaps = capsfilter(
            "acaps",
            &parse_caps(&format!(
                "audio/x-raw,rate=48000,channels={}",
                params.audio_channels
            ))?,
        )?;
        let aenc = make("opusenc", "aenc")?;
        set(
            &aenc,
            "bitrate",
            &OpusConfig::normal_quality_bitrate(params.audio_channels).to_string(),
        )?;
        set(&aenc, "frame-size", &params.audio_packet_ms.to_string())?;
        // Hard CBR: audio FEC needs equal packet lengths (reference §5.2).
        set(&aenc, "bitrate-type", "cbr")?;
        set(&aenc, "audio-type", "restricted-lowdelay")?;
        let asink = audio_sink(outbox, shared.clone(), opus);
        let achain: [gst::Element; 6] = [asrc, aconv, ares, acaps, aenc, asink.upcast()];
        pipeline.add_many(&achain)?;
        gst::Element::link_many(&achain)?;

        let (appsrc, pool) = match capture {
            Capture::TestPattern { .. } | Capture::Uri { .. } => {
                let frame_size = u32::try_from(info.size())
                    .map_err(|_| WorkerError::Unsupported("frame too large".into()))?;
                let pool = gst::BufferPool::new();
                let mut config = pool.config();
                config.set_params(Some(&raw_caps), frame_size, 2, RAW_FRAME_POOL);
                pool.set_config(config)?;
                pool.set_active(true)?;
                (Some(appsrc), Some(pool))
            }
            Capture::Desktop { .. } => (None, None),
        };

        Ok(MediaPipeline {
            pipeline,
            appsrc,
            encoder,
            pool,
            pending,
            shared,
            width,
            height,
            frame_duration: gst::ClockTime::SECOND / u64::from(params.fps),
            next_slot: 0,
            next_counter: 1,
            encoder_name: candidate.element,
            feed,
        })
    }

    /// Sets the pipeline to `Playing`.
    pub fn play(&self) -> Result<(), WorkerError> {
        self.pipeline.set_state(gst::State::Playing)?;
        Ok(())
    }

    /// Time until the next frame is due (zero if due now; a frame period if the clock is not
    /// running yet).
    pub fn until_next_frame(&self) -> std::time::Duration {
        if self.appsrc.is_none() {
            // Nothing to draw: the main loop only needs to wake for commands and heartbeats.
            return DESKTOP_POLL;
        }
        let Some(now) = self.pipeline.current_running_time() else {
            return self.frame_duration.into();
        };
        let due = self.frame_duration * self.next_slot;
        due.saturating_sub(now).into()
    }

    /// Draws and pushes the next frame if it is due. When more than a frame late (the process was
    /// starved) it jumps to the current slot instead of bursting old frames.
    pub fn push_due_frame(&mut self) -> Result<(), WorkerError> {
        let (Some(appsrc), Some(pool)) = (self.appsrc.clone(), self.pool.clone()) else {
            return Ok(());
        };
        let Some(now) = self.pipeline.current_running_time() else {
            return Ok(());
        };
        if let Some(feed) = &mut self.feed {
            feed.push_audio(now, self.frame_duration);
        }
        let fd = self.frame_duration.nseconds().max(1);
        let now_slot = now.nseconds() / fd;
        if now_slot < self.next_slot {
            return Ok(());
        }
        if now_slot > self.next_slot {
            self.shared
                .frames_skipped
                .fetch_add(now_slot - self.next_slot, Ordering::Relaxed);
            self.next_slot = now_slot;
        }
        let pts = self.frame_duration * self.next_slot;
        self.next_slot += 1;

        let acquire =
            gst::BufferPoolAcquireParams::with_flags(gst::BufferPoolAcquireFlags::DONTWAIT);
        let Ok(mut buffer) = pool.acquire_buffer(Some(&acquire)) else {
            // All raw frames are still queued in front of the encoder: skip this one.
            self.shared.frames_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let mut counter = self.next_counter;
        {
            let b = buffer
                .get_mut()
                .ok_or_else(|| WorkerError::Pipeline("pool buffer not writable".into()))?;
            b.set_pts(pts);
            b.set_duration(self.frame_duration);
            let mut map = b
                .map_writable()
                .map_err(|e| WorkerError::Pipeline(format!("map: {e}")))?;
            match &self.feed {
                Some(feed) => counter = feed.fill(map.as_mut_slice())?,
                None => {
                    testpattern::draw_i420(map.as_mut_slice(), self.width, self.height, counter)
                        .map_err(|e| WorkerError::Pipeline(e.to_string()))?;
                }
            }
        }
        if let Ok(mut p) = self.pending.lock() {
            if p.len() >= PENDING_COUNTERS_CAPACITY {
                p.pop_front();
            }
            p.push_back((pts.nseconds(), counter));
        }
        self.next_counter = self.next_counter.wrapping_add(1);
        appsrc
            .push_buffer(buffer)
            .map_err(|e| WorkerError::Pipeline(format!("appsrc push: {e:?}")))?;
        Ok(())
    }

    /// Asks the encoder for a key frame (with headers) as soon as possible.
    pub fn force_keyframe(&self) {
        let ev = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        if !self.encoder.send_event(ev) {
            tracing::warn!("encoder did not accept the force-key-unit event");
        }
    }

    /// Drains the bus: errors and EOS end the session; everything else is handled or dropped so
    /// the bus never accumulates messages.
    pub fn poll_bus(&mut self) -> Result<(), WorkerError> {
        if let Some(feed) = &mut self.feed {
            feed.poll();
        }
        let Some(bus) = self.pipeline.bus() else {
            return Ok(());
        };
        while let Some(msg) = bus.pop() {
            use gst::MessageView;
            match msg.view() {
                MessageView::Error(e) => {
                    return Err(WorkerError::Pipeline(format!(
                        "{} from {}: {:?}",
                        e.error(),
                        msg.src().map(|s| s.name().to_string()).unwrap_or_default(),
                        e.debug()
                    )));
                }
                MessageView::Eos(_) => {
                    return Err(WorkerError::Pipeline("unexpected end of stream".into()));
                }
                MessageView::Warning(w) => {
                    tracing::warn!(warning = %w.error(), debug = ?w.debug(), "pipeline warning");
                }
                MessageView::Latency(_) => {
                    let _ = self.pipeline.recalculate_latency();
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Sets the pipeline to `Null` (idempotent). May block while streaming threads stop; the
    /// session runs it under a watchdog deadline.
    pub fn stop(&self) {
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            tracing::warn!(error = %e, "pipeline refused Null");
        }
        if let Some(pool) = &self.pool {
            let _ = pool.set_active(false);
        }
    }
}

/// How often the main loop wakes for a desktop when no command arrives (app-exit checks).
pub const DESKTOP_POLL: Duration = Duration::from_millis(100);

/// How long setting the pipeline to `Null` may take before the worker exits regardless.
pub const NULL_DEADLINE: Duration = Duration::from_millis(1500);

impl Drop for MediaPipeline {
    fn drop(&mut self) {
        // `Null` on every exit path, including unwinding (STYLE.md practice 13). A wedged
        // element can block this forever inside GStreamer, so a watchdog bounds it.
        let watchdog = Watchdog::arm(NULL_DEADLINE);
        self.stop();
        watchdog.disarm();
    }
}

/// Exits the process if not disarmed within the deadline: setting a wedged pipeline to `Null`
/// can block forever inside GStreamer, and a worker must still end promptly.
#[derive(Debug)]
struct Watchdog {
    disarm: Option<SyncSender<()>>,
}

impl Watchdog {
    /// Starts the countdown on its own thread.
    fn arm(deadline: Duration) -> Self {
        let (tx, rx) = std_mpsc::sync_channel::<()>(1);
        let spawned = std::thread::Builder::new()
            .name("howl-watchdog".into())
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(deadline) {
                    tracing::error!("shutdown exceeded its deadline; exiting without cleanup");
                    std::process::exit(i32::from(crate::EXIT_ERROR));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot spawn shutdown watchdog");
        }
        Watchdog { disarm: Some(tx) }
    }

    /// Stops the countdown (dropping it un-disarmed also stops it, without exiting).
    fn disarm(mut self) {
        if let Some(tx) = self.disarm.take() {
            let _ = tx.try_send(());
        }
    }
}

/// The buffer's PTS as pipeline running time. Encoders may shift timestamps through their
/// segment (x264enc starts its segment at 1000 h to keep DTS positive), so raw PTS values are not
/// comparable with what was pushed, nor between video and audio.
fn running_time(sample: &gst::Sample, buffer: &gst::BufferRef) -> Option<gst::ClockTime> {
    let pts = buffer.pts()?;
    match sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
    {
        Some(seg) => seg.to_running_time(pts),
        None => Some(pts),
    }
}

/// Finds the counter drawn into the frame with PTS `pts`, dropping entries of older frames
/// (frames the encoder or appsrc dropped).
fn take_counter(pending: &PendingCounters, pts: Option<gst::ClockTime>) -> u32 {
    let Some(pts) = pts.map(|p| p.nseconds()) else {
        return 0;
    };
    let Ok(mut p) = pending.lock() else {
        return 0;
    };
    while let Some(&(t, c)) = p.front() {
        if t < pts {
            p.pop_front();
        } else if t == pts {
            p.pop_front();
            return c;
        } else {
            break;
        }
    }
    0
}

fn video_sink(
    codec: Codec,
    outbox: SyncSender<Message>,
    shared: Arc<Shared>,
    pending: PendingCounters,
) -> gst_app::AppSink {
    let callbacks = gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
            let Some(buffer) = sample.buffer() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            let seq = shared.video_frames.fetch_add(1, Ordering::Relaxed);
            let pts = running_time(&sample, buffer);
            let frame_counter = take_counter(&pending, pts);
            if shared.awaiting_keyframe.load(Ordering::Relaxed) {
                if !keyframe {
                    shared.video_dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(gst::FlowSuccess::Ok);
                }
                shared.awaiting_keyframe.store(false, Ordering::Relaxed);
            }
            let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
            let data = if keyframe {
                // Keep the slice in the first network packet: no SEI or repeated headers before it.
                annexb::clean_keyframe(codec, &map).unwrap_or_else(|| map.to_vec())
            } else {
                map.to_vec()
            };
            let msg = Message::Video(VideoFrame {
                seq,
                frame_counter,
                pts_us: pts.map_or(0, |t| t.useconds()),
                keyframe,
                data,
            });
            match outbox.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    shared.video_dropped.fetch_add(1, Ordering::Relaxed);
                    shared.awaiting_keyframe.store(true, Ordering::Relaxed);
                    shared.need_keyframe.store(true, Ordering::Relaxed);
                }
                // Writer gone: main is already shutting down; drop silently.
                Err(TrySendError::Disconnected(_)) => {}
            }
            Ok(gst::FlowSuccess::Ok)
        })
        .build();
    gst_app::AppSink::builder()
        .name("vsink")
        .sync(false)
        .max_buffers(4)
        .callbacks(callbacks)
        .build()
}

/// Reads the Opus layout from `audio/x-opus` caps, in client speaker order.
fn opus_config_from_caps(caps: &gst::CapsRef) -> Option<OpusConfig> {
    let s = caps.structure(0)?;
    let channels = u8::try_from(s.get::<i32>("channels").ok()?).ok()?;
    if channels <= 2 {
        return OpusConfig::for_channels(channels);
    }
    let streams = u8::try_from(s.get::<i32>("stream-count").ok()?).ok()?;
    let coupled = u8::try_from(s.get::<i32>("coupled-count").ok()?).ok()?;
    let mapping = s.get::<gst::Array>("channel-mapping").ok()?;
    let vorbis: Option<Vec<u8>> = mapping
        .iter()
        .map(|v| v.get::<i32>().ok().and_then(|x| u8::try_from(x).ok()))
        .collect();
    OpusConfig::from_vorbis_order(channels, streams, coupled, &vorbis?)
}

fn audio_sink(
    outbox: SyncSender<Message>,
    shared: Arc<Shared>,
    announced: OpusConfig,
) -> gst_app::AppSink {
    let callbacks = gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
            if !shared.audio_caps_checked.swap(true, Ordering::Relaxed) {
                let actual = sample.caps().and_then(opus_config_from_caps);
                if actual.as_ref() != Some(&announced) {
                    let message = format!(
                        "opusenc layout {actual:?} differs from the announced {announced:?}"
                    );
                    tracing::error!("{message}");
                    let _ = outbox.try_send(Message::Error {
                        fatal: true,
                        message,
                    });
                    // Not-negotiated is fatal upstream: the source posts an error on the bus.
                    return Err(gst::FlowError::NotNegotiated);
                }
            }
            let Some(buffer) = sample.buffer() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let seq = shared.audio_packets.fetch_add(1, Ordering::Relaxed);
            let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
            let msg = Message::Audio(AudioPacket {
                seq,
                pts_us: running_time(&sample, buffer).map_or(0, |t| t.useconds()),
                data: map.to_vec(),
            });
            if let Err(TrySendError::Full(_)) = outbox.try_send(msg) {
                shared.audio_dropped.fetch_add(1, Ordering::Relaxed);
            }
            Ok(gst::FlowSuccess::Ok)
        })
        .build();
    gst_app::AppSink::builder()
        .name("asink")
        .sync(false)
        .max_buffers(8)
        .callbacks(callbacks)
        .build()
}
