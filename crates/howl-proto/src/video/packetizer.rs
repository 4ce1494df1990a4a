//! Host side: access unit → datagrams (reference part 2 §4.6).

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use super::{
    DATAGRAM_HEADER_LEN, DEFAULT_FEC_PERCENTAGE, DEFAULT_MIN_REQUIRED_FEC_PACKETS,
    ENCRYPTION_PREFIX_LEN, EXTRA_FLAG_LTR, FLAG_CONTAINS_PIC_DATA, FLAG_EOF, FLAG_SOF,
    FRAME_HEADER_LEN, FRAME_HEADER_SHORT, FramePlan, FrameType, MAX_BLOCK_DATA_SHARDS,
    MAX_FEC_BLOCKS, MAX_PACKET_SIZE, MIN_PACKET_SIZE, MULTI_FEC_FLAGS, RTP_FLAGS, VideoError,
    small_frame_budget, video_iv,
};
use crate::fec::ReedSolomon;

/// Per-viewer packetizer settings, from the client's ANNOUNCE and the host configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct PacketizerConfig {
    /// `x-nv-video[0].packetSize`, used exactly as announced.
    pub packet_size: usize,
    /// Host FEC percentage `F` (0 disables FEC; Sunshine default 20).
    pub fec_percentage: u8,
    /// `x-nv-vqos[0].fec.minRequiredFecPackets`.
    pub min_required_fec_packets: u32,
    /// `KEY` (`rikey`) when the client enabled video encryption (`encryptionEnabled & 0x02`).
    pub encryption_key: Option<[u8; 16]>,
    /// The viewer's bitrate and frame rate, `(kbps, fps)`, whose per-frame share a small frame
    /// may fill with extra parity ([`small_frame_budget`] in datagrams of this packetizer,
    /// [`FramePlan::with_budget`]); `None` keeps Sunshine's rule exactly.
    pub small_frame_bitrate: Option<(u32, u32)>,
    /// Whether a frame that fits one data shard may be sent as two, the second all zero
    /// padding, so it can carry 6 parity shards instead of 3. Only for H.264 and HEVC, whose
    /// Annex-B streams allow trailing zero bytes; AV1 relies on `lastPayloadLen` instead.
    pub pad_single_shard: bool,
    /// First RTP sequence / stream packet counter `q` (must be `< 0x8000`; 0 is what Sunshine
    /// uses).
    pub first_sequence: u64,
    /// First GCM IV counter.
    pub first_iv_counter: u64,
}

impl std::fmt::Debug for PacketizerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketizerConfig")
            .field("packet_size", &self.packet_size)
            .field("fec_percentage", &self.fec_percentage)
            .field("min_required_fec_packets", &self.min_required_fec_packets)
            .field("small_frame_bitrate", &self.small_frame_bitrate)
            .field("pad_single_shard", &self.pad_single_shard)
            .field("encryption", &self.encryption_key.map(|_| "<redacted>"))
            .field("first_sequence", &self.first_sequence)
            .field("first_iv_counter", &self.first_iv_counter)
            .finish()
    }
}

impl PacketizerConfig {
    /// Sunshine defaults (20 % FEC, 2 minimum parity shards, no encryption, counters at 0).
    #[must_use]
    pub fn new(packet_size: usize) -> Self {
        Self {
            packet_size,
            fec_percentage: DEFAULT_FEC_PERCENTAGE,
            min_required_fec_packets: DEFAULT_MIN_REQUIRED_FEC_PACKETS,
            encryption_key: None,
            small_frame_bitrate: None,
            pad_single_shard: false,
            first_sequence: 0,
            first_iv_counter: 0,
        }
    }
}

/// One encoded frame to send.
#[derive(Debug, Clone, Copy)]
pub struct VideoFrame<'a> {
    /// Frame index (first frame 1, +1 per frame, no gaps).
    pub frame_index: u32,
    /// RTP timestamp, 90 kHz capture time.
    pub rtp_timestamp: u32,
    /// Frame type for the frame header.
    pub frame_type: FrameType,
    /// Capture → packetisation latency in 0.1 ms units (0 = unknown).
    pub host_processing_latency: u16,
    /// Long-term reference frame (`extraFlags` bit 0).
    pub ltr: bool,
    /// The Annex-B access unit (or AV1 OBUs).
    pub access_unit: &'a [u8],
}

/// Turns access units into video datagrams for one viewer. See the module docs.
pub struct VideoPacketizer {
    packet_size: usize,
    fec_percentage: u8,
    min_parity: u32,
    small_frame_datagrams: usize,
    pad_single_shard: bool,
    key: Option<LessSafeKey>,
    sequence: u64,
    iv_counter: u64,
    /// All datagrams of the last frame, back to back, `stride` bytes each.
    buf: Vec<u8>,
}

impl std::fmt::Debug for VideoPacketizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoPacketizer")
            .field("packet_size", &self.packet_size)
            .field("fec_percentage", &self.fec_percentage)
            .field("min_parity", &self.min_parity)
            .field("encrypted", &self.key.is_some())
            .field("sequence", &self.sequence)
            .field("iv_counter", &self.iv_counter)
            .finish_non_exhaustive()
    }
}

impl VideoPacketizer {
    /// Validates the configuration and sets up the cipher.
    pub fn new(config: &PacketizerConfig) -> Result<Self, VideoError> {
        if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&config.packet_size) {
            return Err(VideoError::InvalidPacketSize(config.packet_size));
        }
        let key = match &config.encryption_key {
            Some(k) => Some(LessSafeKey::new(
                UnboundKey::new(&AES_128_GCM, k).map_err(|_| VideoError::Crypto)?,
            )),
            None => None,
        };
        let mut p = Self {
            packet_size: config.packet_size,
            fec_percentage: config.fec_percentage,
            min_parity: config.min_required_fec_packets,
            small_frame_datagrams: 0,
            pad_single_shard: config.pad_single_shard,
            key,
            sequence: config.first_sequence,
            iv_counter: config.first_iv_counter,
            buf: Vec::new(),
        };
        // In this packetizer's own datagrams (encryption adds a prefix).
        if let Some((kbps, fps)) = config.small_frame_bitrate {
            p.small_frame_datagrams = small_frame_budget(kbps, fps, p.datagram_len());
        }
        Ok(p)
    }

    /// Plaintext datagram length `B = packetSize + 16`.
    #[must_use]
    pub fn shard_len(&self) -> usize {
        self.packet_size + 16
    }

    /// On-wire datagram length: `B`, or `B + 32` with encryption.
    #[must_use]
    pub fn datagram_len(&self) -> usize {
        self.shard_len()
            + if self.key.is_some() {
                ENCRYPTION_PREFIX_LEN
            } else {
                0
            }
    }

    /// Payload bytes per data shard, `S = packetSize − 16`.
    #[must_use]
    pub fn payload_len(&self) -> usize {
        self.packet_size - 16
    }

    /// Largest access unit a frame can carry at this packet size.
    #[must_use]
    pub fn max_access_unit_len(&self) -> usize {
        MAX_FEC_BLOCKS * MAX_BLOCK_DATA_SHARDS * self.payload_len() - FRAME_HEADER_LEN
    }

    /// The counter `q` the next datagram will use (RTP sequence = `q mod 2^16`).
    #[must_use]
    pub fn next_sequence(&self) -> u64 {
        self.sequence
    }

    /// The GCM IV counter the next encrypted datagram will use.
    #[must_use]
    pub fn next_iv_counter(&self) -> u64 {
        self.iv_counter
    }

    /// Packetizes one frame. The returned datagrams are in send order (per block: data, then
    /// parity) and stay valid until the next call. On error nothing was consumed: counters are
    /// unchanged.
    pub fn packetize(&mut self, frame: &VideoFrame<'_>) -> Result<Datagrams<'_>, VideoError> {
        let s = self.payload_len();
        let b = self.shard_len();
        let prefix = if self.key.is_some() {
            ENCRYPTION_PREFIX_LEN
        } else {
            0
        };
        let stride = prefix + b;
        let au = frame.access_unit;
        let x_len = FRAME_HEADER_LEN + au.len();
        let mut n = x_len.div_ceil(s);
        // A second, all-padding data shard pays for itself only if the budget has room for
        // more parity than one data shard can advertise (3).
        if n == 1 && self.pad_single_shard && self.small_frame_datagrams > 4 {
            n = 2;
        }
        let plan = FramePlan::with_budget(
            n,
            self.fec_percentage,
            self.min_parity,
            self.small_frame_datagrams,
        )
        .ok_or(VideoError::FrameTooLarge {
            bytes: au.len(),
            shards: n,
            max: MAX_FEC_BLOCKS * MAX_BLOCK_DATA_SHARDS,
        })?;
        let total = plan.total_shards();
        // Every byte of every used slot is written below, so stale contents are harmless.
        if self.buf.len() < total * stride {
            self.buf.resize(total * stride, 0);
        }

        // Frame header (§4.4).
        let last_payload = match x_len % s {
            0 => s,
            r => r,
        } as u16;
        let mut fh = [0u8; FRAME_HEADER_LEN];
        fh[0] = FRAME_HEADER_SHORT;
        fh[1..3].copy_from_slice(&frame.host_processing_latency.to_le_bytes());
        fh[3] = frame.frame_type.to_wire();
        fh[4..6].copy_from_slice(&last_payload.to_le_bytes());

        let extra_flags = if frame.ltr { EXTRA_FLAG_LTR } else { 0 };
        let last_block = (plan.blocks - 1) as u8;
        let mut q = self.sequence;
        let mut shard_no = 0usize; // data shard number within the frame
        let mut slot_base = 0usize; // first datagram of the current block
        for blk in 0..plan.blocks {
            let (d, p, fb) = (plan.data[blk], plan.parity[blk], plan.fec_percentage[blk]);
            let mfb = ((blk as u8) << 4) | (last_block << 6);
            let block = &mut self.buf[slot_base * stride..(slot_base + d + p) * stride];
            for (x, slot) in block.chunks_exact_mut(stride).enumerate() {
                let dg = &mut slot[prefix..];
                let spi_and_flags = if x < d {
                    let mut flags = FLAG_CONTAINS_PIC_DATA;
                    if x == 0 {
                        flags |= FLAG_SOF;
                    }
                    if x == d - 1 {
                        flags |= FLAG_EOF;
                    }
                    Some((((q + x as u64) as u32) << 8, flags))
                } else {
                    None
                };
                write_header(
                    dg,
                    q + x as u64,
                    frame,
                    mfb,
                    (x, d, fb),
                    spi_and_flags,
                    extra_flags,
                );
                if x < d {
                    fill_payload(&mut dg[DATAGRAM_HEADER_LEN..], &fh, au, (shard_no + x) * s);
                }
            }
            if p > 0 {
                ReedSolomon::new(d, p)
                    .and_then(|rs| rs.encode_strided(block, stride, prefix, b))
                    .map_err(VideoError::Fec)?;
                // Step 8: the parity shards' RTP and frame/FEC fields get their real values;
                // streamPacketIndex, flags, extraFlags and payload stay as computed.
                for (x, slot) in block.chunks_exact_mut(stride).enumerate().skip(d) {
                    write_header(
                        &mut slot[prefix..],
                        q + x as u64,
                        frame,
                        mfb,
                        (x, d, fb),
                        None,
                        0,
                    );
                }
            }
            shard_no += d;
            slot_base += d + p;
            q += (d + p) as u64;
        }

        if let Some(key) = &self.key {
            let mut counter = self.iv_counter;
            for slot in self.buf[..total * stride].chunks_exact_mut(stride) {
                let iv = video_iv(counter);
                counter += 1;
                let (head, body) = slot.split_at_mut(ENCRYPTION_PREFIX_LEN);
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(iv),
                        Aad::empty(),
                        body,
                    )
                    .map_err(|_| VideoError::Crypto)?;
                head[..12].copy_from_slice(&iv);
                head[12..16].copy_from_slice(&frame.frame_index.to_le_bytes());
                head[16..32].copy_from_slice(tag.as_ref());
            }
            self.iv_counter = counter;
        }
        self.sequence = q;
        Ok(Datagrams {
            bytes: &self.buf[..total * stride],
            stride,
            blocks: plan.blocks,
        })
    }
}

/// Writes the 32-byte header of shard `x` of a block. For data shards `spi_and_flags` carries
/// the final streamPacketIndex and flags; for parity shards (`None`) bytes 1, 8–19 and 24–26
/// are left as they are (RS output).
fn write_header(
    dg: &mut [u8],
    q: u64,
    frame: &VideoFrame<'_>,
    mfb: u8,
    (x, d, fb): (usize, usize, u8),
    spi_and_flags: Option<(u32, u8)>,
    extra_flags: u8,
) {
    dg[0] = RTP_FLAGS;
    dg[2..4].copy_from_slice(&(q as u16).to_be_bytes());
    dg[4..8].copy_from_slice(&frame.rtp_timestamp.to_be_bytes());
    if let Some((spi, flags)) = spi_and_flags {
        dg[1] = 0;
        dg[8..16].fill(0);
        dg[16..20].copy_from_slice(&spi.to_le_bytes());
        dg[24] = flags;
        dg[25] = extra_flags;
        dg[26] = MULTI_FEC_FLAGS;
    }
    dg[20..24].copy_from_slice(&frame.frame_index.to_le_bytes());
    dg[27] = mfb;
    let fec_info = ((x as u32) << 12) | ((d as u32) << 22) | (u32::from(fb) << 4);
    dg[28..32].copy_from_slice(&fec_info.to_le_bytes());
}

/// Copies bytes `at..at+S` of `X = frame header ‖ access unit` into `out`, zero-padding past
/// the end of `X`.
fn fill_payload(out: &mut [u8], fh: &[u8; FRAME_HEADER_LEN], au: &[u8], at: usize) {
    let mut pos = 0;
    if at < FRAME_HEADER_LEN {
        let take = (FRAME_HEADER_LEN - at).min(out.len());
        out[..take].copy_from_slice(&fh[at..at + take]);
        pos = take;
    }
    let au_at = (at + pos).saturating_sub(FRAME_HEADER_LEN).min(au.len());
    let take = (out.len() - pos).min(au.len() - au_at);
    out[pos..pos + take].copy_from_slice(&au[au_at..au_at + take]);
    out[pos + take..].fill(0);
}

/// The datagrams of one frame: `len()` datagrams of `datagram_len()` bytes each, back to back
/// in [`Datagrams::as_bytes`] (suitable for UDP GSO with that segment size).
#[derive(Debug, Clone, Copy)]
pub struct Datagrams<'a> {
    bytes: &'a [u8],
    stride: usize,
    blocks: usize,
}

impl<'a> Datagrams<'a> {
    /// Number of datagrams.
    #[must_use]
    pub fn len(&self) -> usize {
        self.bytes.len() / self.stride
    }

    /// Whether there are none (never the case for a packetized frame).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Length of every datagram.
    #[must_use]
    pub fn datagram_len(&self) -> usize {
        self.stride
    }

    /// FEC blocks in the frame.
    #[must_use]
    pub fn fec_blocks(&self) -> usize {
        self.blocks
    }

    /// All datagrams concatenated.
    #[must_use]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Datagram `i`.
    #[must_use]
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.bytes.get(i * self.stride..(i + 1) * self.stride)
    }

    /// The datagrams in send order.
    pub fn iter(&self) -> std::slice::ChunksExact<'a, u8> {
        self.bytes.chunks_exact(self.stride)
    }
}

impl<'a> IntoIterator for Datagrams<'a> {
    type Item = &'a [u8];
    type IntoIter = std::slice::ChunksExact<'a, u8>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
