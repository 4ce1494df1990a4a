//! The `howl` binary: parses the command line and wires the pieces together. Nothing else.

mod cli;
mod config;
mod control;
mod data;
mod domain;
mod engine;
mod heap;
mod node;
mod sdnotify;
mod serve;
mod statedir;
mod viewer;
mod worker;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    heap::configure();
    let cli = cli::Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("howl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        None => runtime.block_on(run_serve(cli.serve)),
        Some(cli::Command::Serve(args)) => runtime.block_on(run_serve(args)),
        Some(cli::Command::Pin(args)) => runtime.block_on(cli::commands::pin(args)),
        Some(cli::Command::Status(args)) => runtime.block_on(cli::commands::status(args)),
        Some(cli::Command::Sessions(args)) => runtime.block_on(cli::commands::sessions(args)),
        Some(cli::Command::Lobbies(args)) => runtime.block_on(cli::commands::lobbies(args)),
        Some(cli::Command::Clients(args)) => runtime.block_on(cli::commands::clients(args)),
        Some(cli::Command::Nodes(args)) => runtime.block_on(cli::nodes::nodes(args)),
        Some(cli::Command::Node(a)) => {
            runtime.block_on(node::agent::run(node::agent::AgentConfig {
                control_plane: a.control_plane,
                token_file: a.token_file,
                state_dir: a.state_dir,
                name: a.name,
                labels: a.labels,
                max_producers: a.max_producers,
                max_encoder_sessions: a.max_encoder_sessions,
            }))
        }
    };
    // Never wait on stragglers at exit: shutdown already had its deadline.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("howl: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOWL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only on a terminal: logs in files and journals stay greppable.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run_serve(args: cli::ServeArgs) -> Result<(), String> {
    let env = std::env::vars();
    let mut cfg = config::Config::load(args.config.as_deref(), env, &cli::env_names())
        .map_err(|e| e.to_string())?;
    if args.no_mdns {
        cfg.mdns = false;
    }
    if args.no_desktop_app {
        cfg.desktop_app = false;
    }
    if args.no_clipboard {
        cfg.clipboard = false;
    }
    if let Some(b) = args.bind {
        cfg.bind_address = b;
    }
    if let Some(p) = args.http_port {
        cfg.http_port = p;
    }
    if let Some(p) = args.https_port {
        cfg.https_port = p;
    }
    if let Some(a) = args.api_bind {
        cfg.api_bind = a;
    }
    if let Some(a) = args.rtsp_egress_bind {
        cfg.rtsp_egress_bind = a;
    }
    if args.no_rtsp_egress {
        cfg.rtsp_egress = false;
    }
    if let Some(a) = args.webrtc_bind {
        cfg.webrtc_bind = a;
    }
    for url in args.webrtc_ice_server {
        cfg.webrtc_ice_servers
            .push(crate::viewer::browser::IceServer {
                urls: vec![url],
                username: None,
                credential: None,
            });
    }
    if let Some(n) = args.webrtc_max_pending_offers {
        cfg.webrtc_max_pending_offers = n;
    }
    cfg.webrtc_cors_origins.extend(args.webrtc_cors_origin);
    // The flags above may have made the configuration invalid.
    cfg.validate().map_err(|e| e.to_string())?;
    if let Some(m) = args.encryption_loopback {
        cfg.encryption_loopback = m;
    }
    if let Some(m) = args.encryption_lan {
        cfg.encryption_lan = m;
    }
    if let Some(m) = args.encryption_wan {
        cfg.encryption_wan = m;
    }
    if let Some(n) = args.max_producers {
        cfg.max_producers = n;
    }
    if let Some(n) = args.max_encoder_sessions {
        cfg.max_encoder_sessions = n;
    }
    if let Some(secs) = args.shutdown_deadline_secs {
        cfg.shutdown_deadline_secs = secs;
        cfg.validate().map_err(|e| e.to_string())?;
    }
    let state_dir = args.state_dir.unwrap_or_else(statedir::default_state_dir);
    serve::run(cfg, &state_dir).await.map_err(|e| e.to_string())
}
