//! What a player's URL asks for: `rtsp://host:port/app/<name>?width=..&height=..&fps=..&bitrate=..`
//! starts an app for this viewer, `rtsp://host:port/lobby/<name>` joins a running lobby.

use std::fmt;

use crate::rtsp::StatusCode;

/// Longest app or lobby name accepted (after percent-decoding).
pub const MAX_NAME_LEN: usize = 256;
/// Longest Request-URI accepted by [`parse_path`].
pub const MAX_URI_LEN: usize = 4096;

/// Video settings a player may ask for in the query string; `None` leaves the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct VideoRequest {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    /// `bitrate`, in kbit/s.
    pub bitrate_kbps: Option<u32>,
}

/// The stream a URL names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamTarget {
    /// `/app/<name>`: launch app `name` with these settings.
    App { name: String, video: VideoRequest },
    /// `/lobby/<name>`: watch lobby `name`.
    Lobby { name: String },
}

/// Why a URL names no stream. [`PathError::status`] is the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not `/app/<name>` or `/lobby/<name>`.
    #[error("no stream at this path")]
    NotFound,
    #[error("Request-URI longer than {MAX_URI_LEN} bytes")]
    TooLong,
    #[error("bad percent-encoding")]
    BadPercentEncoding,
    #[error("name is empty, not UTF-8, longer than {MAX_NAME_LEN} bytes or has control characters")]
    BadName,
    #[error("unknown query parameter {0:?}")]
    UnknownParameter(String),
    #[error("query parameter {0} given twice")]
    DuplicateParameter(&'static str),
    #[error("query parameter {name}={value:?} is not an integer in {min}..={max}")]
    BadValue {
        name: &'static str,
        value: String,
        min: u32,
        max: u32,
    },
    #[error("a lobby URL takes no query parameters")]
    LobbyWithQuery,
}

impl PathError {
    /// 404 for a path that names nothing, 400 for a malformed one.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::TooLong => StatusCode(414),
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A Request-URI split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPath {
    pub target: StreamTarget,
    /// The URI without query string, ending in `/`: the `Content-Base` of DESCRIBE, to which
    /// players append the SDP's `a=control:trackID=N`. Dropping the query keeps the track URLs
    /// simple (some players join relative URLs to a base with a query badly).
    pub base: String,
}

impl fmt::Display for StreamTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::App { name, .. } => write!(f, "app {name:?}"),
            Self::Lobby { name } => write!(f, "lobby {name:?}"),
        }
    }
}

/// Query parameters: (name, min, max).
const PARAMS: [(&str, u32, u32); 4] = [
    ("width", 16, 7680),
    ("height", 16, 4320),
    ("fps", 1, 240),
    ("bitrate", 100, 500_000),
];

/// Parses a DESCRIBE Request-URI: absolute (`rtsp://host/…`, userinfo tolerated) or a bare
/// path. The name is percent-decoded; a trailing `/` is allowed.
pub fn parse_path(uri: &str) -> Result<StreamPath, PathError> {
    if uri.len() > MAX_URI_LEN {
        return Err(PathError::TooLong);
    }
    let (without_query, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    };
    let path = strip_authority(without_query).ok_or(PathError::NotFound)?;
    let mut segments = path.trim_start_matches('/').split('/');
    let kind = segments.next().unwrap_or_default();
    let raw_name = segments.next().unwrap_or_default();
    // Only an empty segment (a trailing slash) may follow the name.
    let rest: Vec<&str> = segments.collect();
    if raw_name.is_empty() || !(rest.is_empty() || rest == [""]) {
        return Err(PathError::NotFound);
    }
    let name = String::from_utf8(percent_decode(raw_name)?).map_err(|_| PathError::BadName)?;
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(PathError::BadName);
    }
    let target = match kind {
        "app" => StreamTarget::App {
            name,
            video: parse_query(query.unwrap_or_default())?,
        },
        "lobby" => {
            if query.is_some_and(|q| !q.is_empty()) {
                return Err(PathError::LobbyWithQuery);
            }
            StreamTarget::Lobby { name }
        }
        _ => return Err(PathError::NotFound),
    };
    let mut base = without_query.to_owned();
    if !base.ends_with('/') {
        base.push('/');
    }
    Ok(StreamPath { target, base })
}

/// The path part of an absolute `rtsp://` / `rtsps://` URI, or `uri` itself when it is a path.
pub(crate) fn strip_authority(uri: &str) -> Option<&str> {
    if uri.starts_with('/') {
        return Some(uri);
    }
    let (scheme, rest) = uri.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("rtsp") || scheme.eq_ignore_ascii_case("rtsps")) {
        return None;
    }
    Some(rest.find('/').map_or("/", |i| &rest[i..]))
}

fn parse_query(query: &str) -> Result<VideoRequest, PathError> {
    let mut values: [Option<u32>; 4] = [None; 4];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = String::from_utf8(percent_decode(raw_name)?)
            .map_err(|_| PathError::BadPercentEncoding)?;
        let value = String::from_utf8(percent_decode(raw_value)?)
            .map_err(|_| PathError::BadPercentEncoding)?;
        let Some(i) = PARAMS
            .iter()
            .position(|(n, _, _)| n.eq_ignore_ascii_case(&name))
        else {
            return Err(PathError::UnknownParameter(name.chars().take(64).collect()));
        };
        let (pname, min, max) = PARAMS[i];
        if values[i].is_some() {
            return Err(PathError::DuplicateParameter(pname));
        }
        let parsed =
            (!value.is_empty() && value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<u32>().ok())
                .flatten()
                .filter(|v| (min..=max).contains(v));
        let Some(v) = parsed else {
            return Err(PathError::BadValue {
                name: pname,
                value: value.chars().take(32).collect(),
                min,
                max,
            });
        };
        values[i] = Some(v);
    }
    let [width, height, fps, bitrate_kbps] = values;
    Ok(VideoRequest {
        width,
        height,
        fps,
        bitrate_kbps,
    })
}

/// RFC 3986 percent-decoding (no `+` for space: that is a form convention, not a path one).
fn percent_decode(s: &str) -> Result<Vec<u8>, PathError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(PathError::BadPercentEncoding)?;
            let hi = (hex[0] as char).to_digit(16);
            let lo = (hex[1] as char).to_digit(16);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadPercentEncoding);
            };
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_with_query() {
        let p = parse_path(
            "rtsp://user:pw@host:8554/app/My%20Game?width=1280&height=720&fps=60&bitrate=8000",
        )
        .unwrap();
        assert_eq!(
            p.target,
            StreamTarget::App {
                name: "My Game".into(),
                video: VideoRequest {
                    width: Some(1280),
                    height: Some(720),
                    fps: Some(60),
                    bitrate_kbps: Some(8000)
                }
            }
        );
        assert_eq!(p.base, "rtsp://user:pw@host:8554/app/My%20Game/");
        let p = parse_path("/app/x/").unwrap();
        assert_eq!(
            p.target,
            StreamTarget::App {
                name: "x".into(),
                video: VideoRequest::default()
            }
        );
        assert_eq!(p.base, "/app/x/");
    }

    #[test]
    fn lobby() {
        let p = parse_path("rtsp://h/lobby/caf%C3%A9").unwrap();
        assert_eq!(
            p.target,
            StreamTarget::Lobby {
                name: "café".into()
            }
        );
        assert_eq!(p.base, "rtsp://h/lobby/caf%C3%A9/");
        assert_eq!(
            parse_path("rtsp://h/lobby/x?"),
            parse_path("rtsp://h/lobby/x")
        );
        assert_eq!(
            parse_path("rtsp://h/lobby/x?fps=1"),
            Err(PathError::LobbyWithQuery)
        );
    }

    #[test]
    fn errors() {
        use PathError::*;
        let cases: [(&str, PathError); 14] = [
            ("rtsp://h", NotFound),
            ("rtsp://h/", NotFound),
            ("rtsp://h/app", NotFound),
            ("rtsp://h/app/", NotFound),
            ("rtsp://h/app/x/y", NotFound),
            ("rtsp://h/video/x", NotFound),
            ("http://h/app/x", NotFound),
            ("*", NotFound),
            ("/app/%zz", BadPercentEncoding),
            ("/app/%C3", BadName),
            ("/app/a%0Ab", BadName),
            ("/app/x?foo=1", UnknownParameter("foo".into())),
            ("/app/x?fps=1&fps=2", DuplicateParameter("fps")),
            (
                "/app/x?fps=0",
                BadValue {
                    name: "fps",
                    value: "0".into(),
                    min: 1,
                    max: 240,
                },
            ),
        ];
        for (uri, err) in cases {
            assert_eq!(parse_path(uri), Err(err.clone()), "{uri}");
            let expected = if err == NotFound { 404 } else { 400 };
            assert_eq!(err.status().0, expected);
        }
        assert!(matches!(
            parse_path("/app/x?width=99999999999"),
            Err(BadValue { name: "width", .. })
        ));
        assert!(matches!(
            parse_path("/app/x?width=-1"),
            Err(BadValue { .. })
        ));
        assert_eq!(parse_path(&"/".repeat(MAX_URI_LEN + 1)), Err(TooLong));
        assert_eq!(TooLong.status().0, 414);
    }
}
