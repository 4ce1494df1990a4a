"""What a stream looks like on the wire: a raw capture of UDP datagrams on the loopback
interface (AF_PACKET, so it needs root or CAP_NET_RAW; no tcpdump), and the plaintext
signatures a test looks for in them.

Used by the interop tests; kept apart from conftest.py because it is about packets, not about
running howl.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections import Counter

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
# Annex-B NAL unit types of H.264 a picture carries (slice, IDR slice, SEI, SPS, PPS, AUD):
# a start code followed by one of these headers is an H.264 stream in the clear.
H264_NAL_TYPES = {1, 5, 6, 7, 8, 9}


def can_capture() -> str | None:
    """None when this process may open a packet socket, else why not (for pytest.skip)."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)).close()
        return None
    except PermissionError:
        return "capturing packets on lo needs root or CAP_NET_RAW"
    except (AttributeError, OSError) as e:
        return f"no packet sockets here: {e}"


class UdpCapture:
    """Collects the payloads of UDP datagrams sent FROM the given local ports on lo, in a
    thread, from `start()` until `stop()`."""

    def __init__(self, source_ports):
        self.ports = set(source_ports)
        self.payloads: dict[int, list[bytes]] = {p: [] for p in self.ports}
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        # A video burst at several Mbit/s must not overflow the capture's queue.
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        self._sock.bind(("lo", 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "UdpCapture":
        self._thread.start()
        return self

    def stop(self) -> dict[int, list[bytes]]:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the capture thread did not stop"
        self._sock.close()
        return self.payloads

    def _run(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.1)
            if not ready:
                continue
            frame, addr = self._sock.recvfrom(65535)
            # lo shows every datagram twice, leaving and arriving: keep the arrival.
            if addr[2] == PACKET_OUTGOING:
                continue
            self._take(frame)

    def _take(self, frame: bytes):
        # lo frames carry a 14-byte Ethernet header (zero addresses).
        if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
            return
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
            return
        sport, _dport, length = struct.unpack("!HHH", ip[ihl:ihl + 6])
        if sport in self.ports:
            self.payloads[sport].append(bytes(ip[ihl + 8:ihl + length]))


def h264_start_codes(payload: bytes) -> int:
    """Annex-B start codes (00 00 01, which 00 00 00 01 contains) followed by an H.264 NAL
    header of a picture's unit types. In ciphertext a match is a 1-in-10^9 event per byte."""
    count, at = 0, payload.find(b"\x00\x00\x01")
    while at >= 0 and at + 3 < len(payload):
        nal = payload[at + 3]
        if nal & 0x80 == 0 and nal & 0x1F in H264_NAL_TYPES:
            count += 1
        at = payload.find(b"\x00\x00\x01", at + 1)
    return count


def four_byte_start_codes(payloads) -> int:
    return sum(p.count(b"\x00\x00\x00\x01") for p in payloads)


def opus_toc_share(payloads) -> tuple[float, int]:
    """(share of the most common first payload byte, how many audio data packets) over the RTP
    packets of payload type 97 (Opus data; 127 is the FEC). In the clear that byte is the Opus
    TOC, the same for every packet of one encoder configuration; encrypted, it is uniform."""
    tocs = Counter(p[12] for p in payloads if len(p) > 12 and p[1] & 0x7F == 97)
    n = sum(tocs.values())
    return (tocs.most_common(1)[0][1] / n if n else 0.0), n

