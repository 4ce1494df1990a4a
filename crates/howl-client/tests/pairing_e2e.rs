//! End to end against a real `howl serve`: pair through the PIN API, then list apps over
//! mutual TLS. Skips (passes with a notice) when no howl binary is built.

mod common;

use std::time::Duration;

use howl_client::{Client, ClientError, api};
use howl_proto::pairing::PairingError;

use common::{HowlServer, howl_bin_or_skip};

/// Pairing deadline for the tests (the PIN is submitted by the test itself).
const PIN_DEADLINE: Duration = Duration::from_secs(60);
/// How long the PIN submitter waits for the pending request to appear.
const SUBMIT_DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_through_the_pin_api_then_lists_apps() {
    let Some(bin) = howl_bin_or_skip("pairs_through_the_pin_api_then_lists_apps") else {
        return;
    };
    let server = HowlServer::start(&bin).await;
    let cfg = tempfile::tempdir().expect("tempdir");
    let client = Client::new(cfg.path())
        .expect("client")
        .with_pin_deadline(PIN_DEADLINE);

    // Unpaired: the HTTP serverinfo answers, HTTPS calls are refused locally (nothing pinned).
    let info = client.server_info(server.http).await.expect("serverinfo");
    assert!(!info.paired);
    assert_eq!(info.https_port, server.https.port());
    assert!(matches!(
        client.apps(server.http).await,
        Err(ClientError::NotPaired { .. })
    ));

    let pin = "4821";
    let fp = client.fingerprint_hex();
    let (api_addr, token) = (server.api, server.token());
    let submit = tokio::spawn(async move {
        api::submit_pin_when_pending(api_addr, &token, pin, Some(&fp[..16]), SUBMIT_DEADLINE).await
    });
    let paired = client.pair(server.http, pin).await;
    let submitted = submit.await.expect("submit task");
    let paired = paired.unwrap_or_else(|e| panic!("pairing failed: {e}\n{}", server.log_text()));
    submitted.unwrap_or_else(|e| panic!("PIN submission failed: {e}"));
    assert_eq!(paired.fingerprint.len(), 32);

    // Now over mutual TLS with the pinned host certificate.
    let info = client
        .server_info_tls(server.http)
        .await
        .expect("HTTPS serverinfo");
    assert!(info.paired, "host does not consider us paired");
    let apps = client.apps(server.http).await.expect("applist");
    assert!(
        apps.apps.iter().any(|a| a.title == "Test Pattern"),
        "no Test Pattern in {apps:?}"
    );
    let id = client
        .find_app(server.http, "Test Pattern")
        .await
        .expect("find app");
    assert_ne!(id, 0);

    // A second client instance on the same config dir is paired too (state persisted).
    let again = Client::new(cfg.path()).expect("client again");
    assert!(
        again
            .server_info_tls(server.http)
            .await
            .expect("serverinfo")
            .paired
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pin_fails_and_pins_nothing() {
    let Some(bin) = howl_bin_or_skip("wrong_pin_fails_and_pins_nothing") else {
        return;
    };
    let server = HowlServer::start(&bin).await;
    let cfg = tempfile::tempdir().expect("tempdir");
    let client = Client::new(cfg.path())
        .expect("client")
        .with_pin_deadline(PIN_DEADLINE);
    let fp = client.fingerprint_hex();
    let (api_addr, token) = (server.api, server.token());
    let submit = tokio::spawn(async move {
        api::submit_pin_when_pending(api_addr, &token, "9999", Some(&fp[..16]), SUBMIT_DEADLINE)
            .await
    });
    let result = client.pair(server.http, "1234").await;
    submit
        .await
        .expect("submit task")
        .unwrap_or_else(|e| panic!("PIN submission failed: {e}"));
    match result {
        Err(ClientError::Pairing {
            source: PairingError::WrongPin,
            ..
        }) => {}
        other => panic!("expected a wrong-PIN failure, got {other:?}"),
    }
    assert!(matches!(
        client.apps(server.http).await,
        Err(ClientError::NotPaired { .. })
    ));
}
