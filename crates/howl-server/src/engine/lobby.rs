//! Lobbies: shared producers an operator creates through the API; clients join them by
//! launching their app id, players by their `/lobby/<name>` path.

use super::producer::{Lobby, Role, check_streamable, source_of};
use super::{Engine, LobbyView, audience};
use crate::events::Event;
use howl_core::{App, EndReason};
use howl_media::protocol::{Codec, StreamParams};
use std::time::{Duration, Instant};

/// What an operator asks for when creating a shared lobby.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LobbySpec {
    /// Shown to clients as the app title; unique among lobbies.
    pub name: String,
    /// Title of the app the lobby runs.
    pub app: String,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_fps")]
    pub fps: u32,
    #[serde(default = "default_bitrate")]
    pub bitrate_kbps: u32,
    /// `h264` (default), `hevc` or `av1`; viewers must ask for the same codec.
    #[serde(default)]
    pub codec: Option<String>,
    /// Fingerprints of the paired clients that may join; empty or absent = every paired client.
    #[serde(default)]
    pub clients: Vec<String>,
    /// Stop the lobby once its last viewer has left and `idle_timeout_secs` passed.
    #[serde(default)]
    pub stop_when_everyone_leaves: bool,
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// The tenant creating the lobby (set by the API from the caller's token, never the body).
    #[serde(skip)]
    pub owner: Option<u64>,
}

fn default_width() -> u32 {
    1280
}
fn default_height() -> u32 {
    720
}
fn default_fps() -> u32 {
    60
}
fn default_bitrate() -> u32 {
    8000
}
fn default_idle() -> u64 {
    300
}

/// Why a lobby could not be created or stopped (the operator's mistakes, or a busy engine).
#[derive(Debug, thiserror::Error)]
pub enum LobbyError {
    #[error("{0}")]
    Invalid(String),
    #[error("a lobby named {0:?} exists already")]
    Exists(String),
    #[error("no lobby with id {0}")]
    NotFound(u64),
    #[error("the streaming engine did not answer in time")]
    Unavailable,
}

/// Lower-cased fingerprints, or why one is not a fingerprint.
fn check_fingerprints(list: &[String]) -> Result<Vec<String>, LobbyError> {
    list.iter()
        .map(|fp| {
            howl_core::clients::normalize_fingerprint(fp).ok_or_else(|| {
                LobbyError::Invalid(format!(
                    "client {fp:?} is not a 64-hex-digit certificate fingerprint"
                ))
            })
        })
        .collect()
}

impl Engine {
    pub(super) fn create_lobby(
        &mut self,
        spec: LobbySpec,
        app: Option<App>,
    ) -> Result<LobbyView, LobbyError> {
        let name = spec.name.trim().to_owned();
        if name.is_empty() || name.len() > 128 {
            return Err(LobbyError::Invalid(
                "name must be 1 to 128 characters".into(),
            ));
        }
        let Some(app) = app else {
            return Err(LobbyError::Invalid(format!("no app titled {:?}", spec.app)));
        };
        check_streamable(&app).map_err(LobbyError::Invalid)?;
        if self
            .instances
            .values()
            .any(|i| i.lobby().is_some_and(|l| l.name == name))
        {
            return Err(LobbyError::Exists(name));
        }
        let codec = match spec.codec.as_deref().unwrap_or("h264") {
            "h264" => Codec::H264,
            "hevc" if self.settings.codecs.hevc => Codec::Hevc,
            "av1" if self.settings.codecs.av1 => Codec::Av1,
            other => {
                return Err(LobbyError::Invalid(format!(
                    "codec {other:?} is not available (h264{}{})",
                    if self.settings.codecs.hevc {
                        ", hevc"
                    } else {
                        ""
                    },
                    if self.settings.codecs.av1 {
                        ", av1"
                    } else {
                        ""
                    }
                )));
            }
        };
        let clients = check_fingerprints(&spec.clients)?;
        let params = StreamParams {
            width: spec.width,
            height: spec.height,
            fps: spec.fps,
            bitrate_kbps: spec.bitrate_kbps,
            codec,
            audio_channels: 2,
            audio_packet_ms: 5,
            source: source_of(&app),
            slices_per_frame: 1,
        };
        params
            .validate()
            .map_err(|e| LobbyError::Invalid(e.to_string()))?;
        let lobby = Lobby {
            app_id: howl_core::apps::app_id_for_title(&format!("lobby\u{0}{name}")),
            name,
            clients,
            stop_when_everyone_leaves: spec.stop_when_everyone_leaves,
            idle_timeout: Duration::from_secs(spec.idle_timeout_secs.max(1)),
            owner: spec.owner,
        };
        let (owner, lobby_name, title) = (lobby.owner, lobby.name.clone(), app.title.clone());
        let id = self.add_instance(Role::Lobby(lobby), app);
        tracing::info!(lobby = id, name = %lobby_name, app = %title, "lobby created");
        self.settings.events.publish(
            audience(owner),
            Event::LobbyCreated {
                id,
                name: lobby_name,
                app: title,
            },
        );
        // The producer starts now and outlives its viewers.
        self.start_worker(id, params);
        self.lobby_views()
            .into_iter()
            .find(|l| l.id == id)
            .ok_or(LobbyError::NotFound(id))
    }

    pub(super) fn set_lobby_clients(
        &mut self,
        id: u64,
        clients: Vec<String>,
    ) -> Result<LobbyView, LobbyError> {
        let clients = check_fingerprints(&clients)?;
        let Some(Role::Lobby(l)) = self.instances.get_mut(&id).map(|i| &mut i.role) else {
            return Err(LobbyError::NotFound(id));
        };
        l.clients = clients;
        tracing::info!(
            lobby = id,
            allowed = l.clients.len(),
            "lobby membership changed"
        );
        self.lobby_views()
            .into_iter()
            .find(|l| l.id == id)
            .ok_or(LobbyError::NotFound(id))
    }

    pub(super) fn stop_lobby(&mut self, id: u64, now: Instant) -> Result<(), LobbyError> {
        match self.instances.get(&id) {
            Some(i) if i.lobby().is_some() => {
                self.stop_instance(id, EndReason::ApiStop, now);
                Ok(())
            }
            _ => Err(LobbyError::NotFound(id)),
        }
    }

    /// Lobbies `client` may join, as (app id, title) for its app list.
    pub(super) fn lobby_apps(&self, client: &str) -> Vec<(i32, String)> {
        self.instances
            .values()
            .filter_map(|i| i.lobby())
            .filter(|l| l.clients.is_empty() || l.clients.iter().any(|c| c == client))
            .map(|l| (l.app_id, l.name.clone()))
            .collect()
    }
}
