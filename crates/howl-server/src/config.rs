//! Server configuration: defaults, then the TOML file (`--config`), then `HOWL_<KEY>`
//! environment variables, then command-line flags. Unknown keys are errors, so a typo never
//! silently leaves a default in place: in the file, and for `HOWL_*` variables (an unknown one
//! is refused with the nearest known name, see [`OTHER_ENV_VARS`] for the non-key variables).

use howl_core::apps::AppConfig;
use howl_core::encryption::{EncryptionMode, EncryptionPolicy};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every setting of `howl serve`. Field names are the TOML keys; each scalar key can also be
/// set as `HOWL_<KEY>` (upper case), e.g. `HOWL_HTTP_PORT=48989`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the NVHTTP (HTTP and HTTPS) listeners bind to.
    pub bind_address: IpAddr,
    /// NVHTTP plain-HTTP port (serverinfo, pairing steps 1-4).
    pub http_port: u16,
    /// NVHTTP HTTPS port (mutual TLS; everything authenticated).
    pub https_port: u16,
    /// Management API address (REST, PIN entry). Keep it on loopback unless fronted by TLS.
    pub api_bind: SocketAddr,
    /// Host name shown to clients; defaults to the machine's host name.
    pub hostname: Option<String>,
    /// Advertise `_nvstream._tcp` over mDNS.
    pub mdns: bool,
    /// How long a pairing request waits for the operator's PIN, and how long the rest of the
    /// handshake may take, in seconds.
    pub pairing_window_secs: u64,
    /// Deadline for a TLS handshake, in milliseconds.
    pub tls_handshake_timeout_ms: u64,
    /// Deadline for a client to send its complete request headers, in milliseconds.
    pub header_timeout_ms: u64,
    /// Deadline for answering one ordinary request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Most concurrent connections per listener; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Largest request head (request line and headers) accepted, in bytes. Pairing step 1
    /// sends a ~2.5 KB URL, so this must stay well above 16 KiB.
    pub max_header_bytes: usize,
    /// Largest request body accepted by the management API, in bytes.
    pub max_body_bytes: usize,
    /// First TCP port of the RTSP range. Each launch listens on its own port from
    /// `rtsp_port .. rtsp_port + rtsp_port_count` (sent to the client in `sessionUrl0`); 0
    /// picks any free port.
    pub rtsp_port: u16,
    /// How many RTSP ports the range holds: the most launches handshaking at once.
    pub rtsp_port_count: u16,
    /// Shared UDP port for video (all clients).
    pub video_port: u16,
    /// Shared UDP port for the ENet control stream (all clients).
    pub control_port: u16,
    /// Shared UDP port for audio (all clients).
    pub audio_port: u16,
    /// The media worker executable. Default: `HOWL_WORKER_BIN`, else `howl-worker` next to
    /// the `howl` binary.
    pub worker_bin: Option<PathBuf>,
    /// Share of video FEC parity per block, in percent (Moonlight hosts use 20).
    pub fec_percentage: u8,
    /// Spend a small frame's unused share of the viewer's bitrate on extra FEC parity (up to
    /// the 255 % a block can advertise), so tiny frames survive heavy random loss. Off: the
    /// reference rule only (the percentage above, at least the client's minimum of 2).
    pub fec_small_frames: bool,
    /// FOR TESTING ONLY: drop this percentage of outgoing video/audio datagrams at random,
    /// to exercise FEC and keyframe recovery. Keep 0 in production.
    pub fault_drop_percent: f64,
    /// FOR TESTING ONLY: serve `POST /api/v1/debug/wedge-engine` (admin token), which blocks
    /// the engine actor on purpose so the `/readyz` and watchdog tests can see a wedged
    /// server. Keep false in production.
    pub fault_wedge_api: bool,
    /// How long an app keeps running after its client disconnected without quitting, so the
    /// client can resume it, in seconds.
    pub resume_linger_secs: u64,
    /// Deadline from `/launch` to the end of the RTSP handshake, in seconds.
    pub rtsp_deadline_secs: u64,
    /// After the RTSP handshake, how long the client has to connect its control stream, in
    /// seconds.
    pub connect_deadline_secs: u64,
    /// How long a connected client may send no control message before its session ends, in
    /// seconds (clients ping every 100 ms).
    pub control_silence_secs: u64,
    /// Serve RTSP to standard players (VLC, ffmpeg, GStreamer, OBS) on `rtsp_egress_bind`.
    pub rtsp_egress: bool,
    /// Address of the players' RTSP listener. Loopback by default: players log in with API
    /// tokens, so expose it only where the API would be exposed.
    pub rtsp_egress_bind: SocketAddr,
    /// A player that sends no keep-alive (RTSP request or RTCP report) for this long is ended,
    /// in seconds (announced to players in the `Session` header).
    pub rtsp_egress_session_timeout_secs: u64,
    /// A player that set up its tracks but sends no PLAY within this long is ended, in
    /// seconds.
    pub rtsp_egress_play_timeout_secs: u64,
    /// Offer RTP over UDP to players (two shared port pairs); off: interleaved TCP only.
    pub rtsp_egress_udp: bool,
    /// Challenge players with Digest as well as Basic. Digest keeps the token off the wire
    /// but works only with the admin token (tenant tokens are stored as hashes), and ffmpeg
    /// and VLC pick Digest whenever it is offered: turn it off to let tenants use them.
    pub rtsp_egress_digest: bool,
    /// Serve browser viewers (WebRTC, signalled with WHEP on the management API).
    pub webrtc: bool,
    /// The one UDP address every browser viewer's media uses (ICE-lite host candidate). Port
    /// 0 picks a free port. Loopback by default, like `api_bind`: set a LAN address (and
    /// `api_bind`) to serve browsers on other machines.
    pub webrtc_bind: SocketAddr,
    /// The address browsers are told to reach `webrtc_bind` at (the ICE candidate); needed
    /// when `webrtc_bind` is unspecified (`0.0.0.0`) or behind a NAT. Default: its address.
    pub webrtc_candidate_ip: Option<IpAddr>,
    /// A connected browser that sends nothing (ICE consent checks, RTCP) for this long is
    /// ended (`browser_gone`), in seconds.
    pub webrtc_silence_secs: u64,
    /// STUN/TURN servers for browsers behind a NAT: a list of `{ urls = ["stun:..."] }` or
    /// `{ urls = ["turn:..."], username = "...", credential = "..." }` (WebRTC's
    /// `RTCIceServer`). The watch pages get them from `GET /api/v1/webrtc/ice-servers`, other
    /// WHEP players from the answer's `Link` headers. Credentials are never logged.
    pub webrtc_ice_servers: Vec<crate::viewer::browser::IceServer>,
    /// The most browser offers answered but not yet connected (each holds its WebRTC state
    /// for up to 15 s); one more POST is refused at once with 503 and `Retry-After`.
    pub webrtc_max_pending_offers: usize,
    /// Origins (`https://app.example.com`) whose pages may call the WHEP endpoints from
    /// another site (CORS). Empty: only pages served by the API itself.
    pub webrtc_cors_origins: Vec<String>,
    /// Text crosses between a browser viewer's clipboard and the desktop's, both ways, for
    /// viewers that control the desktop: what its apps copy appears in the page, what the
    /// page pastes becomes the desktop's clipboard.
    pub clipboard: bool,
    /// List the built-in "Desktop" app (a window manager and xterm in a virtual desktop) when
    /// a window manager (twm, openbox, fluxbox or icewm) and xterm are on `PATH`. An app of
    /// your own titled "Desktop" replaces it.
    pub desktop_app: bool,
    /// The longest a shutdown (SIGTERM or SIGINT) may take, in seconds: sessions end, workers
    /// stop, listeners close, and past this the process exits anyway.
    pub shutdown_deadline_secs: u64,
    /// How desktops are kept apart: `"cookie"` (every display and sound server opens only with
    /// its own random cookie) or `"uid"` (also each desktop's app under a Unix uid of its own
    /// from `desktop_uid_range`; needs root or CAP_SETUID, CAP_SETGID, CAP_CHOWN and
    /// CAP_DAC_OVERRIDE, and the server refuses to start without them).
    pub desktop_isolation: DesktopIsolation,
    /// `"FIRST-LAST"`: the uids (= gids) of desktop apps at the `uid` level, first + display
    /// number. Pick a range no real account uses; no /etc/passwd entries are needed.
    pub desktop_uid_range: String,
    /// Stream encryption for clients on loopback (127.0.0.0/8, ::1): `"off"` (request none,
    /// plain RTSP; a client that asks for encryption still gets it), `"preferred"` (request
    /// video, audio and control encryption and encrypted RTSP; serve a client that cannot) or
    /// `"required"` (refuse a client that cannot). The class is that of the `/launch`
    /// request's source address.
    pub encryption_loopback: EncryptionMode,
    /// Stream encryption for clients on a private LAN (RFC 1918, IPv4 link-local, IPv6
    /// unique local and link-local); values as for `encryption_loopback`.
    pub encryption_lan: EncryptionMode,
    /// Stream encryption for every other client address; values as for
    /// `encryption_loopback`.
    pub encryption_wan: EncryptionMode,
    /// Admission control: the most producers (private launches, lobbies, app shares for RTSP
    /// players) running at once; one more is refused at once with a reason that names this
    /// key (the client's launch error, RTSP 503, API 409) instead of degrading every stream.
    /// Joining a running lobby or app share is always admitted. 0: unlimited.
    pub max_producers: u32,
    /// Admission control: the most video encoder sessions at once (a consumer NVIDIA GPU
    /// allows 8 NVENC sessions). Every producer holds one from its admission to its stop, so
    /// today the smaller of this and `max_producers` applies. 0: unlimited.
    pub max_encoder_sessions: u32,
    /// The TLS endpoint media nodes (`howl node`) dial, e.g. `"0.0.0.0:47991"`. Unset (the
    /// default): no node endpoint, every producer runs here. Off by default because it is a
    /// listener reachable from other machines, which a single-box install does not need.
    pub node_bind: Option<SocketAddr>,
    /// Whether this machine (the built-in `local` node) runs producers too; false: only media
    /// nodes do (a control plane without media).
    pub local_node: bool,
    /// How a new producer's node is chosen among those with room: `"spread"` (fewest
    /// producers) or `"pack"` (fill the busiest node first).
    pub placement: String,
    /// Apps besides the built-in "Test Pattern" (and "Desktop").
    pub apps: Vec<AppConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            http_port: 47989,
            https_port: 47984,
            api_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 47990),
            hostname: None,
            mdns: true,
            pairing_window_secs: 120,
            tls_handshake_timeout_ms: 10_000,
            header_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_connections: 512,
            max_header_bytes: 64 * 1024,
            max_body_bytes: 64 * 1024,
            rtsp_port: 48010,
            rtsp_port_count: 100,
            video_port: 47998,
            control_port: 47999,
            audio_port: 48000,
            worker_bin: None,
            fec_percentage: 20,
            fec_small_frames: true,
            fault_drop_percent: 0.0,
            fault_wedge_api: false,
            resume_linger_secs: 60,
            rtsp_deadline_secs: 20,
            connect_deadline_secs: 15,
            control_silence_secs: 10,
            rtsp_egress: true,
            rtsp_egress_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8554),
            rtsp_egress_session_timeout_secs: 60,
            rtsp_egress_play_timeout_secs: 20,
            rtsp_egress_udp: true,
            rtsp_egress_digest: true,
            webrtc: true,
            webrtc_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8555),
            webrtc_candidate_ip: None,
            webrtc_silence_secs: 10,
            webrtc_ice_servers: Vec::new(),
            webrtc_max_pending_offers: crate::viewer::browser::DEFAULT_MAX_PENDING_OFFERS,
            webrtc_cors_origins: Vec::new(),
            clipboard: true,
            desktop_app: true,
            shutdown_deadline_secs: 10,
            desktop_isolation: DesktopIsolation::Cookie,
            desktop_uid_range: "200000-265535".into(),
            encryption_loopback: EncryptionMode::Preferred,
            encryption_lan: EncryptionMode::Preferred,
            encryption_wan: EncryptionMode::Preferred,
            max_producers: 0,
            max_encoder_sessions: 0,
            node_bind: None,
            local_node: true,
            placement: "spread".into(),
            apps: Vec::new(),
        }
    }
}

/// `desktop_isolation`: see [`Config::desktop_isolation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesktopIsolation {
    Cookie,
    Uid,
}

impl DesktopIsolation {
    pub fn name(self) -> &'static str {
        match self {
            DesktopIsolation::Cookie => "cookie",
            DesktopIsolation::Uid => "uid",
        }
    }
}

/// A configuration that cannot be used; the message says which key or file is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("unknown environment variable {var}: not a howl setting (did you mean {nearest}?)")]
    UnknownEnv { var: String, nearest: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Keys that may come from the environment: every scalar key of [`Config`].
const ENV_KEYS: &[&str] = &[
    "bind_address",
    "http_port",
    "https_port",
    "api_bind",
    "hostname",
    "mdns",
    "pairing_window_secs",
    "tls_handshake_timeout_ms",
    "header_timeout_ms",
    "request_timeout_ms",
    "max_connections",
    "max_header_bytes",
    "max_body_bytes",
    "rtsp_port",
    "rtsp_port_count",
    "video_port",
    "control_port",
    "audio_port",
    "worker_bin",
    "fec_percentage",
    "fec_small_frames",
    "fault_drop_percent",
    "fault_wedge_api",
    "resume_linger_secs",
    "rtsp_deadline_secs",
    "connect_deadline_secs",
    "control_silence_secs",
    "rtsp_egress",
    "rtsp_egress_bind",
    "rtsp_egress_session_timeout_secs",
    "rtsp_egress_play_timeout_secs",
    "rtsp_egress_udp",
    "rtsp_egress_digest",
    "webrtc",
    "webrtc_bind",
    "webrtc_candidate_ip",
    "webrtc_silence_secs",
    // Lists: `HOWL_WEBRTC_ICE_SERVERS='[{urls=["stun:stun.example.org:3478"]}]'` is read as
    // TOML like every value.
    "webrtc_ice_servers",
    "webrtc_max_pending_offers",
    "webrtc_cors_origins",
    "clipboard",
    "desktop_app",
    "shutdown_deadline_secs",
    "desktop_isolation",
    "desktop_uid_range",
    "encryption_loopback",
    "encryption_lan",
    "encryption_wan",
    "max_producers",
    "max_encoder_sessions",
    "node_bind",
    "local_node",
    "placement",
];

/// `HOWL_*` variables that are not configuration keys and still belong to howl or its own
/// tools, so finding them in the server's environment is no typo: the log filters, the
/// worker's marker, the client CLI's and the test suite's variables (a shell that runs the
/// tests or the client exports them, and a server started from it inherits them). The
/// command line's own `env` names (`HOWL_CONFIG`, `HOWL_STATE_DIR`, ...) come from clap and
/// are passed to [`Config::load`] by the caller.
pub const OTHER_ENV_VARS: &[&str] = &[
    "HOWL_LOG",
    "HOWL_WORKER_LOG",
    "HOWL_PRODUCER",
    "HOWL_API_TOKEN",
    "HOWL_BIN",
    "HOWL_VENV",
    "HOWL_ROOT",
    "HOWL_ARTIFACT_DIR",
    "HOWL_DESKTOP_DUMP",
    "HOWL_TESTAPP_DEBUG",
];

/// Prefixes of variables owned by howl's tools (`howl-client`, the test suite).
pub const OTHER_ENV_PREFIXES: &[&str] = &["HOWL_CLIENT_", "HOWL_TEST_"];

impl Config {
    /// Loads the file (if any), then overlays `HOWL_<KEY>` variables from `env`. A `HOWL_*`
    /// variable that is neither a key, nor in `cli_env` (the command line's variables), nor
    /// one of [`OTHER_ENV_VARS`] is an error naming the nearest known variable.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        cli_env: &[String],
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            None => toml::Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })?
            }
        };
        for (var, value) in env {
            let Some(key) = var.strip_prefix("HOWL_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if !ENV_KEYS.contains(&key.as_str()) {
                if cli_env.contains(&var) || is_other_env_var(&var) {
                    continue;
                }
                return Err(ConfigError::UnknownEnv {
                    nearest: nearest_env_var(&var, cli_env),
                    var,
                });
            }
            table.insert(key, env_value(&value));
        }
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| match file {
                Some(path) => ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.message().to_owned(),
                },
                None => ConfigError::Env {
                    var: "HOWL_*".into(),
                    message: e.message().to_owned(),
                },
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_header_bytes < 16 * 1024 {
            return Err(ConfigError::Invalid(
                "max_header_bytes must be at least 16384 (pairing sends ~2.5 KB request lines)"
                    .into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid("max_connections must be > 0".into()));
        }
        if self.pairing_window_secs == 0 || self.pairing_window_secs > 3600 {
            return Err(ConfigError::Invalid(
                "pairing_window_secs must be between 1 and 3600".into(),
            ));
        }
        for (name, ms) in [
            ("tls_handshake_timeout_ms", self.tls_handshake_timeout_ms),
            ("header_timeout_ms", self.header_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if ms == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be > 0")));
            }
        }
        if howl_core::domain::Placement::parse(&self.placement).is_none() {
            return Err(ConfigError::Invalid(format!(
                "placement must be \"spread\" or \"pack\", not {:?}",
                self.placement
            )));
        }
        if self.webrtc_silence_secs == 0 {
            return Err(ConfigError::Invalid(
                "webrtc_silence_secs must be > 0".into(),
            ));
        }
        for server in &self.webrtc_ice_servers {
            server
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("webrtc_ice_servers: {e}")))?;
        }
        if self.webrtc_max_pending_offers == 0 {
            return Err(ConfigError::Invalid(
                "webrtc_max_pending_offers must be > 0".into(),
            ));
        }
        for origin in &self.webrtc_cors_origins {
            if !is_origin(origin) {
                return Err(ConfigError::Invalid(format!(
                    "webrtc_cors_origins: {origin:?} is not an origin (scheme://host[:port], \
                     http or https, no path)"
                )));
            }
        }
        if self.webrtc && self.webrtc_bind.ip().is_unspecified() {
            match self.webrtc_candidate_ip {
                Some(ip) if !ip.is_unspecified() => {}
                _ => {
                    return Err(ConfigError::Invalid(
                        "webrtc_bind on an unspecified address needs webrtc_candidate_ip: the                          address browsers reach this host at"
                            .into(),
                    ));
                }
            }
        }
        if self.fec_percentage > 200 {
            return Err(ConfigError::Invalid(
                "fec_percentage must be between 0 and 200".into(),
            ));
        }
        if !(0.0..=100.0).contains(&self.fault_drop_percent) {
            return Err(ConfigError::Invalid(
                "fault_drop_percent must be between 0 and 100".into(),
            ));
        }
        for (name, secs) in [
            ("rtsp_deadline_secs", self.rtsp_deadline_secs),
            ("connect_deadline_secs", self.connect_deadline_secs),
            ("control_silence_secs", self.control_silence_secs),
        ] {
            if secs == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be > 0")));
            }
        }
        if !(1..=3600).contains(&self.shutdown_deadline_secs) {
            return Err(ConfigError::Invalid(
                "shutdown_deadline_secs must be between 1 and 3600".into(),
            ));
        }
        for (name, secs) in [
            (
                "rtsp_egress_session_timeout_secs",
                self.rtsp_egress_session_timeout_secs,
            ),
            (
                "rtsp_egress_play_timeout_secs",
                self.rtsp_egress_play_timeout_secs,
            ),
        ] {
            if !(1..=86_400).contains(&secs) {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be between 1 and 86400"
                )));
            }
        }
        self.desktop_uid_range()?;
        howl_core::AppCatalog::new(&self.apps).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(())
    }

    /// `desktop_uid_range` as (first, last): both above 0 (never root), first <= last.
    pub fn desktop_uid_range(&self) -> Result<(u32, u32), ConfigError> {
        let bad = || {
            ConfigError::Invalid(format!(
                "desktop_uid_range {:?}: expected \"FIRST-LAST\" with 0 < FIRST <= LAST < 4294967295",
                self.desktop_uid_range
            ))
        };
        let (a, b) = self.desktop_uid_range.split_once('-').ok_or_else(bad)?;
        let first: u32 = a.trim().parse().map_err(|_| bad())?;
        let last: u32 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last || last == u32::MAX {
            return Err(bad());
        }
        Ok((first, last))
    }

    pub fn pairing_window(&self) -> Duration {
        Duration::from_secs(self.pairing_window_secs)
    }
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.tls_handshake_timeout_ms)
    }
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    /// The three `encryption_*` keys as the policy the engine applies per launch.
    pub fn encryption_policy(&self) -> EncryptionPolicy {
        EncryptionPolicy {
            loopback: self.encryption_loopback,
            lan: self.encryption_lan,
            wan: self.encryption_wan,
        }
    }
    /// The two admission keys as the domain's limits (0: none).
    pub fn admission(&self) -> howl_core::domain::Admission {
        let limit = |n: u32| (n > 0).then_some(n);
        howl_core::domain::Admission {
            max_producers: limit(self.max_producers),
            max_encoder_sessions: limit(self.max_encoder_sessions),
        }
    }
    pub fn shutdown_deadline(&self) -> Duration {
        Duration::from_secs(self.shutdown_deadline_secs)
    }
}

/// `scheme://host[:port]` as a browser writes it in `Origin`: http or https, lower case, no
/// path, query or trailing slash.
fn is_origin(s: &str) -> bool {
    let Ok(uri) = s.parse::<http::Uri>() else {
        return false;
    };
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let bare = uri
        .authority()
        .is_some_and(|a| s == format!("{}://{a}", uri.scheme_str().unwrap_or("")));
    scheme_ok && bare && s == s.to_ascii_lowercase()
}

/// Every configuration key as its environment variable (`HOWL_HTTP_PORT`, ...).
pub fn key_env_vars() -> impl Iterator<Item = String> {
    ENV_KEYS
        .iter()
        .map(|k| format!("HOWL_{}", k.to_ascii_uppercase()))
}

fn is_other_env_var(var: &str) -> bool {
    OTHER_ENV_VARS.contains(&var) || OTHER_ENV_PREFIXES.iter().any(|p| var.starts_with(p))
}

/// The known variable closest to `var` by edit distance (ties: the first in key order).
fn nearest_env_var(var: &str, cli_env: &[String]) -> String {
    key_env_vars()
        .chain(cli_env.iter().cloned())
        .chain(OTHER_ENV_VARS.iter().map(|s| (*s).to_owned()))
        .min_by_key(|known| edit_distance(var, known))
        .unwrap_or_default()
}

/// Levenshtein distance over bytes (variable names are ASCII), one row at a time.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diag + usize::from(ca != *cb));
            diag = above;
        }
    }
    row[b.len()]
}

/// An environment value is read as a TOML value when it parses as one (numbers, booleans,
/// quoted strings), else as a bare string (addresses, host names).
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None, [], &[]).unwrap();
        assert_eq!(c.http_port, 47989);
        assert_eq!(c.https_port, 47984);
        assert!(c.mdns);
    }

    #[test]
    fn file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("howl.toml");
        std::fs::write(
            &p,
            "http_port = 1000\nhostname = \"box\"\n[[apps]]\ntitle = \"Desk\"\nkind = \"process\"\ncommand = \"xterm\"\n",
        )
        .unwrap();
        let env = vec![
            ("HOWL_HTTP_PORT".to_string(), "2000".to_string()),
            ("HOWL_API_BIND".to_string(), "127.0.0.1:9".to_string()),
            ("HOWL_MDNS".to_string(), "false".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let c = Config::load(Some(&p), env, &[]).unwrap();
        assert_eq!(c.http_port, 2000);
        assert_eq!(c.hostname.as_deref(), Some("box"));
        assert_eq!(c.api_bind.port(), 9);
        assert!(!c.mdns);
        assert_eq!(c.apps.len(), 1);
    }

    #[test]
    fn an_app_may_require_node_labels_and_a_gpu() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("howl.toml");
        std::fs::write(
            &p,
            "[[apps]]\ntitle = \"Game\"\nkind = \"process\"\ncommand = \"g\"\nnode_labels = { gpu = \"nvidia\" }\nrequires_gpu = true\n",
        )
        .unwrap();
        let c = Config::load(Some(&p), [], &[]).unwrap();
        let r = &c.apps[0].requires;
        assert_eq!(r.node_labels.get("gpu").map(String::as_str), Some("nvidia"));
        assert!(r.requires_gpu);
        std::fs::write(
            &p,
            "[[apps]]\ntitle = \"Game\"\nkind = \"process\"\ncommand = \"g\"\nrequire_gpu = true\n",
        )
        .unwrap();
        let e = Config::load(Some(&p), [], &[]).unwrap_err().to_string();
        assert!(e.contains("require_gpu"), "{e}");
    }

    #[test]
    fn errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("howl.toml");
        std::fs::write(&p, "htp_port = 1\n").unwrap();
        let e = Config::load(Some(&p), [], &[]).unwrap_err().to_string();
        assert!(e.contains("htp_port") && e.contains("howl.toml"), "{e}");
        let e = Config::load(None, [("HOWL_HTTP_PORT".into(), "lots".into())], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("HOWL_"), "{e}");
        let e = Config::load(None, [("HOWL_MAX_HEADER_BYTES".into(), "100".into())], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_header_bytes"), "{e}");
        let missing = Config::load(Some(Path::new("/nonexistent/howl.toml")), [], &[]).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/howl.toml"));
    }

    #[test]
    fn unknown_env_vars_are_refused_with_the_nearest_name() {
        let cli = vec!["HOWL_CONFIG".to_string(), "HOWL_STATE_DIR".to_string()];
        let err = |var: &str| {
            Config::load(None, [(var.to_string(), "1".to_string())], &cli)
                .unwrap_err()
                .to_string()
        };
        let e = err("HOWL_HTTP_PROT");
        assert!(
            e.contains("HOWL_HTTP_PROT") && e.contains("HOWL_HTTP_PORT"),
            "{e}"
        );
        let e = err("HOWL_STATEDIR");
        assert!(e.contains("did you mean HOWL_STATE_DIR?"), "{e}");
        let e = err("HOWL_SHUTDOWN_DEADLINE");
        assert!(e.contains("HOWL_SHUTDOWN_DEADLINE_SECS"), "{e}");
        // The command line's variables, howl's own tools' and other programs' are accepted.
        for var in [
            "HOWL_CONFIG",
            "HOWL_LOG",
            "HOWL_BIN",
            "HOWL_CLIENT_LOG",
            "HOWL_TEST_SOURCE_CYCLES",
            "HOWLER",
            "PATH",
        ] {
            Config::load(None, [(var.to_string(), "x".to_string())], &cli)
                .unwrap_or_else(|e| panic!("{var}: {e}"));
        }
    }

    #[test]
    fn shutdown_deadline_from_file_and_env() {
        assert_eq!(
            Config::load(None, [], &[]).unwrap().shutdown_deadline(),
            Duration::from_secs(10)
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("howl.toml");
        std::fs::write(&p, "shutdown_deadline_secs = 3\n").unwrap();
        assert_eq!(
            Config::load(Some(&p), [], &[])
                .unwrap()
                .shutdown_deadline_secs,
            3
        );
        let env = [("HOWL_SHUTDOWN_DEADLINE_SECS".to_string(), "4".to_string())];
        assert_eq!(
            Config::load(Some(&p), env, &[])
                .unwrap()
                .shutdown_deadline_secs,
            4
        );
        let env = [("HOWL_SHUTDOWN_DEADLINE_SECS".to_string(), "0".to_string())];
        let e = Config::load(None, env, &[]).unwrap_err().to_string();
        assert!(e.contains("shutdown_deadline_secs"), "{e}");
    }

    #[test]
    fn webrtc_ice_servers_cors_and_the_pending_cap_from_the_file_and_the_environment() {
        let c = Config::load(None, [], &[]).unwrap();
        assert!(c.webrtc_ice_servers.is_empty() && c.webrtc_cors_origins.is_empty());
        assert_eq!(c.webrtc_max_pending_offers, 32);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("howl.toml");
        std::fs::write(
            &p,
            "webrtc_max_pending_offers = 4\nwebrtc_cors_origins = [\"https://app.example.com\"]\n\
             [[webrtc_ice_servers]]\nurls = [\"stun:stun.example.org:3478\"]\n\
             [[webrtc_ice_servers]]\nurls = [\"turn:turn.example.org?transport=udp\"]\n\
             username = \"u\"\ncredential = \"s3cret\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&p), [], &[]).unwrap();
        assert_eq!(c.webrtc_max_pending_offers, 4);
        assert_eq!(c.webrtc_cors_origins, ["https://app.example.com"]);
        assert_eq!(c.webrtc_ice_servers.len(), 2);
        assert_eq!(
            c.webrtc_ice_servers[1].credential.as_deref(),
            Some("s3cret")
        );
        // The credential never reaches a log line through Debug.
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        // The environment: a TOML list, like the file's.
        let env = [(
            "HOWL_WEBRTC_ICE_SERVERS".to_owned(),
            "[{urls=[\"stun:other.example.org\"]}]".to_owned(),
        )];
        let c = Config::load(Some(&p), env, &[]).unwrap();
        assert_eq!(c.webrtc_ice_servers[0].urls, ["stun:other.example.org"]);
        for (var, value, names) in [
            (
                "HOWL_WEBRTC_ICE_SERVERS",
                "[{urls=[\"http://x\"]}]",
                "stun:",
            ),
            (
                "HOWL_WEBRTC_ICE_SERVERS",
                "[{urls=[\"turn:x\"]}]",
                "username",
            ),
            ("HOWL_WEBRTC_ICE_SERVERS", "[{urls=[]}]", "URL"),
            (
                "HOWL_WEBRTC_MAX_PENDING_OFFERS",
                "0",
                "webrtc_max_pending_offers",
            ),
            (
                "HOWL_WEBRTC_CORS_ORIGINS",
                "[\"https://a.example/path\"]",
                "origin",
            ),
            ("HOWL_WEBRTC_CORS_ORIGINS", "[\"*\"]", "origin"),
            (
                "HOWL_WEBRTC_CORS_ORIGINS",
                "[\"ftp://a.example\"]",
                "origin",
            ),
        ] {
            let e = Config::load(None, [(var.to_owned(), value.to_owned())], &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(names), "{var}={value}: {e}");
        }
        assert!(is_origin("http://127.0.0.1:8080"));
        assert!(!is_origin("https://A.example"));
        assert!(!is_origin("https://a.example/"));
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    /// The keys docs/configuration.md lists are exactly the keys the code accepts: the struct's
    /// fields (as serde reports them for an unknown key) and the environment's list.
    #[test]
    fn the_documented_keys_are_the_code_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("howl.toml");
        std::fs::write(&p, "zzz_not_a_key = 1\n").unwrap();
        let e = Config::load(Some(&p), [], &[]).unwrap_err().to_string();
        let expected = e
            .split("expected one of")
            .nth(1)
            .unwrap_or_else(|| panic!("{e}"));
        let fields: std::collections::BTreeSet<String> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        let mut env_and_apps: std::collections::BTreeSet<String> =
            ENV_KEYS.iter().map(|k| (*k).to_owned()).collect();
        env_and_apps.insert("apps".into());
        assert_eq!(
            fields, env_and_apps,
            "ENV_KEYS must list every scalar field"
        );

        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/configuration.md"
        ))
        .unwrap();
        // First cell of each table row; a cell may name several keys (`a` / `b`).
        let documented: std::collections::BTreeSet<String> = doc
            .lines()
            .filter(|l| l.starts_with("| `"))
            .filter_map(|l| l.split('|').nth(1))
            .flat_map(|cell| {
                cell.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            documented, fields,
            "docs/configuration.md's table vs the code"
        );
    }

    #[test]
    fn encryption_defaults_to_preferred_and_reads_each_class() {
        use howl_core::encryption::EncryptionMode as M;
        let c = Config::load(None, [], &[]).unwrap();
        assert_eq!(
            c.encryption_policy(),
            howl_core::encryption::EncryptionPolicy::default()
        );
        let c = Config::load(
            None,
            [
                ("HOWL_ENCRYPTION_LOOPBACK".into(), "off".into()),
                ("HOWL_ENCRYPTION_WAN".into(), "required".into()),
            ],
            &[],
        )
        .unwrap();
        let p = c.encryption_policy();
        assert_eq!(
            (p.loopback, p.lan, p.wan),
            (M::Off, M::Preferred, M::Required)
        );
        let e = Config::load(None, [("HOWL_ENCRYPTION_LAN".into(), "on".into())], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("preferred"), "{e}");
    }

    #[test]
    fn admission_limits_default_to_none_and_come_from_the_file_and_the_environment() {
        use howl_core::domain::Admission;
        let c = Config::load(None, [], &[]).unwrap();
        assert_eq!(c.admission(), Admission::default());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("howl.toml");
        std::fs::write(&p, "max_producers = 8\nmax_encoder_sessions = 3\n").unwrap();
        let c = Config::load(Some(&p), [], &[]).unwrap();
        assert_eq!(
            c.admission(),
            Admission {
                max_producers: Some(8),
                max_encoder_sessions: Some(3)
            }
        );
        // The environment wins over the file; 0 is unlimited.
        let env = [
            ("HOWL_MAX_PRODUCERS".to_owned(), "2".to_owned()),
            ("HOWL_MAX_ENCODER_SESSIONS".to_owned(), "0".to_owned()),
        ];
        let c = Config::load(Some(&p), env, &[]).unwrap();
        assert_eq!(
            c.admission(),
            Admission {
                max_producers: Some(2),
                max_encoder_sessions: None
            }
        );
        let e = Config::load(None, [("HOWL_MAX_PRODUCERS".into(), "-1".into())], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("HOWL_"), "{e}");
    }

    #[test]
    fn desktop_isolation_defaults_to_cookie_and_checks_the_uid_range() {
        let c = Config::load(None, [], &[]).unwrap();
        assert_eq!(c.desktop_isolation, DesktopIsolation::Cookie);
        assert_eq!(c.desktop_uid_range().unwrap(), (200_000, 265_535));
        let c = Config::load(
            None,
            [
                ("HOWL_DESKTOP_ISOLATION".into(), "uid".into()),
                ("HOWL_DESKTOP_UID_RANGE".into(), "300000-300099".into()),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.desktop_isolation, DesktopIsolation::Uid);
        assert_eq!(c.desktop_uid_range().unwrap(), (300_000, 300_099));
        for bad in ["0-10", "10-5", "x-1", "100-", "1-4294967295"] {
            let e = Config::load(None, [("HOWL_DESKTOP_UID_RANGE".into(), bad.into())], &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("desktop_uid_range"), "{bad}: {e}");
        }
        let e = Config::load(
            None,
            [("HOWL_DESKTOP_ISOLATION".into(), "none".into())],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cookie"), "{e}");
    }
}
