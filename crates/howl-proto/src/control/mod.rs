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

use crate::nvhttp::Fault;

/// ENet channel numbers the client uses (reference part 2 §2.1, "Channel map").
///
/// The host must accept at least [`channel::CHANNEL_COUNT`] channels. A client falls back to
/// channel 0 for any channel beyond the negotiated count, so nothing may depend on the channel a
/// packet arrived on; it is informational (and lets a test client send exactly like Moonlight).
pub mod channel {
    /// Channels the client asks for in its ENet CONNECT (`0x30`).
    pub const CHANNEL_COUNT: usize = 0x30;
    /// Start A/B, periodic ping, FEC status, haptics enable; everything the host sends.
    pub const GENERIC: u8 = 0x00;
    /// IDR requests after start-up, reference-frame invalidation, LTR ACKs.
    pub const URGENT: u8 = 0x01;
    /// Keyboard input.
    pub const KEYBOARD: u8 = 0x02;
    /// Mouse move/position/button/scroll input.
    pub const MOUSE: u8 = 0x03;
    /// Pen input.
    pub const PEN: u8 = 0x04;
    /// Touch input.
    pub const TOUCH: u8 = 0x05;
    /// UTF-8 text input.
    pub const UTF8: u8 = 0x06;
    /// First gamepad channel; pad `n` (0..15) uses `GAMEPAD_BASE + n`.
    pub const GAMEPAD_BASE: u8 = 0x10;
    /// First sensor channel; pad `n` (0..15) motion uses `SENSOR_BASE + n`.
    pub const SENSOR_BASE: u8 = 0x20;

    /// The channel for gamepad `n`'s state, arrival, touchpad and battery packets. Controller
    /// numbers above 15 do not exist in Sunshine mode; they map to [`GENERIC`] rather than
    /// spilling into the sensor range.
    pub fn gamepad(n: u16) -> u8 {
        match u8::try_from(n) {
            Ok(n) if n < 16 => GAMEPAD_BASE + n,
            _ => GENERIC,
        }
    }

    /// The channel for gamepad `n`'s motion packets (see [`gamepad`] for `n > 15`).
    pub fn sensor(n: u16) -> u8 {
        match u8::try_from(n) {
            Ok(n) if n < 16 => SENSOR_BASE + n,
            _ => GENERIC,
        }
    }
}

/// The channel the host sends every control message on, reliably (what Sunshine and Wolf do;
/// the client accepts host messages on any channel).
pub const HOST_SEND_CHANNEL: u8 = channel::GENERIC;

/// How an ENet packet is sent (reference part 2 §2.1, "ENet packet flags").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reliability {
    /// `ENET_PACKET_FLAG_RELIABLE` (1): almost everything.
    Reliable,
    /// Flags 0: unreliable but sequenced per channel (hover/move, motion).
    Unreliable,
    /// `ENET_PACKET_FLAG_UNSEQUENCED` (2): FEC status reports.
    Unsequenced,
}

impl Reliability {
    /// The ENet packet flag value for this delivery mode.
    pub fn enet_flags(self) -> u32 {
        match self {
            Self::Reliable => 1,
            Self::Unreliable => 0,
            Self::Unsequenced => 2,
        }
    }
}

/// Where and how the client sends a message: lets a test client behave like Moonlight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delivery {
    /// ENet channel id (see [`channel`]).
    pub channel: u8,
    /// ENet reliability.
    pub reliability: Reliability,
}

impl Delivery {
    /// Reliable on `channel`.
    pub const fn reliable(channel: u8) -> Self {
        Self {
            channel,
            reliability: Reliability::Reliable,
        }
    }

    /// Unreliable (sequenced) on `channel`.
    pub const fn unreliable(channel: u8) -> Self {
        Self {
            channel,
            reliability: Reliability::Unreliable,
        }
    }
}

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
