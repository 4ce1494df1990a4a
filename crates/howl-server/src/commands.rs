//! The operator commands (`howl pin`, `status`, `sessions`, `lobbies`, `clients`): each talks to
//! the running server's management API and prints a table, a short line or the API's JSON.
//!
//! Every function returns `Err(message)` for main to print as `howl: <message>` (exit code 1).

use crate::api::ClientView;
use crate::apiclient;
use crate::cli::{
    ClientArgs, ClientsAction, ClientsArgs, LobbiesAction, LobbiesArgs, LobbyCreateArgs, PinArgs,
    SessionsAction, SessionsArgs, StatusArgs, StopArgs, UnpairArgs,
};
use crate::statedir;
use crate::table::{Align, Table, sanitize};
use http::{Method, StatusCode};
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Hex digits of a fingerprint shown in tables: enough to tell clients apart and to type.
const FINGERPRINT_SHOWN: usize = 16;
/// Fewest hex digits accepted as a fingerprint prefix (the same rule as the API's selectors).
const MIN_FINGERPRINT_PREFIX: usize = 6;
/// Hex digits of a full SHA-256 fingerprint.
const FINGERPRINT_LEN: usize = 64;
/// Most characters of a non-JSON error body quoted back to the operator.
const MAX_QUOTED_BODY: usize = 200;

/// A connection to the running server's API: its address and admin token.
struct Api {
    addr: SocketAddr,
    token: String,
    state_dir: PathBuf,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of every debug print.
        f.debug_struct("Api")
            .field("addr", &self.addr)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl Api {
    fn open(args: &ClientArgs) -> Result<Self, String> {
        let state_dir = args
            .state_dir
            .clone()
            .unwrap_or_else(statedir::default_state_dir);
        let token = statedir::StateDir::read_token(&state_dir).map_err(|e| e.to_string())?;
        Ok(Self {
            addr: args.api,
            token,
            state_dir,
        })
    }

    /// Sends one request; a success answers its JSON (None for an empty body such as 204),
    /// any other status the operator-facing message.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Option<Value>, CallError> {
        let (status, text) = apiclient::request(
            self.addr,
            &self.token,
            method,
            path,
            body.map(|b| b.to_string()),
        )
        .await
        .map_err(|e| CallError::Other(e.to_string()))?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(None);
            }
            return serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| CallError::Other(format!("the API answered bad JSON: {e}")));
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(CallError::Other(format!(
                "the API token in {} was refused (is this the state dir of the running server?)",
                self.state_dir.join("api-token").display()
            )));
        }
        let msg = error_message(status, &text);
        if status == StatusCode::NOT_FOUND {
            Err(CallError::NotFound(msg))
        } else {
            Err(CallError::Other(msg))
        }
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(Method::GET, path, None)
            .await
            .map_err(CallError::into_message)?
            .ok_or_else(|| format!("the API answered nothing for {path}"))
    }

    /// GET of a route that older servers lack: 404 reads as "not there".
    async fn get_optional(&self, path: &str) -> Result<Option<Value>, String> {
        match self.call(Method::GET, path, None).await {
            Ok(v) => Ok(v),
            Err(CallError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into_message()),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Option<Value>, String> {
        self.call(method, path, body)
            .await
            .map_err(CallError::into_message)
    }

    async fn clients(&self) -> Result<Vec<ClientView>, String> {
        let v = self.get("/api/v1/clients").await?;
        serde_json::from_value(v).map_err(|e| format!("unexpected client list from the API: {e}"))
    }
}

/// Why an API call failed, with 404 kept apart for routes that may not exist yet.
#[derive(Debug)]
enum CallError {
    NotFound(String),
    Other(String),
}

impl CallError {
    fn into_message(self) -> String {
        match self {
            Self::NotFound(m) | Self::Other(m) => m,
        }
    }
}

/// The API's `{"error": msg}`, or a short quote of whatever else it answered.
fn error_message(status: StatusCode, body: &str) -> String {
    if let Some(msg) = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
    {
        return sanitize(&msg);
    }
    let quoted: String = body.trim().chars().take(MAX_QUOTED_BODY).collect();
    if quoted.is_empty() {
        format!("the API answered {status}")
    } else {
        format!("the API answered {status}: {}", sanitize(&quoted))
    }
}

/// Writes to stdout; a closed pipe (`howl sessions | head -1`) is not an error.
fn emit(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

fn emit_json(v: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    emit(&format!("{text}\n"))
}

/// A table, or the friendly line when there is nothing to list.
fn emit_table(t: &Table, empty: &str) -> Result<(), String> {
    if t.is_empty() {
        emit(&format!("{empty}\n"))
    } else {
        emit(&t.render())
    }
}

// ---- pin ----

pub async fn pin(args: PinArgs) -> Result<(), String> {
    let api = Api::open(&args.conn)?;
    let body = serde_json::json!({ "pin": args.pin, "client": args.client });
    api.send(Method::POST, "/api/v1/pairing/pin", Some(body))
        .await
        .map_err(|m| format!("PIN not accepted: {m}"))?;
    emit("PIN delivered; the client completes pairing now.\n")
}

// ---- status ----

pub async fn status(args: StatusArgs) -> Result<(), String> {
    let api = Api::open(&args.list.client)?;
    let mut status = api.get("/api/v1/status").await?;
    let server = api.get_optional("/api/v1/server").await?;
    if args.list.json {
        // /status as-is, with /server alongside under "server" when the server has it.
        if let (Some(server), Some(obj)) = (server, status.as_object_mut()) {
            obj.insert("server".into(), server);
        }
        return emit_json(&status);
    }
    emit(&render_status(&status, server.as_ref(), api.addr))
}

fn render_status(status: &Value, server: Option<&Value>, addr: SocketAddr) -> String {
    let engine = &status["engine"];
    let version = server
        .and_then(|s| s.get("version"))
        .or_else(|| status.get("version"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    let mut head = format!("howl {} at {addr}", sanitize(version));
    if let Some(up) = server
        .and_then(|s| s.get("uptime_secs"))
        .and_then(Value::as_u64)
    {
        head.push_str(&format!(", up {}", duration(up)));
    }
    let mut rows: Vec<(&str, String)> = Vec::new();
    if let Some(enc) = server
        .and_then(|s| s.get("encoders"))
        .and_then(Value::as_array)
    {
        let names: Vec<&str> = enc.iter().filter_map(Value::as_str).collect();
        rows.push(("encoders", names.join(", ")));
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
        None => {
            let api = Api::open(&args.list.client)?;
            let list = api.get("/api/v1/sessions").await?;
            if args.list.json {
                return emit_json(&list);
            }
            emit_table(&sessions_table(&list), "no sessions")
        }
    }
}

fn sessions_table(list: &Value) -> Table {
    let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
    // Older servers do not report uptime: the column appears only when it has something.
    let with_uptime = items.iter().any(|s| s.get("uptime_secs").is_some());
    let mut cols = vec![
        ("ID", Align::Right),
        ("CLIENT", Align::Left),
        ("APP", Align::Left),
        ("RESOLUTION", Align::Left),
        ("FPS", Align::Right),
        ("CODEC", Align::Left),
        ("FRAMES SENT", Align::Right),
        ("DROPPED", Align::Right),
    ];
    if with_uptime {
        cols.push(("UPTIME", Align::Right));
    }
    let mut t = Table::new(&cols);
    for s in items {
        let client = s
            .get("client_name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| short_fingerprint(&text(s, "client")));
        let mut row = vec![
            num(s, "id"),
            client,
            text(s, "app"),
            resolution(s),
            num(s, "fps"),
            text(s, "codec"),
            num(s, "frames_sent"),
            num(s, "frames_dropped"),
        ];
        if with_uptime {
            row.push(
                s.get("uptime_secs")
                    .and_then(Value::as_u64)
                    .map(duration)
                    .unwrap_or_else(|| "-".into()),
            );
        }
        t.push(row);
    }
    t
}

/// `howl sessions stop ID` and `howl lobbies stop ID`: DELETE of one numbered thing.
async fn stop_thing(args: StopArgs, collection: &str, noun: &str) -> Result<(), String> {
    let api = Api::open(&args.conn)?;
    api.send(
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
        None => {
            let api = Api::open(&args.list.client)?;
            let list = api.get("/api/v1/lobbies").await?;
            if args.list.json {
                return emit_json(&list);
            }
            emit_table(&lobbies_table(&list), "no lobbies")
        }
    }
}

fn lobbies_table(list: &Value) -> Table {
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
        ("STOP WHEN EMPTY", Align::Left),
    ]);
    for l in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        let allowed = match l.get("clients").and_then(Value::as_array) {
            Some(c) if !c.is_empty() => c.len().to_string(),
            _ => "all".into(),
        };
        let stop = match l.get("stop_when_everyone_leaves").and_then(Value::as_bool) {
            Some(true) => "yes",
            _ => "no",
        };
        t.push(vec![
            num(l, "id"),
            text(l, "name"),
            text(l, "app"),
            resolution(l),
            num(l, "fps"),
            text(l, "codec"),
            num(l, "viewers"),
            num(l, "worker_pid"),
            allowed,
            stop.into(),
        ]);
    }
    t
}

async fn create_lobby(args: LobbyCreateArgs) -> Result<(), String> {
    let api = Api::open(&args.conn)?;
    let mut clients = Vec::with_capacity(args.clients.len());
    if !args.clients.is_empty() {
        // Full fingerprints go as they are; anything else is looked up once, like `unpair`.
        let known = if args.clients.iter().all(|c| is_full_fingerprint(c)) {
            Vec::new()
        } else {
            api.clients().await?
        };
        for sel in &args.clients {
            if is_full_fingerprint(sel) {
                clients.push(sel.to_ascii_lowercase());
            } else {
                clients.push(resolve_client(&known, sel)?.fingerprint.clone());
            }
        }
    }
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
    let lobby = api
        .send(Method::POST, "/api/v1/lobbies", Some(Value::Object(body)))
        .await?
        .unwrap_or(Value::Null);
    emit(&format!(
        "created lobby {} \"{}\" ({}, {}@{} {})\n",
        num(&lobby, "id"),
        text(&lobby, "name"),
        text(&lobby, "app"),
        resolution(&lobby),
        num(&lobby, "fps"),
        text(&lobby, "codec"),
    ))
}

// ---- clients ----

pub async fn clients(args: ClientsArgs) -> Result<(), String> {
    match args.action {
        Some(ClientsAction::Unpair(u)) => unpair(u).await,
        None => {
            let api = Api::open(&args.list.client)?;
            let list = api.get("/api/v1/clients").await?;
            if args.list.json {
                return emit_json(&list);
            }
            let parsed: Vec<ClientView> = serde_json::from_value(list)
                .map_err(|e| format!("unexpected client list from the API: {e}"))?;
            emit_table(&clients_table(&parsed), "no paired clients")
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
            c.name.clone(),
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
    api.send(
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

// ---- formatting helpers ----

fn is_full_fingerprint(s: &str) -> bool {
    s.len() == FINGERPRINT_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The first hex digits of a fingerprint; anything that is not one is shown whole.
fn short_fingerprint(fp: &str) -> String {
    if is_full_fingerprint(fp) {
        fp[..FINGERPRINT_SHOWN].to_ascii_lowercase()
    } else {
        fp.to_owned()
    }
}

/// A string field, "-" when absent.
fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) if !s.is_empty() => sanitize(s),
        Some(Value::Null) | None => "-".into(),
        Some(Value::String(_)) => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// A number field, "-" when absent or null.
fn num(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::Number(n)) => n.to_string(),
        _ => "-".into(),
    }
}

fn resolution(v: &Value) -> String {
    match (
        v.get("width").and_then(Value::as_u64),
        v.get("height").and_then(Value::as_u64),
    ) {
        (Some(w), Some(h)) if w > 0 && h > 0 => format!("{w}x{h}"),
        _ => "-".into(),
    }
}

/// A duration as its two largest units: "45s", "3m 05s", "1h 02m", "2d 03h".
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Seconds since the Unix epoch as "YYYY-MM-DD HH:MM:SS UTC".
pub fn utc(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(i64::MAX / 2);
    let rem = unix % 86_400;
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01, by counting 400-year eras
/// (146 097 days each) from 0000-03-01 so that leap days fall at the end of each year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59 UTC");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(65), "1m 05s");
        assert_eq!(duration(3_720), "1h 02m");
        assert_eq!(duration(2 * 86_400 + 3 * 3600 + 5), "2d 03h");
    }

    #[test]
    fn error_bodies_become_messages() {
        assert_eq!(
            error_message(StatusCode::NOT_FOUND, r#"{"error":"no session 9"}"#),
            "no session 9"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, ""),
            "the API answered 502 Bad Gateway"
        );
        assert!(error_message(StatusCode::BAD_REQUEST, "plain\x1b text").contains("plain? text"));
    }

    #[test]
    fn sessions_table_shows_uptime_only_when_reported() {
        let fp = "ab".repeat(32);
        let old = serde_json::json!([{"id": 1, "client": fp, "app": "Test Pattern", "width": 1280,
            "height": 720, "fps": 60, "codec": "h264", "frames_sent": 10, "frames_dropped": 0}]);
        let out = sessions_table(&old).render();
        assert!(!out.contains("UPTIME"), "{out}");
        assert!(
            out.contains("abababababababab "),
            "fingerprint shortened: {out}"
        );
        assert!(out.contains("1280x720"), "{out}");
        let new = serde_json::json!([{"id": 1, "client": fp, "client_name": "tv", "app": "A",
            "width": 1, "height": 1, "fps": 30, "codec": "hevc", "frames_sent": 1,
            "frames_dropped": 2, "uptime_secs": 65}]);
        let out = sessions_table(&new).render();
        assert!(
            out.contains("UPTIME") && out.contains("1m 05s") && out.contains("tv"),
            "{out}"
        );
    }

    #[test]
    fn lobbies_table_says_who_may_join() {
        let list = serde_json::json!([
            {"id": 2, "name": "night", "app": "Test Pattern", "width": 1920, "height": 1080,
             "fps": 60, "codec": "h264", "viewers": 3, "worker_pid": null, "clients": [],
             "stop_when_everyone_leaves": true}]);
        let out = lobbies_table(&list).render();
        let row = out.lines().nth(2).expect("one row");
        assert!(
            row.contains("night") && row.contains("all") && row.contains("yes"),
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
            "sessions_ended": {"client_quit": 2}}});
        let addr: SocketAddr = "127.0.0.1:47990".parse().expect("addr");
        let out = render_status(&status, None, addr);
        assert!(out.starts_with("howl 0.1.0 at 127.0.0.1:47990\n"), "{out}");
        assert!(out.contains("workers         3 (1 starting)"), "{out}");
        assert!(out.contains("frames dropped  5 (queue_full 5)"), "{out}");
        assert!(out.contains("sessions ended  client_quit 2"), "{out}");
        let server = serde_json::json!({"version": "0.2.0", "encoders": ["h264", "hevc"],
            "uptime_secs": 3700});
        let out = render_status(&status, Some(&server), addr);
        assert!(
            out.starts_with("howl 0.2.0 at 127.0.0.1:47990, up 1h 01m\n"),
            "{out}"
        );
        assert!(out.contains("encoders        h264, hevc"), "{out}");
    }
}
