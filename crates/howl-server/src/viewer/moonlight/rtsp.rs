//! The Moonlight RTSP listeners: one per launch, on its own port from the RTSP range (the port
//! goes into `sessionUrl0`). Moonlight opens one TCP connection per request and reads the
//! reply until the host closes it; each request is parsed by howl-proto and handed to the streaming engine, which owns every
//! handshake's state. The listener only moves bytes, with deadlines on every read and write
//! and a cap on concurrent connections, so a stalled client holds one task, briefly.

use howl_core::SessionId;
use howl_proto::rtsp::{Request, RequestParser, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
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

/// Serves one launch's RTSP port until `cancel` fires (the session ended). Requests go to that
/// session's handshake; stray connections get 454 from it once it is over.
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

pub async fn serve_session<E: RtspEngine>(
    listener: TcpListener,
    engine: E,
    session: SessionId,
    cancel: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS_PER_SESSION));
    let tracker = TaskTracker::new();
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
        tracker.spawn(async move {
            let _permit = permit;
            let work = async {
                let mut parser = RequestParser::new();
                let mut buf = vec![0u8; 8192];
                let req = loop {
                    let n = match tokio::time::timeout(READ_DEADLINE, stream.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                        Ok(Ok(n)) => n,
                    };
                    match parser.push(&buf[..n]) {
                        Ok(Some(r)) => break r,
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "malformed RTSP request");
                            let resp = Response::for_parse_error(&e, &buf[..n]);
                            let _ = tokio::time::timeout(
                                WRITE_DEADLINE,
                                stream.write_all(&resp.to_bytes()),
                            )
                            .await;
                            return;
                        }
                    }
                };
                let method = req.method.clone();
                let fallback = Response::for_request(&req, StatusCode::SERVICE_UNAVAILABLE);
                let resp = engine.rtsp(session, req).await.unwrap_or(fallback);
                tracing::debug!(%peer, %session, ?method, status = resp.status.0, "RTSP");
                // Moonlight reads a response until the connection closes (one request per
                // connection), so close right after answering.
                let _ = tokio::time::timeout(WRITE_DEADLINE, async {
                    stream.write_all(&resp.to_bytes()).await?;
                    stream.shutdown().await
                })
                .await;
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
