"""Issue 6 acceptance 1, 4 and 5: the management API.

Every route needs a token (401 without), a tenant token reaches only what it owns (403
elsewhere), bad input is a 400 with a message, state survives a restart, the OpenAPI document
validates and lists every route, events arrive live over SSE, the unix socket answers as the
admin, and no secret (session key, IV, PIN, token) appears in any event, log line or API answer
during a full pair + stream + stop run with the real client."""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import finish_client, start_streaming, stop_client, wait_until

FP = "ab" * 32


class EventStream:
    """Reads /api/v1/events in a thread and keeps every event."""

    def __init__(self, howl, token):
        self.events: list[dict] = []
        self.raw: list[str] = []
        self.cond = threading.Condition()
        req = urllib.request.Request(f"http://127.0.0.1:{howl.api_port}/api/v1/events")
        req.add_header("Authorization", f"Bearer {token}")
        self.resp = urllib.request.urlopen(req, timeout=60)
        assert self.resp.headers["Content-Type"].startswith("text/event-stream")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.wait(lambda e: e["type"] == "hello")

    def _run(self):
        data = []
        try:
            for raw in self.resp:
                line = raw.decode().rstrip("\n")
                with self.cond:
                    self.raw.append(line)
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    ev = json.loads("\n".join(data))
                    data = []
                    with self.cond:
                        self.events.append(ev)
                        self.cond.notify_all()
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            # Closing the response from the test thread ends the read loop this way.
            pass

    def wait(self, pred, timeout=20.0):
        with self.cond:
            ok = self.cond.wait_for(lambda: any(pred(e) for e in self.events), timeout)
            assert ok, f"no matching event in {self.events}"
            return next(e for e in self.events if pred(e))

    def close(self):
        self.resp.close()


def fill(path: str) -> str:
    return (path.replace("{fingerprint}", FP).replace("{id}", "1").replace("{lobby}", "1")
            .replace("{session}", "1").replace("{app}", "1"))


def test_openapi_validates_and_every_route_needs_a_token(howl):
    from openapi_spec_validator import validate
    status, doc = howl.api("GET", "/api/v1/openapi.json")
    assert status == 200
    validate(doc)
    paths = doc["paths"]
    # Every route the server has (this list is what the README documents); the document must
    # list each, and list nothing the router does not serve.
    expected = {
        "/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/api/v1/server",
        "/api/v1/status", "/api/v1/events", "/api/v1/pairing/pending", "/api/v1/pairing/pin",
        "/api/v1/clients", "/api/v1/clients/{fingerprint}", "/api/v1/sessions",
        "/api/v1/sessions/{id}", "/api/v1/lobbies", "/api/v1/lobbies/{id}",
        "/api/v1/lobbies/{id}/clients", "/api/v1/sessions/{id}/permission",
        "/api/v1/lobbies/{id}/permission", "/api/v1/lobbies/{id}/clients/{fingerprint}/permission",
        "/api/v1/workers", "/api/v1/apps", "/api/v1/apps/{id}",
        "/api/v1/nodes",
        "/api/v1/tokens", "/api/v1/tokens/{id}",
        "/api/v1/lobbies/{id}/whep", "/api/v1/lobbies/{id}/whep/{session}",
        "/api/v1/apps/{id}/whep", "/play/{app}",
        "/", "/ui", "/ui/", "/ui/app.js", "/ui/style.css",
        "/watch/{lobby}", "/ui/watch.js", "/ui/watch.css",
    }
    public = {"/healthz", "/readyz", "/", "/ui", "/ui/", "/ui/app.js", "/ui/style.css",
              "/watch/{lobby}", "/ui/watch.js", "/ui/watch.css", "/play/{app}"}
    assert expected <= set(paths), expected - set(paths)
    checked = 0
    for path, ops in paths.items():
        for method in ops:
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            st, body = howl.api(method.upper(), fill(path), body={} if method != "get" else None,
                                token=None)
            if path in public:
                # Static files with no data (the UI signs in with a token), and health probes.
                assert st == 200, (path, st)
            else:
                assert st == 401, (method, path, st, body)
                assert "token" in body["error"]
                st, _ = howl.api(method.upper(), fill(path), token="wrong-token",
                                 body={} if method != "get" else None)
                assert st == 401, (method, path, st)
            checked += 1
    assert checked >= 32  # every method of every route above
    # And an undocumented path is not served at all.
    assert howl.api("GET", "/api/v1/nothing")[0] == 404


def test_tenant_tokens_are_scoped_and_validation_is_400(howl):
    st, t1 = howl.api("POST", "/api/v1/tokens", {"name": "team-a"})
    assert st == 201 and len(t1["token"]) == 64
    st, t2 = howl.api("POST", "/api/v1/tokens", {"name": "team-b"})
    assert st == 201
    # Listing tokens never shows them again.
    st, listed = howl.api("GET", "/api/v1/tokens")
    assert st == 200 and {t["name"] for t in listed} == {"team-a", "team-b"}
    assert t1["token"] not in json.dumps(listed)

    a, b = t1["token"], t2["token"]
    # Admin-only routes: 403 for tenants, with a message.
    for method, path, body in [("GET", "/api/v1/status", None), ("GET", "/api/v1/clients", None),
                               ("GET", "/api/v1/pairing/pending", None),
                               ("POST", "/api/v1/pairing/pin", {"pin": "1234"}),
                               ("GET", "/api/v1/tokens", None), ("GET", "/metrics", None),
                               ("DELETE", f"/api/v1/clients/{FP}", None),
                               ("PATCH", f"/api/v1/clients/{FP}", {"name": "x"}),
                               ("POST", "/api/v1/tokens", {"name": "x"}),
                               ("GET", "/api/v1/nodes", None)]:
        st, body = howl.api(method, path, body, token=a)
        assert st == 403, (method, path, st, body)
        assert body["error"]

    # A tenant creates its lobby and app; the other tenant cannot see or stop them.
    st, lobby = howl.api("POST", "/api/v1/lobbies",
                         {"name": "A's lobby", "app": "Test Pattern", "width": 640, "height": 360,
                          "fps": 30}, token=a)
    assert st == 201, lobby
    assert lobby["tenant"] == t1["id"]
    st, app = howl.api("POST", "/api/v1/apps", {"title": "A tone", "kind": "test-pattern",
                                                "tone_hz": 660}, token=a)
    assert st == 201, app
    assert [l["id"] for l in howl.api("GET", "/api/v1/lobbies", token=a)[1]] == [lobby["id"]]
    assert howl.api("GET", "/api/v1/lobbies", token=b)[1] == []
    assert len(howl.api("GET", "/api/v1/lobbies")[1]) == 1  # the admin sees everything
    assert howl.api("DELETE", f"/api/v1/lobbies/{lobby['id']}", token=b)[0] == 403
    assert howl.api("PUT", f"/api/v1/lobbies/{lobby['id']}/clients", {"clients": []},
                    token=b)[0] == 403
    assert howl.api("GET", f"/api/v1/apps/{app['id']}", token=b)[0] == 403
    assert howl.api("DELETE", f"/api/v1/apps/{app['id']}", token=b)[0] == 403
    assert "A tone" not in [x["title"] for x in howl.api("GET", "/api/v1/apps", token=b)[1]]
    assert howl.api("POST", "/api/v1/lobbies", {"name": "B steals", "app": "A tone"},
                    token=b)[0] == 403
    workers = howl.api("GET", "/api/v1/workers", token=b)[1]
    assert workers == []
    # A process app runs a command on the host: only the operator may define one.
    st, body = howl.api("POST", "/api/v1/apps", {"title": "sh", "kind": "process",
                                                 "command": "/bin/sh"}, token=a)
    assert st == 403 and "process" in body["error"], body
    # So does a container (with the host's mounts and the Docker daemon's powers).
    st, body = howl.api("POST", "/api/v1/apps", {"title": "c", "kind": "docker",
                                                 "image": "busybox"}, token=a)
    assert st == 403 and "docker" in body["error"], body
    # The built-in app is read-only to everyone.
    tp = next(x for x in howl.api("GET", "/api/v1/apps")[1] if x["title"] == "Test Pattern")
    assert howl.api("DELETE", f"/api/v1/apps/{tp['id']}")[0] == 409
    assert howl.api("DELETE", f"/api/v1/apps/{tp['id']}", token=a)[0] == 403

    # Validation errors: 400 with a message that says what is wrong.
    for method, path, body, needle in [
        ("POST", "/api/v1/apps", {"title": "", "kind": "test-pattern"}, "title"),
        ("POST", "/api/v1/apps", {"title": "x", "kind": "warp-drive"}, "variant"),
        ("POST", "/api/v1/apps", {"title": "p", "kind": "process", "command": " "}, "command"),
        ("POST", "/api/v1/apps", {"title": "Test Pattern", "kind": "test-pattern"}, "unique"),
        ("POST", "/api/v1/lobbies", {"name": "x", "app": "Test Pattern", "fps": 0}, "fps"),
        ("POST", "/api/v1/lobbies", {"name": "x", "app": "Nope"}, "Nope"),
        ("POST", "/api/v1/lobbies", {"name": "x", "app": "Test Pattern", "clients": ["zz"]},
         "fingerprint"),
        ("POST", "/api/v1/lobbies", {"name": "x", "app": "Test Pattern", "colour": 1}, "colour"),
        ("PUT", f"/api/v1/lobbies/{lobby['id']}/clients", {"clients": ["12"]}, "fingerprint"),
        ("PATCH", "/api/v1/clients/xyz", {"name": "n"}, "64 hex"),
        ("PATCH", f"/api/v1/clients/{FP}", {"name": ""}, "name"),
        ("POST", "/api/v1/tokens", {"name": "  "}, "name"),
        ("POST", "/api/v1/tokens", {"name": "team-a"}, "exists"),
        ("POST", "/api/v1/pairing/pin", {"pin": "12"}, "4 digits"),
    ]:
        st, resp = howl.api(method, path, body)
        assert st == 400, (method, path, body, st, resp)
        assert needle.lower() in resp["error"].lower(), (needle, resp)
    # Not found is 404, wrong JSON is 400.
    assert howl.api("PATCH", f"/api/v1/clients/{FP}", {"name": "n"})[0] == 404
    assert howl.api("DELETE", "/api/v1/tokens/999")[0] == 404
    req = urllib.request.Request(f"http://127.0.0.1:{howl.api_port}/api/v1/apps",
                                 data=b"{not json", method="POST")
    req.add_header("Authorization", f"Bearer {howl.token}")
    req.add_header("Content-Type", "application/json")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400

    # A deleted tenant's token stops working at once.
    assert howl.api("DELETE", f"/api/v1/tokens/{t2['id']}")[0] == 204
    assert howl.api("GET", "/api/v1/lobbies", token=b)[0] == 401
    # The tenant stops its own lobby.
    assert howl.api("DELETE", f"/api/v1/lobbies/{lobby['id']}", token=a)[0] == 204


def test_state_persists_across_restart(howl_factory, tmp_path):
    h = howl_factory()
    st, tenant = h.api("POST", "/api/v1/tokens", {"name": "keeper"})
    assert st == 201
    st, app = h.api("POST", "/api/v1/apps", {"title": "Low tone", "kind": "test-pattern",
                                             "tone_hz": 220}, token=tenant["token"])
    assert st == 201
    st, upd = h.api("PUT", f"/api/v1/apps/{app['id']}", {"title": "Lower tone",
                                                          "kind": "test-pattern", "tone_hz": 110},
                    token=tenant["token"])
    assert st == 200 and upd["kind"]["tone_hz"] == 110 and upd["owner"] == tenant["id"]
    assert h.stop() == 0
    h.start()
    apps = h.api("GET", "/api/v1/apps", token=tenant["token"])[1]
    assert [a["title"] for a in apps if a["source"] == "api"] == ["Lower tone"]
    assert h.api("GET", "/api/v1/tokens")[1][0]["name"] == "keeper"
    state = json.loads((h.state_dir / "state.json").read_text())
    assert state["schema"] == 2
    assert tenant["token"] not in json.dumps(state)  # only its digest is stored


def test_unix_socket_is_the_admin_without_a_token(howl):
    path = howl.state_dir / "api.sock"
    assert path.exists()
    assert (path.stat().st_mode & 0o777) == 0o600
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(path))
    s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: howl\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"engine" in body


def unix_get(path, prefix=()) -> bytes:
    """GET /api/v1/status over the unix socket `path` from a child process (run under
    `prefix`, e.g. setpriv as another user); returns every byte the server sent."""
    import subprocess
    import sys
    code = ("import socket,sys\n"
            "s=socket.socket(socket.AF_UNIX);s.settimeout(10);s.connect(sys.argv[1])\n"
            # A refused peer may be disconnected before its request is written: EPIPE or a
            # reset then, and nothing answered, is what refusal looks like.
            "try: s.sendall(b'GET /api/v1/status HTTP/1.1\\r\\nHost: howl\\r\\nConnection: close\\r\\n\\r\\n')\n"
            "except (BrokenPipeError, ConnectionResetError): sys.exit(0)\n"
            "d=b''\n"
            "while True:\n"
            "    try: c=s.recv(65536)\n"
            "    except ConnectionResetError: break\n"
            "    if not c: break\n"
            "    d+=c\n"
            "sys.stdout.buffer.write(d)\n")
    r = subprocess.run([*prefix, sys.executable, "-c", code, str(path)], capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout


def test_unix_socket_refuses_other_users_by_peer_credentials(howl_factory):
    """With the file mode opened up on purpose (0666 socket in a 0755 directory), only the
    peer-credential check stands between another user and the admin API: it must refuse."""
    import os
    import shutil
    import uuid
    from pathlib import Path
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user (setpriv)")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed: cannot connect as another user")
    base = Path(f"/tmp/howl-peercred-{uuid.uuid4().hex[:8]}")
    base.mkdir(mode=0o755)
    h = None
    try:
        h = howl_factory(state_dir=base / "state")
        sock = h.state_dir / "api.sock"
        h.state_dir.chmod(0o755)
        sock.chmod(0o666)
        assert unix_get(sock).startswith(b"HTTP/1.1 200"), "root is served"
        nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--"]
        reply = unix_get(sock, nobody)
        assert reply == b"", f"another user was answered: {reply[:200]!r}"
        assert "api.sock: refused a connection" in h.log()
    finally:
        if h is not None:
            assert h.stop() == 0, h.log()[-3000:]
        shutil.rmtree(base, ignore_errors=True)


def test_events_are_live_and_scoped(howl):
    st, tenant = howl.api("POST", "/api/v1/tokens", {"name": "viewer"})
    admin = EventStream(howl, howl.token)
    mine = EventStream(howl, tenant["token"])
    try:
        st, lobby = howl.api("POST", "/api/v1/lobbies", {"name": "live", "app": "Test Pattern",
                                                         "width": 640, "height": 360, "fps": 30})
        assert st == 201
        e = admin.wait(lambda e: e["type"] == "lobby_created")
        assert e["id"] == lobby["id"] and e["name"] == "live"
        w = admin.wait(lambda e: e["type"] == "worker_started")
        assert w["lobby_id"] == lobby["id"] and w["pid"] > 0
        st, tl = howl.api("POST", "/api/v1/lobbies", {"name": "theirs", "app": "Test Pattern",
                                                      "width": 640, "height": 360, "fps": 30},
                          token=tenant["token"])
        assert st == 201
        mine.wait(lambda e: e["type"] == "lobby_created" and e["id"] == tl["id"])
        assert howl.api("DELETE", f"/api/v1/lobbies/{lobby['id']}")[0] == 204
        stopped = admin.wait(lambda e: e["type"] == "lobby_stopped")
        assert stopped["reason"]
        assert howl.api("DELETE", f"/api/v1/lobbies/{tl['id']}")[0] == 204
        mine.wait(lambda e: e["type"] == "lobby_stopped" and e["id"] == tl["id"])
        # The tenant never saw the admin's lobby.
        assert all(e.get("id") != lobby["id"] for e in mine.events if "lobby" in e["type"])
    finally:
        admin.close()
        mine.close()


def test_no_secret_in_events_logs_or_api_during_pair_stream_stop(howl, tmp_path):
    """Acceptance 4: a full pair + stream + stop run with the real client; every SSE event,
    log line and API answer is scanned for the session's AES key and IV, the PIN and the API
    token."""
    events = EventStream(howl, howl.token)
    keys_file = tmp_path / "keys.jsonl"
    answers: list[str] = []
    t_launch = time.monotonic()
    p = start_streaming(howl, tmp_path / "c", "--frames", 60, "--wait-termination", 30,
                        "--keys-file", keys_file)
    try:
        # Every read route while the stream runs.
        for path in ["/api/v1/status", "/api/v1/server", "/api/v1/sessions", "/api/v1/lobbies",
                     "/api/v1/workers", "/api/v1/clients", "/api/v1/apps", "/api/v1/tokens",
                     "/api/v1/pairing/pending", "/metrics"]:
            st, body = howl.api("GET", path)
            assert st == 200, (path, body)
            answers.append(body if isinstance(body, str) else json.dumps(body))
        sessions = howl.api("GET", "/api/v1/sessions")[1]
        assert len(sessions) == 1
        s = sessions[0]
        assert s["rtt_ms"] is None or s["rtt_ms"] >= 1
        assert s["bitrate_kbps"] > 0 and s["frames_sent"] > 0, s
        # The session's age: never more than since the launch, and it grows.
        assert s["uptime_secs"] <= time.monotonic() - t_launch + 1, s
        assert wait_until(lambda: howl.api("GET", "/api/v1/sessions")[1][0]["uptime_secs"]
                          > s["uptime_secs"], 3), s
        assert howl.api("DELETE", f"/api/v1/sessions/{s['id']}")[0] == 204
        res = finish_client(p, howl)
        assert res["ok"], res
        assert "terminated_after" in res
        events.wait(lambda e: e["type"] == "session_ended")
    finally:
        stop_client(p)
        events.close()
    keys = [json.loads(line) for line in keys_file.read_text().splitlines()]
    assert keys, "the client recorded no launch key"
    secrets = {howl.token}
    for k in keys:
        # The key is also the session's RTSP key (rtspenc: this client announces corever=1).
        for h in (k["key"], k["iv"]):
            raw = bytes.fromhex(h)
            secrets |= {h, h.upper(), base64.b64encode(raw).decode(),
                        base64.b64encode(raw).decode().rstrip("="),
                        base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    haystacks = {"log": howl.log(), "events": "\n".join(events.raw),
                 "api": "\n".join(answers)}
    for name, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into the {name}"
    # The PIN the stream client paired with (stream_client.py's fixed PIN), as a whole number;
    # process ids are dropped first, since a worker's pid may happen to be the same digits.
    for name, text in haystacks.items():
        text = re.sub(r"pids?\W+\[?[\d, ]+", "", text)
        assert not re.search(r"(?<!\d)5317(?!\d)", text), f"the PIN leaked into the {name}"
    kinds = {e["type"] for e in events.events}
    assert {"pairing_requested", "pairing_completed", "session_started", "session_ended",
            "worker_started"} <= kinds, kinds
