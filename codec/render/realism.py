"""What ``decoder="realism"`` shows: the realism decoder's image of a file's tokens, mixed with
the fidelity decoder's image of the same tokens by a strength in [0, 1].

At the lowest rates the realism decoder's texture sits on a picture that two codes per
position leave blurred, and half of it, over the fidelity decoder's image, is closer to the
originals (in MobileNetV2 feature statistics, and in PSNR) than either image alone; at higher
rates the realism decoder alone is (``results/realism_default.md``). A bundle may hold the
strength for each rate (``schema.REALISM_STRENGTH``: one number per code count m = 1..M); a
caller may ask for any other. The mix is integer arithmetic on the two 8-bit images, so it
gives the same pixels on every machine, as each decoder does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import CodecError
from ..format.checks import share

STEPS = 256
"""Strengths are applied in steps of 1/256: ``(f * (256 - w) + r * w + 128) >> 8``, w = round(256 s)."""


def strength_at(table: Sequence[float] | None, codes_per_position: float) -> float:
    """The strength ``table`` gives a file of ``codes_per_position`` codes (its mean over the
    positions, rounded half up, 1..len(table)); 1 (the realism decoder alone) without a table."""
    if not table:
        return 1.0
    m = min(max(math.floor(codes_per_position + 0.5), 1), len(table))
    return float(table[m - 1])


def blend(fidelity: np.ndarray, realism: np.ndarray, strength: float) -> np.ndarray:
    """uint8 [H, W, 3]: ``strength`` of ``realism`` over ``fidelity`` (two uint8 images of one
    shape), rounded to the nearest level; strength 0 and 1 give the images themselves."""
    w = round(share("realism strength", strength, CodecError) * STEPS)
    if w == 0:
        return fidelity
    if w == STEPS:
        return realism
    out = np.empty_like(fidelity)
    for y in range(0, fidelity.shape[0], ROWS):  # in bands: a large picture needs no wide copies
        f, r = fidelity[y : y + ROWS].astype(np.uint16), realism[y : y + ROWS].astype(np.uint16)
        out[y : y + ROWS] = (f * (STEPS - w) + r * w + STEPS // 2) >> 8  # at most 65,408: uint16
    return out


ROWS = 256
