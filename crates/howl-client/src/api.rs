//! The bits of howl's management API this tool needs: submitting the pairing PIN on the
//! operator's behalf (tests, load runs). Bearer token from `<state-dir>/api-token`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::error::ClientError;
use crate::http::{build_request, http_request};

/// Deadline of one API request.
pub const API_DEADLINE: Duration = Duration::from_secs(10);

/// Reads howl's API token from its state directory.
pub fn read_token(state_dir: &Path) -> Result<String, ClientError> {
    let p = state_dir.join("api-token");
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_owned())
        .map_err(|e| ClientError::Config {
            path: p,
            reason: format!("cannot read howl's API token: {e}"),
        })
}

/// `POST /api/v1/pairing/pin` with `{"pin": .., "client": ..}`. `client` selects the pending
/// request when several wait (id, fingerprint prefix or name).
pub async fn submit_pin(
    api: SocketAddr,
    token: &str,
    pin: &str,
    client: Option<&str>,
) -> Result<(), ClientError> {
    let body = serde_json::json!({ "pin": pin, "client": client }).to_string();
    let auth = format!("Bearer {token}");
    let req = build_request(
        "POST",
        &api.to_string(),
        "/api/v1/pairing/pin",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    let resp = http_request(api, "pairing PIN", req, API_DEADLINE).await?;
    if (200..300).contains(&resp.status) {
        Ok(())
    } else {
        Err(ClientError::Api {
            peer: api,
            status: resp.status,
            body: String::from_utf8_lossy(&resp.body)
                .chars()
                .take(512)
                .collect(),
        })
    }
}

/// Like [`submit_pin`], retrying until the host has a pending request to give it to (step 1
/// may not have arrived yet) or `deadline` passes.
pub async fn submit_pin_when_pending(
    api: SocketAddr,
    token: &str,
    pin: &str,
    client: Option<&str>,
    deadline: Duration,
) -> Result<(), ClientError> {
    /// Between attempts; the pending request appears when the client's step 1 arrives.
    const RETRY_INTERVAL: Duration = Duration::from_millis(100);
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match submit_pin(api, token, pin, client).await {
            Ok(()) => return Ok(()),
            // 404: no pending request (yet). Anything else is final (bad PIN: 400).
            Err(e @ ClientError::Api { status: 404, .. }) => {
                if tokio::time::Instant::now() + RETRY_INTERVAL >= end {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(RETRY_INTERVAL).await;
    }
}
