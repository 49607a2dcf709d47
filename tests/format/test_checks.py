"""Tests for codec.format.checks: the rate value object and its one rule."""

import numpy as np
import pytest

from codec.format.checks import Rate, checked_rate


def test_a_rate_is_checked_once_when_made_and_frozen():
    assert not Rate() and Rate(m=2) and Rate(bpp=0.1)
    assert Rate(m=np.int64(3)).m == 3 and type(Rate(m=np.int64(3)).m) is int
    assert type(Rate(quality=np.float32(50)).quality) is float
    for bad, name in [
        ({"m": 2.5}, "m"),
        ({"bpp": 0}, "bpp"),
        ({"size": 0}, "size"),
        ({"quality": 101}, "quality"),
        ({"bpp": float("nan")}, "bpp"),
    ]:
        with pytest.raises(ValueError, match=name):
            Rate(**bad)
    with pytest.raises(ValueError, match="at most one"):
        Rate(bpp=0.1, m=2)
    with pytest.raises(AttributeError):
        Rate(m=2).m = 3  # frozen: a checked rate stays checked


def test_the_command_lines_names_are_in_its_messages():
    assert checked_rate(m=4) == Rate(m=4)
    with pytest.raises(ValueError, match="--bpp"):
        checked_rate(bpp=-1, flag="--")
