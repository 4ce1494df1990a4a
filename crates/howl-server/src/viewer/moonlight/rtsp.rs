//! The Moonlight RTSP listeners: one per launch, on its own port from the RTSP range (the port
//! goes into `sessionUrl0`). Moonlight opens one TCP connection per request and reads the
//! reply until the host closes it; each request is parsed by howl-proto and handed to the streaming engine, which owns every
//! handshake's state. The listener only moves bytes, with deadlines on every read and write
//! and a cap on concurrent connections, so a stalled client holds one task, briefly.

use howl_core::SessionId;
use howl_proto::rtsp::{
    EncryptedReader, EncryptedRtspError, Request, RequestParser, Response, RtspCipher,
    RtspDirection, StatusCode,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Concurrent connections on one launch's RTSP port (a client uses one at a time); more
/// wait in the backlog.
pub const MAX_CONNECTIONS_PER_SESSION: usize = 8;
/// A client must send a complete request within this time (and between requests).
pub const READ_DEADLINE: Duration = Duration::from_secs(10);
/// Writing a response may take at most this long.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// What this listener needs of the engine (the engine's handle implements it), so the driver
/// does not import the engine that starts it.
pub trait RtspEngine: Clone + Send + Sync + 'static {
    /// The engine's answer to one request of `session`'s handshake; `None` when it did not
    /// answer in time.
    fn rtsp(
        &self,
        session: SessionId,
        request: Request,
    ) -> impl Future<Output = Option<Response>> + Send;
}

/// Serves one launch's RTSP port until `cancel` fires (the session ended). With `cipher`
/// (`rtspenc://`), every request must arrive as one encrypted message and every answer leaves
/// as one; a plaintext request is answered in the clear with 403 and nothing reaches the
/// handshake.
pub async fn serve_session<E: RtspEngine>(
    listener: TcpListener,
    engine: E,
    session: SessionId,
    cipher: Option<RtspCipher>,
    cancel: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS_PER_SESSION));
    let tracker = TaskTracker::new();
    // The host's own sequence number for encrypted answers, per launch (the client does not
    // check it, but a nonce must never repeat under one key).
    let crypt = cipher.map(|c| {
        Arc::new(Encrypted {
            cipher: c,
            seq: AtomicU32::new(0),
        })
    });
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = cancel.cancelled() => break,
        };
        let (mut stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "RTSP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = cancel.cancelled() => break,
        };
        let engine = engine.clone();
        let stop = cancel.clone();
        let crypt = crypt.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let work = async {
                let req = match &crypt {
                    None => read_plain(&mut stream, peer).await,
                    Some(c) => read_encrypted(&mut stream, peer, session, c).await,
                };
                let Some(req) = req else {
                    return;
                };
                let method = req.method.clone();
                let fallback = Response::for_request(&req, StatusCode::SERVICE_UNAVAILABLE);
                let resp = engine.rtsp(session, req).await.unwrap_or(fallback);
                tracing::debug!(%peer, %session, ?method, status = resp.status.0,
                    encrypted = crypt.is_some(), "RTSP");
                let bytes = match &crypt {
                    None => resp.to_bytes(),
                    Some(c) => match c.seal(&resp.to_bytes()) {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::warn!(%session, error = %e, "cannot encrypt an RTSP answer");
                            return;
                        }
                    },
                };
                // Moonlight reads a response until the connection closes (one request per
                // connection), so close right after answering.
                send_and_close(&mut stream, &bytes).await;
            };
            tokio::select! {
                () = work => {}
                () = stop.cancelled() => {}
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// A launch's RTSP key and its answer counter.
struct Encrypted {
    cipher: RtspCipher,
    seq: AtomicU32,
}

impl Encrypted {
    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, EncryptedRtspError> {
        // Incremented before each answer: the first is 1, as Sunshine's.
        let seq = self.seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        self.cipher
            .seal(RtspDirection::HostToClient, seq, plaintext)
    }
}

async fn send_and_close(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = tokio::time::timeout(WRITE_DEADLINE, async {
        stream.write_all(bytes).await?;
        stream.shutdown().await
    })
    .await;
}

/// Reads one plaintext request; a malformed one is answered here and yields `None`.
async fn read_plain(stream: &mut TcpStream, peer: SocketAddr) -> Option<Request> {
    let mut parser = RequestParser::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match tokio::time::timeout(READ_DEADLINE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => n,
        };
        match parser.push(&buf[..n]) {
            Ok(Some(r)) => return Some(r),
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "malformed RTSP request");
                let resp = Response::for_parse_error(&e, &buf[..n]);
                let _ =
                    tokio::time::timeout(WRITE_DEADLINE, stream.write_all(&resp.to_bytes())).await;
                return None;
            }
        }
    }
}

/// Reads one encrypted request and opens it. A plaintext request gets a plaintext 403 (a
/// client without the key could not read anything else) and never reaches the handshake;
/// bytes that fail to open get no answer at all.
async fn read_encrypted(
    stream: &mut TcpStream,
    peer: SocketAddr,
    session: SessionId,
    crypt: &Encrypted,
) -> Option<Request> {
    let mut reader = EncryptedReader::new();
    let mut buf = vec![0u8; 8192];
    let frame = loop {
        let n = match tokio::time::timeout(READ_DEADLINE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => n,
        };
        match reader.push(&buf[..n]) {
            Ok(Some(f)) => break f,
            Ok(None) => continue,
            Err(EncryptedRtspError::Plaintext) => {
                tracing::info!(%peer, %session,
                    "plaintext RTSP request on an encrypted RTSP session; refused");
                let resp = Response::new(StatusCode::FORBIDDEN)
                    .with_header("X-Howl-Error", "this session's RTSP is encrypted (rtspenc)");
                send_and_close(stream, &resp.to_bytes()).await;
                return None;
            }
            Err(e) => {
                tracing::info!(%peer, %session, error = %e, "bad encrypted RTSP request");
                return None;
            }
        }
    };
    let plain = match crypt.cipher.open(RtspDirection::ClientToHost, &frame) {
        Ok((_seq, p)) => p,
        Err(e) => {
            tracing::info!(%peer, %session, error = %e, "encrypted RTSP request did not open");
            return None;
        }
    };
    let mut parser = RequestParser::new();
    match parser.push(&plain) {
        Ok(Some(r)) => Some(r),
        // The message is the whole request: incomplete inside its envelope is malformed.
        Ok(None) => {
            let resp = Response::new(StatusCode::BAD_REQUEST).with_header(
                "X-Howl-Error",
                "incomplete request in its encrypted message",
            );
            if let Ok(b) = crypt.seal(&resp.to_bytes()) {
                send_and_close(stream, &b).await;
            }
            None
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "malformed encrypted RTSP request");
            let resp = Response::for_parse_error(&e, &plain);
            if let Ok(b) = crypt.seal(&resp.to_bytes()) {
                send_and_close(stream, &b).await;
            }
            None
        }
    }
}
