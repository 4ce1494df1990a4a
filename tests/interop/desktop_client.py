"""One real Moonlight client streaming a howl desktop running `howl-testapp`, in its own process.

It sends input through moonlight-common-c's own input calls (LiSend*, on the library
moonlight-python loaded), reads the test app's state back from the decoded picture (the strip
of 64 blocks and the red pointer marker, see crates/howl-testapp), measures how long each
input took to show, records the decoded audio around a held mouse button, and prints one JSON
line (`RESULT {...}`).

Modes: `full` (every input kind, audio), `isolation` (one key repeatedly, record every keysym
seen), `hold` (press a key and a button, then leave without releasing them), `check` (just
report the state: after `hold` and a resume, nothing may still be held), `picture` (for apps
other than the test app, such as the built-in "Desktop": wait for a frame that is not one flat
colour and report how varied it is), `gamepad` (send states of gamepad 0: A held, sticks and
triggers moved, then released; touch the ready file; linger), `permission` (driven by the
test through files in --phase-dir: for each `go-N` file, press and release --key and press the
left button, watch the picture, release the button, and write `result-N.json`; `go-N` holds
`reach` (stop watching once both show) or `blocked` (watch the whole window: nothing may
change); a `stop` file ends it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from stream_client import ensure_paired, record_launch_keys  # noqa: E402

# Limelight.h declarations moonlight-python does not make itself.
CDEF = {
    "LiSendKeyboardEvent": "int LiSendKeyboardEvent(short keyCode, char keyAction, char modifiers);",
    "LiSendMousePositionEvent":
        "int LiSendMousePositionEvent(short x, short y, short referenceWidth, short referenceHeight);",
    "LiSendMouseButtonEvent": "int LiSendMouseButtonEvent(char action, int button);",
    "LiSendScrollEvent": "int LiSendScrollEvent(signed char scrollClicks);",
    "LiSendHighResScrollEvent": "int LiSendHighResScrollEvent(short scrollAmount);",
    "LiSendHScrollEvent": "int LiSendHScrollEvent(signed char scrollClicks);",
    "LiSendUtf8TextEvent": "int LiSendUtf8TextEvent(const char *text, unsigned int length);",
    "LiSendMultiControllerEvent":
        "int LiSendMultiControllerEvent(short controllerNumber, short activeGamepadMask, "
        "int buttonFlags, unsigned char leftTrigger, unsigned char rightTrigger, "
        "short leftStickX, short leftStickY, short rightStickX, short rightStickY);",
}
A_FLAG = 0x1000
KEY_DOWN, KEY_UP = b"\x03", b"\x04"
BUTTON_PRESS, BUTTON_RELEASE = b"\x07", b"\x08"
BUTTON_LEFT = 1
MOD_SHIFT = b"\x01"
NO_MOD = b"\x00"
VK_LSHIFT = 0xA0

BLOCK, STRIP_Y = 16, 16
LATENCY_LIMIT = 0.5


def vk(code: int) -> int:
    """moonlight-qt's key code (0x8000 | VK) as the signed short cffi wants."""
    v = 0x8000 | code
    return v - 0x10000


class Reader:
    """Reads the test app's state from the newest decoded frame."""

    def __init__(self, client):
        self.manager = client._stream_manager
        self.last_number = None

    def frame(self, timeout=2.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            f = self.manager.latest_frame
            if f is not None and f.frame_number != self.last_number:
                self.last_number = f.frame_number
                return f
            time.sleep(0.003)  # polling the client's latest-frame slot; it has no event
        return None

    @staticmethod
    def state(data):
        gray = data.astype(np.float32) @ np.array([0.114, 0.587, 0.299], dtype=np.float32)
        bits = 0
        for i in range(64):
            x = i * BLOCK
            v = gray[STRIP_Y + 4:STRIP_Y + 12, x + 4:x + 12].mean()
            bits = (bits << 1) | int(v > 128)
        b, g, r = data[..., 0].astype(int), data[..., 1].astype(int), data[..., 2].astype(int)
        ys, xs = np.nonzero((r > 180) & (g < 90) & (b < 90))
        marker = (float(xs.mean()), float(ys.mean())) if len(xs) > 50 else None
        return {
            "keysym": bits >> 32,
            "presses": (bits >> 16) & 0xFFFF,
            "buttons": (bits >> 8) & 0xFF,
            "wheel": bits & 0xFF,
            "marker": marker,
            "background": float(gray[STRIP_Y - 8, 8:200].mean()),
        }

    def wait(self, pred, timeout=3.0):
        """(state, seconds) of the first new frame satisfying pred, or (last state, None)."""
        t0 = time.monotonic()
        st = None
        self.seen = []
        while time.monotonic() - t0 < timeout:
            f = self.frame(timeout=timeout)
            if f is None:
                break
            self.seen.append((round(time.monotonic() - t0, 3), f.frame_number))
            st = self.state(f.data)
            if pred(st):
                return st, time.monotonic() - t0
        return st, None


class AudioTap:
    """Collects decoded audio with its arrival time."""

    def __init__(self, client):
        self.chunks = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, args=(client,), daemon=True)
        self.thread.start()

    def run(self, client):
        for c in client.audio():
            self.chunks.append((time.monotonic(), c.data))
            if self.stop:
                return

    def peak(self, t0, t1):
        parts = [d for t, d in self.chunks if t0 <= t <= t1]
        return float(np.abs(np.concatenate(parts)).max()) if parts else None


# How long a `blocked` attempt watches the picture for a change that must not come: twice the
# input latency limit the desktop tests hold controlling input to.
BLOCKED_WINDOW = 2 * LATENCY_LIMIT


def attempt(lib, rd, key: int, expect: str) -> dict:
    """Presses and releases `key` and presses the left button; watches the picture until both
    show (`reach`, at most 3 s) or for BLOCKED_WINDOW (`blocked`); releases the button."""
    s0, _ = rd.wait(lambda s: True, 1.0)
    sym = key | 0x20 if 0x41 <= key <= 0x5A else key  # the app shows the lower-case keysym
    t0 = time.monotonic()
    lib.LiSendKeyboardEvent(vk(key), KEY_DOWN, NO_MOD)
    lib.LiSendKeyboardEvent(vk(key), KEY_UP, NO_MOD)
    lib.LiSendMouseButtonEvent(BUTTON_PRESS, BUTTON_LEFT)
    got = {"key": None, "button": None}
    changed = []
    window = 3.0 if expect == "reach" else BLOCKED_WINDOW
    while time.monotonic() - t0 < window:
        f = rd.frame(timeout=0.2)
        if f is None:
            continue
        st = rd.state(f.data)
        dt = round(time.monotonic() - t0, 3)
        if (st["presses"], st["keysym"], st["buttons"]) != (s0["presses"], s0["keysym"], s0["buttons"]):
            changed.append({"t": dt, "presses": st["presses"], "keysym": st["keysym"],
                            "buttons": st["buttons"]})
        if got["key"] is None and st["keysym"] == sym and st["presses"] == (s0["presses"] + 1) % 0x10000:
            got["key"] = dt
        if got["button"] is None and st["buttons"] == 1:
            got["button"] = dt
        if expect == "reach" and None not in got.values():
            break
    lib.LiSendMouseButtonEvent(BUTTON_RELEASE, BUTTON_LEFT)
    if got["button"] is not None:
        rd.wait(lambda s: s["buttons"] == 0, 3.0)
    return {"expect": expect, "before": s0, "key_at": got["key"], "button_at": got["button"],
            "changes": changed[:20], "watched": round(time.monotonic() - t0, 3)}


def run_permission_phases(lib, rd, args) -> None:
    """The `permission` mode: one attempt per `go-N` file the test writes, until `stop`."""
    from pathlib import Path
    d = Path(args.phase_dir)
    n = 1
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (d / "stop").exists():
            return
        go = d / f"go-{n}"
        if not go.exists():
            rd.frame(timeout=0.05)  # keep reading frames while waiting for the test
            continue
        res = attempt(lib, rd, args.key, go.read_text().strip())
        tmp = d / f"result-{n}.tmp"
        tmp.write_text(json.dumps(res))
        tmp.rename(d / f"result-{n}.json")
        n += 1
    raise RuntimeError("permission mode: the test never said stop")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--api-port", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--config-dir", required=True)
    ap.add_argument("--app", default="Test App")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--mode", choices=["full", "isolation", "hold", "check", "picture", "gamepad",
                                       "permission"], default="full")
    ap.add_argument("--phase-dir", help="permission mode: where go-N / result-N.json / stop live")
    ap.add_argument("--keys-file", help="write the session's AES key and IV (hex) here, so a test "
                    "can scan the server's output for them")
    ap.add_argument("--key", type=lambda s: int(s, 0), default=0x41, help="VK for isolation")
    ap.add_argument("--seconds", type=float, default=4.0, help="isolation duration")
    ap.add_argument("--ready-file", help="touched once streaming (for tests that then act)")
    ap.add_argument("--linger", type=float, default=0.0, help="keep streaming this long at the end")
    ap.add_argument("--no-quit", action="store_true")
    ap.add_argument("--resume", action="store_true",
                    help="resume the app this client left running (as Moonlight does)")
    ap.add_argument("--probe-key", action="store_true",
                    help="check mode: also press A and report the keysym it made")
    args = ap.parse_args()

    from moonlight_python import MoonlightClient
    if args.keys_file:
        record_launch_keys(args.keys_file)
    out: dict = {"ok": False}
    client = MoonlightClient(args.config_dir)
    try:
        server = ensure_paired(client, args)
        if args.resume:
            # moonlight-python asks /serverinfo over HTTPS (where the host says which app this
            # client runs, so that it resumes instead of launching) only with the host's
            # certificate pinned, which a new process of an already paired client lacks. Pin
            # the one the host presents (loopback: nobody else can answer).
            import ssl
            pem = ssl.get_server_certificate(("127.0.0.1", server.https_port)).encode()
            server.server_cert_pem = pem
            client._http.server_cert_pem = pem
        client.start_stream(args.app, args.width, args.height, args.fps, 6000, "h264",
                            ready_timeout=20)
        session = client._session
        for name, decl in CDEF.items():
            try:
                getattr(session._lib, name)
            except AttributeError:
                session._ffi.cdef(decl)
        lib = session._lib
        rd = Reader(client)
        first = rd.frame(timeout=10)
        if first is None:
            raise RuntimeError("no frame after start")
        out["shape"] = list(first.data.shape)
        if args.mode == "picture":
            # Any app: wait (bounded) for a picture with content, not a flat colour.
            deadline = time.monotonic() + 15
            f = first
            while True:
                px = f.data.reshape(-1, f.data.shape[-1])
                colours = len(np.unique(px[::7], axis=0))
                out["picture"] = {"std": float(f.data.std()), "colours": colours,
                                  "frame_number": f.frame_number}
                if (out["picture"]["std"] > 5 and colours > 2) or time.monotonic() > deadline:
                    break
                f = rd.frame(timeout=max(0.1, deadline - time.monotonic())) or f
            if args.ready_file:
                open(args.ready_file, "w").close()
            if args.linger:
                time.sleep(args.linger)
            out["ok"] = True
            return 0  # the `finally` below stops the stream and prints the result
        # The strip is up once the background around it is the app's grey.
        st, _ = rd.wait(lambda s: 150 < s["background"] < 230, timeout=10)
        out["initial"] = st
        if args.ready_file:
            open(args.ready_file, "w").close()
        lat: dict = {}
        out["latency"] = lat
        w, h = args.width, args.height

        def act(name, send, pred, timeout=3.0):
            out.setdefault("sent_at", {})[name] = time.time()
            send()
            s, t = rd.wait(pred, timeout)
            lat[name] = None if t is None else round(t, 3)
            out.setdefault("frames_seen", {})[name] = rd.seen
            out.setdefault("states", {})[name] = s
            return s

        def probe_key(name):
            """Presses and releases A without modifiers; the state shows the keysym X made of
            it: 0x41 (A) while a Shift is held on the desktop, 0x61 (a) otherwise."""
            p0 = rd.wait(lambda s: True, 1.0)[0]["presses"]
            act(name, lambda: (lib.LiSendKeyboardEvent(vk(0x41), KEY_DOWN, NO_MOD),
                               lib.LiSendKeyboardEvent(vk(0x41), KEY_UP, NO_MOD)),
                lambda s: s["presses"] == (p0 + 1) % 0x10000)

        if args.mode == "full":
            p0 = st["presses"]
            act("key", lambda: (lib.LiSendKeyboardEvent(vk(0x41), KEY_DOWN, NO_MOD),
                                lib.LiSendKeyboardEvent(vk(0x41), KEY_UP, NO_MOD)),
                lambda s: s["keysym"] == 0x61 and s["presses"] == p0 + 1)
            act("shift_key", lambda: (lib.LiSendKeyboardEvent(vk(VK_LSHIFT), KEY_DOWN, NO_MOD),
                                      lib.LiSendKeyboardEvent(vk(0x42), KEY_DOWN, MOD_SHIFT),
                                      lib.LiSendKeyboardEvent(vk(0x42), KEY_UP, MOD_SHIFT),
                                      lib.LiSendKeyboardEvent(vk(VK_LSHIFT), KEY_UP, NO_MOD)),
                lambda s: s["keysym"] == 0x42)
            for name, text, sym in (("text_latin1", "é", 0xE9), ("text_unicode", "€", 0x10020AC)):
                b = text.encode()
                act(name, lambda b=b: lib.LiSendUtf8TextEvent(b, len(b)),
                    lambda s, sym=sym: s["keysym"] == sym)
            tx, ty = w // 4, h // 3

            def near(s, x, y):
                return s["marker"] is not None and abs(s["marker"][0] - x) <= 4 \
                    and abs(s["marker"][1] - y) <= 4
            act("mouse_absolute", lambda: lib.LiSendMousePositionEvent(tx, ty, w, h),
                lambda s: near(s, tx, ty))
            act("mouse_relative", lambda: session._lib.LiSendMouseMoveEvent(40, 30),
                lambda s: near(s, tx + 40, ty + 30))
            w0 = out["states"]["mouse_relative"]["wheel"]
            act("scroll", lambda: lib.LiSendScrollEvent(1), lambda s: s["wheel"] == (w0 + 1) % 256)
            act("scroll_high_res", lambda: (lib.LiSendHighResScrollEvent(60),
                                            lib.LiSendHighResScrollEvent(60)),
                lambda s: s["wheel"] == (w0 + 2) % 256)
            act("hscroll", lambda: lib.LiSendHScrollEvent(-1),
                lambda s: s["wheel"] == (w0 + 3) % 256)
            tap = AudioTap(client)
            time.sleep(1.0)  # a second of audio before the press: the app must be silent
            t_press = time.monotonic()
            act("button_down", lambda: lib.LiSendMouseButtonEvent(BUTTON_PRESS, BUTTON_LEFT),
                lambda s: s["buttons"] == 1)
            time.sleep(1.5)  # hold the button: the tone plays meanwhile
            t_release = time.monotonic()
            act("button_up", lambda: lib.LiSendMouseButtonEvent(BUTTON_RELEASE, BUTTON_LEFT),
                lambda s: s["buttons"] == 0)
            time.sleep(0.3)
            tap.stop = True
            out["audio_peak_before"] = tap.peak(t_press - 0.9, t_press - 0.1)
            out["audio_peak_held"] = tap.peak(t_press + 0.5, t_release)
            out["audio_chunks"] = len(tap.chunks)
        elif args.mode == "isolation":
            seen, sent = set(), 0
            t_end = time.monotonic() + args.seconds
            while time.monotonic() < t_end:
                lib.LiSendKeyboardEvent(vk(args.key), KEY_DOWN, NO_MOD)
                lib.LiSendKeyboardEvent(vk(args.key), KEY_UP, NO_MOD)
                sent += 1
                deadline = time.monotonic() + 0.3
                while time.monotonic() < deadline:
                    f = rd.frame(timeout=0.3)
                    if f is not None:
                        seen.add(rd.state(f.data)["keysym"])
            st, _ = rd.wait(lambda s: True, 1.0)
            out["seen_keysyms"] = sorted(seen)
            out["sent"] = sent
            out["final"] = st
        elif args.mode == "hold":
            # The app shows the last key pressed: Shift_L (0xFFE1) once the press arrived.
            act("key_held", lambda: lib.LiSendKeyboardEvent(vk(VK_LSHIFT), KEY_DOWN, NO_MOD),
                lambda s: s["keysym"] == 0xFFE1)
            # Shift is held on the desktop: a plain A reads as upper case.
            probe_key("shifted_key")
            act("button_held", lambda: lib.LiSendMouseButtonEvent(BUTTON_PRESS, BUTTON_LEFT),
                lambda s: s["buttons"] == 1)
        elif args.mode == "gamepad":
            # What moonlight-common-c answered for each state (0: queued for the host).
            results = []
            for i in range(10):
                pressed = i % 2 == 0
                results.append(lib.LiSendMultiControllerEvent(
                    0, 1, A_FLAG if pressed else 0, 255 if pressed else 0, 0,
                    1000 * i, -1000 * i, 0, 32767 if pressed else 0))
                time.sleep(0.05)  # distinct states, not one coalesced burst
            out["gamepad_send_results"] = results
            if args.ready_file:
                open(args.ready_file, "w").close()
        elif args.mode == "permission":
            run_permission_phases(lib, rd, args)
        elif args.mode == "check":
            st, _ = rd.wait(lambda s: True, 1.0)
            out["final"] = st
            if args.probe_key:
                probe_key("probe_key")
        if args.linger:
            time.sleep(args.linger)
        out["ok"] = True
    except BaseException as e:  # noqa: BLE001
        out["error"] = repr(e)
    finally:
        try:
            client.stop_stream()
        except Exception:  # noqa: BLE001
            pass
        if not args.no_quit:
            try:
                client.quit_app()
            except Exception as e:  # noqa: BLE001
                out["quit_error"] = repr(e)
        # In `finally`: the picture mode returns early from the `try`.
        print("RESULT " + json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
