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

use crate::api::{ApiError, ApiState};
use crate::listener::ListenerStats;
use crate::stream::{EngineCounters, SessionView};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeLabelValue, EncodeMetric,
    LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// The content type of a scrape: OpenMetrics, which is what the encoder writes (`# EOF`,
/// `_total` on counter samples). Prometheus negotiates it; its 0.0.4 text parsers read it too.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Pairing outcomes, created at zero so a rate() over them works before the first attempt.
pub const PAIRING_OUTCOMES: [&str; 5] =
    ["started", "paired", "wrong_pin", "bad_signature", "failed"];

/// Frame drop reasons the engine reports (see `stream::add_session_stats`), shown at zero
/// before the first session so dashboards have a series to plot.
const DROP_REASONS: [&str; 3] = ["lagged", "awaiting_keyframe", "unpacketizable"];

/// A label set of static names and values (listener names, pairing outcomes): these never
/// need escaping, and being `Copy` they make cheap `Family` keys.
type StaticLabels = [(&'static str, &'static str); 1];

type HistogramFamily = Family<StaticLabels, Histogram, fn() -> Histogram>;

/// TLS handshakes on loopback take about a millisecond; a slow client or a busy host a few
/// hundred. 0.5 ms .. ~4 s in 14 doublings, past which the handshake deadline fires anyway.
pub fn tls_handshake_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// Most NVHTTP requests answer in milliseconds; a pairing request waits for the operator's
/// PIN (up to the pairing window). 1 ms .. ~65 s in 17 doublings.
pub fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

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

/// One listener's connection counters, read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct ListenerSample {
    pub accepted: u64,
    pub open: u64,
    pub tls_handshake_failures: u64,
    pub deadline_closes: u64,
}

impl ListenerSample {
    pub fn read(s: &ListenerStats) -> Self {
        Self {
            accepted: s.accepted.load(Relaxed),
            open: s.open.load(Relaxed),
            tls_handshake_failures: s.tls_handshake_failures.load(Relaxed),
            deadline_closes: s.deadline_closes.load(Relaxed),
        }
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
    pub fn read(s: &crate::enet::EnetStats) -> Self {
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
            open_fds: crate::procinfo::open_fds(me).unwrap_or(0),
            threads: crate::procinfo::threads(me).unwrap_or(0),
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
}

impl Snapshot {
    /// Reads everything from the API state. `None` when the engine does not answer in time.
    pub async fn gather(st: &ApiState) -> Option<Self> {
        let engine = st.engine.counters().await?;
        let sessions = st.engine.sessions().await;
        Some(Self {
            process: ProcessSample::read(),
            engine,
            sessions,
            // Filled by the worker supervisor's sampling (heartbeat, /proc RSS and CPU).
            workers: st
                .engine
                .workers()
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|w| {
                    let (rss_kb, cpu) = crate::procinfo::sample(w.pid);
                    WorkerSample {
                        pid: w.pid,
                        app: w.app,
                        heartbeat_age_secs: w.last_heartbeat_ms_ago as f64 / 1000.0,
                        rss_bytes: rss_kb.unwrap_or(0) * 1024,
                        cpu_seconds: cpu.unwrap_or(0.0),
                    }
                })
                .collect(),
            listeners: st
                .listeners
                .iter()
                .map(|(name, s)| (*name, ListenerSample::read(s)))
                .collect(),
            enet: EnetSample::read(&st.enet),
        })
    }
}

/// Every live counter in the OpenMetrics text format (admin token only).
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, content_type = "application/openmetrics-text", body = String),
        (status = 403, body = crate::api::ErrorBody)))]
pub async fn handler(
    State(st): State<ApiState>,
    axum::Extension(p): axum::Extension<crate::auth::Principal>,
) -> Response {
    if !p.is_admin() {
        return crate::api::ApiError::Forbidden("metrics need the admin token".into())
            .into_response();
    }
    let Some(snapshot) = Snapshot::gather(&st).await else {
        return ApiError::Unavailable("the streaming engine did not answer in time".into())
            .into_response();
    };
    match st.metrics.render(snapshot) {
        Ok(body) => ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(_) => ApiError::Internal("could not render the metrics".into()).into_response(),
    }
}

/// A label value from outside (an app title, a device name): escaped as the exposition
/// formats require (backslash, double quote, line feed).
#[derive(Debug, Clone, Copy)]
struct Esc<'a>(&'a str);

impl EncodeLabelValue for Esc<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Writes one metric family with a descriptor and the given samples.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, unit, kind)?;
    for (labels, metric) in samples {
        metric.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge<N: EncodeGaugeValue + Copy + std::fmt::Debug>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: N,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// `name` without `_total`: the encoder appends it to counter samples.
fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn session_labels<'a>(id: &'a str, s: &'a SessionView) -> [(&'static str, Esc<'a>); 3] {
    [
        ("session", Esc(id)),
        ("client", Esc(crate::core_task::short(&s.client))),
        ("app", Esc(&s.app)),
    ]
}

fn worker_labels<'a>(pid: &'a str, w: &'a WorkerSample) -> [(&'static str, Esc<'a>); 2] {
    [("pid", Esc(pid)), ("app", Esc(&w.app))]
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &self.engine;
        let enc = &mut enc;
        gauge(
            enc,
            "howl_process_open_fds",
            "File descriptors the server process has open",
            self.process.open_fds,
        )?;
        gauge(
            enc,
            "howl_process_threads",
            "Threads of the server process",
            self.process.threads,
        )?;
        gauge(
            enc,
            "howl_video_queue_bytes",
            "Bytes of video queued for all viewers in the fan-out",
            e.video_queue_bytes,
        )?;
        gauge(
            enc,
            "howl_sessions",
            "Streaming sessions (one per client)",
            e.sessions,
        )?;
        gauge(
            enc,
            "howl_lobbies",
            "Lobbies (named shared streams)",
            e.lobbies,
        )?;
        gauge(enc, "howl_instances", "Running app instances", e.instances)?;
        gauge(
            enc,
            "howl_viewers",
            "Clients watching an instance",
            e.viewers,
        )?;
        gauge(
            enc,
            "howl_workers",
            "Live media worker processes",
            e.workers,
        )?;
        gauge(
            enc,
            "howl_workers_starting",
            "Media workers being launched",
            e.workers_starting,
        )?;
        gauge(
            enc,
            "howl_sources_down",
            "Source apps whose input is lost now (viewers see the slate)",
            e.sources_down,
        )?;
        counter(
            enc,
            "howl_source_losses",
            "Times a source app's input was lost",
            e.source_losses,
        )?;
        counter(
            enc,
            "howl_source_recoveries",
            "Times a source app's input came back",
            e.source_recoveries,
        )?;
        gauge(
            enc,
            "howl_max_video_queue_depth",
            "Frames the furthest-behind viewer lags its producer",
            e.max_video_queue_depth,
        )?;
        counter(enc, "howl_frames_sent", "Video frames sent", e.frames_sent)?;
        let mut dropped: std::collections::BTreeMap<&str, u64> =
            DROP_REASONS.iter().map(|r| (*r, 0)).collect();
        for (reason, n) in &e.frames_dropped_by_reason {
            *dropped.entry(reason).or_insert(0) += n;
        }
        family(
            enc,
            "howl_frames_dropped",
            "Video frames not sent, by reason",
            None,
            MetricType::Counter,
            dropped
                .into_iter()
                .map(|(r, n)| ([("reason", Esc(r))], ConstCounter::new(n))),
        )?;
        counter(
            enc,
            "howl_bytes_sent",
            "Media payload bytes sent",
            e.bytes_sent,
        )?;
        counter(
            enc,
            "howl_frames_unwatched",
            "Frames produced while no viewer was attached",
            e.frames_unwatched,
        )?;
        counter(
            enc,
            "howl_datagrams_sent",
            "Media datagrams sent",
            e.datagrams_sent,
        )?;
        counter(
            enc,
            "howl_datagrams_fault_dropped",
            "Datagrams dropped by fault injection (testing only)",
            e.datagrams_fault_dropped,
        )?;
        counter(
            enc,
            "howl_audio_packets_sent",
            "Audio packets sent",
            e.audio_packets_sent,
        )?;
        counter(
            enc,
            "howl_input_events",
            "Input events received from clients",
            e.input_events,
        )?;
        counter(
            enc,
            "howl_control_errors",
            "Malformed or unexpected control messages",
            e.control_errors,
        )?;
        family(
            enc,
            "howl_sessions_ended",
            "Sessions ended, by reason",
            None,
            MetricType::Counter,
            e.sessions_ended
                .iter()
                .map(|(r, n)| ([("reason", Esc(r))], ConstCounter::new(*n))),
        )?;
        let rtsp = &e.rtsp;
        gauge(
            enc,
            "howl_rtsp_players",
            "RTSP players connected",
            rtsp.players,
        )?;
        family(
            enc,
            "howl_rtsp_players_by_path",
            "RTSP players connected, by URL path",
            None,
            MetricType::Gauge,
            rtsp.players_by_path
                .iter()
                .map(|(p, n)| ([("path", Esc(p))], ConstGauge::new(*n))),
        )?;
        counter(
            enc,
            "howl_rtsp_packets_sent",
            "RTP and RTCP packets sent to RTSP players",
            rtsp.packets_sent,
        )?;
        counter(
            enc,
            "howl_rtsp_bytes_sent",
            "RTP and RTCP bytes sent to RTSP players",
            rtsp.bytes_sent,
        )?;
        counter(
            enc,
            "howl_rtsp_frames_dropped",
            "Video frames RTSP players lost (lagging, waiting for a keyframe)",
            rtsp.frames_dropped,
        )?;
        family(
            enc,
            "howl_rtsp_sessions_ended",
            "RTSP player sessions ended, by reason",
            None,
            MetricType::Counter,
            rtsp.sessions_ended
                .iter()
                .map(|(r, n)| ([("reason", Esc(r))], ConstCounter::new(*n))),
        )?;

        let per_listener = |f: fn(&ListenerSample) -> u64| {
            self.listeners
                .iter()
                .map(move |(name, s)| ([("listener", Esc(name))], f(s)))
        };
        family(
            enc,
            "howl_connections_accepted",
            "TCP connections accepted",
            None,
            MetricType::Counter,
            per_listener(|s| s.accepted).map(|(l, v)| (l, ConstCounter::new(v))),
        )?;
        family(
            enc,
            "howl_connections_open",
            "TCP connections being served",
            None,
            MetricType::Gauge,
            per_listener(|s| s.open).map(|(l, v)| (l, ConstGauge::new(v))),
        )?;
        family(
            enc,
            "howl_tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            None,
            MetricType::Counter,
            per_listener(|s| s.tls_handshake_failures).map(|(l, v)| (l, ConstCounter::new(v))),
        )?;
        family(
            enc,
            "howl_deadline_closes",
            "Connections closed by their overall deadline",
            None,
            MetricType::Counter,
            per_listener(|s| s.deadline_closes).map(|(l, v)| (l, ConstCounter::new(v))),
        )?;

        let n = &self.enet;
        counter(
            enc,
            "howl_enet_connects",
            "ENet control connections",
            n.connects,
        )?;
        counter(
            enc,
            "howl_enet_disconnects",
            "ENet control disconnections",
            n.disconnects,
        )?;
        counter(
            enc,
            "howl_enet_packets_in",
            "ENet control packets received",
            n.packets_in,
        )?;
        counter(
            enc,
            "howl_enet_events_dropped",
            "ENet events dropped because the engine was behind",
            n.events_dropped,
        )?;

        let ids: Vec<String> = self.sessions.iter().map(|s| s.id.0.to_string()).collect();
        family(
            enc,
            "howl_session_frames_sent",
            "Video frames sent to one session",
            None,
            MetricType::Counter,
            ids.iter()
                .zip(&self.sessions)
                .map(|(id, s)| (session_labels(id, s), ConstCounter::new(s.frames_sent))),
        )?;
        family(
            enc,
            "howl_session_video_queue_bytes",
            "Bytes of video queued for one session in the fan-out",
            None,
            MetricType::Gauge,
            ids.iter()
                .zip(&self.sessions)
                .map(|(id, s)| (session_labels(id, s), ConstGauge::new(s.video_queue_bytes))),
        )?;
        family(
            enc,
            "howl_session_frames_dropped",
            "Video frames not sent to one session",
            None,
            MetricType::Counter,
            ids.iter()
                .zip(&self.sessions)
                .map(|(id, s)| (session_labels(id, s), ConstCounter::new(s.frames_dropped))),
        )?;

        let pids: Vec<String> = self.workers.iter().map(|w| w.pid.to_string()).collect();
        family(
            enc,
            "howl_worker_heartbeat_age",
            "Time since a worker's last heartbeat",
            Some(&Unit::Seconds),
            MetricType::Gauge,
            pids.iter()
                .zip(&self.workers)
                .map(|(pid, w)| (worker_labels(pid, w), ConstGauge::new(w.heartbeat_age_secs))),
        )?;
        family(
            enc,
            "howl_worker_rss",
            "Resident memory of a worker",
            Some(&Unit::Bytes),
            MetricType::Gauge,
            pids.iter()
                .zip(&self.workers)
                .map(|(pid, w)| (worker_labels(pid, w), ConstGauge::new(w.rss_bytes))),
        )?;
        family(
            enc,
            "howl_worker_cpu",
            "CPU time a worker used (user + system)",
            Some(&Unit::Seconds),
            MetricType::Counter,
            pids.iter()
                .zip(&self.workers)
                .map(|(pid, w)| (worker_labels(pid, w), ConstCounter::new(w.cpu_seconds))),
        )?;
        Ok(())
    }
}

/// Counts pairing outcomes from the event bus, so the pairing code reports once (as events)
/// and metrics cannot disagree with what operators saw live.
pub async fn count_pairing_events(
    metrics: Metrics,
    mut rx: tokio::sync::broadcast::Receiver<Arc<crate::events::Envelope>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use crate::events::Event;
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
            input_events: 0,
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
            "howl_rtsp_players 2",
            "howl_rtsp_players_by_path{path=\"/app/Test Pattern\"} 2",
            "howl_rtsp_packets_sent_total 77",
            "howl_rtsp_sessions_ended_total{reason=\"keepalive_timeout\"} 3",
            "howl_input_events_total 0",
            "howl_connections_accepted_total{listener=\"nvhttp\"} 5",
            "howl_connections_open{listener=\"nvhttp\"} 1",
            "howl_tls_handshake_failures_total{listener=\"nvhttps\"} 0",
            "howl_deadline_closes_total{listener=\"nvhttp\"} 0",
            "howl_enet_connects_total 2",
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
