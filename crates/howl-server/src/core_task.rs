//! The core actor: the one owner of domain state (paired clients, apps, pairing requests).
//!
//! Everything else talks to it through [`CoreHandle`], whose methods send a command on a
//! bounded channel and await the reply with a deadline. The actor never awaits anything but
//! its own channel and its timer, so it cannot be wedged by a slow client, a slow API caller
//! or (later) a media worker: the property seed 000 lacked.

use crate::auth::TenantIndex;
use crate::events::{Audience, Event, EventBus};
use crate::nvhttp::PairingStage;
use howl_core::apps::AppConfig;
use howl_core::{
    App, AppCatalog, AppSource, ClientRegistry, PairedClient, PairingBook, PendingPairing,
    PinError, StoredApp, TenantRecord,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Capacity of the command channel into the actor (callers → actor). When full, callers wait
/// up to [`CORE_REPLY_DEADLINE`] and then fail their request; nothing queues without bound.
pub const CORE_COMMAND_CAPACITY: usize = 256;
/// Longest any caller waits for the actor to accept a command and reply.
pub const CORE_REPLY_DEADLINE: Duration = Duration::from_secs(5);
/// How often pairing requests are checked for expiry.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

/// Why a core request failed. `Unavailable` is internal (the actor is overloaded or gone);
/// the others are the caller's problem.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("the server core did not answer in time")]
    Unavailable,
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error("cannot save state: {0}")]
    Persist(String),
    #[error("no paired client has fingerprint {0}")]
    UnknownClient(String),
    /// The caller sent something invalid (a bad app or name).
    #[error("{0}")]
    Invalid(String),
    #[error("no app with id {0}")]
    UnknownApp(i32),
    #[error("app {0:?} comes from the config file or is built in; change it there")]
    ReadOnlyApp(String),
    #[error("no tenant with id {0}")]
    UnknownTenant(u64),
    /// A tenant reached for something it does not own.
    #[error("{0}")]
    Forbidden(String),
}

/// Sends the PIN to the HTTP request that waits for it.
pub type PinWaiter = oneshot::Sender<String>;

enum Command {
    IsPaired {
        fingerprint: String,
        reply: oneshot::Sender<bool>,
    },
    Apps {
        reply: oneshot::Sender<Arc<AppCatalog>>,
    },
    Clients {
        reply: oneshot::Sender<Vec<PairedClient>>,
    },
    AddClient {
        client: PairedClient,
        reply: oneshot::Sender<Result<(), CoreError>>,
    },
    RemoveClient {
        fingerprint: String,
        reply: oneshot::Sender<Result<PairedClient, CoreError>>,
    },
    BeginPairing {
        requester: String,
        device_name: String,
        fingerprint: String,
        waiter: PinWaiter,
        reply: oneshot::Sender<Result<u64, PinError>>,
    },
    CancelWaiting {
        id: u64,
    },
    SubmitPin {
        pin: String,
        selector: Option<String>,
        reply: oneshot::Sender<Result<PendingPairing, PinError>>,
    },
    Pending {
        reply: oneshot::Sender<Vec<PendingPairing>>,
    },
    TakeStage {
        requester: String,
        reply: oneshot::Sender<Option<PairingStage>>,
    },
    PutStage {
        requester: String,
        stage: PairingStage,
    },
    EndPairing {
        requester: String,
    },
    RenameClient {
        fingerprint: String,
        name: String,
        reply: oneshot::Sender<Result<PairedClient, CoreError>>,
    },
    CreateApp {
        app: StoredApp,
        reply: oneshot::Sender<Result<App, CoreError>>,
    },
    UpdateApp {
        id: i32,
        app: StoredApp,
        who: Option<u64>,
        reply: oneshot::Sender<Result<App, CoreError>>,
    },
    DeleteApp {
        id: i32,
        who: Option<u64>,
        reply: oneshot::Sender<Result<App, CoreError>>,
    },
    CreateTenant {
        name: String,
        token_sha256: String,
        created_unix: u64,
        reply: oneshot::Sender<Result<TenantRecord, CoreError>>,
    },
    Tenants {
        reply: oneshot::Sender<Vec<TenantRecord>>,
    },
    DeleteTenant {
        id: u64,
        reply: oneshot::Sender<Result<TenantRecord, CoreError>>,
    },
}

/// A cheap, cloneable handle to the core actor.
#[derive(Clone, Debug)]
pub struct CoreHandle {
    tx: mpsc::Sender<Command>,
    /// Tenant token digests, republished by the actor on every change, so authenticating a
    /// request is a lock-free read rather than a round trip through the actor.
    tenants: watch::Receiver<Arc<TenantIndex>>,
    events: EventBus,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print payloads: SubmitPin carries a PIN.
        f.write_str("Command")
    }
}

impl CoreHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, CoreError> {
        let (reply, rx) = oneshot::channel();
        let fut = async {
            self.tx
                .send(make(reply))
                .await
                .map_err(|_| CoreError::Unavailable)?;
            rx.await.map_err(|_| CoreError::Unavailable)
        };
        tokio::time::timeout(CORE_REPLY_DEADLINE, fut)
            .await
            .map_err(|_| CoreError::Unavailable)?
    }

    /// Fire-and-forget, for `Drop` paths: never waits; if the channel is full the entry
    /// expires by its deadline instead.
    fn tell(&self, cmd: Command) {
        let _ = self.tx.try_send(cmd);
    }

    /// The current tenant index (digest -> tenant).
    pub fn tenant_index(&self) -> Arc<TenantIndex> {
        self.tenants.borrow().clone()
    }

    /// The event bus, for components that publish what they observe (pairing failures).
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    pub async fn rename_client(
        &self,
        fingerprint: &str,
        name: String,
    ) -> Result<PairedClient, CoreError> {
        let fingerprint = fingerprint.to_owned();
        self.ask(|reply| Command::RenameClient {
            fingerprint,
            name,
            reply,
        })
        .await?
    }

    pub async fn create_app(&self, app: StoredApp) -> Result<App, CoreError> {
        self.ask(|reply| Command::CreateApp { app, reply }).await?
    }

    pub async fn update_app(
        &self,
        id: i32,
        app: StoredApp,
        who: Option<u64>,
    ) -> Result<App, CoreError> {
        self.ask(|reply| Command::UpdateApp {
            id,
            app,
            who,
            reply,
        })
        .await?
    }

    pub async fn delete_app(&self, id: i32, who: Option<u64>) -> Result<App, CoreError> {
        self.ask(|reply| Command::DeleteApp { id, who, reply })
            .await?
    }

    pub async fn create_tenant(
        &self,
        name: String,
        token_sha256: String,
        created_unix: u64,
    ) -> Result<TenantRecord, CoreError> {
        self.ask(|reply| Command::CreateTenant {
            name,
            token_sha256,
            created_unix,
            reply,
        })
        .await?
    }

    pub async fn tenants(&self) -> Result<Vec<TenantRecord>, CoreError> {
        self.ask(|reply| Command::Tenants { reply }).await
    }

    pub async fn delete_tenant(&self, id: u64) -> Result<TenantRecord, CoreError> {
        self.ask(|reply| Command::DeleteTenant { id, reply })
            .await?
    }

    pub async fn is_paired(&self, fingerprint: &str) -> Result<bool, CoreError> {
        let fingerprint = fingerprint.to_owned();
        self.ask(|reply| Command::IsPaired { fingerprint, reply })
            .await
    }

    pub async fn apps(&self) -> Result<Arc<AppCatalog>, CoreError> {
        self.ask(|reply| Command::Apps { reply }).await
    }

    pub async fn clients(&self) -> Result<Vec<PairedClient>, CoreError> {
        self.ask(|reply| Command::Clients { reply }).await
    }

    pub async fn add_client(&self, client: PairedClient) -> Result<(), CoreError> {
        self.ask(|reply| Command::AddClient { client, reply })
            .await?
    }

    pub async fn remove_client(&self, fingerprint: &str) -> Result<PairedClient, CoreError> {
        let fingerprint = fingerprint.to_owned();
        self.ask(|reply| Command::RemoveClient { fingerprint, reply })
            .await?
    }

    pub async fn begin_pairing(
        &self,
        requester: &str,
        device_name: &str,
        fingerprint: &str,
        waiter: PinWaiter,
    ) -> Result<u64, CoreError> {
        let (requester, device_name, fingerprint) = (
            requester.to_owned(),
            device_name.to_owned(),
            fingerprint.to_owned(),
        );
        Ok(self
            .ask(|reply| Command::BeginPairing {
                requester,
                device_name,
                fingerprint,
                waiter,
                reply,
            })
            .await??)
    }

    pub fn cancel_waiting(&self, id: u64) {
        self.tell(Command::CancelWaiting { id });
    }

    pub async fn submit_pin(
        &self,
        pin: String,
        selector: Option<String>,
    ) -> Result<PendingPairing, CoreError> {
        Ok(self
            .ask(|reply| Command::SubmitPin {
                pin,
                selector,
                reply,
            })
            .await??)
    }

    pub async fn pending(&self) -> Result<Vec<PendingPairing>, CoreError> {
        self.ask(|reply| Command::Pending { reply }).await
    }

    pub async fn take_stage(&self, requester: &str) -> Result<Option<PairingStage>, CoreError> {
        let requester = requester.to_owned();
        self.ask(|reply| Command::TakeStage { requester, reply })
            .await
    }

    pub async fn put_stage(&self, requester: &str, stage: PairingStage) -> Result<(), CoreError> {
        let requester = requester.to_owned();
        tokio::time::timeout(
            CORE_REPLY_DEADLINE,
            self.tx.send(Command::PutStage { requester, stage }),
        )
        .await
        .map_err(|_| CoreError::Unavailable)?
        .map_err(|_| CoreError::Unavailable)
    }

    pub fn end_pairing(&self, requester: &str) {
        self.tell(Command::EndPairing {
            requester: requester.to_owned(),
        });
    }
}

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
    pairing: PairingBook<PinWaiter, PairingStage>,
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

/// First 16 hex digits of a fingerprint: enough to tell clients apart in logs.
pub fn short(fp: &str) -> &str {
    fp.get(..16).unwrap_or(fp)
}
