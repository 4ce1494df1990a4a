//! Receiver side (for the Rust test client): datagrams → access units, with FEC recovery.
//!
//! Model: frames are reassembled independently; a frame is *resolved* when all its FEC blocks
//! have their data shards (received or recovered), or, as lost, when a datagram arrives for a
//! frame `reorder_window` or more frames ahead of it, or on [`VideoDepacketizer::flush`]. Events
//! are emitted strictly in frame-index order, so a complete frame waits behind an incomplete
//! older one until that one resolves. Recovery runs as soon as a block holds `D` shards.
//! After recovery the same checks as the client's are applied (SOF/EOF/PIC_DATA flags, no other
//! bits, consecutive stream packet indices, a valid short frame header), and a failing frame is
//! reported lost as [`LossReason::Corrupt`].

use std::collections::VecDeque;

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use super::{
    DATAGRAM_HEADER_LEN, DatagramHeader, ENCRYPTION_PREFIX_LEN, EXTRA_FLAG_LTR,
    FLAG_CONTAINS_PIC_DATA, FLAG_EOF, FLAG_SOF, FRAME_HEADER_LEN, FRAME_HEADER_SHORT, FrameType,
    MAX_FEC_BLOCKS, MAX_PACKET_SIZE, MIN_PACKET_SIZE, VideoError,
};
use crate::fec::{MAX_SHARDS, ReedSolomon};

/// Default [`DepacketizerConfig::reorder_window`].
pub const DEFAULT_REORDER_WINDOW: u32 = 2;
/// Largest accepted reorder window (frames held open at once).
pub const MAX_REORDER_WINDOW: u32 = 64;
/// Arena buffers kept for reuse.
const POOL_LIMIT: usize = 16;
const NO_SLOT: u16 = u16::MAX;

/// Receiver settings.
#[derive(Clone, PartialEq, Eq)]
pub struct DepacketizerConfig {
    /// The `packetSize` this client announced.
    pub packet_size: usize,
    /// `KEY` when video encryption is enabled.
    pub encryption_key: Option<[u8; 16]>,
    /// A frame still incomplete when a datagram of frame `f + reorder_window` (or later)
    /// arrives is reported lost. 1 is the real client's behaviour (any newer frame ends the
    /// current one); clamped to `1..=`[`MAX_REORDER_WINDOW`].
    pub reorder_window: u32,
}

impl std::fmt::Debug for DepacketizerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DepacketizerConfig")
            .field("packet_size", &self.packet_size)
            .field("encryption", &self.encryption_key.map(|_| "<redacted>"))
            .field("reorder_window", &self.reorder_window)
            .finish()
    }
}

impl DepacketizerConfig {
    /// Unencrypted, default reorder window.
    #[must_use]
    pub fn new(packet_size: usize) -> Self {
        Self {
            packet_size,
            encryption_key: None,
            reorder_window: DEFAULT_REORDER_WINDOW,
        }
    }
}

/// A reassembled frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFrame {
    /// Frame index from the NV header.
    pub frame_index: u32,
    /// RTP timestamp (90 kHz).
    pub rtp_timestamp: u32,
    /// Raw frame-type byte of the frame header (see [`ReceivedFrame::frame_type`]).
    pub frame_type_raw: u8,
    /// Host processing latency in 0.1 ms units.
    pub host_processing_latency: u16,
    /// LTR flag of the frame's first data shard.
    pub ltr: bool,
    /// FEC blocks the frame was sent in.
    pub fec_blocks: usize,
    /// Data shards rebuilt from parity.
    pub recovered_shards: usize,
    /// The access unit, exactly as given to the packetizer (padding cut via `lastPayloadLen`).
    pub access_unit: Vec<u8>,
}

impl ReceivedFrame {
    /// The frame type, if the byte is one of the defined values.
    #[must_use]
    pub fn frame_type(&self) -> Option<FrameType> {
        FrameType::from_wire(self.frame_type_raw)
    }
}

/// Why a frame was reported lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// Some datagrams arrived, but too few to rebuild every block.
    Incomplete,
    /// No datagram of the frame arrived at all.
    NoData,
    /// The frame was rebuilt but failed the client's sanity checks.
    Corrupt,
}

/// Output of the depacketizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoEvent {
    /// A complete access unit.
    Frame(ReceivedFrame),
    /// `count` consecutive frames starting at `first_frame` were lost.
    Lost {
        /// First lost frame index.
        first_frame: u32,
        /// How many consecutive frames.
        count: u32,
        /// Why.
        reason: LossReason,
    },
}

/// Counters for tests and statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepacketizerStats {
    /// Datagrams handed in.
    pub datagrams: u64,
    /// Datagrams rejected with an error.
    pub rejected: u64,
    /// Duplicate shards ignored.
    pub duplicates: u64,
    /// Datagrams for frames or blocks already resolved.
    pub late: u64,
    /// Data shards rebuilt from parity.
    pub recovered_shards: u64,
    /// Frames delivered.
    pub frames_complete: u64,
    /// Frames reported lost.
    pub frames_lost: u64,
}

/// One FEC block being collected.
struct Block {
    data: usize,
    parity: usize,
    fec_percentage: u8,
    base_seq: u16,
    /// Arena slot of each shard index, or `NO_SLOT`.
    slots: Vec<u16>,
    /// Received (then recovered) shards, `B` bytes each, in arrival order.
    arena: Vec<u8>,
    received: usize,
    data_received: usize,
    recovered: usize,
    done: bool,
}

struct Pending {
    frame_index: u32,
    timestamp: u32,
    last_block: u8,
    blocks: [Option<Block>; MAX_FEC_BLOCKS],
    /// Set once every block is done (or the frame failed its checks).
    outcome: Option<Result<ReceivedFrame, LossReason>>,
}

/// Reassembles video frames from datagrams. See the module docs.
pub struct VideoDepacketizer {
    shard_len: usize,
    payload_len: usize,
    key: Option<LessSafeKey>,
    window: u32,
    /// Oldest unresolved frame index; `None` before the first datagram.
    next: Option<u32>,
    /// Frames in `next .. next + window`, sorted.
    pending: VecDeque<Pending>,
    events: VecDeque<VideoEvent>,
    scratch: Vec<u8>,
    pool: Vec<Vec<u8>>,
    stats: DepacketizerStats,
}

impl std::fmt::Debug for VideoDepacketizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoDepacketizer")
            .field("shard_len", &self.shard_len)
            .field("encrypted", &self.key.is_some())
            .field("window", &self.window)
            .field("next", &self.next)
            .field("pending", &self.pending.len())
            .field("events", &self.events.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl VideoDepacketizer {
    /// Validates the configuration and sets up the cipher.
    pub fn new(config: &DepacketizerConfig) -> Result<Self, VideoError> {
        if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&config.packet_size) {
            return Err(VideoError::InvalidPacketSize(config.packet_size));
        }
        let key = match &config.encryption_key {
            Some(k) => Some(LessSafeKey::new(
                UnboundKey::new(&AES_128_GCM, k).map_err(|_| VideoError::Crypto)?,
            )),
            None => None,
        };
        let shard_len = config.packet_size + 16;
        Ok(Self {
            shard_len,
            payload_len: config.packet_size - 16,
            key,
            window: config.reorder_window.clamp(1, MAX_REORDER_WINDOW),
            next: None,
            pending: VecDeque::new(),
            events: VecDeque::new(),
            scratch: vec![0; shard_len],
            pool: Vec::new(),
            stats: DepacketizerStats::default(),
        })
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> DepacketizerStats {
        self.stats
    }

    /// The oldest frame index not yet resolved (`None` before the first accepted datagram).
    /// Datagrams of older frames are ignored as late.
    #[must_use]
    pub fn next_frame_index(&self) -> Option<u32> {
        self.next
    }

    /// The next event, if any. Drain until `None` after every input.
    pub fn poll_event(&mut self) -> Option<VideoEvent> {
        self.events.pop_front()
    }

    /// Resolves every pending frame now (end of stream): complete ones are delivered, the rest
    /// reported lost.
    pub fn flush(&mut self) {
        if let Some(last) = self.pending.back().map(|p| p.frame_index) {
            self.advance_to(last.wrapping_add(1));
        }
    }

    /// Feeds one received datagram. An error means the datagram was malformed and ignored;
    /// the depacketizer's state is unchanged.
    pub fn handle_datagram(&mut self, datagram: &[u8]) -> Result<(), VideoError> {
        self.stats.datagrams += 1;
        let result = if self.key.is_some() {
            let mut scratch = std::mem::take(&mut self.scratch);
            let r = self
                .decrypt(datagram, &mut scratch)
                .and_then(|n| self.handle_plain(&scratch[..n]));
            self.scratch = scratch;
            r
        } else {
            self.handle_plain(datagram)
        };
        if result.is_err() {
            self.stats.rejected += 1;
        }
        result
    }

    fn decrypt(&self, datagram: &[u8], out: &mut [u8]) -> Result<usize, VideoError> {
        let (min, max) = (
            ENCRYPTION_PREFIX_LEN + DATAGRAM_HEADER_LEN,
            ENCRYPTION_PREFIX_LEN + self.shard_len,
        );
        if !(min..=max).contains(&datagram.len()) {
            return Err(VideoError::BadLength {
                len: datagram.len(),
                min,
                max,
            });
        }
        let Some(key) = &self.key else {
            return Err(VideoError::Crypto);
        };
        let (prefix, ciphertext) = datagram.split_at(ENCRYPTION_PREFIX_LEN);
        let mut iv = [0u8; 12];
        iv.copy_from_slice(&prefix[..12]);
        let n = ciphertext.len();
        let out = out.get_mut(..n).ok_or(VideoError::Crypto)?;
        key.open_separate_gather(
            Nonce::assume_unique_for_key(iv),
            Aad::empty(),
            ciphertext,
            &prefix[16..32],
            out,
        )
        .map_err(|_| VideoError::Authentication)?;
        Ok(n)
    }

    fn handle_plain(&mut self, plain: &[u8]) -> Result<(), VideoError> {
        let b = self.shard_len;
        if !(DATAGRAM_HEADER_LEN..=b).contains(&plain.len()) {
            return Err(VideoError::BadLength {
                len: plain.len(),
                min: DATAGRAM_HEADER_LEN,
                max: b,
            });
        }
        let h = DatagramHeader::parse(plain)?;
        let f = h.frame_index;
        let next = *self.next.get_or_insert(f);
        let delta = f.wrapping_sub(next);
        if delta >= 0x8000_0000 {
            self.stats.late += 1;
            return Ok(());
        }

        // Validate against what is already known about this frame and block before touching
        // any state.
        let d = usize::from(h.data_shards);
        let p = usize::from(h.parity_shards());
        let x = usize::from(h.shard_index);
        let base_seq = h.sequence.wrapping_sub(h.shard_index);
        if let Some(pf) = self.pending.iter().find(|pf| pf.frame_index == f) {
            if pf.outcome.is_some() {
                self.stats.late += 1;
                return Ok(());
            }
            if pf.last_block != h.last_block_index || pf.timestamp != h.timestamp {
                return Err(VideoError::Inconsistent(f));
            }
            if let Some(blk) = &pf.blocks[usize::from(h.block_index)] {
                if blk.data != d
                    || blk.fec_percentage != h.fec_percentage
                    || blk.base_seq != base_seq
                {
                    return Err(VideoError::Inconsistent(f));
                }
                if blk.done {
                    self.stats.late += 1;
                    return Ok(());
                }
                if blk.slots[x] != NO_SLOT {
                    self.stats.duplicates += 1;
                    return Ok(());
                }
            }
        }

        // Accepted. Make room in the window, then file the shard.
        if delta >= self.window {
            self.advance_to(f.wrapping_sub(self.window - 1));
        }
        let next = self.next.unwrap_or(f);
        let idx = match self.pending.iter().position(|pf| pf.frame_index == f) {
            Some(i) => i,
            None => {
                let at = self
                    .pending
                    .iter()
                    .position(|pf| pf.frame_index.wrapping_sub(next) > f.wrapping_sub(next))
                    .unwrap_or(self.pending.len());
                self.pending.insert(
                    at,
                    Pending {
                        frame_index: f,
                        timestamp: h.timestamp,
                        last_block: h.last_block_index,
                        blocks: [None, None, None, None],
                        outcome: None,
                    },
                );
                at
            }
        };
        let Self {
            pending,
            pool,
            stats,
            payload_len,
            ..
        } = self;
        let Some(pf) = pending.get_mut(idx) else {
            return Ok(());
        };
        let blk = pf.blocks[usize::from(h.block_index)].get_or_insert_with(|| {
            let mut arena = pool.pop().unwrap_or_default();
            arena.clear();
            Block {
                data: d,
                parity: p,
                fec_percentage: h.fec_percentage,
                base_seq,
                slots: vec![NO_SLOT; d + p],
                arena,
                received: 0,
                data_received: 0,
                recovered: 0,
                done: false,
            }
        });
        let slot = blk.arena.len() / b;
        blk.arena.extend_from_slice(plain);
        blk.arena.resize((slot + 1) * b, 0);
        blk.slots[x] = slot as u16;
        blk.received += 1;
        if x < d {
            blk.data_received += 1;
        }
        if blk.data_received == d {
            blk.done = true;
        } else if blk.received >= d && p > 0 && d + p <= MAX_SHARDS {
            match recover(blk, b) {
                Ok(()) => {
                    stats.recovered_shards += blk.recovered as u64;
                }
                Err(()) => {
                    pf.outcome = Some(Err(LossReason::Corrupt));
                }
            }
        }

        if pf.outcome.is_none() {
            let all_done = (0..=usize::from(pf.last_block))
                .all(|i| pf.blocks[i].as_ref().is_some_and(|blk| blk.done));
            if all_done {
                pf.outcome = Some(assemble(pf, b, *payload_len));
            }
        }
        self.drain_ready();
        Ok(())
    }

    /// Emits resolved frames at the head of the window.
    fn drain_ready(&mut self) {
        while let (Some(next), Some(front)) = (self.next, self.pending.front()) {
            if front.frame_index != next || front.outcome.is_none() {
                break;
            }
            if let Some(pf) = self.pending.pop_front() {
                self.emit(pf);
            }
            self.next = Some(next.wrapping_add(1));
        }
    }

    /// Resolves every frame before `new_next`.
    fn advance_to(&mut self, new_next: u32) {
        let Some(next) = self.next else {
            self.next = Some(new_next);
            return;
        };
        let span = new_next.wrapping_sub(next);
        if span >= 0x8000_0000 {
            return;
        }
        let mut cursor = next;
        while let Some(front_index) = self.pending.front().map(|pf| pf.frame_index) {
            if front_index.wrapping_sub(next) >= span {
                break;
            }
            if front_index != cursor {
                self.lost(cursor, front_index.wrapping_sub(cursor), LossReason::NoData);
            }
            cursor = front_index.wrapping_add(1);
            if let Some(pf) = self.pending.pop_front() {
                self.emit(pf);
            }
        }
        if cursor != new_next {
            self.lost(cursor, new_next.wrapping_sub(cursor), LossReason::NoData);
        }
        self.next = Some(new_next);
        self.drain_ready();
    }

    fn lost(&mut self, first_frame: u32, count: u32, reason: LossReason) {
        self.stats.frames_lost += u64::from(count);
        self.events.push_back(VideoEvent::Lost {
            first_frame,
            count,
            reason,
        });
    }

    fn emit(&mut self, mut pf: Pending) {
        for blk in pf.blocks.iter_mut().filter_map(Option::take) {
            if self.pool.len() < POOL_LIMIT {
                self.pool.push(blk.arena);
            }
        }
        match pf.outcome.take() {
            Some(Ok(frame)) => {
                self.stats.frames_complete += 1;
                self.events.push_back(VideoEvent::Frame(frame));
            }
            Some(Err(reason)) => self.lost(pf.frame_index, 1, reason),
            None => self.lost(pf.frame_index, 1, LossReason::Incomplete),
        }
    }
}

/// Rebuilds the block's missing data shards from parity. Missing shards get zeroed arena
/// slots first, so afterwards every shard index has a slot.
fn recover(blk: &mut Block, b: usize) -> Result<(), ()> {
    let total = blk.data + blk.parity;
    let present: Vec<bool> = blk.slots.iter().map(|&s| s != NO_SLOT).collect();
    for s in blk.slots.iter_mut().filter(|s| **s == NO_SLOT) {
        *s = (blk.arena.len() / b) as u16;
        blk.arena.resize(blk.arena.len() + b, 0);
    }
    let mut chunks: Vec<Option<&mut [u8]>> = blk.arena.chunks_exact_mut(b).map(Some).collect();
    let mut shards: Vec<&mut [u8]> = Vec::with_capacity(total);
    for &s in &blk.slots {
        shards.push(
            chunks
                .get_mut(usize::from(s))
                .and_then(Option::take)
                .ok_or(())?,
        );
    }
    let rs = ReedSolomon::new(blk.data, blk.parity).map_err(|_| ())?;
    rs.reconstruct_data(&mut shards, &present).map_err(|_| ())?;
    blk.recovered = present[..blk.data].iter().filter(|&&p| !p).count();
    blk.done = true;
    Ok(())
}

/// Concatenates the frame's payload and applies the client's checks.
fn assemble(pf: &Pending, b: usize, s: usize) -> Result<ReceivedFrame, LossReason> {
    let blocks = usize::from(pf.last_block) + 1;
    let mut total_data = 0;
    let mut recovered = 0;
    for blk in pf.blocks[..blocks].iter().flatten() {
        total_data += blk.data;
        recovered += blk.recovered;
    }
    let mut out = Vec::with_capacity(total_data * s);
    let mut ltr = false;
    for (bi, blk) in pf.blocks[..blocks].iter().enumerate() {
        let blk = blk.as_ref().ok_or(LossReason::Incomplete)?;
        let mut first_spi = 0u32;
        for i in 0..blk.data {
            let slot = usize::from(*blk.slots.get(i).ok_or(LossReason::Corrupt)?);
            let shard = blk
                .arena
                .get(slot * b..(slot + 1) * b)
                .ok_or(LossReason::Corrupt)?;
            let mut want = FLAG_CONTAINS_PIC_DATA;
            if i == 0 {
                want |= FLAG_SOF;
            }
            if i + 1 == blk.data {
                want |= FLAG_EOF;
            }
            if shard[24] != want {
                return Err(LossReason::Corrupt);
            }
            let spi = u32::from_le_bytes([shard[16], shard[17], shard[18], shard[19]]) >> 8;
            if i == 0 {
                first_spi = spi;
                if bi == 0 {
                    ltr = shard[25] & EXTRA_FLAG_LTR != 0;
                }
            } else if spi != first_spi.wrapping_add(i as u32) & 0x00ff_ffff {
                return Err(LossReason::Corrupt);
            }
            out.extend_from_slice(&shard[DATAGRAM_HEADER_LEN..]);
        }
    }
    let Some(fh) = out.first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(LossReason::Corrupt);
    };
    if fh[0] != FRAME_HEADER_SHORT {
        return Err(LossReason::Corrupt);
    }
    let latency = u16::from_le_bytes([fh[1], fh[2]]);
    let frame_type_raw = fh[3];
    let last_payload = usize::from(u16::from_le_bytes([fh[4], fh[5]]));
    if last_payload == 0 || last_payload > s {
        return Err(LossReason::Corrupt);
    }
    let len = (total_data - 1) * s + last_payload;
    if len < FRAME_HEADER_LEN || len > out.len() {
        return Err(LossReason::Corrupt);
    }
    out.truncate(len);
    out.drain(..FRAME_HEADER_LEN);
    Ok(ReceivedFrame {
        frame_index: pf.frame_index,
        rtp_timestamp: pf.timestamp,
        frame_type_raw,
        host_processing_latency: latency,
        ltr,
        fec_blocks: blocks,
        recovered_shards: recovered,
        access_unit: out,
    })
}
