"""Classical codecs through Pillow, for side-by-side figures: real encoded bytes only.

Codecs: ``jpeg`` (libjpeg-turbo, 4:2:0), ``webp`` (method 4), ``avif`` (speed 6). Quality
sweeps are what the bench/ scripts interpolate; :func:`fit_size` finds the best quality
whose file is not larger than a given size (how the demo shows "JPEG at our size").
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

SETTINGS = {
    "jpeg": (list(range(1, 101)), lambda q: {"format": "JPEG", "quality": q}),
    "webp": (list(range(0, 101, 4)), lambda q: {"format": "WEBP", "quality": q, "method": 4}),
    "avif": (list(range(0, 101, 5)), lambda q: {"format": "AVIF", "quality": q, "speed": 6}),
}


def encode(img: np.ndarray, codec: str, quality: int) -> bytes:
    """uint8 [H, W, 3] -> the bytes of the file Pillow writes."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, **SETTINGS[codec][1](quality))
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """File bytes -> uint8 [H, W, 3]."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def fit_size(img: np.ndarray, codec: str, max_bytes: int) -> tuple[int, bytes] | None:
    """(quality, bytes) of the highest quality setting whose file has at most ``max_bytes``
    (binary search: file size grows with quality); None if even the lowest is larger."""
    qs = SETTINGS[codec][0]
    lo, hi, best = 0, len(qs) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        data = encode(img, codec, qs[mid])
        if len(data) <= max_bytes:
            best, lo = (qs[mid], data), mid + 1
        else:
            hi = mid - 1
    return best
