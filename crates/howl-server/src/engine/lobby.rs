//! Lobbies: shared producers an operator creates through the API; clients join them by
//! launching their app id, players by their `/lobby/<name>` path. The rules are the domain's;
//! this file maps the API's request and errors onto it.

use super::{Engine, LobbyView};
use howl_core::App;
use howl_core::domain::{
    AdmissionPath, LobbyPermissions, LobbyRequest, Permission, ProducerId, Refusal,
};
use std::collections::BTreeMap;
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
    /// What joining clients may do: `control` (default: keyboard, mouse, gamepad reach the
    /// desktop) or `view` (their input is dropped and counted).
    #[serde(default = "default_permission")]
    #[schema(value_type = String, example = "view")]
    pub viewer_permission: Permission,
    /// Fingerprint of the paired client the lobby is created for: it controls whatever
    /// `viewer_permission` says.
    #[serde(default)]
    pub creator: Option<String>,
    /// Per client (fingerprint → `control` or `view`): overrides the two above for that
    /// client, also when it rejoins.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub client_permissions: BTreeMap<String, Permission>,
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
fn default_permission() -> Permission {
    Permission::Control
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
    /// Admission control: another producer would pass `max_producers` or
    /// `max_encoder_sessions` (the text names which).
    #[error("{0}")]
    AtCapacity(String),
    #[error("the streaming engine did not answer in time")]
    Unavailable,
}

impl From<Refusal> for LobbyError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::LobbyExists(name) => LobbyError::Exists(name),
            Refusal::NoLobby(id) => LobbyError::NotFound(id.0),
            Refusal::ShuttingDown => LobbyError::Unavailable,
            r if r.is_capacity() => LobbyError::AtCapacity(r.to_string()),
            other => LobbyError::Invalid(other.to_string()),
        }
    }
}

impl Engine {
    pub(super) fn create_lobby(
        &mut self,
        spec: LobbySpec,
        app: Option<App>,
        now: Instant,
    ) -> Result<LobbyView, LobbyError> {
        let name = spec.name.clone();
        let id = self.domain.create_lobby(
            now,
            LobbyRequest {
                name: spec.name,
                app_title: spec.app,
                app,
                width: spec.width,
                height: spec.height,
                fps: spec.fps,
                bitrate_kbps: spec.bitrate_kbps,
                codec: spec.codec,
                clients: spec.clients,
                stop_when_everyone_leaves: spec.stop_when_everyone_leaves,
                idle_timeout: Duration::from_secs(spec.idle_timeout_secs),
                permissions: LobbyPermissions {
                    joiners: spec.viewer_permission,
                    creator: spec.creator,
                    clients: spec.client_permissions,
                },
                owner: spec.owner,
            },
        );
        let id = id.inspect_err(|r| super::log_refusal(AdmissionPath::Lobby, &name, r))?;
        tracing::info!(lobby = %id, "lobby created");
        self.lobby_view(id)
    }

    pub(super) fn set_lobby_clients(
        &mut self,
        id: u64,
        clients: Vec<String>,
    ) -> Result<LobbyView, LobbyError> {
        let id = ProducerId(id);
        self.domain.set_lobby_clients(id, &clients)?;
        tracing::info!(lobby = %id, allowed = clients.len(), "lobby membership changed");
        self.lobby_view(id)
    }

    pub(super) fn set_lobby_permission(
        &mut self,
        id: u64,
        joiners: Permission,
    ) -> Result<LobbyView, LobbyError> {
        let id = ProducerId(id);
        self.domain.set_lobby_permission(id, joiners)?;
        tracing::info!(lobby = %id, %joiners, "lobby permission for joiners changed");
        self.lobby_view(id)
    }

    pub(super) fn set_lobby_client_permission(
        &mut self,
        id: u64,
        client: &str,
        permission: Option<Permission>,
    ) -> Result<LobbyView, LobbyError> {
        let id = ProducerId(id);
        self.domain
            .set_lobby_client_permission(id, client, permission)?;
        tracing::info!(lobby = %id, client = %crate::domain::short(client),
            permission = permission.map_or("default", Permission::name), "client permission in lobby changed");
        self.lobby_view(id)
    }

    pub(super) fn stop_lobby(&mut self, id: u64, now: Instant) -> Result<(), LobbyError> {
        Ok(self.domain.stop_lobby(now, ProducerId(id))?)
    }

    fn lobby_view(&self, id: ProducerId) -> Result<LobbyView, LobbyError> {
        self.lobby_views()
            .into_iter()
            .find(|l| l.id == id.0)
            .ok_or(LobbyError::NotFound(id.0))
    }
}
