//! The management API on a unix socket in the state directory (`api.sock`, mode 0600 inside
//! the 0700 state directory). A peer on it is the admin and needs no token, so local tools and
//! scripts need not read the token file. Two locks guard that: the file mode, and the peer's
//! credentials (`SO_PEERCRED`) checked on every connection: only root and the server's own
//! user are served; anyone else (a socket handed over, a group or ACL granted by mistake) is
//! closed unanswered and logged.

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
    let own_uid = own_uid();
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
        let peer_uid = stream.peer_cred().map(|c| c.uid());
        if let Err(why) = admit_peer(peer_uid, own_uid) {
            tracing::warn!(reason = why, "api.sock: refused a connection");
            drop(stream);
            continue;
        }
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

/// The server's real user id.
#[allow(unsafe_code)]
fn own_uid() -> u32 {
    // SAFETY: getuid(2) takes no arguments, touches no memory and cannot fail.
    unsafe { libc::getuid() }
}

/// Whether a peer with this uid may use the socket as the admin: root or the server's own
/// user. `Err` says why not (for the log).
fn admit_peer(peer_uid: std::io::Result<u32>, own_uid: u32) -> Result<(), &'static str> {
    match peer_uid {
        Ok(uid) if uid == 0 || uid == own_uid => Ok(()),
        Ok(_) => Err("peer is neither root nor the server's user"),
        Err(_) => Err("peer credentials unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_and_the_own_user_are_admitted() {
        assert!(admit_peer(Ok(0), 1000).is_ok());
        assert!(admit_peer(Ok(1000), 1000).is_ok());
        assert!(admit_peer(Ok(1001), 1000).is_err());
        assert!(admit_peer(Err(std::io::Error::other("no cred")), 1000).is_err());
    }

    /// End to end over a real socket: the server's own user gets an answer, and the uid the
    /// check sees is the connecting process's (so a foreign uid would be refused).
    #[tokio::test]
    async fn own_user_is_served_and_peer_uid_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (l, path) = bind(dir.path()).unwrap();
        let app = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(
            l,
            path.clone(),
            app,
            Duration::from_secs(5),
            stop.clone(),
        ));
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::UnixStream::connect(&path).await.unwrap();
        assert_eq!(c.peer_cred().unwrap().uid(), own_uid());
        c.write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).await.unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 200") && reply.ends_with("pong"),
            "{reply}"
        );
        stop.cancel();
        task.await.unwrap();
    }
}
