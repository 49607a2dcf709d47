"""Tests for codec.bench.bdrate on curves with known answers."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec.bench.bdrate import bd_rate

CURVE = [(0.1, 26.0), (0.2, 28.5), (0.4, 31.0), (0.8, 33.8)]


def scaled(curve, f):
    return [(r * f, q) for r, q in curve]


def test_identical_curves_give_zero():
    assert bd_rate(CURVE, CURVE) == pytest.approx(0.0, abs=1e-9)


@given(f=st.floats(0.2, 5.0))
def test_a_constant_rate_factor_is_found_exactly(f):
    assert bd_rate(CURVE, scaled(CURVE, f)) == pytest.approx(100 * (f - 1), abs=1e-6)


def test_half_the_rate_is_minus_fifty_and_antisymmetric():
    assert bd_rate(CURVE, scaled(CURVE, 0.5)) == pytest.approx(-50.0)
    assert bd_rate(scaled(CURVE, 0.5), CURVE) == pytest.approx(100.0)


def test_a_better_codec_has_negative_bd_rate():
    better = [(r, q + 1.0) for r, q in CURVE]
    assert bd_rate(CURVE, better) < 0 < bd_rate(better, CURVE)


def test_bpp_range_and_no_overlap():
    # 2x cheaper at the low end, the same points from 0.4 bpp up
    ref = CURVE + [(0.6, 32.4)]
    mixed = [(0.05, 26.0), (0.1, 28.5), (0.4, 31.0), (0.6, 32.4), (0.8, 33.8)]
    low, high = bd_rate(ref, mixed, (0.05, 0.15)), bd_rate(ref, mixed, (0.6, 0.8))
    assert low < -40 and high == pytest.approx(0.0, abs=1e-9)
    far = [(5.0, 40.0), (8.0, 45.0)]
    assert bd_rate(CURVE, far) is None
    assert bd_rate(CURVE, CURVE, (2.0, 3.0)) is None


def test_non_monotone_points_are_dropped_and_short_curves_refused():
    noisy = CURVE + [(0.3, 28.0)]  # worse than a cheaper point: ignored
    assert bd_rate(CURVE, noisy) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError):
        bd_rate(CURVE, [(0.1, 30.0)])
    assert math.isfinite(bd_rate(CURVE, [(0.1, 26.0), (0.8, 33.8)]))
