//! Test-client side: audio datagrams (lost, reordered, duplicated) → Opus packets in sequence
//! order, with 4 + 2 FEC recovery and AES-CBC decryption (reference part 2 §5).

use std::collections::VecDeque;

use super::{
    AudioDecryptor, AudioEncryption, AudioError, DATA_SHARDS, FEC_HEADER_LEN, FEC_SHARDS,
    MAX_DATAGRAM_LEN, PAYLOAD_TYPE_AUDIO, PAYLOAD_TYPE_FEC, RTP_HEADER_LEN, RTP_VERSION_BYTE,
    check_duration, fec_recover,
};

/// Largest reorder window, in blocks. Far below half the 16-bit sequence space (16 384 blocks),
/// so "ahead" and "behind" stay unambiguous.
pub const MAX_REORDER_WINDOW_BLOCKS: u16 = 1024;

/// Receiver settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioReceiverConfig {
    /// `packetDuration` (5 or 10 ms): the timestamp step inside a block.
    pub packet_duration_ms: u32,
    /// Key material when audio encryption was negotiated.
    pub encryption: Option<AudioEncryption>,
    /// Sequence number of the first packet to deliver, when known (howl starts at 0). `None`
    /// starts at the block of the first datagram received.
    pub first_sequence: Option<u16>,
    /// A block with holes that FEC could not fill is given up (its holes reported lost) once a
    /// datagram arrives for a block this many blocks later. 1 suits in-order delivery (a block's
    /// FEC packets precede the next block's data); larger values tolerate reordering. Clamped to
    /// `1..=`[`MAX_REORDER_WINDOW_BLOCKS`].
    pub reorder_window_blocks: u16,
}

impl AudioReceiverConfig {
    /// No encryption, sequence synchronised on the first datagram, reorder window of 2 blocks.
    #[must_use]
    pub fn new(packet_duration_ms: u32) -> Self {
        Self {
            packet_duration_ms,
            encryption: None,
            first_sequence: None,
            reorder_window_blocks: 2,
        }
    }
}

/// One Opus packet, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPacket {
    /// RTP sequence number.
    pub sequence: u16,
    /// RTP timestamp (ms).
    pub timestamp: u32,
    /// The decrypted Opus packet.
    pub opus: Vec<u8>,
    /// Rebuilt from FEC rather than received.
    pub recovered: bool,
}

/// Output of the depacketizer, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioEvent {
    /// The next packet.
    Packet(ReceivedPacket),
    /// `count` consecutive packets from `first_sequence` on are gone (play concealment).
    Lost {
        /// First lost sequence number.
        first_sequence: u16,
        /// How many, wrapping through the sequence space.
        count: u32,
    },
}

/// Receiver counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepacketizerStats {
    /// Data datagrams accepted.
    pub data_packets: u64,
    /// FEC datagrams accepted.
    pub fec_packets: u64,
    /// Datagrams already held (or already recovered) and ignored.
    pub duplicates: u64,
    /// Datagrams for packets already delivered or given up, ignored.
    pub late: u64,
    /// Data packets rebuilt from FEC.
    pub recovered: u64,
    /// Data packets reported in [`AudioEvent::Lost`].
    pub lost: u64,
    /// Blocks whose data payloads had different lengths: the real client would have disabled
    /// FEC for the session. A correct host keeps this at 0.
    pub uneven_blocks: u64,
    /// FEC-rebuilt payloads that failed to decrypt (corrupted parity); reported lost.
    pub bad_recoveries: u64,
}

#[derive(Debug, Default)]
struct Block {
    /// Base timestamp, known from the first packet of the block.
    base_ts: Option<u32>,
    /// Payload length, fixed by the first packet of the block.
    len: Option<usize>,
    /// Payloads as sent (ciphertext when encrypted), received or recovered.
    wire: [Option<Vec<u8>>; DATA_SHARDS],
    /// Decrypted payloads, ready to deliver.
    plain: [Option<Vec<u8>>; DATA_SHARDS],
    recovered: [bool; DATA_SHARDS],
    /// Recovered but undecryptable: delivered as lost.
    failed: [bool; DATA_SHARDS],
    fec: [Option<Vec<u8>>; FEC_SHARDS],
    /// Data payloads of different lengths arrived: FEC cannot be used for this block.
    uneven: bool,
}

impl Block {
    fn resolved(&self, i: usize) -> bool {
        self.plain[i].is_some() || self.failed[i]
    }
}

/// A parsed, header-validated datagram.
enum Parsed<'a> {
    Data {
        seq: u16,
        ts: u32,
        wire: &'a [u8],
        plain: Vec<u8>,
    },
    Fec {
        index: usize,
        base: u16,
        base_ts: u32,
        parity: &'a [u8],
    },
}

/// Reassembles one audio stream for the test client. See the module docs of [`crate::audio`].
pub struct AudioDepacketizer {
    duration_ms: u32,
    cipher: Option<AudioDecryptor>,
    first_sequence: Option<u16>,
    window: usize,
    /// `(head_base, head_next)`: base sequence of `blocks[0]`, and the index in it of the next
    /// packet to deliver. `None` until synchronised.
    head: Option<(u16, usize)>,
    /// `blocks[n]` has base sequence `head_base + 4n`.
    blocks: VecDeque<Block>,
    events: VecDeque<AudioEvent>,
    stats: DepacketizerStats,
}

impl std::fmt::Debug for AudioDepacketizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioDepacketizer")
            .field("duration_ms", &self.duration_ms)
            .field("encrypted", &self.cipher.is_some())
            .field("window", &self.window)
            .field("head", &self.head)
            .field("pending_blocks", &self.blocks.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl AudioDepacketizer {
    /// Validates the configuration and sets up the cipher.
    pub fn new(config: &AudioReceiverConfig) -> Result<Self, AudioError> {
        let duration_ms = check_duration(config.packet_duration_ms)?;
        let cipher = config
            .encryption
            .as_ref()
            .map(AudioDecryptor::new)
            .transpose()?;
        Ok(Self {
            duration_ms,
            cipher,
            first_sequence: config.first_sequence,
            window: usize::from(
                config
                    .reorder_window_blocks
                    .clamp(1, MAX_REORDER_WINDOW_BLOCKS),
            ),
            head: None,
            blocks: VecDeque::new(),
            events: VecDeque::new(),
            stats: DepacketizerStats::default(),
        })
    }

    /// Counters; see [`DepacketizerStats`].
    #[must_use]
    pub fn stats(&self) -> DepacketizerStats {
        self.stats
    }

    /// The sequence number of the next packet to be delivered (`None` before the first
    /// datagram).
    #[must_use]
    pub fn next_sequence(&self) -> Option<u16> {
        self.head.map(|(base, next)| base.wrapping_add(next as u16))
    }

    /// Next output event, in sequence order.
    pub fn poll_event(&mut self) -> Option<AudioEvent> {
        self.events.pop_front()
    }

    /// End of stream (or a pause the caller chooses to treat as one): gives up on every
    /// pending block, so everything received comes out and every hole before the newest
    /// received packet is reported lost. Slots after the newest packet are not reported: they
    /// may simply not have been sent yet, and still come out if they arrive later.
    pub fn flush(&mut self) {
        while self.blocks.len() > 1 {
            self.give_up_head();
        }
        let Some((base, next)) = self.head else {
            return;
        };
        let Some(block) = self.blocks.front_mut() else {
            return;
        };
        let end = (next..DATA_SHARDS)
            .rev()
            .find(|&i| block.resolved(i))
            .map_or(next, |i| i + 1);
        for i in next..end {
            let ev = take_event(block, base, i, self.duration_ms);
            push_event(&mut self.events, &mut self.stats, ev);
        }
        if end == DATA_SHARDS {
            self.pop_head();
        } else {
            self.head = Some((base, end));
        }
    }

    /// Feeds one datagram. On `Err` the datagram was rejected and the state is unchanged;
    /// duplicates and late packets are not errors (they are counted in [`Self::stats`]).
    pub fn handle_datagram(&mut self, datagram: &[u8]) -> Result<(), AudioError> {
        let parsed = self.parse(datagram)?;
        let (base, idx) = match &parsed {
            Parsed::Data { seq, .. } => (seq & !3, usize::from(seq & 3)),
            Parsed::Fec { base, .. } => (*base, usize::MAX),
        };
        // Synchronise on the first datagram, but only commit once it is accepted.
        let (head_base, head_next) = self.head.unwrap_or(match self.first_sequence {
            Some(s) => (s & !3, usize::from(s & 3)),
            None => (base, 0),
        });
        let off = base.wrapping_sub(head_base);
        if off >= 0x8000 || (off == 0 && idx != usize::MAX && idx < head_next) {
            self.stats.late += 1;
            return Ok(());
        }
        let mut n = usize::from(off / 4);

        // Validate against the block before changing anything.
        if let Some(block) = self.blocks.get(n) {
            self.check(block, base, &parsed)?;
        }

        self.head = Some((head_base, head_next));

        // A packet more than `window` blocks ahead: give up on the oldest blocks first.
        while n > self.window {
            let skip = n - self.window;
            if self.blocks.is_empty() {
                self.skip_empty(skip);
                n -= skip;
            } else {
                self.give_up_head();
                n -= 1;
            }
        }
        while self.blocks.len() <= n {
            self.blocks.push_back(Block::default());
        }
        let Some(block) = self.blocks.get_mut(n) else {
            return Ok(()); // unreachable: the loop above made `blocks[n]` exist
        };
        let dur = self.duration_ms;
        match parsed {
            Parsed::Data {
                seq,
                ts,
                wire,
                plain,
            } => {
                let i = usize::from(seq & 3);
                if block.wire[i].is_some() {
                    self.stats.duplicates += 1;
                    return Ok(());
                }
                block.base_ts.get_or_insert(ts.wrapping_sub(i as u32 * dur));
                match block.len {
                    None => block.len = Some(wire.len()),
                    Some(l) if l != wire.len() && !block.uneven => {
                        block.uneven = true;
                        self.stats.uneven_blocks += 1;
                    }
                    Some(_) => {}
                }
                block.wire[i] = Some(wire.to_vec());
                block.plain[i] = Some(plain);
                self.stats.data_packets += 1;
            }
            Parsed::Fec {
                index,
                base_ts,
                parity,
                ..
            } => {
                if block.fec[index].is_some() {
                    self.stats.duplicates += 1;
                    return Ok(());
                }
                block.base_ts.get_or_insert(base_ts);
                block.len.get_or_insert(parity.len());
                block.fec[index] = Some(parity.to_vec());
                self.stats.fec_packets += 1;
            }
        }
        self.try_recover(n, base);
        self.drain();
        Ok(())
    }

    /// Header-level validation and decryption; touches no state.
    fn parse<'a>(&self, d: &'a [u8]) -> Result<Parsed<'a>, AudioError> {
        if d.len() > MAX_DATAGRAM_LEN {
            return Err(AudioError::TooLong(d.len()));
        }
        let Some(h) = d.first_chunk::<RTP_HEADER_LEN>() else {
            return Err(AudioError::TooShort {
                len: d.len(),
                min: RTP_HEADER_LEN,
            });
        };
        if h[0] != RTP_VERSION_BYTE {
            return Err(AudioError::NotRtp(h[0]));
        }
        let be16 = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        let be32 =
            |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        match h[1] {
            PAYLOAD_TYPE_AUDIO => {
                let seq = be16(h, 2);
                let wire = &d[RTP_HEADER_LEN..];
                if wire.is_empty() {
                    return Err(AudioError::EmptyPayload);
                }
                let plain = match &self.cipher {
                    Some(c) => c.decrypt(seq, wire)?,
                    None => wire.to_vec(),
                };
                Ok(Parsed::Data {
                    seq,
                    ts: be32(h, 4),
                    wire,
                    plain,
                })
            }
            PAYLOAD_TYPE_FEC => {
                let Some(f) = d.first_chunk::<{ RTP_HEADER_LEN + FEC_HEADER_LEN }>() else {
                    return Err(AudioError::TooShort {
                        len: d.len(),
                        min: RTP_HEADER_LEN + FEC_HEADER_LEN,
                    });
                };
                let index = f[12];
                if usize::from(index) >= FEC_SHARDS {
                    return Err(AudioError::BadFecShardIndex(index));
                }
                if f[13] != PAYLOAD_TYPE_AUDIO {
                    return Err(AudioError::FecPayloadType(f[13]));
                }
                let base = be16(f, 14);
                if base % DATA_SHARDS as u16 != 0 {
                    return Err(AudioError::MisalignedFecBlock(base));
                }
                Ok(Parsed::Fec {
                    index: usize::from(index),
                    base,
                    base_ts: be32(f, 16),
                    parity: &d[RTP_HEADER_LEN + FEC_HEADER_LEN..],
                })
            }
            pt => Err(AudioError::UnknownPayloadType(pt)),
        }
    }

    /// Checks a datagram against what its block already holds.
    fn check(&self, block: &Block, base: u16, p: &Parsed<'_>) -> Result<(), AudioError> {
        let (expected_ts, got_ts) = match p {
            Parsed::Data { seq, ts, .. } => (
                block
                    .base_ts
                    .map(|b| b.wrapping_add(u32::from(seq & 3) * self.duration_ms)),
                *ts,
            ),
            Parsed::Fec {
                base_ts, parity, ..
            } => {
                if let Some(l) = block.len
                    && l != parity.len()
                {
                    return Err(AudioError::LengthMismatch {
                        base,
                        expected: l,
                        got: parity.len(),
                    });
                }
                (block.base_ts, *base_ts)
            }
        };
        match expected_ts {
            Some(e) if e != got_ts => Err(AudioError::TimestampMismatch {
                base,
                expected: e,
                got: got_ts,
            }),
            _ => Ok(()),
        }
    }

    /// Rebuilds lost data packets of `blocks[n]` when enough shards are present.
    fn try_recover(&mut self, n: usize, base: u16) {
        let Some(block) = self.blocks.get_mut(n) else {
            return;
        };
        let missing = block.wire.iter().filter(|w| w.is_none()).count();
        let have = DATA_SHARDS - missing + block.fec.iter().flatten().count();
        if missing == 0 || have < DATA_SHARDS || block.uneven {
            return;
        }
        let fec = [block.fec[0].as_deref(), block.fec[1].as_deref()];
        let mut data = block.wire.clone();
        if !fec_recover(&mut data, &fec) {
            return;
        }
        for (i, rebuilt) in data.into_iter().enumerate() {
            if block.wire[i].is_some() {
                continue;
            }
            let Some(w) = rebuilt else { continue };
            let seq = base.wrapping_add(i as u16);
            let plain = match &self.cipher {
                Some(c) => c.decrypt(seq, &w).ok(),
                None => Some(w.clone()),
            };
            match plain {
                Some(p) => {
                    block.plain[i] = Some(p);
                    block.recovered[i] = true;
                    self.stats.recovered += 1;
                }
                None => {
                    block.failed[i] = true;
                    self.stats.bad_recoveries += 1;
                }
            }
            block.wire[i] = Some(w);
        }
    }

    /// Delivers what is ready from the head, giving up on a head block once a packet `window`
    /// blocks later has arrived.
    fn drain(&mut self) {
        while let Some((base, mut next)) = self.head {
            let Some(block) = self.blocks.front_mut() else {
                return;
            };
            while next < DATA_SHARDS && block.resolved(next) {
                let ev = take_event(block, base, next, self.duration_ms);
                push_event(&mut self.events, &mut self.stats, ev);
                next += 1;
            }
            self.head = Some((base, next));
            if next == DATA_SHARDS {
                self.pop_head();
            } else if self.blocks.len() > self.window {
                self.give_up_head();
            } else {
                return;
            }
        }
    }

    /// Emits everything left in the head block (holes as lost) and moves to the next block.
    fn give_up_head(&mut self) {
        let Some((base, next)) = self.head else {
            return;
        };
        if let Some(block) = self.blocks.front_mut() {
            for i in next..DATA_SHARDS {
                let ev = take_event(block, base, i, self.duration_ms);
                push_event(&mut self.events, &mut self.stats, ev);
            }
        }
        self.pop_head();
    }

    fn pop_head(&mut self) {
        self.blocks.pop_front();
        if let Some((base, _)) = self.head {
            self.head = Some((base.wrapping_add(DATA_SHARDS as u16), 0));
        }
    }

    /// With no pending block, jumps the head `blocks` blocks ahead, reporting them lost.
    fn skip_empty(&mut self, blocks: usize) {
        let Some((base, next)) = self.head else {
            return;
        };
        let count = blocks * DATA_SHARDS - next;
        push_event(
            &mut self.events,
            &mut self.stats,
            AudioEvent::Lost {
                first_sequence: base.wrapping_add(next as u16),
                count: count as u32,
            },
        );
        self.head = Some((base.wrapping_add((blocks * DATA_SHARDS) as u16), 0));
    }
}

/// The event for slot `i` of `block` (moving the payload out).
fn take_event(block: &mut Block, base: u16, i: usize, dur: u32) -> AudioEvent {
    let sequence = base.wrapping_add(i as u16);
    match block.plain[i].take() {
        Some(opus) => AudioEvent::Packet(ReceivedPacket {
            sequence,
            timestamp: block
                .base_ts
                .unwrap_or_default()
                .wrapping_add(i as u32 * dur),
            opus,
            recovered: block.recovered[i],
        }),
        None => AudioEvent::Lost {
            first_sequence: sequence,
            count: 1,
        },
    }
}

/// Queues an event, merging a lost range into a directly preceding one.
fn push_event(events: &mut VecDeque<AudioEvent>, stats: &mut DepacketizerStats, ev: AudioEvent) {
    if let AudioEvent::Lost { count, .. } = ev {
        stats.lost += u64::from(count);
        if let (
            Some(AudioEvent::Lost {
                first_sequence: f,
                count: c,
            }),
            AudioEvent::Lost {
                first_sequence: nf,
                count: nc,
            },
        ) = (events.back_mut(), &ev)
            && f.wrapping_add(*c as u16) == *nf
        {
            *c += nc;
            return;
        }
    }
    events.push_back(ev);
}
