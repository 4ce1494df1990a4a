//! Inputs from RTSP players: joining a lobby or an app's shared producer, and the deadlines
//! their connections publish.

use super::*;

impl Domain {
    // ----- inputs: RTSP players -----

    /// Attaches an RTSP player to the producer its path names, starting the app share of an
    /// `/app/` path if none runs (one producer per app for every player: encode once).
    pub fn player_join(&mut self, now: Instant, req: PlayerRequest) -> Result<ViewerId, Refusal> {
        self.refuse_when_shutting_down()?;
        let kind = |codec| {
            ViewerKind::RtspPlayer(RtspPlayer {
                path: String::new(),
                codec,
                published: None,
            })
        };
        let (producer, path) = match &req.target {
            PlayerTarget::Lobby { name } => {
                // A tenant sees only its own lobbies: others are "not found", as in the API.
                let p = self
                    .lobby_named(name)
                    .filter(|p| req.principal.may_access(p.owner()))
                    .ok_or(Refusal::NoSuchStream)?;
                let codec = p.codec().ok_or(Refusal::NotStarted)?;
                check_carries(&kind(codec), codec)?;
                (p.id, format!("/lobby/{name}"))
            }
            PlayerTarget::App { name, app, video } => {
                let app = app
                    .as_ref()
                    .filter(|a| req.principal.may_access(a.owner))
                    .ok_or(Refusal::NoSuchStream)?;
                streamable(app)?;
                let running = self
                    .producers
                    .values()
                    .find(|p| p.kind == ProducerKind::AppShare && p.app.id == app.id);
                let id = match running {
                    // The first player's URL chose the mode; later players get it as it is.
                    Some(p) => {
                        let codec = p.codec().ok_or(Refusal::NotStarted)?;
                        check_carries(&kind(codec), codec)?;
                        p.id
                    }
                    None => {
                        let params = self.app_share_params(app, video);
                        params.validate()?;
                        check_carries(&kind(params.codec), params.codec)?;
                        let node = self.admit(AdmissionPath::Player, None, &app.requires)?;
                        self.start_app_share(now, app.clone(), params, node)
                    }
                };
                (id, format!("/app/{name}"))
            }
        };
        let codec = self
            .producers
            .get(&producer)
            .and_then(Producer::codec)
            .ok_or(Refusal::NotStarted)?;
        let kind = ViewerKind::RtspPlayer(RtspPlayer {
            path,
            codec,
            published: req.deadline,
        });
        Ok(self.add_viewer(now, producer, kind, req.principal, req.label))
    }

    /// The deadline a viewer's driver computes (an RTSP player's never-played or keep-alive
    /// timeout), replacing the previous one; `None` clears it. The domain enforces it in
    /// [`Domain::handle_timeout`]. Only for kinds whose deadlines live in their driver: false
    /// (and ignored) for Moonlight sessions, whose deadlines the domain derives itself.
    pub fn set_viewer_deadline(
        &mut self,
        _now: Instant,
        viewer: ViewerId,
        deadline: Option<Deadline>,
    ) -> bool {
        let timeouts = self.settings.moonlight;
        let Some(v) = self.viewers.get_mut(&viewer) else {
            return false;
        };
        match &mut v.kind {
            ViewerKind::RtspPlayer(p) => p.published = deadline,
            ViewerKind::Browser(b) => b.published = deadline,
            ViewerKind::Moonlight(_) => return false,
        }
        v.refresh_deadline(&timeouts);
        true
    }

    fn app_share_params(&self, app: &App, video: &VideoRequest) -> StreamParams {
        let d = self.settings.player_defaults;
        StreamParams {
            width: video.width.unwrap_or(d.width),
            height: video.height.unwrap_or(d.height),
            fps: video.fps.unwrap_or(d.fps),
            bitrate_kbps: video.bitrate_kbps.unwrap_or(d.bitrate_kbps),
            // Every player decodes H.264.
            codec: Codec::H264,
            audio_channels: 2,
            // Players take any Opus frame size; 10 ms halves the packet rate of 5 ms.
            audio_packet_ms: 10,
            source: source_of(app),
            slices_per_frame: 1,
        }
    }

    fn start_app_share(
        &mut self,
        now: Instant,
        app: App,
        params: StreamParams,
        node: String,
    ) -> ProducerId {
        let id = self.producer_id();
        self.producers.insert(
            id,
            Producer {
                id,
                kind: ProducerKind::AppShare,
                app,
                // Players come and go (a probe, a reconnect): keep the producer a while.
                policy: StopPolicy::WhenEmpty {
                    after: self.settings.linger,
                },
                worker: WorkerState::None,
                params: None,
                node,
                viewers: Default::default(),
                // Its first player attaches in the same input.
                stop_at: None,
                created_at: now,
            },
        );
        self.start_worker(id, params);
        id
    }
}
