//! `GET /metrics`: gathers the pull-style figures from the engine, the listeners, ENet and the
//! workers into a [`Snapshot`] and renders it with the registry's instruments.

use super::{ApiError, ApiState};
use crate::control::metrics::{CONTENT_TYPE, EnetSample, NodeSample, Snapshot, WorkerSample};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering::Relaxed;

/// Reads everything from the API state. `None` when the engine does not answer in time.
async fn gather(st: &ApiState) -> Option<Snapshot> {
    let engine = st.engine.counters().await?;
    let sessions = st.engine.sessions().await;
    let placed = st.engine.node_use().await.unwrap_or_default();
    let workers = st.engine.workers().await.unwrap_or_default();
    let nodes = placed
        .into_iter()
        .map(|(name, producers, slot)| NodeSample {
            workers: workers.iter().filter(|w| w.node == name).count(),
            name,
            producers,
            max_producers: slot.limits.max_producers.unwrap_or(0),
            draining: slot.draining,
        })
        .collect();
    let c = &st.nodes.counters;
    Some(Snapshot {
        process: crate::control::metrics::ProcessSample::read(),
        engine,
        sessions,
        // Filled by the worker supervisor's sampling (heartbeat, /proc RSS and CPU).
        workers: workers
            .into_iter()
            .map(|w| {
                let (rss_kb, cpu) = crate::worker::procinfo::sample_on(&w.node, w.pid);
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
            .map(|(name, s)| (*name, s.sample()))
            .collect(),
        enet: EnetSample::read(&st.enet),
        nodes,
        node_joins: c.joins.load(Relaxed),
        node_refused: c.refused.load(Relaxed),
        node_lost: c.lost.load(Relaxed),
        webrtc: st.whep.as_ref().map(|w| w.sample()).unwrap_or_default(),
    })
}

/// Every live counter in the OpenMetrics text format (admin token only).
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, content_type = "application/openmetrics-text", body = String),
        (status = 403, body = super::ErrorBody)))]
pub async fn handler(
    State(st): State<ApiState>,
    axum::Extension(p): axum::Extension<crate::domain::auth::Principal>,
) -> Response {
    if !p.is_admin() {
        return ApiError::Forbidden("metrics need the admin token".into()).into_response();
    }
    let Some(snapshot) = gather(&st).await else {
        return ApiError::Unavailable("the streaming engine did not answer in time".into())
            .into_response();
    };
    match st.metrics.render(snapshot) {
        Ok(body) => ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(_) => ApiError::Internal("could not render the metrics".into()).into_response(),
    }
}
