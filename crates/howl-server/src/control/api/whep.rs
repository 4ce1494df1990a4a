//! WHEP signalling for browser viewers (`viewer::browser`): `POST` an SDP offer to a lobby's
//! WHEP endpoint and get the answer and a resource URL; `DELETE` that URL to leave. Any WHEP
//! player can watch with an API token as its bearer token; tenant tokens reach their own
//! lobbies only.
//!
//! What WHEP players expect besides (the WHIP rules of RFC 9725, which the WHEP draft takes
//! over): `OPTIONS` answers without a token (it is the browsers' CORS preflight) with
//! `Accept-Post: application/sdp`; the answer carries the configured STUN/TURN servers as
//! `Link: <url>; rel="ice-server"` headers; a busy server says so with 503 and `Retry-After`.
//! `PATCH` (trickle ICE, ICE restart) is answered 405: the server is ICE-lite with its one
//! host candidate already in the answer, and it learns the browser's addresses from the
//! browser's own connectivity checks, so candidates trickled to it would change nothing; no
//! ICE restart means no `ETag` is needed either (in RFC 9725 it names the ICE session for
//! restarts and is optional without them). Cross-origin pages are served only for the
//! origins in `webrtc_cors_origins` ([`cors`]).

use super::streams::owned_lobby;
use super::{ApiError, ApiState, ErrorBody};
use crate::domain::auth::Principal;
use crate::engine::{LobbyError, LobbySpec};
use crate::viewer::browser::{BUSY_RETRY_AFTER, IceServer, ViewerKind, WhepError};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
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
            WhepError::Unavailable(m) | WhepError::Busy(m) => ApiError::Unavailable(m),
        }
    }
}

fn whep(st: &ApiState) -> Result<&crate::viewer::browser::Whep, ApiError> {
    st.whep
        .as_deref()
        .ok_or_else(|| ApiError::Unavailable("browser viewers are off (webrtc = false)".into()))
}

/// Options of a lobby's WHEP offer.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OfferOptions {
    /// A thumbnail of the web UI: video only (an offer with data channels is refused), no
    /// audio, listed as `preview:<caller>`. Default false.
    pub preview: Option<bool>,
}

/// Watch a lobby from a browser (WHEP): the body is an SDP offer (`application/sdp`) that
/// lists the lobby's video codec (H.264 with packetization mode 1 and the profile the lobby
/// encodes, or AV1 for a lobby that encodes AV1) and optionally Opus; the reply is the SDP
/// answer, with the resource to `DELETE` in `Location` and the configured STUN/TURN servers
/// in `Link: <url>; rel="ice-server"` headers. An offer that is malformed or lists no codec
/// the lobby encodes is refused (400) with the reason, and nothing is allocated; so is one
/// past `webrtc_max_pending_offers` offers waiting to connect (503 with `Retry-After`).
#[utoipa::path(post, path = "/api/v1/lobbies/{id}/whep", params(("id" = u64, Path), OfferOptions),
    request_body(content = String, content_type = "application/sdp"),
    responses(
        (status = 201, description = "SDP answer; `Location` names the viewer's resource",
            body = String, content_type = "application/sdp"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, description = "not now (busy: with `Retry-After`)", body = ErrorBody)))]
pub async fn offer(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<u64>,
    Query(options): Query<OfferOptions>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    sdp_content_type(&headers)?;
    let whep = whep(&st)?;
    owned_lobby(&st, &p, id).await?;
    let kind = if options.preview.unwrap_or(false) {
        ViewerKind::Preview
    } else {
        ViewerKind::Watch
    };
    answer(whep, id, p, &body, kind).await
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
        (status = 409, body = ErrorBody),
        (status = 503, description = "not now (busy: with `Retry-After`)", body = ErrorBody)))]
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
    // A malformed offer, or one past the pending cap, starts no app. (One that parses but
    // that the negotiation refuses, such as one without a DTLS fingerprint, is refused after
    // the instance started; with no viewer it stops after its linger.)
    let admitted = match whep.admit_offer(&body) {
        Ok(a) => a,
        Err(WhepError::Busy(why)) => return Ok(busy(why)),
        Err(e) => return Err(e.into()),
    };
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
    respond(
        whep,
        lobby,
        whep.answer(lobby, p, admitted, ViewerKind::Watch).await,
    )
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

/// Answers `offer` for lobby `id`: 201 with the SDP answer, the resource in `Location` and
/// the ICE servers in `Link`; a busy refusal is 503 with `Retry-After`.
async fn answer(
    whep: &crate::viewer::browser::Whep,
    id: u64,
    p: Principal,
    offer: &str,
    kind: ViewerKind,
) -> Result<Response, ApiError> {
    respond(whep, id, whep.offer(id, p, offer, kind).await)
}

/// The HTTP reply to an answered (or refused) offer for lobby `id`.
fn respond(
    whep: &crate::viewer::browser::Whep,
    id: u64,
    answer: Result<crate::viewer::browser::Answer, WhepError>,
) -> Result<Response, ApiError> {
    let answer = match answer {
        Ok(a) => a,
        Err(WhepError::Busy(why)) => return Ok(busy(why)),
        Err(e) => return Err(e.into()),
    };
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
    for link in ice_server_links(&whep.settings().ice_servers) {
        h.append(header::LINK, link);
    }
    Ok(resp)
}

/// 503 with the reason and when to try again.
fn busy(why: String) -> Response {
    let mut resp = ApiError::Unavailable(why).into_response();
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(BUSY_RETRY_AFTER.as_secs()),
    );
    resp
}

/// One `Link` header value per ICE server URL (RFC 9725's STUN/TURN server configuration):
/// `<url>; rel="ice-server"`, with `username`, `credential` and `credential-type="password"`
/// for TURN. A value that cannot be a header (non-ASCII, controls) is left out rather than
/// sent mangled.
pub fn ice_server_links(servers: &[IceServer]) -> Vec<HeaderValue> {
    fn quoted(s: &str) -> String {
        s.replace('\\', "\\\\").replace('"', "\\\"")
    }
    let mut out = Vec::new();
    for server in servers {
        for url in &server.urls {
            let mut v = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(user), Some(pass)) = (&server.username, &server.credential) {
                v.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    quoted(user),
                    quoted(pass)
                ));
            }
            // HeaderValue takes bytes above 0x7f (obs-text), which clients read differently.
            if !v.is_ascii() {
                continue;
            }
            if let Ok(h) = HeaderValue::from_str(&v) {
                out.push(h);
            }
        }
    }
    out
}

/// The STUN/TURN servers browsers use to reach this server from behind a NAT.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct IceServersView {
    /// As WebRTC's `RTCConfiguration.iceServers`; empty when none are configured.
    pub ice_servers: Vec<IceServer>,
}

/// The STUN/TURN servers of `webrtc_ice_servers`, for a page to pass to its
/// `RTCPeerConnection` before it makes its offer (any token: the pages of tenants need them
/// too). TURN credentials are in the reply; they are never logged.
#[utoipa::path(get, path = "/api/v1/webrtc/ice-servers",
    responses((status = 200, body = IceServersView), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn ice_servers(State(st): State<ApiState>) -> Result<Json<IceServersView>, ApiError> {
    let whep = whep(&st)?;
    Ok(Json(IceServersView {
        ice_servers: whep.settings().ice_servers.clone(),
    }))
}

/// Methods and headers a cross-origin page may use on the WHEP endpoints.
const CORS_ALLOW_METHODS: &str = "OPTIONS, POST, DELETE, PATCH";
const CORS_ALLOW_HEADERS: &str = "Authorization, Content-Type, If-Match";
const CORS_EXPOSE_HEADERS: &str = "Location, Link, Retry-After, Accept-Post";
/// How long a browser may reuse a preflight's answer, in seconds.
const CORS_MAX_AGE_SECS: u64 = 600;

fn preflight(allow: &'static str, accept_post: bool) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static(allow));
    if accept_post {
        h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(CORS_ALLOW_METHODS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_ALLOW_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(CORS_MAX_AGE_SECS),
    );
    resp
}

/// A lobby's WHEP endpoint: what it accepts (`Accept-Post: application/sdp`). No token: this
/// is the CORS preflight, which browsers send without credentials; [`cors`] adds
/// `Access-Control-Allow-Origin` for allowed origins.
#[utoipa::path(options, path = "/api/v1/lobbies/{id}/whep", params(("id" = u64, Path)),
    security(()), responses((status = 204)))]
pub async fn offer_options() -> Response {
    preflight("OPTIONS, POST", true)
}

/// An app's WHEP endpoint: as a lobby's.
#[utoipa::path(options, path = "/api/v1/apps/{id}/whep", params(("id" = i32, Path)),
    security(()), responses((status = 204)))]
pub async fn play_options() -> Response {
    preflight("OPTIONS, POST", true)
}

/// A viewer's WHEP resource: `DELETE` (leave) and `PATCH` (405) are its methods.
#[utoipa::path(options, path = "/api/v1/lobbies/{id}/whep/{session}",
    params(("id" = u64, Path), ("session" = u64, Path)),
    security(()), responses((status = 204)))]
pub async fn resource_options() -> Response {
    preflight("OPTIONS, DELETE, PATCH", false)
}

/// Trickle ICE and ICE restarts are not supported: 405 with the reason. The server is
/// ICE-lite with its one host candidate in the answer and learns the browser's addresses from
/// its checks, so a browser needs to send no candidates.
#[utoipa::path(patch, path = "/api/v1/lobbies/{id}/whep/{session}",
    params(("id" = u64, Path), ("session" = u64, Path)),
    responses((status = 405, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn trickle() -> Response {
    let mut resp = (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(ErrorBody {
            error: "trickle ICE and ICE restarts are not supported: this server is ICE-lite \
                    with its candidate in the answer and learns the browser's addresses from \
                    its connectivity checks, so no candidates need to be sent"
                .into(),
        }),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("OPTIONS, DELETE"));
    resp
}

/// Whether `path` is one of the WHEP routes (`.../whep` or `.../whep/<session>`).
fn is_whep_path(path: &str) -> bool {
    let mut parts = path.trim_end_matches('/').split('/').skip(3);
    // ["lobbies" | "apps", id, "whep", [session]]
    path.starts_with("/api/v1/")
        && matches!(parts.next(), Some("lobbies" | "apps"))
        && parts.next().is_some()
        && parts.next() == Some("whep")
        && parts.next().is_none_or(|s| !s.is_empty())
        && parts.next().is_none()
}

/// CORS for the WHEP routes: a response to a page of an origin in `webrtc_cors_origins`
/// carries `Access-Control-Allow-Origin` (that origin) and exposes `Location` and `Link`;
/// other origins get nothing, so their browsers keep the answer from the page. Every WHEP
/// response says `Vary: Origin` so caches keep them apart. Other routes are untouched (the web
/// UI is same-origin).
pub async fn cors(
    State(st): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !is_whep_path(req.uri().path()) {
        return next.run(req).await;
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    let allowed = origin.filter(|o| {
        st.whep.as_ref().is_some_and(|w| {
            w.settings()
                .cors_origins
                .iter()
                .any(|a| a.as_bytes() == o.as_bytes())
        })
    });
    if let Some(o) = allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(CORS_EXPOSE_HEADERS),
        );
    }
    resp
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whep_paths_are_recognised() {
        for p in [
            "/api/v1/lobbies/3/whep",
            "/api/v1/lobbies/3/whep/9",
            "/api/v1/apps/1/whep",
            "/api/v1/lobbies/3/whep/",
        ] {
            assert!(is_whep_path(p), "{p}");
        }
        for p in [
            "/api/v1/lobbies",
            "/api/v1/lobbies/3",
            "/api/v1/lobbies/3/whepx",
            "/api/v1/lobbies/3/whep/9/x",
            "/api/v1/sessions/3/whep",
            "/watch/3",
        ] {
            assert!(!is_whep_path(p), "{p}");
        }
    }

    #[test]
    fn ice_servers_become_link_headers() {
        let servers = [
            IceServer {
                urls: vec!["stun:stun.example.org:3478".into()],
                username: None,
                credential: None,
            },
            IceServer {
                urls: vec![
                    "turn:turn.example.org?transport=udp".into(),
                    "turns:turn.example.org".into(),
                ],
                username: Some("me".into()),
                credential: Some("pa\"ss".into()),
            },
            // Not a header value: left out, not mangled.
            IceServer {
                urls: vec!["stun:caf\u{e9}.example".into()],
                username: None,
                credential: None,
            },
        ];
        let links: Vec<String> = ice_server_links(&servers)
            .iter()
            .map(|h| h.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            links,
            [
                "<stun:stun.example.org:3478>; rel=\"ice-server\"",
                "<turn:turn.example.org?transport=udp>; rel=\"ice-server\"; username=\"me\"; \
                 credential=\"pa\\\"ss\"; credential-type=\"password\"",
                "<turns:turn.example.org>; rel=\"ice-server\"; username=\"me\"; \
                 credential=\"pa\\\"ss\"; credential-type=\"password\"",
            ]
        );
    }
}
