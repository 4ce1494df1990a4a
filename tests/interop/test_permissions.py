"""Viewer permissions (issue 15, acceptance 4): two real clients in one lobby of the desktop test
app (`howl-testapp`). The lobby's creator controls; the other joined a lobby whose joiners only
view: its keys and clicks never reach the app (the app's picture does not change, the drop
counters move) until an operator gives it control through the API, which takes effect on its
next input packet without a reconnect. Nothing secret (session keys, token, PIN) shows in the
log, the events or the API answers on the way (acceptance 6 for these paths).
"""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import conftest
from conftest import cert_fingerprint, stop_client, wait_for
from test_api import EventStream
from test_desktop import desktop_howl

from conftest import needs_xvfb  # noqa: E402

pytestmark = needs_xvfb

W, H = 1024, 768


class Viewer:
    """One real client in the lobby, in its own process, acting when the test says."""

    def __init__(self, h, tmp_path: Path, name: str, key: int):
        self.h, self.name = h, name
        self.config = tmp_path / name
        self.phases = tmp_path / f"{name}-phases"
        self.phases.mkdir()
        self.keys = tmp_path / f"{name}-keys.jsonl"
        self.ready = tmp_path / f"{name}.ready"
        self.n = 0
        self.key = key
        self.proc = None

    def pair(self):
        r = conftest.run_client(self.h, self.config, "--pair-only")
        assert r["ok"], r
        return cert_fingerprint((self.config / "cert.pem").read_bytes())

    def start(self, lobby: str):
        self.proc = conftest.run_client(
            self.h, self.config, "--app", lobby, "--width", W, "--height", H, "--fps", 30,
            "--mode", "permission", "--key", hex(self.key), "--phase-dir", self.phases,
            "--ready-file", self.ready, "--keys-file", self.keys,
            script="desktop_client.py", background=True)

    def wait_ready(self):
        wait_for(lambda: self.ready.exists() or self.proc.poll() is not None, 60,
                 lambda: f"{self.name} to stream\nhowl log:\n{self.h.log()[-3000:]}")
        assert self.proc.poll() is None, conftest.finish_client(self.proc, self.h)

    def attempt(self, expect: str) -> dict:
        """Presses its key and the left button once; the picture it saw."""
        self.n += 1
        (self.phases / f"go-{self.n}").write_text(expect)
        result = self.phases / f"result-{self.n}.json"
        wait_for(lambda: result.exists() or self.proc.poll() is not None, 20,
                 lambda: f"{self.name}'s attempt {self.n}")
        if not result.exists():
            raise AssertionError(f"{self.name} ended: {conftest.finish_client(self.proc, self.h)}")
        return json.loads(result.read_text())

    def finish(self) -> dict:
        (self.phases / "stop").touch()
        return conftest.finish_client(self.proc, self.h)


def session_of(h, fingerprint: str) -> dict:
    status, sessions = h.api("GET", "/api/v1/sessions")
    assert status == 200, sessions
    mine = [s for s in sessions if s["client"] == fingerprint]
    assert len(mine) == 1, sessions
    return mine[0]


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def test_a_view_only_viewers_input_never_reaches_the_desktop_until_given_control(
        howl_factory, tmp_path):
    h = desktop_howl(howl_factory, tmp_path)
    events = EventStream(h, h.token)
    answers: list[str] = []
    teacher = Viewer(h, tmp_path, "teacher", 0x41)   # 'a'
    student = Viewer(h, tmp_path, "student", 0x42)   # 'b'
    try:
        fp_teacher, fp_student = teacher.pair(), student.pair()
        status, lobby = h.api("POST", "/api/v1/lobbies", {
            "name": "Class", "app": "Test App", "width": W, "height": H, "fps": 30,
            "viewer_permission": "view", "creator": fp_teacher.upper()})
        assert status == 201, lobby
        answers.append(json.dumps(lobby))
        assert lobby["viewer_permission"] == "view" and lobby["creator"] == fp_teacher, lobby
        # Both join at once (each start is seconds of handshake and first frames).
        teacher.start("Class")
        student.start("Class")
        teacher.wait_ready()
        student.wait_ready()
        assert session_of(h, fp_teacher)["permission"] == "control"
        assert session_of(h, fp_student)["permission"] == "view"

        # The creator controls: its key and click show in the app's picture.
        r = teacher.attempt("reach")
        assert r["key_at"] is not None and r["button_at"] is not None, r

        # The view-only viewer's key and click: nothing in the picture changes.
        r = student.attempt("blocked")
        assert r["changes"] == [] and r["key_at"] is None and r["button_at"] is None, r
        assert r["watched"] >= 0.9, r
        # The input did arrive and was dropped (key down, key up, button down, button up).
        s = wait_for(lambda: (lambda s: s if s["input_dropped"] >= 4 else None)(
            session_of(h, fp_student)), 5, "the student's dropped input counted")
        assert session_of(h, fp_teacher)["input_dropped"] == 0
        status, text = h.api("GET", "/metrics")
        assert status == 200
        answers.append(text)
        assert metric(text, "howl_input_dropped_total") >= 4, text
        # Per session too (at least what the API showed a moment ago: late packets of the
        # attempt may still have been counted since).
        m = re.search(rf'^howl_session_input_dropped_total{{session="{s["id"]}",[^}}]*}} (\d+)$',
                      text, re.M)
        assert m and int(m.group(1)) >= s["input_dropped"], text

        # An operator gives it control, live: its next key and click reach the app, on the
        # same stream (same session id, no reconnect).
        status, after = h.api("PUT", f"/api/v1/sessions/{s['id']}/permission",
                              {"permission": "control"})
        assert status == 200, after
        answers.append(json.dumps(after))
        assert after["id"] == s["id"] and after["permission"] == "control", after
        assert after["permission_set"] is True, after
        dropped = session_of(h, fp_student)["input_dropped"]
        t0 = time.monotonic()
        r = student.attempt("reach")
        assert r["key_at"] is not None and r["button_at"] is not None, (r, h.log()[-3000:])
        print(f"given control: the key showed {r['key_at']} s after it was sent "
              f"({time.monotonic() - t0:.2f} s with the attempt's set-up)")
        now = session_of(h, fp_student)
        assert now["id"] == s["id"] and now["input_dropped"] == dropped, now
        events.wait(lambda e: e["type"] == "permission_changed" and e["id"] == s["id"]
                    and e["permission"] == "control")

        for path in ["/api/v1/sessions", "/api/v1/lobbies", "/api/v1/status"]:
            answers.append(json.dumps(h.api("GET", path)[1]))
        results = [teacher.finish(), student.finish()]
        assert all(res["ok"] for res in results), results
    finally:
        for v in (teacher, student):
            if v.proc is not None:
                stop_client(v.proc)
        events.close()

    # Acceptance 6 on these paths: no session key or IV (hex, either case, base64), no token,
    # no PIN in the log, the events or any API answer above.
    secrets = {h.token}
    for v in (teacher, student):
        for line in v.keys.read_text().splitlines():
            for value in json.loads(line).values():
                raw = bytes.fromhex(value)
                secrets |= {value.lower(), value.upper(), base64.b64encode(raw).decode(),
                            base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    assert len(secrets) > 1, "the clients recorded no launch key"
    haystacks = {"log": h.log(), "events": "\n".join(events.raw), "api": "\n".join(answers)}
    for name, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into the {name}"
        text = re.sub(r"pids?\W+\[?[\d, ]+", "", text)
        assert not re.search(r"(?<!\d)5317(?!\d)", text), f"the PIN leaked into the {name}"


def test_lobby_and_client_permissions_through_the_api(howl):
    """The lobby routes without a stream: defaults, validation, per-client settings."""
    status, lobby = howl.api("POST", "/api/v1/lobbies", {"name": "L", "app": "Test Pattern",
                                                          "width": 640, "height": 360})
    assert status == 201 and lobby["viewer_permission"] == "control", lobby
    fp = "ab" * 32
    status, body = howl.api("PUT", f"/api/v1/lobbies/{lobby['id']}/permission",
                            {"viewer_permission": "admin"})
    assert status == 400, body
    status, view = howl.api("PUT", f"/api/v1/lobbies/{lobby['id']}/permission",
                            {"viewer_permission": "view"})
    assert status == 200 and view["viewer_permission"] == "view", view
    status, view = howl.api("PUT", f"/api/v1/lobbies/{lobby['id']}/clients/{fp.upper()}/permission",
                            {"permission": "control"})
    assert status == 200 and view["client_permissions"] == {fp: "control"}, view
    status, view = howl.api("PUT", f"/api/v1/lobbies/{lobby['id']}/clients/{fp}/permission",
                            {"permission": None})
    assert status == 200 and view["client_permissions"] == {}, view
    status, body = howl.api("PUT", f"/api/v1/lobbies/{lobby['id']}/clients/zz/permission",
                            {"permission": "view"})
    assert status == 400 and "fingerprint" in body["error"], body
    assert howl.api("PUT", "/api/v1/lobbies/999999/permission",
                    {"viewer_permission": "view"})[0] == 404
    assert howl.api("PUT", "/api/v1/sessions/999999/permission", {"permission": "view"})[0] == 404
    status, body = howl.api("POST", "/api/v1/lobbies", {"name": "M", "app": "Test Pattern",
                                                        "creator": "nope"})
    assert status == 400, body
    # A tenant changes only its own lobbies' permissions.
    status, tenant = howl.api("POST", "/api/v1/tokens", {"name": "t"})
    assert status == 201
    for path, b in [(f"/api/v1/lobbies/{lobby['id']}/permission", {"viewer_permission": "view"}),
                    (f"/api/v1/lobbies/{lobby['id']}/clients/{fp}/permission",
                     {"permission": "view"})]:
        status, body = howl.api("PUT", path, b, token=tenant["token"])
        assert status == 403, (path, body)
    status, own = howl.api("POST", "/api/v1/lobbies", {"name": "T", "app": "Test Pattern",
                                                       "width": 640, "height": 360},
                           token=tenant["token"])
    assert status == 201, own
    status, view = howl.api("PUT", f"/api/v1/lobbies/{own['id']}/permission",
                            {"viewer_permission": "view"}, token=tenant["token"])
    assert status == 200 and view["viewer_permission"] == "view", view
