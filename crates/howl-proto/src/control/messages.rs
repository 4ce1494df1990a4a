//! Control message types inside the envelope (reference part 2 §2.5–2.7), both directions.
//!
//! Decoders accept a payload *at least* as long as the fixed layout and ignore trailing bytes
//! (the client itself dispatches on type and reads fixed offsets); encoders write exactly the
//! bytes moonlight-common-c and Sunshine write, including their constant filler words.

use super::{ControlError, Delivery, Reliability, channel};
use crate::input::{InputEvent, MotionType};

/// Control message type ids of the "Gen 7 encrypted" generation (appversion ≥ 7.1.431).
pub mod msg_type {
    /// The encrypted envelope marker (never an inner type).
    pub const ENCRYPTED: u16 = 0x0001;
    /// C→H periodic ping, every 100 ms.
    pub const PERIODIC_PING: u16 = 0x0200;
    /// C→H loss statistics (only clients older than 7.1.415 send it).
    pub const LOSS_STATS: u16 = 0x0201;
    /// C→H frame statistics (never sent by current clients).
    pub const FRAME_STATS: u16 = 0x0204;
    /// C→H one input packet.
    pub const INPUT: u16 = 0x0206;
    /// C→H invalidate reference frames (RFI).
    pub const INVALIDATE_REFERENCE_FRAMES: u16 = 0x0301;
    /// C→H request an IDR frame; the first one is "Start A".
    pub const REQUEST_IDR: u16 = 0x0302;
    /// C→H "Start B".
    pub const START_B: u16 = 0x0307;
    /// C→H long-term-reference frame ACK (Sunshine extension).
    pub const LTR_FRAME_ACK: u16 = 0x0350;
    /// C→H frame FEC status (Sunshine extension; same number as [`SET_RGB_LED`]).
    pub const FRAME_FEC_STATUS: u16 = 0x5502;
    /// H→C termination.
    pub const TERMINATION: u16 = 0x0109;
    /// H→C controller rumble.
    pub const RUMBLE: u16 = 0x010b;
    /// H→C HDR mode and metadata.
    pub const HDR_MODE: u16 = 0x010e;
    /// H→C trigger rumble (Sunshine extension).
    pub const TRIGGER_RUMBLE: u16 = 0x5500;
    /// H→C enable/disable controller motion events (Sunshine extension).
    pub const SET_MOTION_EVENT_STATE: u16 = 0x5501;
    /// H→C controller RGB LED (Sunshine extension; same number as [`FRAME_FEC_STATUS`]).
    pub const SET_RGB_LED: u16 = 0x5502;
    /// H→C DualSense adaptive triggers (Sunshine extension).
    pub const ADAPTIVE_TRIGGERS: u16 = 0x5503;
}

/// Copy the first `N` payload bytes, or say the payload is too short for `msg_type`.
fn fixed<const N: usize>(msg_type: u16, payload: &[u8]) -> Result<[u8; N], ControlError> {
    payload
        .get(..N)
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or(ControlError::PayloadTooShort {
            msg_type,
            expected: N,
            actual: payload.len(),
        })
}

// Offset readers over a fixed-size array; offsets are constants checked by the unit tests.
fn le16<const N: usize>(b: &[u8; N], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be16<const N: usize>(b: &[u8; N], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Telemetry the client sends after a frame needed FEC recovery or was lost (`0x5502`,
/// **big-endian** fields). Sunshine ignores it; it is decoded for logging and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FrameFecStatus {
    /// Frame the report is about.
    pub frame_index: u32,
    /// Highest RTP sequence number received for it.
    pub highest_received_sequence_number: u16,
    /// Next sequence number the client still waits for.
    pub next_contiguous_sequence_number: u16,
    /// Packets missing below the highest received one.
    pub missing_packets_before_highest_received: u16,
    /// Data shards in the block.
    pub total_data_packets: u16,
    /// Parity shards in the block.
    pub total_parity_packets: u16,
    /// Data shards received.
    pub received_data_packets: u16,
    /// Parity shards received.
    pub received_parity_packets: u16,
    /// FEC percentage of the block.
    pub fec_percentage: u8,
    /// Block index within a multi-block frame.
    pub multi_fec_block_index: u8,
    /// Number of blocks in the frame.
    pub multi_fec_block_count: u8,
}

impl FrameFecStatus {
    const LEN: usize = 21;

    fn decode(b: &[u8; Self::LEN]) -> Self {
        Self {
            frame_index: be32(b, 0),
            highest_received_sequence_number: be16(b, 4),
            next_contiguous_sequence_number: be16(b, 6),
            missing_packets_before_highest_received: be16(b, 8),
            total_data_packets: be16(b, 10),
            total_parity_packets: be16(b, 12),
            received_data_packets: be16(b, 14),
            received_parity_packets: be16(b, 16),
            fec_percentage: b[18],
            multi_fec_block_index: b[19],
            multi_fec_block_count: b[20],
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.frame_index.to_be_bytes());
        for v in [
            self.highest_received_sequence_number,
            self.next_contiguous_sequence_number,
            self.missing_packets_before_highest_received,
            self.total_data_packets,
            self.total_parity_packets,
            self.received_data_packets,
            self.received_parity_packets,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&[
            self.fec_percentage,
            self.multi_fec_block_index,
            self.multi_fec_block_count,
        ]);
    }
}

/// A control message from the client (reference part 2 §2.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientMessage {
    /// `0x0302`: make the next encoded frame an IDR. The first one after connect is "Start A";
    /// coalesce repeats. Payload `00 00`, not validated.
    RequestIdr,
    /// `0x0307`: "Start B", sent once after Start A; nothing to do. Payload `00`, not validated.
    StartB,
    /// `0x0200`: periodic ping every 100 ms; liveness only. Its last two payload bytes are
    /// uninitialised memory in the client, so the content is never validated.
    PeriodicPing,
    /// `0x0301`: stop referencing frames `first_frame..=last_frame` and mark the recovery
    /// frame (only sent if the host advertised `refPicInvalidation`).
    InvalidateReferenceFrames {
        /// First frame index to invalidate.
        first_frame: u32,
        /// Last frame index to invalidate (inclusive).
        last_frame: u32,
    },
    /// `0x0201`: loss statistics (clients older than 7.1.415 only).
    LossStats {
        /// The last frame the client received intact.
        last_good_frame: u64,
    },
    /// `0x0206`: one raw input packet; decode it with [`InputEvent::decode`].
    Input(Vec<u8>),
    /// `0x0350`: the client fully received an LTR-marked frame (only with RFI active).
    LtrFrameAck {
        /// The acknowledged frame.
        frame_index: u32,
    },
    /// `0x5502` (client → host): FEC telemetry.
    FrameFecStatus(FrameFecStatus),
    /// Any other type (e.g. `0x0204` frame stats): not an error, just not interpreted.
    Unknown {
        /// Message type.
        msg_type: u16,
        /// Payload length.
        len: usize,
    },
}

impl ClientMessage {
    /// Wrap an input event as its `0x0206` control message.
    pub fn input(event: &InputEvent) -> Self {
        Self::Input(event.encode())
    }

    /// The inner message type id.
    pub fn msg_type(&self) -> u16 {
        match self {
            Self::RequestIdr => msg_type::REQUEST_IDR,
            Self::StartB => msg_type::START_B,
            Self::PeriodicPing => msg_type::PERIODIC_PING,
            Self::InvalidateReferenceFrames { .. } => msg_type::INVALIDATE_REFERENCE_FRAMES,
            Self::LossStats { .. } => msg_type::LOSS_STATS,
            Self::Input(_) => msg_type::INPUT,
            Self::LtrFrameAck { .. } => msg_type::LTR_FRAME_ACK,
            Self::FrameFecStatus(_) => msg_type::FRAME_FEC_STATUS,
            Self::Unknown { msg_type, .. } => *msg_type,
        }
    }

    /// How moonlight-common-c sends this message. The start-up copy of [`Self::RequestIdr`]
    /// ("Start A") goes on [`channel::GENERIC`]; later ones on [`channel::URGENT`], which is what
    /// this returns. Input follows its event's rules ([`InputEvent::delivery`]).
    pub fn delivery(&self) -> Delivery {
        match self {
            Self::RequestIdr
            | Self::InvalidateReferenceFrames { .. }
            | Self::LtrFrameAck { .. } => Delivery::reliable(channel::URGENT),
            Self::FrameFecStatus(_) => Delivery {
                channel: channel::GENERIC,
                reliability: Reliability::Unsequenced,
            },
            Self::Input(bytes) => InputEvent::decode(bytes)
                .map(|e| e.delivery())
                .unwrap_or(Delivery::reliable(channel::GENERIC)),
            Self::StartB | Self::PeriodicPing | Self::LossStats { .. } | Self::Unknown { .. } => {
                Delivery::reliable(channel::GENERIC)
            }
        }
    }

    /// The payload bytes (after the inner 4-byte header) as the client writes them.
    pub fn encode_payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::RequestIdr => out.extend_from_slice(&[0, 0]),
            Self::StartB => out.push(0),
            // LE16 4, LE32 0, then two bytes the client leaves uninitialised (zero here).
            Self::PeriodicPing => out.extend_from_slice(&[4, 0, 0, 0, 0, 0, 0, 0]),
            Self::InvalidateReferenceFrames {
                first_frame,
                last_frame,
            } => {
                out.extend_from_slice(&first_frame.to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes());
                out.extend_from_slice(&last_frame.to_le_bytes());
                out.extend_from_slice(&[0; 12]);
            }
            Self::LossStats { last_good_frame } => {
                for v in [0u32, 50, 1000] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out.extend_from_slice(&last_good_frame.to_le_bytes());
                for v in [0u32, 0, 0x14] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Self::Input(bytes) => out.extend_from_slice(bytes),
            Self::LtrFrameAck { frame_index } => {
                out.extend_from_slice(&frame_index.to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes());
            }
            Self::FrameFecStatus(status) => status.encode(&mut out),
            Self::Unknown { len, .. } => out.resize(*len, 0),
        }
        out
    }

    /// Interpret a decrypted message.
    ///
    /// # Errors
    /// [`ControlError::PayloadTooShort`] for a known type whose payload is shorter than its
    /// layout. Unknown types decode to [`ClientMessage::Unknown`].
    pub fn decode(msg_type: u16, payload: &[u8]) -> Result<Self, ControlError> {
        Ok(match msg_type {
            msg_type::REQUEST_IDR => Self::RequestIdr,
            msg_type::START_B => Self::StartB,
            msg_type::PERIODIC_PING => Self::PeriodicPing,
            msg_type::INVALIDATE_REFERENCE_FRAMES => {
                let b = fixed::<24>(msg_type, payload)?;
                Self::InvalidateReferenceFrames {
                    first_frame: le32(&b, 0),
                    last_frame: le32(&b, 8),
                }
            }
            msg_type::LOSS_STATS => {
                let b = fixed::<32>(msg_type, payload)?;
                let lo = u64::from(le32(&b, 12));
                let hi = u64::from(le32(&b, 16));
                Self::LossStats {
                    last_good_frame: lo | (hi << 32),
                }
            }
            msg_type::INPUT => Self::Input(payload.to_vec()),
            msg_type::LTR_FRAME_ACK => {
                let b = fixed::<8>(msg_type, payload)?;
                Self::LtrFrameAck {
                    frame_index: le32(&b, 0),
                }
            }
            msg_type::FRAME_FEC_STATUS => {
                let b = fixed::<{ FrameFecStatus::LEN }>(msg_type, payload)?;
                Self::FrameFecStatus(FrameFecStatus::decode(&b))
            }
            other => Self::Unknown {
                msg_type: other,
                len: payload.len(),
            },
        })
    }
}

/// Why the host ends the stream (`0x0109`, reference part 2 §2.7).
///
/// The numbers are HRESULTs sent **big-endian**. The client maps them to its
/// `connectionTerminated` codes: [`Self::Graceful`] → 0 (or −102 if no video frame was ever
/// seen), [`Self::ProtectedContent`] → −103, [`Self::FrameConversion`] → −104, anything else is
/// reported raw as an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TerminationReason {
    /// `0x80030023`: normal end (app exited, stream stopped). What Sunshine and Wolf send.
    Graceful,
    /// `0x800e9302`: protected content.
    ProtectedContent,
    /// `0x800e9403`: frame conversion failure.
    FrameConversion,
    /// Any other code; the client shows it as an error.
    Other(u32),
}

impl TerminationReason {
    /// The extended-form code of [`Self::Graceful`].
    pub const GRACEFUL_CODE: u32 = 0x8003_0023;
    /// The code of [`Self::ProtectedContent`].
    pub const PROTECTED_CONTENT_CODE: u32 = 0x800e_9302;
    /// The code of [`Self::FrameConversion`].
    pub const FRAME_CONVERSION_CODE: u32 = 0x800e_9403;
    /// The short (LE16) form's graceful value.
    pub const SHORT_GRACEFUL_CODE: u16 = 0x0100;

    /// The 32-bit code sent in the extended form.
    pub fn code(self) -> u32 {
        match self {
            Self::Graceful => Self::GRACEFUL_CODE,
            Self::ProtectedContent => Self::PROTECTED_CONTENT_CODE,
            Self::FrameConversion => Self::FRAME_CONVERSION_CODE,
            Self::Other(code) => code,
        }
    }

    /// Classify an extended-form code (so `Other` never holds a named code).
    pub fn from_code(code: u32) -> Self {
        match code {
            Self::GRACEFUL_CODE => Self::Graceful,
            Self::PROTECTED_CONTENT_CODE => Self::ProtectedContent,
            Self::FRAME_CONVERSION_CODE => Self::FrameConversion,
            other => Self::Other(other),
        }
    }
}

/// HDR mastering metadata of `0x010e` (`SS_HDR_METADATA`, all LE16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HdrMetadata {
    /// Red, green, blue primaries as `[x, y]`, normalised to 50000.
    pub display_primaries: [[u16; 2]; 3],
    /// White point `[x, y]`, normalised to 50000.
    pub white_point: [u16; 2],
    /// Nits.
    pub max_display_luminance: u16,
    /// 1/10000 nit.
    pub min_display_luminance: u16,
    /// MaxCLL, nits.
    pub max_content_light_level: u16,
    /// MaxFALL, nits.
    pub max_frame_average_light_level: u16,
    /// Nits.
    pub max_full_frame_luminance: u16,
}

impl HdrMetadata {
    const LEN: usize = 26;

    fn words(&self) -> [u16; 13] {
        let [r, g, b] = self.display_primaries;
        [
            r[0],
            r[1],
            g[0],
            g[1],
            b[0],
            b[1],
            self.white_point[0],
            self.white_point[1],
            self.max_display_luminance,
            self.min_display_luminance,
            self.max_content_light_level,
            self.max_frame_average_light_level,
            self.max_full_frame_luminance,
        ]
    }

    fn from_words(w: [u16; 13]) -> Self {
        Self {
            display_primaries: [[w[0], w[1]], [w[2], w[3]], [w[4], w[5]]],
            white_point: [w[6], w[7]],
            max_display_luminance: w[8],
            min_display_luminance: w[9],
            max_content_light_level: w[10],
            max_frame_average_light_level: w[11],
            max_full_frame_luminance: w[12],
        }
    }
}

/// A control message from the host (reference part 2 §2.6). Send each reliably on
/// [`super::HOST_SEND_CHANNEL`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMessage {
    /// `0x0109`: end of stream. Always encoded in the extended form (`BE32` reason); the short
    /// form (`LE16`, `0x0100` = graceful) is decoded too.
    Termination(TerminationReason),
    /// `0x010b`: controller rumble.
    Rumble {
        /// Controller number.
        controller: u16,
        /// Low-frequency (large) motor.
        low_freq_motor: u16,
        /// High-frequency (small) motor.
        high_freq_motor: u16,
    },
    /// `0x010e`: HDR on/off plus mastering metadata; send at every encoder (re)start.
    HdrMode {
        /// Whether the stream is HDR.
        enabled: bool,
        /// Mastering metadata (zero when unknown; also what a 1-byte non-Sunshine payload
        /// decodes to).
        metadata: HdrMetadata,
    },
    /// `0x5500`: trigger rumble.
    TriggerRumble {
        /// Controller number.
        controller: u16,
        /// Left trigger motor.
        left_trigger_motor: u16,
        /// Right trigger motor.
        right_trigger_motor: u16,
    },
    /// `0x5501`: enable (rate > 0) or disable (0) one motion sensor; clients send motion input
    /// only after this.
    SetMotionEventState {
        /// Controller number.
        controller: u16,
        /// Report rate in Hz, 0 = off.
        report_rate_hz: u16,
        /// Which sensor.
        motion_type: MotionType,
    },
    /// `0x5502` (host → client): controller RGB LED.
    SetControllerLed {
        /// Controller number.
        controller: u16,
        /// Red.
        r: u8,
        /// Green.
        g: u8,
        /// Blue.
        b: u8,
    },
    /// `0x5503`: DualSense adaptive triggers (opaque effect blocks).
    AdaptiveTriggers {
        /// Controller number.
        controller: u16,
        /// `0x04` right, `0x08` left.
        event_flags: u8,
        /// Left effect type.
        type_left: u8,
        /// Right effect type.
        type_right: u8,
        /// Left effect parameters.
        left: [u8; 10],
        /// Right effect parameters.
        right: [u8; 10],
    },
    /// Any other type (the client ignores it).
    Unknown {
        /// Message type.
        msg_type: u16,
        /// Payload length.
        len: usize,
    },
}

impl HostMessage {
    /// The inner message type id.
    pub fn msg_type(&self) -> u16 {
        match self {
            Self::Termination(_) => msg_type::TERMINATION,
            Self::Rumble { .. } => msg_type::RUMBLE,
            Self::HdrMode { .. } => msg_type::HDR_MODE,
            Self::TriggerRumble { .. } => msg_type::TRIGGER_RUMBLE,
            Self::SetMotionEventState { .. } => msg_type::SET_MOTION_EVENT_STATE,
            Self::SetControllerLed { .. } => msg_type::SET_RGB_LED,
            Self::AdaptiveTriggers { .. } => msg_type::ADAPTIVE_TRIGGERS,
            Self::Unknown { msg_type, .. } => *msg_type,
        }
    }

    /// The payload bytes (after the inner 4-byte header) as Sunshine writes them.
    pub fn encode_payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::Termination(reason) => out.extend_from_slice(&reason.code().to_be_bytes()),
            Self::Rumble {
                controller,
                low_freq_motor,
                high_freq_motor,
            } => {
                // The first word is ignored by the client; Sunshine writes 0x00C0FFEE.
                out.extend_from_slice(&0x00C0_FFEEu32.to_le_bytes());
                for v in [controller, low_freq_motor, high_freq_motor] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Self::HdrMode { enabled, metadata } => {
                out.push(u8::from(*enabled));
                for w in metadata.words() {
                    out.extend_from_slice(&w.to_le_bytes());
                }
            }
            Self::TriggerRumble {
                controller,
                left_trigger_motor,
                right_trigger_motor,
            } => {
                for v in [controller, left_trigger_motor, right_trigger_motor] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Self::SetMotionEventState {
                controller,
                report_rate_hz,
                motion_type,
            } => {
                out.extend_from_slice(&controller.to_le_bytes());
                out.extend_from_slice(&report_rate_hz.to_le_bytes());
                out.push(motion_type.to_u8());
            }
            Self::SetControllerLed {
                controller,
                r,
                g,
                b,
            } => {
                out.extend_from_slice(&controller.to_le_bytes());
                out.extend_from_slice(&[*r, *g, *b]);
            }
            Self::AdaptiveTriggers {
                controller,
                event_flags,
                type_left,
                type_right,
                left,
                right,
            } => {
                out.extend_from_slice(&controller.to_le_bytes());
                out.extend_from_slice(&[*event_flags, *type_left, *type_right]);
                out.extend_from_slice(left);
                out.extend_from_slice(right);
            }
            Self::Unknown { len, .. } => out.resize(*len, 0),
        }
        out
    }

    /// Interpret a decrypted message.
    ///
    /// # Errors
    /// [`ControlError::PayloadTooShort`] for a known type whose payload is shorter than its
    /// layout (termination needs 2 bytes, HDR mode 1). Unknown types decode to
    /// [`HostMessage::Unknown`].
    pub fn decode(msg_type: u16, payload: &[u8]) -> Result<Self, ControlError> {
        Ok(match msg_type {
            msg_type::TERMINATION => match fixed::<4>(msg_type, payload) {
                Ok(b) => Self::Termination(TerminationReason::from_code(be32(&b, 0))),
                Err(_) => {
                    let b = fixed::<2>(msg_type, payload)?;
                    let short = le16(&b, 0);
                    Self::Termination(if short == TerminationReason::SHORT_GRACEFUL_CODE {
                        TerminationReason::Graceful
                    } else {
                        TerminationReason::from_code(u32::from(short))
                    })
                }
            },
            msg_type::RUMBLE => {
                let b = fixed::<10>(msg_type, payload)?;
                Self::Rumble {
                    controller: le16(&b, 4),
                    low_freq_motor: le16(&b, 6),
                    high_freq_motor: le16(&b, 8),
                }
            }
            msg_type::HDR_MODE => {
                let [enabled] = fixed::<1>(msg_type, payload)?;
                let metadata = match fixed::<{ 1 + HdrMetadata::LEN }>(msg_type, payload) {
                    Ok(b) => {
                        let mut w = [0u16; 13];
                        for (i, word) in w.iter_mut().enumerate() {
                            *word = le16(&b, 1 + 2 * i);
                        }
                        HdrMetadata::from_words(w)
                    }
                    Err(_) => HdrMetadata::default(),
                };
                Self::HdrMode {
                    enabled: enabled != 0,
                    metadata,
                }
            }
            msg_type::TRIGGER_RUMBLE => {
                let b = fixed::<6>(msg_type, payload)?;
                Self::TriggerRumble {
                    controller: le16(&b, 0),
                    left_trigger_motor: le16(&b, 2),
                    right_trigger_motor: le16(&b, 4),
                }
            }
            msg_type::SET_MOTION_EVENT_STATE => {
                let b = fixed::<5>(msg_type, payload)?;
                Self::SetMotionEventState {
                    controller: le16(&b, 0),
                    report_rate_hz: le16(&b, 2),
                    motion_type: MotionType::from_u8(b[4]),
                }
            }
            msg_type::SET_RGB_LED => {
                let b = fixed::<5>(msg_type, payload)?;
                Self::SetControllerLed {
                    controller: le16(&b, 0),
                    r: b[2],
                    g: b[3],
                    b: b[4],
                }
            }
            msg_type::ADAPTIVE_TRIGGERS => {
                let b = fixed::<25>(msg_type, payload)?;
                let mut left = [0u8; 10];
                let mut right = [0u8; 10];
                left.copy_from_slice(&b[5..15]);
                right.copy_from_slice(&b[15..25]);
                Self::AdaptiveTriggers {
                    controller: le16(&b, 0),
                    event_flags: b[2],
                    type_left: b[3],
                    type_right: b[4],
                    left,
                    right,
                }
            }
            other => Self::Unknown {
                msg_type: other,
                len: payload.len(),
            },
        })
    }
}
