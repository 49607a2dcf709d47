"""codec.transforms: RandomCompression (torchvision v2 style) and the batched NeuralCompression."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision import tv_tensors

import codec
from codec import classical
from codec.engine.loading import get_codec
from codec.transforms import NeuralCompression, RandomCompression, compress_decode

SAMPLE = Path(codec.__file__).parent / "data" / "sample.png"


def photo(h=64, w=80, seed=0) -> np.ndarray:
    """A smooth random image with some edges (compresses like a photo, not like noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)).astype(np.int16)
    img[h // 3 : h // 2, :] += 60
    return np.clip(img + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)


def inputs():
    img = photo()
    t = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    return {
        "pil_rgb": Image.fromarray(img),
        "pil_l": Image.fromarray(img).convert("L"),
        "pil_rgba": Image.fromarray(np.dstack([img, np.full(img.shape[:2], 200, np.uint8)])),
        "uint8": t,
        "float32": t.float() / 255,
        "float64_batch": torch.stack([t, t.flip(-1)]).double() / 255,
        "gray_float16": (t[:1].float() / 255).half(),
        "tv_image": tv_tensors.Image(t),
    }


@pytest.mark.parametrize("kind", list(inputs()))
@pytest.mark.parametrize("codec", ["jpeg", "webp", "ours"])
def test_type_dtype_device_kept_and_input_untouched(kind, codec):
    x = inputs()[kind]
    before = np.array(x).copy() if isinstance(x, Image.Image) else x.clone()
    y = RandomCompression(codec, bpp=(0.5, 1.5), seed=0)(x)
    assert type(y) is type(x)
    if isinstance(x, Image.Image):
        assert (y.mode, y.size) == (x.mode, x.size)
        assert np.array_equal(np.array(x), before)  # untouched
        if x.mode == "RGBA":
            assert np.array_equal(np.array(y)[..., 3], np.array(x)[..., 3])  # alpha kept
        assert not np.array_equal(np.array(y), before)  # compressed: changed
    else:
        assert (y.shape, y.dtype, y.device) == (x.shape, x.dtype, x.device)
        assert torch.equal(x, before)
        assert not torch.equal(y, x)
        assert float((y.double() - x.double()).abs().mean()) < (40 if x.dtype == torch.uint8 else 40 / 255)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_kept_on_cuda():
    x = inputs()["float32"].cuda()
    y = RandomCompression("jpeg", bpp=1.0, seed=0)(x)
    assert y.device == x.device and y.dtype == x.dtype


def test_probability_and_passthrough():
    x = inputs()["uint8"]
    assert RandomCompression("jpeg", p=0.0)(x) is x
    label = torch.tensor(3)
    img, out_label = RandomCompression("jpeg", p=1.0, seed=0)(x, label)
    assert out_label is label and not torch.equal(img, x)
    t, n = RandomCompression("jpeg", p=0.3, seed=1), 200
    applied = sum(t.make_params([x])["apply"] for _ in range(n))
    assert 0.2 * n < applied < 0.4 * n


def test_seed_reproducible_and_pickle_round_trip():
    x = inputs()["float32"]
    a, b = RandomCompression(("jpeg", "webp"), seed=7), RandomCompression(("jpeg", "webp"), seed=7)
    outs_a, outs_b = [a(x) for _ in range(4)], [b(x) for _ in range(4)]
    assert all(torch.equal(u, v) for u, v in zip(outs_a, outs_b))
    other = RandomCompression(("jpeg", "webp"), seed=8)
    fresh = RandomCompression(("jpeg", "webp"), seed=7)
    assert [other.make_params([x]) for _ in range(3)] != [fresh.make_params([x]) for _ in range(3)]
    c = pickle.loads(pickle.dumps(a))  # mid-stream: the copy continues where ``a`` is
    assert repr(c) == repr(a)
    assert [c.make_params([x]) for _ in range(5)] == [a.make_params([x]) for _ in range(5)]


def test_repr_shows_settings():
    r = repr(RandomCompression(("jpeg", "avif"), bpp=(0.2, 0.8), quality=(10, 50), p=0.5, seed=3))
    for part in (
        "RandomCompression(",
        "'jpeg', 'avif'",
        "bpp=(0.2, 0.8)",
        "quality=(10, 50)",
        "p=0.5",
        "seed=3",
    ):
        assert part in r


@pytest.mark.parametrize(
    "kwargs",
    [
        {"codecs": ()},
        {"codecs": ("bmp",)},
        {"codecs": ("jpeg:model",)},
        {"bpp": 0},
        {"bpp": (0.8, 0.2)},
        {"bpp": (0.1, 30)},
        {"quality": (-1, 50)},
        {"quality": (60, 40)},
        {"quality": (0, 101)},
        {"p": -0.1},
        {"p": 1.5},
        {"seed": -1},
    ],
)
def test_parameter_bounds_are_rejected(kwargs):
    with pytest.raises(ValueError):
        RandomCompression(**kwargs)


def test_bad_tensors_are_rejected():
    t = RandomCompression("jpeg", seed=0)
    with pytest.raises(ValueError):
        t(torch.zeros(4, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError):
        t(torch.zeros(3, 16, 16, dtype=torch.int32))


@settings(max_examples=12)
@example(codec="webp", lo=1.375, width=1.40625, seed=0)  # the range falls between WebP q96 and q100
@given(
    codec=st.sampled_from(["jpeg", "webp", "avif"]),
    lo=st.floats(0.6, 1.6),
    width=st.floats(1.4, 2.0),
    seed=st.integers(0, 1000),
)
def test_bpp_search_lands_inside_its_range(codec, lo, width, seed):
    img = np.asarray(Image.open(SAMPLE).convert("RGB"))[:96, :128]
    bounds = (lo, lo * width)
    t = RandomCompression(codec, bpp=bounds, seed=seed)
    target = t.make_params([img])["bpp"]
    assert bounds[0] <= target <= bounds[1]
    _, nbytes = compress_decode(img, codec, bpp=target, bounds=bounds)
    got = nbytes * 8 / (img.shape[0] * img.shape[1])
    rates = [
        len(classical.encode(img, codec, q)) * 8 / (img.shape[0] * img.shape[1])
        for q in classical.SETTINGS[codec][0]
    ]
    if any(bounds[0] <= r <= bounds[1] for r in rates):  # some setting lands inside: the search finds one
        assert bounds[0] <= got <= bounds[1]
    else:  # the range falls between two adjacent settings: the nearer of them
        below = max((r for r in rates if r < bounds[0]), default=None)
        above = min((r for r in rates if r > bounds[1]), default=None)
        assert got in (below, above)


def test_quality_range_is_used():
    img = photo()
    t = RandomCompression("jpeg", quality=(30, 30), seed=0)
    out = t(torch.from_numpy(img).permute(2, 0, 1))
    assert np.array_equal(out.permute(1, 2, 0).numpy(), classical.decode(classical.encode(img, "jpeg", 30)))


def test_ours_is_the_real_file():
    """The default (nested) model codes at the drawn bpp with its own rate control."""
    img = photo()
    out = RandomCompression("ours", seed=0)(Image.fromarray(img))
    bpp = RandomCompression("ours", seed=0).make_params([])["bpp"]
    c = get_codec(None)
    assert np.array_equal(np.asarray(out), c.decompress(c.compress(img, bpp=bpp)))
    assert not np.array_equal(np.asarray(out), c.decompress(c.compress(img)))  # not its full rate


def test_dataloader_workers_differ_and_repeat():
    class Same(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return inputs()["uint8"]

    def run(epochs=1):
        torch.manual_seed(0)  # what a training script does; DataLoader draws worker seeds from it
        t = RandomCompression(("jpeg", "webp"), bpp=(0.3, 3.0), seed=5)
        loader = torch.utils.data.DataLoader(_Mapped(Same(), t), batch_size=None, num_workers=2)
        return [list(loader) for _ in range(epochs)]

    first, second = run(2), run(2)
    for a, b in zip(first, second):  # reproducible, epoch by epoch
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    # worker 0 gets items 0, 2, ...; worker 1 items 1, 3, ...: same seed, different streams
    assert not torch.equal(first[0][0], first[0][1])
    # and the next epoch (new worker processes) draws anew
    assert not all(torch.equal(u, v) for u, v in zip(first[0], first[1]))


class _Mapped(torch.utils.data.Dataset):
    def __init__(self, base, transform):
        self.base, self.transform = base, transform

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return self.transform(self.base[i])


@pytest.fixture(scope="module")
def neural():
    return NeuralCompression()


def test_neural_matches_the_file(neural):
    imgs = [photo(64, 80, s) for s in range(3)]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
    y, bpp = neural(x)
    assert y.dtype == torch.uint8 and y.shape == x.shape and bpp.shape == (3,)
    c = get_codec(None)
    for i, img in enumerate(imgs):
        data = c.compress(img, m=neural.m)  # the default model is nested: m sub-vectors
        real = len(data) * 8 / (64 * 80)
        assert abs(float(bpp[i]) - real) < 0.02 * real + 24 / (64 * 80)  # a few bytes at most
        ref = c.decompress(data).astype(int)  # bf16 decoder there: pixels differ slightly
        assert np.abs(y[i].permute(1, 2, 0).numpy().astype(int) - ref).mean() < 1.5
    # a batch gives each image what it gets alone
    y0, bpp0 = neural(x[:1])
    assert torch.equal(y0[0], y[0]) and torch.allclose(bpp0[0], bpp[0], rtol=1e-5)


def test_neural_keeps_float_dtype_and_gives_the_raw_bound():
    n = NeuralCompression(estimate=False)
    x = torch.rand(2, 3, 48, 64, dtype=torch.float64)
    y, bpp = n(x)
    assert y.dtype == torch.float64 and y.shape == x.shape and not torch.equal(y, x)
    cfg = n.autoencoder.cfg
    header = n.header_bytes(48, 64) * 8 / (48 * 64)
    raw = cfg.raw_bpp * n.m / cfg.M  # the default model is nested: m of its M sub-vectors
    assert torch.allclose(bpp, torch.full((2,), raw + header), rtol=1e-5)
    assert not n.train().training  # stays frozen
    with pytest.raises(ValueError):
        n(torch.rand(3, 48, 64))


@pytest.mark.parametrize("m", [None, 1, 2, "M"])
def test_neural_with_a_nested_model_matches_its_file_at_m(layered_bundle, m):
    from codec.engine.loading import load_codec

    c = load_codec(layered_bundle)
    c.amp = "off"  # float32 decoders on both sides: identical pixels
    M = c.autoencoder.cfg.M
    n = NeuralCompression(layered_bundle, amp="off", m=M if m == "M" else m)
    assert n.m == (M if m == "M" else m or round(1 + (M - 1) * 0.3))  # default: quality 30
    imgs = [photo(48, 64, s) for s in range(2)]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
    y, bpp = n(x)
    for i, img in enumerate(imgs):
        data = c.compress(img, m=n.m)
        real = len(data) * 8 / (48 * 64)
        assert abs(float(bpp[i]) - real) < 0.02 * real + 24 / (48 * 64)
        # float32 both sides; the decoder's batch of 2 against 1 may round a pixel differently
        diff = np.abs(y[i].permute(1, 2, 0).numpy().astype(int) - c.decompress(data))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_neural_refuses_an_m_the_model_cannot_code(layered_bundle):
    with pytest.raises(ValueError, match="m must be in"):
        NeuralCompression(layered_bundle, m=0)
    with pytest.raises(ValueError, match="one rate"):
        NeuralCompression("extreme-s32-m1-k16", m=2)


def test_an_unknown_model_is_refused_when_the_transform_is_built(layered_bundle, tmp_path):
    """ours:MODEL with no such bundle or shipped name fails at construction, not in a worker."""
    with pytest.raises(ValueError, match="nosuch"):
        RandomCompression("ours:nosuch")
    with pytest.raises(ValueError, match="missing"):
        RandomCompression(("jpeg", f"ours:{tmp_path / 'missing.safetensors'}"))
    RandomCompression(("jpeg", f"ours:{layered_bundle}", "ours:extreme-s32-m1-k16"))  # these exist


def test_nan_or_inf_images_are_refused(layered_bundle):
    """Clamped and cast, NaN would pass as black pixels and give a finite, meaningless result."""
    x = torch.rand(1, 3, 32, 32)
    x[0, 1, 5, 7] = float("nan")
    t = RandomCompression("jpeg", bpp=0.5, seed=0)
    n = NeuralCompression(layered_bundle, amp="off")
    for bad in (x, x.half(), torch.where(torch.isnan(x), torch.tensor(float("inf")), x)):
        with pytest.raises(ValueError, match="finite"):
            t(bad)
        with pytest.raises(ValueError, match="finite"):
            n(bad.float())
    assert torch.isfinite(n(torch.rand(1, 3, 32, 32))[0]).all()  # finite images pass
