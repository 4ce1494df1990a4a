//! Command-line interface. `howl` alone is `howl serve`.

use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// howl: a multi-user GameStream host. Moonlight clients pair with it and stream its apps.
///
/// Run `howl` (or `howl serve`) to start the server with the built-in "Test Pattern" app. When
/// a Moonlight client starts pairing, it shows a PIN; enter it with `howl pin <PIN>`.
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
    Pin(PinArgs),
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
}

#[derive(Debug, Args, Clone)]
pub struct PinArgs {
    /// The 4-digit PIN shown by the Moonlight client.
    pub pin: String,
    /// Which pending request, when several clients wait: its id, a fingerprint prefix or its
    /// name (list them with GET /api/v1/pairing/pending).
    #[arg(long)]
    pub client: Option<String>,
    /// State directory of the running server (to read its API token).
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
