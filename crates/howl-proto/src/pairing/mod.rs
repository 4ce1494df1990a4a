//! GameStream PIN pairing (SHA-256 flavour, `appversion` 7.x), both sides.
//!
//! The client shows a 4-digit PIN, the operator types it into the host. The PIN never crosses
//! the network: both sides derive `K = SHA256(salt ‖ PIN)[..16]`, prove knowledge of it with
//! AES-128-ECB encrypted challenges, and exchange RSA signatures that bind each side's
//! certificate. At the end the host stores the client certificate (identified by the SHA-256
//! [`fingerprint`] of its DER) and the client pins the host certificate. Byte layouts:
//! reference part 1, section 4.3.
//!
//! # Server side: typed states
//!
//! Each "waiting for X" phase is its own type (STYLE practice 4); a step consumes the state and
//! returns the next one plus the [`PairResponse`] to send, so data
//! needed later (the AES key, `SS`, `SC`, the client's hash) exists only in the states that need
//! it and a step cannot run twice or out of order:
//!
//! ```text
//! ServerPairing::start(GetServerCert)   -> AwaitingPin
//! AwaitingPin::pin(PIN from the UI)     -> AwaitingClientChallenge     + reply (plaincert)
//! ..::client_challenge(E_K(CC), random) -> AwaitingServerChallengeResp + reply (challengeresponse)
//! ..::server_challenge_resp(E_K(hash))  -> AwaitingClientPairingSecret + reply (pairingsecret)
//! ..::client_pairing_secret(CS, sig)    -> PairedClient                (reply <paired>1</paired>)
//! ```
//!
//! Between HTTP requests the server keeps a [`ServerPairingState`] (an enum of those states)
//! and feeds each decoded [`PairRequest`] to
//! [`ServerPairingState::handle`]. Any error ends the pairing session; answer it with
//! [`PairingError::reply_xml`].
//!
//! # Client side
//!
//! [`client`] implements the same four steps from the client's point of view, so integration
//! tests can pair a Rust client with the server without Moonlight binaries.
//!
//! # Randomness and time
//!
//! None is drawn here: the server's `SS ‖ SC` and the client's salt, `CC` and `CS` are
//! arguments. RSA PKCS#1 v1.5 signing is deterministic. Session expiry is the caller's job.

pub mod client;
mod crypto;
mod server;

pub use crypto::{
    Certificate, Identity, aes_ecb_decrypt, aes_ecb_encrypt, aes_key, cert_der_from_pem,
    cert_signature_bytes, client_hash, fingerprint, server_challenge_hash, sha256,
    verify_signature,
};
pub use server::{
    AwaitingClientChallenge, AwaitingClientPairingSecret, AwaitingPin, AwaitingServerChallengeResp,
    PairedClient, ServerPairing, ServerPairingState, ServerStep, validate_pin,
};

#[cfg(doc)]
use crate::nvhttp::PairRequest;
use crate::nvhttp::{ErrorResponse, Fault, PairResponse};

/// The host's long-term identity: RSA key pair plus its self-signed certificate.
pub type ServerIdentity = Identity;

/// A client's identity (test client side).
pub type ClientIdentity = Identity;

/// Why a certificate could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Not a PEM `CERTIFICATE` block.
    #[error("not a PEM certificate")]
    Pem,
    /// The DER does not parse as an X.509 certificate (or has trailing bytes).
    #[error("not a valid X.509 certificate")]
    Der,
    /// The certificate's key is not RSA.
    #[error("certificate key is not RSA")]
    NotRsa,
    /// The RSA key is malformed or outside 2048..=8192 bits.
    #[error("certificate RSA key is malformed or of unsupported size")]
    BadRsaKey,
}

impl CertError {
    /// Who is at fault, assuming the certificate came from the peer.
    pub fn fault(self) -> Fault {
        match self {
            Self::Pem | Self::Der => Fault::MalformedInput,
            Self::NotRsa | Self::BadRsaKey => Fault::Unsupported,
        }
    }
}

/// Why a local identity (key + certificate files) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The key is not PEM `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY` (PKCS#1) with an RSA key.
    #[error("private key is not a PEM RSA key (PKCS#8 or PKCS#1)")]
    Key,
    /// The certificate is unusable.
    #[error("certificate: {0}")]
    Cert(CertError),
    /// The key pair does not belong to the certificate.
    #[error("private key does not match the certificate")]
    KeyCertMismatch,
}

/// Why a pairing step failed. Any error ends that pairing session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    /// The peer's certificate (client cert in step 1, `plaincert` on the client) is unusable.
    #[error("peer certificate: {0}")]
    Certificate(CertError),
    /// The operator's PIN is not exactly 4 ASCII digits.
    #[error("PIN must be exactly 4 ASCII digits")]
    InvalidPin,
    /// A request arrived for another step than the one this session is waiting for.
    #[error("pairing step {got} arrived while waiting for {expected}")]
    OutOfOrder {
        expected: &'static str,
        got: &'static str,
    },
    /// A challenge hash did not match: the two sides used different PINs (or someone
    /// tampered with the exchange). The host can only notice this in step 4.
    #[error("challenge hash mismatch: wrong PIN")]
    WrongPin,
    /// An RSA signature did not verify. Server side: the client does not hold its
    /// certificate's key. Client side: possible man-in-the-middle.
    #[error("signature does not verify")]
    BadSignature,
    /// Client side: the host answered `<paired>0</paired>`.
    #[error("host answered paired=0")]
    NotPaired,
    /// Client side: step 1 came back without `plaincert` ("another pairing is in progress").
    #[error("host is busy with another pairing")]
    PairingInProgress,
    /// A reply field is missing or has the wrong length.
    #[error("reply field {0} is missing or has the wrong length")]
    BadField(&'static str),
    /// The crypto library failed on valid input: a bug or resource exhaustion, not the peer.
    #[error("internal crypto failure")]
    Crypto,
}

impl PairingError {
    /// Who is at fault; see [`Fault`].
    pub fn fault(&self) -> Fault {
        match self {
            Self::Certificate(e) => e.fault(),
            Self::InvalidPin => Fault::LocalMisuse,
            Self::OutOfOrder { .. }
            | Self::WrongPin
            | Self::BadSignature
            | Self::NotPaired
            | Self::PairingInProgress => Fault::PeerMisbehaved,
            Self::BadField(_) => Fault::MalformedInput,
            Self::Crypto => Fault::Internal,
        }
    }

    /// The XML reply a host sends for this error (always with HTTP 200).
    ///
    /// A failed check in step 4 (wrong PIN, bad signature) is `status_code="200"` with
    /// `<paired>0</paired>`, which clients show as "Pairing failed"; protocol violations get
    /// Sunshine's `status_code="400"` plus `<paired>0</paired>`; internal failures 500.
    pub fn reply_xml(&self) -> String {
        match self.fault() {
            Fault::Internal => ErrorResponse::pair_failed(500, self.to_string()).to_xml(),
            _ if matches!(self, Self::WrongPin | Self::BadSignature) => {
                PairResponse::failed().to_xml()
            }
            _ => ErrorResponse::pair_failed(400, self.to_string()).to_xml(),
        }
    }
}

impl From<CertError> for PairingError {
    fn from(e: CertError) -> Self {
        Self::Certificate(e)
    }
}
