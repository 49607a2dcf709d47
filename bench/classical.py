"""Classical codecs through Pillow, measured from real encoded bytes.

``rd_curve(img, codec)`` sweeps a codec's quality setting on one image and returns
(bpp, PSNR, MS-SSIM) points; ``at_bpp`` interpolates a curve at a given bpp, which is
how "JPEG at the same bpp" is reported in bench/ (linear in bpp between the two nearest
settings). Codecs and settings: codec/classical.py.
"""

from __future__ import annotations

import numpy as np

from codec.classical import SETTINGS, decode, encode
from codec.util.metrics import from_uint8 as to_tensor  # noqa: F401  (imported by the other scripts)
from codec.util.metrics import ms_ssim, psnr


def rd_curve(img: np.ndarray, codec: str) -> list[tuple[float, float, float]]:
    """[(bpp, PSNR dB, MS-SSIM)] over the quality sweep, sorted by bpp."""
    x = to_tensor(img)
    pts = []
    for q in SETTINGS[codec][0]:
        data = encode(img, codec, q)
        y = to_tensor(decode(data))
        s = ms_ssim(y, x)
        pts.append(
            (
                8 * len(data) / (img.shape[0] * img.shape[1]),
                float(psnr(y, x)),
                float(s) if s is not None else float("nan"),
            )
        )
    return sorted(pts)


def at_bpp(curve, bpp: float) -> tuple[float, float] | None:
    """(PSNR, MS-SSIM) interpolated at ``bpp``; None outside the curve's range."""
    b = [p[0] for p in curve]
    if not b[0] <= bpp <= b[-1]:
        return None
    return float(np.interp(bpp, b, [p[1] for p in curve])), float(np.interp(bpp, b, [p[2] for p in curve]))
