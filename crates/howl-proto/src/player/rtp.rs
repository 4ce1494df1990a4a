//! RTP (RFC 3550) packets for standard players: H.264 (RFC 6184), HEVC (RFC 7798) and Opus
//! (RFC 7587) payloaders.
//!
//! Every payloader numbers its own packets and stamps them on the media clock of its payload
//! format. The first packet carries exactly the caller's `initial_sequence` and
//! `initial_timestamp` (the timestamp clock is anchored at the first presentation time), so the
//! values announced in the PLAY response's `RTP-Info` are the ones the player will see.

use std::time::Duration;

/// The default largest RTP packet (header included): 1400 bytes leave room for IPv6, UDP and a
/// VPN or PPPoE header inside a 1500-byte Ethernet MTU, and also keep interleaved TCP frames
/// small enough that audio is not stuck behind a large video burst.
pub const DEFAULT_MTU: usize = 1400;
/// Bytes of a fixed RTP header without CSRCs or extensions.
pub const RTP_HEADER_LEN: usize = 12;
/// Smallest MTU a payloader accepts: the header, the 3-byte HEVC FU overhead and one byte of
/// payload. Real MTUs are far larger; this only keeps the fragmentation loop productive.
pub const MIN_MTU: usize = RTP_HEADER_LEN + 3 + 1;
/// RTP clock of every video payload format (RFC 6184 §8.2.1, RFC 7798 §7.1).
pub const VIDEO_CLOCK_RATE: u32 = 90_000;
/// RTP clock of Opus, whatever the real sampling rate (RFC 7587 §4.1).
pub const OPUS_CLOCK_RATE: u32 = 48_000;

/// H.264 NAL unit types the payloader looks at.
const H264_IDR: u8 = 5;
const H264_SPS: u8 = 7;
const H264_PPS: u8 = 8;
const H264_AUD: u8 = 9;
const H264_FU_A: u8 = 28;
/// HEVC NAL unit types the payloader looks at.
const HEVC_IRAP_FIRST: u8 = 16;
const HEVC_IRAP_LAST: u8 = 23;
const HEVC_VPS: u8 = 32;
const HEVC_SPS: u8 = 33;
const HEVC_PPS: u8 = 34;
const HEVC_AUD: u8 = 35;
const HEVC_FU: u8 = 49;

/// The fixed RTP header (version 2, no padding, extension or CSRCs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtpHeader {
    /// Payload type, 0..=127.
    pub payload_type: u8,
    /// RFC 6184/7798: last packet of an access unit. Opus: always clear.
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// Appends the 12 header bytes to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(0x80);
        out.push(u8::from(self.marker) << 7 | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
    }

    /// Parses the header of an RTP packet and returns it with the payload (CSRCs, extension
    /// and padding removed). `None` if the bytes are not a well-formed version-2 packet.
    pub fn parse(packet: &[u8]) -> Option<(Self, &[u8])> {
        if packet.len() < RTP_HEADER_LEN || packet[0] >> 6 != 2 {
            return None;
        }
        let csrcs = usize::from(packet[0] & 0x0f);
        let mut start = RTP_HEADER_LEN + 4 * csrcs;
        if packet[0] & 0x10 != 0 {
            let ext = packet.get(start..start + 4)?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        }
        let mut end = packet.len();
        if packet[0] & 0x20 != 0 {
            end = end.checked_sub(usize::from(*packet.last()?))?;
        }
        let payload = packet.get(start..end)?;
        let header = Self {
            payload_type: packet[1] & 0x7f,
            marker: packet[1] & 0x80 != 0,
            sequence: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        };
        Some((header, payload))
    }
}

/// Per-stream RTP identity, drawn at random by the caller (this crate has no RNG). RFC 3550
/// wants SSRC, first sequence number and first timestamp random so that streams cannot be
/// confused or predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtpParams {
    pub ssrc: u32,
    pub initial_sequence: u16,
    pub initial_timestamp: u32,
}

/// Invalid payloader settings: a bug in the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpConfigError {
    #[error("MTU {mtu} is below the minimum of {min}")]
    MtuTooSmall { mtu: usize, min: usize },
    #[error("payload type {0} is not 0..=127")]
    BadPayloadType(u8),
    /// No RTP payload format here for this codec (AV1: RFC 9628 is not implemented, and the
    /// players this egress serves do not take it).
    #[error("{} cannot be sent over RTP here", .0.name())]
    UnsupportedCodec(VideoCodec),
}

/// Counters a sender report needs (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Packets sent, wrapping at 2^32.
    pub packet_count: u32,
    /// Payload octets (headers excluded) sent, wrapping at 2^32.
    pub octet_count: u32,
}

/// Numbering, timestamping and counting shared by the payloaders.
#[derive(Debug, Clone)]
struct RtpStream {
    params: RtpParams,
    payload_type: u8,
    clock_rate: u32,
    mtu: usize,
    next_sequence: u16,
    /// Presentation time of the first packetized unit: RTP time `initial_timestamp`.
    anchor: Option<Duration>,
    stats: SenderStats,
}

impl RtpStream {
    fn new(
        params: RtpParams,
        payload_type: u8,
        clock_rate: u32,
        mtu: usize,
    ) -> Result<Self, RtpConfigError> {
        if payload_type > 127 {
            return Err(RtpConfigError::BadPayloadType(payload_type));
        }
        if mtu < MIN_MTU {
            return Err(RtpConfigError::MtuTooSmall { mtu, min: MIN_MTU });
        }
        Ok(Self {
            params,
            payload_type,
            clock_rate,
            mtu,
            next_sequence: params.initial_sequence,
            anchor: None,
            stats: SenderStats::default(),
        })
    }

    /// The RTP timestamp of `pts`, anchoring the clock on first use. Earlier times than the
    /// anchor map backwards (wrapping), as RTP timestamps are modular anyway.
    fn timestamp(&mut self, pts: Duration) -> u32 {
        let anchor = *self.anchor.get_or_insert(pts);
        self.timestamp_from(anchor, pts)
    }

    fn timestamp_from(&self, anchor: Duration, pts: Duration) -> u32 {
        let delta_ns = pts.as_nanos() as i128 - anchor.as_nanos() as i128;
        let ticks = delta_ns * i128::from(self.clock_rate) / 1_000_000_000;
        // Truncation to 32 bits is the modular RTP timestamp arithmetic we want.
        self.params.initial_timestamp.wrapping_add(ticks as u32)
    }

    /// Appends one packet made of `header_bytes` followed by `payload` to `out`.
    fn emit(
        &mut self,
        out: &mut Vec<Vec<u8>>,
        marker: bool,
        timestamp: u32,
        prefix: &[u8],
        payload: &[u8],
    ) {
        let mut pkt = Vec::with_capacity(RTP_HEADER_LEN + prefix.len() + payload.len());
        RtpHeader {
            payload_type: self.payload_type,
            marker,
            sequence: self.next_sequence,
            timestamp,
            ssrc: self.params.ssrc,
        }
        .write_to(&mut pkt);
        pkt.extend_from_slice(prefix);
        pkt.extend_from_slice(payload);
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.stats.packet_count = self.stats.packet_count.wrapping_add(1);
        let octets = (prefix.len() + payload.len()) as u32;
        self.stats.octet_count = self.stats.octet_count.wrapping_add(octets);
        out.push(pkt);
    }

    fn max_payload(&self) -> usize {
        self.mtu - RTP_HEADER_LEN
    }
}

/// Read access common to every payloader, for RTCP sender reports and `RTP-Info`.
macro_rules! stream_accessors {
    () => {
        /// The SSRC, sequence and timestamp origin this payloader was built with.
        pub fn params(&self) -> RtpParams {
            self.stream.params
        }

        /// The sequence number the next packet will carry.
        pub fn next_sequence(&self) -> u16 {
            self.stream.next_sequence
        }

        /// Packets and payload octets sent so far.
        pub fn stats(&self) -> SenderStats {
            self.stream.stats
        }

        /// The RTP timestamp that corresponds to presentation time `pts`, for the RTP field
        /// of a sender report; `None` before the first packet anchored the clock (RFC 3550
        /// sends no sender report before data anyway).
        pub fn timestamp_at(&self, pts: Duration) -> Option<u32> {
            self.stream
                .anchor
                .map(|anchor| self.stream.timestamp_from(anchor, pts))
        }
    };
}

/// Splits an Annex-B byte stream into NAL units (without start codes). Bytes before the first
/// start code count as a NAL unit, so a stream that lacks the leading start code still works;
/// zero bytes before a start code (the `zero_byte` of a 4-byte start code, trailing zeros) are
/// dropped; empty units are skipped.
pub fn split_annex_b(data: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    AnnexB { rest: data }
}

#[derive(Debug)]
struct AnnexB<'a> {
    rest: &'a [u8],
}

/// Position of the next `00 00 01` in `data`.
fn find_start_code(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1])
}

impl<'a> Iterator for AnnexB<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (unit, rest) = match find_start_code(self.rest) {
                Some(p) => (&self.rest[..p], &self.rest[p + 3..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            let end = unit.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            if end > 0 {
                return Some(&unit[..end]);
            }
        }
    }
}

pub use crate::codec::VideoCodec;

/// The NAL-unit syntax of the payload formats written here: RFC 6184 (H.264) and RFC 7798
/// (HEVC). AV1 has no NAL units and no payloader here ([`RtpConfigError::UnsupportedCodec`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Nal {
    H264,
    Hevc,
}

impl Nal {
    fn of(codec: VideoCodec) -> Option<Nal> {
        match codec {
            VideoCodec::H264 => Some(Nal::H264),
            VideoCodec::Hevc => Some(Nal::Hevc),
            VideoCodec::Av1 => None,
        }
    }
}

/// Decoder parameter sets (NAL units without start codes) for the SDP `sprop-*` parameters
/// and for in-band repetition before keyframes. `vps` is HEVC only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ParameterSets {
    pub vps: Option<Vec<u8>>,
    pub sps: Option<Vec<u8>>,
    pub pps: Option<Vec<u8>>,
}

impl ParameterSets {
    /// The parameter sets found in an Annex-B access unit (the last of each kind wins).
    /// None for a codec without NAL units (AV1).
    pub fn from_access_unit(codec: VideoCodec, access_unit: &[u8]) -> Self {
        let mut sets = Self::default();
        let Some(fmt) = Nal::of(codec) else {
            return sets;
        };
        for nal in split_annex_b(access_unit) {
            sets.absorb(fmt, nal);
        }
        sets
    }

    /// Whether every set the codec needs is present.
    pub fn is_complete(&self, codec: VideoCodec) -> bool {
        let base = self.sps.is_some() && self.pps.is_some();
        match codec {
            VideoCodec::H264 => base,
            VideoCodec::Hevc => base && self.vps.is_some(),
            VideoCodec::Av1 => false,
        }
    }

    /// Records `nal` if it is a parameter set; returns whether it was one.
    fn absorb(&mut self, codec: Nal, nal: &[u8]) -> bool {
        let slot = match (codec, nal_type(codec, nal)) {
            (Nal::H264, H264_SPS) | (Nal::Hevc, HEVC_SPS) => &mut self.sps,
            (Nal::H264, H264_PPS) | (Nal::Hevc, HEVC_PPS) => &mut self.pps,
            (Nal::Hevc, HEVC_VPS) => &mut self.vps,
            _ => return false,
        };
        if slot.as_deref() != Some(nal) {
            *slot = Some(nal.to_vec());
        }
        true
    }
}

/// The NAL unit type of a (non-empty) NAL unit; 0 for an empty one.
fn nal_type(codec: Nal, nal: &[u8]) -> u8 {
    match (codec, nal.first()) {
        (_, None) => 0,
        (Nal::H264, Some(b)) => b & 0x1f,
        (Nal::Hevc, Some(b)) => (b >> 1) & 0x3f,
    }
}

fn is_access_unit_delimiter(codec: Nal, nal: &[u8]) -> bool {
    let t = nal_type(codec, nal);
    match codec {
        Nal::H264 => t == H264_AUD,
        Nal::Hevc => t == HEVC_AUD,
    }
}

fn is_keyframe_nal(codec: Nal, nal: &[u8]) -> bool {
    let t = nal_type(codec, nal);
    match codec {
        Nal::H264 => t == H264_IDR,
        Nal::Hevc => (HEVC_IRAP_FIRST..=HEVC_IRAP_LAST).contains(&t),
    }
}

/// Packetizes Annex-B access units of H.264 (RFC 6184, packetization-mode 1: single NAL unit
/// packets and FU-A) or HEVC (RFC 7798: single NAL unit packets and FU).
///
/// Parameter sets seen in the stream, or given with
/// [`set_parameter_sets`](Self::set_parameter_sets), are remembered and sent in-band before
/// every keyframe that does not carry them itself: a player that joins mid-stream, or whose
/// SDP lacked `sprop-*`, can then start decoding at the next keyframe.
#[derive(Debug, Clone)]
pub struct VideoPayloader {
    codec: VideoCodec,
    nal: Nal,
    stream: RtpStream,
    parameter_sets: ParameterSets,
}

/// An H.264 payloader ([`VideoPayloader`] for [`VideoCodec::H264`]).
pub type H264Payloader = VideoPayloader;
/// An HEVC payloader ([`VideoPayloader`] for [`VideoCodec::Hevc`]).
pub type HevcPayloader = VideoPayloader;

impl VideoPayloader {
    /// A payloader for `codec` with payload type `payload_type` and packets of at most `mtu`
    /// bytes.
    pub fn new(
        codec: VideoCodec,
        payload_type: u8,
        params: RtpParams,
        mtu: usize,
    ) -> Result<Self, RtpConfigError> {
        let nal = Nal::of(codec).ok_or(RtpConfigError::UnsupportedCodec(codec))?;
        Ok(Self {
            codec,
            nal,
            stream: RtpStream::new(params, payload_type, VIDEO_CLOCK_RATE, mtu)?,
            parameter_sets: ParameterSets::default(),
        })
    }

    /// An H.264 payloader.
    pub fn h264(payload_type: u8, params: RtpParams, mtu: usize) -> Result<Self, RtpConfigError> {
        Self::new(VideoCodec::H264, payload_type, params, mtu)
    }

    /// An HEVC payloader.
    pub fn hevc(payload_type: u8, params: RtpParams, mtu: usize) -> Result<Self, RtpConfigError> {
        Self::new(VideoCodec::Hevc, payload_type, params, mtu)
    }

    stream_accessors!();

    /// The codec this payloader writes.
    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// The parameter sets known so far (for the SDP).
    pub fn parameter_sets(&self) -> &ParameterSets {
        &self.parameter_sets
    }

    /// Seeds the parameter sets, e.g. from the encoder's out-of-band codec data.
    pub fn set_parameter_sets(&mut self, sets: ParameterSets) {
        self.parameter_sets = sets;
    }

    /// Packetizes one Annex-B access unit presented at `pts` (any monotonic media clock; only
    /// differences matter). Every packet carries the same timestamp and the last one the
    /// marker bit. An access unit without NAL units yields no packets.
    pub fn packetize(&mut self, access_unit: &[u8], pts: Duration) -> Vec<Vec<u8>> {
        let codec = self.nal;
        let nals: Vec<&[u8]> = split_annex_b(access_unit).collect();
        let mut carried = ParameterSets::default();
        let mut keyframe = false;
        for nal in &nals {
            if carried.absorb(codec, nal) {
                self.parameter_sets.absorb(codec, nal);
            }
            keyframe |= is_keyframe_nal(codec, nal);
        }
        // Parameter sets the access unit lacks but we know, sent before it in decoding order.
        let missing: Vec<Vec<u8>> = if keyframe {
            let known = &self.parameter_sets;
            [
                (&known.vps, &carried.vps),
                (&known.sps, &carried.sps),
                (&known.pps, &carried.pps),
            ]
            .into_iter()
            .filter_map(|(k, c)| if c.is_none() { k.clone() } else { None })
            .collect()
        } else {
            Vec::new()
        };
        // An access unit delimiter must stay first (H.264 7.4.1.2.3, HEVC 7.4.2.4.4), so the
        // sets go right after any leading delimiters.
        let after_aud = nals
            .iter()
            .take_while(|n| is_access_unit_delimiter(codec, n))
            .count();
        let all: Vec<&[u8]> = nals[..after_aud]
            .iter()
            .copied()
            .chain(missing.iter().map(Vec::as_slice))
            .chain(nals[after_aud..].iter().copied())
            .collect();
        let timestamp = self.stream.timestamp(pts);
        let mut out = Vec::new();
        for (i, nal) in all.iter().enumerate() {
            self.push_nal(&mut out, nal, timestamp, i + 1 == all.len());
        }
        out
    }

    fn push_nal(&mut self, out: &mut Vec<Vec<u8>>, nal: &[u8], timestamp: u32, last: bool) {
        let max = self.stream.max_payload();
        if nal.len() <= max {
            self.stream.emit(out, last, timestamp, &[], nal);
            return;
        }
        // Fragmentation: the NAL header is replaced by the FU indicator / payload header and
        // the FU header, which carry its type.
        let (header_len, fu_type, prefix_base): (usize, u8, [u8; 2]) = match self.nal {
            Nal::H264 => (1, nal[0] & 0x1f, [(nal[0] & 0xe0) | H264_FU_A, 0]),
            Nal::Hevc => {
                if nal.len() < 2 {
                    // A one-byte HEVC "NAL" cannot exceed the MTU; unreachable but harmless.
                    self.stream.emit(out, last, timestamp, &[], nal);
                    return;
                }
                (
                    2,
                    (nal[0] >> 1) & 0x3f,
                    [(nal[0] & 0x81) | (HEVC_FU << 1), nal[1]],
                )
            }
        };
        let prefix_len = header_len + 1;
        let body = &nal[header_len..];
        let chunk = max - prefix_len;
        let count = body.len().div_ceil(chunk);
        for (i, part) in body.chunks(chunk).enumerate() {
            let start = if i == 0 { 0x80 } else { 0 };
            let end = if i + 1 == count { 0x40 } else { 0 };
            let fu_header = start | end | fu_type;
            let prefix: &[u8] = match self.nal {
                Nal::H264 => &[prefix_base[0], fu_header],
                Nal::Hevc => &[prefix_base[0], prefix_base[1], fu_header],
            };
            self.stream
                .emit(out, last && i + 1 == count, timestamp, prefix, part);
        }
    }
}

/// Packetizes Opus (RFC 7587): one Opus packet per RTP packet, 48 kHz timestamps, marker
/// clear (no DTX talkspurts in a game stream).
#[derive(Debug, Clone)]
pub struct OpusPayloader {
    stream: RtpStream,
}

impl OpusPayloader {
    /// A payloader with payload type `payload_type`; `mtu` bounds the packet size.
    pub fn new(payload_type: u8, params: RtpParams, mtu: usize) -> Result<Self, RtpConfigError> {
        Ok(Self {
            stream: RtpStream::new(params, payload_type, OPUS_CLOCK_RATE, mtu)?,
        })
    }

    stream_accessors!();

    /// One RTP packet for an Opus packet presented at `pts`; `None` if the Opus packet does
    /// not fit the MTU (Opus packets of a real-time encoder are a few hundred bytes at most;
    /// splitting one is not allowed, so it is dropped).
    pub fn packetize(&mut self, opus_packet: &[u8], pts: Duration) -> Option<Vec<u8>> {
        if opus_packet.len() > self.stream.max_payload() {
            return None;
        }
        let timestamp = self.stream.timestamp(pts);
        let mut out = Vec::with_capacity(1);
        self.stream
            .emit(&mut out, false, timestamp, &[], opus_packet);
        out.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: RtpParams = RtpParams {
        ssrc: 0x1234_5678,
        initial_sequence: 65_530,
        initial_timestamp: 0xffff_ff00,
    };

    /// A tiny RFC 6184/7798 depayloader: reassembles NAL units from single and FU packets and
    /// groups them into access units by the marker bit. Returns Annex-B access units with
    /// 4-byte start codes, and checks sequence continuity and per-AU constant timestamps.
    fn depayload(codec: VideoCodec, packets: &[Vec<u8>]) -> Vec<(u32, Vec<Vec<u8>>)> {
        let mut aus = Vec::new();
        let mut current: Vec<Vec<u8>> = Vec::new();
        let mut fu: Option<Vec<u8>> = None;
        let mut last_seq: Option<u16> = None;
        let mut ts: Option<u32> = None;
        for pkt in packets {
            let (h, payload) = RtpHeader::parse(pkt).expect("valid RTP");
            if let Some(prev) = last_seq {
                assert_eq!(h.sequence, prev.wrapping_add(1), "sequence continuity");
            }
            last_seq = Some(h.sequence);
            if let Some(t) = ts {
                assert_eq!(t, h.timestamp, "one timestamp per access unit");
            }
            ts = Some(h.timestamp);
            let codec = Nal::of(codec).expect("a NAL codec");
            let (ty, hdr_len) = match codec {
                Nal::H264 => (payload[0] & 0x1f, 1),
                Nal::Hevc => ((payload[0] >> 1) & 0x3f, 2),
            };
            let is_fu = match codec {
                Nal::H264 => ty == H264_FU_A,
                Nal::Hevc => ty == HEVC_FU,
            };
            if is_fu {
                let fu_header = payload[hdr_len];
                let fu_type = match codec {
                    Nal::H264 => fu_header & 0x1f,
                    Nal::Hevc => fu_header & 0x3f,
                };
                if codec == Nal::H264 {
                    assert_eq!(fu_header & 0x20, 0, "FU-A reserved bit");
                }
                let data = &payload[hdr_len + 1..];
                if fu_header & 0x80 != 0 {
                    assert!(fu.is_none(), "start inside a fragment");
                    let header = match codec {
                        Nal::H264 => vec![(payload[0] & 0xe0) | fu_type],
                        Nal::Hevc => vec![(payload[0] & 0x81) | (fu_type << 1), payload[1]],
                    };
                    fu = Some(header);
                }
                let buf = fu.as_mut().expect("fragment after start");
                buf.extend_from_slice(data);
                if fu_header & 0x40 != 0 {
                    current.push(fu.take().expect("fragment"));
                } else {
                    assert!(!h.marker, "marker only on the last packet");
                }
            } else {
                assert!(fu.is_none(), "single NAL inside a fragment");
                current.push(payload.to_vec());
            }
            assert!(pkt.len() <= 100, "packet {} above MTU", pkt.len());
            if h.marker {
                aus.push((h.timestamp, std::mem::take(&mut current)));
                ts = None;
            }
        }
        assert!(
            current.is_empty() && fu.is_none(),
            "trailing packets without marker"
        );
        aus
    }

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in nals {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(n);
        }
        out
    }

    fn pattern(header: &[u8], len: usize) -> Vec<u8> {
        let mut v = header.to_vec();
        v.extend((0..len).map(|i| (i % 251) as u8 | 1));
        v
    }

    #[test]
    fn annex_b_split() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 0, 0, 1,
        ];
        let nals: Vec<&[u8]> = split_annex_b(&data).collect();
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65]]);
        // No leading start code: the bytes are one NAL unit.
        assert_eq!(
            split_annex_b(&[0x41, 9]).collect::<Vec<_>>(),
            vec![&[0x41, 9][..]]
        );
        assert_eq!(split_annex_b(&[0, 0, 1, 0, 0, 1]).count(), 0);
    }

    #[test]
    fn h264_round_trip_fu_a_and_markers() {
        let sps = [0x67, 0x42, 0xe0, 0x1f, 0xaa];
        let pps = [0x68, 0xce, 0x38, 0x80];
        let idr = pattern(&[0x65], 1000);
        let p_small = pattern(&[0x41], 30);
        let p_exact = pattern(&[0x41], 100 - RTP_HEADER_LEN - 1);
        let mut pay = VideoPayloader::h264(96, PARAMS, 100).unwrap();
        let mut packets = Vec::new();
        let au1 = annex_b(&[&sps, &pps, &idr]);
        packets.extend(pay.packetize(&au1, Duration::from_millis(1000)));
        packets.extend(pay.packetize(&annex_b(&[&p_small, &p_exact]), Duration::from_millis(1016)));
        // A keyframe without parameter sets gets them in-band.
        packets.extend(pay.packetize(&annex_b(&[&idr]), Duration::from_millis(1033)));
        // ...after a leading access unit delimiter.
        let aud = [0x09, 0xf0];
        packets.extend(pay.packetize(&annex_b(&[&aud, &idr]), Duration::from_millis(1050)));
        let aus = depayload(VideoCodec::H264, &packets);
        assert_eq!(aus.len(), 4);
        assert_eq!(
            aus[3].1,
            vec![aud.to_vec(), sps.to_vec(), pps.to_vec(), idr.clone()]
        );
        assert_eq!(aus[0].1, vec![sps.to_vec(), pps.to_vec(), idr.clone()]);
        assert_eq!(aus[1].1, vec![p_small.clone(), p_exact.clone()]);
        assert_eq!(aus[2].1, vec![sps.to_vec(), pps.to_vec(), idr.clone()]);
        // Timestamps: anchored at the first AU, 90 kHz, wrapping past 2^32.
        assert_eq!(aus[0].0, PARAMS.initial_timestamp);
        assert_eq!(aus[1].0, PARAMS.initial_timestamp.wrapping_add(1440));
        assert_eq!(aus[2].0, PARAMS.initial_timestamp.wrapping_add(2970));
        // Sequence numbers start where asked and wrapped (checked by depayload continuity).
        let (first, _) = RtpHeader::parse(&packets[0]).unwrap();
        assert_eq!(first.sequence, 65_530);
        assert_eq!(first.ssrc, PARAMS.ssrc);
        assert_eq!(first.payload_type, 96);
        assert_eq!(
            pay.next_sequence(),
            65_530u16.wrapping_add(packets.len() as u16)
        );
        assert_eq!(pay.stats().packet_count as usize, packets.len());
        let octets: usize = packets.iter().map(|p| p.len() - RTP_HEADER_LEN).sum();
        assert_eq!(pay.stats().octet_count as usize, octets);
        assert_eq!(pay.parameter_sets().sps.as_deref(), Some(&sps[..]));
        assert_eq!(
            pay.timestamp_at(Duration::from_millis(2000)),
            Some(PARAMS.initial_timestamp.wrapping_add(90_000))
        );
        // The exact-fit NAL went out as a single packet, the IDR as FU-A with NRI kept.
        assert!(packets.iter().any(|p| p.len() == 100 && p[12] == 0x41));
        let fu_start = packets.iter().find(|p| p[12] & 0x1f == 28).unwrap();
        assert_eq!(fu_start[12], 0x60 | 28);
        assert_eq!(fu_start[13], 0x80 | 5);
    }

    #[test]
    fn hevc_round_trip_fu_and_vps() {
        let vps = [0x40, 0x01, 0x0c];
        let sps = [0x42, 0x01, 0x01, 0x60];
        let pps = [0x44, 0x01, 0xc1];
        let idr = pattern(&[0x26, 0x01], 700); // IDR_W_RADL (19)
        let trail = pattern(&[0x02, 0x01], 150); // TRAIL_R (1)
        let mut pay = VideoPayloader::hevc(96, PARAMS, 100).unwrap();
        pay.set_parameter_sets(ParameterSets {
            vps: Some(vps.to_vec()),
            sps: Some(sps.to_vec()),
            pps: Some(pps.to_vec()),
        });
        let mut packets = pay.packetize(&annex_b(&[&idr]), Duration::ZERO);
        packets.extend(pay.packetize(&annex_b(&[&trail]), Duration::from_millis(20)));
        let aus = depayload(VideoCodec::Hevc, &packets);
        assert_eq!(
            aus[0].1,
            vec![vps.to_vec(), sps.to_vec(), pps.to_vec(), idr.clone()]
        );
        assert_eq!(aus[1].1, vec![trail.clone()]);
        let fu = packets.iter().find(|p| (p[12] >> 1) & 0x3f == 49).unwrap();
        assert_eq!(fu[13], 0x01, "LayerId/TID copied");
        assert_eq!(fu[14], 0x80 | 19);
        let sets =
            ParameterSets::from_access_unit(VideoCodec::Hevc, &annex_b(&[&vps, &sps, &pps, &idr]));
        assert!(sets.is_complete(VideoCodec::Hevc));
        assert!(
            !ParameterSets::from_access_unit(VideoCodec::Hevc, &annex_b(&[&sps, &pps]))
                .is_complete(VideoCodec::Hevc)
        );
    }

    #[test]
    fn opus_packets() {
        let mut pay = OpusPayloader::new(97, PARAMS, 100).unwrap();
        let a = pay
            .packetize(&[1, 2, 3], Duration::from_millis(500))
            .unwrap();
        let b = pay.packetize(&[4], Duration::from_millis(510)).unwrap();
        let (ha, pa) = RtpHeader::parse(&a).unwrap();
        let (hb, pb) = RtpHeader::parse(&b).unwrap();
        assert_eq!((pa, pb), (&[1, 2, 3][..], &[4][..]));
        assert_eq!(hb.timestamp.wrapping_sub(ha.timestamp), 480);
        assert_eq!(hb.sequence, ha.sequence.wrapping_add(1));
        assert!(!ha.marker && ha.payload_type == 97);
        assert!(pay.packetize(&[0; 89], Duration::ZERO).is_none());
    }

    #[test]
    fn config_and_parse_edges() {
        assert_eq!(
            VideoPayloader::h264(96, PARAMS, 10).unwrap_err(),
            RtpConfigError::MtuTooSmall {
                mtu: 10,
                min: MIN_MTU
            }
        );
        assert!(OpusPayloader::new(128, PARAMS, DEFAULT_MTU).is_err());
        assert!(RtpHeader::parse(&[0x80; 11]).is_none());
        // Padding longer than the packet, extension past the end.
        let mut p = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200];
        assert!(RtpHeader::parse(&p).is_none());
        p[0] = 0x90;
        assert!(RtpHeader::parse(&p).is_none());
        let mut pay = VideoPayloader::h264(96, PARAMS, DEFAULT_MTU).unwrap();
        assert!(pay.packetize(&[0, 0, 1], Duration::ZERO).is_empty());
    }

    #[test]
    fn av1_is_refused_with_a_typed_error_not_sent_as_something_else() {
        assert_eq!(
            VideoPayloader::new(VideoCodec::Av1, 96, PARAMS, 1200).err(),
            Some(RtpConfigError::UnsupportedCodec(VideoCodec::Av1))
        );
        assert!(
            !ParameterSets::from_access_unit(VideoCodec::Av1, &[0, 0, 1, 0x67])
                .is_complete(VideoCodec::Av1)
        );
    }
}
