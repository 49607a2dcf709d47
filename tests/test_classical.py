"""Tests for codec.classical: Pillow's codecs as the benchmark runs them."""

import numpy as np
import pytest
from PIL import Image

from codec import classical
from codec.demo import sample_image_path

IMG = np.asarray(Image.open(sample_image_path()).convert("RGB"))[100:196, 200:328]
RUNNABLE = [c for c in classical.SETTINGS if classical.missing(c) is None]


@pytest.mark.parametrize("codec", RUNNABLE)
def test_round_trip_and_rate_grows_with_quality(codec):
    qs = classical.SETTINGS[codec][0]
    low, high = classical.encode(IMG, codec, qs[1]), classical.encode(IMG, codec, qs[-2])
    assert len(low) < len(high)
    for data in (low, high):
        out = classical.decode(data)
        assert out.shape == IMG.shape and out.dtype == np.uint8
    err = [np.mean((classical.decode(d).astype(float) - IMG) ** 2) for d in (low, high)]
    assert err[1] < err[0]


@pytest.mark.parametrize("codec", [c for c in ("jpeg", "webp") if c in RUNNABLE])
def test_fit_size_and_fit_bpp(codec):
    budget = len(
        classical.encode(IMG, codec, classical.SETTINGS[codec][0][len(classical.SETTINGS[codec][0]) // 2])
    )
    q, data = classical.fit_size(IMG, codec, budget)
    assert len(data) <= budget and data == classical.encode(IMG, codec, q)
    assert classical.fit_size(IMG, codec, 10) is None  # smaller than any file
    pixels = IMG.shape[0] * IMG.shape[1]
    q, data = classical.fit_bpp(IMG, codec, 1.0)
    assert 0.5 < 8 * len(data) / pixels < 2.0


def test_missing_names_the_reason():
    assert "unknown codec" in classical.missing("bpg")
    assert classical.missing("jpeg") is None
