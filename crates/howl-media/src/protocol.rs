//! The versioned protocol between the howl server and one `howl-worker` process.
//!
//! # Transport
//!
//! One unix stream socket per worker. The server listens (or creates a socketpair), spawns
//! `howl-worker --socket PATH`, and the worker connects. Both directions carry a sequence of
//! frames:
//!
//! ```text
//! +----------------+--------+------------------------------+
//! | len: u32 BE    | type u8| payload (len - 1 bytes)      |
//! +----------------+--------+------------------------------+
//! ```
//!
//! `len` counts the type byte and the payload, never itself; it is at least 1 and at most
//! [`MAX_FRAME_LEN`]. All integers are big-endian. Strings are `u32 BE length` + UTF-8 bytes.
//! The bulk `data` of [`VideoFrame`] and [`AudioPacket`] is the last field and runs to the end of
//! the frame (no length of its own), so the hot path copies it once.
//!
//! # Conversation
//!
//! ```text
//! worker                                   server
//!   Hello{version, pid, encoders}  ---->
//!                                  <----   Start(StreamParams)
//!   Started{.., opus_config}       ---->   (before any Video/Audio)
//!   Video / Audio / Heartbeat ...  ---->   (Heartbeat every 500 ms)
//!                                  <----   RequestKeyframe (any time after Start)
//!                                  <----   Input{viewer, event} / ReleaseInput{viewer}
//!                                  <----   SetClipboard{text} (a desktop: own the clipboard)
//!   Clipboard{text}                ---->   (a desktop's clipboard changed)
//!   AppExited{detail}              ---->   (a desktop's app ended by itself; Stop follows)
//!   SourceLost{reason} / SourceRestored ->   (URI sources: the input failed / is back)
//!   Error{fatal, message}          ---->   (fatal: the worker exits right after)
//!                                  <----   Stop  => worker sets its pipeline to Null, exits 0
//! ```
//!
//! A worker whose socket closes (server gone) stops its pipeline and exits. A server that sees a
//! [`Message::Hello`] with another [`PROTOCOL_VERSION`] must stop the worker: messages are not
//! self-describing beyond their type byte.
//!
//! [`Message::SetClipboard`] and [`Message::Clipboard`] were added within version 4: they are
//! new type bytes, which a peer without them skips as a message error (see Decoding), so
//! neither side depends on the other knowing them.
//!
//! # Decoding
//!
//! [`FrameDecoder`] is incremental and sans-IO: `push` whatever bytes the socket produced, then
//! call `next` until it returns `Ok(None)`. It never panics on any input (property-tested).
//! Errors come in two kinds, see [`ProtocolError::is_fatal`]: a *framing* error (a length of 0 or
//! over the maximum) means the byte stream can no longer be split into frames, so the decoder
//! stays failed; a *message* error (unknown type, truncated or malformed payload) consumes that
//! one frame and decoding can go on, which keeps room for newer message types.

use howl_proto::input::{InputError, InputEvent};

/// Version of this protocol; sent in [`Message::Hello`]. Bump it on any incompatible change.
/// 4: input travels as the client's own input packet (howl-proto's `InputEvent`).
pub const PROTOCOL_VERSION: u16 = 4;

/// Largest allowed frame (type byte + payload). 16 MiB holds any access unit a sane encoder
/// produces at the bitrates GameStream uses (a 4K IDR is a few MiB at most), while a corrupted
/// length prefix cannot make the decoder buffer gigabytes.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Bytes of the length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;

/// Opus sample rate: GameStream audio is always 48 kHz.
pub const OPUS_SAMPLE_RATE: u32 = 48_000;

/// Message type bytes. Server → worker types have the high bit clear, worker → server types
/// have it set, so a frame sent the wrong way is caught as an unknown type by the other side's
/// checks ([`Message::direction`]).
mod ty {
    pub const START: u8 = 0x01;
    pub const REQUEST_KEYFRAME: u8 = 0x02;
    pub const STOP: u8 = 0x03;
    pub const INPUT: u8 = 0x04;
    pub const RELEASE_INPUT: u8 = 0x05;
    pub const SET_CLIPBOARD: u8 = 0x06;
    pub const HELLO: u8 = 0x81;
    pub const STARTED: u8 = 0x82;
    pub const VIDEO: u8 = 0x83;
    pub const AUDIO: u8 = 0x84;
    pub const HEARTBEAT: u8 = 0x85;
    pub const ERROR: u8 = 0x86;
    pub const APP_EXITED: u8 = 0x87;
    pub const SOURCE_LOST: u8 = 0x88;
    pub const SOURCE_RESTORED: u8 = 0x89;
    pub const CLIPBOARD: u8 = 0x8A;
}

/// Largest clipboard text either way (UTF-8 bytes): a page of code or a long URL list, while
/// one message stays small next to video and fits a browser's data-channel message (64 KiB
/// unless the browser says more) with room for JSON escaping. Longer texts are not sent.
pub const MAX_CLIPBOARD_BYTES: usize = 32 * 1024;

/// Video codecs a worker can be asked for: howl-proto's one codec type, so the SDP, the RTP
/// payloaders and the worker protocol never map between enums.
pub use howl_proto::codec::VideoCodec as Codec;

fn codec_to_wire(c: Codec) -> u8 {
    match c {
        Codec::H264 => 1,
        Codec::Hevc => 2,
        Codec::Av1 => 3,
    }
}

fn codec_from_wire(v: u8) -> Result<Codec, ProtocolError> {
    match v {
        1 => Ok(Codec::H264),
        2 => Ok(Codec::Hevc),
        3 => Ok(Codec::Av1),
        _ => Err(ProtocolError::InvalidField {
            field: "codec",
            value: u64::from(v),
        }),
    }
}

/// What the worker captures. An enum so that desktops, URIs and cameras can be added later
/// without changing the framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The synthetic [`crate::testpattern`] picture plus a sine tone of `tone_hz`.
    TestPattern {
        /// Frequency of the audio test tone in Hz.
        tone_hz: u32,
    },
    /// A virtual desktop: a private X server at the stream's resolution with a private sound
    /// sink, running one app inside them, captured and encoded.
    Desktop(DesktopApp),
    /// A camera, stream or file the worker opens with GStreamer (`rtsp://`, `http(s)://`,
    /// `file://`, `srt://`), decoded and re-encoded at the stream's size and rate. While it is
    /// unreachable the worker streams a "no signal" slate and reconnects.
    Uri {
        /// The URI, possibly with credentials (never logged by the server).
        uri: String,
    },
}

impl Source {
    const TAG_TEST_PATTERN: u8 = 1;
    const TAG_DESKTOP: u8 = 2;
    const TAG_URI: u8 = 3;
}

/// The program a [`Source::Desktop`] runs inside its display and sound sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopApp {
    /// Program to execute (looked up in `PATH` when it has no slash).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables, on top of the worker's own plus `DISPLAY` and
    /// `PULSE_SERVER`.
    pub env: Vec<(String, String)>,
    /// Working directory; the worker's own when `None`.
    pub working_dir: Option<String>,
    /// Run it in a container instead of as a host process: `command` and `args` are then
    /// the container's command (both empty: the image's own).
    pub container: Option<ContainerSpec>,
}

/// A Docker container for a desktop app (howl-core `AppKind::Docker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// A locally present image.
    pub image: String,
    /// Extra bind mounts, `host:container[:ro]`.
    pub mounts: Vec<String>,
    /// Docker network mode.
    pub network: String,
}

/// Everything a worker needs to build its pipeline. Sent once, in [`Message::Start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamParams {
    /// Picture width in pixels (even).
    pub width: u32,
    /// Picture height in pixels (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Target video bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Video codec.
    pub codec: Codec,
    /// Audio channel count: 2, 6 (5.1) or 8 (7.1).
    pub audio_channels: u8,
    /// Duration of one Opus packet in ms: 5 or 10 (`x-nv-aqos.packetDuration`).
    pub audio_packet_ms: u8,
    /// What to capture.
    pub source: Source,
    /// Slices per frame (`videoEncoderSlicesPerFrame` from ANNOUNCE); at least 1.
    pub slices_per_frame: u8,
}

/// Why [`StreamParams::validate`] refused a parameter set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stream parameter {field} = {value}: {why}")]
pub struct ParamsError {
    /// Field name.
    pub field: &'static str,
    /// The refused value.
    pub value: u64,
    /// What would have been accepted.
    pub why: &'static str,
}

impl StreamParams {
    /// Largest accepted width or height: 8K.
    pub const MAX_DIMENSION: u32 = 8192;
    /// Largest accepted frame rate.
    pub const MAX_FPS: u32 = 480;
    /// Largest accepted bitrate (kbit/s): 500 Mbit/s.
    pub const MAX_BITRATE_KBPS: u32 = 500_000;

    /// Checks the ranges a worker can honour. The decoder accepts any numbers (it only checks
    /// the schema); the worker calls this before building a pipeline and answers with
    /// [`Message::Error`] if it fails.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let err = |field, value: u32, why| ParamsError {
            field,
            value: u64::from(value),
            why,
        };
        for (field, v) in [("width", self.width), ("height", self.height)] {
            if !(16..=Self::MAX_DIMENSION).contains(&v) || !v.is_multiple_of(2) {
                return Err(err(field, v, "even, 16..=8192"));
            }
        }
        if self.fps == 0 || self.fps > Self::MAX_FPS {
            return Err(err("fps", self.fps, "1..=480"));
        }
        if self.bitrate_kbps == 0 || self.bitrate_kbps > Self::MAX_BITRATE_KBPS {
            return Err(err("bitrate_kbps", self.bitrate_kbps, "1..=500000"));
        }
        if !matches!(self.audio_channels, 2 | 6 | 8) {
            return Err(err(
                "audio_channels",
                u32::from(self.audio_channels),
                "2, 6 or 8",
            ));
        }
        if !matches!(self.audio_packet_ms, 5 | 10) {
            return Err(err(
                "audio_packet_ms",
                u32::from(self.audio_packet_ms),
                "5 or 10",
            ));
        }
        if self.slices_per_frame == 0 {
            return Err(err("slices_per_frame", 0, "at least 1"));
        }
        Ok(())
    }
}

/// One encoder element a worker can use, as found by probing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderInfo {
    /// Codec it produces.
    pub codec: Codec,
    /// GStreamer element factory name, e.g. `x264enc`, `nvh264enc`.
    pub element_name: String,
    /// True for GPU / fixed-function encoders.
    pub hardware: bool,
}

/// Opus multistream configuration the worker's encoder produces; the host must advertise exactly
/// this in its RTSP DESCRIBE (`surround-params`) so the client's decoder matches the encoder.
///
/// `mapping` is indexed in the GameStream client's speaker order (FL, FR, FC, LFE, BL, BR, SL,
/// SR): `mapping[i]` is the decoded Opus channel that carries speaker `i`. It is the *encoder's*
/// mapping; the server still applies the DESCRIBE normal-quality rotation quirk (reference part 1
/// §6.5) when it prints the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusConfig {
    /// Always [`OPUS_SAMPLE_RATE`] in practice.
    pub sample_rate: u32,
    /// Channel count: 2, 6 or 8.
    pub channels: u8,
    /// Opus streams in each multistream packet.
    pub streams: u8,
    /// How many of those streams are coupled (stereo) streams.
    pub coupled_streams: u8,
    /// Channel mapping, `channels` entries, client speaker order.
    pub mapping: Vec<u8>,
}

/// For 5.1: client speaker order (FL FR FC LFE BL BR) → index in Vorbis order (FL FC FR BL BR LFE).
const CLIENT_TO_VORBIS_6: [usize; 6] = [0, 2, 1, 5, 3, 4];
/// For 7.1: client order (FL FR FC LFE BL BR SL SR) → Vorbis order (FL FC FR SL SR BL BR LFE).
const CLIENT_TO_VORBIS_8: [usize; 8] = [0, 2, 1, 7, 5, 6, 3, 4];

impl OpusConfig {
    /// The layout libopus' surround encoder (mapping family 1, what GStreamer's `opusenc`
    /// uses for more than two channels) produces, translated to client speaker order.
    /// Stereo is the fixed GameStream 2/1/1 `0 1`. Streams and coupled counts match Sunshine's
    /// normal-quality rows (5.1: 4/2, 7.1: 5/3); the mapping differs from Sunshine's and is
    /// therefore sent to the server rather than assumed.
    pub fn for_channels(channels: u8) -> Option<Self> {
        match channels {
            2 => Some(OpusConfig {
                sample_rate: OPUS_SAMPLE_RATE,
                channels: 2,
                streams: 1,
                coupled_streams: 1,
                mapping: vec![0, 1],
            }),
            // libopus vorbis_mappings: 5.1 {4, 2, {0, 4, 1, 2, 3, 5}}, 7.1 {5, 3, {0, 6, 1, 4, 5, 2, 3, 7}}.
            6 => Self::from_vorbis_order(6, 4, 2, &[0, 4, 1, 2, 3, 5]),
            8 => Self::from_vorbis_order(8, 5, 3, &[0, 6, 1, 4, 5, 2, 3, 7]),
            _ => None,
        }
    }

    /// Builds the config from an Ogg/Vorbis-order channel mapping (what an `audio/x-opus` caps
    /// `channel-mapping` holds for mapping family 1). `None` for channel counts GameStream does not
    /// use or a mapping of the wrong length.
    pub fn from_vorbis_order(
        channels: u8,
        streams: u8,
        coupled_streams: u8,
        vorbis_mapping: &[u8],
    ) -> Option<Self> {
        let order: &[usize] = match channels {
            2 => &[0, 1],
            6 => &CLIENT_TO_VORBIS_6,
            8 => &CLIENT_TO_VORBIS_8,
            _ => return None,
        };
        if vorbis_mapping.len() != usize::from(channels) {
            return None;
        }
        let mapping = order
            .iter()
            .map(|&v| vorbis_mapping.get(v).copied())
            .collect::<Option<Vec<u8>>>()?;
        Some(OpusConfig {
            sample_rate: OPUS_SAMPLE_RATE,
            channels,
            streams,
            coupled_streams,
            mapping,
        })
    }

    /// Opus bitrate (bit/s) for the normal-quality configuration of `channels` (reference §5.2):
    /// 96 kbit/s stereo, 256 kbit/s 5.1, 450 kbit/s 7.1.
    pub fn normal_quality_bitrate(channels: u8) -> u32 {
        match channels {
            6 => 256_000,
            8 => 450_000,
            _ => 96_000,
        }
    }
}

/// One encoded video access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Monotonic per worker, starting at 0; a gap means the worker dropped frames.
    pub seq: u64,
    /// The test-pattern counter drawn into this frame (see [`crate::testpattern`]); 0 when the
    /// source has none.
    pub frame_counter: u32,
    /// Presentation time in µs of pipeline running time (shared with audio).
    pub pts_us: u64,
    /// True for IDR / IRAP / AV1 key frames (with in-band parameter sets).
    pub keyframe: bool,
    /// One complete access unit: Annex-B for H.264/HEVC, an OBU temporal unit for AV1.
    pub data: Vec<u8>,
}

/// One encoded Opus (multistream) packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioPacket {
    /// Monotonic per worker, starting at 0; a gap means the worker dropped packets.
    pub seq: u64,
    /// Presentation time in µs of pipeline running time.
    pub pts_us: u64,
    /// Exactly one Opus packet covering `audio_packet_ms`.
    pub data: Vec<u8>,
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the server, read by the worker.
    ServerToWorker,
    /// Sent by the worker, read by the server.
    WorkerToServer,
}

/// Every message of the protocol, both directions.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Server → worker: build the pipeline and start streaming.
    Start(StreamParams),
    /// Server → worker: make the next video frame a key frame (a viewer joined or lost data).
    RequestKeyframe,
    /// Server → worker: stop the pipeline and exit 0.
    Stop,
    /// Server → worker: one input event of one viewer, for a desktop's display. `viewer`
    /// tells whose held keys and buttons the event changes (each viewer has its own). On the
    /// wire the event is the client's own input packet (`InputEvent::encode`), so there is one
    /// input format from the client to the X server, decoded by one decoder.
    Input {
        /// The viewer (session) it came from.
        viewer: u64,
        /// The event, as howl-proto decoded it from the client.
        event: InputEvent,
    },
    /// Server → worker: the viewer left; release every key and button it still holds.
    ReleaseInput {
        /// The viewer (session) that left.
        viewer: u64,
    },
    /// Server → worker: a viewer pasted text; the desktop's clipboard (CLIPBOARD and
    /// PRIMARY) becomes it until an app there copies something else. At most
    /// [`MAX_CLIPBOARD_BYTES`].
    SetClipboard {
        /// The text.
        text: String,
    },
    /// Worker → server: an app of the desktop copied text (it took the CLIPBOARD selection);
    /// not sent for the worker's own [`Message::SetClipboard`]. At most
    /// [`MAX_CLIPBOARD_BYTES`]: the worker drops longer texts.
    Clipboard {
        /// The text.
        text: String,
    },
    /// Worker → server, first message after connecting.
    Hello {
        /// The worker's [`PROTOCOL_VERSION`].
        version: u16,
        /// Worker process id (for logs and for the reaper).
        pid: u32,
        /// Encoders the worker found, preferred first within each codec.
        encoders: Vec<EncoderInfo>,
    },
    /// Worker → server: the pipeline is running; sent before any media message.
    Started {
        /// Actual picture width.
        width: u32,
        /// Actual picture height.
        height: u32,
        /// Actual frame rate.
        fps: u32,
        /// Actual codec.
        codec: Codec,
        /// Opus layout to advertise in RTSP DESCRIBE.
        opus_config: OpusConfig,
    },
    /// Worker → server: one encoded video access unit.
    Video(VideoFrame),
    /// Worker → server: one encoded Opus packet.
    Audio(AudioPacket),
    /// Worker → server, every 500 ms: liveness plus counters.
    Heartbeat {
        /// Heartbeat sequence number, from 0.
        seq: u64,
        /// Video frames produced by the encoder so far (sent or dropped).
        video_frames: u64,
        /// Audio packets produced by the encoder so far (sent or dropped).
        audio_packets: u64,
    },
    /// Worker → server: the desktop's app ended by itself; the producer should end (the
    /// worker keeps streaming until it receives `Stop`).
    AppExited {
        /// How it ended (`exit status: 0`, `signal: 9`), for logs and events.
        detail: String,
    },
    /// Worker → server: a [`Source::Uri`] input failed or stopped delivering pictures; the
    /// worker keeps streaming (a slate) and reconnects with backoff.
    SourceLost {
        /// Why, for events and the slate (no credentials: the worker strips them).
        reason: String,
    },
    /// Worker → server: the [`Source::Uri`] input delivers pictures again after a
    /// [`Message::SourceLost`].
    SourceRestored,
    /// Worker → server: something went wrong; `fatal` means the worker exits right after.
    Error {
        /// Whether the worker is about to exit.
        fatal: bool,
        /// Human-readable description (no secrets: workers hold none).
        message: String,
    },
}

impl Message {
    /// The message's name, for logs (never its payload).
    pub fn name(&self) -> &'static str {
        match self {
            Message::Start(_) => "Start",
            Message::RequestKeyframe => "RequestKeyframe",
            Message::Stop => "Stop",
            Message::Input { .. } => "Input",
            Message::ReleaseInput { .. } => "ReleaseInput",
            Message::SetClipboard { .. } => "SetClipboard",
            Message::Clipboard { .. } => "Clipboard",
            Message::AppExited { .. } => "AppExited",
            Message::Hello { .. } => "Hello",
            Message::Started { .. } => "Started",
            Message::Video(_) => "Video",
            Message::Audio(_) => "Audio",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::Error { .. } => "Error",
            Message::SourceLost { .. } => "SourceLost",
            Message::SourceRestored => "SourceRestored",
        }
    }

    /// The type byte on the wire.
    pub fn type_byte(&self) -> u8 {
        match self {
            Message::Start(_) => ty::START,
            Message::RequestKeyframe => ty::REQUEST_KEYFRAME,
            Message::Stop => ty::STOP,
            Message::Input { .. } => ty::INPUT,
            Message::ReleaseInput { .. } => ty::RELEASE_INPUT,
            Message::SetClipboard { .. } => ty::SET_CLIPBOARD,
            Message::Clipboard { .. } => ty::CLIPBOARD,
            Message::AppExited { .. } => ty::APP_EXITED,
            Message::Hello { .. } => ty::HELLO,
            Message::Started { .. } => ty::STARTED,
            Message::Video(_) => ty::VIDEO,
            Message::Audio(_) => ty::AUDIO,
            Message::Heartbeat { .. } => ty::HEARTBEAT,
            Message::Error { .. } => ty::ERROR,
            Message::SourceLost { .. } => ty::SOURCE_LOST,
            Message::SourceRestored => ty::SOURCE_RESTORED,
        }
    }

    /// Which side sends this message; a receiver should treat a message of its own direction as
    /// a peer error.
    pub fn direction(&self) -> Direction {
        if self.type_byte() & 0x80 == 0 {
            Direction::ServerToWorker
        } else {
            Direction::WorkerToServer
        }
    }
}

/// Why encoding or decoding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Framing: the length prefix is above [`MAX_FRAME_LEN`] (or a message to encode is).
    #[error("frame length {len} exceeds the maximum {max}")]
    FrameTooLarge {
        /// Announced or needed length.
        len: usize,
        /// [`MAX_FRAME_LEN`].
        max: usize,
    },
    /// Framing: a length prefix of 0 (no room for the type byte).
    #[error("empty frame (length 0)")]
    EmptyFrame,
    /// Message: a type byte this version does not know.
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    /// Message: the payload ended before all fields were read.
    #[error("message type 0x{type_byte:02x} truncated")]
    Truncated {
        /// Type byte of the frame.
        type_byte: u8,
    },
    /// Message: bytes left over after the last field.
    #[error("message type 0x{type_byte:02x} has {extra} trailing bytes")]
    TrailingBytes {
        /// Type byte of the frame.
        type_byte: u8,
        /// How many bytes were left.
        extra: usize,
    },
    /// Message: a field holds a value outside its domain (unknown enum tag, bad bool, too long).
    #[error("invalid value {value} for field {field}")]
    InvalidField {
        /// Field name.
        field: &'static str,
        /// The value found (or the length, for lists and strings).
        value: u64,
    },
    /// Message: a string field is not UTF-8.
    #[error("field {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Field name.
        field: &'static str,
    },
    /// Message: an input message's packet does not decode.
    #[error("input packet: {0}")]
    Input(InputError),
}

impl ProtocolError {
    /// True for framing errors: the stream cannot be resynchronised and the connection must be
    /// closed. False for errors confined to one (already consumed) frame.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ProtocolError::FrameTooLarge { .. } | ProtocolError::EmptyFrame
        )
    }
}

/// Appends the framed encoding of `msg` to `out`.
///
/// On error `out` is left as it was. The only errors are a message larger than
/// [`MAX_FRAME_LEN`] and lists longer than their length field allows.
pub fn encode(msg: &Message, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    out.push(msg.type_byte());
    if let Err(e) = encode_payload(msg, out) {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - start - LEN_PREFIX;
    let Ok(len32) = u32::try_from(len) else {
        out.truncate(start);
        return Err(ProtocolError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    };
    if len > MAX_FRAME_LEN {
        out.truncate(start);
        return Err(ProtocolError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    out[start..start + LEN_PREFIX].copy_from_slice(&len32.to_be_bytes());
    Ok(())
}

fn put_str(out: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), ProtocolError> {
    let len = u32::try_from(s.len()).map_err(|_| ProtocolError::InvalidField {
        field,
        value: s.len() as u64,
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn encode_payload(msg: &Message, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    match msg {
        Message::Start(p) => {
            for v in [p.width, p.height, p.fps, p.bitrate_kbps] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.push(codec_to_wire(p.codec));
            out.push(p.audio_channels);
            out.push(p.audio_packet_ms);
            out.push(p.slices_per_frame);
            match &p.source {
                Source::TestPattern { tone_hz } => {
                    out.push(Source::TAG_TEST_PATTERN);
                    out.extend_from_slice(&tone_hz.to_be_bytes());
                }
                Source::Desktop(app) => {
                    out.push(Source::TAG_DESKTOP);
                    put_str(out, "command", &app.command)?;
                    put_count(out, "args", app.args.len())?;
                    for a in &app.args {
                        put_str(out, "args", a)?;
                    }
                    put_count(out, "env", app.env.len())?;
                    for (k, v) in &app.env {
                        put_str(out, "env", k)?;
                        put_str(out, "env", v)?;
                    }
                    match &app.working_dir {
                        Some(d) => {
                            out.push(1);
                            put_str(out, "working_dir", d)?;
                        }
                        None => out.push(0),
                    }
                    match &app.container {
                        Some(c) => {
                            out.push(1);
                            put_str(out, "image", &c.image)?;
                            put_count(out, "mounts", c.mounts.len())?;
                            for m in &c.mounts {
                                put_str(out, "mounts", m)?;
                            }
                            put_str(out, "network", &c.network)?;
                        }
                        None => out.push(0),
                    }
                }
                Source::Uri { uri } => {
                    out.push(Source::TAG_URI);
                    put_str(out, "uri", uri)?;
                }
            }
        }
        Message::RequestKeyframe | Message::Stop => {}
        Message::Input { viewer, event } => {
            out.extend_from_slice(&viewer.to_be_bytes());
            out.extend_from_slice(&event.encode());
        }
        Message::ReleaseInput { viewer } => out.extend_from_slice(&viewer.to_be_bytes()),
        Message::SetClipboard { text } | Message::Clipboard { text } => {
            if text.len() > MAX_CLIPBOARD_BYTES {
                return Err(ProtocolError::InvalidField {
                    field: "text",
                    value: text.len() as u64,
                });
            }
            put_str(out, "text", text)?;
        }
        Message::AppExited { detail } => put_str(out, "detail", detail)?,
        Message::Hello {
            version,
            pid,
            encoders,
        } => {
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&pid.to_be_bytes());
            let n = u16::try_from(encoders.len()).map_err(|_| ProtocolError::InvalidField {
                field: "encoders",
                value: encoders.len() as u64,
            })?;
            out.extend_from_slice(&n.to_be_bytes());
            for e in encoders {
                out.push(codec_to_wire(e.codec));
                out.push(u8::from(e.hardware));
                put_str(out, "element_name", &e.element_name)?;
            }
        }
        Message::Started {
            width,
            height,
            fps,
            codec,
            opus_config,
        } => {
            for v in [*width, *height, *fps] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.push(codec_to_wire(*codec));
            out.extend_from_slice(&opus_config.sample_rate.to_be_bytes());
            out.push(opus_config.channels);
            out.push(opus_config.streams);
            out.push(opus_config.coupled_streams);
            let n = u8::try_from(opus_config.mapping.len()).map_err(|_| {
                ProtocolError::InvalidField {
                    field: "mapping",
                    value: opus_config.mapping.len() as u64,
                }
            })?;
            out.push(n);
            out.extend_from_slice(&opus_config.mapping);
        }
        Message::Video(f) => {
            out.extend_from_slice(&f.seq.to_be_bytes());
            out.extend_from_slice(&f.frame_counter.to_be_bytes());
            out.extend_from_slice(&f.pts_us.to_be_bytes());
            out.push(u8::from(f.keyframe));
            out.extend_from_slice(&f.data);
        }
        Message::Audio(a) => {
            out.extend_from_slice(&a.seq.to_be_bytes());
            out.extend_from_slice(&a.pts_us.to_be_bytes());
            out.extend_from_slice(&a.data);
        }
        Message::Heartbeat {
            seq,
            video_frames,
            audio_packets,
        } => {
            for v in [*seq, *video_frames, *audio_packets] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        Message::Error { fatal, message } => {
            out.push(u8::from(*fatal));
            put_str(out, "message", message)?;
        }
        Message::SourceLost { reason } => put_str(out, "reason", reason)?,
        Message::SourceRestored => {}
    }
    Ok(())
}

/// Largest `args` or `env` list in a [`DesktopApp`]: far above any real command line, low
/// enough that a hostile count cannot make the decoder allocate much.
pub const MAX_APP_LIST: usize = 4096;

fn put_count(out: &mut Vec<u8>, field: &'static str, n: usize) -> Result<(), ProtocolError> {
    if n > MAX_APP_LIST {
        return Err(ProtocolError::InvalidField {
            field,
            value: n as u64,
        });
    }
    // Cannot truncate: n <= MAX_APP_LIST < 2^16.
    out.extend_from_slice(&(n as u16).to_be_bytes());
    Ok(())
}

fn decode_desktop(r: &mut Reader<'_>) -> Result<DesktopApp, ProtocolError> {
    let command = r.string("command")?;
    let n = r.count("args")?;
    let mut args = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        args.push(r.string("args")?);
    }
    let n = r.count("env")?;
    let mut env = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let k = r.string("env")?;
        let v = r.string("env")?;
        env.push((k, v));
    }
    let working_dir = if r.bool("working_dir")? {
        Some(r.string("working_dir")?)
    } else {
        None
    };
    let container = if r.bool("container")? {
        let image = r.string("image")?;
        let n = r.count("mounts")?;
        let mut mounts = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            mounts.push(r.string("mounts")?);
        }
        Some(ContainerSpec {
            image,
            mounts,
            network: r.string("network")?,
        })
    } else {
        None
    };
    Ok(DesktopApp {
        command,
        args,
        env,
        working_dir,
        container,
    })
}

/// Bounds-checked reader over one frame's payload.
struct Reader<'a> {
    data: &'a [u8],
    type_byte: u8,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.data.len() < n {
            return Err(ProtocolError::Truncated {
                type_byte: self.type_byte,
            });
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn count(&mut self, field: &'static str) -> Result<usize, ProtocolError> {
        let n = usize::from(self.u16()?);
        if n > MAX_APP_LIST {
            return Err(ProtocolError::InvalidField {
                field,
                value: n as u64,
            });
        }
        Ok(n)
    }

    fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, ProtocolError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(ProtocolError::InvalidField {
                field,
                value: u64::from(v),
            }),
        }
    }

    fn string(&mut self, field: &'static str) -> Result<String, ProtocolError> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ProtocolError::InvalidUtf8 { field })
    }

    /// A clipboard text: a string of at most [`MAX_CLIPBOARD_BYTES`], refused by its length
    /// before its bytes are copied.
    fn clipboard(&mut self) -> Result<String, ProtocolError> {
        let len = self.u32()? as usize;
        if len > MAX_CLIPBOARD_BYTES {
            return Err(ProtocolError::InvalidField {
                field: "text",
                value: len as u64,
            });
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ProtocolError::InvalidUtf8 { field: "text" })
    }

    fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data).to_vec()
    }

    fn finish(self) -> Result<(), ProtocolError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::TrailingBytes {
                type_byte: self.type_byte,
                extra: self.data.len(),
            })
        }
    }
}

/// Decodes one frame body (type byte + payload, without the length prefix).
pub fn decode_frame(frame: &[u8]) -> Result<Message, ProtocolError> {
    let Some((&type_byte, payload)) = frame.split_first() else {
        return Err(ProtocolError::EmptyFrame);
    };
    let mut r = Reader {
        data: payload,
        type_byte,
    };
    let msg = match type_byte {
        ty::START => {
            let width = r.u32()?;
            let height = r.u32()?;
            let fps = r.u32()?;
            let bitrate_kbps = r.u32()?;
            let codec = codec_from_wire(r.u8()?)?;
            let audio_channels = r.u8()?;
            let audio_packet_ms = r.u8()?;
            let slices_per_frame = r.u8()?;
            let source = match r.u8()? {
                Source::TAG_TEST_PATTERN => Source::TestPattern { tone_hz: r.u32()? },
                Source::TAG_DESKTOP => Source::Desktop(decode_desktop(&mut r)?),
                Source::TAG_URI => Source::Uri {
                    uri: r.string("uri")?,
                },
                v => {
                    return Err(ProtocolError::InvalidField {
                        field: "source",
                        value: u64::from(v),
                    });
                }
            };
            Message::Start(StreamParams {
                width,
                height,
                fps,
                bitrate_kbps,
                codec,
                audio_channels,
                audio_packet_ms,
                source,
                slices_per_frame,
            })
        }
        ty::REQUEST_KEYFRAME => Message::RequestKeyframe,
        ty::STOP => Message::Stop,
        ty::INPUT => Message::Input {
            viewer: r.u64()?,
            // The rest of the frame is the input packet.
            event: InputEvent::decode(&r.rest()).map_err(ProtocolError::Input)?,
        },
        ty::RELEASE_INPUT => Message::ReleaseInput { viewer: r.u64()? },
        ty::SET_CLIPBOARD => Message::SetClipboard {
            text: r.clipboard()?,
        },
        ty::CLIPBOARD => Message::Clipboard {
            text: r.clipboard()?,
        },
        ty::APP_EXITED => Message::AppExited {
            detail: r.string("detail")?,
        },
        ty::HELLO => {
            let version = r.u16()?;
            let pid = r.u32()?;
            let n = r.u16()?;
            // Each entry is at least 6 bytes: refuse counts the payload cannot hold before
            // allocating for them.
            if usize::from(n) * 6 > r.data.len() {
                return Err(ProtocolError::Truncated { type_byte });
            }
            let mut encoders = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                let codec = codec_from_wire(r.u8()?)?;
                let hardware = r.bool("hardware")?;
                let element_name = r.string("element_name")?;
                encoders.push(EncoderInfo {
                    codec,
                    element_name,
                    hardware,
                });
            }
            Message::Hello {
                version,
                pid,
                encoders,
            }
        }
        ty::STARTED => {
            let width = r.u32()?;
            let height = r.u32()?;
            let fps = r.u32()?;
            let codec = codec_from_wire(r.u8()?)?;
            let sample_rate = r.u32()?;
            let channels = r.u8()?;
            let streams = r.u8()?;
            let coupled_streams = r.u8()?;
            let n = r.u8()?;
            let mapping = r.take(usize::from(n))?.to_vec();
            Message::Started {
                width,
                height,
                fps,
                codec,
                opus_config: OpusConfig {
                    sample_rate,
                    channels,
                    streams,
                    coupled_streams,
                    mapping,
                },
            }
        }
        ty::VIDEO => {
            let seq = r.u64()?;
            let frame_counter = r.u32()?;
            let pts_us = r.u64()?;
            let keyframe = r.bool("keyframe")?;
            Message::Video(VideoFrame {
                seq,
                frame_counter,
                pts_us,
                keyframe,
                data: r.rest(),
            })
        }
        ty::AUDIO => {
            let seq = r.u64()?;
            let pts_us = r.u64()?;
            Message::Audio(AudioPacket {
                seq,
                pts_us,
                data: r.rest(),
            })
        }
        ty::HEARTBEAT => Message::Heartbeat {
            seq: r.u64()?,
            video_frames: r.u64()?,
            audio_packets: r.u64()?,
        },
        ty::ERROR => Message::Error {
            fatal: r.bool("fatal")?,
            message: r.string("message")?,
        },
        ty::SOURCE_LOST => Message::SourceLost {
            reason: r.string("reason")?,
        },
        ty::SOURCE_RESTORED => Message::SourceRestored,
        other => return Err(ProtocolError::UnknownType(other)),
    };
    r.finish()?;
    Ok(msg)
}

/// Incremental frame decoder: push bytes as they arrive, pull messages.
///
/// Buffers at most one partial frame plus whatever was pushed beyond it; the length prefix is
/// checked before waiting for the body, so a hostile prefix cannot make it wait for (or allocate)
/// more than [`MAX_FRAME_LEN`].
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`; consumed bytes are compacted away lazily.
    pos: usize,
    /// Set by a framing error; every later `next` returns it.
    failed: Option<ProtocolError>,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        // Compact once the consumed prefix dominates, so the buffer does not grow with the
        // total traffic while keeping the copy amortised.
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes pushed but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    ///
    /// After an error with [`ProtocolError::is_fatal`] the decoder is dead and returns that
    /// error forever; after any other error the offending frame has been skipped.
    #[allow(
        clippy::should_implement_trait,
        reason = "fallible pull API (Result<Option<_>>), not an Iterator"
    )]
    pub fn next(&mut self) -> Result<Option<Message>, ProtocolError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let avail = &self.buf[self.pos..];
        let Some(prefix) = avail.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len == 0 {
            return Err(self.fail(ProtocolError::EmptyFrame));
        }
        if len > MAX_FRAME_LEN {
            return Err(self.fail(ProtocolError::FrameTooLarge {
                len,
                max: MAX_FRAME_LEN,
            }));
        }
        let Some(frame) = avail.get(LEN_PREFIX..LEN_PREFIX + len) else {
            return Ok(None);
        };
        let result = decode_frame(frame);
        self.pos += LEN_PREFIX + len;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        result.map(Some)
    }

    fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        self.buf = Vec::new();
        self.pos = 0;
        self.failed = Some(e.clone());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use howl_proto::input;

    pub(crate) fn all_messages() -> Vec<Message> {
        vec![
            Message::Start(StreamParams {
                width: 1280,
                height: 720,
                fps: 60,
                bitrate_kbps: 8000,
                codec: Codec::Hevc,
                audio_channels: 6,
                audio_packet_ms: 5,
                source: Source::TestPattern { tone_hz: 440 },
                slices_per_frame: 4,
            }),
            Message::RequestKeyframe,
            Message::Stop,
            Message::Start(StreamParams {
                width: 1024,
                height: 768,
                fps: 30,
                bitrate_kbps: 4000,
                codec: Codec::H264,
                audio_channels: 2,
                audio_packet_ms: 5,
                source: Source::Desktop(DesktopApp {
                    command: "howl-testapp".into(),
                    args: vec!["--tone".into(), "π".into()],
                    env: vec![("A".into(), "b=c".into())],
                    working_dir: Some("/tmp".into()),
                    container: Some(ContainerSpec {
                        image: "howl-test-app:latest".into(),
                        mounts: vec!["/a:/b:ro".into()],
                        network: "none".into(),
                    }),
                }),
                slices_per_frame: 1,
            }),
            Message::Input {
                viewer: 7,
                event: InputEvent::Keyboard(input::KeyboardEvent {
                    action: input::ButtonAction::Down,
                    key_code: 0x8041,
                    modifiers: 1,
                    flags: 0,
                }),
            },
            Message::Input {
                viewer: 7,
                event: InputEvent::Text("é€".into()),
            },
            Message::Input {
                viewer: 7,
                event: InputEvent::MouseMove { dx: -3, dy: 4 },
            },
            Message::Input {
                viewer: 7,
                event: InputEvent::MousePosition(input::MousePosition::new(10, -1, 1920, 1080)),
            },
            Message::Input {
                viewer: u64::MAX,
                event: InputEvent::MouseButton {
                    action: input::ButtonAction::Up,
                    button: input::MouseButton::Right,
                },
            },
            Message::Input {
                viewer: 1,
                event: InputEvent::Scroll { amount: -60 },
            },
            Message::Input {
                viewer: 1,
                event: InputEvent::HScroll { amount: 120 },
            },
            Message::Input {
                viewer: 2,
                event: InputEvent::Controller(input::ControllerState {
                    controller: 15,
                    active_mask: 0x8000,
                    buttons: 0x3f_f7ff,
                    left_trigger: 255,
                    right_trigger: 1,
                    left_stick: [i16::MIN, i16::MAX],
                    right_stick: [-1, 300],
                }),
            },
            Message::ReleaseInput { viewer: 9 },
            Message::SetClipboard {
                text: "pasted π\n€".into(),
            },
            Message::SetClipboard {
                text: "x".repeat(MAX_CLIPBOARD_BYTES),
            },
            Message::Clipboard {
                text: String::new(),
            },
            Message::Clipboard {
                text: "copied\u{0}\t\u{1F600}".into(),
            },
            Message::AppExited {
                detail: "exit status: 0".into(),
            },
            Message::Start(StreamParams {
                width: 640,
                height: 360,
                fps: 30,
                bitrate_kbps: 2000,
                codec: Codec::H264,
                audio_channels: 2,
                audio_packet_ms: 5,
                source: Source::Uri {
                    uri: "rtsp://u:t@127.0.0.1:8554/app/Test%20Pattern \u{e9}".into(),
                },
                slices_per_frame: 1,
            }),
            Message::SourceLost {
                reason: "connection refused".into(),
            },
            Message::SourceLost {
                reason: String::new(),
            },
            Message::SourceRestored,
            Message::Hello {
                version: PROTOCOL_VERSION,
                pid: 4242,
                encoders: vec![
                    EncoderInfo {
                        codec: Codec::H264,
                        element_name: "nvh264enc".into(),
                        hardware: true,
                    },
                    EncoderInfo {
                        codec: Codec::Av1,
                        element_name: "av1enc".into(),
                        hardware: false,
                    },
                ],
            },
            Message::Hello {
                version: 7,
                pid: 0,
                encoders: vec![],
            },
            Message::Started {
                width: 1920,
                height: 1080,
                fps: 120,
                codec: Codec::Av1,
                opus_config: OpusConfig::for_channels(8).unwrap(),
            },
            Message::Video(VideoFrame {
                seq: u64::MAX,
                frame_counter: 77,
                pts_us: 123_456_789,
                keyframe: true,
                data: vec![0, 0, 0, 1, 0x67, 1, 2, 3],
            }),
            Message::Video(VideoFrame {
                seq: 1,
                frame_counter: 0,
                pts_us: 0,
                keyframe: false,
                data: vec![],
            }),
            Message::Audio(AudioPacket {
                seq: 9,
                pts_us: 5000,
                data: vec![0xfc; 240],
            }),
            Message::Heartbeat {
                seq: 3,
                video_frames: 180,
                audio_packets: 600,
            },
            Message::Error {
                fatal: true,
                message: "encoder x264enc failed: π".into(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in all_messages() {
            let mut out = Vec::new();
            encode(&m, &mut out).unwrap();
            let len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
            assert_eq!(len, out.len() - 4);
            assert_eq!(out[4], m.type_byte());
            let mut d = FrameDecoder::new();
            d.push(&out);
            assert_eq!(d.next().unwrap(), Some(m.clone()));
            assert_eq!(d.next().unwrap(), None);
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn byte_by_byte_stream_of_all_messages() {
        let msgs = all_messages();
        let mut out = Vec::new();
        for m in &msgs {
            encode(m, &mut out).unwrap();
        }
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for b in &out {
            d.push(std::slice::from_ref(b));
            while let Some(m) = d.next().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, msgs);
    }

    #[test]
    fn directions() {
        assert_eq!(Message::Stop.direction(), Direction::ServerToWorker);
        assert_eq!(
            Message::Heartbeat {
                seq: 0,
                video_frames: 0,
                audio_packets: 0
            }
            .direction(),
            Direction::WorkerToServer
        );
    }

    #[test]
    fn framing_errors_are_sticky_message_errors_are_not() {
        let mut d = FrameDecoder::new();
        // unknown type in a well-formed frame, then a valid Stop
        d.push(&[0, 0, 0, 2, 0x7f, 0xaa]);
        let mut stop = Vec::new();
        encode(&Message::Stop, &mut stop).unwrap();
        d.push(&stop);
        let e = d.next().unwrap_err();
        assert_eq!(e, ProtocolError::UnknownType(0x7f));
        assert!(!e.is_fatal());
        assert_eq!(d.next().unwrap(), Some(Message::Stop));

        d.push(&[0, 0, 0, 0]);
        assert_eq!(d.next().unwrap_err(), ProtocolError::EmptyFrame);
        d.push(&stop);
        assert!(d.next().unwrap_err().is_fatal());

        let mut d = FrameDecoder::new();
        d.push(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(d.next(), Err(ProtocolError::FrameTooLarge { .. })));
    }

    #[test]
    fn truncated_and_trailing_payloads() {
        let mut out = Vec::new();
        encode(
            &Message::Heartbeat {
                seq: 1,
                video_frames: 2,
                audio_packets: 3,
            },
            &mut out,
        )
        .unwrap();
        // Chop one payload byte but fix up the length.
        let body = &out[4..out.len() - 1];
        assert_eq!(
            decode_frame(body),
            Err(ProtocolError::Truncated { type_byte: 0x85 })
        );
        let mut long = out[4..].to_vec();
        long.push(0);
        assert_eq!(
            decode_frame(&long),
            Err(ProtocolError::TrailingBytes {
                type_byte: 0x85,
                extra: 1
            })
        );
        assert!(matches!(
            decode_frame(&[
                ty::VIDEO,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                2
            ]),
            Err(ProtocolError::InvalidField {
                field: "keyframe",
                ..
            })
        ));
    }

    #[test]
    fn oversized_message_is_refused_and_output_untouched() {
        let m = Message::Video(VideoFrame {
            seq: 0,
            frame_counter: 0,
            pts_us: 0,
            keyframe: false,
            data: vec![0; MAX_FRAME_LEN],
        });
        let mut out = vec![1, 2, 3];
        assert!(matches!(
            encode(&m, &mut out),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        assert_eq!(out, vec![1, 2, 3]);
    }

    #[test]
    fn clipboard_texts_are_bounded_both_ways() {
        let long = "é".repeat(MAX_CLIPBOARD_BYTES / 2 + 1);
        for m in [
            Message::SetClipboard { text: long.clone() },
            Message::Clipboard { text: long },
        ] {
            let mut out = vec![7];
            assert_eq!(
                encode(&m, &mut out),
                Err(ProtocolError::InvalidField {
                    field: "text",
                    value: MAX_CLIPBOARD_BYTES as u64 + 2
                })
            );
            assert_eq!(out, vec![7]);
        }
        // A hostile length is refused from the prefix alone, and the stream goes on.
        let mut frame = vec![0, 0, 0, 5, ty::CLIPBOARD];
        frame.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut d = FrameDecoder::new();
        d.push(&frame);
        let e = d.next().unwrap_err();
        assert!(
            matches!(e, ProtocolError::InvalidField { field: "text", .. }),
            "{e:?}"
        );
        assert!(!e.is_fatal());
        // Not UTF-8.
        assert_eq!(
            decode_frame(&[ty::SET_CLIPBOARD, 0, 0, 0, 2, 0xc3, 0x28]),
            Err(ProtocolError::InvalidUtf8 { field: "text" })
        );
        assert_eq!(
            Message::Clipboard {
                text: String::new()
            }
            .direction(),
            Direction::WorkerToServer
        );
        assert_eq!(
            Message::SetClipboard {
                text: String::new()
            }
            .direction(),
            Direction::ServerToWorker
        );
    }

    #[test]
    fn opus_configs() {
        let s = OpusConfig::for_channels(2).unwrap();
        assert_eq!(
            (s.streams, s.coupled_streams, &s.mapping[..]),
            (1, 1, &[0, 1][..])
        );
        let c6 = OpusConfig::for_channels(6).unwrap();
        assert_eq!((c6.streams, c6.coupled_streams), (4, 2));
        // FL, FR in coupled stream 0; BL, BR in coupled stream 1; FC, LFE mono streams.
        assert_eq!(c6.mapping, vec![0, 1, 4, 5, 2, 3]);
        let c8 = OpusConfig::for_channels(8).unwrap();
        assert_eq!((c8.streams, c8.coupled_streams), (5, 3));
        assert_eq!(c8.mapping, vec![0, 1, 6, 7, 2, 3, 4, 5]);
        assert!(OpusConfig::for_channels(4).is_none());
        assert!(OpusConfig::from_vorbis_order(6, 4, 2, &[0, 1]).is_none());
        assert_eq!(OpusConfig::normal_quality_bitrate(2), 96_000);
    }

    #[test]
    fn params_validation() {
        let Message::Start(mut p) = all_messages().remove(0) else {
            unreachable!()
        };
        assert_eq!(p.validate(), Ok(()));
        p.audio_channels = 4;
        assert_eq!(p.validate().unwrap_err().field, "audio_channels");
        p.audio_channels = 2;
        p.width = 1281;
        assert_eq!(p.validate().unwrap_err().field, "width");
    }

    #[test]
    fn codec_names() {
        for c in Codec::ALL {
            assert_eq!(Codec::from_name(c.name()), Some(c));
        }
        assert_eq!(Codec::from_name("vp9"), None);
    }
}
