//! RTSP players joining: a DESCRIBE attaches the player to the producer its path names
//! (`/lobby/<name>`, or `/app/<name>`, whose shared producer starts with its first player).

use super::producer::{Role, check_streamable, source_of};
use super::{Engine, Viewer};
use crate::viewer::rtsp_player::{self, PlayerJoin, PlayerJoined, PlayerRefusal, PlayerViewer};
use crate::viewer::{ViewerKind, ViewerStats};
use howl_core::{App, SessionId};
use howl_media::protocol::{Codec, StreamParams};
use howl_proto::player::{StreamTarget, VideoRequest};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

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
        let (inst_id, path) = match &target {
            StreamTarget::Lobby { name } => {
                // A tenant sees only its own lobbies: others are "not found", as in the API.
                let id = self
                    .instances
                    .values()
                    .find(|i| {
                        i.lobby().is_some_and(|l| l.name == *name)
                            && principal.may_access(i.owner())
                    })
                    .map(|i| i.id)
                    .ok_or(PlayerRefusal::NotFound)?;
                (id, format!("/lobby/{name}"))
            }
            StreamTarget::App { name, video } => {
                let app = app
                    .filter(|a| principal.may_access(a.owner))
                    .ok_or(PlayerRefusal::NotFound)?;
                check_streamable(&app).map_err(PlayerRefusal::Unavailable)?;
                // Encode once: every player of the app shares one producer; the first
                // player's URL chose its mode.
                let running = self
                    .instances
                    .values()
                    .find(|i| matches!(i.role, Role::Players) && i.app.id == app.id)
                    .map(|i| i.id);
                let id = match running {
                    Some(id) => id,
                    None => self.start_player_app(app, *video)?,
                };
                (id, format!("/app/{name}"))
            }
        };
        let sid = SessionId(self.next_id());
        let Some(inst) = self.instances.get(&inst_id) else {
            return Err(PlayerRefusal::NotFound);
        };
        let Some(params) = inst.params.clone() else {
            return Err(PlayerRefusal::Unavailable(
                "the producer has not started".into(),
            ));
        };
        // A codec players cannot take is refused here, before the player is counted.
        let codec = rtsp_player::rtp_codec(params.codec)?;
        let cancel = CancellationToken::new();
        let stats = Arc::new(ViewerStats::default());
        let joined = PlayerJoined {
            session: sid,
            worker: inst.worker_watch(),
            cancel: cancel.clone(),
            stats: stats.clone(),
            params: params.clone(),
            codec,
            title: inst.app.title.clone(),
        };
        self.attach_viewer(Viewer {
            id: sid,
            instance: inst_id,
            client: format!("rtsp:{}@{peer}", principal.label()),
            cancel,
            stats,
            started_at: now,
            kind: ViewerKind::RtspPlayer(PlayerViewer {
                path,
                link,
                codec: params.codec,
            }),
        });
        Ok(joined)
    }

    /// Starts the shared producer of `app` for RTSP players.
    fn start_player_app(&mut self, app: App, video: VideoRequest) -> Result<u64, PlayerRefusal> {
        let d = self.settings.player_defaults;
        let params = StreamParams {
            width: video.width.unwrap_or(d.width),
            height: video.height.unwrap_or(d.height),
            fps: video.fps.unwrap_or(d.fps),
            bitrate_kbps: video.bitrate_kbps.unwrap_or(d.bitrate_kbps),
            codec: Codec::H264,
            audio_channels: 2,
            // Players take any Opus frame size; 10 ms halves the packet rate of 5 ms.
            audio_packet_ms: 10,
            source: source_of(&app),
            slices_per_frame: 1,
        };
        params
            .validate()
            .map_err(|e| PlayerRefusal::BadRequest(e.to_string()))?;
        tracing::info!(app = %app.title, width = params.width, height = params.height,
            fps = params.fps, "starting an app for RTSP players");
        let id = self.add_instance(Role::Players, app);
        self.start_worker(id, params);
        Ok(id)
    }
}
