//! SDP-ish bodies of the Moonlight RTSP handshake.
//!
//! Neither body is real SDP. The DESCRIBE reply is searched by the client for substrings
//! (codec markers, `x-ss-general.*` numbers, `surround-params` lines); the ANNOUNCE body is a
//! flat list of `a=<name>:<value> ` lines that the host reads as key/value pairs. This module
//! gives both a typed schema that the host and our test client share (STYLE practice 5):
//!
//! | Body | Host side | Client side |
//! |---|---|---|
//! | DESCRIBE reply | [`HostOffer::describe_body`] | [`DescribeInfo::parse`] |
//! | ANNOUNCE request | [`StreamConfig::parse_announce`] | [`StreamConfig::to_announce`] |
//!
//! [`StreamConfig::parse_announce`] never panics on any input (property-tested in
//! `tests/sdp_props.rs`); every failure is an [`SdpError`] that the RTSP layer turns into 400.

mod announce;
mod describe;

pub use announce::{ANNOUNCE_ATTRIBUTES, MAX_ANNOUNCE_LEN};
pub use describe::{CodecSupport, DescribeInfo, HostOffer, OpusMultistream, SurroundOffer};

use crate::nvhttp::Fault;

/// Negotiated video codec (`x-nv-vqos[0].bitStreamFormat`): howl's one codec type.
pub use crate::codec::VideoCodec;

/// `x-nv-video[0].dynamicRangeMode`: 8-bit SDR or 10-bit HDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DynamicRange {
    Sdr,
    Hdr,
}

/// `x-ss-video[0].chromaSamplingType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChromaSampling {
    Yuv420,
    Yuv444,
}

/// Colour space part of `encoderCscMode`, for the encoder's conversion matrix and VUI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColorSpace {
    Bt601,
    Bt709,
    Bt2020,
}

/// `x-nv-video[0].encoderCscMode` = `(colorSpace << 1) | colorRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CscMode {
    pub color_space: ColorSpace,
    /// Full (PC) range when true, limited (TV) range otherwise.
    pub full_range: bool,
}

impl CscMode {
    /// From the wire value; `None` for colour spaces the protocol does not define (> 2).
    pub fn from_raw(v: u32) -> Option<Self> {
        let color_space = match v >> 1 {
            0 => ColorSpace::Bt601,
            1 => ColorSpace::Bt709,
            2 => ColorSpace::Bt2020,
            _ => return None,
        };
        Some(Self {
            color_space,
            full_range: v & 1 == 1,
        })
    }

    /// The wire value.
    pub fn to_raw(self) -> u32 {
        let space = match self.color_space {
            ColorSpace::Bt601 => 0,
            ColorSpace::Bt709 => 1,
            ColorSpace::Bt2020 => 2,
        };
        (space << 1) | u32::from(self.full_range)
    }
}

/// Sunshine `SS_ENC_*` bits: in DESCRIBE what the host supports / requests, in ANNOUNCE
/// (`x-ss-general.encryptionEnabled`) what the client **will use**.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EncryptionFlags(pub u32);

impl EncryptionFlags {
    pub const NONE: Self = Self(0);
    /// `SS_ENC_CONTROL_V2`: AES-GCM control stream with the `'C'`/`'H'` nonce tail.
    pub const CONTROL_V2: Self = Self(0x01);
    /// `SS_ENC_VIDEO`: AES-GCM video payloads with a 32-byte prefix.
    pub const VIDEO: Self = Self(0x02);
    /// `SS_ENC_AUDIO`: AES-CBC audio payloads.
    pub const AUDIO: Self = Self(0x04);
    /// Every bit this protocol defines.
    pub const ALL: Self = Self(0x07);

    /// Whether every bit of `other` is set here.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Bits set in either.
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Bits set here but not in `other`.
    pub fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether no bit is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Moonlight extension flags (`x-ml-general.featureFlags`, `ML_FF_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MlFeatureFlags(pub u32);

impl MlFeatureFlags {
    /// `ML_FF_FEC_STATUS`: the client sends FEC status reports on the control stream.
    pub const FEC_STATUS: u32 = 0x01;
    /// `ML_FF_SESSION_ID_V1`: the client uses `X-SS-Ping-Payload` / `X-SS-Connect-Data`, so
    /// pings and the ENet CONNECT are matched by token rather than by source IP.
    pub const SESSION_ID_V1: u32 = 0x02;

    /// Whether the client sends FEC status reports.
    pub fn fec_status(self) -> bool {
        self.0 & Self::FEC_STATUS != 0
    }

    /// Whether UDP rendezvous is matched by token (part 2 §1.3).
    pub fn session_id_v1(self) -> bool {
        self.0 & Self::SESSION_ID_V1 != 0
    }
}

/// `x-nv-general.featureFlags` bit meaning "audio is encrypted" in the NVIDIA scheme; Sunshine
/// ORs it into `SS_ENC_AUDIO`, and so must we.
pub const NV_FF_AUDIO_ENCRYPTION: u32 = 0x20;
/// `x-nv-general.featureFlags` bit for input encryption (informational at 7.1.431).
pub const NV_FF_INPUT_ENCRYPTION: u32 = 0x80;
/// `x-nv-general.useReliableUdp` value selecting the encrypted control protocol (7.1.431).
pub const RELIABLE_UDP_ENCRYPTED_CONTROL: u32 = 13;

/// The bitrate attributes. The client sends the same value (80 % of the user setting, less
/// 500 kbps when remote, capped at 100 Mbps) in the four NVIDIA fields, and the user's total in
/// the Sunshine field; see [`Bitrate::encoder_kbps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bitrate {
    /// `x-nv-vqos[0].bw.maximumBitrateKbps` (required).
    pub maximum_kbps: u32,
    /// `x-nv-vqos[0].bw.minimumBitrateKbps`.
    pub minimum_kbps: Option<u32>,
    /// `x-nv-video[0].initialBitrateKbps`.
    pub initial_kbps: Option<u32>,
    /// `x-nv-video[0].initialPeakBitrateKbps`.
    pub initial_peak_kbps: Option<u32>,
    /// `x-ml-video.configuredBitrateKbps`: the user's total stream bitrate; 0 when absent.
    pub configured_kbps: u32,
}

/// Fixed allowance for RTP/FEC headers, control traffic and slack that Sunshine-style hosts
/// subtract from the configured total before giving the rest to the video encoder.
pub const BITRATE_OVERHEAD_KBPS: u32 = 500;

impl Bitrate {
    /// The video encoder bitrate. With a configured total (Sunshine clients) the host derives
    /// it: remove the FEC share (`fec_percent` parity on top of data), the audio bitrate and
    /// [`BITRATE_OVERHEAD_KBPS`]. Without one (or if that leaves nothing) use the NVIDIA
    /// `maximumBitrateKbps`, which already excludes FEC.
    pub fn encoder_kbps(&self, fec_percent: u32, audio_kbps: u32) -> u32 {
        if self.configured_kbps == 0 {
            return self.maximum_kbps;
        }
        let after_fec =
            u64::from(self.configured_kbps) * 100 / (100 + u64::from(fec_percent.min(255)));
        let after_fec = u32::try_from(after_fec).unwrap_or(u32::MAX);
        match after_fec.saturating_sub(audio_kbps.saturating_add(BITRATE_OVERHEAD_KBPS)) {
            0 => self.maximum_kbps,
            kbps => kbps,
        }
    }
}

/// Audio attributes of the ANNOUNCE body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioConfig {
    /// `x-nv-audio.surround.numChannels` (2, 6 or 8 from real clients).
    pub channels: u8,
    /// `x-nv-audio.surround.channelMask` (3, 63, 1599).
    pub channel_mask: u32,
    /// `x-nv-audio.surround.AudioQuality`: use the second (high-quality) surround-params line.
    pub high_quality: bool,
    /// `x-nv-aqos.packetDuration`: Opus frame length in ms (48 samples per ms).
    pub packet_duration_ms: u32,
}

/// Everything a host must honour from the client's ANNOUNCE (reference part 1 §6.7).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamConfig {
    /// `x-nv-video[0].clientViewportWd`: encode width.
    pub width: u32,
    /// `x-nv-video[0].clientViewportHt`: encode height.
    pub height: u32,
    /// `x-nv-video[0].maxFPS`.
    pub fps: u32,
    /// `x-nv-video[0].clientRefreshRateX100`; 0 = unknown.
    pub client_refresh_rate_x100: u32,
    /// `x-nv-video[0].packetSize`: max video payload bytes per RTP packet (never exceed).
    pub packet_size: u32,
    pub bitrate: Bitrate,
    /// `x-nv-vqos[0].bitStreamFormat`.
    pub codec: VideoCodec,
    /// `x-nv-video[0].dynamicRangeMode`.
    pub dynamic_range: DynamicRange,
    /// `x-ss-video[0].chromaSamplingType`.
    pub chroma: ChromaSampling,
    /// `x-nv-video[0].maxNumReferenceFrames`: 1 = the decoder needs single-reference streams,
    /// 0 = any.
    pub max_ref_frames: u32,
    /// `x-nv-video[0].encoderCscMode`.
    pub csc: CscMode,
    /// `x-nv-video[0].videoEncoderSlicesPerFrame`.
    pub slices_per_frame: u32,
    /// `x-nv-vqos[0].fec.enable` (default on: the client's queue needs FEC).
    pub fec_enabled: bool,
    /// `x-nv-vqos[0].fec.minRequiredFecPackets`: at least this many parity shards per frame.
    pub min_required_fec_packets: u32,
    pub audio: AudioConfig,
    /// `x-ss-general.encryptionEnabled` exactly as sent; see [`StreamConfig::encryption`].
    pub ss_encryption_enabled: EncryptionFlags,
    /// `x-nv-general.featureFlags` (0x20 = audio encryption, 0x80 = input encryption).
    pub nv_feature_flags: u32,
    /// `x-ml-general.featureFlags`.
    pub ml_feature_flags: MlFeatureFlags,
    /// `x-nv-general.useReliableUdp` (13 = encrypted control protocol).
    pub control_protocol: u32,
    /// `x-nv-vqos[0].qosTrafficType`: 0 = do not DSCP-tag video.
    pub video_qos_type: u32,
    /// `x-nv-aqos.qosTrafficType`: 0 = do not DSCP-tag audio.
    pub audio_qos_type: u32,
}

impl StreamConfig {
    /// The streams that must be encrypted: the client's `encryptionEnabled` bits plus audio
    /// when the NVIDIA feature flag 0x20 is set (GFE-style audio encryption, which Sunshine
    /// folds into `SS_ENC_AUDIO`).
    pub fn encryption(&self) -> EncryptionFlags {
        if self.nv_feature_flags & NV_FF_AUDIO_ENCRYPTION != 0 {
            self.ss_encryption_enabled.union(EncryptionFlags::AUDIO)
        } else {
            self.ss_encryption_enabled
        }
    }

    /// Frame rate to pace the encoder at, in millihertz: the client's display refresh rate when
    /// it is within 1 % of `maxFPS` (e.g. 59.94 Hz for `maxFPS` 60), else `maxFPS` exactly.
    pub fn frame_rate_millihz(&self) -> u64 {
        let nominal = u64::from(self.fps) * 1000;
        let refresh = u64::from(self.client_refresh_rate_x100) * 10;
        if refresh != 0 && refresh.abs_diff(nominal) * 100 <= nominal {
            refresh
        } else {
            nominal
        }
    }

    /// Opus samples per channel in one audio packet (48 kHz).
    pub fn audio_samples_per_packet(&self) -> u32 {
        self.audio.packet_duration_ms.saturating_mul(48)
    }
}

/// Why an ANNOUNCE body or a DESCRIBE offer is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is larger than [`MAX_ANNOUNCE_LEN`].
    #[error("ANNOUNCE body is {len} bytes, the limit is {max}")]
    TooLarge { len: usize, max: usize },
    /// A required attribute is absent (Sunshine also answers 400 here).
    #[error("missing required attribute {0}")]
    MissingAttribute(&'static str),
    /// An attribute value is not a decimal `u32`.
    #[error("attribute {attribute}: {value:?} is not a decimal number")]
    BadValue {
        attribute: &'static str,
        /// The offending value, cut to 32 bytes and lossily decoded (for logs only).
        value: String,
    },
    /// A number outside the values the protocol defines (codec 3, colour space 3, ...).
    #[error("attribute {attribute}: unsupported value {value}")]
    UnsupportedValue { attribute: &'static str, value: u32 },
    /// A number the protocol allows in form but no sane client sends (zero width, 1 GB packet).
    #[error("attribute {attribute}: value {value} out of range")]
    OutOfRange { attribute: &'static str, value: u32 },
    /// Host code built an invalid Opus multistream description for DESCRIBE.
    #[error("invalid surround-params configuration: {0}")]
    InvalidSurround(&'static str),
}

impl SdpError {
    /// Who is at fault; see [`Fault`].
    pub fn fault(&self) -> Fault {
        match self {
            Self::TooLarge { .. } | Self::OutOfRange { .. } => Fault::PeerMisbehaved,
            Self::MissingAttribute(_) | Self::BadValue { .. } => Fault::MalformedInput,
            Self::UnsupportedValue { .. } => Fault::Unsupported,
            Self::InvalidSurround(_) => Fault::LocalMisuse,
        }
    }
}
