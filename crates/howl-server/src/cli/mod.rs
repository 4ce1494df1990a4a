//! Command-line interface. `howl` alone is `howl serve`.

pub mod api;
pub mod apiclient;
pub mod commands;
pub mod format;
pub mod nodes;
pub mod table;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// howl: a multi-user GameStream host. Moonlight clients pair with it and stream its apps.
///
/// Run `howl` (or `howl serve`) to start the server with the built-in "Test Pattern" app. When
/// a Moonlight client starts pairing, it shows a PIN; enter it with `howl pin <PIN>`.
///
/// The other commands talk to a running server through its management API (address from
/// --api, token from <state-dir>/api-token): `howl status`, `howl sessions`, `howl lobbies`,
/// `howl clients`, `howl nodes`. Each takes --json for scripts.
///
/// `howl node` runs a media node on another machine: it dials the server's node endpoint
/// (`node_bind`) and runs the media workers placed on it (docs/nodes.md).
///
/// The same API serves a web UI at http://127.0.0.1:47990/ (sign in with the token), live
/// events at /api/v1/events, Prometheus metrics at /metrics and its OpenAPI document at
/// /api/v1/openapi.json; on <state-dir>/api.sock it answers without a token.
#[derive(Debug, Parser)]
#[command(name = "howl", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
    /// Submit the PIN a Moonlight client shows, completing its pairing request.
    #[command(after_help = "Example:\n  howl pin 1234\n  howl pin 1234 --client 3f2a9c")]
    Pin(PinArgs),
    /// Show the running server's version and live counters.
    #[command(after_help = "Example:\n  howl status\n  howl status --json | jq .engine.sessions")]
    Status(StatusArgs),
    /// List the streaming sessions, or stop one.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Example:\n  howl sessions\n  howl sessions --json\n  howl sessions stop 3\n  howl sessions permission 3 view"
    )]
    Sessions(SessionsArgs),
    /// List the shared lobbies, create one, or stop one.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Example:\n  howl lobbies\n  howl lobbies create --name \"Movie night\" --app \"Test Pattern\"\n  howl lobbies permission 2 view\n  howl lobbies stop 2"
    )]
    Lobbies(LobbiesArgs),
    /// List the paired clients, or unpair one.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Example:\n  howl clients\n  howl clients --json\n  howl clients unpair 3f2a9c41"
    )]
    Clients(ClientsArgs),
    /// List the nodes that run producers (the built-in local one and media nodes that
    /// joined), with their use against their limits; create join tokens, drain or remove a
    /// node.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Example:\n  howl nodes\n  howl nodes --json\n  howl nodes token --ttl 600 > join-token\n  howl nodes drain gpu-1\n  howl nodes remove gpu-1"
    )]
    Nodes(NodesArgs),
    /// Run a media node: dial out to the control plane (works from behind NAT), join with a
    /// token from `howl nodes token` (later joins use the certificate pinned at the first),
    /// report this machine's capacity and run the media workers the control plane places
    /// here. See docs/nodes.md.
    #[command(
        after_help = "Example:\n  howl node --control-plane cp.example:47991 --token-file /run/secrets/howl-join-token \\\n    --state-dir /var/lib/howl-node --label gpu=nvidia --max-producers 8"
    )]
    Node(NodeArgs),
}

#[derive(Debug, Args, Clone)]
pub struct NodeArgs {
    /// The control plane's node endpoint (its `node_bind`).
    #[arg(long, env = "HOWL_NODE_CONTROL_PLANE", value_name = "HOST:PORT")]
    pub control_plane: String,
    /// File holding the join token (needed for the first join; later joins use the pinned
    /// certificate, and a token that was spent is then ignored).
    #[arg(long, env = "HOWL_NODE_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Where the node keeps its key, certificate, pinned control plane and workers' sockets
    /// (not a server's state directory). [default: $XDG_STATE_HOME/howl-node, else
    /// ~/.local/state/howl-node]
    #[arg(long, env = "HOWL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The node's name (1 to 63 of A-Za-z0-9._-). [default: the host name]
    #[arg(long, env = "HOWL_NODE_NAME", value_name = "NAME")]
    pub name: Option<String>,
    /// An operator label, KEY=VALUE (repeat it; in the environment, comma-separated).
    #[arg(
        long = "label",
        env = "HOWL_NODE_LABELS",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    pub labels: Vec<String>,
    /// The most producers this node runs at once. [default: unlimited]
    #[arg(long, env = "HOWL_MAX_PRODUCERS", value_name = "N")]
    pub max_producers: Option<u32>,
    /// The most video encoder sessions at once on this node, across codecs (a hardware
    /// encoder's limit: 8 on a consumer NVIDIA GPU; x264 has none). [default: unlimited]
    #[arg(long, env = "HOWL_MAX_ENCODER_SESSIONS", value_name = "N")]
    pub max_encoder_sessions: Option<u32>,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// TOML configuration file. Every key can also be set as HOWL_<KEY> in the environment
    /// (e.g. HOWL_HTTP_PORT=48989); see docs/configuration.md for the keys.
    #[arg(long, env = "HOWL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the host key, certificate, paired clients and API token live.
    /// [default: $XDG_STATE_HOME/howl, else ~/.local/state/howl]
    #[arg(long, env = "HOWL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Do not advertise the host over mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// Do not list the built-in "Desktop" app (overrides `desktop_app`).
    #[arg(long)]
    pub no_desktop_app: bool,
    /// Keep browser viewers' clipboards apart from the desktop's (sets `clipboard = false`).
    #[arg(long)]
    pub no_clipboard: bool,
    /// Address for the NVHTTP listeners (overrides `bind_address`). [default: 0.0.0.0]
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<IpAddr>,
    /// NVHTTP HTTP port (overrides `http_port`). [default: 47989]
    #[arg(long, value_name = "PORT")]
    pub http_port: Option<u16>,
    /// NVHTTP HTTPS port (overrides `https_port`). [default: 47984]
    #[arg(long, value_name = "PORT")]
    pub https_port: Option<u16>,
    /// Management API address (overrides `api_bind`). [default: 127.0.0.1:47990]
    #[arg(long, value_name = "ADDR:PORT")]
    pub api_bind: Option<SocketAddr>,
    /// RTSP address for standard players such as VLC and ffmpeg (overrides
    /// `rtsp_egress_bind`); play rtsp://user:<API token>@ADDR:PORT/app/<app> or
    /// /lobby/<lobby>. [default: 127.0.0.1:8554]
    #[arg(long, value_name = "ADDR:PORT")]
    pub rtsp_egress_bind: Option<SocketAddr>,
    /// Do not serve RTSP to players (sets `rtsp_egress = false`).
    #[arg(long)]
    pub no_rtsp_egress: bool,
    /// The shared UDP address of browser viewers' WebRTC media (overrides `webrtc_bind`).
    /// [default: 127.0.0.1:8555]
    #[arg(long, value_name = "ADDR:PORT")]
    pub webrtc_bind: Option<SocketAddr>,
    /// A STUN or TURN URL browsers behind a NAT use (adds to `webrtc_ice_servers`;
    /// repeatable). Credentials for TURN go in the file or HOWL_WEBRTC_ICE_SERVERS, not on a
    /// command line others can read. Example: --webrtc-ice-server stun:stun.example.org:3478
    #[arg(long, value_name = "URL")]
    pub webrtc_ice_server: Vec<String>,
    /// The most browser offers waiting to connect; one more is refused with 503 (overrides
    /// `webrtc_max_pending_offers`). [default: 32]
    #[arg(long, value_name = "N")]
    pub webrtc_max_pending_offers: Option<usize>,
    /// An origin whose pages may call the WHEP endpoints from another site (CORS; adds to
    /// `webrtc_cors_origins`; repeatable). Example: --webrtc-cors-origin https://app.example.com
    #[arg(long, value_name = "ORIGIN")]
    pub webrtc_cors_origin: Vec<String>,
    /// The longest a shutdown may take before the process exits anyway, in seconds
    /// (overrides `shutdown_deadline_secs`). [default: 10]
    #[arg(long, value_name = "SECS")]
    pub shutdown_deadline_secs: Option<u64>,
    /// Stream encryption for clients on loopback (overrides `encryption_loopback`): off
    /// (request none, plain RTSP), preferred (request video, audio and control encryption and
    /// encrypted RTSP; serve clients that cannot) or required (refuse clients that cannot).
    /// [default: preferred]
    #[arg(long, value_name = "MODE")]
    pub encryption_loopback: Option<howl_core::encryption::EncryptionMode>,
    /// Stream encryption for clients on a private LAN: RFC 1918, link-local, IPv6 unique local
    /// (overrides `encryption_lan`); off, preferred or required. [default: preferred]
    #[arg(long, value_name = "MODE")]
    pub encryption_lan: Option<howl_core::encryption::EncryptionMode>,
    /// Stream encryption for every other client address (overrides `encryption_wan`); off,
    /// preferred or required. [default: preferred]
    #[arg(long, value_name = "MODE")]
    pub encryption_wan: Option<howl_core::encryption::EncryptionMode>,
    /// The most producers (private launches, lobbies, app shares) at once; one more is
    /// refused with a reason the client sees (overrides `max_producers`; 0: unlimited).
    /// [default: 0]
    #[arg(long, value_name = "N")]
    pub max_producers: Option<u32>,
    /// The most video encoder sessions at once, one per producer (overrides
    /// `max_encoder_sessions`; 0: unlimited). [default: 0]
    #[arg(long, value_name = "N")]
    pub max_encoder_sessions: Option<u32>,
}

/// Every environment variable the command line reads (`HOWL_CONFIG`, `HOWL_STATE_DIR`, ...),
/// from clap's own definitions so the list cannot drift from the flags.
pub fn env_names() -> Vec<String> {
    fn walk(cmd: &clap::Command, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                let name = env.to_string_lossy().into_owned();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&<Cli as clap::CommandFactory>::command(), &mut out);
    out
}

/// How a client command reaches the running server: shared by every command but `serve`.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// State directory of the running server (its API token is read from DIR/api-token).
    /// [default: $XDG_STATE_HOME/howl, else ~/.local/state/howl]
    #[arg(long, env = "HOWL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Management API address of the running server.
    #[arg(
        long,
        env = "HOWL_API_BIND",
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:47990"
    )]
    pub api: SocketAddr,
}

/// Options of a listing: where the server is and whether to print JSON.
#[derive(Debug, Args, Clone)]
pub struct ListArgs {
    /// Print the API's JSON (pretty) instead of a table, for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args, Clone)]
pub struct PinArgs {
    /// The 4-digit PIN shown by the Moonlight client.
    pub pin: String,
    /// Which pending request, when several clients wait: its id, a fingerprint prefix or its
    /// name (list them with GET /api/v1/pairing/pending).
    #[arg(long)]
    pub client: Option<String>,
    #[command(flatten)]
    pub conn: ClientArgs,
}

#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Debug, Args, Clone)]
pub struct SessionsArgs {
    #[command(subcommand)]
    pub action: Option<SessionsAction>,
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Debug, Subcommand, Clone)]
pub enum SessionsAction {
    /// End a session; its client is told the stream ended.
    #[command(after_help = "Example:\n  howl sessions stop 3")]
    Stop(StopArgs),
    /// Set what a session may do, live (no reconnect): `control` (its keyboard, mouse and
    /// gamepad reach the desktop), `view` (its input is dropped and counted), or `default`
    /// (its lobby's rules again).
    #[command(
        after_help = "Example:\n  howl sessions permission 3 view\n  howl sessions permission 3 default"
    )]
    Permission(SessionPermissionArgs),
}

/// A permission as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PermissionArg {
    /// Keyboard, mouse and gamepad reach the desktop.
    Control,
    /// Watch only: input is dropped and counted.
    View,
    /// Remove the setting: the rules above it apply again.
    Default,
}

impl PermissionArg {
    /// The API's value: `"control"`, `"view"`, or null for `default`.
    pub fn json(self) -> serde_json::Value {
        match self {
            PermissionArg::Control => "control".into(),
            PermissionArg::View => "view".into(),
            PermissionArg::Default => serde_json::Value::Null,
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct SessionPermissionArgs {
    /// The session's id, as `howl sessions` shows it.
    pub id: u64,
    #[arg(value_enum)]
    pub permission: PermissionArg,
    #[command(flatten)]
    pub conn: ClientArgs,
}

#[derive(Debug, Args, Clone)]
pub struct LobbyPermissionArgs {
    /// The lobby's id, as `howl lobbies` shows it.
    pub id: u64,
    /// Without --client: what joining clients may do (`control` or `view`). With --client:
    /// that client's setting in this lobby (`default` removes it).
    #[arg(value_enum)]
    pub permission: PermissionArg,
    /// One paired client: fingerprint, unique prefix (>= 6 hex) or exact name.
    #[arg(long, value_name = "CLIENT")]
    pub client: Option<String>,
    #[command(flatten)]
    pub conn: ClientArgs,
}

/// A command aimed at one numbered thing (a session or a lobby).
#[derive(Debug, Args, Clone)]
pub struct StopArgs {
    /// Its id, as `howl sessions` / `howl lobbies` show it.
    pub id: u64,
    #[command(flatten)]
    pub conn: ClientArgs,
}

#[derive(Debug, Args, Clone)]
pub struct LobbiesArgs {
    #[command(subcommand)]
    pub action: Option<LobbiesAction>,
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Debug, Subcommand, Clone)]
pub enum LobbiesAction {
    /// Create a shared lobby: one encoder whose stream every allowed client can join.
    #[command(
        after_help = "Example:\n  howl lobbies create --name \"Movie night\" --app \"Test Pattern\" \\\n      --width 1920 --height 1080 --fps 60 --client 3f2a9c41 --stop-when-empty"
    )]
    Create(LobbyCreateArgs),
    /// Stop a lobby; its viewers are told the stream ended.
    #[command(after_help = "Example:\n  howl lobbies stop 2")]
    Stop(StopArgs),
    /// Set, live, what joining clients may do in a lobby, or what one client may do there.
    #[command(
        after_help = "Viewers with a setting of their own (`howl sessions permission`) keep it.\n\nExample:\n  howl lobbies permission 2 view\n  howl lobbies permission 2 control --client 3f2a9c41\n  howl lobbies permission 2 default --client \"Living room\""
    )]
    Permission(LobbyPermissionArgs),
}

#[derive(Debug, Args, Clone)]
pub struct LobbyCreateArgs {
    /// The title clients see in their app list; unique among lobbies.
    #[arg(long)]
    pub name: String,
    /// Title of the app the lobby runs (e.g. "Test Pattern").
    #[arg(long)]
    pub app: String,
    /// Stream width in pixels. [server default: 1280]
    #[arg(long)]
    pub width: Option<u32>,
    /// Stream height in pixels. [server default: 720]
    #[arg(long)]
    pub height: Option<u32>,
    /// Frames per second. [server default: 60]
    #[arg(long)]
    pub fps: Option<u32>,
    /// Encoder bitrate in kbit/s.
    #[arg(long)]
    pub bitrate_kbps: Option<u32>,
    /// h264, hevc or av1; viewers must ask for the same codec. [server default: h264]
    #[arg(long)]
    pub codec: Option<String>,
    /// A paired client allowed to join: fingerprint, unique prefix (>= 6 hex) or exact name.
    /// Repeat for several; without any, every paired client may join.
    #[arg(long = "client", value_name = "CLIENT")]
    pub clients: Vec<String>,
    /// Stop the lobby once its last viewer left and the idle timeout passed.
    #[arg(long)]
    pub stop_when_empty: bool,
    /// Seconds an empty lobby waits before stopping (with --stop-when-empty).
    #[arg(long, value_name = "SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// What joining clients may do: `control` (keyboard, mouse, gamepad) or `view` (watch
    /// only; their input is dropped and counted). [server default: control]
    #[arg(long, value_name = "PERMISSION", value_parser = ["control", "view"])]
    pub viewer_permission: Option<String>,
    /// The paired client the lobby is for: it controls whatever --viewer-permission says.
    /// Fingerprint, unique prefix (>= 6 hex) or exact name.
    #[arg(long, value_name = "CLIENT")]
    pub creator: Option<String>,
    #[command(flatten)]
    pub conn: ClientArgs,
}

#[derive(Debug, Args, Clone)]
pub struct NodesArgs {
    #[command(subcommand)]
    pub action: Option<NodesAction>,
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Debug, Subcommand, Clone)]
pub enum NodesAction {
    /// Create a join token for `howl node --token-file` (printed once, on stdout; only its
    /// digest is kept). Single-use and valid for an hour unless told otherwise.
    #[command(
        after_help = "Example:\n  howl nodes token > join-token\n  howl nodes token --ttl 86400 --reusable   # one token for a whole DaemonSet"
    )]
    Token(NodeTokenArgs),
    /// Place no new producer on NODE; the ones it runs go on to their end.
    #[command(after_help = "Example:\n  howl nodes drain gpu-1")]
    Drain(NodeNameArgs),
    /// Forget NODE: its pinned certificate (it must join with a token again) and, if it is
    /// connected, its producers (they end with `node_lost`).
    #[command(after_help = "Example:\n  howl nodes remove gpu-1")]
    Remove(NodeNameArgs),
}

#[derive(Debug, Args, Clone)]
pub struct NodeTokenArgs {
    /// Seconds the token stays valid (at most a year). [default: 3600]
    #[arg(long, value_name = "SECS")]
    pub ttl: Option<u64>,
    /// Let any number of nodes join with it until it expires (default: one node).
    #[arg(long)]
    pub reusable: bool,
    /// Print the API's JSON (with the token's id and expiry).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ClientArgs,
}

#[derive(Debug, Args, Clone)]
pub struct NodeNameArgs {
    /// The node's name, as `howl nodes` shows it.
    pub node: String,
    #[command(flatten)]
    pub conn: ClientArgs,
}

#[derive(Debug, Args, Clone)]
pub struct ClientsArgs {
    #[command(subcommand)]
    pub action: Option<ClientsAction>,
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Debug, Subcommand, Clone)]
pub enum ClientsAction {
    /// Unpair a client: its certificate is forgotten and it must pair again.
    #[command(
        after_help = "CLIENT is a full fingerprint, a unique fingerprint prefix of at least 6 hex digits,\nor the client's exact name (as `howl clients` shows them).\n\nExample:\n  howl clients unpair 3f2a9c41\n  howl clients unpair \"Living room\""
    )]
    Unpair(UnpairArgs),
}

#[derive(Debug, Args, Clone)]
pub struct UnpairArgs {
    /// Fingerprint, unique fingerprint prefix (>= 6 hex digits) or exact name.
    pub client: String,
    #[command(flatten)]
    pub conn: ClientArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(args)
            .expect("parses")
            .command
            .expect("a subcommand")
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every `howl <command> [<action>]` that README.md and docs/ name is one the CLI has.
    #[test]
    fn every_command_the_docs_name_exists() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let mut files = vec![std::path::PathBuf::from(format!("{root}/README.md"))];
        for e in std::fs::read_dir(format!("{root}/docs")).expect("docs/") {
            let path = e.expect("docs/ entry").path();
            if path.extension().is_some_and(|x| x == "md") {
                files.push(path);
            }
        }
        let cli = Cli::command();
        let mut checked = 0;
        for f in &files {
            let text = std::fs::read_to_string(f).expect("doc");
            for (i, span) in text.split('`').enumerate() {
                let mut words = span.split_whitespace();
                if i % 2 == 0 || words.next() != Some("howl") {
                    continue;
                }
                let Some(name) = words.next().filter(|w| w.starts_with(char::is_alphabetic)) else {
                    continue;
                };
                let cmd = cli.find_subcommand(name).unwrap_or_else(|| {
                    panic!(
                        "{} names `{span}`: howl has no command {name:?}",
                        f.display()
                    )
                });
                // A second word names an action where the command has actions.
                if cmd.has_subcommands()
                    && let Some(action) =
                        words.next().filter(|w| w.starts_with(char::is_alphabetic))
                {
                    assert!(
                        cmd.find_subcommand(action).is_some(),
                        "{} names `{span}`: `howl {name}` has no action {action:?}",
                        f.display()
                    );
                }
                checked += 1;
            }
        }
        assert!(
            checked >= 10,
            "only {checked} commands found in the docs: is the scan broken?"
        );
    }

    #[test]
    fn client_options_work_after_the_action() {
        let Command::Sessions(s) =
            parse(&["howl", "sessions", "stop", "5", "--api", "127.0.0.1:9"])
        else {
            panic!("not sessions");
        };
        let Some(SessionsAction::Stop(stop)) = s.action else {
            panic!("not stop");
        };
        assert_eq!(stop.id, 5);
        assert_eq!(stop.conn.api.port(), 9);
    }

    #[test]
    fn listing_takes_json_and_shared_options() {
        let Command::Clients(c) = parse(&["howl", "clients", "--json", "--state-dir", "/x"]) else {
            panic!("not clients");
        };
        assert!(c.action.is_none() && c.list.json);
        let Command::Nodes(n) = parse(&["howl", "nodes", "--json", "--api", "127.0.0.1:9"]) else {
            panic!("not nodes");
        };
        assert!(n.list.json && n.list.client.api.port() == 9);
        assert_eq!(
            c.list.client.state_dir.as_deref(),
            Some(std::path::Path::new("/x"))
        );
    }

    #[test]
    fn lobby_create_repeats_client() {
        let Command::Lobbies(l) = parse(&[
            "howl",
            "lobbies",
            "create",
            "--name",
            "n",
            "--app",
            "a",
            "--client",
            "abcdef",
            "--client",
            "tv",
            "--stop-when-empty",
            "--fps",
            "30",
        ]) else {
            panic!("not lobbies");
        };
        let Some(LobbiesAction::Create(c)) = l.action else {
            panic!("not create");
        };
        assert_eq!(c.clients, ["abcdef", "tv"]);
        assert!(c.stop_when_empty);
        assert_eq!((c.fps, c.width), (Some(30), None));
    }

    #[test]
    fn permissions_parse_as_words() {
        let Command::Sessions(s) = parse(&["howl", "sessions", "permission", "4", "view"]) else {
            panic!("not sessions");
        };
        let Some(SessionsAction::Permission(p)) = s.action else {
            panic!("not permission");
        };
        assert_eq!((p.id, p.permission), (4, PermissionArg::View));
        assert_eq!(PermissionArg::Default.json(), serde_json::Value::Null);
        let Command::Lobbies(l) = parse(&[
            "howl",
            "lobbies",
            "permission",
            "2",
            "control",
            "--client",
            "tv",
        ]) else {
            panic!("not lobbies");
        };
        let Some(LobbiesAction::Permission(p)) = l.action else {
            panic!("not permission");
        };
        assert_eq!(p.client.as_deref(), Some("tv"));
        assert!(Cli::try_parse_from(["howl", "sessions", "permission", "4", "admin"]).is_err());
        assert!(
            Cli::try_parse_from([
                "howl",
                "lobbies",
                "create",
                "--name",
                "n",
                "--app",
                "a",
                "--viewer-permission",
                "all"
            ])
            .is_err()
        );
    }

    #[test]
    fn listing_options_do_not_mix_with_actions() {
        assert!(Cli::try_parse_from(["howl", "sessions", "--json", "stop", "1"]).is_err());
    }
}
