//! RTSP: a generic RTSP/1.0 message layer and the Moonlight stream-setup handshake.
//!
//! Two layers, both sans-IO:
//!
//! * Message types — [`RequestParser`], [`ResponseParser`], [`Request`], [`Response`],
//!   [`Headers`] — know nothing about Moonlight. They frame RTSP over any byte stream with hard
//!   limits ([`Limits`]: 16 KiB head, 64 KiB body, 64 headers) and serve both the Moonlight
//!   port (48010) and a later RFC 2326 egress server for VLC/ffmpeg (pipelined requests and
//!   `$`-interleaved frames via [`RequestParser::push_incoming`]).
//! * [`MoonlightRtsp`] is the host side of OPTIONS → DESCRIBE → SETUP audio/video/control →
//!   ANNOUNCE → PLAY for one launch session, and [`MoonlightClient`] is the matching client,
//!   used by our Rust test client so that both ends share one schema (STYLE practice 5).
//!
//! # Drive loop (host)
//!
//! Moonlight opens a **new TCP connection per request** and reads until the host closes it, so
//! one [`MoonlightRtsp`] outlives many connections; it belongs to the launch session created at
//! `/launch`, not to a socket. For every accepted connection the server:
//!
//! 1. feeds received bytes to a fresh [`RequestParser`] until it yields a [`Request`]
//!    (on [`ParseError`], writes [`Response::for_parse_error`] and closes);
//! 2. calls [`MoonlightRtsp::handle`] with the request and `now`, writes the returned
//!    [`Response`] (`to_bytes()`), then shuts the socket down gracefully;
//! 3. drains [`MoonlightRtsp::poll_event`] until `None` — [`Event::Announced`] carries the
//!    negotiated [`StreamConfig`](crate::sdp::StreamConfig) (start the encoder now),
//!    [`Event::Play`] ends the handshake, [`Event::Rejected`] explains every non-2xx answer.
//!
//! Between connections the server arms a timer for [`MoonlightRtsp::deadline`] and, when it
//! fires, calls [`MoonlightRtsp::handle_timeout`]; a launch that never reaches PLAY is then
//! reported as [`Event::TimedOut`] and should be dropped. No method reads a clock.
//!
//! Encrypted RTSP (`rtspenc://`, for clients whose `/launch` announced `corever` >= 1) wraps
//! each request and response in one AES-GCM message keyed with `rikey`: the server collects a
//! request with [`EncryptedReader`], opens it with [`RtspCipher::open`], feeds the plaintext to
//! the [`RequestParser`] as above and seals the response with [`RtspCipher::seal`] (its own
//! sequence number per launch). The handshake itself does not change.

mod encrypted;
mod message;
mod moonlight;

pub use encrypted::{
    ENCRYPTED_HEADER_LEN, EncryptedReader, EncryptedRtspError, MAX_ENCRYPTED_LEN, RtspCipher,
    RtspDirection,
};

pub use message::{
    Headers, Incoming, Limits, MAX_BODY, MAX_HEAD, MAX_HEADERS, Method, Request, RequestParser,
    Response, ResponseParser, StatusCode, Version,
};
pub use moonlight::{
    ClientError, ConfigError, DEFAULT_HANDSHAKE_TIMEOUT, Event, HandshakeError, MoonlightClient,
    MoonlightParams, MoonlightRtsp, PingPayload, SESSION_TIMEOUT_SECS, StreamKind, StreamPorts,
};

use crate::nvhttp::Fault;

/// Why bytes could not be framed or parsed as an RTSP message. After one of these the
/// connection's framing is lost: answer [`ParseError::status`] (where possible) and close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No blank line within the head limit.
    #[error("message head exceeds {max} bytes")]
    HeadTooLarge { max: usize },
    /// `Content-Length` (or, for [`Response::parse_complete`], the trailing body) is above the
    /// body limit.
    #[error("message body of {len} bytes exceeds {max}")]
    BodyTooLarge { len: usize, max: usize },
    /// More header lines than the limit.
    #[error("more than {max} header lines")]
    TooManyHeaders { max: usize },
    /// The head is not UTF-8.
    #[error("message head is not UTF-8")]
    NotUtf8,
    /// The request line is not `METHOD URI VERSION`, the method is not a token, or the status
    /// line is not `VERSION CODE REASON`.
    #[error("malformed start line")]
    BadStartLine,
    /// The protocol token is not `RTSP/<digit>.<digit>` (e.g. an HTTP request on the RTSP port).
    #[error("not an RTSP/x.y protocol version")]
    BadVersion,
    /// A header line without a colon, with a non-token name, control characters, or folding.
    #[error("malformed header line")]
    BadHeaderLine,
    /// `Content-Length` is not a decimal number, or appears twice with different values.
    #[error("malformed or conflicting Content-Length")]
    BadContentLength,
    /// An interleaved `$` frame where only requests are allowed (Moonlight never sends them).
    #[error("unexpected interleaved binary frame")]
    UnexpectedInterleaved,
    /// [`Response::parse_complete`]: the connection closed before the message was complete.
    #[error("message truncated")]
    Truncated,
    /// [`Response::parse_complete`]: bytes after the `Content-Length` body.
    #[error("bytes after the message body")]
    TrailingBytes,
}

impl ParseError {
    /// Who is at fault; see [`Fault`].
    pub fn fault(&self) -> Fault {
        match self {
            Self::HeadTooLarge { .. }
            | Self::BodyTooLarge { .. }
            | Self::TooManyHeaders { .. }
            | Self::UnexpectedInterleaved
            | Self::TrailingBytes => Fault::PeerMisbehaved,
            Self::BadVersion => Fault::Unsupported,
            Self::NotUtf8
            | Self::BadStartLine
            | Self::BadHeaderLine
            | Self::BadContentLength
            | Self::Truncated => Fault::MalformedInput,
        }
    }

    /// The status a server answers with before closing the connection.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BodyTooLarge { .. } => StatusCode::REQUEST_ENTITY_TOO_LARGE,
            Self::BadVersion => StatusCode::VERSION_NOT_SUPPORTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}
