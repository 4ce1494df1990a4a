//! WHEP signalling for browser viewers (`viewer::browser`): `POST` an SDP offer to a lobby's
//! WHEP endpoint and get the answer and a resource URL; `DELETE` that URL to leave. Any WHEP
//! player can watch with an API token as its bearer token; tenant tokens reach their own
//! lobbies only.

use super::streams::owned_lobby;
use super::{ApiError, ApiState, ErrorBody};
use crate::domain::auth::Principal;
use crate::engine::{LobbyError, LobbySpec};
use crate::viewer::browser::WhepError;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use howl_core::SessionId;
use howl_core::domain::Permission;
use serde::Deserialize;
use std::collections::BTreeMap;

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
    sdp_content_type(&headers)?;
    let whep = whep(&st)?;
    owned_lobby(&st, &p, id).await?;
    answer(whep, id, p, &body).await
}

/// How long a browser's own desktop (`/play`) keeps running after its last viewer left, so a
/// reload or a reconnect finds it as it was.
pub const PLAY_LINGER_SECS: u64 = 60;

/// The mode a browser's own desktop starts in (one already running keeps its own).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlayMode {
    /// Default 1280.
    pub width: Option<u32>,
    /// Default 720.
    pub height: Option<u32>,
    /// Default 30.
    pub fps: Option<u32>,
}

/// Play an app from a browser (WHEP): starts (or, within its linger, resumes) the caller's
/// own instance of the app, then answers the offer as a lobby's WHEP endpoint does. The
/// instance is a lobby named `play:<caller>:<app id>` owned by the caller, stopped once no
/// viewer has watched it for 60 s; the caller's input controls it.
#[utoipa::path(post, path = "/api/v1/apps/{id}/whep", params(("id" = i32, Path), PlayMode),
    request_body(content = String, content_type = "application/sdp"),
    responses(
        (status = 201, description = "SDP answer; `Location` names the viewer's resource",
            body = String, content_type = "application/sdp"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn play(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<i32>,
    Query(mode): Query<PlayMode>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    sdp_content_type(&headers)?;
    let whep = whep(&st)?;
    // A tenant may run the operator's apps and its own, not another tenant's.
    let app = super::apps::visible_app(&st, &p, id).await?;
    let name = format!("play:{}:{id}", p.label());
    let find = |st: &ApiState, name: String| {
        let engine = st.engine.clone();
        async move {
            engine
                .lobbies()
                .await
                .into_iter()
                .find(|l| l.name == name)
                .map(|l| l.id)
        }
    };
    let lobby = match find(&st, name.clone()).await {
        Some(l) => l,
        None => {
            let spec = LobbySpec {
                name: name.clone(),
                app: app.title.clone(),
                width: mode.width.unwrap_or(1280),
                height: mode.height.unwrap_or(720),
                fps: mode.fps.unwrap_or(30),
                bitrate_kbps: 4000,
                codec: None,
                clients: Vec::new(),
                stop_when_everyone_leaves: true,
                idle_timeout_secs: PLAY_LINGER_SECS,
                viewer_permission: Permission::Control,
                creator: None,
                client_permissions: BTreeMap::new(),
                owner: p.tenant(),
            };
            match st.engine.create_lobby(spec, Some(app)).await {
                Ok(v) => v.id,
                // Another request of the same caller created it meanwhile: join that one.
                Err(LobbyError::Exists(_)) => find(&st, name)
                    .await
                    .ok_or_else(|| ApiError::Conflict("the app stopped as it started".into()))?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    answer(whep, lobby, p, &body).await
}

fn sdp_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let sdp_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/sdp"));
    if sdp_type {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "a WHEP offer is sent with Content-Type: application/sdp".into(),
        ))
    }
}

/// Answers `offer` for lobby `id`: 201 with the SDP answer and the resource in `Location`.
async fn answer(
    whep: &crate::viewer::browser::Whep,
    id: u64,
    p: Principal,
    offer: &str,
) -> Result<Response, ApiError> {
    let answer = whep.offer(id, p, offer).await?;
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
