"""One real Moonlight client in its own process (moonlight-common-c keeps global state, so
one stream per process). Pairs if needed (submitting the PIN through howl's API itself),
streams, measures, and prints one JSON line with what it saw.

Used by the interop tests; run `python stream_client.py --help` for the options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from testpattern import read_counter  # noqa: E402


def api(port: int, token: str, method: str, path: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def ensure_paired(client, args):
    from moonlight_python.discovery import connect_to_server
    from moonlight_python.http_client import NvHTTP
    info = connect_to_server("127.0.0.1", client._identity, args.http_port)
    client._server = info
    http = NvHTTP("127.0.0.1", client._identity, http_port=info.http_port, https_port=info.https_port)
    try:
        http.get_app_list()
        # Already paired: connect() sees that and sets up the client without pairing.
        return client.connect("127.0.0.1", args.http_port)
    except Exception:  # noqa: BLE001 - not paired yet
        pass
    pin = "5317"
    result: dict = {}

    def run():
        try:
            client.pair(info, pin=pin)
        except BaseException as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pending = api(args.api_port, args.token, "GET", "/api/v1/pairing/pending")
        mine = [p for p in pending]
        if mine:
            api(args.api_port, args.token, "POST", "/api/v1/pairing/pin",
                {"pin": pin, "client": str(mine[0]["id"])})
            break
        time.sleep(0.05)  # polling the API for our own pairing request
    t.join(60)
    if "error" in result:
        raise result["error"]
    # pair() replaced client._server / _http with the pinned versions
    return client._server


def record_launch_keys(path: str) -> None:
    """Wraps NvHTTP.launch_app/resume_app to write the rikey and IV the client sends."""
    import inspect
    from moonlight_python.http_client import NvHTTP
    for name in ("launch_app", "resume_app"):
        orig = getattr(NvHTTP, name)
        sig = inspect.signature(orig)

        def wrapped(self, *a, _orig=orig, _sig=sig, **kw):
            b = _sig.bind(self, *a, **kw)
            key, iv = b.arguments["ri_aes_key"], b.arguments["ri_aes_iv"]
            with open(path, "a") as f:
                f.write(json.dumps({"key": key.hex(), "iv": iv.hex()}) + "\n")
            return _orig(self, *a, **kw)
        setattr(NvHTTP, name, wrapped)


def dominant_frequency(samples: np.ndarray, rate: int = 48000) -> float:
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    mono = mono - mono.mean()
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    freqs = np.fft.rfftfreq(len(mono), 1 / rate)
    return float(freqs[int(np.argmax(spectrum))])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--api-port", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--config-dir", required=True)
    ap.add_argument("--app", default="Test Pattern")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=60)
    ap.add_argument("--bitrate", type=int, default=8000)
    ap.add_argument("--codec", default="h264")
    ap.add_argument("--frames", type=int, default=120, help="decoded frames to read")
    ap.add_argument("--audio-seconds", type=float, default=0.0)
    ap.add_argument("--idr", action="store_true", help="request an IDR and time the keyframe")
    ap.add_argument("--wait-termination", type=float, default=0.0,
                    help="after reading frames, wait up to this long for the host to end the stream")
    ap.add_argument("--ready-file", help="touched once the frames (and the rest) were read")
    ap.add_argument("--no-quit", action="store_true", help="stop the stream but do not /cancel")
    ap.add_argument("--pair-only", action="store_true", help="pair (if needed) and exit")
    ap.add_argument("--keys-file", help="write the session's AES key and IV (hex) here, so a test "
                    "can scan the server's output for them")
    args = ap.parse_args()
    if args.keys_file:
        record_launch_keys(args.keys_file)

    from moonlight_python import MoonlightClient
    out: dict = {"ok": False}
    client = MoonlightClient(args.config_dir)
    try:
        ensure_paired(client, args)
        if args.pair_only:
            print("RESULT " + json.dumps({"ok": True, "paired": True}), flush=True)
            return 0
        t0 = time.monotonic()
        client.start_stream(args.app, args.width, args.height, args.fps, args.bitrate, args.codec,
                            ready_timeout=20)
        out["start_seconds"] = round(time.monotonic() - t0, 3)
        counters, shapes, keyframes = [], set(), 0
        t_frames = time.monotonic()
        for f in client.frames():
            shapes.add(f.data.shape)
            gray = f.data.astype(np.float32) @ np.array([0.114, 0.587, 0.299], dtype=np.float32)
            counters.append(read_counter(gray))
            keyframes += int(f.frame_type == 1)
            if len(counters) >= args.frames:
                break
        out["frames_seconds"] = round(time.monotonic() - t_frames, 3)
        out["counters"] = counters
        out["shapes"] = sorted(list(s) for s in shapes)
        out["keyframes"] = keyframes
        if args.idr:
            # Drain a few frames, then ask for an IDR and look for a keyframe.
            client._session.request_idr()
            t_idr = time.monotonic()
            seen = None
            for i, f in enumerate(client.frames()):
                if f.frame_type == 1:
                    seen = i
                    break
                if i > 120:
                    break
            out["idr_after_frames"] = seen
            out["idr_seconds"] = round(time.monotonic() - t_idr, 3)
        if args.audio_seconds > 0:
            chunks, n = [], 0
            deadline = time.monotonic() + args.audio_seconds + 10
            for c in client.audio():
                chunks.append(c.data)
                n += c.data.shape[0]
                if n >= int(48000 * args.audio_seconds) or time.monotonic() > deadline:
                    break
            if chunks:
                samples = np.concatenate(chunks)
                out["audio_samples"] = int(samples.shape[0])
                out["audio_peak"] = float(np.abs(samples).max())
                out["audio_frequency"] = dominant_frequency(samples)
        if args.ready_file:
            open(args.ready_file, "w").close()
        if args.wait_termination > 0:
            t_wait = time.monotonic()
            # The session sets this event from moonlight-common-c's connectionTerminated.
            if client._session._connection_terminated.wait(args.wait_termination):
                out["terminated_after"] = round(time.monotonic() - t_wait, 3)
                out["terminated_at_wall"] = time.time()
                out["termination_error"] = client._session.termination_error
        out["ok"] = True
    except BaseException as e:  # noqa: BLE001
        out["error"] = repr(e)
    finally:
        try:
            client.stop_stream()
        except Exception:  # noqa: BLE001
            pass
        if not args.no_quit:
            try:
                client.quit_app()
            except Exception as e:  # noqa: BLE001
                out["quit_error"] = repr(e)
    print("RESULT " + json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
