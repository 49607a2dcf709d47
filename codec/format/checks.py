"""Argument rules shared by the library, the CLI and the Pillow plugin: each rule is written
once here, so ``codec.compress``, ``Image.save(..., bpp=)`` and ``codec encode`` refuse the
same values with the same one-line message. Light to import (no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

from ..errors import CodecError

RATE_ARGS = ("bpp", "size", "quality", "m")
"""The rate-control arguments of a nested model; at most one per call."""


def integer(name: str, value: object, error: type[Exception] = ValueError) -> int:
    """``value`` as an int; ``error`` naming ``name`` for anything but an integer (bools, floats
    such as 2.5 or 2.0 and strings too: silently truncating them would hide a mistake)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise error(f"{name} must be an integer, got {value!r}")
    return int(value)


def finite(name: str, value: object, error: type[Exception] = ValueError) -> float:
    """``value`` as a float; ``error`` naming ``name`` unless it is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise error(f"{name} must be a finite number, got {value!r}")
    return float(value)


def share(name: str, value: object, error: type[Exception] = ValueError) -> float:
    """``value`` as a float from 0 to 1; ``error`` naming ``name`` otherwise (:func:`finite`)."""
    v = finite(name, value, error)
    if not 0.0 <= v <= 1.0:
        raise error(f"{name} must be from 0 to 1, got {value!r}")
    return v


@dataclass(frozen=True)
class Rate:
    """What a nested model's file should cost: at most one of ``bpp`` (bits per pixel > 0:
    the nearest file size the model offers), ``size`` (bytes >= 1: the best file not larger),
    ``quality`` (0..100, monotone in rate) or ``m`` (codes per position >= 1; the model
    checks its own range); ``Rate()``: the model's default. Checked once, when made
    (ValueError naming the argument); :func:`checked_rate` makes one with the CLI's names."""

    bpp: float | None = None
    size: int | None = None
    quality: float | None = None
    m: int | None = None

    def __post_init__(self) -> None:
        for k, v in _checked(self.bpp, self.size, self.quality, self.m, "").items():
            object.__setattr__(self, k, v)  # ints and floats, not numpy scalars or bools

    def __bool__(self) -> bool:
        """Whether a rate was asked for."""
        return any(getattr(self, k) is not None for k in RATE_ARGS)


def checked_rate(
    bpp: float | None = None,
    size: int | None = None,
    quality: float | None = None,
    m: int | None = None,
    *,
    flag: str = "",
) -> Rate:
    """The :class:`Rate` of the arguments that were given (not None); ValueError naming the
    argument, with ``flag`` before the names (``"--"`` for the command line)."""
    return Rate(**_checked(bpp, size, quality, m, flag))


def _checked(bpp, size, quality, m, flag: str) -> dict[str, float | int]:
    """The rule: at most one of them; ``bpp`` a finite number > 0; ``size`` an integer >= 1;
    ``quality`` a number in 0..100; ``m`` an integer >= 1."""
    given = {k: v for k, v in zip(RATE_ARGS, (bpp, size, quality, m)) if v is not None}
    if len(given) > 1:
        raise ValueError(
            f"give at most one of {', '.join(flag + k for k in RATE_ARGS)} "
            f"(got {', '.join(flag + k for k in given)})"
        )
    out: dict[str, float | int] = {}
    for k, v in given.items():
        name = flag + k
        if k in ("size", "m"):
            out[k] = integer(name, v)
            if out[k] < 1:
                raise ValueError(f"{name} must be at least 1, got {v!r}")
        else:
            out[k] = finite(name, v)
            if k == "bpp" and not out[k] > 0:
                raise ValueError(f"{name} must be positive, got {v!r}")
            if k == "quality" and not 0 <= out[k] <= 100:
                raise ValueError(f"{name} must be in 0..100, got {v!r}")
    return out


def checked_crop(crop: object, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``crop`` = (x, y, width, height) in pixels as ints, inside an image of ``size`` = (H, W);
    CodecError (a decode's error for bad arguments) naming the crop otherwise."""
    values = () if isinstance(crop, (str, bytes)) or not hasattr(crop, "__iter__") else tuple(crop)
    if len(values) != 4 or any(isinstance(v, bool) or not isinstance(v, Integral) for v in values):
        raise CodecError(f"crop must be 4 integers (x, y, width, height), got {crop!r}")
    x, y, w, h = (int(v) for v in values)
    if not (w >= 1 and h >= 1 and 0 <= x and 0 <= y and x + w <= size[1] and y + h <= size[0]):
        raise CodecError(f"crop {x},{y},{w},{h} is not inside the {size[1]}x{size[0]} image")
    return x, y, w, h
