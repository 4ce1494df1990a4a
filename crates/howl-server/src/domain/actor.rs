//! The core actor's state and its command loop: every change to clients, apps and tenants is
//! validated, persisted, then published, and undone in memory when it cannot be saved.

use super::auth::TenantIndex;
use super::events::{Audience, Event, EventBus};
use super::{CORE_COMMAND_CAPACITY, Command, CoreError, CoreHandle, EXPIRY_TICK, PinWaiter, short};
use howl_core::apps::AppConfig;
use howl_core::{
    App, AppCatalog, AppSource, ClientRegistry, PairedClient, PairingBook, PinError, StoredApp,
    TenantRecord,
};
use howl_proto::pairing::ServerPairingState;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The actor's state. Built by [`spawn`].
struct Core {
    clients: ClientRegistry,
    apps: Arc<AppCatalog>,
    builtin_apps: Vec<AppConfig>,
    configured_apps: Vec<AppConfig>,
    stored_apps: Vec<StoredApp>,
    tenants: Vec<TenantRecord>,
    tenants_tx: watch::Sender<Arc<TenantIndex>>,
    events: EventBus,
    pairing: PairingBook<PinWaiter, ServerPairingState>,
    pairing_window: Duration,
    state_file: PathBuf,
    uniqueid: String,
}

/// Starts the actor. It runs until `shutdown` fires or every handle is dropped.
///
/// `builtin_apps` are the server's further built-ins (the "Desktop"), `configured_apps` come
/// from the config file; the API-created apps and the tenants come from `state`. Fails when
/// the config and API lists clash (a config app now has an API app's title).
pub fn spawn(
    state: howl_core::PersistedState,
    state_file: PathBuf,
    mut builtin_apps: Vec<AppConfig>,
    configured_apps: Vec<AppConfig>,
    pairing_window: Duration,
    events: EventBus,
    shutdown: CancellationToken,
) -> Result<(CoreHandle, tokio::task::JoinHandle<()>), howl_core::apps::AppError> {
    let apps = match AppCatalog::build_with_builtins(&builtin_apps, &configured_apps, &state.apps) {
        Ok(apps) => apps,
        // A tenant created an app with a built-in's title before the built-in existed: keep
        // the tenant's app and leave the built-in out rather than refuse to start.
        Err(howl_core::apps::AppError::DuplicateTitle(t))
            if builtin_apps.iter().any(|b| b.title == t) =>
        {
            tracing::warn!(title = %t, "a tenant's app has a built-in app's title; the built-in is not listed");
            builtin_apps.retain(|b| b.title != t);
            AppCatalog::build_with_builtins(&builtin_apps, &configured_apps, &state.apps)?
        }
        Err(e) => return Err(e),
    };
    let (tx, mut rx) = mpsc::channel(CORE_COMMAND_CAPACITY);
    let (tenants_tx, tenants_rx) = watch::channel(Arc::new(tenant_index(&state.tenants)));
    let mut core = Core {
        clients: ClientRegistry::from_list(state.clients),
        apps: Arc::new(apps),
        builtin_apps,
        configured_apps,
        stored_apps: state.apps,
        tenants: state.tenants,
        tenants_tx,
        events: events.clone(),
        pairing: PairingBook::default(),
        pairing_window,
        state_file,
        uniqueid: state.uniqueid,
    };
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => core.handle(cmd, Instant::now()),
                    None => break,
                },
                _ = tick.tick() => {
                    let gone = core.pairing.expire(Instant::now());
                    if gone > 0 {
                        tracing::info!(expired = gone, "pairing requests expired");
                    }
                }
                () = shutdown.cancelled() => break,
            }
        }
    });
    Ok((
        CoreHandle {
            tx,
            tenants: tenants_rx,
            events,
        },
        task,
    ))
}

fn tenant_index(tenants: &[TenantRecord]) -> TenantIndex {
    tenants
        .iter()
        .map(|t| (t.token_sha256.clone(), (t.id, t.name.clone())))
        .collect()
}

impl Core {
    fn persist(&self) -> Result<(), CoreError> {
        let mut s = howl_core::PersistedState::new(self.uniqueid.clone());
        s.clients = self.clients.to_list();
        s.apps = self.stored_apps.clone();
        s.tenants = self.tenants.clone();
        s.save(&self.state_file)
            .map_err(|e| CoreError::Persist(e.to_string()))
    }

    fn handle(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::IsPaired { fingerprint, reply } => {
                let _ = reply.send(self.clients.is_paired(&fingerprint));
            }
            Command::Apps { reply } => {
                let _ = reply.send(self.apps.clone());
            }
            Command::Clients { reply } => {
                let _ = reply.send(self.clients.to_list());
            }
            Command::AddClient { client, reply } => {
                let fp = client.fingerprint.clone();
                let name = client.name.clone();
                let previous = self.clients.get(&fp).cloned();
                self.clients.insert(client);
                let r = self.persist();
                if r.is_err() {
                    // Keep memory and disk in step: a pairing that is not saved did not happen.
                    match previous {
                        Some(p) => self.clients.insert(p),
                        None => {
                            self.clients.remove(&fp);
                        }
                    }
                } else {
                    tracing::info!(fingerprint = %short(&fp), %name, "client paired");
                    self.events.publish(
                        Audience::AdminOnly,
                        Event::PairingCompleted {
                            fingerprint: fp.clone(),
                            name: name.clone(),
                        },
                    );
                }
                let _ = reply.send(r);
            }
            Command::RemoveClient { fingerprint, reply } => {
                let r = match self.clients.remove(&fingerprint) {
                    None => Err(CoreError::UnknownClient(fingerprint)),
                    Some(c) => match self.persist() {
                        Ok(()) => {
                            tracing::info!(fingerprint = %short(&c.fingerprint), "client unpaired");
                            self.events.publish(
                                Audience::AdminOnly,
                                Event::ClientUnpaired {
                                    fingerprint: c.fingerprint.clone(),
                                },
                            );
                            Ok(c)
                        }
                        Err(e) => {
                            self.clients.insert(c);
                            Err(e)
                        }
                    },
                };
                let _ = reply.send(r);
            }
            Command::BeginPairing {
                requester,
                device_name,
                fingerprint,
                waiter,
                reply,
            } => {
                let r = self.pairing.begin(
                    &requester,
                    &device_name,
                    &fingerprint,
                    now,
                    self.pairing_window,
                    waiter,
                );
                match &r {
                    Ok(id) => {
                        tracing::info!(
                            id,
                            %requester,
                            fingerprint = %short(&fingerprint),
                            "pairing request waits for a PIN (submit it with `howl pin` or the API)"
                        );
                        self.events.publish(
                            Audience::AdminOnly,
                            Event::PairingRequested {
                                id: *id,
                                device_name: device_name.clone(),
                                fingerprint: fingerprint.clone(),
                            },
                        );
                    }
                    Err(e) => tracing::info!(%requester, error = %e, "pairing request refused"),
                }
                let _ = reply.send(r);
            }
            Command::CancelWaiting { id } => {
                if self.pairing.cancel_waiting(id) {
                    tracing::info!(
                        id,
                        "pairing request withdrawn (client went away or the window closed)"
                    );
                }
            }
            Command::SubmitPin {
                pin,
                selector,
                reply,
            } => {
                let r = self
                    .pairing
                    .take_for_pin(&pin, selector.as_deref(), now, self.pairing_window)
                    .and_then(|(info, waiter)| match waiter.send(pin) {
                        Ok(()) => Ok(info),
                        Err(_) => {
                            // The request ended between listing and PIN entry.
                            self.pairing.end(&info.requester);
                            Err(PinError::NoPending)
                        }
                    });
                match &r {
                    Ok(info) => tracing::info!(id = info.id, "PIN delivered to pairing request"),
                    Err(e) => tracing::info!(error = %e, "PIN not delivered"),
                }
                let _ = reply.send(r);
            }
            Command::Pending { reply } => {
                let _ = reply.send(self.pairing.pending());
            }
            Command::TakeStage { requester, reply } => {
                let _ = reply.send(self.pairing.take_state(&requester));
            }
            Command::PutStage { requester, stage } => {
                self.pairing
                    .put_state(&requester, stage, now, self.pairing_window);
            }
            Command::EndPairing { requester } => {
                self.pairing.end(&requester);
            }
            Command::RenameClient {
                fingerprint,
                name,
                reply,
            } => {
                let _ = reply.send(self.rename_client(&fingerprint, name));
            }
            Command::CreateApp { app, reply } => {
                let _ = reply.send(self.create_app(app));
            }
            Command::UpdateApp {
                id,
                app,
                who,
                reply,
            } => {
                let _ = reply.send(self.update_app(id, app, who));
            }
            Command::DeleteApp { id, who, reply } => {
                let _ = reply.send(self.delete_app(id, who));
            }
            Command::CreateTenant {
                name,
                token_sha256,
                created_unix,
                reply,
            } => {
                let _ = reply.send(self.create_tenant(name, token_sha256, created_unix));
            }
            Command::Tenants { reply } => {
                let _ = reply.send(self.tenants.clone());
            }
            Command::DeleteTenant { id, reply } => {
                let _ = reply.send(self.delete_tenant(id));
            }
        }
    }

    fn rename_client(
        &mut self,
        fingerprint: &str,
        name: String,
    ) -> Result<PairedClient, CoreError> {
        let name = name.trim().to_owned();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(CoreError::Invalid(
                "a client name is 1 to 128 printable characters".into(),
            ));
        }
        let Some(old) = self.clients.get(fingerprint).cloned() else {
            return Err(CoreError::UnknownClient(fingerprint.to_owned()));
        };
        let mut renamed = old.clone();
        renamed.name = name.clone();
        self.clients.insert(renamed.clone());
        if let Err(e) = self.persist() {
            self.clients.insert(old);
            return Err(e);
        }
        tracing::info!(fingerprint = %short(fingerprint), %name, "client renamed");
        self.events.publish(
            Audience::AdminOnly,
            Event::ClientRenamed {
                fingerprint: fingerprint.to_owned(),
                name,
            },
        );
        Ok(renamed)
    }

    /// Validates `stored` as the new API app list, then persists it; memory and disk stay in
    /// step (a change that cannot be saved is undone).
    fn replace_apps(&mut self, stored: Vec<StoredApp>) -> Result<(), CoreError> {
        let catalog =
            AppCatalog::build_with_builtins(&self.builtin_apps, &self.configured_apps, &stored)
                .map_err(|e| CoreError::Invalid(e.to_string()))?;
        let old_apps = std::mem::replace(&mut self.apps, Arc::new(catalog));
        let old_stored = std::mem::replace(&mut self.stored_apps, stored);
        if let Err(e) = self.persist() {
            self.apps = old_apps;
            self.stored_apps = old_stored;
            return Err(e);
        }
        Ok(())
    }

    fn app_event(&self, app: &App, change: &'static str) {
        let audience = app.owner.map_or(Audience::AdminOnly, Audience::Tenant);
        self.events.publish(
            audience,
            Event::AppChanged {
                id: app.id,
                title: app.title.clone(),
                change,
            },
        );
    }

    fn create_app(&mut self, mut app: StoredApp) -> Result<App, CoreError> {
        app.title = app.title.trim().to_owned();
        let mut stored = self.stored_apps.clone();
        stored.push(app.clone());
        self.replace_apps(stored)?;
        let created =
            self.apps.by_title(&app.title).cloned().ok_or_else(|| {
                CoreError::Invalid("the app vanished while it was created".into())
            })?;
        tracing::info!(id = created.id, title = %created.title, "app created through the API");
        self.app_event(&created, "created");
        Ok(created)
    }

    /// The API app with `id` that `who` may change.
    fn owned_api_app(&self, id: i32, who: Option<u64>) -> Result<(usize, App), CoreError> {
        let app = self
            .apps
            .by_id(id)
            .cloned()
            .ok_or(CoreError::UnknownApp(id))?;
        if who.is_some() && app.owner != who {
            return Err(CoreError::Forbidden(format!(
                "app {id} belongs to another tenant or to the operator"
            )));
        }
        if app.source != AppSource::Api {
            return Err(CoreError::ReadOnlyApp(app.title));
        }
        let idx = self
            .stored_apps
            .iter()
            .position(|s| s.title == app.title)
            .ok_or(CoreError::UnknownApp(id))?;
        Ok((idx, app))
    }

    fn update_app(
        &mut self,
        id: i32,
        mut app: StoredApp,
        who: Option<u64>,
    ) -> Result<App, CoreError> {
        let (idx, old) = self.owned_api_app(id, who)?;
        app.title = app.title.trim().to_owned();
        app.owner = old.owner;
        let mut stored = self.stored_apps.clone();
        stored[idx] = app.clone();
        self.replace_apps(stored)?;
        let updated =
            self.apps.by_title(&app.title).cloned().ok_or_else(|| {
                CoreError::Invalid("the app vanished while it was updated".into())
            })?;
        tracing::info!(id = updated.id, title = %updated.title, "app updated through the API");
        self.app_event(&updated, "updated");
        Ok(updated)
    }

    fn delete_app(&mut self, id: i32, who: Option<u64>) -> Result<App, CoreError> {
        let (idx, old) = self.owned_api_app(id, who)?;
        let mut stored = self.stored_apps.clone();
        stored.remove(idx);
        self.replace_apps(stored)?;
        tracing::info!(id, title = %old.title, "app deleted through the API");
        self.app_event(&old, "deleted");
        Ok(old)
    }

    fn create_tenant(
        &mut self,
        name: String,
        token_sha256: String,
        created_unix: u64,
    ) -> Result<TenantRecord, CoreError> {
        let name = howl_core::tenants::validate_name(&name).map_err(CoreError::Invalid)?;
        if self.tenants.iter().any(|t| t.name == name) {
            return Err(CoreError::Invalid(format!(
                "a tenant named {name:?} exists already"
            )));
        }
        let id = self.tenants.iter().map(|t| t.id).max().unwrap_or(0) + 1;
        let rec = TenantRecord {
            id,
            name,
            token_sha256,
            created_unix,
        };
        self.tenants.push(rec.clone());
        if let Err(e) = self.persist() {
            self.tenants.pop();
            return Err(e);
        }
        self.tenants_tx
            .send_replace(Arc::new(tenant_index(&self.tenants)));
        tracing::info!(id, name = %rec.name, "tenant created");
        Ok(rec)
    }

    fn delete_tenant(&mut self, id: u64) -> Result<TenantRecord, CoreError> {
        let idx = self
            .tenants
            .iter()
            .position(|t| t.id == id)
            .ok_or(CoreError::UnknownTenant(id))?;
        let rec = self.tenants.remove(idx);
        if let Err(e) = self.persist() {
            self.tenants.insert(idx, rec);
            return Err(e);
        }
        self.tenants_tx
            .send_replace(Arc::new(tenant_index(&self.tenants)));
        tracing::info!(id, name = %rec.name, "tenant deleted; its token no longer works");
        Ok(rec)
    }
}
