"""A minimal RTSP player written from RFC 2326, for the tests that need control over every byte
(bad credentials, malformed requests, players that vanish) rather than a real player.

As a program it opens `--count` players that DESCRIBE, SETUP and (unless `--no-play`) PLAY,
touches `--ready` and then sends nothing more: the test then kills or freezes it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import socket
import time


class Rtsp:
    """One RTSP connection; `request` skips interleaved frames while waiting for the answer."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.cseq = 0
        self.buf = b""
        self.session = None

    def url(self, path: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}{path}"

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, url: str, headers: dict | None = None) -> tuple:
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}"]
        if self.session and method not in ("OPTIONS", "DESCRIBE"):
            lines.append(f"Session: {self.session}")
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, hdrs, body = self.read_response()
        if "session" in hdrs:
            self.session = hdrs["session"].split(";")[0]
        return status, hdrs, body

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def read_response(self) -> tuple:
        while True:
            while self.buf.startswith(b"$"):
                while len(self.buf) < 4:
                    self._fill()
                n = int.from_bytes(self.buf[2:4], "big")
                while len(self.buf) < 4 + n:
                    self._fill()
                self.buf = self.buf[4 + n:]
            if b"\r\n\r\n" in self.buf and not self.buf.startswith(b"$"):
                break
            self._fill()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs: dict = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            hdrs[k] = (hdrs[k] + "\n" + v.strip()) if k in hdrs else v.strip()
        n = int(hdrs.get("content-length", "0"))
        while len(rest) < n:
            self.buf = head + b"\r\n\r\n" + rest
            self._fill()
            head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = rest[n:]
        return status, hdrs, rest[:n]

    def close(self) -> None:
        self.sock.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def digest(challenges: str, user: str, password: str, method: str, uri: str) -> str:
    """The Authorization value answering the Digest challenge among `challenges`."""
    line = next(c for c in challenges.split("\n") if c.startswith("Digest"))
    realm = re.search(r'realm="([^"]*)"', line).group(1)
    nonce = re.search(r'nonce="([^"]*)"', line).group(1)
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731 - RFC 2069 digest
    response = md5(f"{md5(f'{user}:{realm}:{password}')}:{nonce}:{md5(f'{method}:{uri}')}")
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}"')


def start_player(port: int, token: str, path: str, transport: str, play: bool = True):
    """DESCRIBE, SETUP both tracks and PLAY; returns the connection and its UDP sockets."""
    r = Rtsp(port)
    url = r.url(path)
    status, hdrs, sdp = r.request("DESCRIBE", url, {"Authorization": basic("u", token),
                                                    "Accept": "application/sdp"})
    assert status == 200, (status, hdrs)
    base = hdrs.get("content-base", url)
    socks = []
    for track in (0, 1):
        if transport == "udp":
            a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            a.bind(("127.0.0.1", 0))
            b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            b.bind(("127.0.0.1", 0))
            socks += [a, b]
            spec = f"RTP/AVP;unicast;client_port={a.getsockname()[1]}-{b.getsockname()[1]}"
        else:
            spec = f"RTP/AVP/TCP;unicast;interleaved={2 * track}-{2 * track + 1}"
        status, hdrs, _ = r.request("SETUP", f"{base}trackID={track}", {"Transport": spec})
        assert status == 200, (status, hdrs)
    if play:
        status, hdrs, _ = r.request("PLAY", url, {"Range": "npt=0.000-"})
        assert status == 200, (status, hdrs)
    return r, socks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--transport", choices=["tcp", "udp"], default="tcp")
    ap.add_argument("--no-play", action="store_true")
    ap.add_argument("--ready", required=True)
    args = ap.parse_args()
    keep = [start_player(args.port, args.token, args.path, args.transport, not args.no_play)
            for _ in range(args.count)]
    with open(args.ready, "w") as f:
        f.write(str(len(keep)))
    while True:
        time.sleep(3600)  # holds the players open, silent, until the test kills or stops us


if __name__ == "__main__":
    raise SystemExit(main())
