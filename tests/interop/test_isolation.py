"""Isolated desktops (issue 15, acceptance 1 and the desktop part of 6).

Two lobbies run a desktop each (Xvfb + PulseAudio + a process app). From producer A's app
context (its uid, its environment, its cookies) the test connects to B's display on every socket
B's Xvfb listens on (read from /proc/net/unix: the filesystem socket and the abstract one) and
to B's sound server, and reads B's private directory. At the `uid` level every one of those is
refused; at the `cookie` level (the weakest) the display still refuses A, while B's sound server
and files stay open to A (same uid: PulseAudio trusts its own uid), which the test shows too.
Positive controls (B's own context gets in) keep the refusals from passing vacuously. No cookie
appears in the server's log or API output, in hex or base64.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import howl_bin

from conftest import needs_xvfb  # noqa: E402

pytestmark = needs_xvfb

UID_RANGE = (300000, 300999)
# The probes run under the apps' uids, which may not reach the test's virtual environment.
PROBE_PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

# Run as the attacker: tries the X setup handshake on each socket with the given auth data and
# prints one JSON line: {socket: "accepted" | "refused: reason" | "error: ..."}.
X_PROBE = r"""
import json, socket, struct, sys
name, data, sockets = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3:]
pad = lambda b: b + b"\0" * (-len(b) % 4)
out = {}
for path in sockets:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path.replace("@", "\0", 1) if path.startswith("@") else path)
        s.sendall(b"l\0" + struct.pack("<HHHH2x", 11, 0, len(name), len(data)) + pad(name) + pad(data))
        head = s.recv(8)
        if head[:1] == b"\1":
            out[path] = "accepted"
        else:
            reason = s.recv(head[1]) if len(head) > 1 else b""
            out[path] = "refused: " + reason.decode(errors="replace")
    except OSError as e:
        out[path] = "error: " + str(e)
    finally:
        s.close()
print(json.dumps(out))
"""

# Run as the attacker: lists a directory and reads a file, printing errno names.
FS_PROBE = r"""
import errno, json, os, sys
out = {}
for what, f in (("list", lambda p: os.listdir(p)), ("read", lambda p: open(p, "rb").read())):
    p = sys.argv[1] if what == "list" else sys.argv[2]
    try:
        f(p)
        out[what] = "ok"
    except OSError as e:
        out[what] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
"""


def isolation_howl(howl_factory, tmp_path, level):
    cfg = tmp_path / "howl.toml"
    cfg.write_text(
        f'desktop_isolation = "{level}"\n'
        f'desktop_uid_range = "{UID_RANGE[0]}-{UID_RANGE[1]}"\n'
        '[[apps]]\ntitle = "Sleeper"\nkind = "process"\ncommand = "/bin/sleep"\n'
        'args = ["1000"]\n')
    return howl_factory(extra_args=["--config", str(cfg)])


def proc_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(v.decode(errors="replace").split("=", 1) for v in raw.split(b"\0") if b"=" in v)


def proc_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def x_sockets(display: str) -> list[str]:
    """Every unix socket path (abstract ones as @name) a display listens on."""
    n = display.lstrip(":")
    found = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        # Listening sockets have the __SO_ACCEPTCON flag (0x10000) in the Flags column.
        if len(parts) >= 8 and int(parts[3], 16) & 0x10000 and \
                parts[7] in (f"/tmp/.X11-unix/X{n}", f"@/tmp/.X11-unix/X{n}"):
            found.append(parts[7])
    return sorted(set(found))


def xauth_cookie(path: str) -> tuple[bytes, bytes]:
    """(auth name, auth data) of the first entry of an Xauthority file (as root)."""
    b = Path(path).read_bytes()
    pos, fields = 2, []
    for _ in range(4):
        (n,) = struct.unpack(">H", b[pos:pos + 2])
        fields.append(b[pos + 2:pos + 2 + n])
        pos += 2 + n
    return fields[2], fields[3]


class Producer:
    def __init__(self, h, name):
        status, view = h.api("POST", "/api/v1/lobbies",
                             {"name": name, "app": "Sleeper", "width": 640, "height": 480,
                              "fps": 30})
        assert status == 201, view
        self.lobby = view
        deadline = time.monotonic() + 30
        self.app_pid = None
        while time.monotonic() < deadline and self.app_pid is None:
            lobbies = {l["id"]: l for l in h.api("GET", "/api/v1/lobbies")[1]}
            wpid = lobbies.get(view["id"], {}).get("worker_pid")
            if wpid:
                for c in children(wpid):
                    try:
                        if Path(f"/proc/{c}/cmdline").read_bytes().startswith(b"/bin/sleep"):
                            self.app_pid = c
                    except OSError:
                        pass
            time.sleep(0.1)
        assert self.app_pid, f"no app process for {name}\n{h.log()[-3000:]}"
        self.env = proc_env(self.app_pid)
        self.uid = proc_uid(self.app_pid)
        self.display = self.env["DISPLAY"]
        self.xauth = self.env["XAUTHORITY"]
        self.pulse_cookie = self.env["PULSE_COOKIE"]
        self.pulse_server = self.env["PULSE_SERVER"]
        self.dir = str(Path(self.xauth).parent)
        self.sockets = x_sockets(self.display)

    def run(self, argv, env_extra=None, as_uid=None):
        """Runs argv in this producer's app context: its uid, its environment."""
        env = dict(self.env)
        env.update(env_extra or {})
        uid = self.uid if as_uid is None else as_uid
        kw = {} if uid == os.getuid() else {"user": uid, "group": uid, "extra_groups": []}
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=20,
                              cwd="/", **kw)

    def x_probe(self, target, name=b"", data=b""):
        p = self.run([PROBE_PY, "-c", X_PROBE, name.hex(), data.hex(), *target.sockets])
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    def pactl(self, target, cookie):
        return self.run(["pactl", "info"], {"PULSE_SERVER": target.pulse_server,
                                            "PULSE_COOKIE": cookie, "HOME": self.dir})

    def fs_probe(self, target):
        p = self.run([PROBE_PY, "-c", FS_PROBE, target.dir, target.xauth])
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)


def assert_no_cookie_in(text: str, producers):
    for p in producers:
        for secret in (xauth_cookie(p.xauth)[1], Path(p.pulse_cookie).read_bytes()):
            for form in (secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(),
                         base64.urlsafe_b64encode(secret).decode().rstrip("=")):
                assert form not in text, "a cookie appears in the log or API output"
            # A 256-byte cookie could be logged in part: any 16-byte slice counts.
            for i in range(0, len(secret) - 15, 16):
                assert secret[i:i + 16].hex() not in text


def two_producers(h):
    a, b = Producer(h, "A"), Producer(h, "B")
    assert a.display != b.display
    for p in (a, b):
        assert p.sockets, f"no listening socket found for {p.display}"
        assert Path(p.xauth).stat().st_mode & 0o077 == 0, "cookie file readable by others"
        assert Path(p.pulse_cookie).stat().st_mode & 0o077 == 0
        assert Path(p.dir).stat().st_mode & 0o077 == 0, "private directory open to others"
    return a, b


def check_display_isolation(a, b):
    # Positive control: B's own context opens B's display on every socket.
    name, data = xauth_cookie(b.xauth)
    own = b.x_probe(b, name, data)
    assert set(own.values()) == {"accepted"}, own
    # A with no cookie, and A with its own cookie: refused on every socket of B's display.
    for how, (n, d) in (("no cookie", (b"", b"")),
                        ("A's cookie", xauth_cookie(a.xauth))):
        res = a.x_probe(b, n, d)
        assert all(v.startswith("refused") for v in res.values()), (how, res)
    # And A's cookie opens A's display (the refusal above is about B, not a broken probe).
    res = a.x_probe(a, *xauth_cookie(a.xauth))
    assert set(res.values()) == {"accepted"}, res


def check_sound_cookie_alone(a, b):
    """Past the directory (CAP_DAC_OVERRIDE kept across the uid change), under another uid and
    with A's cookie, B's sound server still says no: the cookie holds on its own."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return
    p = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "--inh-caps=+dac_override", "--ambient-caps=+dac_override", "pactl", "info"],
        env=dict(os.environ, PULSE_SERVER=b.pulse_server, PULSE_COOKIE=a.pulse_cookie,
                 HOME="/tmp"),
        capture_output=True, text=True, timeout=20)
    if "ambient" in p.stderr.lower() or "setpriv:" in p.stderr:
        pytest.skip(f"setpriv cannot keep CAP_DAC_OVERRIDE here: {p.stderr.strip()}")
    assert p.returncode != 0 and "denied" in (p.stdout + p.stderr).lower(), \
        (p.stdout, p.stderr)


def need_pactl():
    if shutil.which("pactl") is None or shutil.which("pulseaudio") is None:
        pytest.skip("pactl/pulseaudio not installed (pulseaudio, pulseaudio-utils in "
                    "scripts/common.sh); the sound server half cannot be checked")


def test_uid_level_refuses_another_desktops_display_sound_and_files(howl_factory, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("uid isolation needs root (or CAP_SETUID/SETGID/CHOWN/DAC_OVERRIDE)")
    h = isolation_howl(howl_factory, tmp_path, "uid")
    assert h.api("GET", "/api/v1/server")[1]["desktop_isolation"] == "uid"
    a, b = two_producers(h)
    for p in (a, b):
        assert p.uid == UID_RANGE[0] + int(p.display.lstrip(":")), (p.uid, p.display)
        assert Path(p.dir).stat().st_uid == p.uid
    assert a.uid != b.uid

    check_display_isolation(a, b)

    need_pactl()
    own = b.pactl(b, b.pulse_cookie)
    assert own.returncode == 0, f"B cannot reach its own sound server: {own.stderr}"
    for cookie in ("/nonexistent", a.pulse_cookie):
        p = a.pactl(b, cookie)
        # "refused": B's directory stops A before the socket (EACCES); "denied": the cookie.
        out = (p.stdout + p.stderr).lower()
        assert p.returncode != 0 and ("denied" in out or "refused" in out), (cookie, out)
    check_sound_cookie_alone(a, b)
    # Even holding a copy of B's cookie path, A cannot read it.
    p = a.pactl(b, b.pulse_cookie)
    assert p.returncode != 0, p.stdout

    # B's private directory and cookie: EACCES for A; A's own: readable.
    assert a.fs_probe(b) == {"list": "EACCES", "read": "EACCES"}
    assert a.fs_probe(a) == {"list": "ok", "read": "ok"}
    # B's processes: A cannot read their environment either.
    p = a.run([PROBE_PY, "-c",
               f"open('/proc/{b.app_pid}/environ','rb').read()"])
    assert p.returncode != 0 and "Permission denied" in p.stderr, p.stderr

    status, lobbies = h.api("GET", "/api/v1/lobbies")
    assert_no_cookie_in(h.log() + json.dumps(lobbies), (a, b))
    assert "isolation" in h.log() and "uid" in h.log()


def test_cookie_level_still_closes_the_display_and_shows_what_stays_open(howl_factory,
                                                                          tmp_path):
    """The weakest level: every app shares the server's uid."""
    h = isolation_howl(howl_factory, tmp_path, "cookie")
    assert h.api("GET", "/api/v1/server")[1]["desktop_isolation"] == "cookie"
    a, b = two_producers(h)
    assert a.uid == b.uid == os.getuid()

    # Holds: the display opens only with its own cookie, on every socket.
    check_display_isolation(a, b)

    need_pactl()
    assert b.pactl(b, b.pulse_cookie).returncode == 0
    # Holds for any other uid: without B's cookie the sound server refuses.
    check_sound_cookie_alone(a, b)
    # Does not hold at this level: PulseAudio trusts its own uid without a cookie, and the
    # apps can read each other's files (documented in docs/configuration.md).
    p = a.pactl(b, "/nonexistent")
    assert p.returncode == 0, p.stderr
    assert a.fs_probe(b) == {"list": "ok", "read": "ok"}

    status, lobbies = h.api("GET", "/api/v1/lobbies")
    assert_no_cookie_in(h.log() + json.dumps(lobbies), (a, b))


def test_uid_level_without_privilege_refuses_to_start(tmp_path):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop the capabilities uid isolation needs")
    p = subprocess.run(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", howl_bin(), "serve", "--no-mdns",
         "--bind", "127.0.0.1", "--state-dir", str(tmp_path / "state"), "--http-port", "0",
         "--https-port", "0", "--api-bind", "127.0.0.1:0", "--no-rtsp-egress"],
        # No fixed port either: the refusal must be the reason it stops, never a port in use.
        env=dict(os.environ, HOWL_DESKTOP_ISOLATION="uid", HOWL_WEBRTC_BIND="127.0.0.1:0"),
        capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    out = p.stdout + p.stderr
    assert "desktop_isolation" in out and "CAP_SETUID" in out, out[-3000:]
