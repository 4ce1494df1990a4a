//! Typed NVHTTP messages. Each one encodes and decodes, so the server and the Rust test client
//! share one schema (STYLE practice 5).

use super::query::decode_hex;
use super::xml::{XmlDoc, XmlWriter};
use super::{NvHttpError, ParamProblem, Query};

/// The `appversion` howl claims: 7.1.431 selects SHA-256 pairing, TCP RTSP and the encrypted
/// control stream; the negative last component selects the Sunshine extensions (reference
/// part 1, sections 0.1 and 3.1.2).
pub const APP_VERSION: &str = "7.1.431.-1";

/// The `GfeVersion` howl claims. Missing or `2.x` makes android downgrade 4K to 1080p.
pub const GFE_VERSION: &str = "3.23.0.74";

/// Default HTTPS port of a GameStream host.
pub const DEFAULT_HTTPS_PORT: u16 = 47984;

/// `ServerCodecModeSupport`: H.264.
pub const SCM_H264: u32 = 0x0000_0001;
/// `ServerCodecModeSupport`: HEVC Main.
pub const SCM_HEVC: u32 = 0x0000_0100;
/// `ServerCodecModeSupport`: HEVC Main10 (HDR).
pub const SCM_HEVC_MAIN10: u32 = 0x0000_0200;
/// `ServerCodecModeSupport`: AV1 Main 8-bit (Sunshine extension).
pub const SCM_AV1_MAIN8: u32 = 0x0001_0000;
/// `ServerCodecModeSupport`: AV1 Main 10-bit (Sunshine extension).
pub const SCM_AV1_MAIN10: u32 = 0x0002_0000;
/// `ServerCodecModeSupport`: H.264 High 4:4:4 (Sunshine extension).
pub const SCM_H264_HIGH8_444: u32 = 0x0004_0000;
/// `ServerCodecModeSupport`: HEVC RExt 4:4:4 8-bit (Sunshine extension).
pub const SCM_HEVC_REXT8_444: u32 = 0x0008_0000;
/// `ServerCodecModeSupport`: HEVC RExt 4:4:4 10-bit (Sunshine extension).
pub const SCM_HEVC_REXT10_444: u32 = 0x0010_0000;
/// `ServerCodecModeSupport`: AV1 High 4:4:4 8-bit (Sunshine extension).
pub const SCM_AV1_HIGH8_444: u32 = 0x0020_0000;
/// `ServerCodecModeSupport`: AV1 High 4:4:4 10-bit (Sunshine extension).
pub const SCM_AV1_HIGH10_444: u32 = 0x0040_0000;
/// Every bit clients know. Moonlight-qt asserts (debug builds) on any other bit, so
/// [`ServerInfo::to_xml`] masks the field with this.
pub const SCM_KNOWN_BITS: u32 = SCM_H264
    | SCM_HEVC
    | SCM_HEVC_MAIN10
    | SCM_AV1_MAIN8
    | SCM_AV1_MAIN10
    | SCM_H264_HIGH8_444
    | SCM_HEVC_REXT8_444
    | SCM_HEVC_REXT10_444
    | SCM_AV1_HIGH8_444
    | SCM_AV1_HIGH10_444;

/// `state` while no app runs. Clients only look at the `_SERVER_BUSY` suffix, but some
/// third-party clients compare the whole string, so howl sends Sunshine's exact values. It must
/// never contain `MJOLNIR` (that marks NVIDIA software and triggers GFE workarounds).
pub const STATE_FREE: &str = "SUNSHINE_SERVER_FREE";
/// `state` while an app runs (see [`STATE_FREE`]).
pub const STATE_BUSY: &str = "SUNSHINE_SERVER_BUSY";

fn bool_text(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

/// Reads a `0`/`1` flag; other integers count as "true" when non-zero, like the C clients.
fn parse_flag(text: &str) -> Option<bool> {
    text.trim().parse::<i64>().ok().map(|v| v != 0)
}

fn require_flag(doc: &XmlDoc, name: &'static str) -> Result<bool, NvHttpError> {
    parse_flag(doc.require(name)?).ok_or(NvHttpError::BadElement { element: name })
}

/// One `SupportedDisplayMode/DisplayMode` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplayMode {
    pub width: u32,
    pub height: u32,
    pub refresh_rate: u32,
}

/// The `/serverinfo` reply (reference part 1, section 3.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Display name in the clients (empty shows as "UNKNOWN").
    pub hostname: String,
    /// Normally [`APP_VERSION`]; selects the whole protocol variant in the client.
    pub app_version: String,
    /// Normally [`GFE_VERSION`].
    pub gfe_version: String,
    /// Stable host identity (clients de-duplicate hosts by it).
    pub unique_id: String,
    /// `HttpsPort`.
    pub https_port: u16,
    /// `ExternalPort` (Sunshine extension): the HTTP port for WAN use.
    pub external_port: Option<u16>,
    /// `ExternalIP`, if known.
    pub external_ip: Option<String>,
    /// `LocalIP`: must be IPv4 (send `127.0.0.1` when the request came over IPv6).
    pub local_ip: String,
    /// `mac`; `00:00:00:00:00:00` means "unknown" (send that over plain HTTP).
    pub mac: String,
    /// `MaxLumaPixelsHEVC`; 0 makes qt drop every HEVC format.
    pub max_luma_pixels_hevc: u64,
    /// `ServerCodecModeSupport` bitmask (`SCM_*`); must not be 0.
    pub codec_mode_support: u32,
    /// `PairStatus`: whether *this TLS client cert* is paired. Always false over HTTP.
    pub paired: bool,
    /// The running app's ID, 0 when idle. Encoded as both `currentgame` and `state`
    /// ([`STATE_BUSY`] iff non-zero), which keeps the two consistent by construction. When
    /// decoding, `currentgame` is only trusted if `state` ends in `_SERVER_BUSY`, like clients.
    pub current_game: i32,
    /// `SupportedDisplayMode` list; `None` omits the element (Sunshine does).
    pub display_modes: Option<Vec<DisplayMode>>,
}

impl ServerInfo {
    /// Encodes the reply document.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::ok();
        w.element("hostname", &self.hostname)
            .element("appversion", &self.app_version)
            .element("GfeVersion", &self.gfe_version)
            .element("uniqueid", &self.unique_id)
            .element_display("HttpsPort", self.https_port);
        if let Some(port) = self.external_port {
            w.element_display("ExternalPort", port);
        }
        if let Some(ip) = &self.external_ip {
            w.element("ExternalIP", ip);
        }
        w.element_display("MaxLumaPixelsHEVC", self.max_luma_pixels_hevc)
            .element("mac", &self.mac)
            .element("LocalIP", &self.local_ip)
            .element_display(
                "ServerCodecModeSupport",
                self.codec_mode_support & SCM_KNOWN_BITS,
            )
            .element("PairStatus", bool_text(self.paired))
            .element_display("currentgame", self.current_game)
            .element(
                "state",
                if self.current_game != 0 {
                    STATE_BUSY
                } else {
                    STATE_FREE
                },
            );
        if let Some(modes) = &self.display_modes {
            w.open("SupportedDisplayMode");
            for m in modes {
                w.open("DisplayMode")
                    .element_display("Width", m.width)
                    .element_display("Height", m.height)
                    .element_display("RefreshRate", m.refresh_rate)
                    .close();
            }
            w.close();
        }
        w.finish()
    }

    /// Decodes a reply. Requires what clients require (`appversion`, `uniqueid`,
    /// `ServerCodecModeSupport`, `PairStatus`, `currentgame`, `state`); other fields default.
    pub fn from_xml(doc: &XmlDoc) -> Result<Self, NvHttpError> {
        doc.ensure_ok()?;
        let busy = doc.require("state")?.ends_with("_SERVER_BUSY");
        let current_game: i32 = doc.require_parsed("currentgame")?;
        let display_modes = doc.root.child_text("SupportedDisplayMode").map(|_| {
            doc.root
                .children_named("SupportedDisplayMode")
                .flat_map(|list| list.children_named("DisplayMode"))
                .filter_map(|m| {
                    Some(DisplayMode {
                        width: m.child_text("Width")?.trim().parse().ok()?,
                        height: m.child_text("Height")?.trim().parse().ok()?,
                        refresh_rate: m.child_text("RefreshRate")?.trim().parse().ok()?,
                    })
                })
                .collect()
        });
        Ok(Self {
            hostname: doc.get("hostname").unwrap_or_default().to_owned(),
            app_version: doc.require("appversion")?.to_owned(),
            gfe_version: doc.get("GfeVersion").unwrap_or_default().to_owned(),
            unique_id: doc.require("uniqueid")?.to_owned(),
            https_port: doc.get_parsed("HttpsPort")?.unwrap_or(DEFAULT_HTTPS_PORT),
            external_port: doc.get_parsed("ExternalPort")?,
            external_ip: doc.get("ExternalIP").map(str::to_owned),
            local_ip: doc.get("LocalIP").unwrap_or_default().to_owned(),
            mac: doc.get("mac").unwrap_or_default().to_owned(),
            max_luma_pixels_hevc: doc.get_parsed("MaxLumaPixelsHEVC")?.unwrap_or(0),
            codec_mode_support: doc.require_parsed("ServerCodecModeSupport")?,
            paired: require_flag(doc, "PairStatus")?,
            current_game: if busy { current_game } else { 0 },
            display_modes,
        })
    }
}

/// One `/applist` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// `ID`: non-zero and stable across restarts (clients cache by it and compare it with
    /// `currentgame`). Zero is a caller bug; decoding rejects it.
    pub id: i32,
    /// `AppTitle`; may be empty but is always sent (qt rejects a missing title).
    pub title: String,
    /// `IsHdrSupported`.
    pub hdr_supported: bool,
}

/// The `/applist` reply (reference part 1, section 3.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppList {
    pub apps: Vec<App>,
}

impl AppList {
    /// Encodes the reply document (one `App` element per app, no whitespace in between).
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::ok();
        for app in &self.apps {
            debug_assert!(app.id != 0, "app IDs must be non-zero");
            w.open("App")
                .element("IsHdrSupported", bool_text(app.hdr_supported))
                .element("AppTitle", &app.title)
                .element_display("ID", app.id)
                .close();
        }
        w.finish()
    }

    /// Decodes a reply. Like qt, an `App` without a valid non-zero `ID` or without `AppTitle`
    /// fails the whole list.
    pub fn from_xml(doc: &XmlDoc) -> Result<Self, NvHttpError> {
        doc.ensure_ok()?;
        let apps = doc
            .root
            .children_named("App")
            .map(|app| {
                let id = app
                    .child_text("ID")
                    .ok_or(NvHttpError::MissingElement("ID"))?
                    .trim()
                    .parse::<i32>()
                    .ok()
                    .filter(|&id| id != 0)
                    .ok_or(NvHttpError::BadElement { element: "ID" })?;
                let title = app
                    .child_text("AppTitle")
                    .ok_or(NvHttpError::MissingElement("AppTitle"))?
                    .to_owned();
                let hdr_supported = app
                    .child_text("IsHdrSupported")
                    .and_then(parse_flag)
                    .unwrap_or(false);
                Ok(App {
                    id,
                    title,
                    hdr_supported,
                })
            })
            .collect::<Result<_, NvHttpError>>()?;
        Ok(Self { apps })
    }
}

/// The reply to every `/pair` step: `<paired>1|0</paired>` plus the step's payload.
///
/// Binary payloads are carried as upper-case hex (Sunshine's choice; clients accept either).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairResponse {
    /// `paired`: clients abort unless it is `1` after every step.
    pub paired: bool,
    /// Step 1: the server certificate **PEM text** (hex-encoded on the wire). Empty or missing
    /// tells the client "another pairing is in progress".
    pub plaincert: Option<Vec<u8>>,
    /// Step 2: `E_K(H1 ‖ SC)`, 48 bytes.
    pub challenge_response: Option<Vec<u8>>,
    /// Step 3: `SS ‖ SIGN(SS)`.
    pub pairing_secret: Option<Vec<u8>>,
}

impl PairResponse {
    /// `<paired>1</paired>` with no payload (step 4 success, step 5).
    pub fn paired() -> Self {
        Self {
            paired: true,
            ..Self::default()
        }
    }

    /// `<paired>0</paired>`: the step failed and the pairing session is over.
    pub fn failed() -> Self {
        Self::default()
    }

    /// Encodes the reply document with `status_code="200"`.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::ok();
        w.element("paired", bool_text(self.paired));
        for (name, value) in [
            ("plaincert", &self.plaincert),
            ("challengeresponse", &self.challenge_response),
            ("pairingsecret", &self.pairing_secret),
        ] {
            if let Some(bytes) = value {
                w.element(name, &hex::encode_upper(bytes));
            }
        }
        w.finish()
    }

    /// Decodes a reply; hex in either case.
    pub fn from_xml(doc: &XmlDoc) -> Result<Self, NvHttpError> {
        doc.ensure_ok()?;
        let hex_field = |name: &'static str| -> Result<Option<Vec<u8>>, NvHttpError> {
            doc.get(name)
                .map(|text| {
                    decode_hex(text.trim()).map_err(|_| NvHttpError::BadElement { element: name })
                })
                .transpose()
        };
        Ok(Self {
            paired: require_flag(doc, "paired")?,
            plaincert: hex_field("plaincert")?,
            challenge_response: hex_field("challengeresponse")?,
            pairing_secret: hex_field("pairingsecret")?,
        })
    }
}

fn session_reply(session_url: &str, flag: &'static str) -> String {
    let mut w = XmlWriter::ok();
    w.element("sessionUrl0", session_url).element(flag, "1");
    w.finish()
}

fn decode_session_reply(doc: &XmlDoc, flag: &'static str) -> Result<String, NvHttpError> {
    doc.ensure_ok()?;
    // android requires the flag element to exist and be non-zero; do the same.
    if !require_flag(doc, flag)? {
        return Err(NvHttpError::BadElement { element: flag });
    }
    Ok(doc.require("sessionUrl0")?.to_owned())
}

/// A successful `/launch` reply: `<sessionUrl0>...</sessionUrl0><gamesession>1</gamesession>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchResponse {
    /// `rtsp://host:port` or `rtspenc://host:port` (only if the request had `corever` ≥ 1).
    /// The host must be the address the HTTPS request arrived on (IPv6 in brackets).
    pub session_url: String,
}

impl LaunchResponse {
    /// Encodes the reply document.
    pub fn to_xml(&self) -> String {
        session_reply(&self.session_url, "gamesession")
    }

    /// Decodes a reply; requires `gamesession` ≠ 0.
    pub fn from_xml(doc: &XmlDoc) -> Result<Self, NvHttpError> {
        Ok(Self {
            session_url: decode_session_reply(doc, "gamesession")?,
        })
    }
}

/// A successful `/resume` reply: `<sessionUrl0>...</sessionUrl0><resume>1</resume>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeResponse {
    /// Same rules as [`LaunchResponse::session_url`].
    pub session_url: String,
}

impl ResumeResponse {
    /// Encodes the reply document.
    pub fn to_xml(&self) -> String {
        session_reply(&self.session_url, "resume")
    }

    /// Decodes a reply; requires `resume` ≠ 0.
    pub fn from_xml(doc: &XmlDoc) -> Result<Self, NvHttpError> {
        Ok(Self {
            session_url: decode_session_reply(doc, "resume")?,
        })
    }
}

/// The successful `/cancel` reply: `<cancel>1</cancel>` (android requires the element).
/// Send it only after the app and its sessions are gone: clients re-read `/serverinfo` at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CancelResponse;

impl CancelResponse {
    /// Encodes the reply document.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::ok();
        w.element("cancel", "1");
        w.finish()
    }

    /// Decodes a reply; requires `cancel` ≠ 0.
    pub fn from_xml(doc: &XmlDoc) -> Result<Self, NvHttpError> {
        doc.ensure_ok()?;
        if require_flag(doc, "cancel")? {
            Ok(Self)
        } else {
            Err(NvHttpError::BadElement { element: "cancel" })
        }
    }
}

/// A bare `<root status_code="200"/>`, e.g. for `/unpair`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OkResponse;

impl OkResponse {
    /// Encodes the reply document.
    pub fn to_xml(&self) -> String {
        XmlWriter::ok().finish()
    }
}

/// Which "this failed" child an [`ErrorResponse`] carries next to its status, because some
/// clients look for it rather than at `status_code` (reference part 1, sections 3.6 and 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureElement {
    /// Nothing but the status attributes.
    None,
    /// `<gamesession>0</gamesession>` for `/launch`.
    GameSession,
    /// `<resume>0</resume>` for `/resume`.
    Resume,
    /// `<paired>0</paired>` for `/pair`.
    Paired,
    /// `<cancel>0</cancel>` for `/cancel`.
    Cancel,
}

impl FailureElement {
    fn name(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::GameSession => Some("gamesession"),
            Self::Resume => Some("resume"),
            Self::Paired => Some("paired"),
            Self::Cancel => Some("cancel"),
        }
    }
}

/// An error reply: `<root status_code="4xx" status_message="..."/>`, sent with **HTTP 200**
/// (see the [module docs](super)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// XML `status_code`; clients show it. Known special values: 401 (not paired, makes qt
    /// fall back to HTTP), 470 and 525 on `/resume`, -1 with "Invalid" (= "no audio device").
    pub status_code: i64,
    /// Human-readable `status_message`, shown to the user by qt and embedded.
    pub message: String,
    /// Endpoint-specific failure child.
    pub failure: FailureElement,
}

impl ErrorResponse {
    /// An error with no failure child.
    pub fn new(status_code: i64, message: impl Into<String>) -> Self {
        Self {
            status_code,
            message: message.into(),
            failure: FailureElement::None,
        }
    }

    /// The reply for a TLS client certificate that is not paired (XML 401, HTTP 200).
    pub fn not_paired() -> Self {
        Self::new(401, "client certificate is not paired")
    }

    /// The reply for an unknown path.
    pub fn not_found() -> Self {
        Self::new(404, "not found")
    }

    /// A `/launch` failure (adds `<gamesession>0</gamesession>`).
    pub fn launch_failed(status_code: i64, message: impl Into<String>) -> Self {
        Self::new(status_code, message).with_failure(FailureElement::GameSession)
    }

    /// A `/resume` failure (adds `<resume>0</resume>`).
    pub fn resume_failed(status_code: i64, message: impl Into<String>) -> Self {
        Self::new(status_code, message).with_failure(FailureElement::Resume)
    }

    /// A `/pair` protocol failure such as a step out of order (adds `<paired>0</paired>`;
    /// Sunshine uses status 400 for these).
    pub fn pair_failed(status_code: i64, message: impl Into<String>) -> Self {
        Self::new(status_code, message).with_failure(FailureElement::Paired)
    }

    /// Sets the failure child.
    pub fn with_failure(mut self, failure: FailureElement) -> Self {
        self.failure = failure;
        self
    }

    /// Encodes the reply document.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::with_status(self.status_code, Some(&self.message));
        if let Some(name) = self.failure.name() {
            w.element(name, "0");
        }
        w.finish()
    }

    /// Reads the error out of a reply; `None` if the reply has status 200.
    pub fn from_xml(doc: &XmlDoc) -> Option<Self> {
        if doc.status_code == 200 {
            return None;
        }
        let failure = [
            FailureElement::GameSession,
            FailureElement::Resume,
            FailureElement::Paired,
            FailureElement::Cancel,
        ]
        .into_iter()
        .find(|f| f.name().is_some_and(|n| doc.get(n).is_some()))
        .unwrap_or(FailureElement::None);
        Some(Self {
            status_code: doc.status_code,
            message: doc.status_message.clone().unwrap_or_default(),
            failure,
        })
    }
}

/// Step 1 of pairing: `phrase=getservercert&salt=<hex 16>&clientcert=<hex PEM>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetServerCert {
    /// 16 random bytes, mixed with the PIN into the AES key.
    pub salt: [u8; 16],
    /// The client certificate's **PEM text** (hex-decoded; not yet validated).
    pub client_cert_pem: Vec<u8>,
}

/// One `/pair` request, decoded from its query string (reference part 1, section 4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairRequest {
    /// Step 1.
    GetServerCert(GetServerCert),
    /// Step 2: `clientchallenge` = `E_K(CC)`.
    ClientChallenge([u8; 16]),
    /// Step 3: `serverchallengeresp` = `E_K(HASH(SC ‖ SIG(client cert) ‖ CS))`.
    ServerChallengeResp([u8; 32]),
    /// Step 4: `clientpairingsecret` = `CS ‖ SIGN_client(CS)`, split here.
    ClientPairingSecret {
        secret: [u8; 16],
        signature: Vec<u8>,
    },
    /// Step 5 (over HTTPS): `phrase=pairchallenge`.
    PairChallenge,
}

impl PairRequest {
    /// Short name of the step, for logs and [`crate::pairing::PairingError::OutOfOrder`].
    pub fn step_name(&self) -> &'static str {
        match self {
            Self::GetServerCert(_) => "getservercert",
            Self::ClientChallenge(_) => "clientchallenge",
            Self::ServerChallengeResp(_) => "serverchallengeresp",
            Self::ClientPairingSecret { .. } => "clientpairingsecret",
            Self::PairChallenge => "pairchallenge",
        }
    }

    /// Decodes a `/pair` query. `phrase` wins over the step parameters (as in Sunshine);
    /// hex is accepted in either case. `uniqueid`, `uuid`, `devicename` and `updateState` are
    /// ignored here.
    pub fn from_query(query: &Query) -> Result<Self, NvHttpError> {
        if let Some(phrase) = query.get("phrase") {
            return match phrase {
                "getservercert" => {
                    let salt = query.require_hex_array::<16>("salt")?;
                    let client_cert_pem = query.require_hex("clientcert")?;
                    if client_cert_pem.is_empty() {
                        return Err(NvHttpError::BadParam {
                            param: "clientcert",
                            reason: ParamProblem::TooShort,
                        });
                    }
                    Ok(Self::GetServerCert(GetServerCert {
                        salt,
                        client_cert_pem,
                    }))
                }
                "pairchallenge" => Ok(Self::PairChallenge),
                other => Err(NvHttpError::UnknownPhrase(other.chars().take(64).collect())),
            };
        }
        if query.contains("clientchallenge") {
            return Ok(Self::ClientChallenge(
                query.require_hex_array("clientchallenge")?,
            ));
        }
        if query.contains("serverchallengeresp") {
            return Ok(Self::ServerChallengeResp(
                query.require_hex_array("serverchallengeresp")?,
            ));
        }
        if query.contains("clientpairingsecret") {
            let bytes = query.require_hex("clientpairingsecret")?;
            return match (bytes.get(..16), bytes.get(16..)) {
                (Some(secret), Some(signature)) if !signature.is_empty() => {
                    let mut s = [0u8; 16];
                    s.copy_from_slice(secret);
                    Ok(Self::ClientPairingSecret {
                        secret: s,
                        signature: signature.to_vec(),
                    })
                }
                _ => Err(NvHttpError::BadParam {
                    param: "clientpairingsecret",
                    reason: ParamProblem::TooShort,
                }),
            };
        }
        Err(NvHttpError::NoPairStep)
    }

    /// Appends this step's parameters (client side). The caller adds `uniqueid`, `uuid`,
    /// `devicename=roth` and `updateState=1` like real clients do.
    pub fn append_to(&self, query: &mut Query) {
        match self {
            Self::GetServerCert(step) => {
                query
                    .push("phrase", "getservercert")
                    .push("salt", hex::encode(step.salt))
                    .push("clientcert", hex::encode(&step.client_cert_pem));
            }
            Self::ClientChallenge(v) => {
                query.push("clientchallenge", hex::encode(v));
            }
            Self::ServerChallengeResp(v) => {
                query.push("serverchallengeresp", hex::encode(v));
            }
            Self::ClientPairingSecret { secret, signature } => {
                let mut bytes = secret.to_vec();
                bytes.extend_from_slice(signature);
                query.push("clientpairingsecret", hex::encode(bytes));
            }
            Self::PairChallenge => {
                query.push("phrase", "pairchallenge");
            }
        }
    }

    /// This step's parameters as a fresh [`Query`].
    pub fn to_query(&self) -> Query {
        let mut q = Query::new();
        self.append_to(&mut q);
        q
    }
}

/// `mode=WxHxFPS` of a launch request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchMode {
    pub width: u32,
    pub height: u32,
    /// Clients send 0 here only for NVIDIA hosts; howl always gets the real value.
    pub fps: u32,
}

impl LaunchMode {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('x');
        let width = parts.next()?.trim().parse().ok()?;
        let height = parts.next()?.trim().parse().ok()?;
        let fps = parts.next()?.trim().parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self { width, height, fps })
    }
}

/// The `/launch` and `/resume` parameters (reference part 1, section 5.1).
///
/// Deliberately tolerant: only `appid`, `rikey` and `rikeyid` are required; everything else is
/// optional so that the server decides what it insists on (Sunshine also requires
/// `localAudioPlayMode` on `/launch`). Unknown parameters are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    /// `appid`.
    pub app_id: i32,
    /// `mode`, `None` if absent or not `WxHxFPS`.
    pub mode: Option<LaunchMode>,
    /// `rikey`: the AES-128 session key.
    pub rikey: [u8; 16],
    /// `rikeyid`: **signed** decimal; values up to `u32::MAX` are accepted and wrapped, since
    /// only the 32 bits matter (they become the IV, see [`rikey_iv`]).
    pub rikeyid: i32,
    /// `localAudioPlayMode`: keep playing audio on the host.
    pub local_audio_play_mode: Option<bool>,
    /// `surroundAudioInfo` = `(channelMask << 16) | channelCount`.
    pub surround_audio_info: Option<u32>,
    /// `sops`.
    pub sops: Option<bool>,
    /// `hdrMode`: "HDR may be requested" (RTSP decides).
    pub hdr_mode: Option<bool>,
    /// `remoteControllersBitmap`.
    pub remote_controllers_bitmap: Option<u32>,
    /// `gcmap`.
    pub gcmap: Option<u32>,
    /// `gcpersist`.
    pub gcpersist: Option<bool>,
    /// `corever`: ≥ 1 allows answering `rtspenc://`. `None` counts as 0.
    pub corever: Option<i32>,
}

/// The 16-byte IV clients derive from `rikeyid`: `BE32(rikeyid) ‖ 00×12`.
pub fn rikey_iv(rikeyid: i32) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&rikeyid.to_be_bytes());
    iv
}

fn parse_opt<T: std::str::FromStr>(
    query: &Query,
    name: &'static str,
) -> Result<Option<T>, NvHttpError> {
    query
        .get(name)
        .map(|v| {
            v.trim().parse().map_err(|_| NvHttpError::BadParam {
                param: name,
                reason: ParamProblem::NotANumber,
            })
        })
        .transpose()
}

fn parse_opt_flag(query: &Query, name: &'static str) -> Result<Option<bool>, NvHttpError> {
    Ok(parse_opt::<i64>(query, name)?.map(|v| v != 0))
}

impl LaunchRequest {
    /// Decodes `/launch` or `/resume` parameters.
    pub fn from_query(query: &Query) -> Result<Self, NvHttpError> {
        let app_id = query
            .require("appid")?
            .trim()
            .parse()
            .map_err(|_| NvHttpError::BadParam {
                param: "appid",
                reason: ParamProblem::NotANumber,
            })?;
        let rikeyid_text = query.require("rikeyid")?.trim();
        let rikeyid = rikeyid_text
            .parse::<i32>()
            .ok()
            // Two's complement reinterpretation is the documented intent here.
            .or_else(|| rikeyid_text.parse::<u32>().ok().map(|v| v as i32))
            .ok_or(NvHttpError::BadParam {
                param: "rikeyid",
                reason: ParamProblem::NotANumber,
            })?;
        Ok(Self {
            app_id,
            mode: query.get("mode").and_then(LaunchMode::parse),
            rikey: query.require_hex_array("rikey")?,
            rikeyid,
            local_audio_play_mode: parse_opt_flag(query, "localAudioPlayMode")?,
            surround_audio_info: parse_opt(query, "surroundAudioInfo")?,
            sops: parse_opt_flag(query, "sops")?,
            hdr_mode: parse_opt_flag(query, "hdrMode")?,
            remote_controllers_bitmap: parse_opt(query, "remoteControllersBitmap")?,
            gcmap: parse_opt(query, "gcmap")?,
            gcpersist: parse_opt_flag(query, "gcpersist")?,
            corever: parse_opt(query, "corever")?,
        })
    }

    /// Appends the parameters in qt's order (client side; the caller adds `uniqueid`/`uuid`).
    pub fn append_to(&self, q: &mut Query) {
        q.push("appid", self.app_id.to_string());
        if let Some(m) = self.mode {
            q.push("mode", format!("{}x{}x{}", m.width, m.height, m.fps));
        }
        q.push("additionalStates", "1");
        if let Some(v) = self.sops {
            q.push("sops", bool_text(v));
        }
        q.push("rikey", hex::encode(self.rikey))
            .push("rikeyid", self.rikeyid.to_string());
        if let Some(v) = self.hdr_mode {
            q.push("hdrMode", bool_text(v));
        }
        if let Some(v) = self.local_audio_play_mode {
            q.push("localAudioPlayMode", bool_text(v));
        }
        let numbers = [
            ("surroundAudioInfo", self.surround_audio_info),
            ("remoteControllersBitmap", self.remote_controllers_bitmap),
            ("gcmap", self.gcmap),
        ];
        for (name, value) in numbers {
            if let Some(v) = value {
                q.push(name, v.to_string());
            }
        }
        if let Some(v) = self.gcpersist {
            q.push("gcpersist", bool_text(v));
        }
        if let Some(v) = self.corever {
            q.push("corever", v.to_string());
        }
    }

    /// The parameters as a fresh [`Query`].
    pub fn to_query(&self) -> Query {
        let mut q = Query::new();
        self.append_to(&mut q);
        q
    }

    /// The input/audio IV derived from `rikeyid` (see [`rikey_iv`]).
    pub fn rikey_iv(&self) -> [u8; 16] {
        rikey_iv(self.rikeyid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_info() -> ServerInfo {
        ServerInfo {
            hostname: "den-pc".into(),
            app_version: APP_VERSION.into(),
            gfe_version: GFE_VERSION.into(),
            unique_id: "5C3D8E36-4B0E-4C43-9E7F-3A1B2C4D5E6F".into(),
            https_port: 47984,
            external_port: Some(47989),
            external_ip: None,
            local_ip: "192.168.1.20".into(),
            mac: "00:00:00:00:00:00".into(),
            max_luma_pixels_hevc: 1_869_449_984,
            codec_mode_support: SCM_H264
                | SCM_HEVC
                | SCM_HEVC_MAIN10
                | SCM_AV1_MAIN8
                | SCM_AV1_MAIN10,
            paired: false,
            current_game: 0,
            display_modes: None,
        }
    }

    #[test]
    fn serverinfo_matches_reference_example() {
        let info = sample_info();
        assert_eq!(info.codec_mode_support, 197_377);
        let expected = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<root status_code=\"200\"><hostname>den-pc</hostname><appversion>7.1.431.-1</appversion><GfeVersion>3.23.0.74</GfeVersion><uniqueid>5C3D8E36-4B0E-4C43-9E7F-3A1B2C4D5E6F</uniqueid><HttpsPort>47984</HttpsPort><ExternalPort>47989</ExternalPort><MaxLumaPixelsHEVC>1869449984</MaxLumaPixelsHEVC><mac>00:00:00:00:00:00</mac><LocalIP>192.168.1.20</LocalIP><ServerCodecModeSupport>197377</ServerCodecModeSupport><PairStatus>0</PairStatus><currentgame>0</currentgame><state>SUNSHINE_SERVER_FREE</state></root>";
        assert_eq!(info.to_xml(), expected);
        let back = ServerInfo::from_xml(&XmlDoc::parse(expected.as_bytes()).unwrap()).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn serverinfo_busy_and_display_modes_round_trip() {
        let info = ServerInfo {
            paired: true,
            current_game: 881_448_767,
            external_ip: Some("203.0.113.5".into()),
            display_modes: Some(vec![DisplayMode {
                width: 1920,
                height: 1080,
                refresh_rate: 60,
            }]),
            ..sample_info()
        };
        let xml = info.to_xml();
        assert!(xml.contains("<state>SUNSHINE_SERVER_BUSY</state>"));
        assert!(xml.contains("<SupportedDisplayMode><DisplayMode><Width>1920</Width><Height>1080</Height><RefreshRate>60</RefreshRate></DisplayMode></SupportedDisplayMode>"));
        let back = ServerInfo::from_xml(&XmlDoc::parse(xml.as_bytes()).unwrap()).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn serverinfo_ignores_currentgame_when_free_and_masks_unknown_bits() {
        let xml = ServerInfo {
            codec_mode_support: SCM_H264 | 0x8000_0000,
            ..sample_info()
        }
        .to_xml();
        assert!(xml.contains("<ServerCodecModeSupport>1</ServerCodecModeSupport>"));
        let doc =
            XmlDoc::parse(xml.replace("<currentgame>0<", "<currentgame>7<").as_bytes()).unwrap();
        assert_eq!(ServerInfo::from_xml(&doc).unwrap().current_game, 0);
    }

    #[test]
    fn applist_matches_reference_example() {
        let list = AppList {
            apps: vec![
                App {
                    id: 881_448_767,
                    title: "Desktop".into(),
                    hdr_supported: true,
                },
                App {
                    id: 1_093_255_277,
                    title: "Steam Big Picture".into(),
                    hdr_supported: false,
                },
            ],
        };
        let expected = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<root status_code=\"200\"><App><IsHdrSupported>1</IsHdrSupported><AppTitle>Desktop</AppTitle><ID>881448767</ID></App><App><IsHdrSupported>0</IsHdrSupported><AppTitle>Steam Big Picture</AppTitle><ID>1093255277</ID></App></root>";
        assert_eq!(list.to_xml(), expected);
        assert_eq!(
            AppList::from_xml(&XmlDoc::parse(expected.as_bytes()).unwrap()).unwrap(),
            list
        );
        let zero = b"<root status_code=\"200\"><App><AppTitle>x</AppTitle><ID>0</ID></App></root>";
        assert!(AppList::from_xml(&XmlDoc::parse(zero).unwrap()).is_err());
        let no_title = b"<root status_code=\"200\"><App><ID>3</ID></App></root>";
        assert_eq!(
            AppList::from_xml(&XmlDoc::parse(no_title).unwrap()),
            Err(NvHttpError::MissingElement("AppTitle"))
        );
    }

    #[test]
    fn pair_response_round_trip() {
        let r = PairResponse {
            paired: true,
            plaincert: Some(b"-----BEGIN".to_vec()),
            challenge_response: None,
            pairing_secret: Some(vec![0xab, 0x01]),
        };
        let xml = r.to_xml();
        assert!(xml.ends_with("<root status_code=\"200\"><paired>1</paired><plaincert>2D2D2D2D2D424547494E</plaincert><pairingsecret>AB01</pairingsecret></root>"));
        assert_eq!(
            PairResponse::from_xml(&XmlDoc::parse(xml.as_bytes()).unwrap()).unwrap(),
            r
        );
        let failed = PairResponse::failed().to_xml();
        assert!(failed.ends_with("<paired>0</paired></root>"));
        assert!(
            !PairResponse::from_xml(&XmlDoc::parse(failed.as_bytes()).unwrap())
                .unwrap()
                .paired
        );
    }

    #[test]
    fn launch_resume_cancel_error_bodies() {
        let l = LaunchResponse {
            session_url: "rtsp://192.168.1.20:48010".into(),
        };
        assert!(l.to_xml().ends_with("<root status_code=\"200\"><sessionUrl0>rtsp://192.168.1.20:48010</sessionUrl0><gamesession>1</gamesession></root>"));
        assert_eq!(
            LaunchResponse::from_xml(&XmlDoc::parse(l.to_xml().as_bytes()).unwrap()).unwrap(),
            l
        );
        let r = ResumeResponse {
            session_url: "rtspenc://[fe80::1]:48010".into(),
        };
        assert!(r.to_xml().contains("<resume>1</resume>"));
        assert_eq!(
            ResumeResponse::from_xml(&XmlDoc::parse(r.to_xml().as_bytes()).unwrap()).unwrap(),
            r
        );
        let c = CancelResponse.to_xml();
        assert!(c.ends_with("<root status_code=\"200\"><cancel>1</cancel></root>"));
        assert!(CancelResponse::from_xml(&XmlDoc::parse(c.as_bytes()).unwrap()).is_ok());

        let e = ErrorResponse::launch_failed(400, "an app is already running");
        let xml = e.to_xml();
        assert!(xml.ends_with("<root status_code=\"400\" status_message=\"an app is already running\"><gamesession>0</gamesession></root>"));
        let doc = XmlDoc::parse(xml.as_bytes()).unwrap();
        assert_eq!(ErrorResponse::from_xml(&doc), Some(e));
        assert_eq!(
            LaunchResponse::from_xml(&doc),
            Err(NvHttpError::Status {
                code: 400,
                message: "an app is already running".into()
            })
        );
        assert!(ErrorResponse::not_paired().to_xml().ends_with(
            "<root status_code=\"401\" status_message=\"client certificate is not paired\"/>"
        ));
        assert!(OkResponse.to_xml().ends_with("<root status_code=\"200\"/>"));
        assert!(
            ErrorResponse::resume_failed(503, "no running app")
                .to_xml()
                .contains("<resume>0</resume>")
        );
    }

    #[test]
    fn pair_requests_decode_and_encode() {
        let q = Query::parse(
            "uniqueid=0123456789ABCDEF&uuid=x&devicename=roth&updateState=1&phrase=getservercert\
             &salt=000102030405060708090A0B0C0D0E0F&clientcert=2d2D",
        )
        .unwrap();
        let req = PairRequest::from_query(&q).unwrap();
        let expected = PairRequest::GetServerCert(GetServerCert {
            salt: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
            client_cert_pem: b"--".to_vec(),
        });
        assert_eq!(req, expected);
        assert_eq!(
            PairRequest::from_query(&expected.to_query()).unwrap(),
            expected
        );

        let steps = [
            PairRequest::ClientChallenge([7; 16]),
            PairRequest::ServerChallengeResp([9; 32]),
            PairRequest::ClientPairingSecret {
                secret: [1; 16],
                signature: vec![2; 256],
            },
            PairRequest::PairChallenge,
        ];
        for step in steps {
            let s = step.to_query().to_query_string();
            assert_eq!(
                PairRequest::from_query(&Query::parse(&s).unwrap()).unwrap(),
                step
            );
        }
    }

    #[test]
    fn pair_request_errors() {
        let err = |s: &str| PairRequest::from_query(&Query::parse(s).unwrap()).unwrap_err();
        assert_eq!(
            err("phrase=getservercert&clientcert=00"),
            NvHttpError::MissingParam("salt")
        );
        assert_eq!(
            err("phrase=getservercert&salt=0001&clientcert=00"),
            NvHttpError::BadParam {
                param: "salt",
                reason: ParamProblem::WrongLength {
                    expected: 16,
                    got: 2
                }
            }
        );
        assert_eq!(
            err("phrase=getservercert&salt=000102030405060708090a0b0c0d0e0f"),
            NvHttpError::MissingParam("clientcert")
        );
        assert_eq!(
            err("clientchallenge=abc"),
            NvHttpError::BadParam {
                param: "clientchallenge",
                reason: ParamProblem::OddHex
            }
        );
        assert_eq!(
            err("serverchallengeresp=zz"),
            NvHttpError::BadParam {
                param: "serverchallengeresp",
                reason: ParamProblem::NotHex
            }
        );
        assert_eq!(
            err(&format!("clientpairingsecret={}", "00".repeat(16))),
            NvHttpError::BadParam {
                param: "clientpairingsecret",
                reason: ParamProblem::TooShort
            }
        );
        assert_eq!(err("uniqueid=1"), NvHttpError::NoPairStep);
        assert!(matches!(err("phrase=bogus"), NvHttpError::UnknownPhrase(_)));
        assert_eq!(
            err("phrase=bogus").fault(),
            super::super::Fault::Unsupported
        );
    }

    #[test]
    fn launch_request_round_trip_and_rikeyid() {
        let q = Query::parse(
            "uniqueid=0123456789ABCDEF&uuid=u&appid=881448767&mode=1920x1080x60&additionalStates=1\
             &sops=0&rikey=000102030405060708090A0B0C0D0E0F&rikeyid=-559038737&localAudioPlayMode=0\
             &surroundAudioInfo=196610&remoteControllersBitmap=1&gcmap=1&gcpersist=0&corever=1",
        )
        .unwrap();
        let r = LaunchRequest::from_query(&q).unwrap();
        assert_eq!(r.app_id, 881_448_767);
        assert_eq!(
            r.mode,
            Some(LaunchMode {
                width: 1920,
                height: 1080,
                fps: 60
            })
        );
        assert_eq!(r.rikeyid, -559_038_737);
        assert_eq!(r.rikey_iv()[..4], [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(rikey_iv(305_419_896)[..4], [0x12, 0x34, 0x56, 0x78]);
        assert_eq!(r.surround_audio_info, Some(196_610));
        assert_eq!(r.corever, Some(1));
        assert_eq!(r.local_audio_play_mode, Some(false));
        assert_eq!(LaunchRequest::from_query(&r.to_query()).unwrap(), r);

        let unsigned =
            Query::parse("appid=1&rikey=000102030405060708090a0b0c0d0e0f&rikeyid=3735928559")
                .unwrap();
        let r = LaunchRequest::from_query(&unsigned).unwrap();
        assert_eq!(r.rikeyid, -559_038_737);
        assert_eq!(r.mode, None);
        assert_eq!(r.corever, None);
        assert_eq!(
            LaunchRequest::from_query(&Query::parse("appid=1&rikeyid=1").unwrap()),
            Err(NvHttpError::MissingParam("rikey"))
        );
    }
}
