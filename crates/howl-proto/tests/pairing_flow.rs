//! End-to-end pairing between the host state machine and the Rust test client, with real
//! RSA-2048 keys and certificates made by the OpenSSL CLI (see `fixtures/pairing/README.md`).
//! Every message goes through its wire form (query string / XML) in both directions.

// Test helpers outside #[test] fns unwrap too: a panic here is a failed test, not a crash.
#![allow(clippy::unwrap_used)]

use howl_proto::nvhttp::{Fault, PairRequest, PairResponse, Query, XmlDoc};
use howl_proto::pairing::client::{ClientPairing, PairedServer};
use howl_proto::pairing::{
    CertError, ClientIdentity, IdentityError, PairedClient, PairingError, ServerIdentity,
    ServerPairing, ServerPairingState, ServerStep, cert_der_from_pem, cert_signature_bytes,
    fingerprint, verify_signature,
};

const SERVER_KEY: &[u8] = include_bytes!("fixtures/pairing/server_key.pem");
const SERVER_CERT: &[u8] = include_bytes!("fixtures/pairing/server_cert.pem");
const CLIENT_KEY: &[u8] = include_bytes!("fixtures/pairing/client_key.pem");
const CLIENT_CERT: &[u8] = include_bytes!("fixtures/pairing/client_cert.pem");
const CLIENT_CERT_DER: &[u8] = include_bytes!("fixtures/pairing/client_cert.der");
const CLIENT_CERT_SIG_HEX: &str = include_str!("fixtures/pairing/client_cert_signature.hex");
const CLIENT_CERT_FP_HEX: &str = include_str!("fixtures/pairing/client_cert_fingerprint.hex");
const MESSAGE: &[u8] = include_bytes!("fixtures/pairing/message.bin");
const MESSAGE_SERVER_SIG: &[u8] = include_bytes!("fixtures/pairing/message.server.sig");
const MESSAGE_CLIENT_SIG: &[u8] = include_bytes!("fixtures/pairing/message.client.sig");

fn server() -> ServerIdentity {
    ServerIdentity::from_pem(SERVER_KEY, SERVER_CERT).unwrap()
}

fn client() -> ClientIdentity {
    ClientIdentity::from_pem(CLIENT_KEY, CLIENT_CERT).unwrap()
}

/// Client → wire → host: query string, as an HTTP server would see it.
fn over_query(request: &PairRequest) -> PairRequest {
    let mut q = Query::new();
    q.push("uniqueid", "0123456789ABCDEF")
        .push("uuid", "6f0a3c1e-1b7e-4a55-9a37-0d1f2b3c4d5e");
    request.append_to(&mut q);
    q.push("devicename", "roth").push("updateState", "1");
    let wire = q.to_query_string();
    PairRequest::from_query(&Query::parse(&wire).unwrap()).unwrap()
}

/// Host → wire → client: XML document.
fn over_xml(reply: &PairResponse) -> PairResponse {
    PairResponse::from_xml(&XmlDoc::parse(reply.to_xml().as_bytes()).unwrap()).unwrap()
}

struct Outcome {
    client: Result<PairedServer, PairingError>,
    server: Option<Result<PairedClient, PairingError>>,
}

/// Runs the four steps. `client_pin`/`server_pin` may differ to simulate a wrong PIN.
fn pair(client_pin: &str, server_pin: &str, tamper: impl Fn(&mut PairResponse)) -> Outcome {
    let (server_id, client_id) = (server(), client());
    let salt = [0x5a; 16];
    let (c, req) = ClientPairing::start(client_pin, salt, &client_id);
    let PairRequest::GetServerCert(step1) = over_query(&req) else {
        panic!("step 1 decoded as another step");
    };
    let (s, reply) = ServerPairing::start(step1)
        .unwrap()
        .pin(server_pin, &server_id)
        .unwrap();
    let mut state = ServerPairingState::from(s);

    let (c, req) = c.server_cert(&over_xml(&reply), [0x11; 16]).unwrap();
    let ServerStep::Continue(next, reply) = state
        .handle(over_query(&req), [0x22; 32], &server_id)
        .unwrap()
    else {
        panic!("paired too early");
    };
    state = next;

    let (c, req) = c
        .challenge_response(&over_xml(&reply), [0x33; 16], &client_id)
        .unwrap();
    let ServerStep::Continue(next, mut reply) = state
        .handle(over_query(&req), [0x44; 32], &server_id)
        .unwrap()
    else {
        panic!("paired too early");
    };
    state = next;
    tamper(&mut reply);

    let (c, req) = match c.pairing_secret(&over_xml(&reply), &client_id) {
        Ok(v) => v,
        Err(e) => {
            return Outcome {
                client: Err(e),
                server: None,
            };
        }
    };
    match state.handle(over_query(&req), [0x55; 32], &server_id) {
        Ok(ServerStep::Paired(paired, reply)) => Outcome {
            client: c.pair_result(&over_xml(&reply)),
            server: Some(Ok(paired)),
        },
        Ok(ServerStep::Continue(..)) => panic!("not finished after step 4"),
        Err(e) => Outcome {
            client: Err(PairingError::NotPaired),
            server: Some(Err(e)),
        },
    }
}

#[test]
fn fixtures_agree_with_openssl() {
    let (server_id, client_id) = (server(), client());
    assert_eq!(
        cert_signature_bytes(CLIENT_CERT).unwrap(),
        hex::decode(CLIENT_CERT_SIG_HEX.trim()).unwrap()
    );
    assert_eq!(
        cert_signature_bytes(CLIENT_CERT_DER).unwrap(),
        client_id.cert_signature()
    );
    assert_eq!(client_id.cert_signature().len(), 256);
    assert_eq!(cert_der_from_pem(CLIENT_CERT).unwrap(), CLIENT_CERT_DER);
    assert_eq!(
        hex::encode(fingerprint(CLIENT_CERT_DER)),
        CLIENT_CERT_FP_HEX.trim()
    );
    assert_eq!(client_id.fingerprint(), fingerprint(CLIENT_CERT_DER));
    // PKCS#1 v1.5 is deterministic: our signature equals OpenSSL's byte for byte.
    assert_eq!(server_id.sign(MESSAGE).unwrap(), MESSAGE_SERVER_SIG);
    assert_eq!(client_id.sign(MESSAGE).unwrap(), MESSAGE_CLIENT_SIG);
    assert!(client_id.cert().verify(MESSAGE, MESSAGE_CLIENT_SIG));
    assert!(verify_signature(
        server_id.cert().public_key(),
        MESSAGE,
        MESSAGE_SERVER_SIG
    ));
    assert!(!server_id.cert().verify(MESSAGE, MESSAGE_CLIENT_SIG));
}

#[test]
fn identity_errors() {
    assert_eq!(
        ServerIdentity::from_pem(CLIENT_KEY, SERVER_CERT).unwrap_err(),
        IdentityError::KeyCertMismatch
    );
    assert_eq!(
        ServerIdentity::from_pem(SERVER_CERT, SERVER_CERT).unwrap_err(),
        IdentityError::Key
    );
    assert_eq!(
        ServerIdentity::from_pem(SERVER_KEY, SERVER_KEY).unwrap_err(),
        IdentityError::Cert(CertError::Pem)
    );
}

#[test]
fn full_round_trip_pairs_both_sides() {
    let outcome = pair("1234", "1234", |_| {});
    let paired_client = outcome.server.unwrap().unwrap();
    assert_eq!(paired_client.fingerprint, client().fingerprint());
    assert_eq!(paired_client.cert_der, CLIENT_CERT_DER);
    assert_eq!(paired_client.cert_pem, CLIENT_CERT);
    let paired_server = outcome.client.unwrap();
    assert_eq!(paired_server.fingerprint, server().fingerprint());
    assert_eq!(paired_server.cert_pem, SERVER_CERT);
}

#[test]
fn wrong_pin_is_detected_by_the_client_at_step_3() {
    let outcome = pair("1234", "4321", |_| {});
    assert_eq!(outcome.client.unwrap_err(), PairingError::WrongPin);
    assert!(outcome.server.is_none());
}

#[test]
fn tampered_server_signature_is_mitm() {
    let outcome = pair("1234", "1234", |reply| {
        if let Some(secret) = reply.pairing_secret.as_mut() {
            secret[100] ^= 1;
        }
    });
    assert_eq!(outcome.client.unwrap_err(), PairingError::BadSignature);
    let outcome = pair("1234", "1234", |reply| {
        reply.pairing_secret = Some(vec![0; 16])
    });
    assert_eq!(
        outcome.client.unwrap_err(),
        PairingError::BadField("pairingsecret")
    );
}

/// Drives the host through steps 1–3 by hand with a client key/PIN of our choosing, then sends
/// a step 4 built without the client's own checks.
fn forced_step4(
    client_pin: &str,
    sign_with: &ClientIdentity,
) -> Result<PairedClient, PairingError> {
    let (server_id, client_id) = (server(), client());
    let salt = [9; 16];
    let (c, req) = ClientPairing::start(client_pin, salt, &client_id);
    let PairRequest::GetServerCert(step1) = req else {
        panic!()
    };
    let (s, reply) = ServerPairing::start(step1)
        .unwrap()
        .pin("1234", &server_id)
        .unwrap();
    let (c, PairRequest::ClientChallenge(cc)) = c.server_cert(&reply, [1; 16]).unwrap() else {
        panic!()
    };
    let (s, reply) = s.client_challenge(cc, [2; 32], &server_id).unwrap();
    let cs = [3; 16];
    let (_, PairRequest::ServerChallengeResp(h)) =
        c.challenge_response(&reply, cs, &client_id).unwrap()
    else {
        panic!()
    };
    let (s, _) = s.server_challenge_resp(h, &server_id).unwrap();
    s.client_pairing_secret(cs, &sign_with.sign(&cs).unwrap())
}

#[test]
fn host_rejects_wrong_pin_and_bad_signature_at_step_4() {
    assert!(forced_step4("1234", &client()).is_ok());
    let err = forced_step4("9999", &client()).unwrap_err();
    assert_eq!(err, PairingError::WrongPin);
    assert_eq!(err.fault(), Fault::PeerMisbehaved);
    // Sunshine answers a failed step 4 with status 200 and paired=0.
    assert!(
        err.reply_xml()
            .ends_with("<root status_code=\"200\"><paired>0</paired></root>")
    );
    // Right PIN, but the signature over CS is not made with the paired certificate's key.
    let impostor = ClientIdentity::from_pem(SERVER_KEY, SERVER_CERT).unwrap();
    assert_eq!(
        forced_step4("1234", &impostor).unwrap_err(),
        PairingError::BadSignature
    );
}

#[test]
fn out_of_order_and_invalid_input() {
    let server_id = server();
    let (_, req) = ClientPairing::start("1234", [0; 16], &client());
    let PairRequest::GetServerCert(step1) = req else {
        panic!()
    };
    let waiting = ServerPairing::start(step1.clone()).unwrap();
    assert_eq!(waiting.client_fingerprint(), fingerprint(CLIENT_CERT_DER));
    assert_eq!(
        waiting.clone().pin("12345", &server_id).unwrap_err(),
        PairingError::InvalidPin
    );
    assert_eq!(PairingError::InvalidPin.fault(), Fault::LocalMisuse);

    let state = ServerPairingState::from(waiting.clone());
    assert_eq!(
        state
            .handle(PairRequest::ClientChallenge([0; 16]), [0; 32], &server_id)
            .unwrap_err(),
        PairingError::OutOfOrder {
            expected: "pin",
            got: "clientchallenge"
        }
    );
    let (s, _) = waiting.pin("1234", &server_id).unwrap();
    let err = ServerPairingState::from(s)
        .handle(
            PairRequest::ServerChallengeResp([0; 32]),
            [0; 32],
            &server_id,
        )
        .unwrap_err();
    assert_eq!(
        err,
        PairingError::OutOfOrder {
            expected: "clientchallenge",
            got: "serverchallengeresp"
        }
    );
    let xml = err.reply_xml();
    assert!(xml.contains("status_code=\"400\""), "{xml}");
    assert!(xml.ends_with("<paired>0</paired></root>"), "{xml}");

    // Bad client certificates are refused at step 1 with typed errors.
    let mut bad = step1.clone();
    bad.client_cert_pem = b"not a certificate".to_vec();
    assert_eq!(
        ServerPairing::start(bad).unwrap_err(),
        PairingError::Certificate(CertError::Der)
    );
    let mut bad = step1.clone();
    bad.client_cert_pem = SERVER_KEY.to_vec();
    assert_eq!(
        ServerPairing::start(bad).unwrap_err(),
        PairingError::Certificate(CertError::Pem)
    );
    // DER is accepted too (and turned into PEM for storage).
    let mut der = step1;
    der.client_cert_pem = CLIENT_CERT_DER.to_vec();
    let s = ServerPairing::start(der).unwrap();
    assert_eq!(
        cert_der_from_pem(s.client_cert().pem()).unwrap(),
        CLIENT_CERT_DER
    );

    // Invalid hex in a step's query string is a typed error before the state machine.
    let err = PairRequest::from_query(&Query::parse("clientchallenge=0g").unwrap()).unwrap_err();
    assert_eq!(err.fault(), Fault::MalformedInput);
}

#[test]
fn client_handles_busy_and_refusing_host() {
    let (c, _) = ClientPairing::start("1234", [0; 16], &client());
    assert_eq!(
        c.clone()
            .server_cert(&PairResponse::paired(), [0; 16])
            .unwrap_err(),
        PairingError::PairingInProgress
    );
    assert_eq!(
        c.server_cert(&PairResponse::failed(), [0; 16]).unwrap_err(),
        PairingError::NotPaired
    );
}
