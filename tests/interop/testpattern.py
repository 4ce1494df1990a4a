"""Reads howl's test-pattern frame counter from a decoded picture.

The layout is defined in crates/howl-media/src/testpattern.rs: a band of 32 blocks across the
top; block 0 white and block 1 black mark the band; blocks 2..31 carry the 30 low bits of the
counter, most significant first (white = 1).
"""

from __future__ import annotations

import numpy as np


def read_counter(luma: np.ndarray) -> int | None:
    """`luma`: (H, W) array with video-range-or-full-range luma; returns None if no band."""
    h, w = luma.shape[:2]
    band_h = min(max(2 * (h // 30), 16), h)
    bits = []
    for i in range(32):
        x0, x1 = (i * w) // 32, ((i + 1) * w) // 32
        cx, cy = (x0 + x1) // 2, band_h // 2
        r = max(1, min(x1 - x0, band_h) // 6)
        v = float(luma[cy - r:cy + r, cx - r:cx + r].mean())
        bits.append(1 if v >= 128 else 0)
    if bits[0] != 1 or bits[1] != 0:
        return None
    value = 0
    for b in bits[2:]:
        value = (value << 1) | b
    return value
