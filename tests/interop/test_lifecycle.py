"""Lifecycle guarantees the seeds lacked, with the real client streaming:
seed 001 (shutdown with a wedged worker is bounded and leaves no worker) and the heartbeat
watchdog (a SIGSTOPped worker is killed and its client told)."""

from __future__ import annotations

import os
import signal
import time

import conftest
from conftest import alive, finish_client, proc_stat, run_client, wait_for, wait_until


def start_streaming(h, tmp_path, wait=20):
    """One client streaming and waiting up to `wait` s to be told of an end; returns it and
    its session's worker pid."""
    p = conftest.start_streaming(h, tmp_path / "c", "--frames", 30, "--wait-termination", wait)
    status, sessions = h.api("GET", "/api/v1/sessions")
    assert len(sessions) == 1 and sessions[0]["worker_pid"], sessions
    return p, sessions[0]["worker_pid"]


def test_seed001_sigterm_with_a_stopped_worker_exits_cleanly(howl, tmp_path):
    p, worker = start_streaming(howl, tmp_path)
    os.kill(worker, signal.SIGSTOP)
    t0 = time.monotonic()
    howl.proc.send_signal(signal.SIGTERM)
    code = howl.proc.wait(timeout=15)
    took = time.monotonic() - t0
    assert code == 0, howl.log()[-3000:]
    assert took < 10, took
    assert wait_until(lambda: not howl.workers(), 5), howl.workers()
    res = finish_client(p, howl)
    assert res.get("terminated_after") is not None, res
    print(f"SIGTERM with a stopped worker: exit 0 in {took:.2f}s; client told")


def test_stopped_worker_is_killed_by_the_heartbeat_watchdog(howl, tmp_path):
    p, worker = start_streaming(howl, tmp_path)
    t0 = time.monotonic()
    os.kill(worker, signal.SIGSTOP)
    assert wait_until(lambda: not alive(worker), 10), proc_stat(worker)
    res = finish_client(p, howl)
    assert res.get("terminated_after") is not None, res
    assert "no heartbeat" in howl.log()
    print(f"stopped worker killed and client told after {time.monotonic() - t0:.2f}s")
    assert howl.api("GET", "/api/v1/sessions")[1] == []


def test_seed001_server_sigkill_leaves_no_worker_and_restart_serves(howl_factory, tmp_path):
    """SIGKILL of the server (no chance to clean up) takes its workers with it: each worker
    asked the kernel to kill it when its parent dies (PR_SET_PDEATHSIG), even when stopped.
    A restart on the same state directory then serves the same client again."""
    h = howl_factory()
    p, worker = start_streaming(h, tmp_path)
    os.kill(worker, signal.SIGSTOP)
    h.proc.send_signal(signal.SIGKILL)
    h.proc.wait(timeout=10)
    h.proc = None  # killed on purpose: the fixture must not expect a clean exit from it
    assert wait_until(lambda: not h.workers(), 5), h.workers()
    p.kill()
    p.communicate(timeout=10)
    h2 = howl_factory(state_dir=h.state_dir)
    res = run_client(h2, tmp_path / "c", "--frames", 30)
    assert res["ok"], res


def test_orphaned_worker_of_this_state_dir_is_reaped_at_start(howl_factory, tmp_path):
    """Workers die with their server; a process that still looks like one of this state
    directory's workers when the server starts (here a stand-in) is killed at start."""
    import subprocess
    import sys
    state = tmp_path / "state"
    (state / "run").mkdir(parents=True)
    name = str(tmp_path / "howl-worker")
    sock = str(state / "run" / "worker-1-1.sock")
    # A sleeping Python whose argv[0] and arguments look like an orphaned worker's.
    code = ("import os, sys; os.execv(sys.executable, "
            f"[{name!r}, '-c', 'import time; time.sleep(60)', '--socket', {sock!r}])")
    p = subprocess.Popen([sys.executable, "-c", code])
    wait_for(lambda: open(f"/proc/{p.pid}/cmdline", "rb").read().startswith(name.encode()), 5,
             "the stand-in's command line")
    h = howl_factory(state_dir=state)
    assert p.wait(timeout=10) == -9
    assert "left by a previous run" in h.log()
