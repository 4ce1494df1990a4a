//! Annex-B byte-stream helpers for H.264 and HEVC access units.
//!
//! GameStream clients recognise a key frame only if, after optional AUD/SEI, it starts with the
//! parameter sets followed by the IDR/IRAP slice, and the *first network packet* must hold the
//! parameter sets and the start of that slice (reference part 2 §4.5, performance anchors). An
//! encoder SEI sitting between the parameter sets and the slice (x264's version string is ~600
//! bytes) can push the slice into packet 2, so the worker strips SEI NAL units from key frames
//! with [`clean_keyframe`], which also drops repeated parameter sets. Tests use [`nal_units`] to check the structure of what workers send.

use crate::protocol::Codec;

/// One NAL unit found in an Annex-B buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NalUnit<'a> {
    /// Offset of the start code (`00 00 01` or `00 00 00 01`) in the buffer.
    pub offset: usize,
    /// Length of that start code: 3 or 4.
    pub start_code_len: usize,
    /// NAL header and body, up to the next start code (may end with `trailing_zero_8bits`).
    pub data: &'a [u8],
}

impl NalUnit<'_> {
    /// NAL unit type for `codec` (H.264: 5 bits; HEVC: 6 bits); `None` for AV1 or an empty NAL.
    pub fn nal_type(&self, codec: Codec) -> Option<u8> {
        let b = *self.data.first()?;
        match codec {
            Codec::H264 => Some(b & 0x1f),
            Codec::Hevc => Some((b >> 1) & 0x3f),
            Codec::Av1 => None,
        }
    }
}

/// H.264 NAL unit types used by the checks here.
pub mod h264 {
    /// IDR slice.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// HEVC NAL unit types used by the checks here.
pub mod hevc {
    /// First IRAP type (BLA_W_LP); IRAP slices are 16..=21.
    pub const IRAP_FIRST: u8 = 16;
    /// Last IRAP type (CRA_NUT).
    pub const IRAP_LAST: u8 = 21;
    /// Video parameter set.
    pub const VPS: u8 = 32;
    /// Sequence parameter set.
    pub const SPS: u8 = 33;
    /// Picture parameter set.
    pub const PPS: u8 = 34;
    /// Access unit delimiter.
    pub const AUD: u8 = 35;
    /// Prefix SEI.
    pub const SEI_PREFIX: u8 = 39;
    /// Suffix SEI.
    pub const SEI_SUFFIX: u8 = 40;
}

/// Finds the next `00 00 01` at or after `from`; returns (start code offset, start code length).
fn next_start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 3 <= data.len() {
        // Skip fast over bytes that cannot end a start code.
        if data[i + 2] > 1 {
            i += 3;
            continue;
        }
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if i > from && data[i - 1] == 0 {
                return Some((i - 1, 4));
            }
            return Some((i, 3));
        }
        i += 1;
    }
    None
}

/// Iterates the NAL units of an Annex-B buffer. Bytes before the first start code are ignored.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = NalUnit<'_>> {
    let mut next = next_start_code(data, 0);
    std::iter::from_fn(move || {
        let (offset, sc_len) = next?;
        let body_start = offset + sc_len;
        next = next_start_code(data, body_start);
        let end = next.map_or(data.len(), |(o, _)| o);
        Some(NalUnit {
            offset,
            start_code_len: sc_len,
            data: &data[body_start..end],
        })
    })
}

fn is_sei(codec: Codec, nal: &NalUnit<'_>) -> bool {
    match nal.nal_type(codec) {
        Some(t) => match codec {
            Codec::H264 => t == h264::SEI,
            Codec::Hevc => t == hevc::SEI_PREFIX || t == hevc::SEI_SUFFIX,
            Codec::Av1 => false,
        },
        None => false,
    }
}

fn is_parameter_set(codec: Codec, nal: &NalUnit<'_>) -> bool {
    match (codec, nal.nal_type(codec)) {
        (Codec::H264, Some(t)) => t == h264::SPS || t == h264::PPS,
        (Codec::Hevc, Some(t)) => t == hevc::VPS || t == hevc::SPS || t == hevc::PPS,
        _ => false,
    }
}

/// Shapes a key frame for the GameStream client: removes SEI NAL units and parameter sets that
/// repeat an identical one earlier in the same access unit (an encoder that repeats headers and
/// a parser with `config-interval=-1` can both insert them). Returns `None` when there is nothing
/// to remove (the common case: no copy), and always `None` for AV1.
pub fn clean_keyframe(codec: Codec, data: &[u8]) -> Option<Vec<u8>> {
    if codec == Codec::Av1 {
        return None;
    }
    let mut seen: Vec<&[u8]> = Vec::new();
    let mut keep: Vec<NalUnit<'_>> = Vec::new();
    let mut removed = false;
    for nal in nal_units(data) {
        if is_sei(codec, &nal) {
            removed = true;
            continue;
        }
        if is_parameter_set(codec, &nal) {
            let body = trim_trailing_zeros(nal.data);
            if seen.contains(&body) {
                removed = true;
                continue;
            }
            seen.push(body);
        }
        keep.push(nal);
    }
    if !removed {
        return None;
    }
    let mut out = Vec::with_capacity(data.len());
    for nal in keep {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal.data);
    }
    Some(out)
}

fn trim_trailing_zeros(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., 0] = b {
        b = rest;
    }
    b
}

/// NAL types of an access unit in order (for logs and tests).
pub fn nal_types(codec: Codec, data: &[u8]) -> Vec<u8> {
    nal_units(data).filter_map(|n| n.nal_type(codec)).collect()
}

/// True if `data` is a key frame the GameStream client accepts: after optional AUD/SEI it starts
/// with SPS, PPS (H.264) or VPS, SPS, PPS (HEVC) and then an IDR/IRAP slice.
pub fn is_client_keyframe(codec: Codec, data: &[u8]) -> bool {
    let types = nal_types(codec, data);
    match codec {
        Codec::H264 => {
            let rest: Vec<u8> = types
                .into_iter()
                .skip_while(|&t| t == h264::AUD || t == h264::SEI)
                .collect();
            rest.len() >= 3 && rest[0] == h264::SPS && rest[1] == h264::PPS && rest[2] == h264::IDR
        }
        Codec::Hevc => {
            let rest: Vec<u8> = types
                .into_iter()
                .skip_while(|&t| t == hevc::AUD || t == hevc::SEI_PREFIX)
                .collect();
            rest.len() >= 4
                && rest[0] == hevc::VPS
                && rest[1] == hevc::SPS
                && rest[2] == hevc::PPS
                && (hevc::IRAP_FIRST..=hevc::IRAP_LAST).contains(&rest[3])
        }
        Codec::Av1 => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let au = [
            0, 0, 0, 1, 0x67, 0xaa, 0, 0, 1, 0x68, 0xbb, 0, 0, 0, 1, 0x06, 5, 0, 0, 1, 0x65, 1, 2,
        ];
        let nals: Vec<_> = nal_units(&au).collect();
        assert_eq!(nals.len(), 4);
        assert_eq!((nals[0].offset, nals[0].start_code_len), (0, 4));
        assert_eq!(nals[0].data, &[0x67, 0xaa]);
        assert_eq!((nals[1].offset, nals[1].start_code_len), (6, 3));
        assert_eq!((nals[2].offset, nals[2].start_code_len), (11, 4));
        assert_eq!(nals[3].data, &[0x65, 1, 2]);
        assert_eq!(nal_types(Codec::H264, &au), vec![7, 8, 6, 5]);
        // An SEI between the parameter sets and the slice is not a leading SEI.
        assert!(!is_client_keyframe(Codec::H264, &au));
        let stripped = clean_keyframe(Codec::H264, &au).unwrap();
        assert_eq!(nal_types(Codec::H264, &stripped), vec![7, 8, 5]);
        assert!(is_client_keyframe(Codec::H264, &stripped));
        assert!(clean_keyframe(Codec::H264, &stripped).is_none());
    }

    #[test]
    fn hevc_types_and_garbage() {
        let au = [
            0, 0, 1, 0x40, 1, 0, 0, 1, 0x42, 1, 0, 0, 1, 0x44, 1, 0, 0, 1, 0x26, 1,
        ];
        assert_eq!(nal_types(Codec::Hevc, &au), vec![32, 33, 34, 19]);
        assert!(is_client_keyframe(Codec::Hevc, &au));
        assert!(clean_keyframe(Codec::Hevc, &au).is_none());
        // Headers repeated by encoder and parser: the second copy goes.
        let mut twice = au[..15].to_vec();
        twice.extend_from_slice(&au);
        assert_eq!(
            nal_types(Codec::Hevc, &twice),
            vec![32, 33, 34, 32, 33, 34, 19]
        );
        let clean = clean_keyframe(Codec::Hevc, &twice).unwrap();
        assert_eq!(nal_types(Codec::Hevc, &clean), vec![32, 33, 34, 19]);
        assert!(is_client_keyframe(Codec::Hevc, &clean));
        assert!(!is_client_keyframe(Codec::H264, &[1, 2, 3]));
        assert_eq!(nal_units(&[]).count(), 0);
        assert_eq!(nal_units(&[0, 0]).count(), 0);
        assert_eq!(nal_units(&[0, 0, 1]).count(), 1);
    }
}
