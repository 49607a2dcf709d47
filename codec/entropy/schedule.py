"""The coding schedule: which token positions are coded at which stage.

Stage t (1..S) codes the positions whose rank in a fixed order lies in
``[c(t-1), c(t))`` with the cumulative count ``c(t) = round(n * (t / S) ** alpha)`` (M2T's
power law: few positions first, when little is known, many at the end), every stage at
least one position while ``n >= S``. Orders, all pure functions of (h, w) that both sides
compute identically:

* ``raster``: row-major;
* ``permutation``: sorted by a 64-bit integer hash of the position (a fixed pseudo-random
  order, no RNG library involved);
* ``lds``: a quantized low-discrepancy sequence (the R2 sequence of Roberts, 2018), which
  M2T found best: early stages are spread evenly over the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..format.bitstream import ORDERS  # the position orders: the file format names them

_G = 1.32471795724474602596  # plastic number: R2's generator


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def position_order(h: int, w: int, order: str) -> np.ndarray:
    """All h*w flat positions (row-major indices) in coding order: int64 [h*w]."""
    n = h * w
    if order == "raster":
        return np.arange(n, dtype=np.int64)
    if order == "permutation":
        return np.argsort(_splitmix64(np.arange(n, dtype=np.uint64)), kind="stable").astype(np.int64)
    if order == "lds":
        seen = np.zeros(n, dtype=bool)
        out: list[np.ndarray] = []
        start, chunk = 0, max(4 * n, 64)
        while start < 64 * n and len(out) < n:
            i = np.arange(start, start + chunk, dtype=np.float64)
            y = np.floor(((0.5 + i / (_G * _G)) % 1.0) * h).astype(np.int64)
            x = np.floor(((0.5 + i / _G) % 1.0) * w).astype(np.int64)
            cells = np.minimum(y, h - 1) * w + np.minimum(x, w - 1)
            _, first = np.unique(cells, return_index=True)
            fresh = cells[np.sort(first)]
            fresh = fresh[~seen[fresh]]
            seen[fresh] = True
            out.append(fresh)
            start += chunk
            if seen.all():
                break
        out.append(np.flatnonzero(~seen))  # never in practice: any cells the sequence missed
        return np.concatenate(out).astype(np.int64)
    raise ValueError(f"unknown order {order!r}; expected one of {ORDERS}")


@dataclass(frozen=True)
class CodingSchedule:
    """S stages, power-law exponent alpha (stored in thousandths), position order."""

    stages: int = 8
    alpha: float = 2.2
    order: str = "lds"

    def __post_init__(self) -> None:
        # The header stores alpha in thousandths: both sides must use that value.
        object.__setattr__(self, "alpha", round(self.alpha * 1000) / 1000)
        if self.order not in ORDERS or not 1 <= self.stages <= 64 or self.alpha < 0:
            raise ValueError(f"invalid schedule {self}")

    def cumulative(self, n: int) -> list[int]:
        """c(0) = 0, ..., c(S) = n: positions coded after each stage."""
        S = self.stages
        c = [0]
        for t in range(1, S + 1):
            v = n if t == S else int(np.floor(n * (t / S) ** self.alpha + 0.5))
            lo = c[-1] + (1 if n - c[-1] >= S - t + 1 else 0)  # at least one per stage while possible
            hi = n - max(0, min(S - t, n - c[-1] - 1))
            c.append(min(max(v, lo), hi) if t < S else n)
        return c

    def counts(self, h: int, w: int) -> list[int]:
        """Positions coded at each stage: S ints summing to h*w."""
        c = self.cumulative(h * w)
        return [c[t + 1] - c[t] for t in range(self.stages)]

    def stages_for(self, h: int, w: int) -> list[np.ndarray]:
        """Flat positions (int64) coded at each stage; together a permutation of range(h*w)."""
        order = position_order(h, w, self.order)
        c = self.cumulative(h * w)
        return [order[c[t] : c[t + 1]] for t in range(self.stages)]
