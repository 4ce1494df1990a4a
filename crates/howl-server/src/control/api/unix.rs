//! The management API on a unix socket in the state directory (`api.sock`, mode 0600 inside
//! the 0700 state directory). Only the server's own user can connect, so a peer on it is the
//! admin and needs no token: local tools and scripts need not read the token file.

use crate::control::api::UnixPeer;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Name of the socket in the state directory.
pub const SOCKET_NAME: &str = "api.sock";
/// Connections served at once on the socket; more wait in the kernel backlog.
const MAX_UNIX_CONNECTIONS: usize = 64;
/// The request head must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the socket, replacing a stale one left by a killed server, and restricts it to
/// the owner before anyone can connect.
pub fn bind(state_dir: &Path) -> std::io::Result<(UnixListener, PathBuf)> {
    let path = state_dir.join(SOCKET_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok((l, path))
}

/// Serves `router` (as the admin) until `shutdown`; every connection is bounded by
/// `connection_deadline`. Removes the socket file on the way out.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    router: axum::Router,
    connection_deadline: Duration,
    shutdown: CancellationToken,
) {
    let router = router.layer(axum::Extension(UnixPeer));
    let permits = Arc::new(Semaphore::new(MAX_UNIX_CONNECTIONS));
    let tracker = TaskTracker::new();
    loop {
        let Ok(permit) = (tokio::select! {
            p = permits.clone().acquire_owned() => p,
            () = shutdown.cancelled() => break,
        }) else {
            break;
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "api.sock accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let svc = hyper_util::service::TowerToHyperService::new(router.clone());
        let stop = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                () = tokio::time::sleep(connection_deadline) => {}
                () = stop.cancelled() => {}
            }
        });
    }
    tracker.close();
    let _ = std::fs::remove_file(&path);
}
