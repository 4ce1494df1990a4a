//! Input from a browser's page (sans-IO): small JSON messages on the page's data channels,
//! decoded into the same typed [`InputEvent`]s Moonlight input becomes, so the worker's one
//! injection path serves both. Hostile bytes stop here: a message that does not decode is an
//! error to count, never a panic.
//!
//! Messages from the page (`k` names the kind):
//! - `{"k":"key","code":"KeyA","down":true,"mods":3}`: a key by its layout-independent
//!   `KeyboardEvent.code`, mapped to the Windows virtual-key code Moonlight clients send;
//!   `mods` are the held modifiers (shift 1, ctrl 2, alt 4, meta 8).
//! - `{"k":"move","x":0.5,"y":0.25}`: the pointer, normalised to the picture (0..1).
//! - `{"k":"button","button":0,"down":true}`: DOM button numbers (0 left, 1 middle, 2 right,
//!   3 back, 4 forward).
//! - `{"k":"wheel","dx":0,"dy":120}`: scroll in 1/120 notch, positive = up / right.
//! - `{"k":"text","text":"é"}`: text to type as is.
//! - `{"k":"rel","dx":3,"dy":-1.5}`: relative pointer motion while the page holds pointer
//!   lock (`movementX/Y`, rounded), +x right, +y down.
//! - `{"k":"pad","i":0,"b":[1,0,...],"a":[0.5,-1,...]}`: the full state of gamepad `i`
//!   (0..16) in the Gamepad API's "standard" layout: `b` the button values (0..1; the
//!   triggers 6 and 7 analog), `a` the axes (-1..1, +y down). The first state of a pad is
//!   its arrival. `{"k":"pad","i":0,"gone":true}`: the pad was unplugged.
//! - `{"k":"clipboard","text":"..."}`: the page pasted text; the desktop's clipboard becomes
//!   it (at most [`MAX_CLIPBOARD_BYTES`]).
//!
//! To the page, on the reliable channel: `{"k":"clipboard","text":"..."}` ([`clipboard_message`])
//! when an app of the desktop copied text.

use howl_media::protocol::MAX_CLIPBOARD_BYTES;
use howl_proto::input::{
    ButtonAction, ControllerArrival, ControllerState, ControllerType, InputEvent, KeyboardEvent,
    MouseButton, MousePosition, buttons, capabilities,
};
use serde::Deserialize;

/// The reference surface pointer positions are scaled to (the worker maps it onto the
/// desktop, as it does a Moonlight client's window).
const SURFACE: u16 = 10_000;
/// Longest text message taken (characters); a page pastes more in several.
pub const MAX_TEXT_CHARS: usize = 256;
/// Gamepads a page may have at once: Moonlight's controller numbers 0..16.
pub const MAX_PADS: u8 = 16;
/// Most button or axis values in one pad state: the standard layout has 17 buttons (18 with
/// a touchpad) and 4 axes; a few more are tolerated (and ignored), not hundreds.
pub const MAX_PAD_VALUES: usize = 32;

/// Moonlight's button bit for each button of the Gamepad API's standard layout, by index
/// (0 for the analog triggers 6 and 7, which have their own fields).
const STANDARD_BUTTONS: [u32; 18] = [
    buttons::A,
    buttons::B,
    buttons::X,
    buttons::Y,
    buttons::LB,
    buttons::RB,
    0,
    0,
    buttons::BACK,
    buttons::START,
    buttons::LS_CLICK,
    buttons::RS_CLICK,
    buttons::UP,
    buttons::DOWN,
    buttons::LEFT,
    buttons::RIGHT,
    buttons::GUIDE,
    buttons::TOUCHPAD,
];

#[derive(Debug, Deserialize)]
#[serde(tag = "k", rename_all = "lowercase", deny_unknown_fields)]
enum Message {
    Key {
        code: String,
        down: bool,
        #[serde(default)]
        mods: u8,
    },
    Move {
        x: f64,
        y: f64,
    },
    Button {
        button: u8,
        down: bool,
    },
    Wheel {
        #[serde(default)]
        dx: i32,
        #[serde(default)]
        dy: i32,
    },
    Text {
        text: String,
    },
    Rel {
        dx: f64,
        dy: f64,
    },
    Pad {
        i: u32,
        #[serde(default)]
        b: Vec<f64>,
        #[serde(default)]
        a: Vec<f64>,
        #[serde(default)]
        gone: bool,
    },
    Clipboard {
        text: String,
    },
}

/// What one message from the page asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum PageMessage {
    /// Input events for the worker (none for a message that changes nothing).
    Input(Vec<InputEvent>),
    /// Pasted text: the desktop's clipboard becomes it.
    Clipboard(String),
}

/// Why a message from the page was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageInputError {
    #[error("not an input message: {0}")]
    Malformed(String),
    #[error("unknown key code {0:?}")]
    UnknownKey(String),
    #[error("unknown mouse button {0}")]
    UnknownButton(u8),
    #[error("text longer than {MAX_TEXT_CHARS} characters")]
    TextTooLong,
    #[error("gamepad {0} is not one of 0..{MAX_PADS}")]
    UnknownPad(u32),
    #[error("gamepad state with more than {MAX_PAD_VALUES} buttons or axes")]
    PadTooLarge,
    #[error("clipboard text longer than {MAX_CLIPBOARD_BYTES} bytes")]
    ClipboardTooLong,
}

/// One page's input decoder: what it says is stateless except for its gamepads, whose
/// arrival and removal Moonlight's events carry (an arrival before the first state; the
/// active-pads mask in every state).
#[derive(Debug, Default)]
pub struct PageInput {
    /// Bit n: the page announced pad n.
    pads: u16,
}

impl PageInput {
    /// Decodes one message from the page.
    pub fn decode(&mut self, data: &[u8]) -> Result<PageMessage, PageInputError> {
        let msg: Message =
            serde_json::from_slice(data).map_err(|e| PageInputError::Malformed(e.to_string()))?;
        match msg {
            Message::Clipboard { text } => {
                if text.len() > MAX_CLIPBOARD_BYTES {
                    return Err(PageInputError::ClipboardTooLong);
                }
                Ok(PageMessage::Clipboard(text))
            }
            Message::Pad { i, b, a, gone } => self.pad(i, &b, &a, gone).map(PageMessage::Input),
            other => events(other).map(PageMessage::Input),
        }
    }

    /// The pads the page announced (bit n: pad n).
    #[cfg(test)]
    pub fn pads(&self) -> u16 {
        self.pads
    }

    fn pad(
        &mut self,
        i: u32,
        b: &[f64],
        a: &[f64],
        gone: bool,
    ) -> Result<Vec<InputEvent>, PageInputError> {
        let controller = u8::try_from(i)
            .ok()
            .filter(|c| *c < MAX_PADS)
            .ok_or(PageInputError::UnknownPad(i))?;
        if b.len() > MAX_PAD_VALUES || a.len() > MAX_PAD_VALUES {
            return Err(PageInputError::PadTooLarge);
        }
        let bit = 1u16 << controller;
        let mut out = Vec::new();
        if gone {
            if self.pads & bit != 0 {
                self.pads &= !bit;
                // Moonlight says "unplugged" with a state whose mask lacks the pad's bit.
                out.push(InputEvent::Controller(ControllerState {
                    controller: u16::from(controller),
                    active_mask: self.pads,
                    buttons: 0,
                    left_trigger: 0,
                    right_trigger: 0,
                    left_stick: [0, 0],
                    right_stick: [0, 0],
                }));
            }
            return Ok(out);
        }
        if self.pads & bit == 0 {
            self.pads |= bit;
            out.push(InputEvent::ControllerArrival(ControllerArrival {
                controller,
                controller_type: ControllerType::Xbox,
                capabilities: capabilities::ANALOG_TRIGGERS,
                supported_buttons: STANDARD_BUTTONS.iter().fold(0, |m, b| m | b),
            }));
        }
        let value =
            |v: &[f64], n: usize| v.get(n).copied().filter(|x| x.is_finite()).unwrap_or(0.0);
        let pressed = STANDARD_BUTTONS
            .iter()
            .enumerate()
            .filter(|(n, _)| value(b, *n) >= 0.5)
            .fold(0, |m, (_, bit)| m | bit);
        // In range by the clamps, so the casts cannot truncate.
        let trigger = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        let stick = |v: f64| (v.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        out.push(InputEvent::Controller(ControllerState {
            controller: u16::from(controller),
            active_mask: self.pads,
            buttons: pressed,
            left_trigger: trigger(value(b, 6)),
            right_trigger: trigger(value(b, 7)),
            // The page's +y is down, Moonlight's (XInput's) up.
            left_stick: [stick(value(a, 0)), stick(-value(a, 1))],
            right_stick: [stick(value(a, 2)), stick(-value(a, 3))],
        }));
        Ok(out)
    }
}

/// The JSON message that hands the desktop's copied `text` to the page.
pub fn clipboard_message(text: &str) -> Vec<u8> {
    serde_json::json!({ "k": "clipboard", "text": text })
        .to_string()
        .into_bytes()
}

/// The input events of a stateless message (none for a wheel message with no movement).
fn events(msg: Message) -> Result<Vec<InputEvent>, PageInputError> {
    let action = |down: bool| {
        if down {
            ButtonAction::Down
        } else {
            ButtonAction::Up
        }
    };
    Ok(match msg {
        Message::Key { code, down, mods } => {
            let vk = virtual_key(&code).ok_or(PageInputError::UnknownKey(code))?;
            vec![InputEvent::Keyboard(KeyboardEvent {
                action: action(down),
                key_code: u16::from(vk),
                modifiers: mods & 0x0F,
                // A physical key's US-layout virtual key: what Moonlight clients normalise to.
                flags: 0,
            })]
        }
        Message::Move { x, y } => {
            let scale = |v: f64| {
                let v = if v.is_finite() {
                    v.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                // In 0..=SURFACE-1 by the clamp, so the cast cannot truncate.
                (v * f64::from(SURFACE - 1)).round() as i16
            };
            vec![InputEvent::MousePosition(MousePosition::new(
                scale(x),
                scale(y),
                SURFACE,
                SURFACE,
            ))]
        }
        Message::Button { button, down } => {
            let button = match button {
                0 => MouseButton::Left,
                1 => MouseButton::Middle,
                2 => MouseButton::Right,
                3 => MouseButton::X1,
                4 => MouseButton::X2,
                b => return Err(PageInputError::UnknownButton(b)),
            };
            vec![InputEvent::MouseButton {
                action: action(down),
                button,
            }]
        }
        Message::Wheel { dx, dy } => {
            let clamp = |v: i32| v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            let mut out = Vec::new();
            if dy != 0 {
                out.push(InputEvent::Scroll { amount: clamp(dy) });
            }
            if dx != 0 {
                out.push(InputEvent::HScroll { amount: clamp(dx) });
            }
            out
        }
        Message::Text { text } => {
            if text.chars().count() > MAX_TEXT_CHARS {
                return Err(PageInputError::TextTooLong);
            }
            vec![InputEvent::Text(text)]
        }
        Message::Rel { dx, dy } => {
            let clamp = |v: f64| {
                if v.is_finite() {
                    // In range by the clamp, so the cast cannot truncate.
                    v.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
                } else {
                    0
                }
            };
            let (dx, dy) = (clamp(dx), clamp(dy));
            if dx == 0 && dy == 0 {
                Vec::new()
            } else {
                vec![InputEvent::MouseMove { dx, dy }]
            }
        }
        // Stateful: decoded by `PageInput`.
        Message::Pad { .. } | Message::Clipboard { .. } => Vec::new(),
    })
}

/// The Windows virtual-key code of a `KeyboardEvent.code` (a physical key on a US layout).
pub fn virtual_key(code: &str) -> Option<u8> {
    if let Some(c) = code.strip_prefix("Key")
        && let [b] = c.as_bytes()
        && b.is_ascii_uppercase()
    {
        return Some(*b);
    }
    if let Some(c) = code.strip_prefix("Digit")
        && let [b] = c.as_bytes()
        && b.is_ascii_digit()
    {
        return Some(*b);
    }
    if let Some(n) = code
        .strip_prefix("Numpad")
        .and_then(|n| n.parse::<u8>().ok())
        && n <= 9
    {
        return Some(0x60 + n);
    }
    if let Some(n) = code.strip_prefix('F').and_then(|n| n.parse::<u8>().ok())
        && (1..=24).contains(&n)
    {
        return Some(0x6F + n);
    }
    Some(match code {
        "Backspace" => 0x08,
        "Tab" => 0x09,
        "Enter" | "NumpadEnter" => 0x0D,
        "ShiftLeft" => 0xA0,
        "ShiftRight" => 0xA1,
        "ControlLeft" => 0xA2,
        "ControlRight" => 0xA3,
        "AltLeft" => 0xA4,
        "AltRight" => 0xA5,
        "MetaLeft" | "OSLeft" => 0x5B,
        "MetaRight" | "OSRight" => 0x5C,
        "ContextMenu" => 0x5D,
        "Pause" => 0x13,
        "CapsLock" => 0x14,
        "Escape" => 0x1B,
        "Space" => 0x20,
        "PageUp" => 0x21,
        "PageDown" => 0x22,
        "End" => 0x23,
        "Home" => 0x24,
        "ArrowLeft" => 0x25,
        "ArrowUp" => 0x26,
        "ArrowRight" => 0x27,
        "ArrowDown" => 0x28,
        "PrintScreen" => 0x2C,
        "Insert" => 0x2D,
        "Delete" => 0x2E,
        "NumpadMultiply" => 0x6A,
        "NumpadAdd" => 0x6B,
        "NumpadSubtract" => 0x6D,
        "NumpadDecimal" => 0x6E,
        "NumpadDivide" => 0x6F,
        "NumLock" => 0x90,
        "ScrollLock" => 0x91,
        "Semicolon" => 0xBA,
        "Equal" => 0xBB,
        "Comma" => 0xBC,
        "Minus" => 0xBD,
        "Period" => 0xBE,
        "Slash" => 0xBF,
        "Backquote" => 0xC0,
        "BracketLeft" => 0xDB,
        "Backslash" => 0xDC,
        "BracketRight" => 0xDD,
        "Quote" => 0xDE,
        "IntlBackslash" => 0xE2,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A stateless message's events, from a fresh page.
    fn decode(data: &[u8]) -> Result<Vec<InputEvent>, PageInputError> {
        match PageInput::default().decode(data)? {
            PageMessage::Input(v) => Ok(v),
            m => panic!("{m:?}"),
        }
    }

    fn one(json: &str) -> InputEvent {
        let mut v = decode(json.as_bytes()).unwrap();
        assert_eq!(v.len(), 1, "{json}");
        v.remove(0)
    }

    #[test]
    fn keys_are_physical_codes_mapped_to_virtual_keys() {
        match one(r#"{"k":"key","code":"KeyA","down":true,"mods":3}"#) {
            InputEvent::Keyboard(k) => {
                assert_eq!(k.virtual_key(), b'A');
                assert_eq!(k.action, ButtonAction::Down);
                assert_eq!(k.modifiers, 3);
            }
            e => panic!("{e:?}"),
        }
        for (code, vk) in [
            ("Digit7", b'7'),
            ("F1", 0x70),
            ("F12", 0x7B),
            ("Numpad0", 0x60),
            ("Enter", 0x0D),
            ("ShiftLeft", 0xA0),
            ("ArrowDown", 0x28),
            ("Slash", 0xBF),
        ] {
            assert_eq!(virtual_key(code), Some(vk), "{code}");
        }
        for code in [
            "", "Key", "KeyAA", "Keya", "F0", "F25", "Numpad10", "Fn", "Digit",
        ] {
            assert_eq!(virtual_key(code), None, "{code}");
        }
        assert_eq!(
            decode(br#"{"k":"key","code":"Launch","down":true}"#),
            Err(PageInputError::UnknownKey("Launch".into()))
        );
    }

    #[test]
    fn pointer_buttons_wheel_and_text() {
        match one(r#"{"k":"move","x":0.5,"y":2}"#) {
            InputEvent::MousePosition(p) => {
                let (x, y) = p.normalized().unwrap();
                assert!((x - 0.5).abs() < 0.001 && y == 1.0, "{x} {y}");
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(
            one(r#"{"k":"button","button":2,"down":false}"#),
            InputEvent::MouseButton {
                action: ButtonAction::Up,
                button: MouseButton::Right
            }
        );
        assert_eq!(
            decode(br#"{"k":"button","button":9,"down":true}"#),
            Err(PageInputError::UnknownButton(9))
        );
        assert_eq!(
            decode(br#"{"k":"wheel","dx":-30,"dy":99999}"#).unwrap(),
            vec![
                InputEvent::Scroll { amount: i16::MAX },
                InputEvent::HScroll { amount: -30 }
            ]
        );
        assert!(decode(br#"{"k":"wheel"}"#).unwrap().is_empty());
        assert_eq!(
            one(r#"{"k":"text","text":"é"}"#),
            InputEvent::Text("é".into())
        );
        let long = format!(
            r#"{{"k":"text","text":"{}"}}"#,
            "x".repeat(MAX_TEXT_CHARS + 1)
        );
        assert_eq!(decode(long.as_bytes()), Err(PageInputError::TextTooLong));
        assert!(matches!(
            decode(br#"{"k":"key","code":"KeyA","down":true,"extra":1}"#),
            Err(PageInputError::Malformed(_))
        ));
    }

    #[test]
    fn relative_motion_under_pointer_lock() {
        assert_eq!(
            one(r#"{"k":"rel","dx":3.4,"dy":-1.6}"#),
            InputEvent::MouseMove { dx: 3, dy: -2 }
        );
        assert_eq!(
            one(r#"{"k":"rel","dx":1e9,"dy":-1e9}"#),
            InputEvent::MouseMove {
                dx: i16::MAX,
                dy: i16::MIN
            }
        );
        assert!(
            decode(br#"{"k":"rel","dx":0.2,"dy":0}"#)
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            decode(br#"{"k":"rel","dx":1}"#),
            Err(PageInputError::Malformed(_))
        ));
    }

    fn pad_state(ev: &InputEvent) -> ControllerState {
        match ev {
            InputEvent::Controller(c) => *c,
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn gamepads_arrive_change_and_leave_as_moonlight_pads() {
        let mut page = PageInput::default();
        let mut input = |json: &str| match page.decode(json.as_bytes()) {
            Ok(PageMessage::Input(v)) => v,
            r => panic!("{json}: {r:?}"),
        };
        // First state of pad 1: its arrival, then the state. A pressed, right trigger half
        // way, left stick pushed up (the page's -y) and right, d-pad left, home.
        let mut b = vec![0.0; 17];
        b[0] = 1.0;
        b[7] = 0.5;
        b[14] = 1.0;
        b[16] = 1.0;
        let json = serde_json::json!({"k": "pad", "i": 1, "b": b, "a": [1.0, -1.0, 0.0, 0.25]});
        let v = input(&json.to_string());
        assert_eq!(v.len(), 2, "{v:?}");
        match &v[0] {
            InputEvent::ControllerArrival(a) => {
                assert_eq!(a.controller, 1);
                assert_ne!(a.supported_buttons & buttons::GUIDE, 0);
            }
            e => panic!("{e:?}"),
        }
        let s = pad_state(&v[1]);
        assert_eq!(s.controller, 1);
        assert_eq!(s.active_mask, 0b10);
        assert_eq!(s.buttons, buttons::A | buttons::LEFT | buttons::GUIDE);
        assert_eq!((s.left_trigger, s.right_trigger), (0, 128));
        assert_eq!(s.left_stick, [32767, 32767]);
        assert_eq!(s.right_stick, [0, -8192]);
        // The worker reads it as a connected pad 1, as a Moonlight client's.
        let (n, connected, _) = howl_media::gamepad::PadState::from_controller(&s);
        assert_eq!((n, connected), (1, true));

        // A second pad, then a change of the first: no second arrival, both in the mask.
        assert_eq!(input(r#"{"k":"pad","i":0}"#).len(), 2);
        let v = input(r#"{"k":"pad","i":1,"b":[0,1],"a":[]}"#);
        assert_eq!(v.len(), 1);
        let s = pad_state(&v[0]);
        assert_eq!((s.buttons, s.active_mask), (buttons::B, 0b11));
        // Values beyond the range are clamped (JSON has no infinities: serde refuses 1e999).
        let v = input(r#"{"k":"pad","i":1,"a":[1e300,-1e300],"b":[0,0,0,0,0,0,-5,9]}"#);
        let s = pad_state(&v[0]);
        assert_eq!(s.left_stick, [32767, 32767]);
        assert_eq!((s.left_trigger, s.right_trigger), (0, 255));

        // Unplugged: a zero state whose mask lacks its bit; once only.
        let v = input(r#"{"k":"pad","i":1,"gone":true}"#);
        let s = pad_state(&v[0]);
        assert_eq!((s.controller, s.active_mask, s.buttons), (1, 0b01, 0));
        let (_, connected, _) = howl_media::gamepad::PadState::from_controller(&s);
        assert!(!connected);
        assert!(input(r#"{"k":"pad","i":1,"gone":true}"#).is_empty());
        assert_eq!(page.pads(), 0b01);
    }

    #[test]
    fn hostile_gamepad_and_clipboard_messages_are_refused() {
        let mut page = PageInput::default();
        assert_eq!(
            page.decode(br#"{"k":"pad","i":16}"#),
            Err(PageInputError::UnknownPad(16))
        );
        assert_eq!(
            page.decode(br#"{"k":"pad","i":4294967295}"#),
            Err(PageInputError::UnknownPad(u32::MAX))
        );
        assert!(matches!(
            page.decode(br#"{"k":"pad","i":-1}"#),
            Err(PageInputError::Malformed(_))
        ));
        let many = serde_json::json!({"k": "pad", "i": 0, "b": vec![1; MAX_PAD_VALUES + 1]});
        assert_eq!(
            page.decode(many.to_string().as_bytes()),
            Err(PageInputError::PadTooLarge)
        );
        assert!(matches!(
            page.decode(br#"{"k":"pad","i":0,"b":["x"]}"#),
            Err(PageInputError::Malformed(_))
        ));
        assert_eq!(page.pads(), 0, "a refused state announces nothing");

        assert_eq!(
            page.decode(r#"{"k":"clipboard","text":"é\n"}"#.as_bytes()),
            Ok(PageMessage::Clipboard("é\n".into()))
        );
        let exact = serde_json::json!({"k": "clipboard", "text": "x".repeat(MAX_CLIPBOARD_BYTES)});
        assert!(matches!(
            page.decode(exact.to_string().as_bytes()),
            Ok(PageMessage::Clipboard(t)) if t.len() == MAX_CLIPBOARD_BYTES
        ));
        let long =
            serde_json::json!({"k": "clipboard", "text": "é".repeat(MAX_CLIPBOARD_BYTES / 2 + 1)});
        assert_eq!(
            page.decode(long.to_string().as_bytes()),
            Err(PageInputError::ClipboardTooLong)
        );
        assert!(matches!(
            page.decode(br#"{"k":"clipboard"}"#),
            Err(PageInputError::Malformed(_))
        ));
    }

    #[test]
    fn clipboard_to_the_page_is_json_the_page_reads() {
        let m = clipboard_message("a\"b\n\u{0}é");
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(v["k"], "clipboard");
        assert_eq!(v["text"], "a\"b\n\u{0}é");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = PageInput::default().decode(&data);
        }

        #[test]
        fn random_messages_never_panic(
            msgs in proptest::collection::vec((
                "(key|move|button|wheel|text|rel|pad|clipboard|nope)",
                "\\PC{0,12}",
                any::<f64>(),
                any::<i64>(),
                proptest::collection::vec(any::<f64>(), 0..40),
            ), 1..8),
        ) {
            // One page for the whole sequence: pad arrivals and removals in any order.
            let mut page = PageInput::default();
            for (kind, code, x, n, values) in msgs {
                // Each kind with its own fields (unknown ones are refused), values random.
                let json = match kind.as_str() {
                    "key" => serde_json::json!({"k": kind, "code": code, "down": n % 2 == 0, "mods": n}),
                    "move" => serde_json::json!({"k": kind, "x": x, "y": -x}),
                    "button" => serde_json::json!({"k": kind, "button": n, "down": true}),
                    "wheel" => serde_json::json!({"k": kind, "dx": n, "dy": n}),
                    "text" | "clipboard" => serde_json::json!({"k": kind, "text": code}),
                    "rel" => serde_json::json!({"k": kind, "dx": x, "dy": n}),
                    "pad" => serde_json::json!({
                        "k": kind, "i": n.rem_euclid(20), "b": values, "a": values,
                        "gone": n % 3 == 0,
                    }),
                    _ => serde_json::json!({"k": kind, "code": code, "x": x}),
                };
                let _ = page.decode(json.to_string().as_bytes());
                // Pads only ever within the mask's 16 bits, and gone ones gone.
                prop_assert!(page.pads().count_ones() <= u32::from(MAX_PADS));
            }
        }
    }
}
