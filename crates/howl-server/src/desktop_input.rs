//! Decoded Moonlight input (howl-proto) in the terms the worker's XTest injection understands
//! (howl-media `xinput`). Gamepads, touch and pen have no X11 device and are not forwarded.

use howl_media::xinput::{ClientInput, Press};
use howl_proto::input::{ButtonAction, InputEvent};

fn press(a: ButtonAction) -> Press {
    match a {
        ButtonAction::Down => Press::Down,
        ButtonAction::Up => Press::Up,
    }
}

/// The desktop input for `ev`, `None` for events a desktop has no use for.
pub fn to_desktop(ev: &InputEvent) -> Option<ClientInput> {
    Some(match ev {
        InputEvent::Keyboard(k) => ClientInput::Key {
            press: press(k.action),
            key_code: k.key_code,
            modifiers: k.modifiers,
        },
        InputEvent::Text(t) => ClientInput::Text(t.clone()),
        InputEvent::MouseMove { dx, dy } => ClientInput::MouseMove { dx: *dx, dy: *dy },
        InputEvent::MousePosition(p) => ClientInput::MousePosition {
            x: p.x,
            y: p.y,
            // The wire carries width − 1; xinput wants the surface size.
            reference_width: p.width_minus_one.saturating_add(1),
            reference_height: p.height_minus_one.saturating_add(1),
        },
        InputEvent::MouseButton { action, button } => ClientInput::MouseButton {
            press: press(*action),
            button: button.to_u8(),
        },
        InputEvent::Scroll { amount } => ClientInput::Scroll { amount: *amount },
        InputEvent::HScroll { amount } => ClientInput::HScroll { amount: *amount },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use howl_proto::input::{KeyboardEvent, MouseButton, MousePosition};

    #[test]
    fn keyboard_mouse_and_scroll_map_field_for_field() {
        let k = InputEvent::Keyboard(KeyboardEvent {
            action: ButtonAction::Down,
            key_code: 0x8041,
            modifiers: 1,
            flags: 0,
        });
        assert_eq!(
            to_desktop(&k),
            Some(ClientInput::Key {
                press: Press::Down,
                key_code: 0x8041,
                modifiers: 1
            })
        );
        let p = InputEvent::MousePosition(MousePosition::new(5, 6, 1920, 1080));
        assert_eq!(
            to_desktop(&p),
            Some(ClientInput::MousePosition {
                x: 5,
                y: 6,
                reference_width: 1920,
                reference_height: 1080
            })
        );
        let b = InputEvent::MouseButton {
            action: ButtonAction::Up,
            button: MouseButton::Right,
        };
        assert_eq!(
            to_desktop(&b),
            Some(ClientInput::MouseButton {
                press: Press::Up,
                button: 3
            })
        );
        assert_eq!(
            to_desktop(&InputEvent::HScroll { amount: -30 }),
            Some(ClientInput::HScroll { amount: -30 })
        );
        assert_eq!(to_desktop(&InputEvent::EnableHaptics), None);
    }
}
