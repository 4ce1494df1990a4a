//! Inputs from browsers (WebRTC viewers): joining a lobby by its id. Their deadlines are
//! their driver's (connect, ICE consent, silence), published through
//! [`Domain::set_viewer_deadline`] like an RTSP player's.

use super::*;

impl Domain {
    // ----- inputs: browsers -----

    /// Attaches a browser to the lobby `req.lobby`. A tenant sees only its own lobbies
    /// (others are "no lobby", as in the API); a lobby whose codec browsers cannot decode is
    /// refused with [`Refusal::CodecNotCarried`].
    pub fn browser_join(&mut self, now: Instant, req: BrowserRequest) -> Result<ViewerId, Refusal> {
        self.refuse_when_shutting_down()?;
        let p = self
            .producers
            .get(&req.lobby)
            .filter(|p| p.lobby().is_some() && req.principal.may_access(p.owner()))
            .ok_or(Refusal::NoLobby(req.lobby))?;
        let codec = p.codec().ok_or(Refusal::NotStarted)?;
        let kind = ViewerKind::Browser(BrowserViewer {
            codec,
            published: req.deadline,
        });
        check_carries(&kind, codec)?;
        Ok(self.add_viewer(now, req.lobby, kind, req.principal, req.label))
    }
}
