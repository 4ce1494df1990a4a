//! Input packet golden vectors: every example of reference part 2 §3.3 and the recorded
//! `(channel, flags, bytes)` lines of §8.4 (moonlight-common-c's own `InputStream.c` output),
//! decoded, re-encoded byte for byte, and checked against [`InputEvent::delivery`].

// Test helpers may unwrap: a panic there is a failed test.
#![allow(clippy::unwrap_used)]

use howl_proto::control::{Delivery, Reliability};
use howl_proto::input::{
    BatteryState, ButtonAction, ControllerArrival, ControllerBattery, ControllerMotion,
    ControllerState, ControllerTouch, ControllerType, InputError, InputEvent, KeyboardEvent,
    MotionType, MouseButton, MousePosition, PenEvent, PenTool, ROTATION_UNKNOWN, TouchEvent,
    TouchEventType, buttons, capabilities, magic, modifiers,
};
use howl_proto::nvhttp::Fault;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(s).unwrap()
}

/// Section 8.4 lines: channel, ENet flags, bytes, and the event they must decode to.
fn recorded() -> Vec<(u8, u32, &'static str, InputEvent)> {
    vec![
        (0x00, 1, "000000060d0000000100", InputEvent::EnableHaptics),
        (
            0x02,
            1,
            "0000000a03000000004180010000",
            InputEvent::Keyboard(KeyboardEvent {
                action: ButtonAction::Down,
                key_code: 0x8041,
                modifiers: modifiers::SHIFT,
                flags: 0,
            }),
        ),
        (
            0x02,
            1,
            "0000000a04000000014180000000",
            InputEvent::Keyboard(KeyboardEvent {
                action: ButtonAction::Up,
                key_code: 0x8041,
                modifiers: 0,
                flags: 0x01,
            }),
        ),
        (0x06, 1, "000000051700000061", InputEvent::Text("a".into())),
        (
            0x06,
            1,
            "0000000617000000c3a9",
            InputEvent::Text("é".into()),
        ),
        (
            0x03,
            1,
            "0000000807000000fffb012c",
            InputEvent::MouseMove { dx: -5, dy: 300 },
        ),
        (
            0x03,
            1,
            "0000000e0500000003c0021c0000077f0437",
            InputEvent::MousePosition(MousePosition::new(960, 540, 1920, 1080)),
        ),
        (
            0x03,
            1,
            "000000050800000001",
            InputEvent::MouseButton {
                action: ButtonAction::Down,
                button: MouseButton::Left,
            },
        ),
        (
            0x03,
            1,
            "000000050900000003",
            InputEvent::MouseButton {
                action: ButtonAction::Up,
                button: MouseButton::Right,
            },
        ),
        (
            0x03,
            1,
            "0000000a0a000000ff88ff880000",
            InputEvent::Scroll { amount: -120 },
        ),
        (
            0x03,
            1,
            "0000000601000055003c",
            InputEvent::HScroll { amount: 60 },
        ),
        (
            0x11,
            1,
            "0000001e0c0000001a00010003001400001080ff0080ff7f64009cff9c0001005500",
            InputEvent::Controller(ControllerState {
                controller: 1,
                active_mask: 3,
                buttons: buttons::A | buttons::PADDLE1,
                left_trigger: 0x80,
                right_trigger: 0xff,
                left_stick: [-32768, 32767],
                right_stick: [100, -100],
            }),
        ),
        (
            0x11,
            1,
            "0000000c0400005501022b01ffff3f00",
            InputEvent::ControllerArrival(ControllerArrival {
                controller: 1,
                controller_type: ControllerType::PlayStation,
                capabilities: 0x012b,
                supported_buttons: 0x003f_ffff,
            }),
        ),
        (
            0x05,
            1,
            "00000020020000550100ffff070000000000003f0000803e0000803f0000000000000000",
            InputEvent::Touch(TouchEvent {
                event_type: TouchEventType::Down,
                rotation: ROTATION_UNKNOWN,
                pointer_id: 7,
                x: 0.5,
                y: 0.25,
                pressure_or_distance: 1.0,
                contact_area_major: 0.0,
                contact_area_minor: 0.0,
            }),
        ),
        (
            0x04,
            1,
            "000000200300005503010100cdcccc3d6666663f0000003f5a002d000000000000000000",
            InputEvent::Pen(PenEvent {
                event_type: TouchEventType::Move,
                tool: PenTool::Pen,
                buttons: 0x01,
                x: 0.1,
                y: 0.9,
                pressure_or_distance: 0.5,
                rotation: 90,
                tilt: 45,
                contact_area_major: 0.0,
                contact_area_minor: 0.0,
            }),
        ),
        (
            0x11,
            1,
            "000000180500005501010001030000000000403f0000003f0000803f",
            InputEvent::ControllerTouch(ControllerTouch {
                controller: 1,
                event_type: TouchEventType::Down,
                touchpad_index: 1,
                pointer_id: 3,
                x: 0.75,
                y: 0.5,
                pressure: 1.0,
            }),
        ),
        (
            0x21,
            0,
            "0000001406000055010200000000c03f000000c000000000",
            InputEvent::ControllerMotion(ControllerMotion {
                controller: 1,
                motion_type: MotionType::Gyroscope,
                x: 1.5,
                y: -2.0,
                z: 0.0,
            }),
        ),
        (
            0x11,
            1,
            "000000080700005501035000",
            InputEvent::ControllerBattery(ControllerBattery {
                controller: 1,
                state: BatteryState::Charging,
                percent: 80,
            }),
        ),
    ]
}

#[test]
fn recorded_client_packets_decode() {
    for (_, _, wire, event) in recorded() {
        assert_eq!(InputEvent::decode(&unhex(wire)).unwrap(), event, "{wire}");
    }
}

#[test]
fn recorded_client_packets_encode_byte_exact() {
    for (_, _, wire, event) in recorded() {
        assert_eq!(event.encode(), unhex(wire), "{event:?}");
    }
}

#[test]
fn recorded_channels_and_flags_match_delivery() {
    for (ch, flags, wire, event) in recorded() {
        let Delivery {
            channel,
            reliability,
        } = event.delivery();
        assert_eq!(
            (channel, reliability.enet_flags()),
            (ch, flags),
            "{wire} {event:?}"
        );
    }
}

#[test]
fn section_3_3_examples_with_spaces() {
    // The spaced forms as printed in §3.3 (same bytes as 8.4, plus the zero MC after arrival).
    let cases = [
        "0000000a 03000000 00 4180 01 0000",
        "0000000a 04000000 01 4180 00 0000",
        "00000005 17000000 61",
        "00000006 17000000 c3a9",
        "00000008 07000000 fffb 012c",
        "0000000e 05000000 03c0 021c 0000 077f 0437",
        "00000005 08000000 01",
        "00000005 09000000 03",
        "0000000a 0a000000 ff88 ff88 0000",
        "00000006 01000055 003c",
        "0000001e 0c000000 1a00 0100 0300 1400 0010 80 ff 0080 ff7f 6400 9cff 9c00 0100 5500",
        "00000006 0d000000 0100",
        "00000020 02000055 01 00 ffff 07000000 0000003f 0000803e 0000803f 00000000 00000000",
        "00000020 03000055 03 01 01 00 cdcccc3d 6666663f 0000003f 5a00 2d 00 00000000 00000000",
        "0000000c 04000055 01 02 2b01 ffff3f00",
        "0000001e 0c000000 1a00 0100 0300 1400 0000 00 00 0000 0000 0000 0000 9c00 0000 5500",
        "00000018 05000055 01 01 00 01 03000000 0000403f 0000003f 0000803f",
        "00000014 06000055 01 02 0000 0000c03f 000000c0 00000000",
        "00000008 07000055 01 03 50 00",
    ];
    for case in cases {
        let bytes = unhex(case);
        let event = InputEvent::decode(&bytes).unwrap();
        assert_eq!(event.encode(), bytes, "{case}");
    }
    // The zero-state packet that follows an arrival.
    assert_eq!(
        InputEvent::decode(&unhex(cases[15])).unwrap(),
        InputEvent::Controller(ControllerState {
            controller: 1,
            active_mask: 3,
            ..ControllerState::default()
        })
    );
}

#[test]
fn keyboard_helpers() {
    let InputEvent::Keyboard(k) =
        InputEvent::decode(&unhex("0000000a04000000014180000000")).unwrap()
    else {
        panic!()
    };
    assert_eq!(k.virtual_key(), 0x41);
    assert!(k.non_normalized());
}

#[test]
fn absolute_mouse_mapping() {
    let p = MousePosition::new(960, 540, 1920, 1080);
    assert_eq!((p.width_minus_one, p.height_minus_one), (1919, 1079));
    let (x, y) = p.normalized().unwrap();
    assert!((x - 960.0 / 1919.0).abs() < 1e-6 && (y - 540.0 / 1079.0).abs() < 1e-6);
    // x may equal the reference width; the mapping clamps.
    let edge = MousePosition::new(1920, -3, 1920, 1080)
        .normalized()
        .unwrap();
    assert_eq!(edge, (1.0, 0.0));
    // Zero dimensions: decoder error, and no mapping.
    let zero = InputEvent::MousePosition(MousePosition::new(1, 1, 1, 1080)).encode();
    assert_eq!(
        InputEvent::decode(&zero),
        Err(InputError::ZeroReferenceSize)
    );
    assert_eq!(MousePosition::new(1, 1, 0, 0).normalized(), None);
}

#[test]
fn controller_arrival_capabilities_are_16_bit() {
    let InputEvent::ControllerArrival(a) =
        InputEvent::decode(&unhex("0000000c0400005501022b01ffff3f00")).unwrap()
    else {
        panic!()
    };
    assert_ne!(a.capabilities & capabilities::DUAL_TOUCHPAD, 0);
    assert_ne!(a.capabilities & capabilities::TOUCHPAD, 0);
}

#[test]
fn unreliable_touch_and_motion_rules() {
    let hover = InputEvent::Touch(TouchEvent {
        event_type: TouchEventType::Hover,
        rotation: 0,
        pointer_id: 1,
        x: 0.0,
        y: 0.0,
        pressure_or_distance: 0.0,
        contact_area_major: 0.0,
        contact_area_minor: 0.0,
    });
    assert_eq!(hover.delivery(), Delivery::unreliable(0x05));
    let zero_gyro = InputEvent::ControllerMotion(ControllerMotion {
        controller: 2,
        motion_type: MotionType::Gyroscope,
        x: 0.0,
        y: 0.0,
        z: 0.0,
    });
    assert_eq!(zero_gyro.delivery(), Delivery::reliable(0x22));
    let zero_accel = InputEvent::ControllerMotion(ControllerMotion {
        motion_type: MotionType::Accelerometer,
        controller: 2,
        x: 0.0,
        y: 0.0,
        z: 0.0,
    });
    assert_eq!(zero_accel.delivery().reliability, Reliability::Unreliable);
}

#[test]
fn text_splits_per_code_point() {
    let events = InputEvent::text("aé😀");
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].encode(), unhex("0000000817000000f09f9880"));
}

#[test]
fn unknown_magics_are_not_errors() {
    let bytes = unhex("0000000a 06000000 0001 0002 0003");
    assert_eq!(
        InputEvent::decode(&bytes).unwrap(),
        InputEvent::Unknown {
            magic: 0x06,
            len: 6
        }
    );
    let unknown = InputEvent::Unknown {
        magic: 0x5500_00ff,
        len: 3,
    };
    assert_eq!(InputEvent::decode(&unknown.encode()).unwrap(), unknown);
}

#[test]
fn malformed_packets_are_typed_errors() {
    assert_eq!(
        InputEvent::decode(&[0, 0, 0]),
        Err(InputError::TooShort { len: 3 })
    );
    // size field little-endian by mistake.
    assert_eq!(
        InputEvent::decode(&unhex("05000000 08000000 01")),
        Err(InputError::SizeMismatch {
            declared: 0x0500_0000,
            actual: 5
        })
    );
    // Key packet one byte short (size consistent).
    assert_eq!(
        InputEvent::decode(&unhex("00000009 03000000 00 4180 01 00")),
        Err(InputError::Length {
            magic: magic::KEY_DOWN,
            expected: 14,
            actual: 13
        })
    );
    assert_eq!(
        InputEvent::decode(&unhex("00000004 17000000")),
        Err(InputError::TextLength { len: 0 })
    );
    assert_eq!(
        InputEvent::decode(&unhex("00000005 17000000 ff")),
        Err(InputError::InvalidUtf8)
    );
    assert_eq!(
        InputEvent::decode(&unhex("00000008 07000055 10 03 50 00")),
        Err(InputError::ControllerNumber { controller: 16 })
    );
    let mut mc = unhex("0000001e0c0000001a00010003001400001080ff0080ff7f64009cff9c0001005500");
    mc[10] = 0x10;
    assert_eq!(
        InputEvent::decode(&mc),
        Err(InputError::ControllerNumber { controller: 16 })
    );
    assert_eq!(InputError::InvalidUtf8.fault(), Fault::MalformedInput);
}

#[test]
fn input_rides_in_a_control_message() {
    use howl_proto::control::{ClientCrypto, ClientMessage, ControlCrypto, IvVariant};
    let key = [7u8; 16];
    let mut client = ClientCrypto::new(key, IvVariant::V2).unwrap();
    let host = ControlCrypto::new(key, IvVariant::V2).unwrap();
    for (ch, _, _, event) in recorded() {
        let message = ClientMessage::input(&event);
        assert_eq!(message.delivery().channel, ch);
        let ClientMessage::Input(bytes) = host.open(&client.seal(&message).unwrap()).unwrap()
        else {
            panic!("not input")
        };
        assert_eq!(InputEvent::decode(&bytes).unwrap(), event);
    }
}
