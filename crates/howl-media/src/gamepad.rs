//! Moonlight gamepad state → Linux evdev events, for the worker's uinput gamepads. Sans-IO:
//! the worker owns `/dev/uinput`; this module only says which device to declare and which
//! events turn one full pad state into the next.
//!
//! The layout follows the kernel's Xbox driver (xpad), which games and SDL already know:
//! A/B/X/Y are `BTN_A`/`BTN_B`/`BTN_X`/`BTN_Y`, the sticks `ABS_X/Y` and `ABS_RX/RY`
//! (−32768..32767, +y down), the triggers `ABS_Z`/`ABS_RZ` (0..255), the d-pad a hat.

/// `EV_SYN`.
pub const EV_SYN: u16 = 0x00;
/// `EV_KEY`.
pub const EV_KEY: u16 = 0x01;
/// `EV_ABS`.
pub const EV_ABS: u16 = 0x03;
/// `SYN_REPORT`.
pub const SYN_REPORT: u16 = 0;

/// evdev key codes used by the pad.
pub mod code {
    pub const BTN_A: u16 = 0x130;
    pub const BTN_B: u16 = 0x131;
    pub const BTN_X: u16 = 0x133;
    pub const BTN_Y: u16 = 0x134;
    pub const BTN_TL: u16 = 0x136;
    pub const BTN_TR: u16 = 0x137;
    pub const BTN_SELECT: u16 = 0x13a;
    pub const BTN_START: u16 = 0x13b;
    pub const BTN_MODE: u16 = 0x13c;
    pub const BTN_THUMBL: u16 = 0x13d;
    pub const BTN_THUMBR: u16 = 0x13e;
    /// Paddles 1-4, touchpad click, misc: the kernel's "extra buttons" range.
    pub const BTN_TRIGGER_HAPPY1: u16 = 0x2c0;
    pub const ABS_X: u16 = 0x00;
    pub const ABS_Y: u16 = 0x01;
    pub const ABS_Z: u16 = 0x02;
    pub const ABS_RX: u16 = 0x03;
    pub const ABS_RY: u16 = 0x04;
    pub const ABS_RZ: u16 = 0x05;
    pub const ABS_HAT0X: u16 = 0x10;
    pub const ABS_HAT0Y: u16 = 0x11;
}

/// Moonlight's button bits, as the wire defines them.
pub use howl_proto::input::buttons as bits;

/// Button bit → evdev key (the d-pad bits are the hat, not keys).
pub const BUTTONS: &[(u32, u16)] = &[
    (bits::A, code::BTN_A),
    (bits::B, code::BTN_B),
    (bits::X, code::BTN_X),
    (bits::Y, code::BTN_Y),
    (bits::LB, code::BTN_TL),
    (bits::RB, code::BTN_TR),
    (bits::BACK, code::BTN_SELECT),
    (bits::START, code::BTN_START),
    (bits::GUIDE, code::BTN_MODE),
    (bits::LS_CLICK, code::BTN_THUMBL),
    (bits::RS_CLICK, code::BTN_THUMBR),
    (bits::PADDLE1, code::BTN_TRIGGER_HAPPY1),
    (bits::PADDLE2, code::BTN_TRIGGER_HAPPY1 + 1),
    (bits::PADDLE3, code::BTN_TRIGGER_HAPPY1 + 2),
    (bits::PADDLE4, code::BTN_TRIGGER_HAPPY1 + 3),
    (bits::TOUCHPAD, code::BTN_TRIGGER_HAPPY1 + 4),
    (bits::MISC, code::BTN_TRIGGER_HAPPY1 + 5),
];

/// One absolute axis the device declares: code, min, max, fuzz, flat (xpad's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxisSpec {
    pub code: u16,
    pub min: i32,
    pub max: i32,
    pub fuzz: i32,
    pub flat: i32,
}

/// The axes of the virtual pad.
pub const AXES: &[AxisSpec] = &[
    stick(code::ABS_X),
    stick(code::ABS_Y),
    stick(code::ABS_RX),
    stick(code::ABS_RY),
    trigger(code::ABS_Z),
    trigger(code::ABS_RZ),
    hat(code::ABS_HAT0X),
    hat(code::ABS_HAT0Y),
];

const fn stick(code: u16) -> AxisSpec {
    AxisSpec {
        code,
        min: -32768,
        max: 32767,
        fuzz: 16,
        flat: 128,
    }
}
const fn trigger(code: u16) -> AxisSpec {
    AxisSpec {
        code,
        min: 0,
        max: 255,
        fuzz: 0,
        flat: 0,
    }
}
const fn hat(code: u16) -> AxisSpec {
    AxisSpec {
        code,
        min: -1,
        max: 1,
        fuzz: 0,
        flat: 0,
    }
}

/// Full state of one client pad, as Moonlight sends it (+y up on the sticks, XInput style).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PadState {
    /// Moonlight button bits ([`bits`]).
    pub buttons: u32,
    pub left_trigger: u8,
    pub right_trigger: u8,
    /// `[x, y]`, +y up.
    pub left_stick: [i16; 2],
    /// `[x, y]`, +y up.
    pub right_stick: [i16; 2],
}

impl PadState {
    /// The pad a client's controller packet is about: its number (0..16, howl-proto checked
    /// it), whether it is still connected (a pad that is gone is a state whose active mask
    /// lacks its own bit) and its buttons, triggers and sticks.
    #[must_use]
    pub fn from_controller(c: &howl_proto::input::ControllerState) -> (u8, bool, PadState) {
        let controller = u8::try_from(c.controller).unwrap_or(u8::MAX);
        let connected = c
            .active_mask
            .checked_shr(u32::from(c.controller))
            .unwrap_or(0)
            & 1
            != 0;
        let state = PadState {
            buttons: c.buttons,
            left_trigger: c.left_trigger,
            right_trigger: c.right_trigger,
            left_stick: c.left_stick,
            right_stick: c.right_stick,
        };
        (controller, connected, state)
    }
}

/// One evdev event (`struct input_event` without its time stamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EvdevEvent {
    pub kind: u16,
    pub code: u16,
    pub value: i32,
}

/// XInput's +y up becomes evdev's +y down. Bitwise not (−y − 1) maps the full i16 range onto
/// itself, so neither end overflows (xpad does the same).
fn flip(y: i16) -> i32 {
    i32::from(!y)
}

fn axis_values(s: &PadState) -> [(u16, i32); 8] {
    let hat = |neg: u32, pos: u32| -> i32 {
        i32::from(s.buttons & pos != 0) - i32::from(s.buttons & neg != 0)
    };
    [
        (code::ABS_X, i32::from(s.left_stick[0])),
        (code::ABS_Y, flip(s.left_stick[1])),
        (code::ABS_RX, i32::from(s.right_stick[0])),
        (code::ABS_RY, flip(s.right_stick[1])),
        (code::ABS_Z, i32::from(s.left_trigger)),
        (code::ABS_RZ, i32::from(s.right_trigger)),
        (code::ABS_HAT0X, hat(bits::LEFT, bits::RIGHT)),
        (code::ABS_HAT0Y, hat(bits::UP, bits::DOWN)),
    ]
}

/// The events that take a pad from `prev` to `next` (a fresh device is at rest: pass
/// `PadState::default()`), ending with a `SYN_REPORT`; empty when nothing changed.
pub fn transition(prev: &PadState, next: &PadState) -> Vec<EvdevEvent> {
    let mut out = Vec::new();
    for &(bit, key) in BUTTONS {
        if (prev.buttons ^ next.buttons) & bit != 0 {
            out.push(EvdevEvent {
                kind: EV_KEY,
                code: key,
                value: i32::from(next.buttons & bit != 0),
            });
        }
    }
    for ((code, old), (_, new)) in axis_values(prev).into_iter().zip(axis_values(next)) {
        if old != new {
            out.push(EvdevEvent {
                kind: EV_ABS,
                code,
                value: new,
            });
        }
    }
    if !out.is_empty() {
        out.push(EvdevEvent {
            kind: EV_SYN,
            code: SYN_REPORT,
            value: 0,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: u16, code: u16, value: i32) -> EvdevEvent {
        EvdevEvent { kind, code, value }
    }
    const SYN: EvdevEvent = EvdevEvent {
        kind: EV_SYN,
        code: SYN_REPORT,
        value: 0,
    };

    #[test]
    fn buttons_press_and_release_as_xpad_keys() {
        let rest = PadState::default();
        let pressed = PadState {
            buttons: bits::A | bits::Y | bits::LB | bits::START | bits::GUIDE | bits::PADDLE2,
            ..rest
        };
        assert_eq!(
            transition(&rest, &pressed),
            [
                ev(EV_KEY, code::BTN_A, 1),
                ev(EV_KEY, code::BTN_Y, 1),
                ev(EV_KEY, code::BTN_TL, 1),
                ev(EV_KEY, code::BTN_START, 1),
                ev(EV_KEY, code::BTN_MODE, 1),
                ev(EV_KEY, code::BTN_TRIGGER_HAPPY1 + 1, 1),
                SYN
            ]
        );
        let partly = PadState {
            buttons: bits::Y,
            ..rest
        };
        assert_eq!(
            transition(&pressed, &partly),
            [
                ev(EV_KEY, code::BTN_A, 0),
                ev(EV_KEY, code::BTN_TL, 0),
                ev(EV_KEY, code::BTN_START, 0),
                ev(EV_KEY, code::BTN_MODE, 0),
                ev(EV_KEY, code::BTN_TRIGGER_HAPPY1 + 1, 0),
                SYN
            ]
        );
        assert!(
            transition(&partly, &partly).is_empty(),
            "no change, no events"
        );
    }

    #[test]
    fn sticks_flip_y_without_overflow_and_triggers_pass_through() {
        let rest = PadState::default();
        let moved = PadState {
            left_stick: [i16::MIN, i16::MAX],
            right_stick: [1000, i16::MIN],
            left_trigger: 255,
            right_trigger: 7,
            ..rest
        };
        assert_eq!(
            transition(&rest, &moved),
            [
                ev(EV_ABS, code::ABS_X, -32768),
                // Full up on the client is full up (minimum) on evdev.
                ev(EV_ABS, code::ABS_Y, -32768),
                ev(EV_ABS, code::ABS_RX, 1000),
                ev(EV_ABS, code::ABS_RY, 32767),
                ev(EV_ABS, code::ABS_Z, 255),
                ev(EV_ABS, code::ABS_RZ, 7),
                SYN
            ]
        );
        // The rest position (0) flips to -1: it changed from the device's initial 0, so the
        // first report states it; later identical states send nothing.
        let back = transition(&moved, &rest);
        assert!(back.contains(&ev(EV_ABS, code::ABS_Y, -1)));
        assert!(back.contains(&ev(EV_ABS, code::ABS_RY, -1)));
        // Every value stays inside the declared ranges.
        for e in transition(&rest, &moved).iter().chain(&back) {
            if let Some(a) = AXES.iter().find(|a| e.kind == EV_ABS && a.code == e.code) {
                assert!((a.min..=a.max).contains(&e.value), "{e:?} outside {a:?}");
            }
        }
    }

    #[test]
    fn the_dpad_is_a_hat() {
        let rest = PadState::default();
        let up_left = PadState {
            buttons: bits::UP | bits::LEFT,
            ..rest
        };
        assert_eq!(
            transition(&rest, &up_left),
            [
                ev(EV_ABS, code::ABS_HAT0X, -1),
                ev(EV_ABS, code::ABS_HAT0Y, -1),
                SYN
            ]
        );
        let down_right = PadState {
            buttons: bits::DOWN | bits::RIGHT,
            ..rest
        };
        assert_eq!(
            transition(&up_left, &down_right),
            [
                ev(EV_ABS, code::ABS_HAT0X, 1),
                ev(EV_ABS, code::ABS_HAT0Y, 1),
                SYN
            ]
        );
        // Both directions at once cancel out.
        let both = PadState {
            buttons: bits::UP | bits::DOWN,
            ..rest
        };
        assert!(
            !transition(&rest, &both)
                .iter()
                .any(|e| e.code == code::ABS_HAT0Y)
        );
    }

    #[test]
    fn every_declared_button_and_axis_is_unique() {
        let mut keys: Vec<u16> = BUTTONS.iter().map(|b| b.1).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), BUTTONS.len());
        let mut bits_seen = 0u32;
        for (bit, _) in BUTTONS {
            assert_eq!(bits_seen & bit, 0);
            bits_seen |= bit;
        }
        assert_eq!(AXES.len(), 8);
    }

    #[test]
    fn controller_packets_map_with_their_connection() {
        let c = howl_proto::input::ControllerState {
            controller: 3,
            active_mask: 0b1001,
            buttons: 0x1001,
            left_trigger: 9,
            right_trigger: 200,
            left_stick: [-5, 6],
            right_stick: [7, -8],
        };
        let (n, connected, state) = PadState::from_controller(&c);
        assert_eq!((n, connected), (3, true));
        assert_eq!(state.buttons, 0x1001);
        assert_eq!((state.left_trigger, state.right_trigger), (9, 200));
        assert_eq!((state.left_stick, state.right_stick), ([-5, 6], [7, -8]));
        let gone = howl_proto::input::ControllerState {
            active_mask: 0b0001,
            ..c
        };
        assert!(!PadState::from_controller(&gone).1);
    }
}
