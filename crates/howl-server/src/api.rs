//! The management API (axum): pairing PIN entry and listings for operators and the CLI.
//!
//! Every route but `/healthz` and `/readyz` requires `Authorization: Bearer <token>` with the
//! token from `<state-dir>/api-token`. Handlers only talk to the core actor (with its reply
//! deadline), never to media, so the API answers even when a worker is wedged (seed 000).
//! Errors are one type, [`ApiError`], mapped to HTTP once. PINs are never echoed or logged.

use crate::core_task::{CoreError, CoreHandle, short};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use howl_core::PinError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct ApiState {
    pub core: CoreHandle,
    pub engine: crate::stream::EngineHandle,
    /// Counters of the listeners and the ENet host, read for `/api/v1/status`.
    pub listeners: Arc<Vec<(&'static str, Arc<crate::listener::ListenerStats>)>>,
    pub enet: Arc<crate::enet::EnetStats>,
    pub token: Arc<str>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

/// The one API error type; [`IntoResponse`] is the one mapping to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut resp = (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"howl\""),
            );
        }
        resp
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Unavailable => ApiError::Unavailable(e.to_string()),
            CoreError::Pin(p) => match p {
                PinError::InvalidPin => ApiError::BadRequest(p.to_string()),
                PinError::NoPending | PinError::NotFound(_) => ApiError::NotFound(p.to_string()),
                PinError::Ambiguous(_) | PinError::Busy => ApiError::Conflict(p.to_string()),
            },
            CoreError::Persist(_) => ApiError::Internal(e.to_string()),
            CoreError::UnknownClient(_) => ApiError::NotFound(e.to_string()),
        }
    }
}

/// Builds the router. `max_body` caps request bodies.
pub fn router(state: ApiState, max_body: usize) -> Router {
    let authed = Router::new()
        .route("/api/v1/pairing/pending", get(pending))
        .route("/api/v1/pairing/pin", post(submit_pin))
        .route("/api/v1/clients", get(clients))
        .route("/api/v1/clients/{fingerprint}", delete(unpair))
        .route("/api/v1/status", get(status))
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/sessions/{id}", delete(stop_session))
        .route("/api/v1/lobbies", get(lobbies).post(create_lobby))
        .route("/api/v1/lobbies/{id}", delete(stop_lobby))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .merge(authed)
        .merge(crate::webui::routes())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn require_token(
    State(st): State<ApiState>,
    headers: HeaderMap,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    // Constant-time comparison: the token is the only secret guarding the API.
    aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), st.token.as_bytes())
        .map_err(|_| ApiError::Unauthorized)?;
    Ok(next.run(req).await)
}

/// A pending pairing request as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct PendingView {
    pub id: u64,
    pub device_name: String,
    pub requester: String,
    pub fingerprint: String,
    pub waiting_secs: u64,
    pub expires_in_secs: u64,
}

async fn pending(State(st): State<ApiState>) -> Result<Json<Vec<PendingView>>, ApiError> {
    let now = Instant::now();
    let list = st.core.pending().await?;
    Ok(Json(
        list.into_iter()
            .map(|p| PendingView {
                id: p.id,
                device_name: p.device_name,
                requester: p.requester,
                fingerprint: p.fingerprint,
                waiting_secs: now.saturating_duration_since(p.created).as_secs(),
                expires_in_secs: p.expires.saturating_duration_since(now).as_secs(),
            })
            .collect(),
    ))
}

/// Body of `POST /api/v1/pairing/pin`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    pub pin: String,
    /// Which pending request: its id, a fingerprint prefix (>= 6 hex digits) or its name.
    #[serde(default)]
    pub client: Option<String>,
}

impl std::fmt::Debug for PinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinRequest")
            .field("pin", &"<redacted>")
            .field("client", &self.client)
            .finish()
    }
}

/// Reply of `POST /api/v1/pairing/pin`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PinAccepted {
    /// The request the PIN went to.
    pub id: u64,
    pub fingerprint: String,
    pub status: String,
}

async fn submit_pin(
    State(st): State<ApiState>,
    body: Result<Json<PinRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<PinAccepted>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let info = st.core.submit_pin(body.pin, body.client).await?;
    Ok(Json(PinAccepted {
        id: info.id,
        fingerprint: info.fingerprint,
        status: "PIN delivered; the client finishes pairing now".into(),
    }))
}

/// A paired client as the API shows it (no certificate body).
#[derive(Debug, Serialize, Deserialize)]
pub struct ClientView {
    pub fingerprint: String,
    pub name: String,
    pub paired_at_unix: u64,
}

async fn clients(State(st): State<ApiState>) -> Result<Json<Vec<ClientView>>, ApiError> {
    Ok(Json(
        st.core
            .clients()
            .await?
            .into_iter()
            .map(|c| ClientView {
                fingerprint: c.fingerprint,
                name: c.name,
                paired_at_unix: c.paired_at_unix,
            })
            .collect(),
    ))
}

async fn unpair(
    State(st): State<ApiState>,
    Path(fingerprint): Path<String>,
) -> Result<StatusCode, ApiError> {
    let fp = fingerprint.to_ascii_lowercase();
    if fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(
            "fingerprint must be 64 hex digits (SHA-256 of the certificate)".into(),
        ));
    }
    let c = st.core.remove_client(&fp).await?;
    tracing::info!(fingerprint = %short(&c.fingerprint), "client unpaired through the API");
    Ok(StatusCode::NO_CONTENT)
}

async fn sessions(State(st): State<ApiState>) -> Json<Vec<crate::stream::SessionView>> {
    Json(st.engine.sessions().await)
}

async fn stop_session(
    State(st): State<ApiState>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    if st.engine.stop_session(id).await {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no session {id}")))
    }
}

async fn lobbies(State(st): State<ApiState>) -> Json<Vec<crate::stream::LobbyView>> {
    Json(st.engine.lobbies().await)
}

async fn create_lobby(
    State(st): State<ApiState>,
    body: Result<Json<crate::stream::LobbySpec>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<crate::stream::LobbyView>), ApiError> {
    let Json(spec) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let apps = st.core.apps().await?;
    let app = apps.by_title(spec.app.trim()).cloned();
    let view = st
        .engine
        .create_lobby(spec, app)
        .await
        .map_err(|e| match e {
            crate::stream::LobbyError::Invalid(m) => ApiError::BadRequest(m),
            crate::stream::LobbyError::Exists(_) => ApiError::Conflict(e.to_string()),
            crate::stream::LobbyError::NotFound(_) => ApiError::NotFound(e.to_string()),
            crate::stream::LobbyError::Unavailable => ApiError::Unavailable(e.to_string()),
        })?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn stop_lobby(
    State(st): State<ApiState>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    st.engine.stop_lobby(id).await.map_err(|e| match e {
        crate::stream::LobbyError::NotFound(_) => ApiError::NotFound(e.to_string()),
        other => ApiError::Unavailable(other.to_string()),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// Live counts of everything the server owns: the figures operators alert on.
async fn status(State(st): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    use std::sync::atomic::Ordering::Relaxed;
    let engine = st.engine.counters().await.ok_or_else(|| {
        ApiError::Unavailable("the streaming engine did not answer in time".into())
    })?;
    let listeners: serde_json::Map<String, serde_json::Value> = st
        .listeners
        .iter()
        .map(|(name, s)| {
            (
                (*name).to_owned(),
                serde_json::json!({
                    "accepted": s.accepted.load(Relaxed),
                    "open": s.open.load(Relaxed),
                    "tls_handshake_failures": s.tls_handshake_failures.load(Relaxed),
                    "deadline_closes": s.deadline_closes.load(Relaxed),
                }),
            )
        })
        .collect();
    Ok(Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "engine": engine,
        "listeners": listeners,
        "enet": {
            "connects": st.enet.connects.load(Relaxed),
            "disconnects": st.enet.disconnects.load(Relaxed),
            "packets_in": st.enet.packets_in.load(Relaxed),
            "events_dropped": st.enet.events_dropped.load(Relaxed),
        },
    })))
}
