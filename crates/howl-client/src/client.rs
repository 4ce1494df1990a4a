//! [`Client`]: one client identity talking NVHTTP to hosts (serverinfo, pairing, app list,
//! launch, cancel). Streaming itself is in [`crate::session`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use howl_proto::nvhttp::{
    AppList, CancelResponse, LaunchRequest, LaunchResponse, PairRequest, PairResponse, Query,
    ResumeResponse, ServerInfo, XmlDoc,
};
use howl_proto::pairing::PairingError;
use howl_proto::pairing::client::{ClientPairing, PairedServer};

use crate::error::ClientError;
use crate::http::{HttpResponse, build_request, http_request, https_request, tls_connector};
use crate::identity::{self, StoredIdentity, random_bytes};

/// Deadline of an ordinary NVHTTP request (qt: 5 s; a bit more for loaded CI machines).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Default deadline of pairing step 1, which the host holds until the operator enters the PIN
/// (clients wait forever; a tool must not).
pub const DEFAULT_PIN_DEADLINE: Duration = Duration::from_secs(300);
/// Deadline of `/launch` and `/resume` (qt: 120 s; the host starts the app before replying).
pub const LAUNCH_DEADLINE: Duration = Duration::from_secs(120);
/// Deadline of `/cancel` (qt: 30 s).
pub const CANCEL_DEADLINE: Duration = Duration::from_secs(30);
/// `devicename` sent while pairing (every official client sends `roth`).
pub const DEVICE_NAME: &str = "roth";

/// What [`Client::resolve`] learned about a host over plain HTTP.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// The host's NVHTTP plain-HTTP address (what the user typed).
    pub http_addr: SocketAddr,
    /// Its HTTPS address (same IP, `HttpsPort`).
    pub https_addr: SocketAddr,
    /// The unauthenticated `/serverinfo` reply.
    pub info: ServerInfo,
}

/// A Moonlight-compatible client identity: certificate, key, `uniqueid` and pinned hosts in
/// one configuration directory. Cheap to share behind an `Arc`; every method is one or more
/// self-contained requests.
pub struct Client {
    dir: PathBuf,
    identity: Arc<StoredIdentity>,
    pin_deadline: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("dir", &self.dir)
            .field("uniqueid", &self.identity.uniqueid)
            .finish_non_exhaustive()
    }
}

/// The `uuid` parameter: random per request, 32 hex digits (qt's shape).
fn request_uuid() -> Result<String, ClientError> {
    Ok(hex::encode(random_bytes::<16>()?))
}

fn decode_xml<T>(
    endpoint: &'static str,
    peer: SocketAddr,
    resp: &HttpResponse,
    decode: impl FnOnce(&XmlDoc) -> Result<T, howl_proto::nvhttp::NvHttpError>,
) -> Result<T, ClientError> {
    if resp.status != 200 {
        return Err(ClientError::Http {
            peer,
            reason: format!("{endpoint} answered HTTP {}", resp.status),
        });
    }
    XmlDoc::parse(&resp.body)
        .and_then(|doc| decode(&doc))
        .map_err(|source| ClientError::NvHttp {
            endpoint,
            peer,
            source,
        })
}

impl Client {
    /// Opens (creating on first use) the configuration directory: generates an RSA-2048 key
    /// and certificate and a `uniqueid` if missing. Blocking file I/O and key generation;
    /// call it before or outside the hot path.
    pub fn new(config_dir: &Path) -> Result<Self, ClientError> {
        let identity = identity::load_or_create(config_dir)?;
        Ok(Self {
            dir: config_dir.to_path_buf(),
            identity: Arc::new(identity),
            pin_deadline: DEFAULT_PIN_DEADLINE,
        })
    }

    /// How long pairing step 1 may wait for the operator's PIN.
    #[must_use]
    pub fn with_pin_deadline(mut self, deadline: Duration) -> Self {
        self.pin_deadline = deadline;
        self
    }

    /// The `uniqueid` this client sends.
    pub fn uniqueid(&self) -> &str {
        &self.identity.uniqueid
    }

    /// The client certificate (PEM), which the host stores when pairing.
    pub fn cert_pem(&self) -> &str {
        &self.identity.cert_pem
    }

    /// SHA-256 of the client certificate DER, as howl's API shows it (lower-case hex).
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.identity.identity.fingerprint())
    }

    /// The configuration directory.
    pub fn config_dir(&self) -> &Path {
        &self.dir
    }

    fn base_query(&self) -> Result<Query, ClientError> {
        let mut q = Query::new();
        q.push("uniqueid", self.identity.uniqueid.clone())
            .push("uuid", request_uuid()?);
        Ok(q)
    }

    fn target(path: &str, q: &Query) -> String {
        format!("{path}?{}", q.to_query_string())
    }

    async fn http_get(
        &self,
        addr: SocketAddr,
        what: &'static str,
        target: &str,
        deadline: Duration,
    ) -> Result<HttpResponse, ClientError> {
        let req = build_request("GET", &addr.to_string(), target, &[], b"");
        http_request(addr, what, req, deadline).await
    }

    async fn https_get(
        &self,
        host: &HostInfo,
        pinned_pem: &[u8],
        what: &'static str,
        target: &str,
        deadline: Duration,
    ) -> Result<HttpResponse, ClientError> {
        let tls = tls_connector(&self.identity, pinned_pem)?;
        let req = build_request("GET", &host.https_addr.to_string(), target, &[], b"");
        https_request(&tls, host.https_addr, what, req, deadline).await
    }

    /// `/serverinfo` over plain HTTP (no client certificate, so `PairStatus` is always 0).
    pub async fn server_info(&self, addr: SocketAddr) -> Result<ServerInfo, ClientError> {
        let target = Self::target("/serverinfo", &self.base_query()?);
        let resp = self
            .http_get(addr, "serverinfo", &target, REQUEST_DEADLINE)
            .await?;
        decode_xml("serverinfo", addr, &resp, ServerInfo::from_xml)
    }

    /// `/serverinfo` over plain HTTP plus the derived HTTPS address.
    pub async fn resolve(&self, addr: SocketAddr) -> Result<HostInfo, ClientError> {
        let info = self.server_info(addr).await?;
        Ok(HostInfo {
            http_addr: addr,
            https_addr: SocketAddr::new(addr.ip(), info.https_port),
            info,
        })
    }

    fn pinned(&self, host: &HostInfo) -> Result<Vec<u8>, ClientError> {
        identity::load_pinned(&self.dir, &host.info.unique_id)?.ok_or_else(|| {
            ClientError::NotPaired {
                peer: host.http_addr,
                unique_id: host.info.unique_id.clone(),
            }
        })
    }

    /// Load for the control plane: `requests` HTTPS GETs of `paths` (round robin), at most
    /// `concurrency` in flight, each on a new connection as Moonlight clients do (TLS sessions
    /// are resumed, as client libraries do). Returns each request's latency and XML status.
    pub async fn hammer(
        &self,
        addr: SocketAddr,
        paths: &[String],
        requests: usize,
        concurrency: usize,
    ) -> Result<Vec<(Duration, Option<i64>)>, ClientError> {
        let host = self.resolve(addr).await?;
        let pinned = self.pinned(&host)?;
        let tls = tls_connector(&self.identity, &pinned)?;
        let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..requests {
            let permit = sem
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ClientError::Crypto("semaphore closed".into()))?;
            let path = paths
                .get(i % paths.len().max(1))
                .cloned()
                .unwrap_or_default();
            let target = Self::target(&path, &self.base_query()?);
            let req = build_request("GET", &host.https_addr.to_string(), &target, &[], b"");
            let tls = tls.clone();
            let peer = host.https_addr;
            tasks.spawn(async move {
                let _permit = permit;
                let t0 = std::time::Instant::now();
                let r = https_request(&tls, peer, "hammer", req, REQUEST_DEADLINE).await;
                let status = r.ok().and_then(|resp| {
                    howl_proto::nvhttp::XmlDoc::parse(&resp.body)
                        .ok()
                        .map(|d| d.status_code)
                });
                (t0.elapsed(), status)
            });
        }
        let mut out = Vec::with_capacity(requests);
        while let Some(r) = tasks.join_next().await {
            if let Ok(x) = r {
                out.push(x);
            }
        }
        Ok(out)
    }

    /// `/serverinfo` over HTTPS with the client certificate: `paired` tells whether the host
    /// accepts this client.
    pub async fn server_info_tls(&self, addr: SocketAddr) -> Result<ServerInfo, ClientError> {
        let host = self.resolve(addr).await?;
        let pinned = self.pinned(&host)?;
        let target = Self::target("/serverinfo", &self.base_query()?);
        let resp = self
            .https_get(&host, &pinned, "serverinfo", &target, REQUEST_DEADLINE)
            .await?;
        decode_xml("serverinfo", host.https_addr, &resp, ServerInfo::from_xml)
    }

    /// Pairs with the host at `addr` (its HTTP port) using `pin`, which the operator must
    /// enter on the host (howl: `howl pin <PIN>` or `POST /api/v1/pairing/pin`) while step 1
    /// is held open. On success the host certificate is pinned in the config directory.
    pub async fn pair(&self, addr: SocketAddr, pin: &str) -> Result<PairedServer, ClientError> {
        let host = self.resolve(addr).await?;
        let result = self.pair_steps(&host, pin).await;
        if let Err(e) = &result
            && !matches!(e, ClientError::Timeout { .. } | ClientError::Io { .. })
        {
            // What real clients do after a failed pairing; best effort (howl may 404 it).
            if let Ok(q) = self.base_query() {
                let _ = self
                    .http_get(
                        addr,
                        "unpair",
                        &Self::target("/unpair", &q),
                        REQUEST_DEADLINE,
                    )
                    .await;
            }
        }
        result
    }

    async fn pair_step(
        &self,
        addr: SocketAddr,
        step: &PairRequest,
        deadline: Duration,
    ) -> Result<PairResponse, ClientError> {
        let mut q = self.base_query()?;
        q.push("devicename", DEVICE_NAME).push("updateState", "1");
        step.append_to(&mut q);
        let resp = self
            .http_get(addr, "pair", &Self::target("/pair", &q), deadline)
            .await?;
        decode_xml("pair", addr, &resp, PairResponse::from_xml)
    }

    async fn pair_steps(&self, host: &HostInfo, pin: &str) -> Result<PairedServer, ClientError> {
        let addr = host.http_addr;
        let id = &self.identity.identity;
        let perr = |source: PairingError| ClientError::Pairing { peer: addr, source };
        let (state, req) = ClientPairing::start(pin, random_bytes()?, id);
        let reply = self.pair_step(addr, &req, self.pin_deadline).await?;
        let (state, req) = state.server_cert(&reply, random_bytes()?).map_err(perr)?;
        let reply = self.pair_step(addr, &req, REQUEST_DEADLINE).await?;
        let (state, req) = state
            .challenge_response(&reply, random_bytes()?, id)
            .map_err(perr)?;
        let reply = self.pair_step(addr, &req, REQUEST_DEADLINE).await?;
        let (state, req) = state.pairing_secret(&reply, id).map_err(perr)?;
        let reply = self.pair_step(addr, &req, REQUEST_DEADLINE).await?;
        let paired = state.pair_result(&reply).map_err(perr)?;
        // Step 5 over TLS proves both pins work; only then is the host certificate stored.
        let mut q = self.base_query()?;
        q.push("devicename", DEVICE_NAME).push("updateState", "1");
        PairRequest::PairChallenge.append_to(&mut q);
        let resp = self
            .https_get(
                host,
                &paired.cert_pem,
                "pairchallenge",
                &Self::target("/pair", &q),
                REQUEST_DEADLINE,
            )
            .await?;
        let reply = decode_xml("pair", host.https_addr, &resp, PairResponse::from_xml)?;
        if !reply.paired {
            return Err(perr(PairingError::NotPaired));
        }
        identity::store_pinned(&self.dir, &host.info.unique_id, &paired.cert_pem)?;
        Ok(paired)
    }

    /// `/applist` over HTTPS.
    pub async fn apps(&self, addr: SocketAddr) -> Result<AppList, ClientError> {
        let host = self.resolve(addr).await?;
        let pinned = self.pinned(&host)?;
        let target = Self::target("/applist", &self.base_query()?);
        let resp = self
            .https_get(&host, &pinned, "applist", &target, REQUEST_DEADLINE)
            .await?;
        decode_xml("applist", host.https_addr, &resp, AppList::from_xml)
    }

    /// Finds an app by exact title, or by numeric id.
    pub async fn find_app(&self, addr: SocketAddr, title_or_id: &str) -> Result<i32, ClientError> {
        let list = self.apps(addr).await?;
        list.apps
            .iter()
            .find(|a| a.title == title_or_id)
            .or_else(|| {
                let id: i32 = title_or_id.trim().parse().ok()?;
                list.apps.iter().find(|a| a.id == id)
            })
            .map(|a| a.id)
            .ok_or_else(|| ClientError::NoSuchApp(title_or_id.to_owned()))
    }

    /// `/launch` (or `/resume` when `resume`) over HTTPS; returns `sessionUrl0` and the host.
    pub(crate) async fn launch_request(
        &self,
        addr: SocketAddr,
        request: &LaunchRequest,
        resume: bool,
    ) -> Result<(HostInfo, String), ClientError> {
        let host = self.resolve(addr).await?;
        let pinned = self.pinned(&host)?;
        let mut q = self.base_query()?;
        request.append_to(&mut q);
        let (path, what) = if resume {
            ("/resume", "resume")
        } else {
            ("/launch", "launch")
        };
        let resp = self
            .https_get(
                &host,
                &pinned,
                what,
                &Self::target(path, &q),
                LAUNCH_DEADLINE,
            )
            .await?;
        let url = if resume {
            decode_xml(what, host.https_addr, &resp, ResumeResponse::from_xml)?.session_url
        } else {
            decode_xml(what, host.https_addr, &resp, LaunchResponse::from_xml)?.session_url
        };
        Ok((host, url))
    }

    /// `/cancel` over HTTPS: quit the running app and end its sessions.
    pub async fn quit(&self, addr: SocketAddr) -> Result<(), ClientError> {
        let host = self.resolve(addr).await?;
        let pinned = self.pinned(&host)?;
        let target = Self::target("/cancel", &self.base_query()?);
        let resp = self
            .https_get(&host, &pinned, "cancel", &target, CANCEL_DEADLINE)
            .await?;
        decode_xml("cancel", host.https_addr, &resp, CancelResponse::from_xml).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_step_one_query_carries_pem_hex_and_client_params() {
        let dir = tempfile::tempdir().unwrap();
        let c = Client::new(dir.path()).unwrap();
        let (_, req) = ClientPairing::start("1234", [7; 16], &c.identity.identity);
        let mut q = c.base_query().unwrap();
        q.push("devicename", DEVICE_NAME).push("updateState", "1");
        req.append_to(&mut q);
        let target = Client::target("/pair", &q);
        let parsed = Query::parse(target.split_once('?').unwrap().1).unwrap();
        assert_eq!(parsed.get("uniqueid"), Some(c.uniqueid()));
        assert_eq!(parsed.get("uuid").unwrap().len(), 32);
        assert_eq!(parsed.get("phrase"), Some("getservercert"));
        assert_eq!(parsed.get("salt"), Some("07".repeat(16).as_str()));
        let pem = hex::decode(parsed.get("clientcert").unwrap()).unwrap();
        assert_eq!(pem, c.cert_pem().as_bytes());
        // The host decodes exactly what we meant.
        assert_eq!(PairRequest::from_query(&parsed).unwrap(), req);
        assert_eq!(c.fingerprint_hex().len(), 64);
    }
}
