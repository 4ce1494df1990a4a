//! Encrypted RTSP (`rtspenc://`, Sunshine's extension, reference part 1 §6.2): every request and
//! every response is one AES-128-GCM message keyed with the launch's `rikey`.
//!
//! ```text
//! offset  size  field
//! 0       4     BE32(0x80000000 | N)   N = plaintext length = ciphertext length
//! 4       4     BE32(seq)
//! 8       16    GCM tag
//! 24      N     ciphertext of the whole RTSP message
//! ```
//!
//! Nonce: `LE32(seq) ‖ 00×6 ‖ dir ‖ 'R'` with `dir` `'C'` (client to host) or `'H'` (host to
//! client); no additional data. The high bit of the first word is what tells an encrypted
//! message from a plaintext one (`'A'..'Z'` of a method never has it).
//!
//! Sans-IO like the rest of the crate: [`EncryptedReader`] collects bytes from a connection
//! until one complete message is there, [`RtspCipher`] seals and opens. The lengths are bounded
//! by [`MAX_ENCRYPTED_LEN`] so a hostile length word cannot make a reader buffer more.

use super::message::{MAX_BODY, MAX_HEAD};
use crate::nvhttp::Fault;
use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// Bytes before the ciphertext: length word, sequence number, tag.
pub const ENCRYPTED_HEADER_LEN: usize = 24;
/// The largest plaintext accepted or produced: the plain parser's own limits (head + body).
pub const MAX_ENCRYPTED_LEN: usize = MAX_HEAD + MAX_BODY;
/// Marks the first word of an encrypted message.
const ENCRYPTED_BIT: u32 = 0x8000_0000;
const TAG_LEN: usize = 16;

/// Which end sealed a message; part of the nonce, so a reflected message does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtspDirection {
    /// `'C'`: requests.
    ClientToHost,
    /// `'H'`: responses.
    HostToClient,
}

impl RtspDirection {
    fn byte(self) -> u8 {
        match self {
            RtspDirection::ClientToHost => b'C',
            RtspDirection::HostToClient => b'H',
        }
    }
}

/// Why bytes are not a usable encrypted RTSP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptedRtspError {
    /// The first word lacks the encrypted bit: a plaintext RTSP message on an encrypted
    /// session (refused: the session's handshake must not go in the clear).
    #[error("plaintext RTSP message on an encrypted RTSP session")]
    Plaintext,
    /// The announced length is above [`MAX_ENCRYPTED_LEN`].
    #[error("encrypted RTSP message of {len} bytes exceeds {max}")]
    TooLarge { len: usize, max: usize },
    /// Fewer bytes than the header and the announced length (the peer closed early).
    #[error("encrypted RTSP message truncated")]
    Truncated,
    /// Bytes after the one message a connection carries.
    #[error("bytes after the encrypted RTSP message")]
    TrailingBytes,
    /// The tag does not match: wrong key, wrong direction, or altered bytes.
    #[error("encrypted RTSP message failed authentication")]
    Authentication,
    /// The crypto library refused (a bug here, never the peer's bytes).
    #[error("AES-GCM failed")]
    Crypto,
}

impl EncryptedRtspError {
    /// Who is at fault; see [`Fault`].
    pub fn fault(&self) -> Fault {
        match self {
            Self::Plaintext => Fault::Unsupported,
            Self::TooLarge { .. } | Self::TrailingBytes | Self::Authentication => {
                Fault::PeerMisbehaved
            }
            Self::Truncated => Fault::MalformedInput,
            Self::Crypto => Fault::Internal,
        }
    }
}

/// The session's AES-GCM key. Its `Debug` never shows the key.
pub struct RtspCipher {
    key: LessSafeKey,
}

impl std::fmt::Debug for RtspCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RtspCipher(..)")
    }
}

impl RtspCipher {
    /// A cipher keyed with the launch's `rikey`.
    pub fn new(rikey: &[u8; 16]) -> Result<Self, EncryptedRtspError> {
        let key = UnboundKey::new(&AES_128_GCM, rikey).map_err(|_| EncryptedRtspError::Crypto)?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    fn nonce(direction: RtspDirection, seq: u32) -> Nonce {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&seq.to_le_bytes());
        n[10] = direction.byte();
        n[11] = b'R';
        Nonce::assume_unique_for_key(n)
    }

    /// One complete message on the wire: header, then `plaintext` encrypted.
    pub fn seal(
        &self,
        direction: RtspDirection,
        seq: u32,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, EncryptedRtspError> {
        let too_large = || EncryptedRtspError::TooLarge {
            len: plaintext.len(),
            max: MAX_ENCRYPTED_LEN,
        };
        if plaintext.len() > MAX_ENCRYPTED_LEN {
            return Err(too_large());
        }
        let len = u32::try_from(plaintext.len()).map_err(|_| too_large())?;
        let mut out = Vec::with_capacity(ENCRYPTED_HEADER_LEN + plaintext.len());
        out.extend_from_slice(&(ENCRYPTED_BIT | len).to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&[0u8; TAG_LEN]);
        out.extend_from_slice(plaintext);
        let (head, body) = out.split_at_mut(ENCRYPTED_HEADER_LEN);
        let tag = self
            .key
            .seal_in_place_separate_tag(Self::nonce(direction, seq), Aad::empty(), body)
            .map_err(|_| EncryptedRtspError::Crypto)?;
        head[8..].copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens exactly one message (`frame` is what [`EncryptedReader`] returned, or a whole
    /// response read until close): its sequence number and plaintext.
    pub fn open(
        &self,
        direction: RtspDirection,
        frame: &[u8],
    ) -> Result<(u32, Vec<u8>), EncryptedRtspError> {
        let len = match frame_len(frame)? {
            Some(total) if total == frame.len() => total - ENCRYPTED_HEADER_LEN,
            Some(total) if total < frame.len() => return Err(EncryptedRtspError::TrailingBytes),
            Some(_) | None => return Err(EncryptedRtspError::Truncated),
        };
        let (head, body) = frame.split_at(ENCRYPTED_HEADER_LEN);
        let [_, _, _, _, s0, s1, s2, s3, ..] = *head else {
            return Err(EncryptedRtspError::Truncated);
        };
        let seq = u32::from_be_bytes([s0, s1, s2, s3]);
        let mut buf = Vec::with_capacity(len + TAG_LEN);
        buf.extend_from_slice(body);
        buf.extend_from_slice(&head[8..ENCRYPTED_HEADER_LEN]);
        let plain = self
            .key
            .open_in_place(Self::nonce(direction, seq), Aad::empty(), &mut buf)
            .map_err(|_| EncryptedRtspError::Authentication)?;
        let n = plain.len();
        buf.truncate(n);
        Ok((seq, buf))
    }
}

/// The total length (header included) of the message `buf` starts with, once its length word
/// is there (`Ok(None)` before); the caller compares it with what it has.
fn frame_len(buf: &[u8]) -> Result<Option<usize>, EncryptedRtspError> {
    let [b0, b1, b2, b3, ..] = *buf else {
        return Ok(None);
    };
    let word = u32::from_be_bytes([b0, b1, b2, b3]);
    if word & ENCRYPTED_BIT == 0 {
        return Err(EncryptedRtspError::Plaintext);
    }
    let len = usize::try_from(word & !ENCRYPTED_BIT).unwrap_or(usize::MAX);
    if len > MAX_ENCRYPTED_LEN {
        return Err(EncryptedRtspError::TooLarge {
            len,
            max: MAX_ENCRYPTED_LEN,
        });
    }
    Ok(Some(ENCRYPTED_HEADER_LEN + len))
}

/// Collects one encrypted message from a connection's bytes (Moonlight sends one request per
/// connection and waits for the answer, so anything after it is an error).
#[derive(Debug, Default)]
pub struct EncryptedReader {
    buf: Vec<u8>,
}

impl EncryptedReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes; `Some(frame)` once the whole message is there (pass it to
    /// [`RtspCipher::open`]). A plaintext start, an oversized length or extra bytes are errors
    /// as soon as they are seen, so nothing unbounded is buffered.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, EncryptedRtspError> {
        self.buf.extend_from_slice(bytes);
        let Some(total) = frame_len(&self.buf)? else {
            return Ok(None);
        };
        match self.buf.len().cmp(&total) {
            std::cmp::Ordering::Less => Ok(None),
            std::cmp::Ordering::Equal => Ok(Some(std::mem::take(&mut self.buf))),
            std::cmp::Ordering::Greater => Err(EncryptedRtspError::TrailingBytes),
        }
    }

    /// Bytes received so far (the plaintext error path answers in the clear, see the server).
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];
    const CLIENT_PLAIN: &[u8] =
        b"OPTIONS rtsp://0.0.0.0:48010 RTSP/1.0\r\nCSeq: 1\r\nX-GS-ClientVersion: 14\r\nHost: 0.0.0.0\r\n\r\n";
    const CLIENT_WIRE: &str = "80000059000000015704d89af5421990a8cee6e3ee75252f\
        69150e6c843a3ad6efcf8b8b577834a3a5279ece185d631d2270a956267fca07bd10dc6108bd54a2\
        74e963331bdde99a7f924401b62ce063291442448322503d695815e428153f2c0a51acc968a4dd37\
        1fc46fd811dd984b30";
    const HOST_PLAIN: &[u8] = b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n";
    const HOST_WIRE: &str = "8000001c00000001b31bb671248c1dc563deb6316381d8e0\
        4f891eb2a5ee569c5820950976ad93a3811a3c4b77e4762ad4add105";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    #[test]
    fn golden_vectors_seal_and_open_both_directions() {
        let c = RtspCipher::new(&KEY).unwrap();
        let client_wire = unhex(CLIENT_WIRE);
        assert_eq!(
            c.seal(RtspDirection::ClientToHost, 1, CLIENT_PLAIN)
                .unwrap(),
            client_wire
        );
        assert_eq!(
            c.open(RtspDirection::ClientToHost, &client_wire).unwrap(),
            (1, CLIENT_PLAIN.to_vec())
        );
        let host_wire = unhex(HOST_WIRE);
        assert_eq!(
            c.seal(RtspDirection::HostToClient, 1, HOST_PLAIN).unwrap(),
            host_wire
        );
        assert_eq!(
            c.open(RtspDirection::HostToClient, &host_wire).unwrap(),
            (1, HOST_PLAIN.to_vec())
        );
    }

    #[test]
    fn wrong_direction_key_or_altered_bytes_fail_authentication() {
        let c = RtspCipher::new(&KEY).unwrap();
        let wire = unhex(CLIENT_WIRE);
        assert_eq!(
            c.open(RtspDirection::HostToClient, &wire),
            Err(EncryptedRtspError::Authentication)
        );
        let other = RtspCipher::new(&[7; 16]).unwrap();
        assert_eq!(
            other.open(RtspDirection::ClientToHost, &wire),
            Err(EncryptedRtspError::Authentication)
        );
        for i in 4..wire.len() {
            let mut w = wire.clone();
            w[i] ^= 0x01;
            assert_eq!(
                c.open(RtspDirection::ClientToHost, &w),
                Err(EncryptedRtspError::Authentication),
                "byte {i}"
            );
        }
    }

    #[test]
    fn reader_assembles_byte_by_byte_and_refuses_plaintext_oversize_and_trailing() {
        let wire = unhex(CLIENT_WIRE);
        let mut r = EncryptedReader::new();
        for (i, b) in wire.iter().enumerate() {
            let got = r.push(std::slice::from_ref(b)).unwrap();
            assert_eq!(got.is_some(), i == wire.len() - 1);
            if let Some(frame) = got {
                assert_eq!(frame, wire);
            }
        }
        assert_eq!(
            EncryptedReader::new().push(CLIENT_PLAIN),
            Err(EncryptedRtspError::Plaintext)
        );
        let huge = (ENCRYPTED_BIT | (MAX_ENCRYPTED_LEN as u32 + 1)).to_be_bytes();
        assert!(matches!(
            EncryptedReader::new().push(&huge),
            Err(EncryptedRtspError::TooLarge { .. })
        ));
        let mut long = wire.clone();
        long.push(0);
        assert_eq!(
            EncryptedReader::new().push(&long),
            Err(EncryptedRtspError::TrailingBytes)
        );
        let c = RtspCipher::new(&KEY).unwrap();
        assert_eq!(
            c.open(RtspDirection::ClientToHost, &long),
            Err(EncryptedRtspError::TrailingBytes)
        );
        assert_eq!(
            c.open(RtspDirection::ClientToHost, &wire[..30]),
            Err(EncryptedRtspError::Truncated)
        );
        assert_eq!(
            c.open(RtspDirection::ClientToHost, &wire[..3]),
            Err(EncryptedRtspError::Truncated)
        );
    }

    #[test]
    fn seal_refuses_what_no_reader_would_accept() {
        let c = RtspCipher::new(&KEY).unwrap();
        let big = vec![b'x'; MAX_ENCRYPTED_LEN + 1];
        assert!(matches!(
            c.seal(RtspDirection::HostToClient, 2, &big),
            Err(EncryptedRtspError::TooLarge { .. })
        ));
        let max = vec![b'x'; MAX_ENCRYPTED_LEN];
        let wire = c.seal(RtspDirection::HostToClient, 2, &max).unwrap();
        assert_eq!(
            c.open(RtspDirection::HostToClient, &wire).unwrap(),
            (2, max)
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let c = RtspCipher::new(&KEY).unwrap();
        let s = format!("{c:?}");
        assert!(!s.contains("00112233") && !s.contains("17"), "{s}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(20_000))]
        /// Hostile bytes, in any split: the reader and the cipher answer, never panic, and
        /// never hold more than one bounded message.
        #[test]
        fn hostile_bytes_never_panic(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            split in 0usize..200,
            high in proptest::prelude::any::<bool>(),
        ) {
            let mut data = data;
            if high && !data.is_empty() {
                data[0] |= 0x80;
            }
            let c = RtspCipher::new(&KEY).unwrap();
            let _ = c.open(RtspDirection::ClientToHost, &data);
            let mut r = EncryptedReader::new();
            let at = split.min(data.len());
            if let Ok(None) = r.push(&data[..at]) {
                let _ = r.push(&data[at..]);
            }
            proptest::prop_assert!(r.buffered().len() <= ENCRYPTED_HEADER_LEN + MAX_ENCRYPTED_LEN);
        }
    }
}
