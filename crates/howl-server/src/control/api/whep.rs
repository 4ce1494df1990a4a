//! WHEP signalling for browser viewers (`viewer::browser`): `POST` an SDP offer to a lobby's
//! WHEP endpoint and get the answer and a resource URL; `DELETE` that URL to leave. Any WHEP
//! player can watch with an API token as its bearer token; tenant tokens reach their own
//! lobbies only.

use super::streams::owned_lobby;
use super::{ApiError, ApiState, ErrorBody};
use crate::domain::auth::Principal;
use crate::viewer::browser::WhepError;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use howl_core::SessionId;

impl From<WhepError> for ApiError {
    fn from(e: WhepError) -> Self {
        match e {
            WhepError::BadOffer(_) | WhepError::NoCommonCodec(_) => {
                ApiError::BadRequest(e.to_string())
            }
            WhepError::NotFound(m) => ApiError::NotFound(m),
            WhepError::Forbidden(m) => ApiError::Forbidden(m),
            WhepError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

fn whep(st: &ApiState) -> Result<&crate::viewer::browser::Whep, ApiError> {
    st.whep
        .as_deref()
        .ok_or_else(|| ApiError::Unavailable("browser viewers are off (webrtc = false)".into()))
}

/// Watch a lobby from a browser (WHEP): the body is an SDP offer (`application/sdp`) that
/// lists H.264 (packetization mode 1, the profile the lobby encodes) and optionally Opus;
/// the reply is the SDP answer, with the resource to `DELETE` in `Location`. An offer that is
/// malformed or lists no codec the lobby encodes is refused (400) with the reason, and
/// nothing is allocated.
#[utoipa::path(post, path = "/api/v1/lobbies/{id}/whep", params(("id" = u64, Path)),
    request_body(content = String, content_type = "application/sdp"),
    responses(
        (status = 201, description = "SDP answer; `Location` names the viewer's resource",
            body = String, content_type = "application/sdp"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn offer(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let sdp_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/sdp"));
    if !sdp_type {
        return Err(ApiError::BadRequest(
            "a WHEP offer is sent with Content-Type: application/sdp".into(),
        ));
    }
    let whep = whep(&st)?;
    owned_lobby(&st, &p, id).await?;
    let answer = whep.offer(id, p, &body).await?;
    let location = format!("/api/v1/lobbies/{id}/whep/{}", answer.session.0);
    let mut resp = (StatusCode::CREATED, answer.sdp).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// Leave: ends the browser viewer the resource names (reason `browser_left`).
#[utoipa::path(delete, path = "/api/v1/lobbies/{id}/whep/{session}",
    params(("id" = u64, Path), ("session" = u64, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn leave(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path((id, session)): Path<(u64, u64)>,
) -> Result<StatusCode, ApiError> {
    let whep = whep(&st)?;
    owned_lobby(&st, &p, id).await?;
    if whep.delete(id, SessionId(session)).await {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no browser viewer {session} in lobby {id}"
        )))
    }
}
