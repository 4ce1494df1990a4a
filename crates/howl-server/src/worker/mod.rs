//! Supervision of `howl-worker` processes: the media plane, kept out of the server process.
//!
//! A worker is spawned in its own process group with a unix socket to talk over. The server
//! never waits on it without a deadline: start-up, every reply and the heartbeat all have one,
//! and a worker that misses them is SIGKILLed (seed 000/001: a wedged pipeline must cost one
//! session, never the host). The worker's encoded output is fanned out through bounded
//! broadcast channels: with nobody subscribed a frame is dropped at once, never kept for a
//! later viewer (seed 004), and a subscriber that falls behind learns how much it lost and
//! waits for the next keyframe, while the others carry on.

mod process;
pub mod procinfo;
mod reap;

pub use process::{NODE_LOSS_GRACE, RemoteEnd, RemoteProc, attach_remote};
use process::{Proc, handshake, launch};

use reap::remove_desktop_dir;
pub use reap::{reap_marked, reap_orphans};

use howl_media::protocol::{
    self, AudioPacket, FrameDecoder, Message, OpusConfig, StreamParams, VideoFrame,
};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{broadcast, mpsc, watch};

/// Longest a worker may take to connect, say hello and start its pipeline.
pub const START_DEADLINE: Duration = Duration::from_secs(15);
/// A worker that sends no heartbeat for this long is killed.
pub const HEARTBEAT_DEADLINE: Duration = Duration::from_secs(3);
/// After `Stop`, how long the worker may take to exit before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(1);
/// Encoded video frames kept per subscriber before it counts as lagging (server → viewers).
pub const VIDEO_FANOUT_CAPACITY: usize = 16;
/// Opus packets kept per subscriber (5 ms each: 320 ms) before it counts as lagging.
pub const AUDIO_FANOUT_CAPACITY: usize = 64;
/// Commands server → worker (keyframe requests, stop). Overflow: the request is dropped; a
/// keyframe request that finds the queue full is redundant anyway.
pub const COMMAND_CAPACITY: usize = 16;
/// Viewers' input events server → worker (a desktop's XTest injection). Overflow: the event is
/// dropped and counted (a worker that far behind is wedged; a leaving viewer's keys are still
/// released, through `release_input`, which waits for room).
pub const INPUT_CAPACITY: usize = 256;

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot start {bin}: {source}")]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error("worker socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("worker did not start within {0:?}")]
    StartTimeout(Duration),
    #[error("worker exited during start-up: {0}")]
    ExitedEarly(String),
    #[error("worker protocol: {0}")]
    Protocol(String),
    #[error("worker refused the stream: {0}")]
    Refused(String),
    /// The media node that was to run it cannot (not connected, behind, gone).
    #[error("media node: {0}")]
    Node(String),
}

/// How the worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerExit {
    Running,
    /// Stopped on request.
    Stopped,
    /// Died or was killed; the text says why.
    Died(String),
    /// The desktop's app ended by itself (the worker was then stopped).
    AppExited(String),
    /// The media node it ran on was lost (its connection closed or went silent).
    NodeLost {
        node: String,
        detail: String,
    },
}

/// Bytes of video a viewer has yet to take from the fan-out, found without looking into the
/// broadcast ring (which cannot be peeked): the supervisor records its running byte total
/// after each frame in slot `seq % VIDEO_FANOUT_CAPACITY` (the ring's own size, so every frame
/// still queued has its slot), and a viewer that has just taken frame `seq` has
/// `total - total_after(seq)` bytes queued behind it.
#[derive(Debug)]
pub struct VideoBytes {
    total: AtomicU64,
    after: [AtomicU64; VIDEO_FANOUT_CAPACITY],
}

impl Default for VideoBytes {
    fn default() -> Self {
        Self {
            total: AtomicU64::new(0),
            after: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl VideoBytes {
    /// Before frame `seq` of `len` bytes enters the fan-out.
    pub fn record(&self, seq: u64, len: usize) {
        let total = self.total.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
        self.after[(seq % VIDEO_FANOUT_CAPACITY as u64) as usize].store(total, Ordering::Relaxed);
    }

    /// Bytes published after frame `seq`: what a viewer that just took it has queued.
    pub fn queued_after(&self, seq: u64) -> u64 {
        let after =
            self.after[(seq % VIDEO_FANOUT_CAPACITY as u64) as usize].load(Ordering::Relaxed);
        self.total.load(Ordering::Relaxed).saturating_sub(after)
    }
}

/// Live counters of one worker.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Running byte totals of the video fan-out (viewers' queued bytes).
    pub video_bytes: VideoBytes,
    pub video_frames: AtomicU64,
    pub audio_packets: AtomicU64,
    /// Frames nobody was subscribed to (dropped at once, by design).
    pub video_unwatched: AtomicU64,
    pub last_frame_counter: AtomicU64,
    pub heartbeats: AtomicU64,
    /// When the last heartbeat arrived, in ms after [`Worker::started_at`].
    pub last_heartbeat_ms: AtomicU64,
    /// Input events forwarded to the worker.
    pub input_events: AtomicU64,
    /// Input events dropped because the worker's input queue was full.
    pub input_dropped: AtomicU64,
    /// A URI source's input state (stays default for other sources).
    pub source: watch::Sender<SourceStatus>,
    /// The text a desktop's app last copied (`None` until one does). A `watch`: viewers
    /// want only the newest, however fast apps copy.
    pub clipboard: watch::Sender<Option<Arc<str>>>,
    /// Clipboard texts sent to the worker (viewers' pastes).
    pub clipboard_sets: AtomicU64,
}

/// The input of a URI-source worker (issue 9), as the worker last reported it. A `watch`, so
/// it stays bounded however fast the source flaps; the counters let a slow observer see how
/// many losses and recoveries happened between two looks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// `Some(reason)` while the source is lost (the worker streams its slate).
    pub down: Option<String>,
    /// Losses since the worker started.
    pub losses: u64,
    /// Recoveries since the worker started.
    pub recoveries: u64,
}

/// A running worker. Dropping the handle stops it (Stop, grace, SIGKILL) in its own task.
#[derive(Debug)]
pub struct Worker {
    /// Its process id, on its node.
    pub pid: u32,
    /// The node it runs on (`local`, or a media node's name).
    pub node: String,
    pub started_at: Instant,
    pub opus: OpusConfig,
    commands: mpsc::Sender<Message>,
    input: mpsc::Sender<Message>,
    video: broadcast::Sender<Arc<VideoFrame>>,
    audio: broadcast::Sender<Arc<AudioPacket>>,
    exit: watch::Receiver<WorkerExit>,
    pub stats: Arc<WorkerStats>,
}

impl Worker {
    /// A new video subscription; it sees only frames produced from now on.
    pub fn subscribe_video(&self) -> broadcast::Receiver<Arc<VideoFrame>> {
        self.video.subscribe()
    }

    pub fn subscribe_audio(&self) -> broadcast::Receiver<Arc<AudioPacket>> {
        self.audio.subscribe()
    }

    /// Asks for a keyframe; never waits.
    pub fn request_keyframe(&self) {
        let _ = self.commands.try_send(Message::RequestKeyframe);
    }

    /// Forwards one viewer's input event; never waits (dropped and counted when full).
    pub fn input(&self, viewer: u64, event: howl_proto::input::InputEvent) {
        match self.input.try_send(Message::Input { viewer, event }) {
            Ok(()) => {
                self.stats.input_events.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.input_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Tells the worker a viewer left: it releases every key and button the viewer holds.
    /// Queued behind that viewer's earlier events, so the release comes last; if the queue is
    /// full it is sent from a task that waits for room (bounded by the worker's life).
    pub fn release_input(&self, viewer: u64) {
        if let Err(mpsc::error::TrySendError::Full(msg)) =
            self.input.try_send(Message::ReleaseInput { viewer })
        {
            let tx = self.input.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(HEARTBEAT_DEADLINE, tx.send(msg)).await;
            });
        }
    }

    /// Makes `text` the desktop's clipboard; never waits. Queued with input, so a paste and
    /// the keys that follow it arrive in order; dropped and counted when full.
    pub fn set_clipboard(&self, text: String) {
        match self.input.try_send(Message::SetClipboard { text }) {
            Ok(()) => {
                self.stats.clipboard_sets.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.input_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Watches the text the desktop's apps copy (newest only).
    pub fn clipboard(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.stats.clipboard.subscribe()
    }

    /// Watches the worker's exit.
    pub fn exit(&self) -> watch::Receiver<WorkerExit> {
        self.exit.clone()
    }

    /// Watches the state of a URI source's input; ends when the worker ends.
    pub fn source_status(&self) -> watch::Receiver<SourceStatus> {
        self.stats.source.subscribe()
    }

    /// Asks the worker to stop; the supervising task enforces the grace period.
    pub fn stop(&self) {
        let _ = self.commands.try_send(Message::Stop);
    }

    /// A worker without a process, for unit tests of its viewers: the test publishes frames
    /// on the returned fan-out senders and reads what viewers asked on the command queue.
    #[cfg(test)]
    pub fn detached() -> (Worker, DetachedWorker) {
        let (commands, command_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (input, input_rx) = mpsc::channel(INPUT_CAPACITY);
        let (video, _) = broadcast::channel(VIDEO_FANOUT_CAPACITY);
        let (audio, _) = broadcast::channel(AUDIO_FANOUT_CAPACITY);
        let (exit_tx, exit) = watch::channel(WorkerExit::Running);
        let worker = Worker {
            pid: 0,
            node: "local".into(),
            started_at: Instant::now(),
            opus: OpusConfig::for_channels(2).expect("stereo has a layout"),
            commands,
            input,
            video: video.clone(),
            audio: audio.clone(),
            exit,
            stats: Arc::default(),
        };
        let ends = DetachedWorker {
            video,
            audio,
            commands: command_rx,
            input: input_rx,
            _exit: exit_tx,
        };
        (worker, ends)
    }
}

/// The far ends of a [`Worker::detached`].
#[cfg(test)]
pub struct DetachedWorker {
    pub video: broadcast::Sender<Arc<VideoFrame>>,
    pub audio: broadcast::Sender<Arc<AudioPacket>>,
    pub commands: mpsc::Receiver<Message>,
    pub input: mpsc::Receiver<Message>,
    _exit: watch::Sender<WorkerExit>,
}

/// Where to find the worker binary: `HOWL_WORKER_BIN`, else `howl-worker` beside this binary.
pub fn default_worker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HOWL_WORKER_BIN") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("howl-worker")))
        .unwrap_or_else(|| PathBuf::from("howl-worker"))
}

static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

/// `--desktop-isolation LEVEL --desktop-uid-range RANGE` for every worker, set once at start-up
/// by [`set_desktop_isolation`] (unset: the worker's defaults, the `cookie` level).
static DESKTOP_ISOLATION_ARGS: std::sync::OnceLock<[String; 4]> = std::sync::OnceLock::new();

/// Fixes the desktop isolation every worker spawned from now on applies (first call wins).
pub fn set_desktop_isolation(level: &str, uid_range: &str) {
    let _ = DESKTOP_ISOLATION_ARGS.set([
        "--desktop-isolation".into(),
        level.into(),
        "--desktop-uid-range".into(),
        uid_range.into(),
    ]);
}

/// The desktop isolation arguments every worker gets (also sent to media nodes).
pub fn desktop_isolation_args() -> Vec<String> {
    DESKTOP_ISOLATION_ARGS
        .get()
        .map(|a| a.to_vec())
        .unwrap_or_default()
}

/// Spawns a worker, hands it `params` and waits (bounded) until its pipeline runs.
pub async fn spawn(
    bin: &Path,
    runtime_dir: &Path,
    params: StreamParams,
) -> Result<Worker, WorkerError> {
    let is_desktop = matches!(params.source, protocol::Source::Desktop(_));
    let is_docker = matches!(&params.source, protocol::Source::Desktop(d) if d.container.is_some());
    let n = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
    let sock_path = runtime_dir.join(format!("worker-{}-{n}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock_path);
    let listener = UnixListener::bind(&sock_path).map_err(|source| WorkerError::Socket {
        path: sock_path.clone(),
        source,
    })?;
    // The socket file is only needed until the worker connects.
    let _unlink = UnlinkOnDrop(sock_path.clone());
    let mut child = tokio::process::Command::new(bin)
        .arg("--socket")
        .arg(&sock_path)
        .args(DESKTOP_ISOLATION_ARGS.get().into_iter().flatten())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        // Its own process group: a signal meant for the server's terminal never reaches it,
        // and the group can be reaped as a whole.
        .process_group(0)
        // Dropping the Child before it is reaped sends SIGKILL: no orphan on any error path.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| WorkerError::Spawn {
            bin: bin.to_path_buf(),
            source,
        })?;
    let pid = child.id().unwrap_or(0);

    let handshake = async {
        let (stream, _) = tokio::select! {
            r = listener.accept() => r.map_err(|source| WorkerError::Socket { path: sock_path.clone(), source })?,
            status = child.wait() => {
                return Err(WorkerError::ExitedEarly(format!("{status:?}")));
            }
        };
        let mut stream = stream;
        let mut dec = FrameDecoder::new();
        let opus = handshake(&mut stream, &mut dec, params).await?;
        Ok((stream, dec, opus))
    };
    let (stream, dec, opus) = match tokio::time::timeout(START_DEADLINE, handshake).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(WorkerError::StartTimeout(START_DEADLINE)),
    };
    drop(listener);
    tracing::info!(pid, "media worker started");
    Ok(launch(
        Proc::Local(child),
        stream,
        dec,
        opus,
        is_desktop.then(|| sock_path.clone()),
        is_docker.then(|| bin.to_path_buf()),
        howl_core::domain::LOCAL_NODE,
    ))
}

struct UnlinkOnDrop(PathBuf);
impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    dec: &mut FrameDecoder,
) -> Result<Message, WorkerError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match dec.next() {
            Ok(Some(m)) => return Ok(m),
            Ok(None) => {}
            Err(e) => return Err(WorkerError::Protocol(e.to_string())),
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| WorkerError::Protocol(e.to_string()))?;
        if n == 0 {
            return Err(WorkerError::Protocol("worker closed the socket".into()));
        }
        dec.push(&buf[..n]);
    }
}

async fn write_message<S: AsyncWrite + Unpin>(
    stream: &mut S,
    msg: &Message,
) -> Result<(), WorkerError> {
    let mut out = Vec::new();
    protocol::encode(msg, &mut out).map_err(|e| WorkerError::Protocol(e.to_string()))?;
    stream
        .write_all(&out)
        .await
        .map_err(|e| WorkerError::Protocol(e.to_string()))
}

/// Owns the child and its socket for the worker's whole life. Every exit path reaps the
/// child (or SIGKILLs it) and publishes why.
#[allow(clippy::too_many_arguments)]
async fn supervise<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    mut child: Proc,
    stream: S,
    mut dec: FrameDecoder,
    mut commands: mpsc::Receiver<Message>,
    mut input: mpsc::Receiver<Message>,
    desktop_marker: Option<PathBuf>,
    container_reaper: Option<PathBuf>,
    video: broadcast::Sender<Arc<VideoFrame>>,
    audio: broadcast::Sender<Arc<AudioPacket>>,
    exit: watch::Sender<WorkerExit>,
    stats: Arc<WorkerStats>,
    started_at: Instant,
) {
    let pid = child.pid();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = vec![0u8; 256 * 1024];
    let mut last_heartbeat = Instant::now();
    let mut watchdog = tokio::time::interval(HEARTBEAT_DEADLINE / 6);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Vec::new();
    let mut app_exited: Option<String> = None;
    let outcome: WorkerExit = 'run: loop {
        // Drain complete messages before reading more.
        loop {
            match dec.next() {
                Ok(Some(msg)) => match msg {
                    Message::Video(f) => {
                        stats.video_frames.fetch_add(1, Ordering::Relaxed);
                        stats
                            .last_frame_counter
                            .store(u64::from(f.frame_counter), Ordering::Relaxed);
                        stats.video_bytes.record(f.seq, f.data.len());
                        if video.send(Arc::new(f)).is_err() {
                            stats.video_unwatched.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Message::Audio(a) => {
                        stats.audio_packets.fetch_add(1, Ordering::Relaxed);
                        let _ = audio.send(Arc::new(a));
                    }
                    Message::Heartbeat { .. } => {
                        stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                        last_heartbeat = Instant::now();
                        stats.last_heartbeat_ms.store(
                            u64::try_from(started_at.elapsed().as_millis()).unwrap_or(u64::MAX),
                            Ordering::Relaxed,
                        );
                    }
                    Message::AppExited { detail } => {
                        tracing::info!(pid, %detail, "the desktop's app exited; stopping its worker");
                        app_exited = Some(detail);
                        // Stop the worker as if asked; the exit below reports AppExited.
                        let _ = commands_stop_now(&mut wr, &mut out).await;
                        // Past the grace, the kill below ends it.
                        let _ = tokio::time::timeout(STOP_GRACE, child.wait()).await;
                        break 'run WorkerExit::Stopped;
                    }
                    Message::SourceLost { reason } => {
                        tracing::warn!(pid, %reason, "worker's source lost; slate on");
                        stats.source.send_modify(|s| {
                            s.down = Some(reason);
                            s.losses += 1;
                        });
                    }
                    Message::SourceRestored => {
                        tracing::info!(pid, "worker's source restored");
                        stats.source.send_modify(|s| {
                            s.down = None;
                            s.recoveries += 1;
                        });
                    }
                    Message::Clipboard { text } => {
                        tracing::debug!(pid, bytes = text.len(), "the desktop's clipboard changed");
                        stats.clipboard.send_replace(Some(text.into()));
                    }
                    Message::Error { fatal, message } => {
                        if fatal {
                            break 'run WorkerExit::Died(format!("worker error: {message}"));
                        }
                        tracing::warn!(pid, %message, "worker reported an error");
                    }
                    other => {
                        tracing::debug!(pid, msg = other.name(), "unexpected worker message")
                    }
                },
                Ok(None) => break,
                Err(e) => break 'run WorkerExit::Died(format!("protocol error: {e}")),
            }
        }
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => break 'run WorkerExit::Died("worker closed its socket".into()),
                Ok(n) => {
                    dec.push(&buf[..n]);
                    // Reading counts as liveness too: a worker busy sending frames is alive.
                    last_heartbeat = Instant::now();
                }
            },
            Some(ev) = input.recv() => {
                out.clear();
                if protocol::encode(&ev, &mut out).is_ok() {
                    let w = tokio::time::timeout(Duration::from_millis(500), wr.write_all(&out)).await;
                    if !matches!(w, Ok(Ok(()))) {
                        break 'run WorkerExit::Died("worker stopped reading input".into());
                    }
                }
            }
            cmd = commands.recv() => {
                let stop = matches!(cmd, None | Some(Message::Stop));
                let msg = cmd.unwrap_or(Message::Stop);
                out.clear();
                if protocol::encode(&msg, &mut out).is_ok() {
                    // Bounded: a worker that stops reading its socket is a wedged worker.
                    let w = tokio::time::timeout(Duration::from_millis(500), wr.write_all(&out)).await;
                    if !matches!(w, Ok(Ok(()))) && !stop {
                        break 'run WorkerExit::Died("worker stopped reading commands".into());
                    }
                }
                if stop {
                    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                        Ok(_) => break 'run WorkerExit::Stopped,
                        Err(_) => {
                            tracing::warn!(pid, "worker ignored Stop; killing it");
                            break 'run WorkerExit::Stopped;
                        }
                    }
                }
            }
            detail = child.wait() => break 'run WorkerExit::Died(detail),
            _ = watchdog.tick() => {
                if last_heartbeat.elapsed() > HEARTBEAT_DEADLINE {
                    break 'run WorkerExit::Died(format!(
                        "no heartbeat for {:?}; killed", HEARTBEAT_DEADLINE
                    ));
                }
            }
        }
    };
    // A remote worker whose connection failed: was it the node that went? Its control
    // connection says so within the grace (a node killed or silent), and the end is then
    // `node_lost` for every producer on it, whichever report arrives first.
    let outcome = match (outcome, &mut child) {
        (WorkerExit::Died(detail), Proc::Remote(r)) => {
            match tokio::time::timeout(NODE_LOSS_GRACE, r.ended()).await {
                Ok(RemoteEnd::NodeLost(why)) => WorkerExit::NodeLost {
                    node: r.node.clone(),
                    detail: why,
                },
                _ => WorkerExit::Died(detail),
            }
        }
        (o, _) => o,
    };
    // Whatever happened, the process must be gone before we report.
    if !child.ended() {
        child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
    }
    // Then whatever its desktop started that outlived it (an app's own children escape the
    // worker's death signal; they carry its marker).
    // Inline, not on the blocking pool: one pass over /proc takes milliseconds, and a pool
    // thread would linger (and count) long after.
    if let Some(marker) = &desktop_marker {
        let leftovers = reap_marked(marker, false);
        if !leftovers.is_empty() {
            tracing::warn!(pid, killed = ?leftovers, "killed desktop processes that outlived their worker");
        }
        remove_desktop_dir(marker, pid);
        // A Docker app's container: its processes are not ours to read or signal unless we
        // run as root, so remove it by its label through the Docker API (in its own task:
        // the exit is published now, the removal follows within its deadline).
        if let Some(bin) = container_reaper {
            let marker = marker.clone();
            tokio::spawn(async move {
                log_reaped_containers(reap_containers(&bin, &marker).await, pid);
            });
        }
    }
    let outcome = match (outcome, app_exited) {
        (WorkerExit::Stopped, Some(detail)) => WorkerExit::AppExited(detail),
        (o, _) => o,
    };
    match &outcome {
        WorkerExit::Died(why) => tracing::warn!(pid, reason = %why, "media worker died"),
        _ => tracing::info!(pid, "media worker stopped"),
    }
    let _ = exit.send(outcome);
}

/// Sends `Stop` to the worker (bounded), used when its app exited.
async fn commands_stop_now<W: AsyncWrite + Unpin>(wr: &mut W, out: &mut Vec<u8>) -> Result<(), ()> {
    out.clear();
    protocol::encode(&Message::Stop, out).map_err(|_| ())?;
    match tokio::time::timeout(Duration::from_millis(500), wr.write_all(out)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// The longest `howl-worker --reap-containers` may take (its own Docker deadline is shorter).
pub const CONTAINER_REAP_DEADLINE: Duration = Duration::from_secs(25);

/// Removes the Docker containers whose `howl.producer` label is `scope` (a worker's marker)
/// or lies in it (the run directory), through `howl-worker --reap-containers` so the server
/// links no Docker client and a hung daemon costs a killable child, never a server task's
/// deadline. Needs only access to the Docker socket, not root. Returns the ids removed.
pub async fn reap_containers(bin: &Path, scope: &Path) -> Result<Vec<String>, WorkerError> {
    let out = tokio::time::timeout(
        CONTAINER_REAP_DEADLINE,
        tokio::process::Command::new(bin)
            .arg("--reap-containers")
            .arg(scope)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| WorkerError::StartTimeout(CONTAINER_REAP_DEADLINE))?
    .map_err(|source| WorkerError::Spawn {
        bin: bin.to_path_buf(),
        source,
    })?;
    if !out.status.success() {
        return Err(WorkerError::ExitedEarly(format!(
            "--reap-containers: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| WorkerError::Protocol(format!("--reap-containers output: {e}")))?;
    Ok(v.get("removed")
        .and_then(|r| r.as_array())
        .map(|ids| {
            ids.iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Logs the outcome of a container reaping for worker `pid` (0: the start-up sweep).
pub fn log_reaped_containers(r: Result<Vec<String>, WorkerError>, pid: u32) {
    match r {
        Ok(ids) if ids.is_empty() => {}
        Ok(ids) => tracing::warn!(pid, containers = ?ids, "removed leftover containers"),
        // No daemon at all is the common case without Docker apps: not worth a warning.
        Err(e) => tracing::info!(pid, error = %e, "no containers reaped (is Docker reachable?)"),
    }
}

/// Codecs the worker can encode, from `howl-worker --probe` (bounded by a deadline).
pub async fn probe(bin: &Path) -> Result<Vec<howl_media::protocol::Codec>, WorkerError> {
    let out = tokio::time::timeout(
        START_DEADLINE,
        tokio::process::Command::new(bin)
            .arg("--probe")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| WorkerError::StartTimeout(START_DEADLINE))?
    .map_err(|source| WorkerError::Spawn {
        bin: bin.to_path_buf(),
        source,
    })?;
    if !out.status.success() {
        return Err(WorkerError::ExitedEarly(format!("--probe: {}", out.status)));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| WorkerError::Protocol(format!("--probe output: {e}")))?;
    let mut codecs: Vec<howl_media::protocol::Codec> = v
        .get("encoders")
        .and_then(|e| e.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|e| e.get("codec").and_then(|c| c.as_str()))
                .filter_map(howl_media::protocol::Codec::from_name)
                .collect()
        })
        .unwrap_or_default();
    codecs.sort_by_key(|c| c.name());
    codecs.dedup();
    Ok(codecs)
}
#[cfg(test)]
mod video_bytes_tests {
    use super::*;

    #[test]
    fn queued_bytes_are_what_came_after_the_frame_taken() {
        let b = VideoBytes::default();
        b.record(0, 100);
        b.record(1, 10);
        b.record(2, 1);
        assert_eq!(b.queued_after(0), 11);
        assert_eq!(b.queued_after(1), 1);
        assert_eq!(b.queued_after(2), 0);
        // Past the ring's size a slot is reused: the newest frame's answer stays exact.
        for seq in 3..3 + VIDEO_FANOUT_CAPACITY as u64 {
            b.record(seq, 5);
        }
        assert_eq!(b.queued_after(2 + VIDEO_FANOUT_CAPACITY as u64), 0);
        assert_eq!(b.queued_after(3), 5 * (VIDEO_FANOUT_CAPACITY as u64 - 1));
    }
}
