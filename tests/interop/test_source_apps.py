"""Issue 9 acceptance 3 and 5: a `kind = "source"` app reads another howl's RTSP egress.

A second howl started by the test is the upstream camera (its Test Pattern app over RTSP), so
the test can stop and restart it. The downstream howl's source app is watched by an ffmpeg RTSP
player that decodes every frame's counter band:

- the upstream is stopped for HOWL_TEST_SOURCE_OUTAGE_SECS (default 10, the issue's figure) and
  restarted: the player stays connected, receives "no signal" slate frames meanwhile, and the
  upstream's test-pattern counter is back within 5 s of the upstream being ready again; a
  `source_lost` and a `source_restored` event and the loss/recovery counters record it; a
  moonlight-python viewer of the same app stays connected through it too (slate frames, then
  the upstream's counter again);
- then HOWL_TEST_SOURCE_CYCLES (default 20) shorter outages of HOWL_TEST_SOURCE_SHORT_SECS
  (default 2 s; 20 x 10 s would be too long for CI) each recover within 5 s and leave the
  producer's worker (same pid), its fds and threads, and the server's fds where they were;
- SIGTERM of the downstream with 10 players on the source app while the upstream is down (the
  source mid-reconnect): exit 0 within the deadline, every player's connection closes, no
  worker is left;
- the upstream's 440 Hz tone is the source app's audio; a file:// clip plays and loops;
- source URIs are checked, shown without credentials, and `file://` is for operators only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse

import numpy as np
import pytest

from stream_client import dominant_frequency
from test_api import EventStream
from conftest import alive, fds_of, parse_result, run_client, threads_of, wait_until
from test_rtsp_egress import SHUTDOWN_DEADLINE, rtsp_status
from testpattern import read_counter

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                reason="Debian's ffmpeg is not installed (scripts/common.sh)")

W, H, BAND = 640, 360, 24  # counter band of 360p: max(2 * floor(360 / 30), 16) rows
OUTAGE = float(os.environ.get("HOWL_TEST_SOURCE_OUTAGE_SECS", "10"))
SHORT = float(os.environ.get("HOWL_TEST_SOURCE_SHORT_SECS", "2"))
CYCLES = int(os.environ.get("HOWL_TEST_SOURCE_CYCLES", "20"))
RECOVERY_LIMIT = 5.0


def make_source_app(down, up, title="Camera"):
    uri = (f"rtsp://u:{up.token}@127.0.0.1:{up.rtsp_port}/app/Test%20Pattern"
           f"?width={W}&height={H}&fps=30&bitrate=1500")
    status, app = down.api("POST", "/api/v1/apps", {"title": title, "kind": "source", "uri": uri})
    assert status == 201, app
    return "/app/" + urllib.parse.quote(title)


def player_url(h, path):
    return f"rtsp://u:{h.token}@127.0.0.1:{h.rtsp_port}{path}?width={W}&height={H}&fps=30"


class Player:
    """ffmpeg watching an RTSP path; a thread classifies every decoded frame as it arrives:
    ("picture", counter) when the counter band reads, ("slate", None) for the dark slate,
    ("other", None) for anything else; each entry also keeps the band's mean brightness."""

    def __init__(self, url):
        self.frames: list[tuple[float, str, int | None, float]] = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp",
             "-i", url, "-map", "0:v:0", "-fps_mode", "passthrough",
             "-vf", f"crop=iw:{BAND}:0:0,scale=320:{BAND}:flags=area,format=gray",
             "-f", "rawvideo", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        size = 320 * BAND
        while True:
            raw = self.proc.stdout.read(size)
            if len(raw) < size:
                return
            f = np.frombuffer(raw, dtype=np.uint8).reshape(BAND, 320)
            c = read_counter(f)
            mean = float(f.mean())
            kind = "picture" if c is not None else ("slate" if 25 <= mean <= 60 else "other")
            with self.lock:
                self.frames.append((time.monotonic(), kind, c, mean))

    def since(self, t):
        with self.lock:
            return [f for f in self.frames if f[0] >= t]

    def first_picture_after(self, t):
        return next((f for f in self.since(t) if f[1] == "picture"), None)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def outage(up, player, seconds):
    """Stops the upstream for `seconds`, restarts it; returns (slate frames seen while it was
    down, seconds from the upstream being ready to the first upstream picture)."""
    t_stop = time.monotonic()
    assert up.stop() == 0, up.log()[-2000:]
    # The outage itself is the stimulus: the upstream stays down this long whatever happens.
    time.sleep(seconds)
    up.start()
    t_up = time.monotonic()
    assert wait_until(lambda: player.first_picture_after(t_up) is not None, 15), \
        (player.since(t_stop)[-5:], player.proc.poll())
    back = player.first_picture_after(t_up)[0] - t_up
    slates = sum(1 for f in player.since(t_stop) if f[0] < t_up and f[1] == "slate")
    return slates, back


def metric(h, name):
    status, text = h.api("GET", "/metrics")
    assert status == 200
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_source_app_survives_upstream_outages_without_leaks(howl_factory, tmp_path):
    up = howl_factory()
    down = howl_factory()
    path = make_source_app(down, up)
    events = EventStream(down, down.token)
    player = Player(player_url(down, path))
    try:
        t0 = time.monotonic()
        assert wait_until(lambda: player.first_picture_after(t0) is not None, 30), \
            down.log()[-3000:]
        workers = down.workers()
        assert len(workers) == 1, workers
        # A Moonlight viewer (moonlight-python) watches through the long outage too.
        assert run_client(down, tmp_path / "ml", "--pair-only")["ok"]
        frames = int(30 * (OUTAGE + 12))
        moonlight = run_client(down, tmp_path / "ml", "--app", "Camera", "--width", W,
                               "--height", H, "--fps", 30, "--bitrate", 1500,
                               "--frames", frames, background=True)
        assert wait_until(lambda: len(down.workers()) == 2, 30), down.log()[-3000:]

        slates, back = outage(up, player, OUTAGE)
        assert player.proc.poll() is None, "the player was disconnected"
        out, err = moonlight.communicate(timeout=120)
        ml = parse_result(out, err, down)
        assert ml["ok"], ml
        counters = ml["counters"]
        first_gap = next(i for i, c in enumerate(counters) if c is None)
        resumed = [c for c in counters[first_gap:] if c is not None]
        assert sum(1 for c in counters if c is None) >= 30 * (OUTAGE - 4), counters
        assert len(resumed) >= 30, counters[-60:]
        # Never backwards; a repeat is the output re-encoding the latest input picture when the
        # next one is late (the output runs on its own clock), and the counter moves on.
        assert all(b >= a for a, b in zip(resumed, resumed[1:])), resumed
        assert resumed[-1] - resumed[0] >= len(resumed) // 2, resumed
        repeats = sum(1 for a, b in zip(resumed, resumed[1:]) if a == b)
        # The viewer's private instance ends with it; the players' producer stays.
        assert wait_until(lambda: down.workers() == workers, 20), workers
        # 30 fps for ~OUTAGE s, less the stall detection: most of it is slate.
        assert slates >= 30 * (OUTAGE - 4), slates
        assert back <= RECOVERY_LIMIT, back
        lost = events.wait(lambda e: e["type"] == "source_lost")
        assert lost["app"] == "Camera" and lost["reason"] and up.token not in lost["reason"]
        events.wait(lambda e: e["type"] == "source_restored")
        # Two producers read the upstream (the players' and the Moonlight viewer's): each lost
        # it and got it back. A restarted upstream on a loaded 2-core machine can stall for the
        # stall timeout once more while it warms up, which is a second (real, reported) outage:
        # so at least one loss each, and every loss recovered.
        def settled():
            return (metric(down, "howl_sources_down") == 0
                    and metric(down, "howl_source_recoveries_total")
                    == metric(down, "howl_source_losses_total"))

        assert wait_until(settled, 15)
        losses = metric(down, "howl_source_losses_total")
        assert losses >= 2, losses
        print(f"{OUTAGE:.0f} s outage: {slates} slate frames, picture back {back:.1f} s after "
              f"the upstream returned; moonlight-python: {len(counters)} frames, "
              f"{counters.count(None)} without a counter (slate), {len(resumed)} after it "
              f"({repeats} repeated); {losses:.0f} losses counted")
        assert up.token not in down.log(), "the source URI's token was logged"

        worker = workers[0]
        base = (fds_of(worker), threads_of(worker), fds_of(down.proc.pid))
        backs = []
        for _ in range(CYCLES):
            _, b = outage(up, player, SHORT)
            backs.append(b)
            assert player.proc.poll() is None
        assert max(backs) <= RECOVERY_LIMIT, backs
        assert down.workers() == [worker]
        # Let the last reconnect settle (its teardown thread ends on its own).
        def now():
            return (fds_of(worker), threads_of(worker), fds_of(down.proc.pid))

        assert wait_until(lambda: all(n <= b for n, b in zip(now(), base)), 10), (base, now())
        cycle_losses = metric(down, "howl_source_losses_total") - losses
        assert cycle_losses >= CYCLES, cycle_losses
        assert wait_until(settled, 15)
        print(f"{CYCLES} outages of {SHORT:.0f} s: back within {min(backs):.1f}..{max(backs):.1f} s;"
              f" worker fds/threads {base[0]}/{base[1]} unchanged")
    finally:
        events.close()
        player.stop()


def test_sigterm_with_ten_players_and_a_source_mid_reconnect(howl_factory):
    up = howl_factory()
    down = howl_factory()
    path = make_source_app(down, up)
    players = [subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-rtsp_transport",
         "tcp" if i % 2 else "udp", "-i", player_url(down, path), "-f", "null", "-"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(10)]
    assert wait_until(lambda: rtsp_status(down)["rtsp"]["players"] == 10, 60), \
        down.log()[-3000:]
    workers = down.workers()
    assert len(workers) == 1, workers

    def upstream_picture_counter():
        return max(s["producer_frame_counter"] for s in down.api("GET", "/api/v1/sessions")[1])

    # The worker reads the upstream's counter from the decoded pictures: the source is live.
    assert wait_until(lambda: upstream_picture_counter() > 0, 30), down.log()[-3000:]
    assert up.stop() == 0
    assert wait_until(lambda: metric(down, "howl_sources_down") == 1, 15), down.log()[-3000:]
    t0 = time.monotonic()
    assert down.stop(timeout=12) == 0, down.log()[-3000:]
    took = time.monotonic() - t0
    assert took < SHUTDOWN_DEADLINE, f"SIGTERM took {took:.1f}s, past the {SHUTDOWN_DEADLINE}s deadline"
    for p in players:
        p.wait(timeout=20)
    assert not any(alive(w) for w in workers), workers
    print(f"SIGTERM with 10 players on a reconnecting source: exited 0 in {took:.1f}s")


def test_source_uris_are_checked_redacted_and_file_is_operator_only(howl):
    st, body = howl.api("POST", "/api/v1/apps", {"title": "Bad", "kind": "source",
                                                 "uri": "gopher://x/y"})
    assert st == 400 and "scheme" in body["error"], body
    st, app = howl.api("POST", "/api/v1/apps", {"title": "Cam", "kind": "source",
                                                "uri": "rtsp://viewer:s3cret@192.0.2.1/s"})
    assert st == 201, app
    listed = json.dumps(howl.api("GET", "/api/v1/apps")[1])
    assert "s3cret" not in listed and "rtsp://***@192.0.2.1/s" in listed, listed
    st, tenant = howl.api("POST", "/api/v1/tokens", {"name": "t"})
    assert st == 201
    st, body = howl.api("POST", "/api/v1/apps", {"title": "Files", "kind": "source",
                                                 "uri": "file:///etc/hosts"},
                        token=tenant["token"])
    assert st == 403, body
    st, body = howl.api("POST", "/api/v1/apps", {"title": "TCam", "kind": "source",
                                                 "uri": "rtsp://192.0.2.1/s"},
                        token=tenant["token"])
    assert st == 201, body


def test_source_audio_passes_through(howl_factory, tmp_path):
    """The upstream's 440 Hz test tone reaches the source app's players (decoded by the worker's
    input, re-encoded with Opus on the output's clock)."""
    up = howl_factory()
    down = howl_factory()
    path = make_source_app(down, up)
    audio = tmp_path / "a.pcm"
    p = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-rtsp_transport", "tcp",
         "-i", player_url(down, path), "-map", "0:a:0", "-t", "6", "-ac", "1", "-ar", "48000",
         "-f", "s16le", str(audio)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:] + down.log()[-3000:]
    samples = np.frombuffer(audio.read_bytes(), dtype=np.int16).astype(np.float64)
    assert len(samples) >= 5 * 48000, len(samples)
    # The last 3 s: the source is connected by then (the first second may be the slate's silence).
    tail = samples[-3 * 48000:]
    assert np.abs(tail).max() > 1000, "silence where the upstream's tone should be"
    freq = dominant_frequency(tail)
    assert abs(freq - 440) <= 5, freq
    print(f"source app audio: {freq:.1f} Hz")


def test_file_source_plays_and_loops_at_its_end(howl, tmp_path):
    """A file:// source: its end of stream is a loss ("end of stream"), and the reconnect plays
    it again from the start."""
    clip = tmp_path / "clip.mkv"
    p = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi",
                        "-i", "testsrc=size=320x240:rate=30", "-t", "2", "-c:v", "mpeg4",
                        str(clip)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    events = EventStream(howl, howl.token)
    try:
        st, app = howl.api("POST", "/api/v1/apps", {"title": "Clip", "kind": "source",
                                                    "uri": clip.as_uri()})
        assert st == 201, app
        player = Player(player_url(howl, "/app/Clip"))
        try:
            lost = events.wait(lambda e: e["type"] == "source_lost", timeout=30)
            assert lost["reason"] == "end of stream", lost
            events.wait(lambda e: e["type"] == "source_restored", timeout=30)
            t_restored = time.monotonic()

            # The clip's own pictures (ffmpeg's testsrc: its top band averages ~127 grey), not
            # the dark "no signal" slate the player also gets between two plays.
            def clip_frames():
                return [f for f in player.since(t_restored) if f[1] == "other" and f[3] >= 90]
            # Played again after its end: a second's worth of the clip after the restore.
            assert wait_until(lambda: len(clip_frames()) >= 30, 30), \
                (player.proc.poll(), [f[1:] for f in player.since(t_restored)][-10:],
                 howl.log()[-2000:])
            assert player.proc.poll() is None
        finally:
            player.stop()
    finally:
        events.close()
