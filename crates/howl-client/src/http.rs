//! A minimal HTTP/1.1 client over TCP or TLS: one request per connection, like Moonlight.
//!
//! NVHTTP hosts close the connection after each response and always send `Content-Length`,
//! so a full HTTP stack buys nothing here; what matters is that every wait has a deadline
//! (the caller wraps each exchange in `tokio::time::timeout`) and every size is bounded.
//! [`parse_response`] is a pure function so that it is unit-tested without sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::ClientError;
use crate::identity::StoredIdentity;

/// Largest response head accepted.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Largest response (head and body) accepted; NVHTTP XML is limited to 1 MiB by howl-proto.
pub const MAX_RESPONSE: usize = 2 * 1024 * 1024;

/// A complete HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Parses what has been read so far. `Ok(None)`: need more bytes (only while `!eof`).
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<HttpResponse>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err("response head too large".into());
        }
        return if eof {
            Err("connection closed before the response head was complete".into())
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x status line: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            chunked = true;
        }
    }
    let rest = &buf[head_end + 4..];
    if chunked {
        return match decode_chunked(rest)? {
            Some(body) => Ok(Some(HttpResponse { status, body })),
            None if eof => Err("connection closed inside a chunked body".into()),
            None => Ok(None),
        };
    }
    match content_length {
        Some(n) if n > MAX_RESPONSE => Err(format!("response body of {n} bytes is too large")),
        Some(n) if rest.len() >= n => Ok(Some(HttpResponse {
            status,
            body: rest[..n].to_vec(),
        })),
        Some(n) if eof => Err(format!(
            "connection closed after {} of {n} body bytes",
            rest.len()
        )),
        Some(_) => Ok(None),
        None if eof => Ok(Some(HttpResponse {
            status,
            body: rest.to_vec(),
        })),
        None => Ok(None),
    }
}

/// Decodes a complete chunked body; `Ok(None)` if more bytes are needed.
fn decode_chunked(mut rest: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        if body.len().saturating_add(size) > MAX_RESPONSE {
            return Err("chunked body too large".into());
        }
        let data_start = line_end + 2;
        if size == 0 {
            // Trailers are not used by any host; the terminating CRLF may still be in flight.
            return Ok(Some(body));
        }
        let Some(chunk) = rest.get(data_start..data_start + size) else {
            return Ok(None);
        };
        body.extend_from_slice(chunk);
        match rest.get(data_start + size..data_start + size + 2) {
            Some(b"\r\n") => rest = &rest[data_start + size + 2..],
            Some(_) => return Err("chunk not followed by CRLF".into()),
            None => return Ok(None),
        }
    }
}

/// Serializes a request head (and body).
pub fn build_request(
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: howl-client\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    if !body.is_empty() || method != "GET" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends `request` on `stream` and reads one response. No deadline of its own.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> Result<HttpResponse, ExchangeError> {
    stream.write_all(request).await.map_err(ExchangeError::Io)?;
    stream.flush().await.map_err(ExchangeError::Io)?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let (n, eof) = match stream.read(&mut chunk).await {
            Ok(0) => (0, true),
            Ok(n) => (n, false),
            // A TLS peer that closes without close_notify: treat as end of stream.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => (0, true),
            Err(e) => return Err(ExchangeError::Io(e)),
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE + MAX_RESPONSE_HEAD {
            return Err(ExchangeError::Malformed("response too large".into()));
        }
        if let Some(resp) = parse_response(&buf, eof).map_err(ExchangeError::Malformed)? {
            return Ok(resp);
        }
    }
}

/// Why [`exchange`] failed.
#[derive(Debug)]
pub enum ExchangeError {
    Io(std::io::Error),
    Malformed(String),
}

impl ExchangeError {
    /// Converts into a [`ClientError`] naming the peer.
    pub fn into_client(self, what: &'static str, peer: SocketAddr) -> ClientError {
        match self {
            Self::Io(source) => ClientError::Io { what, peer, source },
            Self::Malformed(reason) => ClientError::Http { peer, reason },
        }
    }
}

/// One plain-HTTP request with a deadline covering connect, send and receive.
pub async fn http_request(
    peer: SocketAddr,
    what: &'static str,
    request: Vec<u8>,
    deadline: Duration,
) -> Result<HttpResponse, ClientError> {
    let fut = async {
        let mut stream = TcpStream::connect(peer)
            .await
            .map_err(|source| ClientError::Io { what, peer, source })?;
        let _ = stream.set_nodelay(true);
        exchange(&mut stream, &request)
            .await
            .map_err(|e| e.into_client(what, peer))
    };
    tokio::time::timeout(deadline, fut)
        .await
        .map_err(|_| ClientError::Timeout {
            what,
            peer,
            after: deadline,
        })?
}

/// One HTTPS request (mutual TLS, pinned host certificate) with a deadline covering connect,
/// handshake, send and receive.
pub async fn https_request(
    tls: &tokio_rustls::TlsConnector,
    peer: SocketAddr,
    what: &'static str,
    request: Vec<u8>,
    deadline: Duration,
) -> Result<HttpResponse, ClientError> {
    let fut = async {
        let tcp = TcpStream::connect(peer)
            .await
            .map_err(|source| ClientError::Io { what, peer, source })?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::IpAddress(peer.ip().into());
        let mut stream = tls
            .connect(name, tcp)
            .await
            .map_err(|source| ClientError::Tls { peer, source })?;
        exchange(&mut stream, &request)
            .await
            .map_err(|e| e.into_client(what, peer))
    };
    tokio::time::timeout(deadline, fut)
        .await
        .map_err(|_| ClientError::Timeout {
            what,
            peer,
            after: deadline,
        })?
}

/// Accepts exactly one server certificate (the one pinned while pairing), byte for byte, and
/// still checks the handshake signatures so the host proves it holds the key.
#[derive(Debug)]
struct PinnedServerCert {
    der: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connector presenting this client's certificate and trusting only `pinned_cert_pem`.
pub fn tls_connector(
    identity: &StoredIdentity,
    pinned_cert_pem: &[u8],
) -> Result<tokio_rustls::TlsConnector, ClientError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| ClientError::Crypto(format!("{what}: {e}"));
    let pinned = CertificateDer::from_pem_slice(pinned_cert_pem)
        .map_err(|e| bad("pinned host certificate", &e))?;
    let cert = CertificateDer::from_pem_slice(identity.cert_pem.as_bytes())
        .map_err(|e| bad("client certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| bad("client key", &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(PinnedServerCert {
        der: pinned.as_ref().to_vec(),
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad("TLS versions", &e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], key)
        .map_err(|e| bad("client certificate", &e))?;
    // No HTTP/2 (GFE broke with it) and no SNI for what is always an IP address.
    config.alpn_protocols.clear();
    config.enable_sni = false;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_response() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/xml\r\n\r\nhello";
        assert_eq!(parse_response(&raw[..20], false).unwrap(), None);
        assert_eq!(parse_response(&raw[..raw.len() - 1], false).unwrap(), None);
        let r = parse_response(raw, false).unwrap().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello");
        assert!(parse_response(&raw[..raw.len() - 1], true).is_err());
    }

    #[test]
    fn body_until_close_and_chunked() {
        let raw = b"HTTP/1.0 404 Not Found\r\nX: y\r\n\r\n<root/>";
        assert_eq!(parse_response(raw, false).unwrap(), None);
        let r = parse_response(raw, true).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"<root/>"[..]));
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(&raw[..60], false).unwrap(), None);
        let r = parse_response(raw, false).unwrap().unwrap();
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn malformed_responses_are_errors_not_panics() {
        for raw in [
            &b"SIP/2.0 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(parse_response(raw, true).is_err(), "{raw:?}");
        }
        assert!(parse_response(&[b'a'; MAX_RESPONSE_HEAD + 1], false).is_err());
    }

    #[test]
    fn request_shape() {
        let r = build_request("GET", "127.0.0.1:47989", "/serverinfo?a=b", &[], b"");
        assert_eq!(
            r,
            b"GET /serverinfo?a=b HTTP/1.1\r\nHost: 127.0.0.1:47989\r\nUser-Agent: howl-client\r\nConnection: close\r\n\r\n"
        );
        let r = build_request("POST", "h", "/p", &[("Authorization", "Bearer t")], b"{}");
        let text = String::from_utf8(r).unwrap();
        assert!(text.contains("Authorization: Bearer t\r\nContent-Length: 2\r\n\r\n{}"));
    }
}
