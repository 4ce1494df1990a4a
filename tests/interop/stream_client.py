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
import urllib.error
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
    from conftest import BackgroundPairing, submit_pin

    def call(method, path, body):
        try:
            return 200, api(args.api_port, args.token, method, path, body)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
    pairing = BackgroundPairing(client, info, pin)
    status, body = submit_pin(call, pin, pairing.request(call))
    if status != 200:
        raise RuntimeError(f"the PIN was refused: {status} {body}")
    pairing.succeeded()
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


def patch_launch(no_corever: bool, url_file: str | None, rtsp_proxy_port: int | None) -> None:
    """Emulates clients and taps the RTSP connection:
    `no_corever` drops `corever` from the launch parameters (a client library older than
    encrypted RTSP); `url_file` receives the `sessionUrl0` howl answered; `rtsp_proxy_port`
    makes the client open its RTSP connections to that local port instead (a test's proxy,
    which reads the real port from `url_file`)."""
    import functools
    import re
    from moonlight_python.http_client import NvHTTP
    from moonlight_python.stream import StreamingSession
    if no_corever:
        orig_params = StreamingSession.get_launch_query_params

        def params(self, _orig=orig_params):
            return re.sub(r"&?corever=\d+", "", _orig(self)).lstrip("&")
        StreamingSession.get_launch_query_params = params
    for name in ("launch_app", "resume_app"):
        orig = getattr(NvHTTP, name)

        # wraps: record_launch_keys binds the original signature through this wrapper.
        @functools.wraps(orig)
        def wrapped(self, *a, _orig=orig, **kw):
            url = _orig(self, *a, **kw)
            if url and url_file:
                with open(url_file, "w") as f:
                    f.write(url)
            if url and rtsp_proxy_port:
                url = re.sub(r":\d+$", f":{rtsp_proxy_port}", url)
            return url
        setattr(NvHTTP, name, wrapped)


def record_delivered_frames() -> list:
    """Records (frame_number, frame_type) of every frame moonlight-common-c delivers and the
    client decodes, in order, as the stream manager's thread sees them: before the per-reader
    queues, which drop the oldest frames when this script's pixel reading falls behind. A gap in
    the frame numbers is a frame the host sent that the client never got (lost on the wire and
    not repaired by FEC, or dropped by moonlight-common-c while it waited for a keyframe)."""
    from moonlight_python import _stream_manager
    seen: list = []
    orig = _stream_manager.stream_frames

    def recording(session, decoder):
        for f in orig(session, decoder):
            seen.append((f.frame_number, f.frame_type))
            yield f
    _stream_manager.stream_frames = recording
    return seen


def delivery_summary(seen: list, start: int) -> dict:
    """Frames the host numbered from the `start`-th delivered frame on, how many of them never
    arrived, the frame numbers after which frames went missing, and the numbers of the key
    frames among them (the host sends one only when asked)."""
    part = seen[start:]
    if len(part) < 2:
        return {"span": 0, "missing": 0, "keyframes_at": []}
    numbers = [n for n, _ in part]
    span = numbers[-1] - numbers[0] + 1
    return {"span": span, "missing": span - len(set(numbers)),
            "gaps_after": [a for a, b in zip(numbers, numbers[1:]) if b != a + 1],
            "keyframes_at": [n for n, t in part if t == 1]}


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
    ap.add_argument("--encryption", choices=["all", "audio", "none"], default="all",
                    help="what the client asks the host to encrypt (moonlight-python asks for "
                    "everything; `audio` only audio, as a stock client that opted out of video "
                    "encryption; `none` plain video and audio)")
    ap.add_argument("--no-corever", action="store_true",
                    help="launch without `corever` (a client without encrypted RTSP)")
    ap.add_argument("--session-url-file", help="write the sessionUrl0 howl answered here")
    ap.add_argument("--rtsp-proxy-port", type=int,
                    help="send the RTSP connections to this local port (a test's proxy)")
    ap.add_argument("--av1-decoder", help="the FFmpeg decoder moonlight-python uses for AV1 "
                    "(its own choice is `av1`, FFmpeg's hardware-only one; `libdav1d` is what "
                    "moonlight-qt decodes AV1 with in software)")
    args = ap.parse_args()
    if args.av1_decoder:
        from moonlight_python import decoder
        decoder.CODEC_NAMES["av1"] = args.av1_decoder
    patch_launch(args.no_corever, args.session_url_file, args.rtsp_proxy_port)
    if args.keys_file:
        record_launch_keys(args.keys_file)
    if args.encryption != "all":
        # moonlight-python puts this module constant into STREAM_CONFIGURATION.encryptionFlags
        # when the stream starts; moonlight-common-c's ENCFLG_NONE is 0, ENCFLG_AUDIO 1.
        import moonlight_python.stream
        moonlight_python.stream.ENCFLG_ALL = 1 if args.encryption == "audio" else 0
    delivered = record_delivered_frames()

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
        # What start-up needed (its own keyframe requests included) is not part of the stream.
        started_at = len(delivered)
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
        out["delivered"] = delivery_summary(delivered, started_at)
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
            # In a thread: the client's audio iterator blocks while no audio decodes (audio the
            # client cannot decrypt, say), and this script must still report what it saw.
            chunks: list = []
            enough = threading.Event()

            def collect():
                n = 0
                for c in client.audio():
                    chunks.append(c.data)
                    n += c.data.shape[0]
                    if n >= int(48000 * args.audio_seconds):
                        break
                enough.set()
            threading.Thread(target=collect, daemon=True).start()
            enough.wait(args.audio_seconds + 10)
            chunks = list(chunks)
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
