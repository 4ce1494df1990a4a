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

use crate::auth::Principal;
use crate::core_task::{CoreError, CoreHandle, short};
use crate::stream::{LobbyError, LobbySpec, LobbyView, SessionView, WorkerView};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use howl_core::PinError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long one `/api/v1/events` stream lasts before the server ends it (clients reconnect
/// and refetch). Bounds every API connection's life, SSE included.
pub const EVENT_STREAM_LIFETIME: Duration = Duration::from_secs(600);
/// Comment lines on an idle event stream, so proxies and clients see it is alive.
const EVENT_KEEPALIVE: Duration = Duration::from_secs(15);

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct ApiState {
    pub core: CoreHandle,
    pub engine: crate::stream::EngineHandle,
    /// Counters of the listeners and the ENet host, read for `/api/v1/status`.
    pub listeners: Arc<Vec<(&'static str, Arc<crate::listener::ListenerStats>)>>,
    pub enet: Arc<crate::enet::EnetStats>,
    pub token: Arc<str>,
    pub events: crate::events::EventBus,
    /// Ends event streams on shutdown, so draining connections finishes at once.
    pub shutdown: CancellationToken,
    /// Static facts for `/api/v1/server`.
    pub server: Arc<ServerInfoView>,
    pub metrics: crate::metrics::Metrics,
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
            LobbyError::Exists(_) => ApiError::Conflict(e.to_string()),
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
        .routes(routes!(events))
        .routes(routes!(pending))
        .routes(routes!(submit_pin))
        .routes(routes!(clients))
        .routes(routes!(rename_client, unpair))
        .routes(routes!(sessions))
        .routes(routes!(stop_session))
        .routes(routes!(lobbies, create_lobby))
        .routes(routes!(stop_lobby))
        .routes(routes!(set_lobby_clients))
        .routes(routes!(workers))
        .routes(routes!(list_apps, create_app))
        .routes(routes!(get_app, update_app, delete_app))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(delete_token))
        .routes(routes!(crate::metrics::handler))
}

fn public_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .merge(crate::webui::routes())
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
        crate::auth::authenticate(presented, &st.token, &st.core.tenant_index())
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

/// Readiness: listeners are up (the API is served only after they are).
#[utoipa::path(get, path = "/readyz", security(()), responses((status = 200, body = String)))]
async fn readyz() -> &'static str {
    "ready\n"
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, body = Object)))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

/// Static facts about the server.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServerInfoView {
    pub version: String,
    /// Codecs the media worker can encode here (`h264`, `hevc`, `av1`).
    pub encoders: Vec<String>,
    /// How desktops are kept apart: `cookie` or `uid` (docs/configuration.md).
    pub desktop_isolation: String,
    pub limits: ServerLimits,
    #[serde(skip)]
    pub started: Instant,
}

/// Configured deadlines and caps.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub max_body_bytes: usize,
    pub rtsp_deadline_secs: u64,
    pub connect_deadline_secs: u64,
    pub control_silence_secs: u64,
    pub resume_linger_secs: u64,
    pub shutdown_deadline_secs: u64,
}

#[derive(Serialize, ToSchema)]
struct ServerView {
    #[serde(flatten)]
    info: ServerInfoView,
    uptime_secs: u64,
    /// Who is asking: `admin` or `tenant:<name>`.
    caller: String,
}

#[utoipa::path(get, path = "/api/v1/server", responses((status = 200, body = ServerView)))]
async fn server_info(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Json<ServerView> {
    Json(ServerView {
        info: (*st.server).clone(),
        uptime_secs: st.server.started.elapsed().as_secs(),
        caller: p.label(),
    })
}

/// A pending pairing request as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PendingView {
    pub id: u64,
    pub device_name: String,
    pub requester: String,
    pub fingerprint: String,
    pub waiting_secs: u64,
    pub expires_in_secs: u64,
}

/// Pairing requests waiting for an operator's PIN.
#[utoipa::path(get, path = "/api/v1/pairing/pending",
    responses((status = 200, body = Vec<PendingView>), (status = 403, body = ErrorBody)))]
async fn pending(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Vec<PendingView>>, ApiError> {
    admin_only(&p)?;
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
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// The 4-digit PIN the client shows.
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
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PinAccepted {
    /// The request the PIN went to.
    pub id: u64,
    pub fingerprint: String,
    pub status: String,
}

/// Delivers the PIN a client shows to its waiting pairing request.
#[utoipa::path(post, path = "/api/v1/pairing/pin", request_body = PinRequest,
    responses((status = 200, body = PinAccepted), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn submit_pin(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    b: Result<Json<PinRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<PinAccepted>, ApiError> {
    admin_only(&p)?;
    let b = body(b)?;
    let info = st.core.submit_pin(b.pin, b.client).await?;
    Ok(Json(PinAccepted {
        id: info.id,
        fingerprint: info.fingerprint,
        status: "PIN delivered; the client finishes pairing now".into(),
    }))
}

/// A paired client as the API shows it (no certificate body).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClientView {
    pub fingerprint: String,
    pub name: String,
    pub paired_at_unix: u64,
}

impl From<howl_core::PairedClient> for ClientView {
    fn from(c: howl_core::PairedClient) -> Self {
        Self {
            fingerprint: c.fingerprint,
            name: c.name,
            paired_at_unix: c.paired_at_unix,
        }
    }
}

/// Paired clients.
#[utoipa::path(get, path = "/api/v1/clients", responses((status = 200, body = Vec<ClientView>)))]
async fn clients(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Vec<ClientView>>, ApiError> {
    admin_only(&p)?;
    Ok(Json(
        st.core
            .clients()
            .await?
            .into_iter()
            .map(ClientView::from)
            .collect(),
    ))
}

fn fingerprint_param(fp: &str) -> Result<String, ApiError> {
    howl_core::clients::normalize_fingerprint(fp).ok_or_else(|| {
        ApiError::BadRequest(
            "fingerprint must be 64 hex digits (SHA-256 of the certificate)".into(),
        )
    })
}

/// Body of `PATCH /api/v1/clients/{fingerprint}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    pub name: String,
}

/// Renames a paired client.
#[utoipa::path(patch, path = "/api/v1/clients/{fingerprint}", request_body = RenameRequest,
    params(("fingerprint" = String, Path, description = "64 hex digits")),
    responses((status = 200, body = ClientView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn rename_client(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(fingerprint): Path<String>,
    b: Result<Json<RenameRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ClientView>, ApiError> {
    admin_only(&p)?;
    let fp = fingerprint_param(&fingerprint)?;
    let b = body(b)?;
    Ok(Json(st.core.rename_client(&fp, b.name).await?.into()))
}

/// Unpairs a client: its certificate is forgotten and it must pair again.
#[utoipa::path(delete, path = "/api/v1/clients/{fingerprint}",
    params(("fingerprint" = String, Path, description = "64 hex digits")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unpair(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(fingerprint): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin_only(&p)?;
    let fp = fingerprint_param(&fingerprint)?;
    let c = st.core.remove_client(&fp).await?;
    tracing::info!(fingerprint = %short(&c.fingerprint), "client unpaired through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// Live sessions (a tenant sees those in its lobbies).
#[utoipa::path(get, path = "/api/v1/sessions", responses((status = 200, body = Vec<SessionView>)))]
async fn sessions(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Json<Vec<SessionView>> {
    let mut v = st.engine.sessions().await;
    v.retain(|s| p.may_access(s.tenant));
    Json(v)
}

/// Ends a session; its client is told the stream ended.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", params(("id" = u64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn stop_session(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    if !p.is_admin() {
        let owned = st
            .engine
            .sessions()
            .await
            .into_iter()
            .find(|s| s.id.0 == id)
            .map(|s| s.tenant);
        match owned {
            None => return Err(ApiError::NotFound(format!("no session {id}"))),
            Some(t) if !p.may_access(t) => {
                return Err(ApiError::Forbidden(format!(
                    "session {id} is not in one of your lobbies"
                )));
            }
            Some(_) => {}
        }
    }
    if st.engine.stop_session(id).await {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no session {id}")))
    }
}

/// Shared lobbies (a tenant sees its own).
#[utoipa::path(get, path = "/api/v1/lobbies", responses((status = 200, body = Vec<LobbyView>)))]
async fn lobbies(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Json<Vec<LobbyView>> {
    let mut v = st.engine.lobbies().await;
    v.retain(|l| p.may_access(l.tenant));
    Json(v)
}

/// Creates a shared lobby: one producer that paired clients join from their app list.
#[utoipa::path(post, path = "/api/v1/lobbies", request_body = LobbySpec,
    responses((status = 201, body = LobbyView), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn create_lobby(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    b: Result<Json<LobbySpec>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<LobbyView>), ApiError> {
    let mut spec = body(b)?;
    spec.owner = p.tenant();
    let apps = st.core.apps().await?;
    let app = apps.by_title(spec.app.trim()).cloned();
    // A tenant may run the operator's apps and its own, not another tenant's.
    if let Some(a) = &app
        && a.owner.is_some()
        && !p.may_access(a.owner)
    {
        return Err(ApiError::Forbidden(format!(
            "app {:?} belongs to another tenant",
            a.title
        )));
    }
    let view = st.engine.create_lobby(spec, app).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn owned_lobby(st: &ApiState, p: &Principal, id: u64) -> Result<(), ApiError> {
    if p.is_admin() {
        return Ok(());
    }
    match st.engine.lobbies().await.into_iter().find(|l| l.id == id) {
        None => Err(ApiError::NotFound(format!("no lobby with id {id}"))),
        Some(l) if !p.may_access(l.tenant) => Err(ApiError::Forbidden(format!(
            "lobby {id} belongs to someone else"
        ))),
        Some(_) => Ok(()),
    }
}

/// Stops a lobby: its viewers are told, its worker stops.
#[utoipa::path(delete, path = "/api/v1/lobbies/{id}", params(("id" = u64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn stop_lobby(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    owned_lobby(&st, &p, id).await?;
    st.engine.stop_lobby(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `PUT /api/v1/lobbies/{id}/clients`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LobbyClients {
    /// Fingerprints allowed to join; empty: every paired client.
    pub clients: Vec<String>,
}

/// Sets which paired clients may join a lobby.
#[utoipa::path(put, path = "/api/v1/lobbies/{id}/clients", params(("id" = u64, Path)),
    request_body = LobbyClients,
    responses((status = 200, body = LobbyView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_lobby_clients(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<u64>,
    b: Result<Json<LobbyClients>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<LobbyView>, ApiError> {
    let b = body(b)?;
    owned_lobby(&st, &p, id).await?;
    Ok(Json(st.engine.set_lobby_clients(id, b.clients).await?))
}

/// A media worker with its process figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerProcessView {
    #[serde(flatten)]
    pub worker: WorkerView,
    /// Resident memory from /proc; `None` if the process is gone.
    pub rss_kb: Option<u64>,
    /// User + system CPU time from /proc.
    pub cpu_seconds: Option<f64>,
}

/// Media workers: pid, state, heartbeat age, CPU and RSS.
#[utoipa::path(get, path = "/api/v1/workers", responses((status = 200, body = Vec<WorkerProcessView>)))]
async fn workers(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Vec<WorkerProcessView>>, ApiError> {
    let list = st.engine.workers().await.ok_or_else(unavailable)?;
    Ok(Json(
        list.into_iter()
            .filter(|w| p.may_access(w.tenant))
            .map(|w| {
                let (rss_kb, cpu_seconds) = crate::procinfo::sample(w.pid);
                WorkerProcessView {
                    worker: w,
                    rss_kb,
                    cpu_seconds,
                }
            })
            .collect(),
    ))
}

/// Apps: the built-in test pattern and config-file apps (read-only) and API-created ones.
#[utoipa::path(get, path = "/api/v1/apps", responses((status = 200, body = Vec<Object>)))]
async fn list_apps(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Vec<howl_core::App>>, ApiError> {
    let apps = st.core.apps().await?;
    Ok(Json(
        apps.list()
            .iter()
            .filter(|a| a.owner.is_none() || p.may_access(a.owner))
            .cloned()
            .collect(),
    ))
}

/// An app definition: `{"title": "...", "kind": "test-pattern", "tone_hz": 440}` or
/// `{"title": "...", "kind": "process", "command": "...", "args": [], "env": {}, "working_dir": null}`
/// or `{"title": "...", "kind": "docker", "image": "...", "command": [], "env": {}, "mounts": [], "network": "none"}`
/// or `{"title": "...", "kind": "source", "uri": "rtsp://user:pass@camera/stream"}` (views redact
/// the credentials).
fn app_body(v: serde_json::Value, owner: Option<u64>) -> Result<howl_core::StoredApp, ApiError> {
    let c: howl_core::apps::AppConfig =
        serde_json::from_value(v).map_err(|e| ApiError::BadRequest(format!("invalid app: {e}")))?;
    // A process app runs a command on the host as the server's user: operators only.
    if owner.is_some()
        && matches!(
            c.kind,
            howl_core::AppKind::Process { .. } | howl_core::AppKind::Docker { .. }
        )
    {
        return Err(ApiError::Forbidden(
            "tenants cannot create process or docker apps: they run commands on the host".into(),
        ));
    }
    // file:// reads the host's files as the server's user: operators only.
    if owner.is_some()
        && let howl_core::AppKind::Source { uri } = &c.kind
        && uri
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("file://"))
    {
        return Err(ApiError::Forbidden(
            "tenants cannot create file:// source apps: they read the host's files".into(),
        ));
    }
    Ok(howl_core::StoredApp {
        title: c.title,
        kind: c.kind,
        owner,
    })
}

/// Creates an app (persisted; it appears in clients' app lists).
#[utoipa::path(post, path = "/api/v1/apps", request_body = Object,
    responses((status = 201, body = Object), (status = 400, body = ErrorBody)))]
async fn create_app(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    b: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<howl_core::App>), ApiError> {
    let app = app_body(body(b)?, p.tenant())?;
    Ok((StatusCode::CREATED, Json(st.core.create_app(app).await?)))
}

/// One app.
#[utoipa::path(get, path = "/api/v1/apps/{id}", params(("id" = i32, Path)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_app(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<i32>,
) -> Result<Json<howl_core::App>, ApiError> {
    let apps = st.core.apps().await?;
    let app = apps
        .by_id(id)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no app with id {id}")))?;
    if app.owner.is_some() && !p.may_access(app.owner) {
        return Err(ApiError::Forbidden(format!(
            "app {id} belongs to another tenant"
        )));
    }
    Ok(Json(app))
}

/// Replaces an API-created app (config-file and built-in apps are read-only: 409).
#[utoipa::path(put, path = "/api/v1/apps/{id}", params(("id" = i32, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_app(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<i32>,
    b: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<howl_core::App>, ApiError> {
    let app = app_body(body(b)?, p.tenant())?;
    Ok(Json(st.core.update_app(id, app, p.tenant()).await?))
}

/// Deletes an API-created app.
#[utoipa::path(delete, path = "/api/v1/apps/{id}", params(("id" = i32, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn delete_app(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<i32>,
) -> Result<StatusCode, ApiError> {
    st.core.delete_app(id, p.tenant()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A tenant as listed (never its token).
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: u64,
    pub name: String,
    pub created_unix: u64,
}

/// Tenants.
#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = Vec<TenantView>)))]
async fn list_tokens(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Vec<TenantView>>, ApiError> {
    admin_only(&p)?;
    Ok(Json(
        st.core
            .tenants()
            .await?
            .into_iter()
            .map(|t| TenantView {
                id: t.id,
                name: t.name,
                created_unix: t.created_unix,
            })
            .collect(),
    ))
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub name: String,
}

/// A new tenant and its token: the only time the token is shown.
#[derive(Serialize, ToSchema)]
pub struct NewTenantToken {
    pub id: u64,
    pub name: String,
    pub token: String,
}

/// Creates a tenant token that sees and controls only what it creates.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = NewTenant,
    responses((status = 201, body = NewTenantToken), (status = 400, body = ErrorBody)))]
async fn create_token(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    b: Result<Json<NewTenant>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<NewTenantToken>), ApiError> {
    admin_only(&p)?;
    let b = body(b)?;
    let token = crate::auth::new_token()
        .ok_or_else(|| ApiError::Internal("the system RNG failed".into()))?;
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let rec = st
        .core
        .create_tenant(b.name, howl_core::tenants::token_digest(&token), now)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewTenantToken {
            id: rec.id,
            name: rec.name,
            token,
        }),
    ))
}

/// Deletes a tenant; its token stops working at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", params(("id" = u64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_token(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    admin_only(&p)?;
    st.core.delete_tenant(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Live events as Server-Sent Events (`event: <type>`, `data: <json>`); see the README.
/// A tenant receives only events about what it owns.
#[utoipa::path(get, path = "/api/v1/events",
    responses((status = 200, content_type = "text/event-stream", body = String)))]
async fn events(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> impl IntoResponse {
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let rx = st.events.subscribe();
    let hello = SseEvent::default()
        .event("hello")
        .data(serde_json::json!({"type": "hello", "caller": p.label()}).to_string());
    let deadline = tokio::time::Instant::now() + EVENT_STREAM_LIFETIME;
    let shutdown = st.shutdown.clone();
    let stream = futures_util::stream::unfold(
        (Some(hello), rx, p, shutdown),
        move |(first, mut rx, p, shutdown)| async move {
            if let Some(h) = first {
                return Some((
                    Ok::<_, std::convert::Infallible>(h),
                    (None, rx, p, shutdown),
                ));
            }
            loop {
                let next = tokio::select! {
                    r = rx.recv() => r,
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep_until(deadline) => return None,
                };
                match next {
                    Ok(env) => {
                        let visible = match env.audience {
                            crate::events::Audience::AdminOnly => p.is_admin(),
                            crate::events::Audience::Tenant(t) => p.may_access(Some(t)),
                        };
                        if !visible {
                            continue;
                        }
                        let Ok(json) = serde_json::to_string(&*env) else {
                            continue;
                        };
                        let ev = SseEvent::default()
                            .event(env.event.kind())
                            .id(env.seq.to_string())
                            .data(json);
                        return Some((Ok(ev), (None, rx, p, shutdown)));
                    }
                    Err(RecvError::Lagged(n)) => {
                        let ev = SseEvent::default()
                            .event("lagged")
                            .data(serde_json::json!({"type": "lagged", "missed": n}).to_string());
                        return Some((Ok(ev), (None, rx, p, shutdown)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(EVENT_KEEPALIVE)
            .text("keep-alive"),
    )
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
        "enet": {
            "connects": st.enet.connects.load(Relaxed),
            "disconnects": st.enet.disconnects.load(Relaxed),
            "packets_in": st.enet.packets_in.load(Relaxed),
            "events_dropped": st.enet.events_dropped.load(Relaxed),
        },
    })))
}
