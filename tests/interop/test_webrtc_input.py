"""Issue 18, input side: the clipboard both ways, gamepads and pointer lock, from a real
browser on /play.

Headless Chromium (driven by chromium-driver, like test_webrtc.py) plays the Test App's
desktop. The desktop's clipboard is set and read with `xclip` on the desktop's own display
(its DISPLAY and X cookie read from the app's environment); the page's paste is a real
`paste` event carrying a DataTransfer, through the page's own handler. Headless Chromium has
no gamepad: the page's test hook feeds Gamepad-like states into the same send path
`navigator.getGamepads()` takes, and the worker's log shows them arriving as typed
controller states (a uinput pad where /dev/uinput exists; the once-only "cannot create"
line and the dropped count where it does not). Under pointer lock a relative move shifts the
app's pointer marker in the video by exactly that much, and a real Ctrl+V sends the
browser's clipboard before the key.

Synchronisation is by WebDriverWait and API/log conditions only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid

import pytest

from conftest import needs_xvfb, wait_for, wait_until
from test_webrtc import browser, descendants, open_watch, sessions, wait  # noqa: F401

pytestmark = needs_xvfb

PLAY = "/play/Test%20App?width=640&height=360&fps=30"


def xclip() -> str:
    path = shutil.which("xclip")
    if not path:
        pytest.skip("the clipboard test needs xclip (apt-get install xclip)")
    return path


def desktop_env(worker_pid: int) -> dict:
    """DISPLAY and XAUTHORITY of the desktop the worker runs (from its app's environment)."""
    def find():
        for pid in descendants(worker_pid):
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            except OSError:
                continue
            if b"DISPLAY" in env and b"XAUTHORITY" in env:
                return {"DISPLAY": env[b"DISPLAY"].decode(),
                        "XAUTHORITY": env[b"XAUTHORITY"].decode()}
        return None
    return wait_for(find, 20, "the desktop app's DISPLAY")


def desktop_clipboard(env: dict, selection="clipboard") -> str | None:
    r = subprocess.run([xclip(), "-o", "-selection", selection], env={**os.environ, **env},
                       capture_output=True, timeout=10)
    return r.stdout.decode() if r.returncode == 0 else None


def copy_in_desktop(env: dict, text: str) -> None:
    # xclip forks and keeps owning the selection until another client takes it.
    subprocess.run([xclip(), "-i", "-selection", "clipboard"], input=text.encode(),
                   env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=10, check=True)


PASTE = """
const dt = new DataTransfer();
dt.setData("text/plain", arguments[0]);
window.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, cancelable: true }));
"""


def paste(d, text: str) -> None:
    d.execute_script(PASTE, text)


def desktop_howl(howl_factory, tmp_path, env=None):
    """A howl with the test app as "Test App" (as test_desktop's), and `env` on top."""
    from test_desktop import app_bin
    cfg = tmp_path / "howl.toml"
    cfg.write_text(f'[[apps]]\ntitle = "Test App"\nkind = "process"\n'
                   f'command = {json.dumps(app_bin())}\nargs = []\n')
    return howl_factory(env=env, extra_args=["--config", str(cfg)])


def play(d, h, path=PLAY):
    open_watch(d, h, {}, 10, path=path)
    [lobby] = h.api("GET", "/api/v1/lobbies")[1]
    [sess] = sessions(h)
    return lobby, sess


def test_clipboard_crosses_both_ways_and_a_view_only_paste_changes_nothing(
        howl_factory, browser, tmp_path):  # noqa: F811
    xclip()
    d = browser
    h = desktop_howl(howl_factory, tmp_path)
    lobby, sess = play(d, h)
    env = desktop_env(lobby["worker_pid"])

    # Desktop -> page: an app of the desktop copies; the page has it.
    copied = f"from the desktop {uuid.uuid4()} é€"
    copy_in_desktop(env, copied)
    wait(d, lambda d: d.execute_script("return window.howlWatch.clipboard") == copied,
         "the desktop's copy in the page", h)
    assert d.execute_script(
        "return document.getElementById('clipboard').textContent") == copied

    # Page -> desktop: a paste in the page becomes the desktop's CLIPBOARD and PRIMARY.
    pasted = f"from the page {uuid.uuid4()}\nline 2 ü"
    paste(d, pasted)
    assert wait_until(lambda: desktop_clipboard(env) == pasted, 20), desktop_clipboard(env)
    assert desktop_clipboard(env, "primary") == pasted
    # The desktop's new owner is howl itself: nothing is echoed back to the page.
    assert d.execute_script("return window.howlWatch.clipboard") == copied

    # View only: the paste is dropped and counted, the desktop's clipboard stays.
    st, _ = h.api("PUT", f"/api/v1/sessions/{sess['id']}/permission", {"permission": "view"})
    assert st == 200
    dropped = sessions(h)[0]["input_dropped"]
    paste(d, "a view-only paste")
    assert wait_until(lambda: sessions(h)[0]["input_dropped"] == dropped + 1, 20), sessions(h)
    assert desktop_clipboard(env) == pasted

    # Control again: the next copy reaches the page.
    st, _ = h.api("PUT", f"/api/v1/sessions/{sess['id']}/permission", {"permission": None})
    assert st == 200
    again = f"again {uuid.uuid4()}"
    copy_in_desktop(env, again)
    wait(d, lambda d: d.execute_script("return window.howlWatch.clipboard") == again,
         "the next copy in the page", h)


def test_clipboard_off_keeps_page_and_desktop_apart(howl_factory, browser, tmp_path):  # noqa: F811
    xclip()
    d = browser
    # The setting off, from the environment like every key.
    h = desktop_howl(howl_factory, tmp_path, env={"HOWL_CLIPBOARD": "false"})
    lobby, sess = play(d, h)
    env = desktop_env(lobby["worker_pid"])
    copy_in_desktop(env, "kept in the desktop")
    paste(d, "kept in the page")
    assert wait_until(lambda: sessions(h)[0]["input_dropped"] == 1, 20), sessions(h)
    assert desktop_clipboard(env) == "kept in the desktop"
    # Nothing came to the page either (the copy went to the server before or while the
    # paste was counted: a leak would have arrived first in almost every run).
    assert d.execute_script("return window.howlWatch.clipboard") is None


def pad(index=0, pressed=(), axes=(0.0, 0.0, 0.0, 0.0), triggers=(0.0, 0.0)):
    buttons = [{"pressed": n in pressed, "value": 1.0 if n in pressed else 0.0}
               for n in range(17)]
    buttons[6] = {"pressed": triggers[0] > 0.1, "value": triggers[0]}
    buttons[7] = {"pressed": triggers[1] > 0.1, "value": triggers[1]}
    return {"index": index, "connected": True, "buttons": buttons, "axes": list(axes)}


FEED = "window.howlWatch.feedGamepads(arguments[0])"


def test_browser_gamepad_arrives_as_controller_input(howl_factory, browser, tmp_path):  # noqa: F811
    if os.path.exists("/dev/uinput"):
        pytest.skip("/dev/uinput exists here: test_browser_gamepad_becomes_a_uinput_pad "
                    "covers it")
    d = browser
    h = desktop_howl(howl_factory, tmp_path)
    lobby, sess = play(d, h)
    events = sessions(h)[0]["input_events"]
    feed = FEED

    # Arrival + first state (2 events), an unchanged state (not sent), a change (1), the
    # page losing focus (the pad at rest: 1), gone (1).
    d.execute_script(feed, [pad(pressed={0}, axes=(0.5, -1.0, 0.0, 0.0))])
    d.execute_script(feed, [pad(pressed={0}, axes=(0.5, -1.0, 0.0, 0.0))])
    d.execute_script(feed, [pad(pressed={1}, triggers=(0.0, 0.75))])
    d.execute_script("window.dispatchEvent(new Event('blur'))")
    d.execute_script(feed, [])
    assert wait_until(lambda: sessions(h)[0]["input_events"] == events + 5, 20), sessions(h)
    assert sessions(h)[0]["input_dropped"] == 0
    # The worker got the states as controller input: it tried to make a pad once (there is
    # no uinput here), and counts the three connected states it had to drop when it stops.
    wait_for(lambda: "cannot create a virtual gamepad" in h.log(), 20,
             lambda: f"the worker's attempt at a pad:\n{h.log()[-3000:]}")
    st, _ = h.api("DELETE", f"/api/v1/lobbies/{lobby['id']}")
    assert st == 204, st
    line = wait_for(lambda: next((l for l in h.log().splitlines()
                                  if "gamepad states dropped during this stream" in l), None),
                    20, "the worker's dropped-states count")
    assert re.search(r"dropped\W*=\W*3\b", re.sub(r"\x1b\[[0-9;]*m", "", line)), line
    assert h.log().count("cannot create a virtual gamepad") == 1


def test_browser_gamepad_becomes_a_uinput_pad(howl_factory, browser, tmp_path):  # noqa: F811
    from test_desktop import proc_input_devices
    if not os.path.exists("/dev/uinput"):
        pytest.skip("no /dev/uinput on this machine: the browser's pad is not injected "
                    "(test_browser_gamepad_arrives_as_controller_input covers its way there)")
    d = browser
    h = desktop_howl(howl_factory, tmp_path)
    play(d, h)
    d.execute_script(FEED, [pad(pressed={0})])
    wait_for(lambda: 'Name="howl gamepad 0"' in proc_input_devices(), 10,
             "the browser's pad as a uinput device")
    d.execute_script(FEED, [])
    wait_for(lambda: 'Name="howl gamepad 0"' not in proc_input_devices(), 10,
             "the pad unplugged")
    assert "virtual gamepad created" in h.log()



# The centre of the test app's red pointer marker in the page's video, in video pixels.
MARKER = """
const v = document.getElementById("video");
if (!v || v.videoWidth === 0) return null;
const w = v.videoWidth, h = v.videoHeight;
const c = document.createElement("canvas");
c.width = w; c.height = h;
const g = c.getContext("2d", { willReadFrequently: true });
g.drawImage(v, 0, 0, w, h);
const px = g.getImageData(0, 0, w, h).data;
let n = 0, sx = 0, sy = 0;
for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
  const i = 4 * (y * w + x);
  if (px[i] > 170 && px[i + 1] < 90 && px[i + 2] < 90) { n++; sx += x; sy += y; }
}
return n > 100 ? [sx / n, sy / n] : null;
"""

# A pointer move as the locked page gets it (a mouse has no position then).
LOCKED_MOVE = """
document.getElementById("video").dispatchEvent(new PointerEvent("pointermove",
  { movementX: arguments[0], movementY: arguments[1], bubbles: true }));
"""


def test_pointer_lock_moves_the_desktop_pointer_relatively(howl_factory, browser,  # noqa: F811
                                                            tmp_path):
    from selenium.webdriver.common.by import By
    d = browser
    h = desktop_howl(howl_factory, tmp_path)
    play(d, h)
    d.find_element(By.ID, "lock").click()
    locked = "return document.pointerLockElement === document.getElementById('video')"
    if not wait_until(lambda: d.execute_script(locked), 5):
        pytest.skip("this headless Chromium grants no pointer lock")
    x0, y0 = wait(d, lambda d: d.execute_script(MARKER), "the app's pointer marker", h)
    # Away from the edges the pointer would stop at (the desktop is 640x360, as the video).
    dx = 60 if x0 < 320 else -60
    dy = 40 if y0 < 180 else -40
    d.execute_script(LOCKED_MOVE, dx, dy)
    x1, y1 = wait(d, lambda d: (lambda m: m if m and abs(m[0] - x0 - dx) < 3
                                and abs(m[1] - y0 - dy) < 3 else False)(
                                    d.execute_script(MARKER)),
                  f"the marker moved by ({dx}, {dy}) from ({x0:.0f}, {y0:.0f})", h)
    # Unlocked again (Esc, or the page's shortcut): positions are absolute once more.
    d.execute_script("document.exitPointerLock()")
    wait(d, lambda d: not d.execute_script(locked), "the pointer unlocked", h)
    print(f"pointer lock: marker ({x0:.0f}, {y0:.0f}) -> ({x1:.0f}, {y1:.0f}) "
          f"for a move of ({dx}, {dy})")


# Records what the page sends on its reliable channel from now on, in `window.sentInput`.
RECORD_SENT = """
const c = window.howlWatch.input;
window.sentInput = [];
const send = c.send.bind(c);
c.send = (m) => { window.sentInput.push(m); send(m); };
"""


def test_ctrl_v_sends_the_pasted_text_before_the_key(howl_factory, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from test_webrtc import DESKTOP_STATE
    xclip()
    d = browser
    h = desktop_howl(howl_factory, tmp_path)
    # The size test_webrtc's DESKTOP_STATE reads the app's picture at.
    lobby, _ = play(d, h, "/play/Test%20App?width=1024&height=768&fps=30")
    env = desktop_env(lobby["worker_pid"])
    text = f"ctrl-v {uuid.uuid4()}"
    # The browser's own clipboard holds the text (as if copied in another tab).
    ok = d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.writeText(arguments[0]).then(() => done(true), () => done(false));",
        text)
    if not ok:
        pytest.skip("this headless Chromium lets the page write no clipboard")
    presses = wait(d, lambda d: (lambda s: s if s and 150 < s["background"] < 230 else False)(
        d.execute_script(DESKTOP_STATE)), "the test app's picture", h)["presses"]
    d.execute_script(RECORD_SENT)
    ActionChains(d).key_down(Keys.CONTROL).send_keys("v").key_up(Keys.CONTROL).perform()
    # The desktop got the text, and then the key (the app saw v pressed once more).
    assert wait_until(lambda: desktop_clipboard(env) == text, 20), desktop_clipboard(env)
    wait(d, lambda d: (lambda s: s if s and s["keysym"] == 0x76 and s["presses"] > presses
                       else False)(d.execute_script(DESKTOP_STATE)), "the v key in the app", h)
    # In that order on the one ordered channel, so an app pastes the new text.
    sent = [json.loads(m) for m in d.execute_script("return window.sentInput")]
    kinds = [(m["k"], m.get("code"), m.get("down")) for m in sent]
    assert kinds.index(("clipboard", None, None)) < kinds.index(("key", "KeyV", True)), kinds
