"""Tests for codec.format.bundle's int8 storage: quantize_int8, widened, and the shipped default
whose realism decoder is stored so."""

import numpy as np
import pytest
from safetensors import safe_open

from codec.errors import CodecError
from codec.format import schema
from codec.format.bundle import quantize_int8, widened


def test_int8_weights_come_back_within_half_a_step_of_their_row():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, (6, 4, 3, 3)).astype(np.float32)
    w[2] = 0  # an all-zero row: scale 0, zeros back
    w[3, 0, 0, 0] = -1.0  # one large weight sets its row's step
    q, scale = quantize_int8(w)
    assert q.dtype == np.int8 and q.shape == w.shape and scale.dtype == np.float32 and scale.shape == (6,)
    assert np.abs(q).max() <= 127 and scale[2] == 0
    back = widened({"w": q, "w" + schema.INT8_SCALE: scale, "b": w[0, 0, 0]})
    assert set(back) == {"w", "b"} and back["w"].dtype == np.float32 and back["b"] is not None
    step = scale.reshape(-1, 1, 1, 1)
    assert np.all(np.abs(back["w"] - w) <= step / 2 + 1e-8)
    assert np.array_equal(back["w"][2], np.zeros_like(w[2]))
    assert np.array_equal(back["w"], q.astype(np.float32) * step)  # one float32 product per weight


@pytest.mark.parametrize(
    "case",
    ["no scale", "no tensor", "short scale", "nan scale", "negative scale", "float16 scale", "float weights"],
)
def test_a_malformed_int8_pair_is_refused(case):
    q, scale = quantize_int8(np.ones((3, 2), np.float32))
    t = {"w": q, "w" + schema.INT8_SCALE: scale}
    if case == "no scale":
        del t["w" + schema.INT8_SCALE]
    elif case == "no tensor":
        del t["w"]
    elif case == "short scale":
        t["w" + schema.INT8_SCALE] = scale[:2]
    elif case == "nan scale":
        t["w" + schema.INT8_SCALE] = np.array([1, np.nan, 1], np.float32)
    elif case == "negative scale":
        t["w" + schema.INT8_SCALE] = -scale
    elif case == "float16 scale":
        t["w" + schema.INT8_SCALE] = scale.astype(np.float16)
    else:
        t["w"] = q.astype(np.float32)
    with pytest.raises(CodecError, match="int8"):
        widened(t)


def test_the_default_stores_its_realism_decoder_in_int8_and_fits_25_mb():
    """Issue 29's size target; the fidelity decoder stays float16 (its pixels are the files')."""
    from codec.engine.registry import shipped_path

    path = shipped_path("default")
    assert path.stat().st_size <= 25_000_000
    with safe_open(str(path), "np") as f:
        dtypes = {k: f.get_tensor(k).dtype for k in f.keys()}
    weights = [k for k in dtypes if k.startswith(schema.REALISM_DECODER) and k.endswith(".weight")]
    assert len(weights) == 15 and all(dtypes[k] == np.int8 for k in weights)
    assert all(dtypes[k] == np.float16 for k in dtypes if k.startswith(schema.AUTOENCODER + "decoder."))


def test_rewriting_a_bundle_keeps_its_int8_weights_and_a_forged_one_fails_in_one_line(tmp_path):
    """A rewrite (here: other strengths) copies the int8 tensors as they are, not quantized
    again; a bundle whose scale was dropped (hash recomputed) fails to decode with CodecError."""
    from safetensors.numpy import load_file, save_file

    import codec
    from codec.engine.loading import get_decoder
    from codec.engine.registry import shipped_path
    from codec.format.bundle import content_hash
    from codec.models.io import rewrite_bundle

    src = shipped_path("default")
    out = rewrite_bundle(src, tmp_path / "a.safetensors", realism_strength=[1.0])
    again = rewrite_bundle(out, tmp_path / "b.safetensors", realism_strength=[0.5])
    before, after = load_file(str(src)), load_file(str(again))
    assert set(before) == set(after)
    assert all(np.array_equal(before[k], after[k]) for k in before if k.startswith(schema.REALISM_DECODER))

    with safe_open(str(out), "np") as f:
        meta = f.metadata()
    tensors = load_file(str(out))
    del tensors[schema.REALISM_DECODER + "net.3.weight" + schema.INT8_SCALE]
    meta[schema.CONTENT_HASH] = content_hash(tensors, meta)
    forged = tmp_path / "forged.safetensors"
    save_file(tensors, str(forged), metadata=meta)
    data = codec.compress(np.full((32, 48, 3), 120, np.uint8), m=2)
    decoder = get_decoder(forged)
    assert decoder.decompress(data).shape == (32, 48, 3)  # the fidelity decoder does not need it
    with pytest.raises(CodecError, match="int8 tensor needs its scale"):
        decoder.decompress(data, decoder="realism")
