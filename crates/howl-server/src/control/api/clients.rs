//! Pairing requests, PIN entry and paired clients.

use super::{ApiError, ApiState, ErrorBody, admin_only, body};
use crate::domain::auth::Principal;
use crate::domain::short;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use utoipa::ToSchema;

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
pub async fn pending(
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
#[derive(Serialize, Deserialize, ToSchema)]
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
pub async fn submit_pin(
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
pub async fn clients(
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
pub async fn rename_client(
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
pub async fn unpair(
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
