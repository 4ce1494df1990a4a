"""Acceptance tests named after the seed incidents (issue 5), with the real client.

seed000: the HTTPS control plane deadlocked behind a wedged media pipeline and sockets piled
up in CLOSE_WAIT. Here the session's worker is SIGSTOPped and 1000 HTTPS requests (serverinfo,
applist and cancel, 100 in flight) must all answer quickly, leaving no CLOSE_WAIT behind.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import threading
import time

from test_hostile import CLOSE_WAIT, socket_states
from test_lifecycle import start_streaming
from conftest import fds_of, finish_client, rss_kb, run_client, threads_of, wait_until


def tls_context(config_dir) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(os.path.join(config_dir, "cert.pem"), os.path.join(config_dir, "key.pem"))
    return ctx


_sessions = threading.local()


def timed_https_get(ctx, port: int, path: str) -> tuple[float, bytes]:
    """(seconds, raw response) of one request on a new connection, as Moonlight clients make
    them; each thread resumes its previous TLS session like a real client library would.
    (conftest.https_get is the client library's own request, answering the XML.)"""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, session=getattr(_sessions, "s", None)) as s:
            s.sendall(f"GET {path}?uniqueid=0123456789ABCDEF&uuid=1 HTTP/1.1\r\n"
                      f"Host: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            _sessions.s = s.session
    return time.monotonic() - t0, data


def test_seed000_https_answers_while_a_worker_is_wedged(howl, tmp_path):
    """1000 HTTPS requests (serverinfo, applist, cancel; 100 in flight, each on a new
    connection) from howl-client while the streaming session's worker is SIGSTOPped; the
    streaming client itself cancels its wedged app meanwhile (what deadlocked Wolf)."""
    from test_fanout import howl_client_bin
    import subprocess
    p, worker = start_streaming(howl, tmp_path, wait=30)
    hc = [howl_client_bin(), "--config-dir", str(tmp_path / "hc")]
    host = f"127.0.0.1:{howl.http_port}"
    r = subprocess.run(hc + ["pair", "--host", host, "--pin", "2468", "--api",
                             f"127.0.0.1:{howl.api_port}", "--howl-state-dir", str(howl.state_dir)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    ctx = tls_context(str(tmp_path / "c"))
    hammer_args = hc + ["hammer", "--host", host, "--requests", "1000", "--concurrency", "100",
                        "--paths", "/serverinfo,/applist,/cancel"]
    # The same load while the worker is healthy, in this run on this machine: what a wedged
    # worker may not make worse. (1000 handshakes a second saturate a 2-core machine, so an
    # absolute bound measures the machine; the seed's own bound, 500 ms, is kept too.)
    healthy = subprocess.run(hammer_args, capture_output=True, text=True, timeout=120)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    base_p95 = float(re.search(r"p95 ([\d.]+) ms", healthy.stdout).group(1))
    os.kill(worker, signal.SIGSTOP)
    try:
        hammer = subprocess.Popen(hammer_args,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        cancel_latency, body = timed_https_get(ctx, howl.https_port, "/cancel")
        out, _ = hammer.communicate(timeout=120)
    finally:
        try:
            os.kill(worker, signal.SIGCONT)
        except ProcessLookupError:
            pass
    print(out.strip())
    print(f"seed000: the streaming client's /cancel of its wedged app answered in "
          f"{cancel_latency * 1000:.1f} ms")
    assert b"<cancel>1</cancel>" in body
    assert hammer.returncode == 0, out  # every one of the 1000 answered 200
    p95 = float(re.search(r"p95 ([\d.]+) ms", out).group(1))
    print(f"seed000: p95 {p95} ms with the worker wedged, {base_p95} ms while it was healthy")
    assert p95 < 500, out
    assert p95 < 1.5 * base_p95 + 20, (f"the wedge made HTTPS slower: p95 {p95} ms against "
                                       f"{base_p95} ms healthy", out)
    pid = howl.proc.pid
    assert wait_until(lambda: socket_states(pid).get(CLOSE_WAIT, 0) == 0, 5), socket_states(pid)
    # The streaming client's own /cancel ended its session, wedged worker and all: its stream
    # was ended by the host (not by its own 30 s wait running out).
    res = finish_client(p, howl)
    assert res["ok"], res
    assert res.get("terminated_after") is not None, ("the cancelled stream never ended", res)
    assert wait_until(lambda: howl.api("GET", "/api/v1/sessions")[1] == [], 10)


def test_seed002_clients_that_vanish_are_reaped_by_their_deadlines(howl_factory, tmp_path):
    """50 launches by 50 clients whose processes are SIGKILLed mid-stream: every session ends
    by its deadline (control silence or ENet timeout), the lingering apps stop, and workers,
    fds, threads and RSS return to baseline."""
    h = howl_factory(env={"HOWL_RESUME_LINGER_SECS": "1", "HOWL_CONTROL_SILENCE_SECS": "2"})
    pid = h.proc.pid
    clients = [tmp_path / f"c{i}" for i in range(100)]
    for c in clients:
        assert run_client(h, c, "--pair-only")["ok"]

    def vanish_batch(batch):
        procs = []
        for c in batch:
            ready = c.parent / (c.name + ".ready")
            procs.append((ready, run_client(h, c, "--width", 640, "--height", 360, "--fps", 30,
                                            "--bitrate", 1500, "--frames", 5,
                                            "--wait-termination", 60, "--ready-file", ready,
                                            background=True)))
        for ready, p in procs:
            assert wait_until(ready.exists, 60), h.log()[-2000:]
        for _, p in procs:
            p.kill()  # the client vanishes without a goodbye
            p.communicate(timeout=10)

    def all_gone():
        return h.api("GET", "/api/v1/sessions")[1] == [] and not h.workers()

    # Warm-up: 50 sessions, so lazily created resources and the allocator's pools are in the
    # baseline (measured: RSS rises over the first few dozen sessions, then stays flat).
    for i in range(0, 50, 5):
        vanish_batch(clients[i:i + 5])
    def trimmed():
        return h.api("GET", "/api/v1/status")[1]["engine"]["heap_trimmed_since_idle"]

    assert wait_until(all_gone, 30)
    # Once idle, the server returns freed heap to the OS (about 2 s later); measure after that.
    assert wait_until(trimmed, 10), h.log()[-2000:]
    base = (fds_of(pid), threads_of(pid), rss_kb(pid))
    t0 = time.monotonic()
    for i in range(50, 100, 5):
        vanish_batch(clients[i:i + 5])
    assert wait_until(all_gone, 30), h.api("GET", "/api/v1/sessions")
    assert wait_until(lambda: fds_of(pid) <= base[0] and threads_of(pid) <= base[1], 10), \
        ((fds_of(pid), threads_of(pid)), base)
    assert wait_until(trimmed, 10), h.log()[-2000:]
    rss = rss_kb(pid)
    log = h.log()
    reasons = {r: log.count(f"reason={r}")
               for r in ("client stopped sending control pings", "client disconnected",
                         "control connection timed out")}
    print(f"seed002: 50 vanished clients in {time.monotonic() - t0:.1f}s; reasons {reasons}; "
          f"fds {base[0]}->{fds_of(pid)}, threads {base[1]}->{threads_of(pid)}, "
          f"RSS {base[2]}->{rss} kB")
    assert sum(reasons.values()) == 100, reasons
    # Within 5 % of the baseline. Freed heap goes back to the OS once the server is idle
    # (malloc_trim) and the test measures at that point; with the server's allocator policy
    # (howl-server heap.rs) the change measured +0.6 % to +1.0 % over seven runs.
    assert rss <= base[2] * 1.05, (rss, base[2])
