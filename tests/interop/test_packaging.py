"""Issue 17 (and issue 14's /readyz): how operators install and supervise howl.

- The service manager protocol without systemd: the test is the manager. It provides a
  `NOTIFY_SOCKET`, sees `READY=1` only once every listener is bound, sees `WATCHDOG=1` while
  the engine answers, sees the pings stop (and `/readyz` answer 503) while the fault-injection
  route wedges the engine actor, and sees them come back.
- The systemd unit passes `systemd-analyze verify` and carries the promised settings.
- Upgrading from a state directory written in the previous schema keeps the real client paired.
- The container image (built from the repository's Dockerfile on the locally made Debian base)
  serves the real client library: pairs, lists, streams the Test Pattern; runs non-root;
  `docker stop` ends it with exit 0 within the shutdown bound; its health check passes.
- The Debian package, packaged from the image build's binaries, installs into a fresh
  container from the local Debian base, runs under its system user, upgrades to a rebuilt
  package keeping the host identity and the paired client, and purge removes the state.

Docker tests use the machine's daemon when one answers, else start their own (`dockerd
--iptables=false --bridge=none`, overlay2 where it works, else vfs) with its data kept in
~/.cache/howl/dockerd so base images, layers and the build cache survive between runs. They
skip, saying why, where Docker, BuildKit, the base images or cargo-deb are not available.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import REPO, free_port, https_get, make_client, server_info, xml_text

HERE = Path(__file__).resolve().parent
# howl's shutdown bound (serve.rs SHUTDOWN_DEADLINE) and the slack allowed on top of it.
SHUTDOWN_BOUND = 10.0
CACHE = Path(os.environ.get("HOWL_DOCKER_CACHE", Path.home() / ".cache/howl"))


# ---------------------------------------------------------------------------------------------
# The service manager protocol, without systemd


class NotifyListener:
    """The service manager's end of NOTIFY_SOCKET: records (monotonic time, message)."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        self.stopped = False
        self.on_ready = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            msg = data.decode(errors="replace")
            t = time.monotonic()
            if "READY=1" in msg.split("\n") and self.on_ready:
                # Checked at once, in the receiving thread: READY=1 must mean "already bound".
                self.on_ready()
            with self.cond:
                self.messages.append((t, msg))
                self.cond.notify_all()

    def wait_for(self, pred, timeout: float, what: str):
        with self.cond:
            if not self.cond.wait_for(lambda: pred(self.messages), timeout):
                raise AssertionError(f"no {what} within {timeout}s: {self.messages}")

    def times(self, assignment: str) -> list[float]:
        with self.cond:
            return [t for t, m in self.messages if assignment in m.split("\n")]

    def close(self):
        self.stopped = True
        self.thread.join(2)
        self.sock.close()


def tcp_bound(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def udp_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return False
        except OSError:
            return True


def readyz(h) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{h.api_port}/readyz", timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_notify_ready_after_listeners_watchdog_while_healthy_and_stops_when_wedged(
        howl_factory, tmp_path):
    watchdog = 2.0  # WATCHDOG_USEC: howl pings every second while the engine answers
    udp = {k: free_port(socket.SOCK_DGRAM) for k in ("VIDEO", "CONTROL", "AUDIO")}
    listener = NotifyListener(tmp_path / "notify")
    ready_check: dict = {}
    env = {"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": str(int(watchdog * 1e6)),
           "HOWL_FAULT_WEDGE_API": "true",
           **{f"HOWL_{k}_PORT": str(p) for k, p in udp.items()}}
    holder: dict = {}

    def on_ready():
        h = holder.get("h")
        ports = holder["ports"]
        ready_check["tcp"] = {p: tcp_bound(p) for p in ports["tcp"]}
        ready_check["udp"] = {p: udp_bound(p) for p in ports["udp"]}
        ready_check["h"] = h

    # The ports are chosen here so the READY check knows them before howl starts.
    hp, sp, ap = free_port(), free_port(), free_port()
    holder["ports"] = {"tcp": [hp, sp, ap], "udp": list(udp.values())}
    listener.on_ready = on_ready
    try:
        h = howl_factory(env=env, ports=(hp, sp, ap))
        holder["h"] = h
        listener.wait_for(lambda ms: any("READY=1" in m for _, m in ms), 20, "READY=1")
        first = listener.messages[0][1].split("\n")
        assert "READY=1" in first, f"READY=1 must be the first notification: {listener.messages}"
        assert all(ready_check["tcp"].values()), f"TCP listener not bound at READY=1: {ready_check}"
        assert all(ready_check["udp"].values()), f"UDP port not bound at READY=1: {ready_check}"
        assert readyz(h) == 200

        # Healthy: pings at half the period.
        listener.wait_for(lambda ms: sum("WATCHDOG=1" in m for _, m in ms) >= 3, 10,
                          "three WATCHDOG=1 while healthy")

        wedge_secs = 8
        status, body = h.api("POST", "/api/v1/debug/wedge-engine", {"seconds": wedge_secs})
        assert status == 202, body
        t_wedge = time.monotonic()
        # /readyz sees it within the probe deadline (2 s) plus the 0.5 s a healthy answer is
        # reused, while the actor is still blocked.
        codes = []
        while not codes or codes[-1] != 503:
            assert time.monotonic() - t_wedge < 4, f"/readyz kept answering {codes}"
            codes.append(readyz(h))
        # The watchdog pings stop for longer than the period (systemd would restart howl), and
        # come back once the actor answers again.
        listener.wait_for(
            lambda ms: any("WATCHDOG=1" in m and t > t_wedge + wedge_secs for t, m in ms),
            wedge_secs + 10, "WATCHDOG=1 after the wedge ended")
        pings = listener.times("WATCHDOG=1")
        before = max(t for t in pings if t < t_wedge)
        after = min(t for t in pings if t > t_wedge)
        assert after - before > watchdog, (
            f"pings continued while the engine was wedged: gap {after - before:.1f}s "
            f"<= WatchdogSec {watchdog}s")
        assert after - t_wedge >= wedge_secs - 1.0, (after - t_wedge, pings)
        assert any("STATUS=the streaming engine does not answer" in m
                   for _, m in listener.messages), listener.messages
        assert readyz(h) == 200
        assert "no longer feeding the watchdog" in h.log()

        assert h.stop() == 0
        listener.wait_for(lambda ms: any("STOPPING=1" in m for _, m in ms), 5, "STOPPING=1")
    finally:
        listener.close()


def test_wedge_route_is_off_by_default_and_readyz_answers(howl):
    status, body = howl.api("POST", "/api/v1/debug/wedge-engine", {"seconds": 5})
    assert status == 404, (status, body)
    assert "fault injection is off" in body["error"]
    assert readyz(howl) == 200


def test_without_notify_socket_nothing_is_sent_and_the_server_serves(howl):
    # The default fixture has no NOTIFY_SOCKET: the server must not care.
    assert "told the service manager" not in howl.log()
    assert readyz(howl) == 200


# ---------------------------------------------------------------------------------------------
# The systemd unit

UNIT = REPO / "packaging" / "howl.service"


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out.setdefault(k.strip(), []).append(v.strip())
    return out


def seconds(v: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", v)
    assert m, v
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def test_systemd_unit_verifies_and_promises_what_the_issue_asks(tmp_path):
    s = unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"]
    assert s["Restart"] == ["on-failure"]
    assert seconds(s["WatchdogSec"][0]) > 2 * 2, "the watchdog must exceed the 2 s engine probe"
    assert seconds(s["TimeoutStopSec"][0]) > SHUTDOWN_BOUND
    assert s["StateDirectory"] == ["howl"]
    assert s["User"] == ["howl"]
    for opt in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert s[opt] == ["yes"], opt
    assert s["ProtectSystem"] == ["strict"]
    # Settings that would stop Xvfb, GStreamer or GPU encoders stay out.
    for banned in ("MemoryDenyWriteExecute", "PrivateDevices", "PrivateUsers", "ProtectClock"):
        assert banned not in s, banned
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax is not verified")
    # verify checks that ExecStart's binary exists: point it at the one under test.
    binary = os.environ.get("HOWL_BIN") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/howl/target")) / "debug/howl")
    unit = tmp_path / "howl.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/howl", binary))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                       timeout=60)
    # Complaints about the host's own units (this may be a container) are not ours.
    ours = [l for l in (r.stdout + r.stderr).splitlines() if "howl.service" in l]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------
# Upgrading from the previous state schema


def test_state_written_in_the_previous_schema_keeps_the_client_paired(howl_factory, tmp_path):
    """Schema 1 (uniqueid and clients, before apps and tenants) is what the previous release
    wrote. The client paired with it lists apps on the new build without pairing again."""
    state = tmp_path / "state"
    h = howl_factory(state_dir=state)
    r = run_stream_client(h.http_port, h.api_port, h.token, tmp_path / "client", "--pair-only")
    assert r.get("paired"), r
    cert_before = (state / "server-cert.pem").read_bytes()
    assert h.stop() == 0
    current = json.loads((state / "state.json").read_text())
    assert current["schema"] == 2 and len(current["clients"]) == 1, current
    v1 = {"schema": 1, "uniqueid": current["uniqueid"], "clients": current["clients"]}
    (state / "state.json").write_text(json.dumps(v1, indent=2) + "\n")

    h.start()
    c = make_client(tmp_path / "client")
    info = server_info(c, h.http_port)
    apps = https_get(c, info, "applist")
    assert "Test Pattern" in apps, apps
    serverinfo = https_get(c, info, "serverinfo")
    assert xml_text(serverinfo, "PairStatus") == "1", serverinfo
    assert xml_text(serverinfo, "uniqueid") == current["uniqueid"]
    assert (state / "server-cert.pem").read_bytes() == cert_before
    # The first change is written in the current schema (a rename through the API).
    fp = current["clients"][0]["fingerprint"]
    status, body = h.api("PATCH", f"/api/v1/clients/{fp}", {"name": "after-upgrade"})
    assert status in (200, 204), (status, body)
    assert json.loads((state / "state.json").read_text())["schema"] == 2


def run_stream_client(http_port, api_port, token, config_dir, *extra, timeout=180):
    args = [sys.executable, str(HERE / "stream_client.py"), "--http-port", str(http_port),
            "--api-port", str(api_port), "--token", token, "--config-dir", str(config_dir),
            *map(str, extra)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise AssertionError(f"client printed no result\nstdout:{p.stdout[-3000:]}\n"
                         f"stderr:{p.stderr[-3000:]}")


# ---------------------------------------------------------------------------------------------
# Docker: a daemon, a client that can use BuildKit, the local base images


class Docker:
    def __init__(self, client: str, host: str, env: dict):
        self.client, self.host, self.env = client, host, env

    def run(self, *args, check=True, timeout=600, **kw) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.env, "DOCKER_HOST": self.host}
        r = subprocess.run([self.client, *args], capture_output=True, text=True, env=env,
                           timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({r.returncode}):\n"
                                 f"{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
        return r

    def ok(self) -> bool:
        try:
            return self.run("info", check=False, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


def buildkit_client() -> tuple[str, dict] | None:
    """A docker client that can build with BuildKit: one with the buildx plugin, or one older
    than 23 (its built-in BuildKit support, switched on with DOCKER_BUILDKIT=1)."""
    seen = []
    for c in (shutil.which("docker"), "/usr/bin/docker"):
        if not c or not os.access(c, os.X_OK) or os.path.realpath(c) in seen:
            continue
        seen.append(os.path.realpath(c))
        if subprocess.run([c, "buildx", "version"], capture_output=True).returncode == 0:
            return c, {"DOCKER_BUILDKIT": "1"}
        v = subprocess.run([c, "version", "--format", "{{.Client.Version}}"],
                           capture_output=True, text=True).stdout.strip()
        m = re.match(r"(\d+)\.", v)
        if m and int(m.group(1)) < 23:
            return c, {"DOCKER_BUILDKIT": "1"}
    return None


@pytest.fixture(scope="session")
def docker_env(tmp_path_factory):
    picked = buildkit_client()
    if picked is None:
        pytest.skip("no docker client that can use BuildKit (buildx plugin, or docker < 23): "
                    "the image and package tests do not run")
    client, env = picked
    default = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    d = Docker(client, default, env)
    if d.ok():
        yield d
        return
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        pytest.skip(f"no Docker daemon at {default}, and no dockerd to start as root: the image "
                    "and package tests do not run")
    # A persistent data root keeps base images, layers and the build cache between runs;
    # another run holding it gets a throw-away one.
    CACHE.mkdir(parents=True, exist_ok=True)
    lock = open(CACHE / "dockerd.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        data_root = CACHE / "dockerd"
    except OSError:
        data_root = tmp_path_factory.mktemp("dockerd-data")
    run_dir = Path(f"/tmp/howl-pkg-dockerd-{uuid.uuid4().hex[:8]}")  # short: socket path limit
    run_dir.mkdir()
    sock = f"unix://{run_dir}/docker.sock"
    proc = None
    for driver in ("overlay2", "vfs"):
        log = open(run_dir / f"dockerd-{driver}.log", "w")
        proc = subprocess.Popen(
            ["dockerd", "--iptables=false", "--bridge=none", f"--storage-driver={driver}",
             "--data-root", str(data_root), "--exec-root", str(run_dir / "exec"),
             "--pidfile", str(run_dir / "dockerd.pid"), "-H", sock],
            stdout=log, stderr=subprocess.STDOUT)
        d = Docker(client, sock, env)
        deadline = time.monotonic() + 60
        while not d.ok() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # polling the daemon's socket; it sends no readiness event
        if d.ok():
            break
        proc.terminate()
        proc.wait(30)
        proc = None
    if proc is None:
        tail = "".join(p.read_text()[-800:] for p in run_dir.glob("dockerd-*.log"))
        shutil.rmtree(run_dir, ignore_errors=True)
        pytest.skip(f"dockerd cannot run on this machine: the image and package tests do not "
                    f"run\n{tail}")
    try:
        yield d
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(run_dir, ignore_errors=True)
        lock.close()


def dockerfile_arg(name: str) -> str:
    m = re.search(rf"^ARG {name}=(\S+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert m, f"Dockerfile has no ARG {name}="
    return m.group(1)


@pytest.fixture(scope="session")
def base_images(docker_env):
    """The images the Dockerfile names, made locally (no registry) unless present."""
    base, rust = dockerfile_arg("BASE_IMAGE"), dockerfile_arg("RUST_IMAGE")
    have = all(docker_env.run("image", "inspect", i, check=False).returncode == 0
               for i in (base, rust))
    if not have and shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed and the base images are absent: the image "
                    "and package tests do not run")
    r = subprocess.run([str(REPO / "scripts/local-base-images.sh")], capture_output=True,
                       text=True, timeout=1200,
                       env={**os.environ, **docker_env.env, "DOCKER_HOST": docker_env.host,
                            "DOCKER": docker_env.client, "BASE_IMAGE": base,
                            "RUST_IMAGE": rust})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return base


@pytest.fixture(scope="session")
def howl_image(docker_env, base_images):
    """The repository's Dockerfile, built as a user would (plus --network host: this daemon
    runs without a bridge)."""
    tag = "howl:test"
    t0 = time.monotonic()
    docker_env.run("build", "--network", "host", "-t", tag, str(REPO), timeout=3600)
    print(f"image build: {time.monotonic() - t0:.0f}s")
    return tag


@pytest.fixture(scope="session")
def release_binaries(docker_env, howl_image, tmp_path_factory):
    """The image build's two binaries (the build stage is cached: no second compile)."""
    out = tmp_path_factory.mktemp("binaries")
    docker_env.run("build", "--network", "host", "--target", "binaries", "-o", str(out),
                   str(REPO), timeout=3600)
    assert (out / "howl").is_file() and (out / "howl-worker").is_file(), list(out.iterdir())
    return out


@pytest.fixture(scope="session")
def debs(release_binaries, tmp_path_factory):
    """Two packages of that build: revision 1, and a rebuilt revision 2 for the upgrade."""
    cargo_deb = shutil.which("cargo-deb") or str(Path.home() / ".cargo/bin/cargo-deb")
    if not os.access(cargo_deb, os.X_OK):
        pytest.skip("cargo-deb is not installed (scripts/test.sh installs it): the package "
                    "tests do not run")
    target = tmp_path_factory.mktemp("deb-target")
    (target / "release").mkdir()
    for b in ("howl", "howl-worker"):
        shutil.copy2(release_binaries / b, target / "release" / b)
    out = tmp_path_factory.mktemp("debs")
    made = []
    t0 = time.monotonic()
    for rev in ("1", "2"):
        r = subprocess.run(
            ["cargo", "deb", "-p", "howl-server", "--no-build", "--no-strip",
             "--deb-revision", rev, "--fast", "--output", str(out / f"howl-{rev}.deb")],
            cwd=REPO, capture_output=True, text=True, timeout=600,
            env={**os.environ, "CARGO_TARGET_DIR": str(target)})
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        made.append(out / f"howl-{rev}.deb")
    print(f"two packages: {time.monotonic() - t0:.0f}s")
    return made


# ---------------------------------------------------------------------------------------------
# The container image


class Container:
    """A howl in a container on the host's network, on free loopback ports."""

    def __init__(self, docker: Docker, image: str, volume: str, name: str):
        self.docker, self.image, self.volume, self.name = docker, image, volume, name
        self.http_port, self.https_port, self.api_port = free_port(), free_port(), free_port()

    def start(self, *extra_run_args, timeout=60):
        env = {"HOWL_RTSP_PORT": "0", "HOWL_RTSP_EGRESS_BIND": f"127.0.0.1:{free_port()}",
               "HOWL_WEBRTC_BIND": "127.0.0.1:0",
               **{f"HOWL_{k}_PORT": str(free_port(socket.SOCK_DGRAM))
                  for k in ("VIDEO", "CONTROL", "AUDIO")},
               "HOWL_API_BIND": f"127.0.0.1:{self.api_port}"}
        args = ["run", "-d", "--name", self.name, "--network", "host",
                "-v", f"{self.volume}:/var/lib/howl", *extra_run_args]
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        # Everything after the image goes to `howl serve` (the entry point).
        args += [self.image, "--no-mdns", "--bind", "127.0.0.1",
                 "--http-port", str(self.http_port), "--https-port", str(self.https_port)]
        self.docker.run(*args)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.inspect("{{.State.Status}}")
            if state not in ("running", "created"):
                raise AssertionError(f"container {state}:\n{self.logs()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/readyz", timeout=1)
                urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/serverinfo", timeout=1)
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)  # polling for readiness; there is no event to await
        raise AssertionError(f"the container did not become ready:\n{self.logs()}")

    def inspect(self, fmt: str) -> str:
        return self.docker.run("inspect", "--format", fmt, self.name).stdout.strip()

    def logs(self) -> str:
        r = self.docker.run("logs", self.name, check=False)
        return (r.stdout + r.stderr)[-6000:]

    def token(self) -> str:
        return self.docker.run("exec", self.name, "cat", "/var/lib/howl/api-token").stdout.strip()

    def remove(self):
        self.docker.run("rm", "-f", self.name, check=False)


def test_image_pairs_streams_runs_non_root_and_stops_cleanly(docker_env, howl_image, tmp_path):
    d = docker_env
    volume = f"howl-test-{uuid.uuid4().hex[:8]}"
    c = Container(d, howl_image, volume, f"howl-test-{uuid.uuid4().hex[:8]}")
    try:
        # A fast health interval so the image's own HEALTHCHECK command is seen to pass.
        c.start("--health-interval", "1s", "--health-start-period", "30s")
        assert d.run("exec", c.name, "id", "-un").stdout.strip() == "howl"
        assert d.run("exec", c.name, "id", "-u").stdout.strip() != "0"
        # The long-lived processes: tini (PID 1) and howl. Not every process: one scan of all
        # of them once saw a root process, most likely a `docker exec` (the health check runs
        # every second) caught while runc was still setting it up.
        uids = d.run("exec", c.name, "sh", "-c",
                     "for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null); case $c in "
                     "tini|howl) echo $c $(grep '^Uid:' $p/status);; esac; done").stdout
        names = {line.split()[0] for line in uids.splitlines()}
        assert names == {"tini", "howl"}, uids
        assert all(line.split()[2] != "0" for line in uids.splitlines()), uids

        token = c.token()
        r = run_stream_client(c.http_port, c.api_port, token, tmp_path / "client",
                              "--frames", "90", "--audio-seconds", "1.5")
        assert r.get("ok"), (r, c.logs())
        counters = [x for x in r["counters"] if x is not None]
        assert len(counters) >= 60 and all(b > a for a, b in zip(counters, counters[1:])), r
        assert abs(r["audio_frequency"] - 440) < 10, r
        client = make_client(tmp_path / "client")
        apps = https_get(client, server_info(client, c.http_port), "applist")
        assert "Test Pattern" in apps and "Desktop" in apps, apps

        deadline = time.monotonic() + 30
        while c.inspect("{{.State.Health.Status}}") != "healthy":
            assert time.monotonic() < deadline, c.inspect("{{json .State.Health}}")
            time.sleep(0.5)  # Docker runs the check on its own clock

        t0 = time.monotonic()
        d.run("stop", "-t", str(int(SHUTDOWN_BOUND) + 10), c.name)
        took = time.monotonic() - t0
        assert c.inspect("{{.State.ExitCode}}") == "0", c.logs()
        assert took < SHUTDOWN_BOUND, f"docker stop took {took:.1f}s:\n{c.logs()}"
        assert "stopped" in c.logs()
        print(f"docker stop: exit 0 in {took:.1f}s (bound {SHUTDOWN_BOUND:.0f}s)")

        # A new container on the same volume (what an image upgrade is) keeps the pairing.
        c.remove()
        c2 = Container(d, howl_image, volume, f"howl-test-{uuid.uuid4().hex[:8]}")
        try:
            c2.start()
            client = make_client(tmp_path / "client")
            apps = https_get(client, server_info(client, c2.http_port), "applist")
            assert "Test Pattern" in apps, apps
        finally:
            c2.remove()
        size = int(d.run("image", "inspect", "--format", "{{.Size}}", howl_image).stdout)
        print(f"image {howl_image}: {size / 1e6:.0f} MB")
    finally:
        c.remove()
        d.run("volume", "rm", "-f", volume, check=False)


# ---------------------------------------------------------------------------------------------
# The Debian package


class DebBox:
    """A fresh container from the local Debian base, on the host's network."""

    def __init__(self, docker: Docker, base: str, debs: list[Path]):
        self.d = docker
        self.name = f"howl-deb-{uuid.uuid4().hex[:8]}"
        apt_cache = CACHE / "apt-archives"
        (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
        docker.run("run", "-d", "--name", self.name, "--network", "host",
                   "-v", f"{debs[0].parent}:/debs:ro",
                   # Downloaded packages are kept between runs (apt verifies them again).
                   "-v", f"{apt_cache}:/var/cache/apt/archives",
                   "-e", "DEBIAN_FRONTEND=noninteractive",
                   base, "sleep", "infinity")
        self.http_port, self.https_port, self.api_port = free_port(), free_port(), free_port()

    def sh(self, script: str, check=True, timeout=900) -> subprocess.CompletedProcess:
        # apt's docker-clean hook would empty the shared cache after every install.
        return self.d.run("exec", self.name, "sh", "-c", script, check=check, timeout=timeout)

    def serve(self):
        env = " ".join([
            "HOWL_RTSP_PORT=0", f"HOWL_RTSP_EGRESS_BIND=127.0.0.1:{free_port()}",
            "HOWL_WEBRTC_BIND=127.0.0.1:0",
            *(f"HOWL_{k}_PORT={free_port(socket.SOCK_DGRAM)}" for k in ("VIDEO", "CONTROL", "AUDIO")),
            f"HOWL_API_BIND=127.0.0.1:{self.api_port}"])
        # As the unit runs it: the system user, the packaged config, the state directory.
        self.d.run("exec", "-d", self.name, "sh", "-c",
                   f"echo $$ > /tmp/howl.pid; exec env {env} setpriv --reuid howl --regid howl "
                   f"--init-groups /usr/bin/howl serve --config /etc/howl/howl.toml "
                   f"--state-dir /var/lib/howl --no-mdns --bind 127.0.0.1 "
                   f"--http-port {self.http_port} --https-port {self.https_port} "
                   f"> /tmp/howl.log 2>&1")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/readyz", timeout=1)
                urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/serverinfo", timeout=1)
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)  # polling for readiness; there is no event to await
        raise AssertionError(f"howl did not become ready:\n{self.log()}")

    def stop_server(self):
        self.sh("kill -TERM $(cat /tmp/howl.pid)")
        deadline = time.monotonic() + SHUTDOWN_BOUND + 5
        while self.sh("kill -0 $(cat /tmp/howl.pid)", check=False).returncode == 0:
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.1)  # waiting for a process in another PID namespace to exit
        assert "stopped" in self.log()

    def log(self) -> str:
        return self.sh("cat /tmp/howl.log", check=False).stdout[-5000:]

    def remove(self):
        self.d.run("rm", "-f", self.name, check=False)


def test_deb_installs_runs_as_its_user_upgrades_keeping_clients_and_purges(
        docker_env, base_images, debs, tmp_path):
    box = DebBox(docker_env, base_images, debs)
    try:
        box.sh("rm -f /etc/apt/apt.conf.d/docker-clean; apt-get update -qq")
        # Depends only (no Recommends): the Test Pattern needs no desktop packages, and a
        # missing Depends would show here.
        r = box.sh(f"apt-get install -y -qq --no-install-recommends /debs/{debs[0].name}")
        assert box.sh("dpkg-query -W -f '${Status}' howl").stdout == "install ok installed"
        version = box.sh("howl --version").stdout.strip()
        assert re.fullmatch(r"howl \d+\.\d+\.\d+", version), (version, r.stdout)
        assert box.sh("getent passwd howl").stdout.split(":")[5] == "/var/lib/howl"
        assert box.sh("stat -c '%U %a' /var/lib/howl").stdout.split() == ["howl", "700"]
        assert box.sh("test -f /usr/lib/systemd/system/howl.service && test -f /etc/howl/howl.toml"
                      " && echo ok").stdout.strip() == "ok"
        conffiles = box.sh("cat /var/lib/dpkg/info/howl.conffiles").stdout
        assert "/etc/howl/howl.toml" in conffiles, conffiles

        box.serve()
        token = box.sh("cat /var/lib/howl/api-token").stdout.strip()
        owner = box.sh("stat -c %U /var/lib/howl/server-key.pem /var/lib/howl/state.json").stdout
        assert set(owner.split()) == {"howl"}, owner
        r = run_stream_client(box.http_port, box.api_port, token, tmp_path / "client",
                              "--pair-only")
        assert r.get("paired"), (r, box.log())
        client = make_client(tmp_path / "client")
        info = server_info(client, box.http_port)
        uniqueid = xml_text(https_get(client, info, "serverinfo"), "uniqueid")
        identity = box.sh("sha256sum /var/lib/howl/server-cert.pem /var/lib/howl/server-key.pem"
                          ).stdout
        box.stop_server()

        # Upgrade to the rebuilt package: same identity, same client still paired.
        box.sh(f"apt-get install -y -qq --no-install-recommends /debs/{debs[1].name}")
        assert box.sh("dpkg-query -W -f '${Version}' howl").stdout.endswith("-2")
        assert box.sh("sha256sum /var/lib/howl/server-cert.pem /var/lib/howl/server-key.pem"
                      ).stdout == identity
        box.serve()
        client = make_client(tmp_path / "client")
        info = server_info(client, box.http_port)
        serverinfo = https_get(client, info, "serverinfo")
        assert xml_text(serverinfo, "uniqueid") == uniqueid
        assert xml_text(serverinfo, "PairStatus") == "1", serverinfo
        assert "Test Pattern" in https_get(client, info, "applist")
        box.stop_server()

        # Remove keeps the state; purge deletes it and the conffile.
        box.sh("apt-get remove -y -qq howl")
        assert box.sh("test -f /var/lib/howl/server-key.pem && echo kept").stdout.strip() == "kept"
        box.sh("apt-get purge -y -qq howl")
        assert box.sh("test -e /var/lib/howl || echo gone").stdout.strip() == "gone"
        assert box.sh("test -e /etc/howl/howl.toml || echo gone").stdout.strip() == "gone"
    finally:
        box.remove()
