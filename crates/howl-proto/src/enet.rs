//! How packets travel over the ENet control connection: the client's channel map and the
//! delivery modes. Shared by [`crate::control`] (control messages) and [`crate::input`] (input
//! packets), which both say where each of their messages goes.

/// ENet channel numbers the client uses (reference part 2 §2.1, "Channel map").
///
/// The host must accept at least [`channel::CHANNEL_COUNT`] channels. A client falls back to
/// channel 0 for any channel beyond the negotiated count, so nothing may depend on the channel a
/// packet arrived on; it is informational (and lets a test client send exactly like Moonlight).
pub mod channel {
    /// Channels the client asks for in its ENet CONNECT (`0x30`).
    pub const CHANNEL_COUNT: usize = 0x30;
    /// Start A/B, periodic ping, FEC status, haptics enable; everything the host sends.
    pub const GENERIC: u8 = 0x00;
    /// IDR requests after start-up, reference-frame invalidation, LTR ACKs.
    pub const URGENT: u8 = 0x01;
    /// Keyboard input.
    pub const KEYBOARD: u8 = 0x02;
    /// Mouse move/position/button/scroll input.
    pub const MOUSE: u8 = 0x03;
    /// Pen input.
    pub const PEN: u8 = 0x04;
    /// Touch input.
    pub const TOUCH: u8 = 0x05;
    /// UTF-8 text input.
    pub const UTF8: u8 = 0x06;
    /// First gamepad channel; pad `n` (0..15) uses `GAMEPAD_BASE + n`.
    pub const GAMEPAD_BASE: u8 = 0x10;
    /// First sensor channel; pad `n` (0..15) motion uses `SENSOR_BASE + n`.
    pub const SENSOR_BASE: u8 = 0x20;

    /// The channel for gamepad `n`'s state, arrival, touchpad and battery packets. Controller
    /// numbers above 15 do not exist in Sunshine mode; they map to [`GENERIC`] rather than
    /// spilling into the sensor range.
    pub fn gamepad(n: u16) -> u8 {
        match u8::try_from(n) {
            Ok(n) if n < 16 => GAMEPAD_BASE + n,
            _ => GENERIC,
        }
    }

    /// The channel for gamepad `n`'s motion packets (see [`gamepad`] for `n > 15`).
    pub fn sensor(n: u16) -> u8 {
        match u8::try_from(n) {
            Ok(n) if n < 16 => SENSOR_BASE + n,
            _ => GENERIC,
        }
    }
}

/// How an ENet packet is sent (reference part 2 §2.1, "ENet packet flags").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reliability {
    /// `ENET_PACKET_FLAG_RELIABLE` (1): almost everything.
    Reliable,
    /// Flags 0: unreliable but sequenced per channel (hover/move, motion).
    Unreliable,
    /// `ENET_PACKET_FLAG_UNSEQUENCED` (2): FEC status reports.
    Unsequenced,
}

impl Reliability {
    /// The ENet packet flag value for this delivery mode.
    pub fn enet_flags(self) -> u32 {
        match self {
            Self::Reliable => 1,
            Self::Unreliable => 0,
            Self::Unsequenced => 2,
        }
    }
}

/// Where and how the client sends a message: lets a test client behave like Moonlight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delivery {
    /// ENet channel id (see [`channel`]).
    pub channel: u8,
    /// ENet reliability.
    pub reliability: Reliability,
}

impl Delivery {
    /// Reliable on `channel`.
    pub const fn reliable(channel: u8) -> Self {
        Self {
            channel,
            reliability: Reliability::Reliable,
        }
    }

    /// Unreliable (sequenced) on `channel`.
    pub const fn unreliable(channel: u8) -> Self {
        Self {
            channel,
            reliability: Reliability::Unreliable,
        }
    }
}
