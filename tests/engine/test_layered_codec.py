"""Tests for codec.engine.layered_codec: one nested model for every rate, quality layers, rate control
(tiny untrained models)."""

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codec import CodecError
from codec.engine.layered_codec import LayeredImageCodec, RatePoint
from codec.entropy.schedule import CodingSchedule, position_order
from codec.format import bitstream
from codec.models.layered import LayeredEntropyModel
from codec.models.mim import MIMConfig
from codec.models.pqvae import PQVAE, PQVAEConfig

GROUPS = [1, 1, 2, 2]  # M = 6: layers end at 1, 2, 4, 6 sub-vectors


def tiny_layered(seed=0, **quantizer) -> LayeredImageCodec:
    """A small nested model; ``quantizer``: PQVAEConfig's code_groups= and groups= (residual
    stages), default product quantization."""
    torch.manual_seed(seed)
    ae = PQVAE(PQVAEConfig(channels=[8, 16], latent_dim=24, M=6, K=16, nested=True, **quantizer))
    ae.train()
    ae(torch.rand(2, 3, 32, 32))  # codebooks from data
    with torch.no_grad():
        ae.fill.normal_()
    em = LayeredEntropyModel(
        MIMConfig(
            M=6,
            K=16,
            dim=32,
            depth=1,
            decoder_depth=1,
            heads=4,
            groups=GROUPS,
            channel_dim=16,
            channel_depth=1,
        )
    )
    with torch.no_grad():  # an untrained model predicts uniformly: give the layers real work
        em.channel.head.weight.normal_()
    return LayeredImageCodec(ae, em, CodingSchedule(4, 2.2, "lds"), model_id=b"layr", amp="off")


CODEC = tiny_layered()


def image(seed=0, h=45, w=61):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def tokens_of(img):
    return CODEC.autoencoder.encode(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)[0]


def reference(img, m, extra=0):
    """What the autoencoder makes of the image's tokens with m sub-vectors everywhere, m + 1 at
    the first ``extra`` positions of the schedule's order."""
    t = tokens_of(img)
    _, h, w = t.shape
    counts = torch.full((h * w,), m)
    counts[torch.from_numpy(position_order(h, w, "lds")[:extra])] += 1
    y = CODEC.autoencoder.decode(t[None], img.shape[:2], counts=counts.view(1, h, w))
    return (y[0] * 255).round().byte().permute(1, 2, 0).numpy()


@pytest.mark.parametrize("m", [1, 2, 3, 4, 6])
def test_round_trip_every_m(m):
    img = image()
    data = CODEC.compress(img, m=m)
    h = bitstream.unpack(data)[0]
    assert (h.version, h.m, h.extra, h.coded_layers) == (2, m, 0, [0, 1, 2, 3, 3, 4, 4][m])
    np.testing.assert_array_equal(CODEC.decompress(data), reference(img, m))


@settings(max_examples=15)
@given(m=st.integers(1, 5), extra=st.integers(1, 149), seed=st.integers(0, 3))
def test_fractional_rate_points_round_trip(m, extra, seed):
    img = image(seed, 40, 60)  # token grid 10 x 15
    data = CODEC.pack_tokens(tokens_of(img).numpy(), img.shape[:2], RatePoint(m, extra))
    np.testing.assert_array_equal(CODEC.decompress(data), reference(img, m, extra))


def test_sizes_grow_with_m():
    img = image(3)
    sizes = [len(CODEC.compress(img, m=m)) for m in range(1, 7)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_truncated_file_is_the_lower_rate_file(layers):
    img = image(5)
    full = CODEC.compress(img, m=6)  # 4 layers
    cut = bitstream.truncate(full, layers)
    m = [1, 2, 4, 6][layers - 1]
    assert cut == CODEC.compress(img, m=m)  # byte for byte
    np.testing.assert_array_equal(CODEC.decompress(full, layers=layers), CODEC.decompress(cut))


def test_decoding_the_first_layers_parses_the_file_once(monkeypatch):
    """decompress(layers=) cuts the file it has already read, without packing and parsing it again."""
    full = CODEC.compress(image(5), m=6)
    expected = CODEC.decompress(bitstream.truncate(full, 2))
    calls, unpack = [], bitstream.unpack
    monkeypatch.setattr(bitstream, "unpack", lambda *a, **k: calls.append(1) or unpack(*a, **k))
    np.testing.assert_array_equal(CODEC.decompress(full, layers=2), expected)
    assert len(calls) == 1


def test_truncate_to_bytes_and_refusals():
    img = image(6)
    full = CODEC.compress(img, quality=100)
    sizes = [len(bitstream.truncate(full, n)) for n in (1, 2, 3, 4)]
    assert sizes == sorted(sizes)
    assert bitstream.truncate(full, max_bytes=sizes[2]) == bitstream.truncate(full, 3)
    assert bitstream.truncate(full, max_bytes=sizes[2] - 1) == bitstream.truncate(full, 2)
    assert bitstream.truncate(full, max_bytes=1) == bitstream.truncate(full, 1)  # at least one layer
    with pytest.raises(CodecError, match="layers must be in 1..4"):
        bitstream.truncate(full, 5)
    with pytest.raises(CodecError, match="layers must be in"):
        CODEC.decompress(full, layers=0)


def test_size_never_exceeded_and_bpp_lands_near():
    img = image(7, 64, 96)
    lo, hi = len(CODEC.compress(img, m=1)), len(CODEC.compress(img, m=6))
    for n in np.linspace(lo, hi, 7).astype(int):
        data = CODEC.compress(img, size=int(n))
        assert len(data) <= n
        assert len(data) >= n - 24  # the best file not larger: within a symbol or two
    with pytest.raises(CodecError, match="fits in"):
        CODEC.compress(img, size=lo - 40)
    pixels = 64 * 96
    for target in np.linspace(lo, hi, 5)[1:-1] * 8 / pixels:
        got = len(CODEC.compress(img, bpp=float(target))) * 8 / pixels
        assert abs(got - target) / target < 0.05


def test_quality_is_monotone():
    img = image(8)
    sizes = [len(CODEC.compress(img, quality=q)) for q in (0, 10, 25, 50, 75, 90, 100)]
    assert sizes == sorted(sizes)
    assert CODEC.compress(img, quality=100) == CODEC.compress(img, m=6)
    assert CODEC.compress(img, quality=0) == CODEC.compress(img, m=1)


def test_without_a_rate_the_default_quality():
    from codec.engine.layered_codec import DEFAULT_QUALITY

    img = image(9)
    data = CODEC.compress(img)
    assert data == CODEC.compress(img, quality=DEFAULT_QUALITY)
    assert len(CODEC.compress(img, m=1)) < len(data) < len(CODEC.compress(img, m=6))


def test_bad_rate_arguments():
    img = image()
    with pytest.raises(ValueError, match="at most one"):
        CODEC.compress(img, m=2, bpp=0.1)
    for kw in (dict(m=0), dict(m=7), dict(quality=101), dict(bpp=0.0), dict(bpp=-1.0)):
        with pytest.raises(ValueError):
            CODEC.compress(img, **kw)


def test_corrupt_layer_is_detected():
    img = image(9)
    data = CODEC.compress(img)
    header, payload = bitstream.unpack(data)
    bad = dataclasses.replace(
        header, layer_crcs=(header.layer_crcs[0],) + tuple(c ^ 1 for c in header.layer_crcs[1:])
    )
    with pytest.raises(CodecError, match="layer 1 fails its checksum"):
        CODEC.decompress(bitstream.pack(bad, payload))


def test_other_model_refused():
    data = CODEC.compress(image())
    other = tiny_layered(seed=1)
    other.model_id = b"othr"
    with pytest.raises(CodecError, match="made with model"):
        other.decompress(data)


def test_channel_logits_in_bands_are_those_of_the_whole_grid():
    """Grids taller than BAND_ROWS get their channel-model logits band by band (bounded
    memory): the same floats as one call over the whole grid, and files that round trip."""
    from codec.entropy.token_coding import BAND_ROWS

    img = image(3, h=4 * (2 * BAND_ROWS + 5), w=40)  # 37 rows of positions: three bands
    tok = tokens_of(img).numpy()
    coder = CODEC.tokens
    for g in (1, 2, 3):
        whole = coder.logits_model(portable=True).group_logits(tok[: coder.bounds[g]], g)
        bands = list(coder.group_logit_bands(tok, g))
        assert len(bands) == 3
        assert np.array_equal(np.concatenate([b for _, b in bands]), whole)
    for m, extra in ((4, 0), (2, 77), (5, 3)):
        data = (
            CODEC.compress(img, m=m)
            if not extra
            else CODEC.pack_tokens(tokens_of(img).numpy(), img.shape[:2], RatePoint(m, extra))
        )
        out = CODEC.decompress(data)
        np.testing.assert_array_equal(out, reference(img, m, extra))


def test_layer_costs_are_what_each_layer_stream_takes():
    img = image(4, h=64, w=80)
    tok = tokens_of(img).numpy()
    coder = CODEC.tokens
    header, _ = bitstream.unpack(CODEC.pack_tokens(tok, img.shape[:2], RatePoint(6, 0)))
    for g in (1, 2, 3):
        lo, hi = coder.bounds[g], coder.bounds[g + 1]
        bits = coder.layer_costs(tok, g)
        assert bits.shape == (hi - lo, tok.shape[1] * tok.shape[2]) and np.all(bits > 0)
        assert abs(bits.sum() / 8 - header.layer_bytes[g]) <= 4  # the range coder's few bytes
        np.testing.assert_array_equal(coder.layer_costs(tok, g, lo + 1), bits[:1])  # codes < lo + 1
        assert coder.layer_costs(tok, g, lo).shape == (0, bits.shape[1])


def test_codecs_say_whether_they_are_layered():
    """The capability that callers branch on (no duck-typing on method names)."""
    from codec.engine.api import ImageCodec
    from codec.engine.layered_codec import LayeredImageCodec
    from codec.engine.loading import get_codec

    assert LayeredImageCodec.layered and not ImageCodec.layered
    assert get_codec("default").layered and not get_codec("extreme-s32-m1-k16").layered


def test_a_rate_object_and_its_keywords_give_the_same_file():
    from codec.format.checks import Rate

    c = tiny_layered()
    img = np.random.default_rng(3).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    assert c.compress(img, rate=Rate(m=2)) == c.compress(img, m=2)
    assert c.compress(img, rate=Rate(quality=60)) == c.compress(img, quality=60)
    with pytest.raises(ValueError, match="not both"):
        c.compress(img, rate=Rate(m=2), m=3)


def test_files_are_written_in_at_most_base_stages_stages():
    """A model with more base-layer stages than BASE_STAGES writes BASE_STAGES (the decoder runs
    the masked transformer once per stage), one with fewer its own; both decode."""
    from codec.engine.layered_codec import BASE_STAGES

    own = CodingSchedule(BASE_STAGES + 2, 2.2, "lds")  # the model's own schedule
    many = LayeredImageCodec(CODEC.autoencoder, CODEC.entropy_model, own, model_id=b"layr", amp="off")
    img = image()
    for codec, stages in ((many, BASE_STAGES), (CODEC, 4)):
        assert codec.schedule.stages == stages
        data = codec.compress(img, m=2)
        assert bitstream.unpack(data)[0].stages == stages
        np.testing.assert_array_equal(codec.decompress(data), reference(img, 2))
