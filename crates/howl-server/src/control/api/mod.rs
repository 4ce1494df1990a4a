//! The management API (axum): pairing PIN entry and listings for operators and the CLI.
//!
//! Every route but `/healthz`, `/readyz` and the static web UI requires
//! `Authorization: Bearer <token>`: the admin token from `<state-dir>/api-token`, or a tenant
//! token from `POST /api/v1/tokens` that sees and controls only its own lobbies, their sessions
//! and workers, and its apps (403 elsewhere). Requests on the unix socket are the admin's.
//! Handlers only talk to the core actor and the engine (each with its reply deadline), never
//! to media, so the API answers even when a worker is wedged (seed 000). Errors are one type,
//! [`ApiError`], mapped to HTTP once. PINs, tokens and keys are never echoed or logged.
//!
//! Routes are registered only through `utoipa_axum::routes!`, so the OpenAPI document at
//! `/api/v1/openapi.json` lists every one of them by construction.

use crate::domain::auth::Principal;
use crate::domain::{CoreError, CoreHandle};
use crate::engine::LobbyError;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use howl_core::PinError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod apps;
mod clients;
#[cfg(test)]
mod docs_check;
mod events;
mod metrics;
mod nodes;
mod streams;
mod tenants;
pub mod unix;
mod whep;

pub use clients::{ClientView, PinAccepted};
pub use events::EVENT_STREAM_LIFETIME;
pub use nodes::{NodeTokenView, NodeView};

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct ApiState {
    pub core: CoreHandle,
    pub engine: crate::engine::EngineHandle,
    /// Counters of the listeners and the ENet host, read for `/api/v1/status`.
    pub listeners: Arc<Vec<(&'static str, Arc<crate::control::listener::ListenerStats>)>>,
    pub enet: Arc<crate::data::enet::EnetStats>,
    pub token: Arc<str>,
    pub events: crate::domain::events::EventBus,
    /// Ends event streams on shutdown, so draining connections finishes at once.
    pub shutdown: CancellationToken,
    /// Static facts for `/api/v1/server`.
    pub server: Arc<ServerInfoView>,
    /// When the server started (uptime in `/api/v1/server`).
    pub started: Instant,
    pub metrics: crate::control::metrics::Metrics,
    /// The engine health probe behind `/readyz` (and the fault-injection switch).
    pub health: crate::control::health::Health,
    /// WHEP signalling for browser viewers; `None` with `webrtc = false`.
    pub whep: Option<Arc<crate::viewer::browser::Whep>>,
    /// Media nodes: join tokens, connections, drain and remove.
    pub nodes: Arc<crate::node::Nodes>,
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
    Forbidden(String),
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

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

impl From<LobbyError> for ApiError {
    fn from(e: LobbyError) -> Self {
        match e {
            LobbyError::Invalid(m) => ApiError::BadRequest(m),
            LobbyError::Exists(_) | LobbyError::AtCapacity(_) => ApiError::Conflict(e.to_string()),
            LobbyError::NotFound(_) => ApiError::NotFound(e.to_string()),
            LobbyError::Unavailable => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// Parses a JSON body, turning serde's complaint into a 400 with its message.
fn body<T>(b: Result<Json<T>, axum::extract::rejection::JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

fn admin_only(p: &Principal) -> Result<(), ApiError> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "this route needs the admin token; a tenant token only reaches its own lobbies, sessions, workers and apps".into(),
        ))
    }
}

fn unavailable() -> ApiError {
    ApiError::Unavailable("the streaming engine did not answer in time".into())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
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
            CoreError::UnknownClient(_)
            | CoreError::UnknownApp(_)
            | CoreError::UnknownTenant(_) => ApiError::NotFound(e.to_string()),
            CoreError::Invalid(m) => ApiError::BadRequest(m),
            CoreError::ReadOnlyApp(_) => ApiError::Conflict(e.to_string()),
            CoreError::Forbidden(m) => ApiError::Forbidden(m),
        }
    }
}

/// Marks requests that arrived on the unix socket (mode 0600: only the owner can connect).
#[derive(Debug, Clone, Copy)]
pub struct UnixPeer;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "howl management API",
        description = "Pair clients, watch and stop sessions, run shared lobbies, manage apps and tenant tokens. Authenticate with `Authorization: Bearer <token>`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;
impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// All authenticated routes, each registered with its OpenAPI description.
fn authed_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(server_info))
        .routes(routes!(status))
        .routes(routes!(events::events))
        .routes(routes!(clients::pending))
        .routes(routes!(clients::submit_pin))
        .routes(routes!(clients::clients))
        .routes(routes!(clients::rename_client, clients::unpair))
        .routes(routes!(streams::sessions))
        .routes(routes!(streams::stop_session))
        .routes(routes!(streams::lobbies, streams::create_lobby))
        .routes(routes!(streams::stop_lobby))
        .routes(routes!(streams::set_lobby_clients))
        .routes(routes!(whep::offer))
        .routes(routes!(whep::leave, whep::trickle))
        .routes(routes!(whep::play))
        .routes(routes!(whep::ice_servers))
        .routes(routes!(streams::set_session_permission))
        .routes(routes!(streams::set_lobby_permission))
        .routes(routes!(streams::set_lobby_client_permission))
        .routes(routes!(streams::workers))
        .routes(routes!(nodes::nodes))
        .routes(routes!(nodes::create_node_token))
        .routes(routes!(nodes::drain_node))
        .routes(routes!(nodes::remove_node))
        .routes(routes!(apps::list_apps, apps::create_app))
        .routes(routes!(apps::get_app, apps::update_app, apps::delete_app))
        .routes(routes!(tenants::list_tokens, tenants::create_token))
        .routes(routes!(tenants::delete_token))
        .routes(routes!(metrics::handler))
        .routes(routes!(crate::control::health::wedge_engine))
}

fn public_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        // The WHEP endpoints' OPTIONS: browsers send the CORS preflight without a token.
        .routes(routes!(whep::offer_options))
        .routes(routes!(whep::play_options))
        .routes(routes!(whep::resource_options))
        .merge(crate::control::webui::routes())
}

/// The OpenAPI document of every route (built from the same route list as the router).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = OpenApiRouter::<ApiState>::with_openapi(ApiDoc::openapi())
        .merge(public_routes())
        .merge(authed_routes())
        .split_for_parts();
    doc
}

/// Builds the router. `max_body` caps request bodies.
pub fn router(state: ApiState, max_body: usize) -> Router {
    let authed = authed_routes().route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        require_token,
    ));
    let (router, _) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(public_routes())
        .merge(authed)
        .split_for_parts();
    router
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            whep::cors,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn require_token(
    State(st): State<ApiState>,
    unix: Option<Extension<UnixPeer>>,
    headers: HeaderMap,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    let principal = if unix.is_some() {
        Principal::Admin
    } else {
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        crate::domain::auth::authenticate(presented, &st.token, &st.core.tenant_index())
            .ok_or(ApiError::Unauthorized)?
    };
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the listeners are up (the API is served only after they are) and the engine
/// actor answers within its deadline; 503 when it does not.
#[utoipa::path(get, path = "/readyz", security(()),
    responses((status = 200, body = String), (status = 503, body = String)))]
async fn readyz(State(st): State<ApiState>) -> (StatusCode, &'static str) {
    crate::control::health::readyz(&st.health).await
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, body = Object)))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

/// Static facts about the server.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerInfoView {
    pub version: String,
    /// Codecs the media worker can encode here (`h264`, `hevc`, `av1`).
    pub encoders: Vec<String>,
    pub limits: ServerLimits,
    /// How desktops are kept apart: `cookie` or `uid` (docs/configuration.md); empty from a
    /// server older than the setting.
    #[serde(default)]
    pub desktop_isolation: String,
}

/// Configured deadlines and caps.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub max_body_bytes: usize,
    pub rtsp_deadline_secs: u64,
    pub connect_deadline_secs: u64,
    pub control_silence_secs: u64,
    pub resume_linger_secs: u64,
    pub shutdown_deadline_secs: u64,
}

/// Reply of `GET /api/v1/server` (the CLI's `howl status` decodes it).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServerView {
    #[serde(flatten)]
    pub info: ServerInfoView,
    pub uptime_secs: u64,
    /// Who is asking: `admin` or `tenant:<name>`.
    pub caller: String,
}

#[utoipa::path(get, path = "/api/v1/server", responses((status = 200, body = ServerView)))]
async fn server_info(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Json<ServerView> {
    Json(ServerView {
        info: (*st.server).clone(),
        uptime_secs: st.started.elapsed().as_secs(),
        caller: p.label(),
    })
}

/// Live counts of everything the server owns: the figures operators alert on.
#[utoipa::path(get, path = "/api/v1/status", responses((status = 200, body = Object)))]
async fn status(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use std::sync::atomic::Ordering::Relaxed;
    admin_only(&p)?;
    let engine = st.engine.counters().await.ok_or_else(unavailable)?;
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
        "webrtc": st.whep.as_ref().map(|w| {
            let s = w.sample();
            serde_json::json!({
                "pending_offers": s.pending_offers,
                "max_pending_offers": s.max_pending_offers,
                "offers_refused_busy": s.offers_refused_busy,
            })
        }),
        "enet": {
            "connects": st.enet.connects.load(Relaxed),
            "disconnects": st.enet.disconnects.load(Relaxed),
            "packets_in": st.enet.packets_in.load(Relaxed),
            "events_dropped": st.enet.events_dropped.load(Relaxed),
        },
    })))
}
