//! Video stream: RTP + NV video header packetisation with Reed–Solomon FEC and optional
//! AES-128-GCM, and the matching receiver for the Rust test client.
//!
//! Wire format (reference part 2 §4): every datagram is one FEC *shard* of
//! `B = packetSize + 16` bytes — a 16-byte RTP header (12 bytes plus 4 bytes of an "extension"
//! that carries nothing), the 16-byte NV video header, then `S = packetSize − 16` payload bytes.
//! A frame's payload is the 8-byte frame header followed by the Annex-B access unit, cut into
//! `S`-byte data shards and split into up to four FEC blocks; each block gets
//! `P = ceil(D·F/100)` parity shards computed with [`crate::fec`] over the whole plaintext
//! datagrams. With video encryption each datagram is sealed whole and prefixed with
//! `IV(12) ‖ LE32 frame index ‖ tag(16)`.
//!
//! * [`VideoPacketizer`] (host): one per viewer. [`VideoPacketizer::packetize`] turns one access
//!   unit into the frame's datagrams, in send order, all the same length, back to back in an
//!   internal buffer that is reused for the next frame (no allocation once warm; the equal
//!   lengths suit UDP GSO). Sequence numbers and GCM IVs come from counters in the packetizer,
//!   seeded from [`PacketizerConfig`]; nothing reads a clock or an RNG.
//! * [`VideoDepacketizer`] (test client): feed datagrams in any order with
//!   [`VideoDepacketizer::handle_datagram`], then drain [`VideoEvent`]s with
//!   [`VideoDepacketizer::poll_event`] until it returns `None` (mutate, then drain). Frames come
//!   out strictly in frame-index order, each exactly once, as a complete access unit or as lost.
//!   A malformed datagram is rejected with a typed error and leaves the state untouched; no
//!   input can make it panic.

mod depacketizer;
mod packetizer;

pub use depacketizer::{
    DepacketizerConfig, DepacketizerStats, LossReason, ReceivedFrame, VideoDepacketizer, VideoEvent,
};
pub use packetizer::{Datagrams, PacketizerConfig, VideoFrame, VideoPacketizer};

/// RTP header bytes, including the 4 bytes behind the extension bit.
pub const RTP_HEADER_LEN: usize = 16;
/// NV video header bytes.
pub const NV_HEADER_LEN: usize = 16;
/// Both headers: the payload starts at this offset of a plaintext datagram.
pub const DATAGRAM_HEADER_LEN: usize = RTP_HEADER_LEN + NV_HEADER_LEN;
/// `IV(12) ‖ LE32 frame index ‖ GCM tag(16)` in front of an encrypted datagram.
pub const ENCRYPTION_PREFIX_LEN: usize = 32;
/// The short frame header at the start of every frame's payload.
pub const FRAME_HEADER_LEN: usize = 8;
/// FEC blocks per frame at most (two bits in `multiFecBlocks`).
pub const MAX_FEC_BLOCKS: usize = 4;
/// Data shards per block at most (ten bits in `fecInfo`).
pub const MAX_BLOCK_DATA_SHARDS: usize = 1023;
/// Smallest accepted `packetSize` (payload must hold the 8-byte frame header).
pub const MIN_PACKET_SIZE: usize = 32;
/// Largest accepted `packetSize` (keeps an encrypted datagram inside one UDP payload).
pub const MAX_PACKET_SIZE: usize = 65_000;
/// Sunshine's default FEC percentage.
pub const DEFAULT_FEC_PERCENTAGE: u8 = 20;
/// What current clients send as `x-nv-vqos[0].fec.minRequiredFecPackets`.
pub const DEFAULT_MIN_REQUIRED_FEC_PACKETS: u32 = 2;

/// RTP byte 0: version 2 with the extension bit, which the client requires.
pub const RTP_FLAGS: u8 = 0x90;
/// NV flag: the datagram carries picture data (every data shard).
pub const FLAG_CONTAINS_PIC_DATA: u8 = 0x01;
/// NV flag: last data shard of an FEC block.
pub const FLAG_EOF: u8 = 0x02;
/// NV flag: first data shard of an FEC block.
pub const FLAG_SOF: u8 = 0x04;
/// NV `multiFecFlags` value.
pub const MULTI_FEC_FLAGS: u8 = 0x10;
/// NV `extraFlags` bit: long-term reference frame.
pub const EXTRA_FLAG_LTR: u8 = 0x01;
/// Frame header byte 0: short (8-byte) header.
pub const FRAME_HEADER_SHORT: u8 = 0x01;
/// Byte 11 of the GCM IV Sunshine uses for video.
pub const IV_VIDEO_MARKER: u8 = b'V';

/// Frame type, byte 3 of the frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Ordinary P-frame.
    P = 1,
    /// IDR / key frame (must carry in-band parameter sets for H.264/HEVC).
    Idr = 2,
    /// P-frame with intra refresh.
    IntraRefresh = 4,
    /// P-frame after reference-frame invalidation.
    AfterRefInvalidation = 5,
}

impl FrameType {
    /// Wire value.
    #[must_use]
    pub fn to_wire(self) -> u8 {
        self as u8
    }

    /// Parses the wire value; `None` for anything else (old Sunshine's `104` included).
    #[must_use]
    pub fn from_wire(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::P),
            2 => Some(Self::Idr),
            4 => Some(Self::IntraRefresh),
            5 => Some(Self::AfterRefInvalidation),
            _ => None,
        }
    }
}

/// Errors of the video path, sorted by who is at fault (STYLE practice 6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VideoError {
    // --- API misuse (host side): the caller passed values the protocol cannot carry. ---
    /// `packetSize` outside [`MIN_PACKET_SIZE`]`..=`[`MAX_PACKET_SIZE`].
    #[error("packet size {0} outside {MIN_PACKET_SIZE}..={MAX_PACKET_SIZE}")]
    InvalidPacketSize(usize),
    /// The access unit needs more data shards than four FEC blocks can hold.
    #[error("frame of {bytes} bytes needs {shards} data shards; at most {max} fit")]
    FrameTooLarge {
        /// Access-unit length.
        bytes: usize,
        /// Data shards it would need.
        shards: usize,
        /// Data shards a frame can have at this packet size.
        max: usize,
    },
    /// AES-GCM key setup or sealing failed (internal; not expected with a 16-byte key).
    #[error("AES-GCM failure")]
    Crypto,
    /// Reed–Solomon encoding refused the block (internal: the frame plan rules this out).
    #[error("FEC encoding failed: {0}")]
    Fec(crate::fec::FecError),

    // --- Malformed input (receiver side): the datagram is dropped, state is unchanged. ---
    /// Datagram length outside what this stream's packet size allows.
    #[error("datagram of {len} bytes outside {min}..={max}")]
    BadLength {
        /// Received length.
        len: usize,
        /// Smallest acceptable.
        min: usize,
        /// Largest acceptable.
        max: usize,
    },
    /// AES-GCM authentication failed.
    #[error("datagram failed AES-GCM authentication")]
    Authentication,
    /// RTP byte 0 is not version 2 with the extension bit.
    #[error("not a video RTP datagram (byte 0 = {0:#04x})")]
    NotVideoRtp(u8),
    /// `fecInfo` describes an impossible block or shard.
    #[error("invalid fecInfo {0:#010x}")]
    BadFecInfo(u32),
    /// `multiFecBlocks` names a block after the frame's last block.
    #[error("invalid multiFecBlocks {0:#04x}")]
    BadMultiFecBlocks(u8),
    /// The datagram contradicts earlier datagrams of the same frame or block.
    #[error("datagram inconsistent with earlier datagrams of frame {0}")]
    Inconsistent(u32),
}

/// The fields of a plaintext video datagram header (RTP + NV header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramHeader {
    /// RTP sequence number.
    pub sequence: u16,
    /// RTP timestamp (90 kHz).
    pub timestamp: u32,
    /// `streamPacketIndex >> 8` (24 bits).
    pub stream_packet_index: u32,
    /// Frame index.
    pub frame_index: u32,
    /// NV flags (`FLAG_*`).
    pub flags: u8,
    /// NV extra flags (`EXTRA_FLAG_LTR`).
    pub extra_flags: u8,
    /// NV multiFecFlags.
    pub multi_fec_flags: u8,
    /// This datagram's FEC block within the frame (0..=3).
    pub block_index: u8,
    /// The frame's last FEC block index (block count − 1).
    pub last_block_index: u8,
    /// Data shards in this block (`D`).
    pub data_shards: u16,
    /// This shard's index in the block (data first, then parity).
    pub shard_index: u16,
    /// The block's FEC percentage (`Fb`).
    pub fec_percentage: u8,
}

impl DatagramHeader {
    /// Parity shards of the block as the client derives them: `ceil(D·Fb/100)`.
    #[must_use]
    pub fn parity_shards(&self) -> u16 {
        parity_for(usize::from(self.data_shards), self.fec_percentage) as u16
    }

    /// Parses the first 32 bytes of a plaintext datagram and checks the fields that describe
    /// the block's geometry.
    pub fn parse(plain: &[u8]) -> Result<Self, VideoError> {
        let Some(h) = plain.first_chunk::<DATAGRAM_HEADER_LEN>() else {
            return Err(VideoError::BadLength {
                len: plain.len(),
                min: DATAGRAM_HEADER_LEN,
                max: usize::MAX,
            });
        };
        if h[0] & 0xD0 != RTP_FLAGS {
            return Err(VideoError::NotVideoRtp(h[0]));
        }
        let le32 = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let fec_info = le32(28);
        let data_shards = (fec_info >> 22) as u16;
        let shard_index = ((fec_info >> 12) & 0x3ff) as u16;
        let fec_percentage = ((fec_info >> 4) & 0xff) as u8;
        let parity = parity_for(usize::from(data_shards), fec_percentage);
        if data_shards == 0 || usize::from(shard_index) >= usize::from(data_shards) + parity {
            return Err(VideoError::BadFecInfo(fec_info));
        }
        let mfb = h[27];
        let (block_index, last_block_index) = ((mfb >> 4) & 3, mfb >> 6);
        if block_index > last_block_index {
            return Err(VideoError::BadMultiFecBlocks(mfb));
        }
        Ok(Self {
            sequence: u16::from_be_bytes([h[2], h[3]]),
            timestamp: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            stream_packet_index: le32(16) >> 8,
            frame_index: le32(20),
            flags: h[24],
            extra_flags: h[25],
            multi_fec_flags: h[26],
            block_index,
            last_block_index,
            data_shards,
            shard_index,
            fec_percentage,
        })
    }
}

/// `ceil(d·f/100)`.
fn parity_for(d: usize, f: u8) -> usize {
    (d * usize::from(f)).div_ceil(100)
}

/// Parity shards and the advertised FEC percentage for a block of `d` data shards (reference
/// §4.6 step 5): `P = ceil(D·F/100)`; when that is below `min_parity`, `P = min_parity` and
/// `Fb = floor(100·P/D)`. Returns `(P, Fb)` with the invariants the client relies on:
/// `P == ceil(D·Fb/100)`, `Fb ≤ 255`, and `D + P ≤ 255` whenever `P > 0` (so nanors accepts
/// the block). `F = 0` disables FEC.
#[must_use]
pub fn block_parity(d: usize, fec_percentage: u8, min_parity: u32) -> (usize, u8) {
    if fec_percentage == 0 || d == 0 || d >= crate::fec::MAX_SHARDS {
        return (0, 0);
    }
    let p = parity_for(d, fec_percentage);
    let room = crate::fec::MAX_SHARDS - d;
    if p >= min_parity as usize && p <= room {
        return (p, fec_percentage);
    }
    let want = (min_parity as usize).max(p).min(room);
    let fb = (100 * want / d).min(255) as u8;
    (parity_for(d, fb), fb)
}

/// How one frame's `n` data shards are split into FEC blocks (reference §4.6 steps 3–5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePlan {
    /// Number of blocks `K` (1..=4).
    pub blocks: usize,
    /// Data shards per block (only the first `blocks` entries are used).
    pub data: [usize; MAX_FEC_BLOCKS],
    /// Parity shards per block.
    pub parity: [usize; MAX_FEC_BLOCKS],
    /// Advertised FEC percentage per block.
    pub fec_percentage: [u8; MAX_FEC_BLOCKS],
}

impl FramePlan {
    /// Plans a frame of `n ≥ 1` data shards; `None` if it cannot be sent (more than
    /// `4 × 1023` data shards).
    #[must_use]
    pub fn new(n: usize, fec_percentage: u8, min_parity: u32) -> Option<Self> {
        Self::with_budget(n, fec_percentage, min_parity, 0)
    }

    /// Like [`FramePlan::new`], and a frame that fits one block in fewer than `budget`
    /// datagrams gets more parity, up to `budget` datagrams (never above the 255 % a block can
    /// advertise: 3 parity shards for 1 data shard, 6 for 2). The reference rule gives the
    /// smallest frames the client's minimum of 2 parity shards, so at 10 % random loss about
    /// one tiny frame in 400 is lost (3 of its 3 or 4 datagrams) and costs a key frame; with
    /// the unused part of the frame's bitrate share spent on parity that becomes about one in
    /// a million. `budget` 0 keeps the reference rule exactly.
    #[must_use]
    pub fn with_budget(
        n: usize,
        fec_percentage: u8,
        min_parity: u32,
        budget: usize,
    ) -> Option<Self> {
        let n = n.max(1);
        let mut f = fec_percentage;
        let dmax = 25_500 / (100 + usize::from(f));
        let mut k = n.div_ceil(dmax);
        if k > MAX_FEC_BLOCKS {
            f = 0;
            k = MAX_FEC_BLOCKS;
        }
        let a = n.div_ceil(k);
        if a > MAX_BLOCK_DATA_SHARDS {
            return None;
        }
        let mut plan = Self {
            blocks: k,
            data: [0; MAX_FEC_BLOCKS],
            parity: [0; MAX_FEC_BLOCKS],
            fec_percentage: [0; MAX_FEC_BLOCKS],
        };
        for b in 0..k {
            let d = n.min((b + 1) * a).saturating_sub(b * a);
            // Only a one-block frame with FEC on: a frame over the budget is not small, and
            // F = 0 is the operator turning FEC off.
            let spare = if k == 1 && f > 0 {
                u32::try_from(budget.saturating_sub(d)).unwrap_or(u32::MAX)
            } else {
                0
            };
            let (p, fb) = block_parity(d, f, min_parity.max(spare));
            plan.data[b] = d;
            plan.parity[b] = p;
            plan.fec_percentage[b] = fb;
        }
        Some(plan)
    }

    /// Datagrams in the frame, data and parity.
    #[must_use]
    pub fn total_shards(&self) -> usize {
        (0..self.blocks)
            .map(|b| self.data[b] + self.parity[b])
            .sum()
    }
}

/// A viewer's per-frame share of its bitrate, in whole datagrams of `datagram_len` bytes: the
/// budget small frames spend on extra parity ([`FramePlan::with_budget`]). Spending it keeps
/// the stream within the bitrate the client asked for, whatever the frame sizes. 0 when a
/// figure is missing.
#[must_use]
pub fn small_frame_budget(bitrate_kbps: u32, fps: u32, datagram_len: usize) -> usize {
    if fps == 0 || datagram_len == 0 {
        return 0;
    }
    let bytes_per_frame = u64::from(bitrate_kbps) * 125 / u64::from(fps);
    usize::try_from(bytes_per_frame).unwrap_or(usize::MAX) / datagram_len
}

/// The 12-byte GCM nonce Sunshine uses for video: `LE64 counter ‖ 0 0 0 ‖ 'V'`.
#[must_use]
pub fn video_iv(counter: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(&counter.to_le_bytes());
    iv[11] = IV_VIDEO_MARKER;
    iv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frame_budget_is_the_frames_share_of_the_bitrate() {
        // moonlight-python's default: 8 Mbps asked, 80 % announced, 60 fps, 1392 + 16 bytes.
        assert_eq!(small_frame_budget(6400, 60, 1408), 9);
        assert_eq!(small_frame_budget(1200, 30, 1408), 3);
        assert_eq!(small_frame_budget(u32::MAX, 1, 1408), 381_300_363);
        assert_eq!(small_frame_budget(6400, 0, 1408), 0);
        assert_eq!(small_frame_budget(6400, 60, 0), 0);
    }

    #[test]
    fn budget_only_adds_parity_to_small_one_block_frames() {
        for n in [1usize, 2, 3, 7, 20, 254, 255, 600, 4000] {
            for f in [0u8, 1, 20, 100, 255] {
                let reference = FramePlan::new(n, f, 2);
                assert_eq!(reference, FramePlan::with_budget(n, f, 2, 0));
                for budget in [1usize, 4, 9, 40, 1000] {
                    let plan = FramePlan::with_budget(n, f, 2, budget);
                    let (Some(r), Some(p)) = (reference, plan) else {
                        assert_eq!(reference, plan);
                        continue;
                    };
                    assert_eq!((r.blocks, r.data), (p.blocks, p.data));
                    for b in 0..p.blocks {
                        let (d, fb) = (p.data[b], p.fec_percentage[b]);
                        assert!(p.parity[b] >= r.parity[b], "n={n} f={f} budget={budget}");
                        assert_eq!(p.parity[b], parity_for(d, fb));
                        assert!(p.parity[b] == 0 || d + p.parity[b] <= 255);
                        if p.parity[b] > r.parity[b] {
                            // Extra parity only fills the budget, for one-block frames.
                            assert_eq!(p.blocks, 1);
                            assert!(d + p.parity[b] <= budget, "n={n} f={f} budget={budget}");
                        }
                    }
                    if f == 0 {
                        assert_eq!(p, r, "FEC off stays off");
                    }
                }
            }
        }
        // The figures the policy is for: 1 and 2 data shards within a 9-datagram budget.
        let one = FramePlan::with_budget(1, 20, 2, 9).map(|p| p.parity[0]);
        let two = FramePlan::with_budget(2, 20, 2, 9).map(|p| p.parity[0]);
        assert_eq!((one, two), (Some(3), Some(6)));
    }

    #[test]
    fn block_parity_matches_reference_rule_and_invariants() {
        assert_eq!(block_parity(3, 20, 2), (2, 66));
        assert_eq!(block_parity(1, 20, 2), (2, 200));
        assert_eq!(block_parity(212, 20, 2), (43, 20));
        assert_eq!(block_parity(199, 20, 2), (40, 20));
        assert_eq!(block_parity(5, 0, 2), (0, 0));
        for d in 1..=MAX_BLOCK_DATA_SHARDS {
            for f in 0..=255u8 {
                for pmin in [0u32, 1, 2, 3, 10, 300] {
                    let (p, fb) = block_parity(d, f, pmin);
                    assert_eq!(p, parity_for(d, fb), "d={d} f={f} pmin={pmin}");
                    if p > 0 {
                        assert!(d + p <= 255, "d={d} f={f} pmin={pmin}");
                    }
                    // Where the reference rule is well-defined it is followed exactly.
                    if f > 0 && d <= 25_500 / (100 + usize::from(f)) && pmin <= 2 {
                        let p0 = parity_for(d, f);
                        if p0 >= pmin as usize {
                            assert_eq!((p, fb), (p0, f));
                        } else {
                            assert_eq!(p, pmin as usize);
                            assert_eq!(usize::from(fb), 100 * p / d);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn plan_splits_like_sunshine() {
        let p = FramePlan::new(3, 20, 2).unwrap();
        assert_eq!(
            (p.blocks, p.data[0], p.parity[0], p.fec_percentage[0]),
            (1, 3, 2, 66)
        );
        let p = FramePlan::new(213, 20, 2).unwrap();
        assert_eq!((p.blocks, &p.data[..2]), (2, &[107, 106][..]));
        let p = FramePlan::new(848, 20, 2).unwrap();
        assert_eq!((p.blocks, p.data), (4, [212; 4]));
        let p = FramePlan::new(849, 20, 2).unwrap();
        assert_eq!(
            (p.blocks, p.data, p.parity),
            (4, [213, 213, 213, 210], [0; 4])
        );
        assert!(FramePlan::new(4092, 20, 2).is_some());
        assert!(FramePlan::new(4093, 20, 2).is_none());
        let p = FramePlan::new(300, 0, 2).unwrap();
        assert_eq!((p.blocks, p.data[0], p.parity[0]), (2, 150, 0));
    }
}
