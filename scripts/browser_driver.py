"""What scripts/soak_browser.py and scripts/bench_browser_latency.py share: a howl with browser
viewers on free ports, and headless Chromium as tests/interop/test_webrtc.py drives it.

Everything that exists in the interop suite is imported from there (conftest.py's process
helpers and `chromium()`, test_webrtc.py's page helpers, soak_rtsp.py's server start), so the
scripts measure the same set-up the tests check.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "interop"))
sys.path.insert(0, str(REPO / "scripts"))

import pytest  # noqa: E402  (chromium() reports a missing browser with pytest.skip)
from conftest import Howl, alive, chromium, proc_stat, rss_kb  # noqa: E402
from soak_rtsp import start_howl  # noqa: E402
from test_webrtc import descendants  # noqa: E402


def start_browser_howl(root: Path, name: str, **config: str) -> Howl:
    """A howl on free ports whose browsers' WebRTC port is free too (never the default 8555,
    which a test run or another howl on this machine may hold). `config`: more `HOWL_*`
    settings. The server reads them from the environment soak_rtsp.start_howl hands it."""
    os.environ["HOWL_WEBRTC_BIND"] = "127.0.0.1:0"
    os.environ.update(config)
    return start_howl(root, name)


class BrowserMissing(Exception):
    """Chromium, chromium-driver or selenium is not installed (the reason is the message)."""


def launch_browser(profile: Path, window: tuple[int, int] = (800, 600)):
    """Headless Chromium with test_webrtc.py's flags (its `browser` fixture is a pytest
    fixture, so they are repeated here) and its own profile folder: a killed browser leaves
    its profile behind, and the caller removes `profile`."""
    try:
        driver = chromium("this script", window, (
            # Loopback ICE: host candidates on 127.0.0.1, not hidden behind mDNS names.
            "--allow-loopback-in-peer-connection",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--autoplay-policy=no-user-gesture-required",
            f"--user-data-dir={profile}"))
    except pytest.skip.Exception as e:
        raise BrowserMissing(str(e.msg)) from None
    driver.set_script_timeout(30)
    return driver


def browser_pids(driver) -> list[int]:
    """Chromium's processes: every process below the driver service (chromedriver)."""
    return descendants(driver.service.process.pid)


def kill_browser(driver) -> list[int]:
    """SIGKILLs Chromium's whole process tree (not chromedriver): the browser vanishes without
    a word, as a killed tab or a crashed machine does. Returns the pids killed."""
    pids = browser_pids(driver)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def close_browser(driver) -> None:
    """Quits the browser, or only its driver when the browser was killed."""
    try:
        if any(alive(p) for p in browser_pids(driver)):
            driver.quit()
            return
    except Exception:  # noqa: BLE001 - a dead browser makes quit() fail; stop the driver then
        pass
    driver.service.stop()


def cpu_ticks(pids: list[int]) -> int:
    """User plus system clock ticks of the processes still there (gone ones count 0)."""
    total = 0
    for pid in pids:
        st = proc_stat(pid)
        if st is not None:
            total += int(st[11]) + int(st[12])
    return total


__all__ = ["BrowserMissing", "Howl", "alive", "browser_pids", "close_browser", "cpu_ticks",
           "kill_browser", "launch_browser", "rss_kb", "start_browser_howl"]
