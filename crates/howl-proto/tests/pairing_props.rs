//! Property tests: certificate parsing and the pairing state machines never panic on hostile
//! input (STYLE practice 11).
//!
//! Case counts: the pure certificate parsers (`cert_signature_bytes`, `cert_der_from_pem`,
//! `ServerPairing::start`) get 100 000 generated inputs per test (`PARSER_CASES`). Tests that
//! run RSA operations per case use fewer: step 4 on the host (one RSA verify) 10 000, the
//! client's reply checks (one verify) 10 000, whole host sessions (one RSA-2048 sign each)
//! 1 000.

// Test helpers outside #[test] fns unwrap too: a panic here is a failed test, not a crash.
#![allow(clippy::unwrap_used)]

use howl_proto::nvhttp::{GetServerCert, PairRequest, PairResponse};
use std::sync::OnceLock;

use howl_proto::pairing::client::{
    AwaitingChallengeResponse, AwaitingPairingSecret, AwaitingServerCert, ClientPairing,
};
use howl_proto::pairing::{
    AwaitingClientPairingSecret, ClientIdentity, PairingError, ServerIdentity, ServerPairing,
    ServerPairingState, ServerStep, cert_der_from_pem, cert_signature_bytes,
};
use proptest::prelude::*;

const PARSER_CASES: u32 = 100_000;
const RSA_VERIFY_CASES: u32 = 10_000;
const RSA_SIGN_CASES: u32 = 1_000;

const SERVER_KEY: &[u8] = include_bytes!("fixtures/pairing/server_key.pem");
const SERVER_CERT: &[u8] = include_bytes!("fixtures/pairing/server_cert.pem");
const CLIENT_KEY: &[u8] = include_bytes!("fixtures/pairing/client_key.pem");
const CLIENT_CERT: &[u8] = include_bytes!("fixtures/pairing/client_cert.pem");
const CLIENT_CERT_DER: &[u8] = include_bytes!("fixtures/pairing/client_cert.der");

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Applies a few byte-level edits (flip, overwrite, insert, delete, truncate).
fn mutate(mut data: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(pos, op, value) in edits {
        if data.is_empty() {
            data.push(value);
            continue;
        }
        let i = pos % data.len();
        match op % 5 {
            0 => data[i] ^= 1 << (value % 8),
            1 => data[i] = value,
            2 => data.insert(i, value),
            3 => {
                data.remove(i);
            }
            _ => data.truncate(i),
        }
    }
    data
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..5)
}

/// Small edits concentrated in the DER header area, where length fields live.
fn header_edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((0usize..64, 0u8..2, any::<u8>()), 1..3)
}

fn start(client_cert_pem: Vec<u8>) -> Result<(), PairingError> {
    ServerPairing::start(GetServerCert {
        salt: [0; 16],
        client_cert_pem,
    })
    .map(|_| ())
}

fn server() -> ServerIdentity {
    ServerIdentity::from_pem(SERVER_KEY, SERVER_CERT).unwrap()
}

fn client() -> ClientIdentity {
    ClientIdentity::from_pem(CLIENT_KEY, CLIENT_CERT).unwrap()
}

/// The right `CS` for [`host_step4`]'s session, so some cases reach the RSA verification.
const CLIENT_SECRET: [u8; 16] = [4; 16];

/// A host session waiting for step 4, built once (it costs one RSA signature) and cloned into
/// every case.
fn host_step4() -> &'static AwaitingClientPairingSecret {
    static STATE: OnceLock<AwaitingClientPairingSecret> = OnceLock::new();
    STATE.get_or_init(|| {
        let (server_id, client_id) = (server(), client());
        let (c, req) = ClientPairing::start("1234", [1; 16], &client_id);
        let PairRequest::GetServerCert(step1) = req else {
            unreachable!()
        };
        let (s, reply) = ServerPairing::start(step1)
            .unwrap()
            .pin("1234", &server_id)
            .unwrap();
        let (c, PairRequest::ClientChallenge(cc)) = c.server_cert(&reply, [2; 16]).unwrap() else {
            unreachable!()
        };
        let (s, reply) = s.client_challenge(cc, [3; 32], &server_id).unwrap();
        let (_, PairRequest::ServerChallengeResp(h)) = c
            .challenge_response(&reply, CLIENT_SECRET, &client_id)
            .unwrap()
        else {
            unreachable!()
        };
        s.server_challenge_resp(h, &server_id).unwrap().0
    })
}

/// The client's states after steps 1 and 2 against a real host, built once.
fn client_states() -> &'static (
    AwaitingServerCert,
    AwaitingChallengeResponse,
    AwaitingPairingSecret,
) {
    static STATES: OnceLock<(
        AwaitingServerCert,
        AwaitingChallengeResponse,
        AwaitingPairingSecret,
    )> = OnceLock::new();
    STATES.get_or_init(|| {
        let (server_id, client_id) = (server(), client());
        let (c1, req) = ClientPairing::start("1234", [1; 16], &client_id);
        let PairRequest::GetServerCert(step1) = req else {
            unreachable!()
        };
        let (s, reply) = ServerPairing::start(step1)
            .unwrap()
            .pin("1234", &server_id)
            .unwrap();
        let (c2, PairRequest::ClientChallenge(cc)) =
            c1.clone().server_cert(&reply, [2; 16]).unwrap()
        else {
            unreachable!()
        };
        let (_, reply) = s.client_challenge(cc, [3; 32], &server_id).unwrap();
        let (c3, _) = c2
            .clone()
            .challenge_response(&reply, CLIENT_SECRET, &client_id)
            .unwrap();
        (c1, c2, c3)
    })
}

fn identities() -> &'static (ServerIdentity, ClientIdentity) {
    static IDS: OnceLock<(ServerIdentity, ClientIdentity)> = OnceLock::new();
    IDS.get_or_init(|| (server(), client()))
}

fn opt_bytes(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..max))
}

fn pair_response() -> impl Strategy<Value = PairResponse> {
    (any::<bool>(), opt_bytes(64), opt_bytes(80), opt_bytes(300)).prop_map(
        |(paired, plaincert, challenge_response, pairing_secret)| PairResponse {
            paired,
            plaincert,
            challenge_response,
            pairing_secret,
        },
    )
}

fn pair_request() -> impl Strategy<Value = PairRequest> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(PairRequest::ClientChallenge),
        any::<[u8; 32]>().prop_map(PairRequest::ServerChallengeResp),
        (
            any::<[u8; 16]>(),
            prop::collection::vec(any::<u8>(), 1..300)
        )
            .prop_map(|(secret, signature)| PairRequest::ClientPairingSecret { secret, signature }),
        Just(PairRequest::PairChallenge),
    ]
}

proptest! {
    #![proptest_config(config(PARSER_CASES))]

    #[test]
    fn cert_parsers_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = cert_signature_bytes(&bytes);
        let _ = cert_der_from_pem(&bytes);
        let _ = start(bytes);
    }

    #[test]
    fn cert_parsers_never_panic_on_mutated_der(edits in edits()) {
        let der = mutate(CLIENT_CERT_DER.to_vec(), &edits);
        let _ = cert_signature_bytes(&der);
        let _ = start(der);
    }

    #[test]
    fn cert_parsers_never_panic_on_mutated_der_headers(edits in header_edits()) {
        let der = mutate(CLIENT_CERT_DER.to_vec(), &edits);
        let _ = cert_signature_bytes(&der);
        let _ = start(der);
    }

    #[test]
    fn cert_parsers_never_panic_on_mutated_pem(edits in edits()) {
        let pem = mutate(CLIENT_CERT.to_vec(), &edits);
        let _ = cert_der_from_pem(&pem);
        let _ = cert_signature_bytes(&pem);
        let _ = start(pem);
    }
}

proptest! {
    #![proptest_config(config(RSA_VERIFY_CASES))]

    #[test]
    fn host_step4_never_panics_and_never_accepts_forgeries(
        right_secret in any::<bool>(),
        secret in any::<[u8; 16]>(),
        signature in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let cs = if right_secret { CLIENT_SECRET } else { secret };
        let result = host_step4().clone().client_pairing_secret(cs, &signature);
        let expected = if cs == CLIENT_SECRET {
            PairingError::BadSignature
        } else {
            PairingError::WrongPin
        };
        prop_assert_eq!(result.unwrap_err(), expected);
    }

    #[test]
    fn client_never_panics_on_arbitrary_replies(reply in pair_response(), step in 0u8..3) {
        let (c1, c2, c3) = client_states();
        let client_id = &identities().1;
        match step {
            0 => {
                let _ = c1.clone().server_cert(&reply, [2; 16]);
            }
            1 => {
                let _ = c2.clone().challenge_response(&reply, CLIENT_SECRET, client_id);
            }
            _ => {
                // A random pairing secret never carries a valid host signature.
                prop_assert!(c3.clone().pairing_secret(&reply, client_id).is_err());
            }
        }
    }
}

proptest! {
    #![proptest_config(config(RSA_SIGN_CASES))]

    #[test]
    fn host_sessions_never_panic_on_arbitrary_step_sequences(
        cc in any::<[u8; 16]>(),
        hash in prop::option::of(any::<[u8; 32]>()),
        tail in prop::collection::vec(pair_request(), 0..3),
        random in any::<[u8; 32]>(),
    ) {
        // Mostly in-order prefixes, so about half the cases reach the host's signing step.
        let requests = std::iter::once(PairRequest::ClientChallenge(cc))
            .chain(hash.map(PairRequest::ServerChallengeResp))
            .chain(tail);
        let (server_id, client_id) = identities();
        let (_, req) = ClientPairing::start("1234", [1; 16], client_id);
        let PairRequest::GetServerCert(step1) = req else {
            unreachable!()
        };
        let (s, _) = ServerPairing::start(step1).unwrap().pin("1234", server_id).unwrap();
        let mut state = Some(ServerPairingState::from(s));
        for request in requests {
            let Some(current) = state.take() else {
                break;
            };
            match current.handle(request, random, server_id) {
                Ok(ServerStep::Continue(next, _)) => state = Some(next),
                // Random bytes never complete a pairing.
                Ok(ServerStep::Paired(..)) => prop_assert!(false, "forged pairing accepted"),
                Err(_) => break,
            }
        }
    }
}
