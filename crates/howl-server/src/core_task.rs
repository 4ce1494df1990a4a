//! The core actor: the one owner of domain state (paired clients, apps, pairing requests).
//!
//! Everything else talks to it through [`CoreHandle`], whose methods send a command on a
//! bounded channel and await the reply with a deadline. The actor never awaits anything but
//! its own channel and its timer, so it cannot be wedged by a slow client, a slow API caller
//! or (later) a media worker: the property seed 000 lacked.

use crate::nvhttp::PairingStage;
use howl_core::{AppCatalog, ClientRegistry, PairedClient, PairingBook, PendingPairing, PinError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
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
}

/// A cheap, cloneable handle to the core actor.
#[derive(Clone, Debug)]
pub struct CoreHandle {
    tx: mpsc::Sender<Command>,
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
    pairing: PairingBook<PinWaiter, PairingStage>,
    pairing_window: Duration,
    state_file: PathBuf,
    uniqueid: String,
}

/// Starts the actor. It runs until `shutdown` fires or every handle is dropped.
pub fn spawn(
    state: howl_core::PersistedState,
    state_file: PathBuf,
    apps: AppCatalog,
    pairing_window: Duration,
    shutdown: CancellationToken,
) -> (CoreHandle, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel(CORE_COMMAND_CAPACITY);
    let mut core = Core {
        clients: ClientRegistry::from_list(state.clients),
        apps: Arc::new(apps),
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
    (CoreHandle { tx }, task)
}

impl Core {
    fn persist(&self) -> Result<(), CoreError> {
        let mut s = howl_core::PersistedState::new(self.uniqueid.clone());
        s.clients = self.clients.to_list();
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
                }
                let _ = reply.send(r);
            }
            Command::RemoveClient { fingerprint, reply } => {
                let r = match self.clients.remove(&fingerprint) {
                    None => Err(CoreError::UnknownClient(fingerprint)),
                    Some(c) => match self.persist() {
                        Ok(()) => {
                            tracing::info!(fingerprint = %short(&c.fingerprint), "client unpaired");
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
                    Ok(id) => tracing::info!(
                        id,
                        %requester,
                        fingerprint = %short(&fingerprint),
                        "pairing request waits for a PIN (submit it with `howl pin` or the API)"
                    ),
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
        }
    }
}

/// First 16 hex digits of a fingerprint: enough to tell clients apart in logs.
pub fn short(fp: &str) -> &str {
    fp.get(..16).unwrap_or(fp)
}
