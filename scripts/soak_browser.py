"""Soak of browser viewers that vanish (issue 18, acceptance 4). Not a CI test.

One howl (HOWL_BIN) with a Test Pattern lobby at 640x360 30 fps and a short silence deadline
(HOWL_WEBRTC_SILENCE_SECS=3, as tests/interop/test_webrtc.py uses; the default is longer).
A warm-up round, then the server's baseline (fds, threads, RSS, this howl's workers), then
ROUNDS times: headless Chromium opens /watch/<lobby> (test_webrtc.py's flags and page helpers),
waits until getStats shows more than 30 decoded frames, the whole Chromium process tree is
SIGKILLed (no DELETE, no DTLS close: the server must notice the silence), and the script
waits until the viewer has left the session list with `sessions_ended.browser_gone` one
higher, timing that from the kill (sampled every 20 ms: the end time is good to ~20 ms plus
one API call).

At the end: the end latencies (min/median/max), fds/threads/workers and RSS at the baseline and
after the rounds (once the server settled: tokio's idle blocking threads live 10 s), and the
exit status: non-zero when fds, threads or workers stayed above the baseline, RSS grew more
than 5 %, or a round failed.

Run with scripts/soak-browser.sh [ROUNDS=50] (it builds a debug howl unless HOWL_BIN is set).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from browser_driver import (BrowserMissing, alive, close_browser, kill_browser, launch_browser,
                            rss_kb, start_browser_howl)
from conftest import fds_of, threads_of, wait_until
from test_webrtc import make_lobby, open_watch, sessions

SILENCE_SECS = 3
RSS_GROWTH_LIMIT = 5.0  # %
END_TIMEOUT = 60.0  # s: far past the deadline; a viewer still there then is a failure
FRAMES = 31  # "more than 30 decoded frames"


def figures(h) -> dict:
    pid = h.proc.pid
    return {"fds": fds_of(pid), "threads": threads_of(pid), "workers": len(h.workers()),
            "rss": rss_kb(pid)}


def settled(h, quiet: float, limit: float) -> dict:
    """The server's figures once fds, threads and workers have not changed for `quiet`
    seconds (tokio keeps an idle blocking thread 10 s), or after `limit` seconds."""
    start = time.monotonic()
    last, since = None, start
    while True:
        f = figures(h)
        key = (f["fds"], f["threads"], f["workers"])
        now = time.monotonic()
        if key != last:
            last, since = key, now
        if now - since >= quiet or now - start >= limit:
            return f
        time.sleep(0.5)  # sampling /proc: nothing announces that a thread has exited


def browser_gone(h) -> int:
    _, status = h.api("GET", "/api/v1/status")
    return status["engine"]["sessions_ended"].get("browser_gone", 0)


def one_round(h, lobby: dict, profile: Path) -> float:
    """Watch, kill, await the end; returns seconds from the kill to the viewer's end."""
    d = launch_browser(profile)
    try:
        open_watch(d, h, lobby, FRAMES)
        if not wait_until(lambda: len(sessions(h)) == 1, 30):
            raise AssertionError(f"expected one viewer, the server lists {sessions(h)}")
        gone_before = browser_gone(h)
        pids = kill_browser(d)
        killed = time.monotonic()
        if not pids:
            raise AssertionError("no Chromium process under chromedriver to kill")
        if not wait_until(lambda: sessions(h) == [], END_TIMEOUT, interval=0.02):
            raise AssertionError(f"the viewer is still there {END_TIMEOUT:.0f}s after the "
                                 f"kill: {sessions(h)}")
        took = time.monotonic() - killed
        if browser_gone(h) != gone_before + 1:
            _, status = h.api("GET", "/api/v1/status")
            raise AssertionError("the viewer ended, but not as browser_gone: "
                                 f"{status['engine']['sessions_ended']}")
        left = [p for p in pids if alive(p)]
        if left:
            raise AssertionError(f"Chromium processes survived SIGKILL: {left}")
        return took
    finally:
        close_browser(d)
        shutil.rmtree(profile, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--settle", type=float, default=11.0,
                    help="seconds without fd/thread/worker changes that count as settled")
    a = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="howl-soak-browser-"))
    h = start_browser_howl(root, "server", HOWL_WEBRTC_SILENCE_SECS=str(SILENCE_SECS))
    code = 0
    try:
        lobby = make_lobby(h, name="soak")
        print(f"soak: {a.rounds} rounds of Chromium watching a 640x360 30 fps Test Pattern lobby, "
              f"SIGKILLed after {FRAMES} decoded frames; silence deadline "
              f"HOWL_WEBRTC_SILENCE_SECS={SILENCE_SECS} (short on purpose: the default is "
              f"longer); server pid {h.proc.pid}, logs under {root}", flush=True)
        warm = one_round(h, lobby, root / "profile-warmup")
        print(f"warm-up round: ended {warm:.2f}s after the kill", flush=True)
        base = settled(h, a.settle, 60)
        print(f"baseline: {base}", flush=True)

        took: list[float] = []
        failures: list[str] = []
        for i in range(1, a.rounds + 1):
            try:
                t = one_round(h, lobby, root / f"profile-{i}")
            except Exception as e:  # noqa: BLE001 - one failed round is reported, the soak goes on
                failures.append(f"round {i}: {e}")
                print(f"round {i:3}: FAILED {str(e)[:2000]}", flush=True)
                continue
            took.append(t)
            f = figures(h)
            print(f"round {i:3}: ended {t:5.2f}s after the kill; fds {f['fds']} threads "
                  f"{f['threads']} workers {f['workers']} rss {f['rss']} kB", flush=True)
        after = settled(h, a.settle, 60)

        growth = 100.0 * (after["rss"] - base["rss"]) / base["rss"]
        print("---- browser soak result")
        print(f"rounds: {len(took)} ended as browser_gone, {len(failures)} failed; "
              f"silence deadline {SILENCE_SECS} s (HOWL_WEBRTC_SILENCE_SECS)")
        if took:
            print(f"end after SIGKILL: min {min(took):.2f} s, median "
                  f"{statistics.median(took):.2f} s, max {max(took):.2f} s")
        print(f"{'':10}{'baseline':>12}{'after':>12}")
        for k in ("fds", "threads", "workers"):
            print(f"{k:10}{base[k]:>12}{after[k]:>12}")
        print(f"{'RSS kB':10}{base['rss']:>12}{after['rss']:>12}   {growth:+.1f} % "
              f"(limit +{RSS_GROWTH_LIMIT:.0f} %)")
        for k in ("fds", "threads", "workers"):
            if after[k] > base[k]:
                failures.append(f"{k} did not return to the baseline: {base[k]} -> {after[k]}")
        if growth > RSS_GROWTH_LIMIT:
            failures.append(f"RSS grew {growth:.1f} % (> {RSS_GROWTH_LIMIT:.0f} %)")
        for f in failures:
            print(f"FAIL: {f[:2000]}")
        code = 1 if failures else 0
    except BrowserMissing as e:
        print(f"cannot run: {e}", file=sys.stderr)
        code = 2
    finally:
        rc = h.stop()
        print(f"howl exited {rc}")
        code = code or (1 if rc else 0)
    if code == 0:
        shutil.rmtree(root, ignore_errors=True)
    return code


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
