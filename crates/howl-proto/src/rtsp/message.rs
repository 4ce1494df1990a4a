//! Generic RTSP/1.0 messages: incremental parsers and writers for requests and responses.
//!
//! Nothing here knows about Moonlight. The same parser serves the Moonlight handshake on port
//! 48010 (one request per TCP connection) and an RFC 2326 server for VLC/ffmpeg (many requests
//! per connection, possibly with `$`-framed interleaved RTP/RTCP in between), so the framing is
//! written for the general case and every limit is explicit.

use std::fmt;

use super::ParseError;

/// Size limits applied while framing a message. Exceeding one is a typed error, never an
/// allocation the peer controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes from the start line up to and including the blank line that ends the headers.
    pub max_head: usize,
    /// Bytes announced by `Content-Length`.
    pub max_body: usize,
    /// Number of header lines.
    pub max_headers: usize,
}

/// Default head limit: 16 KiB, far above any real RTSP request (Moonlight's largest head is
/// well under 1 KiB) yet small enough that a slow-loris peer cannot make us buffer much.
pub const MAX_HEAD: usize = 16 * 1024;
/// Default body limit: 64 KiB. Moonlight's ANNOUNCE is ~1.7 KB; the reference asks hosts to
/// accept at least 64 KB because Sunshine's and Wolf's 2 KB buffers have bitten clients.
pub const MAX_BODY: usize = 64 * 1024;
/// Default header count limit.
pub const MAX_HEADERS: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head: MAX_HEAD,
            max_body: MAX_BODY,
            max_headers: MAX_HEADERS,
        }
    }
}

/// An RTSP method. Methods are case-sensitive tokens (RFC 2326 §6.1); anything that is a valid
/// token but not a known method is kept in [`Method::Other`] so that the caller decides between
/// 501 and its own extension handling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Options,
    Describe,
    Announce,
    Setup,
    Play,
    Pause,
    Teardown,
    GetParameter,
    SetParameter,
    Record,
    Redirect,
    /// Any other syntactically valid method token.
    Other(String),
}

impl Method {
    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Options => "OPTIONS",
            Self::Describe => "DESCRIBE",
            Self::Announce => "ANNOUNCE",
            Self::Setup => "SETUP",
            Self::Play => "PLAY",
            Self::Pause => "PAUSE",
            Self::Teardown => "TEARDOWN",
            Self::GetParameter => "GET_PARAMETER",
            Self::SetParameter => "SET_PARAMETER",
            Self::Record => "RECORD",
            Self::Redirect => "REDIRECT",
            Self::Other(s) => s,
        }
    }

    /// Parses a method token; `None` if it is not a valid RFC 2616 token.
    pub fn parse(token: &str) -> Option<Self> {
        if token.is_empty() || !token.bytes().all(is_token_byte) {
            return None;
        }
        Some(match token {
            "OPTIONS" => Self::Options,
            "DESCRIBE" => Self::Describe,
            "ANNOUNCE" => Self::Announce,
            "SETUP" => Self::Setup,
            "PLAY" => Self::Play,
            "PAUSE" => Self::Pause,
            "TEARDOWN" => Self::Teardown,
            "GET_PARAMETER" => Self::GetParameter,
            "SET_PARAMETER" => Self::SetParameter,
            "RECORD" => Self::Record,
            "REDIRECT" => Self::Redirect,
            other => Self::Other(other.to_owned()),
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocol version of a message (`RTSP/<major>.<minor>`). The parser accepts any single
/// digit pair so that the application can answer 505 itself; only `RTSP/1.0` is ever written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
}

impl Version {
    /// `RTSP/1.0`, the only version Moonlight, VLC and ffmpeg speak.
    pub const RTSP_1_0: Self = Self { major: 1, minor: 0 };

    fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("RTSP/")?;
        let b = rest.as_bytes();
        if b.len() == 3 && b[0].is_ascii_digit() && b[1] == b'.' && b[2].is_ascii_digit() {
            Some(Self {
                major: b[0] - b'0',
                minor: b[2] - b'0',
            })
        } else {
            None
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RTSP/{}.{}", self.major, self.minor)
    }
}

/// An RTSP status code. A plain `u16` newtype so that unknown codes from a peer survive parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(pub u16);

impl StatusCode {
    pub const OK: Self = Self(200);
    pub const BAD_REQUEST: Self = Self(400);
    pub const FORBIDDEN: Self = Self(403);
    pub const NOT_FOUND: Self = Self(404);
    pub const METHOD_NOT_ALLOWED: Self = Self(405);
    pub const REQUEST_TIMEOUT: Self = Self(408);
    pub const REQUEST_ENTITY_TOO_LARGE: Self = Self(413);
    pub const SESSION_NOT_FOUND: Self = Self(454);
    pub const METHOD_NOT_VALID_IN_THIS_STATE: Self = Self(455);
    pub const UNSUPPORTED_TRANSPORT: Self = Self(461);
    pub const INTERNAL_SERVER_ERROR: Self = Self(500);
    pub const NOT_IMPLEMENTED: Self = Self(501);
    pub const SERVICE_UNAVAILABLE: Self = Self(503);
    pub const VERSION_NOT_SUPPORTED: Self = Self(505);

    /// Whether this is a 2xx code.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }

    /// The RFC 2326 reason phrase. Never empty: Moonlight's response parser rejects a status
    /// line without a reason phrase.
    pub fn reason(self) -> &'static str {
        match self.0 {
            100 => "Continue",
            200 => "OK",
            201 => "Created",
            250 => "Low on Storage Space",
            300 => "Multiple Choices",
            301 => "Moved Permanently",
            302 => "Moved Temporarily",
            304 => "Not Modified",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            408 => "Request Timeout",
            413 => "Request Entity Too Large",
            414 => "Request-URI Too Large",
            415 => "Unsupported Media Type",
            451 => "Parameter Not Understood",
            453 => "Not Enough Bandwidth",
            454 => "Session Not Found",
            455 => "Method Not Valid in This State",
            456 => "Header Field Not Valid for Resource",
            457 => "Invalid Range",
            459 => "Aggregate Operation Not Allowed",
            460 => "Only Aggregate Operation Allowed",
            461 => "Unsupported Transport",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            505 => "RTSP Version Not Supported",
            551 => "Option not supported",
            _ => "Unknown",
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

/// Header fields in arrival (or insertion) order. Lookup is case-insensitive because clients
/// disagree on spelling (Moonlight sends `Content-length`); names are written exactly as
/// inserted because Moonlight's *response* parser compares them case-sensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    /// An empty header list.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of headers named `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a header named `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Appends a header, keeping any existing one of the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.entries.push((name.into(), value.into()));
    }

    /// Replaces every header named `name` (case-insensitive) with a single one at the position
    /// of the first, or appends it.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self
            .entries
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some(i) => {
                self.entries[i] = (name.clone(), value);
                let mut seen = 0usize;
                self.entries.retain(|(n, _)| {
                    if n.eq_ignore_ascii_case(&name) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.entries.push((name, value)),
        }
    }

    /// Removes every header named `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `CSeq` as a number, if present and numeric.
    pub fn cseq(&self) -> Option<u32> {
        self.get("CSeq").and_then(|v| v.trim().parse().ok())
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        for (name, value) in &self.entries {
            // Exactly one space after the colon: Moonlight drops the first character after it
            // unconditionally. CR/LF can never come from a parsed header, but a value assembled
            // by host code must not be able to split the response either.
            push_sanitized(out, name);
            out.extend_from_slice(b": ");
            push_sanitized(out, value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn push_sanitized(out: &mut Vec<u8>, s: &str) {
    out.extend(
        s.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

/// An RTSP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The Request-URI exactly as sent (`rtsp://0.0.0.0:48010`, `streamid=audio/0/0`, `/`, `*`).
    pub uri: String,
    pub version: Version,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, uri: impl Into<String>) -> Self {
        Self {
            method,
            uri: uri.into(),
            version: Version::RTSP_1_0,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Builder: appends a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Builder: sets the body. The writer adds `Content-Length` unless one is already present.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The raw `CSeq` value, echoed verbatim in the response.
    pub fn cseq(&self) -> Option<&str> {
        self.headers.get("CSeq")
    }

    /// Serializes the request. Header order is kept; `Content-Length` is appended when there is
    /// a body and none was set.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        self.write_to(&mut out);
        out
    }

    /// Appends the serialized request to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        push_sanitized(out, &self.uri.replace(' ', "%20"));
        out.push(b' ');
        out.extend_from_slice(self.version.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        write_headers_and_body(out, &self.headers, &self.body, "Content-length");
    }
}

/// An RTSP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub version: Version,
    pub status: StatusCode,
    /// Reason phrase; written as [`StatusCode::reason`] when empty.
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Response {
    /// A response with the standard reason phrase and no headers.
    pub fn new(status: StatusCode) -> Self {
        Self {
            version: Version::RTSP_1_0,
            status,
            reason: status.reason().to_owned(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// A response to `req` whose first header echoes the request's `CSeq` (when it had one).
    /// Moonlight does not check the value but refuses a response with no header at all, and
    /// RFC 2326 clients match responses by it.
    pub fn for_request(req: &Request, status: StatusCode) -> Self {
        let mut resp = Self::new(status);
        if let Some(cseq) = req.cseq() {
            resp.headers.append("CSeq", cseq.trim());
        }
        resp
    }

    /// Builder: appends a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Builder: sets the body. The writer adds `Content-Length` unless one is already present.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Serializes the response.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        self.write_to(&mut out);
        out
    }

    /// Appends the serialized response to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.version.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.0.to_string().as_bytes());
        out.push(b' ');
        let reason = if self.reason.trim().is_empty() {
            self.status.reason()
        } else {
            &self.reason
        };
        push_sanitized(out, reason);
        out.extend_from_slice(b"\r\n");
        write_headers_and_body(out, &self.headers, &self.body, "Content-Length");
    }

    /// The answer to bytes that failed to parse as a request ([`ParseError::status`]). It
    /// carries `CSeq` — recovered from `raw` when a numeric one is there, `0` otherwise —
    /// because Moonlight cannot parse a response without any header. Pass `&[]` if the raw
    /// bytes were not kept.
    pub fn for_parse_error(error: &ParseError, raw: &[u8]) -> Self {
        let cseq = raw
            .split(|&b| b == b'\n')
            .take(MAX_HEADERS + 1)
            .filter_map(|l| std::str::from_utf8(l).ok())
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("CSeq")
                    .then(|| value.trim().to_owned())
            })
            .filter(|v| !v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()));
        Self::new(error.status()).with_header("CSeq", cseq.unwrap_or_else(|| "0".into()))
    }

    /// Parses one complete response read until the peer closed the connection, the way
    /// Moonlight reads host responses: without `Content-Length` the body is everything after
    /// the head; with it, exactly that many bytes must follow.
    pub fn parse_complete(bytes: &[u8]) -> Result<Self, ParseError> {
        Self::parse_complete_with(bytes, Limits::default())
    }

    /// [`Response::parse_complete`] with explicit limits.
    pub fn parse_complete_with(bytes: &[u8], limits: Limits) -> Result<Self, ParseError> {
        let Some(head_end) = find_head_end(bytes, 0, limits.max_head)? else {
            return Err(ParseError::Truncated);
        };
        let (start, headers) = parse_head(&bytes[..head_end], limits)?;
        let rest = &bytes[head_end..];
        let body = match content_length(&headers, limits)? {
            Some(n) if rest.len() == n => rest.to_vec(),
            Some(n) if rest.len() < n => return Err(ParseError::Truncated),
            Some(_) => return Err(ParseError::TrailingBytes),
            None if rest.len() > limits.max_body => {
                return Err(ParseError::BodyTooLarge {
                    len: rest.len(),
                    max: limits.max_body,
                });
            }
            None => rest.to_vec(),
        };
        let mut resp = parse_status_line(start)?;
        resp.headers = headers;
        resp.body = body;
        Ok(resp)
    }
}

fn write_headers_and_body(out: &mut Vec<u8>, headers: &Headers, body: &[u8], cl_name: &str) {
    headers.write_to(out);
    if !body.is_empty() && !headers.contains("Content-Length") {
        out.extend_from_slice(cl_name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// One unit read from an RTSP connection: a request, or (RFC 2326 §10.12) an interleaved binary
/// frame `$ channel len16 data` as VLC and ffmpeg send RTCP over the RTSP socket in TCP mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Request(Request),
    Interleaved { channel: u8, data: Vec<u8> },
}

/// Incremental framer shared by [`RequestParser`] and [`ResponseParser`].
#[derive(Debug, Clone)]
struct Framer {
    buf: Vec<u8>,
    /// Where the search for the blank line resumes, so that a head trickling in byte by byte
    /// costs O(n) in total rather than O(n²).
    scan_from: usize,
    /// End of the head (index just past the blank line) once found, with its parsed content.
    head: Option<(usize, usize)>,
    limits: Limits,
    /// Once an error is returned the byte stream has lost its framing; every later call repeats
    /// the error instead of guessing where the next message starts.
    failed: Option<ParseError>,
}

impl Framer {
    fn new(limits: Limits) -> Self {
        Self {
            buf: Vec::new(),
            scan_from: 0,
            head: None,
            limits,
            failed: None,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), ParseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn fail<T>(&mut self, e: ParseError) -> Result<T, ParseError> {
        self.failed = Some(e.clone());
        self.buf = Vec::new();
        Err(e)
    }

    /// Drops CR/LF noise before a message (RFC 2616 §4.1 robustness; keep-alive blank lines).
    fn skip_leading_blank_lines(&mut self) {
        if self.head.is_none() && self.scan_from == 0 {
            let n = self
                .buf
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            if n > 0 {
                self.buf.drain(..n);
            }
        }
    }

    /// Returns `(head_end, body_len)` once the head is complete and its `Content-Length` known.
    fn poll_head(&mut self) -> Result<Option<(usize, usize)>, ParseError> {
        if let Some(h) = self.head {
            return Ok(Some(h));
        }
        match find_head_end(&self.buf, self.scan_from, self.limits.max_head) {
            Ok(Some(end)) => {
                let body_len = match parse_head(&self.buf[..end], self.limits)
                    .and_then(|(_, headers)| content_length(&headers, self.limits))
                {
                    Ok(n) => n.unwrap_or(0),
                    Err(e) => return self.fail(e),
                };
                self.head = Some((end, body_len));
                Ok(self.head)
            }
            Ok(None) => {
                // Resume a few bytes back so a terminator split across pushes is still found.
                self.scan_from = self.buf.len().saturating_sub(3);
                Ok(None)
            }
            Err(e) => self.fail(e),
        }
    }

    /// Takes the complete message `(head bytes, body bytes)` out of the buffer.
    fn take(&mut self, head_end: usize, body_len: usize) -> (Vec<u8>, Vec<u8>) {
        let mut msg: Vec<u8> = self.buf.drain(..head_end + body_len).collect();
        let body = msg.split_off(head_end);
        self.head = None;
        self.scan_from = 0;
        (msg, body)
    }
}

/// Incremental RTSP request parser over a byte stream.
///
/// Feed bytes as they arrive with [`push`](Self::push); it returns a request as soon as its
/// head and `Content-Length` body are complete and keeps any extra bytes for the next call
/// (call `push(&[])` to drain a pipelined request). Moonlight sends one request per connection
/// and never closes its side first, so the server must answer as soon as this returns `Some`,
/// not wait for EOF.
#[derive(Debug, Clone)]
pub struct RequestParser {
    framer: Framer,
}

impl Default for RequestParser {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestParser {
    /// A parser with the default [`Limits`].
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A parser with explicit limits.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            framer: Framer::new(limits),
        }
    }

    /// Bytes buffered but not yet returned as part of a message.
    pub fn buffered(&self) -> usize {
        self.framer.buf.len()
    }

    /// Appends `bytes` and returns the next complete request, if any. An interleaved `$` frame
    /// is an error here ([`ParseError::UnexpectedInterleaved`]); servers that use RTP over the
    /// RTSP connection call [`push_incoming`](Self::push_incoming) instead.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<Request>, ParseError> {
        match self.push_incoming_inner(bytes, false)? {
            Some(Incoming::Request(r)) => Ok(Some(r)),
            Some(Incoming::Interleaved { .. }) | None => Ok(None),
        }
    }

    /// Like [`push`](Self::push), but also returns interleaved binary frames.
    pub fn push_incoming(&mut self, bytes: &[u8]) -> Result<Option<Incoming>, ParseError> {
        self.push_incoming_inner(bytes, true)
    }

    fn push_incoming_inner(
        &mut self,
        bytes: &[u8],
        allow_interleaved: bool,
    ) -> Result<Option<Incoming>, ParseError> {
        let f = &mut self.framer;
        f.push(bytes)?;
        f.skip_leading_blank_lines();
        if f.head.is_none() && f.buf.first() == Some(&b'$') {
            if !allow_interleaved {
                return f.fail(ParseError::UnexpectedInterleaved);
            }
            if f.buf.len() < 4 {
                return Ok(None);
            }
            let channel = f.buf[1];
            let len = usize::from(u16::from_be_bytes([f.buf[2], f.buf[3]]));
            if f.buf.len() < 4 + len {
                return Ok(None);
            }
            let data = f.buf[4..4 + len].to_vec();
            f.buf.drain(..4 + len);
            return Ok(Some(Incoming::Interleaved { channel, data }));
        }
        let Some((head_end, body_len)) = f.poll_head()? else {
            return Ok(None);
        };
        if f.buf.len() < head_end + body_len {
            return Ok(None);
        }
        let (head, body) = f.take(head_end, body_len);
        let parsed = parse_head(&head, f.limits).and_then(|(start, headers)| {
            let (method, uri, version) = parse_request_line(start)?;
            Ok(Request {
                method,
                uri,
                version,
                headers,
                body,
            })
        });
        match parsed {
            Ok(r) => Ok(Some(Incoming::Request(r))),
            Err(e) => f.fail(e),
        }
    }
}

/// Incremental RTSP response parser for the client side (our test client, or an RFC 2326
/// client). A response without `Content-Length` has no body (RFC 2326 §12.14); for Moonlight
/// hosts that omit it on a DESCRIBE body use [`Response::parse_complete`] on the bytes read
/// until EOF instead.
#[derive(Debug, Clone)]
pub struct ResponseParser {
    framer: Framer,
}

impl Default for ResponseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseParser {
    /// A parser with the default [`Limits`].
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A parser with explicit limits.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            framer: Framer::new(limits),
        }
    }

    /// Appends `bytes` and returns the next complete response, if any.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<Response>, ParseError> {
        let f = &mut self.framer;
        f.push(bytes)?;
        f.skip_leading_blank_lines();
        let Some((head_end, body_len)) = f.poll_head()? else {
            return Ok(None);
        };
        if f.buf.len() < head_end + body_len {
            return Ok(None);
        }
        let (head, body) = f.take(head_end, body_len);
        let parsed = parse_head(&head, f.limits).and_then(|(start, headers)| {
            let mut resp = parse_status_line(start)?;
            resp.headers = headers;
            resp.body = body;
            Ok(resp)
        });
        match parsed {
            Ok(r) => Ok(Some(r)),
            Err(e) => f.fail(e),
        }
    }
}

/// Finds the end of the head (index just past the empty line), searching from `from`.
/// Lines end in LF with an optional CR before it; a bare-LF peer is tolerated.
fn find_head_end(buf: &[u8], from: usize, max_head: usize) -> Result<Option<usize>, ParseError> {
    let limit = buf.len().min(max_head);
    let mut i = from;
    while i < limit {
        if buf[i] == b'\n' {
            // The line that starts after this LF is empty if it is "\n" or "\r\n".
            match (buf.get(i + 1), buf.get(i + 2)) {
                (Some(b'\n'), _) if i + 2 <= max_head => return Ok(Some(i + 2)),
                (Some(b'\r'), Some(b'\n')) if i + 3 <= max_head => return Ok(Some(i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    if buf.len() >= max_head {
        Err(ParseError::HeadTooLarge { max: max_head })
    } else {
        Ok(None)
    }
}

/// Splits a complete head into its start line and parsed headers.
fn parse_head(head: &[u8], limits: Limits) -> Result<(&str, Headers), ParseError> {
    let text = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .skip_while(|l| l.is_empty());
    let start = lines.next().ok_or(ParseError::BadStartLine)?;
    let mut headers = Headers::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if headers.len() >= limits.max_headers {
            return Err(ParseError::TooManyHeaders {
                max: limits.max_headers,
            });
        }
        if line.starts_with([' ', '\t']) {
            // Obsolete line folding: rejected like RFC 7230 §3.2.4 allows, since no RTSP
            // client we serve folds and it is a classic request-smuggling vector.
            return Err(ParseError::BadHeaderLine);
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::BadHeaderLine)?;
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(ParseError::BadHeaderLine);
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(ParseError::BadHeaderLine);
        }
        headers.append(name, value.trim_matches([' ', '\t']));
    }
    Ok((start, headers))
}

fn content_length(headers: &Headers, limits: Limits) -> Result<Option<usize>, ParseError> {
    let mut found: Option<usize> = None;
    for v in headers.get_all("Content-Length") {
        if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::BadContentLength);
        }
        let n: usize = v.parse().map_err(|_| ParseError::BadContentLength)?;
        if found.is_some_and(|prev| prev != n) {
            return Err(ParseError::BadContentLength);
        }
        found = Some(n);
    }
    if let Some(n) = found
        && n > limits.max_body
    {
        return Err(ParseError::BodyTooLarge {
            len: n,
            max: limits.max_body,
        });
    }
    Ok(found)
}

fn parse_request_line(line: &str) -> Result<(Method, String, Version), ParseError> {
    let mut parts = line.split([' ', '\t']).filter(|p| !p.is_empty());
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::BadStartLine);
    };
    let method = Method::parse(method).ok_or(ParseError::BadStartLine)?;
    let version = Version::parse(version).ok_or(ParseError::BadVersion)?;
    Ok((method, uri.to_owned(), version))
}

fn parse_status_line(line: &str) -> Result<Response, ParseError> {
    let (version, rest) = line.split_once(' ').ok_or(ParseError::BadStartLine)?;
    let version = Version::parse(version).ok_or(ParseError::BadVersion)?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadStartLine);
    }
    let code: u16 = code.parse().map_err(|_| ParseError::BadStartLine)?;
    Ok(Response {
        version,
        status: StatusCode(code),
        reason: reason.trim().to_owned(),
        headers: Headers::new(),
        body: Vec::new(),
    })
}

/// RFC 2616 `token` characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_split_anywhere() {
        let wire =
            b"ANNOUNCE streamid=control/13/0 RTSP/1.0\r\nCSeq: 6\r\nContent-length: 5\r\n\r\nhello";
        for split in 0..wire.len() {
            let mut p = RequestParser::new();
            let first = p.push(&wire[..split]).unwrap();
            assert!(first.is_none(), "split {split}");
            let req = p.push(&wire[split..]).unwrap().unwrap();
            assert_eq!(req.method, Method::Announce);
            assert_eq!(req.uri, "streamid=control/13/0");
            assert_eq!(req.headers.get("content-LENGTH"), Some("5"));
            assert_eq!(req.body, b"hello");
            assert_eq!(p.buffered(), 0);
        }
    }

    #[test]
    fn pipelined_and_interleaved() {
        let mut p = RequestParser::new();
        let mut wire = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n".to_vec();
        wire.extend_from_slice(&[b'$', 1, 0, 2, 0xAA, 0xBB]);
        wire.extend_from_slice(b"\r\nPLAY / RTSP/1.0\nCSeq: 2\n\n");
        let a = p.push_incoming(&wire).unwrap().unwrap();
        assert!(matches!(a, Incoming::Request(ref r) if r.method == Method::Options));
        let b = p.push_incoming(&[]).unwrap().unwrap();
        assert_eq!(
            b,
            Incoming::Interleaved {
                channel: 1,
                data: vec![0xAA, 0xBB]
            }
        );
        let c = p.push_incoming(&[]).unwrap().unwrap();
        assert!(
            matches!(c, Incoming::Request(ref r) if r.method == Method::Play && r.headers.cseq() == Some(2))
        );
        assert!(p.push_incoming(&[]).unwrap().is_none());
    }

    #[test]
    fn limits_are_enforced() {
        let mut p = RequestParser::new();
        let big = vec![b'a'; MAX_HEAD + 1];
        assert_eq!(
            p.push(&big),
            Err(ParseError::HeadTooLarge { max: MAX_HEAD })
        );
        // Poisoned afterwards.
        assert!(p.push(b"OPTIONS * RTSP/1.0\r\n\r\n").is_err());

        let mut p = RequestParser::new();
        let r = p.push(b"ANNOUNCE / RTSP/1.0\r\nContent-Length: 65537\r\n\r\n");
        assert!(matches!(
            r,
            Err(ParseError::BodyTooLarge { len: 65537, .. })
        ));

        let mut head = b"OPTIONS * RTSP/1.0\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert_eq!(
            RequestParser::new().push(&head),
            Err(ParseError::TooManyHeaders { max: MAX_HEADERS })
        );
    }

    #[test]
    fn response_round_trip() {
        let resp = Response::new(StatusCode::OK)
            .with_header("CSeq", "2")
            .with_body("v=0\n");
        let bytes = resp.to_bytes();
        assert_eq!(
            bytes,
            b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 4\r\n\r\nv=0\n"
        );
        let back = ResponseParser::new().push(&bytes).unwrap().unwrap();
        assert_eq!(back.status, StatusCode::OK);
        assert_eq!(back.body, b"v=0\n");
        assert_eq!(Response::parse_complete(&bytes).unwrap(), back);
        // Without Content-Length, parse_complete takes the rest as body (Moonlight style).
        let bare = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\nabc";
        assert_eq!(Response::parse_complete(bare).unwrap().body, b"abc");
    }

    #[test]
    fn header_values_cannot_split_the_message() {
        let resp = Response::new(StatusCode::OK).with_header("Session", "a\r\nEvil: 1");
        assert_eq!(
            resp.to_bytes(),
            b"RTSP/1.0 200 OK\r\nSession: a  Evil: 1\r\n\r\n"
        );
    }
}
