//! Property tests for the input decoder: no panic on hostile bytes, decode/encode agree, and
//! every event round-trips (STYLE practices 6 and 11).

// Test helpers may unwrap: a panic there is a failed test.
#![allow(clippy::unwrap_used)]

use howl_proto::input::{
    BatteryState, ButtonAction, ControllerArrival, ControllerBattery, ControllerMotion,
    ControllerState, ControllerTouch, ControllerType, InputEvent, KeyboardEvent, MotionType,
    MouseButton, MousePosition, PenEvent, PenTool, TouchEvent, TouchEventType, magic,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 100_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const KNOWN_MAGICS: [u32; 17] = [
    magic::KEY_DOWN,
    magic::KEY_UP,
    magic::MOUSE_POSITION,
    magic::MOUSE_MOVE,
    magic::MOUSE_BUTTON_DOWN,
    magic::MOUSE_BUTTON_UP,
    magic::SCROLL,
    magic::MULTI_CONTROLLER,
    magic::ENABLE_HAPTICS,
    magic::UTF8_TEXT,
    magic::HSCROLL,
    magic::TOUCH,
    magic::PEN,
    magic::CONTROLLER_ARRIVAL,
    magic::CONTROLLER_TOUCH,
    magic::CONTROLLER_MOTION,
    magic::CONTROLLER_BATTERY,
];

/// A packet with a consistent `size` and a known magic, so decoding reaches the body parsers.
fn framed_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(KNOWN_MAGICS.to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(magic, body)| {
            let mut packet = u32::try_from(body.len() + 4)
                .unwrap()
                .to_be_bytes()
                .to_vec();
            packet.extend_from_slice(&magic.to_le_bytes());
            packet.extend_from_slice(&body);
            packet
        })
}

fn unit() -> impl Strategy<Value = f32> {
    -2.0f32..2.0
}

fn touch_type() -> impl Strategy<Value = TouchEventType> {
    any::<u8>().prop_map(TouchEventType::from_u8)
}

fn action() -> impl Strategy<Value = ButtonAction> {
    prop_oneof![Just(ButtonAction::Down), Just(ButtonAction::Up)]
}

fn event() -> impl Strategy<Value = InputEvent> {
    let keyboard = (action(), any::<u16>(), any::<u8>(), any::<u8>()).prop_map(
        |(action, key_code, modifiers, flags)| {
            InputEvent::Keyboard(KeyboardEvent {
                action,
                key_code,
                modifiers,
                flags,
            })
        },
    );
    let position = (any::<i16>(), any::<i16>(), 1u16.., 1u16..).prop_map(|(x, y, w, h)| {
        InputEvent::MousePosition(MousePosition {
            x,
            y,
            width_minus_one: w,
            height_minus_one: h,
        })
    });
    let controller = (
        0u16..16,
        any::<u16>(),
        any::<u32>(),
        any::<[u8; 2]>(),
        any::<[i16; 4]>(),
    )
        .prop_map(|(controller, active_mask, buttons, [lt, rt], s)| {
            InputEvent::Controller(ControllerState {
                controller,
                active_mask,
                buttons,
                left_trigger: lt,
                right_trigger: rt,
                left_stick: [s[0], s[1]],
                right_stick: [s[2], s[3]],
            })
        });
    let arrival = (0u8..16, any::<u8>(), any::<u16>(), any::<u32>()).prop_map(|(c, t, caps, b)| {
        InputEvent::ControllerArrival(ControllerArrival {
            controller: c,
            controller_type: ControllerType::from_u8(t),
            capabilities: caps,
            supported_buttons: b,
        })
    });
    let touch = (
        touch_type(),
        any::<u16>(),
        any::<u32>(),
        [unit(), unit(), unit(), unit(), unit()],
    )
        .prop_map(|(event_type, rotation, pointer_id, f)| {
            InputEvent::Touch(TouchEvent {
                event_type,
                rotation,
                pointer_id,
                x: f[0],
                y: f[1],
                pressure_or_distance: f[2],
                contact_area_major: f[3],
                contact_area_minor: f[4],
            })
        });
    let pen = (
        touch_type(),
        any::<[u8; 3]>(),
        any::<u16>(),
        [unit(), unit(), unit(), unit(), unit()],
    )
        .prop_map(|(event_type, [tool, buttons, tilt], rotation, f)| {
            InputEvent::Pen(PenEvent {
                event_type,
                tool: PenTool::from_u8(tool),
                buttons,
                x: f[0],
                y: f[1],
                pressure_or_distance: f[2],
                rotation,
                tilt,
                contact_area_major: f[3],
                contact_area_minor: f[4],
            })
        });
    let ctouch = (
        0u8..16,
        touch_type(),
        any::<u8>(),
        any::<u32>(),
        [unit(), unit(), unit()],
    )
        .prop_map(|(controller, event_type, touchpad_index, pointer_id, f)| {
            InputEvent::ControllerTouch(ControllerTouch {
                controller,
                event_type,
                touchpad_index,
                pointer_id,
                x: f[0],
                y: f[1],
                pressure: f[2],
            })
        });
    let motion = (0u8..16, any::<u8>(), [unit(), unit(), unit()]).prop_map(|(c, t, f)| {
        InputEvent::ControllerMotion(ControllerMotion {
            controller: c,
            motion_type: MotionType::from_u8(t),
            x: f[0] * 1000.0,
            y: f[1],
            z: f[2],
        })
    });
    let battery = (0u8..16, any::<u8>(), any::<u8>()).prop_map(|(c, s, p)| {
        InputEvent::ControllerBattery(ControllerBattery {
            controller: c,
            state: BatteryState::from_u8(s),
            percent: p,
        })
    });
    prop_oneof![
        keyboard,
        "\\PC{1,8}"
            .prop_filter("fits", |s: &String| s.len() <= 32)
            .prop_map(InputEvent::Text),
        (any::<i16>(), any::<i16>()).prop_map(|(dx, dy)| InputEvent::MouseMove { dx, dy }),
        position,
        (action(), any::<u8>()).prop_map(|(action, b)| InputEvent::MouseButton {
            action,
            button: MouseButton::from_u8(b),
        }),
        any::<i16>().prop_map(|amount| InputEvent::Scroll { amount }),
        any::<i16>().prop_map(|amount| InputEvent::HScroll { amount }),
        controller,
        arrival,
        Just(InputEvent::EnableHaptics),
        touch,
        pen,
        ctouch,
        motion,
        battery,
        (any::<u32>(), 0usize..40)
            .prop_filter("unknown magic", |(m, _)| !KNOWN_MAGICS.contains(m))
            .prop_map(|(magic, len)| InputEvent::Unknown { magic, len }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..48),
    ) {
        let _ = InputEvent::decode(&bytes);
    }

    #[test]
    fn framed_packets_decode_or_fail_cleanly_and_reencode_stably(packet in framed_packet()) {
        if let Ok(event) = InputEvent::decode(&packet) {
            let encoded = event.encode();
            prop_assert_eq!(encoded.len(), packet.len());
            let again = InputEvent::decode(&encoded).unwrap();
            // Compare encodings: NaN payloads make `PartialEq` on floats unsuitable here.
            prop_assert_eq!(again.encode(), encoded);
            prop_assert_eq!(again.delivery(), event.delivery());
        }
    }

    #[test]
    fn events_round_trip(event in event()) {
        let bytes = event.encode();
        prop_assert_eq!(InputEvent::decode(&bytes).unwrap(), event);
    }
}
