//! Host side: Opus packet → RTP data datagram, and every fourth packet the block's two FEC
//! datagrams (reference part 2 §5.1, §5.3, §5.4).

use super::{
    AudioEncryption, AudioEncryptor, AudioError, DATA_SHARDS, FEC_HEADER_LEN, FEC_SHARDS,
    MAX_PAYLOAD_LEN, PAYLOAD_TYPE_AUDIO, PAYLOAD_TYPE_FEC, RTP_HEADER_LEN, RTP_VERSION_BYTE, SSRC,
    check_duration, ciphertext_len, fec_parity, opus,
};

/// Per-viewer audio settings, from the client's ANNOUNCE and `/launch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioStreamConfig {
    /// `x-nv-aqos.packetDuration`: 5 or 10 ms of audio per packet; also the timestamp step.
    pub packet_duration_ms: u32,
    /// `rikey`/`rikeyid` when audio encryption was negotiated (ANNOUNCE
    /// `x-ss-general.encryptionEnabled & 0x04` or `x-nv-general.featureFlags & 0x20`).
    pub encryption: Option<AudioEncryption>,
    /// Opus streams per packet (the `streams` of the advertised `surround-params`; 1 for
    /// stereo). Only needed to pad multistream packets correctly.
    pub opus_streams: u8,
    /// First RTP sequence number; must be a multiple of 4 (0, as Sunshine and Wolf use).
    pub first_sequence: u16,
    /// First RTP timestamp in milliseconds (0, as Sunshine uses).
    pub first_timestamp: u32,
}

impl AudioStreamConfig {
    /// Stereo, no encryption, counters at 0.
    #[must_use]
    pub fn new(packet_duration_ms: u32) -> Self {
        Self {
            packet_duration_ms,
            encryption: None,
            opus_streams: 1,
            first_sequence: 0,
            first_timestamp: 0,
        }
    }
}

/// What the packetizer had to do to keep blocks even; see the module docs of [`crate::audio`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketizerStats {
    /// Data packets sent.
    pub data_packets: u64,
    /// FEC packets sent.
    pub fec_packets: u64,
    /// Opus packets that were lengthened with Opus padding to match their block.
    pub padded_packets: u64,
    /// Blocks sent without FEC because their payloads ended up with different lengths (a packet
    /// longer than the ones already sent in its block, or one that needed padding but was not
    /// valid Opus). The client disables audio FEC on the first one.
    pub uneven_blocks: u64,
}

/// Turns Opus packets into audio datagrams for one viewer. See the module docs.
pub struct AudioPacketizer {
    duration_ms: u32,
    cipher: Option<AudioEncryptor>,
    streams: u8,
    sequence: u16,
    timestamp: u32,
    /// Plaintext length every packet is padded to; only grows (see the module docs).
    target_len: usize,
    /// The data datagrams of the current block, reused; `data[i]` is valid for `i < filled`.
    data: [Vec<u8>; DATA_SHARDS],
    filled: usize,
    /// The current block's payloads do not all have one length: no FEC for it.
    block_uneven: bool,
    fec: [Vec<u8>; FEC_SHARDS],
    /// Scratch for padding.
    pad_buf: Vec<u8>,
    stats: PacketizerStats,
}

impl std::fmt::Debug for AudioPacketizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioPacketizer")
            .field("duration_ms", &self.duration_ms)
            .field("encrypted", &self.cipher.is_some())
            .field("streams", &self.streams)
            .field("sequence", &self.sequence)
            .field("timestamp", &self.timestamp)
            .field("target_len", &self.target_len)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl AudioPacketizer {
    /// Validates the configuration and sets up the cipher.
    pub fn new(config: &AudioStreamConfig) -> Result<Self, AudioError> {
        let duration_ms = check_duration(config.packet_duration_ms)?;
        if !config.first_sequence.is_multiple_of(DATA_SHARDS as u16) {
            return Err(AudioError::MisalignedFirstSequence(config.first_sequence));
        }
        if config.opus_streams == 0 {
            return Err(AudioError::InvalidStreamCount);
        }
        let cipher = config
            .encryption
            .as_ref()
            .map(AudioEncryptor::new)
            .transpose()?;
        Ok(Self {
            duration_ms,
            cipher,
            streams: config.opus_streams,
            sequence: config.first_sequence,
            timestamp: config.first_timestamp,
            target_len: 0,
            data: Default::default(),
            filled: 0,
            block_uneven: false,
            fec: Default::default(),
            pad_buf: Vec::new(),
            stats: PacketizerStats::default(),
        })
    }

    /// Longest Opus packet [`Self::push`] accepts: the one whose payload still fits a 1400-byte
    /// FEC datagram (1376 plain, 1375 encrypted because PKCS#7 always adds a byte).
    #[must_use]
    pub fn max_opus_len(&self) -> usize {
        if self.cipher.is_some() {
            MAX_PAYLOAD_LEN - 1
        } else {
            MAX_PAYLOAD_LEN
        }
    }

    /// Sequence number the next data packet gets.
    #[must_use]
    pub fn next_sequence(&self) -> u16 {
        self.sequence
    }

    /// Timestamp (ms) the next data packet gets.
    #[must_use]
    pub fn next_timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Counters; see [`PacketizerStats`].
    #[must_use]
    pub fn stats(&self) -> PacketizerStats {
        self.stats
    }

    /// Packetizes one Opus packet (`packetDuration` ms of audio) and returns the datagrams to
    /// send now, in order: the data datagram, then after every fourth packet the block's FEC
    /// datagrams 0 and 1. They borrow internal buffers, valid until the next call.
    ///
    /// On error nothing is sent and no counter advances.
    pub fn push(&mut self, opus_packet: &[u8]) -> Result<AudioDatagrams<'_>, AudioError> {
        if opus_packet.is_empty() {
            return Err(AudioError::EmptyOpusPacket);
        }
        let max = self.max_opus_len();
        if opus_packet.len() > max {
            return Err(AudioError::OpusPacketTooLarge {
                len: opus_packet.len(),
                max,
            });
        }
        let slot = self.filled;
        if slot == 0 {
            self.block_uneven = false;
        }

        // Choose the plaintext: padded to the session target where possible.
        let mut payload: &[u8] = opus_packet;
        if opus_packet.len() > self.target_len {
            // Raise the session target. If this block already sent shorter packets it becomes
            // uneven (unless encryption rounds both to one length): caught by the length check
            // below, since shrinking is impossible and buffering would cost latency.
            self.target_len = opus_packet.len();
        } else if opus_packet.len() < self.target_len {
            self.pad_buf.clear();
            match opus::pad(
                opus_packet,
                self.streams,
                self.target_len,
                &mut self.pad_buf,
            ) {
                Ok(()) => {
                    payload = &self.pad_buf;
                    self.stats.padded_packets += 1;
                }
                Err(_) => {
                    // Not Opus we can re-frame: send it as is; the block is uneven if anything
                    // else in it has another length (checked below).
                }
            }
        }

        let seq = self.sequence;
        let buf = &mut self.data[slot];
        buf.clear();
        buf.push(RTP_VERSION_BYTE);
        buf.push(PAYLOAD_TYPE_AUDIO);
        buf.extend_from_slice(&seq.to_be_bytes());
        buf.extend_from_slice(&self.timestamp.to_be_bytes());
        buf.extend_from_slice(&SSRC.to_be_bytes());
        buf.extend_from_slice(payload);
        if let Some(cipher) = &self.cipher {
            if let Err(e) = cipher.encrypt_tail(seq, buf, RTP_HEADER_LEN) {
                buf.clear();
                return Err(e);
            }
            debug_assert_eq!(buf.len(), RTP_HEADER_LEN + ciphertext_len(payload.len()));
        }
        if slot > 0 && !self.block_uneven && self.data[0].len() != self.data[slot].len() {
            // Counted now, not at the end of the block: the client gives up on FEC as soon as
            // this datagram arrives.
            self.block_uneven = true;
            self.stats.uneven_blocks += 1;
        }

        self.sequence = seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(self.duration_ms);
        self.filled += 1;
        self.stats.data_packets += 1;

        let mut fec_count = 0;
        if self.filled == DATA_SHARDS {
            self.filled = 0;
            if !self.block_uneven {
                self.build_fec();
                fec_count = FEC_SHARDS;
                self.stats.fec_packets += FEC_SHARDS as u64;
            }
        }
        Ok(AudioDatagrams {
            data: &self.data[slot],
            fec: &self.fec[..fec_count],
        })
    }

    /// Fills `self.fec` from the four data datagrams of the block just completed.
    fn build_fec(&mut self) {
        let [d0, d1, d2, d3] = &self.data;
        let shards = [d0, d1, d2, d3].map(|d| d.get(RTP_HEADER_LEN..).unwrap_or_default());
        let len = shards[0].len();
        // Base sequence/timestamp: those of data packet 0 of the block.
        let base_seq = [d0[2], d0[3]];
        let base_ts = [d0[4], d0[5], d0[6], d0[7]];
        // Both hosts number FEC packets after the last data packet; the client ignores it.
        let last_seq = self.sequence.wrapping_sub(1);
        for (j, out) in self.fec.iter_mut().enumerate() {
            out.clear();
            out.push(RTP_VERSION_BYTE);
            out.push(PAYLOAD_TYPE_FEC);
            out.extend_from_slice(&last_seq.wrapping_add(1 + j as u16).to_be_bytes());
            out.extend_from_slice(&0u32.to_be_bytes());
            out.extend_from_slice(&SSRC.to_be_bytes());
            out.push(j as u8);
            out.push(PAYLOAD_TYPE_AUDIO);
            out.extend_from_slice(&base_seq);
            out.extend_from_slice(&base_ts);
            out.extend_from_slice(&SSRC.to_be_bytes());
            let start = out.len();
            debug_assert_eq!(start, RTP_HEADER_LEN + FEC_HEADER_LEN);
            out.resize(start + len, 0);
            fec_parity(j, shards, &mut out[start..]);
        }
    }
}

/// The datagrams produced by one [`AudioPacketizer::push`]: one data datagram, then zero or two
/// FEC datagrams.
#[derive(Debug, Clone, Copy)]
pub struct AudioDatagrams<'a> {
    data: &'a [u8],
    fec: &'a [Vec<u8>],
}

impl<'a> AudioDatagrams<'a> {
    /// Number of datagrams (1 or 3).
    #[must_use]
    pub fn len(&self) -> usize {
        1 + self.fec.len()
    }

    /// Never empty; present for API symmetry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The data datagram.
    #[must_use]
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The FEC datagrams (empty unless this push completed a block).
    pub fn fec(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fec.iter().map(Vec::as_slice)
    }

    /// All datagrams in send order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        std::iter::once(self.data).chain(self.fec())
    }
}
