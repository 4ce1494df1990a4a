//! NVHTTP: the query strings and XML documents of the GameStream HTTP(S) API.
//!
//! Everything here is bytes in, bytes out. The server crate owns the sockets, TLS and routing;
//! this module only knows how a request's query string is read and how each reply is written,
//! and it can also do the opposite of both so that a Rust test client shares the exact same
//! schema with the server (STYLE practice 5). Each message type therefore has an encoder *and*
//! a decoder:
//!
//! | Message | Server side | Client side |
//! |---|---|---|
//! | [`ServerInfo`], [`AppList`], [`PairResponse`], [`LaunchResponse`], [`ResumeResponse`], [`CancelResponse`], [`ErrorResponse`], [`OkResponse`] | `to_xml()` | `from_xml()` |
//! | [`PairRequest`], [`LaunchRequest`] | `from_query()` | `to_query()` |
//!
//! # HTTP status is always 200
//!
//! Protocol errors travel *inside* the XML (`<root status_code="401" status_message="..."/>`)
//! while the HTTP status line stays `200 OK`. Moonlight-qt only falls back from HTTPS to HTTP
//! (and shows "not paired") when it sees an XML 401; an HTTP-level 401 becomes a generic
//! network error and the host looks broken. See reference part 1, section 2.3.
//!
//! # Hostile input
//!
//! [`Query::parse`] and [`XmlDoc::parse`] cap their input size and element counts and return
//! typed errors; they never panic, whatever the bytes (checked by the property tests in
//! `tests/nvhttp_props.rs`).

mod messages;
mod query;
mod xml;

pub use messages::{
    APP_VERSION, App, AppList, CancelResponse, DEFAULT_HTTPS_PORT, DisplayMode, ErrorResponse,
    FailureElement, GFE_VERSION, GetServerCert, LaunchMode, LaunchRequest, LaunchResponse,
    OkResponse, PairRequest, PairResponse, ResumeResponse, SCM_AV1_HIGH8_444, SCM_AV1_HIGH10_444,
    SCM_AV1_MAIN8, SCM_AV1_MAIN10, SCM_H264, SCM_H264_HIGH8_444, SCM_HEVC, SCM_HEVC_MAIN10,
    SCM_HEVC_REXT8_444, SCM_HEVC_REXT10_444, SCM_KNOWN_BITS, STATE_BUSY, STATE_FREE, ServerInfo,
    rikey_iv,
};
pub use query::{MAX_QUERY_LEN, MAX_QUERY_PARAMS, Query};
pub use xml::{MAX_XML_DEPTH, MAX_XML_ELEMENTS, MAX_XML_LEN, XmlDoc, XmlElement, XmlWriter};

/// Who is at fault for an error: decides whether the host logs a warning about a client, an
/// error about itself, or just answers "unsupported".
///
/// Shared by every error type of [`crate::nvhttp`] and [`crate::pairing`] (STYLE practice 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The bytes could not be parsed (bad hex, bad percent-encoding, broken XML, missing field).
    MalformedInput,
    /// The bytes parsed, but the peer broke the protocol (wrong order, bad signature, wrong PIN).
    PeerMisbehaved,
    /// The peer asked for something this implementation does not do (non-RSA key, unknown phrase).
    Unsupported,
    /// The local caller (operator or server code) passed something invalid, e.g. a bad PIN.
    LocalMisuse,
    /// Our own bug or a crypto-library failure; never caused by the peer.
    Internal,
}

/// Why an NVHTTP query string, XML document or message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvHttpError {
    /// The query string is longer than [`MAX_QUERY_LEN`].
    #[error("query string is {len} bytes, the limit is {max}")]
    QueryTooLong { len: usize, max: usize },
    /// The query string has more than [`MAX_QUERY_PARAMS`] parameters.
    #[error("query string has more than {max} parameters")]
    TooManyParams { max: usize },
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding in the query string")]
    BadPercentEncoding,
    /// A percent-decoded name or value is not UTF-8.
    #[error("query parameter is not UTF-8 after percent-decoding")]
    NotUtf8,
    /// A required query parameter is absent.
    #[error("missing query parameter {0:?}")]
    MissingParam(&'static str),
    /// A query parameter is present but its value is unusable.
    #[error("query parameter {param:?}: {reason}")]
    BadParam {
        param: &'static str,
        reason: ParamProblem,
    },
    /// The `/pair` request names no step this host knows (`phrase` and step parameters absent).
    #[error("pair request names no pairing step")]
    NoPairStep,
    /// `phrase=` has a value other than `getservercert` / `pairchallenge`.
    #[error("unsupported pair phrase {0:?}")]
    UnknownPhrase(String),

    /// The XML document is larger than [`MAX_XML_LEN`].
    #[error("XML document is {len} bytes, the limit is {max}")]
    XmlTooLong { len: usize, max: usize },
    /// Nesting deeper than [`MAX_XML_DEPTH`] or more than [`MAX_XML_ELEMENTS`] elements.
    #[error("XML document is too deep or has too many elements")]
    XmlTooComplex,
    /// quick-xml refused the document, or it has no `root` element.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// `root@status_code` is missing or not an integer.
    #[error("missing or non-numeric status_code")]
    BadStatusCode,
    /// The peer answered with an XML status other than 200.
    #[error("peer answered status_code {code}: {message}")]
    Status { code: i64, message: String },
    /// A required element is missing from a reply.
    #[error("missing XML element <{0}>")]
    MissingElement(&'static str),
    /// An element is present but its text is unusable.
    #[error("XML element <{element}> has a bad value")]
    BadElement { element: &'static str },
}

/// What is wrong with a query parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParamProblem {
    /// Hex with an odd number of digits.
    #[error("odd number of hex digits")]
    OddHex,
    /// A character outside `0-9a-fA-F`.
    #[error("not hex")]
    NotHex,
    /// Hex that decodes to the wrong number of bytes.
    #[error("expected {expected} bytes, got {got}")]
    WrongLength { expected: usize, got: usize },
    /// Too short for its structure (e.g. `clientpairingsecret` of 16 bytes or less).
    #[error("too short")]
    TooShort,
    /// Not a number in the expected range, or not in the expected shape (`mode`).
    #[error("not a valid number or shape")]
    NotANumber,
}

impl NvHttpError {
    /// Who is at fault; see [`Fault`].
    pub fn fault(&self) -> Fault {
        match self {
            Self::QueryTooLong { .. }
            | Self::TooManyParams { .. }
            | Self::BadPercentEncoding
            | Self::NotUtf8
            | Self::MissingParam(_)
            | Self::BadParam { .. }
            | Self::NoPairStep
            | Self::XmlTooLong { .. }
            | Self::XmlTooComplex
            | Self::Xml(_)
            | Self::BadStatusCode
            | Self::MissingElement(_)
            | Self::BadElement { .. } => Fault::MalformedInput,
            Self::Status { .. } => Fault::PeerMisbehaved,
            Self::UnknownPhrase(_) => Fault::Unsupported,
        }
    }
}
