//! The service manager's notification protocol (`sd_notify(3)`), written by hand: one
//! datagram per message to the unix socket named by `NOTIFY_SOCKET`. Used for `Type=notify`
//! readiness (`READY=1`), the watchdog (`WATCHDOG=1`) and `STOPPING=1`.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd, or by a unit of another type) every call is
//! a no-op, so the server behaves the same everywhere. Sending never blocks: the socket is
//! non-blocking and a message that does not fit is dropped (systemd reads them at once; a
//! dropped watchdog ping is followed by the next one).

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where and how to notify the service manager.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

/// Why `NOTIFY_SOCKET` is set but cannot be used. Logged once at start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor an abstract name (@...)")]
    BadAddress(String),
    #[error("NOTIFY_SOCKET: {0}")]
    Io(#[from] std::io::Error),
}

impl Notifier {
    /// The notifier named by `notify_socket` (the `NOTIFY_SOCKET` value), or `None` when it is
    /// unset or empty.
    pub fn from_value(notify_socket: Option<&str>) -> Result<Option<Self>, NotifyError> {
        let Some(v) = notify_socket.filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let addr = if let Some(name) = v.strip_prefix('@') {
            // Abstract namespace (systemd's default for user managers and containers).
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else if v.starts_with('/') {
            SocketAddr::from_pathname(v)?
        } else {
            return Err(NotifyError::BadAddress(v.to_owned()));
        };
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        Ok(Some(Self { sock, addr }))
    }

    /// Reads `NOTIFY_SOCKET` from the environment.
    pub fn from_env() -> Result<Option<Self>, NotifyError> {
        Self::from_value(std::env::var("NOTIFY_SOCKET").ok().as_deref())
    }

    /// Sends one message (newline-separated `KEY=VALUE` assignments).
    pub fn notify(&self, message: &str) {
        if let Err(e) = self.sock.send_to_addr(message.as_bytes(), &self.addr) {
            tracing::debug!(error = %e, "service manager notification not sent");
        }
    }
}

/// The watchdog period the service manager asked for (`WATCHDOG_USEC`), if it is meant for
/// this process (`WATCHDOG_PID` unset or equal to `pid`).
pub fn watchdog_period(
    usec: Option<&str>,
    watchdog_pid: Option<&str>,
    pid: u32,
) -> Option<Duration> {
    if let Some(p) = watchdog_pid
        && p.trim().parse::<u32>().ok() != Some(pid)
    {
        return None;
    }
    let us: u64 = usec?.trim().parse().ok()?;
    (us > 0).then(|| Duration::from_micros(us))
}

/// [`watchdog_period`] from the environment.
pub fn watchdog_period_from_env() -> Option<Duration> {
    watchdog_period(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_empty_is_no_notifier() {
        assert!(Notifier::from_value(None).unwrap().is_none());
        assert!(Notifier::from_value(Some("")).unwrap().is_none());
        assert!(matches!(
            Notifier::from_value(Some("relative/path")),
            Err(NotifyError::BadAddress(_))
        ));
    }

    #[test]
    fn messages_arrive_as_datagrams_on_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_value(path.to_str()).unwrap().unwrap();
        n.notify("READY=1\nSTATUS=serving");
        n.notify("WATCHDOG=1");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving");
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn abstract_names_are_supported() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("howl-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        let n = Notifier::from_value(Some(&format!("@{name}")))
            .unwrap()
            .unwrap();
        n.notify("STOPPING=1");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
    }

    #[test]
    fn a_missing_socket_does_not_fail_the_sender() {
        let n = Notifier::from_value(Some("/nonexistent/howl-notify"))
            .unwrap()
            .unwrap();
        n.notify("WATCHDOG=1");
    }

    #[test]
    fn watchdog_period_respects_the_pid() {
        let s = Some("3000000");
        assert_eq!(watchdog_period(s, None, 7), Some(Duration::from_secs(3)));
        assert_eq!(
            watchdog_period(s, Some("7"), 7),
            Some(Duration::from_secs(3))
        );
        assert_eq!(watchdog_period(s, Some("8"), 7), None);
        assert_eq!(watchdog_period(Some("0"), None, 7), None);
        assert_eq!(watchdog_period(Some("x"), None, 7), None);
        assert_eq!(watchdog_period(None, None, 7), None);
    }
}
