"""AV1 end to end (issue 15, acceptance 5): the host streams AV1 to the real Moonlight client
library, which decodes it; the test pattern's frame counter, read from each decoded picture,
strictly increases. Where a piece is missing the test skips and names it: the host's AV1
encoder (GStreamer) or the client's AV1 decoder (PyAV); an encoder found but not advertised in
/serverinfo is a failure.

moonlight-python 0.3.0 asks FFmpeg for its decoder named "av1", which decodes only through a
hardware accelerator (none here: it answers ENOSYS); the test then has it use dav1d, the
software decoder moonlight-qt uses, and says so. The stream the client depacketizes
(moonlight-common-c) is the same either way.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import make_client, run_client, server_info
from test_streaming import assert_counters_increase

# ServerCodecModeSupport bit for AV1 Main 8-bit (howl-proto nvhttp SCM_AV1_MAIN8).
SCM_AV1_MAIN8 = 0x10000
# The GStreamer AV1 encoders howl-worker tries, preferred first (howl-worker encoders.rs).
AV1_ENCODERS = ["nvav1enc", "vaav1enc", "qsvav1enc", "av1enc"]


# FFmpeg decoders that may decode AV1 in the client: moonlight-python's own choice ("av1",
# FFmpeg's native decoder, which decodes only through a hardware accelerator), then dav1d
# (what moonlight-qt uses in software) and libaom.
AV1_DECODERS = ["av1", "libdav1d", "libaom-av1"]


# Runs in a child process: an encoder library may change the process it runs in (SVT-AV1,
# run as root, makes its caller SCHED_FIFO 99, which every later test's processes would
# inherit, starving the machine), so the test process never loads one. libaom first: it does
# not touch scheduling.
PROBE = r"""
import sys
from fractions import Fraction
import av
import numpy as np
name = sys.argv[1]
try:
    dec = av.CodecContext.create(name, "r")
except Exception as e:
    print(f"{name}: not in PyAV {av.__version__} ({e!r})"); sys.exit()
for enc_name in ("libaom-av1", "librav1e", "libsvtav1"):
    try:
        enc = av.CodecContext.create(enc_name, "w")
        break
    except Exception:
        continue
else:
    print(f"{name}: no AV1 encoder in PyAV to check it with"); sys.exit()
enc.width, enc.height, enc.pix_fmt = 64, 64, "yuv420p"
enc.time_base = Fraction(1, 30)
frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24")
frame = frame.reformat(format="yuv420p")
frame.pts = 0
packets = list(enc.encode(frame)) + list(enc.encode(None))
try:
    pictures = [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))
except Exception as e:
    print(f"{name}: fails on a {enc_name} frame ({e!r})"); sys.exit()
print("" if pictures else f"{name}: no picture from a {enc_name} frame")
"""


def decodes_av1(name: str) -> str | None:
    """None when PyAV's decoder `name` turns one AV1 frame encoded here back into a picture;
    else why not (checked in a child process, see PROBE)."""
    r = subprocess.run([sys.executable, "-c", PROBE, name], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        return f"{name}: the check failed ({r.stderr.strip()[-300:]})"
    lines = r.stdout.strip().splitlines()
    return (lines[-1] if lines else "") or None


def test_av1_decodes_with_increasing_counters(howl, tmp_path):
    status, server = howl.api("GET", "/api/v1/server")
    assert status == 200, server
    encoders = server["encoders"]
    if "av1" not in encoders:
        pytest.skip(f"no AV1 encoder in GStreamer on this machine: the media worker found "
                    f"{encoders}; it tries {', '.join(AV1_ENCODERS)} (av1enc is libaom's, in "
                    f"Debian's gstreamer1.0-plugins-bad)")
    modes = server_info(make_client(tmp_path / "probe"), howl.http_port).server_codec_mode_support
    assert modes & SCM_AV1_MAIN8, f"an AV1 encoder was found but /serverinfo says {modes:#x}"
    problems = []
    for decoder in AV1_DECODERS:
        problem = decodes_av1(decoder)
        if problem is None:
            break
        problems.append(problem)
    else:
        pytest.skip(f"the client library cannot decode AV1 here: {'; '.join(problems)}")
    if problems:
        print(f"moonlight-python decodes AV1 with {decoder} here ({'; '.join(problems)})")
    res = run_client(howl, tmp_path / "c", "--codec", "av1", "--frames", 60,
                     "--av1-decoder", decoder)
    assert res["ok"], res
    assert res["shapes"] == [[720, 1280, 3]], res["shapes"]
    assert_counters_increase(res, 50)
    print(f"AV1: start {res['start_seconds']} s, 60 frames in {res['frames_seconds']} s, "
          f"encoders {encoders}")
