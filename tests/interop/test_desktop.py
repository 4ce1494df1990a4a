"""Desktops (issue 7): a process app inside its own Xvfb display and PulseAudio sink, streamed
to the real Moonlight client library, driven by its real input calls, and cleaned up on every
exit (session end, worker kill -9, server SIGKILL + restart).

The app is `howl-testapp` (crates/howl-testapp): it shows the last key and held buttons in a
machine-readable strip, a red marker at the pointer, and plays a tone while a button is held.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path

import pytest

import conftest
from conftest import finish_client, howl_bin, stop_client, wait_for

LATENCY_LIMIT = 0.5

from conftest import needs_xvfb  # noqa: E402

pytestmark = needs_xvfb


def app_bin() -> str:
    return str(Path(howl_bin()).parent / "howl-testapp")


def desktop_howl(howl_factory, tmp_path, command=None, args=()):
    """A howl whose config has the test app as a process app called "Test App"."""
    cfg = tmp_path / "howl.toml"
    argv = json.dumps(list(args))
    cfg.write_text(
        f'[[apps]]\ntitle = "Test App"\nkind = "process"\n'
        f'command = {json.dumps(command or app_bin())}\nargs = {argv}\n')
    return howl_factory(extra_args=["--config", str(cfg)])


def run_client(h, config_dir, *extra, timeout=120, background=False):
    """desktop_client.py (the real client driving a desktop's input) with these arguments."""
    return conftest.run_client(h, config_dir, *extra, script="desktop_client.py",
                               timeout=timeout, background=background)


def marked_processes(state_dir: Path) -> dict[int, str]:
    """PID -> command line of every process carrying a howl producer marker of `state_dir`."""
    needle = f"HOWL_PRODUCER={state_dir}".encode()
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if any(v.startswith(needle) for v in env.split(b"\0")):
            found[int(d.name)] = cmd.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


@pytest.mark.parametrize("size", [(1024, 768), (1920, 1080)], ids=["1024x768", "1920x1080"])
def test_desktop_streams_and_takes_input(howl_factory, tmp_path, size):
    w, h_ = size
    h = desktop_howl(howl_factory, tmp_path)
    r = run_client(h, tmp_path / "c", "--width", str(w), "--height", str(h_), "--mode", "full")
    if os.environ.get("HOWL_DESKTOP_DUMP"):
        Path(os.environ["HOWL_DESKTOP_DUMP"]).write_text(json.dumps(r, indent=1) + h.log())
    assert r["ok"], r
    assert r["shape"] == [h_, w, 3], r
    assert 150 < r["initial"]["background"] < 230, r  # the app's grey, not a black screen
    for name, t in r["latency"].items():
        assert t is not None and t <= LATENCY_LIMIT, (name, json.dumps(r["latency"]), json.dumps(r["sent_at"]))
    # Holding the button makes sound; before it the app is silent.
    assert r["audio_chunks"] > 0, r
    assert r["audio_peak_before"] is not None and r["audio_peak_before"] < 0.02, r
    assert r["audio_peak_held"] is not None and r["audio_peak_held"] > 0.1, r
    assert "app exited" not in h.log()


def test_two_clients_see_only_their_own_desktop(howl_factory, tmp_path):
    h = desktop_howl(howl_factory, tmp_path)
    # Pair both first (pairing one at a time keeps the PIN flow simple).
    for c in ("a", "b"):
        r = run_client(h, tmp_path / c, "--mode", "check")
        assert r["ok"], r
    procs = [run_client(h, tmp_path / c, "--mode", "isolation", "--key", key, "--seconds", "5",
                        background=True)
             for c, key in (("a", "0x41"), ("b", "0x42"))]
    results = [finish_client(p, h, timeout=120) for p in procs]
    a, b = results
    assert a["ok"] and b["ok"], results
    # Each saw its own key and never the other's: two displays, two input paths.
    assert set(a["seen_keysyms"]) <= {0, 0x61} and 0x61 in a["seen_keysyms"], a
    assert set(b["seen_keysyms"]) <= {0, 0x62} and 0x62 in b["seen_keysyms"], b
    assert a["final"]["presses"] == a["sent"], a
    assert b["final"]["presses"] == b["sent"], b


def test_leaving_client_releases_held_keys_and_buttons(howl_factory, tmp_path):
    h = desktop_howl(howl_factory, tmp_path)
    r = run_client(h, tmp_path / "c", "--mode", "hold", "--no-quit")
    assert r["ok"] and r["states"]["button_held"]["buttons"] == 1, r
    # Shift is really held on the desktop: a plain A read as upper case.
    assert r["states"]["shifted_key"]["keysym"] == 0x41, r["states"]
    # The client left without releasing; it comes back to the same (lingering) desktop.
    r = run_client(h, tmp_path / "c", "--mode", "check", "--probe-key", "--resume")
    assert r["ok"], r
    # It resumed the same desktop (a relaunch would start a fresh one, where nothing is held
    # whatever the release did).
    assert h.log().count("desktop started") == 1, h.log()[-3000:]
    assert r["final"]["buttons"] == 0, r
    # No Shift is left held: the same plain A now reads as lower case.
    assert r["states"]["probe_key"]["keysym"] == 0x61, r["states"]
    assert "released a leaving viewer's keys and buttons" in h.log()


# An app that leaves a grandchild behind: it escapes the worker's death signal, so only the
# marker-based reaping can catch it.
def forking_app():
    return "/bin/sh", ["-c", f"sleep 1000 & exec {app_bin()}"]


def start_streaming(h, config_dir, tmp_path=None):
    """A paired client streaming the desktop, lingering 60 s, leaving without /cancel."""
    return conftest.start_streaming(h, config_dir, "--mode", "check", "--linger", "60",
                                    "--no-quit", script="desktop_client.py")


def expect_desktop_running(state_dir):
    procs = wait_for(lambda: marked_processes(state_dir), 10, "desktop processes")
    names = " ".join(procs.values())
    for expected in ("Xvfb", "howl-testapp", "sleep 1000"):
        assert expected in names, procs
    if shutil.which("pulseaudio") is None:
        pytest.skip("pulseaudio is not installed (scripts/common.sh installs it): the desktop's "
                    "sound server cannot be checked")
    assert "pulseaudio" in names, procs
    return procs


def test_session_end_leaves_nothing(howl_factory, tmp_path):
    cmd, args = forking_app()
    h = desktop_howl(howl_factory, tmp_path, cmd, args)
    r = run_client(h, tmp_path / "c", "--mode", "check")  # pairs; quits at the end
    assert r["ok"], r
    wait_for(lambda: not marked_processes(h.state_dir), 10, "no desktop processes after quit")
    # The worker removes its private directory right after stopping the servers.
    wait_for(lambda: not list((h.state_dir / "run").glob("desktop-*")), 5,
             "the desktop's directory removed")


def test_worker_kill9_leaves_nothing(howl_factory, tmp_path):
    cmd, args = forking_app()
    h = desktop_howl(howl_factory, tmp_path, cmd, args)
    assert run_client(h, tmp_path / "c", "--mode", "check")["ok"]
    p = start_streaming(h, tmp_path / "c", tmp_path)
    try:
        expect_desktop_running(h.state_dir)
        status, workers = h.api("GET", "/api/v1/workers")
        assert status == 200 and len(workers) == 1, workers
        os.kill(workers[0]["pid"], signal.SIGKILL)
        wait_for(lambda: not marked_processes(h.state_dir), 10,
                 "no desktop processes after the worker was killed")
        wait_for(lambda: not list((h.state_dir / "run").glob("desktop-*")), 5,
                 "the killed desktop's directory removed")
    finally:
        stop_client(p)


def test_server_sigkill_and_restart_leave_nothing(howl_factory, tmp_path):
    cmd, args = forking_app()
    h = desktop_howl(howl_factory, tmp_path, cmd, args)
    assert run_client(h, tmp_path / "c", "--mode", "check")["ok"]
    p = start_streaming(h, tmp_path / "c", tmp_path)
    try:
        expect_desktop_running(h.state_dir)
        h.proc.kill()
        h.proc.wait()
        # The worker and its direct children die with the server (death signals); the
        # grandchild survives until the next start reaps it by its marker.
        wait_for(lambda: all("sleep 1000" in c for c in marked_processes(h.state_dir).values()),
                 10, "only the escaped grandchild left")
        h.start()
        wait_for(lambda: not marked_processes(h.state_dir), 10,
                 "no desktop processes after the restart")
        wait_for(lambda: not list((h.state_dir / "run").glob("desktop-*")), 5,
                 "the killed desktop's directory removed")
    finally:
        stop_client(p)


def test_app_exit_ends_the_producer(howl_factory, tmp_path):
    h = desktop_howl(howl_factory, tmp_path, app_bin(), ["--exit-after", "6"])
    r = run_client(h, tmp_path / "c", "--mode", "check", "--linger", "15")
    assert r["ok"], r
    wait_for(lambda: "app exited" in h.log(), 20, "the app-exit end reason in the log")
    status, body = h.api("GET", "/api/v1/status")
    assert status == 200
    assert "app_exited" in json.dumps(body), body



def test_no_sound_server_means_silent_audio_and_a_log_line(howl_factory, tmp_path):
    # A PATH with Xvfb but without pulseaudio (or pacat).
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "Xvfb").symlink_to(shutil.which("Xvfb"))
    cfg = tmp_path / "howl.toml"
    cfg.write_text(f'[[apps]]\ntitle = "Test App"\nkind = "process"\n'
                   f'command = {json.dumps(app_bin())}\n')
    h = howl_factory(extra_args=["--config", str(cfg)], env={"PATH": str(bindir)})
    r = run_client(h, tmp_path / "c", "--mode", "check")
    assert r["ok"], r
    assert 150 < r["final"]["background"] < 230, r
    assert "no sound server for this desktop; its audio is silent" in h.log()


def desktop_programs():
    return shutil.which("twm") and shutil.which("xterm")


@pytest.mark.skipif(not desktop_programs(),
                    reason="twm or xterm is not installed (scripts/common.sh installs them); "
                           "the built-in Desktop is not listed")
def test_builtin_desktop_streams_a_terminal_and_stops_clean(howl_factory, tmp_path):
    h = howl_factory()
    status, apps = h.api("GET", "/api/v1/apps")
    assert status == 200
    desk = [a for a in apps if a["title"] == "Desktop"]
    assert len(desk) == 1 and desk[0]["source"] == "builtin", apps
    assert [a["title"] for a in apps][:2] == ["Test Pattern", "Desktop"], apps

    p = conftest.start_streaming(h, tmp_path / "c", "--app", "Desktop", "--mode", "picture",
                                 "--width", "1280", "--height", "720", "--linger", "3",
                                 script="desktop_client.py", timeout=90)
    try:
        # While it streams: its own Xvfb, the window manager and the terminal, all marked.
        names = " ".join(wait_for(lambda: marked_processes(h.state_dir), 10,
                                  "desktop processes").values())
        for expected in ("Xvfb", "twm", "xterm"):
            assert expected in names, names
        r = finish_client(p, h)
    finally:
        stop_client(p)
    print("desktop picture:", r.get("picture"))
    assert r["ok"], r
    assert r["shape"] == [720, 1280, 3], r
    # xterm's window (white with black text, twm's title bar) on the X root: not one flat colour.
    assert r["picture"]["std"] > 5 and r["picture"]["colours"] > 2, r
    # The client quit: the display, the window manager and the terminal are gone.
    wait_for(lambda: not marked_processes(h.state_dir), 10, "no desktop processes after quit")
    wait_for(lambda: not list((h.state_dir / "run").glob("desktop-*")), 5,
             "the desktop's directory removed")


def test_builtin_desktop_can_be_switched_off(howl_factory, tmp_path):
    h = howl_factory(extra_args=["--no-desktop-app"])
    titles = [a["title"] for a in h.api("GET", "/api/v1/apps")[1]]
    assert titles == ["Test Pattern"], titles
    cfg = tmp_path / "off.toml"
    cfg.write_text("desktop_app = false\n")
    h2 = howl_factory(extra_args=["--config", str(cfg)])
    assert [a["title"] for a in h2.api("GET", "/api/v1/apps")[1]] == ["Test Pattern"]


def proc_input_devices() -> str:
    try:
        return Path("/proc/bus/input/devices").read_text()
    except OSError:
        return ""


def test_gamepad_without_uinput_is_dropped_counted_and_logged_once(howl_factory, tmp_path):
    if os.path.exists("/dev/uinput"):
        pytest.skip("/dev/uinput exists here: test_gamepad_appears_as_a_uinput_device covers it")
    h = desktop_howl(howl_factory, tmp_path)
    r = run_client(h, tmp_path / "c", "--mode", "gamepad")
    assert r["ok"] and r["gamepad_send_results"] == [0] * 10, r
    # All 10 states reached the worker (server decode -> worker protocol -> uinput attempt); it
    # said once that it cannot make a pad, and counted what it dropped when the stream ended.
    line = wait_for(lambda: next((l for l in h.log().splitlines()
                                  if "gamepad states dropped during this stream" in l), None),
                    10, "the worker's dropped-states count")
    # The worker's lines reach the log with terminal colours.
    assert re.search(r"dropped\W*=\W*10\b", re.sub(r"\x1b\[[0-9;]*m", "", line)), line
    assert h.log().count("cannot create a virtual gamepad") == 1, h.log()[-3000:]
    # Desktop input kept working meanwhile: the app still answers (its grey background).
    assert 150 < r["initial"]["background"] < 230, r


def test_gamepad_appears_as_a_uinput_device(howl_factory, tmp_path):
    if not os.path.exists("/dev/uinput"):
        pytest.skip("no /dev/uinput on this machine: gamepad injection not exercised")
    h = desktop_howl(howl_factory, tmp_path)
    assert run_client(h, tmp_path / "c", "--mode", "check")["ok"]  # pairs
    p = conftest.start_streaming(h, tmp_path / "c", "--mode", "gamepad", "--linger", "3",
                                 script="desktop_client.py")
    try:
        wait_for(lambda: 'Name="howl gamepad 0"' in proc_input_devices(), 10,
                 "the virtual pad in /proc/bus/input/devices")
        r = finish_client(p, h)
        assert r["ok"] and r["gamepad_send_results"] == [0] * 10, r
    finally:
        stop_client(p)
    # The viewer left: its pad is unplugged.
    wait_for(lambda: 'Name="howl gamepad 0"' not in proc_input_devices(), 10,
             "the virtual pad removed")
    assert "virtual gamepad created" in h.log()
