"""Encryption by policy and encrypted RTSP (issue 15, acceptance 2, 3 and 6) with the real
client library.

moonlight-common-c turns on every feature the host lists in `encryptionRequested`, even those
its user opted out of, and announces encrypted RTSP with `corever=1` on `/launch`. So a client
that *cannot* encrypt is one whose library predates it: emulated here by launching without
`corever` (stream_client.py `--no-corever`). What a client *asks* for is emulated by
moonlight-python's `ENCFLG_ALL` (`--encryption audio` is a stock client that opted out of video
encryption, `none` one that opted out of everything).
"""

from __future__ import annotations

import base64
import json
import socket
import threading

import pytest

from conftest import finish_client, run_client, start_streaming, stop_client, wait_until

METHODS = [b"OPTIONS", b"DESCRIBE", b"SETUP", b"ANNOUNCE", b"PLAY", b"RTSP/1.0"]


def negotiated(h) -> str:
    lines = [l for l in h.log().splitlines() if "stream negotiated" in l]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("mode", ["preferred", "off"])
def test_video_of_a_client_asking_only_for_audio_encryption(howl_factory, tmp_path, mode):
    """Acceptance 2: under `preferred` the video of a client that asked only for audio
    encryption carries no Annex-B start code on the wire; under `off` the same capture finds
    them in every frame, so the check can tell the two apart."""
    from wire import UdpCapture, can_capture, four_byte_start_codes, h264_start_codes
    why = can_capture()
    if why:
        pytest.skip(why)
    h = howl_factory(env={"HOWL_ENCRYPTION_LOOPBACK": mode})
    video = int(h.env["HOWL_VIDEO_PORT"])
    cap = UdpCapture([video]).start()
    try:
        res = run_client(h, tmp_path / "c", "--frames", 90, "--encryption", "audio")
    finally:
        sent = cap.stop()
    assert res["ok"], res
    line = negotiated(h)
    # The client asked for audio, so audio is encrypted either way; video only by policy.
    assert "audio_encrypted=true" in line, line
    assert f"video_encrypted={'true' if mode == 'preferred' else 'false'}" in line, line
    assert f"encryption_policy=\"{mode}\"" in line or f"encryption_policy={mode}" in line, line
    # Both layouts put 32 bytes before the payload (see test_streaming.py).
    payloads = [p[32:] for p in sent[video]]
    assert len(payloads) >= 90, f"captured {len(payloads)} video datagrams"
    starts = sum(h264_start_codes(p) for p in payloads)
    long_starts = four_byte_start_codes(payloads)
    print(f"{mode}: {len(payloads)} video datagrams, {starts} start codes ({long_starts} long)")
    if mode == "preferred":
        assert starts == 0 and long_starts == 0, "H.264 start codes in encrypted video"
    else:
        assert starts >= 90 and long_starts >= 90, (starts, long_starts)


def test_required_refuses_a_client_without_encrypted_rtsp(howl_factory, tmp_path):
    """Acceptance 2, `required`: a client that cannot encrypt its handshake is refused at
    `/launch` with a message its user can read, and nothing starts."""
    h = howl_factory(env={"HOWL_ENCRYPTION_LOOPBACK": "required"})
    assert run_client(h, tmp_path / "c", "--pair-only")["ok"]
    res = run_client(h, tmp_path / "c", "--frames", 10, "--no-corever")
    assert not res["ok"], res
    assert "requires encryption" in res["error"] and "403" in res["error"], res
    assert "launch refused by the encryption policy" in h.log(), h.log()[-2000:]
    # Refused before the domain saw it: no session, no worker, now or a little later.
    assert h.api("GET", "/api/v1/sessions")[1] == []
    assert not h.workers(), h.workers()
    engine = h.api("GET", "/api/v1/status")[1]["engine"]
    assert engine["workers"] == 0 and engine["sessions"] == 0, engine


class RtspTap:
    """A TCP proxy between the client and its launch's RTSP port, recording every byte each way.
    The client opens one connection per request to the proxy (stream_client.py
    `--rtsp-proxy-port`); the real port comes from the sessionUrl0 the client wrote to
    `url_file` before its first RTSP request."""

    def __init__(self, url_file):
        self.url_file = url_file
        self.up = bytearray()
        self.down = bytearray()
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            port = int(self.url_file.read_text().rsplit(":", 1)[1])
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            c.settimeout(10)
            threading.Thread(target=self._pipe, args=(c, s, self.up), daemon=True).start()
            threading.Thread(target=self._pipe, args=(s, c, self.down), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, record):
        try:
            while data := src.recv(65536):
                record.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # Pass the close on: the client reads each answer until the host closes.
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def secret_forms(hex_key: str) -> set[str]:
    raw = bytes.fromhex(hex_key)
    return {hex_key.lower(), hex_key.upper(), base64.b64encode(raw).decode(),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
            base64.b64encode(raw).decode().rstrip("=")}


def test_rtsp_is_encrypted_for_a_client_that_announces_it(howl_factory, tmp_path):
    """Acceptance 3 (and 2, `required`): the real client announces `corever=1`, gets
    `rtspenc://`, and no RTSP method, status line or header crosses its RTSP connection in the
    clear; the stream plays. A client that opted out of every encryption still gets all of it
    (the library follows the host's request). The API shows what is encrypted, and neither the
    key (which is also the RTSP key) nor its IV appear in the log or the API, in hex or
    base64 (acceptance 6)."""
    h = howl_factory(env={"HOWL_ENCRYPTION_LOOPBACK": "required"})
    assert run_client(h, tmp_path / "c", "--pair-only")["ok"]
    url_file, keys_file = tmp_path / "url", tmp_path / "keys.jsonl"
    tap = RtspTap(url_file)
    p = start_streaming(h, tmp_path / "c", "--frames", 60, "--wait-termination", 30,
                        "--encryption", "none", "--session-url-file", url_file,
                        "--rtsp-proxy-port", tap.port, "--keys-file", keys_file)
    try:
        sessions = h.api("GET", "/api/v1/sessions")[1]
        assert len(sessions) == 1, sessions
        enc = sessions[0]["encryption"]
        assert enc == {"network": "loopback", "policy": "required", "rtsp": True,
                       "video": True, "audio": True, "control": True}, enc
        api_text = json.dumps(sessions)
        # A plaintext request on the encrypted session is refused and reaches no handshake.
        port = int(url_file.read_text().rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"OPTIONS rtsp://0.0.0.0 RTSP/1.0\r\nCSeq: 1\r\n\r\n")
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
        assert answer.startswith(b"RTSP/1.0 403 "), answer
        assert h.api("DELETE", f"/api/v1/sessions/{sessions[0]['id']}")[0] == 204
        res = finish_client(p, h)
    finally:
        stop_client(p)
        tap.close()
    assert res["ok"], res
    assert url_file.read_text().startswith("rtspenc://127.0.0.1:"), url_file.read_text()
    # OPTIONS, DESCRIBE, 3 SETUP, ANNOUNCE, PLAY: each its own connection, all through the tap.
    assert tap.connections >= 7, tap.connections
    assert len(tap.up) > 7 * 24 and len(tap.down) > 7 * 24, (len(tap.up), len(tap.down))
    for word in METHODS + [b"CSeq", b"x-ss-general", b"streamid"]:
        assert word not in tap.up and word not in tap.down, f"{word!r} in clear on RTSP"
    # Every message starts with the encrypted marker bit.
    assert tap.up[0] & 0x80 and tap.down[0] & 0x80
    line = negotiated(h)
    assert "rtsp_encrypted=true" in line and "video_encrypted=true" in line, line
    keys = [json.loads(l) for l in keys_file.read_text().splitlines()]
    assert keys
    secrets = set()
    for k in keys:
        secrets |= secret_forms(k["key"]) | secret_forms(k["iv"])
    for name, text in {"log": h.log(), "api": api_text}.items():
        for s in secrets:
            assert s not in text, f"a secret leaked into the {name}"


def test_older_client_plays_over_plain_rtsp_under_preferred(howl_factory, tmp_path):
    """Acceptance 3: a client without `corever` gets `rtsp://` under the default `preferred`
    and plays; the same tap reads its handshake in the clear (so the check above can fail)."""
    h = howl_factory()
    url_file = tmp_path / "url"
    tap = RtspTap(url_file)
    try:
        res = run_client(h, tmp_path / "c", "--frames", 30, "--no-corever",
                         "--session-url-file", url_file, "--rtsp-proxy-port", tap.port)
    finally:
        tap.close()
    assert res["ok"], res
    assert url_file.read_text().startswith("rtsp://127.0.0.1:"), url_file.read_text()
    for word in (b"DESCRIBE", b"SETUP", b"ANNOUNCE"):
        assert word in tap.up, f"{word!r} not seen in clear from an older client"
    line = negotiated(h)
    # Preferred still asks for video and audio encryption over plain RTSP.
    assert "rtsp_encrypted=false" in line and "video_encrypted=true" in line, line
    assert wait_until(lambda: not h.workers(), 10), h.workers()
