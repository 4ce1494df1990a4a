//! Property tests for the worker protocol: the decoder never panics on hostile bytes in any
//! chunking, and every generated message round-trips through any chunking.

// Test helpers panic on failure by design: a panic here is a failed test.
#![allow(clippy::unwrap_used)]

use howl_media::protocol::{
    AudioPacket, Codec, ContainerSpec, DesktopApp, EncoderInfo, FrameDecoder, MAX_FRAME_LEN,
    Message, OpusConfig, ProtocolError, Source, StreamParams, VideoFrame, encode,
};
use howl_proto::input::{
    ButtonAction, ControllerState, InputEvent, KeyboardEvent, MouseButton, MousePosition,
};
use proptest::prelude::*;

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::H264), Just(Codec::Hevc), Just(Codec::Av1)]
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        any::<u32>().prop_map(|tone_hz| Source::TestPattern { tone_hz }),
        (
            ".{0,12}",
            prop::collection::vec(".{0,6}", 0..4),
            prop::collection::vec((".{0,6}", ".{0,6}"), 0..3),
            proptest::option::of(".{0,8}"),
            proptest::option::of((".{0,8}", prop::collection::vec(".{0,6}", 0..3), ".{0,4}"))
        )
            .prop_map(
                |(command, args, env, working_dir, container)| Source::Desktop(DesktopApp {
                    command,
                    args,
                    env,
                    working_dir,
                    container: container.map(|(image, mounts, network)| ContainerSpec {
                        image,
                        mounts,
                        network
                    }),
                })
            ),
    ]
}

fn action() -> impl Strategy<Value = ButtonAction> {
    prop_oneof![Just(ButtonAction::Down), Just(ButtonAction::Up)]
}

/// Events the client's decoder accepts (the worker protocol carries only decoded events).
fn input_event() -> impl Strategy<Value = InputEvent> {
    prop_oneof![
        (action(), any::<u16>(), any::<u8>(), any::<u8>()).prop_map(
            |(action, key_code, modifiers, flags)| {
                InputEvent::Keyboard(KeyboardEvent {
                    action,
                    key_code,
                    modifiers,
                    flags,
                })
            }
        ),
        ".{1,8}".prop_map(InputEvent::Text),
        any::<(i16, i16)>().prop_map(|(dx, dy)| InputEvent::MouseMove { dx, dy }),
        (any::<(i16, i16)>(), 2u16.., 2u16..).prop_map(|((x, y), w, h)| {
            InputEvent::MousePosition(MousePosition::new(x, y, w, h))
        }),
        (action(), any::<u8>()).prop_map(|(action, b)| InputEvent::MouseButton {
            action,
            button: MouseButton::from_u8(b),
        }),
        any::<i16>().prop_map(|amount| InputEvent::Scroll { amount }),
        any::<i16>().prop_map(|amount| InputEvent::HScroll { amount }),
        (
            0u16..16,
            any::<u16>(),
            any::<u32>(),
            any::<[u8; 2]>(),
            any::<[i16; 4]>()
        )
            .prop_map(|(controller, active_mask, buttons, t, s)| {
                InputEvent::Controller(ControllerState {
                    controller,
                    active_mask,
                    buttons,
                    left_trigger: t[0],
                    right_trigger: t[1],
                    left_stick: [s[0], s[1]],
                    right_stick: [s[2], s[3]],
                })
            }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u64>(), input_event()).prop_map(|(viewer, event)| Message::Input { viewer, event }),
        any::<u64>().prop_map(|viewer| Message::ReleaseInput { viewer }),
        ".{0,20}".prop_map(|detail| Message::AppExited { detail }),
        (any::<[u32; 4]>(), codec(), any::<[u8; 3]>(), source()).prop_map(
            |(n, codec, b, source)| Message::Start(StreamParams {
                width: n[0],
                height: n[1],
                fps: n[2],
                bitrate_kbps: n[3],
                codec,
                audio_channels: b[0],
                audio_packet_ms: b[1],
                source,
                slices_per_frame: b[2],
            })
        ),
        Just(Message::RequestKeyframe),
        Just(Message::Stop),
        (
            any::<u16>(),
            any::<u32>(),
            prop::collection::vec((codec(), ".{0,12}", any::<bool>()), 0..4)
        )
            .prop_map(|(version, pid, e)| Message::Hello {
                version,
                pid,
                encoders: e
                    .into_iter()
                    .map(|(codec, element_name, hardware)| EncoderInfo {
                        codec,
                        element_name,
                        hardware,
                    })
                    .collect(),
            }),
        (
            any::<[u32; 4]>(),
            codec(),
            any::<[u8; 3]>(),
            prop::collection::vec(any::<u8>(), 0..9)
        )
            .prop_map(|(n, codec, b, mapping)| Message::Started {
                width: n[0],
                height: n[1],
                fps: n[2],
                codec,
                opus_config: OpusConfig {
                    sample_rate: n[3],
                    channels: b[0],
                    streams: b[1],
                    coupled_streams: b[2],
                    mapping,
                },
            }),
        (
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(seq, frame_counter, pts_us, keyframe, data)| {
                Message::Video(VideoFrame {
                    seq,
                    frame_counter,
                    pts_us,
                    keyframe,
                    data,
                })
            }),
        (
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(seq, pts_us, data)| Message::Audio(AudioPacket {
                seq,
                pts_us,
                data
            })),
        any::<[u64; 3]>().prop_map(|n| Message::Heartbeat {
            seq: n[0],
            video_frames: n[1],
            audio_packets: n[2],
        }),
        (any::<bool>(), ".{0,20}").prop_map(|(fatal, message)| Message::Error { fatal, message }),
        (any::<[u32; 4]>(), codec(), ".{0,40}").prop_map(|(n, codec, uri)| Message::Start(
            StreamParams {
                width: n[0],
                height: n[1],
                fps: n[2],
                bitrate_kbps: n[3],
                codec,
                audio_channels: 2,
                audio_packet_ms: 5,
                source: Source::Uri { uri },
                slices_per_frame: 1,
            }
        )),
        ".{0,40}".prop_map(|reason| Message::SourceLost { reason }),
        Just(Message::SourceRestored),
        ".{0,40}".prop_map(|text| Message::SetClipboard { text }),
        ".{0,40}".prop_map(|text| Message::Clipboard { text }),
    ]
}

/// Feeds `bytes` to a fresh decoder in chunks cut at `cuts`, collecting results until a fatal
/// error. Must never panic.
fn drive(bytes: &[u8], cuts: &[usize]) -> (Vec<Message>, Vec<ProtocolError>) {
    let mut d = FrameDecoder::new();
    let mut msgs = Vec::new();
    let mut errs = Vec::new();
    let mut at = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.push(bytes.len());
    for p in points {
        if p < at {
            continue;
        }
        d.push(&bytes[at..p]);
        at = p;
        loop {
            match d.next() {
                Ok(Some(m)) => msgs.push(m),
                Ok(None) => break,
                Err(e) => {
                    let fatal = e.is_fatal();
                    errs.push(e);
                    if fatal {
                        return (msgs, errs);
                    }
                }
            }
        }
        assert!(d.buffered() <= bytes.len());
    }
    (msgs, errs)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 100_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Arbitrary bytes, arbitrary chunking: no panic, and fatal errors stay fatal.
    #[test]
    fn decoder_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..96),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let (_, errs) = drive(&bytes, &cuts);
        for e in &errs[..errs.len().saturating_sub(1)] {
            prop_assert!(!e.is_fatal());
        }
    }

    /// Plausible prefixes (small lengths, known type bytes) followed by garbage reach deep into
    /// the payload decoders, which uniform bytes rarely do.
    #[test]
    fn decoder_never_panics_on_framed_garbage(
        frames in prop::collection::vec(
            (0u32..48, prop::sample::select(vec![0x01u8, 0x02, 0x03, 0x04, 0x05, 0x87, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x00, 0xff]),
             prop::collection::vec(any::<u8>(), 0..48)),
            0..4),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut bytes = Vec::new();
        for (len, t, body) in frames {
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.push(t);
            bytes.extend_from_slice(&body);
        }
        drive(&bytes, &cuts);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every message round-trips, whatever the chunking, and mutating one byte never panics.
    #[test]
    fn messages_round_trip(
        msgs in prop::collection::vec(message(), 1..5),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        flip in any::<(usize, u8)>(),
    ) {
        let mut bytes = Vec::new();
        for m in &msgs {
            encode(m, &mut bytes).unwrap();
        }
        let (got, errs) = drive(&bytes, &cuts);
        prop_assert!(errs.is_empty(), "{:?}", errs);
        prop_assert_eq!(got, msgs);

        let i = flip.0 % bytes.len();
        bytes[i] ^= flip.1 | 1;
        drive(&bytes, &cuts);
    }
}

#[test]
fn huge_length_prefix_is_refused_without_waiting() {
    let mut d = FrameDecoder::new();
    d.push(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes());
    assert!(matches!(d.next(), Err(ProtocolError::FrameTooLarge { .. })));
    let mut d = FrameDecoder::new();
    let mut b = (MAX_FRAME_LEN as u32).to_be_bytes().to_vec();
    b.push(0x83);
    d.push(&b);
    assert_eq!(d.next(), Ok(None));
}
