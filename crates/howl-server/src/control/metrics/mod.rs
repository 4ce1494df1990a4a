//! Prometheus metrics: `GET /metrics` on the management API, in the OpenMetrics text format.
//!
//! Two kinds of figures:
//! - push-style instruments that code observes as things happen (TLS handshake and request
//!   latency histograms per listener, pairing attempts by outcome). They live in
//!   [`Metrics`]' registry and survive between scrapes;
//! - pull-style figures that already exist as counters elsewhere (the engine's totals, the
//!   sessions, the listener and ENet atomics, the workers). They are read into a [`Snapshot`]
//!   at scrape time and rendered by a one-shot collector, so nothing is counted twice and no
//!   copy can drift from the JSON the API shows.
//!
//! Label values come from clients and operators (app titles, device names), so they are
//! escaped here: the crate writes label values verbatim.

use crate::control::listener::{
    ListenerSample, ListenerStats, request_histogram, tls_handshake_histogram,
};
use crate::engine::{EngineCounters, SessionView};

mod render;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// The content type of a scrape: OpenMetrics, which is what the encoder writes (`# EOF`,
/// `_total` on counter samples). Prometheus negotiates it; its 0.0.4 text parsers read it too.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Pairing outcomes, created at zero so a rate() over them works before the first attempt.
pub const PAIRING_OUTCOMES: [&str; 5] =
    ["started", "paired", "wrong_pin", "bad_signature", "failed"];

/// Frame drop reasons the engine reports (see `engine::views::fold`), shown at zero
/// before the first session so dashboards have a series to plot.
const DROP_REASONS: [&str; 3] = ["lagged", "awaiting_keyframe", "unpacketizable"];

/// A label set of static names and values (listener names, pairing outcomes): these never
/// need escaping, and being `Copy` they make cheap `Family` keys.
type StaticLabels = [(&'static str, &'static str); 1];

type HistogramFamily = Family<StaticLabels, Histogram, fn() -> Histogram>;

/// The process-wide metrics. Cheap to clone: everything is behind one `Arc`.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    tls_handshake: HistogramFamily,
    request: HistogramFamily,
    pairing: Family<StaticLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let tls_handshake: HistogramFamily = Family::new_with_constructor(tls_handshake_histogram);
        let request: HistogramFamily = Family::new_with_constructor(request_histogram);
        let pairing = Family::<StaticLabels, Counter>::default();
        for outcome in PAIRING_OUTCOMES {
            let _ = pairing.get_or_create(&[("outcome", outcome)]);
        }
        let mut registry = Registry::default();
        registry.register_with_unit(
            "howl_tls_handshake",
            "Duration of completed TLS handshakes",
            Unit::Seconds,
            tls_handshake.clone(),
        );
        registry.register_with_unit(
            "howl_http_request",
            "Time from a request's head to its response, per listener",
            Unit::Seconds,
            request.clone(),
        );
        registry.register(
            "howl_pairing_attempts",
            "Pairing attempts by outcome",
            pairing.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                tls_handshake,
                request,
                pairing,
            }),
        }
    }

    /// Counters for a new listener whose histograms are part of this registry, labelled
    /// `listener="<name>"`. A plain-HTTP listener gets a detached handshake histogram, so
    /// the exposition shows no always-empty handshake series for it.
    pub fn listener_stats(&self, name: &'static str, tls: bool) -> Arc<ListenerStats> {
        let labels = [("listener", name)];
        let tls_handshake_seconds = if tls {
            self.inner.tls_handshake.get_or_create_owned(&labels)
        } else {
            tls_handshake_histogram()
        };
        Arc::new(ListenerStats {
            tls_handshake_seconds,
            request_seconds: self.inner.request.get_or_create_owned(&labels),
            ..ListenerStats::default()
        })
    }

    /// Counts one pairing attempt. `outcome` is one of [`PAIRING_OUTCOMES`]; another value
    /// makes a new series (fine, but keep the set small and fixed).
    // Until the pairing code calls it (issue 6 wiring), only the tests do.
    pub fn pairing_attempt(&self, outcome: &'static str) {
        self.inner
            .pairing
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }

    /// The whole exposition: the registry's instruments, then the snapshot, then `# EOF`.
    pub fn render(&self, snapshot: Snapshot) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        encode_registry(&mut out, &self.inner.registry)?;
        // A registry per scrape: the collector owns this scrape's snapshot and nothing else.
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(snapshot));
        encode_registry(&mut out, &scrape)?;
        encode_eof(&mut out)?;
        Ok(out)
    }
}

/// The ENet control host's counters, read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct EnetSample {
    pub connects: u64,
    pub disconnects: u64,
    pub packets_in: u64,
    pub events_dropped: u64,
}

impl EnetSample {
    pub fn read(s: &crate::data::enet::EnetStats) -> Self {
        Self {
            connects: s.connects.load(Relaxed),
            disconnects: s.disconnects.load(Relaxed),
            packets_in: s.packets_in.load(Relaxed),
            events_dropped: s.events_dropped.load(Relaxed),
        }
    }
}

/// One media worker process as sampled for a scrape.
#[derive(Debug, Clone, Default)]
pub struct WorkerSample {
    pub pid: u32,
    pub app: String,
    pub heartbeat_age_secs: f64,
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

/// The server process itself, from /proc at scrape time (0 where /proc does not say).
#[derive(Debug, Clone, Default)]
pub struct ProcessSample {
    pub open_fds: u64,
    pub threads: u64,
}

impl ProcessSample {
    pub fn read() -> Self {
        let me = std::process::id();
        Self {
            open_fds: crate::worker::procinfo::open_fds(me).unwrap_or(0),
            threads: crate::worker::procinfo::threads(me).unwrap_or(0),
        }
    }
}

/// Everything a scrape reports besides the registry's instruments.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub process: ProcessSample,
    pub engine: EngineCounters,
    pub sessions: Vec<SessionView>,
    pub workers: Vec<WorkerSample>,
    pub listeners: Vec<(&'static str, ListenerSample)>,
    pub enet: EnetSample,
    /// The WHEP service's figures (zero with `webrtc = false`).
    pub webrtc: crate::viewer::browser::WhepSample,
    /// Every node placement knows (the built-in `local` one and media nodes).
    pub nodes: Vec<NodeSample>,
    /// Media node connections since start: joins, refusals, losses.
    pub node_joins: u64,
    pub node_refused: u64,
    pub node_lost: u64,
}

/// One node's figures, read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct NodeSample {
    pub name: String,
    pub producers: u32,
    /// 0: unlimited.
    pub max_producers: u32,
    pub workers: usize,
    pub draining: bool,
}

/// Counts pairing outcomes from the event bus, so the pairing code reports once (as events)
/// and metrics cannot disagree with what operators saw live.
pub async fn count_pairing_events(
    metrics: Metrics,
    mut rx: tokio::sync::broadcast::Receiver<Arc<crate::domain::events::Envelope>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use crate::domain::events::Event;
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let env = tokio::select! {
            r = rx.recv() => match r {
                Ok(env) => env,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            () = shutdown.cancelled() => return,
        };
        match &env.event {
            Event::PairingRequested { .. } => metrics.pairing_attempt("started"),
            Event::PairingCompleted { .. } => metrics.pairing_attempt("paired"),
            Event::PairingFailed { failure, .. } => metrics.pairing_attempt(failure.outcome()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use howl_core::SessionId;

    fn session(id: u64, app: &str, sent: u64) -> SessionView {
        SessionView {
            id: SessionId(id),
            client: "0123456789abcdef".repeat(4),
            client_name: "Moonlight client 01234567".into(),
            app: app.into(),
            width: 1280,
            height: 720,
            fps: 60,
            codec: "h264".into(),
            worker_pid: Some(42),
            producer_frame_counter: 0,
            frames_sent: sent,
            frames_dropped: 3,
            video_queue_bytes: 4096,
            encryption: None,
            input_events: 0,
            input_dropped: 5,
            bytes_sent: 0,
            permission: howl_core::domain::Permission::View,
            permission_set: false,
            lobby_id: None,
            bitrate_kbps: 5000,
            rtt_ms: Some(1),
            uptime_secs: 2,
            tenant: None,
        }
    }

    fn snapshot() -> Snapshot {
        let mut engine = EngineCounters {
            sessions: 1,
            lobbies: 0,
            instances: 1,
            viewers: 1,
            workers: 1,
            frames_sent: 120,
            bytes_sent: 9000,
            video_queue_bytes: 4096,
            ..EngineCounters::default()
        };
        engine.frames_dropped_by_reason.insert("lagged", 2);
        engine.sessions_ended.insert("client_quit".into(), 4);
        engine.admission.refused.insert("launch", 3);
        engine.admission.refused.insert("player", 0);
        engine.rtsp.players = 2;
        engine
            .rtsp
            .players_by_path
            .insert("/app/Test Pattern".into(), 2);
        engine.rtsp.packets_sent = 77;
        engine
            .rtsp
            .sessions_ended
            .insert("keepalive_timeout".into(), 3);
        Snapshot {
            process: ProcessSample {
                open_fds: 31,
                threads: 9,
            },
            engine,
            sessions: vec![session(7, "Test Pattern", 120)],
            workers: vec![WorkerSample {
                pid: 4242,
                app: "Test Pattern".into(),
                heartbeat_age_secs: 0.25,
                rss_bytes: 1 << 20,
                cpu_seconds: 1.5,
            }],
            listeners: vec![
                (
                    "nvhttp",
                    ListenerSample {
                        accepted: 5,
                        open: 1,
                        ..ListenerSample::default()
                    },
                ),
                ("nvhttps", ListenerSample::default()),
            ],
            enet: EnetSample {
                connects: 2,
                ..EnetSample::default()
            },
            nodes: vec![NodeSample {
                name: "gpu-1".into(),
                producers: 2,
                max_producers: 8,
                workers: 2,
                draining: true,
            }],
            node_joins: 3,
            node_refused: 1,
            node_lost: 1,
            webrtc: crate::viewer::browser::WhepSample {
                pending_offers: 2,
                max_pending_offers: 32,
                offers_refused_busy: 6,
            },
        }
    }

    fn render(m: &Metrics, s: Snapshot) -> String {
        m.render(s).expect("rendering into a String cannot fail")
    }

    #[test]
    fn renders_every_family_with_labels() {
        let m = Metrics::new();
        // A family without children is not written at all; serve.rs makes one per listener.
        let _nvhttps = m.listener_stats("nvhttps", true);
        let out = render(&m, snapshot());
        for line in [
            "howl_sessions 1",
            "howl_lobbies 0",
            "howl_instances 1",
            "howl_viewers 1",
            "howl_workers 1",
            "howl_frames_sent_total 120",
            "howl_frames_dropped_total{reason=\"lagged\"} 2",
            "howl_frames_dropped_total{reason=\"awaiting_keyframe\"} 0",
            "howl_bytes_sent_total 9000",
            "howl_frames_unwatched_total 0",
            "howl_max_video_queue_depth 0",
            "howl_sessions_ended_total{reason=\"client_quit\"} 4",
            "howl_admission_refused_total{path=\"launch\"} 3",
            "howl_admission_refused_total{path=\"player\"} 0",
            "howl_node_producers{node=\"gpu-1\"} 2",
            "howl_node_max_producers{node=\"gpu-1\"} 8",
            "howl_node_workers{node=\"gpu-1\"} 2",
            "howl_node_draining{node=\"gpu-1\"} 1",
            "howl_node_joins_total 3",
            "howl_node_refused_total 1",
            "howl_node_lost_total 1",
            "howl_rtsp_players 2",
            "howl_rtsp_players_by_path{path=\"/app/Test Pattern\"} 2",
            "howl_rtsp_packets_sent_total 77",
            "howl_rtsp_sessions_ended_total{reason=\"keepalive_timeout\"} 3",
            "howl_input_events_total 0",
            "howl_input_dropped_total 0",
            "howl_session_input_dropped_total{session=\"7\",client=\"0123456789abcdef\",app=\"Test Pattern\"} 5",
            "howl_connections_accepted_total{listener=\"nvhttp\"} 5",
            "howl_connections_open{listener=\"nvhttp\"} 1",
            "howl_tls_handshake_failures_total{listener=\"nvhttps\"} 0",
            "howl_deadline_closes_total{listener=\"nvhttp\"} 0",
            "howl_enet_connects_total 2",
            "howl_webrtc_pending_offers 2",
            "howl_webrtc_max_pending_offers 32",
            "howl_webrtc_offers_refused_total{reason=\"busy\"} 6",
            "howl_session_frames_sent_total{session=\"7\",client=\"0123456789abcdef\",app=\"Test Pattern\"} 120",
            "howl_session_frames_dropped_total{session=\"7\",client=\"0123456789abcdef\",app=\"Test Pattern\"} 3",
            "howl_worker_heartbeat_age_seconds{pid=\"4242\",app=\"Test Pattern\"} 0.25",
            "howl_worker_rss_bytes{pid=\"4242\",app=\"Test Pattern\"} 1048576",
            "howl_worker_cpu_seconds_total{pid=\"4242\",app=\"Test Pattern\"} 1.5",
            "howl_pairing_attempts_total{outcome=\"wrong_pin\"} 0",
            "howl_pairing_attempts_total{outcome=\"bad_signature\"} 0",
            "howl_process_open_fds 31",
            "howl_process_threads 9",
            "howl_video_queue_bytes 4096",
            "howl_session_video_queue_bytes{session=\"7\",client=\"0123456789abcdef\",app=\"Test Pattern\"} 4096",
            "# TYPE howl_tls_handshake_seconds histogram",
            "# TYPE howl_http_request_seconds histogram",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "missing line {line:?} in:\n{out}"
            );
        }
        assert!(out.ends_with("# EOF\n"), "{out}");
        assert_eq!(out.matches("# EOF").count(), 1, "{out}");
    }

    #[test]
    fn odd_app_names_are_escaped() {
        let mut s = snapshot();
        s.sessions = vec![session(1, "a \"quoted\"\\ back\nslash ✓", 1)];
        let out = render(&Metrics::new(), s);
        let want = "howl_session_frames_sent_total{session=\"1\",client=\"0123456789abcdef\",\
                    app=\"a \\\"quoted\\\"\\\\ back\\nslash ✓\"} 1";
        assert!(
            out.lines().any(|l| l == want),
            "missing {want:?} in:\n{out}"
        );
        // The raw line feed must not split a sample across lines.
        assert!(!out.lines().any(|l| l.starts_with("slash")), "{out}");
    }

    #[test]
    fn instruments_observe_into_the_registry() {
        let m = Metrics::new();
        let https = m.listener_stats("nvhttps", true);
        let http = m.listener_stats("nvhttp", false);
        http.tls_handshake_seconds.observe(1.0);
        https.tls_handshake_seconds.observe(0.003);
        https.request_seconds.observe(0.02);
        https.request_seconds.observe(0.04);
        m.pairing_attempt("started");
        m.pairing_attempt("paired");
        m.pairing_attempt("paired");
        let out = render(&m, Snapshot::default());
        for line in [
            "howl_tls_handshake_seconds_count{listener=\"nvhttps\"} 1",
            "howl_http_request_seconds_count{listener=\"nvhttps\"} 2",
            "howl_pairing_attempts_total{outcome=\"started\"} 1",
            "howl_pairing_attempts_total{outcome=\"paired\"} 2",
            "howl_pairing_attempts_total{outcome=\"failed\"} 0",
            "howl_http_request_seconds_count{listener=\"nvhttp\"} 0",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "missing line {line:?} in:\n{out}"
            );
        }
        assert!(
            !out.contains("howl_tls_handshake_seconds_count{listener=\"nvhttp\"}"),
            "plain HTTP has no handshake series:\n{out}"
        );
        // A clone shares the registry (the lead hands clones to the pairing code).
        m.clone().pairing_attempt("failed");
        let out = render(&m, Snapshot::default());
        assert!(
            out.lines()
                .any(|l| l == "howl_pairing_attempts_total{outcome=\"failed\"} 1")
        );
    }

    /// Every metric docs/metrics.md lists is exported, and every exported one is listed.
    #[test]
    fn the_documented_metrics_are_the_exported_ones() {
        // Histograms show once a listener has its series (as the server's do from start).
        let m = Metrics::new();
        let _ = m.listener_stats("nvhttps", true);
        let out = render(&m, snapshot());
        let exported: std::collections::BTreeSet<String> = out
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| {
                let (name, kind) = l.split_once(' ')?;
                // Counters are sampled (and documented) with the `_total` suffix.
                Some(if kind == "counter" {
                    format!("{name}_total")
                } else {
                    name.to_owned()
                })
            })
            .collect();
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/metrics.md"
        ))
        .unwrap();
        let documented: std::collections::BTreeSet<String> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_owned)
            .collect();
        assert!(exported.len() > 30, "{exported:?}");
        assert_eq!(documented, exported, "docs/metrics.md's table vs /metrics");
    }
}
