//! A minimal client of the management API, for CLI subcommands such as `howl pin`.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::net::SocketAddr;
use std::time::Duration;

/// Deadline for one CLI request, connection included.
const CLI_REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Why a CLI request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    #[error("cannot reach the howl API at {addr}: {source} (is `howl serve` running?)")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the howl API at {0} did not answer within 10 s")]
    Timeout(SocketAddr),
    #[error("HTTP error talking to the API: {0}")]
    Http(#[from] hyper::Error),
    #[error("bad request: {0}")]
    Build(#[from] http::Error),
}

/// Sends one request and returns the status and body text.
pub async fn request(
    addr: SocketAddr,
    token: &str,
    method: http::Method,
    path: &str,
    json_body: Option<String>,
) -> Result<(http::StatusCode, String), ApiClientError> {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| ApiClientError::Connect { addr, source })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        let driver = tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, addr.to_string())
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        if json_body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(Bytes::from(json_body.unwrap_or_default())))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        driver.abort();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(CLI_REQUEST_DEADLINE, fut)
        .await
        .map_err(|_| ApiClientError::Timeout(addr))?
}
