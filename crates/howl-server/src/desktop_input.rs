//! Decoded Moonlight input (howl-proto) in the terms the worker's XTest injection understands
//! (howl-media `xinput`), and gamepad states for its uinput pads (howl-media `gamepad`).
//! Touch, pen and controller motion/touchpad are not forwarded.

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
        InputEvent::Controller(c) => ClientInput::Gamepad {
            // howl-proto checked the number (0..16), so it fits a byte.
            controller: u8::try_from(c.controller).ok()?,
            // A pad that is gone is a state whose active mask lacks its own bit.
            connected: c
                .active_mask
                .checked_shr(u32::from(c.controller))
                .unwrap_or(0)
                & 1
                != 0,
            state: howl_media::gamepad::PadState {
                buttons: c.buttons,
                left_trigger: c.left_trigger,
                right_trigger: c.right_trigger,
                left_stick: c.left_stick,
                right_stick: c.right_stick,
            },
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use howl_proto::input::{KeyboardEvent, MouseButton, MousePosition};

    #[test]
    fn controller_states_map_with_their_connection() {
        let c = howl_proto::input::ControllerState {
            controller: 3,
            active_mask: 0b1001,
            buttons: 0x1001,
            left_trigger: 9,
            right_trigger: 200,
            left_stick: [-5, 6],
            right_stick: [7, -8],
        };
        let Some(ClientInput::Gamepad {
            controller,
            connected,
            state,
        }) = to_desktop(&InputEvent::Controller(c))
        else {
            panic!("a controller state is a gamepad input");
        };
        assert_eq!((controller, connected), (3, true));
        assert_eq!(state.buttons, 0x1001);
        assert_eq!((state.left_trigger, state.right_trigger), (9, 200));
        assert_eq!((state.left_stick, state.right_stick), ([-5, 6], [7, -8]));
        let gone = howl_proto::input::ControllerState {
            active_mask: 0b0001,
            ..c
        };
        assert!(matches!(
            to_desktop(&InputEvent::Controller(gone)),
            Some(ClientInput::Gamepad {
                connected: false,
                ..
            })
        ));
    }

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
