//! Virtual gamepads through `/dev/uinput`: one per (viewer, controller number), created on the
//! pad's first state, destroyed when the client unplugs it or the viewer leaves. Where
//! `/dev/uinput` is missing (containers, VMs without the module) the worker logs once and
//! counts the dropped states.
//!
//! The ioctl numbers and structs are the kernel's uapi (`linux/uinput.h`, `linux/input.h`).

use howl_media::gamepad::{self, AXES, BUTTONS, EV_ABS, EV_KEY, EV_SYN, PadState};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;

/// Pads one worker keeps at most (16 per client, a few clients per desktop).
const MAX_PADS: usize = 64;
const UINPUT_PATH: &str = "/dev/uinput";

const fn iow(nr: u64, size: usize) -> u64 {
    // _IOW('U', nr, size): direction write (1) << 30 | size << 16 | type << 8 | nr.
    (1 << 30) | ((size as u64) << 16) | ((b'U' as u64) << 8) | nr
}
const fn io(nr: u64) -> u64 {
    ((b'U' as u64) << 8) | nr
}

/// `struct uinput_setup`: `input_id` (bustype, vendor, product, version), name[80], ff max.
#[repr(C)]
struct UinputSetup {
    bustype: u16,
    vendor: u16,
    product: u16,
    version: u16,
    name: [u8; 80],
    ff_effects_max: u32,
}

/// `struct uinput_abs_setup`: code, then `struct input_absinfo`.
#[repr(C)]
struct UinputAbsSetup {
    code: u16,
    value: i32,
    minimum: i32,
    maximum: i32,
    fuzz: i32,
    flat: i32,
    resolution: i32,
}

const UI_DEV_CREATE: u64 = io(1);
const UI_DEV_DESTROY: u64 = io(2);
const UI_DEV_SETUP: u64 = iow(3, std::mem::size_of::<UinputSetup>());
const UI_ABS_SETUP: u64 = iow(4, std::mem::size_of::<UinputAbsSetup>());
const UI_SET_EVBIT: u64 = iow(100, std::mem::size_of::<libc::c_int>());
const UI_SET_KEYBIT: u64 = iow(101, std::mem::size_of::<libc::c_int>());
const UI_SET_ABSBIT: u64 = iow(103, std::mem::size_of::<libc::c_int>());
const BUS_VIRTUAL: u16 = 0x06;
// Microsoft's Xbox 360 pad IDs: games and SDL pick their Xbox layout for them.
const VENDOR: u16 = 0x045e;
const PRODUCT: u16 = 0x028e;

#[allow(unsafe_code)]
fn ioctl(f: &File, req: u64, arg: libc::c_ulong) -> std::io::Result<()> {
    // SAFETY: `req` is one of the uinput requests above; `arg` is an int or points to a live
    // struct of the size the request encodes.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), req as _, arg) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// One virtual pad and the state it shows.
struct Pad {
    file: File,
    state: PadState,
}

impl Pad {
    fn create(name: &str) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags_nonblock()
            .open(UINPUT_PATH)?;
        for ev in [EV_KEY, EV_ABS] {
            ioctl(&file, UI_SET_EVBIT, libc::c_ulong::from(ev))?;
        }
        for &(_, key) in BUTTONS {
            ioctl(&file, UI_SET_KEYBIT, libc::c_ulong::from(key))?;
        }
        for a in AXES {
            ioctl(&file, UI_SET_ABSBIT, libc::c_ulong::from(a.code))?;
            let abs = UinputAbsSetup {
                code: a.code,
                value: 0,
                minimum: a.min,
                maximum: a.max,
                fuzz: a.fuzz,
                flat: a.flat,
                resolution: 0,
            };
            ioctl(&file, UI_ABS_SETUP, &abs as *const _ as libc::c_ulong)?;
        }
        let mut setup = UinputSetup {
            bustype: BUS_VIRTUAL,
            vendor: VENDOR,
            product: PRODUCT,
            version: 1,
            name: [0; 80],
            ff_effects_max: 0,
        };
        let n = name.len().min(79);
        setup.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        ioctl(&file, UI_DEV_SETUP, &setup as *const _ as libc::c_ulong)?;
        ioctl(&file, UI_DEV_CREATE, 0)?;
        Ok(Self {
            file,
            state: PadState::default(),
        })
    }

    fn apply(&mut self, next: &PadState) -> std::io::Result<()> {
        let events = gamepad::transition(&self.state, next);
        let mut buf = Vec::with_capacity(events.len() * 24);
        for e in &events {
            // struct input_event: timeval (the kernel stamps it), type, code, value.
            buf.extend_from_slice(&[0u8; std::mem::size_of::<libc::timeval>()]);
            buf.extend_from_slice(&e.kind.to_ne_bytes());
            buf.extend_from_slice(&e.code.to_ne_bytes());
            buf.extend_from_slice(&e.value.to_ne_bytes());
        }
        debug_assert!(events.last().is_none_or(|e| e.kind == EV_SYN));
        self.file.write_all(&buf)?;
        self.state = *next;
        Ok(())
    }
}

impl Drop for Pad {
    fn drop(&mut self) {
        // Closing the fd destroys the device too; the explicit call only makes it prompt.
        let _ = ioctl(&self.file, UI_DEV_DESTROY, 0);
    }
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}
impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        // Never block the worker's main loop on a full event queue.
        self.custom_flags(libc::O_NONBLOCK)
    }
}

/// The worker's pads.
#[derive(Default)]
pub struct Gamepads {
    pads: HashMap<(u64, u8), Pad>,
    /// Set once uinput turned out unusable: later states are dropped without retrying.
    unavailable: bool,
    /// States dropped because no pad could be made or fed.
    pub dropped: u64,
}

impl Gamepads {
    /// Applies one viewer's pad state.
    pub fn input(&mut self, viewer: u64, controller: u8, connected: bool, state: &PadState) {
        if !connected {
            if self.pads.remove(&(viewer, controller)).is_some() {
                tracing::info!(viewer, controller, "gamepad unplugged; virtual pad removed");
            }
            return;
        }
        if self.unavailable {
            self.dropped += 1;
            return;
        }
        if !self.pads.contains_key(&(viewer, controller)) {
            if self.pads.len() >= MAX_PADS {
                self.dropped += 1;
                tracing::warn!(viewer, controller, "too many gamepads; state dropped");
                return;
            }
            match Pad::create(&format!("howl gamepad {controller}")) {
                Ok(p) => {
                    tracing::info!(viewer, controller, "virtual gamepad created");
                    self.pads.insert((viewer, controller), p);
                }
                Err(e) => {
                    // Once: without uinput every later state would fail the same way.
                    self.unavailable = true;
                    self.dropped += 1;
                    tracing::warn!(error = %e, path = UINPUT_PATH, "cannot create a virtual gamepad; gamepad input is dropped for this desktop");
                    return;
                }
            }
        }
        if let Some(pad) = self.pads.get_mut(&(viewer, controller))
            && let Err(e) = pad.apply(state)
        {
            self.dropped += 1;
            tracing::debug!(viewer, controller, error = %e, "gamepad state not written");
        }
    }

    /// Removes a leaving viewer's pads (games see them unplugged).
    pub fn release(&mut self, viewer: u64) {
        let before = self.pads.len();
        self.pads.retain(|(v, _), _| *v != viewer);
        if self.pads.len() < before {
            tracing::info!(
                viewer,
                removed = before - self.pads.len(),
                "removed a leaving viewer's gamepads"
            );
        }
    }

    /// How many pads exist now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pads.len()
    }
}

impl Drop for Gamepads {
    fn drop(&mut self) {
        if self.dropped > 0 {
            tracing::info!(
                dropped = self.dropped,
                "gamepad states dropped during this stream"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        // Values from linux/uinput.h on x86_64 and aarch64.
        assert_eq!(UI_DEV_CREATE, 0x5501);
        assert_eq!(UI_DEV_DESTROY, 0x5502);
        assert_eq!(UI_DEV_SETUP, 0x405c_5503);
        assert_eq!(UI_ABS_SETUP, 0x401c_5504);
        assert_eq!(UI_SET_EVBIT, 0x4004_5564);
        assert_eq!(UI_SET_KEYBIT, 0x4004_5565);
        assert_eq!(UI_SET_ABSBIT, 0x4004_5567);
    }

    #[test]
    fn without_uinput_states_are_counted_and_dropped_and_unplugs_are_harmless() {
        if std::path::Path::new(UINPUT_PATH).exists() {
            eprintln!("skipped: {UINPUT_PATH} exists here; this test covers its absence");
            return;
        }
        let mut g = Gamepads::default();
        let s = PadState {
            buttons: gamepad::bits::A,
            ..Default::default()
        };
        g.input(1, 0, true, &s);
        g.input(1, 0, true, &s);
        g.input(1, 1, true, &s);
        assert_eq!(g.dropped, 3);
        assert_eq!(g.len(), 0);
        g.input(1, 0, false, &s);
        g.release(1);
        assert_eq!(g.dropped, 3);
    }
}
