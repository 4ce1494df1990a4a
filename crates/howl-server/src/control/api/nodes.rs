//! The nodes that run producers: `GET /api/v1/nodes` (the built-in local node and the media
//! nodes that joined, with their capacity and use), join tokens for new nodes, drain and
//! remove (docs/nodes.md).

use super::{ApiError, ApiState, ErrorBody, admin_only, body, unavailable};
use crate::domain::auth::Principal;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The name of the built-in node.
pub const LOCAL_NODE: &str = crate::node::LOCAL;

/// One node: what it has and what it runs. Limits of 0 are unlimited.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// `local` for the built-in node.
    pub name: String,
    /// `ready`: it takes new producers; `draining`: it runs its producers to their end and
    /// takes no new one; `disconnected`: a media node that joined once (its certificate is
    /// pinned, so it may rejoin without a token) and is not connected now.
    pub state: String,
    /// Producers it runs now (private launches, lobbies, app shares).
    pub producers: u32,
    /// `max_producers` (0: unlimited).
    pub max_producers: u32,
    /// Video encoder sessions held now (one per producer).
    pub encoder_sessions: u32,
    /// `max_encoder_sessions` (0: unlimited).
    pub max_encoder_sessions: u32,
    /// Media worker processes alive or starting.
    pub workers: usize,
    /// Codecs its workers can encode (`h264`, `hevc`, `av1`).
    pub encoders: Vec<String>,
    /// CPU cores it can use (0: unknown).
    pub cores: usize,
    /// GPUs it found (render nodes or NVIDIA devices; 0: none or unknown).
    #[serde(default)]
    pub gpus: u32,
    /// Operator labels (`howl node --label`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The address a media node connected from (none for the local node).
    #[serde(default)]
    pub address: Option<String>,
}

/// Options of the nodes listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NodesQuery {
    /// Also list the media nodes that joined once and are not connected now (state
    /// `disconnected`). Default false: the nodes placement can use, connected or local.
    pub disconnected: Option<bool>,
}

/// The nodes that run producers (admin only).
#[utoipa::path(get, path = "/api/v1/nodes", params(NodesQuery),
    responses((status = 200, body = Vec<NodeView>), (status = 403, body = super::ErrorBody),
        (status = 503, body = super::ErrorBody)))]
pub async fn nodes(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<NodesQuery>,
) -> Result<Json<Vec<NodeView>>, ApiError> {
    admin_only(&p)?;
    let engine = st.engine.counters().await.ok_or_else(unavailable)?;
    let placed = st.engine.node_use().await.ok_or_else(unavailable)?;
    let remote = st.nodes.list();
    let mut out = Vec::new();
    for (name, producers, slot) in placed {
        let state = if slot.draining { "draining" } else { "ready" };
        let limit = |l: Option<u32>| l.unwrap_or(0);
        let mut v = NodeView {
            name: name.clone(),
            state: state.into(),
            producers,
            max_producers: limit(slot.limits.max_producers),
            encoder_sessions: producers,
            max_encoder_sessions: limit(slot.limits.max_encoder_sessions),
            workers: 0,
            encoders: Vec::new(),
            cores: 0,
            gpus: slot.traits.gpus,
            labels: slot.traits.labels.clone(),
            address: None,
        };
        if name == LOCAL_NODE {
            let remote_workers: usize = remote.iter().map(|r| r.workers).sum();
            v.workers = (engine.workers + engine.workers_starting).saturating_sub(remote_workers);
            v.encoders = st.server.encoders.clone();
            v.cores = std::thread::available_parallelism().map_or(0, usize::from);
        } else if let Some(r) = remote.iter().find(|r| r.name == name) {
            v.workers = r.workers;
            v.encoders = r.capacity.encoders.iter().map(|(c, _)| c.clone()).collect();
            v.cores = r.capacity.cores as usize;
            v.gpus = r.capacity.gpus;
            v.labels = r.labels.iter().cloned().collect();
            v.address = Some(r.addr.to_string());
        }
        out.push(v);
    }
    // Pinned but not connected (stopped, lost, or not yet back): listed on request so an
    // operator sees it and can remove it; it takes nothing.
    let pinned = if q.disconnected.unwrap_or(false) {
        st.nodes.pinned()
    } else {
        Vec::new()
    };
    for name in pinned {
        if out.iter().all(|v| v.name != name) {
            out.push(NodeView {
                name,
                state: "disconnected".into(),
                producers: 0,
                max_producers: 0,
                encoder_sessions: 0,
                max_encoder_sessions: 0,
                workers: 0,
                encoders: Vec::new(),
                cores: 0,
                gpus: 0,
                labels: BTreeMap::new(),
                address: None,
            });
        }
    }
    Ok(Json(out))
}

/// Body of `POST /api/v1/nodes/tokens`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNodeToken {
    /// Seconds it stays valid (1 to a year; default 3600).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// Any number of nodes may join with it until it expires (default: one).
    #[serde(default)]
    pub reusable: bool,
}

/// A new join token: the only time it is shown (only its digest is kept).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeTokenView {
    pub id: u64,
    /// `howl-node1.<secret>.<control plane certificate SHA-256>`: give it to
    /// `howl node --token-file`.
    pub token: String,
    pub expires_unix: u64,
    pub reusable: bool,
}

/// Creates a join token for a media node (admin only).
#[utoipa::path(post, path = "/api/v1/nodes/tokens", request_body = NewNodeToken,
    responses((status = 201, body = NodeTokenView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn create_node_token(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    b: Result<Json<NewNodeToken>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<NodeTokenView>), ApiError> {
    admin_only(&p)?;
    let b = body(b)?;
    let ttl = b
        .ttl_secs
        .unwrap_or(howl_core::nodes::DEFAULT_TOKEN_TTL_SECS);
    if ttl == 0 || ttl > howl_core::nodes::MAX_TOKEN_TTL_SECS {
        return Err(ApiError::BadRequest(
            howl_core::nodes::JoinRefusal::BadTtl.to_string(),
        ));
    }
    let t = st
        .nodes
        .issue_token(ttl, b.reusable)
        .map_err(ApiError::Internal)?;
    tracing::info!(
        token_id = t.id,
        reusable = t.reusable,
        ttl,
        "node join token created"
    );
    Ok((
        StatusCode::CREATED,
        Json(NodeTokenView {
            id: t.id,
            token: t.token,
            expires_unix: t.expires_unix,
            reusable: t.reusable,
        }),
    ))
}

/// A node that was drained.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeDrained {
    pub node: String,
    pub draining: bool,
}

/// Places no new producer on the node; its running producers go on to their end.
#[utoipa::path(post, path = "/api/v1/nodes/{name}/drain", params(("name" = String, Path)),
    responses((status = 200, body = NodeDrained), (status = 404, body = ErrorBody)))]
pub async fn drain_node(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<NodeDrained>, ApiError> {
    admin_only(&p)?;
    match st.nodes.drain(&name).await {
        Ok(true) => Ok(Json(NodeDrained {
            node: name,
            draining: true,
        })),
        Ok(false) => Err(ApiError::NotFound(format!("no node {name:?}"))),
        Err(e) => Err(ApiError::Unavailable(e)),
    }
}

/// Forgets a media node: its pinned certificate (it must join with a token again) and, if
/// connected, the node (its producers end with `node_lost`).
#[utoipa::path(delete, path = "/api/v1/nodes/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_node(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin_only(&p)?;
    if name == LOCAL_NODE {
        return Err(ApiError::Conflict(
            "the built-in local node cannot be removed; drain it, or set local_node = false".into(),
        ));
    }
    match st.nodes.remove(&name).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::NotFound(format!("no node {name:?}"))),
        Err(e) => Err(ApiError::Internal(e)),
    }
}
