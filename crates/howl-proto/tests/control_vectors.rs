//! Control envelope golden vectors (reference part 2 §2.4, produced by moonlight-common-c's
//! `encryptControlMessage` and accepted by its `decryptControlMessageToV1`), message round trips
//! and hostile-packet cases.

// Test helpers may unwrap: a panic there is a failed test.
#![allow(clippy::unwrap_used)]

use howl_proto::control::{
    ClientCrypto, ClientMessage, ControlCrypto, ControlError, FrameFecStatus, HdrMetadata,
    HostMessage, IvVariant, SS_ENC_CONTROL_V2, TerminationReason, msg_type,
};
use howl_proto::input::{ButtonAction, InputEvent, KeyboardEvent, MotionType};
use howl_proto::nvhttp::Fault;

const KEY: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(s).unwrap()
}

fn host(variant: IvVariant) -> ControlCrypto {
    ControlCrypto::new(KEY, variant).unwrap()
}

fn client(variant: IvVariant) -> ClientCrypto {
    ClientCrypto::new(KEY, variant).unwrap()
}

const KEY_DOWN_PACKET: &str = "0000000a03000000004180000000";

/// C→H V2 vectors, in the order the client produced them (seq 0, 1, 2, 3).
fn c2h_v2() -> Vec<(ClientMessage, &'static str)> {
    vec![
        (
            ClientMessage::RequestIdr,
            "01001a0000000000d93cfa82a8b8a7511d3a4c632d046312649f36ffddf7",
        ),
        (
            ClientMessage::StartB,
            "01001900010000002c7f47dc4447071e6cbd1fca70b804b54a38810931",
        ),
        (
            ClientMessage::PeriodicPing,
            "0100200002000000f6aa86ad5eff2f757f0ee265a8cc47157abd5d629adddb0178c2314b",
        ),
        (
            ClientMessage::Input(unhex(KEY_DOWN_PACKET)),
            "0100260003000000deb0f888be4f48fc4d95529a8ec5d608f5239752833db8893f4e25c7b143131c8dfe",
        ),
    ]
}

#[test]
fn client_to_host_v2_vectors_seal_byte_exact() {
    let mut c = client(IvVariant::V2);
    for (message, wire) in c2h_v2() {
        assert_eq!(c.seal(&message).unwrap(), unhex(wire), "{message:?}");
    }
}

#[test]
fn client_to_host_v2_vectors_open() {
    let h = host(IvVariant::V2);
    for (seq, (message, wire)) in c2h_v2().into_iter().enumerate() {
        let (got_seq, got) = h.open_with_seq(&unhex(wire)).unwrap();
        assert_eq!(got_seq as usize, seq);
        assert_eq!(got, message);
    }
    // The input inside the last vector decodes to the key press.
    let ClientMessage::Input(bytes) = h.open(&unhex(c2h_v2()[3].1)).unwrap() else {
        panic!("not input");
    };
    assert_eq!(
        InputEvent::decode(&bytes).unwrap(),
        InputEvent::Keyboard(KeyboardEvent {
            action: ButtonAction::Down,
            key_code: 0x8041,
            modifiers: 0,
            flags: 0,
        })
    );
}

#[test]
fn client_to_host_v2_raw_plaintexts() {
    let h = host(IvVariant::V2);
    let expected: [(u16, &str); 4] = [
        (0x0302, "0000"),
        (0x0307, "00"),
        (0x0200, "0400000000000000"),
        (0x0206, KEY_DOWN_PACKET),
    ];
    for ((_, wire), (t, payload)) in c2h_v2().into_iter().zip(expected) {
        let raw = h.open_raw(&unhex(wire)).unwrap();
        assert_eq!(raw.msg_type, t);
        assert_eq!(raw.payload, unhex(payload));
    }
}

#[test]
fn client_to_host_legacy_vectors() {
    let seq0 = "01001a0000000000d31b16345909d1181bcbd8897c74b21ef9660098c3e0";
    let seq257 = "01001a00010100005ccba544cec84cf362d26b9224bb62950971866a85ea";
    let mut c = client(IvVariant::Legacy);
    assert_eq!(c.seal(&ClientMessage::RequestIdr).unwrap(), unhex(seq0));
    let mut c = client(IvVariant::Legacy).with_next_seq(257);
    assert_eq!(c.seal(&ClientMessage::RequestIdr).unwrap(), unhex(seq257));

    let h = host(IvVariant::Legacy);
    assert_eq!(
        h.open_with_seq(&unhex(seq0)).unwrap(),
        (0, ClientMessage::RequestIdr)
    );
    assert_eq!(
        h.open_with_seq(&unhex(seq257)).unwrap(),
        (257, ClientMessage::RequestIdr)
    );
}

fn hdr_vector_metadata() -> HdrMetadata {
    HdrMetadata {
        display_primaries: [[34000, 16000], [13250, 34500], [7500, 3000]],
        white_point: [15635, 16450],
        max_display_luminance: 1000,
        min_display_luminance: 50,
        max_content_light_level: 1000,
        max_frame_average_light_level: 400,
        max_full_frame_luminance: 1000,
    }
}

/// H→C V2 vectors, seq 0..5.
fn h2c_v2() -> Vec<(HostMessage, &'static str)> {
    vec![
        (
            HostMessage::Termination(TerminationReason::Graceful),
            "01001c0000000000810eda0e8a91dbb24591763948b85241f4f3a8a7b26450bc",
        ),
        (
            HostMessage::Rumble {
                controller: 0,
                low_freq_motor: 0x8000,
                high_freq_motor: 0x4000,
            },
            "01002200010000007371e7cd6fadb3cc500ab76cc9ea4f6b30b24c124d2e9bd28465b0a5d8bc",
        ),
        (
            HostMessage::HdrMode {
                enabled: true,
                metadata: hdr_vector_metadata(),
            },
            "0100330002000000a49919a40ea2215866b553dc00187d3d703ef72ec6596c54e1ff80b4932a42f2df3d60acac438b190970ac2183e2ee",
        ),
        (
            HostMessage::SetMotionEventState {
                controller: 0,
                report_rate_hz: 100,
                motion_type: MotionType::Gyroscope,
            },
            "01001d0003000000aac1b851e29ef567d32e70fd83b49584cc7f70c41df3fc0c88",
        ),
        (
            HostMessage::SetControllerLed {
                controller: 0,
                r: 0xff,
                g: 0x00,
                b: 0x80,
            },
            "01001d00040000007f5512ff96e5559b0a18c6e0dc20d2fe669c1e402757a83558",
        ),
        (
            HostMessage::TriggerRumble {
                controller: 1,
                left_trigger_motor: 0x1234,
                right_trigger_motor: 0x5678,
            },
            "01001e0005000000653515780333c9c21e3819d79f0e01096ccc9a70768ab397b833",
        ),
    ]
}

#[test]
fn host_to_client_v2_vectors_seal_byte_exact() {
    let mut h = host(IvVariant::V2);
    for (message, wire) in h2c_v2() {
        assert_eq!(h.seal(&message).unwrap(), unhex(wire), "{message:?}");
    }
}

#[test]
fn host_to_client_v2_vectors_open() {
    let c = client(IvVariant::V2);
    for (message, wire) in h2c_v2() {
        assert_eq!(c.open(&unhex(wire)).unwrap(), message);
    }
}

#[test]
fn host_to_client_payloads_match_reference_plaintexts() {
    let expected = [
        "80030023",
        "eeffc000000000800040",
        "01d084803ec233c4864c1db80b133d4240e8033200e8039001e803",
        "0000640002",
        "0000ff0080",
        "010034127856",
    ];
    for ((message, _), payload) in h2c_v2().into_iter().zip(expected) {
        assert_eq!(message.encode_payload(), unhex(payload), "{message:?}");
    }
}

#[test]
fn host_to_client_legacy_vector() {
    let wire = "01001c0000000000c5582ba6bef790cd2dc826d3cd114a90f264069843e30045";
    let graceful = HostMessage::Termination(TerminationReason::Graceful);
    let mut h = host(IvVariant::Legacy);
    assert_eq!(h.seal(&graceful).unwrap(), unhex(wire));
    assert_eq!(
        client(IvVariant::Legacy).open(&unhex(wire)).unwrap(),
        graceful
    );
}

#[test]
fn host_sequence_counts_from_zero() {
    let mut h = host(IvVariant::V2);
    let c = client(IvVariant::V2);
    let msg = HostMessage::Termination(TerminationReason::Graceful);
    for seq in 0..5u32 {
        let packet = h.seal(&msg).unwrap();
        assert_eq!(c.open_raw(&packet).unwrap().seq, seq);
    }
}

#[test]
fn iv_variant_from_advertised_bits() {
    assert_eq!(IvVariant::from_advertised(SS_ENC_CONTROL_V2), IvVariant::V2);
    assert_eq!(IvVariant::from_advertised(0x07), IvVariant::V2);
    assert_eq!(IvVariant::from_advertised(0), IvVariant::Legacy);
    assert_eq!(IvVariant::from_advertised(0x02), IvVariant::Legacy);
}

fn all_client_messages() -> Vec<ClientMessage> {
    vec![
        ClientMessage::RequestIdr,
        ClientMessage::StartB,
        ClientMessage::PeriodicPing,
        ClientMessage::InvalidateReferenceFrames {
            first_frame: 17,
            last_frame: 0xdead_beef,
        },
        ClientMessage::LossStats {
            last_good_frame: 0x0102_0304_0506_0708,
        },
        ClientMessage::Input(unhex(KEY_DOWN_PACKET)),
        ClientMessage::Input(vec![]),
        ClientMessage::LtrFrameAck { frame_index: 99 },
        ClientMessage::FrameFecStatus(FrameFecStatus {
            frame_index: 0x0a0b_0c0d,
            highest_received_sequence_number: 1,
            next_contiguous_sequence_number: 2,
            missing_packets_before_highest_received: 3,
            total_data_packets: 4,
            total_parity_packets: 5,
            received_data_packets: 6,
            received_parity_packets: 7,
            fec_percentage: 20,
            multi_fec_block_index: 1,
            multi_fec_block_count: 3,
        }),
        ClientMessage::Unknown {
            msg_type: msg_type::FRAME_STATS,
            len: 12,
        },
        ClientMessage::Unknown {
            msg_type: 0xbeef,
            len: 0,
        },
    ]
}

fn all_host_messages() -> Vec<HostMessage> {
    vec![
        HostMessage::Termination(TerminationReason::Graceful),
        HostMessage::Termination(TerminationReason::ProtectedContent),
        HostMessage::Termination(TerminationReason::FrameConversion),
        HostMessage::Termination(TerminationReason::Other(0x1234_5678)),
        HostMessage::Rumble {
            controller: 3,
            low_freq_motor: 1,
            high_freq_motor: 0xffff,
        },
        HostMessage::HdrMode {
            enabled: false,
            metadata: HdrMetadata::default(),
        },
        HostMessage::HdrMode {
            enabled: true,
            metadata: hdr_vector_metadata(),
        },
        HostMessage::TriggerRumble {
            controller: 15,
            left_trigger_motor: 2,
            right_trigger_motor: 3,
        },
        HostMessage::SetMotionEventState {
            controller: 2,
            report_rate_hz: 0,
            motion_type: MotionType::Accelerometer,
        },
        HostMessage::SetControllerLed {
            controller: 1,
            r: 1,
            g: 2,
            b: 3,
        },
        HostMessage::AdaptiveTriggers {
            controller: 0,
            event_flags: 0x0c,
            type_left: 0x21,
            type_right: 0x26,
            left: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            right: [11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
        },
        HostMessage::Unknown {
            msg_type: 0x4242,
            len: 7,
        },
    ]
}

#[test]
fn every_client_message_round_trips_both_variants() {
    for variant in [IvVariant::V2, IvVariant::Legacy] {
        let mut c = client(variant);
        let h = host(variant);
        for message in all_client_messages() {
            let packet = c.seal(&message).unwrap();
            assert_eq!(h.open(&packet).unwrap(), message, "{variant:?}");
        }
    }
}

#[test]
fn every_host_message_round_trips_both_variants() {
    for variant in [IvVariant::V2, IvVariant::Legacy] {
        let mut h = host(variant);
        let c = client(variant);
        for message in all_host_messages() {
            let packet = h.seal(&message).unwrap();
            assert_eq!(c.open(&packet).unwrap(), message, "{variant:?}");
        }
    }
}

#[test]
fn client_fec_status_and_host_led_share_type_but_not_direction() {
    assert_eq!(msg_type::FRAME_FEC_STATUS, msg_type::SET_RGB_LED);
    let led = HostMessage::SetControllerLed {
        controller: 0,
        r: 1,
        g: 2,
        b: 3,
    };
    // Read as a client message, the 5-byte LED payload is too short for FEC status.
    assert_eq!(
        ClientMessage::decode(led.msg_type(), &led.encode_payload()),
        Err(ControlError::PayloadTooShort {
            msg_type: 0x5502,
            expected: 21,
            actual: 5
        })
    );
}

#[test]
fn termination_short_form_and_codes() {
    assert_eq!(
        HostMessage::decode(msg_type::TERMINATION, &[0x00, 0x01]).unwrap(),
        HostMessage::Termination(TerminationReason::Graceful)
    );
    assert_eq!(
        HostMessage::decode(msg_type::TERMINATION, &[0x05, 0x00, 0xaa]).unwrap(),
        HostMessage::Termination(TerminationReason::Other(5))
    );
    assert_eq!(
        HostMessage::decode(msg_type::TERMINATION, &[0x80, 0x0e, 0x93, 0x02]).unwrap(),
        HostMessage::Termination(TerminationReason::ProtectedContent)
    );
    assert_eq!(
        HostMessage::decode(msg_type::TERMINATION, &[0x80, 0x0e, 0x94, 0x03]).unwrap(),
        HostMessage::Termination(TerminationReason::FrameConversion)
    );
    assert!(matches!(
        HostMessage::decode(msg_type::TERMINATION, &[0x01]),
        Err(ControlError::PayloadTooShort { .. })
    ));
    for code in [0x8003_0023, 0x800e_9302, 0x800e_9403, 0, 0x100, u32::MAX] {
        assert_eq!(TerminationReason::from_code(code).code(), code);
    }
}

#[test]
fn hdr_mode_one_byte_non_sunshine_form() {
    assert_eq!(
        HostMessage::decode(msg_type::HDR_MODE, &[1]).unwrap(),
        HostMessage::HdrMode {
            enabled: true,
            metadata: HdrMetadata::default()
        }
    );
    assert!(HostMessage::decode(msg_type::HDR_MODE, &[]).is_err());
}

#[test]
fn ping_content_is_never_validated() {
    for payload in [&[][..], &[0xff; 3][..], &[4, 0, 0, 0, 0, 0, 0xab, 0xcd][..]] {
        assert_eq!(
            ClientMessage::decode(msg_type::PERIODIC_PING, payload).unwrap(),
            ClientMessage::PeriodicPing
        );
    }
}

#[test]
fn trailing_bytes_after_fixed_layouts_are_tolerated() {
    let mut payload = ClientMessage::LtrFrameAck { frame_index: 5 }.encode_payload();
    payload.extend_from_slice(&[9, 9]);
    assert_eq!(
        ClientMessage::decode(msg_type::LTR_FRAME_ACK, &payload).unwrap(),
        ClientMessage::LtrFrameAck { frame_index: 5 }
    );
}

#[test]
fn short_known_client_payloads_are_typed_errors() {
    for (t, need) in [
        (msg_type::INVALIDATE_REFERENCE_FRAMES, 24),
        (msg_type::LOSS_STATS, 32),
        (msg_type::LTR_FRAME_ACK, 8),
        (msg_type::FRAME_FEC_STATUS, 21),
    ] {
        let err = ClientMessage::decode(t, &vec![0; need - 1]).unwrap_err();
        assert_eq!(
            err,
            ControlError::PayloadTooShort {
                msg_type: t,
                expected: need,
                actual: need - 1
            }
        );
        assert_eq!(err.fault(), Fault::MalformedInput);
    }
}

#[test]
fn tampering_anywhere_fails_authentication() {
    let h = host(IvVariant::V2);
    let good = unhex(c2h_v2()[0].1);
    // Flip one bit in seq, tag and ciphertext bytes (bytes 4..): all must fail the tag.
    for i in 4..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        let err = h.open(&bad).unwrap_err();
        assert_eq!(err, ControlError::Authentication, "byte {i}");
        assert_eq!(err.fault(), Fault::PeerMisbehaved);
    }
}

#[test]
fn legacy_tampering_fails_authentication() {
    let h = host(IvVariant::Legacy);
    let good = unhex("01001a0000000000d31b16345909d1181bcbd8897c74b21ef9660098c3e0");
    for i in 8..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x80;
        assert_eq!(h.open(&bad), Err(ControlError::Authentication), "byte {i}");
    }
}

#[test]
fn wrong_key_variant_or_direction_fails_authentication() {
    let packet = unhex(c2h_v2()[0].1);
    let mut other_key = KEY;
    other_key[0] ^= 1;
    assert_eq!(
        ControlCrypto::new(other_key, IvVariant::V2)
            .unwrap()
            .open(&packet),
        Err(ControlError::Authentication)
    );
    assert_eq!(
        host(IvVariant::Legacy).open(&packet),
        Err(ControlError::Authentication)
    );
    // A client packet reflected back to the client: the V2 IV's direction marker differs.
    assert_eq!(
        client(IvVariant::V2).open(&packet),
        Err(ControlError::Authentication)
    );
}

#[test]
fn framing_errors_are_typed() {
    let h = host(IvVariant::V2);
    let good = unhex(c2h_v2()[0].1);

    assert_eq!(h.open(&[]), Err(ControlError::TooShort { len: 0 }));
    assert_eq!(h.open(&[1, 0, 0]), Err(ControlError::TooShort { len: 3 }));
    // A plaintext Start A, as an older client would send it.
    assert_eq!(
        h.open(&[0x02, 0x03, 0x02, 0x00, 0x00, 0x00]),
        Err(ControlError::NotEnvelope { marker: 0x0302 })
    );
    // Truncated and padded packets disagree with L.
    assert_eq!(
        h.open(&good[..good.len() - 1]),
        Err(ControlError::EnvelopeLength {
            declared: 26,
            actual: 25
        })
    );
    let mut padded = good.clone();
    padded.push(0);
    assert_eq!(
        h.open(&padded),
        Err(ControlError::EnvelopeLength {
            declared: 26,
            actual: 27
        })
    );
    // Self-consistent but too small to hold tag + inner header.
    let tiny = [
        1, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(h.open(&tiny), Err(ControlError::TooShort { len: 24 }));
    assert_eq!(
        ControlError::NotEnvelope { marker: 2 }.fault(),
        Fault::PeerMisbehaved
    );
}

#[test]
fn inner_length_mismatch_is_detected() {
    use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    // Build a V2 envelope by hand whose inner payloadLength lies (says 5, holds 2).
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &KEY).unwrap());
    let mut plain = vec![0x02, 0x03, 0x05, 0x00, 0x00, 0x00];
    let nonce = Nonce::assume_unique_for_key([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'C', b'C']);
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::empty(), &mut plain)
        .unwrap();
    let mut packet = vec![0x01, 0x00, 26, 0x00, 0, 0, 0, 0];
    packet.extend_from_slice(tag.as_ref());
    packet.extend_from_slice(&plain);
    assert_eq!(
        host(IvVariant::V2).open(&packet),
        Err(ControlError::InnerLength {
            declared: 5,
            actual: 2
        })
    );
}

#[test]
fn oversized_payload_is_refused_without_consuming_a_sequence_number() {
    let mut h = host(IvVariant::V2);
    let big = vec![0u8; 65_512];
    assert_eq!(
        h.seal_raw(0x4242, &big),
        Err(ControlError::PayloadTooLong { len: 65_512 })
    );
    let ok = h.seal_raw(0x4242, &big[..65_511]).unwrap();
    assert_eq!(ok.len(), 65_535 + 4);
    let raw = client(IvVariant::V2).open_raw(&ok).unwrap();
    assert_eq!((raw.seq, raw.payload.len()), (0, 65_511));
}

#[test]
fn sequence_exhaustion_is_an_error_not_iv_reuse() {
    let mut h = host(IvVariant::V2).with_next_seq(u32::MAX);
    let msg = HostMessage::Termination(TerminationReason::Graceful);
    assert!(h.seal(&msg).is_ok());
    assert_eq!(h.seal(&msg), Err(ControlError::SequenceExhausted));
    assert_eq!(ControlError::SequenceExhausted.fault(), Fault::LocalMisuse);
}

#[test]
fn debug_output_does_not_leak_the_key() {
    let text = format!("{:?} {:?}", host(IvVariant::V2), client(IvVariant::Legacy));
    assert!(!text.contains("0, 17, 34"), "{text}");
    assert!(!text.to_lowercase().contains("00112233"), "{text}");
}

#[test]
fn client_message_delivery_matches_channel_map() {
    use howl_proto::control::{Reliability, channel};
    assert_eq!(
        ClientMessage::RequestIdr.delivery().channel,
        channel::URGENT
    );
    assert_eq!(
        ClientMessage::PeriodicPing.delivery().channel,
        channel::GENERIC
    );
    let fec = ClientMessage::FrameFecStatus(FrameFecStatus::default()).delivery();
    assert_eq!(fec.reliability, Reliability::Unsequenced);
    assert_eq!(fec.reliability.enet_flags(), 2);
    let key = ClientMessage::Input(unhex(KEY_DOWN_PACKET)).delivery();
    assert_eq!(
        (key.channel, key.reliability.enet_flags()),
        (channel::KEYBOARD, 1)
    );
}
