//! Input packets: the payload of control message `0x0206` (reference part 2 §3).
//!
//! For a 7.1.431 client each `0x0206` message carries exactly one input packet, already
//! protected by the control envelope: there is no second input-encryption layer (that existed
//! only for appversions below 7.1.431) and no batching to undo on the host (the client merges
//! mouse moves and stick changes *before* building a packet). So decoding is one packet in, one
//! [`InputEvent`] out:
//!
//! ```text
//! BE32 size (= packet length − 4, BIG-endian) | LE32 magic (LITTLE-endian) | body
//! ```
//!
//! Body byte order varies per packet type and per field (mouse and scroll fields big-endian,
//! controller/touch/pen fields little-endian, floats `f32le`); each layout below follows the
//! reference tables. Every event also encodes, so a Rust test client sends exactly the client's
//! bytes, and [`InputEvent::delivery`] says on which ENet channel and how reliably.
//!
//! # Hostile input
//!
//! [`InputEvent::decode`] never panics: short, oversized or garbage packets give an
//! [`InputError`] (all [`Fault::MalformedInput`]); unknown magics give
//! [`InputEvent::Unknown`]. A host should drop a bad input packet, not end the session.
//!
//! Unreliable packets (hover, move, motion) can be lost: never derive press/release or
//! contact state from them (reference §3.4).

use crate::enet::{Delivery, channel};
use crate::nvhttp::Fault;

/// Input packet magics for appversion 7.1.431 (Sunshine mode), as the LE32 after `size`.
pub mod magic {
    /// Key pressed.
    pub const KEY_DOWN: u32 = 0x0000_0003;
    /// Key released.
    pub const KEY_UP: u32 = 0x0000_0004;
    /// Absolute mouse position.
    pub const MOUSE_POSITION: u32 = 0x0000_0005;
    /// Relative mouse move.
    pub const MOUSE_MOVE: u32 = 0x0000_0007;
    /// Mouse button pressed.
    pub const MOUSE_BUTTON_DOWN: u32 = 0x0000_0008;
    /// Mouse button released.
    pub const MOUSE_BUTTON_UP: u32 = 0x0000_0009;
    /// Vertical scroll.
    pub const SCROLL: u32 = 0x0000_000A;
    /// Multi-controller state.
    pub const MULTI_CONTROLLER: u32 = 0x0000_000C;
    /// Enable haptics (sent once at input start).
    pub const ENABLE_HAPTICS: u32 = 0x0000_000D;
    /// One UTF-8 code point.
    pub const UTF8_TEXT: u32 = 0x0000_0017;
    /// Horizontal scroll (Sunshine extension).
    pub const HSCROLL: u32 = 0x5500_0001;
    /// Touch (Sunshine extension).
    pub const TOUCH: u32 = 0x5500_0002;
    /// Pen (Sunshine extension).
    pub const PEN: u32 = 0x5500_0003;
    /// Controller arrival (Sunshine extension).
    pub const CONTROLLER_ARRIVAL: u32 = 0x5500_0004;
    /// Controller touchpad (Sunshine extension).
    pub const CONTROLLER_TOUCH: u32 = 0x5500_0005;
    /// Controller motion sensor (Sunshine extension).
    pub const CONTROLLER_MOTION: u32 = 0x5500_0006;
    /// Controller battery (Sunshine extension).
    pub const CONTROLLER_BATTERY: u32 = 0x5500_0007;
}

/// Keyboard modifier bits (the `modifiers` byte of a key packet).
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

/// `SS_KBE_FLAG_NON_NORMALIZED`: the key code is not normalised to a US layout.
pub const KEYBOARD_FLAG_NON_NORMALIZED: u8 = 0x01;

/// Gamepad button bits of [`ControllerState::buttons`] (low 16 bits XInput, high 16 bits
/// Sunshine extensions).
pub mod buttons {
    /// D-pad up.
    pub const UP: u32 = 0x0001;
    /// D-pad down.
    pub const DOWN: u32 = 0x0002;
    /// D-pad left.
    pub const LEFT: u32 = 0x0004;
    /// D-pad right.
    pub const RIGHT: u32 = 0x0008;
    /// Start / menu.
    pub const START: u32 = 0x0010;
    /// Back / view.
    pub const BACK: u32 = 0x0020;
    /// Left stick click.
    pub const LS_CLICK: u32 = 0x0040;
    /// Right stick click.
    pub const RS_CLICK: u32 = 0x0080;
    /// Left bumper.
    pub const LB: u32 = 0x0100;
    /// Right bumper.
    pub const RB: u32 = 0x0200;
    /// Guide / home.
    pub const GUIDE: u32 = 0x0400;
    /// A.
    pub const A: u32 = 0x1000;
    /// B.
    pub const B: u32 = 0x2000;
    /// X.
    pub const X: u32 = 0x4000;
    /// Y.
    pub const Y: u32 = 0x8000;
    /// Paddle 1.
    pub const PADDLE1: u32 = 0x01_0000;
    /// Paddle 2.
    pub const PADDLE2: u32 = 0x02_0000;
    /// Paddle 3.
    pub const PADDLE3: u32 = 0x04_0000;
    /// Paddle 4.
    pub const PADDLE4: u32 = 0x08_0000;
    /// Touchpad click.
    pub const TOUCHPAD: u32 = 0x10_0000;
    /// Misc (share/capture/mute).
    pub const MISC: u32 = 0x20_0000;
}

/// Controller capability bits of [`ControllerArrival::capabilities`].
pub mod capabilities {
    /// Analog triggers.
    pub const ANALOG_TRIGGERS: u16 = 0x01;
    /// Rumble.
    pub const RUMBLE: u16 = 0x02;
    /// Trigger rumble.
    pub const TRIGGER_RUMBLE: u16 = 0x04;
    /// Touchpad (also set whenever [`DUAL_TOUCHPAD`] is).
    pub const TOUCHPAD: u16 = 0x08;
    /// Accelerometer.
    pub const ACCELEROMETER: u16 = 0x10;
    /// Gyroscope.
    pub const GYRO: u16 = 0x20;
    /// Battery state.
    pub const BATTERY: u16 = 0x40;
    /// RGB LED.
    pub const RGB_LED: u16 = 0x80;
    /// Two touchpads.
    pub const DUAL_TOUCHPAD: u16 = 0x100;
}

/// Pen button bits of [`PenEvent::buttons`].
pub mod pen_buttons {
    /// Primary (tip / barrel 1).
    pub const PRIMARY: u8 = 0x01;
    /// Secondary.
    pub const SECONDARY: u8 = 0x02;
    /// Tertiary.
    pub const TERTIARY: u8 = 0x04;
}

/// Rotation value meaning "unknown" in touch and pen packets.
pub const ROTATION_UNKNOWN: u16 = 0xFFFF;
/// Tilt value meaning "unknown" in pen packets.
pub const TILT_UNKNOWN: u8 = 0xFF;
/// Battery percentage meaning "unknown".
pub const BATTERY_PERCENT_UNKNOWN: u8 = 0xFF;
/// Controllers per session in Sunshine mode (numbers 0..15).
pub const MAX_CONTROLLERS: u16 = 16;
/// Longest UTF-8 text body accepted. The client sends one code point (1–4 bytes) per packet;
/// the allowance up to Sunshine's 32-byte buffer tolerates clients that batch.
pub const MAX_TEXT_LEN: usize = 32;

/// Why an input packet could not be decoded. Every variant is the client's fault
/// ([`Fault::MalformedInput`]); drop the packet, keep the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Shorter than the 8-byte `size` + `magic` header.
    #[error("input packet is {len} bytes, shorter than its header")]
    TooShort {
        /// Packet length.
        len: usize,
    },
    /// The BE32 `size` field is not the packet length minus 4.
    #[error("input packet size field says {declared}, packet has {actual} bytes after it")]
    SizeMismatch {
        /// `size` from the packet.
        declared: u32,
        /// Bytes after the `size` field.
        actual: usize,
    },
    /// A fixed-size packet type with the wrong length.
    #[error("input packet {magic:#010x} must be {expected} bytes, got {actual}")]
    Length {
        /// Packet magic.
        magic: u32,
        /// Its fixed total length.
        expected: usize,
        /// Total length received.
        actual: usize,
    },
    /// UTF-8 text packet with an empty or oversized body.
    #[error("text input of {len} bytes (allowed 1..={MAX_TEXT_LEN})")]
    TextLength {
        /// Body length.
        len: usize,
    },
    /// UTF-8 text packet whose body is not UTF-8.
    #[error("text input is not valid UTF-8")]
    InvalidUtf8,
    /// Absolute mouse position with a zero reference dimension (it is a divisor).
    #[error("absolute mouse position with a zero reference dimension")]
    ZeroReferenceSize,
    /// Controller number outside 0..15.
    #[error("controller number {controller} out of range (0..{MAX_CONTROLLERS})")]
    ControllerNumber {
        /// The number received.
        controller: u16,
    },
}

impl InputError {
    /// Who is at fault (STYLE practice 6): always the client.
    pub fn fault(&self) -> Fault {
        Fault::MalformedInput
    }
}

/// Press or release (keys and mouse buttons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ButtonAction {
    /// Pressed.
    Down,
    /// Released.
    Up,
}

/// A key press or release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyboardEvent {
    /// Press or release.
    pub action: ButtonAction,
    /// The raw LE16 key code. Its low byte is the Windows virtual-key code; moonlight-qt sets
    /// the high byte to `0x80`. Use [`KeyboardEvent::virtual_key`].
    pub key_code: u16,
    /// Held modifiers ([`modifiers`] bits); Sunshine synthesises missing modifier presses.
    pub modifiers: u8,
    /// Flags ([`KEYBOARD_FLAG_NON_NORMALIZED`]).
    pub flags: u8,
}

impl KeyboardEvent {
    /// The Windows virtual-key code (`key_code & 0xFF`, as Sunshine does).
    pub fn virtual_key(&self) -> u8 {
        self.key_code.to_le_bytes()[0]
    }

    /// Whether the key code must be interpreted as-is rather than as a US-layout key.
    pub fn non_normalized(&self) -> bool {
        self.flags & KEYBOARD_FLAG_NON_NORMALIZED != 0
    }
}

/// An absolute pointer position relative to a reference surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MousePosition {
    /// X in reference pixels (can equal the reference width).
    pub x: i16,
    /// Y in reference pixels.
    pub y: i16,
    /// The wire's width field: reference width **minus one** (the client subtracts 1).
    pub width_minus_one: u16,
    /// The wire's height field: reference height minus one.
    pub height_minus_one: u16,
}

impl MousePosition {
    /// A position on a `width × height` reference surface, as the client builds it.
    pub fn new(x: i16, y: i16, width: u16, height: u16) -> Self {
        Self {
            x,
            y,
            width_minus_one: width.saturating_sub(1),
            height_minus_one: height.saturating_sub(1),
        }
    }

    /// `(x, y)` mapped to `[0, 1]` (dividing by the wire fields, as Sunshine does, and
    /// clamping); `None` for a zero dimension.
    pub fn normalized(&self) -> Option<(f32, f32)> {
        if self.width_minus_one == 0 || self.height_minus_one == 0 {
            return None;
        }
        let nx = f32::from(self.x) / f32::from(self.width_minus_one);
        let ny = f32::from(self.y) / f32::from(self.height_minus_one);
        Some((nx.clamp(0.0, 1.0), ny.clamp(0.0, 1.0)))
    }
}

/// Mouse buttons (`u8` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MouseButton {
    /// 1.
    Left,
    /// 2.
    Middle,
    /// 3.
    Right,
    /// 4.
    X1,
    /// 5.
    X2,
    /// Anything else.
    Other(u8),
}

impl MouseButton {
    /// Wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Left => 1,
            Self::Middle => 2,
            Self::Right => 3,
            Self::X1 => 4,
            Self::X2 => 5,
            Self::Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Left,
            2 => Self::Middle,
            3 => Self::Right,
            4 => Self::X1,
            5 => Self::X2,
            other => Self::Other(other),
        }
    }
}

/// Full state of one gamepad (multi-controller packet `0x0C`).
///
/// A pad disappearing is a packet for it whose [`Self::active_mask`] lacks its bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ControllerState {
    /// Controller number, 0..15.
    pub controller: u16,
    /// Bit n set = pad n connected.
    pub active_mask: u16,
    /// [`buttons`] bits (32-bit: the high half is Sunshine's extension).
    pub buttons: u32,
    /// Left trigger 0..255.
    pub left_trigger: u8,
    /// Right trigger 0..255.
    pub right_trigger: u8,
    /// Left stick `[x, y]`, +y = up (XInput).
    pub left_stick: [i16; 2],
    /// Right stick `[x, y]`, +y = up.
    pub right_stick: [i16; 2],
}

/// Controller family announced on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControllerType {
    /// 0.
    Unknown,
    /// 1.
    Xbox,
    /// 2.
    PlayStation,
    /// 3.
    Nintendo,
    /// 4.
    Steam,
    /// Anything else.
    Other(u8),
}

impl ControllerType {
    /// Wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Xbox => 1,
            Self::PlayStation => 2,
            Self::Nintendo => 3,
            Self::Steam => 4,
            Self::Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Unknown,
            1 => Self::Xbox,
            2 => Self::PlayStation,
            3 => Self::Nintendo,
            4 => Self::Steam,
            other => Self::Other(other),
        }
    }
}

/// A gamepad was connected; always followed by a zero [`ControllerState`] for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControllerArrival {
    /// Controller number, 0..15.
    pub controller: u8,
    /// Controller family.
    pub controller_type: ControllerType,
    /// [`capabilities`] bits (16-bit: dual touchpad is `0x100`).
    pub capabilities: u16,
    /// [`buttons`] bits the pad has.
    pub supported_buttons: u32,
}

/// Touch / pen event types (`u8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TouchEventType {
    /// 0: hovering (sent unreliably).
    Hover,
    /// 1: contact down.
    Down,
    /// 2: contact up.
    Up,
    /// 3: moved (sent unreliably).
    Move,
    /// 4: cancel this pointer.
    Cancel,
    /// 5: button change only.
    ButtonOnly,
    /// 6: hover left the surface.
    HoverLeave,
    /// 7: cancel all pointers.
    CancelAll,
    /// Anything else.
    Other(u8),
}

impl TouchEventType {
    /// Wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Hover => 0,
            Self::Down => 1,
            Self::Up => 2,
            Self::Move => 3,
            Self::Cancel => 4,
            Self::ButtonOnly => 5,
            Self::HoverLeave => 6,
            Self::CancelAll => 7,
            Self::Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Hover,
            1 => Self::Down,
            2 => Self::Up,
            3 => Self::Move,
            4 => Self::Cancel,
            5 => Self::ButtonOnly,
            6 => Self::HoverLeave,
            7 => Self::CancelAll,
            other => Self::Other(other),
        }
    }

    /// Hover and move are the types the client may send unreliably.
    fn is_hover_or_move(self) -> bool {
        matches!(self, Self::Hover | Self::Move)
    }
}

/// A touch-screen contact (coordinates normalised to the video, `0..1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TouchEvent {
    /// What happened.
    pub event_type: TouchEventType,
    /// Degrees 0..359, or [`ROTATION_UNKNOWN`].
    pub rotation: u16,
    /// Pointer id.
    pub pointer_id: u32,
    /// X, `0..1` across the video.
    pub x: f32,
    /// Y, `0..1`.
    pub y: f32,
    /// Pressure (down/move) or distance (hover), `0..1`.
    pub pressure_or_distance: f32,
    /// Contact area major axis, normalised.
    pub contact_area_major: f32,
    /// Contact area minor axis, normalised.
    pub contact_area_minor: f32,
}

/// Pen tool type (`u8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PenTool {
    /// 0.
    Unknown,
    /// 1.
    Pen,
    /// 2.
    Eraser,
    /// Anything else.
    Other(u8),
}

impl PenTool {
    /// Wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Pen => 1,
            Self::Eraser => 2,
            Self::Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Unknown,
            1 => Self::Pen,
            2 => Self::Eraser,
            other => Self::Other(other),
        }
    }
}

/// A pen / stylus event (coordinates normalised to the video, `0..1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PenEvent {
    /// What happened.
    pub event_type: TouchEventType,
    /// Pen or eraser.
    pub tool: PenTool,
    /// [`pen_buttons`] bits.
    pub buttons: u8,
    /// X, `0..1`.
    pub x: f32,
    /// Y, `0..1`.
    pub y: f32,
    /// Pressure or distance, `0..1`.
    pub pressure_or_distance: f32,
    /// Degrees, or [`ROTATION_UNKNOWN`].
    pub rotation: u16,
    /// Degrees 0..90, or [`TILT_UNKNOWN`].
    pub tilt: u8,
    /// Contact area major axis, normalised.
    pub contact_area_major: f32,
    /// Contact area minor axis, normalised.
    pub contact_area_minor: f32,
}

/// A touch on a controller's touchpad.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerTouch {
    /// Controller number, 0..15.
    pub controller: u8,
    /// What happened.
    pub event_type: TouchEventType,
    /// 0, or 1 for the second pad of a dual-touchpad controller.
    pub touchpad_index: u8,
    /// Pointer id.
    pub pointer_id: u32,
    /// X, `0..1`.
    pub x: f32,
    /// Y, `0..1`.
    pub y: f32,
    /// Pressure, `0..1`.
    pub pressure: f32,
}

/// Motion sensor kind, shared by input packets and the host's `0x5501` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MotionType {
    /// 1: accelerometer, m/s² including gravity.
    Accelerometer,
    /// 2: gyroscope, degrees per second.
    Gyroscope,
    /// Anything else.
    Other(u8),
}

impl MotionType {
    /// Wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Accelerometer => 1,
            Self::Gyroscope => 2,
            Self::Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Accelerometer,
            2 => Self::Gyroscope,
            other => Self::Other(other),
        }
    }
}

/// One motion sensor sample (SDL axis convention). Only sent after the host enabled the
/// sensor; the client keeps only the latest sample per sensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerMotion {
    /// Controller number, 0..15.
    pub controller: u8,
    /// Which sensor.
    pub motion_type: MotionType,
    /// X.
    pub x: f32,
    /// Y.
    pub y: f32,
    /// Z.
    pub z: f32,
}

/// Battery state (`u8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatteryState {
    /// 0.
    Unknown,
    /// 1.
    NotPresent,
    /// 2.
    Discharging,
    /// 3.
    Charging,
    /// 4.
    NotCharging,
    /// 5.
    Full,
    /// Anything else.
    Other(u8),
}

impl BatteryState {
    /// Wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::NotPresent => 1,
            Self::Discharging => 2,
            Self::Charging => 3,
            Self::NotCharging => 4,
            Self::Full => 5,
            Self::Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Unknown,
            1 => Self::NotPresent,
            2 => Self::Discharging,
            3 => Self::Charging,
            4 => Self::NotCharging,
            5 => Self::Full,
            other => Self::Other(other),
        }
    }
}

/// A controller's battery report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControllerBattery {
    /// Controller number, 0..15.
    pub controller: u8,
    /// Charging state.
    pub state: BatteryState,
    /// 0..100, or [`BATTERY_PERCENT_UNKNOWN`].
    pub percent: u8,
}

/// One decoded input packet.
#[derive(Debug, Clone, PartialEq)]
pub enum InputEvent {
    /// Key press/release (magic 3/4, 14 bytes).
    Keyboard(KeyboardEvent),
    /// UTF-8 text, normally exactly one code point (magic `0x17`).
    Text(String),
    /// Relative mouse move (magic 7, 12 bytes): +x right, +y down.
    MouseMove {
        /// Horizontal delta.
        dx: i16,
        /// Vertical delta.
        dy: i16,
    },
    /// Absolute mouse position (magic 5, 18 bytes).
    MousePosition(MousePosition),
    /// Mouse button press/release (magic 8/9, 9 bytes).
    MouseButton {
        /// Press or release.
        action: ButtonAction,
        /// Which button.
        button: MouseButton,
    },
    /// Vertical scroll (magic `0x0A`, 14 bytes). 120 = one wheel notch (`WHEEL_DELTA`),
    /// positive = away from the user; high-resolution wheels send fractions of 120.
    Scroll {
        /// Signed amount in 1/120 notch.
        amount: i16,
    },
    /// Horizontal scroll (magic `0x55000001`, 10 bytes), same units, positive = right.
    HScroll {
        /// Signed amount in 1/120 notch.
        amount: i16,
    },
    /// Full gamepad state (magic `0x0C`, 34 bytes).
    Controller(ControllerState),
    /// Gamepad connected (magic `0x55000004`, 16 bytes).
    ControllerArrival(ControllerArrival),
    /// Enable haptics (magic `0x0D`, 10 bytes), sent once at input start; Sunshine ignores it.
    EnableHaptics,
    /// Touch screen (magic `0x55000002`, 36 bytes).
    Touch(TouchEvent),
    /// Pen (magic `0x55000003`, 36 bytes).
    Pen(PenEvent),
    /// Controller touchpad (magic `0x55000005`, 28 bytes).
    ControllerTouch(ControllerTouch),
    /// Controller motion sample (magic `0x55000006`, 24 bytes).
    ControllerMotion(ControllerMotion),
    /// Controller battery (magic `0x55000007`, 12 bytes).
    ControllerBattery(ControllerBattery),
    /// A magic this decoder does not know; not an error.
    Unknown {
        /// The LE32 magic.
        magic: u32,
        /// Body length (bytes after the magic).
        len: usize,
    },
}

/// Body reader over a fixed-size body; offsets are constants exercised by the vector tests.
struct Body<const N: usize>([u8; N]);

impl<const N: usize> Body<N> {
    fn u8(&self, at: usize) -> u8 {
        self.0[at]
    }
    fn le16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.0[at], self.0[at + 1]])
    }
    fn le32(&self, at: usize) -> u32 {
        u32::from_le_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }
    fn be16(&self, at: usize) -> i16 {
        i16::from_be_bytes([self.0[at], self.0[at + 1]])
    }
    fn f32(&self, at: usize) -> f32 {
        f32::from_le_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }
}

/// The body of a fixed-size packet whose total length must be `8 + N`.
fn body<const N: usize>(magic: u32, body: &[u8]) -> Result<Body<N>, InputError> {
    <[u8; N]>::try_from(body)
        .map(Body)
        .map_err(|_| InputError::Length {
            magic,
            expected: 8 + N,
            actual: 8 + body.len(),
        })
}

fn controller_u8(n: u8) -> Result<u8, InputError> {
    if u16::from(n) < MAX_CONTROLLERS {
        Ok(n)
    } else {
        Err(InputError::ControllerNumber {
            controller: u16::from(n),
        })
    }
}

impl InputEvent {
    /// Decode one input packet (the whole `0x0206` payload).
    ///
    /// # Errors
    /// [`InputError`] for a short packet, a `size` field that disagrees with the length, a
    /// known packet type of the wrong length, bad text, a zero absolute-mouse reference size or
    /// a controller number above 15. Unknown magics are [`InputEvent::Unknown`].
    pub fn decode(packet: &[u8]) -> Result<Self, InputError> {
        let Some((header, rest)) = packet.split_first_chunk::<8>() else {
            return Err(InputError::TooShort { len: packet.len() });
        };
        let declared = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let actual = packet.len() - 4;
        if usize::try_from(declared).ok() != Some(actual) {
            return Err(InputError::SizeMismatch { declared, actual });
        }
        let magic = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);

        Ok(match magic {
            magic::KEY_DOWN | magic::KEY_UP => {
                let b = body::<6>(magic, rest)?;
                Self::Keyboard(KeyboardEvent {
                    action: if magic == magic::KEY_DOWN {
                        ButtonAction::Down
                    } else {
                        ButtonAction::Up
                    },
                    flags: b.u8(0),
                    key_code: b.le16(1),
                    modifiers: b.u8(3),
                })
            }
            magic::UTF8_TEXT => {
                if rest.is_empty() || rest.len() > MAX_TEXT_LEN {
                    return Err(InputError::TextLength { len: rest.len() });
                }
                let text = std::str::from_utf8(rest).map_err(|_| InputError::InvalidUtf8)?;
                Self::Text(text.to_owned())
            }
            magic::MOUSE_MOVE => {
                let b = body::<4>(magic, rest)?;
                Self::MouseMove {
                    dx: b.be16(0),
                    dy: b.be16(2),
                }
            }
            magic::MOUSE_POSITION => {
                let b = body::<10>(magic, rest)?;
                let position = MousePosition {
                    x: b.be16(0),
                    y: b.be16(2),
                    width_minus_one: b.be16(6).cast_unsigned(),
                    height_minus_one: b.be16(8).cast_unsigned(),
                };
                if position.width_minus_one == 0 || position.height_minus_one == 0 {
                    return Err(InputError::ZeroReferenceSize);
                }
                Self::MousePosition(position)
            }
            magic::MOUSE_BUTTON_DOWN | magic::MOUSE_BUTTON_UP => {
                let b = body::<1>(magic, rest)?;
                Self::MouseButton {
                    action: if magic == magic::MOUSE_BUTTON_DOWN {
                        ButtonAction::Down
                    } else {
                        ButtonAction::Up
                    },
                    button: MouseButton::from_u8(b.u8(0)),
                }
            }
            magic::SCROLL => {
                // The amount is sent twice; both copies are always equal, use the first.
                let b = body::<6>(magic, rest)?;
                Self::Scroll { amount: b.be16(0) }
            }
            magic::HSCROLL => {
                let b = body::<2>(magic, rest)?;
                Self::HScroll { amount: b.be16(0) }
            }
            magic::MULTI_CONTROLLER => {
                // Constant filler words (0x1A, 0x14, 0x9C, 0x55) are not checked, like Sunshine.
                let b = body::<26>(magic, rest)?;
                let controller = b.le16(2);
                if controller >= MAX_CONTROLLERS {
                    return Err(InputError::ControllerNumber { controller });
                }
                Self::Controller(ControllerState {
                    controller,
                    active_mask: b.le16(4),
                    buttons: u32::from(b.le16(8)) | (u32::from(b.le16(22)) << 16),
                    left_trigger: b.u8(10),
                    right_trigger: b.u8(11),
                    left_stick: [b.le16(12).cast_signed(), b.le16(14).cast_signed()],
                    right_stick: [b.le16(16).cast_signed(), b.le16(18).cast_signed()],
                })
            }
            magic::ENABLE_HAPTICS => {
                body::<2>(magic, rest)?;
                Self::EnableHaptics
            }
            magic::TOUCH => {
                let b = body::<28>(magic, rest)?;
                Self::Touch(TouchEvent {
                    event_type: TouchEventType::from_u8(b.u8(0)),
                    rotation: b.le16(2),
                    pointer_id: b.le32(4),
                    x: b.f32(8),
                    y: b.f32(12),
                    pressure_or_distance: b.f32(16),
                    contact_area_major: b.f32(20),
                    contact_area_minor: b.f32(24),
                })
            }
            magic::PEN => {
                let b = body::<28>(magic, rest)?;
                Self::Pen(PenEvent {
                    event_type: TouchEventType::from_u8(b.u8(0)),
                    tool: PenTool::from_u8(b.u8(1)),
                    buttons: b.u8(2),
                    x: b.f32(4),
                    y: b.f32(8),
                    pressure_or_distance: b.f32(12),
                    rotation: b.le16(16),
                    tilt: b.u8(18),
                    contact_area_major: b.f32(20),
                    contact_area_minor: b.f32(24),
                })
            }
            magic::CONTROLLER_ARRIVAL => {
                let b = body::<8>(magic, rest)?;
                Self::ControllerArrival(ControllerArrival {
                    controller: controller_u8(b.u8(0))?,
                    controller_type: ControllerType::from_u8(b.u8(1)),
                    capabilities: b.le16(2),
                    supported_buttons: b.le32(4),
                })
            }
            magic::CONTROLLER_TOUCH => {
                let b = body::<20>(magic, rest)?;
                Self::ControllerTouch(ControllerTouch {
                    controller: controller_u8(b.u8(0))?,
                    event_type: TouchEventType::from_u8(b.u8(1)),
                    touchpad_index: b.u8(3),
                    pointer_id: b.le32(4),
                    x: b.f32(8),
                    y: b.f32(12),
                    pressure: b.f32(16),
                })
            }
            magic::CONTROLLER_MOTION => {
                let b = body::<16>(magic, rest)?;
                Self::ControllerMotion(ControllerMotion {
                    controller: controller_u8(b.u8(0))?,
                    motion_type: MotionType::from_u8(b.u8(1)),
                    x: b.f32(4),
                    y: b.f32(8),
                    z: b.f32(12),
                })
            }
            magic::CONTROLLER_BATTERY => {
                let b = body::<4>(magic, rest)?;
                Self::ControllerBattery(ControllerBattery {
                    controller: controller_u8(b.u8(0))?,
                    state: BatteryState::from_u8(b.u8(1)),
                    percent: b.u8(2),
                })
            }
            other => Self::Unknown {
                magic: other,
                len: rest.len(),
            },
        })
    }

    /// The packet's magic.
    pub fn magic(&self) -> u32 {
        match self {
            Self::Keyboard(k) => match k.action {
                ButtonAction::Down => magic::KEY_DOWN,
                ButtonAction::Up => magic::KEY_UP,
            },
            Self::Text(_) => magic::UTF8_TEXT,
            Self::MouseMove { .. } => magic::MOUSE_MOVE,
            Self::MousePosition(_) => magic::MOUSE_POSITION,
            Self::MouseButton { action, .. } => match action {
                ButtonAction::Down => magic::MOUSE_BUTTON_DOWN,
                ButtonAction::Up => magic::MOUSE_BUTTON_UP,
            },
            Self::Scroll { .. } => magic::SCROLL,
            Self::HScroll { .. } => magic::HSCROLL,
            Self::Controller(_) => magic::MULTI_CONTROLLER,
            Self::ControllerArrival(_) => magic::CONTROLLER_ARRIVAL,
            Self::EnableHaptics => magic::ENABLE_HAPTICS,
            Self::Touch(_) => magic::TOUCH,
            Self::Pen(_) => magic::PEN,
            Self::ControllerTouch(_) => magic::CONTROLLER_TOUCH,
            Self::ControllerMotion(_) => magic::CONTROLLER_MOTION,
            Self::ControllerBattery(_) => magic::CONTROLLER_BATTERY,
            Self::Unknown { magic, .. } => *magic,
        }
    }

    /// Encode as the client does, `size` and `magic` included (the `0x0206` payload).
    ///
    /// Values the decoder rejects (empty text, zero reference size, controller > 15) are
    /// encoded anyway, so tests can produce them. [`InputEvent::Unknown`] gets a zero body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.magic().to_le_bytes());
        let le16 = |out: &mut Vec<u8>, v: u16| out.extend_from_slice(&v.to_le_bytes());
        let le32 = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
        let be16 = |out: &mut Vec<u8>, v: i16| out.extend_from_slice(&v.to_be_bytes());
        let f32le = |out: &mut Vec<u8>, v: f32| out.extend_from_slice(&v.to_le_bytes());
        match self {
            Self::Keyboard(k) => {
                out.push(k.flags);
                le16(&mut out, k.key_code);
                out.push(k.modifiers);
                le16(&mut out, 0);
            }
            Self::Text(text) => out.extend_from_slice(text.as_bytes()),
            Self::MouseMove { dx, dy } => {
                be16(&mut out, *dx);
                be16(&mut out, *dy);
            }
            Self::MousePosition(p) => {
                be16(&mut out, p.x);
                be16(&mut out, p.y);
                be16(&mut out, 0);
                be16(&mut out, p.width_minus_one.cast_signed());
                be16(&mut out, p.height_minus_one.cast_signed());
            }
            Self::MouseButton { button, .. } => out.push(button.to_u8()),
            Self::Scroll { amount } => {
                be16(&mut out, *amount);
                be16(&mut out, *amount);
                be16(&mut out, 0);
            }
            Self::HScroll { amount } => be16(&mut out, *amount),
            Self::Controller(c) => {
                le16(&mut out, 0x001A);
                le16(&mut out, c.controller);
                le16(&mut out, c.active_mask);
                le16(&mut out, 0x0014);
                le16(&mut out, (c.buttons & 0xFFFF) as u16); // low half; truncation intended
                out.push(c.left_trigger);
                out.push(c.right_trigger);
                for v in c.left_stick.iter().chain(&c.right_stick) {
                    le16(&mut out, v.cast_unsigned());
                }
                le16(&mut out, 0x009C);
                le16(&mut out, (c.buttons >> 16) as u16); // high half; fits by the shift
                le16(&mut out, 0x0055);
            }
            Self::ControllerArrival(a) => {
                out.push(a.controller);
                out.push(a.controller_type.to_u8());
                le16(&mut out, a.capabilities);
                le32(&mut out, a.supported_buttons);
            }
            Self::EnableHaptics => le16(&mut out, 1),
            Self::Touch(t) => {
                out.push(t.event_type.to_u8());
                out.push(0);
                le16(&mut out, t.rotation);
                le32(&mut out, t.pointer_id);
                for v in [
                    t.x,
                    t.y,
                    t.pressure_or_distance,
                    t.contact_area_major,
                    t.contact_area_minor,
                ] {
                    f32le(&mut out, v);
                }
            }
            Self::Pen(p) => {
                out.extend_from_slice(&[p.event_type.to_u8(), p.tool.to_u8(), p.buttons, 0]);
                for v in [p.x, p.y, p.pressure_or_distance] {
                    f32le(&mut out, v);
                }
                le16(&mut out, p.rotation);
                out.extend_from_slice(&[p.tilt, 0]);
                f32le(&mut out, p.contact_area_major);
                f32le(&mut out, p.contact_area_minor);
            }
            Self::ControllerTouch(t) => {
                out.extend_from_slice(&[t.controller, t.event_type.to_u8(), 0, t.touchpad_index]);
                le32(&mut out, t.pointer_id);
                for v in [t.x, t.y, t.pressure] {
                    f32le(&mut out, v);
                }
            }
            Self::ControllerMotion(m) => {
                out.extend_from_slice(&[m.controller, m.motion_type.to_u8(), 0, 0]);
                for v in [m.x, m.y, m.z] {
                    f32le(&mut out, v);
                }
            }
            Self::ControllerBattery(b) => {
                out.extend_from_slice(&[b.controller, b.state.to_u8(), b.percent, 0]);
            }
            Self::Unknown { len, .. } => out.resize(8 + len, 0),
        }
        // A packet over 4 GiB cannot come from the variants above; saturate rather than panic.
        let size = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
        out[..4].copy_from_slice(&size.to_be_bytes());
        out
    }

    /// The ENet channel and reliability moonlight-common-c uses for this event (reference
    /// §3.2), so a test client behaves like Moonlight.
    ///
    /// The client sends pen hover/move *unreliably only when the pen buttons did not change*
    /// since its previous pen event; that needs state a single event lacks, so pen events are
    /// reported reliable here (a host accepts either).
    pub fn delivery(&self) -> Delivery {
        let by_type = |ch: u8, t: TouchEventType| {
            if t.is_hover_or_move() {
                Delivery::unreliable(ch)
            } else {
                Delivery::reliable(ch)
            }
        };
        match self {
            Self::Keyboard(_) => Delivery::reliable(channel::KEYBOARD),
            Self::Text(_) => Delivery::reliable(channel::UTF8),
            Self::MouseMove { .. }
            | Self::MousePosition(_)
            | Self::MouseButton { .. }
            | Self::Scroll { .. }
            | Self::HScroll { .. } => Delivery::reliable(channel::MOUSE),
            Self::Controller(c) => Delivery::reliable(channel::gamepad(c.controller)),
            Self::ControllerArrival(a) => {
                Delivery::reliable(channel::gamepad(u16::from(a.controller)))
            }
            Self::ControllerBattery(b) => {
                Delivery::reliable(channel::gamepad(u16::from(b.controller)))
            }
            Self::ControllerTouch(t) => {
                by_type(channel::gamepad(u16::from(t.controller)), t.event_type)
            }
            Self::ControllerMotion(m) => {
                let ch = channel::sensor(u16::from(m.controller));
                // The all-zero gyro sample ("stopped moving") must not be lost.
                let zero_gyro = m.motion_type == MotionType::Gyroscope
                    && m.x == 0.0
                    && m.y == 0.0
                    && m.z == 0.0;
                if zero_gyro {
                    Delivery::reliable(ch)
                } else {
                    Delivery::unreliable(ch)
                }
            }
            Self::Touch(t) => by_type(channel::TOUCH, t.event_type),
            Self::Pen(_) => Delivery::reliable(channel::PEN),
            Self::EnableHaptics | Self::Unknown { .. } => Delivery::reliable(channel::GENERIC),
        }
    }

    /// Split `text` into one [`InputEvent::Text`] per code point, as the client sends it.
    pub fn text(text: &str) -> Vec<Self> {
        text.chars().map(|c| Self::Text(c.to_string())).collect()
    }
}
