//! Property tests for the control envelope: no panic on hostile bytes, every mutation of a
//! valid envelope is rejected, and every message round-trips (STYLE practices 6 and 11).

// Test helpers may unwrap: a panic there is a failed test.
#![allow(clippy::unwrap_used)]

use howl_proto::control::{
    ClientCrypto, ClientMessage, ControlCrypto, FrameFecStatus, HdrMetadata, HostMessage,
    IvVariant, TerminationReason,
};
use howl_proto::input::MotionType;
use proptest::prelude::*;

const KEY: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 100_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn variant() -> impl Strategy<Value = IvVariant> {
    prop_oneof![Just(IvVariant::V2), Just(IvVariant::Legacy)]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    let fec = (
        any::<u32>(),
        any::<[u16; 7]>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(|(frame_index, w, p, i, c)| {
            ClientMessage::FrameFecStatus(FrameFecStatus {
                frame_index,
                highest_received_sequence_number: w[0],
                next_contiguous_sequence_number: w[1],
                missing_packets_before_highest_received: w[2],
                total_data_packets: w[3],
                total_parity_packets: w[4],
                received_data_packets: w[5],
                received_parity_packets: w[6],
                fec_percentage: p,
                multi_fec_block_index: i,
                multi_fec_block_count: c,
            })
        });
    prop_oneof![
        Just(ClientMessage::RequestIdr),
        Just(ClientMessage::StartB),
        Just(ClientMessage::PeriodicPing),
        (any::<u32>(), any::<u32>()).prop_map(|(first_frame, last_frame)| {
            ClientMessage::InvalidateReferenceFrames {
                first_frame,
                last_frame,
            }
        }),
        any::<u64>().prop_map(|last_good_frame| ClientMessage::LossStats { last_good_frame }),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(ClientMessage::Input),
        any::<u32>().prop_map(|frame_index| ClientMessage::LtrFrameAck { frame_index }),
        fec,
        // Types the enum does not model, excluding the ones it does.
        (any::<u16>(), 0usize..64)
            .prop_filter("known type", |(t, _)| !matches!(
                *t,
                0x0200 | 0x0201 | 0x0206 | 0x0301 | 0x0302 | 0x0307 | 0x0350 | 0x5502
            ))
            .prop_map(|(msg_type, len)| ClientMessage::Unknown { msg_type, len }),
    ]
}

fn host_message() -> impl Strategy<Value = HostMessage> {
    let hdr = (any::<bool>(), any::<[u16; 13]>()).prop_map(|(enabled, w)| HostMessage::HdrMode {
        enabled,
        metadata: HdrMetadata {
            display_primaries: [[w[0], w[1]], [w[2], w[3]], [w[4], w[5]]],
            white_point: [w[6], w[7]],
            max_display_luminance: w[8],
            min_display_luminance: w[9],
            max_content_light_level: w[10],
            max_frame_average_light_level: w[11],
            max_full_frame_luminance: w[12],
        },
    });
    prop_oneof![
        any::<u32>().prop_map(|c| HostMessage::Termination(TerminationReason::from_code(c))),
        (any::<u16>(), any::<u16>(), any::<u16>()).prop_map(|(controller, l, h)| {
            HostMessage::Rumble {
                controller,
                low_freq_motor: l,
                high_freq_motor: h,
            }
        }),
        hdr,
        (any::<u16>(), any::<u16>(), any::<u16>()).prop_map(|(controller, l, r)| {
            HostMessage::TriggerRumble {
                controller,
                left_trigger_motor: l,
                right_trigger_motor: r,
            }
        }),
        (any::<u16>(), any::<u16>(), any::<u8>()).prop_map(|(controller, rate, t)| {
            HostMessage::SetMotionEventState {
                controller,
                report_rate_hz: rate,
                motion_type: MotionType::from_u8(t),
            }
        }),
        (any::<u16>(), any::<[u8; 3]>()).prop_map(|(controller, [r, g, b])| {
            HostMessage::SetControllerLed {
                controller,
                r,
                g,
                b,
            }
        }),
        (
            any::<u16>(),
            any::<[u8; 3]>(),
            any::<[u8; 10]>(),
            any::<[u8; 10]>()
        )
            .prop_map(
                |(controller, [event_flags, type_left, type_right], left, right)| {
                    HostMessage::AdaptiveTriggers {
                        controller,
                        event_flags,
                        type_left,
                        type_right,
                        left,
                        right,
                    }
                }
            ),
        (any::<u16>(), 0usize..64)
            .prop_filter("known type", |(t, _)| !matches!(
                *t,
                0x0109 | 0x010b | 0x010e | 0x5500 | 0x5501 | 0x5502 | 0x5503
            ))
            .prop_map(|(msg_type, len)| HostMessage::Unknown { msg_type, len }),
    ]
}

/// Bytes shaped like an envelope (right marker and `L`), so `open` reaches the crypto path.
fn envelope_shaped() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..80).prop_map(|body| {
        let mut packet = vec![0x01, 0x00];
        packet.extend_from_slice(&u16::try_from(body.len()).unwrap().to_le_bytes());
        packet.extend_from_slice(&body);
        packet
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn open_never_panics_on_arbitrary_bytes(
        v in variant(),
        bytes in proptest::collection::vec(any::<u8>(), 0..96),
    ) {
        let host = ControlCrypto::new(KEY, v).unwrap();
        let client = ClientCrypto::new(KEY, v).unwrap();
        let _ = host.open(&bytes);
        let _ = client.open(&bytes);
    }

    #[test]
    fn forged_envelopes_never_authenticate(v in variant(), bytes in envelope_shaped()) {
        let host = ControlCrypto::new(KEY, v).unwrap();
        // A forgery passing a 128-bit tag would be a bug, not luck.
        prop_assert!(host.open(&bytes).is_err());
    }

    #[test]
    fn mutated_envelopes_are_rejected(
        v in variant(),
        message in client_message(),
        seq in any::<u32>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in 0usize..4,
        extra in proptest::collection::vec(any::<u8>(), 0..3),
    ) {
        let mut client = ClientCrypto::new(KEY, v).unwrap().with_next_seq(seq);
        let host = ControlCrypto::new(KEY, v).unwrap();
        let good = client.seal(&message).unwrap();
        prop_assert_eq!(host.open_with_seq(&good).unwrap(), (seq, message.clone()));

        let mut bad = good.clone();
        for (at, xor) in &flips {
            bad[at.index(good.len())] ^= xor;
        }
        if bad != good {
            match host.open(&bad) {
                Err(_) => {}
                // The legacy IV uses only seq's low byte, so the upper three seq bytes are not
                // authenticated; any other change must fail.
                Ok(opened) => {
                    let only_high_seq = good
                        .iter()
                        .zip(&bad)
                        .enumerate()
                        .all(|(i, (g, b))| g == b || (5..8).contains(&i));
                    prop_assert!(v == IvVariant::Legacy && only_high_seq);
                    prop_assert_eq!(opened, message);
                }
            }
        }
        let truncated = &good[..good.len() - 1 - cut.min(good.len() - 1)];
        prop_assert!(host.open(truncated).is_err());
        if !extra.is_empty() {
            let mut longer = good.clone();
            longer.extend_from_slice(&extra);
            prop_assert!(host.open(&longer).is_err());
        }
    }

    #[test]
    fn client_messages_round_trip(v in variant(), message in client_message()) {
        let mut client = ClientCrypto::new(KEY, v).unwrap();
        let host = ControlCrypto::new(KEY, v).unwrap();
        let packet = client.seal(&message).unwrap();
        prop_assert_eq!(host.open(&packet).unwrap(), message);
    }

    #[test]
    fn host_messages_round_trip(v in variant(), message in host_message()) {
        let mut host = ControlCrypto::new(KEY, v).unwrap();
        let client = ClientCrypto::new(KEY, v).unwrap();
        let packet = host.seal(&message).unwrap();
        prop_assert_eq!(client.open(&packet).unwrap(), message);
    }

    #[test]
    fn message_decoders_never_panic(
        t in prop_oneof![
            Just(0x0109u16), Just(0x010b), Just(0x010e), Just(0x0200), Just(0x0201),
            Just(0x0206), Just(0x0301), Just(0x0302), Just(0x0307), Just(0x0350),
            Just(0x5500), Just(0x5501), Just(0x5502), Just(0x5503), any::<u16>(),
        ],
        payload in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let _ = ClientMessage::decode(t, &payload);
        let _ = HostMessage::decode(t, &payload);
    }
}
