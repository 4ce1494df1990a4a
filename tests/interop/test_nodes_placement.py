"""Issue 19, placement requirements: an app with `node_labels` goes only to a node that has
them. The control plane keeps its local node (no labels); a media node in its own network
namespace (veth link, real TCP) joins with `--label gpu=nvidia`.

- Before the node joins, nothing offers the label: the real client's launch, a lobby through
  the API and an RTSP player's app share are refused at once with the reason naming the
  missing label (503 / 409 / 503), counted, and nothing starts; so is a lobby of an
  API-created app with its own `node_labels`.
- Once it joins, the same app streams from that node (increasing counter), while an app
  without requirements is still placed on the idle local node; the node's
  `--max-encoder-sessions 2` (below its 3 producer slots) refuses a third with that limit.
- Stopped, it is listed as `disconnected` (`?disconnected=true`, `howl nodes`) until removed.

Skipped (with the reason) where network namespaces cannot be made."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import howl_bin, run_client, start_streaming, stop_client, wait_for
from test_admission import share_status
from test_nodes import netns, netns_factory, nodes_of  # noqa: F401 (fixtures)

MISSING = "missing label gpu=nvidia"

CONFIG = """
[[apps]]
title = "GPU Pattern"
kind = "test-pattern"
node_labels = { gpu = "nvidia" }
"""


def start_node(ns: str, control_plane: str, state_dir: Path, token_file: Path, name: str,
               log: Path) -> subprocess.Popen:
    """`howl node` in the namespace with the label the app requires, and a hardware
    encoder's budget of 2 sessions below its 3 producer slots."""
    args = ["ip", "netns", "exec", ns, howl_bin(), "node", "--control-plane", control_plane,
            "--state-dir", str(state_dir), "--name", name, "--label", "gpu=nvidia",
            "--max-producers", "3", "--max-encoder-sessions", "2",
            "--token-file", str(token_file)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOWL_")}
    env["HOWL_LOG"] = "info"
    with open(log, "ab") as f:
        return subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env)


def refused(h, path: str) -> float:
    status, text = h.api("GET", "/metrics")
    assert status == 200, text
    for line in text.splitlines():
        if line.startswith(f'howl_admission_refused_total{{path="{path}"}} '):
            return float(line.split()[1])
    raise AssertionError(f"no refusal counter for {path}")


def test_an_app_requiring_a_label_is_refused_until_a_node_has_it_then_placed_there(
        howl_factory, netns, tmp_path):
    ns, cp_ip = netns
    port = 47000 + os.getpid() % 900
    config = tmp_path / "howl.toml"
    config.write_text(CONFIG)
    h = howl_factory(env={"HOWL_NODE_BIND": f"{cp_ip}:{port}"},
                     extra_args=["--config", str(config)])
    status, apps = h.api("GET", "/api/v1/apps")
    gpu_app = next(a for a in apps if a["title"] == "GPU Pattern")
    assert gpu_app["requires"] == {"node_labels": {"gpu": "nvidia"}}, gpu_app

    # Only the local node, without the label: refused on every path, naming the label.
    res = run_client(h, tmp_path / "a", "--app", "GPU Pattern", "--frames", 10)
    assert not res["ok"] and MISSING in res["error"] and "503" in res["error"], res
    status, body = h.api("POST", "/api/v1/lobbies", {"name": "Gpu", "app": "GPU Pattern"})
    assert status == 409 and MISSING in body["error"], (status, body)
    status = share_status(h, "/app/GPU%20Pattern")
    assert status == 503, status
    # An API-created app carries its requirements the same way.
    status, api_app = h.api("POST", "/api/v1/apps", {"title": "Zoned", "kind": "test-pattern",
                                                     "node_labels": {"zone": "x"}})
    assert status == 201 and api_app["requires"] == {"node_labels": {"zone": "x"}}, api_app
    status, body = h.api("POST", "/api/v1/lobbies", {"name": "Zoned", "app": "Zoned"})
    assert status == 409 and "missing label zone=x" in body["error"], (status, body)
    for path, n in (("launch", 1), ("lobby", 2), ("player", 1)):
        assert refused(h, path) == n, path
    assert h.api("GET", "/api/v1/workers")[1] == []
    assert sum(1 for line in h.log().splitlines()
               if "admission refused" in line and "gpu=nvidia" in line) == 3, h.log()[-3000:]

    # A node with the label joins: the app streams from it; a plain app stays local.
    status, tok = h.api("POST", "/api/v1/nodes/tokens", {"ttl_secs": 600})
    assert status == 201, tok
    token_file = tmp_path / "join-token"
    token_file.write_text(tok["token"] + "\n")
    log = tmp_path / "node-gpu.log"
    node = start_node(ns, f"{cp_ip}:{port}", tmp_path / "node-gpu", token_file, "node-gpu", log)
    p = None
    try:
        wait_for(lambda: "node-gpu" in nodes_of(h), 30,
                 lambda: f"node-gpu to join\nnode log:\n{log.read_text()[-3000:]}")
        gpu = nodes_of(h)["node-gpu"]
        assert gpu["labels"] == {"gpu": "nvidia"}, gpu
        assert (gpu["max_producers"], gpu["max_encoder_sessions"]) == (3, 2), gpu
        p = start_streaming(h, tmp_path / "a", "--app", "GPU Pattern", "--frames", 30,
                            "--wait-termination", 30)
        status, workers = h.api("GET", "/api/v1/workers")
        assert [w["node"] for w in workers] == ["node-gpu"], workers
        # A plain app still runs where it may: spread puts it on the idle local node.
        q = start_streaming(h, tmp_path / "b", "--frames", 30, "--wait-termination", 30)
        try:
            status, workers = h.api("GET", "/api/v1/workers")
            assert sorted(w["node"] for w in workers) == ["local", "node-gpu"], workers
            nodes = nodes_of(h)
            assert (nodes["local"]["producers"], nodes["node-gpu"]["producers"]) == (1, 1), nodes
        finally:
            stop_client(q)
        # A second launch of it takes the node's other encoder session and streams from there.
        res = run_client(h, tmp_path / "c", "--app", "GPU Pattern", "--frames", 30)
        assert res["ok"], res
        c = res["counters"]
        assert len(c) == 30 and all(b > a for a, b in zip(c, c[1:])), c
        # Two running there: a third has a producer slot but no encoder session left.
        q = start_streaming(h, tmp_path / "c", "--app", "GPU Pattern", "--frames", 30,
                            "--wait-termination", 30)
        try:
            res = run_client(h, tmp_path / "d", "--app", "GPU Pattern", "--frames", 10)
            assert not res["ok"] and "max_encoder_sessions = 2" in res["error"], res
            assert nodes_of(h)["node-gpu"]["encoder_sessions"] == 2
        finally:
            stop_client(q)

        # Stopped, the node is no longer placed on, but it joined once (its certificate is
        # pinned): `?disconnected=true` and `howl nodes` still list it, as disconnected.
        stop_client(p)
        p = None
        node.terminate()
        node.wait(timeout=15)
        wait_for(lambda: "node-gpu" not in nodes_of(h), 10, "node-gpu to be lost")
        status, listed = h.api("GET", "/api/v1/nodes?disconnected=true")
        assert status == 200, listed
        assert [(n["name"], n["state"]) for n in listed] == [
            ("local", "ready"), ("node-gpu", "disconnected")], listed
        out = subprocess.run([howl_bin(), "nodes", "--state-dir", str(h.state_dir),
                              "--api", f"127.0.0.1:{h.api_port}"],
                             capture_output=True, text=True, timeout=30,
                             env={k: v for k, v in os.environ.items()
                                  if k not in ("HOWL_STATE_DIR", "HOWL_API_BIND")})
        assert out.returncode == 0, out
        row = next(r for r in out.stdout.splitlines() if r.startswith("node-gpu")).split()
        assert row[1] == "disconnected", out.stdout
        # Removed, it is gone from every listing.
        assert h.api("DELETE", "/api/v1/nodes/node-gpu")[0] == 204
        assert [n["name"] for n in h.api("GET", "/api/v1/nodes?disconnected=true")[1]] == ["local"]
    finally:
        if p is not None:
            stop_client(p)
        if node.poll() is None:
            node.terminate()
            try:
                node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
