//! The desktop's clipboard, both ways, for browser viewers (issue 18).
//!
//! One thread with its own X connection and an invisible window:
//! - **desktop → server:** XFIXES tells it whenever a client of the display takes the
//!   CLIPBOARD selection; it asks the new owner for the text (`UTF8_STRING`, else `STRING`)
//!   into a property of its window, reads at most [`MAX_CLIPBOARD_BYTES`] and sends
//!   [`Message::Clipboard`] to the server. Its own ownership is not reported back.
//! - **server → desktop:** [`Clipboard::set`] (main thread, on [`Message::SetClipboard`])
//!   makes the window own CLIPBOARD and PRIMARY with the text; the thread answers other
//!   clients' `SelectionRequest`s for `TARGETS`, `UTF8_STRING`, `TEXT` and `STRING` until
//!   another client takes a selection over (`SelectionClear`).
//!
//! The decisions (which target to answer with what, Latin-1 both ways, the size cap) are the
//! pure functions at the bottom, tested without a display.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use howl_media::protocol::{MAX_CLIPBOARD_BYTES, Message};
use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xfixes::{ConnectionExt as _, SelectionEventMask};
use x11rb::protocol::xproto::{
    self, Atom, AtomEnum, ConnectionExt as _, CreateWindowAux, EventMask, PropMode, Window,
    WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::{COPY_DEPTH_FROM_PARENT, COPY_FROM_PARENT, CURRENT_TIME, NONE};

use crate::error::WorkerError;

/// How long dropping a [`Clipboard`] waits for its thread (woken by a message to its own
/// window) before leaving it to the process exit.
pub const STOP_DEADLINE: Duration = Duration::from_millis(500);

/// The atoms the thread uses, interned once.
#[derive(Debug, Clone, Copy)]
struct Atoms {
    clipboard: Atom,
    primary: Atom,
    targets: Atom,
    utf8_string: Atom,
    text: Atom,
    string: Atom,
    incr: Atom,
    /// The property of our window the owner's text is converted into.
    transfer: Atom,
    /// The type of the message that wakes the thread to stop.
    wake: Atom,
}

/// What the window owns, served to other clients' requests.
#[derive(Debug, Default)]
struct Owned {
    text: Option<Arc<str>>,
    clipboard: bool,
    primary: bool,
}

#[derive(Debug)]
struct Shared {
    conn: RustConnection,
    window: Window,
    atoms: Atoms,
    owned: Mutex<Owned>,
    stop: AtomicBool,
}

/// The clipboard watcher and owner of one desktop; dropping it stops its thread.
#[derive(Debug)]
pub struct Clipboard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Clipboard {
    /// Connects to `display`, watches its CLIPBOARD and sends what apps copy to `out`.
    pub fn start(display: &str, out: SyncSender<Message>) -> Result<Self, WorkerError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            WorkerError::Pipeline(format!("X clipboard on {display}: {what}: {e}"))
        };
        let (conn, root) = crate::xinject::connect_root(display, "X clipboard")?;
        conn.xfixes_query_version(5, 0)
            .map_err(|e| err("XFIXES", &e))?
            .reply()
            .map_err(|e| err("XFIXES", &e))?;
        let intern = |name: &[u8]| -> Result<Atom, WorkerError> {
            Ok(conn
                .intern_atom(false, name)
                .map_err(|e| err("atom", &e))?
                .reply()
                .map_err(|e| err("atom", &e))?
                .atom)
        };
        let atoms = Atoms {
            clipboard: intern(b"CLIPBOARD")?,
            primary: AtomEnum::PRIMARY.into(),
            targets: intern(b"TARGETS")?,
            utf8_string: intern(b"UTF8_STRING")?,
            text: intern(b"TEXT")?,
            string: AtomEnum::STRING.into(),
            incr: intern(b"INCR")?,
            transfer: intern(b"HOWL_CLIPBOARD")?,
            wake: intern(b"HOWL_CLIPBOARD_WAKE")?,
        };
        let window = conn.generate_id().map_err(|e| err("window id", &e))?;
        conn.create_window(
            COPY_DEPTH_FROM_PARENT,
            window,
            root,
            0,
            0,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            COPY_FROM_PARENT,
            &CreateWindowAux::new(),
        )
        .map_err(|e| err("window", &e))?;
        conn.xfixes_select_selection_input(
            window,
            atoms.clipboard,
            SelectionEventMask::SET_SELECTION_OWNER,
        )
        .map_err(|e| err("XFIXES select", &e))?;
        conn.flush().map_err(|e| err("flush", &e))?;
        let shared = Arc::new(Shared {
            conn,
            window,
            atoms,
            owned: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let thread = std::thread::Builder::new()
            .name("howl-clipboard".into())
            .spawn({
                let shared = shared.clone();
                move || {
                    let run = std::panic::AssertUnwindSafe(|| watch(&shared, &out));
                    if std::panic::catch_unwind(run).is_err() {
                        tracing::error!("clipboard thread panicked");
                    }
                }
            })
            .map_err(|e| err("thread", &e))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Makes `text` the desktop's clipboard (CLIPBOARD and PRIMARY): a paste in any app of
    /// the display gets it, until an app copies something else.
    pub fn set(&self, text: String) {
        let s = &self.shared;
        {
            let mut owned = s.owned.lock().unwrap_or_else(|p| p.into_inner());
            *owned = Owned {
                text: Some(text.into()),
                clipboard: true,
                primary: true,
            };
        }
        let r = s
            .conn
            .set_selection_owner(s.window, s.atoms.clipboard, CURRENT_TIME)
            .and_then(|_| {
                s.conn
                    .set_selection_owner(s.window, s.atoms.primary, CURRENT_TIME)
            })
            .and_then(|_| s.conn.flush());
        match r {
            Ok(()) => tracing::debug!("took the desktop's clipboard"),
            Err(e) => tracing::warn!(error = %e, "cannot take the desktop's clipboard"),
        }
    }
}

impl Drop for Clipboard {
    fn drop(&mut self) {
        let s = &self.shared;
        s.stop.store(true, Ordering::Relaxed);
        // An event to our own window (no mask: delivered to its creator, us) wakes the
        // thread's wait; if the display is already gone, its wait has failed anyway.
        let wake = xproto::ClientMessageEvent::new(32, s.window, s.atoms.wake, [0u32; 5]);
        let _ = s
            .conn
            .send_event(false, s.window, EventMask::NO_EVENT, wake)
            .and_then(|_| s.conn.flush());
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + STOP_DEADLINE;
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!("clipboard thread did not stop before the deadline");
            }
        }
    }
}

/// The thread: X events until the display goes away or [`Clipboard`] is dropped.
fn watch(s: &Shared, out: &SyncSender<Message>) {
    let a = s.atoms;
    // The target asked of the current owner; `STRING` is the fallback of a refused UTF-8.
    let mut asked: Option<Atom> = None;
    loop {
        let event = match s.conn.wait_for_event() {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "clipboard: X connection closed");
                return;
            }
        };
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        let r = match event {
            Event::XfixesSelectionNotify(e) if e.selection == a.clipboard => {
                if e.owner == s.window || e.owner == NONE {
                    continue;
                }
                asked = Some(a.utf8_string);
                s.conn
                    .convert_selection(
                        s.window,
                        a.clipboard,
                        a.utf8_string,
                        a.transfer,
                        e.selection_timestamp,
                    )
                    .map(|_| ())
            }
            Event::SelectionNotify(e) if e.requestor == s.window => {
                let Some(target) = asked.take() else { continue };
                if e.property == NONE {
                    // Refused: an owner without UTF-8 may still have Latin-1.
                    if target == a.utf8_string {
                        asked = Some(a.string);
                        s.conn
                            .convert_selection(s.window, a.clipboard, a.string, a.transfer, e.time)
                            .map(|_| ())
                    } else {
                        Ok(())
                    }
                } else {
                    read_transfer(s, out);
                    Ok(())
                }
            }
            Event::SelectionRequest(e) => serve(s, &e),
            Event::SelectionClear(e) => {
                let mut owned = s.owned.lock().unwrap_or_else(|p| p.into_inner());
                if e.selection == a.clipboard {
                    owned.clipboard = false;
                } else if e.selection == a.primary {
                    owned.primary = false;
                }
                if !owned.clipboard && !owned.primary {
                    owned.text = None;
                }
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = r.and_then(|()| s.conn.flush()) {
            tracing::debug!(error = %e, "clipboard: X request failed");
            return;
        }
    }
}

/// Reads the owner's converted text from our window's property and sends it on.
fn read_transfer(s: &Shared, out: &SyncSender<Message>) {
    let a = s.atoms;
    // One 32-bit unit more than the cap, so an over-long text shows as `bytes_after`.
    let units = u32::try_from(MAX_CLIPBOARD_BYTES / 4 + 1).unwrap_or(u32::MAX);
    let reply = s
        .conn
        .get_property(true, s.window, a.transfer, AtomEnum::ANY, 0, units)
        .map_err(|e| e.to_string())
        .and_then(|c| c.reply().map_err(|e| e.to_string()));
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "clipboard: cannot read the copied text");
            return;
        }
    };
    if reply.bytes_after > 0 {
        // Not deleted by the read: the property stays until we delete it.
        let _ = s.conn.delete_property(s.window, a.transfer);
    }
    let latin1 = reply.type_ == a.string;
    let text = match received_text(
        reply.type_ == a.incr,
        reply.format,
        reply.bytes_after,
        latin1,
        &reply.value,
    ) {
        Ok(t) => t,
        Err(why) => {
            tracing::info!(why, "desktop clipboard not forwarded");
            return;
        }
    };
    match out.try_send(Message::Clipboard { text }) {
        Ok(()) => tracing::debug!("desktop clipboard sent to the server"),
        // A full outbox is a server far behind; the next copy will be sent.
        Err(TrySendError::Full(_)) => tracing::warn!("outbox full; desktop clipboard dropped"),
        Err(TrySendError::Disconnected(_)) => {}
    }
}

/// Answers one client's request for our selection, then notifies it (ICCCM 2.2).
fn serve(
    s: &Shared,
    e: &xproto::SelectionRequestEvent,
) -> Result<(), x11rb::errors::ConnectionError> {
    let a = s.atoms;
    let text = {
        let owned = s.owned.lock().unwrap_or_else(|p| p.into_inner());
        let ours = (e.selection == a.clipboard && owned.clipboard)
            || (e.selection == a.primary && owned.primary);
        ours.then(|| owned.text.clone()).flatten()
    };
    // Obsolete clients leave the property None: the target names it then.
    let property = if e.property == NONE {
        e.target
    } else {
        e.property
    };
    let answer = text.as_deref().map(|t| answer(&a, e.target, t));
    let stored = match answer {
        Some(Answer::Targets(targets)) => {
            s.conn.change_property32(
                PropMode::REPLACE,
                e.requestor,
                property,
                AtomEnum::ATOM,
                &targets,
            )?;
            true
        }
        Some(Answer::Bytes { type_, data }) => {
            s.conn
                .change_property8(PropMode::REPLACE, e.requestor, property, type_, &data)?;
            true
        }
        Some(Answer::Refuse) | None => false,
    };
    let notify = xproto::SelectionNotifyEvent {
        response_type: xproto::SELECTION_NOTIFY_EVENT,
        sequence: 0,
        time: e.time,
        requestor: e.requestor,
        selection: e.selection,
        target: e.target,
        property: if stored { property } else { NONE },
    };
    s.conn
        .send_event(false, e.requestor, EventMask::NO_EVENT, notify)?;
    Ok(())
}

/// What to store for a requested target.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Targets(Vec<Atom>),
    Bytes { type_: Atom, data: Vec<u8> },
    Refuse,
}

fn answer(a: &Atoms, target: Atom, text: &str) -> Answer {
    if target == a.targets {
        Answer::Targets(vec![a.targets, a.utf8_string, a.text, a.string])
    } else if target == a.utf8_string || target == a.text {
        // TEXT lets the owner pick the encoding: UTF-8, which every current client reads.
        Answer::Bytes {
            type_: a.utf8_string,
            data: text.as_bytes().to_vec(),
        }
    } else if target == a.string {
        Answer::Bytes {
            type_: a.string,
            data: to_latin1(text),
        }
    } else {
        Answer::Refuse
    }
}

/// The text an owner's reply holds, or why it is not forwarded.
fn received_text(
    incr: bool,
    format: u8,
    bytes_after: u32,
    latin1: bool,
    value: &[u8],
) -> Result<String, &'static str> {
    if incr {
        // Owners switch to incremental transfers only for texts far above the cap.
        return Err("too long (incremental transfer)");
    }
    if bytes_after > 0 || value.len() > MAX_CLIPBOARD_BYTES {
        return Err("too long");
    }
    if format != 8 {
        return Err("not text");
    }
    if latin1 {
        let text: String = value.iter().map(|&b| char::from(b)).collect();
        // Latin-1 above 0x7F doubles in UTF-8.
        if text.len() > MAX_CLIPBOARD_BYTES {
            return Err("too long");
        }
        return Ok(text);
    }
    String::from_utf8(value.to_vec()).map_err(|_| "not UTF-8")
}

/// `STRING` is Latin-1: characters beyond it become `?`.
fn to_latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atoms() -> Atoms {
        Atoms {
            clipboard: 100,
            primary: 1,
            targets: 101,
            utf8_string: 102,
            text: 103,
            string: 31,
            incr: 104,
            transfer: 105,
            wake: 106,
        }
    }

    #[test]
    fn answers_each_target() {
        let a = atoms();
        assert_eq!(
            answer(&a, a.targets, "x"),
            Answer::Targets(vec![101, 102, 103, 31])
        );
        for t in [a.utf8_string, a.text] {
            assert_eq!(
                answer(&a, t, "é€"),
                Answer::Bytes {
                    type_: a.utf8_string,
                    data: "é€".as_bytes().to_vec()
                }
            );
        }
        assert_eq!(
            answer(&a, a.string, "é€"),
            Answer::Bytes {
                type_: a.string,
                data: vec![0xe9, b'?']
            }
        );
        assert_eq!(answer(&a, 999, "x"), Answer::Refuse);
    }

    #[test]
    fn received_texts_are_checked() {
        assert_eq!(received_text(false, 8, 0, false, b"hi"), Ok("hi".into()));
        assert_eq!(received_text(false, 8, 0, true, &[0xe9]), Ok("é".into()));
        assert_eq!(
            received_text(false, 8, 0, false, &[0xc3, 0x28]),
            Err("not UTF-8")
        );
        assert!(received_text(true, 32, 0, false, &[0; 4]).is_err());
        assert_eq!(received_text(false, 8, 1, false, b"x"), Err("too long"));
        assert_eq!(
            received_text(false, 8, 0, false, &vec![b'x'; MAX_CLIPBOARD_BYTES + 1]),
            Err("too long")
        );
        assert!(received_text(false, 8, 0, false, &vec![b'x'; MAX_CLIPBOARD_BYTES]).is_ok());
        // Latin-1 that grows past the cap in UTF-8.
        assert_eq!(
            received_text(false, 8, 0, true, &vec![0xe9; MAX_CLIPBOARD_BYTES]),
            Err("too long")
        );
        assert_eq!(received_text(false, 32, 0, false, b"abcd"), Err("not text"));
    }
}
