//! Moonlight input in X11 terms: the pure half of injecting a client's keyboard and mouse into
//! a real X11 desktop through XTest.
//!
//! The worker that owns the X connection decodes nothing and decides nothing: it feeds each
//! decoded client input to a [`Translator`] and executes the [`XAction`]s that come back
//! (keysym → keycode lookup, `XTestFakeKeyEvent`, `XTestFakeButtonEvent`, motion). Everything
//! that can be got wrong without an X server — the virtual-key table, which keys a client holds,
//! scroll accumulation, absolute-position scaling — lives here, where it is unit-tested and
//! fuzzed.
//!
//! The input is howl-proto's [`InputEvent`], the one decoded form of a client's input packet
//! from the control stream to here (the worker protocol carries the packet itself).
//! Gamepads, touch and pen are not here: XTest has no device for them ([`for_desktop`] says
//! which events a desktop uses at all, so the server forwards only those).
//!
//! # Bounded and leak-free
//!
//! A client is hostile until proven otherwise. The held-key set never exceeds
//! [`MAX_HELD_KEYS`] (a press beyond it is dropped, with no `KeyDown` emitted, so X never holds a
//! key this state does not know about), a text event yields at most [`MAX_TEXT_CHARS`] actions,
//! and [`Translator::release_all`] returns every key and button still down so that a client
//! leaving never leaves a stuck key on a shared desktop.

/// X11 keysym values used by the tables below (from `X11/keysymdef.h` and `X11/XF86keysym.h`).
pub mod keysym {
    /// `XK_BackSpace`.
    pub const BACKSPACE: u32 = 0xff08;
    /// `XK_Tab`.
    pub const TAB: u32 = 0xff09;
    /// `XK_Clear`.
    pub const CLEAR: u32 = 0xff0b;
    /// `XK_Return`.
    pub const RETURN: u32 = 0xff0d;
    /// `XK_Pause`.
    pub const PAUSE: u32 = 0xff13;
    /// `XK_Scroll_Lock`.
    pub const SCROLL_LOCK: u32 = 0xff14;
    /// `XK_Escape`.
    pub const ESCAPE: u32 = 0xff1b;
    /// `XK_Muhenkan` (Japanese "no conversion").
    pub const MUHENKAN: u32 = 0xff22;
    /// `XK_Henkan` (Japanese "conversion").
    pub const HENKAN: u32 = 0xff23;
    /// `XK_Home`.
    pub const HOME: u32 = 0xff50;
    /// `XK_Left`.
    pub const LEFT: u32 = 0xff51;
    /// `XK_Up`.
    pub const UP: u32 = 0xff52;
    /// `XK_Right`.
    pub const RIGHT: u32 = 0xff53;
    /// `XK_Down`.
    pub const DOWN: u32 = 0xff54;
    /// `XK_Prior` (Page Up).
    pub const PAGE_UP: u32 = 0xff55;
    /// `XK_Next` (Page Down).
    pub const PAGE_DOWN: u32 = 0xff56;
    /// `XK_End`.
    pub const END: u32 = 0xff57;
    /// `XK_Select`.
    pub const SELECT: u32 = 0xff60;
    /// `XK_Print`.
    pub const PRINT: u32 = 0xff61;
    /// `XK_Execute`.
    pub const EXECUTE: u32 = 0xff62;
    /// `XK_Insert`.
    pub const INSERT: u32 = 0xff63;
    /// `XK_Menu`.
    pub const MENU: u32 = 0xff67;
    /// `XK_Help`.
    pub const HELP: u32 = 0xff6a;
    /// `XK_Break`.
    pub const BREAK: u32 = 0xff6b;
    /// `XK_Num_Lock`.
    pub const NUM_LOCK: u32 = 0xff7f;
    /// `XK_KP_Multiply`.
    pub const KP_MULTIPLY: u32 = 0xffaa;
    /// `XK_KP_Add`.
    pub const KP_ADD: u32 = 0xffab;
    /// `XK_KP_Separator`.
    pub const KP_SEPARATOR: u32 = 0xffac;
    /// `XK_KP_Subtract`.
    pub const KP_SUBTRACT: u32 = 0xffad;
    /// `XK_KP_Decimal`.
    pub const KP_DECIMAL: u32 = 0xffae;
    /// `XK_KP_Divide`.
    pub const KP_DIVIDE: u32 = 0xffaf;
    /// `XK_KP_0`; `XK_KP_1`..`XK_KP_9` follow contiguously.
    pub const KP_0: u32 = 0xffb0;
    /// `XK_F1`; `XK_F2`..`XK_F35` follow contiguously.
    pub const F1: u32 = 0xffbe;
    /// `XK_Shift_L`.
    pub const SHIFT_L: u32 = 0xffe1;
    /// `XK_Shift_R`.
    pub const SHIFT_R: u32 = 0xffe2;
    /// `XK_Control_L`.
    pub const CONTROL_L: u32 = 0xffe3;
    /// `XK_Control_R`.
    pub const CONTROL_R: u32 = 0xffe4;
    /// `XK_Caps_Lock`.
    pub const CAPS_LOCK: u32 = 0xffe5;
    /// `XK_Alt_L`.
    pub const ALT_L: u32 = 0xffe9;
    /// `XK_Alt_R`.
    pub const ALT_R: u32 = 0xffea;
    /// `XK_Super_L`.
    pub const SUPER_L: u32 = 0xffeb;
    /// `XK_Super_R`.
    pub const SUPER_R: u32 = 0xffec;
    /// `XK_Delete`.
    pub const DELETE: u32 = 0xffff;
    /// `XK_space`.
    pub const SPACE: u32 = 0x0020;
    /// `XK_apostrophe`.
    pub const APOSTROPHE: u32 = 0x0027;
    /// `XK_comma`.
    pub const COMMA: u32 = 0x002c;
    /// `XK_minus`.
    pub const MINUS: u32 = 0x002d;
    /// `XK_period`.
    pub const PERIOD: u32 = 0x002e;
    /// `XK_slash`.
    pub const SLASH: u32 = 0x002f;
    /// `XK_0`; `XK_1`..`XK_9` follow contiguously.
    pub const DIGIT_0: u32 = 0x0030;
    /// `XK_semicolon`.
    pub const SEMICOLON: u32 = 0x003b;
    /// `XK_less`.
    pub const LESS: u32 = 0x003c;
    /// `XK_equal`.
    pub const EQUAL: u32 = 0x003d;
    /// `XK_bracketleft`.
    pub const BRACKET_LEFT: u32 = 0x005b;
    /// `XK_backslash`.
    pub const BACKSLASH: u32 = 0x005c;
    /// `XK_bracketright`.
    pub const BRACKET_RIGHT: u32 = 0x005d;
    /// `XK_grave`.
    pub const GRAVE: u32 = 0x0060;
    /// `XK_a`; `XK_b`..`XK_z` follow contiguously.
    pub const LOWER_A: u32 = 0x0061;
    /// `XF86XK_AudioLowerVolume`.
    pub const XF86_AUDIO_LOWER_VOLUME: u32 = 0x1008_ff11;
    /// `XF86XK_AudioMute`.
    pub const XF86_AUDIO_MUTE: u32 = 0x1008_ff12;
    /// `XF86XK_AudioRaiseVolume`.
    pub const XF86_AUDIO_RAISE_VOLUME: u32 = 0x1008_ff13;
    /// `XF86XK_AudioPlay` (desktops treat it as play/pause).
    pub const XF86_AUDIO_PLAY: u32 = 0x1008_ff14;
    /// `XF86XK_AudioStop`.
    pub const XF86_AUDIO_STOP: u32 = 0x1008_ff15;
    /// `XF86XK_AudioPrev`.
    pub const XF86_AUDIO_PREV: u32 = 0x1008_ff16;
    /// `XF86XK_AudioNext`.
    pub const XF86_AUDIO_NEXT: u32 = 0x1008_ff17;
    /// `XF86XK_HomePage`.
    pub const XF86_HOME_PAGE: u32 = 0x1008_ff18;
    /// `XF86XK_Mail`.
    pub const XF86_MAIL: u32 = 0x1008_ff19;
    /// `XF86XK_Search`.
    pub const XF86_SEARCH: u32 = 0x1008_ff1b;
    /// `XF86XK_Calculator`.
    pub const XF86_CALCULATOR: u32 = 0x1008_ff1d;
    /// `XF86XK_Back`.
    pub const XF86_BACK: u32 = 0x1008_ff26;
    /// `XF86XK_Forward`.
    pub const XF86_FORWARD: u32 = 0x1008_ff27;
    /// `XF86XK_Stop`.
    pub const XF86_STOP: u32 = 0x1008_ff28;
    /// `XF86XK_Refresh`.
    pub const XF86_REFRESH: u32 = 0x1008_ff29;
    /// `XF86XK_Sleep`.
    pub const XF86_SLEEP: u32 = 0x1008_ff2f;
    /// `XF86XK_Favorites`.
    pub const XF86_FAVORITES: u32 = 0x1008_ff30;
    /// `XF86XK_AudioMedia`.
    pub const XF86_AUDIO_MEDIA: u32 = 0x1008_ff32;
    /// `XF86XK_MyComputer`.
    pub const XF86_MY_COMPUTER: u32 = 0x1008_ff33;
    /// Offset of the Unicode keysym range: code point `U+XXXX` is keysym `0x0100XXXX`.
    pub const UNICODE_OFFSET: u32 = 0x0100_0000;
}

/// Moonlight's keyboard modifier bits (the `modifiers` byte of a key packet).
pub mod modifiers {
    /// Shift.
    pub const SHIFT: u8 = 0x01;
    /// Control.
    pub const CTRL: u8 = 0x02;
    /// Alt.
    pub const ALT: u8 = 0x04;
    /// Meta / Windows key.
    pub const META: u8 = 0x08;
}

/// Most keys one client may hold at once. Far above any real keyboard's rollover; it exists so
/// that no sequence of packets makes the state grow.
pub const MAX_HELD_KEYS: usize = 256;

/// Most characters of one text event that are typed. The client sends one code point per
/// packet (howl-proto accepts at most 32 bytes); the cap keeps one event's output bounded.
pub const MAX_TEXT_CHARS: usize = 32;

/// Moonlight's scroll unit: one wheel notch is 120 (`WHEEL_DELTA`); high-resolution wheels send
/// fractions of it.
pub const WHEEL_DELTA: i32 = 120;

/// X button for one notch up (away from the user).
pub const BUTTON_SCROLL_UP: u8 = 4;
/// X button for one notch down.
pub const BUTTON_SCROLL_DOWN: u8 = 5;
/// X button for one notch left.
pub const BUTTON_SCROLL_LEFT: u8 = 6;
/// X button for one notch right.
pub const BUTTON_SCROLL_RIGHT: u8 = 7;

/// Windows virtual-key code (what Moonlight sends) to X11 keysym, for a US layout.
///
/// Letters give the lowercase keysym: X picks the shifted level itself from the held Shift, as
/// it does for a physical keyboard. Codes above `0xFF` and codes with no sensible X equivalent
/// give `None`.
pub fn vk_to_keysym(vk: u16) -> Option<u32> {
    use keysym as k;
    let vk = u8::try_from(vk).ok()?;
    let sym = match vk {
        0x03 => k::BREAK, // VK_CANCEL is Ctrl+Break
        0x08 => k::BACKSPACE,
        0x09 => k::TAB,
        0x0C => k::CLEAR,
        0x0D => k::RETURN, // also keypad Enter: the VK code does not distinguish them
        0x10 | 0xA0 => k::SHIFT_L, // VK_SHIFT (side unknown) / VK_LSHIFT
        0xA1 => k::SHIFT_R,
        0x11 | 0xA2 => k::CONTROL_L, // VK_CONTROL / VK_LCONTROL
        0xA3 => k::CONTROL_R,
        0x12 | 0xA4 => k::ALT_L, // VK_MENU / VK_LMENU
        0xA5 => k::ALT_R,
        0x5B => k::SUPER_L, // VK_LWIN
        0x5C => k::SUPER_R, // VK_RWIN
        0x13 => k::PAUSE,
        0x14 => k::CAPS_LOCK,
        0x1B => k::ESCAPE,
        0x1C => k::HENKAN,   // VK_CONVERT
        0x1D => k::MUHENKAN, // VK_NONCONVERT
        0x20 => k::SPACE,
        0x21 => k::PAGE_UP,
        0x22 => k::PAGE_DOWN,
        0x23 => k::END,
        0x24 => k::HOME,
        0x25 => k::LEFT,
        0x26 => k::UP,
        0x27 => k::RIGHT,
        0x28 => k::DOWN,
        0x29 => k::SELECT,
        0x2A | 0x2C => k::PRINT, // VK_PRINT / VK_SNAPSHOT (Print Screen)
        0x2B => k::EXECUTE,
        0x2D => k::INSERT,
        0x2E => k::DELETE,
        0x2F => k::HELP,
        0x30..=0x39 => k::DIGIT_0 + u32::from(vk - 0x30),
        0x41..=0x5A => k::LOWER_A + u32::from(vk - 0x41),
        0x5D => k::MENU, // VK_APPS, the context-menu key
        0x5F => k::XF86_SLEEP,
        0x60..=0x69 => k::KP_0 + u32::from(vk - 0x60),
        0x6A => k::KP_MULTIPLY,
        0x6B => k::KP_ADD,
        0x6C => k::KP_SEPARATOR,
        0x6D => k::KP_SUBTRACT,
        0x6E => k::KP_DECIMAL,
        0x6F => k::KP_DIVIDE,
        0x70..=0x87 => k::F1 + u32::from(vk - 0x70), // F1..F24
        0x90 => k::NUM_LOCK,
        0x91 => k::SCROLL_LOCK,
        0xA6 => k::XF86_BACK,
        0xA7 => k::XF86_FORWARD,
        0xA8 => k::XF86_REFRESH,
        0xA9 => k::XF86_STOP,
        0xAA => k::XF86_SEARCH,
        0xAB => k::XF86_FAVORITES,
        0xAC => k::XF86_HOME_PAGE,
        0xAD => k::XF86_AUDIO_MUTE,
        0xAE => k::XF86_AUDIO_LOWER_VOLUME,
        0xAF => k::XF86_AUDIO_RAISE_VOLUME,
        0xB0 => k::XF86_AUDIO_NEXT,
        0xB1 => k::XF86_AUDIO_PREV,
        0xB2 => k::XF86_AUDIO_STOP,
        0xB3 => k::XF86_AUDIO_PLAY,
        0xB4 => k::XF86_MAIL,
        0xB5 => k::XF86_AUDIO_MEDIA,
        0xB6 => k::XF86_MY_COMPUTER, // VK_LAUNCH_APP1 is "This PC" on Windows
        0xB7 => k::XF86_CALCULATOR,  // VK_LAUNCH_APP2
        // OEM punctuation, as on a US keyboard (the unshifted symbol).
        0xBA => k::SEMICOLON,     // VK_OEM_1
        0xBB => k::EQUAL,         // VK_OEM_PLUS
        0xBC => k::COMMA,         // VK_OEM_COMMA
        0xBD => k::MINUS,         // VK_OEM_MINUS
        0xBE => k::PERIOD,        // VK_OEM_PERIOD
        0xBF => k::SLASH,         // VK_OEM_2
        0xC0 => k::GRAVE,         // VK_OEM_3
        0xDB => k::BRACKET_LEFT,  // VK_OEM_4
        0xDC => k::BACKSLASH,     // VK_OEM_5
        0xDD => k::BRACKET_RIGHT, // VK_OEM_6
        0xDE => k::APOSTROPHE,    // VK_OEM_7
        0xE2 => k::LESS,          // VK_OEM_102, the extra key beside left Shift (xkb <LSGT>)
        _ => return None,
    };
    Some(sym)
}

/// The keysym that types `c`, by the X convention: Latin-1 printable characters are their own
/// keysym, everything else is `0x01000000 + code point`. The control characters a text field
/// understands map to their function keys (newline → Return, tab → Tab, backspace, escape,
/// delete).
pub fn char_to_keysym(c: char) -> u32 {
    let cp = u32::from(c);
    match c {
        '\n' | '\r' => keysym::RETURN,
        '\t' => keysym::TAB,
        '\u{8}' => keysym::BACKSPACE,
        '\u{1b}' => keysym::ESCAPE,
        '\u{7f}' => keysym::DELETE,
        // Keysyms 0x20..=0x7E and 0xA0..=0xFF are the Latin-1 characters themselves.
        '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{ff}' => cp,
        _ => keysym::UNICODE_OFFSET + cp,
    }
}

/// Whether a text character is worth typing: printable, or a control with a function key.
fn typeable(c: char) -> bool {
    !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\u{8}' | '\u{1b}' | '\u{7f}')
}

use howl_proto::input::{ButtonAction as Press, InputEvent};

/// Whether a desktop has any use for `ev`: keyboard, text, pointer, wheel (XTest) and gamepad
/// state (the worker's uinput pads). Touch, pen, controller motion and the rest are not
/// forwarded to the worker at all.
#[must_use]
pub fn for_desktop(ev: &InputEvent) -> bool {
    matches!(
        ev,
        InputEvent::Keyboard(_)
            | InputEvent::Text(_)
            | InputEvent::MouseMove { .. }
            | InputEvent::MousePosition(_)
            | InputEvent::MouseButton { .. }
            | InputEvent::Scroll { .. }
            | InputEvent::HScroll { .. }
            | InputEvent::Controller(_)
    )
}

/// One thing for the worker's XTest code to do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XAction {
    /// Press the key that produces `keysym`.
    KeyDown {
        /// X11 keysym.
        keysym: u32,
    },
    /// Release the key that produces `keysym`.
    KeyUp {
        /// X11 keysym.
        keysym: u32,
    },
    /// Press a pointer button (X numbering).
    ButtonDown {
        /// X button, 1..=9.
        button: u8,
    },
    /// Release a pointer button.
    ButtonUp {
        /// X button.
        button: u8,
    },
    /// Move the pointer to a display position (already scaled and clamped).
    MotionAbs {
        /// X in display pixels.
        x: i32,
        /// Y in display pixels.
        y: i32,
    },
    /// Move the pointer by a delta.
    MotionRel {
        /// Horizontal delta.
        dx: i32,
        /// Vertical delta.
        dy: i32,
    },
    /// Type one character: press and release the key for `keysym` (the worker may have to bind
    /// a spare keycode to it first, since text keysyms are usually not on the keymap).
    Type {
        /// X11 keysym, from [`char_to_keysym`].
        keysym: u32,
    },
}

/// One modifier class of Moonlight's mask, with the keys that satisfy it.
struct ModifierClass {
    bit: u8,
    keys: [u32; 2],
    /// What to press when the client says the modifier is held but no key of it is.
    synthetic: u32,
}

const MODIFIER_CLASSES: [ModifierClass; 4] = [
    ModifierClass {
        bit: modifiers::SHIFT,
        keys: [keysym::SHIFT_L, keysym::SHIFT_R],
        synthetic: keysym::SHIFT_L,
    },
    ModifierClass {
        bit: modifiers::CTRL,
        keys: [keysym::CONTROL_L, keysym::CONTROL_R],
        synthetic: keysym::CONTROL_L,
    },
    ModifierClass {
        bit: modifiers::ALT,
        keys: [keysym::ALT_L, keysym::ALT_R],
        synthetic: keysym::ALT_L,
    },
    ModifierClass {
        bit: modifiers::META,
        keys: [keysym::SUPER_L, keysym::SUPER_R],
        synthetic: keysym::SUPER_L,
    },
];

fn is_modifier_keysym(sym: u32) -> bool {
    MODIFIER_CLASSES.iter().any(|c| c.keys.contains(&sym))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeldKey {
    keysym: u32,
    /// Pressed by the translator because the modifier mask said so, not by the client's own key
    /// event; released again when the mask stops saying so.
    synthetic: bool,
}

/// The keys one client holds, in press order.
///
/// # Modifier mask
///
/// Every Moonlight key packet carries the modifiers the client holds. A client can send a key
/// with a modifier whose own press the host never saw (the modifier went down while the stream
/// window lacked focus, or the client only reports modifiers in the mask). Before a non-modifier
/// key press, a modifier that the mask says is held but no key of which is held is pressed
/// (`Shift_L`, `Control_L`, `Alt_L`, `Super_L`) and remembered as synthetic. A synthetic
/// modifier is released when a later non-modifier key event's mask lacks it. Modifiers the
/// client pressed itself are never released because of the mask: some clients always send a
/// zero mask, and releasing on it would break Shift+letter for them.
#[derive(Debug, Clone, Default)]
pub struct KeyboardState {
    held: Vec<HeldKey>,
}

impl KeyboardState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a press; `true` if the key was not held (the caller should emit `KeyDown`).
    /// Pressing a held key again is a no-op returning `false` (the X server autorepeats held
    /// keys itself), and so is a press beyond [`MAX_HELD_KEYS`].
    pub fn press(&mut self, keysym: u32) -> bool {
        self.press_inner(keysym, false)
    }

    fn press_inner(&mut self, keysym: u32, synthetic: bool) -> bool {
        if let Some(held) = self.held.iter_mut().find(|h| h.keysym == keysym) {
            // The client's own press of a key we synthesised makes it the client's.
            held.synthetic &= synthetic;
            return false;
        }
        if self.held.len() >= MAX_HELD_KEYS {
            return false;
        }
        self.held.push(HeldKey { keysym, synthetic });
        true
    }

    /// Records a release; `true` if the key was held (the caller should emit `KeyUp`). A
    /// release of a key not held is dropped, so X never sees an unmatched release.
    pub fn release(&mut self, keysym: u32) -> bool {
        match self.held.iter().position(|h| h.keysym == keysym) {
            Some(at) => {
                self.held.remove(at);
                true
            }
            None => false,
        }
    }

    /// Whether `keysym` is held.
    pub fn is_held(&self, keysym: u32) -> bool {
        self.held.iter().any(|h| h.keysym == keysym)
    }

    /// The held keysyms, in press order.
    pub fn held(&self) -> impl Iterator<Item = u32> + '_ {
        self.held.iter().map(|h| h.keysym)
    }

    /// How many keys are held (at most [`MAX_HELD_KEYS`]).
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Forgets every held key and returns them for release, most recent first (so modifiers,
    /// usually pressed first, go up last, as a person's fingers would).
    pub fn release_all(&mut self) -> Vec<u32> {
        self.held.drain(..).rev().map(|h| h.keysym).collect()
    }

    /// One client key event, appending what X must do to `out`. Unknown key codes do nothing.
    pub fn key_event(&mut self, press: Press, key_code: u16, mask: u8, out: &mut Vec<XAction>) {
        let Some(sym) = vk_to_keysym(key_code & 0x00FF) else {
            return;
        };
        let modifier_key = is_modifier_keysym(sym);
        match press {
            Press::Down => {
                if !modifier_key {
                    self.sync_modifiers(mask, out);
                }
                if self.press(sym) {
                    out.push(XAction::KeyDown { keysym: sym });
                }
            }
            Press::Up => {
                if self.release(sym) {
                    out.push(XAction::KeyUp { keysym: sym });
                }
                if !modifier_key {
                    self.drop_stale_synthetic(mask, out);
                }
            }
        }
    }

    /// Brings the modifiers in line with the client's mask before a key press.
    fn sync_modifiers(&mut self, mask: u8, out: &mut Vec<XAction>) {
        self.drop_stale_synthetic(mask, out);
        for class in &MODIFIER_CLASSES {
            if mask & class.bit == 0 || class.keys.iter().any(|&k| self.is_held(k)) {
                continue;
            }
            if self.press_inner(class.synthetic, true) {
                out.push(XAction::KeyDown {
                    keysym: class.synthetic,
                });
            }
        }
    }

    /// Releases synthetic modifiers whose bit the mask no longer has.
    fn drop_stale_synthetic(&mut self, mask: u8, out: &mut Vec<XAction>) {
        for class in &MODIFIER_CLASSES {
            if mask & class.bit != 0 {
                continue;
            }
            let stale = self
                .held
                .iter()
                .any(|h| h.synthetic && h.keysym == class.synthetic);
            if stale && self.release(class.synthetic) {
                out.push(XAction::KeyUp {
                    keysym: class.synthetic,
                });
            }
        }
    }
}

/// Moonlight button number (1..=5) to X button (1, 2, 3, 8, 9); `None` for anything else.
pub fn moonlight_button_to_x(button: u8) -> Option<u8> {
    match button {
        1 => Some(1), // left
        2 => Some(2), // middle
        3 => Some(3), // right
        4 => Some(8), // X1 (back)
        5 => Some(9), // X2 (forward)
        _ => None,
    }
}

/// The X buttons a client can hold, in the bit order of [`MouseState`]'s held mask.
const HOLDABLE_BUTTONS: [u8; 5] = [1, 2, 3, 8, 9];

/// Pointer state of one client: held buttons, scroll remainders and the display size that
/// absolute positions are scaled to.
#[derive(Debug, Clone, Default)]
pub struct MouseState {
    /// Bit i set: `HOLDABLE_BUTTONS[i]` is held.
    held: u8,
    /// Vertical scroll not yet worth a whole notch, in 1/120 notch; always within ±119.
    scroll_remainder: i32,
    /// Horizontal scroll remainder, same bounds.
    hscroll_remainder: i32,
    display_width: u32,
    display_height: u32,
}

impl MouseState {
    /// A state for a `width × height` display.
    pub fn new(display_width: u32, display_height: u32) -> Self {
        Self {
            display_width,
            display_height,
            ..Self::default()
        }
    }

    /// Changes the display size absolute positions are scaled to (e.g. after a mode change).
    pub fn set_display_size(&mut self, width: u32, height: u32) {
        self.display_width = width;
        self.display_height = height;
    }

    /// The display size.
    pub fn display_size(&self) -> (u32, u32) {
        (self.display_width, self.display_height)
    }

    fn bit(button: u8) -> Option<u8> {
        let index = HOLDABLE_BUTTONS.iter().position(|&b| b == button)?;
        Some(1 << index)
    }

    /// Records a press of X button `button`; `true` if it was up (emit `ButtonDown`). Repeats and
    /// buttons outside 1, 2, 3, 8, 9 give `false`.
    pub fn press(&mut self, button: u8) -> bool {
        match Self::bit(button) {
            Some(bit) if self.held & bit == 0 => {
                self.held |= bit;
                true
            }
            _ => false,
        }
    }

    /// Records a release; `true` if the button was held (emit `ButtonUp`).
    pub fn release(&mut self, button: u8) -> bool {
        match Self::bit(button) {
            Some(bit) if self.held & bit != 0 => {
                self.held &= !bit;
                true
            }
            _ => false,
        }
    }

    /// Whether X button `button` is held.
    pub fn is_held(&self, button: u8) -> bool {
        Self::bit(button).is_some_and(|bit| self.held & bit != 0)
    }

    /// The held X buttons, ascending.
    pub fn held(&self) -> Vec<u8> {
        HOLDABLE_BUTTONS
            .iter()
            .copied()
            .filter(|&b| self.is_held(b))
            .collect()
    }

    /// Forgets held buttons and scroll remainders; returns the buttons to release.
    pub fn release_all(&mut self) -> Vec<u8> {
        let held = self.held();
        self.held = 0;
        self.scroll_remainder = 0;
        self.hscroll_remainder = 0;
        held
    }

    /// The vertical and horizontal scroll remainders, in 1/120 notch.
    pub fn scroll_remainders(&self) -> (i32, i32) {
        (self.scroll_remainder, self.hscroll_remainder)
    }

    /// Scales a position on a `reference_width × reference_height` surface to the display:
    /// the reference's first and last pixel land on the display's first and last, rounding to
    /// nearest, and positions outside the reference (the client may send `x == width`, or
    /// negatives) clamp to its edge. `None` when either surface has under 2 pixels on an axis
    /// (nothing to scale by).
    pub fn scale_absolute(
        &self,
        x: i16,
        y: i16,
        reference_width: u16,
        reference_height: u16,
    ) -> Option<(i32, i32)> {
        let sx = scale_axis(x, reference_width, self.display_width)?;
        let sy = scale_axis(y, reference_height, self.display_height)?;
        Some((sx, sy))
    }

    /// Adds a vertical scroll amount; returns the number of whole notches (positive = up).
    pub fn scroll(&mut self, amount: i16) -> i32 {
        accumulate(&mut self.scroll_remainder, amount)
    }

    /// Adds a horizontal scroll amount; returns whole notches (positive = right).
    pub fn hscroll(&mut self, amount: i16) -> i32 {
        accumulate(&mut self.hscroll_remainder, amount)
    }
}

/// `pos` on `0..reference` to `0..display`, endpoints to endpoints, rounded, clamped.
fn scale_axis(pos: i16, reference: u16, display: u32) -> Option<i32> {
    let ref_max = i64::from(reference).checked_sub(1).filter(|&m| m > 0)?;
    let disp_max = i64::from(display).checked_sub(1).filter(|&m| m > 0)?;
    let pos = i64::from(pos).clamp(0, ref_max);
    // Both factors are below 2^32, so the product fits in i64; round half up.
    let scaled = (pos * disp_max + ref_max / 2) / ref_max;
    i32::try_from(scaled.clamp(0, disp_max)).ok()
}

/// Adds `amount` to `remainder` and takes out whole notches.
///
/// A reversal of direction starts from zero: a half notch left over from scrolling down must
/// not swallow the first notch up, which a person would feel as the wheel ignoring them.
fn accumulate(remainder: &mut i32, amount: i16) -> i32 {
    let amount = i32::from(amount);
    if amount.signum() * remainder.signum() < 0 {
        *remainder = 0;
    }
    let total = *remainder + amount;
    // `/` and `%` truncate toward zero, so the remainder keeps the sign of the total and stays
    // within ±(WHEEL_DELTA − 1).
    *remainder = total % WHEEL_DELTA;
    total / WHEEL_DELTA
}

/// Turns one client's inputs into X actions, keeping its keyboard and pointer state.
#[derive(Debug, Clone)]
pub struct Translator {
    keyboard: KeyboardState,
    mouse: MouseState,
}

impl Translator {
    /// A translator for a `width × height` display.
    pub fn new(display_width: u32, display_height: u32) -> Self {
        Self {
            keyboard: KeyboardState::new(),
            mouse: MouseState::new(display_width, display_height),
        }
    }

    /// Changes the display size absolute positions are scaled to.
    pub fn set_display_size(&mut self, width: u32, height: u32) {
        self.mouse.set_display_size(width, height);
    }

    /// The keyboard state.
    pub fn keyboard(&self) -> &KeyboardState {
        &self.keyboard
    }

    /// The pointer state.
    pub fn mouse(&self) -> &MouseState {
        &self.mouse
    }

    /// What X must do for one input, in order; empty when the input changes nothing (unknown
    /// key, repeated press, unmatched release, zero move, sub-notch scroll, degenerate
    /// reference size).
    pub fn translate(&mut self, input: &InputEvent) -> Vec<XAction> {
        let mut out = Vec::new();
        match *input {
            InputEvent::Keyboard(k) => {
                self.keyboard
                    .key_event(k.action, k.key_code, k.modifiers, &mut out);
            }
            InputEvent::Text(ref text) => out.extend(
                text.chars()
                    .take(MAX_TEXT_CHARS)
                    .filter(|&c| typeable(c))
                    .map(|c| XAction::Type {
                        keysym: char_to_keysym(c),
                    }),
            ),
            InputEvent::MouseMove { dx, dy } if dx != 0 || dy != 0 => {
                out.push(XAction::MotionRel {
                    dx: i32::from(dx),
                    dy: i32::from(dy),
                });
            }
            InputEvent::MousePosition(p) => {
                // The wire carries the reference size minus one.
                let (w, h) = (
                    p.width_minus_one.saturating_add(1),
                    p.height_minus_one.saturating_add(1),
                );
                if let Some((x, y)) = self.mouse.scale_absolute(p.x, p.y, w, h) {
                    out.push(XAction::MotionAbs { x, y });
                }
            }
            InputEvent::MouseButton { action, button } => {
                if let Some(button) = moonlight_button_to_x(button.to_u8()) {
                    match action {
                        Press::Down if self.mouse.press(button) => {
                            out.push(XAction::ButtonDown { button });
                        }
                        Press::Up if self.mouse.release(button) => {
                            out.push(XAction::ButtonUp { button });
                        }
                        _ => {}
                    }
                }
            }
            InputEvent::Scroll { amount } => {
                let notches = self.mouse.scroll(amount);
                clicks(notches, BUTTON_SCROLL_UP, BUTTON_SCROLL_DOWN, &mut out);
            }
            InputEvent::HScroll { amount } => {
                let notches = self.mouse.hscroll(amount);
                clicks(notches, BUTTON_SCROLL_RIGHT, BUTTON_SCROLL_LEFT, &mut out);
            }
            // Gamepads have no X11 device (the worker sends them to uinput); touch, pen and the
            // rest have none either.
            _ => {}
        }
        out
    }

    /// Releases everything the client holds (keys most recent first, then buttons) and clears
    /// scroll remainders: call when the client leaves, loses input, or the session ends.
    pub fn release_all(&mut self) -> Vec<XAction> {
        let keys = self.keyboard.release_all();
        let buttons = self.mouse.release_all();
        keys.into_iter()
            .map(|keysym| XAction::KeyUp { keysym })
            .chain(
                buttons
                    .into_iter()
                    .map(|button| XAction::ButtonUp { button }),
            )
            .collect()
    }
}

/// `notches` wheel clicks: press and release `positive` per notch above zero, `negative` per
/// notch below. At most 274 per event (`i16::MAX` plus a carried remainder of 119, over 120).
fn clicks(notches: i32, positive: u8, negative: u8, out: &mut Vec<XAction>) {
    let button = if notches >= 0 { positive } else { negative };
    for _ in 0..notches.unsigned_abs() {
        out.push(XAction::ButtonDown { button });
        out.push(XAction::ButtonUp { button });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use howl_proto::input::{KeyboardEvent, MouseButton, MousePosition};
    use proptest::prelude::*;

    fn key(press: Press, vk: u16, modifiers: u8) -> InputEvent {
        InputEvent::Keyboard(KeyboardEvent {
            action: press,
            key_code: vk,
            modifiers,
            flags: 0,
        })
    }

    fn button(press: Press, b: u8) -> InputEvent {
        InputEvent::MouseButton {
            action: press,
            button: MouseButton::from_u8(b),
        }
    }

    #[test]
    fn virtual_keys_map_to_keysyms() {
        let cases: &[(u16, u32)] = &[
            (0x41, 0x61),        // A -> a
            (0x5A, 0x7a),        // Z -> z
            (0x4D, 0x6d),        // M -> m
            (0x30, 0x30),        // 0
            (0x39, 0x39),        // 9
            (0x70, 0xffbe),      // F1
            (0x7B, 0xffc9),      // F12
            (0x87, 0xffd5),      // F24
            (0x25, 0xff51),      // Left
            (0x26, 0xff52),      // Up
            (0x27, 0xff53),      // Right
            (0x28, 0xff54),      // Down
            (0x24, 0xff50),      // Home
            (0x23, 0xff57),      // End
            (0x21, 0xff55),      // Prior
            (0x22, 0xff56),      // Next
            (0x2D, 0xff63),      // Insert
            (0x2E, 0xffff),      // Delete
            (0x0D, 0xff0d),      // Return
            (0x1B, 0xff1b),      // Escape
            (0x09, 0xff09),      // Tab
            (0x08, 0xff08),      // BackSpace
            (0x20, 0x20),        // space
            (0x10, 0xffe1),      // VK_SHIFT -> Shift_L
            (0xA1, 0xffe2),      // VK_RSHIFT -> Shift_R
            (0xA2, 0xffe3),      // VK_LCONTROL
            (0xA3, 0xffe4),      // VK_RCONTROL
            (0x12, 0xffe9),      // VK_MENU -> Alt_L
            (0xA4, 0xffe9),      // VK_LMENU
            (0xA5, 0xffea),      // VK_RMENU -> Alt_R
            (0x5B, 0xffeb),      // VK_LWIN -> Super_L
            (0x5C, 0xffec),      // VK_RWIN -> Super_R
            (0x14, 0xffe5),      // Caps_Lock
            (0x90, 0xff7f),      // Num_Lock
            (0x91, 0xff14),      // Scroll_Lock
            (0x60, 0xffb0),      // KP_0
            (0x69, 0xffb9),      // KP_9
            (0x6A, 0xffaa),      // KP_Multiply
            (0x6B, 0xffab),      // KP_Add
            (0x6D, 0xffad),      // KP_Subtract
            (0x6E, 0xffae),      // KP_Decimal
            (0x6F, 0xffaf),      // KP_Divide
            (0xBA, 0x3b),        // VK_OEM_1 -> semicolon
            (0xBB, 0x3d),        // VK_OEM_PLUS -> equal
            (0xBC, 0x2c),        // comma
            (0xBD, 0x2d),        // minus
            (0xBE, 0x2e),        // period
            (0xBF, 0x2f),        // VK_OEM_2 -> slash
            (0xC0, 0x60),        // VK_OEM_3 -> grave
            (0xDB, 0x5b),        // bracketleft
            (0xDC, 0x5c),        // backslash
            (0xDD, 0x5d),        // bracketright
            (0xDE, 0x27),        // apostrophe
            (0x2C, 0xff61),      // VK_SNAPSHOT -> Print
            (0x13, 0xff13),      // Pause
            (0x5D, 0xff67),      // VK_APPS -> Menu
            (0xAD, 0x1008_ff12), // mute
            (0xAE, 0x1008_ff11), // volume down
            (0xAF, 0x1008_ff13), // volume up
            (0xB0, 0x1008_ff17), // next track
            (0xB1, 0x1008_ff16), // previous track
            (0xB3, 0x1008_ff14), // play/pause
        ];
        for &(vk, sym) in cases {
            assert_eq!(vk_to_keysym(vk), Some(sym), "VK {vk:#04x}");
        }
    }

    #[test]
    fn unknown_virtual_keys_map_to_none() {
        for vk in [
            0x00, 0x07, 0x0A, 0x3A, 0x40, 0x88, 0xFF, 0x100, 0x8041, 0xFFFF,
        ] {
            assert_eq!(vk_to_keysym(vk), None, "VK {vk:#06x}");
        }
    }

    #[test]
    fn key_code_high_byte_is_ignored() {
        // moonlight-qt sends 0x80 in the high byte.
        let mut t = Translator::new(1920, 1080);
        assert_eq!(
            t.translate(&key(Press::Down, 0x8041, 0)),
            vec![XAction::KeyDown { keysym: 0x61 }]
        );
    }

    #[test]
    fn chars_map_to_keysyms() {
        assert_eq!(char_to_keysym('a'), 0x61);
        assert_eq!(char_to_keysym('~'), 0x7e);
        assert_eq!(char_to_keysym('é'), 0xe9);
        assert_eq!(char_to_keysym('ÿ'), 0xff);
        assert_eq!(char_to_keysym('\u{a0}'), 0xa0);
        assert_eq!(char_to_keysym('€'), 0x0100_20ac);
        assert_eq!(char_to_keysym('ő'), 0x0100_0151);
        assert_eq!(char_to_keysym('😀'), 0x0101_f600);
        assert_eq!(char_to_keysym('\n'), keysym::RETURN);
        assert_eq!(char_to_keysym('\t'), keysym::TAB);
    }

    #[test]
    fn text_types_each_char_and_skips_controls() {
        let mut t = Translator::new(100, 100);
        let out = t.translate(&InputEvent::Text("a€\u{1}\n".to_owned()));
        assert_eq!(
            out,
            vec![
                XAction::Type { keysym: 0x61 },
                XAction::Type {
                    keysym: 0x0100_20ac
                },
                XAction::Type {
                    keysym: keysym::RETURN
                },
            ]
        );
        let long = "x".repeat(1000);
        assert_eq!(t.translate(&InputEvent::Text(long)).len(), MAX_TEXT_CHARS);
        assert!(t.keyboard().is_empty(), "typing holds nothing");
    }

    #[test]
    fn press_release_and_repeats() {
        let mut t = Translator::new(100, 100);
        let a = 0x61;
        assert_eq!(
            t.translate(&key(Press::Down, 0x41, 0)),
            vec![XAction::KeyDown { keysym: a }]
        );
        // Client-side autorepeat: the key is already down, X repeats it itself.
        assert!(t.translate(&key(Press::Down, 0x41, 0)).is_empty());
        assert_eq!(t.keyboard().len(), 1);
        assert_eq!(
            t.translate(&key(Press::Up, 0x41, 0)),
            vec![XAction::KeyUp { keysym: a }]
        );
        // Unmatched release and unknown key: nothing.
        assert!(t.translate(&key(Press::Up, 0x41, 0)).is_empty());
        assert!(t.translate(&key(Press::Down, 0x07, 0)).is_empty());
        assert!(t.keyboard().is_empty());
    }

    #[test]
    fn real_modifier_then_key_needs_no_synthesis() {
        let mut t = Translator::new(100, 100);
        assert_eq!(
            t.translate(&key(Press::Down, 0xA0, modifiers::SHIFT)),
            vec![XAction::KeyDown {
                keysym: keysym::SHIFT_L
            }]
        );
        assert_eq!(
            t.translate(&key(Press::Down, 0x41, modifiers::SHIFT)),
            vec![XAction::KeyDown { keysym: 0x61 }]
        );
        // A client that reports no mask at all must not lose its real Shift.
        assert_eq!(
            t.translate(&key(Press::Down, 0x42, 0)),
            vec![XAction::KeyDown { keysym: 0x62 }]
        );
        assert!(t.keyboard().is_held(keysym::SHIFT_L));
    }

    #[test]
    fn right_modifier_satisfies_the_mask() {
        let mut t = Translator::new(100, 100);
        t.translate(&key(Press::Down, 0xA3, modifiers::CTRL));
        assert_eq!(
            t.translate(&key(Press::Down, 0x43, modifiers::CTRL)),
            vec![XAction::KeyDown { keysym: 0x63 }]
        );
    }

    #[test]
    fn missing_modifiers_are_synthesised_and_dropped() {
        let mut t = Translator::new(100, 100);
        let out = t.translate(&key(Press::Down, 0x43, modifiers::CTRL | modifiers::SHIFT));
        assert_eq!(
            out,
            vec![
                XAction::KeyDown {
                    keysym: keysym::SHIFT_L
                },
                XAction::KeyDown {
                    keysym: keysym::CONTROL_L
                },
                XAction::KeyDown { keysym: 0x63 },
            ]
        );
        // Still held on release: the synthetic modifiers stay.
        assert_eq!(
            t.translate(&key(Press::Up, 0x43, modifiers::CTRL | modifiers::SHIFT)),
            vec![XAction::KeyUp { keysym: 0x63 }]
        );
        // Next key without Shift: the synthetic Shift goes, Control stays.
        assert_eq!(
            t.translate(&key(Press::Down, 0x56, modifiers::CTRL)),
            vec![
                XAction::KeyUp {
                    keysym: keysym::SHIFT_L
                },
                XAction::KeyDown { keysym: 0x76 },
            ]
        );
        // Release with an empty mask drops the synthetic Control after the key.
        assert_eq!(
            t.translate(&key(Press::Up, 0x56, 0)),
            vec![
                XAction::KeyUp { keysym: 0x76 },
                XAction::KeyUp {
                    keysym: keysym::CONTROL_L
                },
            ]
        );
        assert!(t.keyboard().is_empty());
    }

    #[test]
    fn client_press_adopts_a_synthetic_modifier() {
        let mut t = Translator::new(100, 100);
        t.translate(&key(Press::Down, 0x41, modifiers::ALT));
        assert!(t.keyboard().is_held(keysym::ALT_L));
        // The client now presses Alt itself: no second KeyDown, and it is no longer synthetic.
        assert!(
            t.translate(&key(Press::Down, 0xA4, modifiers::ALT))
                .is_empty()
        );
        // A mask without Alt must not release the client's own Alt.
        assert_eq!(
            t.translate(&key(Press::Up, 0x41, 0)),
            vec![XAction::KeyUp { keysym: 0x61 }]
        );
        assert!(t.keyboard().is_held(keysym::ALT_L));
        assert_eq!(
            t.translate(&key(Press::Up, 0xA4, 0)),
            vec![XAction::KeyUp {
                keysym: keysym::ALT_L
            }]
        );
    }

    #[test]
    fn release_all_lets_go_of_everything_in_reverse() {
        let mut t = Translator::new(100, 100);
        t.translate(&key(Press::Down, 0xA2, modifiers::CTRL));
        t.translate(&key(Press::Down, 0x41, modifiers::CTRL | modifiers::META));
        t.translate(&button(Press::Down, 1));
        t.translate(&button(Press::Down, 5));
        t.translate(&InputEvent::Scroll { amount: 60 });
        assert_eq!(
            t.release_all(),
            vec![
                XAction::KeyUp { keysym: 0x61 },
                XAction::KeyUp {
                    keysym: keysym::SUPER_L
                },
                XAction::KeyUp {
                    keysym: keysym::CONTROL_L
                },
                XAction::ButtonUp { button: 1 },
                XAction::ButtonUp { button: 9 },
            ]
        );
        assert!(t.keyboard().is_empty());
        assert!(t.mouse().held().is_empty());
        assert_eq!(t.mouse().scroll_remainders(), (0, 0));
        assert!(t.release_all().is_empty(), "second release_all is empty");
    }

    #[test]
    fn keyboard_state_is_capped() {
        let mut k = KeyboardState::new();
        for sym in 0..(MAX_HELD_KEYS as u32 + 10) {
            let fresh = k.press(sym);
            assert_eq!(fresh, sym < MAX_HELD_KEYS as u32);
        }
        assert_eq!(k.len(), MAX_HELD_KEYS);
        // A key refused at the cap has no KeyDown, so its release must not emit KeyUp either.
        assert!(!k.release(MAX_HELD_KEYS as u32 + 1));
        assert_eq!(k.release_all().len(), MAX_HELD_KEYS);
        assert!(k.is_empty());
    }

    #[test]
    fn mouse_buttons_map_and_track() {
        let expected = [(1, 1), (2, 2), (3, 3), (4, 8), (5, 9)];
        for (moonlight, x) in expected {
            assert_eq!(moonlight_button_to_x(moonlight), Some(x));
        }
        assert_eq!(moonlight_button_to_x(0), None);
        assert_eq!(moonlight_button_to_x(6), None);

        let mut t = Translator::new(100, 100);
        let down = |b| button(Press::Down, b);
        let up = |b| button(Press::Up, b);
        assert_eq!(
            t.translate(&down(4)),
            vec![XAction::ButtonDown { button: 8 }]
        );
        assert!(t.translate(&down(4)).is_empty(), "repeat press");
        assert!(t.translate(&down(7)).is_empty(), "unknown button");
        assert!(t.translate(&up(1)).is_empty(), "unmatched release");
        assert_eq!(t.mouse().held(), vec![8]);
        assert_eq!(t.translate(&up(4)), vec![XAction::ButtonUp { button: 8 }]);
        assert!(t.mouse().held().is_empty());
    }

    #[test]
    fn relative_moves_pass_through() {
        let mut t = Translator::new(100, 100);
        assert_eq!(
            t.translate(&InputEvent::MouseMove { dx: -5, dy: 7 }),
            vec![XAction::MotionRel { dx: -5, dy: 7 }]
        );
        assert!(
            t.translate(&InputEvent::MouseMove { dx: 0, dy: 0 })
                .is_empty()
        );
    }

    fn pos(x: i16, y: i16, w: u16, h: u16) -> InputEvent {
        InputEvent::MousePosition(MousePosition::new(x, y, w, h))
    }

    #[test]
    fn absolute_positions_scale_and_clamp() {
        let mut t = Translator::new(1920, 1080);
        let abs = |x, y| vec![XAction::MotionAbs { x, y }];
        // Same size: identity.
        assert_eq!(t.translate(&pos(0, 0, 1920, 1080)), abs(0, 0));
        assert_eq!(t.translate(&pos(1919, 1079, 1920, 1080)), abs(1919, 1079));
        // Half-size reference: corners to corners, middle to middle.
        assert_eq!(t.translate(&pos(959, 539, 960, 540)), abs(1919, 1079));
        assert_eq!(t.translate(&pos(480, 270, 960, 540)), abs(961, 541));
        // Outside the reference clamps to the edge (x == width is sent by some clients).
        assert_eq!(t.translate(&pos(960, 540, 960, 540)), abs(1919, 1079));
        assert_eq!(t.translate(&pos(-50, i16::MAX, 960, 540)), abs(0, 1079));
        assert_eq!(t.translate(&pos(i16::MIN, -1, 960, 540)), abs(0, 0));
        // Bigger reference than display scales down.
        assert_eq!(t.translate(&pos(3839, 2159, 3840, 2160)), abs(1919, 1079));
        assert_eq!(t.translate(&pos(1920, 1080, 3840, 2160)), abs(960, 540));
        // Degenerate sizes: nothing to scale by, nothing to do.
        assert!(t.translate(&pos(5, 5, 0, 540)).is_empty());
        assert!(t.translate(&pos(5, 5, 960, 1)).is_empty());
        t.set_display_size(0, 0);
        assert!(t.translate(&pos(5, 5, 960, 540)).is_empty());
        // A mode change takes effect.
        t.set_display_size(1280, 720);
        assert_eq!(t.translate(&pos(959, 539, 960, 540)), abs(1279, 719));
    }

    fn click(button: u8) -> [XAction; 2] {
        [XAction::ButtonDown { button }, XAction::ButtonUp { button }]
    }

    #[test]
    fn scroll_accumulates_fractions() {
        let mut t = Translator::new(100, 100);
        let scroll = |amount| InputEvent::Scroll { amount };
        assert!(t.translate(&scroll(40)).is_empty());
        assert!(t.translate(&scroll(40)).is_empty());
        assert_eq!(t.translate(&scroll(40)), click(4).to_vec());
        assert_eq!(t.mouse().scroll_remainders(), (0, 0));
        assert_eq!(t.translate(&scroll(-120)), click(5).to_vec());
        // Two and a half notches: two clicks, half kept.
        let mut two = click(4).to_vec();
        two.extend(click(4));
        assert_eq!(t.translate(&scroll(300)), two);
        assert_eq!(t.mouse().scroll_remainders(), (60, 0));
        // Reversing drops the leftover half notch up rather than cancelling against it.
        assert_eq!(t.translate(&scroll(-120)), click(5).to_vec());
        assert_eq!(t.translate(&scroll(0)), Vec::new());
        // Largest single event stays bounded.
        assert_eq!(t.translate(&scroll(i16::MIN)).len(), 2 * 273);
        assert_eq!(t.mouse().scroll_remainders(), (-8, 0));
    }

    #[test]
    fn horizontal_scroll_uses_buttons_6_and_7() {
        let mut t = Translator::new(100, 100);
        let hscroll = |amount| InputEvent::HScroll { amount };
        assert_eq!(t.translate(&hscroll(120)), click(7).to_vec());
        assert!(t.translate(&hscroll(-60)).is_empty());
        assert_eq!(t.translate(&hscroll(-60)), click(6).to_vec());
        assert!(t.translate(&hscroll(30)).is_empty());
        assert_eq!(t.mouse().scroll_remainders(), (0, 30));
    }

    fn arb_press() -> impl Strategy<Value = Press> {
        prop_oneof![Just(Press::Down), Just(Press::Up)]
    }

    fn arb_input() -> impl Strategy<Value = InputEvent> {
        prop_oneof![
            // Mostly real VK codes so that presses actually land, sometimes anything.
            4 => (arb_press(), prop_oneof![0u16..=0xFF, any::<u16>()], any::<u8>()).prop_map(
                |(press, key_code, modifiers)| key(press, key_code, modifiers)
            ),
            1 => ".{0,40}".prop_map(InputEvent::Text),
            1 => (any::<i16>(), any::<i16>()).prop_map(|(dx, dy)| InputEvent::MouseMove { dx, dy }),
            1 => (any::<i16>(), any::<i16>(), any::<u16>(), any::<u16>()).prop_map(
                |(x, y, w, h)| pos(x, y, w, h)
            ),
            2 => (arb_press(), 0u8..8).prop_map(|(press, b)| button(press, b)),
            1 => any::<i16>().prop_map(|amount| InputEvent::Scroll { amount }),
            1 => any::<i16>().prop_map(|amount| InputEvent::HScroll { amount }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// Random sequences never panic, keep state bounded and consistent with the actions
        /// emitted, and release_all leaves nothing held.
        #[test]
        fn random_sequences_stay_bounded(
            inputs in proptest::collection::vec(arb_input(), 0..64),
            width in 0u32..5000,
            height in 0u32..5000,
        ) {
            let mut t = Translator::new(width, height);
            // What X would hold after executing every action so far.
            let mut x_keys: Vec<u32> = Vec::new();
            let mut x_buttons: Vec<u8> = Vec::new();
            for input in &inputs {
                for action in t.translate(input) {
                    match action {
                        XAction::KeyDown { keysym } => {
                            prop_assert!(!x_keys.contains(&keysym), "double KeyDown");
                            x_keys.push(keysym);
                        }
                        XAction::KeyUp { keysym } => {
                            prop_assert!(x_keys.contains(&keysym), "unmatched KeyUp");
                            x_keys.retain(|&k| k != keysym);
                        }
                        XAction::ButtonDown { button } if button <= 3 || button >= 8 => {
                            prop_assert!(!x_buttons.contains(&button), "double ButtonDown");
                            x_buttons.push(button);
                        }
                        XAction::ButtonUp { button } if button <= 3 || button >= 8 => {
                            prop_assert!(x_buttons.contains(&button), "unmatched ButtonUp");
                            x_buttons.retain(|&b| b != button);
                        }
                        XAction::MotionAbs { x, y } => {
                            prop_assert!(x >= 0 && i64::from(x) < i64::from(width));
                            prop_assert!(y >= 0 && i64::from(y) < i64::from(height));
                        }
                        _ => {}
                    }
                }
                prop_assert!(t.keyboard().len() <= MAX_HELD_KEYS);
                let (v, h) = t.mouse().scroll_remainders();
                prop_assert!(v.abs() < WHEEL_DELTA && h.abs() < WHEEL_DELTA);
                let mut held: Vec<u32> = t.keyboard().held().collect();
                let mut x_sorted = x_keys.clone();
                held.sort_unstable();
                x_sorted.sort_unstable();
                prop_assert_eq!(held, x_sorted);
                let mut xb = x_buttons.clone();
                xb.sort_unstable();
                prop_assert_eq!(t.mouse().held(), xb);
            }
            for action in t.release_all() {
                match action {
                    XAction::KeyUp { keysym } => x_keys.retain(|&k| k != keysym),
                    XAction::ButtonUp { button } => x_buttons.retain(|&b| b != button),
                    other => prop_assert!(false, "release_all emitted {:?}", other),
                }
            }
            prop_assert!(x_keys.is_empty() && x_buttons.is_empty());
            prop_assert!(t.keyboard().is_empty() && t.mouse().held().is_empty());
            prop_assert_eq!(t.mouse().scroll_remainders(), (0, 0));
        }
    }
}
