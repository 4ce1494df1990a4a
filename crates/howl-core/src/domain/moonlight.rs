//! Inputs from Moonlight clients: `/launch`, `/resume`, `/cancel`, and the steps of a session
//! (ANNOUNCE, PLAY, the control stream).

use super::*;

impl Domain {
    // ----- inputs: Moonlight clients -----

    /// `/launch`: joins the lobby listed under `app_id`, or starts the app privately for the
    /// client (stopping the client's previous private app: one app per client).
    pub fn launch(&mut self, now: Instant, req: LaunchRequest) -> Result<ViewerId, Refusal> {
        self.refuse_when_shutting_down()?;
        let lobby = self
            .producers
            .values()
            .find(|p| p.lobby().is_some_and(|l| l.app_id == req.app_id))
            .map(|p| p.id);
        if let Some(lobby) = lobby {
            return self.join_lobby(now, lobby, req.client, req.mode);
        }
        let app = req.app.ok_or(Refusal::UnknownApp(req.app_id))?;
        streamable(&app)?;
        let old = self.private_of(&req.client);
        // Decided before the old app stops: a refused launch leaves everything as it was.
        let node = self.admit(AdmissionPath::Launch, old, &app.requires)?;
        if let Some(old) = old {
            self.stop_producer(old, EndReason::ClientQuit);
        }
        let id = self.producer_id();
        self.producers.insert(
            id,
            Producer {
                id,
                kind: ProducerKind::Private {
                    client: req.client.clone(),
                },
                app,
                policy: StopPolicy::WithClient {
                    linger: self.settings.linger,
                },
                // The worker starts at ANNOUNCE, in the mode the client negotiates.
                worker: WorkerState::None,
                params: None,
                node,
                viewers: Default::default(),
                stop_at: None,
                created_at: now,
            },
        );
        Ok(self.add_moonlight_viewer(now, id, req.client))
    }

    fn join_lobby(
        &mut self,
        now: Instant,
        id: ProducerId,
        client: String,
        mode: Option<(u32, u32, u32)>,
    ) -> Result<ViewerId, Refusal> {
        let p = self.producers.get(&id).ok_or(Refusal::NoLobby(id))?;
        let lobby = p.lobby().ok_or(Refusal::NoLobby(id))?;
        if !lobby.admits(&client) {
            return Err(Refusal::NotAllowed(lobby.name.clone()));
        }
        if let (Some(params), Some((w, h, _))) = (&p.params, mode)
            && (params.width, params.height) != (w, h)
        {
            return Err(Refusal::WrongMode {
                name: lobby.name.clone(),
                width: params.width,
                height: params.height,
                fps: params.fps,
            });
        }
        // One stream per client and lobby: a rejoin replaces the old stream.
        let old: Vec<ViewerId> = p
            .viewers
            .iter()
            .filter(|v| {
                self.viewers.get(v).is_some_and(|v| {
                    matches!(v.kind, ViewerKind::Moonlight(_))
                        && v.principal.client() == Some(&client)
                })
            })
            .copied()
            .collect();
        for v in old {
            self.end_viewer_inner(now, v, EndReason::Replaced);
        }
        Ok(self.add_moonlight_viewer(now, id, client))
    }

    /// `/resume`: a new stream of the client's own (private) app.
    pub fn resume(&mut self, now: Instant, client: &str) -> Result<ViewerId, Refusal> {
        self.refuse_when_shutting_down()?;
        let id = self.private_of(client).ok_or(Refusal::NothingToResume)?;
        Ok(self.add_moonlight_viewer(now, id, client.to_owned()))
    }

    /// `/cancel`: stops the client's own app; in a lobby it only ends the client's stream (the
    /// lobby belongs to its operator). True when something was running.
    pub fn cancel(&mut self, now: Instant, client: &str) -> bool {
        let in_lobbies: Vec<ViewerId> = self
            .viewers
            .values()
            .filter(|v| {
                matches!(v.kind, ViewerKind::Moonlight(_))
                    && v.principal.client() == Some(client)
                    && self
                        .producers
                        .get(&v.producer)
                        .is_some_and(|p| p.lobby().is_some())
            })
            .map(|v| v.id)
            .collect();
        let mut found = !in_lobbies.is_empty();
        for v in in_lobbies {
            self.end_viewer_inner(now, v, EndReason::ClientQuit);
        }
        if let Some(p) = self.private_of(client) {
            self.stop_producer(p, EndReason::ClientQuit);
            found = true;
        }
        found
    }

    /// ANNOUNCE accepted by the RTSP handshake: a private producer (re)starts its worker in the
    /// negotiated mode (a resume in the same mode keeps the running one); a lobby viewer must
    /// ask for what the lobby encodes. A refusal also ends the viewer
    /// ([`EndReason::ClientMisbehaved`] with the refusal's text): the driver answers the
    /// ANNOUNCE with an error and closes the handshake.
    pub fn rtsp_announced(
        &mut self,
        now: Instant,
        viewer: ViewerId,
        stream: AnnouncedStream,
    ) -> Result<(), Refusal> {
        let decision = self.check_announce(viewer, &stream);
        match decision {
            // An unknown session has nothing to end (the driver answers 454).
            Err(refusal @ Refusal::NoViewer(_)) => Err(refusal),
            Err(refusal) => {
                if self.viewers.contains_key(&viewer) {
                    let detail = refusal.to_string();
                    self.end_viewer_inner(now, viewer, EndReason::ClientMisbehaved { detail });
                }
                Err(refusal)
            }
            Ok((producer, start)) => {
                if let Some(params) = start {
                    self.start_worker(producer, params);
                }
                if let Some(v) = self.viewers.get_mut(&viewer)
                    && let ViewerKind::Moonlight(m) = &mut v.kind
                {
                    m.announced = Some(stream);
                }
                Ok(())
            }
        }
    }

    /// What an ANNOUNCE leads to: the producer, and the params to start its worker with when
    /// it must (re)start.
    fn check_announce(
        &self,
        viewer: ViewerId,
        s: &AnnouncedStream,
    ) -> Result<(ProducerId, Option<StreamParams>), Refusal> {
        // Only a Moonlight session announces; any other id is as good as unknown.
        let v = self
            .viewers
            .get(&viewer)
            .filter(|v| v.moonlight().is_some())
            .ok_or(Refusal::NoViewer(viewer))?;
        let p = self
            .producers
            .get(&v.producer)
            .ok_or(Refusal::NoViewer(viewer))?;
        if !v.kind.carries(s.codec) {
            return Err(Refusal::CodecNotCarried {
                codec: s.codec,
                kind: v.kind.name(),
            });
        }
        self.host_encodes(s.codec)?;
        match (&p.kind, &p.params) {
            // Encode once: every viewer gets the producer's stream, so it must fit them all.
            (ProducerKind::Lobby(_) | ProducerKind::AppShare, Some(params)) => {
                if (params.width, params.height, params.codec) != (s.width, s.height, s.codec) {
                    return Err(Refusal::ModeMismatch {
                        name: p
                            .lobby()
                            .map_or_else(|| p.app.title.clone(), |l| l.name.clone()),
                        producer: (params.codec, params.width, params.height),
                        asked: (s.codec, s.width, s.height),
                    });
                }
                Ok((p.id, None))
            }
            (ProducerKind::Lobby(_) | ProducerKind::AppShare, None) => Err(Refusal::NotStarted),
            (ProducerKind::Private { .. }, current) => {
                let params = StreamParams {
                    width: s.width,
                    height: s.height,
                    fps: s.fps,
                    bitrate_kbps: s.bitrate_kbps,
                    codec: s.codec,
                    audio_channels: s.audio_channels,
                    audio_packet_ms: s.audio_packet_ms,
                    source: source_of(&p.app),
                    slices_per_frame: s.slices_per_frame,
                };
                params.validate()?;
                let same = current.as_ref() == Some(&params) && p.worker.id().is_some();
                // A resume in the same mode keeps the running (or starting) producer.
                Ok((p.id, (!same).then_some(params)))
            }
        }
    }

    /// PLAY answered: the control stream must connect within the connect deadline.
    pub fn rtsp_played(&mut self, now: Instant, viewer: ViewerId) -> bool {
        self.update_moonlight(viewer, |m| {
            m.played_at.get_or_insert(now);
        })
    }

    /// The ENet control stream connected: from now on silence ends the session.
    pub fn control_connected(&mut self, now: Instant, viewer: ViewerId) -> bool {
        self.update_moonlight(viewer, |m| m.last_control = Some(now))
    }

    /// A control message arrived (a driver may coalesce these: only the latest matters, and
    /// the silence timeout is seconds).
    pub fn control_seen(&mut self, now: Instant, viewer: ViewerId) -> bool {
        self.update_moonlight(viewer, |m| {
            if m.last_control.is_some() {
                m.last_control = Some(now);
            }
        })
    }

    fn update_moonlight(&mut self, viewer: ViewerId, f: impl FnOnce(&mut MoonlightViewer)) -> bool {
        let timeouts = self.settings.moonlight;
        let Some(v) = self.viewers.get_mut(&viewer) else {
            return false;
        };
        let ViewerKind::Moonlight(m) = &mut v.kind else {
            return false;
        };
        f(m);
        v.refresh_deadline(&timeouts);
        true
    }

    /// A viewer asked for a keyframe (Moonlight's IDR request, reference invalidation).
    pub fn keyframe_wanted(&mut self, viewer: ViewerId) {
        let worker = self
            .viewers
            .get(&viewer)
            .and_then(|v| self.producers.get(&v.producer))
            .and_then(|p| match p.worker {
                WorkerState::Ready(w) => Some(w),
                _ => None,
            });
        if let Some(worker) = worker {
            self.outbox.push_back(Action::RequestKeyframe { worker });
        }
    }

    fn add_moonlight_viewer(
        &mut self,
        now: Instant,
        producer: ProducerId,
        client: String,
    ) -> ViewerId {
        // A private producer has one stream: a second launch or resume replaces the first.
        let old: Vec<ViewerId> = self
            .producers
            .get(&producer)
            .filter(|p| p.private_client().is_some())
            .map(|p| p.viewers.iter().copied().collect())
            .unwrap_or_default();
        for v in old {
            self.end_viewer_inner(now, v, EndReason::Replaced);
        }
        let kind = ViewerKind::Moonlight(MoonlightViewer {
            launched_at: now,
            announced: None,
            played_at: None,
            last_control: None,
        });
        self.add_viewer(
            now,
            producer,
            kind,
            Principal::Client(client.clone()),
            client,
        )
    }
}
