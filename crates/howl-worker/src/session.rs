//! One worker session: connect, Hello, wait for Start, stream, stop.
//!
//! The main thread (this module's [`run`]) owns the pipeline and is the only one that changes
//! its state. The reader and writer threads only move bytes; they talk to main over bounded
//! channels whose capacities are the constants below.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use howl_media::protocol::{
    self, Direction, FrameDecoder, Message, PROTOCOL_VERSION, Source, StreamParams,
};
use howl_proto::input::InputEvent;

use crate::clipboard::Clipboard;
use crate::desktop::{Desktop, Isolation};
use crate::error::WorkerError;
use crate::pipeline::{Capture, MediaPipeline, Shared};
use crate::xinject::Injector;
use crate::{EXIT_ERROR, EXIT_OK, EXIT_SERVER_GONE, encoders};

/// Worker → server messages waiting for the writer thread. Producers (appsink callbacks, main)
/// never block on it: media is dropped when it is full (≈ 0.4 s of 60 fps video plus 5 ms audio),
/// because a server that far behind needs a key frame, not a backlog.
pub const OUTBOX_CAPACITY: usize = 128;

/// Reader → main commands. Input events travel here too (a burst of mouse motion is a few
/// hundred events); if main is slow the reader waits (it is our own thread, not a GStreamer
/// callback), and the server's own bounded queue drops beyond that.
pub const COMMAND_CAPACITY: usize = 256;

/// Period of [`Message::Heartbeat`].
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// How long to wait for `Start` after `Hello` before giving up.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A socket write that makes no progress for this long means the server is wedged or gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Deadline for flushing queued messages to the server after the pipeline stopped.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(1500);

/// Budget for queueing a control message (Hello, Started, Error) when the outbox is full.
const CONTROL_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Writer batches queued messages into one `write` up to about this many bytes.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// What the reader (and writer, on failure) tell main.
#[derive(Debug)]
enum Command {
    Start(StreamParams),
    RequestKeyframe,
    Stop,
    Input(u64, InputEvent),
    ReleaseInput(u64),
    SetClipboard(String),
    /// The socket closed or failed, or the peer broke the protocol.
    Closed(String),
}

/// Runs the session on `socket_path`; returns the process exit status.
pub fn run(socket_path: &Path, isolation: Isolation) -> u8 {
    let stream = match UnixStream::connect(socket_path) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(path = %socket_path.display(), error = %e, "cannot connect to server");
            return EXIT_SERVER_GONE;
        }
    };
    let (write_half, read_half) = match (stream.try_clone(), stream.try_clone()) {
        (Ok(w), Ok(r)) => (w, r),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot clone socket");
            return EXIT_ERROR;
        }
    };
    if let Err(e) = write_half.set_write_timeout(Some(WRITE_TIMEOUT)) {
        tracing::warn!(error = %e, "cannot set socket write timeout");
    }

    let (cmd_tx, cmd_rx) = mpsc::sync_channel::<Command>(COMMAND_CAPACITY);
    let (out_tx, out_rx) = mpsc::sync_channel::<Message>(OUTBOX_CAPACITY);

    let reader = spawn_guarded("howl-reader", {
        let cmd_tx = cmd_tx.clone();
        move || reader_loop(read_half, &cmd_tx)
    });
    let writer = spawn_guarded("howl-writer", {
        let cmd_tx = cmd_tx.clone();
        move || writer_loop(write_half, &out_rx, &cmd_tx)
    });
    drop(cmd_tx);
    if reader.is_none() || writer.is_none() {
        return EXIT_ERROR;
    }

    let hello = Message::Hello {
        version: PROTOCOL_VERSION,
        pid: std::process::id(),
        encoders: encoders::probe(),
    };
    let code = if send_control(&out_tx, hello).is_err() {
        EXIT_SERVER_GONE
    } else {
        serve(&cmd_rx, &out_tx, socket_path, isolation)
    };

    // Shutdown: the pipeline is already Null (dropped inside `serve`). Close the outbox so the
    // writer flushes what is queued and ends, then give it until the deadline.
    let deadline = Instant::now() + SHUTDOWN_DEADLINE;
    drop(out_tx);
    if let Some(w) = writer {
        join_until(w, deadline);
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    // The reader ends on the shutdown above; it holds nothing that needs cleaning, so it is not
    // waited for beyond the deadline.
    if let Some(r) = reader {
        join_until(r, deadline);
    }
    code
}

/// Waits for Start, then streams until Stop, socket loss or a pipeline error.
fn serve(
    cmd_rx: &Receiver<Command>,
    out_tx: &SyncSender<Message>,
    socket_path: &Path,
    isolation: Isolation,
) -> u8 {
    let params = loop {
        match cmd_rx.recv_timeout(START_TIMEOUT) {
            Ok(Command::Start(p)) => break p,
            Ok(
                Command::RequestKeyframe
                | Command::Input(..)
                | Command::ReleaseInput(_)
                | Command::SetClipboard(_),
            ) => {
                continue;
            }
            Ok(Command::Stop) => return EXIT_OK,
            Ok(Command::Closed(why)) => {
                tracing::info!(reason = %why, "server went away before Start");
                return EXIT_SERVER_GONE;
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = send_control(out_tx, fatal("no Start within 30 s"));
                return EXIT_ERROR;
            }
            Err(RecvTimeoutError::Disconnected) => return EXIT_SERVER_GONE,
        }
    };
    // Not `?params`: a URI source may carry credentials.
    tracing::info!(
        width = params.width,
        height = params.height,
        fps = params.fps,
        bitrate_kbps = params.bitrate_kbps,
        codec = params.codec.name(),
        "starting pipeline"
    );

    // A desktop first: the pipeline captures its display. Declared before the pipeline so it
    // is dropped after it (the pipeline must let go of the display and the sink first).
    let mut desktop = None;
    let mut injector = None;
    let mut clipboard = None;
    let capture = match &params.source {
        Source::TestPattern { tone_hz } => Capture::TestPattern { tone_hz: *tone_hz },
        Source::Uri { uri } => Capture::Uri { uri: uri.clone() },
        Source::Desktop(app) => {
            if let Err(e) = params.validate() {
                let _ = send_control(out_tx, fatal(&e.to_string()));
                return EXIT_ERROR;
            }
            let dir = socket_path.parent().unwrap_or(Path::new("/tmp"));
            let marker = socket_path.to_string_lossy();
            let d = match Desktop::start(params.width, params.height, app, dir, &marker, isolation)
            {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the desktop");
                    let _ = send_control(out_tx, fatal(&e.to_string()));
                    return EXIT_ERROR;
                }
            };
            match Injector::connect(&d.display_name(), params.width, params.height) {
                Ok(i) => injector = Some(i),
                // The picture still streams; input is lost, and said so.
                Err(e) => tracing::error!(error = %e, "no input injection for this desktop"),
            }
            match Clipboard::start(&d.display_name(), out_tx.clone()) {
                Ok(c) => clipboard = Some(c),
                // Browsers' clipboard is then one-way dead; the stream goes on.
                Err(e) => tracing::error!(error = %e, "no clipboard for this desktop"),
            }
            let capture = Capture::Desktop {
                display: d.display_name(),
                pulse_server: d.pulse_server(),
            };
            desktop = Some(d);
            capture
        }
    };
    let shared = Arc::new(Shared::default());
    let mut pipe = match MediaPipeline::build(&params, &capture, out_tx.clone(), shared.clone()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot build pipeline");
            let _ = send_control(out_tx, fatal(&e.to_string()));
            return EXIT_ERROR;
        }
    };
    let started = Message::Started {
        width: params.width,
        height: params.height,
        fps: params.fps,
        codec: params.codec,
        opus_config: howl_media::protocol::OpusConfig::for_channels(params.audio_channels)
            .unwrap_or_else(|| unreachable_opus(params.audio_channels)),
    };
    if send_control(out_tx, started).is_err() {
        return EXIT_SERVER_GONE;
    }
    if let Err(e) = pipe.play() {
        let _ = send_control(out_tx, fatal(&e.to_string()));
        return EXIT_ERROR;
    }
    tracing::info!(encoder = pipe.encoder_name, "pipeline playing");

    let mut desk = DesktopParts {
        desktop: desktop.as_mut(),
        injector: injector.as_mut(),
        clipboard: clipboard.as_ref(),
    };
    let code = stream_loop(&mut pipe, &shared, cmd_rx, out_tx, &mut desk);
    // Null before anything else happens (bounded by the watchdog in `MediaPipeline::drop`).
    drop(pipe);
    // Then the desktop: keys released, the app, the sound and X servers stopped.
    drop(injector);
    drop(clipboard);
    drop(desktop);
    tracing::info!(
        video_frames = shared.video_frames.load(Ordering::Relaxed),
        video_dropped = shared.video_dropped.load(Ordering::Relaxed),
        audio_packets = shared.audio_packets.load(Ordering::Relaxed),
        audio_dropped = shared.audio_dropped.load(Ordering::Relaxed),
        frames_skipped = shared.frames_skipped.load(Ordering::Relaxed),
        "pipeline stopped"
    );
    code
}

/// `for_channels` succeeds for every count `validate` accepts; a fallback keeps this total.
fn unreachable_opus(channels: u8) -> howl_media::protocol::OpusConfig {
    tracing::error!(channels, "no Opus layout for a validated channel count");
    howl_media::protocol::OpusConfig {
        sample_rate: howl_media::protocol::OPUS_SAMPLE_RATE,
        channels,
        streams: 0,
        coupled_streams: 0,
        mapping: Vec::new(),
    }
}

/// The desktop half of a session, when its source is a desktop.
struct DesktopParts<'a> {
    desktop: Option<&'a mut Desktop>,
    injector: Option<&'a mut Injector>,
    clipboard: Option<&'a Clipboard>,
}

fn stream_loop(
    pipe: &mut MediaPipeline,
    shared: &Shared,
    cmd_rx: &Receiver<Command>,
    out_tx: &SyncSender<Message>,
    desk: &mut DesktopParts<'_>,
) -> u8 {
    let mut next_heartbeat = Instant::now() + HEARTBEAT_INTERVAL;
    let mut heartbeat_seq = 0u64;
    // Dropped (leaving the loop) removes every virtual pad.
    let mut pads = crate::uinput::Gamepads::default();
    loop {
        if let Some(detail) = desk.desktop.as_mut().and_then(|d| d.poll_app_exit()) {
            // The producer ends: the server stops us. Until then the picture keeps streaming.
            tracing::info!(%detail, "app exited");
            if send_control(out_tx, Message::AppExited { detail }).is_err() {
                return EXIT_SERVER_GONE;
            }
        }
        if let Err(e) = pipe.push_due_frame().and_then(|()| pipe.poll_bus()) {
            tracing::error!(error = %e, "pipeline failed");
            let _ = send_control(out_tx, fatal(&e.to_string()));
            return EXIT_ERROR;
        }
        if shared.need_keyframe.swap(false, Ordering::Relaxed) {
            pipe.force_keyframe();
        }
        let now = Instant::now();
        if now >= next_heartbeat {
            let hb = Message::Heartbeat {
                seq: heartbeat_seq,
                video_frames: shared.video_frames.load(Ordering::Relaxed),
                audio_packets: shared.audio_packets.load(Ordering::Relaxed),
            };
            heartbeat_seq += 1;
            // A full outbox means the server is not reading: skipping the heartbeat lets its
            // supervisor notice, which is the point.
            let _ = out_tx.try_send(hb);
            next_heartbeat += HEARTBEAT_INTERVAL;
            if next_heartbeat < now {
                next_heartbeat = now + HEARTBEAT_INTERVAL;
            }
        }
        let wait = pipe
            .until_next_frame()
            .min(next_heartbeat.saturating_duration_since(Instant::now()));
        match cmd_rx.recv_timeout(wait) {
            Ok(Command::RequestKeyframe) => pipe.force_keyframe(),
            Ok(Command::Input(viewer, InputEvent::Controller(c))) => {
                if desk.desktop.is_some() {
                    let (controller, connected, state) =
                        howl_media::gamepad::PadState::from_controller(&c);
                    pads.input(viewer, controller, connected, &state);
                }
            }
            Ok(Command::Input(viewer, event)) => {
                if let Some(i) = desk.injector.as_mut() {
                    i.input(viewer, &event);
                }
            }
            Ok(Command::SetClipboard(text)) => {
                if let Some(c) = desk.clipboard {
                    c.set(text);
                }
            }
            Ok(Command::ReleaseInput(viewer)) => {
                if let Some(i) = desk.injector.as_mut() {
                    i.release(viewer);
                }
                pads.release(viewer);
            }
            Ok(Command::Stop) => {
                tracing::info!("Stop received");
                return EXIT_OK;
            }
            Ok(Command::Start(_)) => {
                tracing::warn!("ignoring a second Start");
            }
            Ok(Command::Closed(why)) => {
                tracing::info!(reason = %why, "server went away");
                return EXIT_SERVER_GONE;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return EXIT_SERVER_GONE,
        }
    }
}

fn fatal(message: &str) -> Message {
    Message::Error {
        fatal: true,
        message: message.to_owned(),
    }
}

/// Queues a control message, waiting a bounded time if the outbox is full.
fn send_control(out_tx: &SyncSender<Message>, mut msg: Message) -> Result<(), WorkerError> {
    let deadline = Instant::now() + CONTROL_SEND_TIMEOUT;
    loop {
        match out_tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(_)) => {
                return Err(WorkerError::Io(std::io::ErrorKind::BrokenPipe.into()));
            }
            Err(TrySendError::Full(m)) => {
                if Instant::now() >= deadline {
                    return Err(WorkerError::Io(std::io::ErrorKind::TimedOut.into()));
                }
                msg = m;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn reader_loop(mut sock: UnixStream, cmd_tx: &SyncSender<Command>) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) => {
                let _ = cmd_tx.send(Command::Closed("socket closed by server".into()));
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = cmd_tx.send(Command::Closed(format!("socket read: {e}")));
                return;
            }
        };
        decoder.push(&buf[..n]);
        loop {
            let cmd = match decoder.next() {
                Ok(None) => break,
                Ok(Some(msg)) if msg.direction() == Direction::WorkerToServer => {
                    tracing::warn!(msg = msg.name(), "server sent a worker message; ignored");
                    continue;
                }
                Ok(Some(Message::Start(p))) => Command::Start(p),
                Ok(Some(Message::RequestKeyframe)) => Command::RequestKeyframe,
                Ok(Some(Message::Stop)) => Command::Stop,
                Ok(Some(Message::Input { viewer, event })) => Command::Input(viewer, event),
                Ok(Some(Message::ReleaseInput { viewer })) => Command::ReleaseInput(viewer),
                Ok(Some(Message::SetClipboard { text })) => Command::SetClipboard(text),
                Ok(Some(other)) => {
                    tracing::warn!(msg = other.name(), "unexpected message; ignored");
                    continue;
                }
                Err(e) if e.is_fatal() => {
                    let _ = cmd_tx.send(Command::Closed(format!("protocol: {e}")));
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "skipping undecodable message");
                    continue;
                }
            };
            if cmd_tx.send(cmd).is_err() {
                return;
            }
        }
    }
}

fn writer_loop(mut sock: UnixStream, out_rx: &Receiver<Message>, cmd_tx: &SyncSender<Command>) {
    let mut buf = Vec::with_capacity(WRITE_BATCH_BYTES);
    // Ends when every sender is gone (main finished, pipeline dropped) and the queue is drained.
    while let Ok(first) = out_rx.recv() {
        buf.clear();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            if let Err(e) = protocol::encode(&msg, &mut buf) {
                tracing::error!(error = %e, msg = msg.name(), "cannot encode; dropped");
            }
            if buf.len() < WRITE_BATCH_BYTES {
                next = out_rx.try_recv().ok();
            }
        }
        if let Err(e) = sock.write_all(&buf) {
            // try_send: main may be busy; the reader will see the dead socket too.
            let _ = cmd_tx.try_send(Command::Closed(format!("socket write: {e}")));
            return;
        }
    }
    let _ = sock.flush();
}

/// Spawns a named thread whose body is wrapped in `catch_unwind`: a panic is logged and ends
/// that thread only (main notices through the channels).
fn spawn_guarded(name: &str, f: impl FnOnce() + Send + 'static) -> Option<JoinHandle<()>> {
    let thread_name = name.to_owned();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
                tracing::error!(thread = %thread_name, "thread panicked");
            }
        })
        .map_err(|e| tracing::error!(error = %e, "cannot spawn thread"))
        .ok()
}

/// Joins `h` if it finishes before `deadline`; otherwise leaves it (process exit reaps it).
fn join_until(h: JoinHandle<()>, deadline: Instant) {
    while !h.is_finished() {
        if Instant::now() >= deadline {
            tracing::warn!(thread = ?h.thread().name(), "thread did not finish before the deadline");
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = h.join();
}
