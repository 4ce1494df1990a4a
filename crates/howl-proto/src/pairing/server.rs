//! The host's side of pairing as typed states (see the [module docs](super)).

use aws_lc_rs::constant_time::verify_slices_are_equal;

use super::crypto::{
    Certificate, aes_ecb_decrypt, aes_ecb_encrypt, aes_key, client_hash, server_challenge_hash,
};
use super::{PairingError, ServerIdentity};
use crate::nvhttp::{GetServerCert, PairRequest, PairResponse};

/// Checks an operator-entered PIN: exactly 4 ASCII digits, like Sunshine and every official
/// client. Call it before [`AwaitingPin::pin`] to re-prompt without losing the session.
pub fn validate_pin(pin: &str) -> Result<(), PairingError> {
    if pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(PairingError::InvalidPin)
    }
}

/// Entry point of the host state machine.
#[derive(Debug, Clone, Copy)]
pub struct ServerPairing;

impl ServerPairing {
    /// Step 1 arrived: validates the client certificate and waits for the operator's PIN.
    ///
    /// Hold the HTTP response open until the PIN is entered (clients wait without timeout);
    /// the expiry of an abandoned session is the caller's job.
    pub fn start(request: GetServerCert) -> Result<AwaitingPin, PairingError> {
        let client = Certificate::parse(&request.client_cert_pem)?;
        Ok(AwaitingPin {
            salt: request.salt,
            client,
        })
    }
}

/// Waiting for the operator to type the PIN shown by the client.
#[derive(Debug, Clone)]
pub struct AwaitingPin {
    salt: [u8; 16],
    client: Certificate,
}

impl AwaitingPin {
    /// The certificate the client presented (e.g. to show its fingerprint next to the prompt).
    pub fn client_cert(&self) -> &Certificate {
        &self.client
    }

    /// SHA-256 of the client certificate's DER: the identity it will be stored under.
    pub fn client_fingerprint(&self) -> [u8; 32] {
        self.client.fingerprint()
    }

    /// The PIN arrived: derives `K` and answers step 1 with the server certificate.
    /// A malformed PIN consumes the session; use [`validate_pin`] first to re-prompt instead.
    pub fn pin(
        self,
        pin: &str,
        server: &ServerIdentity,
    ) -> Result<(AwaitingClientChallenge, PairResponse), PairingError> {
        validate_pin(pin)?;
        let reply = PairResponse {
            paired: true,
            plaincert: Some(server.cert_pem().to_vec()),
            ..PairResponse::default()
        };
        let next = AwaitingClientChallenge {
            key: aes_key(&self.salt, pin),
            client: self.client,
        };
        Ok((next, reply))
    }
}

/// Step 1 answered; waiting for `clientchallenge`.
#[derive(Debug, Clone)]
pub struct AwaitingClientChallenge {
    key: [u8; 16],
    client: Certificate,
}

impl AwaitingClientChallenge {
    /// Step 2: decrypts `CC`, answers `E_K(H1 ‖ SC)`.
    ///
    /// `random` is 32 fresh random bytes from the caller: `SS` (server secret) ‖ `SC` (server
    /// challenge).
    pub fn client_challenge(
        self,
        encrypted_challenge: [u8; 16],
        random: [u8; 32],
        server: &ServerIdentity,
    ) -> Result<(AwaitingServerChallengeResp, PairResponse), PairingError> {
        let (server_secret, server_challenge) = split_random(random);
        let challenge = aes_ecb_decrypt(&self.key, encrypted_challenge)?;
        let h1 = server_challenge_hash(&challenge, server.cert_signature(), &server_secret);
        let mut plain = [0u8; 48];
        plain[..32].copy_from_slice(&h1);
        plain[32..].copy_from_slice(&server_challenge);
        let reply = PairResponse {
            paired: true,
            challenge_response: Some(aes_ecb_encrypt(&self.key, plain)?.to_vec()),
            ..PairResponse::default()
        };
        let next = AwaitingServerChallengeResp {
            key: self.key,
            client: self.client,
            server_secret,
            server_challenge,
        };
        Ok((next, reply))
    }
}

fn split_random(random: [u8; 32]) -> ([u8; 16], [u8; 16]) {
    let mut a = [0u8; 16];
    let mut b = [0u8; 16];
    a.copy_from_slice(&random[..16]);
    b.copy_from_slice(&random[16..]);
    (a, b)
}

/// Step 2 answered; waiting for `serverchallengeresp`.
#[derive(Debug, Clone)]
pub struct AwaitingServerChallengeResp {
    key: [u8; 16],
    client: Certificate,
    server_secret: [u8; 16],
    server_challenge: [u8; 16],
}

impl AwaitingServerChallengeResp {
    /// Step 3: keeps the client's encrypted hash for step 4, answers `SS ‖ SIGN(SS)`.
    pub fn server_challenge_resp(
        self,
        encrypted_hash: [u8; 32],
        server: &ServerIdentity,
    ) -> Result<(AwaitingClientPairingSecret, PairResponse), PairingError> {
        let client_hash = aes_ecb_decrypt(&self.key, encrypted_hash)?;
        let mut secret = self.server_secret.to_vec();
        secret.extend_from_slice(&server.sign(&self.server_secret)?);
        let reply = PairResponse {
            paired: true,
            pairing_secret: Some(secret),
            ..PairResponse::default()
        };
        let next = AwaitingClientPairingSecret {
            client: self.client,
            server_challenge: self.server_challenge,
            client_hash,
        };
        Ok((next, reply))
    }
}

/// Step 3 answered; waiting for `clientpairingsecret`.
#[derive(Debug, Clone)]
pub struct AwaitingClientPairingSecret {
    client: Certificate,
    server_challenge: [u8; 16],
    client_hash: [u8; 32],
}

impl AwaitingClientPairingSecret {
    /// Step 4: checks **both** the client's hash (proves the same PIN) and its signature over
    /// `CS` (proves it holds the certificate's key). On success persist the returned client
    /// and answer [`PairResponse::paired`]; on error answer [`PairingError::reply_xml`].
    pub fn client_pairing_secret(
        self,
        client_secret: [u8; 16],
        signature: &[u8],
    ) -> Result<PairedClient, PairingError> {
        let expected = client_hash(
            &self.server_challenge,
            self.client.signature(),
            &client_secret,
        );
        verify_slices_are_equal(&expected, &self.client_hash)
            .map_err(|_| PairingError::WrongPin)?;
        if !self.client.verify(&client_secret, signature) {
            return Err(PairingError::BadSignature);
        }
        Ok(PairedClient {
            cert_pem: self.client.pem().to_vec(),
            cert_der: self.client.der().to_vec(),
            fingerprint: self.client.fingerprint(),
        })
    }
}

/// A client that completed pairing: store it; match later TLS peers by `fingerprint` (or DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairedClient {
    /// The client certificate as PEM text, as the client sent it.
    pub cert_pem: Vec<u8>,
    /// Its DER.
    pub cert_der: Vec<u8>,
    /// SHA-256 of the DER: the client's identity.
    pub fingerprint: [u8; 32],
}

/// The state a host stores between `/pair` requests of one pairing session.
#[derive(Debug, Clone)]
pub enum ServerPairingState {
    AwaitingPin(AwaitingPin),
    AwaitingClientChallenge(AwaitingClientChallenge),
    AwaitingServerChallengeResp(AwaitingServerChallengeResp),
    AwaitingClientPairingSecret(AwaitingClientPairingSecret),
}

/// What [`ServerPairingState::handle`] produced.
#[derive(Debug, Clone)]
pub enum ServerStep {
    /// Send the reply and keep the new state for the next request.
    Continue(ServerPairingState, PairResponse),
    /// Pairing is complete: persist the client, then send the reply (`<paired>1</paired>`).
    Paired(PairedClient, PairResponse),
}

impl ServerPairingState {
    /// The request step this state waits for (`"pin"` while waiting for the operator).
    pub fn expected_step(&self) -> &'static str {
        match self {
            Self::AwaitingPin(_) => "pin",
            Self::AwaitingClientChallenge(_) => "clientchallenge",
            Self::AwaitingServerChallengeResp(_) => "serverchallengeresp",
            Self::AwaitingClientPairingSecret(_) => "clientpairingsecret",
        }
    }

    /// Feeds one decoded `/pair` request (steps 2–4). `random` is only used in step 2 (see
    /// [`AwaitingClientChallenge::client_challenge`]); pass fresh random bytes every time.
    /// Steps 1 and 5 are not handled here: step 1 starts a session with
    /// [`ServerPairing::start`] and step 5 is answered from the TLS layer's verdict alone.
    /// Any error ends the session.
    pub fn handle(
        self,
        request: PairRequest,
        random: [u8; 32],
        server: &ServerIdentity,
    ) -> Result<ServerStep, PairingError> {
        match (self, request) {
            (Self::AwaitingClientChallenge(s), PairRequest::ClientChallenge(cc)) => {
                let (next, reply) = s.client_challenge(cc, random, server)?;
                Ok(ServerStep::Continue(
                    Self::AwaitingServerChallengeResp(next),
                    reply,
                ))
            }
            (Self::AwaitingServerChallengeResp(s), PairRequest::ServerChallengeResp(h)) => {
                let (next, reply) = s.server_challenge_resp(h, server)?;
                Ok(ServerStep::Continue(
                    Self::AwaitingClientPairingSecret(next),
                    reply,
                ))
            }
            (
                Self::AwaitingClientPairingSecret(s),
                PairRequest::ClientPairingSecret { secret, signature },
            ) => {
                let client = s.client_pairing_secret(secret, &signature)?;
                Ok(ServerStep::Paired(client, PairResponse::paired()))
            }
            (state, request) => Err(PairingError::OutOfOrder {
                expected: state.expected_step(),
                got: request.step_name(),
            }),
        }
    }
}

impl From<AwaitingPin> for ServerPairingState {
    fn from(s: AwaitingPin) -> Self {
        Self::AwaitingPin(s)
    }
}

impl From<AwaitingClientChallenge> for ServerPairingState {
    fn from(s: AwaitingClientChallenge) -> Self {
        Self::AwaitingClientChallenge(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_hex<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// The golden vectors of reference part 1, section 4.6, run through the server's own
    /// step code with synthetic certificate signatures (`aa`×256 server, `bb`×256 client).
    #[test]
    fn golden_vectors_through_server_steps() {
        let salt: [u8; 16] = core::array::from_fn(|i| i as u8);
        let key = aes_key(&salt, "1234");
        let cc: [u8; 16] = from_hex("101112131415161718191a1b1c1d1e1f");
        let ss: [u8; 16] = from_hex("202122232425262728292a2b2c2d2e2f");
        let sc: [u8; 16] = from_hex("303132333435363738393a3b3c3d3e3f");
        let cs: [u8; 16] = from_hex("404142434445464748494a4b4c4d4e4f");
        let server_sig = [0xaa; 256];
        let client_sig = [0xbb; 256];

        let clientchallenge = aes_ecb_encrypt(&key, cc).unwrap();
        assert_eq!(
            hex::encode(clientchallenge),
            "5febcdc985b2baddd65925da162380eb"
        );

        let h1 = server_challenge_hash(&cc, &server_sig, &ss);
        assert_eq!(
            hex::encode(h1),
            "5a443e5f4039523e9f510420a4617124e661c7f390af8548ef38bbd56a249046"
        );
        let mut plain = [0u8; 48];
        plain[..32].copy_from_slice(&h1);
        plain[32..].copy_from_slice(&sc);
        assert_eq!(
            hex::encode(aes_ecb_encrypt(&key, plain).unwrap()),
            "a5b5382851dc1ffd3f8504194517a3b2b90009d43d229490b2f5ff948ddcaad9\
             58f1c991a85a76c2526eb7cf9453b7e7"
        );

        let hash = client_hash(&sc, &client_sig, &cs);
        assert_eq!(
            hex::encode(hash),
            "274acd4d55bfe0841f0dc8753ce3b02ba8a31540b1540a6229681acec4c2526c"
        );
        let serverchallengeresp = aes_ecb_encrypt(&key, hash).unwrap();
        assert_eq!(
            hex::encode(serverchallengeresp),
            "31be64da9cb19d43b98d4bbc10397fde443a6262eae17f3802a796d70c3d0b07"
        );

        // Step 4's hash check, with a state built from the vectors: right CS passes the hash
        // and then fails only on the (synthetic) signature; wrong CS is a wrong PIN.
        let mut client = Certificate::parse(include_bytes!(
            "../../tests/fixtures/pairing/client_cert.pem"
        ))
        .unwrap();
        client.set_signature_for_tests(client_sig.to_vec());
        let state = AwaitingClientPairingSecret {
            client,
            server_challenge: sc,
            client_hash: aes_ecb_decrypt(&key, serverchallengeresp).unwrap(),
        };
        assert_eq!(
            state.clone().client_pairing_secret(cs, &[0; 256]),
            Err(PairingError::BadSignature)
        );
        assert_eq!(
            state.client_pairing_secret([0; 16], &[0; 256]),
            Err(PairingError::WrongPin)
        );
    }

    #[test]
    fn pin_validation() {
        assert!(validate_pin("0123").is_ok());
        for bad in ["123", "12345", "12a4", "１２３４", "", " 123"] {
            assert_eq!(validate_pin(bad), Err(PairingError::InvalidPin), "{bad:?}");
        }
    }
}
