"""Issue 5 (partial): shared lobbies. A producer created through the API outlives its viewers;
joining never restarts it, a joiner's first frame is fresh (seed 004), a viewer that asks for
another resolution is told why, and stopping the lobby through the API ends its viewers."""

from __future__ import annotations

from conftest import make_client, run_client, wait_until


def create_lobby(h, **kw):
    body = {"name": "Shared", "app": "Test Pattern", "width": 1280, "height": 720, "fps": 60}
    body.update(kw)
    status, view = h.api("POST", "/api/v1/lobbies", body)
    assert status == 201, view
    return view


def test_lobby_validation_errors_are_clear(howl):
    status, body = howl.api("POST", "/api/v1/lobbies", {"name": "x", "app": "Nope"})
    assert status == 400 and "Nope" in body["error"]
    status, body = howl.api("POST", "/api/v1/lobbies", {"name": "x", "app": "Test Pattern",
                                                         "width": 7})
    assert status == 400 and "width" in body["error"]
    status, body = howl.api("POST", "/api/v1/lobbies", {"name": "x", "app": "Test Pattern",
                                                         "clients": ["zz"]})
    assert status == 400
    create_lobby(howl, name="dup")
    status, body = howl.api("POST", "/api/v1/lobbies", {"name": "dup", "app": "Test Pattern"})
    assert status == 409
    status, _ = howl.api("DELETE", "/api/v1/lobbies/999999")
    assert status == 404


def test_seed004_rejoining_a_lobby_gets_fresh_frames_and_the_same_producer(howl, tmp_path):
    create_lobby(howl)
    assert run_client(howl, tmp_path / "c", "--pair-only")["ok"]
    c = make_client(tmp_path / "c")
    c.connect("127.0.0.1", howl.http_port)
    assert "Shared" in [a.name for a in c.apps()], "the lobby is in the client's app list"
    pid = None
    for _ in range(100):
        status, lobbies = howl.api("GET", "/api/v1/lobbies")
        before = lobbies[0]["producer_frame_counter"]
        pid = pid or lobbies[0]["worker_pid"]
        assert lobbies[0]["worker_pid"] == pid, "joining restarted the producer"
        res = run_client(howl, tmp_path / "c", "--app", "Shared", "--frames", 10)
        assert res["ok"], res
        first = next(c for c in res["counters"] if c is not None)
        assert first >= before, (first, before)
        status, lobbies = howl.api("GET", "/api/v1/lobbies")
        assert lobbies[0]["worker_pid"] == pid
        assert lobbies[0]["viewers"] == 0


def test_lobby_viewer_with_another_resolution_is_refused(howl, tmp_path):
    create_lobby(howl)
    res = run_client(howl, tmp_path / "c", "--app", "Shared", "--width", 1920,
                     "--height", 1080, "--frames", 5)
    assert not res["ok"]
    assert "1280x720" in howl.log() or "1280" in res.get("error", ""), res


def test_stopping_a_lobby_ends_it_and_its_worker(howl, tmp_path):
    lobby = create_lobby(howl)
    status, _ = howl.api("DELETE", f"/api/v1/lobbies/{lobby['id']}")
    assert status == 204
    assert howl.api("GET", "/api/v1/lobbies")[1] == []
    assert wait_until(lambda: not howl.workers(), 3), howl.workers()
