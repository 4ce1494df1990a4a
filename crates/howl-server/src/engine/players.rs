//! RTSP players joining: a DESCRIBE asks the domain to attach the player to the producer its
//! path names (`/lobby/<name>`, or `/app/<name>`, whose shared producer starts with its first
//! player); the engine then hands the connection what it needs to follow that producer.

use super::{Engine, Viewer};
use crate::domain::auth::Principal;
use crate::viewer::rtsp_player::{self, PlayerJoin, PlayerJoined, PlayerRefusal, PlayerViewer};
use crate::viewer::{ViewerKind, ViewerStats};
use howl_core::EndReason;
use howl_core::domain::{self, AdmissionPath, Fault, PlayerRequest, PlayerTarget, Refusal};
use howl_proto::player::StreamTarget;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

impl From<Refusal> for PlayerRefusal {
    fn from(r: Refusal) -> Self {
        if r.is_capacity() {
            return PlayerRefusal::AtCapacity(r.to_string());
        }
        match r.fault() {
            Fault::NotFound | Fault::Forbidden => PlayerRefusal::NotFound,
            Fault::BadRequest | Fault::Conflict => PlayerRefusal::BadRequest(r.to_string()),
            Fault::Unavailable => PlayerRefusal::Unavailable(r.to_string()),
        }
    }
}

impl Engine {
    /// Attaches an RTSP player to the producer its path names, starting an `/app/` producer
    /// if none runs.
    pub(super) fn player_join(
        &mut self,
        join: PlayerJoin,
        now: Instant,
    ) -> Result<PlayerJoined, PlayerRefusal> {
        let PlayerJoin {
            target,
            principal,
            peer,
            app,
            link,
        } = join;
        let target = match target {
            StreamTarget::Lobby { name } => PlayerTarget::Lobby { name },
            StreamTarget::App { name, video } => PlayerTarget::App { name, app, video },
        };
        let label = format!("rtsp:{}@{peer}", principal.label());
        let id = self.domain.player_join(
            now,
            PlayerRequest {
                target,
                principal: match &principal {
                    Principal::Admin => domain::Principal::Admin,
                    Principal::Tenant { id, .. } => domain::Principal::Tenant(*id),
                },
                label: label.clone(),
                deadline: link.deadline(),
            },
        );
        let id = id.inspect_err(|r| super::log_refusal(AdmissionPath::Player, &label, r))?;
        let joined = self.player_joined(id, link);
        if joined.is_err() {
            // The domain took it but the driver cannot serve it: end it the one way.
            self.domain.end_viewer(
                now,
                id,
                EndReason::Internal {
                    detail: "the producer has no stream for players".into(),
                },
            );
        }
        joined
    }

    fn player_joined(
        &mut self,
        id: howl_core::SessionId,
        link: Arc<rtsp_player::PlayerLink>,
    ) -> Result<PlayerJoined, PlayerRefusal> {
        let (producer, path) = match self.domain.viewer(id).map(|v| (v.producer, &v.kind)) {
            Some((p, domain::ViewerKind::RtspPlayer(r))) => (p, r.path.clone()),
            _ => return Err(PlayerRefusal::NotFound),
        };
        let p = self
            .domain
            .producer(producer)
            .ok_or(PlayerRefusal::NotFound)?;
        let (params, title) = match &p.params {
            Some(params) => (params.clone(), p.app.title.clone()),
            None => {
                return Err(PlayerRefusal::Unavailable(
                    "the producer has not started".into(),
                ));
            }
        };
        // The domain refused what players cannot carry; this maps what they can.
        let codec = rtsp_player::rtp_codec(params.codec)?;
        let cancel = CancellationToken::new();
        let stats = Arc::new(ViewerStats::default());
        let joined = PlayerJoined {
            session: id,
            worker: self.producer_watch(producer),
            cancel: cancel.clone(),
            stats: stats.clone(),
            params: params.clone(),
            codec,
            title,
        };
        self.viewers.insert(
            id,
            Viewer {
                cancel,
                stats,
                kind: ViewerKind::RtspPlayer(PlayerViewer {
                    path,
                    link,
                    codec: params.codec,
                }),
            },
        );
        Ok(joined)
    }
}
