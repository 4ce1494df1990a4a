"""Issue 18, acceptance 2: one lobby (640x360, so that decoding in every viewer fits a 2-core
machine) watched at once by 4 browsers, 1 real Moonlight client (moonlight-python) and 10 RTSP
players (ffmpeg): exactly one worker, sampled while they all watch, and every viewer's frame
counter increasing for the whole run.

Each browser is its own headless Chromium (a background tab of one browser may be throttled,
which would test Chromium, not howl). Runs about a minute.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from conftest import finish_client, run_client, wait_until
from test_rtsp_egress import assert_increasing, band_filter, counters_of
from test_webrtc import (FPS, HEIGHT, WIDTH, counter_now, make_lobby, open_watch, sessions,
                         wait, webrtc_chromium)

BROWSERS = 4
PLAYERS = 10
# How long the RTSP players read; the Moonlight client reads about as long, and the browsers
# are sampled over the same window.
SECONDS = 12


@pytest.fixture
def browsers():
    drivers = []
    try:
        for i in range(BROWSERS):
            drivers.append(webrtc_chromium(f"browser viewer {i} of the scale test", (700, 420)))
        yield drivers
    finally:
        for d in drivers:
            try:
                d.quit()
            except Exception:  # noqa: BLE001 - already gone
                d.service.stop()


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="Debian's ffmpeg is not installed (scripts/common.sh)")
def test_four_browsers_ten_rtsp_players_and_moonlight_share_one_worker(howl, browsers,
                                                                        tmp_path):
    lobby = make_lobby(howl, name="Crowd")
    assert run_client(howl, tmp_path / "ml", "--pair-only")["ok"]
    for d in browsers:
        open_watch(d, howl, lobby, 30)
    assert wait_until(lambda: len(sessions(howl)) == BROWSERS, 60), sessions(howl)

    ml_frames = (SECONDS + 4) * FPS
    ml = run_client(howl, tmp_path / "ml", "--app", "Crowd", "--width", WIDTH,
                    "--height", HEIGHT, "--fps", FPS, "--frames", ml_frames,
                    background=True)
    players: list[subprocess.Popen] = []
    outs = [tmp_path / f"player{i}.gray" for i in range(PLAYERS)]
    try:
        assert wait_until(lambda: len(sessions(howl)) == BROWSERS + 1, 60), sessions(howl)
        for out in outs:
            players.append(subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
                 "-rtsp_transport", "tcp", "-i",
                 f"rtsp://u:{howl.token}@127.0.0.1:{howl.rtsp_port}/lobby/Crowd",
                 "-map", "0:v:0", "-t", str(SECONDS), "-fps_mode", "passthrough",
                 "-vf", band_filter(), "-f", "rawvideo", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        total = BROWSERS + 1 + PLAYERS
        assert wait_until(lambda: len(sessions(howl)) == total, 60), sessions(howl)

        # While all of them watch: one worker (the API's view and the processes), and each
        # browser's counter sampled until the players finish.
        kinds: dict[str, int] = {}
        for s in sessions(howl):
            kind = s["client"].split(":")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        samples: list[list[int]] = [[] for _ in browsers]
        worker_samples = []
        while any(p.poll() is None for p in players):
            worker_samples.append((len(howl.api("GET", "/api/v1/workers")[1]),
                                   len(howl.workers())))
            for i, d in enumerate(browsers):
                c = wait(d, lambda d: counter_now(d) or False,
                         f"a counter in browser {i}'s picture", howl)
                samples[i].append(c)
            time.sleep(1)  # pacing of the samples, not synchronisation
        moonlight = finish_client(ml, howl, timeout=120)
        errors = [p.communicate(timeout=60)[1] for p in players]
    finally:
        for p in [ml, *players]:
            if p.poll() is None:
                p.kill()

    assert kinds.get("browser") == BROWSERS and kinds.get("rtsp") == PLAYERS, kinds
    assert worker_samples and all(s == (1, 1) for s in worker_samples), worker_samples
    for i, p in enumerate(players):
        assert p.returncode == 0, f"player {i}: {errors[i][-2000:]}"
        # At 30 fps for SECONDS, minus start-up and the odd unreadable frame.
        assert_increasing(counters_of(outs[i].read_bytes(), 320, 24), (SECONDS - 4) * 20)
    assert moonlight["ok"], moonlight
    # The client reads the counter of most, not all, frames (as in test_webrtc.py).
    assert_increasing(moonlight["counters"], ml_frames * 2 // 3)
    for i, seen in enumerate(samples):
        assert len(seen) >= 3 and all(b > a for a, b in zip(seen, seen[1:])), (i, seen)
    print(f"{BROWSERS} browsers + {PLAYERS} RTSP players + moonlight-python on one worker for "
          f"{len(worker_samples)} samples; browser counters {[(s[0], s[-1]) for s in samples]}")
