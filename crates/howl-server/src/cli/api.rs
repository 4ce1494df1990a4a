//! The CLI's connection to the running server's management API: address and admin token from
//! the state directory, one request per call, replies decoded into the API's own view types
//! (the structs the server serialises), errors turned into one line for the operator.

use crate::cli::ClientArgs;
use crate::cli::apiclient;
use crate::cli::table::sanitize;
use crate::control::api::ClientView;
use crate::statedir;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Most characters of a non-JSON error body quoted back to the operator.
const MAX_QUOTED_BODY: usize = 200;

/// A connection to the running server's API: its address and admin token.
pub struct Api {
    pub addr: SocketAddr,
    token: String,
    state_dir: PathBuf,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of every debug print.
        f.debug_struct("Api")
            .field("addr", &self.addr)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl Api {
    pub fn open(args: &ClientArgs) -> Result<Self, String> {
        let state_dir = args
            .state_dir
            .clone()
            .unwrap_or_else(statedir::default_state_dir);
        let token = statedir::StateDir::read_token(&state_dir).map_err(|e| e.to_string())?;
        Ok(Self {
            addr: args.api,
            token,
            state_dir,
        })
    }

    /// Sends one request; a success answers its body (None when empty, as for 204), any other
    /// status the operator-facing message.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Option<String>, CallError> {
        let (status, text) = apiclient::request(
            self.addr,
            &self.token,
            method,
            path,
            body.map(|b| b.to_string()),
        )
        .await
        .map_err(|e| CallError::Other(e.to_string()))?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(None);
            }
            return Ok(Some(text));
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(CallError::Other(format!(
                "the API token in {} was refused (is this the state dir of the running server?)",
                self.state_dir.join("api-token").display()
            )));
        }
        let msg = error_message(status, &text);
        if status == StatusCode::NOT_FOUND {
            Err(CallError::NotFound(msg))
        } else {
            Err(CallError::Other(msg))
        }
    }

    /// GET of one of the API's views, decoded into the type the server serialised it from.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let text = self
            .call(Method::GET, path, None)
            .await
            .map_err(CallError::into_message)?
            .ok_or_else(|| format!("the API answered nothing for {path}"))?;
        decode(path, &text)
    }

    /// GET of a route that older servers lack: 404 reads as "not there".
    pub async fn get_optional<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, String> {
        match self.call(Method::GET, path, None).await {
            Ok(Some(text)) => decode(path, &text).map(Some),
            Ok(None) | Err(CallError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into_message()),
        }
    }

    /// A request whose reply, if any, is one of the API's views.
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Option<T>, String> {
        match self
            .call(method, path, body)
            .await
            .map_err(CallError::into_message)?
        {
            Some(text) => decode(path, &text).map(Some),
            None => Ok(None),
        }
    }

    pub async fn clients(&self) -> Result<Vec<ClientView>, String> {
        self.get("/api/v1/clients").await
    }
}

/// Why an API call failed, with 404 kept apart for routes that may not exist yet.
#[derive(Debug)]
enum CallError {
    NotFound(String),
    Other(String),
}

impl CallError {
    fn into_message(self) -> String {
        match self {
            Self::NotFound(m) | Self::Other(m) => m,
        }
    }
}

/// The API's `{"error": msg}`, or a short quote of whatever else it answered.
fn error_message(status: StatusCode, body: &str) -> String {
    if let Some(msg) = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
    {
        return sanitize(&msg);
    }
    let quoted: String = body.trim().chars().take(MAX_QUOTED_BODY).collect();
    if quoted.is_empty() {
        format!("the API answered {status}")
    } else {
        format!("the API answered {status}: {}", sanitize(&quoted))
    }
}

/// Decodes a reply into the API's own view type; a mismatch means this CLI and the server
/// disagree about the API, which the message says.
fn decode<T: DeserializeOwned>(path: &str, text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| {
        format!("unexpected answer from the API for {path} (is the server another version?): {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_messages() {
        assert_eq!(
            error_message(StatusCode::NOT_FOUND, r#"{"error":"no session 9"}"#),
            "no session 9"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, ""),
            "the API answered 502 Bad Gateway"
        );
        assert!(error_message(StatusCode::BAD_REQUEST, "plain\x1b text").contains("plain? text"));
    }
}
