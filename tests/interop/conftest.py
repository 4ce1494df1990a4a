"""Fixtures for interop tests: a real `howl serve` process and real Moonlight clients.

The client side is moonlight-python (moonlight-common-c plus a port of moonlight-qt's HTTP and
pairing code); howl is started as a subprocess on free loopback ports with a temporary state
directory, exactly as an operator would run it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def howl_bin() -> str:
    b = os.environ.get("HOWL_BIN")
    if b:
        return b
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/howl/target"))
    return str(Path(target) / "debug" / "howl")


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Howl:
    """A running `howl serve` and what a test needs to talk to it."""

    state_dir: Path
    http_port: int
    https_port: int
    api_port: int
    env: dict
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    extra_args: list = field(default_factory=list)

    @property
    def rtsp_port(self) -> int:
        """The port of the RTSP egress for players."""
        return int(self.env["HOWL_RTSP_EGRESS_BIND"].rsplit(":", 1)[1])

    @property
    def token(self) -> str:
        return (self.state_dir / "api-token").read_text().strip()

    def start(self, timeout: float = 30.0) -> None:
        args = [
            howl_bin(), "serve", "--no-mdns", "--bind", "127.0.0.1",
            "--state-dir", str(self.state_dir),
            "--http-port", str(self.http_port), "--https-port", str(self.https_port),
            "--api-bind", f"127.0.0.1:{self.api_port}", *self.extra_args,
        ]
        self.log_path = self.state_dir.parent / f"howl-{self.http_port}.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"howl exited early ({self.proc.returncode}):\n{self.log()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/readyz", timeout=1).read()
                urllib.request.urlopen(self.http_url("/serverinfo"), timeout=1).read()
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.05)  # polling for readiness; there is no event to await
        raise RuntimeError(f"howl did not become ready:\n{self.log()}")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"howl did not exit within {timeout}s of SIGTERM")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def http_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def api(self, method: str, path: str, body=None, token: str | None = "default"):
        """Calls the management API; returns (status, parsed JSON or text)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", data=data, method=method)
        if token == "default":
            token = self.token
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def wait_pending(self, count: int = 1, timeout: float = 30.0) -> list:
        """Waits until `count` pairing requests wait for a PIN."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.api("GET", "/api/v1/pairing/pending")
            assert status == 200, body
            if len(body) >= count:
                return body
            time.sleep(0.05)  # polling the API: the request appears when the client's step 1 arrives
        raise AssertionError(f"no pending pairing request after {timeout}s:\n{self.log()}")


@pytest.fixture
def howl_factory(tmp_path):
    """Creates howl servers; every one is stopped (and must exit 0) at teardown."""
    servers: list[Howl] = []

    def make(state_dir: Path | None = None, env: dict | None = None, extra_args=None,
             ports: tuple | None = None) -> Howl:
        sd = state_dir or (tmp_path / f"state{len(servers)}")
        # A port found free here can be taken by another process before howl binds it (the
        # clients' own sockets use the same ephemeral range); then start again on new ports.
        for attempt in range(3):
            e = dict(os.environ)
            e.setdefault("HOWL_LOG", "info")
            # Free ports for the media plane too, so a test never collides with a howl already
            # running on this machine (or with another test run).
            e.setdefault("HOWL_RTSP_PORT", "0")
            for key in ("HOWL_VIDEO_PORT", "HOWL_CONTROL_PORT", "HOWL_AUDIO_PORT"):
                e.setdefault(key, str(free_port(socket.SOCK_DGRAM)))
            # The players' RTSP port (default 8554) too: tests run side by side.
            e.setdefault("HOWL_RTSP_EGRESS_BIND", f"127.0.0.1:{free_port()}")
            e.update(env or {})
            hp, sp, ap = ports or (free_port(), free_port(), free_port())
            h = Howl(state_dir=sd, http_port=hp, https_port=sp, api_port=ap, env=e,
                     extra_args=list(extra_args or []))
            try:
                h.start()
            except RuntimeError as err:
                if "Address already in use" not in str(err) or attempt == 2:
                    raise
                continue
            servers.append(h)
            return h

    yield make
    for h in servers:
        code = h.stop()
        assert code == 0, f"howl exited with {code}:\n{h.log()}"


@pytest.fixture
def howl(howl_factory):
    return howl_factory()


def make_client(config_dir: Path):
    from moonlight_python import MoonlightClient
    return MoonlightClient(str(config_dir))


def server_info(client, port: int):
    """ServerInfo over plain HTTP, without moonlight-python's auto-pairing `connect()`."""
    from moonlight_python.discovery import connect_to_server
    info = connect_to_server("127.0.0.1", client._identity, port)
    client._server = info
    return info


def pair_in_background(client, info, pin: str):
    """Runs `client.pair()` in a thread (it blocks until the operator enters the PIN).

    Returns (thread, result) where result["error"] holds the exception, if any.
    """
    result: dict = {}

    def run():
        try:
            client.pair(info, pin=pin)
            result["ok"] = True
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def https_get(client, info, command: str, args: str | None = None) -> str:
    """GET over mutual TLS with the client's own certificate; returns the XML text.

    Raises HttpResponseError for an XML status other than 200.
    """
    from moonlight_python.http_client import NvHTTP
    http = NvHTTP("127.0.0.1", client._identity, http_port=info.http_port,
                  https_port=info.https_port)
    xml = http.open_https(command, args)
    NvHTTP.verify_response_status(xml)
    return xml


def xml_text(xml: str, tag: str) -> str | None:
    from moonlight_python.http_client import NvHTTP
    return NvHTTP.get_xml_string(xml, tag)
