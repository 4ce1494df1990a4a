//! The client's side of pairing, for Rust test clients (same typed-state style as the host).
//!
//! ```text
//! ClientPairing::start(PIN, salt)              -> AwaitingServerCert        + step-1 request
//! ..::server_cert(reply, CC)                   -> AwaitingChallengeResponse + step-2 request
//! ..::challenge_response(reply, CS)            -> AwaitingPairingSecret     + step-3 request
//! ..::pairing_secret(reply)                    -> AwaitingPairResult        + step-4 request
//!     (checks the host's signature: MITM, then H1: wrong PIN — like Moonlight does here)
//! ..::pair_result(reply)                       -> PairedServer
//! ```
//!
//! Randomness (salt, `CC`, `CS`) is passed in by the caller.

use aws_lc_rs::constant_time::verify_slices_are_equal;

use super::crypto::{
    Certificate, aes_ecb_decrypt, aes_ecb_encrypt, aes_key, client_hash, server_challenge_hash,
};
use super::{ClientIdentity, PairingError};
use crate::nvhttp::{GetServerCert, PairRequest, PairResponse};

fn require_paired(reply: &PairResponse) -> Result<(), PairingError> {
    if reply.paired {
        Ok(())
    } else {
        Err(PairingError::NotPaired)
    }
}

/// Entry point of the client state machine.
#[derive(Debug, Clone, Copy)]
pub struct ClientPairing;

impl ClientPairing {
    /// Builds step 1 (`getservercert`) from the PIN the client displays and 16 random bytes
    /// of salt.
    pub fn start(
        pin: &str,
        salt: [u8; 16],
        identity: &ClientIdentity,
    ) -> (AwaitingServerCert, PairRequest) {
        let request = PairRequest::GetServerCert(GetServerCert {
            salt,
            client_cert_pem: identity.cert_pem().to_vec(),
        });
        (
            AwaitingServerCert {
                key: aes_key(&salt, pin),
            },
            request,
        )
    }
}

/// Step 1 sent; waiting for the host's certificate.
#[derive(Debug, Clone)]
pub struct AwaitingServerCert {
    key: [u8; 16],
}

impl AwaitingServerCert {
    /// Reads `plaincert` and builds step 2 from 16 random bytes `CC`.
    pub fn server_cert(
        self,
        reply: &PairResponse,
        client_challenge: [u8; 16],
    ) -> Result<(AwaitingChallengeResponse, PairRequest), PairingError> {
        require_paired(reply)?;
        let pem = match &reply.plaincert {
            Some(pem) if !pem.is_empty() => pem,
            _ => return Err(PairingError::PairingInProgress),
        };
        let server = Certificate::parse(pem)?;
        let request = PairRequest::ClientChallenge(aes_ecb_encrypt(&self.key, client_challenge)?);
        Ok((
            AwaitingChallengeResponse {
                key: self.key,
                server,
                client_challenge,
            },
            request,
        ))
    }
}

/// Step 2 sent; waiting for `challengeresponse`.
#[derive(Debug, Clone)]
pub struct AwaitingChallengeResponse {
    key: [u8; 16],
    server: Certificate,
    client_challenge: [u8; 16],
}

impl AwaitingChallengeResponse {
    /// Decrypts `H1' ‖ SC` and builds step 3 from 16 random bytes `CS`.
    pub fn challenge_response(
        self,
        reply: &PairResponse,
        client_secret: [u8; 16],
        identity: &ClientIdentity,
    ) -> Result<(AwaitingPairingSecret, PairRequest), PairingError> {
        require_paired(reply)?;
        let blob: [u8; 48] = reply
            .challenge_response
            .as_deref()
            .and_then(|b| b.try_into().ok())
            .ok_or(PairingError::BadField("challengeresponse"))?;
        let plain = aes_ecb_decrypt(&self.key, blob)?;
        let mut server_hash = [0u8; 32];
        server_hash.copy_from_slice(&plain[..32]);
        let mut server_challenge = [0u8; 16];
        server_challenge.copy_from_slice(&plain[32..]);
        let hash = client_hash(&server_challenge, identity.cert_signature(), &client_secret);
        let request = PairRequest::ServerChallengeResp(aes_ecb_encrypt(&self.key, hash)?);
        Ok((
            AwaitingPairingSecret {
                server: self.server,
                client_challenge: self.client_challenge,
                server_hash,
                client_secret,
            },
            request,
        ))
    }
}

/// Step 3 sent; waiting for `pairingsecret`.
#[derive(Debug, Clone)]
pub struct AwaitingPairingSecret {
    server: Certificate,
    client_challenge: [u8; 16],
    server_hash: [u8; 32],
    client_secret: [u8; 16],
}

impl AwaitingPairingSecret {
    /// Checks the host's signature over `SS` ([`PairingError::BadSignature`]: possible MITM)
    /// and then `H1` ([`PairingError::WrongPin`]), and builds step 4 (`CS ‖ SIGN(CS)`).
    /// A real client calls `/unpair` after either error.
    pub fn pairing_secret(
        self,
        reply: &PairResponse,
        identity: &ClientIdentity,
    ) -> Result<(AwaitingPairResult, PairRequest), PairingError> {
        require_paired(reply)?;
        let secret = reply
            .pairing_secret
            .as_deref()
            .filter(|s| s.len() > 16)
            .ok_or(PairingError::BadField("pairingsecret"))?;
        let (ss, signature) = secret.split_at(16);
        if !self.server.verify(ss, signature) {
            return Err(PairingError::BadSignature);
        }
        let mut server_secret = [0u8; 16];
        server_secret.copy_from_slice(ss);
        let expected = server_challenge_hash(
            &self.client_challenge,
            self.server.signature(),
            &server_secret,
        );
        verify_slices_are_equal(&expected, &self.server_hash)
            .map_err(|_| PairingError::WrongPin)?;
        let request = PairRequest::ClientPairingSecret {
            secret: self.client_secret,
            signature: identity.sign(&self.client_secret)?,
        };
        Ok((
            AwaitingPairResult {
                server: self.server,
            },
            request,
        ))
    }
}

/// Step 4 sent; waiting for the host's verdict.
#[derive(Debug, Clone)]
pub struct AwaitingPairResult {
    server: Certificate,
}

impl AwaitingPairResult {
    /// `paired=1` completes pairing; pin the returned certificate for TLS.
    pub fn pair_result(self, reply: &PairResponse) -> Result<PairedServer, PairingError> {
        require_paired(reply)?;
        Ok(PairedServer {
            cert_pem: self.server.pem().to_vec(),
            cert_der: self.server.der().to_vec(),
            fingerprint: self.server.fingerprint(),
        })
    }
}

/// A host this client paired with: its pinned certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairedServer {
    pub cert_pem: Vec<u8>,
    pub cert_der: Vec<u8>,
    pub fingerprint: [u8; 32],
}
