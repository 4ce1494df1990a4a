//! Browsers joining lobbies (WHEP): the engine half of `viewer::browser`. The offer is
//! checked against the lobby's stream first ([`Engine::browser_stream`]); only an accepted
//! offer joins the domain ([`Engine::browser_join`]).

use super::{Engine, Viewer};
use crate::domain::auth::Principal;
use crate::viewer::browser::{BrowserJoin, BrowserJoined, BrowserViewer, LobbyStream, WhepError};
use crate::viewer::{ViewerKind, ViewerStats};
use howl_core::domain::{self, BrowserRequest, Fault, ProducerId, Refusal};
use howl_core::{EndReason, SessionId};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

impl From<Refusal> for WhepError {
    fn from(r: Refusal) -> Self {
        match r.fault() {
            Fault::NotFound => WhepError::NotFound(r.to_string()),
            Fault::Forbidden => WhepError::Forbidden(r.to_string()),
            Fault::BadRequest | Fault::Conflict => WhepError::BadOffer(r.to_string()),
            Fault::Unavailable => match r {
                Refusal::CodecNotCarried { .. } => WhepError::NoCommonCodec(r.to_string()),
                _ => WhepError::Unavailable(r.to_string()),
            },
        }
    }
}

fn domain_principal(p: &Principal) -> domain::Principal {
    match p {
        Principal::Admin => domain::Principal::Admin,
        Principal::Tenant { id, .. } => domain::Principal::Tenant(*id),
    }
}

impl Engine {
    /// The lobby's stream for a browser's offer, without joining anything.
    pub(super) fn browser_stream(
        &mut self,
        lobby: u64,
        principal: &Principal,
    ) -> Result<LobbyStream, WhepError> {
        let id = ProducerId(lobby);
        let p = self
            .domain
            .producer(id)
            .filter(|p| p.lobby().is_some() && principal.may_access(p.owner()))
            .ok_or_else(|| WhepError::from(Refusal::NoLobby(id)))?;
        let codec = p.codec().ok_or(Refusal::NotStarted)?;
        Ok(LobbyStream {
            worker: self.producer_watch(id),
            codec,
        })
    }

    /// Adds a browser whose offer was accepted to its lobby.
    pub(super) fn browser_join(
        &mut self,
        join: BrowserJoin,
        now: Instant,
    ) -> Result<BrowserJoined, WhepError> {
        let BrowserJoin {
            lobby,
            principal,
            label,
            link,
        } = join;
        let session = self.domain.browser_join(
            now,
            BrowserRequest {
                lobby: ProducerId(lobby),
                principal: domain_principal(&principal),
                label,
                deadline: link.deadline(),
            },
        )?;
        let cancel = CancellationToken::new();
        let stats = Arc::new(ViewerStats::default());
        self.viewers.insert(
            session,
            Viewer {
                cancel: cancel.clone(),
                stats: stats.clone(),
                kind: ViewerKind::Browser(BrowserViewer { link, lobby }),
            },
        );
        Ok(BrowserJoined {
            session,
            cancel,
            stats,
        })
    }

    /// Ends a browser viewer of `lobby`; false when `session` is no such viewer.
    pub(super) fn browser_end(
        &mut self,
        lobby: u64,
        session: SessionId,
        reason: EndReason,
        now: Instant,
    ) -> bool {
        let is_browser = self
            .viewers
            .get(&session)
            .is_some_and(|v| matches!(&v.kind, ViewerKind::Browser(b) if b.lobby == lobby));
        is_browser && self.domain.end_viewer(now, session, reason)
    }
}
