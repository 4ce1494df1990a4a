//! Tenant tokens: created by the admin, each sees and controls only what it creates.

use super::{ApiError, ApiState, ErrorBody, admin_only, body};
use crate::domain::auth::Principal;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A tenant as listed (never its token).
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: u64,
    pub name: String,
    pub created_unix: u64,
}

/// Tenants.
#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = Vec<TenantView>)))]
pub async fn list_tokens(
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
pub async fn create_token(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    b: Result<Json<NewTenant>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<NewTenantToken>), ApiError> {
    admin_only(&p)?;
    let b = body(b)?;
    let token = crate::domain::auth::new_token()
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
pub async fn delete_token(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    admin_only(&p)?;
    st.core.delete_tenant(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
