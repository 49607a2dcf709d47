"""Classical codecs through Pillow, for side-by-side figures: real encoded bytes only.

Codecs: ``jpeg`` (libjpeg-turbo, 4:2:0, optimized Huffman tables), ``jpeg444`` (the same,
4:4:4), ``webp`` (method 4), ``avif`` (speed 6), ``jxl`` (effort 7; needs the
pillow-jxl-plugin package, see :func:`missing`). Quality
sweeps are what the bench/ scripts interpolate; :func:`fit_size` finds the best quality
whose file is not larger than a given size (how the demo shows "JPEG at our size").
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

SETTINGS = {
    "jpeg": (
        list(range(1, 101)),
        lambda q: {"format": "JPEG", "quality": q, "subsampling": 2, "optimize": True},
    ),
    "jpeg444": (
        list(range(1, 101)),
        lambda q: {"format": "JPEG", "quality": q, "subsampling": 0, "optimize": True},
    ),
    "webp": (list(range(0, 101, 4)), lambda q: {"format": "WEBP", "quality": q, "method": 4}),
    "avif": (list(range(0, 101, 5)), lambda q: {"format": "AVIF", "quality": q, "speed": 6}),
    "jxl": (list(range(1, 100, 3)), lambda q: {"format": "JXL", "quality": q, "effort": 7}),
}


def missing(codec: str) -> str | None:
    """Why ``codec`` cannot run here (its library is not installed), or None if it can."""
    from PIL import features

    if codec not in SETTINGS:
        return f"unknown codec {codec!r} (known: {', '.join(SETTINGS)})"
    if codec in ("webp", "avif") and not features.check(codec):
        return f"Pillow was built without {codec.upper()} support"
    if codec == "jxl":
        try:
            import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)
        except ImportError:
            return "JPEG XL needs the pillow-jxl-plugin package (pip install pillow-jxl-plugin)"
    return None


def encode(img: np.ndarray, codec: str, quality: int) -> bytes:
    """uint8 [H, W, 3] -> the bytes of the file Pillow writes."""
    if codec == "jxl":
        import pillow_jxl  # noqa: F401
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, **SETTINGS[codec][1](quality))
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """File bytes -> uint8 [H, W, 3]."""
    if data[:2] == b"\xff\x0a" or data[4:12] == b"JXL \r\n\x87\n":
        import pillow_jxl  # noqa: F401
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _bracket(img: np.ndarray, codec: str, max_bytes: int):
    """Binary search over the codec's quality settings (file size grows with quality):
    ((quality, bytes) of the highest setting with at most ``max_bytes`` or None,
    (quality, bytes) of the lowest setting above it or None)."""
    qs = SETTINGS[codec][0]
    lo, hi, below, above = 0, len(qs) - 1, None, None
    while lo <= hi:
        mid = (lo + hi) // 2
        data = encode(img, codec, qs[mid])
        if len(data) <= max_bytes:
            below, lo = (qs[mid], data), mid + 1
        else:
            above, hi = (qs[mid], data), mid - 1
    return below, above


def fit_size(img: np.ndarray, codec: str, max_bytes: int) -> tuple[int, bytes] | None:
    """(quality, bytes) of the highest quality setting whose file has at most ``max_bytes``
    (binary search: file size grows with quality); None if even the lowest is larger."""
    return _bracket(img, codec, max_bytes)[0]


def fit_bpp(
    img: np.ndarray, codec: str, bpp: float, bounds: tuple[float, float] | None = None
) -> tuple[int, bytes]:
    """(quality, bytes) of the setting whose file is nearest ``bpp`` (bits per pixel, ratio
    in the log domain) among the two that bracket it, preferring one inside ``bounds``
    (lo, hi bpp) when either is. About log2(settings) encodes (7 for JPEG, 5 for AVIF)."""
    pixels = img.shape[0] * img.shape[1]
    found = [c for c in _bracket(img, codec, int(bpp * pixels / 8)) if c is not None]
    rate = lambda c: len(c[1]) * 8 / pixels  # noqa: E731
    if bounds is not None:
        found = [c for c in found if bounds[0] <= rate(c) <= bounds[1]] or found
    return min(found, key=lambda c: abs(np.log(max(rate(c), 1e-9) / bpp)))
