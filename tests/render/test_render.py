"""Tests for codec.render.portable: the decoder network without torch renders what torch's
renders (to float tolerance), and the same bits for every thread count (other builds,
instruction sets and architectures: the self-test in tests/entropy/test_portable.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

from codec.engine.registry import weights_dir
from codec.format.bundle import widened
from codec.models.pqvae import Decoder, PQVAEConfig
from codec.render.portable import PortableDecoder

SAMPLE = Path(__file__).resolve().parents[2] / "codec" / "data" / "sample.png"  # Kodak kodim23

CONFIGS = {
    # the linear path, blocks per stage, extra blocks, odd channel counts, an odd-sized latent
    "transform": (
        PQVAEConfig(
            channels=[8, 16], latent_dim=24, transform=True, blocks=[1, 2], extra_decoder_blocks=[1, 0]
        ),
        (5, 7),
    ),
    # no linear path; 16 to 48 channels (the vector paths), no block in one stage
    "plain": (PQVAEConfig(channels=[16, 32, 48], latent_dim=32, blocks=[2, 0, 1]), (4, 6)),
    # stride 32, extra blocks at the highest resolution
    "stride32": (
        PQVAEConfig(
            channels=[8, 8, 16, 16, 32], latent_dim=16, transform=True, extra_decoder_blocks=[1, 0, 0, 0, 2]
        ),
        (3, 2),
    ),
}


def randomized(cfg: PQVAEConfig, seed: int = 0) -> Decoder:
    """A decoder with He-like random weights (activations stay near unit scale) and spreads."""
    d = Decoder(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in d.parameters():
            fan = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * (1.3 / fan**0.5 if p.dim() > 1 else 0.1))
        if cfg.transform:
            d.scale.copy_(torch.rand(d.scale.shape, generator=g) + 0.5)
    return d.eval()


def numpy_params(model: torch.nn.Module) -> dict:
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


def torch_pixels(x: torch.Tensor) -> np.ndarray:
    """What the torch decoding path writes: [3, H, W] -> uint8 [H, W, 3]."""
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_torch(name):
    cfg, (h, w) = CONFIGS[name]
    d = randomized(cfg)
    p = PortableDecoder(cfg.to_dict(), numpy_params(d), threads=1)
    z = torch.randn(cfg.latent_dim, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = d(z[None])[0]
    got = p.forward(z.numpy())
    assert got.shape == (3, h * cfg.stride, w * cfg.stride) and got.dtype == np.float32
    scale = float(ref.abs().max())
    assert scale > 0.5  # a real image, not zeros
    np.testing.assert_allclose(got, ref.numpy(), rtol=0, atol=1e-4 * scale)
    # pixels: exactly torch's rounding of our floats; torch's own within one level, mostly equal
    H, W = h * cfg.stride - 1, w * cfg.stride - 3
    px = p.pixels(z.numpy(), (H, W))
    assert px.shape == (H, W, 3) and px.dtype == np.uint8
    np.testing.assert_array_equal(px, torch_pixels(torch.from_numpy(got))[:H, :W])
    theirs = torch_pixels(ref)[:H, :W]
    diff = np.abs(px.astype(int) - theirs)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


@pytest.mark.parametrize("size", [(1, 1), (1, 3), (6, 1), (5, 9)])
def test_latents_of_any_size_match_torch(size):
    """Sizes that are not whole 4 x 4 tiles at any stage, and bands of rows cut short."""
    cfg, _ = CONFIGS["transform"]
    d = randomized(cfg)
    z = torch.randn(cfg.latent_dim, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = d(z[None])[0].numpy()
    for threads in (1, 3):
        got = PortableDecoder(cfg.to_dict(), numpy_params(d), threads=threads).forward(z.numpy())
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_the_tolerance_can_fail():
    """One changed weight is seen: the comparison above is not vacuous."""
    cfg, (h, w) = CONFIGS["transform"]
    d = randomized(cfg)
    params = numpy_params(d)
    params["net.1.conv1.weight"] = params["net.1.conv1.weight"].copy()
    params["net.1.conv1.weight"][0, 0, 1, 1] += 0.01
    z = torch.randn(cfg.latent_dim, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = d(z[None])[0].numpy()
    got = PortableDecoder(cfg.to_dict(), params).forward(z.numpy())
    assert np.abs(got - ref).max() > 1e-4 * np.abs(ref).max()


def identity_decoder(stride_log2: int = 1) -> PortableDecoder:
    """A decoder whose image is its latent rearranged (linear path the identity, the network
    zero): pixels() then shows the rounding of chosen values."""
    cfg = PQVAEConfig(channels=[8] * stride_log2, latent_dim=3 * 4**stride_log2, transform=True)
    d = Decoder(cfg)
    s = cfg.stride
    with torch.no_grad():
        for p in d.parameters():
            p.zero_()
        d.linear.weight.copy_(torch.eye(cfg.latent_dim).reshape(cfg.latent_dim, 3, s, s))
    return PortableDecoder(cfg.to_dict(), numpy_params(d), threads=1)


def test_pixels_round_half_to_even_like_torch():
    p = identity_decoder()
    k = np.arange(256, dtype=np.float32)
    ties = ((k + 0.5) / 255).astype(np.float32)  # x * 255 lands on or next to k + 1/2
    near = np.concatenate([ties, np.nextafter(ties, 0), np.nextafter(ties, 1), k / 255])
    values = np.concatenate(
        [near, np.float32([-0.0, 0.0, -1e-30, -3.0, 1.0, 1.0000001, 7.0, 1e30, -1e30])]
    ).astype(np.float32)
    values = np.concatenate([values, np.zeros((-len(values)) % 12, np.float32)])
    z = values.reshape(12, -1, 1)  # each latent position holds a 2x2 patch of 3 channels
    img = p.forward(z)  # img[c, 2y + i, j] = z[4c + 2i + j, y, 0]
    assert np.array_equal(img, z.reshape(3, 2, 2, -1).transpose(0, 3, 1, 2).reshape(3, -1, 2))
    px = p.pixels(z, img.shape[1:])
    np.testing.assert_array_equal(px, torch_pixels(torch.from_numpy(img)))
    assert (px == 128).sum() > 0 and (px == 127).sum() > 0  # (127.5 / 255) -> 128 (ties to even)


def test_pixels_of_nan_are_zero():
    p = identity_decoder()
    z = np.full((12, 1, 1), np.nan, np.float32)
    assert (p.pixels(z, (2, 2)) == 0).all()


def test_threads_give_identical_bits():
    cfg = PQVAEConfig(channels=[16, 32], latent_dim=32, transform=True)
    p = PortableDecoder(cfg.to_dict(), numpy_params(randomized(cfg)), threads=1)
    z = np.random.default_rng(3).standard_normal((32, 21, 34)).astype(np.float32)
    outs, pix = [], []
    for t in (1, 2, 3):
        p.threads = t
        outs.append(p.forward(z))
        pix.append(p.pixels(z, (80, 130)))
    for o, x in zip(outs[1:], pix[1:]):
        assert np.array_equal(o.view(np.uint32), outs[0].view(np.uint32))
        assert np.array_equal(x, pix[0])


def test_bad_configs_parameters_and_inputs_are_refused():
    cfg, _ = CONFIGS["transform"]
    params = numpy_params(randomized(cfg))
    c = cfg.to_dict()
    with pytest.raises(ValueError, match="attention"):
        PortableDecoder({**c, "attention": True}, params)
    with pytest.raises(ValueError, match="unknown parameter net.99.weight"):
        PortableDecoder(c, {**params, "net.99.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"parameter net.0.bias has shape \[3\], expected \[16\]"):
        PortableDecoder(c, {**params, "net.0.bias": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="parameter scale was not given"):
        PortableDecoder(c, {k: v for k, v in params.items() if k != "scale"})
    with pytest.raises(ValueError, match="parameter extra.0.0.conv2.bias was not given"):
        PortableDecoder(c, {k: v for k, v in params.items() if k != "extra.0.0.conv2.bias"})
    with pytest.raises(ValueError, match="extra_decoder_blocks"):
        PortableDecoder({**c, "extra_decoder_blocks": [1]}, params)
    with pytest.raises(ValueError, match="blocks"):
        PortableDecoder({**c, "blocks": [1, 1, 1]}, params)
    p = PortableDecoder(c, params)
    for bad in (np.zeros((23, 4, 4)), np.zeros((24, 4)), np.zeros((24, 0, 3)), np.zeros((1, 24, 4, 4))):
        with pytest.raises(ValueError, match=r"the latent must be \[24, h, w\]"):
            p.forward(bad)
    z = np.zeros((24, 2, 3), np.float32)
    for size in ((9, 12), (8, 13), (0, 4)):
        with pytest.raises(ValueError, match="not within the decoded 8 x 12"):
            p.pixels(z, size)
    assert p.pixels(z, (8, 12)).shape == (8, 12, 3)


def test_finalize_frees_the_convolution_weights_it_transformed():
    """Only the transformed weights stay in memory: finalizing again needs them set again."""
    cfg, size = CONFIGS["transform"]
    params = numpy_params(randomized(cfg))
    p = PortableDecoder(cfg.to_dict(), params)
    z = np.random.default_rng(0).standard_normal((cfg.latent_dim, *size)).astype(np.float32)
    before = p.forward(z)
    with pytest.raises(ValueError, match=r"parameter (net|extra)\.[0-9.]+(conv[12]\.)?weight was not given"):
        p._model.finalize(1)
    for name, value in params.items():
        p._model.set(name, value)
    p._model.finalize(2)
    np.testing.assert_array_equal(p.forward(z), before)


def bundle(name: str) -> tuple[dict, dict]:
    path = weights_dir() / f"{name}.safetensors"
    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    return json.loads(meta["autoencoder_config"]), load_file(str(path))


@pytest.mark.parametrize(
    "name, prefix",
    [
        ("default", "autoencoder.decoder."),
        ("default", "realism_decoder."),
        ("extreme-s32-m1-k16", "autoencoder.decoder."),
    ],
)
def test_shipped_decoders_load_and_match_torch(name, prefix):
    config, tensors = bundle(name)
    p = PortableDecoder(config, tensors, prefix=prefix)  # every name and shape as torch's
    d = Decoder(PQVAEConfig(**config))
    d.load_state_dict(  # the realism decoder's weights are int8 with a scale in the bundle
        {
            k[len(prefix) :]: torch.from_numpy(v).float()
            for k, v in widened(tensors).items()
            if k.startswith(prefix)
        }
    )
    z = torch.randn(1, p.latent_dim, 3, 4, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = d.eval()(z)[0].numpy()
    np.testing.assert_allclose(p.forward(z[0].numpy()), ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_default_model_on_a_real_latent_at_kodak_size():
    """Kodak's kodim23 (768 x 512) through the shipped default model's encoder, quantizer and
    latent: the portable decoder's pixels are torch float32's within one level."""
    from PIL import Image

    from codec.engine.loading import get_codec

    ae = get_codec("default").autoencoder
    img = np.array(Image.open(SAMPLE).convert("RGB"))
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        z = ae.latent(ae.encode(x))
        ref = ae.decoder(z)[0]
    config, tensors = bundle("default")
    p = PortableDecoder(config, tensors, prefix="autoencoder.decoder.", threads=2)
    got = p.forward(z[0].numpy())
    assert got.shape == (3, 512, 768)
    assert np.abs(got - ref.numpy()).max() < 1e-4
    px = p.pixels(z[0].numpy(), (512, 768))
    diff = np.abs(px.astype(int) - torch_pixels(ref))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert np.abs(px.astype(int) - img).mean() < 12  # it is the picture
