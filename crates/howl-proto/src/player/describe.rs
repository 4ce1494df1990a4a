//! The stream a player is offered, and its DESCRIBE SDP (RFC 4566, RFC 6184 §8.2, RFC 7798
//! §7.2, RFC 7587 §7).

use std::fmt::Write as _;

use super::rtp::{OPUS_CLOCK_RATE, ParameterSets, VIDEO_CLOCK_RATE, VideoCodec};
use crate::base64;

/// RTP payload type of the video track (first dynamic type).
pub const VIDEO_PAYLOAD_TYPE: u8 = 96;
/// RTP payload type of the audio track.
pub const AUDIO_PAYLOAD_TYPE: u8 = 97;

/// A track of the session, named `trackID=<id>` in the SDP and SETUP URLs. The ids are fixed
/// (video 0, audio 1) whether or not the other track exists, so an interleaved channel pair or
/// log line always means the same track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Track {
    Video,
    Audio,
}

impl Track {
    /// Both tracks, in SDP order.
    pub const ALL: [Self; 2] = [Self::Video, Self::Audio];

    /// The `trackID` number.
    pub fn id(self) -> u8 {
        match self {
            Self::Video => 0,
            Self::Audio => 1,
        }
    }

    /// The track of a `trackID` number.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Self::Video),
            1 => Some(Self::Audio),
            _ => None,
        }
    }

    /// The `a=control` value, relative to the `Content-Base`.
    pub fn control(self) -> String {
        format!("trackID={}", self.id())
    }

    /// The RTP payload type used on this track.
    pub fn payload_type(self) -> u8 {
        match self {
            Self::Video => VIDEO_PAYLOAD_TYPE,
            Self::Audio => AUDIO_PAYLOAD_TYPE,
        }
    }

    /// Index into per-track arrays.
    pub(crate) fn index(self) -> usize {
        usize::from(self.id())
    }
}

/// The video track on offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTrack {
    pub codec: VideoCodec,
    /// Parameter sets for `sprop-*`; missing ones are left out of the SDP and players wait for
    /// the in-band copies before the next keyframe.
    pub parameter_sets: ParameterSets,
    /// Frames per second, for `a=framerate` (players size their jitter buffers with it).
    pub framerate: Option<u32>,
}

/// Opus channel layouts RFC 7587 can signal (surround needs a non-standard payload format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpusChannels {
    Mono,
    Stereo,
}

/// The audio track on offer (always Opus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioTrack {
    pub channels: OpusChannels,
}

/// What the server offers a player: supplied to
/// [`PlayerSession::complete_describe`](super::PlayerSession::complete_describe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDescription {
    /// `s=` line (shown as the title by VLC); control characters are dropped.
    pub session_name: String,
    pub video: Option<VideoTrack>,
    pub audio: Option<AudioTrack>,
}

impl StreamDescription {
    /// Whether `track` is offered.
    pub fn has(&self, track: Track) -> bool {
        match track {
            Track::Video => self.video.is_some(),
            Track::Audio => self.audio.is_some(),
        }
    }

    /// The SDP body of the DESCRIBE answer. `c=` is `0.0.0.0` and the ports `0`: the
    /// transport is negotiated by SETUP, as with every RTSP server.
    pub fn to_sdp(&self) -> String {
        let mut s = String::with_capacity(512);
        let name: String = self
            .session_name
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        let name = if name.trim().is_empty() {
            "howl"
        } else {
            name.trim()
        };
        // `write!` to a String cannot fail.
        let _ = write!(
            s,
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns={name}\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
             a=tool:howl\r\na=control:*\r\n"
        );
        if let Some(v) = &self.video {
            let pt = VIDEO_PAYLOAD_TYPE;
            let _ = write!(s, "m=video 0 RTP/AVP {pt}\r\n");
            let ps = &v.parameter_sets;
            let sprop = |name: &str, set: &Option<Vec<u8>>| {
                set.as_ref()
                    .map(|b| format!("{name}={}", base64::encode(b)))
            };
            let fmtp: Vec<String> = match v.codec {
                VideoCodec::H264 => {
                    let _ = write!(s, "a=rtpmap:{pt} H264/{VIDEO_CLOCK_RATE}\r\n");
                    let mut f = vec!["packetization-mode=1".to_owned()];
                    // profile_idc, constraint flags and level_idc are SPS bytes 1..4.
                    if let Some(sps) = ps.sps.as_deref().and_then(|s| s.get(1..4)) {
                        f.push(format!("profile-level-id={}", hex::encode(sps)));
                    }
                    if let (Some(sps), Some(pps)) = (&ps.sps, &ps.pps) {
                        f.push(format!(
                            "sprop-parameter-sets={},{}",
                            base64::encode(sps),
                            base64::encode(pps)
                        ));
                    }
                    f
                }
                VideoCodec::Hevc => {
                    let _ = write!(s, "a=rtpmap:{pt} H265/{VIDEO_CLOCK_RATE}\r\n");
                    [
                        sprop("sprop-vps", &ps.vps),
                        sprop("sprop-sps", &ps.sps),
                        sprop("sprop-pps", &ps.pps),
                    ]
                    .into_iter()
                    .flatten()
                    .collect()
                }
                // RFC 9628's name; the egress offers no AV1 track (its payloader refuses the
                // codec), but the description of one is still well formed.
                VideoCodec::Av1 => {
                    let _ = write!(s, "a=rtpmap:{pt} AV1/{VIDEO_CLOCK_RATE}\r\n");
                    Vec::new()
                }
            };
            if !fmtp.is_empty() {
                let _ = write!(s, "a=fmtp:{pt} {}\r\n", fmtp.join(";"));
            }
            if let Some(fps) = v.framerate {
                let _ = write!(s, "a=framerate:{fps}\r\n");
            }
            let _ = write!(s, "a=control:{}\r\n", Track::Video.control());
        }
        if let Some(a) = &self.audio {
            let pt = AUDIO_PAYLOAD_TYPE;
            // RFC 7587: always "/2"; sprop-stereo says what the sender actually encodes.
            let stereo = u8::from(a.channels == OpusChannels::Stereo);
            let _ = write!(
                s,
                "m=audio 0 RTP/AVP {pt}\r\na=rtpmap:{pt} opus/{OPUS_CLOCK_RATE}/2\r\n\
                 a=fmtp:{pt} sprop-stereo={stereo}\r\na=control:{}\r\n",
                Track::Audio.control()
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_and_opus_sdp() {
        let d = StreamDescription {
            session_name: "Desktop\r\n".into(),
            video: Some(VideoTrack {
                codec: VideoCodec::H264,
                parameter_sets: ParameterSets {
                    vps: None,
                    sps: Some(vec![0x67, 0x64, 0x00, 0x2a, 0xac]),
                    pps: Some(vec![0x68, 0xee, 0x3c, 0x80]),
                },
                framerate: Some(60),
            }),
            audio: Some(AudioTrack {
                channels: OpusChannels::Stereo,
            }),
        };
        assert_eq!(
            d.to_sdp(),
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=Desktop\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
             a=tool:howl\r\na=control:*\r\n\
             m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 packetization-mode=1;profile-level-id=64002a;sprop-parameter-sets=Z2QAKqw=,aO48gA==\r\n\
             a=framerate:60\r\na=control:trackID=0\r\n\
             m=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\na=fmtp:97 sprop-stereo=1\r\n\
             a=control:trackID=1\r\n"
        );
    }

    #[test]
    fn hevc_sdp_and_partial_sets() {
        let d = StreamDescription {
            session_name: String::new(),
            video: Some(VideoTrack {
                codec: VideoCodec::Hevc,
                parameter_sets: ParameterSets {
                    vps: Some(vec![0x40, 0x01]),
                    sps: Some(vec![0x42, 0x01]),
                    pps: Some(vec![0x44, 0x01]),
                },
                framerate: None,
            }),
            audio: Some(AudioTrack {
                channels: OpusChannels::Mono,
            }),
        };
        let sdp = d.to_sdp();
        assert!(sdp.contains("s=howl\r\n"));
        assert!(sdp.contains("a=rtpmap:96 H265/90000\r\n"));
        assert!(sdp.contains("a=fmtp:96 sprop-vps=QAE=;sprop-sps=QgE=;sprop-pps=RAE=\r\n"));
        assert!(sdp.contains("a=fmtp:97 sprop-stereo=0\r\n"));
        assert!(!sdp.contains("framerate"));
        // H.264 without parameter sets: packetization mode only, in-band sets follow.
        let d = StreamDescription {
            session_name: "x".into(),
            video: Some(VideoTrack {
                codec: VideoCodec::H264,
                parameter_sets: ParameterSets::default(),
                framerate: None,
            }),
            audio: None,
        };
        let sdp = d.to_sdp();
        assert!(sdp.contains("a=fmtp:96 packetization-mode=1\r\n"));
        assert!(!sdp.contains("m=audio"));
    }
}
