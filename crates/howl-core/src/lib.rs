//! howl-core: the domain of a howl host, free of sockets and HTTP.
//!
//! It knows who is paired (by certificate fingerprint, never by the `uniqueid` a client claims),
//! which apps exist and with which stable IDs, which pairing requests wait for an operator's
//! PIN, and how all of that is persisted. [`domain`] holds the session domain: producers,
//! viewers and every lifecycle rule between them, as a sans-IO state machine the server's engine
//! drives. Time is an input (`now: Instant` arguments); the
//! server's actor owns one `Core`-shaped set of these values and is the only writer.

pub mod apps;
pub mod clients;
pub mod domain;
pub mod encryption;
pub mod nodes;
pub mod pairing;
pub mod routing;
pub mod session;
pub mod state;
pub mod store;
pub mod tenants;

pub use apps::{App, AppCatalog, AppKind, AppSource, NodeRequirements, StoredApp};
pub use clients::{ClientRegistry, PairedClient};
pub use pairing::{PairingBook, PendingPairing, PinError};
pub use session::{EndReason, SessionId};
pub use state::{PersistedState, SCHEMA_VERSION};
pub use store::StoreError;
pub use tenants::TenantRecord;
