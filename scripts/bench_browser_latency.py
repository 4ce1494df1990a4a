"""Benchmark (not a test): send-to-presented latency of one browser viewer, and the server's CPU
per browser viewer (issue 18, acceptance 6). 1280x720 60 fps Test Pattern lobby, loopback,
one headless Chromium on /watch/<lobby> (tests/interop/test_webrtc.py's flags and page helpers).

Method
------
Send time. The test pattern draws a frame counter into every picture
(crates/howl-media/src/testpattern.rs); the worker sends that counter with each encoded frame,
and the server stores it (`producer_frame_counter` in GET /api/v1/lobbies) at the moment the
frame arrives from the worker, just before it hands the frame to its viewers. howl logs no
per-frame time, so a thread here polls that field over one kept-alive HTTP connection every
--poll-ms: a counter c arrived after the last poll that still showed less than c began, and
before the first poll that showed c (or more) returned, and (causality) before the browser
received the frame's last packet. The middle of that bracket is c's send time, good to half
the bracket (printed: about a poll period plus one API call). It is the time the server had the
frame, so the server's own fan-out, packetising and encryption count as latency. Every figure
is printed as "estimate [lower, upper]": the percentile of the per-frame estimates, and the
same percentile with every send time put at its bracket's end and at its start; as every
frame's true latency lies within its own bounds, the true percentile lies within those too.

Presented time. In the page, `requestVideoFrameCallback` runs for every frame composited; its
`presentationTime` (and `expectedDisplayTime`, `receiveTime`: when the frame's last packet
arrived) are on the page's clock, turned into wall-clock time with `performance.timeOrigin`,
corrected by the page's own `Date.now()` (both are the system's real-time clock, as Python's
`time.time()` is: one machine, one clock). In the same callback the video is drawn to a
canvas, and the middle third of the counter band (the rows tests/interop/testpattern.py
`read_counter` samples) is kept as luma; after the run the script reads the counter of every
presented frame with `read_counter`. The element's current frame can move on before the
callback runs, so now and then the picture drawn is not the frame the callback's times are
for: the callback's `rtpTimestamp` (the frame's PTS, one frame period per counter step) gives
those away, and they are left out and counted, as are frames whose last packet arrived before
the server can have had them (left over disagreements; 0 expected).

Latency = presented time - send time of the same counter; p50/p95 are over the presented
frames, and so are the split into send -> received (the server's fan-out and loopback) and
received -> presented (jitter buffer, decode, composition). "expected display" is the
callback's `expectedDisplayTime`: the next vsync of the compositor's (virtual) display.

CPU: utime+stime from /proc of the howl server and its worker, first over --cpu-seconds with
the lobby and no viewer, then over as long with the browser watching (no polling then):
the difference is the server's CPU for one browser viewer. Chromium's own CPU is shown too.

Limits: the send time is bracketed, not stamped (see above; the polling costs the server CPU,
which is why it runs only in the latency phase); headless Chromium composites without a GPU
and without a real display, so "presented" is its compositor's submit time, not light on a
screen; a 2-core machine runs the server, the 720p60 encoder and Chromium's software decoder
at once, so the figures include contention a real viewer's machine would not have.

Run with scripts/bench-browser-latency.sh (it builds a debug howl unless HOWL_BIN is set; a
release howl is the fairer figure).
"""

from __future__ import annotations

import argparse
import base64
import bisect
import http.client
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from browser_driver import (BrowserMissing, browser_pids, close_browser, cpu_ticks,
                            launch_browser, start_browser_howl)
from conftest import wait_until
from test_webrtc import INBOUND_VIDEO, open_watch, sessions
from testpattern import read_counter

WIDTH, HEIGHT, FPS, BITRATE = 1280, 720, 60, 5000

# Installs the recorder: every presented frame's times and the luma of the counter band's
# middle third (read_counter samples squares of side band/3 at most around the band's middle).
RECORDER = """
const v = document.getElementById("video");
const rec = { frames: [], stop: false };
window.howlBench = rec;
let c = null, g = null;
function onFrame(now, m) {
  if (rec.stop) return;
  const w = v.videoWidth, h = v.videoHeight;
  if (w > 0 && h > 0) {
    const band = Math.min(Math.max(2 * Math.floor(h / 30), 16), h);
    const y0 = Math.floor(band / 3), rows = Math.ceil(2 * band / 3) - y0;
    if (!c || c.width !== w || c.height !== rows) {
      c = document.createElement("canvas");
      c.width = w; c.height = rows;
      g = c.getContext("2d", { willReadFrequently: true });
    }
    g.drawImage(v, 0, y0, w, rows, 0, 0, w, rows);
    const px = g.getImageData(0, 0, w, rows).data;
    const luma = new Uint8Array(w * rows);
    for (let i = 0; i < luma.length; i++) {
      luma[i] = (77 * px[4 * i] + 150 * px[4 * i + 1] + 29 * px[4 * i + 2]) >> 8;
    }
    rec.frames.push([m.presentationTime, m.expectedDisplayTime,
                     m.receiveTime === undefined ? null : m.receiveTime, w, h, y0, rows, luma,
                     m.rtpTimestamp === undefined ? null : m.rtpTimestamp]);
  }
  v.requestVideoFrameCallback(onFrame);
}
v.requestVideoFrameCallback(onFrame);
"""

# Takes up to arguments[0] recorded frames out of the page, luma as base64.
TAKE = """
const out = window.howlBench.frames.splice(0, arguments[0]);
return out.map((f) => {
  const luma = f[7];
  let s = "";
  for (let i = 0; i < luma.length; i += 8192) {
    s += String.fromCharCode.apply(null, luma.subarray(i, i + 8192));
  }
  return [f[0], f[1], f[2], f[3], f[4], f[5], f[6], btoa(s), f[8]];
});
"""

# The page clock's origin on the real-time clock, and how far Date.now() (the same clock the
# server side reads with time.time()) is from it, averaged over 50 ms (Date.now() truncates
# to whole milliseconds: +0.5 ms on average).
CLOCK = """
const t0 = performance.now();
let sum = 0, n = 0;
while (performance.now() - t0 < 50) {
  sum += Date.now() - (performance.timeOrigin + performance.now());
  n++;
}
return [performance.timeOrigin, sum / n + 0.5];
"""

VIDEO_STATS = """
const done = arguments[arguments.length - 1];
const pc = window.howlWatch && window.howlWatch.pc;
if (!pc) { done(null); return; }
pc.getStats().then((stats) => {
  let out = null;
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      out = {};
      for (const k of ["framesDecoded", "framesDropped", "framesReceived", "jitterBufferDelay",
                       "jitterBufferEmittedCount", "totalDecodeTime", "totalProcessingDelay",
                       "packetsLost", "packetsReceived", "freezeCount", "decoderImplementation"]) {
        out[k] = s[k] === undefined ? null : s[k];
      }
    }
  });
  done(out);
}).catch(() => done(null));
"""


class CounterPoller(threading.Thread):
    """Polls the lobby's producer_frame_counter; `polls`: (start, end, counter), wall clock."""

    def __init__(self, h, lobby_id: int, period: float):
        super().__init__(daemon=True)
        self.h, self.lobby_id, self.period = h, lobby_id, period
        self.polls: list[tuple[float, float, int]] = []
        self._counters: list[int] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.h.api_port, timeout=10)
        headers = {"Authorization": f"Bearer {self.h.token}"}
        try:
            while not self.stop.is_set():
                t0 = time.time()
                conn.request("GET", "/api/v1/lobbies", headers=headers)
                body = conn.getresponse().read()
                t1 = time.time()
                lobby = next(x for x in json.loads(body) if x["id"] == self.lobby_id)
                self.polls.append((t0, t1, int(lobby["producer_frame_counter"])))
                # Paced sampling of a value that announces nothing; the period bounds the cost.
                self.stop.wait(self.period)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e
        finally:
            conn.close()

    def send_bracket(self, counter: int) -> tuple[float, float] | None:
        """(earliest, latest) wall-clock time `counter` can have reached the server: after the
        last poll that showed less began, by the time the first that showed it returned. None
        outside the polls."""
        if len(self._counters) != len(self.polls):
            self._counters = [c for _, _, c in self.polls]
        i = bisect.bisect_left(self._counters, counter)
        if i == 0 or i == len(self.polls):
            return None
        return self.polls[i - 1][0], self.polls[i][1]


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def line(name: str, xs: list[tuple[float, float, float]]) -> str:
    """`xs`: per frame (estimate, lower bound, upper bound) in ms. Each frame's true value lies
    within its bounds, so the true p-th percentile lies between the bounds' p-th percentiles."""
    if not xs:
        return f"{name:30} (no samples)"
    out = f"{name:30}"
    for p in (50, 95):
        est, lo, hi = (pct([x[k] for x in xs], p) for k in range(3))
        out += f" p{p} {est:5.1f} [{lo:5.1f}, {hi:5.1f}]"
    return out + f"  min {min(x[0] for x in xs):5.1f} max {max(x[0] for x in xs):5.1f} ms"


def mismatched_frames(read: list[tuple]) -> set[int]:
    """Indexes of presented frames whose callback metadata belongs to another frame than the
    picture drawn in the callback (the element's current frame can move on before the callback
    runs). Counter and RTP timestamp (90 kHz, from the frame's PTS: one frame period per
    counter step, more where the worker skipped a slot) advance together, so
    rtp / period - counter is constant between skips: a frame where it differs from both
    neighbours' is a mismatch."""
    ticks = 90_000 / FPS
    if len(read) < 3 or any(r[4] is None for r in read):
        return set()
    first = read[0][4]
    # RTP timestamps wrap at 2^32; unwrap relative to the first frame.
    k = [round(((r[4] - first) % 2**32) / ticks) - r[0] for r in read]
    return {i for i in range(1, len(read) - 1) if k[i] != k[i - 1] and k[i] != k[i + 1]}


def measure_cpu(pids_of, seconds: float) -> tuple[dict, float]:
    """CPU seconds of each group of processes over `seconds` of wall time."""
    hz = os.sysconf("SC_CLK_TCK")
    groups = pids_of()
    t0 = time.monotonic()
    before = {k: cpu_ticks(p) for k, p in groups.items()}
    time.sleep(seconds)  # the measurement window itself
    wall = time.monotonic() - t0
    after = {k: cpu_ticks(p) for k, p in groups.items()}
    return {k: (after[k] - before[k]) / hz for k in groups}, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20, help="latency phase length")
    ap.add_argument("--cpu-seconds", type=float, default=15, help="each CPU phase's length")
    ap.add_argument("--poll-ms", type=float, default=2.0,
                    help="pause between two polls of the server's frame counter")
    ap.add_argument("--dump", type=Path,
                    help="write every presented frame's counter and times (JSON) here")
    a = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="howl-bench-browser-"))
    h = start_browser_howl(root, "server")
    d = None
    code = 0
    try:
        st, lobby = h.api("POST", "/api/v1/lobbies", {
            "name": "bench", "app": "Test Pattern", "width": WIDTH, "height": HEIGHT,
            "fps": FPS, "bitrate_kbps": BITRATE})
        assert st == 201, lobby
        assert wait_until(lambda: h.workers(), 60), h.log()[-3000:]
        print(f"bench: {WIDTH}x{HEIGHT} {FPS} fps Test Pattern lobby at {BITRATE} kbit/s, one "
              f"headless Chromium viewer on loopback; howl {os.environ.get('HOWL_BIN')}; "
              f"logs under {root}", flush=True)

        def server_pids():
            return {"server": [h.proc.pid], "worker": h.workers()}

        idle, idle_wall = measure_cpu(server_pids, a.cpu_seconds)

        d = launch_browser(root / "profile", (WIDTH, HEIGHT + 80))
        open_watch(d, h, lobby, FPS)
        assert len(sessions(h)) == 1, sessions(h)

        def all_pids():
            return {**server_pids(), "chromium": browser_pids(d)}

        s0 = d.execute_async_script(INBOUND_VIDEO)
        watched, watched_wall = measure_cpu(all_pids, a.cpu_seconds)
        s1 = d.execute_async_script(INBOUND_VIDEO)

        # Latency phase: the recorder in the page, the counter poller here.
        origin, skew_ms = d.execute_script(CLOCK)
        stats0 = d.execute_async_script(VIDEO_STATS)
        poller = CounterPoller(h, lobby["id"], a.poll_ms / 1000)
        poller.start()
        wait_until(lambda: len(poller.polls) > 10 or poller.error, 10)
        d.execute_script(RECORDER)
        frames: list = []
        end = time.monotonic() + a.seconds
        while time.monotonic() < end and poller.error is None:
            time.sleep(0.5)  # the run's length is the measurement
        d.execute_script("window.howlBench.stop = true;")
        time.sleep(0.2)  # the last polls bracket the last frames presented
        poller.stop.set()
        poller.join(10)
        if poller.error is not None:
            raise RuntimeError(f"polling the server failed: {poller.error!r}")
        stats1 = d.execute_async_script(VIDEO_STATS)
        while True:
            batch = d.execute_script(TAKE, 120)
            if not batch:
                break
            frames.extend(batch)

        total, net, render, expected, widths = [], [], [], [], []
        rows_out = []
        seen: set[int] = set()
        unreadable = unmatched = causality = 0
        read: list[tuple] = []
        for p_ms, e_ms, r_ms, w, hh, y0, rows, b64, rtp in frames:
            luma = np.zeros((hh, w), dtype=np.uint8)
            luma[y0:y0 + rows] = np.frombuffer(base64.b64decode(b64), dtype=np.uint8) \
                .reshape(rows, w)
            c = read_counter(luma)
            if c is None:
                unreadable += 1
                continue
            if c in seen:
                continue  # a frame presented again: its first presentation counts
            seen.add(c)
            read.append((c, p_ms, e_ms, r_ms, rtp))
        mismatched = mismatched_frames(read)
        for i, (c, p_ms, e_ms, r_ms, _) in enumerate(read):
            if i in mismatched:
                continue
            bracket = poller.send_bracket(c)
            if bracket is None:
                unmatched += 1
                continue
            lo, hi = bracket

            def wall(ms):
                return (origin + ms + skew_ms) / 1000

            received = None if r_ms is None else wall(r_ms)
            # Causality tightens the bracket: the server had the frame before the browser
            # received its last packet (unless the clocks disagree, then it is left alone).
            if received is not None and lo < received < hi:
                hi = received
            elif received is not None and received <= lo:
                causality += 1  # received before the server had it: times and picture disagree
                continue
            at = (lo + hi) / 2
            rows_out.append({"counter": c, "presented": wall(p_ms), "expected": wall(e_ms),
                             "received": received, "sent_after": lo, "sent_by": hi})

            def span(t):
                return ((t - at) * 1000, (t - hi) * 1000, (t - lo) * 1000)

            total.append(span(wall(p_ms)))
            expected.append(span(wall(e_ms)))
            widths.append((hi - lo) * 1000)
            if received is not None:
                net.append(span(received))
                render.append((p_ms - r_ms,) * 3)
        polls = poller.polls
        if a.dump:
            a.dump.write_text(json.dumps({"frames": rows_out, "polls": polls}))
        poll_period = 1000 * (polls[-1][1] - polls[0][0]) / max(1, len(polls) - 1)

        hz_cpu = {k: 1000 * v / watched_wall for k, v in watched.items()}
        hz_idle = {k: 1000 * v / idle_wall for k, v in idle.items()}
        decoded = (s1 or 0) - (s0 or 0)
        print("---- browser latency result")
        print(f"frames presented (callbacks) {len(frames)} in {a.seconds:.0f} s, counters read "
              f"{len(seen)}, unreadable {unreadable}, outside the polls {unmatched}; left out: "
              f"{len(mismatched)} whose callback times belong to another frame than the one "
              f"drawn (RTP timestamp check), {causality} received before the server had them")
        print(f"server counter polls: {len(polls)}, one per {poll_period:.2f} ms; send-time "
              f"bracket mean {statistics.mean(widths) if widths else float('nan'):.2f} ms wide, "
              f"p95 {pct(widths, 95) if widths else float('nan'):.2f} ms (the send time is its "
              f"middle; [bounds] assume the send at the bracket's end and start)")
        print(f"page clock vs Date.now(): {skew_ms:+.2f} ms (applied)")
        print(line("send -> presented", total))
        print(line("send -> expected display", expected))
        print(line("send -> received", net))
        print(line("received -> presented", render))
        if stats0 and stats1:
            def delta(k):
                a0, a1 = stats0.get(k), stats1.get(k)
                return None if a0 is None or a1 is None else a1 - a0
            n_out = delta("jitterBufferEmittedCount") or 0
            n_dec = delta("framesDecoded") or 0
            if n_out:
                print(f"Chromium getStats over the run: jitter buffer "
                      f"{1000 * delta('jitterBufferDelay') / n_out:.1f} ms/frame, decode "
                      f"{1000 * (delta('totalDecodeTime') or 0) / max(1, n_dec):.1f} ms/frame, "
                      f"receive->decoded {1000 * (delta('totalProcessingDelay') or 0) / max(1, n_dec):.1f}"
                      f" ms/frame; dropped {delta('framesDropped')}, lost packets "
                      f"{delta('packetsLost')}, freezes {delta('freezeCount')}"
                      + (f"; decoder {stats1['decoderImplementation']}"
                         if stats1.get("decoderImplementation") else ""))
        print(f"CPU, lobby without viewers over {idle_wall:.0f} s: server "
              f"{hz_idle['server']:.0f} ms/s, worker {hz_idle['worker']:.0f} ms/s")
        print(f"CPU, one browser viewer over {watched_wall:.0f} s ({decoded} frames decoded, "
              f"{decoded / watched_wall:.1f} fps): server {hz_cpu['server']:.0f} ms/s, worker "
              f"{hz_cpu['worker']:.0f} ms/s, Chromium {hz_cpu['chromium']:.0f} ms/s")
        print(f"server CPU per browser viewer: {hz_cpu['server'] - hz_idle['server']:.1f} ms/s "
              f"({(hz_cpu['server'] - hz_idle['server']) / 10:.1f} % of one core); the worker's "
              f"change {hz_cpu['worker'] - hz_idle['worker']:+.1f} ms/s (one encode for all)")
        if not total:
            print("FAIL: no presented frame matched a server send time")
            code = 1
    except BrowserMissing as e:
        print(f"cannot run: {e}", file=sys.stderr)
        code = 2
    finally:
        if d is not None:
            close_browser(d)
        rc = h.stop()
        print(f"howl exited {rc}")
        code = code or (1 if rc else 0)
    if code == 0:
        shutil.rmtree(root, ignore_errors=True)
    return code


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
