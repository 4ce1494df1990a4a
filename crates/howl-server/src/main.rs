//! The `howl` binary: parses the command line and wires the pieces together. Nothing else.

mod api;
mod apiclient;
mod cli;
mod config;
mod core_task;
mod enet;
mod listener;
mod mdns;
mod media;
mod nvhttp;
mod rtsp;
mod serve;
mod statedir;
mod stream;
mod tls;
mod webui;
mod worker;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
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
        Some(cli::Command::Pin(args)) => runtime.block_on(run_pin(args)),
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
    let mut cfg = config::Config::load(args.config.as_deref(), env).map_err(|e| e.to_string())?;
    if args.no_mdns {
        cfg.mdns = false;
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
    let state_dir = args.state_dir.unwrap_or_else(statedir::default_state_dir);
    serve::run(cfg, &state_dir).await.map_err(|e| e.to_string())
}

async fn run_pin(args: cli::PinArgs) -> Result<(), String> {
    let state_dir = args.state_dir.unwrap_or_else(statedir::default_state_dir);
    let token = statedir::StateDir::read_token(&state_dir).map_err(|e| e.to_string())?;
    let body = serde_json::json!({ "pin": args.pin, "client": args.client }).to_string();
    let (status, text) = apiclient::request(
        args.api,
        &token,
        http::Method::POST,
        "/api/v1/pairing/pin",
        Some(body),
    )
    .await
    .map_err(|e| e.to_string())?;
    if status.is_success() {
        println!("PIN delivered; the client completes pairing now.");
        Ok(())
    } else {
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or(text);
        Err(format!("PIN not accepted ({status}): {msg}"))
    }
}
