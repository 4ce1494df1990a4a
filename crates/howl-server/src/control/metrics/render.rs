//! Rendering a [`Snapshot`] in the OpenMetrics text format: one family per figure, label
//! values escaped.

use super::{DROP_REASONS, Snapshot, WorkerSample};
use crate::control::listener::ListenerSample;
use crate::engine::SessionView;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeLabelValue, EncodeMetric,
    LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;
use std::fmt::Write as _;

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
        ("client", Esc(crate::domain::short(&s.client))),
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
            "howl_input_dropped",
            "Input events dropped because their viewer may only view (never injected)",
            e.input_dropped,
        )?;
        counter(
            enc,
            "howl_control_errors",
            "Malformed or unexpected control messages",
            e.control_errors,
        )?;
        family(
            enc,
            "howl_admission_refused",
            "Requests refused by admission control (max_producers, max_encoder_sessions), by path",
            None,
            MetricType::Counter,
            e.admission
                .refused
                .iter()
                .map(|(p, n)| ([("path", Esc(p))], ConstCounter::new(*n))),
        )?;
        for (name, help, value) in [
            (
                "howl_node_producers",
                "Producers placed on a node",
                (|n: &super::NodeSample| i64::from(n.producers)) as fn(&super::NodeSample) -> i64,
            ),
            (
                "howl_node_max_producers",
                "A node's producer slots (0: unlimited)",
                |n| i64::from(n.max_producers),
            ),
            (
                "howl_node_workers",
                "Media workers running or starting on a node",
                |n| i64::try_from(n.workers).unwrap_or(i64::MAX),
            ),
            (
                "howl_node_draining",
                "1 while a node takes no new producers",
                |n| i64::from(n.draining),
            ),
        ] {
            family(
                enc,
                name,
                help,
                None,
                MetricType::Gauge,
                self.nodes
                    .iter()
                    .map(|n| ([("node", Esc(&n.name))], ConstGauge::new(value(n)))),
            )?;
        }
        counter(
            enc,
            "howl_node_joins",
            "Media node joins accepted (rejoins included)",
            self.node_joins,
        )?;
        counter(
            enc,
            "howl_node_refused",
            "Node endpoint connections refused (token, certificate, protocol, deadline)",
            self.node_refused,
        )?;
        counter(
            enc,
            "howl_node_lost",
            "Media nodes lost (connection closed, heartbeat deadline, removed)",
            self.node_lost,
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

        let w = &self.webrtc;
        gauge(
            enc,
            "howl_webrtc_pending_offers",
            "Browser offers answered (or being answered) whose browser has not connected yet",
            w.pending_offers,
        )?;
        gauge(
            enc,
            "howl_webrtc_max_pending_offers",
            "The cap on pending browser offers (webrtc_max_pending_offers)",
            w.max_pending_offers,
        )?;
        family(
            enc,
            "howl_webrtc_offers_refused",
            "WHEP offers refused before anything was allocated, by reason",
            None,
            MetricType::Counter,
            [(
                [("reason", "busy")],
                ConstCounter::new(w.offers_refused_busy),
            )],
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
        family(
            enc,
            "howl_session_input_dropped",
            "Input events of one view-only session dropped, never injected",
            None,
            MetricType::Counter,
            ids.iter()
                .zip(&self.sessions)
                .map(|(id, s)| (session_labels(id, s), ConstCounter::new(s.input_dropped))),
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
