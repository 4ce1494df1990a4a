//! The operator commands (`howl pin`, `status`, `sessions`, `lobbies`, `clients`): each talks to
//! the running server's management API and prints a table, a short line or the API's JSON.
//!
//! Every function returns `Err(message)` for main to print as `howl: <message>` (exit code 1).

use crate::cli::api::Api;
use crate::cli::format::{
    duration, emit, emit_json, emit_table, is_full_fingerprint, resolution, short_fingerprint, utc,
};
use crate::cli::table::{Align, Table, sanitize};
use crate::cli::{
    ClientsAction, ClientsArgs, LobbiesAction, LobbiesArgs, LobbyCreateArgs, LobbyPermissionArgs,
    PermissionArg, PinArgs, SessionPermissionArgs, SessionsAction, SessionsArgs, StatusArgs,
    StopArgs, UnpairArgs,
};
use crate::control::api::{ClientView, PinAccepted, ServerView};
use crate::engine::{LobbyView, SessionView};
use http::Method;
use serde_json::Value;
use std::net::SocketAddr;

/// Fewest hex digits accepted as a fingerprint prefix (the same rule as the API's selectors).
const MIN_FINGERPRINT_PREFIX: usize = 6;

// ---- pin ----

pub async fn pin(args: PinArgs) -> Result<(), String> {
    let api = Api::open(&args.conn)?;
    let body = serde_json::json!({ "pin": args.pin, "client": args.client });
    api.send::<PinAccepted>(Method::POST, "/api/v1/pairing/pin", Some(body))
        .await
        .map_err(|m| format!("PIN not accepted: {m}"))?;
    emit("PIN delivered; the client completes pairing now.\n")
}

// ---- status ----

pub async fn status(args: StatusArgs) -> Result<(), String> {
    let api = Api::open(&args.list.client)?;
    // /status is a map of live counters (the engine's, the listeners', ENet's) read by key;
    // /server is decoded into its view type.
    let mut status: Value = api.get("/api/v1/status").await?;
    let server: Option<ServerView> = api.get_optional("/api/v1/server").await?;
    if args.list.json {
        // /status as-is, with /server alongside under "server" when the server has it.
        if let (Some(server), Some(obj)) = (&server, status.as_object_mut()) {
            let server = serde_json::to_value(server).map_err(|e| e.to_string())?;
            obj.insert("server".into(), server);
        }
        return emit_json(&status);
    }
    emit(&render_status(&status, server.as_ref(), api.addr))
}

fn render_status(status: &Value, server: Option<&ServerView>, addr: SocketAddr) -> String {
    let engine = &status["engine"];
    let version = server
        .map(|s| s.info.version.as_str())
        .or_else(|| status.get("version").and_then(Value::as_str))
        .unwrap_or("?");
    let mut head = format!("howl {} at {addr}", sanitize(version));
    if let Some(s) = server {
        head.push_str(&format!(", up {}", duration(s.uptime_secs)));
    }
    let mut rows: Vec<(&str, String)> = Vec::new();
    if let Some(s) = server {
        rows.push(("encoders", sanitize(&s.info.encoders.join(", "))));
        if !s.info.desktop_isolation.is_empty() {
            rows.push(("isolation", sanitize(&s.info.desktop_isolation)));
        }
    }
    rows.push(("sessions", num(engine, "sessions")));
    rows.push(("lobbies", num(engine, "lobbies")));
    let mut workers = num(engine, "workers");
    if let Some(n) = engine
        .get("workers_starting")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
    {
        workers.push_str(&format!(" ({n} starting)"));
    }
    rows.push(("workers", workers));
    rows.push(("viewers", num(engine, "viewers")));
    if let Some(p) = admission(&engine["admission"]) {
        rows.push(("producers", p));
    }
    rows.push(("frames sent", num(engine, "frames_sent")));
    let mut dropped = num(engine, "frames_dropped");
    let by_reason = reasons(&engine["frames_dropped_by_reason"]);
    if !by_reason.is_empty() {
        dropped.push_str(&format!(" ({by_reason})"));
    }
    rows.push(("frames dropped", dropped));
    let ended = reasons(&engine["sessions_ended"]);
    rows.push((
        "sessions ended",
        if ended.is_empty() {
            "none".into()
        } else {
            ended
        },
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("{head}\n");
    for (k, v) in rows {
        out.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    out
}

/// `engine.admission` as "2 of 2 (max_producers), refused: launch 1": producers in use against
/// the smaller limit, and the refusals that happened; `None` from a server without it.
fn admission(a: &Value) -> Option<String> {
    let producers = a.get("producers")?.as_u64()?;
    let limits = [
        ("max_producers", a["max_producers"].as_u64().unwrap_or(0)),
        (
            "max_encoder_sessions",
            a["max_encoder_sessions"].as_u64().unwrap_or(0),
        ),
    ];
    let mut out = match limits
        .iter()
        .filter(|(_, n)| *n > 0)
        .min_by_key(|(_, n)| *n)
    {
        Some((key, max)) => format!("{producers} of {max} ({key})"),
        None => format!("{producers} (no limit)"),
    };
    let refused = reasons(&a["refused"]);
    if !refused.is_empty() {
        out.push_str(&format!(", refused: {refused}"));
    }
    Some(out)
}

/// `{"a": 2, "b": 0}` as "a 2", skipping zeroes: the reasons that actually happened.
fn reasons(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, n)| {
                    n.as_u64()
                        .filter(|n| *n > 0)
                        .map(|n| format!("{} {n}", sanitize(k)))
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

// ---- sessions ----

pub async fn sessions(args: SessionsArgs) -> Result<(), String> {
    match args.action {
        Some(SessionsAction::Stop(stop)) => stop_thing(stop, "sessions", "session").await,
        Some(SessionsAction::Permission(p)) => session_permission(p).await,
        None => {
            let api = Api::open(&args.list.client)?;
            let list: Vec<SessionView> = api.get("/api/v1/sessions").await?;
            if args.list.json {
                return emit_json(&list);
            }
            emit_table(&sessions_table(&list), "no sessions")
        }
    }
}

fn sessions_table(list: &[SessionView]) -> Table {
    let mut t = Table::new(&[
        ("ID", Align::Right),
        ("CLIENT", Align::Left),
        ("APP", Align::Left),
        ("RESOLUTION", Align::Left),
        ("FPS", Align::Right),
        ("CODEC", Align::Left),
        ("FRAMES SENT", Align::Right),
        ("DROPPED", Align::Right),
        ("INPUT", Align::Left),
        ("ENCRYPTED", Align::Left),
        ("UPTIME", Align::Right),
    ]);
    for s in list {
        // The paired client's name (a player's label); a session of a client the registry
        // no longer knows shows its fingerprint.
        let client = if s.client_name.is_empty() {
            short_fingerprint(&s.client)
        } else {
            s.client_name.clone()
        };
        t.push(vec![
            s.id.0.to_string(),
            client,
            dash(&s.app),
            resolution(s.width, s.height),
            s.fps.to_string(),
            dash(&s.codec),
            s.frames_sent.to_string(),
            s.frames_dropped.to_string(),
            input_column(s),
            encrypted(s.encryption.as_ref()),
            duration(s.uptime_secs),
        ]);
    }
    t
}

/// What a session may do, with its dropped input when it only views: `control`,
/// `view (12 dropped)`; a `*` marks a setting of its own.
fn input_column(s: &SessionView) -> String {
    let mut out = s.permission.name().to_owned();
    if s.permission_set {
        out.push('*');
    }
    if s.input_dropped > 0 {
        out.push_str(&format!(" ({} dropped)", s.input_dropped));
    }
    out
}

/// `howl sessions permission ID control|view|default`.
async fn session_permission(args: SessionPermissionArgs) -> Result<(), String> {
    let api = Api::open(&args.conn)?;
    let body = serde_json::json!({ "permission": args.permission.json() });
    let s: SessionView = api
        .send(
            Method::PUT,
            &format!("/api/v1/sessions/{}/permission", args.id),
            Some(body),
        )
        .await?
        .ok_or("the API answered nothing for the session")?;
    emit(&format!(
        "session {} may {} now{}\n",
        args.id,
        s.permission.name(),
        if s.permission_set {
            ""
        } else {
            " (its lobby's rules)"
        }
    ))
}

/// What a session encrypts, e.g. `rtsp+video+audio+control`; `none`, or `-` for a player (or
/// an older server that does not say).
fn encrypted(e: Option<&crate::viewer::moonlight::EncryptionView>) -> String {
    let Some(e) = e else {
        return "-".into();
    };
    let parts: Vec<&str> = [
        ("rtsp", Some(e.rtsp)),
        ("video", e.video),
        ("audio", e.audio),
        ("control", e.control),
    ]
    .into_iter()
    .filter(|(_, on)| *on == Some(true))
    .map(|(name, _)| name)
    .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("+")
    }
}

/// `howl sessions stop ID` and `howl lobbies stop ID`: DELETE of one numbered thing.
async fn stop_thing(args: StopArgs, collection: &str, noun: &str) -> Result<(), String> {
    let api = Api::open(&args.conn)?;
    api.send::<Value>(
        Method::DELETE,
        &format!("/api/v1/{collection}/{}", args.id),
        None,
    )
    .await?;
    emit(&format!("stopped {noun} {}\n", args.id))
}

// ---- lobbies ----

pub async fn lobbies(args: LobbiesArgs) -> Result<(), String> {
    match args.action {
        Some(LobbiesAction::Stop(stop)) => stop_thing(stop, "lobbies", "lobby").await,
        Some(LobbiesAction::Create(create)) => create_lobby(create).await,
        Some(LobbiesAction::Permission(p)) => lobby_permission(p).await,
        None => {
            let api = Api::open(&args.list.client)?;
            let list: Vec<LobbyView> = api.get("/api/v1/lobbies").await?;
            if args.list.json {
                return emit_json(&list);
            }
            emit_table(&lobbies_table(&list), "no lobbies")
        }
    }
}

fn lobbies_table(list: &[LobbyView]) -> Table {
    let mut t = Table::new(&[
        ("ID", Align::Right),
        ("NAME", Align::Left),
        ("APP", Align::Left),
        ("RESOLUTION", Align::Left),
        ("FPS", Align::Right),
        ("CODEC", Align::Left),
        ("VIEWERS", Align::Right),
        ("WORKER", Align::Right),
        ("CLIENTS", Align::Left),
        ("JOINERS", Align::Left),
        ("STOP WHEN EMPTY", Align::Left),
    ]);
    for l in list {
        t.push(vec![
            l.id.to_string(),
            dash(&l.name),
            dash(&l.app),
            resolution(l.width, l.height),
            l.fps.to_string(),
            dash(&l.codec),
            l.viewers.to_string(),
            l.worker_pid.map_or_else(|| "-".into(), |p| p.to_string()),
            if l.clients.is_empty() {
                "all".into()
            } else {
                l.clients.len().to_string()
            },
            l.viewer_permission.name().into(),
            if l.stop_when_everyone_leaves {
                "yes"
            } else {
                "no"
            }
            .into(),
        ]);
    }
    t
}

async fn create_lobby(args: LobbyCreateArgs) -> Result<(), String> {
    let api = Api::open(&args.conn)?;
    let mut selectors = args.clients.clone();
    selectors.extend(args.creator.iter().cloned());
    let mut fingerprints = fingerprints_of(&api, &selectors).await?;
    let creator = args.creator.as_ref().and_then(|_| fingerprints.pop());
    let clients = fingerprints;
    let mut body = serde_json::Map::new();
    body.insert("name".into(), args.name.into());
    body.insert("app".into(), args.app.into());
    // Only what the operator gave: the server owns the defaults.
    let optional = [
        ("width", args.width.map(u64::from)),
        ("height", args.height.map(u64::from)),
        ("fps", args.fps.map(u64::from)),
        ("bitrate_kbps", args.bitrate_kbps.map(u64::from)),
        ("idle_timeout_secs", args.idle_timeout_secs),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            body.insert(k.into(), v.into());
        }
    }
    if let Some(codec) = args.codec {
        body.insert("codec".into(), codec.into());
    }
    if !clients.is_empty() {
        body.insert("clients".into(), clients.into());
    }
    if args.stop_when_empty {
        body.insert("stop_when_everyone_leaves".into(), true.into());
    }
    if let Some(p) = args.viewer_permission {
        body.insert("viewer_permission".into(), p.into());
    }
    if let Some(fp) = creator {
        body.insert("creator".into(), fp.into());
    }
    let lobby: LobbyView = api
        .send(Method::POST, "/api/v1/lobbies", Some(Value::Object(body)))
        .await?
        .ok_or("the API answered nothing for the new lobby")?;
    emit(&format!(
        "created lobby {} \"{}\" ({}, {}@{} {})\n",
        lobby.id,
        sanitize(&lobby.name),
        sanitize(&lobby.app),
        resolution(lobby.width, lobby.height),
        lobby.fps,
        sanitize(&lobby.codec),
    ))
}

/// Full fingerprints of paired clients named by fingerprint, unique prefix or exact name, in
/// order. Full fingerprints go as they are; anything else is looked up once, like `unpair`.
async fn fingerprints_of(api: &Api, selectors: &[String]) -> Result<Vec<String>, String> {
    let known = if selectors.iter().all(|c| is_full_fingerprint(c)) {
        Vec::new()
    } else {
        api.clients().await?
    };
    selectors
        .iter()
        .map(|sel| {
            if is_full_fingerprint(sel) {
                Ok(sel.to_ascii_lowercase())
            } else {
                resolve_client(&known, sel).map(|c| c.fingerprint.clone())
            }
        })
        .collect()
}

/// `howl lobbies permission ID control|view|default [--client CLIENT]`.
async fn lobby_permission(args: LobbyPermissionArgs) -> Result<(), String> {
    let api = Api::open(&args.conn)?;
    let (path, body, what) = match &args.client {
        None => {
            if args.permission == PermissionArg::Default {
                return Err(
                    "a lobby always says what joiners may do: give control or view (default \
                     only removes one client's setting, with --client)"
                        .into(),
                );
            }
            (
                format!("/api/v1/lobbies/{}/permission", args.id),
                serde_json::json!({ "viewer_permission": args.permission.json() }),
                "joining clients".to_owned(),
            )
        }
        Some(sel) => {
            let fp = fingerprints_of(&api, std::slice::from_ref(sel))
                .await?
                .pop()
                .ok_or("no such client")?;
            (
                format!("/api/v1/lobbies/{}/clients/{fp}/permission", args.id),
                serde_json::json!({ "permission": args.permission.json() }),
                format!("client {}", short_fingerprint(&fp)),
            )
        }
    };
    let _: Option<LobbyView> = api.send(Method::PUT, &path, Some(body)).await?;
    let word = match args.permission {
        PermissionArg::Control => "control",
        PermissionArg::View => "view",
        PermissionArg::Default => "follow the lobby's rules",
    };
    emit(&format!("lobby {}: {what} {word} now\n", args.id))
}

// ---- clients ----

pub async fn clients(args: ClientsArgs) -> Result<(), String> {
    match args.action {
        Some(ClientsAction::Unpair(u)) => unpair(u).await,
        None => {
            let api = Api::open(&args.list.client)?;
            let list = api.clients().await?;
            if args.list.json {
                return emit_json(&list);
            }
            emit_table(&clients_table(&list), "no paired clients")
        }
    }
}

fn clients_table(list: &[ClientView]) -> Table {
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("FINGERPRINT", Align::Left),
        ("PAIRED AT", Align::Left),
    ]);
    for c in list {
        t.push(vec![
            sanitize(&c.name),
            short_fingerprint(&c.fingerprint),
            if c.paired_at_unix == 0 {
                "-".into()
            } else {
                utc(c.paired_at_unix)
            },
        ]);
    }
    t
}

async fn unpair(args: UnpairArgs) -> Result<(), String> {
    let api = Api::open(&args.conn)?;
    let known = api.clients().await?;
    let c = resolve_client(&known, &args.client)?;
    api.send::<Value>(
        Method::DELETE,
        &format!("/api/v1/clients/{}", c.fingerprint),
        None,
    )
    .await?;
    emit(&format!(
        "unpaired {} ({})\n",
        sanitize(&c.name),
        short_fingerprint(&c.fingerprint)
    ))
}

/// Finds the one paired client `sel` names: a full fingerprint, a unique fingerprint prefix of
/// at least 6 hex digits, or an exact name. A selector matching several clients (by prefix, by
/// name, or one by each) is refused rather than guessed.
pub fn resolve_client<'a>(clients: &'a [ClientView], sel: &str) -> Result<&'a ClientView, String> {
    let sel = sel.trim();
    if sel.is_empty() {
        return Err("no client given: name a fingerprint prefix or the client's name".into());
    }
    let lower = sel.to_ascii_lowercase();
    if is_full_fingerprint(&lower) {
        return clients
            .iter()
            .find(|c| c.fingerprint.eq_ignore_ascii_case(&lower))
            .ok_or_else(|| format!("no paired client has fingerprint {lower}"));
    }
    let is_hex = lower.bytes().all(|b| b.is_ascii_hexdigit());
    let prefix_ok = is_hex && lower.len() >= MIN_FINGERPRINT_PREFIX;
    let matches: Vec<&ClientView> = clients
        .iter()
        .filter(|c| {
            c.name == sel || (prefix_ok && c.fingerprint.to_ascii_lowercase().starts_with(&lower))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] if is_hex && !prefix_ok => Err(format!(
            "no client is named '{}', and a fingerprint prefix needs at least \
             {MIN_FINGERPRINT_PREFIX} hex digits",
            sanitize(sel)
        )),
        [] => Err(format!(
            "no paired client matches '{}' (by name or fingerprint prefix); \
             `howl clients` lists them",
            sanitize(sel)
        )),
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|c| {
                    format!(
                        "{} ({})",
                        sanitize(&c.name),
                        short_fingerprint(&c.fingerprint)
                    )
                })
                .collect();
            Err(format!(
                "'{}' is ambiguous, it matches {}; give more of the fingerprint",
                sanitize(sel),
                names.join(", ")
            ))
        }
    }
}

/// A number field, "-" when absent or null.
fn num(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::Number(n)) => n.to_string(),
        _ => "-".into(),
    }
}

/// A text field as a cell: sanitised, "-" when empty.
fn dash(v: &str) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        sanitize(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::format::FINGERPRINT_LEN;

    fn client(name: &str, fp_head: &str) -> ClientView {
        let mut fingerprint = fp_head.to_owned();
        while fingerprint.len() < FINGERPRINT_LEN {
            fingerprint.push('0');
        }
        ClientView {
            fingerprint,
            name: name.into(),
            paired_at_unix: 1_700_000_000,
        }
    }

    fn sample() -> Vec<ClientView> {
        vec![
            client("living room", "abcdef12"),
            client("laptop", "abcdef34"),
            client("phone", "0123456789"),
        ]
    }

    #[test]
    fn unique_prefix_resolves() {
        let list = sample();
        assert_eq!(
            resolve_client(&list, "abcdef1").expect("unique").name,
            "living room"
        );
        assert_eq!(
            resolve_client(&list, "ABCDEF3")
                .expect("case-insensitive")
                .name,
            "laptop"
        );
        assert_eq!(
            resolve_client(&list, "012345").expect("six digits").name,
            "phone"
        );
    }

    #[test]
    fn exact_name_resolves() {
        let list = sample();
        assert_eq!(
            resolve_client(&list, "laptop").expect("name").name,
            "laptop"
        );
        assert_eq!(
            resolve_client(&list, " phone ").expect("trimmed").name,
            "phone"
        );
    }

    #[test]
    fn full_fingerprint_resolves() {
        let list = sample();
        let fp = list[2].fingerprint.to_ascii_uppercase();
        assert_eq!(resolve_client(&list, &fp).expect("full").name, "phone");
        let unknown = "f".repeat(FINGERPRINT_LEN);
        assert!(
            resolve_client(&list, &unknown)
                .expect_err("unknown")
                .contains("no paired client")
        );
    }

    #[test]
    fn ambiguous_prefix_is_refused_and_lists_candidates() {
        let list = sample();
        let err = resolve_client(&list, "abcdef").expect_err("two match");
        assert!(err.contains("ambiguous"), "{err}");
        assert!(
            err.contains("living room") && err.contains("laptop"),
            "{err}"
        );
    }

    #[test]
    fn name_that_is_also_someone_elses_prefix_is_ambiguous() {
        let mut list = sample();
        list.push(client("012345", "fedcba"));
        let err = resolve_client(&list, "012345").expect_err("name and prefix");
        assert!(err.contains("ambiguous"), "{err}");
    }

    #[test]
    fn short_or_unknown_selectors_explain_themselves() {
        let list = sample();
        let err = resolve_client(&list, "abc").expect_err("too short");
        assert!(err.contains("at least 6 hex digits"), "{err}");
        let err = resolve_client(&list, "kitchen").expect_err("unknown");
        assert!(err.contains("no paired client matches 'kitchen'"), "{err}");
        let err = resolve_client(&list, "999999").expect_err("no such prefix");
        assert!(err.contains("no paired client matches"), "{err}");
        assert!(resolve_client(&list, "  ").is_err());
        assert!(resolve_client(&[], "abcdef").is_err());
    }

    fn session(client: &str, client_name: &str) -> SessionView {
        SessionView {
            id: howl_core::SessionId(1),
            client: client.into(),
            client_name: client_name.into(),
            app: "Test Pattern".into(),
            width: 1280,
            height: 720,
            fps: 60,
            codec: "h264".into(),
            worker_pid: Some(7),
            producer_frame_counter: 0,
            frames_sent: 10,
            frames_dropped: 2,
            input_events: 0,
            lobby_id: None,
            bitrate_kbps: 5000,
            rtt_ms: None,
            uptime_secs: 65,
            tenant: None,
            video_queue_bytes: 0,
            permission: howl_core::domain::Permission::View,
            permission_set: true,
            input_dropped: 12,
            bytes_sent: 0,
            encryption: Some(crate::viewer::moonlight::EncryptionView {
                network: "lan".into(),
                policy: "preferred".into(),
                rtsp: true,
                video: Some(true),
                audio: Some(true),
                control: Some(false),
            }),
        }
    }

    #[test]
    fn sessions_table_names_the_client() {
        let fp = "ab".repeat(32);
        let out = sessions_table(&[session(&fp, "living room tv")]).render();
        let row = out.lines().nth(2).expect("one row");
        assert!(row.contains("living room tv"), "{out}");
        assert!(
            !row.contains("abababab"),
            "the name replaces the fingerprint: {out}"
        );
        assert!(row.contains("1280x720") && row.contains("1m 05s"), "{out}");
        assert!(row.contains("view* (12 dropped)"), "{out}");
        assert!(row.contains("rtsp+video+audio "), "{out}");
        // A client the registry no longer knows shows its fingerprint, shortened.
        let out = sessions_table(&[session(&fp, "")]).render();
        assert!(out.contains("abababababababab "), "{out}");
    }

    #[test]
    fn sessions_decode_from_the_api_view() {
        // What the server sends is what the CLI reads: one type, both directions.
        let fp = "cd".repeat(32);
        let json = serde_json::to_string(&vec![session(&fp, "laptop")]).expect("encode");
        let back: Vec<SessionView> = serde_json::from_str(&json).expect("decode");
        assert_eq!(back[0].client_name, "laptop");
        assert!(sessions_table(&back).render().contains("laptop"));
    }

    #[test]
    fn lobbies_table_says_who_may_join() {
        let lobby = LobbyView {
            id: 2,
            name: "night".into(),
            app_id: 5,
            app: "Test Pattern".into(),
            width: 1920,
            height: 1080,
            fps: 60,
            codec: "h264".into(),
            viewers: 3,
            worker_pid: None,
            producer_frame_counter: 0,
            clients: Vec::new(),
            stop_when_everyone_leaves: true,
            idle_timeout_secs: 0,
            tenant: None,
            viewer_permission: howl_core::domain::Permission::View,
            creator: None,
            client_permissions: Default::default(),
        };
        let out = lobbies_table(&[lobby]).render();
        let row = out.lines().nth(2).expect("one row");
        assert!(
            row.contains("night")
                && row.contains("all")
                && row.contains("view")
                && row.contains("yes"),
            "{out}"
        );
        assert!(row.contains(" - "), "no worker shows as '-': {out}");
    }

    #[test]
    fn status_summary_reads_counters() {
        let status = serde_json::json!({"version": "0.1.0", "engine": {
            "sessions": 2, "lobbies": 1, "workers": 3, "workers_starting": 1, "viewers": 4,
            "frames_sent": 100, "frames_dropped": 5,
            "frames_dropped_by_reason": {"queue_full": 5, "other": 0},
            "sessions_ended": {"client_quit": 2},
            "admission": {"max_producers": 2, "max_encoder_sessions": 0, "producers": 2,
                "encoder_sessions": 2, "refused": {"launch": 1, "lobby": 0, "player": 0}}}});
        let addr: SocketAddr = "127.0.0.1:47990".parse().expect("addr");
        let out = render_status(&status, None, addr);
        assert!(
            out.contains("producers       2 of 2 (max_producers), refused: launch 1"),
            "{out}"
        );
        assert!(out.starts_with("howl 0.1.0 at 127.0.0.1:47990\n"), "{out}");
        assert!(out.contains("workers         3 (1 starting)"), "{out}");
        assert!(out.contains("frames dropped  5 (queue_full 5)"), "{out}");
        assert!(out.contains("sessions ended  client_quit 2"), "{out}");
        let server: ServerView = serde_json::from_value(serde_json::json!({"version": "0.2.0",
            "encoders": ["h264", "hevc"], "uptime_secs": 3700, "caller": "admin",
            "limits": {"max_connections": 1, "max_body_bytes": 1, "rtsp_deadline_secs": 1,
                "connect_deadline_secs": 1, "control_silence_secs": 1, "resume_linger_secs": 1,
                "shutdown_deadline_secs": 1}, "desktop_isolation": "uid"}))
        .expect("a server view");
        let out = render_status(&status, Some(&server), addr);
        assert!(
            out.starts_with("howl 0.2.0 at 127.0.0.1:47990, up 1h 01m\n"),
            "{out}"
        );
        assert!(out.contains("encoders        h264, hevc"), "{out}");
        assert!(out.contains("isolation       uid"), "{out}");
    }
}
