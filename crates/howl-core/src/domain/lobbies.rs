//! Inputs from the API about lobbies: create, stop, membership.

use super::*;

impl Domain {
    // ----- inputs: the API -----

    /// Creates a lobby and starts its producer at once (it outlives its viewers).
    pub fn create_lobby(&mut self, now: Instant, req: LobbyRequest) -> Result<ProducerId, Refusal> {
        self.refuse_when_shutting_down()?;
        let name = req.name.trim().to_owned();
        if name.is_empty() || name.len() > MAX_LOBBY_NAME {
            return Err(Refusal::BadLobbyName);
        }
        let app = req.app.ok_or(Refusal::NoSuchApp(req.app_title))?;
        streamable(&app)?;
        if self.lobby_named(&name).is_some() {
            return Err(Refusal::LobbyExists(name));
        }
        let asked = req.codec.as_deref().unwrap_or("h264");
        let codec = Codec::from_name(asked)
            .filter(|c| self.host_encodes(*c).is_ok())
            .ok_or_else(|| self.codec_unavailable(asked))?;
        let clients = normalize_fingerprints(&req.clients)?;
        let permissions = normalize_permissions(req.permissions)?;
        let params = StreamParams {
            width: req.width,
            height: req.height,
            fps: req.fps,
            bitrate_kbps: req.bitrate_kbps,
            codec,
            audio_channels: 2,
            audio_packet_ms: 5,
            source: source_of(&app),
            slices_per_frame: 1,
        };
        params.validate()?;
        // After every check of the request itself: a malformed one is told what is wrong.
        let node = self.admit(AdmissionPath::Lobby, None, &app.requires)?;
        let idle_timeout = req.idle_timeout.max(MIN_LOBBY_IDLE);
        let policy = if req.stop_when_everyone_leaves {
            StopPolicy::WhenEmpty {
                after: idle_timeout,
            }
        } else {
            StopPolicy::UntilStopped
        };
        let id = self.producer_id();
        let lobby = Lobby {
            app_id: crate::apps::app_id_for_title(&format!("lobby\u{0}{name}")),
            name,
            clients,
            owner: req.owner,
            idle_timeout,
            permissions,
        };
        self.publish(
            lobby.owner,
            DomainEvent::LobbyCreated {
                id,
                name: lobby.name.clone(),
                app: app.title.clone(),
            },
        );
        self.producers.insert(
            id,
            Producer {
                id,
                kind: ProducerKind::Lobby(lobby),
                app,
                policy,
                worker: WorkerState::None,
                params: None,
                node,
                viewers: Default::default(),
                // Nobody has joined yet: a lobby that should stop when empty counts its idle
                // time from its creation.
                stop_at: idle_deadline(policy, now),
                created_at: now,
            },
        );
        self.start_worker(id, params);
        Ok(id)
    }

    /// Stops a lobby (reason [`EndReason::ApiStop`] for its viewers).
    pub fn stop_lobby(&mut self, _now: Instant, id: ProducerId) -> Result<(), Refusal> {
        match self.producers.get(&id) {
            Some(p) if p.lobby().is_some() => {
                self.stop_producer(id, EndReason::ApiStop);
                Ok(())
            }
            _ => Err(Refusal::NoLobby(id)),
        }
    }

    /// Replaces the list of clients allowed to join (empty: every paired client). Viewers
    /// already watching stay.
    pub fn set_lobby_clients(&mut self, id: ProducerId, clients: &[String]) -> Result<(), Refusal> {
        let clients = normalize_fingerprints(clients)?;
        match self.producers.get_mut(&id).map(|p| &mut p.kind) {
            Some(ProducerKind::Lobby(l)) => {
                l.clients = clients;
                Ok(())
            }
            _ => Err(Refusal::NoLobby(id)),
        }
    }
}

/// The same settings with lower-cased fingerprints, or the first that is not one.
fn normalize_permissions(p: LobbyPermissions) -> Result<LobbyPermissions, Refusal> {
    let fp = |s: &str| {
        crate::clients::normalize_fingerprint(s).ok_or_else(|| Refusal::BadFingerprint(s.into()))
    };
    Ok(LobbyPermissions {
        joiners: p.joiners,
        creator: p.creator.as_deref().map(fp).transpose()?,
        clients: p
            .clients
            .iter()
            .map(|(c, perm)| Ok((fp(c)?, *perm)))
            .collect::<Result<_, Refusal>>()?,
    })
}

/// Lower-cased fingerprints, or the first that is not one.
fn normalize_fingerprints(list: &[String]) -> Result<Vec<String>, Refusal> {
    list.iter()
        .map(|fp| {
            crate::clients::normalize_fingerprint(fp)
                .ok_or_else(|| Refusal::BadFingerprint(fp.clone()))
        })
        .collect()
}
