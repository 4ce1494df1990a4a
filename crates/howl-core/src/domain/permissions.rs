//! Viewer permissions: which viewers may drive a producer's desktop (keyboard, mouse, gamepad)
//! and which only watch.
//!
//! The rule, first match wins ([`permission_of`]):
//!
//! 1. an RTSP player has no input channel: it views;
//! 2. an operator's setting for this one viewer (the API's session permission);
//! 3. in a lobby, the operator's setting for the viewer's client (by certificate), kept across
//!    the client's rejoins;
//! 4. the owner controls: a private launch's client, a lobby's creator client;
//! 5. everyone else gets what the lobby gives joiners ([`LobbyPermissions::joiners`]).
//!
//! The domain keeps each viewer's effective permission and tells the driver whenever it changes
//! ([`Action::SetPermission`], also once when a viewer is added), so a change through the API
//! takes effect on the viewer's next input packet, without a reconnect. The driver drops (and
//! counts) the input of a viewer that may only view; nothing of it reaches the desktop.

use super::*;

/// What a viewer may do with the desktop it watches (`"view"`/`"control"` in JSON).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Watch only: its keyboard, mouse and gamepad input is dropped and counted.
    View,
    /// Watch and drive: its input is injected into the desktop.
    Control,
}

impl Permission {
    /// The word the API, CLI and logs use.
    pub fn name(self) -> &'static str {
        match self {
            Permission::View => "view",
            Permission::Control => "control",
        }
    }

    /// Parses [`Permission::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "view" => Some(Permission::View),
            "control" => Some(Permission::Control),
            _ => None,
        }
    }

    /// Whether input from a viewer with this permission reaches the desktop.
    pub fn allows_input(self) -> bool {
        self == Permission::Control
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A lobby's permission settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LobbyPermissions {
    /// What a joining client gets unless something below says otherwise.
    pub joiners: Permission,
    /// The client the lobby was created for (lower-case fingerprint): it controls by default,
    /// as a private launch's client does.
    pub creator: Option<String>,
    /// Per client (lower-case fingerprint): overrides the two above for that client's streams,
    /// now and when it rejoins.
    pub clients: BTreeMap<String, Permission>,
}

impl Default for LobbyPermissions {
    /// Everyone controls: what lobbies did before permissions existed.
    fn default() -> Self {
        Self {
            joiners: Permission::Control,
            creator: None,
            clients: BTreeMap::new(),
        }
    }
}

/// The permission `viewer` has on `producer` (see the module doc for the rule).
pub fn permission_of(producer: &Producer, viewer: &Viewer) -> Permission {
    if !viewer.kind.sends_input() {
        return Permission::View;
    }
    if let Some(p) = viewer.permission_override {
        return p;
    }
    let client = viewer.principal.client();
    match &producer.kind {
        ProducerKind::Private { client: owner } => {
            if client == Some(owner.as_str()) {
                Permission::Control
            } else {
                Permission::View
            }
        }
        ProducerKind::Lobby(l) => {
            let rules = &l.permissions;
            if let Some(p) = client.and_then(|c| rules.clients.get(c)) {
                *p
            } else if client.is_some() && client == rules.creator.as_deref() {
                Permission::Control
            } else {
                rules.joiners
            }
        }
        // Only RTSP players watch an app share, and they have no input.
        ProducerKind::AppShare => Permission::View,
    }
}

impl Domain {
    // ----- inputs: the API -----

    /// Sets (or with `None` clears) the permission of one viewer, overriding every other rule
    /// for as long as it watches. Returns its permission now.
    pub fn set_viewer_permission(
        &mut self,
        viewer: ViewerId,
        permission: Option<Permission>,
    ) -> Result<Permission, Refusal> {
        let v = self
            .viewers
            .get_mut(&viewer)
            .ok_or(Refusal::NoViewer(viewer))?;
        if permission == Some(Permission::Control) && !v.kind.sends_input() {
            return Err(Refusal::NoInput(v.kind.name()));
        }
        v.permission_override = permission;
        let producer = v.producer;
        self.refresh_permissions(producer);
        self.viewers
            .get(&viewer)
            .map(|v| v.permission)
            .ok_or(Refusal::NoViewer(viewer))
    }

    /// Sets what clients joining a lobby get; applies at once to its viewers that no setting
    /// of their own covers.
    pub fn set_lobby_permission(
        &mut self,
        lobby: ProducerId,
        joiners: Permission,
    ) -> Result<(), Refusal> {
        self.lobby_permissions_mut(lobby)?.joiners = joiners;
        self.refresh_permissions(lobby);
        Ok(())
    }

    /// Sets (or with `None` clears) one client's permission in a lobby; applies at once to its
    /// streams there and to its later rejoins.
    pub fn set_lobby_client_permission(
        &mut self,
        lobby: ProducerId,
        client: &str,
        permission: Option<Permission>,
    ) -> Result<(), Refusal> {
        let fp = crate::clients::normalize_fingerprint(client)
            .ok_or_else(|| Refusal::BadFingerprint(client.to_owned()))?;
        let rules = self.lobby_permissions_mut(lobby)?;
        match permission {
            Some(p) => rules.clients.insert(fp, p),
            None => rules.clients.remove(&fp),
        };
        self.refresh_permissions(lobby);
        Ok(())
    }

    fn lobby_permissions_mut(
        &mut self,
        lobby: ProducerId,
    ) -> Result<&mut LobbyPermissions, Refusal> {
        match self.producers.get_mut(&lobby).map(|p| &mut p.kind) {
            Some(ProducerKind::Lobby(l)) => Ok(&mut l.permissions),
            _ => Err(Refusal::NoLobby(lobby)),
        }
    }

    // ----- helpers -----

    /// Recomputes the permission of every viewer of `producer`; tells the driver of each
    /// change. A viewer that may no longer control has whatever it held released, so no key
    /// it pressed stays down.
    pub(super) fn refresh_permissions(&mut self, producer: ProducerId) {
        let Some(p) = self.producers.get(&producer) else {
            return;
        };
        for id in &p.viewers {
            let Some(v) = self.viewers.get_mut(id) else {
                continue;
            };
            let now = permission_of(p, v);
            if now != v.permission {
                v.permission = now;
                self.outbox.push_back(Action::SetPermission {
                    viewer: *id,
                    permission: now,
                });
                if let (Permission::View, WorkerState::Ready(worker)) = (now, p.worker) {
                    self.outbox.push_back(Action::ReleaseInput {
                        worker,
                        viewer: *id,
                    });
                }
                let (owner, event) = (
                    p.owner(),
                    DomainEvent::PermissionChanged {
                        id: *id,
                        client: v.label.clone(),
                        lobby_id: p.lobby_id(),
                        permission: now,
                    },
                );
                self.outbox.push_back(Action::Publish { owner, event });
            }
        }
    }
}
