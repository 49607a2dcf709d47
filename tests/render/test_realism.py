"""Tests for codec.render.realism: how ``decoder="realism"`` mixes the realism decoder's image
with the fidelity decoder's, and the strength a bundle gives each rate."""

import json
import math

import numpy as np
import pytest
from PIL import Image

import codec
from codec.demo import sample_image_path
from codec.errors import CodecError
from codec.format.checks import share
from codec.render.realism import blend, strength_at


def test_blend_is_exact_at_its_ends_and_rounds_between():
    rng = np.random.default_rng(0)
    f, r = (rng.integers(0, 256, (7, 9, 3), dtype=np.uint8) for _ in range(2))
    assert blend(f, r, 0.0) is f and blend(f, r, 1.0) is r
    for s in (0.25, 0.5, 0.7):
        want = f.astype(np.float64) + s * (r.astype(np.float64) - f)
        got = blend(f, r, s)
        assert got.dtype == np.uint8 and got.shape == f.shape
        # steps of 1/256 and round-half-up of the integer sum: within one level of the exact mix
        assert np.abs(got - want).max() <= 0.5 + 255 / 512 + 1e-9
    w = round(0.7 * 256)
    assert np.array_equal(blend(f, r, 0.7), (f.astype(int) * (256 - w) + r.astype(int) * w + 128) // 256)
    tall = [rng.integers(0, 256, (600, 5, 3), dtype=np.uint8) for _ in range(2)]  # bands of rows
    w = round(0.3 * 256)
    assert np.array_equal(
        blend(*tall, 0.3), (tall[0].astype(int) * (256 - w) + tall[1].astype(int) * w + 128) // 256
    )
    same = np.full((2, 2, 3), 77, np.uint8)
    assert np.array_equal(blend(same, same.copy(), 0.37), same)  # a mix of equal images is the image


@pytest.mark.parametrize("bad", [-0.01, 1.01, math.nan, math.inf, True, "0.5", None])
def test_strengths_outside_0_to_1_or_not_numbers_are_refused(bad):
    with pytest.raises(CodecError, match="realism strength"):
        share("realism strength", bad, CodecError)
    assert share("s", 0) == 0.0 and share("s", np.float32(1.0)) == 1.0


def test_a_table_gives_each_rate_its_strength():
    table = (0.5, 0.6, 1.0, 1.0)
    assert strength_at(None, 2.0) == 1.0  # no table: the realism decoder alone
    assert strength_at(table, 1.0) == 0.5 and strength_at(table, 0.2) == 0.5  # at least one code
    assert strength_at(table, 1.6) == 0.6 and strength_at(table, 2.4) == 0.6  # the nearest count
    assert strength_at(table, 1.5) == 0.6 and strength_at(table, 2.5) == 1.0  # halves round up
    assert strength_at(table, 3.0) == 1.0 and strength_at(table, 40.0) == 1.0


def default_with(tmp_path, *strengths, source=None):
    from codec.engine.registry import shipped_path
    from codec.models.io import rewrite_bundle

    out = tmp_path / f"s{len(list(tmp_path.iterdir()))}.safetensors"
    return rewrite_bundle(source or shipped_path("default"), out, realism_strength=strengths)


def test_a_bundle_carries_its_strengths_and_decodes_with_them(tmp_path):
    """The default model with strengths 0.75 at 1-2 codes per position, then 1: a file at m=2
    shows 3/4 of the realism decoder's image, a file at m=4 all of it; the model id and the
    fidelity image do not change; realism_strength= overrides the table."""
    from codec.engine.loading import get_codec, get_decoder
    from codec.format.bundle import read_bundle

    path = default_with(tmp_path, 0.75, 0.75, 1)
    b = read_bundle(path)
    assert b.realism_strength() == (0.75, 0.75) + (1.0,) * 30
    assert b.model_id == get_decoder("default").model_id
    img = Image.open(sample_image_path()).crop((64, 64, 256, 192))
    low, high = codec.compress(img, m=2), codec.compress(img, m=4)
    ours, shipped = get_decoder(path), get_decoder("default")
    fid, real = shipped.decompress(low), shipped.decompress(low, decoder="realism", realism_strength=1)
    assert np.array_equal(ours.decompress(low), fid)
    assert np.array_equal(ours.decompress(low, decoder="realism"), blend(fid, real, 0.75))
    alone = shipped.decompress(high, decoder="realism", realism_strength=1)
    assert np.array_equal(ours.decompress(high, decoder="realism"), alone)
    assert np.array_equal(ours.decompress(low, decoder="realism", realism_strength=1), real)
    assert np.array_equal(ours.decompress(low, decoder="realism", realism_strength=0), fid)
    # the torch codec reads the same table: within a level per decoder of the portable pixels
    torch_mix = get_codec(path).decompress(low, decoder="realism").astype(int)
    assert np.abs(torch_mix - blend(fid, real, 0.75)).max() <= 2
    with pytest.raises(CodecError, match="needs decoder='realism'"):
        ours.decompress(low, realism_strength=0.5)
    with pytest.raises(CodecError, match="from 0 to 1"):
        ours.decompress(low, decoder="realism", realism_strength=2)


def test_bad_strength_tables_are_refused(tmp_path):
    from codec.format import schema
    from codec.format.bundle import Bundle, read_bundle

    path = default_with(tmp_path, 0.5)
    b = read_bundle(path)
    assert b.realism_strength() == (0.5,) * 32  # one value goes on to M
    for text in ("[0.5]", "[2.0]", json.dumps([0.5] * 31 + [-1]), "nonsense", json.dumps({"a": 1})):
        bad = Bundle(b.path, b.tensors, {**b.meta, schema.REALISM_STRENGTH: text}, b.model_id)
        with pytest.raises(CodecError, match="realism_strength needs 32 numbers"):
            bad.realism_strength()
    bare = {k: v for k, v in b.tensors.items() if not k.startswith(schema.REALISM_DECODER)}
    with pytest.raises(CodecError, match="and a realism decoder"):
        Bundle(b.path, bare, b.meta, b.model_id).realism_strength()
    with pytest.raises(ValueError, match="from 0 to 1"):
        default_with(tmp_path, 0.5, 1.5)
