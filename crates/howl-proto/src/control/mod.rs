//! The control stream: what travels inside the ENet packets on the control port.
//!
//! ENet itself (connect, ACKs, fragments, channels, timeouts) belongs to the server's ENet host;
//! this module only sees one ENet packet payload at a time plus the channel it arrived on. For a
//! host that reports `appversion 7.1.431` (reference part 2 §2.3, "Gen 7 encrypted") *every*
//! packet in either direction is one encrypted envelope:
//!
//! ```text
//! LE16 0x0001 | LE16 L = 20 + N | LE32 seq | 16-byte GCM tag | N bytes AES-128-GCM ciphertext
//! plaintext = LE16 type | LE16 payloadLength | payload
//! ```
//!
//! There is no plaintext framing for this client generation: the client drops any non-envelope
//! packet once encryption is active, so neither side here ever produces or accepts one.
//!
//! # Who calls what
//!
//! | Side | Type | Outbound | Inbound |
//! |---|---|---|---|
//! | host (server's ENet loop) | [`ControlCrypto`] | [`ControlCrypto::seal`] a [`HostMessage`] | [`ControlCrypto::open`] to a [`ClientMessage`] |
//! | Rust test client | [`ClientCrypto`] | [`ClientCrypto::seal`] a [`ClientMessage`] | [`ClientCrypto::open`] to a [`HostMessage`] |
//!
//! Both message enums encode *and* decode (STYLE practice 5), so the test client and the server
//! share one schema. Input events (`0x0206`) are carried as raw bytes in
//! [`ClientMessage::Input`]; [`crate::input::InputEvent::decode`] turns them into events, so a
//! bad input packet never makes the whole control message unreadable.
//!
//! # Drive-loop contract
//!
//! There is no hidden state besides the outbound sequence counter: feed every received ENet
//! packet to `open` (any order, any channel; the client's sequence numbers have gaps and
//! reorder because unreliable and unsequenced packets advance them too, so they are reported
//! but never validated), and send each `seal` result as one reliable ENet packet on
//! [`HOST_SEND_CHANNEL`]. Time and randomness are not needed: IVs come from the counter.
//!
//! # Errors
//!
//! [`ControlError::fault`] says who is at fault. A failed tag ([`ControlError::Authentication`])
//! means a wrong key or a forged packet; the client merely drops such packets, Sunshine ends the
//! session. Either is defensible; the server decides, this module only classifies.

mod crypto;
mod messages;

pub use crypto::{ClientCrypto, ControlCrypto, IvVariant, RawMessage, SS_ENC_CONTROL_V2};
pub use messages::{
    ClientMessage, FrameFecStatus, HdrMetadata, HostMessage, TerminationReason, msg_type,
};

pub use crate::enet::{Delivery, Reliability, channel};
use crate::nvhttp::Fault;

/// The channel the host sends every control message on, reliably (what Sunshine and Wolf do;
/// the client accepts host messages on any channel).
pub const HOST_SEND_CHANNEL: u8 = channel::GENERIC;

/// Why a control packet could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Shorter than the smallest possible envelope (8-byte header + 16-byte tag + 4-byte inner
    /// header).
    #[error("control packet is {len} bytes, shorter than the smallest envelope")]
    TooShort {
        /// Packet length.
        len: usize,
    },
    /// The first LE16 is not the envelope marker `0x0001`: a plaintext control message, which
    /// a client must never send once encryption is active.
    #[error("control packet type {marker:#06x} is not an encrypted envelope")]
    NotEnvelope {
        /// The LE16 read where `0x0001` belongs.
        marker: u16,
    },
    /// The envelope length field disagrees with the ENet packet length (`L + 4` must equal it).
    #[error("envelope says {declared} bytes follow the header, packet has {actual}")]
    EnvelopeLength {
        /// `L` from the envelope.
        declared: usize,
        /// Bytes actually present after the 4-byte header.
        actual: usize,
    },
    /// The GCM tag did not verify: wrong key, wrong IV variant, or a tampered packet.
    #[error("control packet failed authentication (wrong key or IV variant, or tampered)")]
    Authentication,
    /// The decrypted inner `payloadLength` disagrees with the decrypted size.
    #[error("inner header says {declared} payload bytes, envelope holds {actual}")]
    InnerLength {
        /// `payloadLength` from the inner header.
        declared: u16,
        /// Payload bytes actually decrypted.
        actual: usize,
    },
    /// A known message type whose payload is too short for its fixed layout.
    #[error("control message {msg_type:#06x} needs {expected} payload bytes, got {actual}")]
    PayloadTooShort {
        /// Message type.
        msg_type: u16,
        /// Minimum payload size of that type.
        expected: usize,
        /// Payload size received.
        actual: usize,
    },
    /// The caller asked to seal a payload whose envelope would not fit the 16-bit length field.
    #[error("control payload of {len} bytes does not fit an envelope")]
    PayloadTooLong {
        /// Requested payload length.
        len: usize,
    },
    /// The outbound sequence counter is used up; continuing would reuse a GCM IV.
    #[error("control sequence numbers exhausted for this session")]
    SequenceExhausted,
    /// The crypto library failed on a well-formed request (never the peer's fault).
    #[error("crypto library failure")]
    Crypto,
}

impl ControlError {
    /// Who is at fault (STYLE practice 6).
    pub fn fault(&self) -> Fault {
        match self {
            Self::TooShort { .. }
            | Self::EnvelopeLength { .. }
            | Self::InnerLength { .. }
            | Self::PayloadTooShort { .. } => Fault::MalformedInput,
            Self::NotEnvelope { .. } | Self::Authentication => Fault::PeerMisbehaved,
            Self::PayloadTooLong { .. } | Self::SequenceExhausted => Fault::LocalMisuse,
            Self::Crypto => Fault::Internal,
        }
    }
}
