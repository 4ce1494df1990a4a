"""Issue 6: the operator CLI (`howl status`, `sessions`, `lobbies`, `clients`) against a real
server, with real Moonlight clients pairing and streaming."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import (BackgroundPairing, finish_client, howl_bin, https_get, make_client,
                      server_info, start_streaming, stop_client, wait_until)

PIN = "6150"


def cli(h, *args, state_dir=None, api=None):
    """Runs `howl <args>` against server `h`; returns the CompletedProcess."""
    cmd = [howl_bin(), *map(str, args),
           "--state-dir", str(state_dir or h.state_dir),
           "--api", api or f"127.0.0.1:{h.api_port}"]
    env = {k: v for k, v in os.environ.items() if k not in ("HOWL_STATE_DIR", "HOWL_API_BIND")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)


def ok(h, *args) -> str:
    out = cli(h, *args)
    assert out.returncode == 0, f"howl {' '.join(map(str, args))}: {out.stderr}"
    assert h.token not in out.stdout + out.stderr, "the admin token must never be printed"
    return out.stdout


def fails(h, *args, **kw) -> str:
    out = cli(h, *args, **kw)
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert out.stderr.startswith("howl: "), out.stderr
    assert h.token not in out.stdout + out.stderr, "the admin token must never be printed"
    return out.stderr


def pair_with_cli(h, config_dir):
    """Pairs a moonlight-python client, entering the PIN with `howl pin`."""
    client = make_client(config_dir)
    info = server_info(client, h.http_port)
    pairing = BackgroundPairing(client, info, PIN)
    pairing.request(h.api)
    ok(h, "pin", PIN)
    pairing.succeeded()
    return client, info


def test_status_and_empty_listings(howl):
    out = ok(howl, "status")
    assert out.startswith("howl ") and "sessions" in out and "frames dropped" in out, out
    status = json.loads(ok(howl, "status", "--json"))
    assert status["engine"]["sessions"] == 0 and "version" in status
    assert ok(howl, "sessions").strip() == "no sessions"
    assert ok(howl, "lobbies").strip() == "no lobbies"
    assert ok(howl, "clients").strip() == "no paired clients"
    assert json.loads(ok(howl, "sessions", "--json")) == []


def test_clients_list_and_unpair_by_prefix_and_by_name(howl, tmp_path):
    from moonlight_python.exceptions import HttpResponseError
    client, info = pair_with_cli(howl, tmp_path / "c")
    _, api_clients = howl.api("GET", "/api/v1/clients")
    assert len(api_clients) == 1
    fp, name = api_clients[0]["fingerprint"], api_clients[0]["name"]

    listed = json.loads(ok(howl, "clients", "--json"))
    assert listed == api_clients
    table = ok(howl, "clients").splitlines()
    assert table[0].split() == ["NAME", "FINGERPRINT", "PAIRED", "AT"], table
    assert fp[:16] in table[2] and fp[:17] not in table[2] and "UTC" in table[2], table
    assert name in table[2], table

    assert fp[:8] in ok(howl, "clients", "unpair", fp[:8])
    assert howl.api("GET", "/api/v1/clients")[1] == []
    try:
        https_get(client, info, "applist")
        raise AssertionError("an unpaired client must be refused")
    except HttpResponseError as e:
        assert e.status_code == 401

    # Pair again (same certificate) and unpair by its exact name this time.
    pair_with_cli(howl, tmp_path / "c")
    ok(howl, "clients", "unpair", name)
    assert howl.api("GET", "/api/v1/clients")[1] == []


def test_lobby_create_list_stop(howl, tmp_path):
    out = ok(howl, "lobbies", "create", "--name", "Movie night", "--app", "Test Pattern",
             "--width", 640, "--height", 360, "--fps", 30, "--stop-when-empty")
    assert "Movie night" in out, out
    lobbies = json.loads(ok(howl, "lobbies", "--json"))
    assert len(lobbies) == 1, lobbies
    lobby = lobbies[0]
    assert (lobby["name"], lobby["width"], lobby["height"], lobby["fps"]) == (
        "Movie night", 640, 360, 30)
    assert lobby["stop_when_everyone_leaves"] is True
    table = ok(howl, "lobbies").splitlines()
    assert len(table) == 3 and "Movie night" in table[2] and "640x360" in table[2], table
    assert "already" in fails(howl, "lobbies", "create", "--name", "Movie night",
                              "--app", "Test Pattern")
    assert ok(howl, "lobbies", "stop", lobby["id"]).strip() == f"stopped lobby {lobby['id']}"
    assert howl.api("GET", "/api/v1/lobbies")[1] == []
    assert ok(howl, "lobbies").strip() == "no lobbies"


def test_lobby_create_resolves_client_prefix(howl, tmp_path):
    pair_with_cli(howl, tmp_path / "c")
    fp = howl.api("GET", "/api/v1/clients")[1][0]["fingerprint"]
    ok(howl, "lobbies", "create", "--name", "private", "--app", "Test Pattern",
       "--client", fp[:10])
    lobbies = howl.api("GET", "/api/v1/lobbies")[1]
    assert lobbies[0]["clients"] == [fp], lobbies
    assert "no paired client matches" in fails(
        howl, "lobbies", "create", "--name", "other", "--app", "Test Pattern",
        "--client", "nobody")
    # Viewer permissions: a view-only lobby for this client, then live changes by prefix.
    ok(howl, "lobbies", "create", "--name", "class", "--app", "Test Pattern",
       "--viewer-permission", "view", "--creator", fp[:10])
    (cls,) = [x for x in howl.api("GET", "/api/v1/lobbies")[1] if x["name"] == "class"]
    assert (cls["viewer_permission"], cls["creator"]) == ("view", fp), cls
    assert "view" in ok(howl, "lobbies").splitlines()[3].split(), ok(howl, "lobbies")
    ok(howl, "lobbies", "permission", cls["id"], "control")
    ok(howl, "lobbies", "permission", cls["id"], "view", "--client", fp[:10])
    (cls,) = [x for x in howl.api("GET", "/api/v1/lobbies")[1] if x["name"] == "class"]
    assert cls["viewer_permission"] == "control", cls
    assert cls["client_permissions"] == {fp: "view"}, cls
    assert "--client" in fails(howl, "lobbies", "permission", cls["id"], "default")
    assert "no session 999" in fails(howl, "sessions", "permission", "999", "view")


def test_sessions_list_and_stop_during_a_stream(howl, tmp_path):
    p = start_streaming(howl, tmp_path / "c", "--frames", 30, "--wait-termination", 20)
    try:
        sessions = json.loads(ok(howl, "sessions", "--json"))
        assert len(sessions) == 1, sessions
        sid = sessions[0]["id"]
        table = ok(howl, "sessions").splitlines()
        assert table[0].split()[:3] == ["ID", "CLIENT", "APP"], table
        row = table[2].split()
        assert row[0] == str(sid) and "1280x720" in row and "h264" in row, table
        # Issue 14: the CLIENT column is the paired client's name from the certificate
        # registry, read when listing (a rename shows at once), not its fingerprint.
        (paired,) = howl.api("GET", "/api/v1/clients")[1]
        assert sessions[0]["client"] == paired["fingerprint"], (sessions, paired)
        assert sessions[0]["client_name"] == paired["name"], (sessions, paired)
        assert paired["name"] in table[2], (paired, table)
        code, _ = howl.api("PATCH", f"/api/v1/clients/{paired['fingerprint']}",
                           {"name": "den tv"})
        assert code == 200, code
        table = ok(howl, "sessions").splitlines()
        assert "den tv" in table[2] and paired["fingerprint"][:16] not in table[2], table
        assert json.loads(ok(howl, "sessions", "--json"))[0]["client_name"] == "den tv"
        status = ok(howl, "status")
        assert "sessions        1" in status, status

        assert ok(howl, "sessions", "stop", sid).strip() == f"stopped session {sid}"
        res = finish_client(p, howl)
        assert res.get("terminated_after") is not None, ("client was never told", res)
        assert wait_until(lambda: howl.api("GET", "/api/v1/sessions")[1] == [], 10)
        assert ok(howl, "sessions").strip() == "no sessions"
    finally:
        stop_client(p)


def test_errors_are_clear_and_exit_1(howl, tmp_path):
    assert "no session 4242" in fails(howl, "sessions", "stop", 4242)
    assert "no lobby" in fails(howl, "lobbies", "stop", 4242)
    assert "no paired client matches 'nobody'" in fails(howl, "clients", "unpair", "nobody")
    assert "at least 6 hex digits" in fails(howl, "clients", "unpair", "abc")

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "api-token").write_text("not-the-token-not-the-token\n")
    err = fails(howl, "status", state_dir=wrong)
    assert "api-token was refused" in err and str(wrong) in err, err
    assert "not-the-token" not in err

    err = fails(howl, "sessions", api="127.0.0.1:1")
    assert "cannot reach the howl API" in err, err
