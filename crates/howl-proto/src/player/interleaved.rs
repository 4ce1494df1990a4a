//! RTP and RTCP interleaved on the RTSP connection (RFC 2326 §10.12), the transport of
//! `ffmpeg -rtsp_transport tcp` and of players behind NAT.
//!
//! Outgoing: each RTP or RTCP packet becomes `$`, channel, 16-bit length, packet. Incoming: the
//! player mixes its requests (keep-alives, TEARDOWN) with RTCP receiver reports on the odd
//! channels, so the connection's reader must split the byte stream into both kinds.

use crate::rtsp::{Incoming, Limits, ParseError, RequestParser};

/// The largest packet one interleaved frame can carry.
pub const MAX_FRAME_PAYLOAD: usize = u16::MAX as usize;

/// A packet too large for the 16-bit length of an interleaved frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{len}-byte packet does not fit an interleaved frame")]
pub struct FrameTooLarge {
    pub len: usize,
}

/// Appends `$ channel len data` to `out`.
pub fn write_frame(channel: u8, data: &[u8], out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
    let len = u16::try_from(data.len()).map_err(|_| FrameTooLarge { len: data.len() })?;
    out.reserve(4 + data.len());
    out.push(b'$');
    out.push(channel);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

/// One framed `$ channel len data`.
pub fn frame(channel: u8, data: &[u8]) -> Result<Vec<u8>, FrameTooLarge> {
    let mut out = Vec::new();
    write_frame(channel, data, &mut out)?;
    Ok(out)
}

/// Splits the bytes a player sends on its RTSP connection into requests and interleaved
/// frames, however the stream was cut into reads.
///
/// Drive loop: [`feed`](Self::feed) each read, then call [`next`](Self::next) until it returns
/// `Ok(None)`. After an error the framing is lost: answer
/// [`Response::for_parse_error`](crate::rtsp::Response::for_parse_error) and close; every
/// later call repeats the error.
#[derive(Debug, Clone, Default)]
pub struct InterleavedDecoder {
    parser: RequestParser,
    /// Bytes fed but not yet handed to the parser.
    pending: Vec<u8>,
}

impl InterleavedDecoder {
    /// A decoder with the default RTSP [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder with explicit limits.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            parser: RequestParser::with_limits(limits),
            pending: Vec::new(),
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete request or interleaved frame, if the bytes so far hold one.
    #[allow(clippy::should_implement_trait)] // fallible, so not an Iterator
    pub fn next(&mut self) -> Result<Option<Incoming>, ParseError> {
        let bytes = std::mem::take(&mut self.pending);
        self.parser.push_incoming(&bytes)
    }

    /// Bytes received but not yet returned in a request or frame.
    pub fn buffered(&self) -> usize {
        self.pending.len() + self.parser.buffered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtsp::Method;

    fn wire() -> Vec<u8> {
        let mut w = b"OPTIONS rtsp://h/app/x RTSP/1.0\r\nCSeq: 1\r\n\r\n".to_vec();
        write_frame(1, &[0x81, 201, 0, 1, 0, 0, 0, 1], &mut w).unwrap();
        write_frame(3, &[], &mut w).unwrap();
        w.extend_from_slice(
            b"GET_PARAMETER rtsp://h/app/x RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 3\r\n\r\nabc",
        );
        write_frame(1, &[0xaa; 300], &mut w).unwrap();
        w
    }

    fn drain(d: &mut InterleavedDecoder, out: &mut Vec<Incoming>) {
        while let Some(i) = d.next().expect("valid stream") {
            out.push(i);
        }
    }

    fn check(items: &[Incoming]) {
        assert_eq!(items.len(), 5, "{items:?}");
        assert!(matches!(&items[0], Incoming::Request(r) if r.method == Method::Options));
        assert_eq!(
            items[1],
            Incoming::Interleaved {
                channel: 1,
                data: vec![0x81, 201, 0, 1, 0, 0, 0, 1]
            }
        );
        assert_eq!(
            items[2],
            Incoming::Interleaved {
                channel: 3,
                data: vec![]
            }
        );
        assert!(
            matches!(&items[3], Incoming::Request(r) if r.method == Method::GetParameter && r.body == b"abc")
        );
        assert!(
            matches!(&items[4], Incoming::Interleaved { channel: 1, data } if data.len() == 300)
        );
    }

    #[test]
    fn whole_stream_and_every_split_point() {
        let w = wire();
        let mut d = InterleavedDecoder::new();
        let mut items = Vec::new();
        d.feed(&w);
        drain(&mut d, &mut items);
        check(&items);
        assert_eq!(d.buffered(), 0);
        for a in 0..w.len() {
            for b in [a, (a + 7).min(w.len()), (a + 331).min(w.len())] {
                let mut d = InterleavedDecoder::new();
                let mut items = Vec::new();
                for part in [&w[..a], &w[a..b], &w[b..]] {
                    d.feed(part);
                    drain(&mut d, &mut items);
                }
                check(&items);
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let w = wire();
        let mut d = InterleavedDecoder::new();
        let mut items = Vec::new();
        for b in &w {
            d.feed(std::slice::from_ref(b));
            drain(&mut d, &mut items);
        }
        check(&items);
    }

    #[test]
    fn framing() {
        assert_eq!(frame(2, &[9, 8]).unwrap(), vec![b'$', 2, 0, 2, 9, 8]);
        assert_eq!(
            frame(0, &vec![0; MAX_FRAME_PAYLOAD + 1]),
            Err(FrameTooLarge {
                len: MAX_FRAME_PAYLOAD + 1
            })
        );
        assert_eq!(frame(0, &vec![0; MAX_FRAME_PAYLOAD]).unwrap().len(), 65_539);
    }

    #[test]
    fn garbage_is_an_error_and_sticks() {
        let mut d = InterleavedDecoder::new();
        d.feed(b"\x00\x01garbage\r\n\r\n");
        assert!(d.next().is_err());
        d.feed(b"OPTIONS * RTSP/1.0\r\n\r\n");
        assert!(d.next().is_err());
    }
}
