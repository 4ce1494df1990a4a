//! The client's ANNOUNCE body: parsing on the host, generation for the test client.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{
    AudioConfig, Bitrate, ChromaSampling, CscMode, DynamicRange, EncryptionFlags, MlFeatureFlags,
    SdpError, StreamConfig, VideoCodec,
};

/// Largest ANNOUNCE body accepted; equal to the RTSP body limit. Real bodies are ~1.7 KB.
pub const MAX_ANNOUNCE_LEN: usize = 64 * 1024;

// Attribute names, in the order a 7.1.431 client sends them (and our generator writes them).
const ML_FEATURE_FLAGS: &str = "x-ml-general.featureFlags";
const SS_ENCRYPTION_ENABLED: &str = "x-ss-general.encryptionEnabled";
const CHROMA: &str = "x-ss-video[0].chromaSamplingType";
const WIDTH: &str = "x-nv-video[0].clientViewportWd";
const HEIGHT: &str = "x-nv-video[0].clientViewportHt";
const FPS: &str = "x-nv-video[0].maxFPS";
const PACKET_SIZE: &str = "x-nv-video[0].packetSize";
const INITIAL_BITRATE: &str = "x-nv-video[0].initialBitrateKbps";
const INITIAL_PEAK_BITRATE: &str = "x-nv-video[0].initialPeakBitrateKbps";
const MIN_BITRATE: &str = "x-nv-vqos[0].bw.minimumBitrateKbps";
const MAX_BITRATE: &str = "x-nv-vqos[0].bw.maximumBitrateKbps";
const CONFIGURED_BITRATE: &str = "x-ml-video.configuredBitrateKbps";
const FEC_ENABLE: &str = "x-nv-vqos[0].fec.enable";
const VIDEO_QOS: &str = "x-nv-vqos[0].qosTrafficType";
const AUDIO_QOS: &str = "x-nv-aqos.qosTrafficType";
const NV_FEATURE_FLAGS: &str = "x-nv-general.featureFlags";
const RELIABLE_UDP: &str = "x-nv-general.useReliableUdp";
const MIN_FEC_PACKETS: &str = "x-nv-vqos[0].fec.minRequiredFecPackets";
const SLICES: &str = "x-nv-video[0].videoEncoderSlicesPerFrame";
const BITSTREAM_FORMAT: &str = "x-nv-vqos[0].bitStreamFormat";
const DYNAMIC_RANGE: &str = "x-nv-video[0].dynamicRangeMode";
const MAX_REF_FRAMES: &str = "x-nv-video[0].maxNumReferenceFrames";
const REFRESH_RATE: &str = "x-nv-video[0].clientRefreshRateX100";
const AUDIO_CHANNELS: &str = "x-nv-audio.surround.numChannels";
const AUDIO_MASK: &str = "x-nv-audio.surround.channelMask";
const AUDIO_QUALITY: &str = "x-nv-audio.surround.AudioQuality";
const PACKET_DURATION: &str = "x-nv-aqos.packetDuration";
const CSC_MODE: &str = "x-nv-video[0].encoderCscMode";

/// Every attribute [`StreamConfig::parse_announce`] reads; all others are ignored (the
/// reference lists them as "ignore": rateControlMode, timeoutLengthMs, drc.*, ...).
pub const ANNOUNCE_ATTRIBUTES: [&str; 28] = [
    ML_FEATURE_FLAGS,
    SS_ENCRYPTION_ENABLED,
    CHROMA,
    WIDTH,
    HEIGHT,
    FPS,
    PACKET_SIZE,
    INITIAL_BITRATE,
    INITIAL_PEAK_BITRATE,
    MIN_BITRATE,
    MAX_BITRATE,
    CONFIGURED_BITRATE,
    FEC_ENABLE,
    VIDEO_QOS,
    AUDIO_QOS,
    NV_FEATURE_FLAGS,
    RELIABLE_UDP,
    MIN_FEC_PACKETS,
    SLICES,
    BITSTREAM_FORMAT,
    DYNAMIC_RANGE,
    MAX_REF_FRAMES,
    REFRESH_RATE,
    AUDIO_CHANNELS,
    AUDIO_MASK,
    AUDIO_QUALITY,
    PACKET_DURATION,
    CSC_MODE,
];

/// Sanity bounds. They only exclude values that would make later arithmetic meaningless
/// (zero-sized frames, packets smaller than any header, absurd allocations); every value a real
/// client sends is far inside them.
const MAX_DIMENSION: u32 = 16_384;
const MAX_FPS: u32 = 1_000;
const MIN_PACKET_SIZE: u32 = 64;
const MAX_PACKET_SIZE: u32 = 65_507;
const MAX_CHANNELS: u32 = 8;
/// Opus frame durations expressible in whole milliseconds.
const OPUS_DURATIONS_MS: [u32; 5] = [5, 10, 20, 40, 60];

/// The `a=` attribute values found in a body, first occurrence wins (like Sunshine's map
/// insertion), indexed like [`ANNOUNCE_ATTRIBUTES`].
struct Attributes<'a> {
    values: [Option<&'a [u8]>; ANNOUNCE_ATTRIBUTES.len()],
}

impl<'a> Attributes<'a> {
    fn collect(body: &'a [u8]) -> Self {
        let mut values = [None; ANNOUNCE_ATTRIBUTES.len()];
        for line in body.split(|&b| b == b'\n' || b == b'\r') {
            let Some(attr) = line.strip_prefix(b"a=") else {
                continue;
            };
            let Some(colon) = attr.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&attr[..colon], &attr[colon + 1..]);
            if let Some(i) = ANNOUNCE_ATTRIBUTES
                .iter()
                .position(|n| n.as_bytes() == name)
                && values[i].is_none()
            {
                values[i] = Some(trim(value));
            }
        }
        Self { values }
    }

    fn raw(&self, name: &'static str) -> Option<&'a [u8]> {
        let i = ANNOUNCE_ATTRIBUTES.iter().position(|n| *n == name)?;
        self.values[i]
    }

    fn opt(&self, name: &'static str) -> Result<Option<u32>, SdpError> {
        self.raw(name).map(|v| parse_u32(name, v)).transpose()
    }

    fn req(&self, name: &'static str) -> Result<u32, SdpError> {
        self.opt(name)?.ok_or(SdpError::MissingAttribute(name))
    }

    fn or(&self, name: &'static str, default: u32) -> Result<u32, SdpError> {
        Ok(self.opt(name)?.unwrap_or(default))
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t');
    let start = v.iter().position(|b| !is_ws(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ws(b)).map_or(start, |e| e + 1);
    &v[start..end.max(start)]
}

fn parse_u32(attribute: &'static str, v: &[u8]) -> Result<u32, SdpError> {
    let bad = || SdpError::BadValue {
        attribute,
        value: String::from_utf8_lossy(&v[..v.len().min(32)]).into_owned(),
    };
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    v.iter()
        .try_fold(0u32, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        })
        .ok_or_else(bad)
}

fn in_range(
    attribute: &'static str,
    value: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, SdpError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(SdpError::OutOfRange { attribute, value })
    }
}

fn flag(attribute: &'static str, value: u32) -> Result<bool, SdpError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(SdpError::UnsupportedValue { attribute, value }),
    }
}

impl StreamConfig {
    /// Parses a client's ANNOUNCE body.
    ///
    /// Lines may end in CRLF or LF; `a=` lines are split at the first `:` and the value is
    /// trimmed (clients send a trailing space). Required attributes (those Sunshine answers
    /// 400 without): viewport width/height, `maxFPS`, `packetSize`,
    /// `bw.maximumBitrateKbps`, `videoEncoderSlicesPerFrame`, `maxNumReferenceFrames`,
    /// `numChannels`, `channelMask`, `AudioQuality`. Absent optional attributes take the
    /// reference's defaults: `encoderCscMode 0`, `bitStreamFormat 0`, `dynamicRangeMode 0`,
    /// `packetDuration 5`, `useReliableUdp 1`, `minRequiredFecPackets 0`, nv `featureFlags 135`,
    /// ml `featureFlags 0`, qos types 5/4, `configuredBitrateKbps 0`, `encryptionEnabled 0`,
    /// `chromaSamplingType 0`, `clientRefreshRateX100 0`, `fec.enable 1`.
    pub fn parse_announce(body: &[u8]) -> Result<Self, SdpError> {
        if body.len() > MAX_ANNOUNCE_LEN {
            return Err(SdpError::TooLarge {
                len: body.len(),
                max: MAX_ANNOUNCE_LEN,
            });
        }
        let a = Attributes::collect(body);

        let width = in_range(WIDTH, a.req(WIDTH)?, 1..=MAX_DIMENSION)?;
        let height = in_range(HEIGHT, a.req(HEIGHT)?, 1..=MAX_DIMENSION)?;
        let fps = in_range(FPS, a.req(FPS)?, 1..=MAX_FPS)?;
        let packet_size = in_range(
            PACKET_SIZE,
            a.req(PACKET_SIZE)?,
            MIN_PACKET_SIZE..=MAX_PACKET_SIZE,
        )?;
        let bitrate = Bitrate {
            maximum_kbps: a.req(MAX_BITRATE)?,
            minimum_kbps: a.opt(MIN_BITRATE)?,
            initial_kbps: a.opt(INITIAL_BITRATE)?,
            initial_peak_kbps: a.opt(INITIAL_PEAK_BITRATE)?,
            configured_kbps: a.or(CONFIGURED_BITRATE, 0)?,
        };
        let slices_per_frame = a.req(SLICES)?;
        let max_ref_frames = a.req(MAX_REF_FRAMES)?;

        let channels = in_range(AUDIO_CHANNELS, a.req(AUDIO_CHANNELS)?, 1..=MAX_CHANNELS)?;
        let channel_mask = a.req(AUDIO_MASK)?;
        let high_quality = flag(AUDIO_QUALITY, a.req(AUDIO_QUALITY)?)?;
        let packet_duration_ms = a.or(PACKET_DURATION, 5)?;
        if !OPUS_DURATIONS_MS.contains(&packet_duration_ms) {
            return Err(SdpError::UnsupportedValue {
                attribute: PACKET_DURATION,
                value: packet_duration_ms,
            });
        }

        let raw_codec = a.or(BITSTREAM_FORMAT, 0)?;
        let codec = VideoCodec::from_raw(raw_codec).ok_or(SdpError::UnsupportedValue {
            attribute: BITSTREAM_FORMAT,
            value: raw_codec,
        })?;
        let dynamic_range = if flag(DYNAMIC_RANGE, a.or(DYNAMIC_RANGE, 0)?)? {
            DynamicRange::Hdr
        } else {
            DynamicRange::Sdr
        };
        let chroma = if flag(CHROMA, a.or(CHROMA, 0)?)? {
            ChromaSampling::Yuv444
        } else {
            ChromaSampling::Yuv420
        };
        let raw_csc = a.or(CSC_MODE, 0)?;
        let csc = CscMode::from_raw(raw_csc).ok_or(SdpError::UnsupportedValue {
            attribute: CSC_MODE,
            value: raw_csc,
        })?;

        Ok(Self {
            width,
            height,
            fps,
            client_refresh_rate_x100: a.or(REFRESH_RATE, 0)?,
            packet_size,
            bitrate,
            codec,
            dynamic_range,
            chroma,
            max_ref_frames,
            csc,
            slices_per_frame,
            fec_enabled: a.or(FEC_ENABLE, 1)? != 0,
            min_required_fec_packets: a.or(MIN_FEC_PACKETS, 0)?,
            audio: AudioConfig {
                // in_range above bounds it to 1..=8.
                channels: u8::try_from(channels).unwrap_or(u8::MAX),
                channel_mask,
                high_quality,
                packet_duration_ms,
            },
            ss_encryption_enabled: EncryptionFlags(a.or(SS_ENCRYPTION_ENABLED, 0)?),
            nv_feature_flags: a.or(NV_FEATURE_FLAGS, 135)?,
            ml_feature_flags: MlFeatureFlags(a.or(ML_FEATURE_FLAGS, 0)?),
            control_protocol: a.or(RELIABLE_UDP, 1)?,
            video_qos_type: a.or(VIDEO_QOS, 5)?,
            audio_qos_type: a.or(AUDIO_QOS, 4)?,
        })
    }

    /// Writes the ANNOUNCE body a 7.1.431 client would send for this configuration: same
    /// attribute order, the fixed GFE attributes the host ignores, a space before every CRLF
    /// on `a=` lines, and `m=video <port>  ` last. `host_addr` goes into the `o=` line (clients
    /// put the host's address there). Parsing the result gives back `self`.
    pub fn to_announce(&self, host_addr: IpAddr, video_port: u16) -> Vec<u8> {
        let mut s = String::with_capacity(1800);
        let family = if host_addr.is_ipv4() { "IPv4" } else { "IPv6" };
        s.push_str("v=0\r\n");
        let _ = write!(s, "o=android 0 14 IN {family} {host_addr}\r\n");
        s.push_str("s=NVIDIA Streaming Client\r\n");
        let mut attr = |name: &str, value: u32| {
            let _ = write!(s, "a={name}:{value} \r\n");
        };
        let b = &self.bitrate;
        attr(ML_FEATURE_FLAGS, self.ml_feature_flags.0);
        attr(SS_ENCRYPTION_ENABLED, self.ss_encryption_enabled.0);
        attr(CHROMA, u32::from(self.chroma == ChromaSampling::Yuv444));
        attr(WIDTH, self.width);
        attr(HEIGHT, self.height);
        attr(FPS, self.fps);
        attr(PACKET_SIZE, self.packet_size);
        attr("x-nv-video[0].rateControlMode", 4);
        attr("x-nv-video[0].timeoutLengthMs", 7000);
        attr("x-nv-video[0].framesWithInvalidRefThreshold", 0);
        if let Some(v) = b.initial_kbps {
            attr(INITIAL_BITRATE, v);
        }
        if let Some(v) = b.initial_peak_kbps {
            attr(INITIAL_PEAK_BITRATE, v);
        }
        if let Some(v) = b.minimum_kbps {
            attr(MIN_BITRATE, v);
        }
        attr(MAX_BITRATE, b.maximum_kbps);
        if b.configured_kbps != 0 {
            attr(CONFIGURED_BITRATE, b.configured_kbps);
        }
        attr(FEC_ENABLE, u32::from(self.fec_enabled));
        attr("x-nv-vqos[0].videoQualityScoreUpdateTime", 5000);
        attr(VIDEO_QOS, self.video_qos_type);
        attr(AUDIO_QOS, self.audio_qos_type);
        attr(NV_FEATURE_FLAGS, self.nv_feature_flags);
        attr(RELIABLE_UDP, self.control_protocol);
        attr(MIN_FEC_PACKETS, self.min_required_fec_packets);
        attr("x-nv-vqos[0].bllFec.enable", 0);
        attr("x-nv-vqos[0].drc.enable", 0);
        attr("x-nv-general.enableRecoveryMode", 0);
        attr(SLICES, self.slices_per_frame);
        if self.codec != VideoCodec::Av1 {
            attr(
                "x-nv-clientSupportHevc",
                u32::from(self.codec == VideoCodec::Hevc),
            );
        }
        attr(BITSTREAM_FORMAT, self.codec.to_raw());
        attr(
            DYNAMIC_RANGE,
            u32::from(self.dynamic_range == DynamicRange::Hdr),
        );
        attr(MAX_REF_FRAMES, self.max_ref_frames);
        attr(REFRESH_RATE, self.client_refresh_rate_x100);
        attr(AUDIO_CHANNELS, u32::from(self.audio.channels));
        attr(AUDIO_MASK, self.audio.channel_mask);
        attr(
            "x-nv-audio.surround.enable",
            u32::from(self.audio.channels > 2),
        );
        attr(AUDIO_QUALITY, u32::from(self.audio.high_quality));
        attr(PACKET_DURATION, self.audio.packet_duration_ms);
        attr(CSC_MODE, self.csc.to_raw());
        s.push_str("t=0 0\r\n");
        let _ = write!(s, "m=video {video_port}  \r\n");
        s.into_bytes()
    }
}
