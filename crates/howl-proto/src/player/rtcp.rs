//! RTCP (RFC 3550 §6): sender reports out, receiver reports in.
//!
//! Players line audio up with video through the sender reports: each maps one RTP timestamp of
//! its stream to a wallclock (NTP) instant, and the player aligns the two streams on that
//! common clock. The reports that come back are only keep-alives here; their loss figures are
//! exposed for metrics.

use std::time::Duration;

use super::rtp::SenderStats;

/// RTCP packet types.
const PT_SR: u8 = 200;
const PT_RR: u8 = 201;
const PT_SDES: u8 = 202;
const PT_BYE: u8 = 203;
/// SDES item type CNAME.
const SDES_CNAME: u8 = 1;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;
/// Bytes of one report block.
const REPORT_BLOCK_LEN: usize = 24;
/// CNAMEs are at most 255 bytes (the SDES length field).
const MAX_CNAME: usize = 255;

/// A 64-bit NTP timestamp: seconds since 1900 in the high word, binary fraction in the low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NtpTime(pub u64);

impl NtpTime {
    /// The NTP time of a wallclock instant given as time since the Unix epoch (the caller
    /// reads the clock: `SystemTime::now().duration_since(UNIX_EPOCH)`).
    pub fn from_unix(since_epoch: Duration) -> Self {
        let secs = since_epoch.as_secs().wrapping_add(NTP_UNIX_OFFSET_SECS);
        let frac = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
        Self(secs << 32 | frac)
    }

    /// The middle 32 bits, as echoed in receiver reports' `LSR` field.
    pub fn middle32(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// What a sender report says about one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    /// Wallclock at the moment described.
    pub ntp: NtpTime,
    /// The RTP timestamp of the same moment on this stream's media clock.
    pub rtp_timestamp: u32,
    pub stats: SenderStats,
}

impl SenderReport {
    /// Appends the 28-byte SR packet (no report blocks: we receive no media).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(0x80);
        out.push(PT_SR);
        out.extend_from_slice(&6u16.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.ntp.0.to_be_bytes());
        out.extend_from_slice(&self.rtp_timestamp.to_be_bytes());
        out.extend_from_slice(&self.stats.packet_count.to_be_bytes());
        out.extend_from_slice(&self.stats.octet_count.to_be_bytes());
    }

    /// A compound packet, SR then SDES with `cname` (RFC 3550 §6.1 requires compound packets
    /// to carry a CNAME; strict receivers such as GStreamer's rtpbin expect it). A CNAME is
    /// cut at 255 bytes.
    pub fn to_compound(&self, cname: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.write_to(&mut out);
        let cname = &cname.as_bytes()[..cname.len().min(MAX_CNAME)];
        // SSRC + item header + text + the null item that ends the chunk, padded to 32 bits.
        let chunk_len = (4 + 2 + cname.len() + 1).div_ceil(4) * 4;
        out.push(0x81);
        out.push(PT_SDES);
        out.extend_from_slice(&((chunk_len / 4) as u16).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.push(SDES_CNAME);
        out.push(cname.len() as u8);
        out.extend_from_slice(cname);
        out.resize(start + chunk_len, 0);
        out
    }
}

/// One reception report block of a receiver (or sender) report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The stream reported on (one of ours).
    pub ssrc: u32,
    /// Fraction of packets lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    pub highest_sequence: u32,
    pub jitter: u32,
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

/// One packet of an incoming compound RTCP packet, as much as a sender cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    ReceiverReport {
        ssrc: u32,
        blocks: Vec<ReportBlock>,
    },
    SenderReport {
        ssrc: u32,
        blocks: Vec<ReportBlock>,
    },
    Sdes,
    /// The player leaves (sent by VLC and ffmpeg just before TEARDOWN).
    Bye,
    /// APP, feedback, XR or anything else well-framed.
    Other {
        packet_type: u8,
    },
}

/// Why incoming bytes are not RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("empty or truncated RTCP packet")]
    Truncated,
    #[error("RTCP version is not 2")]
    BadVersion,
    #[error("RTCP length field runs past the datagram")]
    BadLength,
}

/// Parses a compound RTCP packet leniently: every well-framed packet is returned, unknown types
/// as [`RtcpPacket::Other`], report blocks that do not fit are ignored. Only framing errors
/// (which mean the bytes are not RTCP at all) fail, and nothing panics.
pub fn parse_compound(mut data: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if data.is_empty() {
        return Err(RtcpError::Truncated);
    }
    let mut packets = Vec::new();
    while !data.is_empty() {
        if data.len() < 4 {
            return Err(RtcpError::Truncated);
        }
        if data[0] >> 6 != 2 {
            return Err(RtcpError::BadVersion);
        }
        let count = usize::from(data[0] & 0x1f);
        let packet_type = data[1];
        let len = (usize::from(u16::from_be_bytes([data[2], data[3]])) + 1) * 4;
        let Some(packet) = data.get(..len) else {
            return Err(RtcpError::BadLength);
        };
        data = &data[len..];
        let body = &packet[4..];
        packets.push(match packet_type {
            PT_RR => RtcpPacket::ReceiverReport {
                ssrc: be32(body, 0).unwrap_or(0),
                blocks: report_blocks(body.get(4..).unwrap_or_default(), count),
            },
            PT_SR => RtcpPacket::SenderReport {
                ssrc: be32(body, 0).unwrap_or(0),
                blocks: report_blocks(body.get(24..).unwrap_or_default(), count),
            },
            PT_SDES => RtcpPacket::Sdes,
            PT_BYE => RtcpPacket::Bye,
            other => RtcpPacket::Other { packet_type: other },
        });
    }
    Ok(packets)
}

/// Whether `data` is a well-framed RTCP packet from a player that is still there: any RTCP
/// but a BYE counts as a keep-alive (RFC 2326 §A.1 lets RTCP reports keep a session alive).
pub fn is_keepalive(data: &[u8]) -> bool {
    parse_compound(data).is_ok_and(|p| !p.contains(&RtcpPacket::Bye))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn report_blocks(data: &[u8], count: usize) -> Vec<ReportBlock> {
    data.chunks_exact(REPORT_BLOCK_LEN)
        .take(count)
        .map(|b| {
            // 24-bit two's complement, sign-extended.
            let lost = i32::from_be_bytes([b[5], b[6], b[7], 0]) >> 8;
            ReportBlock {
                ssrc: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                fraction_lost: b[4],
                cumulative_lost: lost,
                highest_sequence: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
                jitter: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
                last_sr: u32::from_be_bytes([b[16], b[17], b[18], b[19]]),
                delay_since_last_sr: u32::from_be_bytes([b[20], b[21], b[22], b[23]]),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_conversion() {
        let t = NtpTime::from_unix(Duration::new(1, 500_000_000));
        assert_eq!(t.0 >> 32, NTP_UNIX_OFFSET_SECS + 1);
        assert_eq!(t.0 as u32, 0x8000_0000);
        assert_eq!(
            t.middle32(),
            ((NTP_UNIX_OFFSET_SECS as u32 + 1) << 16) | 0x8000
        );
    }

    #[test]
    fn sender_report_layout_and_parse_back() {
        let sr = SenderReport {
            ssrc: 0xdead_beef,
            ntp: NtpTime(0x0102_0304_0506_0708),
            rtp_timestamp: 0x1122_3344,
            stats: SenderStats {
                packet_count: 7,
                octet_count: 1000,
            },
        };
        let bytes = sr.to_compound("howl");
        assert_eq!(
            &bytes[..28],
            &[
                0x80, 200, 0, 6, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x22, 0x33,
                0x44, 0, 0, 0, 7, 0, 0, 0x03, 0xe8
            ]
        );
        // SDES: header, SSRC, CNAME item (1, 4, "howl"), end + padding to 12 bytes.
        assert_eq!(
            &bytes[28..],
            &[
                0x81, 202, 0, 3, 0xde, 0xad, 0xbe, 0xef, 1, 4, b'h', b'o', b'w', b'l', 0, 0
            ]
        );
        let parsed = parse_compound(&bytes).unwrap();
        assert_eq!(
            parsed,
            vec![
                RtcpPacket::SenderReport {
                    ssrc: 0xdead_beef,
                    blocks: vec![]
                },
                RtcpPacket::Sdes
            ]
        );
        assert!(is_keepalive(&bytes));
    }

    #[test]
    fn receiver_report_with_block_and_bye() {
        // RR from SSRC 1 with one block about SSRC 2: 10 % lost, cumulative -3.
        let mut rr = vec![
            0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 25, 0xff, 0xff, 0xfd,
        ];
        rr.extend_from_slice(&[0, 0, 0x10, 0x00, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2]);
        let parsed = parse_compound(&rr).unwrap();
        let RtcpPacket::ReceiverReport { ssrc, blocks } = &parsed[0] else {
            panic!("not an RR: {parsed:?}");
        };
        assert_eq!(*ssrc, 1);
        assert_eq!(blocks[0].ssrc, 2);
        assert_eq!(blocks[0].fraction_lost, 25);
        assert_eq!(blocks[0].cumulative_lost, -3);
        assert_eq!(blocks[0].highest_sequence, 0x1000);
        assert_eq!(blocks[0].jitter, 9);
        assert!(is_keepalive(&rr));
        let mut with_bye = rr.clone();
        with_bye.extend_from_slice(&[0x81, 203, 0, 1, 0, 0, 0, 1]);
        assert!(!is_keepalive(&with_bye));
        // An RR that claims more blocks than it carries is still a keep-alive.
        let short = [0x85, 201, 0, 1, 0, 0, 0, 1];
        assert_eq!(
            parse_compound(&short).unwrap(),
            vec![RtcpPacket::ReceiverReport {
                ssrc: 1,
                blocks: vec![]
            }]
        );
    }

    #[test]
    fn framing_errors() {
        assert_eq!(parse_compound(&[]), Err(RtcpError::Truncated));
        assert_eq!(parse_compound(&[0x80, 201]), Err(RtcpError::Truncated));
        assert_eq!(
            parse_compound(&[0x40, 201, 0, 0]),
            Err(RtcpError::BadVersion)
        );
        assert_eq!(
            parse_compound(&[0x80, 201, 0, 5, 0, 0, 0, 0]),
            Err(RtcpError::BadLength)
        );
        assert!(!is_keepalive(b"\x80\xc9"));
    }
}
