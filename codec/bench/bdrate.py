"""Bjontegaard delta rate: the average bitrate difference of two rate-distortion curves at
equal quality, in percent (negative: the test codec needs fewer bits).

Each curve's log-rate is interpolated as a function of quality with a monotone piecewise
cubic (PCHIP, the interpolation of the VCEG-AM91 successor recommendation; scipy's
implementation), and the two are averaged over the quality interval both curves cover,
optionally narrowed to the qualities both reach inside a bpp range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _curve(points: Sequence[tuple[float, float]]):
    """(log-rate as a function of quality, quality as a function of log-rate), both
    monotone, from (bpp, quality) points; points that do not improve quality are dropped."""
    from scipy.interpolate import PchipInterpolator

    pts = sorted((float(r), float(q)) for r, q in points if r > 0 and math.isfinite(q))
    keep: list[tuple[float, float]] = []
    for r, q in pts:
        if not keep or q > keep[-1][1]:
            keep.append((r, q))
    if len(keep) < 2:
        raise ValueError("a rate-distortion curve needs at least two points of rising quality")
    lr = np.log([r for r, _ in keep])
    q = np.array([q for _, q in keep])
    return PchipInterpolator(q, lr), PchipInterpolator(lr, q), (q[0], q[-1]), (lr[0], lr[-1])


def bd_rate(
    reference: Sequence[tuple[float, float]],
    test: Sequence[tuple[float, float]],
    bpp_range: tuple[float, float] | None = None,
) -> float | None:
    """BD-rate of ``test`` against ``reference`` in percent; curves are (bpp, quality)
    points (quality: PSNR dB, MS-SSIM, ... higher is better). None if the curves share no
    quality interval (within ``bpp_range`` when given)."""
    rate_r, qual_r, (lo_r, hi_r), span_r = _curve(reference)
    rate_t, qual_t, (lo_t, hi_t), span_t = _curve(test)
    lo, hi = max(lo_r, lo_t), min(hi_r, hi_t)
    if bpp_range is not None:
        a, b = math.log(bpp_range[0]), math.log(bpp_range[1])
        for qual, (s0, s1) in ((qual_r, span_r), (qual_t, span_t)):
            if a > s1 or b < s0:
                return None
            lo = max(lo, float(qual(max(a, s0))))
            hi = min(hi, float(qual(min(b, s1))))
    if not hi > lo:
        return None
    q = np.linspace(lo, hi, 1001)
    d = rate_t(q) - rate_r(q)
    diff = float(np.mean((d[1:] + d[:-1]) / 2))  # trapezoid rule on an even grid, / (hi - lo)
    return 100.0 * (math.exp(diff) - 1.0)
