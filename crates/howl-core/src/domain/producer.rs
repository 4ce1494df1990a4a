//! Producers: one app and its encoder (a media worker), watched by any number of viewers, and
//! the policy that decides when it stops.

use super::{Codec, LobbyPermissions, ProducerId, ViewerId, WorkerId};
use crate::{App, AppKind};
use howl_media::protocol::{ContainerSpec, DesktopApp, Source, StreamParams};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// One app being encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer {
    pub id: ProducerId,
    pub kind: ProducerKind,
    pub app: App,
    /// When it stops; every producer has one (the type leaves no way to forget it).
    pub policy: StopPolicy,
    pub worker: WorkerState,
    /// What the worker encodes (or will, once started); `None` until a private producer's
    /// first ANNOUNCE.
    pub params: Option<StreamParams>,
    /// The node it runs on (placement: [`super::Domain`]'s nodes), fixed at admission.
    pub node: String,
    pub viewers: BTreeSet<ViewerId>,
    /// When it stops for want of viewers (linger for `/resume`, a lobby's idle timeout, an
    /// app share's linger). Set only while it has no viewer.
    pub stop_at: Option<Instant>,
    pub created_at: Instant,
}

/// Who a producer belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProducerKind {
    /// A client's own app, started by its `/launch`: one viewer at a time, its owner's.
    Private { client: String },
    /// A shared producer created through the API.
    Lobby(Lobby),
    /// The shared producer of an app for RTSP players (`/app/<name>`): one per app, started by
    /// its first player in the mode that player's URL asked for.
    AppShare,
}

/// A lobby's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lobby {
    /// Unique among lobbies; shown to clients as the app title.
    pub name: String,
    /// The id clients launch to join (derived from the name, stable across restarts).
    pub app_id: i32,
    /// Fingerprints of the clients that may join; empty: every paired client.
    pub clients: Vec<String>,
    /// The tenant that owns it; `None`: the operator's.
    pub owner: Option<u64>,
    /// The idle timeout the operator set (in force when its policy is
    /// [`StopPolicy::WhenEmpty`]; kept either way for the API's view).
    pub idle_timeout: Duration,
    /// Who may drive its desktop: what joiners get, its creator, per-client settings.
    pub permissions: LobbyPermissions,
}

impl Lobby {
    /// Whether a Moonlight client may see and join it.
    pub fn admits(&self, client: &str) -> bool {
        self.clients.is_empty() || self.clients.iter().any(|c| c == client)
    }
}

/// When a producer stops (besides an API stop, its worker's end, or shutdown, which stop
/// every producer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopPolicy {
    /// A private producer follows its client: when the client goes away without quitting
    /// (ENet disconnect, control timeout or silence) it lingers for `linger` so `/resume`
    /// finds it; a newer stream of the same client replaces the old one and keeps it; any
    /// other end of its viewer (quit, API stop, a deadline of the handshake) stops it.
    WithClient { linger: Duration },
    /// Runs until stopped through the API, with or without viewers.
    UntilStopped,
    /// Stops once it has had no viewer for `after` (a lobby with
    /// `stop_when_everyone_leaves`, an app share's linger).
    WhenEmpty { after: Duration },
}

/// The producer's media worker, as the domain knows it. A worker that exits ends its producer
/// (the app ended or the worker died), so there is no "exited" state to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// None asked for yet (a private producer before its first ANNOUNCE).
    None,
    /// [`super::Action::StartWorker`] was issued; waiting for ready or failed.
    Starting(WorkerId),
    /// Running and producing.
    Ready(WorkerId),
}

impl WorkerState {
    /// The current worker, starting or ready.
    pub fn id(&self) -> Option<WorkerId> {
        match self {
            WorkerState::None => None,
            WorkerState::Starting(w) | WorkerState::Ready(w) => Some(*w),
        }
    }
}

impl Producer {
    /// The tenant owning it (only lobbies have owners).
    pub fn owner(&self) -> Option<u64> {
        self.lobby().and_then(|l| l.owner)
    }

    pub fn lobby(&self) -> Option<&Lobby> {
        match &self.kind {
            ProducerKind::Lobby(l) => Some(l),
            _ => None,
        }
    }

    /// The lobby id the API shows (the producer's id), `None` for other producers.
    pub fn lobby_id(&self) -> Option<u64> {
        self.lobby().map(|_| self.id.0)
    }

    /// The id clients see for it: the lobby's entry, or the app's.
    pub fn listed_id(&self) -> i32 {
        self.lobby().map_or(self.app.id, |l| l.app_id)
    }

    /// The client owning a private producer.
    pub fn private_client(&self) -> Option<&str> {
        match &self.kind {
            ProducerKind::Private { client } => Some(client),
            _ => None,
        }
    }

    /// Whether it stops once nobody watches (`stop_when_everyone_leaves` of a lobby).
    pub fn stops_when_empty(&self) -> bool {
        matches!(self.policy, StopPolicy::WhenEmpty { .. })
    }

    /// Whether it waits for its stop time without viewers (the API's "lingering").
    pub fn lingering(&self) -> bool {
        self.stop_at.is_some()
    }

    /// The codec it encodes, once known.
    pub fn codec(&self) -> Option<Codec> {
        self.params.as_ref().map(|p| p.codec)
    }
}

/// What the worker captures for `app`.
pub fn source_of(app: &App) -> Source {
    match &app.kind {
        AppKind::TestPattern { tone_hz } => Source::TestPattern { tone_hz: *tone_hz },
        AppKind::Process {
            command,
            args,
            env,
            working_dir,
        } => Source::Desktop(DesktopApp {
            command: command.clone(),
            args: args.clone(),
            env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            working_dir: working_dir.clone(),
            container: None,
        }),
        AppKind::Docker {
            image,
            command,
            env,
            mounts,
            network,
        } => Source::Desktop(DesktopApp {
            command: command.first().cloned().unwrap_or_default(),
            args: command.iter().skip(1).cloned().collect(),
            env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            working_dir: None,
            container: Some(ContainerSpec {
                image: image.clone(),
                mounts: mounts.clone(),
                network: network.clone(),
            }),
        }),
        AppKind::Source { uri } => Source::Uri { uri: uri.clone() },
    }
}
