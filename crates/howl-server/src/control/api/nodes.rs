//! `GET /api/v1/nodes`: the machines that run producers, with their capacity and use. Today
//! there is one, the built-in local node (this machine); media nodes that dial in (issue 19)
//! join this list with the same fields.

use super::{ApiError, ApiState, admin_only, unavailable};
use crate::domain::auth::Principal;
use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The name of the built-in node.
pub const LOCAL_NODE: &str = "local";

/// One node: what it has and what it runs. Limits of 0 are unlimited.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// `local` for the built-in node.
    pub name: String,
    /// `ready`: it takes new producers.
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
}

/// The nodes that run producers (admin only): today the built-in local one.
#[utoipa::path(get, path = "/api/v1/nodes",
    responses((status = 200, body = Vec<NodeView>), (status = 403, body = super::ErrorBody),
        (status = 503, body = super::ErrorBody)))]
pub async fn nodes(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Vec<NodeView>>, ApiError> {
    admin_only(&p)?;
    let engine = st.engine.counters().await.ok_or_else(unavailable)?;
    let a = &engine.admission;
    Ok(Json(vec![NodeView {
        name: LOCAL_NODE.into(),
        state: "ready".into(),
        producers: a.producers,
        max_producers: a.max_producers,
        encoder_sessions: a.encoder_sessions,
        max_encoder_sessions: a.max_encoder_sessions,
        workers: engine.workers + engine.workers_starting,
        encoders: st.server.encoders.clone(),
        cores: std::thread::available_parallelism().map_or(0, usize::from),
    }]))
}
