//! RTSP authentication for standard players: HTTP Basic (RFC 7617) and Digest with MD5
//! (RFC 2617), which is what VLC, ffmpeg and GStreamer send for `rtsp://user:secret@host/…`.
//!
//! The password is an API token. Digest never sends the password, so the server cannot hand
//! us "the password the client typed": instead it hands [`authorize`] the candidate secrets
//! for the user name the client gave (for a token store keyed by token, every token the user
//! may use), each tagged with what it unlocks, and gets back the tag of the one that matches.
//! Digest therefore needs the secrets in plaintext; a store that keeps only token hashes can
//! serve Basic alone, by hashing [`Credentials::basic_password`] itself.

use std::fmt;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest;
use md5::{Digest, Md5};

use crate::base64;

/// Realm announced in challenges: players show it in their password prompts.
pub const DEFAULT_REALM: &str = "howl";
/// Longest `Authorization` value accepted; real ones are under 400 bytes.
pub const MAX_AUTHORIZATION_LEN: usize = 4096;

/// Credentials a player sent in `Authorization`.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { username: String, password: String },
    Digest(DigestCredentials),
}

/// The fields of a Digest `Authorization` header (names lower-cased on parse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestCredentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// The URI the client hashed (it need not equal the Request-URI byte for byte: live555
    /// and ffmpeg disagree on absolute versus relative forms).
    pub uri: String,
    /// 32 lower-case hex digits.
    pub response: String,
    /// `MD5` (or absent, which means MD5).
    pub algorithm: Option<String>,
    /// `auth` when the client used RFC 2617 quality of protection.
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
}

impl fmt::Debug for Credentials {
    /// Never prints a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            Self::Digest(d) => f.debug_tuple("Digest").field(d).finish(),
        }
    }
}

/// Why an `Authorization` value was not usable. Every one is answered 401 with fresh
/// challenges; the variants are for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthParseError {
    #[error("Authorization value longer than {MAX_AUTHORIZATION_LEN} bytes")]
    TooLong,
    #[error("authentication scheme is neither Basic nor Digest")]
    UnknownScheme,
    #[error("Basic credentials are not valid base64")]
    BadBase64,
    #[error("Basic credentials are not UTF-8")]
    NotUtf8,
    #[error("Basic credentials lack the ':' between user and password")]
    MissingColon,
    #[error("malformed Digest parameter list")]
    BadDigestSyntax,
    #[error("Digest parameter {0} given twice")]
    DuplicateParam(String),
    #[error("Digest parameter {0} missing")]
    MissingParam(&'static str),
    #[error("Digest algorithm {0:?} is not MD5")]
    UnsupportedAlgorithm(String),
    #[error("Digest qop {0:?} is not auth")]
    UnsupportedQop(String),
    #[error("Digest qop=auth without nc and cnonce")]
    IncompleteQop,
}

impl Credentials {
    /// The user name the client gave.
    pub fn username(&self) -> &str {
        match self {
            Self::Basic { username, .. } => username,
            Self::Digest(d) => &d.username,
        }
    }

    /// The cleartext password, for Basic only.
    pub fn basic_password(&self) -> Option<&str> {
        match self {
            Self::Basic { password, .. } => Some(password),
            Self::Digest(_) => None,
        }
    }

    /// Whether these credentials prove knowledge of `secret` for a request with `method`,
    /// given the `realm` and `nonce` this connection challenged with (Digest answers to any
    /// other realm or nonce are refused, so a response captured elsewhere cannot be
    /// replayed here).
    pub fn verify(&self, method: &str, realm: &str, nonce: &str, secret: &str) -> bool {
        match self {
            Self::Basic { password, .. } => ct_eq(password.as_bytes(), secret.as_bytes()),
            Self::Digest(d) => {
                if d.realm != realm || d.nonce != nonce {
                    return false;
                }
                let expected = digest_response(d, method, secret);
                ct_eq(expected.as_bytes(), d.response.as_bytes())
            }
        }
    }
}

/// The tag of the first candidate secret that `credentials` prove (see the module docs).
pub fn authorize<T, S: AsRef<str>>(
    credentials: &Credentials,
    method: &str,
    realm: &str,
    nonce: &str,
    candidates: impl IntoIterator<Item = (T, S)>,
) -> Option<T> {
    candidates
        .into_iter()
        .find(|(_, secret)| credentials.verify(method, realm, nonce, secret.as_ref()))
        .map(|(tag, _)| tag)
}

/// The `WWW-Authenticate` values of a 401: Digest first (ffmpeg and live555 take the first
/// scheme they support, and Digest keeps the token off the wire), then Basic for GStreamer
/// and scripts. `nonce` comes from the caller's RNG; it must be a header-safe token.
pub fn challenges(realm: &str, nonce: &str) -> [String; 2] {
    let realm = quote(realm);
    [
        format!(
            "Digest realm={realm}, nonce={}, algorithm=MD5",
            quote(nonce)
        ),
        format!("Basic realm={realm}"),
    ]
}

/// A quoted-string with `"` and `\` escaped and control characters dropped.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Parses an `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Credentials, AuthParseError> {
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(AuthParseError::TooLong);
    }
    let value = value.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    let rest = rest.trim_matches([' ', '\t']);
    if scheme.eq_ignore_ascii_case("Basic") {
        parse_basic(rest)
    } else if scheme.eq_ignore_ascii_case("Digest") {
        parse_digest(rest).map(Credentials::Digest)
    } else {
        Err(AuthParseError::UnknownScheme)
    }
}

fn parse_basic(token: &str) -> Result<Credentials, AuthParseError> {
    let raw = base64::decode(token).ok_or(AuthParseError::BadBase64)?;
    let text = String::from_utf8(raw).map_err(|_| AuthParseError::NotUtf8)?;
    let (username, password) = text.split_once(':').ok_or(AuthParseError::MissingColon)?;
    Ok(Credentials::Basic {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// Splits `k=v, k="quoted \" v", …` (RFC 7235 auth-param list) into lower-cased names and
/// unescaped values.
fn parse_params(mut s: &str) -> Result<Vec<(String, String)>, AuthParseError> {
    let is_ws = |c: char| c == ' ' || c == '\t';
    let mut out: Vec<(String, String)> = Vec::new();
    loop {
        s = s.trim_start_matches(|c: char| is_ws(c) || c == ',');
        if s.is_empty() {
            return Ok(out);
        }
        let name_end = s
            .find(|c: char| c == '=' || is_ws(c) || c == ',')
            .unwrap_or(s.len());
        let name = s[..name_end].to_ascii_lowercase();
        s = s[name_end..].trim_start_matches(is_ws);
        s = s
            .strip_prefix('=')
            .ok_or(AuthParseError::BadDigestSyntax)?
            .trim_start_matches(is_ws);
        if name.is_empty() {
            return Err(AuthParseError::BadDigestSyntax);
        }
        let value;
        if let Some(quoted) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, e)) => v.push(e),
                        None => return Err(AuthParseError::BadDigestSyntax),
                    },
                    c => v.push(c),
                }
            }
            let end = end.ok_or(AuthParseError::BadDigestSyntax)?;
            s = &quoted[end..];
            // After a quoted value only whitespace and then a comma or the end may follow.
            let after = s.trim_start_matches(is_ws);
            if !(after.is_empty() || after.starts_with(',')) {
                return Err(AuthParseError::BadDigestSyntax);
            }
            value = v;
        } else {
            let end = s.find(|c: char| c == ',' || is_ws(c)).unwrap_or(s.len());
            value = s[..end].to_owned();
            s = &s[end..];
            let after = s.trim_start_matches(is_ws);
            if !(after.is_empty() || after.starts_with(',')) {
                return Err(AuthParseError::BadDigestSyntax);
            }
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(AuthParseError::DuplicateParam(name));
        }
        out.push((name, value));
    }
}

fn parse_digest(rest: &str) -> Result<DigestCredentials, AuthParseError> {
    let mut params = parse_params(rest)?;
    let mut take = |name: &str| {
        params
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| params.swap_remove(i).1)
    };
    let mut required = |name: &'static str| take(name).ok_or(AuthParseError::MissingParam(name));
    let username = required("username")?;
    let realm = required("realm")?;
    let nonce = required("nonce")?;
    let uri = required("uri")?;
    let response = required("response")?.to_ascii_lowercase();
    let algorithm = take("algorithm");
    let qop = take("qop");
    let nc = take("nc");
    let cnonce = take("cnonce");
    let opaque = take("opaque");
    if let Some(a) = &algorithm
        && !a.eq_ignore_ascii_case("MD5")
    {
        return Err(AuthParseError::UnsupportedAlgorithm(
            a.chars().take(32).collect(),
        ));
    }
    if let Some(q) = &qop {
        if !q.eq_ignore_ascii_case("auth") {
            return Err(AuthParseError::UnsupportedQop(q.chars().take(32).collect()));
        }
        if nc.is_none() || cnonce.is_none() {
            return Err(AuthParseError::IncompleteQop);
        }
    }
    Ok(DigestCredentials {
        username,
        realm,
        nonce,
        uri,
        response,
        algorithm,
        qop,
        nc,
        cnonce,
        opaque,
    })
}

fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The `response` value a client knowing `secret` computes (RFC 2617 §3.2.2.1).
fn digest_response(d: &DigestCredentials, method: &str, secret: &str) -> String {
    let ha1 = md5_hex(&[&d.username, &d.realm, secret]);
    let ha2 = md5_hex(&[method, &d.uri]);
    match (&d.qop, &d.nc, &d.cnonce) {
        (Some(qop), Some(nc), Some(cnonce)) => {
            md5_hex(&[&ha1, &d.nonce, nc, cnonce, &qop.to_ascii_lowercase(), &ha2])
        }
        // RFC 2069 compatibility: what live555 (VLC) sends when the challenge has no qop.
        _ => md5_hex(&[&ha1, &d.nonce, &ha2]),
    }
}

/// Constant-time equality that also hides the lengths: both sides are hashed to a fixed size
/// first, so neither a wrong prefix nor a wrong length shows in the timing.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let ha = digest::digest(&digest::SHA256, a);
    let hb = digest::digest(&digest::SHA256, b);
    verify_slices_are_equal(ha.as_ref(), hb.as_ref()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5.
    const RFC2617: &str = r#"Digest username="Mufasa",
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        uri="/dir/index.html",
        qop=auth,
        nc=00000001,
        cnonce="0a4f113b",
        response="6629fae49393a05397450978507c4ef1",
        opaque="5ccc069c403ebaf9f0171e9517f40e41""#;

    #[test]
    fn rfc2617_digest_vector() {
        let value = RFC2617.replace('\n', "");
        let creds = parse_authorization(&value).unwrap();
        let Credentials::Digest(d) = &creds else {
            panic!("not digest")
        };
        assert_eq!(d.username, "Mufasa");
        assert_eq!(d.uri, "/dir/index.html");
        assert_eq!(d.qop.as_deref(), Some("auth"));
        assert_eq!(
            d.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        let realm = "testrealm@host.com";
        let nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093";
        assert!(creds.verify("GET", realm, nonce, "Circle Of Life"));
        assert!(!creds.verify("GET", realm, nonce, "Circle of Life"));
        assert!(!creds.verify("POST", realm, nonce, "Circle Of Life"));
        assert!(!creds.verify("GET", realm, "othernonce", "Circle Of Life"));
        assert!(!creds.verify("GET", "howl", nonce, "Circle Of Life"));
        assert_eq!(
            authorize(
                &creds,
                "GET",
                realm,
                nonce,
                [(1, "a"), (2, "Circle Of Life"), (3, "b")]
            ),
            Some(2)
        );
        assert_eq!(
            authorize(&creds, "GET", realm, nonce, [(1, "x")]),
            None::<i32>
        );
    }

    #[test]
    fn rfc2069_digest_as_live555_sends_it() {
        // HA1 = MD5("Mufasa:testrealm@host.com:Circle Of Life") (RFC 2617's published value);
        // response = MD5(HA1:nonce:HA2) computed independently with md5sum.
        assert_eq!(
            md5_hex(&["Mufasa", "testrealm@host.com", "Circle Of Life"]),
            "939e7578ed9e3c518a452acee763bce9"
        );
        let ha2 = md5_hex(&["DESCRIBE", "rtsp://h/app/x"]);
        let response = md5_hex(&["939e7578ed9e3c518a452acee763bce9", "n0nce", &ha2]);
        let value = format!(
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"n0nce\", uri=\"rtsp://h/app/x\", response=\"{}\"",
            response.to_uppercase()
        );
        let creds = parse_authorization(&value).unwrap();
        assert!(creds.verify("DESCRIBE", "testrealm@host.com", "n0nce", "Circle Of Life"));
        assert!(!creds.verify("SETUP", "testrealm@host.com", "n0nce", "Circle Of Life"));
    }

    #[test]
    fn basic() {
        let creds = parse_authorization("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap();
        assert_eq!(creds.username(), "Aladdin");
        assert_eq!(creds.basic_password(), Some("open sesame"));
        assert!(creds.verify("DESCRIBE", "howl", "n", "open sesame"));
        assert!(!creds.verify("DESCRIBE", "howl", "n", "open sesam"));
        assert!(!format!("{creds:?}").contains("sesame"), "Debug leaks");
        // Password with colons, scheme in any case, empty user.
        let c = parse_authorization(&format!("bAsIc   {}", base64::encode(b":a:b"))).unwrap();
        assert_eq!(c.username(), "");
        assert_eq!(c.basic_password(), Some("a:b"));
        assert_eq!(
            parse_authorization("Basic !!!!"),
            Err(AuthParseError::BadBase64)
        );
        assert_eq!(
            parse_authorization(&format!("Basic {}", base64::encode(b"nocolon"))),
            Err(AuthParseError::MissingColon)
        );
        assert_eq!(
            parse_authorization(&format!("Basic {}", base64::encode(&[0xff, b':']))),
            Err(AuthParseError::NotUtf8)
        );
        assert_eq!(
            parse_authorization("Bearer abc"),
            Err(AuthParseError::UnknownScheme)
        );
    }

    #[test]
    fn digest_syntax_errors() {
        let base = r#"username="u", realm="r", nonce="n", uri="/", response="00""#;
        assert!(parse_authorization(&format!("Digest {base}")).is_ok());
        // Escapes, unquoted values, odd spacing, trailing comma.
        let c = parse_authorization(
            r#"Digest  username = "a\"b" ,realm=r,nonce="n",uri="/",response=AB,"#,
        )
        .unwrap();
        assert_eq!(c.username(), "a\"b");
        let cases = [
            (
                format!("Digest {base}, realm=\"x\""),
                AuthParseError::DuplicateParam("realm".into()),
            ),
            (
                "Digest username=\"u\"".to_owned(),
                AuthParseError::MissingParam("realm"),
            ),
            (
                "Digest username=\"u".to_owned(),
                AuthParseError::BadDigestSyntax,
            ),
            (
                "Digest username".to_owned(),
                AuthParseError::BadDigestSyntax,
            ),
            ("Digest =x".to_owned(), AuthParseError::BadDigestSyntax),
            (
                "Digest a=\"x\"y".to_owned(),
                AuthParseError::BadDigestSyntax,
            ),
            ("Digest a=x y".to_owned(), AuthParseError::BadDigestSyntax),
            (
                format!("Digest {base}, algorithm=SHA-256"),
                AuthParseError::UnsupportedAlgorithm("SHA-256".into()),
            ),
            (
                format!("Digest {base}, qop=auth-int, nc=1, cnonce=c"),
                AuthParseError::UnsupportedQop("auth-int".into()),
            ),
            (
                format!("Digest {base}, qop=auth"),
                AuthParseError::IncompleteQop,
            ),
            (
                "x".repeat(MAX_AUTHORIZATION_LEN + 1),
                AuthParseError::TooLong,
            ),
        ];
        for (value, err) in cases {
            assert_eq!(parse_authorization(&value), Err(err), "{value}");
        }
    }

    #[test]
    fn challenge_headers() {
        let [digest, basic] = challenges("howl", "abc123");
        assert_eq!(
            digest,
            r#"Digest realm="howl", nonce="abc123", algorithm=MD5"#
        );
        assert_eq!(basic, r#"Basic realm="howl""#);
        assert_eq!(challenges("a\"b\r\n", "n")[1], r#"Basic realm="a\"b""#);
    }
}
