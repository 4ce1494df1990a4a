//! The video codecs howl streams: one type for the Moonlight SDP (`bitStreamFormat`), the RTP
//! payloaders of the RTSP egress and the worker protocol, so that no layer maps one enum onto
//! another (and no mapping can silently substitute one codec for another). A layer that
//! cannot carry a codec says so with its own typed error (see
//! [`crate::player::RtpConfigError::UnsupportedCodec`]).

/// A video codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VideoCodec {
    /// H.264 / AVC, Annex-B byte stream.
    H264,
    /// H.265 / HEVC, Annex-B byte stream.
    Hevc,
    /// AV1, low-overhead OBU stream (temporal units).
    Av1,
}

impl VideoCodec {
    /// All codecs, in the order the server prefers to advertise them.
    pub const ALL: [VideoCodec; 3] = [VideoCodec::H264, VideoCodec::Hevc, VideoCodec::Av1];

    /// Lower-case name used in logs, the API and the worker's `--probe` JSON (`h264`, `hevc`,
    /// `av1`).
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::Hevc => "hevc",
            VideoCodec::Av1 => "av1",
        }
    }

    /// Inverse of [`VideoCodec::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        VideoCodec::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The Moonlight SDP's `x-nv-vqos[0].bitStreamFormat` wire value.
    pub fn to_raw(self) -> u32 {
        match self {
            Self::H264 => 0,
            Self::Hevc => 1,
            Self::Av1 => 2,
        }
    }

    /// From the `bitStreamFormat` wire value.
    pub fn from_raw(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::H264),
            1 => Some(Self::Hevc),
            2 => Some(Self::Av1),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_wire_values_round_trip() {
        for c in VideoCodec::ALL {
            assert_eq!(VideoCodec::from_name(c.name()), Some(c));
            assert_eq!(VideoCodec::from_raw(c.to_raw()), Some(c));
        }
        assert_eq!(VideoCodec::from_name("vp9"), None);
        assert_eq!(VideoCodec::from_raw(3), None);
    }
}
