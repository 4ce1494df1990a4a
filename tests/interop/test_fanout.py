"""Issue 5 fan-out: 2 real clients plus 20 howl-client viewers share one lobby (one encoder).
One howl-client viewer is stalled (SIGSTOP for 3 s): the others keep their frame rate, and the
stalled one recovers at a keyframe."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from conftest import finish_client, run_client
from test_lobby import create_lobby

SECONDS = 10


def howl_client_bin() -> str:
    b = os.environ.get("HOWL_BIN", "")
    cand = Path(b).with_name("howl-client") if b else None
    if cand and cand.exists():
        return str(cand)
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/howl/target"))
    return str(Path(target) / "debug" / "howl-client")


def load(h, config_dir, viewers, seconds, pair_only=False):
    args = [howl_client_bin(), "load", "--config-dir", str(config_dir),
            "--host", f"127.0.0.1:{h.http_port}", "--app", "Shared", "--viewers", str(viewers),
            "--seconds", str(seconds), "--api", f"127.0.0.1:{h.api_port}",
            "--howl-state-dir", str(h.state_dir)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def summaries(out: str):
    """[(frames, fps, lost, keyframes)] per viewer from howl-client's summary."""
    return [(int(f), float(fps), int(lost), int(k)) for f, fps, lost, k in
            re.findall(r"frames (\d+) \(([\d.]+) fps\), lost (\d+), keyframes (\d+)", out)]


def test_fanout_two_real_clients_and_twenty_viewers_with_one_stalled(howl, tmp_path):
    create_lobby(howl)
    # Pair everyone first (pairing is serialised by design).
    for name in ("a", "b"):
        assert run_client(howl, tmp_path / name, "--pair-only")["ok"]
    for d, n in (("many", 19), ("stalled", 1)):
        p = load(howl, tmp_path / d, n, 1)
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out[-2000:]

    reals = [run_client(howl, tmp_path / name, "--app", "Shared", "--frames", 60 * SECONDS,
                        background=True) for name in ("a", "b")]
    many = load(howl, tmp_path / "many", 19, SECONDS)
    stalled = load(howl, tmp_path / "stalled", 1, SECONDS)
    # While everyone streams, sample how many viewers the engine serves and how many workers
    # this howl runs: the samples taken with all 22 viewers on are the ones that count.
    samples: list[tuple[int, list[int], list[int]]] = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            sessions = howl.api("GET", "/api/v1/sessions")[1]
            api_workers = [w["pid"] for w in howl.api("GET", "/api/v1/workers")[1]]
            samples.append((len(sessions), api_workers, howl.workers()))
            done.wait(0.25)  # sampling the API while the viewers stream

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(3)  # let everyone stream before the stall (the stall itself is the stimulus)
    stalled.send_signal(signal.SIGSTOP)
    time.sleep(3)  # the stall's length is what is being tested
    stalled.send_signal(signal.SIGCONT)
    out_many, _ = many.communicate(timeout=120)
    out_stalled, _ = stalled.communicate(timeout=120)
    real_results = [finish_client(r, howl, timeout=120) for r in reals]
    done.set()
    sampler.join(10)
    assert not sampler.is_alive()

    # Exactly one encoder serves everyone, seen while all 22 stream (2 real + 20 howl-client).
    full = [s for s in samples if s[0] == 22]
    assert len(full) >= 4, f"never saw all 22 viewers at once: {[s[0] for s in samples]}"
    for n, api_workers, processes in full:
        assert len(api_workers) == 1 and processes == api_workers, (n, api_workers, processes)
    assert len({s[1][0] for s in full}) == 1, "the encoder changed while everyone watched"
    others = summaries(out_many)
    assert len(others) == 19, out_many[-3000:]
    slow = [s for s in others if s[1] < 50]
    assert not slow, f"viewers slowed down by the stalled one: {slow}"
    (frames, fps, lost, keyframes), = summaries(out_stalled)
    print(f"19 viewers: min {min(s[1] for s in others):.1f} fps; stalled viewer: {frames} frames, "
          f"{lost} lost, {keyframes} keyframes; real clients ok: {[r['ok'] for r in real_results]}")
    assert lost > 0, "the stall should have cost the stalled viewer frames"
    assert keyframes >= 2, "the stalled viewer recovers at a (new) keyframe"
    for r in real_results:
        assert r["ok"], r
        counters = [c for c in r["counters"] if c is not None]
        assert len(counters) >= 60 * SECONDS * 0.9
        assert all(b > a for a, b in zip(counters, counters[1:]))
