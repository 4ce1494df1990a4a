//! NVHTTP request handling: routing, pairing steps, and replies, on top of howl-proto's
//! message types and pairing state machine.
//!
//! Protocol errors are HTTP 200 with an XML `status_code` (reference part 1, 2.3); only unknown
//! paths get an HTTP 404. Every handler is bounded: ordinary requests by `request_timeout`,
//! pairing step 1 (which waits for the operator's PIN) by the pairing window. None of them
//! touches media; they only talk to the core actor.

use crate::control::listener::ConnInfo;
use crate::domain::events::PairingFailure;
use crate::domain::{CoreError, CoreHandle, short};
use crate::engine::{EngineHandle, LaunchInput};
use howl_core::{PairedClient, PinError};
use howl_proto::nvhttp::{
    AppList, CancelResponse, ErrorResponse, LaunchRequest, LaunchResponse, OkResponse, PairRequest,
    PairResponse, Query, ResumeResponse, ServerInfo,
};
use howl_proto::pairing::{ServerIdentity, ServerPairing, ServerPairingState};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Box art served for every app until apps carry their own.
const APP_ASSET_PNG: &[u8] = include_bytes!("../../assets/appasset.png");

/// Static facts the NVHTTP handlers report.
#[derive(Debug, Clone)]
pub struct NvHttpSettings {
    pub hostname: String,
    pub uniqueid: String,
    pub http_port: u16,
    pub https_port: u16,
    pub pairing_window: Duration,
    pub request_timeout: Duration,
    /// `ServerCodecModeSupport`: the codecs the media worker can encode (probed at start).
    pub codec_mode_support: u32,
    /// `MaxLumaPixelsHEVC`: non-zero exactly when HEVC is offered.
    pub max_luma_pixels_hevc: u64,
}

/// The NVHTTP service shared by the HTTP and HTTPS listeners.
#[derive(Debug)]
pub struct NvHttp {
    settings: NvHttpSettings,
    core: CoreHandle,
    engine: EngineHandle,
    identity: Arc<ServerIdentity>,
}

type Resp = http::Response<Full<Bytes>>;

fn xml(body: String) -> Resp {
    let mut r = http::Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    r
}

fn error(code: i64, message: impl Into<String>) -> Resp {
    xml(ErrorResponse::new(code, message).to_xml())
}

/// Logs a core failure and turns it into the XML error clients show.
fn core_error(e: CoreError) -> Resp {
    tracing::warn!(error = %e, "core request failed");
    error(503, "the host is busy; try again")
}

impl NvHttp {
    pub fn new(
        settings: NvHttpSettings,
        core: CoreHandle,
        engine: EngineHandle,
        identity: Arc<ServerIdentity>,
    ) -> Self {
        Self {
            settings,
            core,
            engine,
            identity,
        }
    }

    /// A hyper service for one connection.
    pub fn service(
        self: Arc<Self>,
        conn: ConnInfo,
    ) -> impl hyper::service::Service<
        http::Request<Incoming>,
        Response = Resp,
        Error = Infallible,
        Future = impl Future<Output = Result<Resp, Infallible>> + Send + 'static,
    > + Send
    + 'static {
        let conn = Arc::new(conn);
        hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let this = self.clone();
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(this.handle(&conn, req).await) }
        })
    }

    async fn handle(&self, conn: &ConnInfo, req: http::Request<Incoming>) -> Resp {
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            return error(405, "NVHTTP only answers GET");
        }
        let path = req.uri().path().to_owned();
        let query = match Query::parse(req.uri().query().unwrap_or("")) {
            Ok(q) => q,
            Err(e) => {
                tracing::debug!(peer = %conn.peer, error = %e, "bad query string");
                return error(400, e.to_string());
            }
        };
        // Pairing step 1 waits for a human; everything else gets the ordinary budget.
        let budget = if path == "/pair" && query.get("phrase") == Some("getservercert") {
            self.settings.pairing_window + Duration::from_secs(5)
        } else {
            self.settings.request_timeout
        };
        let work = async {
            if conn.tls {
                self.https(conn, &path, &query).await
            } else {
                self.http(conn, &path, &query).await
            }
        };
        match tokio::time::timeout(budget, work).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(peer = %conn.peer, %path, "request deadline passed");
                error(503, "request timed out")
            }
        }
    }

    async fn http(&self, conn: &ConnInfo, path: &str, q: &Query) -> Resp {
        match path {
            "/serverinfo" => self.serverinfo(conn, false, 0),
            "/pair" => self.pair(conn, q).await,
            "/unpair" => {
                // Unauthenticated: only abort an in-progress pairing, never remove a paired
                // certificate (reference part 1, 3.3).
                if let Some(r) = requester(conn, q) {
                    self.core.end_pairing(&r);
                }
                xml(OkResponse.to_xml())
            }
            _ => not_found(),
        }
    }

    async fn https(&self, conn: &ConnInfo, path: &str, q: &Query) -> Resp {
        let Some(fp) = conn.client_cert.as_ref().map(|der| fingerprint_hex(der)) else {
            return xml(ErrorResponse::not_paired().to_xml());
        };
        let paired = match self.core.is_paired(&fp).await {
            Ok(p) => p,
            Err(e) => return core_error(e),
        };
        if !paired {
            // XML 401 with HTTP 200: what makes clients fall back to HTTP and offer pairing.
            return xml(ErrorResponse::not_paired().to_xml());
        }
        match path {
            "/serverinfo" => {
                let game = self.engine.current_game(&fp).await;
                self.serverinfo(conn, true, game)
            }
            "/pair" => match q.get("phrase") {
                Some("pairchallenge") => xml(PairResponse::paired().to_xml()),
                _ => self.pair(conn, q).await,
            },
            "/applist" => match self.core.apps().await {
                Ok(apps) => {
                    let mut list: Vec<howl_proto::nvhttp::App> = apps
                        .list()
                        .iter()
                        .map(|a| howl_proto::nvhttp::App {
                            id: a.id,
                            title: a.title.clone(),
                            hdr_supported: false,
                        })
                        .collect();
                    // Lobbies this client may join appear as apps; launching one joins it.
                    list.extend(self.engine.lobby_apps(&fp).await.into_iter().map(
                        |(id, title)| howl_proto::nvhttp::App {
                            id,
                            title,
                            hdr_supported: false,
                        },
                    ));
                    xml(AppList { apps: list }.to_xml())
                }
                Err(e) => core_error(e),
            },
            "/appasset" => {
                let mut r = http::Response::new(Full::new(Bytes::from_static(APP_ASSET_PNG)));
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("image/png"),
                );
                r
            }
            "/launch" => self.launch(conn, &fp, q).await,
            "/resume" => self.resume(conn, &fp, q).await,
            "/cancel" => {
                // Everything is stopped before replying: clients re-read serverinfo at once.
                self.engine.cancel(&fp).await;
                xml(CancelResponse.to_xml())
            }
            "/unpair" => match self.core.remove_client(&fp).await {
                Ok(_) | Err(CoreError::UnknownClient(_)) => xml(OkResponse.to_xml()),
                Err(e) => core_error(e),
            },
            _ => not_found(),
        }
    }

    async fn launch(&self, conn: &ConnInfo, fp: &str, q: &Query) -> Resp {
        let req = match LaunchRequest::from_query(q) {
            Ok(r) => r,
            Err(e) => return xml(ErrorResponse::launch_failed(400, e.to_string()).to_xml()),
        };
        let apps = match self.core.apps().await {
            Ok(a) => a,
            Err(e) => return core_error(e),
        };
        let app = apps.by_id(req.app_id).cloned();
        let input = LaunchInput {
            client: fp.to_owned(),
            rikey: req.rikey,
            rikeyid: req.rikeyid,
            local_ip: conn.local.ip(),
            peer_ip: conn.peer.ip(),
            corever: req.corever,
            mode: req.mode.map(|m| (m.width, m.height, m.fps)),
        };
        match self.engine.launch(req.app_id, app, input).await {
            Ok(url) => xml(LaunchResponse { session_url: url }.to_xml()),
            Err(e) => {
                if !e.at_capacity() {
                    tracing::warn!(client = %short(fp), error = %e, "launch failed");
                }
                xml(ErrorResponse::launch_failed(e.status_code(), e.to_string()).to_xml())
            }
        }
    }

    async fn resume(&self, conn: &ConnInfo, fp: &str, q: &Query) -> Resp {
        // /resume carries the new session key but (from some clients) no appid.
        let rikey = q
            .get("rikey")
            .and_then(|h| hex::decode(h.trim()).ok())
            .and_then(|v| <[u8; 16]>::try_from(v.as_slice()).ok());
        let rikeyid = q.get("rikeyid").and_then(|t| {
            let t = t.trim();
            t.parse::<i32>()
                .ok()
                .or_else(|| t.parse::<u32>().ok().map(|v| v as i32))
        });
        let (Some(rikey), Some(rikeyid)) = (rikey, rikeyid) else {
            return xml(ErrorResponse::resume_failed(400, "missing or bad rikey/rikeyid").to_xml());
        };
        let input = LaunchInput {
            client: fp.to_owned(),
            rikey,
            rikeyid,
            local_ip: conn.local.ip(),
            peer_ip: conn.peer.ip(),
            // Clients send the same capability parameters on /resume as on /launch.
            corever: q.get("corever").and_then(|v| v.trim().parse().ok()),
            mode: None,
        };
        match self.engine.resume(input).await {
            Ok(url) => xml(ResumeResponse { session_url: url }.to_xml()),
            Err(e) => xml(ErrorResponse::resume_failed(e.status_code(), e.to_string()).to_xml()),
        }
    }

    fn serverinfo(&self, conn: &ConnInfo, paired: bool, current_game: i32) -> Resp {
        let local_ip = match conn.local.ip() {
            IpAddr::V4(v4) => v4.to_string(),
            // qt ignores 127.0.0.1 and needs IPv4 here (reference part 1, 3.1.1).
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(|v4| v4.to_string())
                .unwrap_or_else(|| "127.0.0.1".into()),
        };
        let info = ServerInfo {
            hostname: self.settings.hostname.clone(),
            app_version: howl_proto::nvhttp::APP_VERSION.into(),
            gfe_version: howl_proto::nvhttp::GFE_VERSION.into(),
            unique_id: self.settings.uniqueid.clone(),
            https_port: self.settings.https_port,
            external_port: Some(self.settings.http_port),
            external_ip: None,
            local_ip,
            mac: "00:00:00:00:00:00".into(),
            max_luma_pixels_hevc: self.settings.max_luma_pixels_hevc,
            codec_mode_support: self.settings.codec_mode_support,
            paired,
            current_game,
            display_modes: None,
        };
        xml(info.to_xml())
    }

    async fn pair(&self, conn: &ConnInfo, q: &Query) -> Resp {
        let Some(requester) = requester(conn, q) else {
            return xml(ErrorResponse::pair_failed(400, "missing uniqueid").to_xml());
        };
        let request = match PairRequest::from_query(q) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(%requester, error = %e, "malformed pair request");
                self.core.end_pairing(&requester);
                return xml(ErrorResponse::pair_failed(400, e.to_string()).to_xml());
            }
        };
        let device = q.get("devicename").unwrap_or("").to_owned();
        match request {
            PairRequest::GetServerCert(gsc) => self.pair_step1(&requester, &device, gsc).await,
            PairRequest::PairChallenge => {
                // Over plain HTTP the certificate cannot be checked.
                xml(ErrorResponse::pair_failed(400, "pairchallenge must come over HTTPS").to_xml())
            }
            other => self.pair_next(&requester, &device, other).await,
        }
    }

    async fn pair_step1(
        &self,
        requester: &str,
        device: &str,
        gsc: howl_proto::nvhttp::GetServerCert,
    ) -> Resp {
        let awaiting = match ServerPairing::start(gsc) {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(%requester, error = %e, "pairing refused at step 1");
                return xml(ErrorResponse::pair_failed(400, e.to_string()).to_xml());
            }
        };
        let fp = hex::encode(awaiting.client_fingerprint());
        let (tx, rx) = oneshot::channel();
        let id = match self.core.begin_pairing(requester, device, &fp, tx).await {
            Ok(id) => id,
            Err(CoreError::Pin(PinError::Busy)) => {
                // An empty plaincert is how clients learn "another pairing is in progress".
                return xml(PairResponse::paired().to_xml());
            }
            Err(e) => return core_error(e),
        };
        let mut guard = PairingGuard {
            core: self.core.clone(),
            id,
            requester: requester.to_owned(),
            state: GuardState::Waiting,
        };
        let pin = match tokio::time::timeout(self.settings.pairing_window, rx).await {
            Ok(Ok(pin)) => pin,
            Ok(Err(_)) | Err(_) => {
                tracing::info!(id, %requester, "no PIN entered within the pairing window");
                return xml(PairResponse::failed().to_xml());
            }
        };
        guard.state = GuardState::PinTaken;
        match awaiting.pin(&pin, &self.identity) {
            Ok((next, resp)) => {
                if let Err(e) = self
                    .core
                    .put_stage(requester, ServerPairingState::AwaitingClientChallenge(next))
                    .await
                {
                    return core_error(e);
                }
                guard.state = GuardState::Done;
                xml(resp.to_xml())
            }
            Err(e) => {
                tracing::info!(id, error = %e, "pairing failed after PIN entry");
                self.pairing_failed(requester, PairingFailure::of(&e), e.to_string());
                xml(PairResponse::failed().to_xml())
            }
        }
    }

    fn pairing_failed(&self, requester: &str, failure: PairingFailure, reason: String) {
        self.core.events().publish(
            crate::domain::events::Audience::AdminOnly,
            crate::domain::events::Event::PairingFailed {
                requester: requester.to_owned(),
                failure,
                reason,
            },
        );
    }

    async fn pair_next(&self, requester: &str, device: &str, request: PairRequest) -> Resp {
        let stage = match self.core.take_stage(requester).await {
            Ok(s) => s,
            Err(e) => return core_error(e),
        };
        let step = request.step_name();
        let fail = |failure: PairingFailure, why: String| {
            tracing::info!(%requester, step, reason = %why, "pairing failed");
            self.pairing_failed(requester, failure, format!("{step}: {why}"));
            self.core.end_pairing(requester);
            xml(PairResponse::failed().to_xml())
        };
        let (next, resp) = match (stage, request) {
            (
                Some(ServerPairingState::AwaitingClientChallenge(s)),
                PairRequest::ClientChallenge(cc),
            ) => {
                let random = match random_32() {
                    Ok(r) => r,
                    Err(e) => return fail(PairingFailure::Internal, e),
                };
                match s.client_challenge(cc, random, &self.identity) {
                    Ok((n, r)) => (ServerPairingState::AwaitingServerChallengeResp(n), r),
                    Err(e) => return fail(PairingFailure::of(&e), e.to_string()),
                }
            }
            (
                Some(ServerPairingState::AwaitingServerChallengeResp(s)),
                PairRequest::ServerChallengeResp(h),
            ) => match s.server_challenge_resp(h, &self.identity) {
                Ok((n, r)) => (ServerPairingState::AwaitingClientPairingSecret(n), r),
                Err(e) => return fail(PairingFailure::of(&e), e.to_string()),
            },
            (
                Some(ServerPairingState::AwaitingClientPairingSecret(s)),
                PairRequest::ClientPairingSecret { secret, signature },
            ) => {
                self.core.end_pairing(requester);
                return match s.client_pairing_secret(secret, &signature) {
                    Ok(client) => {
                        let fp = hex::encode(client.fingerprint);
                        let name = if device.is_empty() || device == "roth" {
                            format!("Moonlight client {}", &fp[..8])
                        } else {
                            device.to_owned()
                        };
                        let pc = PairedClient {
                            fingerprint: fp.clone(),
                            name,
                            cert_pem: String::from_utf8_lossy(&client.cert_pem).into_owned(),
                            paired_at_unix: std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map(|d| d.as_secs())
                                .unwrap_or(0),
                        };
                        match self.core.add_client(pc).await {
                            Ok(()) => xml(PairResponse::paired().to_xml()),
                            Err(e) => {
                                tracing::error!(fingerprint = %short(&fp), error = %e, "could not store paired client");
                                xml(PairResponse::failed().to_xml())
                            }
                        }
                    }
                    Err(e) => {
                        tracing::info!(%requester, error = %e, "pairing failed at the final step");
                        self.pairing_failed(requester, PairingFailure::of(&e), e.to_string());
                        xml(PairResponse::failed().to_xml())
                    }
                };
            }
            (None, _) => {
                return fail(
                    PairingFailure::OutOfOrder,
                    "no pairing in progress for this client".into(),
                );
            }
            (Some(_), _) => {
                return fail(
                    PairingFailure::OutOfOrder,
                    format!("{step} arrived out of order"),
                );
            }
        };
        match self.core.put_stage(requester, next).await {
            Ok(()) => xml(resp.to_xml()),
            Err(e) => {
                self.core.end_pairing(requester);
                core_error(e)
            }
        }
    }
}

enum GuardState {
    Waiting,
    PinTaken,
    Done,
}

/// Cleans up after pairing step 1 however it ends: a request that goes away while waiting is
/// withdrawn; one that got its PIN but failed before storing its state frees the requester.
struct PairingGuard {
    core: CoreHandle,
    id: u64,
    requester: String,
    state: GuardState,
}

impl Drop for PairingGuard {
    fn drop(&mut self) {
        match self.state {
            GuardState::Waiting => self.core.cancel_waiting(self.id),
            GuardState::PinTaken => self.core.end_pairing(&self.requester),
            GuardState::Done => {}
        }
    }
}

/// `uniqueid@ip`: the only key pairing steps 2-4 can be matched by.
fn requester(conn: &ConnInfo, q: &Query) -> Option<String> {
    let uid = q.get("uniqueid")?.trim();
    if uid.is_empty() || uid.len() > 64 {
        return None;
    }
    Some(format!("{uid}@{}", conn.peer.ip()))
}

fn not_found() -> Resp {
    let mut r = xml(ErrorResponse::not_found().to_xml());
    *r.status_mut() = http::StatusCode::NOT_FOUND;
    r
}

fn fingerprint_hex(der: &[u8]) -> String {
    hex::encode(howl_proto::pairing::fingerprint(der))
}

fn random_32() -> Result<[u8; 32], String> {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| "system RNG failed".to_owned())?;
    Ok(b)
}
