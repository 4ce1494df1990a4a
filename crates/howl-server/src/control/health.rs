//! One health probe for every watcher: `/readyz` (load balancers, Docker's `HEALTHCHECK`),
//! the service manager's readiness (`READY=1`) and its watchdog (`WATCHDOG=1`). The server is
//! healthy when the engine actor answers a command within [`ENGINE_PROBE_DEADLINE`]: a wedged
//! actor stops every launch, RTSP handshake and ENet message, so it must show as unready and
//! must stop feeding the watchdog, which then restarts the process (seed 001's failure cannot
//! persist under systemd).
//!
//! Also the opt-in fault injection that wedges the actor on purpose, for the tests of all that
//! (`fault_wedge_api`, off by default; the route answers 404 while it is off).

use crate::control::api::{ApiError, ApiState, ErrorBody};
use crate::domain::auth::Principal;
use crate::engine::EngineHandle;
use crate::sdnotify::Notifier;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

/// How long the engine actor may take to answer the health probe.
pub const ENGINE_PROBE_DEADLINE: Duration = Duration::from_secs(2);
/// A probe's answer is shared this long, so a flood of `/readyz` requests costs the engine at
/// most one command per period (and waiters queue behind one probe, not beside it).
const PROBE_REUSE: Duration = Duration::from_millis(500);
/// How often readiness is retried while the engine has not answered yet at start.
const READY_RETRY: Duration = Duration::from_millis(100);
/// The longest wedge the fault injection accepts.
const MAX_WEDGE_SECS: u64 = 600;

/// The shared probe (cheap to clone).
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    engine: EngineHandle,
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
    fault_wedge: bool,
}

impl Health {
    /// `fault_wedge` enables the wedge route (testing only).
    pub fn new(engine: EngineHandle, fault_wedge: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                last: tokio::sync::Mutex::new(None),
                fault_wedge,
            }),
        }
    }

    /// Whether the engine actor answered within [`ENGINE_PROBE_DEADLINE`] (a fresh answer, or
    /// one at most [`PROBE_REUSE`] old).
    pub async fn engine_answers(&self) -> bool {
        let mut last = self.inner.last.lock().await;
        if let Some((at, ok)) = *last
            && at.elapsed() < PROBE_REUSE
        {
            return ok;
        }
        let ok = self.inner.engine.probe(ENGINE_PROBE_DEADLINE).await;
        *last = Some((Instant::now(), ok));
        ok
    }
}

/// `/readyz`: 200 while the engine answers, 503 when it does not.
pub async fn readyz(health: &Health) -> (StatusCode, &'static str) {
    if health.engine_answers().await {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the streaming engine does not answer\n",
        )
    }
}

/// Tells the service manager the server is ready (every listener is bound when this is
/// called; this waits until the engine answers too), then feeds its watchdog every half
/// period for as long as the engine answers. Returns on shutdown. Without `NOTIFY_SOCKET`
/// there is nothing to do.
pub async fn notify_service_manager(
    health: Health,
    notifier: Option<Arc<Notifier>>,
    watchdog: Option<Duration>,
    shutdown: CancellationToken,
) {
    let Some(notifier) = notifier else { return };
    loop {
        tokio::select! {
            ok = health.engine_answers() => if ok { break },
            () = shutdown.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(READY_RETRY) => {}
            () = shutdown.cancelled() => return,
        }
    }
    notifier.notify("READY=1\nSTATUS=serving");
    tracing::info!(watchdog = ?watchdog, "told the service manager we are ready");
    let Some(period) = watchdog else { return };
    // Half the period, as sd_watchdog_enabled(3) advises: one late probe is not yet a restart.
    let mut tick = tokio::time::interval(period / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let ok = tokio::select! {
            ok = health.engine_answers() => ok,
            () = shutdown.cancelled() => return,
        };
        if ok {
            notifier.notify("WATCHDOG=1");
        }
        if ok != healthy {
            if ok {
                tracing::info!("the engine answers again; feeding the watchdog");
                notifier.notify("STATUS=serving");
            } else {
                tracing::error!(deadline = ?ENGINE_PROBE_DEADLINE,
                    "the engine actor does not answer; no longer feeding the watchdog");
                notifier.notify("STATUS=the streaming engine does not answer");
            }
            healthy = ok;
        }
    }
}

/// Body of the wedge route.
#[derive(Debug, Deserialize, ToSchema)]
pub struct WedgeBody {
    /// How long the engine actor blocks, 1 to 600 seconds.
    pub seconds: u64,
}

/// TESTING ONLY: blocks the engine actor for `seconds`, as a wedged engine would (admin
/// token; 404 unless the server runs with `fault_wedge_api = true`).
#[utoipa::path(post, path = "/api/v1/debug/wedge-engine", request_body = WedgeBody,
    responses((status = 202, description = "the engine actor is blocked"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn wedge_engine(
    State(st): State<ApiState>,
    axum::Extension(p): axum::Extension<Principal>,
    Json(body): Json<WedgeBody>,
) -> Result<StatusCode, ApiError> {
    if !st.health.inner.fault_wedge {
        return Err(ApiError::NotFound(
            "fault injection is off (set fault_wedge_api = true to test the watchdog)".into(),
        ));
    }
    if !p.is_admin() {
        return Err(ApiError::Forbidden(
            "fault injection needs the admin token".into(),
        ));
    }
    if !(1..=MAX_WEDGE_SECS).contains(&body.seconds) {
        return Err(ApiError::BadRequest(format!(
            "seconds must be between 1 and {MAX_WEDGE_SECS}"
        )));
    }
    if st
        .health
        .inner
        .engine
        .wedge(Duration::from_secs(body.seconds))
    {
        tracing::warn!(
            seconds = body.seconds,
            "FAULT INJECTION: wedging the engine actor (testing only)"
        );
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::Unavailable("the engine queue is full".into()))
    }
}
