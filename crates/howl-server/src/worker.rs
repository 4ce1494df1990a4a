//! Supervision of `howl-worker` processes: the media plane, kept out of the server process.
//!
//! A worker is spawned in its own process group with a unix socket to talk over. The server
//! never waits on it without a deadline: start-up, every reply and the heartbeat all have one,
//! and a worker that misses them is SIGKILLed (seed 000/001: a wedged pipeline must cost one
//! session, never the host). The worker's encoded output is fanned out through bounded
//! broadcast channels: with nobody subscribed a frame is dropped at once, never kept for a
//! later viewer (seed 004), and a subscriber that falls behind learns how much it lost and
//! waits for the next keyframe, while the others carry on.

use howl_media::protocol::{
    self, AudioPacket, FrameDecoder, Message, OpusConfig, StreamParams, VideoFrame,
};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
}

/// Live counters of one worker.
#[derive(Debug, Default)]
pub struct WorkerStats {
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
    pub pid: u32,
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
    pub fn input(&self, viewer: u64, event: howl_media::xinput::ClientInput) {
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

/// Whether this process may run desktop apps under other uids (what the worker needs at the
/// `uid` level: CAP_SETUID and CAP_SETGID to switch, CAP_CHOWN to hand over the app's
/// directory, CAP_DAC_OVERRIDE to keep reading the cookies; root has them all). Checked at
/// start-up so a configured level that cannot be had stops the server, not each launch.
pub fn uid_isolation_available() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or("no CapEff line in /proc/self/status")?;
    // Bit numbers from linux/capability.h.
    let missing: Vec<&str> = [
        (0, "CAP_CHOWN"),
        (1, "CAP_DAC_OVERRIDE"),
        (6, "CAP_SETGID"),
        (7, "CAP_SETUID"),
    ]
    .into_iter()
    .filter(|(bit, _)| eff & (1u64 << bit) == 0)
    .map(|(_, name)| name)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "desktop_isolation = \"uid\" needs root or {}, which this process lacks",
            missing.join(", ")
        ))
    }
}

/// Spawns a worker, hands it `params` and waits (bounded) until its pipeline runs.
pub async fn spawn(
    bin: &Path,
    runtime_dir: &Path,
    params: StreamParams,
) -> Result<Worker, WorkerError> {
    let is_desktop = matches!(params.source, protocol::Source::Desktop(_));
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
        let hello = read_message(&mut stream, &mut dec).await?;
        match hello {
            Message::Hello { version, .. } if version == protocol::PROTOCOL_VERSION => {}
            Message::Hello { version, .. } => {
                return Err(WorkerError::Protocol(format!(
                    "worker speaks protocol {version}, server {}",
                    protocol::PROTOCOL_VERSION
                )));
            }
            other => {
                return Err(WorkerError::Protocol(format!(
                    "expected Hello, got {other:?}"
                )));
            }
        }
        write_message(&mut stream, &Message::Start(params)).await?;
        loop {
            match read_message(&mut stream, &mut dec).await? {
                Message::Started { opus_config, .. } => return Ok((stream, dec, opus_config)),
                Message::Error { message, .. } => return Err(WorkerError::Refused(message)),
                Message::Heartbeat { .. } => continue,
                other => {
                    return Err(WorkerError::Protocol(format!(
                        "expected Started, got {}",
                        other.name()
                    )));
                }
            }
        }
    };
    let (stream, dec, opus) = match tokio::time::timeout(START_DEADLINE, handshake).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(WorkerError::StartTimeout(START_DEADLINE)),
    };
    drop(listener);

    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
    let (input_tx, input_rx) = mpsc::channel(INPUT_CAPACITY);
    let (video_tx, _) = broadcast::channel(VIDEO_FANOUT_CAPACITY);
    let (audio_tx, _) = broadcast::channel(AUDIO_FANOUT_CAPACITY);
    let (exit_tx, exit_rx) = watch::channel(WorkerExit::Running);
    let stats = Arc::new(WorkerStats::default());
    let started_at = Instant::now();
    tokio::spawn(supervise(
        child,
        stream,
        dec,
        cmd_rx,
        input_rx,
        is_desktop.then(|| sock_path.clone()),
        video_tx.clone(),
        audio_tx.clone(),
        exit_tx,
        stats.clone(),
        started_at,
    ));
    tracing::info!(pid, "media worker started");
    Ok(Worker {
        pid,
        started_at,
        opus,
        commands: cmd_tx,
        input: input_tx,
        video: video_tx,
        audio: audio_tx,
        exit: exit_rx,
        stats,
    })
}

struct UnlinkOnDrop(PathBuf);
impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn read_message(
    stream: &mut tokio::net::UnixStream,
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

async fn write_message(
    stream: &mut tokio::net::UnixStream,
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
async fn supervise(
    mut child: tokio::process::Child,
    stream: tokio::net::UnixStream,
    mut dec: FrameDecoder,
    mut commands: mpsc::Receiver<Message>,
    mut input: mpsc::Receiver<Message>,
    desktop_marker: Option<PathBuf>,
    video: broadcast::Sender<Arc<VideoFrame>>,
    audio: broadcast::Sender<Arc<AudioPacket>>,
    exit: watch::Sender<WorkerExit>,
    stats: Arc<WorkerStats>,
    started_at: Instant,
) {
    let pid = child.id().unwrap_or(0);
    let (mut rd, mut wr) = stream.into_split();
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
            status = child.wait() => {
                break 'run WorkerExit::Died(match status {
                    Ok(s) => format!("exited: {s}"),
                    Err(e) => format!("wait failed: {e}"),
                });
            }
            _ = watchdog.tick() => {
                if last_heartbeat.elapsed() > HEARTBEAT_DEADLINE {
                    break 'run WorkerExit::Died(format!(
                        "no heartbeat for {:?}; killed", HEARTBEAT_DEADLINE
                    ));
                }
            }
        }
    };
    // Whatever happened, the process must be gone before we report.
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.start_kill();
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
async fn commands_stop_now(
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    out: &mut Vec<u8>,
) -> Result<(), ()> {
    out.clear();
    protocol::encode(&Message::Stop, out).map_err(|_| ())?;
    match tokio::time::timeout(Duration::from_millis(500), wr.write_all(out)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// The environment variable a worker's desktop processes carry (howl-worker's `PRODUCER_ENV`).
pub const PRODUCER_ENV: &str = "HOWL_PRODUCER";

/// Kills every process whose environment holds `HOWL_PRODUCER=<marker>` (or, with `prefix`,
/// a value starting with `marker`). Returns the PIDs killed.
pub fn reap_marked(marker: &Path, prefix: bool) -> Vec<u32> {
    let mut needle = format!("{PRODUCER_ENV}=").into_bytes();
    needle.extend_from_slice(marker.as_os_str().as_encoded_bytes());
    if prefix {
        // A directory: `/x/run` must not match markers under `/x/run2`.
        needle.push(b'/');
    }
    kill_where("environ", |environ| {
        environ.split(|b| *b == 0).any(|var| {
            if prefix {
                var.starts_with(&needle)
            } else {
                var == needle.as_slice()
            }
        })
    })
}

/// SIGKILLs every other process whose `/proc/<pid>/<file>` satisfies `is_ours`; returns the
/// PIDs killed. Processes that vanish or cannot be read are skipped.
fn kill_where(file: &str, is_ours: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    let me = std::process::id();
    let mut killed = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return killed;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(content) = std::fs::read(format!("/proc/{pid}/{file}")) else {
            continue;
        };
        if is_ours(&content) && kill_pid(pid) {
            killed.push(pid);
        }
    }
    killed
}

fn kill_pid(pid: u32) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return false;
    };
    // SIGKILL to a process we identified as ours by its marker; no memory involved.
    #[allow(unsafe_code)]
    // SAFETY: kill(2) takes two integers.
    let rc = unsafe { libc::kill(p, libc::SIGKILL) };
    rc == 0
}

/// Removes the private directory a killed worker's desktop left (`desktop-<pid>` next to its
/// socket); a worker that stopped normally removed it itself.
fn remove_desktop_dir(marker: &Path, pid: u32) {
    if let Some(dir) = marker.parent() {
        let _ = std::fs::remove_dir_all(dir.join(format!("desktop-{pid}")));
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

/// Finds `howl-worker` processes left by an earlier server on this state directory (their
/// `--socket` lies in `runtime_dir`) and SIGKILLs them. Workers normally die with their server
/// (`PR_SET_PDEATHSIG`); this start-up sweep is the second line for anything that escaped.
/// Returns the PIDs it killed. Desktop processes (Xvfb, sound server, apps and their children)
/// of those workers are found by their `HOWL_PRODUCER` marker and killed too, and their
/// private directories removed.
pub fn reap_orphans(runtime_dir: &Path) -> Vec<u32> {
    let mut killed = reap_worker_processes(runtime_dir);
    killed.extend(reap_marked(runtime_dir, true));
    if let Ok(entries) = std::fs::read_dir(runtime_dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("desktop-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    killed
}

fn reap_worker_processes(runtime_dir: &Path) -> Vec<u32> {
    // Ours by construction: a worker of this state directory whose server is gone.
    kill_where("cmdline", |cmdline| is_orphan_worker(cmdline, runtime_dir))
}

/// Whether a NUL-separated command line is `howl-worker --socket <runtime_dir>/...`.
fn is_orphan_worker(cmdline: &[u8], runtime_dir: &Path) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let Some(argv0) = args.first() else {
        return false;
    };
    if !argv0.ends_with(b"howl-worker") {
        return false;
    }
    let dir = runtime_dir.as_os_str().as_encoded_bytes();
    args.windows(2)
        .any(|w| w[0] == b"--socket" && w[1].starts_with(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_processes_are_reaped_by_exact_marker_or_directory() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let marker = run.join("worker-1-1.sock");
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .env(PRODUCER_ENV, &marker)
            .spawn()
            .unwrap();
        // Until the exec completed, /proc shows the parent's environment.
        let needle = format!("{PRODUCER_ENV}={}", marker.display());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read(format!("/proc/{}/environ", child.id()))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .any(|v| v == needle.as_bytes())
        {
            assert!(
                Instant::now() < deadline,
                "child never showed its environment"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Neither a sibling directory's prefix nor another worker's marker matches.
        let sibling = dir.path().join("ru");
        assert!(reap_marked(&sibling, true).is_empty());
        assert!(reap_marked(&run.join("worker-1-2.sock"), false).is_empty());
        assert!(child.try_wait().unwrap().is_none());
        let reaped = reap_marked(&run, true);
        let _ = child.kill();
        assert_eq!(reaped, vec![child.id()]);
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }

    #[test]
    fn only_workers_of_this_state_dir_are_orphans() {
        let dir = Path::new("/var/lib/howl/run");
        assert!(is_orphan_worker(
            b"/usr/bin/howl-worker\0--socket\0/var/lib/howl/run/worker-1-1.sock\0",
            dir
        ));
        assert!(!is_orphan_worker(
            b"/usr/bin/howl-worker\0--socket\0/other/run/worker-1-1.sock\0",
            dir
        ));
        assert!(!is_orphan_worker(b"/usr/bin/howl-worker\0--probe\0", dir));
        assert!(!is_orphan_worker(
            b"/bin/sleep\0--socket\0/var/lib/howl/run/x\0",
            dir
        ));
        assert!(!is_orphan_worker(b"", dir));
    }
}
