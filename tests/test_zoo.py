"""The bundles shipped in the package: they load by name and code real images."""

import numpy as np
import pytest
from PIL import Image

import codec
from codec.demo import sample_image_path
from codec.zoo import get_codec, shipped_models


def test_shipped_models_are_listed_and_load_by_name():
    names = shipped_models()
    assert "default" in names and "extreme-s32-m1-k16" in names
    assert get_codec("default") is get_codec(None)  # cached, and the default
    with pytest.raises(codec.CodecError, match="shipped models"):
        get_codec("no-such-model")


def test_default_model_round_trip_on_a_crop():
    img = Image.open(sample_image_path()).convert("RGB").crop((200, 100, 328, 196))
    data = codec.compress(img)
    out = np.asarray(codec.decompress(data), dtype=np.float64)
    mse = np.mean((out - np.asarray(img, dtype=np.float64)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 22  # a trained model, not noise
    assert 8 * len(data) / (128 * 96) < 0.5


def test_extreme_model_fits_the_sample_in_200_bytes():
    img = Image.open(sample_image_path()).convert("RGB")
    data = codec.compress(img, model="extreme-s32-m1-k16")
    assert len(data) <= 200
    assert codec.decompress(data, model="extreme-s32-m1-k16").size == img.size
