#!/usr/bin/env python3
"""What a media node's transport adds to a worker's output: latency from the worker's write
to the control plane's read, and the node's CPU, against a worker on the control plane's
own machine (its unix socket read directly).

A stand-in worker (this script with --worker) writes timestamped frames at a given rate and
size (default 720p60 at 20 Mbit/s: 60 frames of 41,667 bytes a second) into the socket it is
given; a stand-in control plane (this script) either reads them from a unix socket itself
(local) or runs the node endpoint's side of the node protocol, asks the real `howl node` for
one worker, and reads the frames from the worker's own TLS connection (remote), which the node
bridges from the worker's unix socket. Both ends share this machine's monotonic clock, so the
latency is exact. Everything else (Python's reading) is the same on both paths.

    scripts/bench-node-transport.py [--howl PATH] [--seconds 20] [--fps 60] [--kbps 20000]

Needs `openssl` (for the stand-in control plane's certificate).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HEADER = struct.Struct(">QI")  # monotonic ns at write, payload length


def worker(sock_path: str, fps: int, kbps: int, seconds: float) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    size = kbps * 1000 // 8 // fps
    payload = os.urandom(size)
    period = 1.0 / fps
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        due = start + n * period
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        s.sendall(HEADER.pack(time.monotonic_ns(), size) + payload)
        n += 1
    s.close()


def read_frames(recv, out: list) -> None:
    buf = b""
    while True:
        chunk = recv(1 << 16)
        if not chunk:
            return
        buf += chunk
        while len(buf) >= HEADER.size:
            ts, size = HEADER.unpack_from(buf)
            if len(buf) < HEADER.size + size:
                break
            out.append((time.monotonic_ns() - ts) / 1e6)
            buf = buf[HEADER.size + size:]


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">IB", len(payload) + 1, kind) + payload


def read_frame(s) -> tuple[int, bytes, bytes]:
    """One node-protocol frame, and the bytes read past it."""
    buf = b""
    while len(buf) < 5 or len(buf) < 4 + struct.unpack_from(">I", buf)[0]:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    n = struct.unpack_from(">I", buf)[0]
    return buf[4], buf[5:4 + n], buf[4 + n:]


def cpu_seconds(pid: int) -> float:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list, p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def run_local(args, tmp: Path) -> list:
    path = str(tmp / "local.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    w = subprocess.Popen([sys.executable, __file__, "--worker", path, "--fps", str(args.fps),
                          "--kbps", str(args.kbps), "--seconds", str(args.seconds)])
    conn, _ = srv.accept()
    lat: list = []
    read_frames(conn.recv, lat)
    w.wait()
    return lat


def run_remote(args, tmp: Path) -> tuple[list, float]:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=bench", "-keyout", str(tmp / "k.pem"), "-out",
                    str(tmp / "c.pem")], check=True, capture_output=True)
    der = ssl.PEM_cert_to_DER_cert((tmp / "c.pem").read_text())
    token = f"howl-node1.{'ab' * 32}.{hashlib.sha256(der).hexdigest()}"
    (tmp / "token").write_text(token)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(tmp / "c.pem", tmp / "k.pem")
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]
    fake = tmp / "worker.sh"
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = --probe ] && {{ echo '{{\"encoders\": []}}'; exit 0; }}\n"
                    f"exec {sys.executable} {__file__} --worker \"$2\" --fps {args.fps} "
                    f"--kbps {args.kbps} --seconds {args.seconds}\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOWL_")}
    env.update(HOWL_WORKER_BIN=str(fake), HOWL_LOG="warn")
    node = subprocess.Popen([args.howl, "node", "--control-plane", f"127.0.0.1:{port}",
                             "--token-file", str(tmp / "token"), "--state-dir",
                             str(tmp / "node"), "--name", "bench"], env=env)
    lat: list = []
    done = threading.Event()
    cpu = [0.0, 0.0]

    def serve(raw):
        s = ctx.wrap_socket(raw, server_side=True)
        kind, _, _ = read_frame(s)
        if kind == 1:  # JoinControl: welcome it, ask for one worker, then heartbeats
            s.sendall(frame(3, struct.pack(">H", 5) + b"bench" + struct.pack(">I", 500)))
            s.sendall(frame(6, struct.pack(">QH", 1, 0)))
            s.settimeout(0.5)
            while not done.is_set():
                try:
                    if not s.recv(65536):
                        return
                except TimeoutError:
                    pass
                s.sendall(frame(5, b""))
        elif kind == 2:  # JoinWorker: the frames follow
            cpu[0] = cpu_seconds(node.pid)
            read_frames(s.recv, lat)
            cpu[1] = cpu_seconds(node.pid)
            done.set()

    threads = []
    lsock.settimeout(60)
    try:
        for _ in range(2):
            raw, _ = lsock.accept()
            t = threading.Thread(target=serve, args=(raw,), daemon=True)
            t.start()
            threads.append(t)
        done.wait(args.seconds + 30)
    finally:
        node.terminate()
        node.wait(10)
    return lat, cpu[1] - cpu[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--howl", default=os.environ.get("HOWL_BIN", "howl"))
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--fps", type=int, default=60)
    ap.add_argument("--kbps", type=int, default=20000)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.fps, args.kbps, args.seconds)
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        local = run_local(args, tmp)
        remote, node_cpu = run_remote(args, tmp)
    for name, lat in (("local (unix socket)", local), ("remote (node, TLS)", remote)):
        print(f"{name:22} frames {len(lat):5}  p50 {pct(lat, 50):6.3f} ms  "
              f"p95 {pct(lat, 95):6.3f} ms  max {max(lat):6.3f} ms")
    print(f"added by the node: p50 {pct(remote, 50) - pct(local, 50):+.3f} ms, "
          f"p95 {pct(remote, 95) - pct(local, 95):+.3f} ms")
    print(f"node CPU for the transport: {node_cpu:.2f} s over {args.seconds:.0f} s "
          f"({100 * node_cpu / args.seconds:.1f} % of a core per producer at "
          f"{args.kbps} kbit/s, {args.fps} fps)")


if __name__ == "__main__":
    main()
