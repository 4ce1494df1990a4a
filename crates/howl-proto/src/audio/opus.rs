//! Just enough of the Opus packet framing (RFC 6716 §3.2, Appendix B) to lengthen a packet with
//! in-band padding, for single-stream and multistream packets.
//!
//! Why: audio FEC needs the four payloads of a block to have the same length, and the only way
//! to lengthen an Opus packet that every decoder accepts is Opus' own padding, which lives in
//! code-3 framing. A multistream packet is `streams − 1` self-delimited packets followed by one
//! ordinary packet; only that last one is rewritten, so the decoder sees identical frames.

/// Longest Opus frame (RFC 6716 §3.2.1).
pub const MAX_FRAME_LEN: usize = 1275;
/// Most frames in one packet (120 ms of 2.5 ms frames).
pub const MAX_FRAMES: usize = 48;

/// Why a packet could not be parsed or padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpusError {
    /// The bytes are not a valid Opus packet (or multistream packet with this stream count).
    #[error("invalid Opus packet framing")]
    Malformed,
    /// The requested length is shorter than the packet.
    #[error("cannot pad an Opus packet of {len} bytes to {target}")]
    Shrink {
        /// Packet length.
        len: usize,
        /// Requested length.
        target: usize,
    },
}

/// One parsed (sub-)packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The TOC byte.
    pub toc: u8,
    /// The frames, in order (may be empty slices: DTX / lost frames).
    pub frames: Vec<&'a [u8]>,
    /// Bytes the (sub-)packet occupies in its buffer, padding included.
    pub len: usize,
}

/// Reads a frame length field (1 or 2 bytes). Returns `(length, bytes used)`.
fn read_len(b: &[u8]) -> Result<(usize, usize), OpusError> {
    match *b {
        [x, ..] if x < 252 => Ok((usize::from(x), 1)),
        [x, y, ..] => Ok((usize::from(y) * 4 + usize::from(x), 2)),
        _ => Err(OpusError::Malformed),
    }
}

fn write_len(out: &mut Vec<u8>, len: usize) {
    if len < 252 {
        out.push(len as u8);
    } else {
        let first = 252 + (len & 3);
        out.push(first as u8);
        out.push(((len - first) / 4) as u8);
    }
}

/// Parses one packet at the start of `b`. `self_delimited` selects Appendix B framing (every
/// multistream sub-packet but the last); otherwise the packet extends to the end of `b`.
pub fn parse(b: &[u8], self_delimited: bool) -> Result<Packet<'_>, OpusError> {
    let (&toc, _) = b.split_first().ok_or(OpusError::Malformed)?;
    let mut pos = 1usize;
    let rest = |pos: usize| b.get(pos..).ok_or(OpusError::Malformed);
    let mut padding = 0usize;
    // Frame lengths given explicitly, and how many frames share the remaining length.
    let mut explicit: Vec<usize> = Vec::new();
    let count;
    let cbr;
    match toc & 3 {
        0 => {
            count = 1;
            cbr = true;
        }
        1 => {
            count = 2;
            cbr = true;
        }
        2 => {
            count = 2;
            cbr = false;
            let (l, n) = read_len(rest(pos)?)?;
            pos += n;
            explicit.push(l);
        }
        _ => {
            let &m = b.get(pos).ok_or(OpusError::Malformed)?;
            pos += 1;
            count = usize::from(m & 0x3f);
            cbr = m & 0x80 == 0;
            if count == 0 || count > MAX_FRAMES {
                return Err(OpusError::Malformed);
            }
            if m & 0x40 != 0 {
                loop {
                    let &p = b.get(pos).ok_or(OpusError::Malformed)?;
                    pos += 1;
                    padding += if p == 255 { 254 } else { usize::from(p) };
                    if p != 255 {
                        break;
                    }
                }
            }
            if !cbr {
                for _ in 0..count - 1 {
                    let (l, n) = read_len(rest(pos)?)?;
                    pos += n;
                    explicit.push(l);
                }
            }
        }
    }
    let mut lens = explicit;
    if self_delimited {
        // The last length field (CBR: the common length) is explicit too.
        let (l, n) = read_len(rest(pos)?)?;
        pos += n;
        if cbr {
            lens = vec![l; count];
        } else {
            lens.push(l);
        }
    } else {
        let avail = b
            .len()
            .checked_sub(pos + padding + lens.iter().sum::<usize>())
            .ok_or(OpusError::Malformed)?;
        if cbr {
            if avail % count != 0 {
                return Err(OpusError::Malformed);
            }
            lens = vec![avail / count; count];
        } else {
            lens.push(avail);
        }
    }
    let mut frames = Vec::with_capacity(count);
    for l in lens {
        if l > MAX_FRAME_LEN {
            return Err(OpusError::Malformed);
        }
        let f = b.get(pos..pos + l).ok_or(OpusError::Malformed)?;
        frames.push(f);
        pos += l;
    }
    let len = pos + padding;
    if len > b.len() {
        return Err(OpusError::Malformed);
    }
    Ok(Packet { toc, frames, len })
}

/// Splits a multistream packet into its `streams` sub-packets (all validated).
pub fn parse_multistream(b: &[u8], streams: u8) -> Result<Vec<Packet<'_>>, OpusError> {
    if streams == 0 {
        return Err(OpusError::Malformed);
    }
    let mut out = Vec::with_capacity(usize::from(streams));
    let mut pos = 0;
    for s in 0..streams {
        let p = parse(b.get(pos..).ok_or(OpusError::Malformed)?, s + 1 < streams)?;
        pos += p.len;
        out.push(p);
    }
    Ok(out)
}

/// Writes `packet` (a `streams`-stream Opus packet) padded to exactly `target` bytes into `out`
/// (appending). The decoded audio is unchanged: the last sub-packet is re-framed as code 3 with
/// padding; the others are copied verbatim.
pub fn pad(packet: &[u8], streams: u8, target: usize, out: &mut Vec<u8>) -> Result<(), OpusError> {
    if target < packet.len() {
        return Err(OpusError::Shrink {
            len: packet.len(),
            target,
        });
    }
    if target == packet.len() {
        out.extend_from_slice(packet);
        return Ok(());
    }
    let subs = parse_multistream(packet, streams)?;
    let (last, _) = subs.split_last().ok_or(OpusError::Malformed)?;
    let prefix_len = packet.len() - last.len;
    // The last sub-packet must end exactly at the end of the buffer (no trailing bytes).
    let last_target = target - prefix_len;
    let start = out.len();
    out.extend_from_slice(&packet[..prefix_len]);

    let count = last.frames.len();
    let cbr = last.frames.windows(2).all(|w| w[0].len() == w[1].len());
    let mut lens = Vec::new();
    if !cbr {
        for f in &last.frames[..count - 1] {
            write_len(&mut lens, f.len());
        }
    }
    let body: usize = last.frames.iter().map(|f| f.len()).sum();
    // TOC + frame-count byte + length fields + frames, before padding.
    let base = 2 + lens.len() + body;
    let Some(t) = last_target.checked_sub(base) else {
        // Cannot happen for target > len (re-framing adds at most the count byte), but a
        // malformed-but-parsed edge is not worth a panic.
        out.truncate(start);
        return Err(OpusError::Malformed);
    };
    out.push((last.toc & !3) | 3);
    out.push((u8::from(!cbr) << 7) | (u8::from(t > 0) << 6) | count as u8);
    let mut zeros = 0;
    if t > 0 {
        // `t` bytes in total: k bytes of 255 (254 padding each), one final byte v (v padding),
        // so t = 255k + 1 + v with v = (t − 1) mod 255.
        let k = (t - 1) / 255;
        let v = (t - 1) % 255;
        out.extend(std::iter::repeat_n(255u8, k));
        out.push(v as u8);
        zeros = 254 * k + v;
    }
    out.extend_from_slice(&lens);
    for f in &last.frames {
        out.extend_from_slice(f);
    }
    out.extend(std::iter::repeat_n(0u8, zeros));
    debug_assert_eq!(out.len() - start, target);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(b: &[u8], streams: u8) -> Vec<(u8, Vec<Vec<u8>>)> {
        parse_multistream(b, streams)
            .unwrap()
            .into_iter()
            .map(|p| (p.toc & !3, p.frames.iter().map(|f| f.to_vec()).collect()))
            .collect()
    }

    fn check_pad(p: &[u8], streams: u8) {
        for grow in [1usize, 2, 3, 254, 255, 256, 257, 600] {
            let mut out = Vec::new();
            pad(p, streams, p.len() + grow, &mut out).unwrap();
            assert_eq!(out.len(), p.len() + grow);
            assert_eq!(
                frames_of(&out, streams),
                frames_of(p, streams),
                "grow {grow}"
            );
        }
    }

    #[test]
    fn pads_every_code() {
        check_pad(&[0xf8, 1, 2, 3], 1); // code 0
        check_pad(&[0xf8], 1); // code 0, empty frame
        check_pad(&[0xf9, 1, 2, 3, 4], 1); // code 1
        check_pad(&[0xfa, 1, 9, 8, 7], 1); // code 2, frames of 1 and 3
        let mut big = vec![0xfa, 252 + 2, 100]; // code 2, first frame 4·100 + 254 = 654 bytes
        big.extend(std::iter::repeat_n(5u8, 654 + 10));
        check_pad(&big, 1);
        check_pad(&[0xfb, 0x03, 1, 2, 3, 4, 5, 6], 1); // code 3 CBR, 3 frames of 2
        check_pad(&[0xfb, 0x83, 1, 2, 9, 8, 7, 6], 1); // code 3 VBR 1+2+3
        check_pad(&[0xfb, 0x41, 2, 9, 0, 0], 1); // code 3 CBR, padded
    }

    #[test]
    fn pads_multistream_last_stream_only() {
        // Stream 0 self-delimited code 0 (len 2), stream 1 self-delimited code 1 (2×1), stream
        // 2 plain code 2.
        let p = [
            0x78, 2, 0xaa, 0xbb, 0x79, 1, 0xcc, 0xdd, 0x7a, 1, 0xee, 0xff, 0x11,
        ];
        check_pad(&p, 3);
        let mut out = Vec::new();
        pad(&p, 3, p.len() + 5, &mut out).unwrap();
        assert_eq!(out[..8], p[..8]);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for b in [
            &[][..],
            &[0xfb],
            &[0xfb, 0],
            &[0xfa, 200, 1],
            &[0xf9, 1, 2, 3],
            &[0xfb, 0x41, 255],
        ] {
            assert!(parse(b, false).is_err());
            assert!(pad(b, 1, b.len() + 4, &mut Vec::new()).is_err());
        }
        assert!(pad(&[0xf8, 1], 2, 10, &mut Vec::new()).is_err());
        assert!(matches!(
            pad(&[0xf8, 1], 1, 1, &mut Vec::new()),
            Err(OpusError::Shrink { .. })
        ));
    }
}
