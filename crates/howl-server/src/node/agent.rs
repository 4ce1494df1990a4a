//! `howl node`: runs on a media machine, dials out to the control plane (so it works from
//! behind NAT), and runs the `howl-worker` processes the control plane asks for.
//!
//! One control connection carries the join, heartbeats both ways and start/kill orders; each
//! worker gets its own TLS connection, bridged byte for byte to the worker's local unix
//! socket, so the worker protocol (and its heartbeat) runs end to end and a slow worker
//! fills only its own connection's window. When the control connection is lost the node
//! kills its workers (the control plane ends their producers with `node_lost`), reaps what
//! they left, and dials again with backoff.

use super::endpoint::{read_node, write_node};
use super::*;
use crate::worker::{self, STOP_GRACE};
use howl_core::nodes::parse_token;
use howl_media::node::{NODE_PROTOCOL_VERSION, NodeDecoder};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, UnixListener};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

/// The node's key and certificate in its state directory.
pub const NODE_KEY_FILE: &str = "node-key.pem";
pub const NODE_CERT_FILE: &str = "node-cert.pem";
/// The control plane's certificate fingerprint, pinned at the first successful join.
pub const CONTROL_PLANE_PIN_FILE: &str = "control-plane.sha256";
/// Longest a TCP connect plus TLS handshake to the control plane may take.
pub const DIAL_DEADLINE: Duration = Duration::from_secs(10);
/// Reconnection backoff: first wait, and the most it grows to.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Worker ends queued to the control connection (worker tasks → session). Bounded by the
/// number of workers the node runs; a full queue makes a finishing task wait.
pub const EXIT_QUEUE_CAPACITY: usize = 64;
/// How long the workers of a lost session may take to end before their tasks are dropped
/// (dropping a task kills its child: `kill_on_drop`).
pub const WORKERS_END_DEADLINE: Duration = Duration::from_secs(3);

/// Accepts exactly the control plane certificate with the pinned fingerprint (the handshake
/// signature is still verified).
#[derive(Debug)]
struct PinnedControlPlane {
    sha256: String,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedControlPlane {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if cert_fingerprint(end_entity.as_ref()) == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the control plane's certificate is not the pinned one".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The node's own identity: loaded, or made on first start (key 0600).
fn load_or_create_identity(dir: &Path) -> Result<howl_io::IdentityPem, String> {
    let (kp, cp) = (dir.join(NODE_KEY_FILE), dir.join(NODE_CERT_FILE));
    match (std::fs::read_to_string(&kp), std::fs::read_to_string(&cp)) {
        (Ok(key_pem), Ok(cert_pem)) => Ok(howl_io::IdentityPem { key_pem, cert_pem }),
        _ => {
            use aws_lc_rs::rand::SecureRandom;
            let mut serial = [0u8; 16];
            aws_lc_rs::rand::SystemRandom::new()
                .fill(&mut serial)
                .map_err(|_| "system RNG failed".to_owned())?;
            let id = howl_io::generate_identity("howl media node", &serial, 2064)
                .map_err(|e| e.to_string())?;
            howl_core::store::atomic_write(&kp, id.key_pem.as_bytes(), 0o600)
                .map_err(|e| e.to_string())?;
            howl_core::store::atomic_write(&cp, id.cert_pem.as_bytes(), 0o644)
                .map_err(|e| e.to_string())?;
            Ok(id)
        }
    }
}

/// GPUs this machine shows: DRM render nodes, else NVIDIA device nodes.
pub(crate) fn count_gpus() -> u32 {
    let count = |dir: &str, prefix: &str, digits_only: bool| {
        std::fs::read_dir(dir).map_or(0, |d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.strip_prefix(prefix).is_some_and(|rest| {
                        !rest.is_empty()
                            && (!digits_only || rest.bytes().all(|b| b.is_ascii_digit()))
                    })
                })
                .count()
        })
    };
    let render = count("/dev/dri", "renderD", true);
    let nvidia = count("/dev", "nvidia", true);
    u32::try_from(render.max(nvidia)).unwrap_or(u32::MAX)
}

/// This machine's host name (the default node name).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// Parses `KEY=VALUE` labels.
pub fn parse_labels(raw: &[String]) -> Result<Vec<(String, String)>, String> {
    raw.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("label {s:?} is not KEY=VALUE")),
        })
        .collect()
}

/// Everything a session needs, fixed for the node's life.
struct Ctx {
    control_plane: String,
    state_dir: PathBuf,
    run_dir: PathBuf,
    token: String,
    name: String,
    labels: Vec<(String, String)>,
    capacity: Capacity,
    identity: howl_io::IdentityPem,
    worker_bin: PathBuf,
}

impl Ctx {
    /// The fingerprint the control plane must show: the token's (the operator's latest
    /// word) or, without a token, the one pinned at the first join.
    fn expected_control_plane(&self) -> Result<String, String> {
        if let Some(p) = parse_token(&self.token) {
            return Ok(p.control_plane_sha256.to_ascii_lowercase());
        }
        std::fs::read_to_string(self.state_dir.join(CONTROL_PLANE_PIN_FILE))
            .map(|s| s.trim().to_owned())
            .map_err(|_| {
                "no usable join token and no pinned control plane: pass --token-file with a token from `howl nodes token`".to_owned()
            })
    }

    fn connector(&self) -> Result<TlsConnector, String> {
        use rustls::pki_types::pem::PemObject;
        let cert = CertificateDer::from_pem_slice(self.identity.cert_pem.as_bytes())
            .map_err(|e| format!("node certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(self.identity.key_pem.as_bytes())
            .map_err(|e| format!("node key: {e}"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = Arc::new(PinnedControlPlane {
            sha256: self.expected_control_plane()?,
            algs: provider.signature_verification_algorithms,
        });
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![cert], key)
            .map_err(|e| e.to_string())?;
        Ok(TlsConnector::from(Arc::new(cfg)))
    }

    async fn dial(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let connector = self.connector()?;
        let dial = async {
            let tcp = TcpStream::connect(&self.control_plane)
                .await
                .map_err(|e| format!("connect {}: {e}", self.control_plane))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from("howl-control-plane").map_err(|e| e.to_string())?;
            connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", self.control_plane))
        };
        tokio::time::timeout(DIAL_DEADLINE, dial)
            .await
            .map_err(|_| {
                format!(
                    "no connection to {} within {DIAL_DEADLINE:?}",
                    self.control_plane
                )
            })?
    }
}

/// What `howl node` was told (its command line, see `cli::NodeArgs`).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub control_plane: String,
    pub token_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub name: Option<String>,
    pub labels: Vec<String>,
    pub max_producers: Option<u32>,
    /// Video encoder sessions at once, across codecs (`None`: unlimited).
    pub max_encoder_sessions: Option<u32>,
}

/// `howl node`: joins and serves until SIGTERM/SIGINT.
pub async fn run(args: AgentConfig) -> Result<(), String> {
    let _ = rustls::crypto::CryptoProvider::install_default(
        rustls::crypto::aws_lc_rs::default_provider(),
    );
    let state_dir = args
        .state_dir
        .clone()
        // Beside a server's default, never in it (the node reaps its run directory).
        .unwrap_or_else(|| crate::statedir::default_state_dir().with_file_name("howl-node"));
    crate::statedir::StateDir::open(&state_dir).map_err(|e| e.to_string())?;
    // The node reaps `<state dir>/run` at start: a server's state directory there would lose
    // its running workers.
    if state_dir.join(crate::statedir::TOKEN_FILE).exists() {
        return Err(format!(
            "{} is a howl server's state directory; give the node its own (--state-dir)",
            state_dir.display()
        ));
    }
    let identity = load_or_create_identity(&state_dir)?;
    let token = match &args.token_file {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("token file {}: {e}", p.display()))?
            .trim()
            .to_owned(),
        None => String::new(),
    };
    if !token.is_empty() && parse_token(&token).is_none() {
        return Err("the token file does not hold a join token from `howl nodes token`".into());
    }
    let name = args.name.clone().unwrap_or_else(hostname);
    howl_core::nodes::validate_node_name(&name).map_err(|e| e.to_string())?;
    let labels = parse_labels(&args.labels)?;
    let run_dir = state_dir.join("run");
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let reaped = worker::reap_orphans(&run_dir);
    if !reaped.is_empty() {
        tracing::warn!(pids = ?reaped, "killed media workers left by a previous run");
    }
    let worker_bin = worker::default_worker_bin();
    let codecs = worker::probe(&worker_bin).await.unwrap_or_else(|e| {
        tracing::error!(bin = %worker_bin.display(), error = %e, "media worker unusable");
        Vec::new()
    });
    let max_producers = args.max_producers.unwrap_or(0);
    // A hardware encoder's session limit holds across its codecs: each codec reports it,
    // and the node's total is the same budget (placement holds one session per producer).
    let sessions = args.max_encoder_sessions.unwrap_or(0);
    let capacity = Capacity {
        max_producers,
        max_encoder_sessions: sessions,
        cores: std::thread::available_parallelism()
            .map_or(0, |n| u32::try_from(n.get()).unwrap_or(0)),
        gpus: count_gpus(),
        encoders: codecs
            .iter()
            .map(|c| (c.name().to_owned(), sessions))
            .collect(),
    };
    let ctx = Arc::new(Ctx {
        control_plane: args.control_plane.clone(),
        state_dir,
        run_dir,
        token,
        name,
        labels,
        capacity,
        identity,
        worker_bin,
    });
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            shutdown.cancel();
        });
    }
    tracing::info!(node = %ctx.name, control_plane = %ctx.control_plane, "media node starting");
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = tokio::time::Instant::now();
        let r = session(&ctx, &shutdown).await;
        // Whatever the session ran is gone with it: the control plane ended those producers.
        let reaped = worker::reap_orphans(&ctx.run_dir);
        if !reaped.is_empty() {
            tracing::warn!(pids = ?reaped, "reaped workers of the lost session");
        }
        if shutdown.is_cancelled() {
            tracing::info!("media node stopped");
            return Ok(());
        }
        match r {
            Ok(()) => tracing::warn!("control connection ended"),
            Err(e) => tracing::warn!(error = %e, "control connection failed"),
        }
        if started.elapsed() > BACKOFF_MAX {
            backoff = BACKOFF_MIN;
        }
        // A little spread so nodes restarted together do not dial in lockstep.
        let jitter = Duration::from_millis(u64::from(std::process::id() % 250));
        tokio::select! {
            () = tokio::time::sleep(backoff + jitter) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One control connection, from dial to loss. Its workers die with it.
async fn session(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Result<(), String> {
    let mut tls = ctx.dial().await?;
    let join = NodeMessage::JoinControl {
        version: NODE_PROTOCOL_VERSION,
        name: ctx.name.clone(),
        token: ctx.token.clone(),
        labels: ctx.labels.clone(),
        capacity: ctx.capacity.clone(),
    };
    let mut dec = NodeDecoder::new();
    let reply = tokio::time::timeout(DIAL_DEADLINE, async {
        write_node(&mut tls, &join).await?;
        read_node(&mut tls, &mut dec).await
    })
    .await
    .map_err(|_| "no answer to the join".to_owned())?
    .map_err(|e| e.to_string())?;
    let name = match reply {
        NodeMessage::Welcome { name, .. } => name,
        NodeMessage::Refused { reason } => return Err(format!("refused: {reason}")),
        other => return Err(format!("unexpected answer {}", other.name())),
    };
    // Pinned for joins without a token (the token file may be gone by then).
    if let Ok(fp) = ctx.expected_control_plane() {
        let _ = howl_core::store::atomic_write(
            &ctx.state_dir.join(CONTROL_PLANE_PIN_FILE),
            format!("{fp}\n").as_bytes(),
            0o644,
        );
    }
    tracing::info!(node = %name, "joined the control plane");

    let session_end = shutdown.child_token();
    let (exit_tx, mut exit_rx) = mpsc::channel::<(u64, String)>(EXIT_QUEUE_CAPACITY);
    let mut workers: HashMap<u64, (CancellationToken, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let mut buf = vec![0u8; 16 * 1024];
    let mut last_heard = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(NODE_HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result: Result<(), String> = 'conn: loop {
        loop {
            match dec.next() {
                Ok(Some(NodeMessage::Heartbeat)) => {}
                Ok(Some(NodeMessage::SpawnWorker { worker, args })) => {
                    let kill = session_end.child_token();
                    let task = tokio::spawn(run_worker(
                        ctx.clone(),
                        worker,
                        args,
                        kill.clone(),
                        exit_tx.clone(),
                    ));
                    workers.insert(worker, (kill, task));
                }
                Ok(Some(NodeMessage::KillWorker { worker })) => {
                    if let Some((kill, _)) = workers.get(&worker) {
                        kill.cancel();
                    }
                }
                Ok(Some(NodeMessage::Refused { reason })) => {
                    break 'conn Err(format!("refused: {reason}"));
                }
                Ok(Some(other)) => {
                    tracing::debug!(msg = other.name(), "unexpected control plane message");
                }
                Ok(None) => break,
                Err(e @ howl_media::node::NodeProtocolError::Framing(_)) => {
                    break 'conn Err(format!("protocol error: {e}"));
                }
                Err(e) => tracing::debug!(error = %e, "bad control plane message skipped"),
            }
        }
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) => break 'conn Err("the control plane closed the connection".into()),
                Err(e) => break 'conn Err(format!("connection failed: {e}")),
                Ok(n) => {
                    dec.push(&buf[..n]);
                    last_heard = tokio::time::Instant::now();
                }
            },
            Some((worker, detail)) = exit_rx.recv() => {
                workers.remove(&worker);
                let msg = NodeMessage::WorkerExited { worker, detail };
                if !matches!(tokio::time::timeout(NODE_HEARTBEAT_DEADLINE, write_node(&mut wr, &msg)).await, Ok(Ok(()))) {
                    break 'conn Err("the control plane stopped reading".into());
                }
            }
            _ = tick.tick() => {
                if last_heard.elapsed() > NODE_HEARTBEAT_DEADLINE {
                    break 'conn Err(format!("no heartbeat from the control plane for {NODE_HEARTBEAT_DEADLINE:?}"));
                }
                if !matches!(tokio::time::timeout(NODE_HEARTBEAT_DEADLINE, write_node(&mut wr, &NodeMessage::Heartbeat)).await, Ok(Ok(()))) {
                    break 'conn Err("the control plane stopped reading".into());
                }
            }
            () = shutdown.cancelled() => break 'conn Ok(()),
        }
    };
    // Every worker of this session ends now (their producers ended on the control plane).
    session_end.cancel();
    let deadline = tokio::time::Instant::now() + WORKERS_END_DEADLINE;
    for (_, (_, mut task)) in workers {
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            // Dropping the task drops its child, which kill_on_drop SIGKILLs.
            task.abort();
        }
    }
    result
}

/// Runs one worker: spawn, accept its local connection, dial its own TLS connection to the
/// control plane, bridge the two until either side ends or `kill`; then make sure the
/// process is gone and report.
async fn run_worker(
    ctx: Arc<Ctx>,
    worker: u64,
    args: Vec<String>,
    kill: CancellationToken,
    exits: mpsc::Sender<(u64, String)>,
) {
    let detail = run_worker_inner(&ctx, worker, &args, &kill).await;
    tracing::info!(worker, %detail, "worker ended");
    let _ = tokio::time::timeout(NODE_HEARTBEAT_DEADLINE, exits.send((worker, detail))).await;
}

async fn run_worker_inner(
    ctx: &Ctx,
    worker: u64,
    args: &[String],
    kill: &CancellationToken,
) -> String {
    let sock_path = ctx
        .run_dir
        .join(format!("worker-{}-n{worker}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock_path);
    let listener = match UnixListener::bind(&sock_path) {
        Ok(l) => l,
        Err(e) => return format!("worker socket {}: {e}", sock_path.display()),
    };
    let mut child = match tokio::process::Command::new(&ctx.worker_bin)
        .arg("--socket")
        .arg(&sock_path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&sock_path);
            return format!("cannot start {}: {e}", ctx.worker_bin.display());
        }
    };
    let pid = child.id().unwrap_or(0);
    let connected = async {
        let (local, _) = tokio::select! {
            r = listener.accept() => r.map_err(|e| format!("accept: {e}"))?,
            s = child.wait() => return Err(format!("exited during start-up: {s:?}")),
        };
        let mut remote = ctx.dial().await?;
        let hello = NodeMessage::JoinWorker {
            version: NODE_PROTOCOL_VERSION,
            worker,
            pid,
        };
        write_node(&mut remote, &hello)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((local, remote))
    };
    let conns = tokio::select! {
        r = tokio::time::timeout(worker::START_DEADLINE, connected) => r.unwrap_or_else(|_| Err("no connection within the start deadline".into())),
        () = kill.cancelled() => Err("killed during start-up".into()),
    };
    drop(listener);
    let _ = std::fs::remove_file(&sock_path);
    let detail = match conns {
        Err(e) => e,
        Ok((mut local, mut remote)) => {
            // copy_bidirectional's buffers are fixed (8 KiB each way): a stalled side stops
            // the reads of the other, and TCP's window pushes back on that one worker only.
            tokio::select! {
                r = tokio::io::copy_bidirectional(&mut local, &mut remote) => match r {
                    Ok(_) => "connection closed".to_owned(),
                    Err(e) => format!("connection failed: {e}"),
                },
                s = child.wait() => format!("exited: {}", s.map_or_else(|e| e.to_string(), |s| s.to_string())),
                () = kill.cancelled() => "killed on request".to_owned(),
            }
        }
    };
    // Closing its socket tells the worker to stop; past the grace (at once when the control
    // plane asked for a kill) it is killed.
    let grace = if kill.is_cancelled() {
        Duration::ZERO
    } else {
        STOP_GRACE
    };
    if child.try_wait().ok().flatten().is_none()
        && tokio::time::timeout(grace, child.wait()).await.is_err()
    {
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
    }
    // Whatever its desktop started that outlived it.
    let leftovers = worker::reap_marked(&sock_path, false);
    if !leftovers.is_empty() {
        tracing::warn!(worker, killed = ?leftovers, "killed desktop processes that outlived their worker");
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_key_value_pairs() {
        assert_eq!(
            parse_labels(&["gpu=nvidia".into(), " zone=b ".into(), String::new()]),
            Ok(vec![
                ("gpu".to_owned(), "nvidia".to_owned()),
                ("zone".to_owned(), "b".to_owned())
            ])
        );
        assert!(parse_labels(&["novalue".into()]).is_err());
        assert!(parse_labels(&["=x".into()]).is_err());
    }

    #[test]
    fn only_the_pinned_control_plane_certificate_is_accepted() {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let id = howl_io::generate_identity("cp", &[1], 2064).expect("identity");
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).expect("pem");
        let good = PinnedControlPlane {
            sha256: cert_fingerprint(der.as_ref()),
            algs: provider.signature_verification_algorithms,
        };
        let name = ServerName::try_from("howl-control-plane").expect("name");
        let now = UnixTime::now();
        assert!(good.verify_server_cert(&der, &[], &name, &[], now).is_ok());
        let other = PinnedControlPlane {
            sha256: "00".repeat(32),
            algs: provider.signature_verification_algorithms,
        };
        assert!(
            other
                .verify_server_cert(&der, &[], &name, &[], now)
                .is_err()
        );
    }
}
