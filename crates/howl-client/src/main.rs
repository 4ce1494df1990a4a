//! `howl-client`: pair with a GameStream host, list its apps, stream and count frames.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use howl_client::{Client, ClientError, LaunchOptions, StatsSnapshot, api};
use howl_proto::sdp::{EncryptionFlags, VideoCodec};

/// A Rust Moonlight-compatible client for howl: pairing, app list, streaming with frame
/// statistics, and (soon) load runs with many viewers.
#[derive(Debug, Parser)]
#[command(name = "howl-client", version)]
struct Cli {
    /// Where the client certificate, key, uniqueid and pinned host certificates live.
    /// [default: $XDG_CONFIG_HOME/howl-client, else ~/.config/howl-client]
    #[arg(
        long,
        global = true,
        env = "HOWL_CLIENT_CONFIG_DIR",
        value_name = "DIR"
    )]
    config_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pair with a host. The host holds the request until its operator enters the PIN.
    Pair(PairArgs),
    /// Show the host's /serverinfo (over HTTPS when paired).
    Serverinfo(HostArg),
    /// List the host's apps.
    Apps(HostArg),
    /// Launch an app, stream for a while and print a summary. Exit 0 iff frames flowed.
    Stream(StreamArgs),
    /// Quit the running app (/cancel).
    Quit(HostArg),
    /// Run several viewers at once and print one summary per viewer plus totals.
    Load(LoadArgs),
    /// Load the HTTPS control plane: many requests, many in flight; prints latency figures.
    Hammer(HammerArgs),
}

#[derive(Debug, Args)]
struct HammerArgs {
    #[command(flatten)]
    host: HostArg,
    /// How many requests in total.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// How many in flight at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Paths to request, round robin.
    #[arg(long, value_delimiter = ',', default_value = "/serverinfo,/applist")]
    paths: Vec<String>,
}

#[derive(Debug, Args, Clone)]
struct HostArg {
    /// The host's NVHTTP (plain HTTP) address.
    #[arg(long, default_value = "127.0.0.1:47989", value_name = "ADDR:PORT")]
    host: SocketAddr,
}

#[derive(Debug, Args)]
struct PairArgs {
    #[command(flatten)]
    host: HostArg,
    /// The 4-digit PIN to use (random if omitted).
    #[arg(long)]
    pin: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
    /// How long to wait for the operator's PIN, in seconds.
    #[arg(long, default_value_t = 300)]
    pin_timeout: u64,
}

/// Submitting the PIN to howl's management API ourselves (automation, load runs).
#[derive(Debug, Args, Clone)]
struct ApiArgs {
    /// Also submit the PIN to howl's management API at this address.
    #[arg(long, value_name = "ADDR:PORT")]
    api: Option<SocketAddr>,
    /// howl's state directory, to read the API token from (with --api).
    #[arg(long, value_name = "DIR")]
    howl_state_dir: Option<PathBuf>,
    /// The API token itself (with --api), instead of --howl-state-dir.
    #[arg(long, env = "HOWL_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
}

impl ApiArgs {
    /// `(api address, token)` when `--api` is given.
    fn resolve(&self) -> Result<Option<(SocketAddr, String)>, ClientError> {
        let Some(addr) = self.api else {
            return Ok(None);
        };
        let token = match (&self.api_token, &self.howl_state_dir) {
            (Some(t), _) => t.clone(),
            (None, Some(d)) => api::read_token(d)?,
            (None, None) => {
                return Err(ClientError::Config {
                    path: PathBuf::from("--api"),
                    reason: "needs --api-token or --howl-state-dir".into(),
                });
            }
        };
        Ok(Some((addr, token)))
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CodecArg {
    H264,
    Hevc,
    Av1,
}

#[derive(Debug, Args, Clone)]
struct StreamOpts {
    #[command(flatten)]
    host: HostArg,
    /// App title (exact) or numeric id.
    #[arg(long, default_value = "Test Pattern")]
    app: String,
    /// How long to stream.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 1280)]
    width: u32,
    #[arg(long, default_value_t = 720)]
    height: u32,
    #[arg(long, default_value_t = 60)]
    fps: u32,
    /// Total bitrate in kbps.
    #[arg(long, default_value_t = 8000)]
    bitrate: u32,
    #[arg(long, value_enum, default_value = "h264")]
    codec: CodecArg,
    /// Video packet size (before the encryption adjustment).
    #[arg(long, default_value_t = 1392)]
    packet_size: u32,
    /// Do not ask for audio/video encryption (control encryption is always on).
    #[arg(long)]
    no_encryption: bool,
    /// Use /resume instead of /launch.
    #[arg(long)]
    resume: bool,
    /// Send /cancel after streaming (quit the app).
    #[arg(long)]
    quit: bool,
}

#[derive(Debug, Args)]
struct StreamArgs {
    #[command(flatten)]
    opts: StreamOpts,
}

#[derive(Debug, Args)]
struct LoadArgs {
    #[command(flatten)]
    opts: StreamOpts,
    /// Concurrent viewers. Each has its own identity in `<config-dir>/viewer-<n>` (hosts
    /// allow one session per client certificate); unpaired ones are paired first, which
    /// needs --api.
    #[arg(long, default_value_t = 2)]
    viewers: usize,
    /// PID of the howl server on this machine: report its CPU time over the run.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    #[command(flatten)]
    api: ApiArgs,
}

/// User + system CPU seconds of a process, from /proc (Linux).
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime + stime) / 100.0)
}

fn default_config_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("howl-client");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".config/howl-client")
}

fn random_pin() -> Result<String, ClientError> {
    let b: [u8; 2] = howl_client::identity::random_bytes()?;
    Ok(format!("{:04}", u16::from_be_bytes(b) % 10_000))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOWL_CLIENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let dir = cli.config_dir.clone().unwrap_or_else(default_config_dir);
    match run(cli.command, dir).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("howl-client: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, dir: PathBuf) -> Result<ExitCode, ClientError> {
    match command {
        Command::Pair(a) => pair(a, dir).await,
        Command::Serverinfo(h) => {
            let client = Client::new(&dir)?;
            let info = match client.server_info_tls(h.host).await {
                Ok(info) => info,
                Err(ClientError::NotPaired { .. }) => client.server_info(h.host).await?,
                Err(e) => return Err(e),
            };
            println!("{info:#?}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Apps(h) => {
            let client = Client::new(&dir)?;
            for app in client.apps(h.host).await?.apps {
                println!("{:>12}  {}", app.id, app.title);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Quit(h) => {
            Client::new(&dir)?.quit(h.host).await?;
            println!("app quit");
            Ok(ExitCode::SUCCESS)
        }
        Command::Stream(a) => {
            let client = Arc::new(Client::new(&dir)?);
            let stats = stream_once(&client, &a.opts, None).await?;
            print_summary("stream", &stats);
            if a.opts.quit {
                client.quit(a.opts.host.host).await?;
            }
            Ok(if stats.frames_received > 0 {
                ExitCode::SUCCESS
            } else {
                eprintln!("howl-client: no video frame arrived");
                ExitCode::from(2)
            })
        }
        Command::Load(a) => load(a, dir).await,
        Command::Hammer(a) => hammer(a, dir).await,
    }
}

async fn hammer(a: HammerArgs, dir: PathBuf) -> Result<ExitCode, ClientError> {
    let client = Client::new(&dir)?;
    let t0 = std::time::Instant::now();
    let results = client
        .hammer(a.host.host, &a.paths, a.requests, a.concurrency)
        .await?;
    let wall = t0.elapsed();
    let mut lat: Vec<Duration> = results.iter().map(|r| r.0).collect();
    lat.sort();
    let ok = results.iter().filter(|r| r.1 == Some(200)).count();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    println!(
        "hammer: {} requests, {} in flight, {ok} answered 200, {:.0} req/s, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        results.len(),
        a.concurrency,
        results.len() as f64 / wall.as_secs_f64(),
        pct(0.50),
        pct(0.95),
        pct(1.0),
    );
    Ok(if ok == results.len() && ok == a.requests {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn pair(a: PairArgs, dir: PathBuf) -> Result<ExitCode, ClientError> {
    let client = Client::new(&dir)?.with_pin_deadline(Duration::from_secs(a.pin_timeout.max(1)));
    let pin = match a.pin {
        Some(p) => p,
        None => random_pin()?,
    };
    println!(
        "Pairing with {} as {} (certificate {}).",
        a.host.host,
        client.uniqueid(),
        &client.fingerprint_hex()[..16]
    );
    println!(
        "Enter PIN {pin} on the host: `howl pin {pin}` or POST /api/v1/pairing/pin {{\"pin\":\"{pin}\"}}"
    );
    pair_client(&client, a.host.host, &pin, a.api.resolve()?).await?;
    println!("Paired. Host certificate pinned in {}.", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Pairs `client`, submitting the PIN through howl's API meanwhile when `api` is given.
async fn pair_client(
    client: &Client,
    host: SocketAddr,
    pin: &str,
    api: Option<(SocketAddr, String)>,
) -> Result<(), ClientError> {
    /// How long the submitter waits for the host to show the pending request.
    const SUBMIT_DEADLINE: Duration = Duration::from_secs(30);
    let submit = api.map(|(api_addr, token)| {
        let pin = pin.to_owned();
        let fp = client.fingerprint_hex();
        tokio::spawn(async move {
            api::submit_pin_when_pending(api_addr, &token, &pin, Some(&fp[..16]), SUBMIT_DEADLINE)
                .await
        })
    });
    let result = client.pair(host, pin).await;
    if let Some(task) = submit {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("howl-client: submitting the PIN failed: {e}"),
            Err(e) => eprintln!("howl-client: PIN task failed: {e}"),
        }
    }
    result.map(|_| ())
}

fn launch_options(o: &StreamOpts, app_id: i32) -> LaunchOptions {
    LaunchOptions {
        app_id,
        width: o.width,
        height: o.height,
        fps: o.fps,
        bitrate_kbps: o.bitrate,
        codec: match o.codec {
            CodecArg::H264 => VideoCodec::H264,
            CodecArg::Hevc => VideoCodec::Hevc,
            CodecArg::Av1 => VideoCodec::Av1,
        },
        packet_size: o.packet_size,
        encryption: if o.no_encryption {
            EncryptionFlags::NONE
        } else {
            EncryptionFlags::ALL
        },
        resume: o.resume,
    }
}

/// Launches, streams for `seconds` (or until the host ends the session), stops. With
/// `launch_gate`, the launch and RTSP handshake run while holding it: hosts associate RTSP
/// connections with a pending launch by source address, so concurrent handshakes from one
/// machine would steal each other's session (real clients on one machine never do that).
async fn stream_once(
    client: &Client,
    o: &StreamOpts,
    launch_gate: Option<&tokio::sync::Mutex<()>>,
) -> Result<StatsSnapshot, ClientError> {
    let app_id = client.find_app(o.host.host, &o.app).await?;
    let mut session = {
        let _guard = match launch_gate {
            Some(g) => Some(g.lock().await),
            None => None,
        };
        client
            .launch(o.host.host, &launch_options(o, app_id))
            .await?
    };
    if let Some(reason) = session.wait_end(Duration::from_secs(o.seconds)).await {
        eprintln!("howl-client: session ended early: {reason:?}");
    }
    Ok(session.stop().await)
}

fn print_summary(label: &str, s: &StatsSnapshot) {
    let secs = s.elapsed.as_secs_f64().max(0.001);
    println!("{label}:");
    println!(
        "  frames {} ({:.1} fps), lost {}, keyframes {}, FEC-recovered {} ({} shards)",
        s.frames_received,
        s.fps(),
        s.frames_lost,
        s.keyframes,
        s.fec_recovered_frames,
        s.fec_recovered_shards
    );
    println!(
        "  frame indices {:?}..={:?}, first frame keyframe {:?} after {:?}",
        s.first_frame_index, s.last_frame_index, s.first_frame_was_keyframe, s.first_frame_after
    );
    println!(
        "  video {} datagrams, {} bytes ({:.2} Mbit/s), {} rejected; IDR requests {}",
        s.video_datagrams,
        s.video_bytes,
        s.video_bytes as f64 * 8.0 / secs / 1e6,
        s.video_rejected,
        s.idr_requests
    );
    println!(
        "  audio {} packets ({} FEC-recovered, +{} FEC datagrams), {} lost, {} bytes, {} rejected",
        s.audio_packets,
        s.audio_recovered,
        s.audio_fec_packets,
        s.audio_lost,
        s.audio_bytes,
        s.audio_rejected
    );
    println!(
        "  control connected {}, {} in / {} out, {} rejected; end {:?}",
        s.control_connected,
        s.control_messages_in,
        s.control_messages_out,
        s.control_rejected,
        s.end
    );
}

async fn load(a: LoadArgs, dir: PathBuf) -> Result<ExitCode, ClientError> {
    let api = a.api.resolve()?;
    let host = a.opts.host.host;
    let mut clients = Vec::with_capacity(a.viewers);
    for n in 0..a.viewers {
        let client = Client::new(&dir.join(format!("viewer-{n}")))?;
        match client.server_info_tls(host).await {
            Ok(info) if info.paired => {}
            Ok(_) | Err(ClientError::NotPaired { .. }) => {
                if api.is_none() {
                    return Err(ClientError::Config {
                        path: client.config_dir().to_path_buf(),
                        reason: "viewer is not paired; pass --api to pair it automatically".into(),
                    });
                }
                pair_client(&client, host, &random_pin()?, api.clone()).await?;
            }
            Err(e) => return Err(e),
        }
        clients.push(Arc::new(client));
    }
    let cpu_start = a.server_pid.and_then(process_cpu_seconds);
    let wall_start = std::time::Instant::now();
    let gate = Arc::new(tokio::sync::Mutex::new(()));
    let mut tasks = Vec::with_capacity(a.viewers);
    for client in clients {
        let opts = a.opts.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            stream_once(&client, &opts, Some(&gate)).await
        }));
    }
    let mut total_frames = 0u64;
    let mut failures = 0usize;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await {
            Ok(Ok(s)) => {
                total_frames += s.frames_received;
                if s.frames_received == 0 {
                    failures += 1;
                }
                print_summary(&format!("viewer {i}"), &s);
            }
            Ok(Err(e)) => {
                failures += 1;
                println!("viewer {i}: failed: {e}");
            }
            Err(e) => {
                failures += 1;
                println!("viewer {i}: task failed: {e}");
            }
        }
    }
    println!(
        "load: {} viewers, {} without frames, {} frames in total",
        a.viewers, failures, total_frames
    );
    if let (Some(pid), Some(start)) = (a.server_pid, cpu_start)
        && let Some(end) = process_cpu_seconds(pid)
    {
        let wall = wall_start.elapsed().as_secs_f64();
        let cpu = end - start;
        println!(
            "server CPU: {cpu:.2} s over {wall:.1} s = {:.1} % of one core, {:.2} ms/s per viewer",
            100.0 * cpu / wall,
            1000.0 * cpu / wall / a.viewers.max(1) as f64
        );
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
