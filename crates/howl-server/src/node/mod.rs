//! Media nodes (docs/nodes.md): the control plane's node endpoint and registry
//! ([`endpoint`]), and `howl node`, the process on a media machine ([`agent`]).
//!
//! A node dials out to the control plane over mutually authenticated TLS (a join token and a
//! pinned certificate, `howl_core::nodes`), reports its capacity, and runs `howl-worker`
//! processes on request. Each worker gets a TLS connection of its own, over which the worker
//! protocol runs end to end between the worker and the control plane's supervisor
//! (`crate::worker`), so local and remote workers share one supervision path and one slow
//! worker never delays another.

pub mod agent;
pub mod endpoint;

use crate::domain::events::{Audience, Event, EventBus};
pub use crate::worker::{RemoteEnd, RemoteProc};
use howl_core::nodes::{JoinRefusal, NodeBook};
use howl_media::node::{Capacity, NodeMessage};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};

/// The built-in node's name.
pub const LOCAL: &str = howl_core::domain::LOCAL_NODE;
/// How often each side of a node's control connection sends a heartbeat.
pub const NODE_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// A control connection silent for this long is lost (both sides apply it). No longer than
/// the worker heartbeat deadline, so a silent node is reported as lost, not as dead workers.
pub const NODE_HEARTBEAT_DEADLINE: Duration = Duration::from_secs(3);
/// Longest a connection may take from TCP accept to its first message.
pub const NODE_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Control messages queued to one node (control plane → node: start and kill orders,
/// heartbeats). Full: a start fails at once (the node is far behind), a kill is dropped (the
/// worker's connection closing kills it anyway), a heartbeat is skipped.
pub const NODE_OUTBOX_CAPACITY: usize = 64;
/// Connections accepted and not yet authenticated at once; more wait in the kernel backlog.
pub const MAX_NODE_HANDSHAKES: usize = 64;

/// A future the placement side answers with.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where joins and losses go: the streaming engine's placement (implemented by its handle;
/// a trait so the registry needs nothing of the engine, which uses the registry).
pub trait NodePlacement: Send + Sync {
    /// A node joined (its connection `epoch`) with these limits, labels and GPUs.
    fn joined(
        &self,
        name: String,
        epoch: u64,
        limits: howl_core::domain::Admission,
        traits: howl_core::domain::NodeTraits,
    ) -> BoxFuture<'_, ()>;
    /// A node's connection `epoch` is lost: its producers end with `node_lost` (unless a
    /// newer connection joined meanwhile); how many did.
    fn lost(&self, name: String, epoch: u64, reason: String) -> BoxFuture<'_, Option<usize>>;
    /// No new producers on the node; `Some(false)`: no such node; `None`: no answer.
    fn drain(&self, name: String) -> BoxFuture<'_, Option<bool>>;
}

/// Lower-case hex SHA-256 of a DER certificate (the pinned form).
pub fn cert_fingerprint(der: &[u8]) -> String {
    howl_core::nodes::sha256_hex(der)
}

/// Seconds since the Unix epoch (tokens' expiry is wall-clock time).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One connected node.
#[derive(Debug)]
struct Connected {
    /// Tells this connection from an older one of the same node (a rejoin replaces it).
    epoch: u64,
    outbox: mpsc::Sender<NodeMessage>,
    addr: SocketAddr,
    labels: Vec<(String, String)>,
    capacity: Capacity,
    /// Its workers' ends, by worker id.
    workers: HashMap<u64, watch::Sender<Option<RemoteEnd>>>,
}

/// A worker asked of a node whose connection has not arrived yet.
type WorkerConn = (
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    Vec<u8>,
    u32,
);

struct Pending {
    node: String,
    reply: oneshot::Sender<WorkerConn>,
}

/// Why a remote worker could not be started.
fn start_error(msg: String) -> crate::worker::WorkerError {
    crate::worker::WorkerError::Node(msg)
}

/// Removes a worker that never connected from the registry's maps.
struct StartGuard<'a> {
    nodes: &'a Nodes,
    node: &'a str,
    worker: u64,
    armed: bool,
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.nodes.lock_pending().remove(&self.worker);
        if let Some(n) = self.nodes.lock_connected().get_mut(self.node) {
            n.workers.remove(&self.worker);
            // The node may still start it: tell it not to bother.
            let _ = n.outbox.try_send(NodeMessage::KillWorker {
                worker: self.worker,
            });
        }
    }
}

/// Per-node counters (`/metrics`).
#[derive(Debug, Default)]
pub struct NodeCounters {
    pub joins: AtomicU64,
    pub refused: AtomicU64,
    pub lost: AtomicU64,
    pub workers_started: AtomicU64,
}

/// One node as the API shows it (the engine adds its producers in use).
#[derive(Debug, Clone)]
pub struct RemoteNodeInfo {
    pub name: String,
    pub addr: SocketAddr,
    pub labels: Vec<(String, String)>,
    pub capacity: Capacity,
    pub workers: usize,
}

/// The control plane's registry of nodes: credentials, connections, and workers being
/// started. Every lock is held only for map operations, never across an await.
pub struct Nodes {
    book: Mutex<NodeBook>,
    book_path: PathBuf,
    /// This control plane's certificate fingerprint, put into every join token.
    cp_sha256: String,
    connected: Mutex<BTreeMap<String, Connected>>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_epoch: AtomicU64,
    events: EventBus,
    engine: OnceLock<Arc<dyn NodePlacement>>,
    pub counters: NodeCounters,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes").finish_non_exhaustive()
    }
}

/// A join token just created: shown once.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub id: u64,
    pub token: String,
    pub expires_unix: u64,
    pub reusable: bool,
}

impl Nodes {
    /// Opens the node book in `state_dir` (`nodes.json`).
    pub fn open(
        state_dir: &std::path::Path,
        cp_cert_der: &[u8],
        events: EventBus,
    ) -> Result<Arc<Self>, howl_core::StoreError> {
        let book_path = state_dir.join(howl_core::nodes::NODES_FILE);
        let book = NodeBook::load(&book_path)?;
        Ok(Arc::new(Self {
            book: Mutex::new(book),
            book_path,
            cp_sha256: cert_fingerprint(cp_cert_der),
            connected: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_epoch: AtomicU64::new(1),
            events,
            engine: OnceLock::new(),
            counters: NodeCounters::default(),
        }))
    }

    /// Connects the registry to the engine (placement learns of joins and losses).
    pub fn set_engine(&self, engine: Arc<dyn NodePlacement>) {
        let _ = self.engine.set(engine);
    }

    fn lock_book(&self) -> std::sync::MutexGuard<'_, NodeBook> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_connected(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Connected>> {
        self.connected.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a join token (shown once; only its digest is kept).
    pub fn issue_token(&self, ttl_secs: u64, reusable: bool) -> Result<IssuedToken, String> {
        use aws_lc_rs::rand::SecureRandom;
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| "system RNG failed".to_owned())?;
        let now = now_unix();
        let mut book = self.lock_book();
        let (id, token) = book
            .issue(
                now,
                &hex::encode(secret),
                &self.cp_sha256,
                ttl_secs,
                reusable,
            )
            .map_err(|e| e.to_string())?;
        book.save(&self.book_path).map_err(|e| e.to_string())?;
        Ok(IssuedToken {
            id,
            token,
            expires_unix: now.saturating_add(ttl_secs),
            reusable,
        })
    }

    /// Authenticates a node's control connection (see `NodeBook::authenticate`).
    fn authenticate(
        &self,
        cert_sha256: &str,
        name: &str,
        token: &str,
    ) -> Result<(String, bool), JoinRefusal> {
        let mut book = self.lock_book();
        let a = book.authenticate(now_unix(), cert_sha256, name, token)?;
        if a.repinned {
            tracing::warn!(node = %a.name, "node name re-pinned to a new certificate (joined with a token); its old certificate no longer works");
        }
        if a.first_join
            && let Err(e) = book.save(&self.book_path)
        {
            tracing::error!(error = %e, "cannot save the node book; the pin lasts until restart");
        }
        Ok((a.name, a.first_join))
    }

    /// The pinned node with this certificate.
    fn node_of_cert(&self, cert_sha256: &str) -> Option<String> {
        self.lock_book()
            .node_by_cert(cert_sha256)
            .map(|n| n.name.clone())
    }

    /// Registers an authenticated control connection; returns its epoch. A node already
    /// connected under that name is replaced (its old connection is lost first).
    fn register(
        &self,
        name: &str,
        addr: SocketAddr,
        labels: Vec<(String, String)>,
        capacity: Capacity,
        outbox: mpsc::Sender<NodeMessage>,
    ) -> u64 {
        let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        let old = self.lock_connected().insert(
            name.to_owned(),
            Connected {
                epoch,
                outbox,
                addr,
                labels,
                capacity,
                workers: HashMap::new(),
            },
        );
        if let Some(old) = old {
            for (_, w) in old.workers {
                let _ = w.send(Some(RemoteEnd::NodeLost(
                    "replaced by a new connection".into(),
                )));
            }
        }
        epoch
    }

    /// The control connection `epoch` of `name` ended: the node is lost (unless a newer
    /// connection replaced it). Its workers end with it, and placement forgets it.
    async fn lost(&self, name: &str, epoch: u64, reason: &str) {
        let gone = {
            let mut c = self.lock_connected();
            match c.get(name) {
                Some(n) if n.epoch == epoch => c.remove(name),
                _ => None,
            }
        };
        let Some(gone) = gone else {
            return;
        };
        self.counters.lost.fetch_add(1, Ordering::Relaxed);
        for (_, w) in gone.workers {
            let _ = w.send(Some(RemoteEnd::NodeLost(reason.to_owned())));
        }
        self.lock_pending().retain(|_, p| p.node != name);
        tracing::warn!(node = name, reason, "media node lost");
        let producers = match self.engine.get() {
            Some(e) => e
                .lost(name.to_owned(), epoch, reason.to_owned())
                .await
                .unwrap_or(0),
            None => 0,
        };
        self.events.publish(
            Audience::AdminOnly,
            Event::NodeLost {
                node: name.to_owned(),
                reason: reason.to_owned(),
                producers,
            },
        );
    }

    /// A worker ended on its node (one still starting fails its start at once).
    fn worker_exited(&self, name: &str, worker: u64, detail: String) {
        self.lock_pending().remove(&worker);
        if let Some(n) = self.lock_connected().get_mut(name)
            && let Some(w) = n.workers.remove(&worker)
        {
            let _ = w.send(Some(RemoteEnd::Exited(detail)));
        }
    }

    /// Asks `node` to start worker `worker` and waits for its connection (the caller bounds
    /// the wait by the start deadline).
    pub async fn start_worker(
        &self,
        node: &str,
        worker: u64,
    ) -> Result<
        (
            tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
            Vec<u8>,
            RemoteProc,
        ),
        crate::worker::WorkerError,
    > {
        let (reply, rx) = oneshot::channel();
        let (end_tx, end_rx) = watch::channel(None);
        let outbox = {
            let mut c = self.lock_connected();
            let n = c
                .get_mut(node)
                .ok_or_else(|| start_error(format!("media node {node} is not connected")))?;
            n.workers.insert(worker, end_tx);
            n.outbox.clone()
        };
        self.lock_pending().insert(
            worker,
            Pending {
                node: node.to_owned(),
                reply,
            },
        );
        // Until the worker's connection arrives, a failed or abandoned start (the caller's
        // deadline drops this future) leaves nothing behind in either map.
        let mut guard = StartGuard {
            nodes: self,
            node,
            worker,
            armed: true,
        };
        let args = crate::worker::desktop_isolation_args();
        if outbox
            .try_send(NodeMessage::SpawnWorker { worker, args })
            .is_err()
        {
            return Err(start_error(format!("media node {node} is not keeping up")));
        }
        let (stream, rest, pid) = rx.await.map_err(|_| {
            start_error(format!(
                "media node {node} went away or its worker ended during start-up"
            ))
        })?;
        guard.armed = false;
        self.counters
            .workers_started
            .fetch_add(1, Ordering::Relaxed);
        Ok((
            stream,
            rest,
            RemoteProc::new(pid, node.to_owned(), worker, end_rx, outbox),
        ))
    }

    /// A worker connection arrived from the node with certificate `cert_sha256`: hand it to
    /// the supervisor waiting for it. False (and the connection is dropped) when no such
    /// worker was asked of that node.
    fn worker_connected(&self, cert_sha256: &str, worker: u64, pid: u32, conn: WorkerConn) -> bool {
        let Some(node) = self.node_of_cert(cert_sha256) else {
            return false;
        };
        let mut pending = self.lock_pending();
        match pending.get(&worker) {
            Some(p) if p.node == node => {}
            _ => return false,
        }
        let Some(p) = pending.remove(&worker) else {
            return false;
        };
        drop(pending);
        let (stream, rest, _) = conn;
        p.reply.send((stream, rest, pid)).is_ok()
    }

    /// The names of the nodes whose certificates are pinned (joined once; connected or not).
    pub fn pinned(&self) -> Vec<String> {
        self.lock_book()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    /// The connected nodes.
    pub fn list(&self) -> Vec<RemoteNodeInfo> {
        self.lock_connected()
            .iter()
            .map(|(name, n)| RemoteNodeInfo {
                name: name.clone(),
                addr: n.addr,
                labels: n.labels.clone(),
                capacity: n.capacity.clone(),
                workers: n.workers.len(),
            })
            .collect()
    }

    /// Stops placing producers on `name`. False: no such node.
    pub async fn drain(&self, name: &str) -> Result<bool, String> {
        // Placement holds the draining state (a rejoin resets it: a node that restarts is
        // ready again unless drained anew).
        let engine = self.engine.get().ok_or("the engine is not running")?;
        let ok = engine
            .drain(name.to_owned())
            .await
            .ok_or("the streaming engine did not answer in time")?;
        if ok {
            tracing::info!(node = name, "media node draining");
            self.events.publish(
                Audience::AdminOnly,
                Event::NodeDrained {
                    node: name.to_owned(),
                },
            );
        }
        Ok(ok)
    }

    /// Forgets a node: its pinned certificate (it must join with a token again) and, if it is
    /// connected, the node itself (its producers end with `node_lost`). False: unknown name.
    pub async fn remove(&self, name: &str) -> Result<bool, String> {
        let pinned = {
            let mut book = self.lock_book();
            let removed = book.remove(name);
            if removed {
                book.save(&self.book_path).map_err(|e| e.to_string())?;
            }
            removed
        };
        let epoch = self.lock_connected().get(name).map(|n| n.epoch);
        if let Some(epoch) = epoch {
            self.lost(name, epoch, "removed by the operator").await;
        }
        Ok(pinned || epoch.is_some())
    }
}
