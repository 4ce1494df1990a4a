"""Issue 18, signalling side: STUN/TURN servers for pages and WHEP players, the cap on offers
waiting to connect, OPTIONS/CORS/PATCH on the WHEP URLs, hostile offers, AV1 to a browser,
and the web UI's live lobby thumbnails and per-session graphs.

Browser parts run Debian's headless Chromium through chromium-driver (Selenium), as
test_webrtc.py does; synchronisation is by waiting on conditions only.
"""

from __future__ import annotations

import concurrent.futures
import re
import urllib.error
import urllib.request

import pytest

from conftest import wait_until
from test_webrtc import CHROMIUM_LIKE, INBOUND_VIDEO, UI_TIMEOUT, make_lobby, offer, sessions, \
    wait, webrtc_chromium, whep

TURN_SECRET = "s3cret-turn-credential"
ICE_SERVERS = ('[{urls=["stun:127.0.0.1:3478"]},'
               '{urls=["turn:127.0.0.1:3478?transport=udp"],username="howl",'
               f'credential="{TURN_SECRET}"}}]')
ALLOWED_ORIGIN = "https://app.example"


@pytest.fixture
def browser():
    driver = webrtc_chromium("the browser signalling test", (1280, 800))
    try:
        yield driver
    finally:
        driver.quit()


def metric(h, name: str) -> float | None:
    st, text = h.api("GET", "/metrics")
    assert st == 200, text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def webrtc_status(h) -> dict:
    st, status = h.api("GET", "/api/v1/status")
    assert st == 200, status
    return status["webrtc"]


def sign_in_watch(d, h, path: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    d.get(f"http://127.0.0.1:{h.api_port}{path}")
    wait(d, EC.visibility_of_element_located((By.ID, "signin-token")), "the token form", h)
    d.find_element(By.ID, "signin-token").send_keys(h.token)
    d.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()


def test_ice_servers_reach_the_page_and_whep_players_and_never_the_log(howl_factory, browser):
    h = howl_factory(env={"HOWL_WEBRTC_ICE_SERVERS": ICE_SERVERS})
    st, body = h.api("GET", "/api/v1/webrtc/ice-servers", token=None)
    assert st == 401, body
    st, body = h.api("GET", "/api/v1/webrtc/ice-servers")
    assert st == 200, body
    assert body["ice_servers"] == [
        {"urls": ["stun:127.0.0.1:3478"]},
        {"urls": ["turn:127.0.0.1:3478?transport=udp"], "username": "howl",
         "credential": TURN_SECRET}], body
    lobby = make_lobby(h)
    # A WHEP player gets them as Link headers on the answer.
    st, hdrs, answer = whep(h, lobby["id"], CHROMIUM_LIKE)
    assert st == 201, answer
    links = hdrs.get_all("Link")
    assert links == [
        '<stun:127.0.0.1:3478>; rel="ice-server"',
        '<turn:127.0.0.1:3478?transport=udp>; rel="ice-server"; username="howl"; '
        f'credential="{TURN_SECRET}"; credential-type="password"'], links
    st, _, _ = whep(h, lobby["id"], None, method="DELETE", path=hdrs["Location"],
                    content_type=None)
    assert st == 204
    # The page passes them to its RTCPeerConnection, and still connects (host candidates on
    # loopback; the STUN/TURN addresses answer nothing, which only costs their candidates).
    d = browser
    sign_in_watch(d, h, f"/watch/{lobby['name']}")
    wait(d, lambda d: (d.execute_async_script(INBOUND_VIDEO) or 0) >= 30, "30 decoded frames", h)
    urls = d.execute_script(
        "return window.howlWatch.pc.getConfiguration().iceServers.map((s) => s.urls).flat()")
    assert "stun:127.0.0.1:3478" in urls and "turn:127.0.0.1:3478?transport=udp" in urls, urls
    assert TURN_SECRET not in h.log(), "credentials are never logged"


def test_offers_past_the_pending_cap_are_refused_at_once(howl_factory, browser):
    h = howl_factory(env={"HOWL_WEBRTC_MAX_PENDING_OFFERS": "3"})
    lobby = make_lobby(h)
    lid = lobby["id"]
    assert webrtc_status(h) == {"pending_offers": 0, "max_pending_offers": 3,
                                "offers_refused_busy": 0}
    # A flood: 12 offers at once; none of them connects (nothing answers ICE here).
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda _: whep(h, lid, CHROMIUM_LIKE), range(12)))
    accepted = [r for r in results if r[0] == 201]
    refused = [r for r in results if r[0] == 503]
    assert (len(accepted), len(refused)) == (3, 9), [(s, b[:120]) for s, _, b in results]
    for _, hdrs, body in refused:
        assert hdrs["Retry-After"] == "2", hdrs
        assert "webrtc_max_pending_offers = 3" in body, body
    # Nothing was allocated for the refused ones: three viewers, three pending.
    assert len(sessions(h)) == 3, sessions(h)
    assert webrtc_status(h) == {"pending_offers": 3, "max_pending_offers": 3,
                                "offers_refused_busy": 9}
    assert metric(h, 'howl_webrtc_offers_refused_total{reason="busy"}') == 9
    assert metric(h, "howl_webrtc_pending_offers") == 3
    # One leaves: its place comes back, and the next offer is answered.
    st, _, body = whep(h, lid, None, method="DELETE", path=accepted[0][1]["Location"],
                       content_type=None)
    assert st == 204, body
    assert wait_until(lambda: webrtc_status(h)["pending_offers"] == 2, 10), webrtc_status(h)
    st, hdrs, body = whep(h, lid, CHROMIUM_LIKE)
    assert st == 201, body
    # A page meeting the busy server says so, waits the Retry-After (2 s, longer than its own
    # first backoff step), and connects once the offers that never connect ended by their
    # deadline (15 s) and gave their places back.
    d = browser
    sign_in_watch(d, h, f"/watch/{lobby['name']}")
    busy = wait(d, lambda d: (lambda t: t if "Server busy" in t else False)(
        d.find_element("id", "status").text), "the page to report the busy server", h)
    assert "webrtc_max_pending_offers" in busy and "retrying in 2.0 s" in busy, busy
    wait(d, lambda d: (d.execute_async_script(INBOUND_VIDEO) or 0) >= 10,
         "the page to connect once places came back", h)
    assert webrtc_status(h)["pending_offers"] == 0, webrtc_status(h)
    [viewer] = sessions(h)
    assert viewer["client"].startswith("browser:admin"), viewer


def test_options_cors_and_patch_on_the_whep_urls(howl_factory):
    h = howl_factory(env={"HOWL_WEBRTC_CORS_ORIGINS": f'["{ALLOWED_ORIGIN}"]'})
    lobby = make_lobby(h)
    lid = lobby["id"]
    base = f"/api/v1/lobbies/{lid}/whep"

    def call(method, path, origin=None, token="default", sdp=None):
        url = f"http://127.0.0.1:{h.api_port}{path}"
        req = urllib.request.Request(url, method=method,
                                     data=sdp.encode() if sdp is not None else None)
        if origin:
            req.add_header("Origin", origin)
        if token == "default":
            req.add_header("Authorization", f"Bearer {h.token}")
        if sdp is not None:
            req.add_header("Content-Type", "application/sdp")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode()

    # OPTIONS needs no token (browsers send the preflight without one) and says what POST takes.
    for path in (base, "/api/v1/apps/1/whep"):
        st, hdrs, _ = call("OPTIONS", path, token=None)
        assert st == 204, (path, st)
        assert hdrs["Accept-Post"] == "application/sdp", hdrs
        assert "POST" in hdrs["Allow"], hdrs
        assert hdrs.get("Access-Control-Allow-Origin") is None, "same-origin only by default"
    # The allowed origin's preflight and responses carry CORS headers; another origin's don't.
    st, hdrs, _ = call("OPTIONS", base, origin=ALLOWED_ORIGIN, token=None)
    assert st == 204
    assert hdrs["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN, hdrs
    assert "Authorization" in hdrs["Access-Control-Allow-Headers"], hdrs
    assert "POST" in hdrs["Access-Control-Allow-Methods"], hdrs
    assert "Origin" in hdrs["Vary"], hdrs
    st, hdrs, _ = call("OPTIONS", base, origin="https://evil.example", token=None)
    assert st == 204 and hdrs.get("Access-Control-Allow-Origin") is None, hdrs
    st, hdrs, answer = call("POST", base, origin=ALLOWED_ORIGIN, sdp=CHROMIUM_LIKE)
    assert st == 201, answer
    assert hdrs["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN, hdrs
    assert "Location" in hdrs["Access-Control-Expose-Headers"], hdrs
    resource = hdrs["Location"]
    # A refusal is readable by the allowed page too (it can show the reason).
    st, hdrs, body = call("POST", base, origin=ALLOWED_ORIGIN, token=None, sdp=CHROMIUM_LIKE)
    assert st == 401 and hdrs["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN, (st, hdrs)
    st, hdrs, _ = call("POST", base, origin="https://evil.example", sdp="hello")
    assert st == 400 and hdrs.get("Access-Control-Allow-Origin") is None, hdrs
    # Other routes stay same-origin whatever the list says.
    st, hdrs, _ = call("GET", "/api/v1/lobbies", origin=ALLOWED_ORIGIN)
    assert st == 200 and hdrs.get("Access-Control-Allow-Origin") is None, hdrs
    # The resource: OPTIONS lists DELETE and PATCH; PATCH (trickle ICE) is 405 with the reason.
    st, hdrs, _ = call("OPTIONS", resource, token=None)
    assert st == 204 and "DELETE" in hdrs["Allow"], hdrs
    st, hdrs, body = call("PATCH", resource, sdp="a=end-of-candidates\r\n")
    assert st == 405, body
    assert "ICE-lite" in body and hdrs["Allow"] == "OPTIONS, DELETE", (hdrs, body)
    st, _, body = call("PATCH", resource, token=None, sdp="a=end-of-candidates\r\n")
    assert st == 401, body
    st, _, _ = call("DELETE", resource)
    assert st == 204


# Offers that must be refused (400 with a reason) before anything is built.
HOSTILE = {
    "binary": "\x00\x01\x02\xff" * 200,
    "no media": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    "no fingerprint": CHROMIUM_LIKE.replace(
        CHROMIUM_LIKE[CHROMIUM_LIKE.index("a=fingerprint"):CHROMIUM_LIKE.index("a=setup")], ""),
    "no ice credentials": CHROMIUM_LIKE.replace("a=ice-ufrag:abcd\r\n", "")
                                       .replace("a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n", ""),
    "garbage lines": CHROMIUM_LIKE.replace("a=mid:0\r\n", "a=mid:0\r\n\x7f\x7f=\r\n==\r\n"),
    "AV1 only to an H.264 lobby": CHROMIUM_LIKE.replace("H264/90000", "AV1/90000"),
    "VP8 only": offer((96, "42e01f", 1)).replace("H264/90000", "VP8/90000"),
}


def test_hostile_offers_are_refused_with_a_reason_and_allocate_nothing(howl):
    lobby = make_lobby(howl)
    for what, sdp in HOSTILE.items():
        st, _, body = whep(howl, lobby["id"], sdp)
        assert st == 400 and '"error"' in body, (what, st, body[:300])
        assert sessions(howl) == [], what
        assert webrtc_status(howl)["pending_offers"] == 0, what
    # The codec refusals name what the lobby encodes and what was offered.
    st, _, body = whep(howl, lobby["id"], HOSTILE["VP8 only"])
    assert "42c0" in body.lower() or "profile-level-id" in body, body
    # /play refuses a malformed offer before it starts anything: no lobby, no worker.
    workers = howl.workers()
    [app] = [a for a in howl.api("GET", "/api/v1/apps")[1] if a["title"] == "Test Pattern"]
    for what in ("binary", "no media"):
        st, _, body = whep(howl, None, HOSTILE[what], path=f"/api/v1/apps/{app['id']}/whep")
        assert st == 400 and '"error"' in body, (what, st, body[:300])
    assert [l["id"] for l in howl.api("GET", "/api/v1/lobbies")[1]] == [lobby["id"]]
    assert howl.workers() == workers
    # A body over max_body_bytes is refused by size, before parsing.
    st, _, body = whep(howl, lobby["id"], CHROMIUM_LIKE + "a=x\r\n" * 40000)
    assert st == 413, (st, body[:200])
    assert sessions(howl) == []


def av1_missing(h) -> str | None:
    st, server = h.api("GET", "/api/v1/server")
    assert st == 200, server
    if "av1" not in server["encoders"]:
        return (f"the worker here encodes {server['encoders']}: no AV1 encoder in GStreamer "
                "(libaom's av1enc: gstreamer1.0-plugins-bad)")
    return None


def test_an_av1_lobby_plays_in_chromium(howl, browser):
    h = howl
    if why := av1_missing(h):
        pytest.skip(why)
    # Small, so that libaom (CPU) keeps up on a shared 2-core machine.
    st, lobby = h.api("POST", "/api/v1/lobbies", {
        "name": "av1", "app": "Test Pattern", "width": 320, "height": 180, "fps": 15,
        "bitrate_kbps": 500, "codec": "av1"})
    assert st == 201, lobby
    assert wait_until(lambda: any(l["id"] == lobby["id"] and l["worker_pid"]
                                  for l in h.api("GET", "/api/v1/lobbies")[1]), 60), h.log()[-3000:]
    # An H.264-only offer is refused with the reason.
    st, _, body = whep(h, lobby["id"], CHROMIUM_LIKE)
    assert st == 400 and "AV1" in body and "H264" in body, body
    d = browser
    sign_in_watch(d, h, f"/watch/{lobby['name']}")
    wait(d, lambda d: (d.execute_async_script(INBOUND_VIDEO) or 0) >= 30, "30 decoded AV1 frames",
         h, timeout=UI_TIMEOUT + 30)
    codec = d.execute_async_script("""
const done = arguments[arguments.length - 1];
window.howlWatch.pc.getStats().then((stats) => {
  let id = null, mime = null;
  stats.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") id = s.codecId; });
  stats.forEach((s) => { if (s.id === id) mime = s.mimeType; });
  done(mime);
});""")
    assert codec == "video/AV1", codec
    answer = d.execute_script("return window.howlWatch.pc.remoteDescription.sdp")
    assert "AV1/90000" in answer and "H264/90000" not in answer, answer


PREVIEW_STATE = """
const id = arguments[0];
const row = document.querySelector(`#lobbies-body tr[data-key="${id}"]`);
const v = row && row.querySelector("td[data-col=extra] video");
const p = window.howlUi && window.howlUi.previews.get(id);
const link = row && row.querySelector("td[data-col=extra] a");
return v ? { visible: !v.hidden, width: v.videoWidth, frames: p ? p.frames : 0,
             muted: v.muted, href: link && link.getAttribute("href") } : null;
"""

GRAPH_STATE = """
const out = [];
for (const row of document.querySelectorAll("#sessions-body tr")) {
  const g = window.howlUi.graphs.get(Number(row.dataset.key));
  const c = row.querySelector('canvas[data-testid="graph-fps"]');
  out.push({ id: Number(row.dataset.key), client: row.querySelector("td[data-col=client]").title,
             fps: g ? g.fps : [], kbps: g ? g.kbps : [], loss: g ? g.loss : [],
             drawn: c ? Number(c.dataset.points || 0) : 0 });
}
return out;
"""


def test_web_ui_shows_live_lobby_thumbnails_and_session_graphs(howl, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    h, d = howl, browser
    lobby = make_lobby(h)
    workers_before = h.workers()
    d.get(f"http://127.0.0.1:{h.api_port}/ui/#lobbies")
    wait(d, EC.visibility_of_element_located((By.ID, "signin-token")), "the sign-in form", h)
    d.find_element(By.ID, "signin-token").send_keys(h.token)
    d.find_element(By.ID, "signin-submit").click()
    # The lobby's thumbnail plays: visible, decoded picture, frames counting up.
    first = wait(d, lambda d: (lambda s: s if s and s["visible"] and s["width"] > 0
                               and s["frames"] > 0 else False)(
        d.execute_script(PREVIEW_STATE, lobby["id"])), "a playing lobby thumbnail", h)
    assert first["muted"], first
    assert first["href"] == f"/watch/{lobby['id']}", "clicking the thumbnail opens /watch"
    wait(d, lambda d: (d.execute_script(PREVIEW_STATE, lobby["id"]) or {}).get("frames", 0)
         > first["frames"] + 10, "the thumbnail's frames to keep coming", h)
    # The preview is a viewer of the running producer: no worker was started for it, and it
    # is not listed as a session.
    assert h.workers() == workers_before
    [preview] = sessions(h)
    assert preview["client"].startswith("preview:admin"), preview
    # A real viewer (a second tab watching the lobby) gets graphs with data in the list.
    ui = d.current_window_handle
    d.switch_to.new_window("tab")
    sign_in_watch(d, h, f"/watch/{lobby['name']}")
    wait(d, lambda d: (d.execute_async_script(INBOUND_VIDEO) or 0) >= 10, "the watching tab", h)
    d.switch_to.window(ui)
    d.find_element(By.CSS_SELECTOR, '[data-tab="sessions"]').click()
    rows = wait(d, lambda d: (lambda rs: rs if len(rs) == 1 and len(rs[0]["fps"]) >= 3
                              and rs[0]["drawn"] >= 3 else False)(
        d.execute_script(GRAPH_STATE)), "three graph points for the watching session", h)
    [row] = rows
    assert row["client"].startswith("browser:admin"), row
    assert max(row["fps"]) > 5 and max(row["kbps"]) > 50, row
    assert all(0 <= x <= 100 for x in row["loss"]), row
    # The session's thumbnail is its lobby's picture.
    wait(d, lambda d: d.execute_script(
        "const v = document.querySelector('#sessions-body td[data-col=extra] video');"
        "return v && !v.hidden && v.videoWidth > 0;"), "the session's thumbnail", h)
    # A thumbnail whose frames stop is hidden, not frozen on its last picture: the server
    # ends the preview viewer (as the API's stop does), its frames stop.
    d.find_element(By.CSS_SELECTOR, '[data-tab="lobbies"]').click()
    [preview] = [s for s in sessions(h) if s["client"].startswith("preview:")]
    st, _ = h.api("DELETE", f"/api/v1/sessions/{preview['id']}")
    assert st == 204
    wait(d, lambda d: d.execute_script(
        "const c = document.querySelector(`#lobbies-body tr[data-key='${arguments[0]}'] "
        "td[data-col=extra]`);"
        "return c && c.querySelector('video').hidden && !c.querySelector('.thumb-none').hidden;",
        lobby["id"]), "the ended thumbnail to be hidden", h)
    # Signing out ends the previews at once (their WHEP resources are deleted).
    d.find_element(By.ID, "signout").click()
    assert wait_until(lambda: not any(s["client"].startswith("preview:") for s in sessions(h)),
                      10), sessions(h)


CROSS_ORIGIN_POST = """
const [url, token, sdp] = arguments;
const done = arguments[arguments.length - 1];
fetch(url, { method: "POST", body: sdp,
             headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/sdp" } })
  .then((r) => done({ status: r.status, location: r.headers.get("Location") }))
  .catch((e) => done({ error: String(e) }));
"""


def test_a_page_of_an_allowed_origin_calls_whep_from_chromium(howl_factory, browser, tmp_path):
    """Real CORS: a page served from another origin (another port) POSTs an offer with its
    token; Chromium lets it read the answer only where that origin is allowed."""
    import functools
    import http.server
    import socketserver
    import threading
    (tmp_path / "index.html").write_text("<!doctype html><title>other site</title>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    site = socketserver.TCPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        origin = f"http://127.0.0.1:{site.server_address[1]}"
        h = howl_factory(env={"HOWL_WEBRTC_CORS_ORIGINS": f'["{origin}"]'})
        lobby = make_lobby(h)
        d = browser
        d.get(f"{origin}/index.html")
        url = f"http://127.0.0.1:{h.api_port}/api/v1/lobbies/{lobby['id']}/whep"
        r = d.execute_async_script(CROSS_ORIGIN_POST, url, h.token, CHROMIUM_LIKE)
        assert r.get("status") == 201, r
        assert r["location"].startswith(f"/api/v1/lobbies/{lobby['id']}/whep/"), r
        # Another origin (the same page against a server that allows none) is kept out.
        h2 = howl_factory()
        lobby2 = make_lobby(h2)
        url2 = f"http://127.0.0.1:{h2.api_port}/api/v1/lobbies/{lobby2['id']}/whep"
        r = d.execute_async_script(CROSS_ORIGIN_POST, url2, h2.token, CHROMIUM_LIKE)
        assert "error" in r and "Failed to fetch" in r["error"], r
        # Its preflight failed, so the POST never reached the server: nothing was allocated.
        assert sessions(h2) == []
    finally:
        site.shutdown()
        site.server_close()
