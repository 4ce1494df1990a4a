"""Soak of the RTSP egress with a flapping source (issue 9, acceptance 7). Not a CI test.

Two howl servers: an upstream streaming its Test Pattern, and the server under test whose
`Camera` app (`kind = "source"`) reads the upstream over RTSP. PLAYERS ffmpeg players watch the
camera; each plays a few seconds (TEARDOWN via `-t`) or, one in five, is SIGKILLed mid-stream
(no TEARDOWN: the server's keep-alive deadline must end it), and is replaced at once. Every
FLAP_EVERY seconds the upstream stops for FLAP_DOWN seconds, so the camera shows its slate and
reconnects. Every SAMPLE_EVERY seconds the script samples the server's RSS, fds and threads.

At the end it prints the RSS slope (least squares over the samples after the warm-up, in MB/h),
fds and threads at start and end, the players' frame loss (decoded frames against the frames
their play time should have held), and the server's own counters; then it stops the players,
waits until the server is idle and has returned freed heap, prints the idle figures, and stops
both servers with SIGTERM (each must exit 0).

Run with scripts/soak-rtsp.sh [PLAYERS=10] [MINUTES=30] (it builds and picks the binary).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "interop"))
from conftest import Howl, fds_of, free_port, rss_kb, threads_of  # noqa: E402

FPS = 30
WIDTH, HEIGHT = 640, 360


def proc_figures(pid: int) -> tuple[int, int, int]:
    """(RSS kB, open fds, threads) of a process."""
    return rss_kb(pid), fds_of(pid), threads_of(pid)


def start_howl(root: Path, name: str) -> Howl:
    env = dict(os.environ)
    env.setdefault("HOWL_LOG", "info")
    env["HOWL_RTSP_EGRESS_BIND"] = f"127.0.0.1:{free_port()}"
    for var in ("HOWL_RTSP_PORT", "HOWL_VIDEO_PORT", "HOWL_CONTROL_PORT", "HOWL_AUDIO_PORT"):
        env[var] = str(free_port())
    (root / name).mkdir()
    h = Howl(state_dir=root / name / "state", http_port=free_port(), https_port=free_port(),
             api_port=free_port(), env=env)
    h.start()
    return h


class Players:
    """Keeps `n` ffmpeg players on `url`, each replaced as soon as it ends."""

    def __init__(self, url: str, n: int):
        self.url, self.n = url, n
        self.expected = 0.0  # frames the finished players' play time held
        self.decoded = 0
        self.sessions = 0
        self.killed = 0
        self.failed = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._slot, args=(i,), daemon=True)
                        for i in range(n)]
        self.lock = threading.Lock()

    def start(self):
        for t in self.threads:
            t.start()

    def _slot(self, i: int):
        rng = random.Random(i)
        while not self.stop.is_set():
            play = rng.uniform(3, 8)
            kill = rng.random() < 0.2
            transport = "tcp" if i % 2 else "udp"
            p = subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-nostdin", "-stats", "-rtsp_transport", transport,
                 "-i", self.url, "-t", f"{play:.1f}", "-f", "null", "-"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if kill:
                # Vanish without TEARDOWN partway through.
                try:
                    p.wait(timeout=play / 2)
                except subprocess.TimeoutExpired:
                    p.kill()
                p.communicate()
                with self.lock:
                    self.killed += 1
                continue
            try:
                _, err = p.communicate(timeout=play + 30)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
            frames = re.findall(rb"frame=\s*(\d+)", err)
            with self.lock:
                self.sessions += 1
                if p.returncode != 0 or not frames:
                    self.failed += 1
                else:
                    self.decoded += int(frames[-1])
                    self.expected += play * FPS

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def slope_mb_per_hour(samples: list[tuple[float, int]]) -> float:
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    cov = sum((t - mt) * (r - mr) for t, r in samples)
    return (cov / var) * 3600 / 1024 if var else 0.0  # kB/s -> MB/h


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--players", type=int, default=10)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--warmup-minutes", type=float, default=3)
    ap.add_argument("--flap-every", type=float, default=45)
    ap.add_argument("--flap-down", type=float, default=10)
    ap.add_argument("--sample-every", type=float, default=10)
    a = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="howl-soak-"))
    up = start_howl(root, "upstream")
    srv = start_howl(root, "server")
    uri = (f"rtsp://soak:{up.token}@127.0.0.1:{up.rtsp_port}/app/Test%20Pattern"
           f"?width={WIDTH}&height={HEIGHT}&fps={FPS}&bitrate=1500")
    st, body = srv.api("POST", "/api/v1/apps", {"title": "Camera", "kind": "source", "uri": uri})
    if st != 201:
        print(f"cannot create the source app: {st} {body}", file=sys.stderr)
        return 1
    url = (f"rtsp://soak:{srv.token}@127.0.0.1:{srv.rtsp_port}/app/"
           f"{urllib.parse.quote('Camera')}?width={WIDTH}&height={HEIGHT}&fps={FPS}")
    pid = srv.proc.pid
    idle0 = proc_figures(pid)
    print(f"soak: {a.players} players for {a.minutes} min, upstream down {a.flap_down}s every "
          f"{a.flap_every}s; logs under {root}", flush=True)

    players = Players(url, a.players)
    players.start()
    t0 = time.monotonic()
    end = t0 + a.minutes * 60
    next_flap = t0 + a.flap_every
    samples: list[tuple[float, int]] = []
    first = last = None
    flaps = 0
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_flap:
            if up.stop() != 0:
                print("upstream did not exit 0", file=sys.stderr)
            time.sleep(a.flap_down)  # the outage is the stimulus
            up.start()
            flaps += 1
            next_flap = time.monotonic() + a.flap_every
        figures = proc_figures(pid)
        elapsed = time.monotonic() - t0
        if elapsed >= a.warmup_minutes * 60:
            samples.append((elapsed, figures[0]))
            first = first or figures
            last = figures
        _, status = srv.api("GET", "/api/v1/status")
        r = status["engine"]["rtsp"]
        print(f"{elapsed:7.0f}s rss={figures[0]}kB fds={figures[1]} threads={figures[2]} "
              f"players={r['players']} dropped={r['frames_dropped']} flaps={flaps}", flush=True)
        time.sleep(min(a.sample_every, max(0.0, next_flap - time.monotonic())) or 0.1)
    players.finish()

    def idle():
        _, s = srv.api("GET", "/api/v1/status")
        return s["engine"]["heap_trimmed_since_idle"] and not s["engine"]["rtsp"]["players"]

    deadline = time.monotonic() + 120
    while not idle() and time.monotonic() < deadline:
        time.sleep(0.5)  # polling the API for the idle state; no event to await from a script
    idle1 = proc_figures(pid)
    _, status = srv.api("GET", "/api/v1/status")
    loss = 1 - players.decoded / players.expected if players.expected else float("nan")
    print("---- soak result")
    print(f"RSS slope after warm-up: {slope_mb_per_hour(samples):+.2f} MB/h over {len(samples)} "
          f"samples; RSS {first[0] if first else 0} -> {last[0] if last else 0} kB")
    print(f"fds {first[1] if first else 0} -> {last[1] if last else 0}, threads "
          f"{first[2] if first else 0} -> {last[2] if last else 0} (with players)")
    print(f"idle: RSS {idle0[0]} -> {idle1[0]} kB, fds {idle0[1]} -> {idle1[1]}, threads "
          f"{idle0[2]} -> {idle1[2]} (fresh server -> after the soak)")
    print(f"players: {players.sessions} played to the end, {players.killed} killed, "
          f"{players.failed} failed; decoded {players.decoded} of {players.expected:.0f} "
          f"frames their play time held: loss {loss * 100:.2f} % (includes start-up)")
    e = status["engine"]
    print(f"server: rtsp {e['rtsp']}; source losses/recoveries "
          f"{e.get('source_losses')}/{e.get('source_recoveries')}; upstream flaps {flaps}")
    code = 0
    for h in (srv, up):
        rc = h.stop()
        print(f"howl on {h.http_port} exited {rc}")
        code |= rc
    return code


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
