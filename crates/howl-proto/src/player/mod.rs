//! RTSP egress to standard players (VLC, ffmpeg, GStreamer `rtspsrc`, OBS): the sans-IO half.
//!
//! An RFC 2326 subset that real players use — OPTIONS, DESCRIBE (SDP), SETUP, PLAY, PAUSE,
//! TEARDOWN, GET_PARAMETER as keep-alive — with RTP/AVP over UDP unicast or interleaved on the
//! RTSP connection (`ffmpeg -rtsp_transport tcp`), RTCP sender reports for lip sync, and Basic
//! or Digest authentication with an API token as the password.
//!
//! * [`rtp`]: RTP header, Annex-B splitting, H.264 / HEVC / Opus payloaders.
//! * [`rtcp`]: sender reports out, lenient receiver-report parsing in.
//! * [`interleaved`]: `$`-framing and the request/frame splitter for the RTSP connection.
//! * [`auth`]: `Authorization` parsing, verification against candidate secrets, challenges.
//! * [`path`]: `/app/<name>?width=..` and `/lobby/<name>` URLs.
//! * [`describe`]: the offered tracks and their SDP.
//! * [`session`]: [`PlayerSession`], the per-connection state machine.
//!
//! # Drive loop (server)
//!
//! Per accepted connection: draw a session id, a nonce and per-track [`RtpParams`], build a
//! [`PlayerSession`]; feed reads to an [`InterleavedDecoder`]; for each request call
//! [`PlayerSession::handle`]. A [`Handled::Describe`] asks the server to resolve the path,
//! authorize the credentials (answer [`DescribeRefusal::Unauthorized`] for none or wrong ones),
//! wait for the encoder's parameter sets, and answer with
//! [`PlayerSession::complete_describe`]. On [`Action::StartPlaying`] build one payloader per
//! track with the given [`RtpParams`] and payload type, ask the encoder for a keyframe, and
//! send every few seconds a [`rtcp::SenderReport`] per track. Keep-alives, deadlines and
//! TEARDOWN end the session with a typed [`EndReason`].
//!
//! # Lip sync
//!
//! Each payloader anchors its RTP clock at the first presentation time it packetizes, so the
//! two tracks' timestamps are unrelated until the sender reports relate them. Build each
//! report from one reading of both clocks: `ntp` = [`NtpTime::from_unix`] of the wallclock
//! now, `rtp_timestamp` = the payloader's [`VideoPayloader::timestamp_at`] /
//! [`OpusPayloader::timestamp_at`] of the media presentation time that corresponds to that
//! wallclock instant (the same media clock audio and video PTS are on), `stats` = its
//! `stats()`. Send [`SenderReport::to_compound`] to the track's RTCP port or channel.

pub mod auth;
pub mod describe;
pub mod interleaved;
pub mod path;
pub mod rtcp;
pub mod rtp;
pub mod session;

pub use auth::{AuthParseError, Credentials, DigestCredentials};
pub use describe::{
    AUDIO_PAYLOAD_TYPE, AudioTrack, OpusChannels, StreamDescription, Track, VIDEO_PAYLOAD_TYPE,
    VideoTrack,
};
pub use interleaved::{FrameTooLarge, InterleavedDecoder};
pub use path::{PathError, StreamPath, StreamTarget, VideoRequest, parse_path};
pub use rtcp::{NtpTime, SenderReport};
pub use rtp::{
    DEFAULT_MTU, H264Payloader, HevcPayloader, OpusPayloader, ParameterSets, RtpConfigError,
    RtpHeader, RtpParams, SenderStats, VideoCodec, VideoPayloader,
};
pub use session::{
    Action, DEFAULT_PLAY_TIMEOUT, DEFAULT_SESSION_TIMEOUT, DescribeQuery, DescribeRefusal,
    EndReason, Handled, PlayerConfig, PlayerConfigError, PlayerSession, TrackSetup, Transport,
    UdpPorts,
};
