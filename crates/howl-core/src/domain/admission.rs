//! Admission control: how many producers may run at once on this host, decided before
//! anything starts.
//!
//! Past a machine's capacity every session degrades together (a 2-core box streams eight
//! 720p60 Test Patterns at 58 fps each, twelve at 24 fps each), so a host with limits refuses
//! the next producer instead, at once and with a reason that names the limit. Only a request
//! that would start a **new producer** is counted: a private launch (one replacing the same
//! client's running app does not add one), a lobby's creation, the first player of an app
//! share. Joining a running producer (a lobby, an app share, a `/resume`) adds a viewer, not
//! an encoder, and is always admitted.
//!
//! Two limits, because they describe two resources: **producer slots** (`max_producers`: the
//! apps, desktops and pipelines the machine can run) and **encoder sessions**
//! (`max_encoder_sessions`: what the video encoder allows at once; a consumer NVIDIA GPU
//! allows 8 NVENC sessions across codecs). Every producer runs exactly one video encoder
//! from its admission to its stop (encode once, fan out; a private launch holds its session
//! from `/launch`, before its worker starts at ANNOUNCE, so a launch admitted is a stream
//! that will start), so today both count the same thing and the smaller limit applies; a
//! media node reports both separately.

use super::*;

/// What may run at once. `None`: no limit (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Admission {
    /// The most producers at once (private launches, lobbies, app shares).
    pub max_producers: Option<u32>,
    /// The most video encoder sessions at once (one per producer).
    pub max_encoder_sessions: Option<u32>,
}

/// Which limit a refusal hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Producers,
    EncoderSessions,
}

impl Limit {
    /// The configuration key that sets it.
    pub fn key(self) -> &'static str {
        match self {
            Limit::Producers => "max_producers",
            Limit::EncoderSessions => "max_encoder_sessions",
        }
    }

    /// What it counts, in the plural.
    pub fn counts(self) -> &'static str {
        match self {
            Limit::Producers => "producer slots",
            Limit::EncoderSessions => "encoder sessions",
        }
    }
}

/// The request that asked for a new producer: admission refusals are counted per path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdmissionPath {
    /// A Moonlight client's private `/launch`.
    Launch,
    /// A lobby created through the API.
    Lobby,
    /// An RTSP player starting an app share (`/app/<name>`).
    Player,
}

impl AdmissionPath {
    pub const ALL: [AdmissionPath; 3] = [
        AdmissionPath::Launch,
        AdmissionPath::Lobby,
        AdmissionPath::Player,
    ];

    /// The metric label and log value.
    pub fn name(self) -> &'static str {
        match self {
            AdmissionPath::Launch => "launch",
            AdmissionPath::Lobby => "lobby",
            AdmissionPath::Player => "player",
        }
    }
}

impl Domain {
    /// Producer slots in use: every producer, from its admission to its stop.
    pub fn producers_in_use(&self) -> u32 {
        u32::try_from(self.producers.len()).unwrap_or(u32::MAX)
    }

    /// Encoder sessions in use: one per producer (see the module doc).
    pub fn encoder_sessions_in_use(&self) -> u32 {
        self.producers_in_use()
    }

    /// Admission refusals since start, for every path (zero included).
    pub fn admission_refused(&self) -> impl Iterator<Item = (AdmissionPath, u64)> + '_ {
        AdmissionPath::ALL
            .into_iter()
            .map(|p| (p, self.refused.get(&p).copied().unwrap_or(0)))
    }

    /// The node one more producer of an app that `requires` these goes to, `replacing` one that stops in the same input (a
    /// client's new private launch replaces its old one, whose slot counts as free). A
    /// refusal (no node has room: [`Refusal::AtCapacity`] with one node, as before nodes
    /// existed) is counted under `path`; nothing else changes.
    pub(super) fn admit(
        &mut self,
        path: AdmissionPath,
        replacing: Option<ProducerId>,
        requires: &crate::apps::NodeRequirements,
    ) -> Result<String, Refusal> {
        self.place(replacing, requires).inspect_err(|_| {
            *self.refused.entry(path).or_insert(0) += 1;
        })
    }
}
