//! What is streaming: sessions, shared lobbies and media workers (a tenant sees its own).

use super::unavailable;
use super::{ApiError, ApiState, ErrorBody, body};
use crate::domain::auth::Principal;
use crate::engine::{LobbySpec, LobbyView, SessionView, WorkerView};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
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
pub async fn lobbies(
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
                let (rss_kb, cpu_seconds) = crate::worker::procinfo::sample(w.pid);
                WorkerProcessView {
                    worker: w,
                    rss_kb,
                    cpu_seconds,
                }
            })
            .collect(),
    ))
}
