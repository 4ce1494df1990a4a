//! Input from a browser's page (sans-IO): small JSON messages on the page's data channels,
//! decoded into the same typed [`InputEvent`]s Moonlight input becomes, so the worker's one
//! injection path serves both. Hostile bytes stop here: a message that does not decode is an
//! error to count, never a panic.
//!
//! Messages (`k` names the kind):
//! - `{"k":"key","code":"KeyA","down":true,"mods":3}`: a key by its layout-independent
//!   `KeyboardEvent.code`, mapped to the Windows virtual-key code Moonlight clients send;
//!   `mods` are the held modifiers (shift 1, ctrl 2, alt 4, meta 8).
//! - `{"k":"move","x":0.5,"y":0.25}`: the pointer, normalised to the picture (0..1).
//! - `{"k":"button","button":0,"down":true}`: DOM button numbers (0 left, 1 middle, 2 right,
//!   3 back, 4 forward).
//! - `{"k":"wheel","dx":0,"dy":120}`: scroll in 1/120 notch, positive = up / right.
//! - `{"k":"text","text":"é"}`: text to type as is.

use howl_proto::input::{ButtonAction, InputEvent, KeyboardEvent, MouseButton, MousePosition};
use serde::Deserialize;

/// The reference surface pointer positions are scaled to (the worker maps it onto the
/// desktop, as it does a Moonlight client's window).
const SURFACE: u16 = 10_000;
/// Longest text message taken (characters); a page pastes more in several.
pub const MAX_TEXT_CHARS: usize = 256;

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
}

/// Decodes one message from the page into the input events it stands for (none for a
/// wheel message with no movement).
pub fn decode(data: &[u8]) -> Result<Vec<InputEvent>, PageInputError> {
    let msg: Message =
        serde_json::from_slice(data).map_err(|e| PageInputError::Malformed(e.to_string()))?;
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&data);
        }

        #[test]
        fn random_messages_never_panic(
            kind in "(key|move|button|wheel|text|nope)",
            code in "\\PC{0,12}",
            x in any::<f64>(),
            n in any::<i64>(),
        ) {
            let json = serde_json::json!({
                "k": kind, "code": code, "down": n % 2 == 0, "mods": n, "x": x, "y": -x,
                "button": n, "dx": n, "dy": n, "text": code,
            });
            let _ = decode(json.to_string().as_bytes());
        }
    }
}
