//! Audio stream: Opus in RTP with optional AES-128-CBC and the fixed 4 + 2 audio FEC, plus the
//! matching receiver for the Rust test client (reference part 2 §5).
//!
//! Wire format: one RTP datagram per Opus packet — `0x80`, PT 97, BE16 sequence, BE32 timestamp
//! **in milliseconds**, SSRC 0, then the Opus packet or its AES-128-CBC/PKCS#7 ciphertext. The
//! data packets with sequence numbers `4k … 4k+3` form one FEC block; after the fourth, two FEC
//! datagrams (PT 127) carry `parity_j = Σ_i M[j][i] · payload_i` over GF(2^8) with the fixed
//! matrix [`FEC_MATRIX`], computed over the payloads *as sent* (ciphertext when encrypted).
//!
//! * [`AudioPacketizer`] (host): one per viewer. [`AudioPacketizer::push`] takes one Opus packet
//!   and returns the datagrams to send now (the data packet, plus the block's two FEC packets
//!   after every fourth), borrowed from internal buffers that are reused (no allocation once
//!   warm). Sequence numbers and timestamps are counters seeded from [`AudioStreamConfig`];
//!   nothing reads a clock.
//! * [`AudioDepacketizer`] (test client): feed datagrams in any order with
//!   [`AudioDepacketizer::handle_datagram`], then drain [`AudioEvent`]s with
//!   [`AudioDepacketizer::poll_event`] until it returns `None` (mutate, then drain). Packets come
//!   out in sequence order, each exactly once, either as a decrypted Opus packet (received or
//!   FEC-recovered) or inside an [`AudioEvent::Lost`] range. A datagram it rejects returns a
//!   typed [`AudioError`] and leaves the state untouched; no input can make it panic.
//!
//! # Equal-length blocks
//!
//! The client keys each FEC block on the payload length of the first packet it sees for that
//! block; any later packet of the block — **data or FEC** — with another length makes it disable
//! audio FEC for the rest of the session (moonlight-common-c `RtpAudioQueue.c`; reference
//! §5.4, checked against the client). Leaving out the FEC packets of an uneven block therefore
//! does not help: the data packets alone trip the check. The host must make the payloads (as
//! sent, so ciphertext lengths when encrypted) equal:
//!
//! 1. Run Opus in hard CBR (`VBR = 0`, as Sunshine does); then every packet already has the same
//!    length and the packetizer changes nothing.
//! 2. As a safety net the packetizer pads every Opus packet up to the longest length seen so far
//!    in the session, using Opus' own in-band padding (code-3 framing, [`opus`]), which every
//!    decoder strips. The target only grows, so a variable-rate encoder converges to its peak
//!    size after the first long packet and blocks stay even from then on.
//! 3. A packet longer than the packets already sent in its block cannot be fixed without
//!    buffering the block (15 ms of latency at 5 ms packets); the packetizer sends it, skips the
//!    FEC packets of that block (parity over uneven shards is undefined) and counts it in
//!    [`PacketizerStats::uneven_blocks`]. The same happens if a packet needs padding but is not
//!    valid Opus for the configured stream count. A non-zero count means the client has turned
//!    FEC off; audio itself keeps playing. (With encryption, plaintexts that PKCS#7 rounds to
//!    the same ciphertext length are not uneven.)

mod depacketizer;
pub mod opus;
mod packetizer;

use aws_lc_rs::cipher::{
    AES_128, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;

pub use depacketizer::{
    AudioDepacketizer, AudioEvent, AudioReceiverConfig, DepacketizerStats,
    MAX_REORDER_WINDOW_BLOCKS, ReceivedPacket,
};
pub use packetizer::{AudioDatagrams, AudioPacketizer, AudioStreamConfig, PacketizerStats};

use crate::nvhttp::Fault;

/// RTP header bytes (no extension, no CSRCs).
pub const RTP_HEADER_LEN: usize = 12;
/// The audio FEC header that follows the RTP header of an FEC datagram.
pub const FEC_HEADER_LEN: usize = 12;
/// RTP byte 0: version 2, no padding, no extension, no CSRCs.
pub const RTP_VERSION_BYTE: u8 = 0x80;
/// RTP payload type of audio data packets.
pub const PAYLOAD_TYPE_AUDIO: u8 = 97;
/// RTP payload type of audio FEC packets.
pub const PAYLOAD_TYPE_FEC: u8 = 127;
/// SSRC of every audio datagram (and of the FEC header).
pub const SSRC: u32 = 0;
/// Data packets per FEC block.
pub const DATA_SHARDS: usize = 4;
/// FEC packets per block.
pub const FEC_SHARDS: usize = 2;
/// The client's receive buffer: no audio datagram (data or FEC) may be longer.
pub const MAX_DATAGRAM_LEN: usize = 1400;
/// Longest RTP payload (the parity shard of an FEC datagram has the same length, behind 24 header
/// bytes).
pub const MAX_PAYLOAD_LEN: usize = MAX_DATAGRAM_LEN - RTP_HEADER_LEN - FEC_HEADER_LEN;
/// AES block size: CBC ciphertexts are a multiple of it, and PKCS#7 adds 1..=16 bytes.
pub const AES_BLOCK_LEN: usize = 16;
/// Packet durations the client can ask for (`x-nv-aqos.packetDuration`).
pub const PACKET_DURATIONS_MS: [u32; 2] = [5, 10];

/// The fixed audio FEC coefficients: row `j` produces FEC shard `j`. moonlight-common-c
/// overwrites nanors' Cauchy matrix with exactly these values, and so do Sunshine and Wolf;
/// any other matrix recovers garbage.
pub const FEC_MATRIX: [[u8; DATA_SHARDS]; FEC_SHARDS] =
    [[0x77, 0x40, 0x38, 0x0e], [0xc7, 0xa7, 0x0d, 0x6c]];

/// The audio key material from `/launch` (`rikey`, `rikeyid`).
#[derive(Clone, PartialEq, Eq)]
pub struct AudioEncryption {
    /// `KEY`: the 16-byte AES key (`rikey`).
    pub key: [u8; 16],
    /// `rikeyid` as parsed from the query (signed decimal); the IV uses its 32-bit pattern.
    pub rikeyid: i32,
}

impl std::fmt::Debug for AudioEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material never reaches logs.
        f.debug_struct("AudioEncryption")
            .field("key", &"<redacted>")
            .field("rikeyid", &"<redacted>")
            .finish()
    }
}

/// Errors of the audio path, sorted by who is at fault (STYLE practice 6); see
/// [`AudioError::fault`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    // --- Local misuse: the caller passed values the protocol cannot carry. ---
    /// `packetDuration` other than 5 or 10 ms.
    #[error("audio packet duration {0} ms; only 5 and 10 are defined")]
    InvalidPacketDuration(u32),
    /// First sequence number not a multiple of 4 (the client needs block-aligned sequences).
    #[error("first audio sequence {0} is not a multiple of 4")]
    MisalignedFirstSequence(u16),
    /// Opus stream count of 0.
    #[error("Opus stream count must be at least 1")]
    InvalidStreamCount,
    /// An empty Opus packet (every Opus packet has at least its TOC byte).
    #[error("empty Opus packet")]
    EmptyOpusPacket,
    /// The Opus packet would make a datagram longer than [`MAX_DATAGRAM_LEN`].
    #[error("Opus packet of {len} bytes; at most {max} fit one audio datagram")]
    OpusPacketTooLarge {
        /// Opus packet length.
        len: usize,
        /// Longest Opus packet that fits with the current encryption setting.
        max: usize,
    },

    // --- Internal: crypto library failure, not caused by the peer. ---
    /// AES-CBC key setup or encryption failed.
    #[error("AES-CBC failure")]
    Crypto,

    // --- Malformed input (receiver side): the datagram is dropped, state unchanged. ---
    /// Shorter than the headers its payload type needs.
    #[error("audio datagram of {len} bytes; at least {min} needed")]
    TooShort {
        /// Received length.
        len: usize,
        /// Smallest acceptable.
        min: usize,
    },
    /// Longer than [`MAX_DATAGRAM_LEN`].
    #[error("audio datagram of {0} bytes exceeds {MAX_DATAGRAM_LEN}")]
    TooLong(usize),
    /// RTP byte 0 is not `0x80` (version 2, no padding/extension/CSRCs).
    #[error("not an audio RTP datagram (byte 0 = {0:#04x})")]
    NotRtp(u8),
    /// A data packet without payload.
    #[error("audio data packet without payload")]
    EmptyPayload,
    /// Encrypted payload that is not a non-zero multiple of 16 bytes.
    #[error("encrypted audio payload of {0} bytes is not a non-zero multiple of 16")]
    BadCiphertextLength(usize),
    /// AES-CBC decryption produced invalid PKCS#7 padding (wrong key or corrupted bytes).
    #[error("audio payload failed AES-CBC decryption")]
    Decrypt,

    // --- Unsupported: a well-formed datagram this receiver does not handle. ---
    /// RTP payload type other than 97 (audio) or 127 (FEC).
    #[error("unknown audio RTP payload type {0}")]
    UnknownPayloadType(u8),

    // --- Peer misbehaved: well-formed, but against the protocol. ---
    /// FEC shard index other than 0 or 1.
    #[error("audio FEC shard index {0} (only 0 and 1 exist)")]
    BadFecShardIndex(u8),
    /// FEC block base sequence not a multiple of 4 (the client disables FEC).
    #[error("audio FEC base sequence {0} is not a multiple of 4")]
    MisalignedFecBlock(u16),
    /// FEC header names a payload type other than 97 for the recovered packets.
    #[error("audio FEC header payload type {0}, expected 97")]
    FecPayloadType(u8),
    /// A payload length differs from the block's (the client disables FEC).
    #[error("audio block {base}: payload of {got} bytes, block has {expected}")]
    LengthMismatch {
        /// Block base sequence.
        base: u16,
        /// The block's payload length.
        expected: usize,
        /// This datagram's payload length.
        got: usize,
    },
    /// A timestamp contradicts the block's base timestamp and the packet duration.
    #[error("audio block {base}: timestamp {got}, expected {expected}")]
    TimestampMismatch {
        /// Block base sequence.
        base: u16,
        /// Timestamp implied by the block.
        expected: u32,
        /// Timestamp received.
        got: u32,
    },
}

impl AudioError {
    /// Who is at fault; see [`Fault`].
    #[must_use]
    pub fn fault(&self) -> Fault {
        match self {
            Self::InvalidPacketDuration(_)
            | Self::MisalignedFirstSequence(_)
            | Self::InvalidStreamCount
            | Self::EmptyOpusPacket
            | Self::OpusPacketTooLarge { .. } => Fault::LocalMisuse,
            Self::Crypto => Fault::Internal,
            Self::TooShort { .. }
            | Self::TooLong(_)
            | Self::NotRtp(_)
            | Self::EmptyPayload
            | Self::BadCiphertextLength(_)
            | Self::Decrypt => Fault::MalformedInput,
            Self::UnknownPayloadType(_) => Fault::Unsupported,
            Self::BadFecShardIndex(_)
            | Self::MisalignedFecBlock(_)
            | Self::FecPayloadType(_)
            | Self::LengthMismatch { .. }
            | Self::TimestampMismatch { .. } => Fault::PeerMisbehaved,
        }
    }
}

fn check_duration(ms: u32) -> Result<u32, AudioError> {
    if PACKET_DURATIONS_MS.contains(&ms) {
        Ok(ms)
    } else {
        Err(AudioError::InvalidPacketDuration(ms))
    }
}

// ---------------------------------------------------------------------------------------------
// AES-128-CBC
// ---------------------------------------------------------------------------------------------

/// The CBC IV of the packet with sequence number `seq`: `BE32((rikeyid + seq) mod 2^32) ‖ 0×12`.
/// The addition carries into the upper bytes (`0xDEADBEEF + 17 = 0xDEADBF00`).
#[must_use]
pub fn audio_iv(rikeyid: i32, seq: u16) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&(rikeyid as u32).wrapping_add(u32::from(seq)).to_be_bytes());
    iv
}

/// Ciphertext length of an `n`-byte plaintext: PKCS#7 always adds 1..=16 bytes.
#[must_use]
pub fn ciphertext_len(n: usize) -> usize {
    (n / AES_BLOCK_LEN + 1) * AES_BLOCK_LEN
}

/// Host-side audio cipher (encrypt only).
pub(crate) struct AudioEncryptor {
    key: PaddedBlockEncryptingKey,
    rikeyid: i32,
}

impl AudioEncryptor {
    pub(crate) fn new(enc: &AudioEncryption) -> Result<Self, AudioError> {
        let unbound = UnboundCipherKey::new(&AES_128, &enc.key).map_err(|_| AudioError::Crypto)?;
        Ok(Self {
            key: PaddedBlockEncryptingKey::cbc_pkcs7(unbound).map_err(|_| AudioError::Crypto)?,
            rikeyid: enc.rikeyid,
        })
    }

    /// Pads and encrypts `buf[start..]` in place (the buffer grows by the PKCS#7 padding), so the
    /// RTP header written before `start` and the ciphertext share one allocation.
    pub(crate) fn encrypt_tail(
        &self,
        seq: u16,
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), AudioError> {
        let ctx = EncryptionContext::Iv128(FixedLength::from(audio_iv(self.rikeyid, seq)));
        let mut tail = Tail { buf, start };
        self.key
            .less_safe_encrypt(&mut tail, ctx)
            .map(drop)
            .map_err(|_| AudioError::Crypto)
    }
}

/// `buf[start..]` as the in/out buffer of aws-lc's padded encryption: it must both expose the
/// plaintext and grow by the padding.
struct Tail<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
}

impl AsMut<[u8]> for Tail<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        let start = self.start.min(self.buf.len());
        &mut self.buf[start..]
    }
}

impl<'b> Extend<&'b u8> for Tail<'_> {
    fn extend<I: IntoIterator<Item = &'b u8>>(&mut self, iter: I) {
        self.buf.extend(iter);
    }
}

/// Receiver-side audio cipher (decrypt only).
pub(crate) struct AudioDecryptor {
    key: PaddedBlockDecryptingKey,
    rikeyid: i32,
}

impl AudioDecryptor {
    pub(crate) fn new(enc: &AudioEncryption) -> Result<Self, AudioError> {
        let unbound = UnboundCipherKey::new(&AES_128, &enc.key).map_err(|_| AudioError::Crypto)?;
        Ok(Self {
            key: PaddedBlockDecryptingKey::cbc_pkcs7(unbound).map_err(|_| AudioError::Crypto)?,
            rikeyid: enc.rikeyid,
        })
    }

    /// Decrypts one payload into a fresh buffer and strips the PKCS#7 padding.
    pub(crate) fn decrypt(&self, seq: u16, ciphertext: &[u8]) -> Result<Vec<u8>, AudioError> {
        if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(AES_BLOCK_LEN) {
            return Err(AudioError::BadCiphertextLength(ciphertext.len()));
        }
        let mut buf = ciphertext.to_vec();
        let ctx = DecryptionContext::Iv128(FixedLength::from(audio_iv(self.rikeyid, seq)));
        let plain_len = self
            .key
            .decrypt(&mut buf, ctx)
            .map_err(|_| AudioError::Decrypt)?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

/// Encrypts one Opus packet as the audio stream does (AES-128-CBC, PKCS#7, IV from
/// [`audio_iv`]). For tests and tools; the packetizer encrypts in place.
pub fn encrypt_payload(
    enc: &AudioEncryption,
    seq: u16,
    plaintext: &[u8],
) -> Result<Vec<u8>, AudioError> {
    let mut buf = plaintext.to_vec();
    AudioEncryptor::new(enc)?.encrypt_tail(seq, &mut buf, 0)?;
    Ok(buf)
}

/// Decrypts one audio payload (the inverse of [`encrypt_payload`]).
pub fn decrypt_payload(
    enc: &AudioEncryption,
    seq: u16,
    ciphertext: &[u8],
) -> Result<Vec<u8>, AudioError> {
    AudioDecryptor::new(enc)?.decrypt(seq, ciphertext)
}

// ---------------------------------------------------------------------------------------------
// FEC
// ---------------------------------------------------------------------------------------------

/// Computes FEC shard `row` (0 or 1) of a block into `parity`:
/// `parity[k] = XOR_i gf_mul(FEC_MATRIX[row][i], data[i][k])`. Every shard must be
/// `parity.len()` bytes; shorter data shards would be a caller bug, and the missing bytes count
/// as zero rather than panicking. A `row` other than 0 or 1 yields all-zero parity.
pub fn fec_parity(row: usize, data: [&[u8]; DATA_SHARDS], parity: &mut [u8]) {
    parity.fill(0);
    let Some(coeffs) = FEC_MATRIX.get(row) else {
        return;
    };
    for (shard, &c) in data.iter().zip(coeffs) {
        for (p, &d) in parity.iter_mut().zip(shard.iter()) {
            *p ^= crate::fec::gf_mul(c, d);
        }
    }
}

/// Rebuilds the missing data shards of a block in place.
///
/// `data[i]` is `Some(shard)` for received shards and `None` for missing ones (they are filled
/// in on success); `fec[j]` likewise for the two FEC shards. All present shards must have the
/// same length. Returns `false` (and changes nothing) when more data shards are missing than FEC
/// shards are present, or when the shard lengths differ.
pub fn fec_recover(
    data: &mut [Option<Vec<u8>>; DATA_SHARDS],
    fec: &[Option<&[u8]>; FEC_SHARDS],
) -> bool {
    let missing: Vec<usize> = (0..DATA_SHARDS).filter(|&i| data[i].is_none()).collect();
    let rows: Vec<usize> = (0..FEC_SHARDS).filter(|&j| fec[j].is_some()).collect();
    if missing.is_empty() {
        return true;
    }
    if missing.len() > rows.len() {
        return false;
    }
    let len = match data.iter().flatten().next().map(Vec::len).or(fec
        .iter()
        .flatten()
        .next()
        .map(|s| s.len()))
    {
        Some(l) => l,
        None => return false,
    };
    if data.iter().flatten().any(|s| s.len() != len) || fec.iter().flatten().any(|s| s.len() != len)
    {
        return false;
    }
    // Syndromes: s_j = fec_j − Σ_{present i} M[j][i]·d_i = Σ_{missing m} M[j][m]·d_m.
    let rows = &rows[..missing.len()];
    let mut syn: Vec<Vec<u8>> = Vec::with_capacity(rows.len());
    for &j in rows {
        let mut s = fec[j].map(<[u8]>::to_vec).unwrap_or_default();
        for (i, shard) in data.iter().enumerate() {
            if let Some(shard) = shard {
                let c = FEC_MATRIX[j][i];
                for (o, &d) in s.iter_mut().zip(shard) {
                    *o ^= crate::fec::gf_mul(c, d);
                }
            }
        }
        syn.push(s);
    }
    use crate::fec::{gf_inv, gf_mul};
    match (missing.as_slice(), rows, syn.as_mut_slice()) {
        ([m], [j], [s]) => {
            // d_m = s / M[j][m]; no coefficient of the matrix is zero.
            let inv = gf_inv(FEC_MATRIX[*j][*m]);
            s.iter_mut().for_each(|b| *b = gf_mul(inv, *b));
            data[*m] = Some(std::mem::take(s));
            true
        }
        ([a, b], [j0, j1], [s0, s1]) => {
            // Cramer's rule on the 2×2 system [[p, q], [r, t]] · [d_a, d_b] = [s0, s1].
            let (p, q) = (FEC_MATRIX[*j0][*a], FEC_MATRIX[*j0][*b]);
            let (r, t) = (FEC_MATRIX[*j1][*a], FEC_MATRIX[*j1][*b]);
            let det = gf_mul(p, t) ^ gf_mul(q, r);
            if det == 0 {
                return false;
            }
            let inv = gf_inv(det);
            let (mut da, mut db) = (vec![0u8; len], vec![0u8; len]);
            for k in 0..len {
                let (x, y) = (s0[k], s1[k]);
                da[k] = gf_mul(inv, gf_mul(t, x) ^ gf_mul(q, y));
                db[k] = gf_mul(inv, gf_mul(p, y) ^ gf_mul(r, x));
            }
            data[*a] = Some(da);
            data[*b] = Some(db);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::needless_range_loop)] // reason: a and b index columns of both rows
    fn every_erasure_pattern_of_the_fixed_matrix_is_solvable() {
        // The client recovers any ≤ 2 lost data shards, so every 1×1 and 2×2 minor of the
        // matrix must be non-singular.
        for row in FEC_MATRIX {
            assert!(row.iter().all(|&c| c != 0));
        }
        for a in 0..4 {
            for b in a + 1..4 {
                let det = crate::fec::gf_mul(FEC_MATRIX[0][a], FEC_MATRIX[1][b])
                    ^ crate::fec::gf_mul(FEC_MATRIX[0][b], FEC_MATRIX[1][a]);
                assert_ne!(det, 0, "columns {a},{b}");
            }
        }
    }

    #[test]
    fn iv_carries_into_upper_bytes() {
        assert_eq!(audio_iv(0x1234_5678, 0)[..4], [0x12, 0x34, 0x56, 0x78]);
        assert_eq!(
            audio_iv(0xDEAD_BEEFu32 as i32, 17)[..4],
            [0xde, 0xad, 0xbf, 0x00]
        );
        assert_eq!(audio_iv(-1, 1)[..4], [0, 0, 0, 0]);
        assert!(audio_iv(-1, 1)[4..].iter().all(|&b| b == 0));
    }

    #[test]
    fn ciphertext_len_always_pads() {
        assert_eq!(ciphertext_len(0), 16);
        assert_eq!(ciphertext_len(15), 16);
        assert_eq!(ciphertext_len(16), 32);
        assert_eq!(ciphertext_len(32), 48);
    }

    #[test]
    fn recover_every_pattern_of_up_to_two() {
        let shards: Vec<Vec<u8>> = (0..4u8)
            .map(|i| {
                (0..37u8)
                    .map(|k| i.wrapping_mul(91) ^ k.wrapping_mul(13))
                    .collect()
            })
            .collect();
        let refs = [
            &shards[0][..],
            &shards[1][..],
            &shards[2][..],
            &shards[3][..],
        ];
        let mut p0 = vec![0; 37];
        let mut p1 = vec![0; 37];
        fec_parity(0, refs, &mut p0);
        fec_parity(1, refs, &mut p1);
        for lost in 0u32..16 {
            if lost.count_ones() > 2 {
                continue;
            }
            for fec_mask in 0u32..4 {
                let mut data: [Option<Vec<u8>>; 4] =
                    std::array::from_fn(|i| (lost & (1 << i) == 0).then(|| shards[i].clone()));
                let fec = [
                    (fec_mask & 1 != 0).then_some(&p0[..]),
                    (fec_mask & 2 != 0).then_some(&p1[..]),
                ];
                let ok = fec_recover(&mut data, &fec);
                assert_eq!(
                    ok,
                    lost.count_ones() <= fec_mask.count_ones(),
                    "lost {lost:04b} fec {fec_mask:02b}"
                );
                if ok {
                    for i in 0..4 {
                        assert_eq!(data[i].as_deref(), Some(&shards[i][..]));
                    }
                }
            }
        }
    }
}
