"""Fixtures for interop tests: a real `howl serve` process and real Moonlight clients.

The client side is moonlight-python (moonlight-common-c plus a port of moonlight-qt's HTTP and
pairing code); howl is started as a subprocess on free loopback ports with a temporary state
directory, exactly as an operator would run it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
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

    def workers(self) -> list[int]:
        """Live `howl-worker` processes of THIS howl (its state directory is in their command
        line), never those of another howl running on the machine."""
        return workers_of(self.state_dir)

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



@pytest.fixture(autouse=True)
def ordinary_scheduling():
    """Every test leaves the test process at ordinary scheduling. A library loaded in-process
    can change it (SVT-AV1, run as root, makes its caller SCHED_FIFO 99); every process a later
    test starts would inherit that, and a spinning real-time thread (the Go runtime in docker)
    starves a 2-core machine. Put back and reported as this test's error."""
    yield
    if os.sched_getscheduler(0) != os.SCHED_OTHER:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        pytest.fail("the test left the test process with real-time scheduling (put back)")


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
            # And the browsers' WebRTC UDP port (default 8555).
            e.setdefault("HOWL_WEBRTC_BIND", "127.0.0.1:0")
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


def cert_fingerprint(cert_pem: bytes | str) -> str:
    """SHA-256 of a certificate's DER form, lower-case hex: how howl names a client."""
    pem = cert_pem.decode() if isinstance(cert_pem, bytes) else cert_pem
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def pending_request_of(api, fingerprint: str, timeout: float = 30.0) -> dict:
    """The pending pairing request of the client whose certificate has `fingerprint`, once it
    is there. `api(method, path, body)` returns (status, body) (`Howl.api` does). Requests of
    other clients are never picked: the PIN goes to the client that asked for it."""
    deadline = time.monotonic() + timeout
    seen: list = []
    while time.monotonic() < deadline:
        status, seen = api("GET", "/api/v1/pairing/pending", None)
        assert status == 200, seen
        mine = [p for p in seen if p["fingerprint"].lower() == fingerprint.lower()]
        assert len(mine) <= 1, f"two pending requests with one certificate: {mine}"
        if mine:
            return mine[0]
        time.sleep(0.05)  # polling the API: the request appears when the client's step 1 arrives
    raise AssertionError(f"no pending pairing request for {fingerprint[:16]} after {timeout}s; "
                         f"pending: {seen}")


def submit_pin(api, pin: str, request: dict):
    """Enters `pin` for that one pending request through the API; returns (status, body)."""
    return api("POST", "/api/v1/pairing/pin", {"pin": pin, "client": str(request["id"])})


class BackgroundPairing:
    """`client.pair()` in a thread (it blocks until the operator enters the PIN).

    `request(api)` waits for this client's own pending request; `finish()` joins the thread,
    fails the test if pair() is still running, and returns pair()'s exception (None on
    success); `succeeded()` fails the test with pair()'s exception if it raised one.
    """

    def __init__(self, client, info, pin: str):
        self.client = client
        self.pin = pin
        self.error: BaseException | None = None
        self.fingerprint = cert_fingerprint(client._identity.cert_pem)
        self._thread = threading.Thread(target=self._run, args=(info,), daemon=True)
        self._thread.start()

    def _run(self, info):
        try:
            self.client.pair(info, pin=self.pin)
        except BaseException as e:  # noqa: BLE001 - finish() hands it to the test
            self.error = e

    def request(self, api, timeout: float = 30.0) -> dict:
        return pending_request_of(api, self.fingerprint, timeout)

    def finish(self, timeout: float = 60.0) -> BaseException | None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"pair() did not return within {timeout}s"
        return self.error

    def succeeded(self, timeout: float = 60.0) -> None:
        err = self.finish(timeout)
        if err is not None:
            raise AssertionError(f"pairing failed: {err!r}") from err


def pair_in_background(client, info, pin: str) -> BackgroundPairing:
    return BackgroundPairing(client, info, pin)


def pair_with_api(h: "Howl", client, pin: str, submitted: str | None = None):
    """Pairs `client` with `h`, entering `submitted` (default: the right PIN) through the API for
    this client's own request. Returns (info, the pending request, pair()'s exception or None)."""
    info = server_info(client, h.http_port)
    pairing = BackgroundPairing(client, info, pin)
    request = pairing.request(h.api)
    status, body = submit_pin(h.api, submitted or pin, request)
    assert status == 200, body
    return info, request, pairing.finish()


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


# ---------------------------------------------------------------- waiting

def wait_until(pred, timeout: float, interval: float = 0.05) -> bool:
    """Whether `pred()` became true within `timeout` s. For state that offers no event to
    await (process tables, /proc counters, a file another process writes, API listings)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)  # sampling state that sends no event
    return bool(pred())


def wait_for(pred, timeout: float, what, interval: float = 0.05):
    """`pred()`'s first truthy value within `timeout` s; fails the test naming `what` (a string,
    or a function giving one when it fails, e.g. with a log tail) if none came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)  # sampling state that sends no event
    v = pred()
    if v:
        return v
    raise AssertionError(f"timed out after {timeout}s waiting for "
                         f"{what() if callable(what) else what}")


# Desktops (process apps, the Desktop app) need Xvfb: tests of them skip where it is missing.
needs_xvfb = pytest.mark.skipif(
    shutil.which("Xvfb") is None,
    reason="Xvfb is not installed (scripts/common.sh installs it); desktops cannot run here")


# ---------------------------------------------------------------- processes (/proc)

def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (index 0 is the state, 1 the parent,
    11 and 12 utime and stime); None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Running or stopped; a zombie or a reaped process is not alive."""
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def parent_of(pid: int) -> int | None:
    st = proc_stat(pid)
    return int(st[1]) if st else None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used."""
    st = proc_stat(pid)
    assert st is not None, f"process {pid} is gone"
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def fds_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def rss_kb(pid: int) -> int:
    """Resident set size in kB (0 if /proc does not say)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pids_of(name: str) -> list[int]:
    """Every process on the machine whose command name is `name`; tests that check what one
    howl left behind use `workers_of` instead (another howl may run here)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() == name:
                        out.append(int(d))
            except OSError:
                pass
    return out


def workers_of(state_dir: Path) -> list[int]:
    """Live `howl-worker` processes started by the howl of `state_dir`: a worker's command line
    names its socket under that directory, also after its server died (when it is no longer
    anyone's child)."""
    needle = str(Path(state_dir) / "run").encode()
    found = []
    for pid in pids_of("howl-worker"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if needle in cmd and alive(pid):
            found.append(pid)
    return found


# ---------------------------------------------------------------- client processes

HERE = Path(__file__).resolve().parent


def client_args(h: Howl, config_dir, *extra, script: str = "stream_client.py") -> list[str]:
    """The command line of one real-client script (stream_client.py or desktop_client.py)."""
    return [sys.executable, str(HERE / script), "--http-port", str(h.http_port),
            "--api-port", str(h.api_port), "--token", h.token, "--config-dir", str(config_dir),
            *map(str, extra)]


def run_client(h: Howl, config_dir, *extra, script: str = "stream_client.py", timeout=120,
               background=False):
    """Runs one real client in its own process (moonlight-common-c keeps global state: one
    stream per process). Returns its RESULT dict, or the Popen when `background`."""
    args = client_args(h, config_dir, *extra, script=script)
    if background:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return parse_result(p.stdout, p.stderr, h)


def parse_result(stdout: str, stderr: str, h: Howl) -> dict:
    """The client's RESULT line as a dict; fails the test with everything there is to read
    when the client printed none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise AssertionError(f"client printed no result.\nstdout:{stdout[-3000:]}\n"
                         f"stderr:{stderr[-3000:]}\nhowl log:\n{h.log()[-5000:]}")


def finish_client(p: subprocess.Popen, h: Howl, timeout=60) -> dict:
    """Waits for a background client and returns its RESULT dict."""
    return parse_result(*p.communicate(timeout=timeout), h)


def start_streaming(h: Howl, config_dir, *extra, script: str = "stream_client.py",
                    timeout: float = 60) -> subprocess.Popen:
    """Starts a background client with a ready file and returns it once it streams (the
    script touches the file after its first frames); fails the test if it exited instead."""
    ready = Path(config_dir).parent / f"{Path(config_dir).name}.ready"
    ready.unlink(missing_ok=True)
    p = run_client(h, config_dir, *extra, "--ready-file", ready, script=script, background=True)
    wait_for(lambda: ready.exists() or p.poll() is not None, timeout,
             lambda: f"the client to stream\nhowl log:\n{h.log()[-3000:]}")
    if p.poll() is not None:
        raise AssertionError(f"the client exited before streaming: {finish_client(p, h)}")
    return p


def stop_client(p: subprocess.Popen) -> None:
    """Kills a background client if it still runs (test clean-up)."""
    if p.poll() is None:
        p.kill()
        p.communicate(timeout=30)


def chromium(what: str, window: tuple[int, int], extra_args=()):
    """Headless Chromium driven by Debian's chromium-driver, with its console log captured;
    skips (naming `what` needs it) where chromium, chromium-driver or selenium is missing."""
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chrome or not chromedriver:
        pytest.skip(f"{what} needs Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip(f"{what} needs selenium (pip install -r tests/interop/requirements.txt)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={window[0]},{window[1]}", "--force-device-scale-factor=1",
                "--disable-extensions", "--no-first-run", *extra_args):
        opts.add_argument(arg)
    # Console messages, to catch Content-Security-Policy violations and script errors.
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager must not try to download anything.
    service = webdriver.ChromeService(executable_path=chromedriver)
    return webdriver.Chrome(options=opts, service=service)
