//! `howl-testapp`: the target of howl's desktop end-to-end tests.
//!
//! A full-screen X11 window on `$DISPLAY` that shows:
//!
//! - the keysym of the last key pressed, large, as hex digits (for people);
//! - a strip of 64 black/white 16×16 blocks at the top left (for tests reading decoded frames):
//!   bits 0–31 the last keysym, 32–47 the number of key presses, 48–55 the buttons held
//!   (bit 0 left, 1 middle, 2 right, 3 back, 4 forward), 56–63 the number of wheel clicks
//!   (vertical and horizontal), most significant bit first within each field;
//! - a red 24×24 square centred on the pointer;
//!
//! and plays a 660 Hz tone through `pacat` (PulseAudio, `$PULSE_SERVER`) while any mouse button
//! is held, silence otherwise. `--exit-after SECS` makes it exit by itself (tests of "app
//! exited"); `--outlive-display` makes it stay (idle) when its X display goes away, like a
//! daemon that does not die with its desktop (tests that leftovers are reaped by label).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    ChangeGCAux, ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask, Gcontext, Rectangle,
    Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;

/// Side of one block of the machine-readable strip, in pixels (a multiple of the encoders'
/// 16-pixel macroblocks, so compression keeps each block flat).
const BLOCK: i16 = 16;
/// Top of the strip.
const STRIP_Y: i16 = 16;
/// Side of the pointer marker.
const MARKER: u16 = 24;
/// Background: light grey, bright enough for clients that wait for a non-black first frame.
const BACKGROUND: u32 = 0x00c0_c0c0;
const RED: u32 = 0x00ff_0000;
const BLACK: u32 = 0;
const WHITE: u32 = 0x00ff_ffff;
const TEXT: u32 = 0x0020_2060;
/// Tone frequency while a button is held.
const TONE_HZ: f32 = 660.0;
/// Audio chunk written to pacat per loop: 5 ms at 48 kHz stereo s16.
const CHUNK_FRAMES: usize = 240;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Debug, Default)]
struct State {
    keysym: u32,
    presses: u16,
    buttons: u8,
    wheel: u8,
    pointer: (i16, i16),
}

impl State {
    fn bits(&self) -> u64 {
        (u64::from(self.keysym) << 32)
            | (u64::from(self.presses) << 16)
            | (u64::from(self.buttons) << 8)
            | u64::from(self.wheel)
    }
}

fn main() {
    let outlive_display = std::env::args().any(|a| a == "--outlive-display");
    if let Err(e) = run() {
        eprintln!("howl-testapp: {e}");
        if outlive_display {
            eprintln!("howl-testapp: --outlive-display: staying until killed");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut exit_after = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--exit-after" => {
                let secs: f64 = args.next().ok_or("--exit-after needs SECS")?.parse()?;
                exit_after = Some(Duration::from_secs_f64(secs));
            }
            "--outlive-display" => {} // read in main
            "--help" | "-h" => {
                println!(
                    "usage: howl-testapp [--exit-after SECS] [--outlive-display]   (uses $DISPLAY and $PULSE_SERVER)"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if let Some(d) = exit_after {
        std::thread::spawn(move || {
            std::thread::sleep(d);
            std::process::exit(0);
        });
    }

    let (conn, screen_num) = RustConnection::connect(None)?;
    let screen = conn.setup().roots[screen_num].clone();
    let (w, h) = (screen.width_in_pixels, screen.height_in_pixels);
    let win = conn.generate_id()?;
    conn.create_window(
        screen.root_depth,
        win,
        screen.root,
        0,
        0,
        w,
        h,
        0,
        WindowClass::INPUT_OUTPUT,
        screen.root_visual,
        &CreateWindowAux::new()
            .background_pixel(BACKGROUND)
            .event_mask(
                EventMask::EXPOSURE
                    | EventMask::KEY_PRESS
                    | EventMask::BUTTON_PRESS
                    | EventMask::BUTTON_RELEASE
                    | EventMask::POINTER_MOTION
                    | EventMask::STRUCTURE_NOTIFY,
            ),
    )?;
    conn.map_window(win)?;
    // No window manager may be running: take the focus so key events come to us.
    conn.set_input_focus(
        x11rb::protocol::xproto::InputFocus::POINTER_ROOT,
        win,
        x11rb::CURRENT_TIME,
    )?;
    let gc = conn.generate_id()?;
    conn.create_gc(gc, win, &CreateGCAux::new().foreground(BLACK))?;
    conn.flush()?;

    let tone = Arc::new(AtomicBool::new(false));
    let _player = start_tone(tone.clone());

    let min_keycode = conn.setup().min_keycode;
    let mut st = State {
        pointer: (i16::try_from(w / 2)?, i16::try_from(h / 2)?),
        ..State::default()
    };
    let mut drawn_pointer = st.pointer;
    loop {
        let ev = conn.wait_for_event()?;
        let mut full = false;
        match ev {
            Event::Expose(_) | Event::MapNotify(_) | Event::ConfigureNotify(_) => full = true,
            Event::KeyPress(k) => {
                // Looked up at every press: the host rebinds spare keycodes for text input.
                let map = conn.get_keyboard_mapping(k.detail, 1)?.reply()?;
                let shifted = u16::from(k.state) & 1 != 0;
                let col0 = map.keysyms.first().copied().unwrap_or(0);
                let col1 = map.keysyms.get(1).copied().unwrap_or(0);
                st.keysym = if shifted && col1 != 0 { col1 } else { col0 };
                st.presses = st.presses.wrapping_add(1);
                if std::env::var_os("HOWL_TESTAPP_DEBUG").is_some() {
                    let t = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    eprintln!(
                        "howl-testapp: {:.3} key {} -> keysym {:#x}",
                        t.as_secs_f64(),
                        k.detail,
                        st.keysym
                    );
                }
                let _ = min_keycode;
                full = true;
            }
            Event::ButtonPress(b) => {
                match b.detail {
                    4..=7 => st.wheel = st.wheel.wrapping_add(1),
                    n => st.buttons |= button_bit(n),
                }
                st.pointer = (b.event_x, b.event_y);
            }
            Event::ButtonRelease(b) => {
                st.buttons &= !button_bit(b.detail);
                st.pointer = (b.event_x, b.event_y);
            }
            Event::MotionNotify(m) => st.pointer = (m.event_x, m.event_y),
            _ => continue,
        }
        tone.store(st.buttons != 0, Ordering::Relaxed);
        if full {
            conn.clear_area(false, win, 0, 0, 0, 0)?;
            draw_keysym(&conn, win, gc, st.keysym, w, h)?;
        } else if drawn_pointer != st.pointer {
            // Erase the old marker only.
            let half = i16::try_from(MARKER / 2)?;
            conn.clear_area(
                false,
                win,
                drawn_pointer.0 - half,
                drawn_pointer.1 - half,
                MARKER,
                MARKER,
            )?;
            draw_keysym(&conn, win, gc, st.keysym, w, h)?;
        }
        draw_strip(&conn, win, gc, st.bits())?;
        let half = i16::try_from(MARKER / 2)?;
        fill(
            &conn,
            win,
            gc,
            RED,
            &[Rectangle {
                x: st.pointer.0 - half,
                y: st.pointer.1 - half,
                width: MARKER,
                height: MARKER,
            }],
        )?;
        drawn_pointer = st.pointer;
        conn.flush()?;
    }
}

fn button_bit(button: u8) -> u8 {
    match button {
        1 => 1,
        2 => 2,
        3 => 4,
        8 => 8,
        9 => 16,
        _ => 0,
    }
}

fn fill(
    conn: &RustConnection,
    win: Window,
    gc: Gcontext,
    color: u32,
    r: &[Rectangle],
) -> Result<()> {
    conn.change_gc(gc, &ChangeGCAux::new().foreground(color))?;
    conn.poly_fill_rectangle(win, gc, r)?;
    Ok(())
}

fn draw_strip(conn: &RustConnection, win: Window, gc: Gcontext, bits: u64) -> Result<()> {
    let (mut ones, mut zeros) = (Vec::new(), Vec::new());
    for i in 0..64i16 {
        let r = Rectangle {
            x: i * BLOCK,
            y: STRIP_Y,
            width: BLOCK as u16,
            height: BLOCK as u16,
        };
        if bits >> (63 - i) & 1 == 1 {
            ones.push(r);
        } else {
            zeros.push(r);
        }
    }
    fill(conn, win, gc, WHITE, &ones)?;
    fill(conn, win, gc, BLACK, &zeros)
}

/// 3×5 glyphs of the hex digits, one row per 3 bits (MSB left).
const GLYPHS: [[u8; 5]; 16] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
    [7, 5, 7, 5, 5],
    [6, 5, 6, 5, 6],
    [7, 4, 4, 4, 7],
    [6, 5, 5, 5, 6],
    [7, 4, 7, 4, 7],
    [7, 4, 7, 4, 4],
];

/// The keysym in large hex digits, centred.
fn draw_keysym(
    conn: &RustConnection,
    win: Window,
    gc: Gcontext,
    keysym: u32,
    w: u16,
    h: u16,
) -> Result<()> {
    let digits = format!("{keysym:X}");
    let cell = i16::try_from((w / 40).max(4))?;
    let advance = cell * 4;
    let total = advance * i16::try_from(digits.len())?;
    let x0 = (i16::try_from(w)? - total) / 2;
    let y0 = (i16::try_from(h)? - cell * 5) / 2;
    let mut rects = Vec::new();
    for (n, ch) in digits.chars().enumerate() {
        let Some(d) = ch.to_digit(16) else { continue };
        let glyph = GLYPHS[d as usize];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..3 {
                if bits >> (2 - col) & 1 == 1 {
                    rects.push(Rectangle {
                        x: x0 + i16::try_from(n)? * advance + col * cell,
                        y: y0 + i16::try_from(row)? * cell,
                        width: cell as u16,
                        height: cell as u16,
                    });
                }
            }
        }
    }
    fill(conn, win, gc, TEXT, &rects)
}

/// Plays the tone (or silence) through `pacat` on a thread; `None` when pacat cannot run.
fn start_tone(on: Arc<AtomicBool>) -> Option<Child> {
    let mut child = Command::new("pacat")
        .args([
            "--playback",
            "--raw",
            "--format=s16le",
            "--rate=48000",
            "--channels=2",
            "--latency-msec=20",
            "--client-name=howl-testapp",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| eprintln!("howl-testapp: no tone (pacat: {e})"))
        .ok()?;
    let mut stdin = child.stdin.take()?;
    shrink_pipe(&stdin);
    std::thread::spawn(move || {
        let mut phase = 0f32;
        let step = TONE_HZ * std::f32::consts::TAU / 48_000.0;
        let mut buf = Vec::with_capacity(CHUNK_FRAMES * 4);
        loop {
            buf.clear();
            let playing = on.load(Ordering::Relaxed);
            for _ in 0..CHUNK_FRAMES {
                let v = if playing {
                    // In range by construction: |sin| <= 1.
                    (phase.sin() * 12_000.0) as i16
                } else {
                    0
                };
                phase = (phase + step) % std::f32::consts::TAU;
                buf.extend_from_slice(&v.to_le_bytes());
                buf.extend_from_slice(&v.to_le_bytes());
            }
            // pacat reads as fast as it plays, so this write paces the loop.
            if stdin.write_all(&buf).is_err() {
                eprintln!("howl-testapp: pacat went away; no more tone");
                return;
            }
        }
    });
    Some(child)
}

/// A small pipe keeps the tone's latency low: pacat only drains it as fast as it plays.
#[allow(unsafe_code)]
fn shrink_pipe(stdin: &std::process::ChildStdin) {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor we own, integer arguments only.
    unsafe {
        libc::fcntl(stdin.as_raw_fd(), libc::F_SETPIPE_SZ, 4096);
    }
}
