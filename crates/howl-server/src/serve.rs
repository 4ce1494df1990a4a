//! `howl serve`: builds the pieces from the configuration and runs them until SIGTERM/SIGINT.
//!
//! Order of shutdown (bounded by the `shutdown_deadline_secs` setting): stop accepting on every listener,
//! drop open connections, stop the core actor, exit. State is persisted on every change, so
//! nothing is left to flush.

use crate::config::Config;
use crate::control::api::{self, ApiState};
use crate::control::listener::{self, Limits};
use crate::control::nvhttp::{NvHttp, NvHttpSettings};
use crate::control::{mdns, tls};
use crate::data::enet;
use crate::statedir::StateDir;
use crate::{domain, engine, worker};
use howl_proto::nvhttp::{SCM_AV1_MAIN8, SCM_H264, SCM_HEVC};
use howl_proto::rtsp::StreamPorts;
use howl_proto::sdp::CodecSupport;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Errors that stop the server from starting. Each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    StateDir(#[from] crate::statedir::StateDirError),
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server identity: {0}")]
    Identity(String),
    #[error("apps: {0}")]
    Apps(String),
    #[error("desktop isolation: {0}")]
    Isolation(String),
    #[error("media nodes: {0}")]
    Nodes(String),
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// The built-in apps besides the test pattern: the "Desktop" when it is switched on and a
/// window manager and a terminal are on `PATH` (looked up once: the list is fixed while the
/// server runs).
fn builtin_apps(cfg: &Config) -> Vec<howl_core::apps::AppConfig> {
    if !cfg.desktop_app {
        return Vec::new();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let wm = DESKTOP_WMS.iter().find_map(|w| find_in_path(&path, w));
    let term = find_in_path(&path, DESKTOP_TERMINAL);
    match (wm, term) {
        (Some(wm), Some(term)) => {
            tracing::info!(wm = %wm.display(), terminal = %term.display(), "the built-in Desktop app is listed");
            vec![howl_core::apps::desktop_app(
                &wm.to_string_lossy(),
                &term.to_string_lossy(),
            )]
        }
        _ => {
            tracing::info!(
                "no window manager ({}) or no {DESKTOP_TERMINAL} on PATH: the built-in Desktop app is not listed",
                DESKTOP_WMS.join(", ")
            );
            Vec::new()
        }
    }
}

/// Small window managers the built-in Desktop uses, in order of preference.
const DESKTOP_WMS: &[&str] = &["twm", "openbox", "fluxbox", "icewm"];
/// The terminal the built-in Desktop opens.
const DESKTOP_TERMINAL: &str = "xterm";

/// The first executable file called `name` in the `PATH` list.
fn find_in_path(path: &std::ffi::OsStr, name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs the server until a termination signal. Returns once shut down.
pub async fn run(cfg: Config, state_dir: &Path) -> Result<(), StartError> {
    tls::install_default_provider();
    // Before anything listens: a configured isolation level that cannot be had is fatal.
    if cfg.desktop_isolation == crate::config::DesktopIsolation::Uid {
        howl_media::caps::uid_isolation_available().map_err(StartError::Isolation)?;
    }
    worker::set_desktop_isolation(cfg.desktop_isolation.name(), &cfg.desktop_uid_range);
    tracing::info!(
        level = cfg.desktop_isolation.name(),
        uid_range = %cfg.desktop_uid_range,
        "desktop isolation: {}",
        match cfg.desktop_isolation {
            crate::config::DesktopIsolation::Cookie =>
                "per-display X and sound cookies; apps share this server's uid",
            crate::config::DesktopIsolation::Uid =>
                "per-display X and sound cookies; each desktop's apps under their own uid",
        }
    );
    let sd = StateDir::open(state_dir)?;
    let (identity, fresh) = sd.load_or_create_identity()?;
    if fresh {
        tracing::info!(dir = %state_dir.display(), "created a new host key and certificate");
    }
    let state = sd.load_or_create_state()?;
    let token = sd.load_or_create_token()?;
    let server_identity = howl_proto::pairing::ServerIdentity::from_pem(
        identity.key_pem.as_bytes(),
        identity.cert_pem.as_bytes(),
    )
    .map_err(|e| StartError::Identity(e.to_string()))?;
    let tls_cfg = tls::server_config(&identity.cert_pem, &identity.key_pem)?;
    let node_tls = tls::node_server_config(&identity.cert_pem, &identity.key_pem)?;

    let shutdown = CancellationToken::new();
    let uniqueid = state.uniqueid.clone();
    let events = crate::domain::events::EventBus::new();
    let cp_cert_der = {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        CertificateDer::from_pem_slice(identity.cert_pem.as_bytes())
            .map_err(|e| StartError::Identity(e.to_string()))?
    };
    let nodes = crate::node::Nodes::open(state_dir, cp_cert_der.as_ref(), events.clone())
        .map_err(|e| StartError::Nodes(e.to_string()))?;
    let (core, core_task) = domain::spawn(
        state,
        sd.path(crate::statedir::STATE_FILE),
        builtin_apps(&cfg),
        cfg.apps.clone(),
        cfg.pairing_window(),
        events.clone(),
        shutdown.clone(),
    )
    .map_err(|e| StartError::Apps(e.to_string()))?;

    // The media plane: which codecs can the worker encode? Probed once, bounded.
    let worker_bin = cfg
        .worker_bin
        .clone()
        .unwrap_or_else(worker::default_worker_bin);
    let codecs = match worker::probe(&worker_bin).await {
        Ok(c) => {
            tracing::info!(bin = %worker_bin.display(), codecs = ?c.iter().map(|c| c.name()).collect::<Vec<_>>(), "media worker probed");
            c
        }
        Err(e) => {
            tracing::error!(bin = %worker_bin.display(), error = %e, "media worker unusable; launches will fail");
            Vec::new()
        }
    };
    use howl_media::protocol::Codec;
    let encoder_names: Vec<String> = codecs.iter().map(|c| c.name().to_owned()).collect();
    let support = CodecSupport {
        h264: codecs.contains(&Codec::H264),
        hevc: codecs.contains(&Codec::Hevc),
        av1: codecs.contains(&Codec::Av1),
        hdr: false,
        yuv444: false,
    };
    // Clients reject a host that advertises no codec at all; H.264 stays advertised so a
    // broken worker shows up as a clear launch error instead of an unusable host.
    let mut codec_modes = SCM_H264;
    if support.hevc {
        codec_modes |= SCM_HEVC;
    }
    if support.av1 {
        codec_modes |= SCM_AV1_MAIN8;
    }

    let runtime_dir = state_dir.join("run");
    std::fs::create_dir_all(&runtime_dir).map_err(|source| StartError::Bind {
        what: "runtime directory",
        addr: SocketAddr::new(cfg.bind_address, 0),
        source,
    })?;
    let reaped = worker::reap_orphans(&runtime_dir);
    if !reaped.is_empty() {
        tracing::warn!(pids = ?reaped, "killed media workers left by a previous run");
    }
    // Containers of a previous run's Docker apps, by their label: works without root, where
    // the marker scan above cannot see into them. Before the engine starts, so no container
    // of this run can be in scope yet; bounded by CONTAINER_REAP_DEADLINE.
    worker::log_reaped_containers(worker::reap_containers(&worker_bin, &runtime_dir).await, 0);
    let udp = |what: &'static str, port: u16| {
        let addr = SocketAddr::new(cfg.bind_address, port);
        async move {
            tokio::net::UdpSocket::bind(addr)
                .await
                .map(Arc::new)
                .map_err(|source| StartError::Bind { what, addr, source })
        }
    };
    let video_sock = udp("video UDP", cfg.video_port).await?;
    let audio_sock = udp("audio UDP", cfg.audio_port).await?;
    let control_addr = SocketAddr::new(cfg.bind_address, cfg.control_port);
    let (mut enet_host, enet_events) =
        enet::EnetHost::start(control_addr).map_err(|source| StartError::Bind {
            what: "ENet control UDP",
            addr: control_addr,
            source,
        })?;
    let ports = StreamPorts {
        video: video_sock
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(cfg.video_port),
        audio: audio_sock
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(cfg.audio_port),
        control: enet_host.local_addr.port(),
    };
    let (engine, engine_task) = engine::spawn(
        engine::EngineSettings {
            bind_address: cfg.bind_address,
            rtsp_port: cfg.rtsp_port,
            rtsp_port_count: cfg.rtsp_port_count,
            ports,
            worker_bin,
            runtime_dir,
            codecs: support,
            fec_percentage: cfg.fec_percentage,
            fec_small_frames: cfg.fec_small_frames,
            fault_drop_fraction: cfg.fault_drop_percent / 100.0,
            linger: Duration::from_secs(cfg.resume_linger_secs),
            rtsp_deadline: Duration::from_secs(cfg.rtsp_deadline_secs),
            connect_deadline: Duration::from_secs(cfg.connect_deadline_secs),
            control_silence: Duration::from_secs(cfg.control_silence_secs),
            events: events.clone(),
            encryption: cfg.encryption_policy(),
            player_defaults: crate::viewer::rtsp_player::PlayerDefaults::default(),
            admission: cfg.admission(),
            nodes: nodes.clone(),
            local_node: cfg.local_node,
            placement: howl_core::domain::Placement::parse(&cfg.placement).unwrap_or_default(),
        },
        enet_host.sender(),
        enet_events,
        video_sock,
        audio_sock,
        shutdown.clone(),
    );
    nodes.set_engine(Arc::new(engine.clone()));
    if cfg.fault_drop_percent > 0.0 {
        tracing::warn!(
            percent = cfg.fault_drop_percent,
            "FAULT INJECTION: dropping outgoing media datagrams at random (testing only)"
        );
    }

    let http_addr = SocketAddr::new(cfg.bind_address, cfg.http_port);
    let https_addr = SocketAddr::new(cfg.bind_address, cfg.https_port);
    let http_l = bind("NVHTTP http", http_addr).await?;
    let https_l = bind("NVHTTP https", https_addr).await?;
    let api_l = bind("management API", cfg.api_bind).await?;
    let node_l = match cfg.node_bind {
        Some(addr) => Some(bind("node endpoint", addr).await?),
        None => None,
    };
    let https_port = https_l
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(cfg.https_port);
    let http_port = http_l
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(cfg.http_port);

    let hostname = cfg.hostname.clone().unwrap_or_else(system_hostname);
    let nv = Arc::new(NvHttp::new(
        NvHttpSettings {
            hostname: hostname.clone(),
            uniqueid,
            http_port,
            https_port,
            pairing_window: cfg.pairing_window(),
            request_timeout: cfg.request_timeout(),
            codec_mode_support: codec_modes,
            max_luma_pixels_hevc: if support.hevc { 1_869_449_984 } else { 0 },
        },
        core.clone(),
        engine.clone(),
        Arc::new(server_identity),
    ));

    // A connection may carry one pairing request that waits for the operator, so its deadline
    // is the pairing window plus the ordinary request budget.
    let nv_limits = Limits {
        tls_handshake_timeout: cfg.tls_handshake_timeout(),
        header_timeout: cfg.header_timeout(),
        connection_deadline: cfg.pairing_window() + cfg.request_timeout(),
        max_connections: cfg.max_connections,
        max_header_bytes: cfg.max_header_bytes,
    };
    let api_limits = Limits {
        // Event streams live up to EVENT_STREAM_LIFETIME; other API requests end far sooner
        // (every handler waits on the core or the engine with a 5 s deadline).
        connection_deadline: cfg
            .request_timeout()
            .max(api::EVENT_STREAM_LIFETIME + Duration::from_secs(5)),
        ..nv_limits.clone()
    };

    let whep = if cfg.webrtc {
        let addr = cfg.webrtc_bind;
        let sock = tokio::net::UdpSocket::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                what: "WebRTC UDP",
                addr,
                source,
            })?;
        let local = sock.local_addr().unwrap_or(addr);
        // `validate` made sure an unspecified bind address comes with a candidate address.
        let candidate =
            SocketAddr::new(cfg.webrtc_candidate_ip.unwrap_or(local.ip()), local.port());
        let udp = Arc::new(crate::viewer::browser::WebRtcUdp::new(sock, candidate));
        tokio::spawn(udp.clone().serve(shutdown.clone()));
        tracing::info!(udp = %local, candidate = %candidate,
            "browser viewers: POST an SDP offer to /api/v1/lobbies/<id>/whep, or open /watch/<id>");
        Some(Arc::new(crate::viewer::browser::Whep::new(
            Arc::new(engine.clone()),
            udp,
            crate::viewer::browser::WhepSettings {
                silence: Duration::from_secs(cfg.webrtc_silence_secs),
                max_pending_offers: cfg.webrtc_max_pending_offers,
                ice_servers: cfg.webrtc_ice_servers.clone(),
                cors_origins: cfg.webrtc_cors_origins.clone(),
                clipboard: cfg.clipboard,
            },
            shutdown.clone(),
        )))
    } else {
        None
    };
    let health = crate::control::health::Health::new(engine.clone(), cfg.fault_wedge_api);
    if cfg.fault_wedge_api {
        tracing::warn!(
            "FAULT INJECTION: POST /api/v1/debug/wedge-engine can wedge the engine (testing only)"
        );
    }
    let metrics = crate::control::metrics::Metrics::new();
    tokio::spawn(crate::control::metrics::count_pairing_events(
        metrics.clone(),
        events.subscribe(),
        shutdown.clone(),
    ));
    let http_stats = metrics.listener_stats("nvhttp", false);
    let https_stats = metrics.listener_stats("nvhttps", true);
    let api_stats = metrics.listener_stats("api", false);
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(l) = node_l {
        tracing::info!(addr = ?l.local_addr().ok(), "node endpoint listening (media nodes join with `howl nodes token`)");
        tasks.spawn(crate::node::endpoint::serve(
            l,
            node_tls,
            nodes.clone(),
            shutdown.clone(),
        ));
    }
    {
        let nv = nv.clone();
        tasks.spawn(listener::serve(
            "nvhttp",
            http_l,
            None,
            nv_limits.clone(),
            http_stats.clone(),
            move |conn| nv.clone().service(conn),
            shutdown.clone(),
        ));
    }
    {
        let nv = nv.clone();
        tasks.spawn(listener::serve(
            "nvhttps",
            https_l,
            Some(tokio_rustls::TlsAcceptor::from(tls_cfg)),
            nv_limits,
            https_stats.clone(),
            move |conn| nv.clone().service(conn),
            shutdown.clone(),
        ));
    }
    {
        let router = api::router(
            ApiState {
                core: core.clone(),
                engine: engine.clone(),
                listeners: Arc::new(vec![
                    ("nvhttp", http_stats),
                    ("nvhttps", https_stats),
                    ("api", api_stats.clone()),
                ]),
                enet: enet_host.stats.clone(),
                token: Arc::from(token.as_str()),
                events: events.clone(),
                shutdown: shutdown.clone(),
                server: Arc::new(api::ServerInfoView {
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    encoders: encoder_names.clone(),
                    desktop_isolation: cfg.desktop_isolation.name().to_owned(),
                    limits: api::ServerLimits {
                        max_connections: cfg.max_connections,
                        max_body_bytes: cfg.max_body_bytes,
                        rtsp_deadline_secs: cfg.rtsp_deadline_secs,
                        connect_deadline_secs: cfg.connect_deadline_secs,
                        control_silence_secs: cfg.control_silence_secs,
                        resume_linger_secs: cfg.resume_linger_secs,
                        shutdown_deadline_secs: cfg.shutdown_deadline_secs,
                    },
                }),
                started: std::time::Instant::now(),
                metrics: metrics.clone(),
                health: health.clone(),
                whep,
                nodes: nodes.clone(),
            },
            cfg.max_body_bytes,
        );
        tasks.spawn(listener::serve(
            "api",
            api_l,
            None,
            api_limits.clone(),
            api_stats,
            {
                let router = router.clone();
                move |_conn| hyper_util::service::TowerToHyperService::new(router.clone())
            },
            shutdown.clone(),
        ));
        match crate::control::api::unix::bind(state_dir) {
            Ok((l, path)) => {
                tracing::info!(socket = %path.display(), "management API also on a unix socket (admin, no token)");
                tasks.spawn(crate::control::api::unix::serve(
                    l,
                    path,
                    router,
                    api_limits.connection_deadline,
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot bind the API unix socket; the TCP API still works")
            }
        }
    }

    if cfg.rtsp_egress {
        let addr = cfg.rtsp_egress_bind;
        let l = bind("RTSP egress", addr).await?;
        let udp = if cfg.rtsp_egress_udp {
            Some(
                crate::viewer::rtsp_player::PlayerUdp::bind(addr.ip())
                    .await
                    .map_err(|source| StartError::Bind {
                        what: "RTSP egress UDP",
                        addr: SocketAddr::new(addr.ip(), 0),
                        source,
                    })?,
            )
        } else {
            None
        };
        if let Some(u) = &udp {
            u.spawn_receivers(shutdown.clone());
        }
        tracing::info!(addr = %l.local_addr().unwrap_or(addr), udp = udp.is_some(),
            "RTSP players: rtsp://<user>:<API token>@host:port/app/<app> or /lobby/<lobby>");
        tasks.spawn(crate::viewer::rtsp_player::serve(
            l,
            crate::viewer::rtsp_player::PlayerContext {
                engine: Arc::new(engine.clone()),
                core: core.clone(),
                admin_token: Arc::from(token.as_str()),
                timeouts: crate::viewer::rtsp_player::PlayerTimeouts {
                    session: Duration::from_secs(cfg.rtsp_egress_session_timeout_secs),
                    play: Duration::from_secs(cfg.rtsp_egress_play_timeout_secs),
                },
                offer_digest: cfg.rtsp_egress_digest,
                udp,
            },
            shutdown.clone(),
        ));
    }

    let _mdns = if cfg.mdns {
        match mdns::advertise(&hostname, http_port) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(error = %e, "mDNS advertisement failed; clients must add the host by address");
                None
            }
        }
    } else {
        None
    };

    tracing::info!(
        http = %http_addr, https = %https_addr, api = %cfg.api_bind, state_dir = %state_dir.display(),
        "howl is serving; pair a Moonlight client and enter its PIN with `howl pin <PIN>`"
    );

    // Type=notify: every listener is bound above; READY=1 once the engine answers, then the
    // watchdog is fed only while it keeps answering.
    let notifier = match crate::sdnotify::Notifier::from_env() {
        Ok(n) => n.map(Arc::new),
        Err(e) => {
            tracing::warn!(error = %e, "cannot notify the service manager");
            None
        }
    };
    tokio::spawn(crate::control::health::notify_service_manager(
        health,
        notifier.clone(),
        crate::sdnotify::watchdog_period_from_env(),
        shutdown.clone(),
    ));

    wait_for_signal().await;
    tracing::info!("shutting down");
    if let Some(n) = &notifier {
        n.notify("STOPPING=1");
    }
    let drain = async {
        // Sessions first, while ENet can still carry the termination messages.
        engine.shutdown().await;
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        let _ = core_task.await;
        let _ = engine_task.await;
    };
    if tokio::time::timeout(cfg.shutdown_deadline(), drain)
        .await
        .is_err()
    {
        tracing::warn!("shutdown deadline passed; exiting anyway");
        shutdown.cancel();
    }
    // One ENet flush for the termination messages queued above, then stop its thread
    // (bounded by its poll interval).
    tokio::time::sleep(Duration::from_millis(100)).await;
    enet_host.stop();
    {
        use std::sync::atomic::Ordering::Relaxed;
        let st = &enet_host.stats;
        tracing::info!(
            connects = st.connects.load(Relaxed),
            disconnects = st.disconnects.load(Relaxed),
            packets_in = st.packets_in.load(Relaxed),
            events_dropped = st.events_dropped.load(Relaxed),
            "control host stopped"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers, Ctrl-C still works through the default action.
            std::future::pending::<()>().await;
        }
    }
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "howl".into())
}
