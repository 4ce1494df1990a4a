//! The node endpoint: a TLS listener (`node_bind`) for media nodes' control and worker
//! connections. Every connection must complete TLS with a client certificate and send its
//! first message within [`NODE_HANDSHAKE_DEADLINE`]; a refused node is told why and logged
//! with its address, name and reason (never its token).

use super::*;
use crate::worker::WorkerError;
use howl_media::node::{NODE_PROTOCOL_VERSION, NodeDecoder, encode_node};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Accepts node connections until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    nodes: Arc<Nodes>,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_NODE_HANDSHAKES));
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "node endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many node handshakes at once; connection dropped");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, nodes, shutdown) = (acceptor.clone(), nodes.clone(), shutdown.clone());
        tokio::spawn(async move {
            let first = tokio::time::timeout(NODE_HANDSHAKE_DEADLINE, accept(&acceptor, tcp)).await;
            drop(permit);
            let (tls, cert, msg, rest) = match first {
                Ok(Ok(x)) => x,
                Ok(Err(why)) => {
                    nodes.counters.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, reason = %why, "node connection refused");
                    return;
                }
                Err(_) => {
                    nodes.counters.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, "node connection refused: no handshake within the deadline");
                    return;
                }
            };
            match msg {
                NodeMessage::JoinControl {
                    version,
                    name,
                    token,
                    labels,
                    capacity,
                } => {
                    let join = Join {
                        version,
                        name,
                        token,
                        labels,
                        capacity,
                    };
                    control(tls, peer, cert, join, rest, nodes, shutdown).await;
                }
                NodeMessage::JoinWorker {
                    version,
                    worker,
                    pid,
                } => {
                    let mut rest = rest;
                    if version != NODE_PROTOCOL_VERSION
                        || !nodes.worker_connected(&cert, worker, pid, (tls, rest.take_rest(), pid))
                    {
                        nodes.counters.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%peer, worker, "worker connection refused: no such worker asked of this node");
                    }
                }
                other => {
                    nodes.counters.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, msg = other.name(), "node connection refused: unexpected first message");
                }
            }
        });
    }
}

/// TLS with a client certificate, then the first message.
async fn accept(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> Result<(TlsStream<TcpStream>, String, NodeMessage, NodeDecoder), String> {
    let mut tls = acceptor
        .accept(tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| cert_fingerprint(c.as_ref()))
        .ok_or("no client certificate")?;
    let mut dec = NodeDecoder::new();
    let msg = read_node(&mut tls, &mut dec)
        .await
        .map_err(|e| e.to_string())?;
    Ok((tls, cert, msg, dec))
}

/// Reads one node message (bounded by the decoder's frame limit).
pub(crate) async fn read_node<S: AsyncRead + Unpin>(
    s: &mut S,
    dec: &mut NodeDecoder,
) -> Result<NodeMessage, WorkerError> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(m) = dec
            .next()
            .map_err(|e| WorkerError::Protocol(e.to_string()))?
        {
            return Ok(m);
        }
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| WorkerError::Protocol(e.to_string()))?;
        if n == 0 {
            return Err(WorkerError::Protocol("connection closed".into()));
        }
        dec.push(&buf[..n]);
    }
}

/// Writes one node message.
pub(crate) async fn write_node<S: AsyncWrite + Unpin>(
    s: &mut S,
    msg: &NodeMessage,
) -> Result<(), WorkerError> {
    let mut out = Vec::new();
    encode_node(msg, &mut out).map_err(|e| WorkerError::Protocol(e.to_string()))?;
    s.write_all(&out)
        .await
        .map_err(|e| WorkerError::Protocol(e.to_string()))
}

struct Join {
    version: u16,
    name: String,
    token: String,
    labels: Vec<(String, String)>,
    capacity: Capacity,
}

/// One node's control connection, from authentication to its loss.
async fn control(
    mut tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    cert: String,
    join: Join,
    mut dec: NodeDecoder,
    nodes: Arc<Nodes>,
    shutdown: CancellationToken,
) {
    let refuse = |why: String| {
        nodes.counters.refused.fetch_add(1, Ordering::Relaxed);
        // Name and address only: the token is a secret, the certificate's digest is not
        // needed to act on this.
        tracing::warn!(%peer, node = %join.name, reason = %why, "media node refused");
        NodeMessage::Refused { reason: why }
    };
    if join.version != NODE_PROTOCOL_VERSION {
        let msg = refuse(format!(
            "node speaks protocol {}, this control plane {NODE_PROTOCOL_VERSION}",
            join.version
        ));
        let _ = write_node(&mut tls, &msg).await;
        return;
    }
    let (name, first_join) = match nodes.authenticate(&cert, &join.name, &join.token) {
        Ok(x) => x,
        Err(e) => {
            let msg = refuse(e.to_string());
            let _ = tokio::time::timeout(NODE_HANDSHAKE_DEADLINE, write_node(&mut tls, &msg)).await;
            return;
        }
    };
    let welcome = NodeMessage::Welcome {
        name: name.clone(),
        heartbeat_ms: u32::try_from(NODE_HEARTBEAT_INTERVAL.as_millis()).unwrap_or(500),
    };
    if tokio::time::timeout(NODE_HANDSHAKE_DEADLINE, write_node(&mut tls, &welcome))
        .await
        .is_err()
    {
        return;
    }
    let (out_tx, mut out_rx) = mpsc::channel(NODE_OUTBOX_CAPACITY);
    let limits = howl_core::domain::Admission {
        max_producers: (join.capacity.max_producers > 0).then_some(join.capacity.max_producers),
        max_encoder_sessions: (join.capacity.max_encoder_sessions > 0)
            .then_some(join.capacity.max_encoder_sessions),
    };
    let traits = howl_core::domain::NodeTraits {
        labels: join.labels.iter().cloned().collect(),
        gpus: join.capacity.gpus,
    };
    let epoch = nodes.register(&name, peer, join.labels, join.capacity, out_tx);
    nodes.counters.joins.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%peer, node = %name, first_join, "media node joined");
    if let Some(e) = nodes.engine.get() {
        e.joined(name.clone(), epoch, limits, traits).await;
    }
    nodes.events.publish(
        Audience::AdminOnly,
        Event::NodeJoined {
            node: name.clone(),
            first_join,
        },
    );

    let (mut rd, mut wr) = tokio::io::split(tls);
    let mut buf = vec![0u8; 16 * 1024];
    let mut last_heard = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(NODE_HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason: String = 'conn: loop {
        loop {
            match dec.next() {
                Ok(Some(NodeMessage::Heartbeat)) => {}
                Ok(Some(NodeMessage::WorkerExited { worker, detail })) => {
                    nodes.worker_exited(&name, worker, detail);
                }
                Ok(Some(other)) => {
                    tracing::debug!(node = %name, msg = other.name(), "unexpected node message");
                }
                Ok(None) => break,
                Err(e @ howl_media::node::NodeProtocolError::Framing(_)) => {
                    break 'conn format!("protocol error: {e}");
                }
                Err(e) => tracing::debug!(node = %name, error = %e, "bad node message skipped"),
            }
        }
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) => break 'conn "connection closed".to_owned(),
                // A killed node's kernel closes its socket without TLS's goodbye.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    break 'conn "connection closed".to_owned()
                }
                Err(e) => break 'conn format!("connection failed: {e}"),
                Ok(n) => {
                    dec.push(&buf[..n]);
                    last_heard = tokio::time::Instant::now();
                }
            },
            Some(msg) = out_rx.recv() => {
                let w = tokio::time::timeout(NODE_HEARTBEAT_DEADLINE, write_node(&mut wr, &msg)).await;
                if !matches!(w, Ok(Ok(()))) {
                    break 'conn "node stopped reading its connection".to_owned();
                }
            }
            _ = tick.tick() => {
                if last_heard.elapsed() > NODE_HEARTBEAT_DEADLINE {
                    break 'conn format!("no heartbeat for {NODE_HEARTBEAT_DEADLINE:?}");
                }
                let now_epoch = nodes.lock_connected().get(&name).map(|n| n.epoch);
                if now_epoch != Some(epoch) {
                    let why = if now_epoch.is_some() {
                        "replaced by a newer connection of the same node"
                    } else {
                        "removed by the operator"
                    };
                    let bye = NodeMessage::Refused { reason: why.into() };
                    let _ = tokio::time::timeout(NODE_HEARTBEAT_INTERVAL, write_node(&mut wr, &bye)).await;
                    break 'conn why.to_owned();
                }
                if let Ok(Err(_)) | Err(_) = tokio::time::timeout(NODE_HEARTBEAT_DEADLINE, write_node(&mut wr, &NodeMessage::Heartbeat)).await {
                    break 'conn "node stopped reading its connection".to_owned();
                }
            }
            () = shutdown.cancelled() => break 'conn "control plane shutting down".to_owned(),
        }
    };
    nodes.lost(&name, epoch, &reason).await;
}
