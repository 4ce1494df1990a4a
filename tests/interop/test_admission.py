"""Issue 19, admission control with only the local machine: with `--max-producers 2` the host
runs two producers (a real client's private Test Pattern and a lobby), refuses the third on
every path at once with a reason that names the limit (the real client's launch error, the
API's 409 body, an RTSP player's 503), counts and logs it, starts nothing for it, admits a
join of the running lobby, and admits the next launch once a producer ends."""

from __future__ import annotations

import os
import re
import subprocess

from conftest import (finish_client, howl_bin, run_client, start_streaming, stop_client,
                      wait_for)
from rtsp_player import Rtsp, basic

REASON = "max_producers = 2"


def refused_total(h, path: str) -> float:
    status, text = h.api("GET", "/metrics")
    assert status == 200, text
    m = re.search(rf'^howl_admission_refused_total\{{path="{path}"\}} (\S+)$', text, re.M)
    assert m, f"howl_admission_refused_total{{path={path!r}}} not in /metrics"
    return float(m.group(1))


def share_status(h, app_path: str) -> int:
    """The status an RTSP player gets for DESCRIBE of an app share (`/app/<title>`), which
    starts a producer: 503 when admission refuses it."""
    rtsp = Rtsp(h.rtsp_port)
    try:
        status, _, _ = rtsp.request("DESCRIBE", rtsp.url(app_path),
                                    {"Authorization": basic("admin", h.token),
                                     "Accept": "application/sdp"})
        return status
    finally:
        rtsp.close()


def producers(h) -> dict:
    return h.api("GET", "/api/v1/status")[1]["engine"]["admission"]


def howl_nodes(h) -> str:
    """`howl nodes` against `h` (the CLI view of /api/v1/nodes)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HOWL_STATE_DIR", "HOWL_API_BIND")}
    out = subprocess.run([howl_bin(), "nodes", "--state-dir", str(h.state_dir),
                          "--api", f"127.0.0.1:{h.api_port}"],
                         capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_third_producer_is_refused_on_every_path_and_the_next_fits_after_one_ends(
        howl_factory, tmp_path):
    h = howl_factory(extra_args=["--max-producers", "2"])
    assert producers(h)["max_producers"] == 2
    assert run_client(h, tmp_path / "b", "--pair-only")["ok"]
    # Producer 1: client A's private Test Pattern, streaming until the host ends it.
    a = start_streaming(h, tmp_path / "a", "--frames", 10, "--wait-termination", 60)
    try:
        # Producer 2: a lobby.
        status, lobby = h.api("POST", "/api/v1/lobbies",
                              {"name": "Full house", "app": "Test Pattern", "width": 640,
                               "height": 360, "fps": 30, "bitrate_kbps": 1000})
        assert status == 201, lobby
        wait_for(lambda: len(h.workers()) == 2, 20, lambda: f"two workers: {h.workers()}")
        workers = sorted(h.workers())

        # The API: 409 with the reason.
        status, body = h.api("POST", "/api/v1/lobbies", {"name": "One more", "app": "Test Pattern"})
        assert status == 409 and REASON in body["error"], (status, body)
        # The real client: its launch error carries the host's status and reason.
        res = run_client(h, tmp_path / "b", "--frames", 10)
        assert not res["ok"], res
        assert REASON in res["error"] and "503" in res["error"], res
        # An RTSP player starting an app share: 503.
        status = share_status(h, "/app/Test%20Pattern")
        assert status == 503, status

        # Nothing started for them: the same two workers, two producers, one session.
        assert sorted(h.workers()) == workers
        engine = h.api("GET", "/api/v1/status")[1]["engine"]
        assert engine["instances"] == 2 and engine["sessions"] == 1, engine
        assert h.api("GET", "/api/v1/lobbies")[1][0]["name"] == "Full house"
        for path in ("launch", "lobby", "player"):
            assert refused_total(h, path) == 1, path
        assert producers(h)["refused"] == {"launch": 1, "lobby": 1, "player": 1}
        # The local node shows it is full.
        status, nodes = h.api("GET", "/api/v1/nodes")
        assert status == 200 and len(nodes) == 1, nodes
        local = nodes[0]
        assert (local["name"], local["producers"], local["max_producers"]) == ("local", 2, 2), local
        assert local["workers"] == 2 and "h264" in local["encoders"], local
        row = next(r for r in howl_nodes(h).splitlines() if r.startswith("local")).split()
        assert row[:4] == ["local", "ready", "2/2", "2/-"], row
        # Logged once per refusal, naming the limit.
        refusals = [line for line in h.log().splitlines() if "admission refused" in line]
        assert len(refusals) == 3 and all("max_producers" in r for r in refusals), refusals
        assert "launch failed" not in h.log() and "RTSP player refused" not in h.log()

        # Joining the running lobby adds no producer: admitted at capacity.
        res = run_client(h, tmp_path / "b", "--app", "Full house", "--width", 640,
                         "--height", 360, "--fps", 30, "--frames", 10)
        assert res["ok"], res

        # One producer ends: the next launch fits.
        status, _ = h.api("DELETE", f"/api/v1/lobbies/{lobby['id']}")
        assert status in (200, 204), status
        wait_for(lambda: producers(h)["producers"] == 1, 10, "the lobby to stop")
        res = run_client(h, tmp_path / "b", "--frames", 10)
        assert res["ok"], res
        assert refused_total(h, "launch") == 1

        # Client A streamed all along; stopped through the API it is told, and exits.
        sessions = h.api("GET", "/api/v1/sessions")[1]
        assert len(sessions) == 1 and sessions[0]["app"] == "Test Pattern", sessions
        h.api("DELETE", f"/api/v1/sessions/{sessions[0]['id']}")
        res = finish_client(a, h)
        assert res.get("terminated_after") is not None, res
        wait_for(lambda: not h.workers(), 10, lambda: f"no worker left: {h.workers()}")
    finally:
        stop_client(a)
