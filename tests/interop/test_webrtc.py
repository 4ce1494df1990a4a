"""Issue 18 (first slice): a lobby watched from a real browser over WebRTC.

Debian's headless Chromium (driven by chromium-driver through Selenium) opens
`/watch/<lobby>`, signs in with the API token on the page, and receives the lobby's H.264
and Opus over one shared UDP port (WHEP signalling on the management API). The test reads
`getStats()` for decoded frames, draws the video to a canvas to read the test pattern's
frame counter (tests/interop/testpattern.py), and measures the test tone with an
AnalyserNode. The WHEP endpoint's refusals (401, 403, 400 with a reason and nothing
allocated) are checked without a browser.

Synchronisation is by WebDriverWait on conditions only.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import chromium, needs_xvfb, parent_of, wait_until
from testpattern import read_counter

# Generous: a debug build on a shared 2-core machine starts workers slowly.
UI_TIMEOUT = 90
WIDTH, HEIGHT, FPS = 640, 360, 30
FRAMES = 300
TONE_HZ = 440

# A receive-only offer as WebRTC stacks write it, with the H.264 formats given; ICE and DTLS
# attributes are fixed (nothing connects in the refusal tests).
OFFER_HEAD = (
    "v=0\r\n"
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0\r\n"
    "a=msid-semantic: WMS\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF {pts}\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:abcd\r\n"
    "a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
    "a=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 "
    "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n"
    "a=setup:actpass\r\n"
    "a=mid:0\r\n"
    "a=extmap:12 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay\r\n"
    "a=recvonly\r\n"
    "a=rtcp-mux\r\n"
)


def offer(*formats: tuple[int, str, int]) -> str:
    """`formats`: (payload type, profile-level-id, packetization-mode)."""
    sdp = OFFER_HEAD.format(pts=" ".join(str(pt) for pt, _, _ in formats))
    for pt, plid, mode in formats:
        sdp += (f"a=rtpmap:{pt} H264/90000\r\n"
                f"a=rtcp-fb:{pt} nack pli\r\n"
                f"a=fmtp:{pt} level-asymmetry-allowed=1;packetization-mode={mode};"
                f"profile-level-id={plid}\r\n")
    return sdp


CHROMIUM_LIKE = offer((102, "42001f", 1), (127, "42e01f", 1), (123, "4d001f", 1),
                      (112, "64001f", 1))


def whep(h, lobby_id: int, sdp: str, token="default", content_type="application/sdp",
         method="POST", path=None):
    """Calls the WHEP endpoint; returns (status, headers, body text)."""
    url = f"http://127.0.0.1:{h.api_port}{path or f'/api/v1/lobbies/{lobby_id}/whep'}"
    req = urllib.request.Request(url, data=sdp.encode() if sdp is not None else None,
                                 method=method)
    if token == "default":
        token = h.token
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def make_lobby(h, name="web", token="default") -> dict:
    st, lobby = h.api("POST", "/api/v1/lobbies", {
        "name": name, "app": "Test Pattern", "width": WIDTH, "height": HEIGHT, "fps": FPS,
        "bitrate_kbps": 1500}, token=token)
    assert st == 201, lobby
    assert wait_until(lambda: any(
        l["id"] == lobby["id"] and l["worker_pid"] for l in h.api("GET", "/api/v1/lobbies")[1]),
        30), h.log()[-3000:]
    return lobby


def sessions(h) -> list[dict]:
    return h.api("GET", "/api/v1/sessions")[1]


def test_whep_refuses_without_allocating(howl):
    lobby = make_lobby(howl)
    lid = lobby["id"]
    st, hdrs, body = whep(howl, lid, CHROMIUM_LIKE, token=None)
    assert st == 401, body
    st, _, body = whep(howl, lid, CHROMIUM_LIKE, token="not-a-token")
    assert st == 401, body
    # A tenant reaches its own lobbies only.
    st, t = howl.api("POST", "/api/v1/tokens", {"name": "team-a"})
    assert st == 201, t
    st, _, body = whep(howl, lid, CHROMIUM_LIKE, token=t["token"])
    assert st == 403, body
    st, _, body = whep(howl, 999999, CHROMIUM_LIKE)
    assert st == 404, body
    # Malformed offers: 400 with a reason, and no viewer appears.
    for bad in ["hello", "v=0\r\nm=video\r\n", "\x00\xff" * 50, ""]:
        st, _, body = whep(howl, lid, bad)
        assert st == 400 and "error" in body, (bad, st, body)
    st, _, body = whep(howl, lid, CHROMIUM_LIKE, content_type="application/json")
    assert st == 400 and "application/sdp" in body, body
    # No codec the lobby encodes (x264's constrained baseline): refused, naming both sides.
    st, _, body = whep(howl, lid, offer((112, "64001f", 1)))
    assert st == 400, body
    assert "64001f" in body and "packetization-mode 1" in body, body
    st, _, body = whep(howl, lid, offer((127, "42e01f", 0)))
    assert st == 400, body
    assert sessions(howl) == [], "nothing was allocated"
    # A matching offer is answered with SDP and a resource; DELETE ends the viewer.
    st, hdrs, answer = whep(howl, lid, CHROMIUM_LIKE)
    assert st == 201, answer
    assert hdrs["Content-Type"].startswith("application/sdp"), hdrs
    assert "a=ice-lite" in answer and "packetization-mode=1" in answer, answer
    # Frames carry a playout delay of 0 where the offer lists the extension.
    assert "rtp-hdrext/playout-delay" in answer, answer
    location = hdrs["Location"]
    assert location.startswith(f"/api/v1/lobbies/{lid}/whep/"), location
    [s] = sessions(howl)
    assert s["client"].startswith("browser:admin"), s
    st, _, body = whep(howl, lid, None, method="DELETE", path=location, content_type=None)
    assert st == 204, body
    assert wait_until(lambda: sessions(howl) == [], 10)
    st, _, body = whep(howl, lid, None, method="DELETE", path=location, content_type=None)
    assert st == 404, body
    # The ended viewer's reason is its own.
    st, status = howl.api("GET", "/api/v1/status")
    assert status["engine"]["sessions_ended"].get("browser_left") == 1, status["engine"]
    # A viewer that never connects ends by its deadline (connect: 15 s) with its reason.
    st, hdrs, _ = whep(howl, lid, CHROMIUM_LIKE)
    assert st == 201
    assert wait_until(lambda: sessions(howl) == [], 40), sessions(howl)
    st, status = howl.api("GET", "/api/v1/status")
    assert status["engine"]["sessions_ended"].get("never_connected") == 1, status["engine"]


WEBRTC_FLAGS = (
    # Loopback ICE: host candidates on 127.0.0.1, not hidden behind mDNS names.
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # The page's AudioContext runs without a click.
    "--autoplay-policy=no-user-gesture-required")


def webrtc_chromium(what: str, window: tuple[int, int]):
    """Headless Chromium set up for WebRTC on loopback (every browser viewer test's)."""
    driver = chromium(what, window, WEBRTC_FLAGS)
    driver.set_script_timeout(30)
    return driver


@pytest.fixture
def browser():
    driver = webrtc_chromium("the browser viewer test", (800, 600))
    try:
        yield driver
    finally:
        try:
            driver.quit()
        except Exception:  # noqa: BLE001 - a test may have killed the browser on purpose
            driver.service.stop()


def wait(driver, cond, what: str, howl, timeout: float = UI_TIMEOUT):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(cond)
    except TimeoutException:
        logs = "\n".join(str(e) for e in driver.get_log("browser"))
        raise AssertionError(f"timed out waiting for {what}\nbrowser console:\n{logs}\n"
                             f"howl log:\n{howl.log()[-4000:]}") from None


INBOUND_VIDEO = """
const done = arguments[arguments.length - 1];
const pc = window.howlWatch && window.howlWatch.pc;
if (!pc) { done(null); return; }
pc.getStats().then((stats) => {
  let frames = null;
  stats.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded; });
  done(frames);
}).catch(() => done(null));
"""

# The top band of the picture (where the test pattern draws its counter), as luma rows.
VIDEO_BAND = """
const v = document.getElementById("video");
if (!v || v.videoWidth === 0) return null;
const w = v.videoWidth, h = v.videoHeight;
const band = Math.min(Math.max(2 * Math.floor(h / 30), 16), h);
const c = document.createElement("canvas");
c.width = w; c.height = h;
const g = c.getContext("2d", { willReadFrequently: true });
g.drawImage(v, 0, 0, w, h);
const px = g.getImageData(0, 0, w, band).data;
const luma = new Array(w * band);
for (let i = 0; i < w * band; i++) {
  luma[i] = Math.round(0.299 * px[4 * i] + 0.587 * px[4 * i + 1] + 0.114 * px[4 * i + 2]);
}
return [w, h, band, luma];
"""

# The loudest frequency of the page's audio, measured with an AnalyserNode over ~1 s.
AUDIO_PEAK = """
const done = arguments[arguments.length - 1];
const v = document.getElementById("video");
const stream = v && v.srcObject;
if (!stream || stream.getAudioTracks().length === 0) { done(null); return; }
const ctx = new AudioContext();
const src = ctx.createMediaStreamSource(stream);
const an = ctx.createAnalyser();
an.fftSize = 8192;
src.connect(an);
ctx.resume().then(() => setTimeout(() => {
  const bins = new Float32Array(an.frequencyBinCount);
  an.getFloatFrequencyData(bins);
  let best = 0;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  const hz = best * ctx.sampleRate / an.fftSize;
  const db = bins[best];
  ctx.close();
  // Silence so far reads -Infinity, which WebDriver would hand back as null.
  done(Number.isFinite(db) ? [hz, db] : null);
}, 1000)).catch((e) => done(null));
"""


def counter_now(driver) -> int | None:
    r = driver.execute_script(VIDEO_BAND)
    if not r:
        return None
    w, h, band, luma = r
    full = np.zeros((h, w), dtype=np.float32)
    full[:band] = np.array(luma, dtype=np.float32).reshape(band, w)
    return read_counter(full)


def open_watch(d, howl, lobby: dict, frames: int, path: str | None = None) -> None:
    """Opens /watch/<lobby name> (or `path`), signs in on the page, waits for `frames`
    decoded frames."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    # The page takes the token the operator UI keeps; without one it asks for it.
    d.get(f"http://127.0.0.1:{howl.api_port}{path or '/watch/' + lobby['name']}")
    wait(d, EC.visibility_of_element_located((By.ID, "signin-token")), "the token form", howl)
    d.find_element(By.ID, "signin-token").send_keys(howl.token)
    d.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
    wait(d, lambda d: (d.execute_async_script(INBOUND_VIDEO) or 0) >= frames,
         f"{frames} decoded frames", howl, timeout=UI_TIMEOUT + frames / FPS)


def test_browser_watches_a_lobby_over_webrtc(howl, browser):
    d = browser
    lobby = make_lobby(howl)
    open_watch(d, howl, lobby, FRAMES)
    [s] = sessions(howl)
    assert s["client"].startswith("browser:admin"), s
    assert s["codec"] == "h264" and s["width"] == WIDTH, s
    assert s["frames_sent"] >= FRAMES, s
    # The overlay shows what arrives.
    overlay = wait(d, lambda d: (lambda t: t if t.startswith(f"{WIDTH}x{HEIGHT}") else False)(
        d.execute_script("return document.getElementById('overlay').textContent")),
        "the stats overlay", howl)
    assert "fps" in overlay and "kbit/s" in overlay and "loss" in overlay, overlay
    answer = d.execute_script("return window.howlWatch.pc.remoteDescription.sdp")
    assert "rtp-hdrext/playout-delay" in answer, "Chromium offers the extension; it is answered"
    # NACKs are answered from the sender's buffer, as RTX.
    assert "rtx/90000" in answer and "nack" in answer, answer

    # The frame counter read from the page's video strictly increases.
    seen: list[int] = []
    while len(seen) < 5:
        c = wait(d, lambda d: (lambda v: v if v is not None and (not seen or v != seen[-1])
                               else False)(counter_now(d)),
                 "a new frame counter in the picture", howl)
        assert not seen or c > seen[-1], (seen, c)
        seen.append(c)

    # The test tone arrives: the loudest frequency is 440 Hz (bins of 48000/8192 ≈ 6 Hz).
    peak = wait(d, lambda d: (lambda r: r if r and r[1] is not None and r[1] > -90 else False)(
        d.execute_async_script(AUDIO_PEAK)), "audio in the page", howl)
    assert abs(peak[0] - TONE_HZ) < 15, peak
    print(f"browser decoded >= {FRAMES} frames, counters {seen}, audio peak {peak[0]:.0f} Hz "
          f"at {peak[1]:.0f} dB")

    # An operator stops the viewer: the page sees its connection go and reconnects.
    st, _ = howl.api("DELETE", f"/api/v1/sessions/{s['id']}")
    assert st == 204, st
    wait(d, lambda d: (lambda ss: len(ss) == 1 and ss[0]["id"] != s["id"]
                       and ss[0]["frames_sent"] > 0)(sessions(howl)),
         "the page to reconnect and receive frames again", howl)

    # Leaving the page DELETEs the WHEP resource: the viewer ends with its own reason.
    d.get("about:blank")
    assert wait_until(lambda: sessions(howl) == [], 20), sessions(howl)
    st, status = howl.api("GET", "/api/v1/status")
    ended = status["engine"]["sessions_ended"]
    assert ended.get("browser_left") == 1 and ended.get("api_stop") == 1, ended


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            parent = parent_of(int(d))
            if parent is not None:
                children.setdefault(parent, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def test_a_killed_browser_ends_by_its_silence_deadline(howl_factory, browser):
    h = howl_factory(env={"HOWL_WEBRTC_SILENCE_SECS": "3"})
    lobby = make_lobby(h)
    open_watch(browser, h, lobby, 30)
    assert len(sessions(h)) == 1
    # The browser vanishes without a word (a killed tab): no DELETE, no DTLS close.
    browsers = descendants(browser.service.process.pid)
    assert browsers, "chromium runs under chromedriver"
    for pid in browsers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    killed = time.monotonic()
    assert wait_until(lambda: sessions(h) == [], 60), sessions(h)
    took = time.monotonic() - killed
    st, status = h.api("GET", "/api/v1/status")
    ended = status["engine"]["sessions_ended"]
    assert ended.get("browser_gone") == 1, ended
    assert h.api("GET", "/api/v1/lobbies")[1][0]["worker_pid"], "the lobby outlives it"
    print(f"killed browser ended after {took:.1f}s (silence deadline 3 s): {ended}")


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="Debian's ffmpeg is not installed (scripts/common.sh)")
def test_a_browser_an_rtsp_player_and_a_moonlight_client_share_one_worker(howl, browser,
                                                                           tmp_path):
    import subprocess
    from conftest import finish_client, run_client
    from test_rtsp_egress import assert_increasing, band_filter, counters_of
    lobby = make_lobby(howl, name="Shared")
    assert run_client(howl, tmp_path / "ml", "--pair-only")["ok"]
    open_watch(browser, howl, lobby, 30)
    # Moonlight first, long enough that the player joins while it streams.
    ml = run_client(howl, tmp_path / "ml", "--app", "Shared", "--width", WIDTH,
                    "--height", HEIGHT, "--fps", FPS, "--frames", 300, background=True)
    seconds = 6
    out = tmp_path / "player.gray"
    player = None
    try:
        assert wait_until(lambda: len(sessions(howl)) == 2, 60), sessions(howl)
        player = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-rtsp_transport",
             "tcp", "-i", f"rtsp://u:{howl.token}@127.0.0.1:{howl.rtsp_port}/lobby/Shared",
             "-map", "0:v:0", "-t", str(seconds), "-fps_mode", "passthrough", "-vf",
             band_filter(), "-f", "rawvideo", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # All three kinds watch at once: sampled while they do.
        assert wait_until(lambda: len(sessions(howl)) == 3, 60), sessions(howl)
        kinds = [x["client"].split(":")[0] for x in sessions(howl)]
        workers = howl.api("GET", "/api/v1/workers")[1]
        before = wait(browser, lambda d: counter_now(d) or False,
                      "a counter in the browser's picture", howl)
        moonlight = finish_client(ml, howl, timeout=120)
        _, err = player.communicate(timeout=120)
    finally:
        for p in (ml, player):
            if p is not None and p.poll() is None:
                p.kill()
    assert player.returncode == 0, err[-2000:]
    assert moonlight["ok"], moonlight
    assert_increasing(moonlight["counters"], 200)
    assert {"browser", "rtsp"} <= set(kinds), kinds
    assert_increasing(counters_of(out.read_bytes(), 320, 24), (seconds - 2) * 20)
    # The browser kept receiving the whole time, from the same one worker.
    after = wait(browser, lambda d: (lambda c: c if c is not None and c > before
                                     else False)(counter_now(d)),
                 "the browser's counter to move on", howl)
    assert len(workers) == 1 and len(howl.workers()) == 1, workers
    print(f"browser + RTSP player + moonlight-python on one worker; browser counter "
          f"{before} -> {after}")


# howl-testapp's state strip (crates/howl-testapp; tests/interop/desktop_client.py): 64 blocks
# of 16 px at y = 16, most significant first: keysym (32 bits), key presses (16), held buttons
# (8), wheel steps (8); the app's grey background above it.
DESKTOP_STATE = """
const v = document.getElementById("video");
if (!v || v.videoWidth < 1024) return null;
const c = document.createElement("canvas");
c.width = v.videoWidth; c.height = v.videoHeight;
const g = c.getContext("2d", { willReadFrequently: true });
g.drawImage(v, 0, 0);
const px = g.getImageData(0, 0, 1024, 40).data;
const gray = (x, y) => { const o = 4 * (y * 1024 + x); return 0.299 * px[o] + 0.587 * px[o + 1] + 0.114 * px[o + 2]; };
let bits = 0n;
for (let i = 0; i < 64; i++) {
  let sum = 0;
  for (let y = 20; y < 28; y++) for (let x = i * 16 + 4; x < i * 16 + 12; x++) sum += gray(x, y);
  bits = (bits << 1n) | (sum / 64 > 128 ? 1n : 0n);
}
let bg = 0;
for (let x = 8; x < 200; x++) bg += gray(x, 8);
return { keysym: Number(bits >> 32n), presses: Number((bits >> 16n) & 0xFFFFn),
         buttons: Number((bits >> 8n) & 0xFFn), wheel: Number(bits & 0xFFn), background: bg / 192 };
"""


@needs_xvfb
def test_browser_input_drives_a_desktop_and_view_only_input_is_dropped(howl_factory, browser,
                                                                       tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.by import By
    from test_desktop import desktop_howl
    d = browser
    h = desktop_howl(howl_factory, tmp_path)
    st, lobby = h.api("POST", "/api/v1/lobbies", {
        "name": "desk", "app": "Test App", "width": 1024, "height": 768, "fps": 30,
        "bitrate_kbps": 3000})
    assert st == 201, lobby
    open_watch(d, h, lobby, 30)

    def state(pred, what):
        return wait(d, lambda d: (lambda s: s if s and 150 < s["background"] < 230 and pred(s)
                                  else False)(d.execute_script(DESKTOP_STATE)), what, h)

    s0 = state(lambda s: True, "the test app's picture")
    # Keys by their physical code: A without modifiers is the keysym a.
    ActionChains(d).send_keys("a").perform()
    s1 = state(lambda s: s["keysym"] == 0x61 and s["presses"] == s0["presses"] + 1,
               "the key in the app's picture")
    # A held button shows while held; the wheel counts steps.
    video = d.find_element(By.ID, "video")
    ActionChains(d).move_to_element(video).click_and_hold().perform()
    state(lambda s: s["buttons"] != 0, "the held button")
    ActionChains(d).release().perform()
    state(lambda s: s["buttons"] == 0, "the released button")
    ActionChains(d).scroll_from_origin(ScrollOrigin.from_element(video), 0, -100).perform()
    s2 = state(lambda s: s["wheel"] != s1["wheel"], "a wheel step")

    # View only: the page's keys are dropped and counted, never injected.
    [sess] = sessions(h)
    st, _ = h.api("PUT", f"/api/v1/lobbies/{lobby['id']}/permission",
                  {"viewer_permission": "view"})
    assert st == 200
    ActionChains(d).send_keys("b").perform()
    assert wait_until(lambda: sessions(h)[0]["input_dropped"] >= 2, 20), sessions(h)
    # Control again: the next key is the only press since (so b never reached the desktop).
    st, _ = h.api("PUT", f"/api/v1/lobbies/{lobby['id']}/permission",
                  {"viewer_permission": "control"})
    assert st == 200
    ActionChains(d).send_keys("c").perform()
    s3 = state(lambda s: s["keysym"] == 0x63, "the key after control came back")
    assert s3["presses"] == s2["presses"] + 1, (s2, s3)
    assert sessions(h)[0]["id"] == sess["id"], "the same viewer all along"
    print(f"browser input on the desktop: {s0} -> {s1} -> {s2} -> {s3}; "
          f"dropped while view-only: {sessions(h)[0]['input_dropped']}")


@needs_xvfb
def test_play_starts_the_callers_own_desktop_and_a_reload_resumes_it(howl_factory, browser,
                                                                    tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from test_desktop import desktop_howl
    d = browser
    h = desktop_howl(howl_factory, tmp_path)
    app = next(a for a in h.api("GET", "/api/v1/apps")[1] if a["title"] == "Test App")
    open_watch(d, h, {}, 30, path="/play/Test%20App?width=1024&height=768&fps=30")
    [lobby] = h.api("GET", "/api/v1/lobbies")[1]
    assert lobby["name"] == f"play:admin:{app['id']}", lobby
    assert (lobby["width"], lobby["height"], lobby["stop_when_everyone_leaves"]) == \
        (1024, 768, True), lobby

    def state(pred, what):
        return wait(d, lambda d: (lambda s: s if s and 150 < s["background"] < 230 and pred(s)
                                  else False)(d.execute_script(DESKTOP_STATE)), what, h)

    s0 = state(lambda s: True, "the test app's picture")
    ActionChains(d).send_keys("a").perform()
    s1 = state(lambda s: s["keysym"] == 0x61 and s["presses"] == s0["presses"] + 1,
               "the key in the app's picture")
    # A reload (the token stays in the tab) comes back to the same desktop, as it was.
    d.refresh()
    wait(d, lambda d: (d.execute_async_script(INBOUND_VIDEO) or 0) >= 30,
         "frames after the reload", h)
    state(lambda s: s["presses"] == s1["presses"] and s["keysym"] == 0x61,
          "the same desktop after the reload")
    [again] = h.api("GET", "/api/v1/lobbies")[1]
    assert again["id"] == lobby["id"] and again["worker_pid"] == lobby["worker_pid"], again
