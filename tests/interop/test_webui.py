"""Issue 6: the operator web UI in a real headless Chromium (Selenium + Debian's chromium and
chromium-driver), against a real howl and the real Moonlight client.

The page is loaded once; everything after sign-in must arrive over the live event stream
(`/api/v1/events`), never through a reload: the pairing request shows up by itself, the
operator types the PIN and clicks Pair, the session row appears when the client starts
streaming, and Stop ends the client's stream.

To prove the rows come from the event stream and not from the page's 5 s refresh (which would
bring them too, only later), the page under test has its periodic timers held back: a script
that runs before the page's own wraps `setTimeout`, and a 5 s timer is parked instead of
scheduled until the test releases it (for the frame counters, which move without events).

Synchronisation is by WebDriverWait on conditions only.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import (BackgroundPairing, chromium, finish_client, make_client, run_client,
                      server_info, stop_client)

PIN = "6083"
# Generous: a debug build on a shared 2-core machine starts workers slowly.
UI_TIMEOUT = 60
# The page's refresh period (app.js STATUS_PERIOD_MS and POLL_PERIOD_MS).
PAGE_PERIOD_MS = 5000
# Runs before the page's scripts: 5 s timers are parked, not scheduled, until released.
HOLD_PERIODIC_REFRESH = """
window.__howlHeld = [];
window.__howlHolding = true;
const __howlSetTimeout = window.setTimeout.bind(window);
window.setTimeout = function (fn, ms, ...rest) {
  if (ms === %d && window.__howlHolding) { window.__howlHeld.push(() => fn(...rest)); return 0; }
  return __howlSetTimeout(fn, ms, ...rest);
};
window.__howlRelease = function () {
  window.__howlHolding = false;
  const held = window.__howlHeld.splice(0);
  held.forEach((f) => f());
  return held.length;
};
""" % PAGE_PERIOD_MS


def artifact_dir() -> Path:
    d = os.environ.get("HOWL_ARTIFACT_DIR")
    if d:
        return Path(d)
    t = os.environ.get("CARGO_TARGET_DIR")
    if t:
        return Path(t) / "artifacts"
    return Path.home() / ".cache/howl/target/artifacts"


@pytest.fixture
def browser():
    driver = chromium("the web UI test", (1366, 768))
    driver.set_window_size(1366, 768)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                           {"source": HOLD_PERIODIC_REFRESH})
    try:
        yield driver
    finally:
        driver.quit()


def by_testid(testid: str, within: str = "") -> tuple:
    from selenium.webdriver.common.by import By
    return By.CSS_SELECTOR, f'{within} [data-testid="{testid}"]'.strip()


def wait(driver, cond, what: str, howl=None, timeout: float = UI_TIMEOUT):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(cond)
    except TimeoutException:
        logs = "\n".join(str(e) for e in driver.get_log("browser"))
        tail = howl.log()[-3000:] if howl else ""
        raise AssertionError(f"timed out waiting for {what}\nbrowser console:\n{logs}\n"
                             f"howl log:\n{tail}") from None


def rows(driver, testid: str):
    return driver.find_elements(*by_testid(testid))


def cell(row, col: str) -> str:
    from selenium.webdriver.common.by import By
    return row.find_element(By.CSS_SELECTOR, f'td[data-col="{col}"]').text


def sign_in(driver, h, token=None):
    from selenium.webdriver.support import expected_conditions as EC
    driver.get(f"http://127.0.0.1:{h.api_port}/")
    wait(driver, EC.visibility_of_element_located(by_testid("signin-token")), "sign-in form", h)
    assert driver.current_url.endswith("/ui/"), driver.current_url
    driver.find_element(*by_testid("signin-token")).send_keys(token or h.token)
    driver.find_element(*by_testid("signin-submit")).click()
    wait(driver, EC.visibility_of_element_located(by_testid("app")), "the signed-in page", h)
    # The final page must be driven by the event stream, not the polling fallback.
    wait(driver, lambda d: conn_state(d) == "live", "the live event stream", h)


def conn_state(driver) -> str:
    return driver.find_element(*by_testid("conn")).get_attribute("data-state")


def test_webui_pairs_a_client_and_stops_its_session_live(howl, browser, tmp_path):
    d = browser
    sign_in(d, howl)
    version = d.find_element(*by_testid("server-version")).text
    assert version.startswith("v"), version

    # --- Pairing: the request appears by itself; the operator types the PIN and clicks Pair.
    d.find_element(*by_testid("tab-pairing")).click()
    assert not rows(d, "pending-row")
    client = make_client(tmp_path / "c")
    info = server_info(client, howl.http_port)
    pairing = BackgroundPairing(client, info, PIN)
    row = wait(d, lambda d: (rows(d, "pending-row") or [None])[0], "the pending pairing request",
               howl)
    request = pairing.request(howl.api)
    assert row.get_attribute("data-key") == str(request["id"])
    assert cell(row, "fingerprint") == request["fingerprint"][:16] + "…"
    assert cell(row, "device") == (request["device_name"] or "(unnamed)")
    row.find_element(*by_testid("pending-pin")).send_keys(PIN)
    row.find_element(*by_testid("pending-pair")).click()
    pairing.succeeded()
    status, clients = howl.api("GET", "/api/v1/clients")
    assert status == 200 and [c["fingerprint"] for c in clients] == [request["fingerprint"]]
    # The request leaves the list and the client shows up under Clients, still without reload.
    wait(d, lambda d: not rows(d, "pending-row"), "the pending row to go away", howl)
    d.find_element(*by_testid("tab-clients")).click()
    crow = wait(d, lambda d: (rows(d, "client-row") or [None])[0], "the paired client row", howl)
    assert crow.get_attribute("data-key") == clients[0]["fingerprint"]

    # --- Streaming: the session row appears live; Stop ends the client's stream.
    d.find_element(*by_testid("tab-sessions")).click()
    ready = tmp_path / "c.ready"
    p = run_client(howl, tmp_path / "c", "--width", 1280, "--height", 720, "--fps", 30,
                   "--bitrate", 4000, "--frames", 30, "--wait-termination", 180,
                   "--ready-file", ready, background=True)
    try:
        srow = wait(d, lambda d: (rows(d, "session-row") or [None])[0], "the session row", howl)
        wait(d, lambda _: ready.exists() or p.poll() is not None, "the client to decode frames",
             howl)
        assert p.poll() is None, finish_client(p, howl)
        # Everything so far came over the event stream: the periodic refresh never ran (it
        # was parked at least once, so the page did try to schedule it) and the stream never
        # dropped (a reconnect refetches every list).
        assert conn_state(d) == "live"
        # Frame counters move without events: let the periodic refresh run from here on, and
        # wait until it shows real traffic.
        assert d.execute_script("return window.__howlRelease()") >= 1, \
            "the page scheduled no periodic refresh: the hold caught nothing"
        wait(d, lambda _: cell(srow, "frames_sent") not in ("0", "–"), "frames sent > 0", howl)
        status, sessions = howl.api("GET", "/api/v1/sessions")
        assert len(sessions) == 1, sessions
        assert srow.get_attribute("data-key") == str(sessions[0]["id"])
        assert cell(srow, "app") == sessions[0]["app"]
        assert cell(srow, "resolution") == "1280×720"
        assert d.find_element(*by_testid("stat-sessions")).text == "1"

        # The permission toggle makes the session view-only, live, and the row says so.
        assert cell(srow, "permission") == "control"
        srow.find_element(*by_testid("session-permission")).click()
        wait(d, lambda _: howl.api("GET", "/api/v1/sessions")[1][0]["permission"] == "view",
             "the session to become view-only", howl)
        wait(d, lambda _: cell(srow, "permission").startswith("view"), "the view-only cell", howl)

        shot = artifact_dir() / "webui-sessions.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert d.save_screenshot(str(shot)), "screenshot failed"
        print(f"web UI screenshot: {shot}")

        # Hold the refresh again (its next run parks), so the row's removal must come over the
        # event stream too.
        d.execute_script("window.__howlHolding = true")
        wait(d, lambda d: d.execute_script("return window.__howlHeld.length") >= 1,
             "the periodic refresh parked again", howl, timeout=2 * PAGE_PERIOD_MS / 1000 + 5)
        srow.find_element(*by_testid("session-stop")).click()
        res = finish_client(p, howl)
        assert res.get("terminated_after") is not None, res
        wait(d, lambda d: not rows(d, "session-row"), "the session row to go away", howl)
        assert conn_state(d) == "live"
        status, sessions = howl.api("GET", "/api/v1/sessions")
        assert sessions == [], sessions
    finally:
        stop_client(p)

    # No script error and no Content-Security-Policy violation on the whole visit.
    # (A 404 on a route this server lacks is logged as a failed resource load; that is not
    # an error of the page.)
    bad = [e for e in d.get_log("browser")
           if "Content Security Policy" in e.get("message", "")
           or (e.get("level") == "SEVERE" and "Failed to load resource" not in e.get("message", ""))]
    errors = d.find_elements(*by_testid("message"))
    assert not bad, bad
    assert not [m.text for m in errors if m.get_attribute("data-kind") == "error"]


def test_webui_rejects_a_wrong_token_and_shows_api_errors(howl, browser):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{howl.api_port}/ui/app.js") as r:
        assert r.headers["Content-Type"].startswith("text/javascript")
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    from selenium.webdriver.support import expected_conditions as EC
    d = browser
    d.get(f"http://127.0.0.1:{howl.api_port}/ui/")
    wait(d, EC.visibility_of_element_located(by_testid("signin-token")), "sign-in form", howl)
    d.find_element(*by_testid("signin-token")).send_keys("not-the-token")
    d.find_element(*by_testid("signin-submit")).click()
    wait(d, lambda d: d.find_element(*by_testid("signin-error")).text, "the sign-in error", howl)
    assert "not accepted" in d.find_element(*by_testid("signin-error")).text
    assert not d.find_element(*by_testid("app")).is_displayed()

    # Signed in, an API error ({"error": msg}) is shown in the message area.
    sign_in(d, howl)
    d.find_element(*by_testid("tab-lobbies")).click()
    d.find_element(*by_testid("lobby-name")).send_keys("Friday game")
    app = d.find_element(*by_testid("lobby-app"))
    app.clear()
    app.send_keys("No Such App")
    d.find_element(*by_testid("lobby-create")).click()
    msg = wait(d, lambda d: [m for m in rows(d, "message")
                             if m.get_attribute("data-kind") == "error"], "the error message", howl)
    status, body = howl.api("POST", "/api/v1/lobbies", {"name": "x", "app": "No Such App"})
    assert status >= 400 and body["error"] in msg[0].text, (msg[0].text, body)
    # A good one appears in the list; Stop (after a confirm) removes it.
    app.clear()
    app.send_keys("Test Pattern")
    from selenium.webdriver.support.ui import Select
    Select(d.find_element(*by_testid("lobby-viewer-permission"))).select_by_value("view")
    d.find_element(*by_testid("lobby-create")).click()
    lrow = wait(d, lambda d: (rows(d, "lobby-row") or [None])[0], "the lobby row", howl)
    assert cell(lrow, "name") == "Friday game"
    # Created with view-only joiners; the toggle gives joiners control, live.
    assert cell(lrow, "joiners") == "view"
    assert howl.api("GET", "/api/v1/lobbies")[1][0]["viewer_permission"] == "view"
    lrow.find_element(*by_testid("lobby-permission")).click()
    wait(d, lambda _: howl.api("GET", "/api/v1/lobbies")[1][0]["viewer_permission"] == "control",
         "joiners to get control", howl)
    wait(d, lambda _: cell(lrow, "joiners") == "control", "the joiners cell", howl)
    lrow.find_element(*by_testid("lobby-stop")).click()
    wait(d, EC.alert_is_present(), "the confirm dialog", howl).accept()
    wait(d, lambda d: not rows(d, "lobby-row"), "the lobby row to go away", howl)
    assert howl.api("GET", "/api/v1/lobbies")[1] == []


def test_webui_with_a_tenant_token_shows_only_its_lobbies(howl, browser):
    """A tenant signs in, sees its own lobby and not the operator's, and the operator-only
    lists say so instead of raising errors."""
    from selenium.webdriver.common.by import By
    st, tenant = howl.api("POST", "/api/v1/tokens", {"name": "ui-tenant"})
    assert st == 201
    spec = {"app": "Test Pattern", "width": 640, "height": 360, "fps": 30}
    assert howl.api("POST", "/api/v1/lobbies", {**spec, "name": "operator's"})[0] == 201
    assert howl.api("POST", "/api/v1/lobbies", {**spec, "name": "tenant's"},
                    token=tenant["token"])[0] == 201
    d = browser
    sign_in(d, howl, tenant["token"])
    d.find_element(By.CSS_SELECTOR, '[data-tab="lobbies"]').click()
    wait(d, lambda d: [cell(r, "name") for r in rows(d, "lobby-row")] == ["tenant's"],
         "only the tenant's lobby", howl)
    d.find_element(By.CSS_SELECTOR, '[data-tab="clients"]').click()
    wait(d, lambda d: "operator" in d.find_element(By.CSS_SELECTOR, '[data-empty="clients"]').text,
         "the clients list saying it is the operator's", howl)
    assert not [m for m in d.find_elements(*by_testid("message")) if "error" in m.get_attribute("class")]


def test_webui_nodes_view_shows_the_local_node_filling_and_drains_it(howl_factory, browser):
    """The Nodes tab lists the built-in local node with its producer slots as a bar: empty
    at first, one of four once a lobby runs (over the event stream, the periodic refresh
    held back); Drain (confirmed) makes it draining, live; `local` has no Remove button."""
    h = howl_factory(env={"HOWL_MAX_PRODUCERS": "4"})
    d = browser
    sign_in(d, h)
    d.find_element(*by_testid("tab-nodes")).click()
    row = wait(d, lambda d: (rows(d, "node-row") or [None])[0], "the local node's row", h)
    assert row.get_attribute("data-key") == "local"
    assert cell(row, "state") == "ready"
    bar = row.find_element(*by_testid("node-producers"))
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("0", "4")
    assert cell(row, "producers") == "0 / 4"
    assert cell(row, "encoder_sessions") == "0 (no limit)"
    assert "h264" in cell(row, "encoders")
    assert not row.find_elements(*by_testid("node-remove"))

    status, lobby = h.api("POST", "/api/v1/lobbies", {"name": "Bar", "app": "Test Pattern",
                                                      "width": 640, "height": 360, "fps": 30})
    assert status == 201, lobby
    wait(d, lambda _: bar.get_attribute("value") == "1", "the bar to show one producer", h)
    assert cell(row, "producers") == "1 / 4"
    assert row.find_element(*by_testid("node-encoder-sessions")).get_attribute("data-used") == "1"
    assert d.find_element(*by_testid("conn")).get_attribute("data-state") == "live"

    shot = artifact_dir() / "webui-nodes.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert d.save_screenshot(str(shot)), "screenshot failed"
    print(f"web UI screenshot: {shot}")

    row.find_element(*by_testid("node-drain")).click()
    d.switch_to.alert.accept()
    wait(d, lambda _: cell(row, "state") == "draining", "the node to show draining", h)
    status, nodes = h.api("GET", "/api/v1/nodes")
    assert [(n["name"], n["state"], n["producers"]) for n in nodes] == [("local", "draining", 1)]
    assert not row.find_element(*by_testid("node-drain")).is_enabled()
    errors = [m.text for m in d.find_elements(*by_testid("message"))
              if m.get_attribute("data-kind") == "error"]
    assert not errors, errors
