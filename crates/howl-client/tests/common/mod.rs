//! A `howl serve` child process on free loopback ports, for end-to-end tests.
//!
//! The binary is `$HOWL_BIN`, else `$CARGO_TARGET_DIR/debug/howl`, else `howl` next to this
//! test executable's target directory (`target/debug/deps/..`). Build it with
//! `cargo build -p howl-server`. When it is absent the tests print why and pass vacuously.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use howl_client::Client;

/// How long the server may take to answer `/serverinfo` after start.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);

/// The howl binary, if one can be found.
pub fn howl_bin() -> Option<PathBuf> {
    if let Some(b) = std::env::var_os("HOWL_BIN") {
        return Some(PathBuf::from(b));
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        let p = PathBuf::from(t).join("debug").join("howl");
        if p.is_file() {
            return Some(p);
        }
    }
    // target/debug/deps/<test> -> target/debug/howl
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("howl");
    p.is_file().then_some(p)
}

/// Returns the binary or prints a skip notice.
pub fn howl_bin_or_skip(test: &str) -> Option<PathBuf> {
    let bin = howl_bin();
    if bin.is_none() {
        eprintln!(
            "SKIP {test}: no howl binary (set HOWL_BIN, or run `cargo build -p howl-server` with the same CARGO_TARGET_DIR)"
        );
    }
    bin
}

fn free_tcp_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port")
}

fn free_udp_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// A running howl; killed on drop.
pub struct HowlServer {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub api: SocketAddr,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl HowlServer {
    /// Starts `bin` and waits until `/serverinfo` answers.
    pub async fn start(bin: &Path) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state_dir = tmp.path().join("state");
        let log = tmp.path().join("howl.log");
        let port = |p: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, p));
        let (http, https, api) = (
            port(free_tcp_port()),
            port(free_tcp_port()),
            port(free_tcp_port()),
        );
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .arg("serve")
            .arg("--no-mdns")
            .args(["--bind", "127.0.0.1"])
            .arg("--state-dir")
            .arg(&state_dir)
            .args(["--http-port", &http.port().to_string()])
            .args(["--https-port", &https.port().to_string()])
            .args(["--api-bind", &api.to_string()])
            // Streaming ports too, so parallel tests (and another howl) never collide.
            .env("HOWL_RTSP_PORT", free_tcp_port().to_string())
            .env(
                "HOWL_RTSP_EGRESS_BIND",
                format!("127.0.0.1:{}", free_tcp_port()),
            )
            .env("HOWL_VIDEO_PORT", free_udp_port().to_string())
            .env("HOWL_CONTROL_PORT", free_udp_port().to_string())
            .env("HOWL_AUDIO_PORT", free_udp_port().to_string())
            // The browsers' WebRTC port: any free one (the default 8555 is a second howl's).
            .env("HOWL_WEBRTC_BIND", "127.0.0.1:0")
            .env("HOWL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("spawn howl");
        let mut server = Self {
            child,
            http,
            https,
            api,
            state_dir,
            log,
            _tmp: tmp,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let probe_dir = self._tmp.path().join("probe-client");
        let probe = Client::new(&probe_dir).expect("probe client");
        let end = tokio::time::Instant::now() + READY_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("howl exited early ({status}):\n{}", self.log_text());
            }
            let token_ready = self.state_dir.join("api-token").is_file();
            if token_ready && probe.server_info(self.http).await.is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "howl not ready within {READY_DEADLINE:?}:\n{}",
                self.log_text()
            );
            // Polling for readiness: the server offers no event to wait on.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The management API token.
    pub fn token(&self) -> String {
        howl_client::api::read_token(&self.state_dir).expect("api token")
    }
}

impl Drop for HowlServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
