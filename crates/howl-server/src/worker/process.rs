//! The process behind a worker, local or on a media node, and what local and remote workers
//! share: the first conversation (`handshake`) and the hand-over to the supervisor (`launch`).
//! A remote worker's process is only reachable through its node: it is waited for by the
//! node's reports and killed by an order to the node (docs/nodes.md).

use super::*;
use howl_media::node::NodeMessage;

/// How a remote worker's process ended, as its node's control connection tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteEnd {
    /// The node reported it ended.
    Exited(String),
    /// The node itself is gone: whatever it ran is lost with it.
    NodeLost(String),
}

impl std::fmt::Display for RemoteEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteEnd::Exited(d) => f.write_str(d),
            RemoteEnd::NodeLost(d) => write!(f, "node lost: {d}"),
        }
    }
}

/// A worker process on a media node, as its supervisor sees it.
#[derive(Debug)]
pub struct RemoteProc {
    pub pid: u32,
    pub node: String,
    worker: u64,
    end: watch::Receiver<Option<RemoteEnd>>,
    outbox: mpsc::Sender<NodeMessage>,
}

impl RemoteProc {
    /// Worker `worker` (process `pid`) on `node`, whose end the node registry publishes on
    /// `end`, killed by a `KillWorker` on the node's `outbox`.
    pub fn new(
        pid: u32,
        node: String,
        worker: u64,
        end: watch::Receiver<Option<RemoteEnd>>,
        outbox: mpsc::Sender<NodeMessage>,
    ) -> Self {
        Self {
            pid,
            node,
            worker,
            end,
            outbox,
        }
    }

    /// Waits until the node reports its end (or is lost).
    pub async fn ended(&mut self) -> RemoteEnd {
        match self.end.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(RemoteEnd::NodeLost("gone".into())),
            // The registry dropped the sender: the node's connection is gone.
            Err(_) => RemoteEnd::NodeLost("connection closed".into()),
        }
    }

    pub fn has_ended(&self) -> bool {
        self.end.borrow().is_some() || self.end.has_changed().is_err()
    }

    /// Asks the node to SIGKILL it; never waits (a full queue drops the order: the worker's
    /// connection, closed by its supervisor right after, kills it too).
    pub fn kill(&self) {
        let _ = self.outbox.try_send(NodeMessage::KillWorker {
            worker: self.worker,
        });
    }
}

/// How long a remote worker's supervisor waits, after its connection failed, for the node's
/// control connection to say whether the node itself is gone (then the end is `node_lost`,
/// not a worker death). Longer than the gap between the worker's heartbeat deadline and the
/// node's, so a silent node is reported as lost.
pub const NODE_LOSS_GRACE: Duration = Duration::from_secs(2);

/// The process behind a worker: a child of this server, or one a media node runs for it
/// (the supervision is the same; only waiting and killing go through the node).
pub(super) enum Proc {
    Local(tokio::process::Child),
    Remote(RemoteProc),
}

impl Proc {
    pub(super) fn pid(&self) -> u32 {
        match self {
            Proc::Local(c) => c.id().unwrap_or(0),
            Proc::Remote(r) => r.pid,
        }
    }

    /// Waits until it ended; says how.
    pub(super) async fn wait(&mut self) -> String {
        match self {
            Proc::Local(c) => match c.wait().await {
                Ok(s) => format!("exited: {s}"),
                Err(e) => format!("wait failed: {e}"),
            },
            Proc::Remote(r) => r.ended().await.to_string(),
        }
    }

    /// Whether it has ended (without waiting).
    pub(super) fn ended(&mut self) -> bool {
        match self {
            Proc::Local(c) => c.try_wait().ok().flatten().is_some(),
            Proc::Remote(r) => r.has_ended(),
        }
    }

    /// SIGKILL (through its node for a remote one); never waits.
    pub(super) fn start_kill(&mut self) {
        match self {
            Proc::Local(c) => {
                let _ = c.start_kill();
            }
            Proc::Remote(r) => r.kill(),
        }
    }
}

/// Takes over a worker a media node started for us: `stream` is its own connection (with
/// `rest`, bytes already read past the node's greeting), `proc` its process on the node. Hands
/// it `params` and waits (bounded) until its pipeline runs; from then on it is supervised
/// exactly like a local one: the worker protocol runs end to end.
pub async fn attach_remote<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    mut stream: S,
    rest: Vec<u8>,
    proc: RemoteProc,
    params: StreamParams,
) -> Result<Worker, WorkerError> {
    let node = proc.node.clone();
    let mut proc = Proc::Remote(proc);
    let mut dec = FrameDecoder::new();
    dec.push(&rest);
    let opus = match tokio::time::timeout(START_DEADLINE, handshake(&mut stream, &mut dec, params))
        .await
    {
        Ok(Ok(opus)) => opus,
        Ok(Err(e)) => {
            proc.start_kill();
            return Err(e);
        }
        Err(_) => {
            proc.start_kill();
            return Err(WorkerError::StartTimeout(START_DEADLINE));
        }
    };
    tracing::info!(pid = proc.pid(), node, "media worker started on a node");
    Ok(launch(proc, stream, dec, opus, None, None, &node))
}

/// Hello (version check), Start, then waits for Started: a worker's first conversation.
pub(super) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    dec: &mut FrameDecoder,
    params: StreamParams,
) -> Result<OpusConfig, WorkerError> {
    let hello = read_message(stream, dec).await?;
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
    write_message(stream, &Message::Start(params)).await?;
    loop {
        match read_message(stream, dec).await? {
            Message::Started { opus_config, .. } => return Ok(opus_config),
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
}

/// Hands a started worker to its supervising task and returns its handle.
pub(super) fn launch<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    proc: Proc,
    stream: S,
    dec: FrameDecoder,
    opus: OpusConfig,
    desktop_marker: Option<PathBuf>,
    container_reaper: Option<PathBuf>,
    node: &str,
) -> Worker {
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
    let (input_tx, input_rx) = mpsc::channel(INPUT_CAPACITY);
    let (video_tx, _) = broadcast::channel(VIDEO_FANOUT_CAPACITY);
    let (audio_tx, _) = broadcast::channel(AUDIO_FANOUT_CAPACITY);
    let (exit_tx, exit_rx) = watch::channel(WorkerExit::Running);
    let stats = Arc::new(WorkerStats::default());
    let started_at = Instant::now();
    let pid = proc.pid();
    tokio::spawn(supervise(
        proc,
        stream,
        dec,
        cmd_rx,
        input_rx,
        desktop_marker,
        container_reaper,
        video_tx.clone(),
        audio_tx.clone(),
        exit_tx,
        stats.clone(),
        started_at,
    ));
    Worker {
        pid,
        node: node.to_owned(),
        started_at,
        opus,
        commands: cmd_tx,
        input: input_tx,
        video: video_tx,
        audio: audio_tx,
        exit: exit_rx,
        stats,
    }
}
