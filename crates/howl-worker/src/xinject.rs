//! Executes viewers' input on the desktop's X display through XTest.
//!
//! The decisions (VK → keysym, held keys per viewer, scroll accumulation, scaling) are made by
//! `howl_media::xinput::Translator`, one per viewer; this module only turns its
//! [`XAction`]s into XTest requests: keysym → keycode through the server's keyboard map, and a
//! spare (unmapped) keycode bound on the fly for keysyms the map lacks (text, unusual keys).

use std::collections::HashMap;

use howl_media::xinput::{Translator, XAction};
use howl_proto::input::InputEvent;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

use crate::error::WorkerError;

/// Viewers whose input state is tracked at once; a lobby has at most this many members with
/// input. Input from more is dropped (logged once per viewer), never allocated for.
pub const MAX_INPUT_VIEWERS: usize = 64;

// XTest fake event types (the core protocol's event codes).
const KEY_PRESS: u8 = 2;
const KEY_RELEASE: u8 = 3;
const BUTTON_PRESS: u8 = 4;
const BUTTON_RELEASE: u8 = 5;
const MOTION_NOTIFY: u8 = 6;

/// One X connection injecting every viewer's input.
#[derive(Debug)]
pub struct Injector {
    conn: RustConnection,
    root: xproto::Window,
    width: u32,
    height: u32,
    min_keycode: u8,
    per_keycode: u8,
    /// The keyboard map, `per_keycode` keysyms per keycode from `min_keycode`.
    keymap: Vec<u32>,
    /// Keycodes with no keysym at all, usable for binding.
    spare: Vec<u8>,
    next_spare: usize,
    /// Keycode used for each keysym that is down (so the release hits the same key).
    down: HashMap<u32, u8>,
    viewers: HashMap<u64, Translator>,
}

/// A connection to `display` (`:N`) and its first screen's root window: how each of the
/// worker's X clients (input injection, clipboard) starts; `what` names it in errors.
pub(crate) fn connect_root(
    display: &str,
    what: &str,
) -> Result<(RustConnection, x11rb::protocol::xproto::Window), WorkerError> {
    let (conn, screen) = RustConnection::connect(Some(display))
        .map_err(|e| WorkerError::Pipeline(format!("{what} on {display}: connect: {e}")))?;
    let root = conn
        .setup()
        .roots
        .get(screen)
        .map(|s| s.root)
        .ok_or_else(|| WorkerError::Pipeline(format!("{what} on {display}: no screen")))?;
    Ok((conn, root))
}

impl Injector {
    /// Connects to `display` (`:N`) and reads its keyboard map.
    pub fn connect(display: &str, width: u32, height: u32) -> Result<Self, WorkerError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            WorkerError::Pipeline(format!("X input on {display}: {what}: {e}"))
        };
        let (conn, root) = connect_root(display, "X input")?;
        conn.xtest_get_version(2, 2)
            .map_err(|e| err("XTest", &e))?
            .reply()
            .map_err(|e| err("XTest", &e))?;
        let min_keycode = conn.setup().min_keycode;
        let max_keycode = conn.setup().max_keycode;
        let count = max_keycode - min_keycode + 1;
        let map = conn
            .get_keyboard_mapping(min_keycode, count)
            .map_err(|e| err("keyboard map", &e))?
            .reply()
            .map_err(|e| err("keyboard map", &e))?;
        let per_keycode = map.keysyms_per_keycode;
        let spare = (0..count)
            .filter(|&i| {
                let start = usize::from(i) * usize::from(per_keycode);
                map.keysyms
                    .get(start..start + usize::from(per_keycode))
                    .is_some_and(|s| s.iter().all(|&k| k == 0))
            })
            .map(|i| min_keycode + i)
            .collect::<Vec<u8>>();
        tracing::debug!(spare = spare.len(), "X keyboard map read");
        Ok(Self {
            conn,
            root,
            width,
            height,
            min_keycode,
            per_keycode,
            keymap: map.keysyms,
            spare,
            next_spare: 0,
            down: HashMap::new(),
            viewers: HashMap::new(),
        })
    }

    /// Applies one viewer's event.
    pub fn input(&mut self, viewer: u64, event: &InputEvent) {
        if !self.viewers.contains_key(&viewer) && self.viewers.len() >= MAX_INPUT_VIEWERS {
            tracing::warn!(viewer, "too many input viewers; event dropped");
            return;
        }
        let (w, h) = (self.width, self.height);
        let actions = self
            .viewers
            .entry(viewer)
            .or_insert_with(|| Translator::new(w, h))
            .translate(event);
        tracing::debug!(viewer, ?event, ?actions, "input");
        self.run(&actions);
    }

    /// Releases everything `viewer` holds and forgets it.
    pub fn release(&mut self, viewer: u64) {
        if let Some(mut t) = self.viewers.remove(&viewer) {
            let actions = t.release_all();
            if !actions.is_empty() {
                tracing::info!(
                    viewer,
                    released = actions.len(),
                    "released a leaving viewer's keys and buttons"
                );
            }
            self.run(&actions);
        }
    }

    fn run(&mut self, actions: &[XAction]) {
        for a in actions {
            if let Err(e) = self.one(*a) {
                tracing::warn!(error = %e, action = ?a, "XTest request failed");
            }
        }
        if let Err(e) = self.conn.flush() {
            tracing::warn!(error = %e, "X connection flush failed");
        }
    }

    fn fake(
        &self,
        ty: u8,
        detail: u8,
        x: i16,
        y: i16,
    ) -> Result<(), x11rb::errors::ConnectionError> {
        self.conn
            .xtest_fake_input(ty, detail, x11rb::CURRENT_TIME, self.root, x, y, 0)?;
        Ok(())
    }

    fn one(&mut self, action: XAction) -> Result<(), x11rb::errors::ConnectionError> {
        match action {
            XAction::KeyDown { keysym } => {
                let Some(kc) = self.keycode_for(keysym)? else {
                    return Ok(());
                };
                self.down.insert(keysym, kc);
                self.fake(KEY_PRESS, kc, 0, 0)
            }
            XAction::KeyUp { keysym } => {
                let kc = match self.down.remove(&keysym) {
                    Some(kc) => kc,
                    None => match self.find(keysym) {
                        Some(kc) => kc,
                        None => return Ok(()),
                    },
                };
                self.fake(KEY_RELEASE, kc, 0, 0)
            }
            XAction::Type { keysym } => {
                // Unshifted position only: a keysym found in a shifted column would come out as
                // its unshifted sibling without Shift, so bind it to a spare key instead.
                let kc = match self.find_unshifted(keysym) {
                    Some(kc) => kc,
                    None => match self.bind_spare(keysym)? {
                        Some(kc) => kc,
                        None => return Ok(()),
                    },
                };
                self.fake(KEY_PRESS, kc, 0, 0)?;
                self.fake(KEY_RELEASE, kc, 0, 0)
            }
            XAction::ButtonDown { button } => self.fake(BUTTON_PRESS, button, 0, 0),
            XAction::ButtonUp { button } => self.fake(BUTTON_RELEASE, button, 0, 0),
            XAction::MotionAbs { x, y } => self.fake(MOTION_NOTIFY, 0, clamp_i16(x), clamp_i16(y)),
            XAction::MotionRel { dx, dy } => {
                self.fake(MOTION_NOTIFY, 1, clamp_i16(dx), clamp_i16(dy))
            }
        }
    }

    fn keysyms_of(&self, index: usize) -> &[u32] {
        let per = usize::from(self.per_keycode);
        self.keymap
            .get(index * per..(index + 1) * per)
            .unwrap_or(&[])
    }

    fn keycodes(&self) -> usize {
        self.keymap.len() / usize::from(self.per_keycode.max(1))
    }

    fn to_keycode(&self, index: usize) -> Option<u8> {
        u8::try_from(usize::from(self.min_keycode) + index).ok()
    }

    /// A keycode with `keysym` in its first (unshifted) column.
    fn find_unshifted(&self, keysym: u32) -> Option<u8> {
        (0..self.keycodes())
            .find(|&i| self.keysyms_of(i).first() == Some(&keysym))
            .and_then(|i| self.to_keycode(i))
    }

    /// A keycode with `keysym` in any column.
    fn find(&self, keysym: u32) -> Option<u8> {
        self.find_unshifted(keysym).or_else(|| {
            (0..self.keycodes())
                .find(|&i| self.keysyms_of(i).contains(&keysym))
                .and_then(|i| self.to_keycode(i))
        })
    }

    fn keycode_for(&mut self, keysym: u32) -> Result<Option<u8>, x11rb::errors::ConnectionError> {
        match self.find(keysym) {
            Some(kc) => Ok(Some(kc)),
            None => self.bind_spare(keysym),
        }
    }

    /// Binds `keysym` (both columns) to the next spare keycode, round-robin, and returns it.
    /// Round-robin keeps a binding alive for a while, so an app that looks the keysym up late
    /// (after the next character) still finds the right one.
    fn bind_spare(&mut self, keysym: u32) -> Result<Option<u8>, x11rb::errors::ConnectionError> {
        if self.spare.is_empty() {
            tracing::debug!(keysym, "no spare keycode to bind");
            return Ok(None);
        }
        let kc = self.spare[self.next_spare % self.spare.len()];
        self.next_spare = self.next_spare.wrapping_add(1);
        let per = usize::from(self.per_keycode);
        let syms = vec![keysym; per];
        self.conn
            .change_keyboard_mapping(1, kc, self.per_keycode, &syms)?;
        let index = usize::from(kc - self.min_keycode);
        if let Some(slot) = self.keymap.get_mut(index * per..(index + 1) * per) {
            slot.copy_from_slice(&syms);
        }
        Ok(Some(kc))
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        // No stuck keys even if the server never sent ReleaseInput (it died, or Stop came first).
        let viewers: Vec<u64> = self.viewers.keys().copied().collect();
        for v in viewers {
            self.release(v);
        }
    }
}

fn clamp_i16(v: i32) -> i16 {
    // Cannot truncate after the clamp.
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}
