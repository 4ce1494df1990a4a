//! What is streaming: sessions, shared lobbies and media workers (a tenant sees its own).

use super::unavailable;
use super::{ApiError, ApiState, ErrorBody, body};
use crate::domain::auth::Principal;
use crate::engine::{LobbySpec, LobbyView, SessionView, WorkerView};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use howl_core::domain::{Fault, Permission, Refusal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Live sessions (a tenant sees those in its lobbies).
#[utoipa::path(get, path = "/api/v1/sessions", responses((status = 200, body = Vec<SessionView>)))]
pub async fn sessions(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Json<Vec<SessionView>> {
    let mut v = st.engine.sessions().await;
    v.retain(|s| p.may_access(s.tenant));
    name_clients(&st, &mut v).await;
    Json(v)
}

/// Fills each Moonlight session's `client_name` from the certificate registry, at the time of
/// the request, so a rename shows at once (players already carry their label). A registry that
/// does not answer in time leaves the names empty rather than failing the listing.
async fn name_clients(st: &ApiState, sessions: &mut [SessionView]) {
    if sessions.iter().all(|s| !s.client_name.is_empty()) {
        return;
    }
    let clients = match st.core.clients().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "sessions listed without client names");
            return;
        }
    };
    for s in sessions.iter_mut().filter(|s| s.client_name.is_empty()) {
        if let Some(c) = clients.iter().find(|c| c.fingerprint == s.client) {
            s.client_name = c.name.clone();
        }
    }
}

/// Ends a session; its client is told the stream ended.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", params(("id" = u64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn stop_session(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    owned_session(&st, &p, id).await?;
    if st.engine.stop_session(id).await {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no session {id}")))
    }
}

/// Body of the permission routes: `control` (keyboard, mouse and gamepad reach the desktop),
/// `view` (input dropped and counted), or `null`/absent to remove the setting.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionSetting {
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "view")]
    pub permission: Option<Permission>,
}

/// Sets what one session may do, live (from its next input packet on, no reconnect); `null`
/// returns it to its lobby's rules. Answers with the session.
#[utoipa::path(put, path = "/api/v1/sessions/{id}/permission", params(("id" = u64, Path)),
    request_body = PermissionSetting,
    responses((status = 200, body = SessionView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_session_permission(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<u64>,
    b: Result<Json<PermissionSetting>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SessionView>, ApiError> {
    let b = body(b)?;
    owned_session(&st, &p, id).await?;
    match st.engine.set_session_permission(id, b.permission).await {
        None => return Err(unavailable()),
        // The number as the listing shows it, like the other session routes.
        Some(Err(Refusal::NoViewer(_))) => {
            return Err(ApiError::NotFound(format!("no session {id}")));
        }
        Some(Err(r)) => return Err(refused(&r)),
        Some(Ok(_)) => {}
    }
    let mut v = st.engine.sessions().await;
    v.retain(|s| s.id.0 == id);
    name_clients(&st, &mut v).await;
    v.pop()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no session {id}")))
}

/// A tenant reaches only the sessions of its own lobbies.
async fn owned_session(st: &ApiState, p: &Principal, id: u64) -> Result<(), ApiError> {
    if p.is_admin() {
        return Ok(());
    }
    let owned = st
        .engine
        .sessions()
        .await
        .into_iter()
        .find(|s| s.id.0 == id)
        .map(|s| s.tenant);
    match owned {
        None => Err(ApiError::NotFound(format!("no session {id}"))),
        Some(t) if !p.may_access(t) => Err(ApiError::Forbidden(format!(
            "session {id} is not in one of your lobbies"
        ))),
        Some(_) => Ok(()),
    }
}

/// The domain's refusal as an HTTP error, by who is at fault.
fn refused(r: &Refusal) -> ApiError {
    let m = r.to_string();
    match r.fault() {
        Fault::BadRequest => ApiError::BadRequest(m),
        Fault::Forbidden => ApiError::Forbidden(m),
        Fault::NotFound => ApiError::NotFound(m),
        Fault::Conflict => ApiError::Conflict(m),
        Fault::Unavailable => ApiError::Unavailable(m),
    }
}

/// Body of `PUT /api/v1/lobbies/{id}/permission`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LobbyPermission {
    /// What joining clients may do: `control` or `view`.
    #[schema(value_type = String, example = "view")]
    pub viewer_permission: Permission,
}

/// Sets what clients joining a lobby may do; applies at once to its viewers that have no
/// setting of their own (per session or per client).
#[utoipa::path(put, path = "/api/v1/lobbies/{id}/permission", params(("id" = u64, Path)),
    request_body = LobbyPermission,
    responses((status = 200, body = LobbyView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_lobby_permission(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<u64>,
    b: Result<Json<LobbyPermission>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<LobbyView>, ApiError> {
    let b = body(b)?;
    owned_lobby(&st, &p, id).await?;
    Ok(Json(
        st.engine
            .set_lobby_permission(id, b.viewer_permission)
            .await?,
    ))
}

/// Sets (or with `null` removes) what one paired client may do in a lobby: applies at once to
/// its streams there and when it rejoins.
#[utoipa::path(put, path = "/api/v1/lobbies/{id}/clients/{fingerprint}/permission",
    params(("id" = u64, Path), ("fingerprint" = String, Path)),
    request_body = PermissionSetting,
    responses((status = 200, body = LobbyView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_lobby_client_permission(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path((id, fingerprint)): Path<(u64, String)>,
    b: Result<Json<PermissionSetting>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<LobbyView>, ApiError> {
    let b = body(b)?;
    owned_lobby(&st, &p, id).await?;
    Ok(Json(
        st.engine
            .set_lobby_client_permission(id, fingerprint, b.permission)
            .await?,
    ))
}

/// Shared lobbies (a tenant sees its own).
#[utoipa::path(get, path = "/api/v1/lobbies", responses((status = 200, body = Vec<LobbyView>)))]
pub async fn lobbies(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Json<Vec<LobbyView>> {
    let mut v = st.engine.lobbies().await;
    v.retain(|l| p.may_access(l.tenant));
    Json(v)
}

/// Creates a shared lobby: one producer that paired clients join from their app list.
/// 409 when the name is taken, or when admission control refuses one more producer
/// (`max_producers`, `max_encoder_sessions`; the error names the limit).
#[utoipa::path(post, path = "/api/v1/lobbies", request_body = LobbySpec,
    responses((status = 201, body = LobbyView), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn create_lobby(
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

pub async fn owned_lobby(st: &ApiState, p: &Principal, id: u64) -> Result<(), ApiError> {
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
pub async fn stop_lobby(
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
pub async fn set_lobby_clients(
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
pub async fn workers(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Vec<WorkerProcessView>>, ApiError> {
    let list = st.engine.workers().await.ok_or_else(unavailable)?;
    Ok(Json(
        list.into_iter()
            .filter(|w| p.may_access(w.tenant))
            .map(|w| {
                let (rss_kb, cpu_seconds) = crate::worker::procinfo::sample_on(&w.node, w.pid);
                WorkerProcessView {
                    worker: w,
                    rss_kb,
                    cpu_seconds,
                }
            })
            .collect(),
    ))
}
