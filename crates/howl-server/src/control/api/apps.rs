//! Apps: listed for everyone they belong to, created and changed through the API.

use super::{ApiError, ApiState, ErrorBody, body};
use crate::domain::auth::Principal;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

/// Apps: the built-in test pattern and config-file apps (read-only) and API-created ones.
#[utoipa::path(get, path = "/api/v1/apps", responses((status = 200, body = Vec<Object>)))]
pub async fn list_apps(
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
/// the credentials); any of them with `"node_labels": {"gpu": "nvidia"}` and/or
/// `"requires_gpu": true` runs only on a node that has them.
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
        requires: c.requires,
        kind: c.kind,
        owner,
    })
}

/// Creates an app (persisted; it appears in clients' app lists).
#[utoipa::path(post, path = "/api/v1/apps", request_body = Object,
    responses((status = 201, body = Object), (status = 400, body = ErrorBody)))]
pub async fn create_app(
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
pub async fn get_app(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<i32>,
) -> Result<Json<howl_core::App>, ApiError> {
    Ok(Json(visible_app(&st, &p, id).await?))
}

/// App `id` as `p` may see it: the operator's apps and a tenant's own, not another tenant's
/// (403), or 404.
pub(super) async fn visible_app(
    st: &ApiState,
    p: &Principal,
    id: i32,
) -> Result<howl_core::App, ApiError> {
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
    Ok(app)
}

/// Replaces an API-created app (config-file and built-in apps are read-only: 409).
#[utoipa::path(put, path = "/api/v1/apps/{id}", params(("id" = i32, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_app(
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
pub async fn delete_app(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<i32>,
) -> Result<StatusCode, ApiError> {
    st.core.delete_app(id, p.tenant()).await?;
    Ok(StatusCode::NO_CONTENT)
}
