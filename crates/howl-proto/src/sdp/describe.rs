//! The host's DESCRIBE reply: what it offers, written for the client's substring searches.

use std::fmt::Write as _;

use super::{EncryptionFlags, SdpError};

/// Text whose presence tells the client HEVC is offered (historically the base64 prefix of an
/// HEVC VPS). Without it the client never picks HEVC, whatever `ServerCodecModeSupport` says.
const HEVC_MARKER: &str = "sprop-parameter-sets=AAAAAU";
/// Text whose presence tells the client AV1 is offered.
const AV1_MARKER: &str = "a=rtpmap:98 AV1/90000";
const AV1_SEARCH: &str = "AV1/90000";
const RFI_MARKER: &str = "x-nv-video[0].refPicInvalidation";
const FEATURE_FLAGS: &str = "x-ss-general.featureFlags";
const ENC_SUPPORTED: &str = "x-ss-general.encryptionSupported";
const ENC_REQUESTED: &str = "x-ss-general.encryptionRequested";
const SURROUND_PREFIX: &str = "a=fmtp:97 surround-params=";

/// Which video formats the host can encode. DESCRIBE advertises HEVC and AV1 with markers;
/// H.264 is the client's unconditional fallback, so it is never advertised but is still
/// checked when the client announces it. `hdr` and `yuv444` gate `dynamicRangeMode` and
/// `chromaSamplingType` in ANNOUNCE (the client picks them from `ServerCodecModeSupport`,
/// which must agree with these flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CodecSupport {
    pub h264: bool,
    pub hevc: bool,
    pub av1: bool,
    /// 10-bit HDR (HEVC Main10 / AV1 Main10). Never applies to H.264.
    pub hdr: bool,
    /// YUV 4:4:4 (HEVC RExt / AV1 High).
    pub yuv444: bool,
}

/// One Opus multistream layout as the client's decoder needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpusMultistream {
    channels: u8,
    streams: u8,
    coupled_streams: u8,
    mapping: [u8; 8],
}

impl OpusMultistream {
    /// Validates a layout: 1–8 channels, `coupled ≤ streams`, `streams + coupled ≤ 9` and one
    /// mapping entry per channel, each below `streams + coupled`. Single digits are a limit of
    /// the `surround-params` format, not of Opus.
    pub fn new(
        channels: u8,
        streams: u8,
        coupled_streams: u8,
        mapping: &[u8],
    ) -> Result<Self, SdpError> {
        if !(1..=8).contains(&channels) {
            return Err(SdpError::InvalidSurround("channel count must be 1..=8"));
        }
        if streams == 0
            || coupled_streams > streams
            || u16::from(streams) + u16::from(coupled_streams) > 9
        {
            return Err(SdpError::InvalidSurround(
                "need 1 <= coupled <= streams and streams + coupled <= 9",
            ));
        }
        if mapping.len() != usize::from(channels) {
            return Err(SdpError::InvalidSurround(
                "mapping needs one entry per channel",
            ));
        }
        // Cannot overflow: the sum was checked to be at most 9 above.
        if mapping.iter().any(|&m| m >= streams + coupled_streams) {
            return Err(SdpError::InvalidSurround(
                "mapping entry beyond the decoded channels",
            ));
        }
        let mut m = [0u8; 8];
        m[..mapping.len()].copy_from_slice(mapping);
        Ok(Self {
            channels,
            streams,
            coupled_streams,
            mapping: m,
        })
    }

    /// Output channels.
    pub fn channels(&self) -> u8 {
        self.channels
    }

    /// Opus streams.
    pub fn streams(&self) -> u8 {
        self.streams
    }

    /// Of which coupled (stereo) streams.
    pub fn coupled_streams(&self) -> u8 {
        self.coupled_streams
    }

    /// Channel mapping in the client's speaker order (FL, FR, C, LFE, BL, BR, SL, SR).
    pub fn mapping(&self) -> &[u8] {
        &self.mapping[..usize::from(self.channels)]
    }

    /// Stereo: one coupled stream.
    pub fn stereo() -> Self {
        Self {
            channels: 2,
            streams: 1,
            coupled_streams: 1,
            mapping: [0, 1, 0, 0, 0, 0, 0, 0],
        }
    }

    /// Whether the client applies its GFE "LFE listed last" rotation to the normal-quality
    /// line for this channel count (it only parses 6- and 8-channel lines).
    fn client_rotates(channels: u8) -> bool {
        channels == 6 || channels == 8
    }

    fn digits(&self, rotate: bool) -> String {
        let mut s = String::with_capacity(11);
        for d in [self.channels, self.streams, self.coupled_streams] {
            s.push(char::from(b'0' + d));
        }
        let m = self.mapping();
        if rotate && Self::client_rotates(self.channels) {
            // The client moves the last digit to index 3; advertise m0 m1 m2 m4 .. m(n-1) m3.
            let order = m[..3].iter().chain(&m[4..]).chain(&m[3..4]);
            s.extend(order.map(|&d| char::from(b'0' + d)));
        } else {
            s.extend(m.iter().map(|&d| char::from(b'0' + d)));
        }
        s
    }

    /// Parses the digits after `surround-params=` the way the client does, undoing the
    /// rotation on normal-quality lines.
    fn from_digits(digits: &[u8], channels: u8, rotated: bool) -> Option<Self> {
        let n = usize::from(channels);
        let d: Vec<u8> = digits
            .iter()
            .take(3 + n)
            .take_while(|b| b.is_ascii_digit())
            .map(|b| b - b'0')
            .collect();
        if d.len() != 3 + n || d[0] != channels {
            return None;
        }
        let mut mapping = d[3..].to_vec();
        if rotated && Self::client_rotates(channels) {
            let last = mapping.pop()?;
            mapping.insert(3, last);
        }
        Self::new(channels, d[1], d[2], &mapping).ok()
    }
}

/// The surround-params lines for one channel count: the normal-quality layout and, if the host
/// offers it, a high-quality one. The client only requests high quality
/// (`AudioQuality:1`) when a second line for the channel count exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SurroundOffer {
    pub normal: OpusMultistream,
    pub high_quality: Option<OpusMultistream>,
}

impl SurroundOffer {
    /// Stereo, both qualities one coupled stream (quality then differs only in bitrate).
    pub fn stereo() -> Self {
        Self {
            normal: OpusMultistream::stereo(),
            high_quality: Some(OpusMultistream::stereo()),
        }
    }

    /// 5.1 with identity mapping: 4 streams / 2 coupled, high quality 6 mono streams.
    pub fn surround51() -> Self {
        Self {
            normal: OpusMultistream {
                channels: 6,
                streams: 4,
                coupled_streams: 2,
                mapping: [0, 1, 2, 3, 4, 5, 0, 0],
            },
            high_quality: Some(OpusMultistream {
                channels: 6,
                streams: 6,
                coupled_streams: 0,
                mapping: [0, 1, 2, 3, 4, 5, 0, 0],
            }),
        }
    }

    /// 7.1 with identity mapping: 5 streams / 3 coupled, high quality 8 mono streams.
    pub fn surround71() -> Self {
        Self {
            normal: OpusMultistream {
                channels: 8,
                streams: 5,
                coupled_streams: 3,
                mapping: [0, 1, 2, 3, 4, 5, 6, 7],
            },
            high_quality: Some(OpusMultistream {
                channels: 8,
                streams: 8,
                coupled_streams: 0,
                mapping: [0, 1, 2, 3, 4, 5, 6, 7],
            }),
        }
    }
}

/// What the host offers in its DESCRIBE reply (decided at `/launch`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostOffer {
    pub codecs: CodecSupport,
    /// `x-ss-general.featureFlags`: 0x01 pen/touch events, 0x02 controller touch events.
    pub feature_flags: u32,
    /// `SS_ENC_*` bits the host can do.
    pub encryption_supported: EncryptionFlags,
    /// `SS_ENC_*` bits the host asks for; the client then enables them even if its user
    /// opted out. Must be a subset of `encryption_supported`.
    pub encryption_requested: EncryptionFlags,
    /// Advertise reference-picture invalidation. Only set when the encoder implements RFI.
    pub ref_pic_invalidation: bool,
    /// One entry per channel count accepted. 7.1 without an entry fails on the client.
    pub surround: Vec<SurroundOffer>,
}

impl HostOffer {
    /// The offer for `channels`, if any.
    pub fn surround_for(&self, channels: u8) -> Option<&SurroundOffer> {
        self.surround.iter().find(|s| s.normal.channels == channels)
    }

    /// Stereo, 5.1 and 7.1 in both qualities.
    pub fn default_surround() -> Vec<SurroundOffer> {
        vec![
            SurroundOffer::stereo(),
            SurroundOffer::surround51(),
            SurroundOffer::surround71(),
        ]
    }

    /// The DESCRIBE body: `\n`-terminated lines, numbers in plain decimal (the client reads
    /// them with `strtoul(.., 0)`, so a leading zero would mean octal). For each channel count
    /// the normal-quality line precedes the high-quality one, because the client takes the
    /// first match as normal and the second as high quality.
    pub fn describe_body(&self) -> String {
        let mut s = String::with_capacity(512);
        let _ = writeln!(s, "a={FEATURE_FLAGS}:{}", self.feature_flags);
        let _ = writeln!(s, "a={ENC_SUPPORTED}:{}", self.encryption_supported.0);
        let _ = writeln!(s, "a={ENC_REQUESTED}:{}", self.encryption_requested.0);
        if self.ref_pic_invalidation {
            let _ = writeln!(s, "a={RFI_MARKER}:1");
        }
        if self.codecs.hevc {
            let _ = writeln!(s, "{HEVC_MARKER}");
        }
        if self.codecs.av1 {
            let _ = writeln!(s, "{AV1_MARKER}");
        }
        for offer in &self.surround {
            let _ = writeln!(s, "{SURROUND_PREFIX}{}", offer.normal.digits(true));
            if let Some(hq) = &offer.high_quality {
                let _ = writeln!(s, "{SURROUND_PREFIX}{}", hq.digits(false));
            }
        }
        s
    }
}

/// The DESCRIBE reply as a Moonlight client reads it (substring searches only). Used by our
/// test client; never fails, like the real client, which treats absence as "not offered".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DescribeInfo {
    pub hevc: bool,
    pub av1: bool,
    pub ref_pic_invalidation: bool,
    pub feature_flags: Option<u32>,
    pub encryption_supported: Option<EncryptionFlags>,
    pub encryption_requested: Option<EncryptionFlags>,
    /// 5.1 and 7.1 layouts found (the client never parses stereo lines).
    pub surround: Vec<SurroundOffer>,
}

impl DescribeInfo {
    /// Reads a DESCRIBE body with the client's searches.
    pub fn parse(body: &[u8]) -> Self {
        let surround = [6u8, 8]
            .into_iter()
            .filter_map(|ch| {
                let prefix = format!("{SURROUND_PREFIX}{ch}");
                let first = find(body, prefix.as_bytes())?;
                let after_first = first + prefix.len();
                let digits = &body[first + SURROUND_PREFIX.len()..];
                let normal = OpusMultistream::from_digits(digits, ch, true)?;
                let high_quality = find(&body[after_first..], prefix.as_bytes()).and_then(|p| {
                    let start = after_first + p + SURROUND_PREFIX.len();
                    OpusMultistream::from_digits(&body[start..], ch, false)
                });
                Some(SurroundOffer {
                    normal,
                    high_quality,
                })
            })
            .collect();
        Self {
            hevc: find(body, HEVC_MARKER.as_bytes()).is_some(),
            av1: find(body, AV1_SEARCH.as_bytes()).is_some(),
            ref_pic_invalidation: find(body, RFI_MARKER.as_bytes()).is_some(),
            feature_flags: number_after(body, FEATURE_FLAGS),
            encryption_supported: number_after(body, ENC_SUPPORTED).map(EncryptionFlags),
            encryption_requested: number_after(body, ENC_REQUESTED).map(EncryptionFlags),
            surround,
        }
    }

    /// The layouts the client would use for `channels`; stereo is fixed in the client.
    pub fn surround_for(&self, channels: u8) -> Option<SurroundOffer> {
        if channels == 2 {
            return Some(SurroundOffer {
                normal: OpusMultistream::stereo(),
                high_quality: None,
            });
        }
        self.surround
            .iter()
            .find(|s| s.normal.channels == channels)
            .copied()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `strtoul(value, 0)` right after the first `:` following `name`: leading blanks skipped,
/// `0x` hex accepted, otherwise decimal (octal is never produced by us and not emulated).
fn number_after(body: &[u8], name: &str) -> Option<u32> {
    let at = find(body, name.as_bytes())? + name.len();
    let colon = body[at..].iter().position(|&b| b == b':')? + at + 1;
    let rest = &body[colon..];
    let rest = &rest[rest
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(rest.len())..];
    let (digits, radix) = match rest {
        [b'0', b'x' | b'X', tail @ ..] => (tail, 16),
        _ => (rest, 10),
    };
    let end = digits
        .iter()
        .position(|b| !(*b as char).is_digit(radix))
        .unwrap_or(digits.len());
    let text = std::str::from_utf8(&digits[..end]).ok()?;
    u32::from_str_radix(text, radix).ok()
}
