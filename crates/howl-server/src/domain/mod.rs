//! The core actor: the one owner of the persisted domain state (paired clients, apps,
//! pairing requests, tenants), and the event bus operators watch.
//!
//! Everything else talks to it through [`CoreHandle`], whose methods send a command on a
//! bounded channel and await the reply with a deadline. The actor never awaits anything but
//! its own channel and its timer, so it cannot be wedged by a slow client, a slow API caller
//! or (later) a media worker: the property seed 000 lacked.

mod actor;
pub mod auth;
pub mod events;

pub use actor::spawn;

use auth::TenantIndex;
use events::EventBus;
use howl_core::{App, AppCatalog, PairedClient, PendingPairing, PinError, StoredApp, TenantRecord};
use howl_proto::pairing::ServerPairingState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

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
        reply: oneshot::Sender<Option<ServerPairingState>>,
    },
    PutStage {
        requester: String,
        stage: ServerPairingState,
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

    pub async fn take_stage(
        &self,
        requester: &str,
    ) -> Result<Option<ServerPairingState>, CoreError> {
        let requester = requester.to_owned();
        self.ask(|reply| Command::TakeStage { requester, reply })
            .await
    }

    pub async fn put_stage(
        &self,
        requester: &str,
        stage: ServerPairingState,
    ) -> Result<(), CoreError> {
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

/// First 16 hex digits of a fingerprint: enough to tell clients apart in logs.
pub fn short(fp: &str) -> &str {
    fp.get(..16).unwrap_or(fp)
}
