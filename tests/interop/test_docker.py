"""Docker apps (issue 7): a container from a locally imported image (no pulls) streams on the
producer's private display, and stopping the stream, or killing the server and starting it
again, leaves no container behind.

When no Docker daemon is reachable the test starts its own (`dockerd --iptables=false
--bridge=none --storage-driver=vfs`, state under the test's temporary directory) and stops it
afterwards; when Docker cannot run at all the tests skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from test_desktop import app_bin, marked_processes, run_client, start_streaming, wait_for

from conftest import needs_xvfb  # noqa: E402

pytestmark = needs_xvfb


def docker(host: str, *args, check=True, timeout=120, **kw):
    return subprocess.run(["docker", "-H", host, *args], capture_output=True, text=True,
                          timeout=timeout, check=check, **kw)


def reachable(host: str) -> bool:
    try:
        return docker(host, "info", check=False, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory):
    """A reachable Docker daemon's address: the machine's own, else one started here."""
    if shutil.which("docker") is None:
        pytest.skip("no docker client installed: the Docker runner is not exercised")
    default = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if reachable(default):
        yield default
        return
    if shutil.which("dockerd") is None:
        pytest.skip(f"no Docker daemon at {default} and no dockerd to start: "
                    "the Docker runner is not exercised")
    # A short path: unix socket paths are limited to 108 bytes.
    root = Path(f"/tmp/howl-dockerd-{uuid.uuid4().hex[:8]}")
    root.mkdir()
    sock = f"unix://{root}/docker.sock"
    log = open(root / "dockerd.log", "w")
    proc = subprocess.Popen(
        ["dockerd", "--iptables=false", "--bridge=none", "--storage-driver=vfs",
         "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "dockerd.pid"), "-H", sock],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not reachable(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "dockerd.log").read_text()[-1500:]
                pytest.skip(f"dockerd cannot run on this machine: the Docker runner is not "
                            f"exercised\n{tail}")
            time.sleep(0.2)  # polling the daemon's socket; it sends no readiness event
        yield sock
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def test_image(docker_host, tmp_path_factory):
    """`howl-test-app:<id>`: howl-testapp and the libraries it links, imported from a tar."""
    rootfs = tmp_path_factory.mktemp("rootfs")
    binary = app_bin()
    files = [binary]
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    files += [w for line in ldd.splitlines() for w in line.split() if w.startswith("/")]
    for f in files:
        dest = rootfs / f.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(f), dest)
    shutil.copy2(binary, rootfs / "howl-testapp")
    (rootfs / "tmp" / ".X11-unix").mkdir(parents=True)
    tag = f"howl-test-app:{uuid.uuid4().hex[:8]}"
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    docker(docker_host, "import", "-", tag, stdin=tar.stdout)
    tar.wait()
    yield tag
    docker(docker_host, "rmi", "-f", tag, check=False)


def containers(docker_host, state_dir: Path) -> list[str]:
    out = docker(docker_host, "ps", "-a", "--filter", "label=howl.producer",
                 "--format", "{{.ID}} {{.Label \"howl.producer\"}}").stdout
    return [l for l in out.splitlines() if str(state_dir) in l]


def docker_howl(howl_factory, tmp_path, docker_host, image, args=()):
    cfg = tmp_path / "howl.toml"
    cfg.write_text(f'[[apps]]\ntitle = "Test App"\nkind = "docker"\nimage = {json.dumps(image)}\n'
                   f'command = {json.dumps(["/howl-testapp", *args])}\n')
    return howl_factory(extra_args=["--config", str(cfg)], env={"DOCKER_HOST": docker_host})


def test_container_streams_on_the_private_display_and_is_removed(howl_factory, tmp_path,
                                                                 docker_host, test_image):
    h = docker_howl(howl_factory, tmp_path, docker_host, test_image)
    r = run_client(h, tmp_path / "c", "--mode", "check")
    assert r["ok"], (r, h.log()[-3000:])
    # The app in the container draws on the producer's display: its grey, its strip.
    assert 150 < r["final"]["background"] < 230, (r, h.log()[-3000:])
    assert "container started" in h.log()
    wait_for(lambda: not containers(docker_host, h.state_dir), 20, "the container removed")
    wait_for(lambda: not marked_processes(h.state_dir), 10, "no desktop processes after quit")


def test_server_sigkill_and_restart_leave_no_container(howl_factory, tmp_path, docker_host,
                                                       test_image):
    h = docker_howl(howl_factory, tmp_path, docker_host, test_image)
    assert run_client(h, tmp_path / "c", "--mode", "check")["ok"]
    p = start_streaming(h, tmp_path / "c", tmp_path)
    try:
        assert containers(docker_host, h.state_dir), "a labelled container while streaming"
        h.proc.kill()
        h.proc.wait()
        h.start()
        # The restart reaps the container's processes by their marker; AutoRemove deletes it.
        wait_for(lambda: not containers(docker_host, h.state_dir), 30,
                 "no container after the restart")
        wait_for(lambda: not marked_processes(h.state_dir), 10, "no marked processes")
    finally:
        p.kill()
        p.communicate()


@pytest.fixture
def unprivileged_user(docker_host):
    """A fresh system user allowed on the Docker socket the way an operator grants it (the
    socket's group as a supplementary group), and nothing else: `(name, uid, gid, groups)`."""
    if os.geteuid() != 0:
        pytest.skip("creating the unprivileged user howl runs as needs root")
    for tool in ("useradd", "userdel", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: cannot run howl as another user")
    if not docker_host.startswith("unix://"):
        pytest.skip(f"Docker at {docker_host} is not a unix socket: no group grants access")
    sock = Path(docker_host[len("unix://"):])
    name = f"howl{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    name], check=True, capture_output=True)
    group = None
    try:
        st = sock.stat()
        if st.st_gid == 0:
            if not str(sock).startswith("/tmp/howl-dockerd-"):
                pytest.skip(f"{sock} is root's alone and not this test's daemon: "
                            "not regranting the machine's Docker socket")
            # This test's own daemon: grant its socket to a group, as `dockerd --group` would.
            group = name
            subprocess.run(["groupadd", "--system", group], check=True, capture_output=True)
            os.chown(sock, 0, int(subprocess.run(["getent", "group", group], check=True,
                                                 capture_output=True, text=True)
                                  .stdout.split(":")[2]))
            os.chmod(sock, 0o660)
            gid = sock.stat().st_gid
        else:
            gid = st.st_gid
        import pwd
        pw = pwd.getpwnam(name)
        yield name, pw.pw_uid, pw.pw_gid, [gid]
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        if group:
            if sock.exists():
                os.chown(sock, 0, 0)
            subprocess.run(["groupdel", group], check=False, capture_output=True)


def test_unprivileged_server_sigkill_and_restart_leave_no_container(
        howl_factory, tmp_path, docker_host, test_image, unprivileged_user, monkeypatch):
    """Reaping by the `howl.producer` label, with howl running as a normal user in the
    socket's group: the container's processes run as root, so the marker scan of /proc cannot
    see or signal them, and the app here outlives its display (`--outlive-display`), so only
    removal through the Docker API ends the container. Shown twice: after a worker is
    SIGKILLed (the supervisor reaps), and after the server is SIGKILLed (the restart reaps)."""
    import conftest
    name, uid, gid, groups = unprivileged_user
    # Everything the user touches lies outside pytest's root-only temporary directory.
    base = Path(f"/tmp/howl-nonroot-{uuid.uuid4().hex[:8]}")
    for d in (base, base / "home", base / "run"):
        d.mkdir()
        os.chown(d, uid, gid)
    base.chmod(0o755)
    state = base / "state"
    # The build usually lies under root's home (mode 0700): the user runs copies of the two
    # binaries (howl finds howl-worker beside itself), as an installed howl would be.
    bindir = base / "bin"
    bindir.mkdir()
    built = Path(conftest.howl_bin()).parent
    for exe in ("howl", "howl-worker"):
        shutil.copy2(built / exe, bindir / exe)
        (bindir / exe).chmod(0o755)
    wrapper = tmp_path / "howl-as-user"
    wrapper.write_text(
        "#!/bin/sh\nexec setpriv --reuid {u} --regid {g} --groups {gs} -- {bin} \"$@\"\n".format(
            u=uid, g=gid, gs=",".join(map(str, groups)), bin=bindir / "howl"))
    wrapper.chmod(0o755)
    monkeypatch.setattr(conftest, "howl_bin", lambda: str(wrapper))
    h = None
    cfg = base / "howl.toml"
    cfg.write_text(f'[[apps]]\ntitle = "Test App"\nkind = "docker"\n'
                   f'image = {json.dumps(test_image)}\n'
                   f'command = {json.dumps(["/howl-testapp", "--outlive-display"])}\n')
    cfg.chmod(0o644)
    try:
        h = howl_factory(state_dir=state, extra_args=["--config", str(cfg)],
                         env={"DOCKER_HOST": docker_host, "HOME": str(base / "home"),
                              "XDG_RUNTIME_DIR": str(base / "run")})
        assert h.api("GET", "/api/v1/status")[0] == 200
        howl_uid = os.stat(f"/proc/{h.proc.pid}").st_uid
        assert howl_uid == uid, f"howl runs as uid {howl_uid}, not the unprivileged {uid}"
        assert run_client(h, tmp_path / "c", "--mode", "check")["ok"], h.log()[-3000:]
        wait_for(lambda: not containers(docker_host, state), 30, "the quit's container removed")

        # 1. A worker SIGKILLed: its supervisor removes the container by label.
        p = start_streaming(h, tmp_path / "c", tmp_path)
        try:
            assert containers(docker_host, state), "a labelled container while streaming"
            status, workers = h.api("GET", "/api/v1/workers")
            assert status == 200 and len(workers) == 1, workers
            log_before_kill = len(h.log())
            os.kill(workers[0]["pid"], signal.SIGKILL)
            wait_for(lambda: not containers(docker_host, state), 30,
                     "no container after the worker was killed")
        finally:
            p.kill()
            p.communicate()
        assert "removed leftover containers" in h.log()[log_before_kill:], h.log()[-3000:]

        # 2. The server SIGKILLed: the container stays (nothing of howl is left to remove it,
        # and its app does not die with the display), until the restart removes it.
        (tmp_path / "ready").unlink(missing_ok=True)  # start_streaming waits for a new one
        p = start_streaming(h, tmp_path / "c", tmp_path)
        try:
            before = containers(docker_host, state)
            assert before, "a labelled container while streaming"
            h.proc.kill()
            h.proc.wait()
            time.sleep(3)  # a window for anything else to remove it: nothing should
            assert containers(docker_host, state) == before, \
                "the container went away without the restart: the test would prove nothing"
            log_before_restart = len(h.log())
            h.start()
            wait_for(lambda: not containers(docker_host, state), 30,
                     "no container after the restart")
            assert "removed leftover containers" in h.log()[log_before_restart:], h.log()[-3000:]
        finally:
            p.kill()
            p.communicate()
    finally:
        if h is not None:
            code = h.stop()
            assert code == 0, f"howl exited with {code}:\n{h.log()[-3000:]}"
        for c in containers(docker_host, state):
            docker(docker_host, "rm", "-f", c.split()[0], check=False)
        shutil.rmtree(base, ignore_errors=True)
