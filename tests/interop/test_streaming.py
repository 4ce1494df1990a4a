"""Issue 4 acceptance: the real Moonlight client library (moonlight-common-c via
moonlight-python) launches the built-in test pattern, decodes video and audio, asks for IDRs,
survives packet loss, streams to two clients at once, and is told when its worker dies.

Each client runs in its own process (tests/interop/stream_client.py): moonlight-common-c keeps
global state, one stream per process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import https_get, make_client, server_info

HERE = os.path.dirname(__file__)


def run_client(h, config_dir, *extra, timeout=120, background=False):
    args = [sys.executable, os.path.join(HERE, "stream_client.py"),
            "--http-port", str(h.http_port), "--api-port", str(h.api_port),
            "--token", h.token, "--config-dir", str(config_dir), *map(str, extra)]
    if background:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return parse_result(p.stdout, p.stderr, h)


def parse_result(stdout, stderr, h):
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise AssertionError(f"client printed no result.\nstdout:{stdout[-3000:]}\n"
                         f"stderr:{stderr[-3000:]}\nhowl log:\n{h.log()[-5000:]}")


def assert_counters_increase(res, minimum):
    counters = [c for c in res["counters"] if c is not None]
    assert len(counters) >= minimum, f"only {len(counters)} readable counters: {res['counters'][:20]}"
    assert all(b > a for a, b in zip(counters, counters[1:])), counters


def pids_of(name):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() == name:
                        out.append(int(d))
            except OSError:
                pass
    return out


def wait_until(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)  # sampling process state; there is no event to await
    return pred()


def threads_of(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def fds_of(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_h264_720p60_frames_audio_idr_and_clean_stop(howl, tmp_path):
    pid = howl.proc.pid
    base_fds, base_threads = fds_of(pid), threads_of(pid)
    res = run_client(howl, tmp_path / "c", "--frames", 150, "--audio-seconds", 2, "--idr")
    assert res["ok"], res
    assert res["shapes"] == [[720, 1280, 3]], res["shapes"]
    assert_counters_increase(res, 120)
    assert res["idr_after_frames"] is not None, "request_idr() produced no keyframe"
    assert abs(res["audio_frequency"] - 440) <= 5, res.get("audio_frequency")
    print(f"start {res['start_seconds']}s, 150 frames in {res['frames_seconds']}s, "
          f"idr after {res['idr_after_frames']} frames, audio {res['audio_frequency']:.1f} Hz")
    # stop_stream() then quit_app() happened in the client: the worker is gone within 2 s.
    assert wait_until(lambda: not pids_of("howl-worker"), 2), pids_of("howl-worker")
    assert wait_until(lambda: fds_of(pid) <= base_fds, 5), (fds_of(pid), base_fds)
    assert wait_until(lambda: threads_of(pid) <= base_threads, 5), (threads_of(pid), base_threads)
    assert howl.api("GET", "/api/v1/sessions")[1] == []
    status, st = howl.api("GET", "/api/v1/status")
    assert status == 200, st
    eng = st["engine"]
    assert (eng["sessions"], eng["instances"], eng["workers"], eng["viewers"]) == (0, 0, 0, 0), eng
    assert eng["sessions_ended"].get("client_quit", 0) + eng["sessions_ended"].get(
        "client_disconnected", 0) >= 1, eng
    assert st["enet"]["connects"] >= 1 and st["listeners"]["nvhttps"]["open"] <= 1, st
    # Cumulative counters keep what the ended session sent.
    assert eng["frames_sent"] >= 150 and eng["bytes_sent"] > 0, eng
    assert eng["max_video_queue_depth"] == 0, eng


def codec_modes(howl, tmp_path):
    c = make_client(tmp_path / "probe")
    return server_info(c, howl.http_port).server_codec_mode_support


def test_hevc_and_1080p30(howl, tmp_path):
    res = run_client(howl, tmp_path / "c", "--width", 1920, "--height", 1080, "--fps", 30,
                     "--frames", 60)
    assert res["ok"], res
    assert res["shapes"] == [[1080, 1920, 3]]
    assert_counters_increase(res, 50)
    if not codec_modes(howl, tmp_path) & 0x100:
        pytest.skip("HEVC: the media worker found no HEVC encoder (x265enc); 1080p30 H.264 passed")
    res = run_client(howl, tmp_path / "c", "--codec", "hevc", "--frames", 120)
    assert res["ok"], res
    assert res["shapes"] == [[720, 1280, 3]]
    assert_counters_increase(res, 100)


@pytest.mark.parametrize("loss", [10, 30])
def test_stream_survives_packet_loss(howl_factory, tmp_path, loss):
    h = howl_factory(env={"HOWL_FAULT_DROP_PERCENT": str(loss)})
    assert "FAULT INJECTION" in h.log() or wait_until(lambda: "FAULT INJECTION" in h.log(), 5)
    res = run_client(h, tmp_path / "c", "--frames", 120 if loss == 10 else 60)
    assert res["ok"], res
    # FEC (10 %) or keyframe recovery (30 %) keeps decoded frames coming, in order.
    assert_counters_increase(res, 100 if loss == 10 else 40)
    counters = [c for c in res["counters"] if c is not None]
    gaps = sum(1 for a, b in zip(counters, counters[1:]) if b != a + 1)
    if loss == 30:
        # 20 % FEC cannot repair 30 % loss: frames are lost and keyframes bring it back.
        assert res["keyframes"] >= 1, res
    print(f"{loss}% loss: {len(counters)} frames in {res['frames_seconds']}s, "
          f"{gaps} gaps, {res['keyframes']} keyframes")


def test_two_clients_same_ip_each_with_own_worker(howl, tmp_path):
    # Pair one after the other: both clients send uniqueid 0123456789ABCDEF from one address,
    # so concurrent pairing is refused by design (see test_pairing.py).
    for name in ("a", "b"):
        assert run_client(howl, tmp_path / name, "--pair-only")["ok"]
    a = run_client(howl, tmp_path / "a", "--frames", 240, background=True)
    b = run_client(howl, tmp_path / "b", "--frames", 240, background=True)
    seen_workers = set()
    sessions_seen = 0

    def sample():
        nonlocal sessions_seen
        while a.poll() is None or b.poll() is None:
            status, sessions = howl.api("GET", "/api/v1/sessions")
            pids = {s["worker_pid"] for s in sessions if s["worker_pid"]}
            if len(pids) == 2:
                seen_workers.update(pids)
                sessions_seen = max(sessions_seen, len(sessions))
            time.sleep(0.1)  # sampling the API while the clients stream

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out_a, err_a = a.communicate(timeout=180)
    out_b, err_b = b.communicate(timeout=180)
    t.join(10)
    ra, rb = parse_result(out_a, err_a, howl), parse_result(out_b, err_b, howl)
    assert ra["ok"] and rb["ok"], (ra, rb)
    assert_counters_increase(ra, 200)
    assert_counters_increase(rb, 200)
    assert sessions_seen == 2 and len(seen_workers) == 2, (sessions_seen, seen_workers)


def test_worker_kill_terminates_only_that_session(howl, tmp_path):
    ready = tmp_path / "ready"
    p = run_client(howl, tmp_path / "c", "--frames", 30, "--wait-termination", 15,
                   "--ready-file", ready, background=True)
    assert wait_until(ready.exists, 60), howl.log()[-3000:]
    status, sessions = howl.api("GET", "/api/v1/sessions")
    assert len(sessions) == 1 and sessions[0]["worker_pid"], sessions
    worker = sessions[0]["worker_pid"]
    # HTTPS keeps answering throughout: the same (paired) certificate polls /serverinfo.
    probe = make_client(tmp_path / "c")
    info = server_info(probe, howl.http_port)
    t_kill = time.monotonic()
    kill_wall = time.time()
    os.kill(worker, signal.SIGKILL)
    latencies = []
    while time.monotonic() - t_kill < 3:
        t0 = time.monotonic()
        xml = https_get(probe, info, "serverinfo")
        latencies.append(time.monotonic() - t0)
        assert "<PairStatus>1</PairStatus>" in xml
    out, err = p.communicate(timeout=60)
    res = parse_result(out, err, howl)
    assert res.get("terminated_after") is not None, ("client was never told", res)
    told_after = res["terminated_at_wall"] - kill_wall
    print(f"client told of the worker's death {told_after:.3f}s after kill -9")
    assert told_after < 5, told_after
    assert res["termination_error"] != 0, "a dead worker is not a graceful end"
    assert "media worker died" in howl.log()
    assert max(latencies) < 1.0, max(latencies)
    assert howl.api("GET", "/api/v1/sessions")[1] == []
